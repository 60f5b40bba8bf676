//! Running a flow backwards: once a step failed, undo in reverse every step
//! that is done or may have started; retry an undo that fails; leave the flow
//! `stuck` when one keeps failing. Every transaction opens with the lease
//! check; a run that lost its lease stops where it is.

use scoria_failpoints::Fault;
use scoria_model::flow::{FlowState, StepState};
use scoria_store::StoreError;
use scoria_store::flows::{self as db, StepRecord};
use tracing::Instrument;

use super::Engine;
use crate::error::{Outcome, StepError};
use crate::lease::LeaseLost;
use crate::step::{Cx, Failure, Flow, Step, Undo};

impl<E: Send + Sync + 'static> Engine<E> {
    /// Mark the flow unwinding (step `failed` failed with `err`), then unwind.
    pub(super) async fn unwind_from<F: Flow<Env = E>>(
        &self,
        cx: &mut Cx<F>,
        defs: &[Step<F>],
        records: &[StepRecord],
        failed: &str,
        err: StepError,
    ) -> Outcome {
        let message = err.to_string();
        let res = async {
            let Some((mut tx, term)) = self.begin_held(cx).await? else {
                return Ok(false);
            };
            db::flow_set_state(
                &mut tx,
                cx.flow_id,
                FlowState::Unwinding,
                Some(failed),
                Some(&message),
            )
            .await?;
            self.commit_held(tx, cx, &term).await?;
            Ok::<_, StoreError>(true)
        }
        .await;
        match res {
            Ok(true) => {}
            Ok(false) => return self.lease_lost(cx),
            Err(e) => {
                // The flow stays `running` in the store; the next start resumes
                // it from the failed step, which is the safe direction.
                tracing::error!(error = %e, "could not record the flow as unwinding");
                return Outcome::Interrupted;
            }
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
    pub(super) async fn unwind<F: Flow<Env = E>>(
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
            if cx.lease.is_lost() {
                return self.lease_lost(cx);
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
                    Err(_) if cx.lease.is_lost() => return self.lease_lost(cx),
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
                            let Some((mut tx, term)) = self.begin_held(cx).await? else {
                                return Ok(false);
                            };
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
                            self.commit_held(tx, cx, &term).await?;
                            Ok::<_, StoreError>(true)
                        }
                        .await;
                        return match res {
                            Ok(true) => Outcome::Stuck(message),
                            Ok(false) => self.lease_lost(cx),
                            Err(se) => {
                                tracing::error!(error = %se, "could not record the flow as stuck");
                                Outcome::Interrupted
                            }
                        };
                    }
                }
            }
        }
        let res = async {
            let Some((mut tx, term)) = self.begin_held(cx).await? else {
                return Ok(false);
            };
            db::flow_set_state(&mut tx, cx.flow_id, FlowState::Failed, Some(failed), None).await?;
            self.commit_held(tx, cx, &term).await?;
            Ok::<_, StoreError>(true)
        }
        .await;
        match res {
            Ok(true) => {}
            Ok(false) => return self.lease_lost(cx),
            Err(e) => {
                tracing::error!(error = %e, "could not record the flow as failed");
                return Outcome::Interrupted;
            }
        }
        if self.after_commit(&format!("flow.{kind}.finished")).is_err() {
            return Outcome::Interrupted;
        }
        Outcome::Failed(err)
    }

    /// One undo, recorded under the lease. An external undo's action is
    /// raced against the lease, like an external step's.
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
        let lost = || StepError::new(LeaseLost);
        fp.hit(&format!("flow.{kind}.{}.undo", step.name))?;
        match undo {
            Undo::Db(f) => {
                if self.inner.options.rerun_undos {
                    let mut tx = store.begin().await?;
                    f(cx, &mut tx).await?;
                    tx.rollback().await.map_err(StoreError::from)?;
                }
                let (mut tx, term) = self.begin_held(cx).await?.ok_or_else(lost)?;
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
                self.commit_held(tx, cx, &term).await?;
            }
            Undo::External(f) => {
                let (mut tx, term) = self.begin_held(cx).await?.ok_or_else(lost)?;
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
                self.commit_held(tx, cx, &term).await?;
                if fp
                    .hit(&format!("flow.{kind}.{}.undoing", step.name))
                    .is_err_and(|f| f.is_crash())
                {
                    return Err(StepError::from(Fault::Crashed(step.name.to_owned())));
                }
                let cx: &Cx<F> = cx;
                let action = async {
                    f(cx).await?;
                    if self.inner.options.rerun_undos {
                        f(cx).await?;
                    }
                    Ok::<_, StepError>(())
                };
                tokio::select! {
                    res = action => res?,
                    () = cx.lease.fenced() => return Err(lost()),
                }
                let (mut tx, term) = self.begin_held(cx).await?.ok_or_else(lost)?;
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
                self.commit_held(tx, cx, &term).await?;
            }
        }
        Ok(())
    }
}
