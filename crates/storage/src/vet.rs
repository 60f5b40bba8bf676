//! Vetting a file nobody vouches for (an uploaded image) before qemu reads
//! its data: the one sequence every import of such a file runs, and that the
//! API runs first to refuse a hostile image before anything exists.

use std::path::Path;

use crate::inspect::{DiskFormat, Inspection, Refusal};
use crate::qemu::untrusted::Limits;
use crate::{Result, StorageError};

/// The whole sequence of checks an untrusted file passes before its data is
/// converted (see `crate::inspect`). `Refused` or `InvalidSize` when it fails: its bytes are its declared format, it
/// refers to no other file, its stated virtual size fits `size`; then
/// qemu-img, under `limits`, agrees on all of that.
pub async fn check(
    source: &Path,
    format: DiskFormat,
    size: u64,
    limits: Limits,
) -> Result<Inspection> {
    let shown = || source.display().to_string();
    if !source.is_absolute() {
        return Err(StorageError::InvalidName(shown()));
    }
    let refused = |r: Refusal| StorageError::Refused {
        name: shown(),
        refusal: r,
    };
    let path = source.to_owned();
    let inspection = tokio::task::spawn_blocking(move || crate::inspect::inspect(&path, format))
        .await
        .map_err(|e| StorageError::Io {
            op: "inspecting an image".into(),
            source: std::io::Error::other(e.to_string()),
        })?
        .map_err(refused)?;
    let too_big = |virtual_size: u64| StorageError::InvalidSize {
        size,
        detail: format!("smaller than the image, whose virtual size is {virtual_size} bytes"),
    };
    if let Some(v) = inspection.virtual_size
        && v > size
    {
        return Err(too_big(v));
    }
    let view = crate::qemu::untrusted::info_untrusted(source, format, limits)
        .await
        .map_err(refused)?;
    crate::inspect::check_qemu_view(&view, format, source).map_err(refused)?;
    if view.virtual_size > size {
        return Err(too_big(view.virtual_size));
    }
    Ok(Inspection {
        format,
        virtual_size: Some(view.virtual_size),
    })
}
