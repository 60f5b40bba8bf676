//! Running a flow forwards: consecutive database steps in one transaction
//! (a batch), external steps between their `started` and `done` records, the
//! retry rules of a batch, and the lease check that opens every transaction.

use std::sync::atomic::Ordering;
use std::time::Duration;

use scoria_failpoints::Fault;
use scoria_model::FlowId;
use scoria_model::flow::{FlowState, StepState};
use scoria_store::StoreError;
use scoria_store::flows::{self as db, NewFlow, StepRecord};
use serde_json::Value;
use tokio::sync::watch;
use tracing::Instrument;

use super::Engine;
use crate::definition::Definition;
use crate::error::{Outcome, StepError};
use crate::handle::Status;
use crate::lease::LeaseLost;
use crate::step::{Cx, DbFn, Failure, Flow, FlowMeta, Run, Step};

/// One try at a transaction of steps.
enum Attempt {
    Done(Batch),
    /// Step `i` failed; the transaction was dropped.
    StepFailed(usize, StepError),
    /// The lease check failed; the transaction was dropped.
    LeaseLost,
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
    /// The flow is no longer this engine's: stop here, writing nothing.
    LeaseLost,
}

/// A new flow's row, stored by its first transaction.
pub(super) struct Birth {
    meta: FlowMeta,
    params: Value,
}

