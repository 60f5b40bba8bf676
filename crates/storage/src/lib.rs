//! The storage layer: where volume bytes live.
//!
//! A [`Driver`] manages the images of one backend (a storage pool). It knows files,
//! formats, sizes and layers; it knows nothing of projects, quotas, HTTP or the
//! database. Every method is idempotent, because the flow engine runs an external
//! step at least once: "already exists" (with the same shape) and "already gone"
//! are success, and an interrupted call leaves either nothing or a complete image
//! behind (work is done under a temporary name and renamed into place).
//!
//! Two drivers implement it:
//! - [`file::FileDriver`]: images as files in a backend directory, qcow2 (default)
//!   or raw (sparse). Blank images and empty overlays are written natively by
//!   [`qcow2`] (byte-identical to what `qemu-img create` writes); everything else
//!   goes through [`qemu`], the only module in Scoria that spawns `qemu-*`
//!   processes.
//! - [`memory::MemoryDriver`]: images as entries in a map with sparse sector
//!   data, for fast tests of logic that never claim a volume works.
//!
//! # One trait, with capabilities
//!
//! The operations form three groups, in the order of [`Driver`]: *images*
//! (create, copy, delete, extend, info, list, capacity), *layers*
//! (`make_immutable`, `create_overlay`, `chain`) and *data streams*
//! (`import_from`, `export_to`). They stay one trait rather than a core trait
//! with sub-traits: the application holds one `Arc<dyn Driver>` per backend
//! and needs no downcast or second handle to reach an operation, and a backend
//! that lacks one (an RBD pool without layering, say) says so in
//! [`Driver::capabilities`] and answers the call with
//! [`StorageError::Unsupported`]. There are no default implementations: each
//! driver answers every operation on purpose. Helpers that only tests need
//! (writing guest data, planting a crafted image) are not in the trait.
//!
//! # Names carry the format
//!
//! Images are addressed by a *name* chosen by the caller in an earlier persisted
//! step, so that a re-run finds what the first run made. The name ends in the
//! format's extension, `volume-<uuid>.qcow2` or `volume-<uuid>.raw` (see
//! [`format_of_name`]). The format is therefore never guessed from a file's
//! content: a raw volume whose guest wrote a qcow2 magic at offset 0 stays raw, and
//! `delete`, `extend`, `info` and `list` need nothing but the name. Files outside
//! the backend (import sources, export destinations) have no such name: their
//! format is always given by the caller.
//!
//! # Layers
//!
//! ```text
//!   create ──► mutable image ──make_immutable──► immutable image
//!                  ▲      ▲                            │  │ create_overlay
//!                  │      └──── make_mutable ──────────┘  │  (constant time)
//!                  │          (only while nothing is      │
//!                  │           layered on it: an undo)    │
//!                  └──────── overlay (mutable) ◄──────────┘
//! ```
//!
//! Immutability is for good once anything is layered on the image. Before
//! that, `make_mutable` undoes it: a snapshot that failed after freezing the
//! volume's image gives the volume its image back. The driver cannot know
//! whether an overlay exists elsewhere (another process, a file it does not
//! list); the caller's records can, and the caller decides.
//!
//! A snapshot is an immutable image; a volume made from it with the space
//! strategy is an overlay on it, with the performance strategy a flattened
//! copy (`copy_from`, which reads the whole chain). An overlay names its base
//! by the base's bare name, resolved against the overlay's own location, and
//! records the base's format. That is the only backing reference a driver
//! follows ([`backing_name`]): an absolute path, `../`, a protocol (`nbd:`,
//! `json:`), a hidden file, an unrecorded or contradicting format, or an
//! external data file make an image `BadImage` for every operation that would
//! open it. `chain` lists an image and everything under it, so the application
//! can compare the backend with its records; the driver itself counts no
//! references, and deleting a base that something is layered on is the
//! caller's mistake to avoid.
//!
//! # Sizes
//!
//! Sizes are bytes and must be multiples of 512 ([`SECTOR_SIZE`]), as qemu's block
//! layer requires; `qemu-img create` would silently round other sizes up, Scoria
//! refuses them ([`StorageError::InvalidSize`]). A copy, an import or an overlay
//! is at least as large as what it is made from, and reads as zeroes beyond it.
//!
//! # Idempotency and crash safety
//!
//! ```text
//!   create, copy_from,         an image of the same shape under the name is
//!   create_overlay,            success; anything else there is Mismatch; the
//!   import_from                image appears complete (temp + no-replace rename)
//!   export_to                  the same, at the destination outside the backend
//!   make_immutable             an immutable image is success
//!   make_mutable               a mutable image is success
//!   extend                     an image that large is success (never shrinks)
//!   delete                     an absent image is success
//! ```
//!
//! The shape compared is the virtual size and the base (none for all but
//! overlays); immutability is not part of it.
//!
//! # Failpoints
//!
//! Both drivers hit the same failpoints (see `scoria-failpoints`), listed in
//! [`FAILPOINTS`]:
//!
//! ```text
//!   storage.create.before     before anything is written (also on the idempotent path)
//!   storage.create.temp       the new image is complete and synced under its
//!                             temporary name, not yet renamed into place
//!   storage.create.after      the image is durable under its final name
//!   storage.copy.before       before anything is written (also on the idempotent path)
//!   storage.copy.temp         the copy is complete and synced under its temporary
//!                             name, not yet renamed into place
//!   storage.copy.after        the copy is durable under its final name
//!   storage.delete.before     before anything is removed
//!   storage.delete.after      the image (and any temporary of it) is durably gone
//!   storage.extend.before     before the image is grown
//!   storage.extend.after      the image is durably grown
//!   storage.immutable.before  before the image is marked
//!   storage.immutable.after   the image is durably immutable
//!   storage.mutable.before    before the image is unmarked
//!   storage.mutable.after     the image is durably mutable again
//!   storage.overlay.before    before anything is written (also on the idempotent path)
//!   storage.overlay.temp      the overlay is complete and synced under its
//!                             temporary name, not yet renamed into place
//!   storage.overlay.after     the overlay is durable under its final name
//!   storage.import.before     before anything is written (also on the idempotent path)
//!   storage.import.temp       the imported image is complete and synced under its
//!                             temporary name, not yet renamed into place
//!   storage.import.after      the imported image is durable under its final name
//!   storage.export.before     before anything is written (also on the idempotent path)
//!   storage.export.temp       the exported file is complete and synced under its
//!                             temporary name beside the destination
//!   storage.export.after      the exported file is durable at the destination
//! ```
//!
//! The `.after` points are hit only by a call that changed something: a call that
//! found its result already there returns before its `.after` point, an `extend`
//! to a size the image already has before `storage.extend.after`, a
//! `make_immutable` of an immutable image before `storage.immutable.after`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

