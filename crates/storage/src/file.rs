//! The file backend: each image is a file in one backend directory.
//!
//! This is the backend `scoria serve` uses out of the box, and the one every test
//! that claims a volume works runs against. Images are named `<stem>.qcow2` or
//! `<stem>.raw` (see [`crate::format_of_name`]); raw images are sparse files,
//! qcow2 images are written natively by [`crate::qcow2`] (or by `qemu-img
//! create`, see [`FileOptions::native_qcow2`]) and grown by `qemu-img resize`.
//!
//! # Crash safety
//!
//! A create never exposes a partial image under the final name:
//!
//! ```text
//!   .<name>.tmp ──write, fsync──► complete .<name>.tmp
//!               ──rename, never replacing──► <name> ──fsync dir──► acknowledged
//!   (a leftover temporary of an earlier crash is removed first)
//! ```
//!
//! The rename never replaces an existing file, so a create can never clobber an
//! image that appeared meanwhile. Delete and extend sync the directory or the file
//! before they return. With [`FileOptions::fsync`] off (tests, benchmarks) the
//! order is the same, only the syncs are skipped: a process crash is still safe, a
//! power loss is not.
//!
//! Leftover temporaries are invisible to [`Driver::list`]; the next create or
//! delete of the same name removes them, and the repository check can find and
//! remove the rest with [`FileDriver::temporaries`] and
//! [`FileDriver::remove_temporary`].
//!
//! A copy ([`Driver::copy_from`]) takes the same path: a blank image of the new
//! size is written under the temporary name, `qemu-img convert -n` copies the
//! source's data into it (zeroes stay holes: the copy is as sparse as the source),
//! and it is synced and renamed into place. An interrupted copy leaves at most a
//! temporary, which the next try removes first.
//!
//! Architecture invariant: one process owns a backend directory. Calls on the same
//! name are serialized inside the driver (a lock per name, so a copy that runs for
//! minutes holds up only calls on its own name), not across processes.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use scoria_failpoints::Failpoints;