/// The end of a transaction of steps: its step records and where the flow
/// stands now, in one command ([`db::flow_steps_set_and_advance`]).
async fn finish_batch<F: Flow>(
    tx: &mut scoria_store::Tx,
    flow: FlowId,
    defs: &[Step<F>],
    writes: &[(usize, StepState, Option<Value>)],
    advance: db::Advance<'_>,
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
    db::flow_steps_set_and_advance(tx, flow, &rows, &advance).await
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

pub(super) enum Start {
    New {
        meta: FlowMeta,
        params: Value,
    },
    Resume {
        state: FlowState,
        records: Vec<StepRecord>,
    },
}

impl<E: Send + Sync + 'static> Engine<E> {
    /// Run the flow from where it is to its end (or until it stops).
    pub(super) async fn drive<F: Flow<Env = E>>(
        &self,
        cx: &mut Cx<F>,
        def: &Definition<F>,
        start: Start,
        status: &watch::Sender<Status>,
    ) -> Outcome {
        let span = tracing::info_span!("flow", flow = %cx.flow_id, kind = F::KIND);
        self.forward(cx, def, start, status).instrument(span).await
    }

    async fn forward<F: Flow<Env = E>>(
        &self,
        cx: &mut Cx<F>,
        def: &Definition<F>,
        start: Start,
        status: &watch::Sender<Status>,
    ) -> Outcome {
        let kind = F::KIND;
        let defs: &[Step<F>] = &def.steps;
        let (mut birth, mut records) = match start {
            Start::New { meta, params } => (Some(Birth { meta, params }), Vec::new()),
            Start::Resume {
                state: FlowState::Unwinding,
                records,
            } => {
                let Failure { step, message } = cx.failure.clone().unwrap_or(Failure {
                    step: String::new(),
                    message: String::new(),
                });
                status.send_modify(|s| s.failed_step = Some(step.clone()));
                let err = StepError::msg(message);
                return self.unwind(cx, defs, &records, &step, err).await;
            }
            Start::Resume { records, .. } => (None, records),
        };
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
            let batch = self
                .run_batch(
                    cx,
                    def,
                    &mut next,
                    birth.as_ref(),
                    pending.take(),
                    &mut records,
                )
                .await;
            let (done, external) = match batch {
                Batch::Committed { done, external } => (done, external),
                Batch::Failed {
                    step,
                    err,
                    persisted,
                } => {
                    if self.inner.fp.is_dead() {
                        return Outcome::Interrupted;
                    }
                    tracing::warn!(step, error = %err.chain(), "flow step failed");
                    status.send_modify(|s| s.failed_step = Some(step.to_owned()));
                    if !persisted {
                        // Nothing was stored: the flow never existed.
                        return Outcome::Failed(err);
                    }
                    cx.lease.mark_stored();
                    status.send_modify(|s| s.steps_done = leading_done(&records));
                    if self
                        .after_commit(&format!("flow.{kind}.unwinding"))
                        .is_err()
                    {
                        return Outcome::Interrupted;
                    }
                    cx.failure = Some(Failure {
                        step: step.to_owned(),
                        message: err.to_string(),
                    });
                    return self.unwind(cx, defs, &records, step, err).await;
                }
                Batch::Lost => return Outcome::Interrupted,
                Batch::LeaseLost => return self.lease_lost(cx),
            };
            if birth.take().is_some() {
                cx.lease.mark_stored();
            }
            status.send_modify(|s| s.steps_done = leading_done(&records));
            for d in done {
                let point = format!("flow.{kind}.{}.done", defs[d].name);
                if self.after_commit(&point).is_err() {
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
            let span = tracing::info_span!("step", step = step.name, index = x);
            match self.run_external(cx, x, step).instrument(span).await {
                Ok(out) => pending = Some((x, out)),
                // Recorded `started`: whoever runs the flow next runs it again.
                Err(_) if cx.lease.is_lost() => return self.lease_lost(cx),
                Err(err) if self.inner.fp.is_dead() || err.is_interrupted() => {
                    return Outcome::Interrupted;
                }
                Err(err) => {
                    tracing::warn!(step = step.name, error = %err.chain(), "flow step failed");
                    status.send_modify(|s| s.failed_step = Some(step.name.to_owned()));
                    return self.unwind_from(cx, defs, &records, step.name, err).await;
                }
            }
        }
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
    ///
    /// Every attempt opens with the lease check (a new flow's first one
    /// creates the flow, owned by this node, instead).
    async fn run_batch<F: Flow<Env = E>>(
        &self,
        cx: &mut Cx<F>,
        def: &Definition<F>,
        next: &mut usize,
        birth: Option<&Birth>,
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
                    def,
                    next,
                    birth,
                    pending.as_ref(),
                    records,
                    stop_before.as_ref(),
                )
                .await;
            match attempt {
                Ok(Attempt::Done(b)) => return b,
                Ok(Attempt::LeaseLost) => return Batch::LeaseLost,
                Ok(Attempt::StepFailed(i, err)) => {
                    if self.inner.fp.is_dead() {
                        return Batch::Lost;
                    }
                    if i == first && birth.is_some() && pending.is_none() {
                        // Nothing was stored: the flow never existed.
                        return Batch::Failed {
                            step: def.steps[i].name,
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
        def: &Definition<F>,
        next: &mut usize,
        birth: Option<&Birth>,
        pending: Option<&(usize, Value)>,
        records: &mut Vec<StepRecord>,
        stop_before: Option<&(usize, StepError)>,
    ) -> Result<Attempt, StoreError> {
        let defs: &[Step<F>] = &def.steps;
        let leases = &self.inner.leases;
        if cx.lease.is_lost() {
            return Ok(Attempt::LeaseLost);
        }
        let term = leases.term();
        let mut tx = match birth {
            Some(Birth { meta, params }) => {
                let new_flow = NewFlow {
                    id: cx.flow_id,
                    kind: F::KIND,
                    resource_type: meta.resource_type,
                    resource_id: meta.resource_id.as_deref(),
                    project_id: meta.project_id.as_deref(),
                    params,
                    steps_total: defs.len() as i64,
                    first_step: defs[0].name,
                    definition_version: i64::from(def.version),
                    step_names: &def.names,
                    owner: &leases.node,
                    lease_until: &term.until,
                };
                self.inner.store.begin_creating(&new_flow).await?
            }
            None => match leases
                .begin_held(&self.inner.store, &cx.lease, &term)
                .await?
            {
                Some(tx) => tx,
                None => return Ok(Attempt::LeaseLost),
            },
        };
        // (index, state, output) of the records this transaction writes.
        let mut writes: Vec<(usize, StepState, Option<Value>)> = Vec::new();
        if let Some((x, out)) = pending {
            writes.push((*x, StepState::Done, Some(out.clone())));
            // The steps of this transaction read it too.
            cx.outputs.insert(defs[*x].name.to_owned(), out.clone());
        }
        let flow = cx.flow_id;
        loop {
            let i = *next;
            if let Some((k, err)) = stop_before
                && *k == i
            {
                let msg = err.to_string();
                let advance = db::Advance {
                    idx: i as i64,
                    step_name: Some(defs[i].name),
                    state: FlowState::Unwinding,
                    failed_step: Some(defs[i].name),
                    error: Some(&msg),
                };
                finish_batch(&mut tx, flow, defs, &writes, advance).await?;
                self.commit_held(tx, cx, &term).await?;
                self.apply(cx, defs, records, &writes);
                return Ok(Attempt::Done(Batch::Failed {
                    step: defs[i].name,
                    err: err.clone(),
                    persisted: true,
                }));
            }
            let Some(step) = defs.get(i) else {
                let advance = db::Advance {
                    idx: defs.len() as i64,
                    step_name: None,
                    state: FlowState::Done,
                    failed_step: None,
                    error: None,
                };
                finish_batch(&mut tx, flow, defs, &writes, advance).await?;
                self.commit_held(tx, cx, &term).await?;
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
                    let advance = db::Advance {
                        idx: i as i64,
                        step_name: Some(step.name),
                        state: FlowState::Running,
                        failed_step: None,
                        error: None,
                    };
                    finish_batch(&mut tx, flow, defs, &writes, advance).await?;
                    self.commit_held(tx, cx, &term).await?;
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
        f: DbFn<F>,
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

    /// An external step's action (its `started` record is committed), raced
    /// against the flow's lease: if the lease is lost while it runs, the
    /// action is dropped where it is (an external step is idempotent and
    /// survives being cut short, as it survives a crash).
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
        let cx: &Cx<F> = cx;
        let action = async {
            fp.hit(&format!("flow.{kind}.{}.run", step.name))?;
            let mut out = f(cx).await?;
            if self.inner.options.rerun_steps {
                out = f(cx).await?;
            }
            fp.hit(&format!("flow.{kind}.{}.ran", step.name))?;
            Ok(out)
        };
        tokio::select! {
            res = action => res,
            () = cx.lease.fenced() => Err(StepError::new(LeaseLost)),
        }
    }
}

pub(super) fn set_record(
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
