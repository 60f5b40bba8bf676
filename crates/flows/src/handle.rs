//! Following a flow from outside: a [`FlowHandle`] watches the [`Status`] its
//! run publishes (steps done so far, then the outcome).

use std::sync::Arc;

use scoria_model::FlowId;
use tokio::sync::watch;

use crate::error::Outcome;

#[derive(Clone, Debug, Default)]
pub(crate) struct Status {
    /// Number of leading steps known to be done.
    pub(crate) steps_done: usize,
    /// The step whose failure the flow unwinds from (or failed at).
    pub(crate) failed_step: Option<String>,
    pub(crate) outcome: Option<Outcome>,
}

/// A way to follow one flow started or resumed by this engine.
#[derive(Clone, Debug)]
pub struct FlowHandle {
    pub id: FlowId,
    pub(crate) names: Arc<Vec<&'static str>>,
    pub(crate) rx: watch::Receiver<Status>,
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

    /// The step whose failure made the flow unwind, once one failed (also
    /// for a first step that failed before anything was stored).
    pub fn failed_step(&self) -> Option<String> {
        self.rx.borrow().failed_step.clone()
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

/// Publish how the run ended.
pub(crate) fn finish(tx: &watch::Sender<Status>, outcome: Outcome) {
    tx.send_modify(|s| s.outcome = Some(outcome));
}