use crate::{
    Capacity, Driver, Format, ImageInfo, ImageSpec, Result, StorageError, format_of_name, io_error,
    qcow2, qemu, validate_size,
};

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
    /// [`Driver::info`]), or `None` when absent.
    pub async fn qemu_info(&self, name: &str) -> Result<Option<ImageInfo>> {
        let format = format_of_name(name)?;
        let path = self.dir.join(name);
        if !exists(&path).await? {
            return Ok(None);
        }
        qemu::info(&path, format).await.map(Some)
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

    async fn create(&self, spec: &ImageSpec) -> Result<()> {
        spec.validate()?;
        self.fp.hit("storage.create.before")?;
        let _guard = self.lock(&spec.name).await;
        let job = CreateJob {
            spec: spec.clone(),
            dir: self.dir.clone(),
            path: self.dir.join(&spec.name),
            temp: self.temp_path(&spec.name),
            fsync: self.options.fsync,
            fp: Arc::clone(&self.fp),
        };
        let found = if spec.format == Format::Raw || self.options.native_qcow2 {
            // The common case, in one trip to the blocking pool.
            blocking(move || {
                if let Some(found) = job.existing()? {
                    return Ok(Some(found));
                }
                let file = job.open_temp()?;
                job.write_native(&file)?;
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
                    let temp = job.temp.clone();
                    // The next try would remove the leftover anyway.
                    let _ = blocking(move || remove_if_present(&temp)).await;
                    return Err(e);
                }
                blocking(move || job.publish("storage.create.temp")).await?
            } else {
                found
            }
        };
        if let Some(found) = found {
            return same_shape(spec, found);
        }
        self.fp.hit("storage.create.after")?;
        tracing::info!(name = %spec.name, size = spec.size, format = %spec.format, "image created");
        Ok(())
    }

    async fn copy_from(
        &self,
        source: &str,
        spec: &ImageSpec,
        progress: &(dyn Fn(u8) + Send + Sync),
    ) -> Result<()> {
        spec.validate()?;
        let source_format = format_of_name(source)?;
        if source == spec.name {
            return Err(StorageError::InvalidName(spec.name.clone()));
        }
        self.fp.hit("storage.copy.before")?;
        let _guard = self.lock(&spec.name).await;
        let job = CreateJob {
            spec: spec.clone(),
            dir: self.dir.clone(),
            path: self.dir.join(&spec.name),
            temp: self.temp_path(&spec.name),
            fsync: self.options.fsync,
            fp: Arc::clone(&self.fp),
        };
        let source_path = self.dir.join(source);
        // A re-run finds the copy in place; otherwise the source must be there,
        // self-contained and no larger than the copy, and the copy starts as a
        // blank image of its final size under the temporary name.
        let found = {
            let (job, source, source_path) = (job.clone(), source.to_owned(), source_path.clone());
            let native = spec.format == Format::Raw || self.options.native_qcow2;
            blocking(move || {
                if let Some(found) = job.existing()? {
                    return Ok(Some(found));
                }
                let src = shape_of(&source, source_format, &source_path)?
                    .ok_or_else(|| StorageError::NotFound(source.clone()))?;
                if src.refers_to_other_files() {
                    return Err(StorageError::BadImage {
                        name: source,
                        detail: "it refers to a backing or data file".into(),
                    });
                }
                if src.virtual_size > job.spec.size {
                    return Err(StorageError::InvalidSize {
                        size: job.spec.size,
                        detail: format!(
                            "smaller than the source image {source} ({} bytes)",
                            src.virtual_size
                        ),
                    });
                }
                let file = job.open_temp()?;
                if native {
                    job.write_native(&file)?;
                }
                Ok(None)
            })
            .await?
        };
        if let Some(found) = found {
            return same_shape(spec, found);
        }
        let copied = async {
            if !(spec.format == Format::Raw || self.options.native_qcow2) {
                qemu::create(&job.temp, spec.format, spec.size).await?;
            }
            qemu::convert_into(
                &source_path,
                source_format,
                &job.temp,
                spec.format,
                progress,
            )
            .await?;
            if job.fsync {
                sync_file(job.temp.clone()).await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = copied {
            let temp = job.temp.clone();
            // The next try would remove the leftover anyway.
            let _ = blocking(move || remove_if_present(&temp)).await;
            return Err(e);
        }
        if let Some(found) = blocking(move || job.publish("storage.copy.temp")).await? {
            return same_shape(spec, found);
        }
        self.fp.hit("storage.copy.after")?;
        tracing::info!(name = %spec.name, source, size = spec.size, format = %spec.format, "image copied");
        Ok(())
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
}

/// The files one create touches, and its blocking steps.
#[derive(Clone)]
struct CreateJob {
    spec: ImageSpec,
    dir: PathBuf,
    path: PathBuf,
    temp: PathBuf,
    fsync: bool,
    fp: Arc<Failpoints>,
}

impl CreateJob {
    /// The image as it is already there (a re-run of a create that succeeded), or
    /// `None`.
    fn existing(&self) -> Result<Option<ImageInfo>> {
        let found = match shape_of(&self.spec.name, self.spec.format, &self.path) {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(None),
            // Something that is not an image of the name's format is in the way:
            // a different shape.
            Err(StorageError::BadImage { name, detail }) => {
                return Err(StorageError::Mismatch { name, detail });
            }
            Err(e) => return Err(e),
        };
        // An earlier run may have crashed after its rename and before its
        // directory sync; sync now so that the success reported is durable.
        remove_if_present(&self.temp)?;
        if self.fsync {
            sync_dir(&self.dir)?;
        }
        Ok(Some(found))
    }

    /// Create the temporary file, empty, replacing a leftover of an earlier run.
    fn open_temp(&self) -> Result<File> {
        remove_if_present(&self.temp)?;
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.temp)
            .map_err(|e| io_error(format!("creating {}", self.temp.display()), e))
    }

    /// Write the blank image into the temporary file and sync it.
    fn write_native(&self, file: &File) -> Result<()> {
        match self.spec.format {
            Format::Raw => file
                .set_len(self.spec.size)
                .map_err(|e| set_len_error(&self.temp, self.spec.size, e))?,
            Format::Qcow2 => qcow2::write_blank(file, self.spec.size)?,
        }
        if self.fsync {
            file.sync_all()
                .map_err(|e| io_error(format!("syncing {}", self.temp.display()), e))?;
        }
        Ok(())
    }

    /// Move the complete temporary into place, never over an image that appeared
    /// meanwhile (then that image is returned, for comparison), and sync the
    /// directory. `failpoint` is hit first (`storage.create.temp`,
    /// `storage.copy.temp`).
    fn publish(&self, failpoint: &str) -> Result<Option<ImageInfo>> {
        self.fp.hit(failpoint)?;
        let raced = match rename_noreplace(&self.temp, &self.path) {
            Ok(()) => None,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                remove_if_present(&self.temp)?;
                shape_of(&self.spec.name, self.spec.format, &self.path)?
            }
            Err(e) => return Err(io_error(format!("renaming {}", self.temp.display()), e)),
        };
        if self.fsync {
            sync_dir(&self.dir)?;
        }
        Ok(raced)
    }
}

/// Run blocking file-system work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Io {
            op: "running a blocking file operation".into(),
            source: std::io::Error::other(e),
        })?
}

