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
use std::path::PathBuf;

use scoria_model::{GlanceImageId, ImageId, SnapshotId, VolumeId};
use scoria_storage::inspect::DiskFormat;
use scoria_storage::{Format, ImageSpec, StorageError};
use scoria_store::volumes::Volume;
use scoria_store::{Conn, glance, images, snapshots, volume_images, volume_types, volumes};
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
    /// A volume from the image service's image.
    #[serde(default)]
    pub image: Option<ImagePlan>,
}

/// How a volume is made from the image service's image (see the module doc).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct ImagePlan {
    pub glance_image_id: GlanceImageId,
    /// The image's file, read by the backend's driver.
    pub path: PathBuf,
    pub disk_format: DiskFormat,
    pub via: Via,
}

/// Whether the backend's image cache holds the image's data.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) enum Via {
    /// It does: the volume is an overlay on the cached image (`base`).
    Cached,
    /// It does not, and this flow fills it: the image's data goes into the
    /// cache image (recorded, `creating`), the volume is an overlay on it.
    Fill { id: ImageId, name: String },
    /// It does not, and it cannot now (the cache is off, or another volume is
    /// filling it): the image's data goes straight into the volume.
    Direct,
}

/// What `create_on_backend` learned, for `mark_available`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct Made {
    /// The virtual size of the image's data put in the cache (bytes).
    #[serde(default)]
    pub cached_size: Option<u64>,
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
/// caller's project, an image of the image service `active`. Returns the
/// new volume's bootable flag and strategy, and the image held (for
/// [`record`]).
pub(super) async fn hold(
    cx: &Cx<VolumeCreate>,
    c: &mut Conn,
) -> Result<(Held, Option<glance::GlanceImage>), StepError> {
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
        return Ok((
            Held {
                bootable: v.bootable,
                strategy,
            },
            None,
        ));
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
        return Ok((Held { bootable, strategy }, None));
    }
    if let Some(image) = p.glance_image_id {
        let held = volume_images::glance_image_hold_for_read(c, image).await?;
        let i = glance::glance_image_get(c, image)
            .await?
            .ok_or_else(|| Error::NotFound(format!("Image {image} could not be found.")))?;
        if !held {
            return Err(Error::Invalid(format!(
                "Invalid image identifier or unable to access requested image: image {image} is {}, not active.",
                i.status
            ))
            .into());
        }
        disk_format_of(&i)?;
        // Cinder makes every volume made from an image bootable.
        return Ok((
            Held {
                bootable: true,
                strategy: CloneStrategy::Space,
            },
            Some(i),
        ));
    }
    Ok((
        Held {
            bootable: p.bootable,
            strategy: CloneStrategy::Performance,
        },
        None,
    ))
}

/// In `create_entry`, once the volume's row exists: a volume made from an
/// image (the one [`hold`] held) names it and keeps its metadata
/// (`volume_image_metadata`).
pub(super) async fn record(
    cx: &Cx<VolumeCreate>,
    c: &mut Conn,
    image: Option<&glance::GlanceImage>,
) -> Result<(), StepError> {
    let Some(i) = image else {
        return Ok(());
    };
    let volume = cx.params.volume_id;
    volume_images::volume_set_glance_image(c, volume, i.id).await?;
    volume_images::volume_image_metadata_merge(c, volume, &image_metadata(i)).await?;
    Ok(())
}

/// The image's declared disk format, as the inspector knows it.
fn disk_format_of(i: &glance::GlanceImage) -> Result<DiskFormat, StepError> {
    let declared = i.disk_format.clone().unwrap_or_default();
    DiskFormat::from_glance(&declared).ok_or_else(|| {
        Error::Invalid(format!(
            "Invalid input received: image {} has disk format {declared:?}; a volume is made from raw, qcow2, vmdk, vdi, vhdx, vhd or iso images.",
            i.id
        ))
        .into()
    })
}

/// What a volume keeps of its image (Cinder's `volume_image_metadata`): the
/// image's identity and data attributes, and its custom properties.
fn image_metadata(i: &glance::GlanceImage) -> std::collections::BTreeMap<String, String> {
    let mut m: std::collections::BTreeMap<String, String> = i
        .properties
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    m.insert("image_id".into(), i.id.to_string());
    if let Some(n) = &i.name {
        m.insert("image_name".into(), n.clone());
    }
    for (k, v) in [
        ("disk_format", i.disk_format.clone()),
        ("container_format", i.container_format.clone()),
        ("checksum", i.checksum.clone()),
        ("size", i.size.map(|s| s.to_string())),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), v);
        }
    }
    m.insert("min_disk".into(), i.min_disk.to_string());
    m.insert("min_ram".into(), i.min_ram.to_string());
    m
}