mod error;
pub(crate) use error::io_error;
pub use error::{Result, StorageError};

pub mod backup_repo;
pub mod export;
pub mod file;
pub mod image_store;
pub mod inspect;
pub mod memory;
pub mod qcow2;
pub mod qemu;
pub mod vet;

pub use scoria_failpoints::{Failpoints, Fault};

/// Every failpoint name of this crate, in the order a call reaches them (the
/// conformance crash suite runs a sequence through each).
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
    "storage.immutable.before",
    "storage.immutable.after",
    "storage.mutable.before",
    "storage.mutable.after",
    "storage.overlay.before",
    "storage.overlay.temp",
    "storage.overlay.after",
    "storage.merge.before",
    "storage.merge.after",
    "storage.unmerge.before",
    "storage.unmerge.after",
    "storage.import.before",
    "storage.import.temp",
    "storage.import.after",
    "storage.export.before",
    "storage.export.temp",
    "storage.export.after",
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

/// Check that `from` and `to` are valid names of the same format (a rename
/// never changes what a file is read as).
pub fn same_format(from: &str, to: &str) -> Result<()> {
    if format_of_name(from)? != format_of_name(to)? {
        return Err(StorageError::InvalidName(format!(
            "{to}: not of the format of {from}"
        )));
    }
    Ok(())
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

/// What an image on a backend is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    pub name: String,
    pub format: Format,
    /// Virtual size in bytes.
    pub virtual_size: u64,
    /// Bytes allocated on the host file system for this image alone (not its
    /// backing chain).
    pub actual_size: u64,
    /// Backing file as the image records it, if it has one. A driver's `info`
    /// only returns images whose reference is legal, so there it equals
    /// [`ImageInfo::backing`]; [`qemu::info`] of a file outside a backend reports
    /// whatever the file says.
    pub backing_file: Option<String>,
    /// External data file of a qcow2 image (`data-file`), if it has one. Empty when
    /// the header says there is one without naming it. Never set by a driver's
    /// `info`, which refuses such images.
    pub data_file: Option<String>,
    /// The image this one is layered on: the name, within the same backend, of
    /// its base (see [`backing_name`]). `None` for a self-contained image.
    pub backing: Option<String>,
    /// The image can no longer change (see [`Driver::make_immutable`]).
    pub immutable: bool,
}

