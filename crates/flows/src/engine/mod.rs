//! The engine's public face: [`Engine`] (register kinds, start flows, wait,
//! shut down). Claiming flows (at start-up and once their node died) and the
//! background tasks are in `claim.rs`, running steps in `drive.rs`, undoing
//! them in `unwind.rs`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use scoria_failpoints::Failpoints;
use scoria_model::FlowId;
use scoria_model::flow::FlowState;
use scoria_store::flows::{self as db, FlowRecord, StepRecord};
use scoria_store::{Store, StoreError, Tx};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::definition::{Definition, Definitions};
use crate::error::{EngineError, Outcome};
use crate::handle::{FlowHandle, Status, finish};
use crate::lease::{Lease, Leases, Term};
use crate::options::EngineOptions;
use crate::shared::{BoxFuture, Resumer, Shared};
use crate::step::{Cx, Failure, Flow};

mod claim;
mod drive;
mod unwind;

use drive::Start;

/// The flow engine of one process. Cheap to clone.
pub struct Engine<E> {
    pub(crate) inner: Arc<Shared<E>>,
}

impl<E> Clone for Engine<E> {
    fn clone(&self) -> Self {
        Engine {
            inner: self.inner.clone(),
        }
    }
}

/// Resumes flows of kind `F` with the definition each was started under.
struct KindResumer<F: Flow> {
    defs: Definitions<F>,
}

impl<F: Flow> Resumer<F::Env> for KindResumer<F> {
    fn resume(
        &self,
        shared: Arc<Shared<F::Env>>,
        rec: FlowRecord,
        steps: Vec<StepRecord>,
        lease: Arc<Lease>,
        tx: watch::Sender<Status>,
    ) -> (BoxFuture, Arc<Vec<&'static str>>) {
        let engine = Engine { inner: shared };
        let params = serde_json::from_value::<F::Params>(rec.params.clone());
        let (def, params) = match (self.defs.for_flow(&rec, &steps), params) {
            (Ok(def), Ok(params)) => (def.clone(), params),
            (Err(mismatch), _) => {
                let fut = engine.refuse(rec, mismatch.0, lease, tx);
                return (Box::pin(fut), Arc::new(Vec::new()));
            }
            (Ok(def), Err(e)) => {
                let message = format!(
                    "flow {} ({} v{}) has parameters this build cannot read: {e}",
                    rec.id,
                    F::KIND,
                    def.version
                );
                let fut = engine.refuse(rec, message, lease, tx);
                return (Box::pin(fut), def.names.clone());
            }
        };
        let names = def.names.clone();
        let fut = async move {
            let mut cx = engine.cx::<F>(rec.id, params, lease);
            for r in &steps {
                if let Some(out) = &r.output {
                    cx.outputs.insert(r.name.clone(), out.clone());
                }
            }
            if rec.state == FlowState::Unwinding {
                cx.failure = Some(Failure {
                    step: rec.failed_step.clone().unwrap_or_default(),
                    message: rec.last_error.clone().unwrap_or_default(),
                });
            }
            let start = Start::Resume {
                state: rec.state,
                records: steps,
            };
            let outcome = engine.drive(&mut cx, &def, start, &tx).await;
            engine.end_run(&cx.lease, &outcome).await;
            finish(&tx, outcome);
        };
        (Box::pin(fut), names)
    }
}

