//! What a backend directory holds, read without qemu: the repository
//! check's view of a file backend.
//!
//! [`survey`] lists every entry of the directory and reads, natively, what
//! each regular file is: its length and allocated bytes, its mode, the
//! format its bytes show ([`crate::inspect::detect`]) and, for a qcow2
//! header, the virtual size and the backing and data-file references as
//! written (not judged: a foreign file's backing chain is reported as it
//! is). Only headers are read (at most [`crate::inspect::HEADER_BYTES`] and
//! the first cluster), never image data, so a survey of thousands of images
//! costs a few reads per file. Nothing is changed.
//!
//! Every entry is classified by its name: an image name
//! (`<stem>.qcow2|.raw`, [`crate::format_of_name`]), the temporary of a
//! create (`.<image name>.tmp`, see `create.rs`), or anything else. What
//! that means — orphan, foreign, temporary left by a crash — is the
//! caller's to decide against its records.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::create::{blocking, read_dir};
use crate::inspect::{DiskFormat, HEADER_BYTES, detect};
use crate::{Format, Result, format_of_name, io_error, qcow2};

/// What a directory entry's name says it is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Naming {
    /// An image name, carrying this format.
    Image { format: Format },
    /// `.<image>.tmp`: the temporary of a create of `image`.
    Temporary { image: String },
    /// Not a name the file driver gives.
    Other,
}

/// What a regular file's first bytes say.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Head {
    /// The format its bytes show (raw when nothing else matches).
    pub detected: DiskFormat,
    /// The header's virtual size (qcow2), else the file's length.
    pub virtual_size: u64,
    /// Bytes per cluster (qcow2).
    pub cluster_size: Option<u64>,
    /// The backing reference a qcow2 header names, as written.
    pub backing_file: Option<String>,
    /// The backing format the qcow2 header records.
    pub backing_format: Option<String>,
    /// The qcow2 image keeps its data in an external file.
    pub data_file: bool,
    /// qemu marked the qcow2 image corrupt (incompatible feature bit 1).
    pub marked_corrupt: bool,
    /// The qcow2 image was open for writing with lazy refcounts when its
    /// writer stopped (incompatible feature bit 0): its refcounts may be
    /// wrong.
    pub dirty: bool,
    /// Why the qcow2 header could not be read (the rest is then unknown).
    pub problem: Option<String>,
}

/// One entry of a backend directory.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    pub file_name: String,
    pub path: PathBuf,
    pub naming: Naming,
    /// False for a directory, a symbolic link, a device…: nothing below is
    /// read then.
    pub regular: bool,
    /// Bytes (the file's length).
    pub len: u64,
    /// Bytes the file system allocated for it.
    pub allocated: u64,
    /// No write bit (the file driver's immutable images).
    pub immutable: bool,
    /// What its bytes are (regular files only; `None` when unreadable).
    pub head: Option<Head>,
    /// What changes whenever the file does: its length, inode, and
    /// modification and change times to the nanosecond (the change time
    /// cannot be set back). The repository check runs `qemu-img check`
    /// again only on a file whose fingerprint differs from the one its
    /// last clean check saw.
    pub fingerprint: String,
}

/// Every entry of the backend directory `dir`, sorted by name, or `None`
/// when the directory does not exist (the backend is down). Reads headers
/// only; changes nothing.
pub async fn survey(dir: &Path) -> Result<Option<Vec<Entry>>> {
    let dir = dir.to_owned();
    blocking(move || survey_blocking(&dir)).await
}

fn survey_blocking(dir: &Path) -> Result<Option<Vec<Entry>>> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(format!("inspecting {}", dir.display()), e)),
    }
    let mut names = read_dir(dir)?;
    names.sort();
    let mut entries = Vec::with_capacity(names.len());
    for file_name in names {
        let path = dir.join(&file_name);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            // Gone since the directory was read.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(format!("inspecting {}", path.display()), e)),
        };
        let regular = meta.is_file();
        let head = if regular { read_head(&path) } else { None };
        let fingerprint = format!(
            "{}:{}:{}.{:09}:{}.{:09}",
            meta.len(),
            meta.ino(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec()
        );
        entries.push(Entry {
            fingerprint,
            naming: naming_of(&file_name),
            regular,
            len: meta.len(),
            allocated: meta.blocks() * 512,
            immutable: meta.mode() & 0o222 == 0,
            head,
            file_name,
            path,
        });
    }
    Ok(Some(entries))
}