impl ImageInfo {
    /// True when reading the image would read another file too: a backing file or
    /// an external data file. Such images are refused on import, because they can
    /// make Scoria serve any file of the host.
    pub fn refers_to_other_files(&self) -> bool {
        self.backing_file.is_some() || self.data_file.is_some()
    }
}

/// The name within the backend of the base that the image `image` records as
/// its backing file `reference`, with `recorded_format` the backing format its
/// header records; or `BadImage`.
///
/// A backend's own overlays name their base by its bare image name, which qemu
/// resolves against the overlay's directory (see [`Driver::create_overlay`]).
/// Every other reference is refused, because following it would let an image
/// make the host read a file Scoria does not own: an absolute path, anything
/// with a `/` (`../x.qcow2`), a protocol (`nbd:`, `json:{…}`), a hidden file or
/// temporary, the image itself. The backing format must be recorded and must be
/// the format the base's name carries: a format is never probed.
pub fn backing_name(image: &str, reference: &str, recorded_format: Option<&str>) -> Result<String> {
    let bad = |detail: String| StorageError::BadImage {
        name: image.to_owned(),
        detail,
    };
    let format = format_of_name(reference).map_err(|_| {
        bad(format!(
            "its backing file {reference:?} is not an image of the same backend"
        ))
    })?;
    if reference == image {
        return Err(bad("it is its own backing file".into()));
    }
    match recorded_format {
        Some(recorded) if recorded == format.as_str() => Ok(reference.to_owned()),
        Some(recorded) => Err(bad(format!(
            "its backing file {reference} is recorded as {recorded:?}, its name says {format}"
        ))),
        None => Err(bad(format!(
            "its backing file {reference} has no recorded format"
        ))),
    }
}

/// Walk the chain of the image `name`, top to bottom, describing each image with
/// `describe` (which returns `None` for an absent one); see [`Driver::chain`].
pub(crate) fn walk_chain(
    name: &str,
    mut describe: impl FnMut(&str) -> Result<Option<ImageInfo>>,
) -> Result<Vec<ImageInfo>> {
    let mut chain: Vec<ImageInfo> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut next = name.to_owned();
    loop {
        let Some(info) = describe(&next)? else {
            return Err(match chain.last() {
                None => StorageError::NotFound(name.to_owned()),
                Some(above) => StorageError::BadImage {
                    name: above.name.clone(),
                    detail: format!("its backing image {next} is missing"),
                },
            });
        };
        seen.insert(next);
        let backing = info.backing.clone();
        chain.push(info);
        match backing {
            None => return Ok(chain),
            Some(base) if seen.contains(&base) => {
                return Err(StorageError::BadImage {
                    name: name.to_owned(),
                    detail: format!("its backing chain loops back to {base}"),
                });
            }
            Some(base) => next = base,
        }
    }
}

/// Success when the existing image `found` is what `spec` asks for, layered on
/// `backing` (or self-contained when `None`): the idempotency rule of every
/// operation that makes an image. `Mismatch` otherwise.
pub(crate) fn same_shape(spec: &ImageSpec, backing: Option<&str>, found: ImageInfo) -> Result<()> {
    let mismatch = |detail: String| {
        Err(StorageError::Mismatch {
            name: spec.name.clone(),
            detail,
        })
    };
    if found.virtual_size != spec.size {
        return mismatch(format!(
            "virtual size {} instead of {}",
            found.virtual_size, spec.size
        ));
    }
    if found.backing.as_deref() != backing {
        return mismatch(match (&found.backing, backing) {
            (Some(found), Some(wanted)) => format!("layered on {found} instead of {wanted}"),
            (Some(found), None) => format!("layered on {found}"),
            _ => "not layered on anything".into(),
        });
    }
    Ok(())
}

