//! What a new volume is made from, and how: nothing (a blank image), another
//! volume (a clone, Cinder's `source_volid`) or a snapshot (`snapshot_id`),
//! with the *strategy* that the volume type (`scoria:clone_strategy`) or the
//! backend chooses:
//!
//! ```text
//!                       space (default)                         performance
//!   from a snapshot     an overlay on the snapshot's image      a full copy of the snapshot's
//!                       (constant time)                         chain (qemu-img convert)
//!   from a volume       an implicit snapshot: the source's      a full copy of the source's
//!                       image is frozen, the source goes on a    chain, while the source is
//!                       new overlay, the clone is an overlay    held readable
//!                       on the frozen image (constant time)
//! ```
//!
//! A backend whose driver cannot layer images always copies.
//!
//! Each step of the create flow calls in here: `create_entry` holds the
//! source ([`hold`]), `schedule` records the images ([`plan`]),
//! `create_on_backend` makes the data ([`make`], undone by [`unmake`]), and
//! `mark_available` switches a cloned source onto its new overlay
//! ([`finish`]). While the new volume is `creating`, its source is held: a
//! source volume cannot be deleted, extended, reverted, transferred or
//! snapshotted (`rules::volumes::assert_not_held`), a source snapshot cannot
//! be deleted (`snapshot_readers`). A clone by overlay also switches its
//! source's active image, so it is refused while another clone of the source
//! is being made or a snapshot of it taken (the window is milliseconds).

use scoria_flows::{Cx, StepError};
use scoria_model::image::{ImageFormat, ImageState};
use scoria_model::snapshot::{CLONE_STRATEGY_SPEC, CloneStrategy, SnapshotStatus};
use scoria_model::volume::{GIB, VolumeStatus};
use scoria_model::{ImageId, SnapshotId, VolumeId};
use scoria_storage::{Format, ImageSpec};
use scoria_store::volumes::Volume;
use scoria_store::{Conn, images, snapshots, volume_types, volumes};
use serde::{Deserialize, Serialize};

use super::{Placement, VolumeCreate};
use crate::Env;
use crate::error::Error;
use crate::flows::storage_error;

/// What `create_entry` learned while holding the source.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Held {
    /// The new volume's bootable flag (a clone's or a snapshot's volume's).
    pub bootable: bool,
    #[serde(default = "performance")]
    pub strategy: CloneStrategy,
}

/// Flows persisted before strategies copied.
fn performance() -> CloneStrategy {
    CloneStrategy::Performance
}

impl Default for Held {
    fn default() -> Self {
        Held {
            bootable: false,
            strategy: performance(),
        }
    }
}

/// A clone by overlay: the source volume's own new overlay.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct SourceOverlay {
    pub volume: VolumeId,
    pub id: ImageId,
    pub name: String,
    /// Bytes: the source's size.
    pub size: u64,
}

/// Where the data comes from, as `schedule` decided it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct DataPlan {
    /// The backend the volume must be placed on (its source's).
    pub backend: Option<String>,
    /// Copy this image fully (`copy_from`).
    pub copy: Option<String>,
    /// Make an overlay on this image (its id, its name).
    pub base: Option<(ImageId, String)>,
    /// A clone by overlay: the source's new overlay.
    pub source_overlay: Option<SourceOverlay>,
}

/// The strategy for a volume of type `type_id` made from a source on
/// `backend`: the type's `scoria:clone_strategy`, else the backend's, and a
/// copy on a backend that cannot layer.
async fn strategy(
    c: &mut Conn,
    env: &Env,
    type_id: scoria_model::VolumeTypeId,
    backend: &str,
) -> Result<CloneStrategy, StepError> {
    let b = env.backend(backend)?;
    if !b.driver.capabilities().layering {
        return Ok(CloneStrategy::Performance);
    }
    let specs = volume_types::volume_type_extra_specs_get(c, type_id).await?;
    match specs.get(CLONE_STRATEGY_SPEC) {
        Some(s) => s.trim().parse().map_err(|_| {
            Error::Invalid(format!(
                "Invalid input received: volume type {type_id} has {CLONE_STRATEGY_SPEC}={s:?}; it must be space or performance."
            ))
            .into()
        }),
        None => Ok(b.config.clone_strategy),
    }
}

/// The ready image a source volume stands on.
async fn ready_image(c: &mut Conn, v: &Volume) -> Result<images::Image, StepError> {
    crate::rules::images::active_image(c, v)
        .await?
        .filter(|i| i.state == ImageState::Ready)
        .ok_or_else(|| {
            Error::InvalidState(format!(
                "Invalid volume: source volume {} has no data to copy.",
                v.id
            ))
            .into()
        })
}

