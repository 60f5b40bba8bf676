//! The executor: runs flows, records every step, unwinds on failure, resumes
//! after a restart, stops at a step boundary on shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use scoria_failpoints::{Failpoints, Fault};
use scoria_model::FlowId;
use scoria_model::flow::{FlowState, StepState};
use scoria_store::flows::{self as db, FlowRecord, NewFlow, StepRecord};
use scoria_store::{Store, StoreError};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::step::{Cx, Failure, Flow, Run, Step, StepError, Undo};

/// Knobs of the engine. The defaults are what production uses; the `rerun_*`
/// switches exist for the generic flow tests (every step and undo run twice).
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Run every step's action twice (a database step: once rolled back, then
    /// for real; an external step: twice in a row), to prove idempotence.
    pub rerun_steps: bool,
    /// Run every undo twice.
    pub rerun_undos: bool,
    /// How many times an undo is tried before the flow is declared stuck.
    pub undo_attempts: u32,
    /// Pause between undo attempts (doubled each time).
    pub undo_backoff: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            rerun_steps: false,
            rerun_undos: false,
            undo_attempts: 3,
            undo_backoff: Duration::from_millis(200),
        }
    }
}

/// How a flow ended, as seen by this process.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Every step succeeded.
    Done,
    /// A step failed and every completed step was undone.
    Failed(StepError),
    /// A step failed and an undo kept failing: the flow waits for an admin.
    Stuck(String),
    /// The engine stopped (shutdown, or a simulated crash) before the flow
    /// ended; a later engine resumes it.
    Interrupted,
}

