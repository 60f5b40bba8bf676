//! The file backend: each image is a file in one backend directory.
//!
//! This is the backend `scoria serve` uses out of the box, and the one every test
//! that claims a volume works runs against. Images are named `<stem>.qcow2` or
//! `<stem>.raw` (see [`crate::format_of_name`]); raw images are sparse files,
//! qcow2 images are written natively by [`crate::qcow2`] (or by `qemu-img
//! create`, see [`FileOptions::native_qcow2`]) and grown by `qemu-img resize`.
//!
//! The driver is split by what a reader comes for:
//!
//! - this file: the driver, its options, the lock per name, and the
//!   operations that are a few lines each (delete, extend, info, list,
//!   capacity);
//! - `create.rs`: the temp-file-and-rename job every new file goes through
//!   (blank images, overlays, copies, imports, exports), and why it is
//!   crash-safe;
//! - `layers.rs`: reading what a file is (and refusing references that leave
//!   the backend), immutability, overlays, backing chains;
//! - `streams.rs`: copies, imports and exports, all `qemu-img convert -n`;
//! - `survey.rs`: what the directory holds, headers read natively, for the
//!   repository check.
//!
//! # Crash safety
//!
//! Nothing that makes a file exposes a partial one under its final name (see
//! `create.rs`): the work is done under `.<name>.tmp`, synced, and renamed into
//! place without ever replacing a file. Delete, extend and make-immutable sync
//! the directory or the file before they return. With [`FileOptions::fsync`]
//! off (tests, benchmarks) the order is the same, only the syncs are skipped: a
//! process crash is still safe, a power loss is not.
//!
//! Leftover temporaries are invisible to [`Driver::list`]; the next create or
//! delete of the same name removes them, and the repository check can find and
//! remove the rest with [`FileDriver::temporaries`] and
//! [`FileDriver::remove_temporary`].
//!
//! # Layers
//!
//! An overlay records its base by the base's bare file name and pins its
//! format; qemu resolves the name against the overlay's directory, so the
//! backend directory can be moved or mounted elsewhere. A base is immutable
//! (mode 0400, see `layers.rs`). Every operation that reads an image checks its
//! chain first: each link is an image of this directory, named with its
//! format.
//!
//! Architecture invariant: one process owns a backend directory. Calls on the same
//! name are serialized inside the driver (a lock per name, so a copy that runs for
//! minutes holds up only calls on its own name), not across processes.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use scoria_failpoints::Failpoints;

use crate::{
    Capabilities, Capacity, Driver, ExportProtocol, Format, ImageInfo, ImageSpec, Progress, Result,
    StorageError, format_of_name, io_error, qemu, same_shape, validate_size,
};

pub(crate) mod create;
pub(crate) mod layers;
pub(crate) mod streams;
pub mod survey;

#[cfg(test)]
mod tests;

use create::{blocking, exists, read_dir, remove_if_present, set_len_error, sync_dir, sync_file};
use layers::shape_of;

/// How a [`FileDriver`] behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileOptions {
    /// Sync files and the directory so that an acknowledged change survives a power
    /// loss. On by default; turn it off only for tests and benchmarks.
    pub fsync: bool,
    /// Write blank qcow2 images natively rather than spawning `qemu-img create`.
    /// On by default; the switch exists for a future qemu whose images differ.
    pub native_qcow2: bool,
}

impl Default for FileOptions {
    fn default() -> Self {
        Self {
            fsync: true,
            native_qcow2: true,
        }
    }
}

/// One lock per image name, present while someone holds or waits for it.
#[derive(Default)]
struct NameLocks {
    map: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Holds the lock of one name; the last holder removes the name's entry.
struct NameGuard<'a> {
    locks: &'a NameLocks,
    name: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl NameLocks {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<()>>>> {
        // Every critical section leaves the map whole: a poisoned lock is fine.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn lock(&self, name: &str) -> NameGuard<'_> {
        let mutex = Arc::clone(self.map().entry(name.to_owned()).or_default());
        let guard = mutex.lock_owned().await;
        NameGuard {
            locks: self,
            name: name.to_owned(),
            guard: Some(guard),
        }
    }
}

impl Drop for NameGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.map();
        // Whoever waits for the name cloned the entry under the map's lock: a
        // count of one means the map's own reference is the last.
        if map
            .get(&self.name)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            map.remove(&self.name);
        }
    }
}

/// Images as files in a directory. See the module doc.
pub struct FileDriver {
    dir: PathBuf,
    fp: Arc<Failpoints>,
    options: FileOptions,
    locks: NameLocks,
}

