//! The image service's store: where the files of Glance images live.
//!
//! These are not a backend's images (see [`crate::Driver`]): an object here
//! is the bytes a user uploaded to the image service, kept as they came,
//! whatever their disk format says. The application streams an upload into a
//! new object ([`ImageStore::create`], then [`ObjectWriter::write`] chunk by
//! chunk and [`ObjectWriter::commit`]), reads it back from any offset
//! ([`ImageStore::open`]), and deletes it. Nothing else in Scoria touches these
//! bytes: the HTTP layer hands the request body to the application, which
//! hands it here, and a download goes the other way.
//!
//! One trait, so that an RBD pool can hold the objects later; one
//! implementation today, [`FileImageStore`], a directory of files.
//!
//! # Crash safety
//!
//! ```text
//!   create ──► .<name>.tmp (mode 0600) ──write… (failpoint image_store.write
//!   at each chunk)──► fsync ──failpoint
//!   image_store.commit.temp──► rename, never replacing ──► <name> ──fsync dir──► commit returns
//!        └── dropped or aborted before commit: the temporary is removed
//! ```
//!
//! An object appears complete or not at all. A temporary left by a crash is
//! invisible to [`ImageStore::list`] and removed by
//! [`ImageStore::remove_temporaries`], which the application calls at start
//! (when no upload can be running). Deleting is unlinking then syncing the
//! directory; an absent object is success.
//!
//! Object names are chosen by the application (an image's id): 1 to 128
//! bytes of `[A-Za-z0-9_-]`, so that a name never reaches outside the store
//! or names a temporary.

use std::fmt::Debug;
use std::io::{ErrorKind, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use scoria_failpoints::Failpoints;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::file::create::{blocking, remove_if_present, rename_noreplace, sync_dir};
use crate::{Result, StorageError, io_error};

/// The failpoints of the image store, in the order an upload and a delete
/// reach them.
pub const IMAGE_STORE_FAILPOINTS: &[&str] = &[
    "image_store.write",
    "image_store.commit.temp",
    "image_store.commit.after",
    "image_store.delete.before",
    "image_store.delete.after",
];

/// The longest object name.
pub const MAX_OBJECT_NAME_LEN: usize = 128;

/// A reader of an object's bytes (from an offset, up to a length).
pub type ObjectReader = Box<dyn AsyncRead + Send + Unpin>;

/// Where the image service keeps its objects.
#[async_trait::async_trait]
pub trait ImageStore: Send + Sync + Debug {
    /// `"file"`.
    fn kind(&self) -> &'static str;

    /// Start a new object `name`. Nothing is visible under the name until
    /// [`ObjectWriter::commit`]; a writer dropped before then leaves nothing.
    /// An invalid name is `InvalidName`.
    async fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>>;

    /// Read the object from `offset`, at most `len` bytes (to its end when
    /// `None`). An absent object is `NotFound`; an offset past its end reads
    /// nothing.
    async fn open(&self, name: &str, offset: u64, len: Option<u64>) -> Result<ObjectReader>;

    /// The object's size in bytes, or `None` when it is absent.
    async fn size(&self, name: &str) -> Result<Option<u64>>;

    /// Remove the object; an absent one is success.
    async fn delete(&self, name: &str) -> Result<()>;

    /// The names of the complete objects, sorted (temporaries excluded).
    async fn list(&self) -> Result<Vec<String>>;

    /// Remove what interrupted writes left behind; returns how many. Only
    /// when no writer is open (at start).
    async fn remove_temporaries(&self) -> Result<usize>;

    /// Where a complete object is as a local file, for stores that keep
    /// objects as files (the file store): a backend's driver then reads it
    /// directly (`Driver::import_untrusted`). `None` for stores that do not
    /// (an RBD pool later, whose objects a driver reads its own way).
    fn local_path(&self, name: &str) -> Option<PathBuf>;
}

/// One object being written.
#[async_trait::async_trait]
pub trait ObjectWriter: Send {
    /// Append `chunk`.
    async fn write(&mut self, chunk: &[u8]) -> Result<()>;

    /// Make the object durable under its name; returns its size. An object
    /// already under the name is `Mismatch` (it is never replaced), and the
    /// temporary goes.
    async fn commit(self: Box<Self>) -> Result<u64>;

    /// Give up: the temporary goes (dropping the writer does the same).
    async fn abort(self: Box<Self>);
}

pub type DynImageStore = Arc<dyn ImageStore>;

/// Validate an object name (see the module doc).
pub fn validate_object_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > MAX_OBJECT_NAME_LEN
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
    {
        return Err(StorageError::InvalidName(name.to_owned()));
    }
    Ok(())
}

