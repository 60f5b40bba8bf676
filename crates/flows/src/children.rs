//! Flows that drive other flows: [`Cx::start_flow`], [`Cx::wait_flow`] and
//! [`Cx::wait_settled`], for steps (and undos) that start child flows and
//! wait for them. Above the engine, which it calls to start children.

use std::time::Duration;

use scoria_store::flows as db;

use crate::engine::Engine;
use crate::error::{EngineError, Outcome, StepError};
use crate::handle::FlowHandle;
use crate::step::{Cx, Flow};

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
        let engine = self.engine().ok_or_else(StepError::interrupted)?;
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
            let engine = self.engine().ok_or_else(StepError::interrupted)?;
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

impl<F: Flow> Cx<F> {
    /// The engine running this flow, unless it is gone.
    fn engine(&self) -> Option<Engine<F::Env>> {
        self.engine.upgrade().map(|inner| Engine { inner })
    }
}