impl std::fmt::Debug for FileDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileDriver")
            .field("dir", &self.dir)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl FileDriver {
    /// A driver for the backend directory `dir`, which must be absolute. The
    /// directory is created if absent.
    pub async fn new(
        dir: impl Into<PathBuf>,
        fp: Arc<Failpoints>,
        options: FileOptions,
    ) -> Result<Self> {
        let dir = dir.into();
        if !dir.is_absolute() {
            return Err(StorageError::InvalidName(dir.display().to_string()));
        }
        let for_task = dir.clone();
        blocking(move || {
            let existed = for_task.is_dir();
            std::fs::create_dir_all(&for_task)
                .map_err(|e| io_error(format!("creating {}", for_task.display()), e))?;
            if !existed
                && options.fsync
                && let Some(parent) = for_task.parent()
            {
                sync_dir(parent)?;
            }
            Ok(())
        })
        .await?;
        Ok(Self {
            dir,
            fp,
            options,
            locks: NameLocks::default(),
        })
    }

    /// The backend directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of the image `name`, after validating the name.
    pub fn path_of(&self, name: &str) -> Result<PathBuf> {
        format_of_name(name)?;
        Ok(self.dir.join(name))
    }

    /// Describe an image as `qemu-img info` sees it (authoritative and slower than
    /// [`Driver::info`]), or `None` when absent. Unlike `info`, it reports what
    /// it finds, legal or not: for the repository check and for tests.
    pub async fn qemu_info(&self, name: &str) -> Result<Option<ImageInfo>> {
        let format = format_of_name(name)?;
        let path = self.dir.join(name);
        let meta = match tokio::fs::symlink_metadata(&path).await {
            Ok(meta) => meta,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(format!("inspecting {}", path.display()), e)),
        };
        let mut info = qemu::info(&path, format).await?;
        info.immutable = meta.permissions().mode() & 0o222 == 0;
        Ok(Some(info))
    }

    /// Check an image's metadata with `qemu-img check`. An absent image is
    /// `NotFound`.
    pub async fn check(&self, name: &str) -> Result<qemu::CheckReport> {
        let format = format_of_name(name)?;
        let path = self.dir.join(name);
        if !exists(&path).await? {
            return Err(StorageError::NotFound(name.to_owned()));
        }
        qemu::check(&path, format).await
    }

    /// File names of the temporaries that interrupted creates left behind
    /// (`.<name>.tmp`), sorted. Only meaningful while no create runs: a create in
    /// progress has one too.
    pub async fn temporaries(&self) -> Result<Vec<String>> {
        let dir = self.dir.clone();
        blocking(move || {
            let mut names = Vec::new();
            for entry in read_dir(&dir)? {
                let image = entry.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp"));
                if image.is_some_and(|name| format_of_name(name).is_ok()) {
                    names.push(entry);
                }
            }
            names.sort();
            Ok(names)
        })
        .await
    }

    /// Remove one temporary named by [`FileDriver::temporaries`]; an absent one is
    /// success. Anything that is not a temporary's name is `InvalidName`.
    pub async fn remove_temporary(&self, file_name: &str) -> Result<()> {
        let name = file_name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".tmp"))
            .filter(|n| format_of_name(n).is_ok())
            .ok_or_else(|| StorageError::InvalidName(file_name.to_owned()))?;
        let _guard = self.lock(name).await;
        let (dir, path, fsync) = (
            self.dir.clone(),
            self.dir.join(file_name),
            self.options.fsync,
        );
        blocking(move || {
            remove_if_present(&path)?;
            if fsync {
                sync_dir(&dir)?;
            }
            Ok(())
        })
        .await
    }

    async fn lock(&self, name: &str) -> NameGuard<'_> {
        self.locks.lock(name).await
    }

    fn temp_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!(".{name}.tmp"))
    }
}