/// Objects as files in one directory.
#[derive(Debug)]
pub struct FileImageStore {
    dir: PathBuf,
    fsync: bool,
    fp: Arc<Failpoints>,
}

impl FileImageStore {
    /// The store in `dir` (created if needed). `fsync` off skips the syncs
    /// (tests): a process crash is still safe, a power loss is not.
    pub async fn new(dir: PathBuf, fsync: bool, fp: Arc<Failpoints>) -> Result<FileImageStore> {
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io_error(format!("creating {}", dir.display()), e))?;
        let dir = tokio::fs::canonicalize(&dir)
            .await
            .map_err(|e| io_error(format!("resolving {}", dir.display()), e))?;
        Ok(FileImageStore { dir, fsync, fp })
    }

    /// The directory of the objects.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> Result<PathBuf> {
        validate_object_name(name)?;
        Ok(self.dir.join(name))
    }

    fn temp(&self, name: &str) -> PathBuf {
        self.dir.join(format!(".{name}.tmp"))
    }
}

#[async_trait::async_trait]
impl ImageStore for FileImageStore {
    fn kind(&self) -> &'static str {
        "file"
    }

    async fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>> {
        let path = self.path(name)?;
        let temp = self.temp(name);
        let t = temp.clone();
        let file = blocking(move || {
            remove_if_present(&t)?;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&t)
                .map_err(|e| io_error(format!("creating {}", t.display()), e))
        })
        .await?;
        Ok(Box::new(FileWriter {
            file: Some(tokio::fs::File::from_std(file)),
            name: name.to_owned(),
            dir: self.dir.clone(),
            path,
            temp,
            written: 0,
            fsync: self.fsync,
            fp: self.fp.clone(),
            done: false,
        }))
    }

    async fn open(&self, name: &str, offset: u64, len: Option<u64>) -> Result<ObjectReader> {
        let path = self.path(name)?;
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(StorageError::NotFound(name.to_owned()));
            }
            Err(e) => return Err(io_error(format!("opening {}", path.display()), e)),
        };
        if offset > 0 {
            file.seek(SeekFrom::Start(offset))
                .await
                .map_err(|e| io_error(format!("seeking in {}", path.display()), e))?;
        }
        Ok(match len {
            Some(n) => Box::new(file.take(n)),
            None => Box::new(file),
        })
    }

    async fn size(&self, name: &str) -> Result<Option<u64>> {
        let path = self.path(name)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(format!("inspecting {}", path.display()), e)),
        }
    }

    async fn delete(&self, name: &str) -> Result<()> {
        let path = self.path(name)?;
        self.fp.hit("image_store.delete.before")?;
        let (dir, fsync) = (self.dir.clone(), self.fsync);
        let removed = blocking(move || {
            let removed = remove_if_present(&path)?;
            if removed && fsync {
                sync_dir(&dir)?;
            }
            Ok(removed)
        })
        .await?;
        if removed {
            self.fp.hit("image_store.delete.after")?;
        }
        Ok(())
    }

    async fn list(&self) -> Result<Vec<String>> {
        let dir = self.dir.clone();
        let mut names: Vec<String> = blocking(move || crate::file::create::read_dir(&dir))
            .await?
            .into_iter()
            .filter(|n| validate_object_name(n).is_ok())
            .collect();
        names.sort();
        Ok(names)
    }

    fn local_path(&self, name: &str) -> Option<PathBuf> {
        self.path(name).ok()
    }

    async fn remove_temporaries(&self) -> Result<usize> {
        let dir = self.dir.clone();
        blocking(move || {
            let mut n = 0;
            for name in crate::file::create::read_dir(&dir)? {
                if name.starts_with('.') && name.ends_with(".tmp") {
                    remove_if_present(&dir.join(&name))?;
                    n += 1;
                }
            }
            Ok(n)
        })
        .await
    }
}