/// Hold the source in `create_entry`'s transaction: a source volume must be
/// readable (`available` or `in-use`), a snapshot `available`, both of the
/// caller's project. Returns the new volume's bootable flag and strategy.
pub(super) async fn hold(cx: &Cx<VolumeCreate>, c: &mut Conn) -> Result<Held, StepError> {
    let p = &cx.params;
    if let Some(source) = p.source_volid {
        let held = volumes::volume_hold_for_read(c, source).await?;
        let v = volumes::volume_get(c, source)
            .await?
            .filter(|v| v.project_id == p.project_id)
            .ok_or_else(|| Error::volume_not_found(source))?;
        if !held {
            return Err(crate::rules::volumes::source_not_readable(&v).into());
        }
        let image = ready_image(c, &v).await?;
        let strategy = strategy(c, &cx.env, p.volume_type_id, &image.backend).await?;
        if strategy == CloneStrategy::Space {
            // It switches the source's image: nothing else may meanwhile.
            let others: Vec<VolumeId> = volumes::volume_clones_in_progress(c, source)
                .await?
                .into_iter()
                .filter(|id| *id != p.volume_id)
                .collect();
            if !others.is_empty()
                || !snapshots::snapshot_list_creating_for_volume(c, source)
                    .await?
                    .is_empty()
            {
                return Err(Error::InvalidState(format!(
                    "Invalid volume: Volume {source} is being copied or snapshotted; try again when that is done."
                ))
                .into());
            }
        }
        return Ok(Held {
            bootable: v.bootable,
            strategy,
        });
    }
    if let Some(snapshot) = p.snapshot_id {
        let held = snapshots::snapshot_hold_for_read(c, snapshot).await?;
        let s = snapshots::snapshot_get(c, snapshot)
            .await?
            .filter(|s| s.project_id == p.project_id)
            .ok_or_else(|| crate::rules::snapshots::not_found(snapshot))?;
        if !held {
            return Err(snapshot_not_readable(snapshot, s.status).into());
        }
        let image = snapshot_image(c, &s).await?;
        let strategy = strategy(c, &cx.env, p.volume_type_id, &image.backend).await?;
        let bootable = volumes::volume_get(c, s.volume_id)
            .await?
            .map_or(p.bootable, |v| v.bootable);
        return Ok(Held { bootable, strategy });
    }
    Ok(Held {
        bootable: p.bootable,
        strategy: CloneStrategy::Performance,
    })
}

/// Cinder's refusal of a snapshot that is not `available`.
pub(crate) fn snapshot_not_readable(id: SnapshotId, status: SnapshotStatus) -> Error {
    Error::InvalidState(format!(
        "Invalid snapshot: Originating snapshot status must be one of 'available' values (snapshot {id} is {status})."
    ))
}

async fn snapshot_image(c: &mut Conn, s: &snapshots::Snapshot) -> Result<images::Image, StepError> {
    let id = s
        .image_id
        .ok_or_else(|| StepError::msg(format!("snapshot {} has no image", s.id)))?;
    images::image_get(c, id)
        .await?
        .filter(|i| i.state == ImageState::Ready)
        .ok_or_else(|| StepError::msg(format!("snapshot {}'s image is not ready", s.id)))
}

/// In `schedule`: which image the data comes from and, for a clone by
/// overlay, the record of the source's new overlay (`creating`).
pub(super) async fn plan(
    cx: &Cx<VolumeCreate>,
    c: &mut Conn,
    held: &Held,
) -> Result<DataPlan, StepError> {
    let p = &cx.params;
    let (image, source_volume) = if let Some(source) = p.source_volid {
        let v = volumes::volume_get(c, source)
            .await?
            .ok_or_else(|| Error::volume_not_found(source))?;
        (ready_image(c, &v).await?, Some(v))
    } else if let Some(snapshot) = p.snapshot_id {
        let s = snapshots::snapshot_get(c, snapshot)
            .await?
            .ok_or_else(|| crate::rules::snapshots::not_found(snapshot))?;
        (snapshot_image(c, &s).await?, None)
    } else {
        return Ok(DataPlan::default());
    };
    let mut plan = DataPlan {
        backend: Some(image.backend.clone()),
        ..DataPlan::default()
    };
    match held.strategy {
        CloneStrategy::Performance => plan.copy = Some(image.name),
        CloneStrategy::Space => {
            if let Some(v) = source_volume {
                let id = ImageId::new();
                let name = crate::rules::images::name_for(id, Format::Qcow2);
                images::image_create(
                    c,
                    &images::NewImage {
                        id,
                        backend: image.backend.clone(),
                        name: name.clone(),
                        format: ImageFormat::Qcow2,
                        virtual_size: image.virtual_size,
                        base_id: Some(image.id),
                        mutable: true,
                        state: ImageState::Creating,
                    },
                )
                .await?;
                plan.source_overlay = Some(SourceOverlay {
                    volume: v.id,
                    id,
                    name,
                    size: image.virtual_size as u64,
                });
            }
            plan.base = Some((image.id, image.name));
        }
    }
    Ok(plan)
}

