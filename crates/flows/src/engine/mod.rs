//! The engine's public face: [`Engine`] (register kinds, start flows, resume
//! them at start-up, wait, shut down). Running steps is in `drive.rs`,
//! undoing them in `unwind.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use scoria_failpoints::Failpoints;
use scoria_model::FlowId;
use scoria_model::flow::FlowState;
use scoria_store::Store;
use scoria_store::flows::{self as db, FlowRecord, StepRecord};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::definition::{Definition, Definitions};
use crate::error::{EngineError, Outcome};
use crate::handle::{FlowHandle, Status, finish};
use crate::options::EngineOptions;
use crate::shared::{BoxFuture, Resumer, Shared};
use crate::step::{Cx, Failure, Flow};

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
        tx: watch::Sender<Status>,
    ) -> (BoxFuture, Arc<Vec<&'static str>>) {
        let engine = Engine { inner: shared };
        let params = serde_json::from_value::<F::Params>(rec.params.clone());
        let (def, params) = match (self.defs.for_flow(&rec, &steps), params) {
            (Ok(def), Ok(params)) => (def.clone(), params),
            (Err(mismatch), _) => {
                let fut = engine.refuse(rec, mismatch.0, tx);
                return (Box::pin(fut), Arc::new(Vec::new()));
            }
            (Ok(def), Err(e)) => {
                let message = format!(
                    "flow {} ({} v{}) has parameters this build cannot read: {e}",
                    rec.id,
                    F::KIND,
                    def.version
                );
                let fut = engine.refuse(rec, message, tx);
                return (Box::pin(fut), def.names.clone());
            }
        };
        let names = def.names.clone();
        let fut = async move {
            let mut cx = engine.cx::<F>(rec.id, params);
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
            finish(&tx, outcome);
        };
        (Box::pin(fut), names)
    }
}

impl<E: Send + Sync + 'static> Engine<E> {
    pub fn new(store: Store, env: Arc<E>, fp: Arc<Failpoints>, options: EngineOptions) -> Self {
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

    pub(super) fn cx<F: Flow<Env = E>>(&self, id: FlowId, params: F::Params) -> Cx<F> {
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

    /// Start a new flow. It runs in the background; follow it with the handle.
    /// Nothing is stored until the first step commits (a first database step
    /// that fails leaves no trace at all).
    pub fn start<F: Flow<Env = E>>(&self, params: F::Params) -> Result<FlowHandle, EngineError> {
        if self.inner.stopping.load(Ordering::SeqCst) {
            return Err(EngineError::ShuttingDown);
        }
        let id = FlowId::new();
        let meta = F::meta(&params);
        let json = serde_json::to_value(&params).map_err(EngineError::Params)?;
        let def = Definition::<F>::current();
        let names = def.names.clone();
        let (tx, rx) = watch::channel(Status::default());
        let engine = self.clone();
        // The flow's log lines carry the span of whoever started it (the HTTP
        // request and its request id), although it runs on in the background.
        let parent = tracing::Span::current();
        self.spawn(Box::pin(
            async move {
                let mut cx = engine.cx::<F>(id, params);
                let outcome = engine
                    .drive(&mut cx, &def, Start::New { meta, params: json }, &tx)
                    .await;
                finish(&tx, outcome);
            }
            .instrument(parent),
        ));
        Ok(FlowHandle { id, names, rx })
    }

    /// Resume every flow left running or unwinding (at start-up).
    pub async fn resume_all(&self) -> Result<Vec<FlowHandle>, EngineError> {
        let active = {
            let mut conn = self.inner.store.read().await?;
            db::flow_list_active(&mut conn).await?
        };
        let mut handles = Vec::new();
        for rec in active {
            let resumer = self
                .inner
                .kinds
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(rec.kind.as_str())
                .cloned();
            let Some(resumer) = resumer else {
                tracing::error!(flow = %rec.id, kind = %rec.kind, "no such flow kind registered; left as is");
                continue;
            };
            let steps = {
                let mut conn = self.inner.store.read().await?;
                db::flow_steps(&mut conn, rec.id).await?
            };
            let id = rec.id;
            let (tx, rx) = watch::channel(Status::default());
            let (fut, names) = resumer.resume(self.inner.clone(), rec, steps, tx);
            tracing::info!(flow = %id, "resuming flow");
            self.spawn(fut);
            handles.push(FlowHandle { id, names, rx });
        }
        Ok(handles)
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

    /// Stop starting steps; running steps finish, then their flows pause (they
    /// resume at the next start). Waits up to `grace` for them.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        if tokio::time::timeout(grace, self.wait_idle()).await.is_err() {
            tracing::warn!("flows still running after the shutdown grace period");
        }
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

    /// Leave a flow this build cannot run `stuck`, with `message` for an
    /// admin; its parameters and step records stay as they are.
    fn refuse(
        &self,
        rec: FlowRecord,
        message: String,
        status: watch::Sender<Status>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let engine = self.clone();
        async move {
            tracing::error!(flow = %rec.id, kind = %rec.kind, error = %message, "flow refused; left stuck");
            let res = async {
                let mut tx = engine.inner.store.begin().await?;
                db::flow_set_state(&mut tx, rec.id, FlowState::Stuck, None, Some(&message)).await?;
                tx.commit().await?;
                Ok::<_, scoria_store::StoreError>(())
            }
            .await;
            let outcome = match res {
                Ok(()) => Outcome::Stuck(message),
                Err(e) => {
                    tracing::error!(flow = %rec.id, error = %e, "could not record the flow as stuck");
                    Outcome::Interrupted
                }
            };
            finish(&status, outcome);
        }
    }
}
