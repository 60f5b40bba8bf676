//! The storage layer: where volume bytes live.
//!
//! A [`Driver`] manages the images of one backend (a storage pool). It knows files,
//! formats and sizes; it knows nothing of projects, quotas, HTTP or the database.
//! Every method is idempotent, because the flow engine runs an external step at
//! least once: "already exists" (with the same shape) and "already gone" are
//! success, and an interrupted call leaves either nothing or a complete image
//! behind (work is done under a temporary name and renamed into place).
//!
//! Two drivers implement it:
//! - [`file::FileDriver`]: images as files in a backend directory, qcow2 (default)
//!   or raw (sparse). Blank images are written natively (byte-identical to what
//!   `qemu-img create` writes); everything else goes through [`qemu`], the only
//!   module in Scoria that spawns `qemu-*` processes.
//! - [`memory::MemoryDriver`]: images as entries in a map, for fast tests of logic
//!   that never claim a volume works.
//!
//! Images are addressed by a *name* (`volume-<uuid>`), chosen by the caller in an
//! earlier persisted step, so that a re-run finds what the first run made.

use std::sync::Arc;

pub mod file;
pub mod memory;
pub mod qcow2;
pub mod qemu;

pub use scoria_failpoints::{Failpoints, Fault};

/// On-disk format of an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Qcow2,
    Raw,
}

impl Format {
    /// The name `qemu-img -f` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Qcow2 => "qcow2",
            Format::Raw => "raw",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "qcow2" => Ok(Format::Qcow2),
            "raw" => Ok(Format::Raw),
            other => Err(format!("unknown image format {other:?} (qcow2, raw)")),
        }
    }
}

/// What to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    /// File name inside the backend, e.g. `volume-<uuid>`; no path separators.
    pub name: String,
    /// Virtual size in bytes.
    pub size: u64,
    pub format: Format,
}

/// What an image on a backend is, as `qemu-img info` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    pub name: String,
    pub format: Format,
    /// Virtual size in bytes.
    pub virtual_size: u64,
    /// Bytes allocated on the host file system.
    pub actual_size: u64,
    /// Backing file, if the image has one (blank volumes never do).
    pub backing_file: Option<String>,
}

/// Capacity of a backend, for the scheduler.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capacity {
    /// Size of the file system that holds the backend, in bytes.
    pub total: u64,
    /// Bytes free on that file system.
    pub free: u64,
}

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
    #[error("no space left on the backend")]
    NoSpace,
    #[error("{op} failed")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed: {stderr}")]
    Qemu { command: String, stderr: String },
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

/// A backend's image operations. All methods are idempotent (see the module doc).
#[async_trait::async_trait]
pub trait Driver: Send + Sync + std::fmt::Debug {
    /// `"file"` or `"memory"`.
    fn kind(&self) -> &'static str;

    /// Create a blank image. If an image of that name already exists with the same
    /// format and virtual size, succeed; if it differs, fail with `Mismatch`.
    async fn create(&self, spec: &ImageSpec) -> Result<()>;

    /// Remove an image; an absent image is success.
    async fn delete(&self, name: &str) -> Result<()>;

    /// Grow an image to `new_size` bytes; an image already that large is success.
    /// Never shrinks.
    async fn extend(&self, name: &str, new_size: u64) -> Result<()>;

    /// Describe an image, or `None` when absent.
    async fn info(&self, name: &str) -> Result<Option<ImageInfo>>;

    /// Names of the images present (temporary files of interrupted work excluded).
    async fn list(&self) -> Result<Vec<String>>;

    /// Total and free bytes of the backend.
    async fn capacity(&self) -> Result<Capacity>;
}

pub type DynDriver = Arc<dyn Driver>;