#[async_trait::async_trait]
impl Driver for FileDriver {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            thin_provisioning: true,
            layering: true,
            // The exporter will make these true once it can act on exported
            // images.
            online_snapshot: false,
            online_extend: false,
            multiattach: true,
            export_protocols: vec![ExportProtocol::Nbd, ExportProtocol::Local],
            formats: vec![Format::Qcow2, Format::Raw],
        }
    }

    async fn create(&self, spec: &ImageSpec) -> Result<()> {
        spec.validate()?;
        self.fp.hit("storage.create.before")?;
        let _guard = self.lock(&spec.name).await;
        let job = self.job(spec);
        let found = if spec.format == Format::Raw || self.options.native_qcow2 {
            // The common case, in one trip to the blocking pool.
            blocking(move || {
                if let Some(found) = job.existing()? {
                    return Ok(Some(found));
                }
                let file = job.open_temp()?;
                job.write_blank(&file)?;
                drop(file);
                job.publish("storage.create.temp")
            })
            .await?
        } else {
            let found = {
                let job = job.clone();
                blocking(move || match job.existing()? {
                    Some(found) => Ok(Some(found)),
                    None => job.open_temp().map(|_| None),
                })
                .await?
            };
            if found.is_none() {
                // qemu-img truncates the empty temporary and writes the image into it.
                let made = qemu::create(&job.temp, job.spec.format, job.spec.size).await;
                let made = match made {
                    Ok(()) if job.fsync => sync_file(job.temp.clone()).await,
                    other => other,
                };
                if let Err(e) = made {
                    job.discard_temp().await;
                    return Err(e);
                }
                blocking(move || job.publish("storage.create.temp")).await?
            } else {
                found
            }
        };
        if let Some(found) = found {
            return same_shape(spec, None, found);
        }
        self.fp.hit("storage.create.after")?;
        tracing::info!(name = %spec.name, size = spec.size, format = %spec.format, "image created");
        Ok(())
    }

    async fn copy_from(
        &self,
        source: &str,
        spec: &ImageSpec,
        progress: Progress<'_>,
    ) -> Result<()> {
        self.copy_image(source, spec, progress).await
    }

    async fn delete(&self, name: &str) -> Result<()> {
        format_of_name(name)?;
        self.fp.hit("storage.delete.before")?;
        let _guard = self.lock(name).await;
        let (dir, path, temp, fsync) = (
            self.dir.clone(),
            self.dir.join(name),
            self.temp_path(name),
            self.options.fsync,
        );
        let removed = blocking(move || {
            let removed = remove_if_present(&path)?;
            remove_if_present(&temp)?;
            // Sync even when nothing was removed: an earlier run may have crashed
            // between its unlink and its sync.
            if fsync {
                sync_dir(&dir)?;
            }
            Ok(removed)
        })
        .await?;
        self.fp.hit("storage.delete.after")?;
        if removed {
            tracing::info!(name, "image deleted");
        }
        Ok(())
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        crate::same_format(from, to)?;
        self.fp.hit("storage.rename.before")?;
        // Both names locked, in order, so two renames never wait on each other.
        let (first, second) = if from < to { (from, to) } else { (to, from) };
        let _a = self.lock(first).await;
        let _b = self.lock(second).await;
        let (dir, src, dst, fsync) = (
            self.dir.clone(),
            self.dir.join(from),
            self.dir.join(to),
            self.options.fsync,
        );
        let (from_name, to_name) = (from.to_owned(), to.to_owned());
        let moved = blocking(move || {
            let exists = |p: &Path| {
                p.try_exists()
                    .map_err(|e| io_error(format!("looking at {}", p.display()), e))
            };
            match (exists(&src)?, exists(&dst)?) {
                (true, true) => Err(StorageError::Mismatch {
                    name: to_name,
                    detail: format!("cannot rename {from_name} over it: it exists"),
                }),
                (false, false) => Err(StorageError::NotFound(from_name)),
                (false, true) => {
                    // A re-run: the rename happened; make it durable.
                    if fsync {
                        sync_dir(&dir)?;
                    }
                    Ok(false)
                }
                (true, false) => {
                    std::fs::rename(&src, &dst).map_err(|e| {
                        io_error(
                            format!("renaming {} to {}", src.display(), dst.display()),
                            e,
                        )
                    })?;
                    if fsync {
                        sync_dir(&dir)?;
                    }
                    Ok(true)
                }
            }
        })
        .await?;
        self.fp.hit("storage.rename.after")?;
        if moved {
            tracing::info!(from, to, "image renamed");
        }
        Ok(())
    }

    async fn extend(&self, name: &str, new_size: u64) -> Result<()> {
        let format = format_of_name(name)?;
        validate_size(format, new_size)?;
        self.fp.hit("storage.extend.before")?;
        let _guard = self.lock(name).await;
        let path = self.dir.join(name);
        let current = {
            let (name, path) = (name.to_owned(), path.clone());
            blocking(move || shape_of(&name, format, &path)).await?
        };
        let current = current.ok_or_else(|| StorageError::NotFound(name.to_owned()))?;
        if current.immutable {
            return Err(StorageError::Immutable(name.to_owned()));
        }
        if current.virtual_size >= new_size {
            return Ok(());
        }
        match format {
            Format::Raw => {
                let (path, fsync) = (path.clone(), self.options.fsync);
                blocking(move || {
                    let file = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|e| io_error(format!("opening {}", path.display()), e))?;
                    file.set_len(new_size)
                        .map_err(|e| set_len_error(&path, new_size, e))?;
                    if fsync {
                        file.sync_all()
                            .map_err(|e| io_error(format!("syncing {}", path.display()), e))?;
                    }
                    Ok(())
                })
                .await?;
            }
            Format::Qcow2 => {
                qemu::resize(&path, format, new_size).await?;
                if self.options.fsync {
                    sync_file(path).await?;
                }
            }
        }
        self.fp.hit("storage.extend.after")?;
        tracing::info!(
            name,
            from = current.virtual_size,
            to = new_size,
            "image extended"
        );
        Ok(())
    }

    async fn info(&self, name: &str) -> Result<Option<ImageInfo>> {
        let format = format_of_name(name)?;
        let (name, path) = (name.to_owned(), self.dir.join(name));
        blocking(move || shape_of(&name, format, &path)).await
    }

    async fn list(&self) -> Result<Vec<String>> {
        let dir = self.dir.clone();
        blocking(move || {
            let mut names = Vec::new();
            for name in read_dir(&dir)? {
                if format_of_name(&name).is_ok() {
                    let meta = std::fs::symlink_metadata(dir.join(&name));
                    match meta {
                        Ok(meta) if meta.is_file() => names.push(name),
                        Ok(_) => {}
                        // Deleted since the directory was read.
                        Err(e) if e.kind() == ErrorKind::NotFound => {}
                        Err(e) => return Err(io_error(format!("inspecting {name}"), e)),
                    }
                }
            }
            names.sort();
            Ok(names)
        })
        .await
    }

    async fn capacity(&self) -> Result<Capacity> {
        let dir = self.dir.clone();
        blocking(move || statvfs(&dir)).await
    }

    async fn make_immutable(&self, name: &str) -> Result<()> {
        self.make_immutable_file(name).await
    }

    async fn make_mutable(&self, name: &str) -> Result<()> {
        self.make_mutable_file(name).await
    }

    async fn create_overlay(&self, base: &str, spec: &ImageSpec) -> Result<()> {
        self.create_overlay_file(base, spec).await
    }

    async fn merge_base(&self, name: &str, base: &str) -> Result<()> {
        self.merge_base_file(name, base).await
    }

    async fn unmerge_base(&self, name: &str, base: &str) -> Result<()> {
        self.unmerge_base_file(name, base).await
    }

    async fn chain(&self, name: &str) -> Result<Vec<ImageInfo>> {
        self.chain_file(name).await
    }

    async fn inspect_untrusted(
        &self,
        source: &Path,
        format: crate::inspect::DiskFormat,
        limits: crate::qemu::untrusted::Limits,
    ) -> Result<crate::inspect::Inspection> {
        crate::vet::check(source, format, u64::MAX, limits).await
    }

    async fn import_untrusted(
        &self,
        spec: &ImageSpec,
        source: &Path,
        format: crate::inspect::DiskFormat,
        limits: crate::qemu::untrusted::Limits,
        progress: Progress<'_>,
    ) -> Result<crate::inspect::Inspection> {
        self.import_untrusted_file(spec, source, format, limits, progress)
            .await
    }

    async fn import_from(
        &self,
        spec: &ImageSpec,
        source: &Path,
        source_format: Format,
        progress: Progress<'_>,
    ) -> Result<()> {
        self.import_file(spec, source, source_format, progress)
            .await
    }

    async fn export_to(
        &self,
        name: &str,
        dest: &Path,
        dest_format: Format,
        progress: Progress<'_>,
    ) -> Result<()> {
        self.export_image(name, dest, dest_format, progress).await
    }

    async fn local_file(&self, name: &str) -> Result<crate::LocalFile> {
        let format = format_of_name(name)?;
        let path = self.dir.join(name);
        if !exists(&path).await? {
            return Err(StorageError::NotFound(name.to_owned()));
        }
        Ok(crate::LocalFile { path, format })
    }
}

fn statvfs(dir: &Path) -> Result<Capacity> {
    use std::os::unix::ffi::OsStrExt;
    let op = || format!("statvfs {}", dir.display());
    let c_dir = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| io_error(op(), std::io::Error::new(ErrorKind::InvalidInput, e)))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_dir` is a valid NUL-terminated string and `st` points to writable
    // memory of the right type, which statvfs fills on success.
    let rc = unsafe { libc::statvfs(c_dir.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io_error(op(), std::io::Error::last_os_error()));
    }
    // SAFETY: statvfs returned 0, so it initialized `st`.
    let st = unsafe { st.assume_init() };
    // The field types vary between targets (u32 on some 32-bit ones).
    #[allow(clippy::unnecessary_cast)]
    let (unit, blocks, available) = (st.f_frsize as u64, st.f_blocks as u64, st.f_bavail as u64);
    // Free space is what an unprivileged writer can use (f_bavail), not f_bfree.
    Ok(Capacity {
        total: blocks * unit,
        free: available * unit,
    })
}
