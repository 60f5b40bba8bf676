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
//!   or raw (sparse). Blank images are written natively by [`qcow2`]
//!   (byte-identical to what `qemu-img create` writes); everything else goes
//!   through [`qemu`], the only module in Scoria that spawns `qemu-*` processes.
//! - [`memory::MemoryDriver`]: images as entries in a map, for fast tests of logic
//!   that never claim a volume works.
//!
//! # Names carry the format
//!
//! Images are addressed by a *name* chosen by the caller in an earlier persisted
//! step, so that a re-run finds what the first run made. The name ends in the
//! format's extension, `volume-<uuid>.qcow2` or `volume-<uuid>.raw` (see
//! [`format_of_name`]). The format is therefore never guessed from a file's
//! content: a raw volume whose guest wrote a qcow2 magic at offset 0 stays raw, and
//! `delete`, `extend`, `info` and `list` need nothing but the name.
//!
//! # Sizes
//!
//! Sizes are bytes and must be multiples of 512 ([`SECTOR_SIZE`]), as qemu's block
//! layer requires; `qemu-img create` would silently round other sizes up, Scoria
//! refuses them ([`StorageError::InvalidSize`]).
//!
//! # Failpoints
//!
//! Both drivers hit the same failpoints (see `scoria-failpoints`), listed in
//! [`FAILPOINTS`]:
//!
//! ```text
//!   storage.create.before   before anything is written (also on the idempotent path)
//!   storage.create.temp     the new image is complete and synced under its
//!                           temporary name, not yet renamed into place
//!   storage.create.after    the image is durable under its final name
//!   storage.copy.before     before anything is written (also on the idempotent path)
//!   storage.copy.temp       the copy is complete and synced under its temporary
//!                           name, not yet renamed into place
//!   storage.copy.after      the copy is durable under its final name
//!   storage.delete.before   before anything is removed
//!   storage.delete.after    the image (and any temporary of it) is durably gone
//!   storage.extend.before   before the image is grown
//!   storage.extend.after    the image is durably grown
//! ```
//!
//! The `.after` points are hit only by a call that changed something: a `create`
//! (or `copy_from`) that found the image already there returns before
//! `storage.create.after` (`storage.copy.after`), an `extend` to a size the image
//! already has returns before `storage.extend.after`.

use std::sync::Arc;

pub mod export;
pub mod file;
pub mod memory;
pub mod qcow2;
pub mod qemu;

pub use scoria_failpoints::{Failpoints, Fault};

/// Every failpoint name of this crate, in the order a call reaches them.
pub const FAILPOINTS: &[&str] = &[
    "storage.create.before",
    "storage.create.temp",
    "storage.create.after",
    "storage.copy.before",
    "storage.copy.temp",
    "storage.copy.after",
    "storage.delete.before",
    "storage.delete.after",
    "storage.extend.before",
    "storage.extend.after",
];

/// Image sizes are multiples of this many bytes.
pub const SECTOR_SIZE: u64 = 512;

/// The longest image name. A file name may have 255 bytes and the temporary file
/// of an image is named `.<name>.tmp`, five bytes longer than the name.
pub const MAX_NAME_LEN: usize = 250;

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

    /// The file-name extension of images of this format, without the dot.
    pub fn extension(self) -> &'static str {
        self.as_str()
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Validate an image name and return the format its extension names.
///
/// A name is 1 to [`MAX_NAME_LEN`] bytes of `[A-Za-z0-9._-]`, does not start with
/// a dot (those are temporaries and hidden files) and ends in `.qcow2` or `.raw`
/// after a non-empty stem. Anything else is [`StorageError::InvalidName`]: a name
/// can never address a file outside the backend or a temporary.
pub fn format_of_name(name: &str) -> Result<Format> {
    let invalid = || StorageError::InvalidName(name.to_owned());
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || name.starts_with('.')
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(invalid());
    }
    let (stem, extension) = name.rsplit_once('.').ok_or_else(invalid)?;
    if stem.is_empty() {
        return Err(invalid());
    }
    match extension {
        "qcow2" => Ok(Format::Qcow2),
        "raw" => Ok(Format::Raw),
        _ => Err(invalid()),
    }
}