/// A file being written under its temporary name.
struct FileWriter {
    /// `None` once closed.
    file: Option<tokio::fs::File>,
    name: String,
    dir: PathBuf,
    path: PathBuf,
    temp: PathBuf,
    written: u64,
    fsync: bool,
    fp: Arc<Failpoints>,
    /// Committed or aborted: nothing left to clean up.
    done: bool,
}

impl FileWriter {
    fn file(&mut self) -> Result<&mut tokio::fs::File> {
        self.file.as_mut().ok_or_else(|| StorageError::Io {
            op: format!("writing {}", self.temp.display()),
            source: std::io::Error::other("the writer is closed"),
        })
    }

    async fn finish(&mut self) -> Result<u64> {
        let temp = self.temp.clone();
        let fsync = self.fsync;
        let file = self.file()?;
        file.flush()
            .await
            .map_err(|e| io_error(format!("writing {}", temp.display()), e))?;
        if fsync {
            file.sync_all()
                .await
                .map_err(|e| io_error(format!("syncing {}", temp.display()), e))?;
        }
        self.file = None;
        self.fp.hit("image_store.commit.temp")?;
        let (temp, path, dir) = (self.temp.clone(), self.path.clone(), self.dir.clone());
        let name = self.name.clone();
        blocking(move || {
            match rename_noreplace(&temp, &path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    return Err(StorageError::Mismatch {
                        name,
                        detail: "an object of that name already exists".into(),
                    });
                }
                Err(e) => return Err(io_error(format!("renaming {}", temp.display()), e)),
            }
            if fsync {
                sync_dir(&dir)?;
            }
            Ok(())
        })
        .await?;
        self.done = true;
        self.fp.hit("image_store.commit.after")?;
        Ok(self.written)
    }
}

