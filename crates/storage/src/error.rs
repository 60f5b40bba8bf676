//! The storage layer's errors: what went wrong, for operators (the
//! application layer decides what a user sees).

use scoria_failpoints::Fault;

/// Errors of the storage layer. Messages are for operators; the application layer
/// decides what a user sees.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("image {0} not found")]
    NotFound(String),
    #[error("invalid image name {0:?}")]
    InvalidName(String),
    #[error("image {name} exists with a different shape: {detail}")]
    Mismatch { name: String, detail: String },
    #[error("invalid image size {size}: {detail}")]
    InvalidSize { size: u64, detail: String },
    #[error("image {name} is not a valid image of its format: {detail}")]
    BadImage { name: String, detail: String },
    #[error("image {0} is immutable")]
    Immutable(String),
    #[error("image {0} is not immutable, so nothing can be layered on it")]
    MutableBase(String),
    #[error("the backend cannot do this: {0}")]
    Unsupported(String),
    #[error("no space left on the backend")]
    NoSpace,
    #[error("backup {backup}: chunk {index} ({hash}) is {problem}")]
    BadChunk {
        backup: String,
        index: u64,
        hash: String,
        problem: String,
    },
    /// An object store's request failed: which object, and the HTTP status
    /// and S3 error code, or the transport's error.
    #[error("object store: {op} of {bucket}/{key} failed: {detail}")]
    ObjectStore {
        op: String,
        bucket: String,
        key: String,
        detail: String,
    },
    #[error("{op} failed")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed: {stderr}")]
    Qemu { command: String, stderr: String },
    #[error("{command} printed output that could not be parsed")]
    QemuOutput {
        command: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("image {name} is refused: {refusal}")]
    Refused {
        name: String,
        #[source]
        refusal: crate::inspect::Refusal,
    },
    #[error(transparent)]
    Failpoint(#[from] Fault),
}

impl StorageError {
    /// True when a failpoint simulated a process crash: the caller must stop
    /// without writing anything.
    pub fn is_crash(&self) -> bool {
        matches!(self, StorageError::Failpoint(f) if f.is_crash())
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// An I/O error as a [`StorageError`]: a full file system (or quota) becomes
/// [`StorageError::NoSpace`], anything else [`StorageError::Io`] naming the operation.
pub(crate) fn io_error(op: impl Into<String>, source: std::io::Error) -> StorageError {
    match source.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => StorageError::NoSpace,
        _ => StorageError::Io {
            op: op.into(),
            source,
        },
    }
}