/// Errors starting or resuming flows.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the engine is shutting down")]
    ShuttingDown,
    #[error("flow parameters could not be encoded or decoded")]
    Params(#[source] serde_json::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone, Debug, Default)]
struct Status {
    /// Number of leading steps known to be done.
    steps_done: usize,
    outcome: Option<Outcome>,
}

/// A way to follow one flow started or resumed by this engine.
#[derive(Clone, Debug)]
pub struct FlowHandle {
    pub id: FlowId,
    names: Arc<Vec<&'static str>>,
    rx: watch::Receiver<Status>,
}

impl FlowHandle {
    /// Wait until the step `name` is done. If the flow fails first, the error
    /// that failed it; if the engine stops first, `Interrupted`.
    pub async fn wait_step(&self, name: &str) -> Result<(), Outcome> {
        let idx = self
            .names
            .iter()
            .position(|n| *n == name)
            .map(|i| i + 1)
            .unwrap_or(usize::MAX);
        let mut rx = self.rx.clone();
        loop {
            {
                let s = rx.borrow_and_update();
                if s.steps_done >= idx {
                    return Ok(());
                }
                match &s.outcome {
                    Some(Outcome::Done) => return Ok(()),
                    Some(other) => return Err(other.clone()),
                    None => {}
                }
            }
            if rx.changed().await.is_err() {
                return Err(Outcome::Interrupted);
            }
        }
    }

    /// Wait for the flow to end.
    pub async fn wait(&self) -> Outcome {
        let mut rx = self.rx.clone();
        loop {
            if let Some(o) = &rx.borrow_and_update().outcome {
                return o.clone();
            }
            if rx.changed().await.is_err() {
                return Outcome::Interrupted;
            }
        }
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Resumes flows of one kind from their records.
trait Resumer<E>: Send + Sync {
    fn resume(
        &self,
        engine: Engine<E>,
        rec: FlowRecord,
        steps: Vec<StepRecord>,
        tx: watch::Sender<Status>,
    ) -> Result<(BoxFuture, Arc<Vec<&'static str>>), EngineError>;
}

struct KindResumer<F>(std::marker::PhantomData<fn() -> F>);

impl<F: Flow> Resumer<F::Env> for KindResumer<F> {
    fn resume(
        &self,
        engine: Engine<F::Env>,
        rec: FlowRecord,
        steps: Vec<StepRecord>,
        tx: watch::Sender<Status>,
    ) -> Result<(BoxFuture, Arc<Vec<&'static str>>), EngineError> {
        let params: F::Params =
            serde_json::from_value(rec.params.clone()).map_err(EngineError::Params)?;
        let defs = F::steps();
        let names = Arc::new(defs.iter().map(|s| s.name).collect::<Vec<_>>());
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
            let outcome = engine.drive(&mut cx, &defs, start, &tx).await;
            finish(&tx, outcome);
        };
        Ok((Box::pin(fut), names))
    }
}

struct Inner<E> {
    store: Store,
    env: Arc<E>,
    fp: Arc<Failpoints>,
    options: EngineOptions,
    kinds: RwLock<HashMap<&'static str, Arc<dyn Resumer<E>>>>,
    stopping: AtomicBool,
    tasks: Mutex<JoinSet<()>>,
    /// Counts flows that ended in this process (for waiters).
    ended: watch::Sender<u64>,
}

/// The flow engine of one process. Cheap to clone.
pub struct Engine<E> {
    inner: Arc<Inner<E>>,
}

/// An engine as a running flow's context holds it (see [`Cx::start_flow`]).
pub(crate) struct WeakEngine<E>(Weak<Inner<E>>);

impl<E> WeakEngine<E> {
    fn upgrade(&self) -> Option<Engine<E>> {
        self.0.upgrade().map(|inner| Engine { inner })
    }
}

impl<E> Clone for Engine<E> {
    fn clone(&self) -> Self {
        Engine {
            inner: self.inner.clone(),
        }
    }
}

/// One try at a transaction of steps.
enum Attempt {
    Done(Batch),
    /// Step `i` failed; the transaction was dropped.
    StepFailed(usize, StepError),
}

/// What one transaction of steps came to.
enum Batch {
    /// Committed: the steps in `done` are recorded done; `external`, if any, is
    /// recorded started and its action is next. Neither: the flow is done.
    Committed {
        done: Vec<usize>,
        external: Option<usize>,
    },
    /// A database step failed. `persisted`: the completed prefix and the
    /// unwinding state were committed; otherwise nothing was stored.
    Failed {
        step: &'static str,
        err: StepError,
        persisted: bool,
    },
    /// The process "died" (simulated crash) or the database failed: stop here.
    Lost,
}

/// Write the step records of a transaction in one statement.
async fn write_steps<F: Flow>(
    tx: &mut scoria_store::Tx,
    flow: FlowId,
    defs: &[Step<F>],
    writes: &[(usize, StepState, Option<Value>)],
) -> Result<(), StoreError> {
    let rows: Vec<db::StepWrite<'_>> = writes
        .iter()
        .map(|(i, st, out)| db::StepWrite {
            idx: *i as i64,
            name: defs[*i].name,
            state: *st,
            output: out.as_ref(),
            error: None,
        })
        .collect();
    db::flow_steps_set_many(tx, flow, &rows).await
}

fn leading_done(records: &[StepRecord]) -> usize {
    let mut sorted: Vec<&StepRecord> = records.iter().collect();
    sorted.sort_by_key(|r| r.idx);
    sorted
        .iter()
        .enumerate()
        .take_while(|(i, r)| r.idx == *i as i64 && r.state == StepState::Done)
        .count()
}

enum Start {
    New {
        meta: crate::step::FlowMeta,
        params: Value,
    },
    Resume {
        state: FlowState,
        records: Vec<StepRecord>,
    },
}

fn finish(tx: &watch::Sender<Status>, outcome: Outcome) {
    tx.send_modify(|s| s.outcome = Some(outcome));
}

impl<E: Send + Sync + 'static> Engine<E> {
    pub fn new(store: Store, env: Arc<E>, fp: Arc<Failpoints>, options: EngineOptions) -> Self {
        Engine {
            inner: Arc::new(Inner {
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

    /// Make flows of kind `F` resumable by this engine.
    pub fn register<F: Flow<Env = E>>(&self) {
        self.inner
            .kinds
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                F::KIND,
                Arc::new(KindResumer::<F>(std::marker::PhantomData)),
            );
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

    fn cx<F: Flow<Env = E>>(&self, id: FlowId, params: F::Params) -> Cx<F> {
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
            engine: WeakEngine(Arc::downgrade(&self.inner)),
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
        let defs = F::steps();
        let names = Arc::new(defs.iter().map(|s| s.name).collect::<Vec<_>>());
        let (tx, rx) = watch::channel(Status::default());
        let engine = self.clone();
        // The flow's log lines carry the span of whoever started it (the HTTP
        // request and its request id), although it runs on in the background.
        let parent = tracing::Span::current();
        self.spawn(Box::pin(
            async move {
                let mut cx = engine.cx::<F>(id, params);
                let outcome = engine
                    .drive(&mut cx, &defs, Start::New { meta, params: json }, &tx)
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
            match resumer.resume(self.clone(), rec, steps, tx) {
                Ok((fut, names)) => {
                    tracing::info!(flow = %id, "resuming flow");
                    self.spawn(fut);
                    handles.push(FlowHandle { id, names, rx });
                }
                Err(e) => tracing::error!(flow = %id, error = %e, "cannot resume flow; left as is"),
            }
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

    fn stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::SeqCst)
    }

    /// A failpoint after a durable write: only a crash matters there (the write
    /// happened; an injected error would have nothing to fail).
    fn after_commit(&self, name: &str) -> Result<(), ()> {
        match self.inner.fp.hit(name) {
            Err(f) if f.is_crash() => Err(()),
            _ => Ok(()),
        }
    }

    async fn drive<F: Flow<Env = E>>(
        &self,
        cx: &mut Cx<F>,
        defs: &[Step<F>],
        start: Start,
        status: &watch::Sender<Status>,
    ) -> Outcome {
        let kind = F::KIND;
        let span = tracing::info_span!("flow", flow = %cx.flow_id, kind);
        async {
            let (mut created, resume_records, params, meta) = match start {
                Start::New { meta, params } => (false, None, Some(params), Some(meta)),
                Start::Resume { state, records } => {
                    if state == FlowState::Unwinding {
                        let failed = cx.failure.as_ref().map(|f| f.step.clone()).unwrap_or_default();
                        let err = StepError::msg(cx.failure.as_ref().map(|f| f.message.clone()).unwrap_or_default());
                        return self.unwind(cx, defs, &records, &failed, err).await;
                    }
                    (true, Some(records), None, None)
                }
            };
            let mut records: Vec<StepRecord> = resume_records.unwrap_or_default();
            let mut next = leading_done(&records);
            status.send_modify(|s| s.steps_done = next);
            // An external step whose action succeeded and whose `done` record
            // goes into the next transaction.
            let mut pending: Option<(usize, Value)> = None;
            loop {
                if self.stopping() {
                    // A pending external step is re-run at the next start.
                    return Outcome::Interrupted;
                }
                let names: Vec<&str> = defs.iter().map(|s| s.name).collect();
                let lease_until = db::lease_until(Duration::from_secs(30));
                let new_flow = (!created).then(|| NewFlow {
                    id: cx.flow_id,
                    kind,
                    resource_type: meta.as_ref().and_then(|m| m.resource_type),
                    resource_id: meta.as_ref().and_then(|m| m.resource_id.as_deref()),
                    project_id: meta.as_ref().and_then(|m| m.project_id.as_deref()),
                    params: params.as_ref().unwrap_or(&Value::Null),
                    steps_total: defs.len() as i64,
                    first_step: defs[0].name,
                    definition_version: 1,
                    step_names: &names,
                    owner: "local",
                    lease_until: &lease_until,
                });
                let batch = self.run_batch(cx, defs, &mut next, new_flow.as_ref(), pending.take(), &mut records).await;
                match batch {
                    Batch::Committed { done, external } => {
                        created = true;
                        status.send_modify(|s| s.steps_done = leading_done(&records));
                        for d in done {
                            if self.after_commit(&format!("flow.{kind}.{}.done", defs[d].name)).is_err() {
                                return Outcome::Interrupted;
                            }
                        }
                        let Some(x) = external else {
                            if self.after_commit(&format!("flow.{kind}.finished")).is_err() {
                                return Outcome::Interrupted;
                            }
                            return Outcome::Done;
                        };
                        let step = &defs[x];
                        match self.run_external(cx, x, step).instrument(tracing::info_span!("step", step = step.name, index = x)).await {
                            Ok(out) => pending = Some((x, out)),
                            Err(err) => {
                                if self.inner.fp.is_dead() || err.is_interrupted() {
                                    // Recorded `started`: the next start runs it again.
                                    return Outcome::Interrupted;
                                }
                                tracing::warn!(step = step.name, error = %err.chain(), "flow step failed");
                                return self.unwind_from(cx, defs, &records, step.name, err).await;
                            }
                        }
                    }
                    Batch::Failed { step, err, persisted } => {
                        if self.inner.fp.is_dead() {
                            return Outcome::Interrupted;
                        }
                        tracing::warn!(step, error = %err.chain(), "flow step failed");
                        if !persisted {
                            // Nothing was stored: the flow never existed.
                            return Outcome::Failed(err);
                        }
                        status.send_modify(|s| s.steps_done = leading_done(&records));
                        if self.after_commit(&format!("flow.{kind}.unwinding")).is_err() {
                            return Outcome::Interrupted;
                        }
                        cx.failure = Some(Failure { step: step.to_owned(), message: err.to_string() });
                        return self.unwind(cx, defs, &records, step, err).await;
                    }
                    Batch::Lost => return Outcome::Interrupted,
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Run steps from `*next` in one transaction: every database step up to
    /// the next external one (whose `started` record closes the transaction) or
    /// the end of the flow, with all their records written together. A
    /// `pending` external step's `done` record opens it.
    ///
    /// Steps run without savepoints (the common case is success). When a
    /// database step fails, the whole transaction is rolled back and the steps
    /// before it are run again in a fresh one, which then records them done and
    /// the flow unwinding: the same effect as keeping the completed prefix.
    async fn run_batch<F: Flow<Env = E>>(
        &self,
        cx: &mut Cx<F>,
        defs: &[Step<F>],
        next: &mut usize,
        new_flow: Option<&NewFlow<'_>>,
        pending: Option<(usize, Value)>,
        records: &mut Vec<StepRecord>,
    ) -> Batch {
        let first = *next;
        // Set after a failed attempt: stop before this step and unwind.
        let mut stop_before: Option<(usize, StepError)> = None;
        // Transactions the database itself refused (busy, I/O): retried a few
        // times with a growing pause before the flow is left for the next start.
        let mut db_failures = 0u32;
        loop {
            *next = first;
            let attempt = self
                .try_batch(
                    cx,
                    defs,
                    next,
                    new_flow,
                    pending.as_ref(),
                    records,
                    stop_before.as_ref(),
                )
                .await;
            match attempt {
                Ok(Attempt::Done(b)) => return b,
                Ok(Attempt::StepFailed(i, err)) => {
                    if self.inner.fp.is_dead() {
                        return Batch::Lost;
                    }
                    if i == first && new_flow.is_some() && pending.is_none() {
                        // Nothing was stored: the flow never existed.
                        return Batch::Failed {
                            step: defs[i].name,
                            err,
                            persisted: false,
                        };
                    }
                    stop_before = Some((i, err));
                }
                Err(e) if db_failures < 5 && !self.inner.fp.is_dead() => {
                    db_failures += 1;
                    tracing::warn!(error = %e, attempt = db_failures, "flow transaction failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50 << db_failures)).await;
                }
                Err(e) => {
                    // The database keeps failing: nothing of this transaction is
                    // stored. The flow stays as persisted; the next start resumes it.
                    tracing::error!(error = %e, "flow transaction failed; the flow resumes at the next start");
                    return Batch::Lost;
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn try_batch<F: Flow<Env = E>>(
        &self,
        cx: &mut Cx<F>,
        defs: &[Step<F>],
        next: &mut usize,
        new_flow: Option<&NewFlow<'_>>,
        pending: Option<&(usize, Value)>,
        records: &mut Vec<StepRecord>,
        stop_before: Option<&(usize, StepError)>,
    ) -> Result<Attempt, StoreError> {
        let mut tx = self.inner.store.begin().await?;
        if let Some(nf) = new_flow {
            db::flow_create(&mut tx, nf).await?;
        }
        // (index, state, output) of the records this transaction writes.
        let mut writes: Vec<(usize, StepState, Option<Value>)> = Vec::new();
        if let Some((x, out)) = pending {
            writes.push((*x, StepState::Done, Some(out.clone())));
        }
        let flow = cx.flow_id;
        loop {
            let i = *next;
            if let Some((k, err)) = stop_before
                && *k == i
            {
                write_steps(&mut tx, flow, defs, &writes).await?;
                let msg = err.to_string();
                db::flow_advance(
                    &mut tx,
                    cx.flow_id,
                    i as i64,
                    Some(defs[i].name),
                    FlowState::Unwinding,
                    Some(defs[i].name),
                    Some(&msg),
                )
                .await?;
                tx.commit().await?;
                self.apply(cx, defs, records, &writes);
                return Ok(Attempt::Done(Batch::Failed {
                    step: defs[i].name,
                    err: err.clone(),
                    persisted: true,
                }));
            }
            let Some(step) = defs.get(i) else {
                write_steps(&mut tx, flow, defs, &writes).await?;
                db::flow_advance(
                    &mut tx,
                    cx.flow_id,
                    defs.len() as i64,
                    None,
                    FlowState::Done,
                    None,
                    None,
                )
                .await?;
                tx.commit().await?;
                let done = self.apply(cx, defs, records, &writes);
                return Ok(Attempt::Done(Batch::Committed {
                    done,
                    external: None,
                }));
            };
            cx.step_index = i as i64;
            cx.last_percent.store(-1, Ordering::Relaxed);
            match &step.run {
                Run::External(_) => {
                    writes.push((i, StepState::Started, None));
                    write_steps(&mut tx, flow, defs, &writes).await?;
                    db::flow_advance(
                        &mut tx,
                        cx.flow_id,
                        i as i64,
                        Some(step.name),
                        FlowState::Running,
                        None,
                        None,
                    )
                    .await?;
                    tx.commit().await?;
                    let done = self.apply(cx, defs, records, &writes);
                    *next = i + 1;
                    return Ok(Attempt::Done(Batch::Committed {
                        done,
                        external: Some(i),
                    }));
                }
                Run::Db(f) => {
                    let span = tracing::info_span!("step", step = step.name, index = i);
                    match self
                        .run_db_step(cx, &mut tx, step.name, *f)
                        .instrument(span)
                        .await
                    {
                        Ok(out) => {
                            // Later steps of this transaction read it.
                            cx.outputs.insert(step.name.to_owned(), out.clone());
                            writes.push((i, StepState::Done, Some(out)));
                            *next = i + 1;
                        }
                        Err(err) => {
                            drop(tx);
                            return Ok(Attempt::StepFailed(i, err));
                        }
                    }
                }
            }
        }
    }

    /// After a commit: the records written become the in-memory view. Returns
    /// the indices recorded done.
    fn apply<F: Flow<Env = E>>(
        &self,
        cx: &mut Cx<F>,
        defs: &[Step<F>],
        records: &mut Vec<StepRecord>,
        writes: &[(usize, StepState, Option<Value>)],
    ) -> Vec<usize> {
        let mut done = Vec::new();
        for (i, st, out) in writes {
            if let Some(o) = out {
                cx.outputs.insert(defs[*i].name.to_owned(), o.clone());
            }
            set_record(records, *i, defs[*i].name, *st, out.clone());
            if *st == StepState::Done {
                done.push(*i);
            }
        }
        done
    }

    /// One database step inside the batch's transaction.
    async fn run_db_step<F: Flow<Env = E>>(
        &self,
        cx: &mut Cx<F>,
        tx: &mut scoria_store::Tx,
        name: &'static str,
        f: crate::step::DbFn<F>,
    ) -> Result<Value, StepError> {
        let kind = F::KIND;
        let fp = &self.inner.fp;
        fp.hit(&format!("flow.{kind}.{name}.run"))?;
        if self.inner.options.rerun_steps {
            // Run once and undo it (a savepoint), then for real: the step must
            // not depend on anything outside the transaction.
            let mut sp = scoria_store::savepoint(tx).await?;
            f(cx, &mut sp).await?;
            sp.rollback().await.map_err(StoreError::from)?;
        }
        let out = f(cx, tx).await?;
        fp.hit(&format!("flow.{kind}.{name}.ran"))?;
        Ok(out)
    }

    /// An external step's action (its `started` record is committed).
    async fn run_external<F: Flow<Env = E>>(
        &self,
        cx: &mut Cx<F>,
        i: usize,
        step: &Step<F>,
    ) -> Result<Value, StepError> {
        let kind = F::KIND;
        let fp = &self.inner.fp;
        cx.step_index = i as i64;
        if fp
            .hit(&format!("flow.{kind}.{}.started", step.name))
            .is_err_and(|f| f.is_crash())
        {
            return Err(StepError::from(Fault::Crashed(step.name.to_owned())));
        }
        let Run::External(f) = &step.run else {
            return Err(StepError::msg(format!(
                "step {} is not external",
                step.name
            )));
        };
        fp.hit(&format!("flow.{kind}.{}.run", step.name))?;
        let mut out = f(cx).await?;
        if self.inner.options.rerun_steps {
            out = f(cx).await?;
        }
        fp.hit(&format!("flow.{kind}.{}.ran", step.name))?;
        Ok(out)
    }

    /// Mark the flow unwinding (step `failed` failed with `err`), then unwind.
    async fn unwind_from<F: Flow<Env = E>>(
        &self,
        cx: &mut Cx<F>,
        defs: &[Step<F>],
        records: &[StepRecord],
        failed: &str,
        err: StepError,
    ) -> Outcome {
        let message = err.to_string();
        let res = async {
            let mut tx = self.inner.store.begin().await?;
            db::flow_set_state(
                &mut tx,
                cx.flow_id,
                FlowState::Unwinding,
                Some(failed),
                Some(&message),
            )
            .await?;
            tx.commit().await?;
            Ok::<_, StoreError>(())
        }
        .await;
        if let Err(e) = res {
            // The flow stays `running` in the store; the next start resumes it
            // from the failed step, which is the safe direction.
            tracing::error!(error = %e, "could not record the flow as unwinding");
            return Outcome::Interrupted;
        }
        if self
            .after_commit(&format!("flow.{}.unwinding", F::KIND))
            .is_err()
        {
            return Outcome::Interrupted;
        }
        cx.failure = Some(Failure {
            step: failed.to_owned(),
            message,
        });
        self.unwind(cx, defs, records, failed, err).await
    }

    /// Undo, in reverse order, every step that is done or may have started.
    async fn unwind<F: Flow<Env = E>>(
        &self,
        cx: &mut Cx<F>,
        defs: &[Step<F>],
        records: &[StepRecord],
        failed: &str,
        err: StepError,
    ) -> Outcome {
        let kind = F::KIND;
        let pending: Vec<&StepRecord> = records
            .iter()
            .rev()
            .filter(|r| {
                matches!(
                    r.state,
                    StepState::Done | StepState::Started | StepState::Undoing
                )
            })
            .collect();
        for rec in pending {
            let Some(step) = defs.get(rec.idx as usize) else {
                continue;
            };
            let Some(undo) = &step.undo else { continue };
            if self.stopping() {
                return Outcome::Interrupted;
            }
            cx.step_index = rec.idx;
            let span = tracing::info_span!("undo", step = step.name, index = rec.idx);
            let mut attempt = 0;
            let mut backoff = self.inner.options.undo_backoff;
            loop {
                attempt += 1;
                let res = self
                    .run_undo(cx, rec.idx, step, undo)
                    .instrument(span.clone())
                    .await;
                match res {
                    Ok(()) => {
                        if self
                            .after_commit(&format!("flow.{kind}.{}.undone", step.name))
                            .is_err()
                        {
                            return Outcome::Interrupted;
                        }
                        break;
                    }
                    Err(e) if self.inner.fp.is_dead() || e.is_interrupted() => {
                        // The flow stays unwinding; the next start goes on.
                        drop(e);
                        return Outcome::Interrupted;
                    }
                    Err(e) if attempt < self.inner.options.undo_attempts => {
                        tracing::warn!(step = step.name, attempt, error = %e.chain(), "undo failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff *= 2;
                    }
                    Err(e) => {
                        let message = format!("undo of step {} failed: {}", step.name, e);
                        tracing::error!(step = step.name, error = %e.chain(), "undo failed; flow is stuck");
                        let res = async {
                            let mut tx = self.inner.store.begin().await?;
                            db::flow_step_set(
                                &mut tx,
                                cx.flow_id,
                                rec.idx,
                                step.name,
                                StepState::UndoFailed,
                                None,
                                Some(&e.to_string()),
                            )
                            .await?;
                            db::flow_set_state(
                                &mut tx,
                                cx.flow_id,
                                FlowState::Stuck,
                                None,
                                Some(&message),
                            )
                            .await?;
                            tx.commit().await?;
                            Ok::<_, StoreError>(())
                        }
                        .await;
                        if let Err(se) = res {
                            tracing::error!(error = %se, "could not record the flow as stuck");
                            return Outcome::Interrupted;
                        }
                        return Outcome::Stuck(message);
                    }
                }
            }
        }
        let res = async {
            let mut tx = self.inner.store.begin().await?;
            db::flow_set_state(&mut tx, cx.flow_id, FlowState::Failed, Some(failed), None).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(())
        }
        .await;
        if let Err(e) = res {
            tracing::error!(error = %e, "could not record the flow as failed");
            return Outcome::Interrupted;
        }
        if self.after_commit(&format!("flow.{kind}.finished")).is_err() {
            return Outcome::Interrupted;
        }
        Outcome::Failed(err)
    }

    async fn run_undo<F: Flow<Env = E>>(
        &self,
        cx: &mut Cx<F>,
        idx: i64,
        step: &Step<F>,
        undo: &Undo<F>,
    ) -> Result<(), StepError> {
        let kind = F::KIND;
        let fp = &self.inner.fp;
        let store = &self.inner.store;
        fp.hit(&format!("flow.{kind}.{}.undo", step.name))?;
        match undo {
            Undo::Db(f) => {
                if self.inner.options.rerun_undos {
                    let mut tx = store.begin().await?;
                    f(cx, &mut tx).await?;
                    tx.rollback().await.map_err(StoreError::from)?;
                }
                let mut tx = store.begin().await?;
                f(cx, &mut tx).await?;
                db::flow_step_set(
                    &mut tx,
                    cx.flow_id,
                    idx,
                    step.name,
                    StepState::Undone,
                    None,
                    None,
                )
                .await?;
                tx.commit().await.map_err(StoreError::from)?;
            }
            Undo::External(f) => {
                let mut tx = store.begin().await?;
                db::flow_step_set(
                    &mut tx,
                    cx.flow_id,
                    idx,
                    step.name,
                    StepState::Undoing,
                    None,
                    None,
                )
                .await?;
                tx.commit().await.map_err(StoreError::from)?;
                if fp
                    .hit(&format!("flow.{kind}.{}.undoing", step.name))
                    .is_err_and(|f| f.is_crash())
                {
                    return Err(StepError::from(Fault::Crashed(step.name.to_owned())));
                }
                f(cx).await?;
                if self.inner.options.rerun_undos {
                    f(cx).await?;
                }
                let mut tx = store.begin().await?;
                db::flow_step_set(
                    &mut tx,
                    cx.flow_id,
                    idx,
                    step.name,
                    StepState::Undone,
                    None,
                    None,
                )
                .await?;
                tx.commit().await.map_err(StoreError::from)?;
            }
        }
        Ok(())
    }
}

fn set_record(
    records: &mut Vec<StepRecord>,
    idx: usize,
    name: &str,
    state: StepState,
    output: Option<Value>,
) {
    match records.iter_mut().find(|r| r.idx == idx as i64) {
        Some(r) => {
            r.state = state;
            if output.is_some() {
                r.output = output;
            }
        }
        None => {
            records.push(StepRecord {
                idx: idx as i64,
                name: name.to_owned(),
                state,
                attempts: 1,
                output,
                error: None,
            });
            records.sort_by_key(|r| r.idx);
        }
    }
}

/// Flows that drive other flows. A step of a parent flow starts child flows
/// (each one persisted and resumed on its own) and waits for them; after a
/// crash the engine resumes the children and the parent's step runs again,
/// finds them by their resource and waits for them again. The parent step
/// must therefore judge the outcome from the store (what exists now), not
/// from the handles of one run.
impl<F: Flow> Cx<F> {
    /// Start a flow from this step. It runs on its own, like any flow.
    pub fn start_flow<G: Flow<Env = F::Env>>(
        &self,
        params: G::Params,
    ) -> Result<FlowHandle, StepError> {
        let engine = self.engine.upgrade().ok_or_else(StepError::interrupted)?;
        engine.start::<G>(params).map_err(|e| match e {
            EngineError::ShuttingDown => StepError::interrupted(),
            other => StepError::new(other),
        })
    }

    /// Wait for a flow this step started. `Ok` when it completed; its error
    /// when it failed; [`StepError::interrupted`] when the engine stopped
    /// first (the child resumes at the next start, and so does this step).
    pub async fn wait_flow(&self, handle: &FlowHandle) -> Result<(), StepError> {
        match handle.wait().await {
            Outcome::Done => Ok(()),
            Outcome::Failed(e) => Err(e),
            Outcome::Stuck(m) => Err(StepError::msg(m)),
            Outcome::Interrupted => Err(StepError::interrupted()),
        }
    }

    /// Wait until no flow working on `resource_id` is running or unwinding
    /// (one resumed after a restart, or started by an earlier run of this
    /// step). [`StepError::interrupted`] when the engine stops first.
    pub async fn wait_settled(&self, resource_id: &str) -> Result<(), StepError> {
        loop {
            let engine = self.engine.upgrade().ok_or_else(StepError::interrupted)?;
            if engine.stopping() || engine.inner.fp.is_dead() {
                return Err(StepError::interrupted());
            }
            let mut ended = engine.ended();
            ended.borrow_and_update();
            let busy = {
                let mut conn = engine.inner.store.read().await?;
                db::flow_list_unsettled_for(&mut conn, resource_id)
                    .await?
                    .iter()
                    .any(|f| f.state.is_active())
            };
            if !busy {
                return Ok(());
            }
            drop(engine);
            // Woken when a flow of this engine ends; the timeout covers flows
            // of another process.
            let _ = tokio::time::timeout(Duration::from_millis(200), ended.changed()).await;
        }
    }
}
