//! A volume made from a file already on a backend that Scoria did not make,
//! or one it handed back (Cinder's manage: `os-volume-manage`,
//! `POST /manageable_volumes`; `volumes/manage.rs` checks the request and
//! the file before the flow starts).
//!
//! The create flow's steps do it, so a manage resumes or unwinds like any
//! create and its quota is counted the same way:
//!
//! - `schedule` places the volume on the file's backend (its pin, as for a
//!   clone: the file is its source), in the file's format;
//! - `create_on_backend` [`adopt`]s the file: renamed to the new image's name
//!   in one atomic step (no data copied), grown to the volume's whole GiB
//!   when it is smaller, and looked at once more (its format, no backing
//!   file);
//! - its undo [`give_back`]s the file under its own name, so a manage that
//!   fails leaves the file where the administrator found it (grown, if it
//!   was grown).

use scoria_flows::{Cx, StepError};
use scoria_model::volume::GIB;
use scoria_storage::{Format, ImageSpec, StorageError};
use serde::{Deserialize, Serialize};

use super::{Placement, VolumeCreate};
use crate::error::Error;
use crate::flows::storage_error;

/// The file a volume is made from.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FromFile {
    pub backend: String,
    /// Its name on the backend (with the format's extension).
    pub name: String,
    pub format: Format,
}

/// The backend the volume must be made on, when it is made from a file.
pub(super) fn backend(cx: &Cx<VolumeCreate>) -> Option<&str> {
    cx.params.manage.as_ref().map(|f| f.backend.as_str())
}

/// The format of the volume's image, when it is made from a file.
pub(super) fn format(cx: &Cx<VolumeCreate>) -> Option<Format> {
    cx.params.manage.as_ref().map(|f| f.format)
}

/// In `create_on_backend`: the file becomes the volume's image. `false` when
/// the volume is not made from a file (the caller makes the data).
pub(super) async fn adopt(
    cx: &Cx<VolumeCreate>,
    place: &Placement,
    spec: &ImageSpec,
) -> Result<bool, StepError> {
    let Some(from) = &cx.params.manage else {
        return Ok(false);
    };
    let driver = &cx.env.backend(&place.backend)?.driver;
    driver
        .rename(&from.name, &place.location)
        .await
        .map_err(|e| storage_error("take over the file", e))?;
    let info = driver
        .info(&place.location)
        .await
        .map_err(|e| storage_error("look at the file taken over", e))?
        .ok_or_else(|| {
            StepError::new(Error::Invalid(format!(
                "The file {} disappeared while it was taken over.",
                from.name
            )))
        })?;
    if info.backing.is_some() || info.immutable {
        return Err(StepError::new(Error::Invalid(format!(
            "The file {} is layered on another file or read-only; only a self-contained, writable file can be managed.",
            from.name
        ))));
    }
    if info.virtual_size < spec.size {
        driver
            .extend(&place.location, spec.size)
            .await
            .map_err(|e| storage_error("grow the file to whole GiB", e))?;
    }
    tracing::info!(
        file = %from.name,
        image = %place.location,
        volume = %cx.params.volume_id,
        size_gib = spec.size / GIB,
        "file brought under management"
    );
    Ok(true)
}

/// In the undo of `create_on_backend`: the file gets its own name back.
/// `false` when the volume is not made from a file.
pub(super) async fn give_back(cx: &Cx<VolumeCreate>, place: &Placement) -> Result<bool, StepError> {
    let Some(from) = &cx.params.manage else {
        return Ok(false);
    };
    let driver = &cx.env.backend(&place.backend)?.driver;
    match driver.rename(&place.location, &from.name).await {
        // Never taken over (or already given back).
        Ok(()) | Err(StorageError::NotFound(_)) => Ok(true),
        Err(e) => Err(storage_error("give the file its name back", e)),
    }
}
