//! What an image file is, and the operations on layers: immutability, overlays,
//! backing chains.
//!
//! A file is read natively ([`shape_of`]: its metadata, and for qcow2 the first
//! cluster), because `info` and `chain` are called often and qemu-img costs a
//! process. That one reader also applies the rules that keep an image from
//! reaching outside its backend: a backing reference must be the bare name of
//! an image of the same directory with its format recorded
//! ([`crate::backing_name`]), and an external data file is never accepted.
//!
//! Immutability is the file mode: an immutable image has no write bit (0400,
//! set by [`crate::Driver::make_immutable`]). The driver refuses to extend
//! such an image; qemu opens a backing file read-only, so an unprivileged
//! qemu can use it as a base and cannot write it. (The driver runs as the
//! files' owner, often root, whom the mode does not stop; the mode is the
//! record, the driver's checks are the enforcement.)
//!
//! A base is merged into its overlay by `qemu-img rebase` in safe mode
//! ([`crate::qemu::rebase`]): the overlay's data as read never changes.
//!
//! An overlay is written natively ([`crate::qcow2::write_overlay`], the bytes
//! `qemu-img create -f qcow2 -F <fmt> -b <base> <path> <size>` writes) through
//! the temp-and-rename job of [`super::create`]; nothing of the base is read
//! but its header, so it takes the same time on any base.

use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::FileDriver;
use super::create::{CreateJob, blocking, sync_file, sync_path};
use crate::{
    Format, ImageInfo, ImageSpec, Result, StorageError, backing_name, format_of_name, io_error,
    qcow2, qemu, same_shape,
};

/// The mode of an immutable image: readable by its owner, writable by nobody.
pub(crate) const IMMUTABLE_MODE: u32 = 0o400;
/// The mode of a mutable image: private to its owner.
pub(crate) const MUTABLE_MODE: u32 = 0o600;

/// What the image at `path` is, read natively (blocking): its metadata for raw,
/// its header for qcow2. `None` when absent. A file that is not an image of
/// `format`, or whose references are not legal, is `BadImage`.
pub(crate) fn shape_of(name: &str, format: Format, path: &Path) -> Result<Option<ImageInfo>> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(format!("inspecting {}", path.display()), e)),
    };
    let bad = |detail: &str| StorageError::BadImage {
        name: name.to_owned(),
        detail: detail.to_owned(),
    };
    if !meta.is_file() {
        return Err(bad("not a regular file"));
    }
    let mut info = ImageInfo {
        name: name.to_owned(),
        format,
        virtual_size: meta.len(),
        actual_size: meta.blocks() * 512,
        backing_file: None,
        data_file: None,
        backing: None,
        immutable: meta.mode() & 0o222 == 0,
    };
    if format == Format::Qcow2 {
        let header = qcow2::read_header(path).map_err(|e| qcow2::header_error(name, e))?;
        if header.data_file.is_some() {
            return Err(bad("it keeps its data in an external data file"));
        }
        if let Some(reference) = header.backing_file {
            info.backing = Some(backing_name(
                name,
                &reference,
                header.backing_format.as_deref(),
            )?);
            info.backing_file = Some(reference);
        }
        info.virtual_size = header.virtual_size;
    }
    Ok(Some(info))
}

/// The chain of the image `name` in the backend directory `dir`, top to bottom
/// (blocking); see [`crate::Driver::chain`].
pub(crate) fn chain_of(dir: &Path, name: &str) -> Result<Vec<ImageInfo>> {
    crate::walk_chain(name, |next| {
        shape_of(next, format_of_name(next)?, &dir.join(next))
    })
}

