//! What a backup reads and a restore writes, as qemu invocations.
//!
//! - Persistent dirty bitmaps of a qcow2 image: [`bitmaps`], [`bitmap_add`],
//!   [`bitmap_remove`] (`qemu-img bitmap`). An enabled persistent bitmap is
//!   kept up to date by every qemu process that opens the image for writing
//!   (`qemu-io`, `qemu-img convert`, a `qemu-storage-daemon` export); one that
//!   such a process did not close cleanly is flagged `in-use` and must not be
//!   trusted.
//! - Maps: [`data_extents`] (what reads as non-zero through the whole chain,
//!   `qemu-img map`) and [`dirty_extents`] (what a bitmap marks, read by
//!   exporting the image read-only with `qemu-nbd --bitmap` on a unix socket
//!   and mapping the export with `x-dirty-bitmap`, where qemu reports dirty
//!   areas as `"data": false`).
//! - Data: [`read_range`] copies guest bytes `[offset, offset + len)` of an
//!   image (its chain flattened) into a new raw file; [`write_raw`] writes a
//!   raw file over an existing image, zeroes included.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;

use super::img::QemuImg;
use crate::{Format, Result, StorageError};

/// The `qemu-nbd` program, looked up on `PATH`.
pub const QEMU_NBD: &str = "qemu-nbd";

/// A byte range of an image's guest data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub start: u64,
    pub length: u64,
}

/// A persistent bitmap recorded in a qcow2 image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bitmap {
    pub name: String,
    /// Left open by a writer that did not close the image: not to be trusted.
    pub in_use: bool,
}

#[derive(Debug, Deserialize)]
struct InfoJson {
    #[serde(rename = "format-specific")]
    format_specific: Option<Specific>,
}

#[derive(Debug, Deserialize)]
struct Specific {
    #[serde(default)]
    data: SpecificData,
}

#[derive(Debug, Default, Deserialize)]
struct SpecificData {
    #[serde(default)]
    bitmaps: Vec<BitmapJson>,
}