/// How a backend's images can be reached by the hosts that use them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportProtocol {
    /// An NBD export (served by qemu-storage-daemon).
    Nbd,
    /// The image's own path, for a hypervisor on the same host.
    Local,
}

impl ExportProtocol {
    /// The spelling of Cinder's `storage_protocol`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportProtocol::Nbd => "nbd",
            ExportProtocol::Local => "local",
        }
    }
}

/// What a backend can do, so that the application layer chooses a strategy
/// (an overlay or a full copy, …) and reports Cinder's capabilities without
/// knowing which driver it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Images take only the space their data needs (sparse raw, qcow2).
    pub thin_provisioning: bool,
    /// [`Driver::create_overlay`] works: images can be layered on immutable ones.
    pub layering: bool,
    /// An exported (attached) image can be snapshotted.
    pub online_snapshot: bool,
    /// An exported (attached) image can be extended.
    pub online_extend: bool,
    /// One image can be exported to several hosts at once.
    pub multiattach: bool,
    /// How images can be exported, preferred first. Empty: they cannot be.
    pub export_protocols: Vec<ExportProtocol>,
    /// The formats the backend holds.
    pub formats: Vec<Format>,
}

/// What Cinder reports as a backend's `vendor_name`.
pub const VENDOR_NAME: &str = "Scoria";