impl FileDriver {
    pub(super) async fn make_immutable_file(&self, name: &str) -> Result<()> {
        let format = format_of_name(name)?;
        self.fp.hit("storage.immutable.before")?;
        let _guard = self.lock(name).await;
        let (name_owned, path, fsync) = (name.to_owned(), self.dir.join(name), self.options.fsync);
        let changed = blocking(move || {
            let info = shape_of(&name_owned, format, &path)?
                .ok_or_else(|| StorageError::NotFound(name_owned.clone()))?;
            if info.immutable {
                // An earlier run may have crashed between the chmod and the sync.
                if fsync {
                    sync_path(&path)?;
                }
                return Ok(false);
            }
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(IMMUTABLE_MODE))
                .map_err(|e| io_error(format!("making {} read-only", path.display()), e))?;
            if fsync {
                sync_path(&path)?;
            }
            Ok(true)
        })
        .await?;
        if changed {
            self.fp.hit("storage.immutable.after")?;
            tracing::info!(name, "image made immutable");
        }
        Ok(())
    }

    pub(super) async fn make_mutable_file(&self, name: &str) -> Result<()> {
        let format = format_of_name(name)?;
        self.fp.hit("storage.mutable.before")?;
        let _guard = self.lock(name).await;
        let (name_owned, path, fsync) = (name.to_owned(), self.dir.join(name), self.options.fsync);
        let changed = blocking(move || {
            let info = shape_of(&name_owned, format, &path)?
                .ok_or_else(|| StorageError::NotFound(name_owned.clone()))?;
            if !info.immutable {
                // An earlier run may have crashed between the chmod and the sync.
                if fsync {
                    sync_path(&path)?;
                }
                return Ok(false);
            }
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(MUTABLE_MODE))
                .map_err(|e| io_error(format!("making {} writable", path.display()), e))?;
            if fsync {
                sync_path(&path)?;
            }
            Ok(true)
        })
        .await?;
        if changed {
            self.fp.hit("storage.mutable.after")?;
            tracing::info!(name, "image made mutable again");
        }
        Ok(())
    }

    pub(super) async fn create_overlay_file(&self, base: &str, spec: &ImageSpec) -> Result<()> {
        spec.validate()?;
        let base_format = format_of_name(base)?;
        if base == spec.name {
            return Err(StorageError::InvalidName(spec.name.clone()));
        }
        if spec.format != Format::Qcow2 {
            return Err(StorageError::Unsupported(format!(
                "an overlay is a qcow2 image, {} is {}",
                spec.name, spec.format
            )));
        }
        self.fp.hit("storage.overlay.before")?;
        let _guard = self.lock(&spec.name).await;
        let job = self.job(spec);
        let native = self.options.native_qcow2;
        // A re-run finds the overlay in place; otherwise the base must be there,
        // immutable, no larger than the overlay and of a legal chain.
        let found = {
            let (job, base, dir) = (job.clone(), base.to_owned(), self.dir.clone());
            blocking(move || {
                if let Some(found) = job.existing()? {
                    return Ok(Some(found));
                }
                check_base(&dir, &base, job.spec.size)?;
                let file = job.open_temp()?;
                if native {
                    job.write_overlay(&file, &base, base_format)?;
                }
                Ok(None)
            })
            .await?
        };
        if let Some(found) = found {
            return same_shape(spec, Some(base), found);
        }
        if !native {
            let made = async {
                qemu::create_overlay(&job.temp, spec.size, base, base_format).await?;
                if job.fsync {
                    sync_file(job.temp.clone()).await?;
                }
                Ok(())
            }
            .await;
            if let Err(e) = made {
                job.discard_temp().await;
                return Err(e);
            }
        }
        let published = {
            let job = job.clone();
            blocking(move || job.publish("storage.overlay.temp")).await?
        };
        if let Some(found) = published {
            return same_shape(spec, Some(base), found);
        }
        self.fp.hit("storage.overlay.after")?;
        tracing::info!(name = %spec.name, base, size = spec.size, "overlay created");
        Ok(())
    }

    pub(super) async fn merge_base_file(&self, name: &str, base: &str) -> Result<()> {
        self.rebase_file(name, base, false).await
    }

    pub(super) async fn unmerge_base_file(&self, name: &str, base: &str) -> Result<()> {
        self.rebase_file(name, base, true).await
    }

    /// A merge of `base` into `name` (`undo`: its undo), see
    /// [`crate::Driver::merge_base`].
    async fn rebase_file(&self, name: &str, base: &str, undo: bool) -> Result<()> {
        format_of_name(name)?;
        let point = if undo { "unmerge" } else { "merge" };
        self.fp.hit(&format!("storage.{point}.before"))?;
        let _guard = self.lock(name).await;
        let (dir, top, below) = (self.dir.clone(), name.to_owned(), base.to_owned());
        // What `name` stands on now, and what the call puts it on.
        let todo = blocking(move || {
            let chain = chain_of(&dir, &top)?;
            let under = chain_of(&dir, &below)?;
            let new_base = under.get(1).map(|i| (i.name.clone(), i.format));
            let (from, to) = if undo {
                (new_base, Some((below.clone(), under[0].format)))
            } else {
                (Some((below.clone(), under[0].format)), new_base)
            };
            let standing = chain[0].backing.as_deref();
            if standing == to.as_ref().map(|(n, _)| n.as_str()) {
                return Ok(None);
            }
            if standing != from.as_ref().map(|(n, _)| n.as_str()) {
                return Err(StorageError::Mismatch {
                    name: top,
                    detail: format!(
                        "it stands on {}, neither {below} nor its base",
                        standing.unwrap_or("nothing")
                    ),
                });
            }
            Ok(Some((chain[0].immutable, to)))
        })
        .await?;
        let Some((immutable, to)) = todo else {
            return Ok(()); // a re-run: done already
        };
        let path = self.dir.join(name);
        let set_mode = |mode: u32| {
            let path = path.clone();
            blocking(move || {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| io_error(format!("changing the mode of {}", path.display()), e))
            })
        };
        // Root ignores the mode, but the driver may not run as root.
        if immutable {
            set_mode(MUTABLE_MODE).await?;
        }
        let rebased = match (&to, undo) {
            (Some((n, f)), true) => qemu::rebase::rebase_unsafe(&path, n, *f).await,
            (to, _) => {
                qemu::rebase::rebase(&path, to.as_ref().map(|(n, f)| (n.as_str(), *f))).await
            }
        };
        if immutable {
            set_mode(IMMUTABLE_MODE).await?;
        }
        rebased?;
        if self.options.fsync {
            sync_file(path).await?;
        }
        self.fp.hit(&format!("storage.{point}.after"))?;
        tracing::info!(name, base, undo, "base merged into its overlay");
        Ok(())
    }

    pub(super) async fn chain_file(&self, name: &str) -> Result<Vec<ImageInfo>> {
        format_of_name(name)?;
        let (dir, name) = (self.dir.clone(), name.to_owned());
        blocking(move || chain_of(&dir, &name)).await
    }

    /// The job that makes the image `spec` in this backend.
    pub(super) fn job(&self, spec: &ImageSpec) -> CreateJob {
        CreateJob {
            spec: spec.clone(),
            dir: self.dir.clone(),
            path: self.dir.join(&spec.name),
            temp: self.temp_path(&spec.name),
            fsync: self.options.fsync,
            fp: std::sync::Arc::clone(&self.fp),
        }
    }
}

/// Check that `base` can carry an overlay of `size` bytes (blocking).
fn check_base(dir: &Path, base: &str, size: u64) -> Result<()> {
    let chain = chain_of(dir, base)?;
    let top = &chain[0];
    if !top.immutable {
        return Err(StorageError::MutableBase(base.to_owned()));
    }
    if top.virtual_size > size {
        return Err(StorageError::InvalidSize {
            size,
            detail: format!(
                "smaller than the base image {base} ({} bytes)",
                top.virtual_size
            ),
        });
    }
    Ok(())
}