/// Remove the regular file `file_name` of the directory `dir` (the
/// repository check's clean fixes: an orphan, a temporary, a staging file)
/// and sync the directory. `false` when it was already gone. A name with a
/// `/`, or an entry that is not a regular file, is `InvalidName`: nothing
/// else is ever removed this way.
pub async fn remove_file(dir: &Path, file_name: &str) -> Result<bool> {
    if file_name.is_empty() || file_name.contains('/') || file_name == "." || file_name == ".." {
        return Err(crate::StorageError::InvalidName(file_name.to_owned()));
    }
    let (dir, file_name) = (dir.to_owned(), file_name.to_owned());
    blocking(move || {
        let path = dir.join(&file_name);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(crate::StorageError::InvalidName(file_name)),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_error(format!("inspecting {}", path.display()), e)),
        }
        let removed = super::create::remove_if_present(&path)?;
        super::create::sync_dir(&dir)?;
        Ok(removed)
    })
    .await
}

/// What the name `file_name` says (see [`Naming`]).
pub fn naming_of(file_name: &str) -> Naming {
    if let Ok(format) = format_of_name(file_name) {
        return Naming::Image { format };
    }
    match file_name
        .strip_prefix('.')
        .and_then(|n| n.strip_suffix(".tmp"))
    {
        Some(image) if format_of_name(image).is_ok() => Naming::Temporary {
            image: image.to_owned(),
        },
        _ => Naming::Other,
    }
}

/// Read what a file's first bytes say; `None` when it cannot be read.
fn read_head(path: &Path) -> Option<Head> {
    let mut file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let mut head = Vec::with_capacity(HEADER_BYTES.max(0x8006));
    (&mut file)
        .take(HEADER_BYTES.max(0x8006) as u64)
        .read_to_end(&mut head)
        .ok()?;
    let mut tail = vec![0u8; 512];
    if len >= 512 {
        file.read_exact_at(&mut tail, len - 512).ok()?;
    } else {
        tail.clear();
    }
    let detected = detect(&head, &tail);
    let mut out = Head {
        detected,
        virtual_size: len,
        cluster_size: None,
        backing_file: None,
        backing_format: None,
        data_file: false,
        marked_corrupt: false,
        dirty: false,
        problem: None,
    };
    if detected == DiskFormat::Qcow2 {
        match qcow2::read_header(path) {
            Ok(h) => {
                out.virtual_size = h.virtual_size;
                out.cluster_size = Some(1 << h.cluster_bits);
                out.marked_corrupt = h.is_marked_corrupt();
                out.dirty = h.is_dirty();
                out.data_file = h.data_file.is_some();
                out.backing_file = h.backing_file;
                out.backing_format = h.backing_format;
            }
            Err(e) => out.problem = Some(e.to_string()),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_classified() {
        assert_eq!(
            naming_of("image-a.qcow2"),
            Naming::Image {
                format: Format::Qcow2
            }
        );
        assert_eq!(
            naming_of(".image-a.raw.tmp"),
            Naming::Temporary {
                image: "image-a.raw".into()
            }
        );
        for other in ["disk.img", ".x.tmp", "notes", ".hidden.qcow2"] {
            assert_eq!(naming_of(other), Naming::Other, "{other}");
        }
    }

    #[tokio::test]
    async fn a_survey_reads_headers_and_an_absent_directory_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            survey(&dir.path().join("absent")).await.expect("survey"),
            None
        );
        let base = dir.path().join("base.qcow2");
        crate::qemu::create(&base, Format::Qcow2, 1 << 20)
            .await
            .expect("base");
        crate::qemu::create_overlay(
            &dir.path().join("top.qcow2"),
            2 << 20,
            "base.qcow2",
            Format::Qcow2,
        )
        .await
        .expect("overlay");
        std::fs::write(dir.path().join(".top.qcow2.tmp"), b"half").expect("temp");
        std::fs::create_dir(dir.path().join("sub")).expect("dir");
        let entries = survey(dir.path()).await.expect("survey").expect("present");
        let names: Vec<&str> = entries.iter().map(|e| e.file_name.as_str()).collect();
        assert_eq!(names, [".top.qcow2.tmp", "base.qcow2", "sub", "top.qcow2"]);
        let top = &entries[3];
        let head = top.head.as_ref().expect("head");
        assert_eq!(
            (
                head.detected,
                head.virtual_size,
                head.backing_file.as_deref()
            ),
            (DiskFormat::Qcow2, 2 << 20, Some("base.qcow2"))
        );
        assert_eq!(
            entries[0].head.as_ref().map(|h| h.detected),
            Some(DiskFormat::Raw)
        );
        assert!(!entries[2].regular && entries[2].head.is_none());
    }
}