/// In `create_on_backend`: make the volume's data under `place`.
pub(super) async fn make(cx: &Cx<VolumeCreate>, place: &Placement) -> Result<(), StepError> {
    let spec = ImageSpec {
        name: place.location.clone(),
        size: cx.params.size as u64 * GIB,
        format: place.format,
    };
    let driver = &cx.env.backend(&place.backend)?.driver;
    let data = &place.data;
    if let Some((_, base)) = &data.base {
        if let Some(own) = &data.source_overlay {
            // The implicit snapshot: the source's image is frozen and the
            // source gets an overlay of its own.
            driver
                .make_immutable(base)
                .await
                .map_err(|e| storage_error("freeze the source volume's image", e))?;
            driver
                .create_overlay(
                    base,
                    &ImageSpec {
                        name: own.name.clone(),
                        size: own.size,
                        format: Format::Qcow2,
                    },
                )
                .await
                .map_err(|e| storage_error("give the source volume a new layer", e))?;
        }
        driver
            .create_overlay(base, &spec)
            .await
            .map_err(|e| storage_error("layer the volume on its source", e))?;
        return Ok(());
    }
    match place.source.as_ref().or(data.copy.as_ref()) {
        Some(source) => driver
            .copy_from(source, &spec, &|percent| cx.report_percent(percent))
            .await
            .map_err(|e| storage_error("copy the source", e)),
        None => driver
            .create(&spec)
            .await
            .map_err(|e| storage_error("create the volume", e)),
    }
}

/// Undo of [`make`]: the volume's data goes; a clone by overlay also removes
/// the source's new overlay and gives the source its image back (nothing
/// else was layered on it: the source was held).
pub(super) async fn unmake(cx: &Cx<VolumeCreate>, place: &Placement) -> Result<(), StepError> {
    let driver = &cx.env.backend(&place.backend)?.driver;
    driver
        .delete(&place.location)
        .await
        .map_err(|e| storage_error("remove a partly created volume", e))?;
    if let (Some(own), Some((_, base))) = (&place.data.source_overlay, &place.data.base) {
        driver
            .delete(&own.name)
            .await
            .map_err(|e| storage_error("remove the source's new layer", e))?;
        driver
            .make_mutable(base)
            .await
            .map_err(|e| storage_error("give the source volume its image back", e))?;
    }
    Ok(())
}

/// Undo of `schedule`'s records for the source: the source's new overlay.
pub(super) async fn unplan(c: &mut Conn, place: Option<&Placement>) -> Result<(), StepError> {
    if let Some(own) = place.and_then(|p| p.data.source_overlay.as_ref()) {
        images::image_delete(c, own.id).await?;
    }
    Ok(())
}

/// In `mark_available`: a clone by overlay records the source's image as
/// frozen and switches the source onto its new overlay.
pub(super) async fn finish(
    cx: &Cx<VolumeCreate>,
    c: &mut Conn,
    place: &Placement,
) -> Result<(), StepError> {
    let max = cx.env.backend(&place.backend)?.config.max_chain_depth;
    let Some((base_id, _)) = &place.data.base else {
        return Ok(());
    };
    if let Some(own) = &place.data.source_overlay {
        images::image_freeze(c, *base_id).await?;
        images::image_set_state(c, own.id, &[ImageState::Creating], ImageState::Ready).await?;
        let source = volumes::volume_get(c, own.volume)
            .await?
            .ok_or_else(|| Error::volume_not_found(own.volume))?;
        if !VolumeStatus::READABLE.contains(&source.status)
            || !volumes::volume_switch_image(c, own.volume, *base_id, own.id).await?
        {
            return Err(Error::InvalidState(format!(
                "Invalid volume: source volume {} changed while it was being copied.",
                own.volume
            ))
            .into());
        }
        crate::flows::snapshot_create::mark_depth(c, own.id, max).await?;
    }
    if let Some(image) = place.image_id {
        crate::flows::snapshot_create::mark_depth(c, image, max).await?;
    }
    Ok(())
}