impl Capabilities {
    /// Cinder's capability strings for this backend, as volume types' extra specs
    /// match them: `vendor_name`, `storage_protocol` (the preferred export
    /// protocol, `none` when images cannot be exported),
    /// `thin_provisioning_support` and `multiattach` (`True`/`False`). The
    /// application adds `volume_backend_name`, which only it knows.
    pub fn cinder(&self) -> Vec<(&'static str, String)> {
        let flag = |b: bool| if b { "True" } else { "False" }.to_owned();
        let protocol = self.export_protocols.first().map_or("none", |p| p.as_str());
        vec![
            ("vendor_name", VENDOR_NAME.to_owned()),
            ("storage_protocol", protocol.to_owned()),
            ("thin_provisioning_support", flag(self.thin_provisioning)),
            ("multiattach", flag(self.multiattach)),
        ]
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

/// How far a long operation is, 0 to 100, called as often as the driver learns it.
pub type Progress<'a> = &'a (dyn Fn(u8) + Send + Sync);

/// A backend's image operations. All of them are idempotent (see the module doc).
#[async_trait::async_trait]
pub trait Driver: Send + Sync + std::fmt::Debug {
    /// `"file"` or `"memory"`.
    fn kind(&self) -> &'static str;

    /// What the backend can do. Constant for the life of the driver.
    fn capabilities(&self) -> Capabilities;

    // Images.

    /// Create a blank image. If an image of that name already exists with the same
    /// format and virtual size, succeed; if it differs, fail with `Mismatch`. The
    /// spec's format must agree with the name's extension (`InvalidName`).
    async fn create(&self, spec: &ImageSpec) -> Result<()>;

    /// Make the image `spec.name` (of `spec`'s format and virtual size) with the
    /// contents of the image `source` on the same backend; the source is only
    /// read. A layered source is flattened: the copy holds what the whole chain
    /// reads and has no backing image. A copy larger than its source reads as
    /// zeroes beyond the source's end; a copy smaller than its source is
    /// `InvalidSize`, an absent source `NotFound`, a source whose chain is not
    /// made of this backend's images (see [`backing_name`]) or has a missing
    /// link `BadImage`. If `spec.name` already exists with `spec`'s shape (and
    /// no backing image), succeed without copying (a re-run); if it differs,
    /// fail with `Mismatch`.
    ///
    /// The caller must keep the source from changing or going away until the
    /// call returns: the driver does not lock it.
    async fn copy_from(&self, source: &str, spec: &ImageSpec, progress: Progress<'_>)
    -> Result<()>;

    /// Remove an image; an absent image is success. Immutable images can be
    /// deleted. The driver does not count who is layered on an image: deleting
    /// a base breaks its overlays' chains, so the caller deletes a base only
    /// when its records say nothing uses it.
    async fn delete(&self, name: &str) -> Result<()>;

    /// Give the image `from` the name `to` on the same backend, in one atomic
    /// step: for bringing a file under management and handing one back. Both
    /// names must be of the same format (`InvalidName` otherwise). `from`
    /// absent and `to` present is success (a re-run); both absent is
    /// `NotFound`; `to` present while `from` is too is `Mismatch` (never
    /// overwritten). The driver does not look at who is layered on `from`:
    /// the caller renames only images nothing stands on.
    async fn rename(&self, from: &str, to: &str) -> Result<()>;

    /// Grow an image to `new_size` bytes; an image already that large is success.
    /// Never shrinks. An absent image is `NotFound`, an immutable one `Immutable`.
    async fn extend(&self, name: &str, new_size: u64) -> Result<()>;

    /// Describe an image, or `None` when absent. Something under the name that is
    /// not an image of the name's format, or whose own references are not legal
    /// (see [`backing_name`]; an external data file never is), is `BadImage`.
    /// Only the image itself is looked at: see [`Driver::chain`] for its base.
    async fn info(&self, name: &str) -> Result<Option<ImageInfo>>;

    /// Names of the images present, with their extensions, sorted. Temporary files
    /// of interrupted work and files that are not valid image names are excluded.
    async fn list(&self) -> Result<Vec<String>>;

    /// Total and free bytes of the backend.
    async fn capacity(&self) -> Result<Capacity>;

    // Layers.

    /// Make the image unchangeable, for good: it can still be read, layered on
    /// ([`Driver::create_overlay`]), copied, exported and deleted, but never
    /// written or extended again. An image already immutable is success; an
    /// absent one is `NotFound`, one that [`Driver::info`] refuses `BadImage`.
    ///
    /// The caller must make sure nothing has the image open for writing (an
    /// export): the driver marks the image, it does not revoke open handles.
    async fn make_immutable(&self, name: &str) -> Result<()>;

    /// Undo [`Driver::make_immutable`]: the image can be written and extended
    /// again. Only for an image nothing is layered on — the caller's records
    /// must say so; the driver does not look. A mutable image is success; an
    /// absent one is `NotFound`, one that [`Driver::info`] refuses `BadImage`.
    async fn make_mutable(&self, name: &str) -> Result<()>;

    /// Create `spec.name`, an empty qcow2 copy-on-write overlay of `spec.size`
    /// bytes on the image `base` of this backend: it reads as `base` (and as
    /// zeroes beyond the base's end), and what is written to it stays in it.
    /// The base's format is recorded in the overlay and its name is recorded
    /// relative (the bare name), so the backend directory can move. Constant
    /// time: nothing of the base is read or copied.
    ///
    /// The base must be immutable (`MutableBase`), present (`NotFound`) and its
    /// whole chain legal (`BadImage`); `spec.size` must be at least the base's
    /// virtual size (`InvalidSize`) and `spec.format` qcow2 (`Unsupported`). An
    /// existing overlay of `spec.size` on `base` under that name is success (a
    /// re-run); anything else there is `Mismatch`. A backend without
    /// [`Capabilities::layering`] fails with `Unsupported`.
    async fn create_overlay(&self, base: &str, spec: &ImageSpec) -> Result<()>;

    /// Merge the image `base` into the overlay `name` that stands on it:
    /// whatever `base` holds that `name` does not is copied into `name`, and
    /// `name` then stands on `base`'s own base (or on nothing), reading
    /// exactly as before (block-stream's offline twin; the repository
    /// check's `merge`). `base` is only read and stays whole: the caller
    /// deletes it once its records say nothing else uses it. `name` may be
    /// immutable (what it reads does not change; its file does). Interrupted,
    /// `name` still reads the same on either base, and a re-run finishes it:
    /// `name` already standing on `base`'s base is success. `name` standing
    /// on anything else is `Mismatch`, absent `NotFound`. Nothing may have
    /// `name` open meanwhile (qemu's lock refuses an export: an error).
    async fn merge_base(&self, name: &str, base: &str) -> Result<()>;

    /// Undo [`Driver::merge_base`]: make `name`, which a merge of `base`
    /// put on `base`'s own base, stand on `base` again. Nothing is copied:
    /// `name` holds every part of `base` that differs from `base`'s base, so
    /// it reads the same on either. Only for an image a merge of `base` just
    /// changed, with `base` unchanged since (the merge flow's undo): on any
    /// other image it would change what is read. `name` already standing on
    /// `base` is success (the merge never ran, or this is a re-run); on
    /// anything but `base`'s base, `Mismatch`.
    async fn unmerge_base(&self, name: &str, base: &str) -> Result<()>;

    /// The image `name` and the images under it, top to bottom: `[name, its
    /// base, the base's base, …]`, ending with a self-contained image. An
    /// absent `name` is `NotFound`; an image on the way that [`Driver::info`]
    /// refuses, a missing base or a cycle is `BadImage`. The application
    /// compares this with its records of who is layered on what.
    async fn chain(&self, name: &str) -> Result<Vec<ImageInfo>>;

    // Data streams.

    /// Make the image `spec` with the data of the file `source` (an absolute
    /// path outside the backend, e.g. an uploaded image), read as
    /// `source_format` (never probed). The caller has inspected the file; the
    /// driver checks again (`qemu-img info -f <format>`) that it refers to no
    /// other file (`BadImage` otherwise), that it exists (`NotFound`) and that
    /// it is no larger than `spec.size` (`InvalidSize`). The image is sparse and
    /// appears complete or not at all; an existing image of `spec`'s shape is
    /// success (a re-run), anything else there is `Mismatch`.
    async fn import_from(
        &self,
        spec: &ImageSpec,
        source: &Path,
        source_format: Format,
        progress: Progress<'_>,
    ) -> Result<()>;

    /// Run every check of [`Driver::import_untrusted`] on the file `source`
    /// declared `format`, without importing it: what the checks found (its
    /// virtual size), or why it is refused. For callers that size an image
    /// after the data (an image cache entry is exactly as large as its image).
    async fn inspect_untrusted(
        &self,
        source: &Path,
        format: crate::inspect::DiskFormat,
        limits: crate::qemu::untrusted::Limits,
    ) -> Result<crate::inspect::Inspection>;

    /// Make the image `spec` from a file nobody vouches for (an uploaded
    /// image) declared to be `format`: the file's bytes must be that format,
    /// it must refer to no other file, its virtual size must fit `spec.size`
    /// (`crate::inspect`), and `qemu-img info`, run under `limits`, must agree;
    /// a file that fails is `Refused` (or `InvalidSize`) before its data is
    /// read. Then as [`Driver::import_from`]. Returns what the checks found.
    async fn import_untrusted(
        &self,
        spec: &ImageSpec,
        source: &Path,
        format: crate::inspect::DiskFormat,
        limits: crate::qemu::untrusted::Limits,
        progress: Progress<'_>,
    ) -> Result<crate::inspect::Inspection>;

    /// Write the data of the image `name` (its whole chain, flattened) into a
    /// new file `dest` (an absolute path outside the backend, in an existing
    /// directory) of `dest_format` and of the image's virtual size, sparse. The
    /// file appears complete or not at all (a temporary beside it is renamed
    /// into place, never over an existing file). An existing `dest` of that
    /// format and size that refers to no other file is success (a re-run: the
    /// caller chooses a new destination for each export), anything else there
    /// is `Mismatch`. Chain errors are those of [`Driver::chain`].
    async fn export_to(
        &self,
        name: &str,
        dest: &Path,
        dest_format: Format,
        progress: Progress<'_>,
    ) -> Result<()>;

    // Backups.

    /// The file of the image `name` (its active layer; its bases are found
    /// by qemu through it), for the backup engine, which reads ranges of it,
    /// keeps dirty bitmaps in it and restores over it. Only while the caller
    /// keeps every other writer away (the volume is `backing-up` or
    /// `restoring-backup`). An absent image is `NotFound`; a backend whose
    /// images are not local files is `Unsupported`.
    async fn local_file(&self, name: &str) -> Result<LocalFile>;
}

pub type DynDriver = Arc<dyn Driver>;

/// An image's file on the local host, as the backup engine
/// ([`backup_repo::engine`]) reads and writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalFile {
    pub path: PathBuf,
    pub format: Format,
}

#[cfg(test)]
mod conformance;

#[cfg(test)]
mod tests;
