//! The repository check (VDSM's): a backend's files against the records.
//!
//! A check reads each configured file backend's directory (headers only,
//! `scoria_storage::file::survey`) and the store's image records and the
//! rows that use them, and returns the [`Fix`]es that would bring the two
//! back together, each of one [`FixKind`]:
//!
//! - **clean** — space nobody uses: a file no record names (`orphan_file`),
//!   the temporary of an interrupted create or copy (`temporary`), a
//!   migration's staging file whose flow is over (`staging_file`), an image
//!   record no row refers to any more, with its data (`unused_image`: a
//!   deleted snapshot's or volume's chain the reaper did not free);
//! - **optimize** / **merge** — a volume's chain deeper than the backend's
//!   `max_chain_depth` (`deep_chain`): `merge` when some of its layers are
//!   data only the chain itself reads (deleted snapshots'), `optimize`
//!   (flatten) when every layer is still a snapshot's;
//! - **mend** — an image not readable as recorded: leaked clusters
//!   (`leaks`) or corruptions (`corruption`) `qemu-img check` finds, a
//!   record whose file is missing (`missing_file`), a file whose format,
//!   virtual size or backing file disagrees with its record
//!   (`format_mismatch`, `size_mismatch`, `backing_mismatch`), a file qemu
//!   cannot read (`unreadable`).
//!
//! Files Scoria did not make (any name but `image-<uuid>.<format>`, or such
//! a name that some file uses as its backing file) are not fixes: they are
//! reported as [`Foreign`] entries with their backing chain and how many
//! files use each as a backing file (Kimchi's discovery; bringing them under
//! management is a later part). Nothing is deleted that is not understood.
//!
//! A check changes nothing: it opens the store read-only (`scoria check`
//! works beside a running server) and only reads files. A fix's id is
//! derived from its problem and target ([`fix_id`]), so the id a check
//! printed names the same fix in a later check, and `scoria fix ID` (see
//! [`fixes`]) re-checks before it acts.

use std::path::{Path, PathBuf};

use scoria_model::ImageId;
use scoria_store::Store;

use crate::error::Result;
use crate::{BackendConfig, DriverConfig};

pub mod autofix;
pub mod fixes;
pub mod flows;
pub mod ops;
mod outside;
mod scan;
#[cfg(test)]
mod tests;

/// What a fix does, VDSM's four kinds.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum FixKind {
    /// Free space nobody uses.
    Clean,
    /// Make a degraded image optimal (flatten a deep chain).
    Optimize,
    /// Collapse a backing chain into fewer layers.
    Merge,
    /// Repair a broken image, or record that it is broken.
    Mend,
}

impl FixKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FixKind::Clean => "clean",
            FixKind::Optimize => "optimize",
            FixKind::Merge => "merge",
            FixKind::Mend => "mend",
        }
    }
}

impl std::str::FromStr for FixKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "clean" => FixKind::Clean,
            "optimize" => FixKind::Optimize,
            "merge" => FixKind::Merge,
            "mend" => FixKind::Mend,
            other => {
                return Err(format!(
                    "unknown fix kind {other:?} (clean, optimize, merge, mend)"
                ));
            }
        })
    }
}

/// What is wrong, one name per rule of the check (see the module doc).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    OrphanFile,
    Temporary,
    StagingFile,
    UnusedImage,
    DeepChain,
    RawImage,
    Leaks,
    Corruption,
    MissingFile,
    FormatMismatch,
    SizeMismatch,
    BackingMismatch,
    Unreadable,
}

impl Problem {
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::OrphanFile => "orphan_file",
            Problem::Temporary => "temporary",
            Problem::StagingFile => "staging_file",
            Problem::UnusedImage => "unused_image",
            Problem::DeepChain => "deep_chain",
            Problem::RawImage => "raw_image",
            Problem::Leaks => "leaks",
            Problem::Corruption => "corruption",
            Problem::MissingFile => "missing_file",
            Problem::FormatMismatch => "format_mismatch",
            Problem::SizeMismatch => "size_mismatch",
            Problem::BackingMismatch => "backing_mismatch",
            Problem::Unreadable => "unreadable",
        }
    }
}

/// What a fix acts on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Target {
    /// A file no record names.
    File { path: PathBuf },
    /// An image record and its file (which may be missing).
    Image { image_id: ImageId, path: PathBuf },
}

impl Target {
    pub fn path(&self) -> &Path {
        match self {
            Target::File { path } | Target::Image { path, .. } => path,
        }
    }
}

/// What applying a fix is expected to change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Effect {
    /// Bytes of the file system freed (an estimate for leaks).
    pub bytes_freed: u64,
    /// Layers removed from a chain.
    pub layers_removed: u32,
}

/// One fix a check proposes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Fix {
    /// Stable: the same problem on the same target has the same id in every
    /// check ([`fix_id`]).
    pub id: String,
    pub kind: FixKind,
    pub problem: Problem,
    pub backend: String,
    pub target: Target,
    /// Why, in words.
    pub reason: String,
    pub effect: Effect,
    /// Who uses the target (volumes, with their attachments; snapshots;
    /// overlays; the image cache), as the rows that refer to it say.
    pub in_use: Vec<String>,
}

/// A file on a backend that Scoria did not make (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Foreign {
    pub backend: String,
    pub file: String,
    pub path: PathBuf,
    /// The format its bytes show (`qcow2`, `raw`, `vmdk`, …), or `unknown`.
    pub format: String,
    pub virtual_size: Option<u64>,
    /// Bytes allocated on the file system.
    pub allocated: u64,
    /// Its backing chain, top first, itself included, as far as it can be
    /// followed inside the backend directory.
    pub chain: Vec<String>,
    /// How many files of the backend use it as their backing file.
    pub references: usize,
    /// Those files.
    pub referenced_by: Vec<String>,
    /// Why the chain ends early or the file is not an image, if it does.
    pub problem: Option<String>,
}

