//! The one error type of the application layer.
//!
//! Every operation a client can ask for fails with one of these kinds. Each
//! carries a message written for the user (it becomes the `message` of Cinder's
//! fault body at the HTTP edge, which alone picks the status code) and, for
//! internal failures, the source chain for the log. Nothing here knows HTTP.

use scoria_model::quota::QuotaExceeded;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The resource does not exist, or the caller may not know it does.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed or asks for something impossible.
    #[error("{0}")]
    Invalid(String),
    /// The request is well-formed but the resource's state forbids it now.
    #[error("{0}")]
    InvalidState(String),
    /// The request collides with something that exists (a duplicate name).
    #[error("{0}")]
    Conflict(String),
    /// The request would exceed a quota.
    #[error("{0}")]
    OverQuota(#[from] QuotaExceeded),
    /// The request (an upload) is larger than a limit allows, or would take
    /// its project over a byte quota of the image service.
    #[error("{0}")]
    TooLarge(String),
    /// The caller is authenticated but may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The caller is not (or no longer) authenticated.
    #[error("{0}")]
    Unauthorized(String),
    /// A service Scoria relies on cannot serve the request now.
    #[error("{0}")]
    Unavailable(String),
    /// Something broke inside Scoria; the user sees only the message.
    #[error("{message}")]
    Internal {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn internal(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Internal {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The message and every source, for logs.
    pub fn chain(&self) -> String {
        let mut s = self.to_string();
        let mut src = std::error::Error::source(self);
        while let Some(e) = src {
            s.push_str(": ");
            s.push_str(&e.to_string());
            src = e.source();
        }
        s
    }

    /// `"Volume <id> could not be found."`, Cinder's wording.
    pub fn volume_not_found(id: impl std::fmt::Display) -> Self {
        Error::NotFound(format!("Volume {id} could not be found."))
    }
}

impl From<scoria_store::StoreError> for Error {
    fn from(e: scoria_store::StoreError) -> Self {
        use scoria_store::StoreError as S;
        match e {
            S::OverQuota(q) => Error::OverQuota(q),
            S::Duplicate(what) => Error::Conflict(format!("{what} already exists.")),
            S::MarkerNotFound(m) => Error::Invalid(format!("Marker {m} could not be found.")),
            other => Error::internal("The database failed to serve the request.", other),
        }
    }
}

impl From<scoria_flows::EngineError> for Error {
    fn from(e: scoria_flows::EngineError) -> Self {
        match e {
            scoria_flows::EngineError::ShuttingDown => {
                Error::Unavailable("Scoria is shutting down; retry shortly.".into())
            }
            other => Error::internal("The operation could not be started.", other),
        }
    }
}

/// A storage failure as a step error: the user reads `what failed`, the log
/// gets the driver's detail; a crash injected by a test stays a crash.
pub(crate) fn storage_error(
    what: &str,
    e: scoria_storage::StorageError,
) -> scoria_flows::StepError {
    if e.is_crash() {
        return scoria_flows::StepError::new(e);
    }
    scoria_flows::StepError::new(Error::internal(format!("The backend failed to {what}."), e))
}

impl From<Error> for scoria_flows::StepError {
    fn from(e: Error) -> Self {
        scoria_flows::StepError::new(e)
    }
}

/// What a caller of a flow learns when it fails before answering: the original
/// application error when a step failed with one, else an internal error.
pub(crate) fn from_outcome(o: scoria_flows::Outcome) -> Error {
    use scoria_flows::Outcome;
    match o {
        Outcome::Failed(step) => match step.downcast_ref::<Error>() {
            Some(e) => clone_error(e),
            None => match step.downcast_ref::<scoria_store::StoreError>() {
                Some(scoria_store::StoreError::OverQuota(q)) => Error::OverQuota(q.clone()),
                _ => Error::Internal {
                    message: step.to_string(),
                    source: None,
                },
            },
        },
        Outcome::Stuck(m) => Error::Internal {
            message: m,
            source: None,
        },
        Outcome::Interrupted => Error::Unavailable(
            "The operation was interrupted; it resumes when Scoria restarts.".into(),
        ),
        Outcome::Done => Error::Internal {
            message: "flow finished unexpectedly".into(),
            source: None,
        },
    }
}

fn clone_error(e: &Error) -> Error {
    match e {
        Error::NotFound(m) => Error::NotFound(m.clone()),
        Error::Invalid(m) => Error::Invalid(m.clone()),
        Error::InvalidState(m) => Error::InvalidState(m.clone()),
        Error::Conflict(m) => Error::Conflict(m.clone()),
        Error::OverQuota(q) => Error::OverQuota(q.clone()),
        Error::TooLarge(m) => Error::TooLarge(m.clone()),
        Error::Forbidden(m) => Error::Forbidden(m.clone()),
        Error::Unauthorized(m) => Error::Unauthorized(m.clone()),
        Error::Unavailable(m) => Error::Unavailable(m.clone()),
        Error::Internal { message, .. } => Error::Internal {
            message: message.clone(),
            source: None,
        },
    }
}
