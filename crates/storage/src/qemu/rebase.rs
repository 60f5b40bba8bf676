//! `qemu-img rebase` in safe mode: an overlay made to stand on another image
//! of its chain while reading exactly as before (the repository check's
//! `merge`, the offline twin of the daemon's block-stream).
//!
//! qemu-img first copies into the overlay every cluster that reads
//! differently through the new backing file than through the old one, then
//! rewrites the overlay's header to name the new backing file. Interrupted
//! at any point, the overlay still reads the same: before the header is
//! rewritten it stands on its old base with some of that base's clusters
//! already copied (identical data), after it stands on the new one with all
//! of them. The old base is only read. The overlay must not be open
//! elsewhere (qemu's image lock refuses a running export).

use std::path::Path;

use super::img::QemuImg;
use crate::{Format, Result, StorageError};

/// Make the qcow2 image at `path` (absolute) stand on `backing` (a bare image
/// name of its directory, with its format), or on nothing, reading as before.
pub async fn rebase(path: &Path, backing: Option<(&str, Format)>) -> Result<()> {
    run(path, backing, false).await
}

/// Rewrite only the backing file the qcow2 image at `path` names
/// (`qemu-img rebase -u`), copying nothing: for an image that reads the same
/// on either base (undoing a [`rebase`] whose old base is unchanged).
pub async fn rebase_unsafe(path: &Path, backing: &str, format: Format) -> Result<()> {
    run(path, Some((backing, format)), true).await
}

async fn run(path: &Path, backing: Option<(&str, Format)>, unsafe_: bool) -> Result<()> {
    let mut cmd = QemuImg::new("rebase").format(Format::Qcow2);
    if unsafe_ {
        cmd = cmd.arg("-u");
    }
    cmd = match backing {
        Some((name, format)) => {
            if crate::format_of_name(name)? != format || name.contains('/') {
                return Err(StorageError::InvalidName(name.to_owned()));
            }
            cmd.arg("-F").arg(format.as_str()).arg("-b").arg(name)
        }
        None => cmd.arg("-b").arg(""),
    };
    cmd.image(path)?.run().await.map(drop)
}