/// An image already recorded `broken` for a problem that persists: the
/// mend that records it was applied; repairing it needs an operator.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Broken {
    pub backend: String,
    pub image_id: ImageId,
    pub reason: String,
}

/// How one backend was checked.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BackendReport {
    pub name: String,
    /// `checked`, `down` (its directory is missing: nothing is proposed for
    /// it) or `not_checked` (a driver the check cannot read, e.g. memory).
    pub state: &'static str,
    pub images: usize,
    pub files: usize,
    /// Images `qemu-img check`ed this time.
    pub qemu_checked: usize,
    /// Images not `qemu-img check`ed because their file has not changed
    /// since a clean check (see [`CheckOptions::full`]).
    pub unchanged: usize,
    /// Images not looked into (busy in a running qemu), with why.
    pub skipped: Vec<String>,
}

/// What a check found.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub backends: Vec<BackendReport>,
    pub fixes: Vec<Fix>,
    pub foreign: Vec<Foreign>,
    pub broken: Vec<Broken>,
    /// What this check's `qemu-img check`s saw, for the memo (migration
    /// 0027): each image's fingerprint when clean, `None` when not. Only
    /// writers record it ([`record_seen`]); `scoria check` does not.
    #[serde(skip)]
    pub seen: Vec<(ImageId, Option<String>)>,
}

/// Record what a check's `qemu-img check`s saw (see [`Report::seen`]).
pub async fn record_seen(store: &Store, report: &Report) -> Result<()> {
    if report.seen.is_empty() {
        return Ok(());
    }
    let mut tx = store.begin().await?;
    scoria_store::image_checks::image_check_record(&mut tx, &report.seen).await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// How thorough a check is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckOptions {
    /// Headers only: `qemu-img check` runs only on images whose header qemu
    /// marked corrupt or dirty. Leaks and most corruptions go unseen; a
    /// check of many images then costs a few reads per file.
    pub quick: bool,
    /// `qemu-img check` on every qcow2 image. Otherwise (and not quick) it
    /// runs on the images whose file changed since their last clean check
    /// (a different fingerprint: length, inode, modification and change
    /// times), whose header is marked corrupt or dirty, or that were never
    /// checked clean; an unchanged file was clean and still is, unless its
    /// storage rotted under it, which only a full check finds.
    pub full: bool,
}

/// The stable id of a fix: its kind and a digest of its problem, backend
/// and target (the image id, or the file name).
pub fn fix_id(kind: FixKind, problem: Problem, backend: &str, target: &Target) -> String {
    let key = match target {
        Target::Image { image_id, .. } => image_id.to_string(),
        Target::File { path } => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let digest =
        scoria_digest::sha256_hex(format!("{}\n{backend}\n{key}", problem.as_str()).as_bytes());
    format!("{}-{}", kind.as_str(), &digest[..12])
}

/// [`check`] on the data directory and backends of `config`, the database
/// opened read-only (beside a running server or without one).
pub async fn check_data_dir(
    config: &crate::Config,
    only: Option<&str>,
    options: CheckOptions,
) -> Result<Report> {
    let store = Store::open_read_only(&config.data_dir.join("scoria.db"), &config.store).await?;
    let staging = config.data_dir.join("staging");
    let report = check(&store, &staging, &config.backends, only, options).await;
    store.close().await;
    report
}

/// Check the backends of `backends` (all of them, or the one named `only`)
/// against `store`, and the staging directory `staging` (migrations'
/// copies). Reads only.
pub async fn check(
    store: &Store,
    staging: &Path,
    backends: &[BackendConfig],
    only: Option<&str>,
    options: CheckOptions,
) -> Result<Report> {
    check_reporting(store, staging, backends, only, options, &|_| {}).await
}

/// [`check`], telling `progress` how far it is (percent of the images
/// `qemu-img check`ed, each backend an equal share).
pub async fn check_reporting(
    store: &Store,
    staging: &Path,
    backends: &[BackendConfig],
    only: Option<&str>,
    options: CheckOptions,
    progress: &(dyn Fn(u8) + Send + Sync),
) -> Result<Report> {
    if let Some(name) = only
        && !backends.iter().any(|b| b.name == name)
    {
        return Err(crate::Error::NotFound(format!(
            "backend {name} is not configured"
        )));
    }
    let mut report = Report::default();
    let chosen: Vec<&BackendConfig> = backends
        .iter()
        .filter(|b| only.is_none_or(|n| n == b.name))
        .collect();
    let n = chosen.len().max(1);
    for (i, b) in chosen.into_iter().enumerate() {
        let share = move |done: usize, total: usize| {
            progress(((100 * i + 100 * done / total.max(1)) / n) as u8);
        };
        match &b.driver {
            DriverConfig::File { path, .. } => {
                scan::backend(store, b, path, options, &share, &mut report).await?;
            }
            DriverConfig::Memory { .. } => report.backends.push(BackendReport {
                name: b.name.clone(),
                state: "not_checked",
                images: 0,
                files: 0,
                qemu_checked: 0,
                unchanged: 0,
                skipped: Vec::new(),
            }),
        }
    }
    if only.is_none() {
        outside::staging(store, staging, &mut report).await?;
    }
    // Stable: within a kind, the order found (unused chains top first, the
    // order they can be freed in).
    report.fixes.sort_by_key(|f| f.kind);
    progress(100);
    Ok(report)
}

/// A storage error while checking, with what was being done.
pub(super) fn storage_err(what: String, e: scoria_storage::StorageError) -> crate::Error {
    crate::Error::internal(what, e)
}