async fn exists(path: &Path) -> Result<bool> {
    tokio::fs::try_exists(path)
        .await
        .map_err(|e| io_error(format!("inspecting {}", path.display()), e))
}

fn set_len_error(path: &Path, size: u64, e: std::io::Error) -> StorageError {
    if e.raw_os_error() == Some(libc::EFBIG) {
        return StorageError::InvalidSize {
            size,
            detail: "larger than the backend's file system allows for one file".into(),
        };
    }
    io_error(format!("setting the length of {}", path.display()), e)
}

/// What the image at `path` is, read natively (blocking): its metadata for raw, its
/// header for qcow2. `None` when absent.
fn shape_of(name: &str, format: Format, path: &Path) -> Result<Option<ImageInfo>> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(format!("inspecting {}", path.display()), e)),
    };
    if !meta.is_file() {
        return Err(StorageError::BadImage {
            name: name.to_owned(),
            detail: "not a regular file".into(),
        });
    }
    let mut info = ImageInfo {
        name: name.to_owned(),
        format,
        virtual_size: meta.len(),
        actual_size: meta.blocks() * 512,
        backing_file: None,
        data_file: None,
    };
    if format == Format::Qcow2 {
        let header = qcow2::read_header(path).map_err(|e| qcow2::header_error(name, e))?;
        info.virtual_size = header.virtual_size;
        info.backing_file = header.backing_file;
        info.data_file = header.data_file;
    }
    Ok(Some(info))
}

/// Success when the existing image `found` is what `spec` asks for, `Mismatch`
/// otherwise.
fn same_shape(spec: &ImageSpec, found: ImageInfo) -> Result<()> {
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
    if found.refers_to_other_files() {
        return mismatch("it refers to a backing or data file".into());
    }
    Ok(())
}

/// Remove a file; true if it was there.
fn remove_if_present(path: &Path) -> Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error(format!("removing {}", path.display()), e)),
    }
}

fn read_dir(dir: &Path) -> Result<Vec<String>> {
    let op = || format!("listing {}", dir.display());
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(op(), e))? {
        let entry = entry.map_err(|e| io_error(op(), e))?;
        // A name that is not UTF-8 is no image of ours.
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(format!("syncing {}", dir.display()), e))
}

async fn sync_file(path: PathBuf) -> Result<()> {
    blocking(move || {
        OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.sync_all())
            .map_err(|e| io_error(format!("syncing {}", path.display()), e))
    })
    .await
}