/// In `schedule`, once the backend `b` is chosen: how a volume from an image
/// gets its data there — from the backend's cache (an overlay on it), by
/// filling the cache (recorded here: its image `creating`, its row), or
/// straight from the image's file. Filling evicts entries nothing stands on,
/// least recently used first, to keep the cache within its limits.
pub(super) async fn plan_image(
    cx: &Cx<VolumeCreate>,
    c: &mut Conn,
    b: &crate::Backend,
    plan: &mut DataPlan,
) -> Result<(), StepError> {
    let Some(image) = cx.params.glance_image_id else {
        return Ok(());
    };
    let i = glance::glance_image_get(c, image)
        .await?
        .ok_or_else(|| Error::NotFound(format!("Image {image} could not be found.")))?;
    let disk_format = disk_format_of(&i)?;
    let path = cx
        .env
        .image_store
        .local_path(&image.to_string())
        .ok_or_else(|| {
            StepError::new(Error::Unavailable(format!(
                "backend {} cannot read the image store's files",
                b.config.name
            )))
        })?;
    let backend = b.config.name.as_str();
    let layering = b.driver.capabilities().layering;
    let via = match volume_images::cache_get(c, image, backend).await? {
        Some(entry) if entry.ready && layering => {
            volume_images::cache_touch(c, image, backend).await?;
            let base = images::image_get(c, entry.image_id)
                .await?
                .ok_or_else(|| StepError::msg("a cache entry names a missing image"))?;
            plan.base = Some((base.id, base.name));
            Via::Cached
        }
        Some(_) => Via::Direct,
        None if layering && b.config.image_cache_max_count > 0 => {
            // The incoming copy is as large as the image (the API's check
            // measured it; else what the image service recorded).
            let incoming = cx
                .params
                .glance_image_virtual_size
                .or(i.virtual_size.or(i.size).map(|v| v.max(0) as u64))
                .unwrap_or(0);
            evict(c, b, incoming).await?;
            let id = ImageId::new();
            let format = b.config.format;
            let name = crate::rules::images::name_for(id, format);
            images::image_create(
                c,
                &images::NewImage {
                    id,
                    backend: backend.to_owned(),
                    name: name.clone(),
                    format: crate::rules::images::model_format(format),
                    // Known once the data is in (`finish` records it).
                    virtual_size: 0,
                    base_id: None,
                    mutable: true,
                    state: ImageState::Creating,
                },
            )
            .await?;
            volume_images::cache_create(c, image, backend, id).await?;
            plan.base = Some((id, name.clone()));
            Via::Fill { id, name }
        }
        None => Via::Direct,
    };
    plan.image = Some(ImagePlan {
        glance_image_id: image,
        path,
        disk_format,
        via,
    });
    Ok(())
}

/// Make room in `b`'s cache for one more entry of `incoming` bytes: drop the
/// least recently used entries nothing stands on until the count and byte
/// limits hold with it (the reaper then frees their images).
async fn evict(c: &mut Conn, b: &crate::Backend, incoming: u64) -> Result<(), StepError> {
    let entries = volume_images::cache_list(c, &b.config.name).await?;
    let mut count = entries.len() + 1;
    let mut bytes: u64 = incoming
        + entries
            .iter()
            .map(|e| e.virtual_size.max(0) as u64)
            .sum::<u64>();
    let max_bytes = b.config.image_cache_max_bytes;
    for e in entries.iter().filter(|e| e.ready && e.overlays == 0) {
        let over = count > b.config.image_cache_max_count || (max_bytes > 0 && bytes > max_bytes);
        if !over {
            break;
        }
        volume_images::cache_delete(c, e.glance_image_id, &b.config.name).await?;
        count -= 1;
        bytes = bytes.saturating_sub(e.virtual_size.max(0) as u64);
        tracing::info!(image = %e.glance_image_id, backend = %b.config.name, "image cache entry evicted");
    }
    Ok(())
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
pub(super) async fn make(cx: &Cx<VolumeCreate>, place: &Placement) -> Result<Made, StepError> {
    let spec = ImageSpec {
        name: place.location.clone(),
        size: cx.params.size as u64 * GIB,
        format: place.format,
    };
    if super::from_file::adopt(cx, place, &spec).await? {
        return Ok(Made::default());
    }
    let driver = &cx.env.backend(&place.backend)?.driver;
    let data = &place.data;
    if let Some(image) = &data.image {
        return make_from_image(cx, place, image, &spec).await;
    }
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
        return Ok(Made::default());
    }
    match place.source.as_ref().or(data.copy.as_ref()) {
        Some(source) => driver
            .copy_from(source, &spec, &|percent| cx.report_percent(percent))
            .await
            .map_err(|e| storage_error("copy the source", e))?,
        None => driver
            .create(&spec)
            .await
            .map_err(|e| storage_error("create the volume", e))?,
    }
    Ok(Made::default())
}