impl<E: Send + Sync + 'static> Engine<E> {
    /// An engine over `store`, running flows as node `options.node_id`.
    /// Nothing runs until flows are started or resumed.
    pub fn new(store: Store, env: Arc<E>, fp: Arc<Failpoints>, options: EngineOptions) -> Self {
        let mut options = options;
        // A lease must outlive two failed renewals, and be long enough to
        // write at all.
        options.lease = options.lease.max(Duration::from_millis(10));
        options.lease_renewal = options
            .lease_renewal
            .clamp(Duration::from_millis(1), options.lease / 3);
        options.claim_interval = options.claim_interval.max(Duration::from_millis(1));
        let leases = Leases::new(options.node_id.clone(), options.lease);
        Engine {
            inner: Arc::new(Shared {
                store,
                env,
                fp,
                options,
                kinds: RwLock::new(HashMap::new()),
                stopping: AtomicBool::new(false),
                tasks: Mutex::new(JoinSet::new()),
                ended: watch::channel(0).0,
                leases,
                halt: watch::channel(false).0,
                renewing: AtomicBool::new(false),
                claiming: AtomicBool::new(false),
            }),
        }
    }

    /// Make flows of kind `F` resumable by this engine: under its current
    /// definition and under each of its [`Flow::legacy`] ones. Panics when
    /// the definitions are inconsistent (two with one version, a definition
    /// without steps or with two steps of one name).
    pub fn register<F: Flow<Env = E>>(&self) {
        let resumer = KindResumer::<F> {
            defs: Definitions::of(),
        };
        self.inner
            .kinds
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(F::KIND, Arc::new(resumer));
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn env(&self) -> &Arc<E> {
        &self.inner.env
    }

    pub fn failpoints(&self) -> &Arc<Failpoints> {
        &self.inner.fp
    }

    /// The node this engine runs flows as.
    pub fn node_id(&self) -> &str {
        &self.inner.leases.node
    }

    pub(super) fn cx<F: Flow<Env = E>>(
        &self,
        id: FlowId,
        params: F::Params,
        lease: Arc<Lease>,
    ) -> Cx<F> {
        Cx {
            flow_id: id,
            params,
            env: self.inner.env.clone(),
            outputs: Default::default(),
            failure: None,
            store: self.inner.store.clone(),
            fp: self.inner.fp.clone(),
            step_index: 0,
            last_percent: Arc::new(AtomicI64::new(-1)),
            engine: Arc::downgrade(&self.inner),
            lease,
        }
    }

    fn spawn(&self, fut: BoxFuture) {
        let ended = self.inner.clone();
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner());
        // Reap finished tasks so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            fut.await;
            ended.ended.send_modify(|n| *n += 1);
        });
    }

    /// Changes each time a flow run by this engine ends (done, failed, stuck or
    /// paused), so a caller can wait for one without polling the store.
    pub fn ended(&self) -> watch::Receiver<u64> {
        self.inner.ended.subscribe()
    }

    /// Start a new flow, owned by this engine's node. It runs in the
    /// background; follow it with the handle. Nothing is stored until the
    /// first step commits (a first database step that fails leaves no trace
    /// at all).
    pub fn start<F: Flow<Env = E>>(&self, params: F::Params) -> Result<FlowHandle, EngineError> {
        if self.stopping() {
            return Err(EngineError::ShuttingDown);
        }
        self.start_renewing();
        let id = FlowId::new();
        let meta = F::meta(&params);
        let json = serde_json::to_value(&params).map_err(EngineError::Params)?;
        let def = Definition::<F>::current();
        let names = def.names.clone();
        let (tx, rx) = watch::channel(Status::default());
        let engine = self.clone();
        let lease = Lease::new_flow(id, self.inner.leases.term().deadline);
        // Held from now on, so that no claim here takes the flow for one
        // left by an earlier run.
        self.inner.leases.insert(lease.clone());
        // The flow's log lines carry the span of whoever started it (the HTTP
        // request and its request id), although it runs on in the background.
        let parent = tracing::Span::current();
        self.spawn(Box::pin(
            async move {
                let mut cx = engine.cx::<F>(id, params, lease);
                let start = Start::New { meta, params: json };
                let outcome = engine.drive(&mut cx, &def, start, &tx).await;
                engine.end_run(&cx.lease, &outcome).await;
                finish(&tx, outcome);
            }
            .instrument(parent),
        ));
        Ok(FlowHandle { id, names, rx })
    }

    /// Wait until every flow task of this engine has ended.
    pub async fn wait_idle(&self) {
        loop {
            let mut set =
                std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner()));
            if set.is_empty() {
                return;
            }
            while let Some(res) = set.join_next().await {
                if let Err(e) = res {
                    tracing::error!(error = %e, "flow task panicked");
                }
            }
        }
    }

    /// Stop starting steps; running steps finish, then their flows pause
    /// and give up their leases (this node resumes them at its next start,
    /// or another node claims them). Waits up to `grace` for them, then stops
    /// renewing leases and claiming flows.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        if tokio::time::timeout(grace, self.wait_idle()).await.is_err() {
            tracing::warn!("flows still running after the shutdown grace period");
        }
        self.inner.halt.send_replace(true);
    }

    pub(crate) fn stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::SeqCst)
    }

    /// A failpoint after a durable write: only a crash matters there (the write
    /// happened; an injected error would have nothing to fail).
    pub(super) fn after_commit(&self, name: &str) -> Result<(), ()> {
        match self.inner.fp.hit(name) {
            Err(f) if f.is_crash() => Err(()),
            _ => Ok(()),
        }
    }

    /// Open a write transaction about `cx`'s flow and pass the lease check
    /// in it; `None` (nothing written) when the flow is no longer this
    /// engine's.
    pub(super) async fn begin_held<F: Flow>(
        &self,
        cx: &Cx<F>,
    ) -> Result<Option<(Tx, Term)>, StoreError> {
        let leases = &self.inner.leases;
        if cx.lease.is_lost() {
            return Ok(None);
        }
        let term = leases.term();
        let tx = leases
            .begin_held(&self.inner.store, &cx.lease, &term)
            .await?;
        Ok(tx.map(|tx| (tx, term)))
    }

    /// Commit a transaction that passed the lease check: the lease then runs
    /// to the term that check wrote.
    pub(super) async fn commit_held<F: Flow>(
        &self,
        tx: Tx,
        cx: &Cx<F>,
        term: &Term,
    ) -> Result<(), StoreError> {
        tx.commit().await?;
        cx.lease.extend(term.deadline);
        Ok(())
    }

    /// The run of a flow stops because its lease is lost: nothing more is
    /// written; the node that holds the flow now runs it.
    pub(super) fn lease_lost<F: Flow>(&self, cx: &Cx<F>) -> Outcome {
        cx.lease.lose();
        tracing::warn!(
            flow = %cx.flow_id,
            generation = cx.lease.generation,
            "lost the flow's lease (claimed by another node, or not renewed in time); stopping"
        );
        // Observable by tests; whatever it says, the run stops.
        let _ = self.inner.fp.hit(&format!("flow.{}.lease_lost", F::KIND));
        Outcome::Interrupted
    }

    /// After a run: stop renewing its lease; a flow paused by a shutdown
    /// gives its lease up, so that another node need not wait for it to
    /// expire.
    async fn end_run(&self, lease: &Arc<Lease>, outcome: &Outcome) {
        self.inner.leases.remove(lease);
        if !matches!(outcome, Outcome::Interrupted)
            || !self.stopping()
            || self.inner.fp.is_dead()
            || lease.is_lost()
        {
            return;
        }
        let node = &self.inner.leases.node;
        let res = async {
            let mut tx = self.inner.store.begin().await?;
            let released = db::flow_release(&mut tx, lease.flow, node, lease.generation).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(released)
        }
        .await;
        match res {
            Ok(_) => lease.lose(),
            Err(e) => {
                tracing::debug!(flow = %lease.flow, error = %e, "could not give up the lease")
            }
        }
    }

    /// Leave a flow this build cannot run `stuck`, with `message` for an
    /// admin; its parameters and step records stay as they are.
    fn refuse(
        &self,
        rec: FlowRecord,
        message: String,
        lease: Arc<Lease>,
        status: watch::Sender<Status>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let engine = self.clone();
        async move {
            tracing::error!(flow = %rec.id, kind = %rec.kind, error = %message, "flow refused; left stuck");
            let leases = &engine.inner.leases;
            let res = async {
                let term = leases.term();
                let Some(mut tx) = leases
                    .begin_held(&engine.inner.store, &lease, &term)
                    .await?
                else {
                    return Ok(false);
                };
                db::flow_set_state(&mut tx, rec.id, FlowState::Stuck, None, Some(&message)).await?;
                tx.commit().await?;
                Ok::<_, StoreError>(true)
            }
            .await;
            let outcome = match res {
                Ok(true) => Outcome::Stuck(message),
                Ok(false) => {
                    tracing::warn!(flow = %rec.id, "lost the flow's lease before refusing it");
                    Outcome::Interrupted
                }
                Err(e) => {
                    tracing::error!(flow = %rec.id, error = %e, "could not record the flow as stuck");
                    Outcome::Interrupted
                }
            };
            engine.end_run(&lease, &outcome).await;
            finish(&status, outcome);
        }
    }
}