/// Rename `from` to `to` unless `to` exists (then `AlreadyExists`), atomically.
/// Falls back to link-then-unlink on file systems without `RENAME_NOREPLACE`.
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|e| std::io::Error::new(ErrorKind::InvalidInput, e))
    };
    let (c_from, c_to) = (c(from)?, c(to)?);
    // SAFETY: both arguments are valid NUL-terminated strings that outlive the
    // call, and AT_FDCWD with absolute paths names no descriptor.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            c_from.as_ptr(),
            libc::AT_FDCWD,
            c_to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => {
            // link(2) fails if `to` exists, which is the no-replace guarantee; a
            // crash before the unlink leaves a temporary, removed later.
            std::fs::hard_link(from, to)?;
            std::fs::remove_file(from)
        }
        _ => Err(e),
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

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    async fn driver(options: FileOptions) -> (tempfile::TempDir, FileDriver) {
        let dir = tempfile::tempdir().expect("temp dir");
        let backend = dir.path().join("backend");
        let driver = FileDriver::new(&backend, Failpoints::new(), options)
            .await
            .expect("driver");
        (dir, driver)
    }

    fn spec(name: &str, size: u64) -> ImageSpec {
        let format = format_of_name(name).expect("valid name");
        ImageSpec {
            name: name.into(),
            size,
            format,
        }
    }

    /// After create and after extend, qemu-img agrees with the native info and
    /// finds the image clean.
    async fn check_with_qemu(d: &FileDriver, name: &str, size: u64) {
        let native = d.info(name).await.expect("info").expect("present");
        let by_qemu = d
            .qemu_info(name)
            .await
            .expect("qemu info")
            .expect("present");
        assert_eq!(native.virtual_size, size, "{name}");
        assert_eq!(by_qemu.virtual_size, size, "{name}");
        assert_eq!(
            (native.format, by_qemu.format),
            (by_qemu.format, format_of_name(name).expect("name"))
        );
        assert!(!by_qemu.refers_to_other_files());
        let report = d.check(name).await.expect("check");
        assert!(report.is_clean(), "{name}: {report:?}");
    }

    #[tokio::test]
    async fn images_are_clean_for_qemu_after_create_and_extend() {
        for options in [
            FileOptions::default(),
            FileOptions {
                fsync: false,
                native_qcow2: false,
            },
        ] {
            let (_tmp, d) = driver(options).await;
            for name in ["v.qcow2", "v.raw"] {
                d.create(&spec(name, GIB)).await.expect("create");
                check_with_qemu(&d, name, GIB).await;
                d.extend(name, 3 * GIB + 512).await.expect("extend");
                check_with_qemu(&d, name, 3 * GIB + 512).await;
            }
        }
    }

    #[tokio::test]
    async fn native_and_qemu_img_creates_are_the_same_file() {
        let (_a, native) = driver(FileOptions::default()).await;
        let (_b, by_qemu) = driver(FileOptions {
            native_qcow2: false,
            ..FileOptions::default()
        })
        .await;
        for d in [&native, &by_qemu] {
            d.create(&spec("v.qcow2", 10 * GIB)).await.expect("create");
        }
        let read = |d: &FileDriver| std::fs::read(d.dir().join("v.qcow2")).expect("read");
        assert!(read(&native) == read(&by_qemu));
    }

    #[tokio::test]
    async fn raw_images_are_sparse_and_private() {
        let (_tmp, d) = driver(FileOptions::default()).await;
        d.create(&spec("v.raw", GIB)).await.expect("create");
        let info = d.info("v.raw").await.expect("info").expect("present");
        assert_eq!((info.virtual_size, info.actual_size), (GIB, 0));
        let meta = std::fs::metadata(d.dir().join("v.raw")).expect("metadata");
        assert_eq!(meta.mode() & 0o777, 0o600);
    }

    #[tokio::test]
    async fn leftover_temporaries_are_invisible_and_cleaned() {
        let (_tmp, d) = driver(FileOptions::default()).await;
        // A crash while writing leaves half an image under the temporary name.
        for leftover in [".a.qcow2.tmp", ".b.raw.tmp", ".c.qcow2.tmp"] {
            std::fs::write(d.dir().join(leftover), b"QFI\xfb half").expect("write leftover");
        }
        // Files that are not ours are ignored too.
        std::fs::write(d.dir().join("notes.txt"), b"hello").expect("write");
        std::fs::create_dir(d.dir().join("sub.qcow2")).expect("mkdir");
        assert_eq!(d.list().await.expect("list"), Vec::<String>::new());
        assert_eq!(
            d.temporaries().await.expect("temporaries"),
            [".a.qcow2.tmp", ".b.raw.tmp", ".c.qcow2.tmp"]
        );

        // The next create of a name replaces its leftover; delete removes one.
        d.create(&spec("a.qcow2", MIB)).await.expect("create");
        d.delete("b.raw").await.expect("delete");
        assert_eq!(
            d.temporaries().await.expect("temporaries"),
            [".c.qcow2.tmp"]
        );
        assert_eq!(d.list().await.expect("list"), ["a.qcow2"]);
        check_with_qemu(&d, "a.qcow2", MIB).await;

        // The repository check removes the rest, and only temporaries.
        d.remove_temporary(".c.qcow2.tmp").await.expect("remove");
        d.remove_temporary(".c.qcow2.tmp")
            .await
            .expect("remove again");
        for not_a_temporary in ["a.qcow2", "notes.txt", "../x.qcow2.tmp", ".x.tmp"] {
            let err = d.remove_temporary(not_a_temporary).await;
            assert!(
                matches!(err, Err(StorageError::InvalidName(_))),
                "{not_a_temporary}: {err:?}"
            );
        }
        assert!(d.temporaries().await.expect("temporaries").is_empty());
        assert!(d.dir().join("notes.txt").exists());
    }

    #[tokio::test]
    async fn foreign_and_broken_files_are_reported_not_trusted() {
        let (_tmp, d) = driver(FileOptions::default()).await;
        // A raw file named as qcow2 is no qcow2 image, whatever the guest wrote.
        std::fs::write(d.dir().join("fake.qcow2"), vec![0u8; 4096]).expect("write");
        let err = d.info("fake.qcow2").await;
        assert!(matches!(err, Err(StorageError::BadImage { .. })), "{err:?}");
        let err = d.create(&spec("fake.qcow2", 4096)).await;
        assert!(matches!(err, Err(StorageError::Mismatch { .. })), "{err:?}");
        let err = d.extend("fake.qcow2", GIB).await;
        assert!(matches!(err, Err(StorageError::BadImage { .. })), "{err:?}");
        d.delete("fake.qcow2").await.expect("delete");

        // A qcow2 header in a raw image is data: the raw image stays raw.
        let bytes = qcow2::blank_layout(GIB).expect("layout").to_bytes();
        let mut raw = bytes.clone();
        raw.resize(MIB as usize, 0);
        std::fs::write(d.dir().join("guest.raw"), &raw).expect("write");
        let info = d.info("guest.raw").await.expect("info").expect("present");
        assert_eq!((info.format, info.virtual_size), (Format::Raw, MIB));

        // A directory under an image's name is not an image.
        std::fs::create_dir(d.dir().join("dir.raw")).expect("mkdir");
        let err = d.info("dir.raw").await;
        assert!(matches!(err, Err(StorageError::BadImage { .. })), "{err:?}");
    }

    #[tokio::test]
    async fn an_existing_overlay_is_a_mismatch() {
        let (_tmp, d) = driver(FileOptions::default()).await;
        d.create(&spec("base.qcow2", MIB)).await.expect("create");
        let base = d.dir().join("base.qcow2");
        let overlay = d.dir().join("overlay.qcow2");
        let (base, overlay) = (
            base.to_str().expect("utf-8"),
            overlay.to_str().expect("utf-8"),
        );
        qemu::qemu_img_for_tests(&[
            "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, overlay,
        ])
        .await
        .expect("create overlay");
        let info = d
            .info("overlay.qcow2")
            .await
            .expect("info")
            .expect("present");
        assert_eq!(info.backing_file.as_deref(), Some(base));
        let err = d.create(&spec("overlay.qcow2", MIB)).await;
        assert!(matches!(err, Err(StorageError::Mismatch { .. })), "{err:?}");
    }

    #[tokio::test]
    async fn the_directory_is_created_and_must_be_absolute() {
        let (tmp, d) = driver(FileOptions::default()).await;
        assert!(d.dir().is_dir());
        assert!(d.dir().starts_with(tmp.path()));
        let err = FileDriver::new("relative/dir", Failpoints::new(), FileOptions::default()).await;
        assert!(matches!(err, Err(StorageError::InvalidName(_))), "{err:?}");
        let capacity = d.capacity().await.expect("capacity");
        assert!(
            capacity.total > 0 && capacity.free <= capacity.total,
            "{capacity:?}"
        );
    }

    #[tokio::test]
    async fn concurrent_creates_of_one_name_make_one_image() {
        let (_tmp, d) = driver(FileOptions {
            fsync: false,
            ..FileOptions::default()
        })
        .await;
        let d = Arc::new(d);
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let d = Arc::clone(&d);
                tokio::spawn(async move { d.create(&spec("v.qcow2", GIB)).await })
            })
            .collect();
        for task in tasks {
            task.await.expect("join").expect("create");
        }
        assert_eq!(d.list().await.expect("list"), ["v.qcow2"]);
        assert!(d.temporaries().await.expect("temporaries").is_empty());
        check_with_qemu(&d, "v.qcow2", GIB).await;
    }

    /// A copy reads the same as its source (qemu-img compare), at its own size
    /// and format; it stays sparse, private and clean, and the source is not
    /// changed. Both the native and the qemu-img blank paths are covered.
    #[tokio::test]
    async fn copies_carry_the_data_and_stay_sparse() {
        for native_qcow2 in [true, false] {
            let (_tmp, d) = driver(FileOptions {
                fsync: true,
                native_qcow2,
            })
            .await;
            for source in ["src.qcow2", "src.raw"] {
                let source_format = format_of_name(source).expect("name");
                d.create(&spec(source, GIB)).await.expect("create");
                let path = d.dir().join(source);
                // 4 MiB of 0xab at the start, 1 MiB of 0xcd in the middle, and
                // a last sector: the rest reads as zeroes.
                for (offset, len, pattern) in [
                    (0, 4 * MIB, 0xab),
                    (512 * MIB, MIB, 0xcd),
                    (GIB - 512, 512, 0x5a),
                ] {
                    qemu::write_pattern(&path, source_format, offset, len, pattern)
                        .await
                        .expect("write pattern");
                }
                let before = std::fs::read(&path).expect("read source");
                for (copy, size) in [("copy.qcow2", GIB), ("copy.raw", 2 * GIB + 512)] {
                    d.copy_from(source, &spec(copy, size), &|_| {})
                        .await
                        .unwrap_or_else(|e| panic!("{source} → {copy}: {e:?}"));
                    check_with_qemu(&d, copy, size).await;
                    let copy_path = d.dir().join(copy);
                    let copy_format = format_of_name(copy).expect("name");
                    assert!(
                        qemu::compare(&path, source_format, &copy_path, copy_format)
                            .await
                            .expect("compare"),
                        "{source} → {copy} differ"
                    );
                    let info = d.info(copy).await.expect("info").expect("present");
                    assert!(
                        info.actual_size < 16 * MIB,
                        "{source} → {copy} is not sparse: {info:?}"
                    );
                    let meta = std::fs::metadata(&copy_path).expect("metadata");
                    assert_eq!(meta.mode() & 0o777, 0o600, "{copy}");
                    d.delete(copy).await.expect("delete");
                }
                // A copy that differs is told apart.
                d.create(&spec("blank.qcow2", GIB)).await.expect("create");
                let blank = d.dir().join("blank.qcow2");
                assert!(
                    !qemu::compare(&path, source_format, &blank, Format::Qcow2)
                        .await
                        .expect("compare")
                );
                d.delete("blank.qcow2").await.expect("delete");
                assert!(
                    std::fs::read(&path).expect("read source") == before,
                    "{source} changed"
                );
                d.delete(source).await.expect("delete");
                assert!(d.temporaries().await.expect("temporaries").is_empty());
            }
        }
    }

    #[tokio::test]
    async fn a_leftover_of_an_interrupted_copy_is_replaced() {
        let (_tmp, d) = driver(FileOptions::default()).await;
        d.create(&spec("src.raw", MIB)).await.expect("create");
        qemu::write_pattern(&d.dir().join("src.raw"), Format::Raw, 0, MIB, 7)
            .await
            .expect("write");
        std::fs::write(d.dir().join(".c.qcow2.tmp"), b"QFI\xfb half").expect("leftover");
        d.copy_from("src.raw", &spec("c.qcow2", 2 * MIB), &|_| {})
            .await
            .expect("copy");
        assert!(d.temporaries().await.expect("temporaries").is_empty());
        assert!(
            qemu::compare(
                &d.dir().join("src.raw"),
                Format::Raw,
                &d.dir().join("c.qcow2"),
                Format::Qcow2
            )
            .await
            .expect("compare")
        );
        // A copy that fails in qemu-img leaves no temporary either.
        std::fs::write(d.dir().join("broken.qcow2"), b"QFI\xfb").expect("write");
        let err = d
            .copy_from("broken.qcow2", &spec("d.qcow2", MIB), &|_| {})
            .await;
        assert!(err.is_err(), "{err:?}");
        assert!(d.temporaries().await.expect("temporaries").is_empty());
        assert_eq!(
            d.list().await.expect("list"),
            ["broken.qcow2", "c.qcow2", "src.raw"]
        );
    }

    #[tokio::test]
    async fn a_long_call_on_one_name_holds_up_no_other_name() {
        let (_tmp, d) = driver(FileOptions::default()).await;
        let held = d.lock("a.qcow2").await;
        // Every other name goes on (with a lock shared by several names, one of
        // these would wait for ever).
        for i in 0..200 {
            drop(d.lock(&format!("v{i}.raw")).await);
        }
        drop(held);
        // Entries go once nobody holds or waits.
        assert!(d.locks.map().is_empty());
    }

    #[test]
    fn rename_never_replaces() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"a").expect("write");
        std::fs::write(&b, b"b").expect("write");
        let err = rename_noreplace(&a, &b).expect_err("must not replace");
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&b).expect("read"), b"b");
        std::fs::remove_file(&b).expect("remove");
        rename_noreplace(&a, &b).expect("rename");
        assert_eq!(std::fs::read(&b).expect("read"), b"a");
        assert!(!a.exists());
    }
}