/// A volume from an image: the image's file goes through the driver's
/// hardened import (`Driver::import_untrusted`: Scoria's inspector, the
/// size, qemu-img under limits, then an explicit-format convert) into the
/// cache (then frozen, the volume an overlay on it) or into the volume.
async fn make_from_image(
    cx: &Cx<VolumeCreate>,
    place: &Placement,
    image: &ImagePlan,
    spec: &ImageSpec,
) -> Result<Made, StepError> {
    let driver = &cx.env.backend(&place.backend)?.driver;
    let limits = cx.env.inspect_limits;
    let progress = |percent| cx.report_percent(percent);
    match &image.via {
        Via::Direct => {
            driver
                .import_untrusted(spec, &image.path, image.disk_format, limits, &progress)
                .await
                .map_err(|e| image_error(e, image))?;
            Ok(Made::default())
        }
        Via::Cached => {
            let (_, base) = place
                .data
                .base
                .as_ref()
                .ok_or_else(|| StepError::msg("a cached image without its base"))?;
            driver
                .create_overlay(base, spec)
                .await
                .map_err(|e| storage_error("layer the volume on the cached image", e))?;
            Ok(Made::default())
        }
        Via::Fill { name, .. } => {
            let virtual_size = match cx.params.glance_image_virtual_size {
                Some(v) => v,
                None => driver
                    .inspect_untrusted(&image.path, image.disk_format, limits)
                    .await
                    .map_err(|e| image_error(e, image))?
                    .virtual_size
                    .unwrap_or(0),
            };
            let size =
                virtual_size.div_ceil(scoria_storage::SECTOR_SIZE) * scoria_storage::SECTOR_SIZE;
            if size > spec.size {
                return Err(Error::Invalid(format!(
                    "Invalid input received: image {} has a virtual size of {size} bytes, more than the volume's {} GiB.",
                    image.glance_image_id, cx.params.size
                ))
                .into());
            }
            let format = scoria_storage::format_of_name(name)
                .map_err(|e| storage_error("name the cached image", e))?;
            driver
                .import_untrusted(
                    &ImageSpec {
                        name: name.clone(),
                        size,
                        format,
                    },
                    &image.path,
                    image.disk_format,
                    limits,
                    &progress,
                )
                .await
                .map_err(|e| image_error(e, image))?;
            driver
                .make_immutable(name)
                .await
                .map_err(|e| storage_error("freeze the cached image", e))?;
            driver
                .create_overlay(name, spec)
                .await
                .map_err(|e| storage_error("layer the volume on the cached image", e))?;
            Ok(Made {
                cached_size: Some(size),
            })
        }
    }
}

/// A storage failure reading an image: a refusal of the image is the user's
/// to read (which rule it broke); anything else is the backend's failure.
fn image_error(e: StorageError, image: &ImagePlan) -> StepError {
    match e {
        StorageError::Refused { refusal, .. } => Error::Invalid(format!(
            "Invalid image: image {} is refused: {refusal}.",
            image.glance_image_id
        ))
        .into(),
        StorageError::InvalidSize { detail, .. } => {
            Error::Invalid(format!("Invalid input received: the volume is {detail}.")).into()
        }
        other => storage_error("make the volume from its image", other),
    }
}

/// Undo of [`make`]: the volume's data goes; a clone by overlay also removes
/// the source's new overlay and gives the source its image back (nothing
/// else was layered on it: the source was held).
pub(super) async fn unmake(cx: &Cx<VolumeCreate>, place: &Placement) -> Result<(), StepError> {
    if super::from_file::give_back(cx, place).await? {
        return Ok(());
    }
    let driver = &cx.env.backend(&place.backend)?.driver;
    driver
        .delete(&place.location)
        .await
        .map_err(|e| storage_error("remove a partly created volume", e))?;
    if let Some(ImagePlan {
        via: Via::Fill { name, .. },
        ..
    }) = &place.data.image
    {
        // The cache image this flow filled: nothing else stands on it (it
        // was still `creating`).
        driver
            .delete(name)
            .await
            .map_err(|e| storage_error("remove a partly filled cache image", e))?;
        return Ok(());
    }
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
    if let Some((
        p,
        ImagePlan {
            glance_image_id,
            via: Via::Fill { id, .. },
            ..
        },
    )) = place.and_then(|p| p.data.image.as_ref().map(|i| (p, i)))
    {
        volume_images::cache_delete(c, *glance_image_id, &p.backend).await?;
        images::image_delete(c, *id).await?;
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
    let backend = cx.env.backend(&place.backend)?;
    if let Some(ImagePlan {
        via: Via::Fill { id, .. },
        ..
    }) = &place.data.image
    {
        let made: Made = cx.output_opt("create_on_backend").unwrap_or_default();
        let size = made
            .cached_size
            .ok_or_else(|| StepError::msg("the cache image's size was not recorded"))?;
        images::image_set_size(c, *id, size as i64).await?;
        images::image_freeze(c, *id).await?;
        images::image_set_state(c, *id, &[ImageState::Creating], ImageState::Ready).await?;
    }
    let Some((base_id, _)) = &place.data.base else {
        // A blank volume is as the backend makes it; a managed raw file on
        // a backend whose volumes are qcow2 is not.
        if place.format == Format::Raw
            && let Some(image) = place.image_id
        {
            crate::rules::images::mark_health(c, image, &backend.config).await?;
        }
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
        crate::rules::images::mark_health(c, own.id, &backend.config).await?;
        // Frozen now: what was the source's writable image is a base.
        crate::rules::images::mark_health(c, *base_id, &backend.config).await?;
    }
    if let Some(image) = place.image_id {
        crate::rules::images::mark_health(c, image, &backend.config).await?;
    }
    Ok(())
}
