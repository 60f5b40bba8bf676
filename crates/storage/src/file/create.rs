//! The temp-file-and-rename job every new file goes through, and the file-system
//! primitives it is made of.
//!
//! Each operation that makes a file (a blank image, an overlay, a copy, an
//! import into the backend, an export out of it) is the same job with a
//! different filling, so the crash-safety argument is made once, here:
//!
//! ```text
//!   existing?  ──yes──► compare its shape (a re-run), sync the directory, done
//!      │ no
//!   .<name>.tmp  (a leftover of an earlier crash is removed first), mode 0600
//!      ──fill (natively, or qemu-img convert -n), fsync──► complete temporary
//!      ──failpoint <op>.temp──► rename, never replacing──► <name>
//!      ──fsync dir──► acknowledged
//! ```
//!
//! The rename never replaces an existing file, so a job can never clobber a
//! file that appeared meanwhile; it compares with it instead. A filling that
//! fails removes the temporary (and the next run would remove it anyway).

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use scoria_failpoints::Failpoints;

use super::layers::shape_of;
use crate::{Format, ImageInfo, ImageSpec, Progress, Result, StorageError, io_error, qcow2, qemu};

/// The files one job touches, and its blocking steps.
#[derive(Clone)]
pub(crate) struct CreateJob {
    /// The file to make: its name (for messages; inside a backend, an image
    /// name), its virtual size and its format.
    pub(crate) spec: ImageSpec,
    /// The directory that holds `path` and `temp`.
    pub(crate) dir: PathBuf,
    pub(crate) path: PathBuf,
    pub(crate) temp: PathBuf,
    pub(crate) fsync: bool,
    pub(crate) fp: Arc<Failpoints>,
}

impl CreateJob {
    /// The job for the file `path` (absolute), whose temporary is
    /// `.<file name>.tmp` beside it.
    pub(crate) fn at(
        path: &Path,
        size: u64,
        format: Format,
        fsync: bool,
        fp: &Arc<Failpoints>,
    ) -> Result<Self> {
        let invalid = || StorageError::InvalidName(path.display().to_string());
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(invalid)?;
        let dir = path
            .parent()
            .filter(|_| path.is_absolute())
            .ok_or_else(invalid)?;
        Ok(Self {
            spec: ImageSpec {
                name: name.to_owned(),
                size,
                format,
            },
            dir: dir.to_owned(),
            path: path.to_owned(),
            temp: dir.join(format!(".{name}.tmp")),
            fsync,
            fp: Arc::clone(fp),
        })
    }

    /// The file as it is already there (a re-run of a job that succeeded), or
    /// `None`.
    pub(crate) fn existing(&self) -> Result<Option<ImageInfo>> {
        let found = match shape_of(&self.spec.name, self.spec.format, &self.path) {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(None),
            // Something that is not an image of the name's format (or not one
            // of ours) is in the way: a different shape.
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
    pub(crate) fn open_temp(&self) -> Result<File> {
        remove_if_present(&self.temp)?;
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.temp)
            .map_err(|e| io_error(format!("creating {}", self.temp.display()), e))
    }

    /// Write a blank image into the temporary file and sync it.
    pub(crate) fn write_blank(&self, file: &File) -> Result<()> {
        match self.spec.format {
            Format::Raw => file
                .set_len(self.spec.size)
                .map_err(|e| set_len_error(&self.temp, self.spec.size, e))?,
            Format::Qcow2 => qcow2::write_blank(file, self.spec.size)?,
        }
        self.sync(file)
    }

    /// Write an empty qcow2 overlay on `base` into the temporary file and sync it.
    pub(crate) fn write_overlay(&self, file: &File, base: &str, base_format: Format) -> Result<()> {
        qcow2::write_overlay(file, self.spec.size, base, base_format)?;
        self.sync(file)
    }

    fn sync(&self, file: &File) -> Result<()> {
        if self.fsync {
            file.sync_all()
                .map_err(|e| io_error(format!("syncing {}", self.temp.display()), e))?;
        }
        Ok(())
    }

    /// Make the temporary a blank image of the job's shape (natively when
    /// `native`, else with `qemu-img create`), then copy the data of `source`
    /// into it with `qemu-img convert -n` (sparse: zeroes stay holes) and sync
    /// it. On failure the temporary is removed.
    pub(crate) async fn fill_by_convert(
        &self,
        native: bool,
        source: &Path,
        source_format: &str,
        progress: Progress<'_>,
    ) -> Result<()> {
        let filled = async {
            let job = self.clone();
            blocking(move || {
                let file = job.open_temp()?;
                if native {
                    job.write_blank(&file)?;
                }
                Ok(())
            })
            .await?;
            if !native {
                // qemu-img truncates the empty temporary and writes the image
                // into it.
                qemu::create(&self.temp, self.spec.format, self.spec.size).await?;
            }
            qemu::convert_named_into(
                source,
                source_format,
                &self.temp,
                self.spec.format,
                progress,
            )
            .await?;
            if self.fsync {
                sync_file(self.temp.clone()).await?;
            }
            Ok(())
        }
        .await;
        if filled.is_err() {
            self.discard_temp().await;
        }
        filled
    }

    /// Remove the temporary after a failure. The next run would remove the
    /// leftover anyway, so an error here is not worth reporting over the first.
    pub(crate) async fn discard_temp(&self) {
        let temp = self.temp.clone();
        let _ = blocking(move || remove_if_present(&temp)).await;
    }

    /// Move the complete temporary into place, never over a file that appeared
    /// meanwhile (then that file is returned, for comparison), and sync the
    /// directory. `failpoint` is hit first (`storage.create.temp`, …).
    pub(crate) fn publish(&self, failpoint: &str) -> Result<Option<ImageInfo>> {
        self.fp.hit(failpoint)?;
        let raced = match rename_noreplace(&self.temp, &self.path) {
            Ok(()) => None,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                remove_if_present(&self.temp)?;
                Some(
                    shape_of(&self.spec.name, self.spec.format, &self.path)?.ok_or_else(|| {
                        StorageError::Mismatch {
                            name: self.spec.name.clone(),
                            detail: "it appeared and went away during the operation".into(),
                        }
                    })?,
                )
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
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Io {
            op: "running a blocking file operation".into(),
            source: std::io::Error::other(e),
        })?
}

pub(crate) async fn exists(path: &Path) -> Result<bool> {
    tokio::fs::try_exists(path)
        .await
        .map_err(|e| io_error(format!("inspecting {}", path.display()), e))
}

pub(crate) fn set_len_error(path: &Path, size: u64, e: std::io::Error) -> StorageError {
    if e.raw_os_error() == Some(libc::EFBIG) {
        return StorageError::InvalidSize {
            size,
            detail: "larger than the backend's file system allows for one file".into(),
        };
    }
    io_error(format!("setting the length of {}", path.display()), e)
}

/// Remove a file; true if it was there.
pub(crate) fn remove_if_present(path: &Path) -> Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error(format!("removing {}", path.display()), e)),
    }
}

pub(crate) fn read_dir(dir: &Path) -> Result<Vec<String>> {
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

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(format!("syncing {}", dir.display()), e))
}

/// Sync a file's data and metadata. A read-only descriptor is enough, so this
/// works on immutable images too.
pub(crate) fn sync_path(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_error(format!("syncing {}", path.display()), e))
}

pub(crate) async fn sync_file(path: PathBuf) -> Result<()> {
    blocking(move || sync_path(&path)).await
}

/// Rename `from` to `to` unless `to` exists (then `AlreadyExists`), atomically.
/// Falls back to link-then-unlink on file systems without `RENAME_NOREPLACE`.
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
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