#[async_trait::async_trait]
impl ObjectWriter for FileWriter {
    async fn write(&mut self, chunk: &[u8]) -> Result<()> {
        // Hit with each chunk: a crash here is one in the middle of the data.
        self.fp.hit("image_store.write")?;
        let temp = self.temp.clone();
        self.file()?
            .write_all(chunk)
            .await
            .map_err(|e| io_error(format!("writing {}", temp.display()), e))?;
        self.written += chunk.len() as u64;
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<u64> {
        // On failure `self` is dropped here, which removes the temporary.
        self.finish().await
    }

    async fn abort(mut self: Box<Self>) {
        self.file = None;
        let temp = self.temp.clone();
        self.done = true;
        let _ = blocking(move || remove_if_present(&temp)).await;
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        if !self.done {
            // A writer dropped mid-upload (the client went away, a limit was
            // passed): its temporary must not stay. One unlink; the next
            // start would remove it anyway.
            self.file = None;
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (FileImageStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let s = FileImageStore::new(dir.path().join("images"), true, Failpoints::new())
            .await
            .unwrap();
        (s, dir)
    }

    async fn read_all(s: &FileImageStore, name: &str, offset: u64, len: Option<u64>) -> Vec<u8> {
        let mut r = s.open(name, offset, len).await.unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        out
    }

    fn entries(s: &FileImageStore) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(s.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn an_object_appears_only_when_committed_and_reads_back() {
        let (s, _d) = store().await;
        let mut w = s.create("img-1").await.unwrap();
        w.write(b"hello ").await.unwrap();
        w.write(b"world").await.unwrap();
        assert!(
            s.list().await.unwrap().is_empty(),
            "not visible before commit"
        );
        assert_eq!(s.size("img-1").await.unwrap(), None);
        assert_eq!(w.commit().await.unwrap(), 11);
        assert_eq!(s.list().await.unwrap(), ["img-1"]);
        assert_eq!(s.size("img-1").await.unwrap(), Some(11));
        assert_eq!(read_all(&s, "img-1", 0, None).await, b"hello world");
        assert_eq!(read_all(&s, "img-1", 6, Some(3)).await, b"wor");
        assert_eq!(read_all(&s, "img-1", 20, None).await, b"");
        assert_eq!(entries(&s), ["img-1"], "no temporary left");
    }

    #[tokio::test]
    async fn dropped_and_aborted_writers_leave_nothing() {
        let (s, _d) = store().await;
        let mut w = s.create("a").await.unwrap();
        w.write(b"partial").await.unwrap();
        drop(w);
        let mut w = s.create("b").await.unwrap();
        w.write(b"partial").await.unwrap();
        w.abort().await;
        assert!(entries(&s).is_empty(), "{:?}", entries(&s));
    }

    #[tokio::test]
    async fn commit_never_replaces_an_object() {
        let (s, _d) = store().await;
        let mut w = s.create("x").await.unwrap();
        w.write(b"first").await.unwrap();
        w.commit().await.unwrap();
        let mut w = s.create("x").await.unwrap();
        w.write(b"second").await.unwrap();
        assert!(matches!(
            w.commit().await,
            Err(StorageError::Mismatch { .. })
        ));
        assert_eq!(read_all(&s, "x", 0, None).await, b"first");
        assert_eq!(entries(&s), ["x"]);
    }

    #[tokio::test]
    async fn delete_is_idempotent_and_names_stay_inside() {
        let (s, _d) = store().await;
        let mut w = s.create("gone").await.unwrap();
        w.write(b"x").await.unwrap();
        w.commit().await.unwrap();
        s.delete("gone").await.unwrap();
        s.delete("gone").await.unwrap();
        assert!(s.list().await.unwrap().is_empty());
        assert!(matches!(
            s.open("gone", 0, None).await,
            Err(StorageError::NotFound(_))
        ));
        for bad in ["", "../x", ".x.tmp", "a/b", "a.b", &"x".repeat(129)] {
            assert!(
                matches!(s.create(bad).await, Err(StorageError::InvalidName(_))),
                "{bad}"
            );
            assert!(s.delete(bad).await.is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn temporaries_of_a_crash_are_invisible_and_removed_at_start() {
        let (s, _d) = store().await;
        std::fs::write(s.dir().join(".img.tmp"), b"half").unwrap();
        std::fs::write(s.dir().join("done"), b"whole").unwrap();
        assert_eq!(s.list().await.unwrap(), ["done"]);
        assert_eq!(s.remove_temporaries().await.unwrap(), 1);
        assert_eq!(entries(&s), ["done"]);
    }

    #[cfg(feature = "failpoints")]
    #[tokio::test]
    async fn a_crash_before_the_rename_leaves_no_object() {
        use scoria_failpoints::Action;
        for point in ["image_store.write", "image_store.commit.temp"] {
            let dir = tempfile::tempdir().unwrap();
            let fp = Failpoints::new();
            let s = FileImageStore::new(dir.path().to_path_buf(), false, fp.clone())
                .await
                .unwrap();
            fp.arm(point, Action::Error, 1, None);
            let mut w = s.create("i").await.unwrap();
            let failed = if w.write(b"data").await.is_err() {
                // What the caller does with a writer that failed.
                drop(w);
                true
            } else {
                w.commit().await.is_err()
            };
            assert!(failed, "{point}");
            assert!(s.list().await.unwrap().is_empty(), "{point}");
            assert!(entries(&s).is_empty(), "{point}: {:?}", entries(&s));
        }
    }
}