#[derive(Debug, Deserialize)]
struct BitmapJson {
    name: String,
    #[serde(default)]
    flags: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct MapEntry {
    pub(super) start: u64,
    pub(super) length: u64,
    #[serde(default)]
    pub(super) zero: bool,
    #[serde(default)]
    pub(super) data: bool,
}

/// The persistent bitmaps of the qcow2 image at `path` (not of its bases).
pub async fn bitmaps(path: &Path) -> Result<Vec<Bitmap>> {
    let cmd = QemuImg::new("info")
        .arg("--output=json")
        .format(Format::Qcow2)
        .image(path)?;
    let out = cmd.run().await?;
    let info: InfoJson = cmd.parse(&out)?;
    Ok(info
        .format_specific
        .map(|s| s.data.bitmaps)
        .unwrap_or_default()
        .into_iter()
        .map(|b| Bitmap {
            in_use: b.flags.iter().any(|f| f == "in-use"),
            name: b.name,
        })
        .collect())
}

/// Add an enabled persistent bitmap `name` to the qcow2 image at `path`; one
/// already there is success.
pub async fn bitmap_add(path: &Path, name: &str) -> Result<()> {
    if bitmaps(path).await?.iter().any(|b| b.name == name) {
        return Ok(());
    }
    QemuImg::new("bitmap")
        .arg("--add")
        .format(Format::Qcow2)
        .image(path)?
        .arg(name)
        .run()
        .await
        .map(drop)
}

/// Remove the bitmap `name` from the qcow2 image at `path`; an absent one is
/// success.
pub async fn bitmap_remove(path: &Path, name: &str) -> Result<()> {
    if !bitmaps(path).await?.iter().any(|b| b.name == name) {
        return Ok(());
    }
    QemuImg::new("bitmap")
        .arg("--remove")
        .format(Format::Qcow2)
        .image(path)?
        .arg(name)
        .run()
        .await
        .map(drop)
}

/// The ranges of the image at `path` (its whole chain) that may read as
/// non-zero: everything a full backup must read.
pub async fn data_extents(path: &Path, format: Format) -> Result<Vec<Extent>> {
    let cmd = QemuImg::new("map")
        .arg("--output=json")
        .format(format)
        .image(path)?;
    let out = cmd.run().await?;
    let entries: Vec<MapEntry> = cmd.parse(&out)?;
    Ok(merge(entries.into_iter().filter(|e| !e.zero).map(|e| {
        Extent {
            start: e.start,
            length: e.length,
        }
    })))
}

/// The ranges the bitmap `bitmap` of the qcow2 image at `path` marks dirty.
/// The image is exported read-only by `qemu-nbd` on a unix socket of a
/// private temporary directory for the time of one `qemu-img map`.
pub async fn dirty_extents(path: &Path, bitmap: &str) -> Result<Vec<Extent>> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    if !path.is_absolute() {
        return Err(StorageError::InvalidName(path.display().to_string()));
    }
    let dir = std::env::temp_dir().join(format!(
        "scoria-bitmap-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| crate::io_error(format!("creating {}", dir.display()), e))?;
    let result = dirty_extents_in(&dir, path, bitmap).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn dirty_extents_in(dir: &Path, path: &Path, bitmap: &str) -> Result<Vec<Extent>> {
    let socket: PathBuf = dir.join("nbd.sock");
    let args = [
        "--read-only".into(),
        "--format=qcow2".into(),
        format!("--bitmap={bitmap}"),
        format!("--socket={}", socket.display()),
        "--shared=1".into(),
        path.display().to_string(),
    ];
    let command_line = format!("{QEMU_NBD} {}", args.join(" "));
    let mut child = super::command(QEMU_NBD)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| crate::io_error(format!("starting {QEMU_NBD}"), e))?;
    // qemu-nbd listens once it has opened the image and found the bitmap.
    let mut waited = Duration::ZERO;
    while !socket.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            let out = child
                .wait_with_output()
                .await
                .map_err(|e| crate::io_error(format!("waiting for {QEMU_NBD}"), e))?;
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            return Err(StorageError::Qemu {
                command: command_line,
                stderr: format!("{stderr} ({status})"),
            });
        }
        if waited > Duration::from_secs(30) {
            return Err(StorageError::Qemu {
                command: command_line,
                stderr: "did not listen within 30 s".into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += Duration::from_millis(10);
    }
    let opts = format!(
        "driver=nbd,export=,server.type=unix,server.path={},x-dirty-bitmap=qemu:dirty-bitmap:{bitmap}",
        escape(&socket.display().to_string())
    );
    let cmd = QemuImg::new("map")
        .arg("--output=json")
        .arg("--image-opts")
        .arg(opts);
    let out = cmd.run().await;
    let _ = child.start_kill();
    let _ = child.wait().await;
    let entries: Vec<MapEntry> = cmd.parse(&out?)?;
    // With x-dirty-bitmap, qemu reports the dirty areas as "data": false.
    Ok(merge(entries.into_iter().filter(|e| !e.data).map(|e| {
        Extent {
            start: e.start,
            length: e.length,
        }
    })))
}

/// Copy the guest bytes `[offset, offset + len)` of the image at `path` (its
/// chain flattened) into a new raw file `dest`, which must not exist.
pub async fn read_range(
    path: &Path,
    format: Format,
    offset: u64,
    len: u64,
    dest: &Path,
) -> Result<()> {
    if !path.is_absolute() {
        return Err(StorageError::InvalidName(path.display().to_string()));
    }
    let opts = format!(
        "driver=raw,offset={offset},size={len},file.driver={},file.file.driver=file,file.file.filename={}",
        format.as_str(),
        escape(&path.display().to_string())
    );
    QemuImg::new("convert")
        .arg("--image-opts")
        .arg(opts)
        .arg("-O")
        .arg("raw")
        .image(dest)?
        .run()
        .await
        .map(drop)
}

/// Write the raw file `source` over the existing image at `target` of
/// `format`, zeroes included (the image's old data is not kept anywhere the
/// source reads as zero).
pub async fn write_raw(source: &Path, target: &Path, format: Format) -> Result<()> {
    QemuImg::new("convert")
        .arg("-n")
        .format(Format::Raw)
        .arg("-O")
        .arg(format.as_str())
        .image(source)?
        .image(target)?
        .run()
        .await
        .map(drop)
}

/// A value for qemu's `key=value,…` option syntax: a comma is doubled.
pub(super) fn escape(value: &str) -> String {
    value.replace(',', ",,")
}

/// Sorted, adjacent ranges joined.
pub(super) fn merge(extents: impl Iterator<Item = Extent>) -> Vec<Extent> {
    let mut all: Vec<Extent> = extents.filter(|e| e.length > 0).collect();
    all.sort_by_key(|e| e.start);
    let mut out: Vec<Extent> = Vec::with_capacity(all.len());
    for e in all {
        match out.last_mut() {
            Some(last) if last.start + last.length >= e.start => {
                let end = (last.start + last.length).max(e.start + e.length);
                last.length = end - last.start;
            }
            _ => out.push(e),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_adjacent_ranges() {
        let e = |start, length| Extent { start, length };
        let got = merge([e(10, 5), e(0, 10), e(20, 1), e(15, 0), e(21, 4)].into_iter());
        assert_eq!(got, vec![e(0, 15), e(20, 5)]);
        assert_eq!(escape("/a,b"), "/a,,b");
    }
}