/// Check that `size` is a valid virtual size for an image of `format`: a multiple
/// of [`SECTOR_SIZE`] and, for qcow2, at most [`qcow2::MAX_VIRTUAL_SIZE`].
pub fn validate_size(format: Format, size: u64) -> Result<()> {
    if !size.is_multiple_of(SECTOR_SIZE) {
        return Err(StorageError::InvalidSize {
            size,
            detail: format!("not a multiple of {SECTOR_SIZE} bytes"),
        });
    }
    if format == Format::Qcow2 && size > qcow2::MAX_VIRTUAL_SIZE {
        return Err(StorageError::InvalidSize {
            size,
            detail: format!(
                "larger than {} bytes, the largest qcow2 image with 64 KiB clusters",
                qcow2::MAX_VIRTUAL_SIZE
            ),
        });
    }
    Ok(())
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
    /// File name inside the backend, e.g. `volume-<uuid>.qcow2`; see
    /// [`format_of_name`].
    pub name: String,
    /// Virtual size in bytes, a multiple of [`SECTOR_SIZE`].
    pub size: u64,
    /// Must agree with the name's extension.
    pub format: Format,
}

impl ImageSpec {
    /// Validate the name, the agreement of format and extension, and the size.
    pub fn validate(&self) -> Result<()> {
        if format_of_name(&self.name)? != self.format {
            return Err(StorageError::InvalidName(self.name.clone()));
        }
        validate_size(self.format, self.size)
    }
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
    /// External data file of a qcow2 image (`data-file`), if it has one. Empty when
    /// the header says there is one without naming it.
    pub data_file: Option<String>,
}

impl ImageInfo {
    /// True when reading the image would read another file too: a backing file or
    /// an external data file. Such images are refused on import, because they can
    /// make Scoria serve any file of the host.
    pub fn refers_to_other_files(&self) -> bool {
        self.backing_file.is_some() || self.data_file.is_some()
    }
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
    #[error("invalid image size {size}: {detail}")]
    InvalidSize { size: u64, detail: String },
    #[error("image {name} is not a valid image of its format: {detail}")]
    BadImage { name: String, detail: String },
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
    #[error("{command} printed output that could not be parsed")]
    QemuOutput {
        command: String,
        #[source]
        source: serde_json::Error,
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

/// A backend's image operations. All methods are idempotent (see the module doc).
#[async_trait::async_trait]
pub trait Driver: Send + Sync + std::fmt::Debug {
    /// `"file"` or `"memory"`.
    fn kind(&self) -> &'static str;

    /// Create a blank image. If an image of that name already exists with the same
    /// format and virtual size, succeed; if it differs, fail with `Mismatch`. The
    /// spec's format must agree with the name's extension (`InvalidName`).
    async fn create(&self, spec: &ImageSpec) -> Result<()>;

    /// Make the image `spec.name` (of `spec`'s format and virtual size) with the
    /// contents of the image `source` on the same backend; the source is only
    /// read. A copy larger than its source reads as zeroes beyond the source's
    /// end; a copy smaller than its source is `InvalidSize`, an absent source
    /// `NotFound`, a source that refers to other files `BadImage`. If `spec.name`
    /// already exists with `spec`'s shape, succeed without copying (a re-run);
    /// if it differs, fail with `Mismatch`. `progress` is called with how far the
    /// copy is, 0 to 100, as often as the driver learns it.
    ///
    /// The caller must keep the source from changing or going away until the
    /// call returns: the driver does not lock it.
    async fn copy_from(
        &self,
        source: &str,
        spec: &ImageSpec,
        progress: &(dyn Fn(u8) + Send + Sync),
    ) -> Result<()>;

    /// Remove an image; an absent image is success.
    async fn delete(&self, name: &str) -> Result<()>;

    /// Grow an image to `new_size` bytes; an image already that large is success.
    /// Never shrinks. An absent image is `NotFound`.
    async fn extend(&self, name: &str, new_size: u64) -> Result<()>;

    /// Describe an image, or `None` when absent. Something under the name that is
    /// not an image of the name's format is `BadImage`.
    async fn info(&self, name: &str) -> Result<Option<ImageInfo>>;

    /// Names of the images present, with their extensions, sorted. Temporary files
    /// of interrupted work and files that are not valid image names are excluded.
    async fn list(&self) -> Result<Vec<String>>;

    /// Total and free bytes of the backend.
    async fn capacity(&self) -> Result<Capacity>;
}

pub type DynDriver = Arc<dyn Driver>;

#[cfg(test)]
mod conformance;
