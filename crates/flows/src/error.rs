//! How steps fail and how flows end: [`StepError`] (what a step returns),
//! [`Outcome`] (how a flow ended, as seen by this process) and [`EngineError`]
//! (starting or resuming flows). The bottom of the crate: everything else
//! uses these, they use nothing of the crate.

use std::sync::Arc;

use scoria_store::StoreError;

/// How a flow ended, as seen by this process.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Every step succeeded.
    Done,
    /// A step failed and every completed step was undone.
    Failed(StepError),
    /// A step failed and an undo kept failing (or the flow cannot be run by
    /// this build): the flow waits for an admin.
    Stuck(String),
    /// The engine stopped (shutdown, a simulated crash, or the flow's lease
    /// was lost to another node) before the flow ended; a later engine
    /// resumes it.
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

/// A step's failure. It carries the original error (for the caller to inspect
/// with [`StepError::downcast_ref`]) and renders as its message.
#[derive(Clone)]
pub struct StepError {
    inner: Arc<dyn std::error::Error + Send + Sync>,
}

impl StepError {
    /// Wrap any error.
    pub fn new<E: std::error::Error + Send + Sync + 'static>(e: E) -> Self {
        StepError { inner: Arc::new(e) }
    }

    /// The step (or undo) could not finish because the engine is stopping
    /// (shutdown, or a simulated crash): the engine leaves the flow for the
    /// next start, which runs the step (or undo) again, instead of unwinding
    /// it (or declaring it stuck). For steps that wait for other flows
    /// ([`crate::Cx::wait_flow`], [`crate::Cx::wait_settled`]).
    pub fn interrupted() -> Self {
        StepError::new(Interrupted)
    }

    /// Is this [`StepError::interrupted`]?
    pub fn is_interrupted(&self) -> bool {
        self.downcast_ref::<Interrupted>().is_some()
    }

    /// An error with only a message.
    pub fn msg(m: impl Into<String>) -> Self {
        #[derive(Debug)]
        struct Msg(String);
        impl std::fmt::Display for Msg {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::error::Error for Msg {}
        StepError::new(Msg(m.into()))
    }

    /// The original error, if it is a `T`.
    pub fn downcast_ref<T: std::error::Error + 'static>(&self) -> Option<&T> {
        self.inner.downcast_ref::<T>()
    }

    /// The message and every source, for logs.
    pub fn chain(&self) -> String {
        let mut s = self.inner.to_string();
        let mut src = self.inner.source();
        while let Some(e) = src {
            s.push_str(": ");
            s.push_str(&e.to_string());
            src = e.source();
        }
        s
    }
}

/// See [`StepError::interrupted`].
#[derive(Debug)]
struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the engine stopped before the step could finish")
    }
}

impl std::error::Error for Interrupted {}

impl std::fmt::Debug for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StepError({})", self.chain())
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> Self {
        StepError::new(e)
    }
}

impl From<scoria_failpoints::Fault> for StepError {
    fn from(e: scoria_failpoints::Fault) -> Self {
        StepError::new(e)
    }
}
