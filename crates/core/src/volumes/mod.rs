//! Volumes: create, read, list, change, delete, extend.
//!
//! Each operation authorizes the caller, validates the request, then either
//! answers from the store or starts a flow and waits for the step after which
//! the answer is known (the quota commit of a create, the first step of a delete
//! or an extend): what the client is told has been made durable, and whatever
//! is left runs on in the background and survives a restart.

use std::collections::BTreeMap;

use scoria_flows::Outcome;
use scoria_model::flow::Progress;
use scoria_model::volume::{GIB, MAX_DESCRIPTION_LEN, MAX_NAME_LEN, VolumeStatus};
use scoria_model::{GroupId, VolumeId, VolumeTypeId};
use scoria_store::volumes::{self as store, VolumeQuery};
pub use scoria_store::volumes::{SortDir, SortKey, Volume};
use scoria_store::{Conn, flows as flow_store, volume_types};

use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result, from_outcome};
use crate::flows::{volume_create, volume_delete, volume_extend};

mod actions;
mod manage;
mod manageable;
mod metadata;
mod migrate;
mod retype;
mod revert;
mod tree;
mod upload;
mod view;

use crate::rules::types::resolve as resolve_type;
use crate::rules::validate::volume_size as validate_size;
pub use crate::rules::validate::{validate_metadata, validate_text};
pub use crate::rules::volumes::parse_id;
use crate::rules::volumes::{refuse_encrypted, visible};
pub use actions::{reserve, reset_status, set_bootable, set_readonly, unreserve};
pub use manage::{ManageRequest, manage, unmanage};
pub use manageable::{Manageable, manageable};
pub use metadata::{
    image_metadata_delete, image_metadata_get, image_metadata_set, metadata_delete, metadata_get,
    metadata_set,
};
pub use migrate::{MigrateRequest, migrate, migrate_completion};
pub use retype::{MigrationPolicy, retype};
pub use revert::revert;
pub use tree::{ImageNode, VolumeTree, tree};
pub use upload::{UploadRequest, Uploading, upload_to_image};
use view::views;

/// A volume as the API shows it: the record, its type's name, and the progress
/// of the last operation on it.
#[derive(Clone, Debug)]
pub struct VolumeView {
    pub volume: Volume,
    pub volume_type_name: String,
    pub progress: Option<Progress>,
    /// The active image's health and chain depth (VDSM's status), once placed.
    pub image: Option<scoria_store::images::ImageStatus>,
    /// Cinder's `volume_image_metadata`: what the volume keeps of the image
    /// it was made from (empty for other volumes).
    pub image_metadata: BTreeMap<String, String>,
    /// Its attachments that are attached (Cinder's volume views list those).
    pub attachments: Vec<scoria_store::attachments::Attachment>,
}

/// A create request, as parsed from the API.
#[derive(Clone, Debug, Default)]
pub struct CreateRequest {
    pub name: Option<String>,
    pub description: Option<String>,
    /// GiB. May be left out only for a clone, which then gets its source's size.
    pub size: Option<i64>,
    /// Make the volume a copy of this one (Cinder's `source_volid`).
    pub source_volid: Option<VolumeId>,
    /// Make the volume from this snapshot (Cinder's `snapshot_id`).
    pub snapshot_id: Option<scoria_model::SnapshotId>,
    /// Make the volume from this image of the image service (`imageRef`).
    pub image_id: Option<scoria_model::GlanceImageId>,
    pub availability_zone: Option<String>,
    /// Name or id of a volume type; the default type when absent.
    pub volume_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub bootable: bool,
    pub multiattach: bool,
    /// Make the volume in this group (3.13): the group must be the caller's,
    /// `available`, and accept the volume's type.
    pub group_id: Option<GroupId>,
    /// Make the volume from this backup (Cinder's `backup_id`, 3.47): it must
    /// be the caller's and `available`; the size defaults to the backup's.
    pub backup_id: Option<scoria_model::BackupId>,
    /// Remove the volume if it cannot be made, instead of leaving it `error`:
    /// for the volume a restore makes for itself.
    pub remove_on_failure: bool,
    /// `same_host`/`different_host` (`OS-SCH-HNT:scheduler_hints`).
    pub hints: crate::rules::affinity::Hints,
}

/// List filters and paging, as parsed from the API.
#[derive(Clone, Debug, Default)]
pub struct ListRequest {
    /// Admins only: every project (or `project_id` when given).
    pub all_projects: bool,
    pub project_id: Option<String>,
    pub name: Option<String>,
    pub status: Option<String>,
    pub availability_zone: Option<String>,
    pub bootable: Option<bool>,
    pub metadata: Vec<(String, String)>,
    /// Only the volumes of this group (3.10 on).
    pub group_id: Option<GroupId>,
    pub sort: Vec<(SortKey, SortDir)>,
    pub limit: Option<i64>,
    /// Skip this many volumes first (after the marker, as Cinder).
    pub offset: Option<i64>,
    pub marker: Option<VolumeId>,
    pub with_count: bool,
    /// Read each volume's last flow's progress and its image's health
    /// (`with_progress`).
    pub with_status: bool,
}

/// Page of volumes and, when asked, the number matching the filters.
#[derive(Clone, Debug)]
pub struct ListResult {
    pub volumes: Vec<VolumeView>,
    pub count: Option<i64>,
}

/// Create a volume, blank or (with `source_volid`) a copy of another one.
/// Returns once its quota is committed (status `creating`).
///
/// A clone follows Cinder: the source must be visible to the caller (404) and
/// `available` or `in-use` (400); the size defaults to the source's and may not
/// be smaller (400); the zone is the source's (another one asked for is 400);
/// the type defaults to the source's, and another type must fit the source's
/// backend, because that is where the copy is made (400 otherwise); `bootable`
/// is the source's. Quota is counted as for any create.
pub async fn create(app: &App, ctx: &Context, req: CreateRequest) -> Result<VolumeView> {
    ctx.authorize(Op::VolumeCreate)?;
    let project = ctx.project()?.clone();
    if let Some(size) = req.size {
        validate_size(size)?;
    }
    crate::rules::validate::validate_described(
        req.name.as_deref(),
        req.description.as_deref(),
        &req.metadata,
    )?;
    let zones = app.env.availability_zones();
    if let Some(az) = &req.availability_zone
        && !zones.contains(az)
    {
        return Err(Error::Invalid(format!(
            "Availability zone '{az}' is invalid."
        )));
    }
    let default_zone = zones.first().cloned().unwrap_or_else(|| "nova".into());
    let mut conn = app.store().read().await?;
    if !crate::rules::hosts::scheduler_enabled(&mut conn).await? {
        return Err(Error::Unavailable(
            "The scheduler service is disabled: no volume can be created until an administrator enables it.".into(),
        ));
    }
    let source = match (req.source_volid, req.snapshot_id) {
        (Some(_), Some(_)) => {
            return Err(Error::Invalid(
                "Invalid input received: a volume is made from one source at most: give source_volid or snapshot_id, not both.".into(),
            ));
        }
        (Some(id), None) => Some(Origin::of_volume(clone_source(&mut conn, ctx, id).await?)),
        (None, Some(id)) => Some(snapshot_source(&mut conn, ctx, id).await?),
        (None, None) => None,
    };
    let image = match req.image_id {
        Some(_) if source.is_some() => {
            return Err(Error::Invalid(
                "Invalid input received: a volume is made from one source at most: give imageRef, source_volid or snapshot_id, not several.".into(),
            ));
        }
        Some(id) => Some(image_source(app, &mut conn, ctx, id).await?),
        None => None,
    };
    let backup = match req.backup_id {
        Some(_) if source.is_some() || image.is_some() => {
            return Err(Error::Invalid(
                "Invalid input received: a volume is made from one source at most: give backup_id, imageRef, source_volid or snapshot_id, not several.".into(),
            ));
        }
        Some(id) => Some(crate::rules::backups::restorable(&mut conn, ctx, id).await?),
        None => None,
    };
    let req_size = match (&image, req.size) {
        (Some(i), size) => Some(image_fits(i, size)?),
        (None, size) => size,
    };
    let req_size = match (&backup, req_size) {
        (Some(b), Some(size)) if size < b.size => {
            return Err(Error::Invalid(format!(
                "Invalid input received: Volume size {size}GB must not be smaller than the backup size {}GB.",
                b.size
            )));
        }
        (Some(b), None) => Some(b.size),
        (_, size) => size,
    };
    let size = match (req_size, &source) {
        (Some(size), Some(src)) if size < src.size => {
            return Err(Error::Invalid(format!(
                "Invalid input received: Volume size {size}GB must not be smaller than the {} size {}GB.",
                src.what, src.size
            )));
        }
        (Some(size), _) => size,
        (None, Some(src)) => src.size,
        (None, None) => {
            return Err(Error::Invalid(
                "Invalid input for field/attribute size. Value: None. None is not of type 'integer', 'string'.".into(),
            ));
        }
    };
    let (availability_zone, type_id, bootable) = match &source {
        None => {
            let t = resolve_type(&mut conn, ctx, req.volume_type.as_deref()).await?;
            refuse_encrypted(&mut conn, t.id).await?;
            // Cinder makes a volume from an image bootable.
            (req.availability_zone, t.id, req.bootable || image.is_some())
        }
        Some(src) => {
            if let Some(az) = &req.availability_zone
                && *az != src.availability_zone
            {
                return Err(Error::Invalid(format!(
                    "Invalid input received: Volume must be in the same availability zone as the {} ({}), not {az}.",
                    src.what, src.availability_zone
                )));
            }
            let type_id = match req.volume_type.as_deref() {
                None => src.volume_type_id,
                Some(wanted) => {
                    let t = resolve_type(&mut conn, ctx, Some(wanted)).await?;
                    refuse_encrypted(&mut conn, t.id).await?;
                    if t.id != src.volume_type_id {
                        type_fits_source(app, &mut conn, t.id, &t.name, src).await?;
                    }
                    t.id
                }
            };
            (Some(src.availability_zone.clone()), type_id, src.bootable)
        }
    };
    // A group's volume goes to the group's zone and backend; a volume made
    // from a source is made on its source's backend, so the two must agree.
    let availability_zone = match req.group_id {
        Some(g) => {
            let zone = crate::rules::groups::check_volume_create(
                &mut conn,
                ctx,
                g,
                type_id,
                availability_zone.as_deref(),
            )
            .await?;
            if let Some(src) = &source {
                let backend = crate::rules::groups::backend_of(&mut conn, Some(g)).await?;
                if src.backend != backend {
                    return Err(Error::Invalid(format!(
                        "Invalid input received: {} {} is on backend {}, and the volumes of group {g} on backend {}.",
                        src.what,
                        src.id,
                        src.backend.as_deref().unwrap_or("(none)"),
                        backend.as_deref().unwrap_or("(none)")
                    )));
                }
            }
            Some(zone)
        }
        None => availability_zone,
    };
    let hints = crate::rules::affinity::visible(&mut conn, ctx, req.hints).await?;
    drop(conn);
    let id = VolumeId::new();
    let params = volume_create::Params {
        volume_id: id,
        project_id: project.0.clone(),
        user_id: ctx.user_id.0.clone(),
        name: req.name,
        description: req.description,
        size,
        availability_zone,
        default_zone,
        bootable,
        multiattach: req.multiattach,
        volume_type_id: type_id,
        metadata: req.metadata,
        request_id: Some(ctx.request_id.clone()),
        group_id: req.group_id,
        source_volid: req.source_volid,
        snapshot_id: req.snapshot_id,
        glance_image_id: image.as_ref().map(|i| i.id),
        glance_image_virtual_size: image
            .as_ref()
            .and_then(|i| i.virtual_size)
            .map(|v| v as u64),
        backup: backup.map(|b| volume_create::FromBackup {
            backup_id: b.id,
            remove_on_failure: req.remove_on_failure,
        }),
        hints,
        manage: None,
    };
    let handle = app.engine.start::<volume_create::VolumeCreate>(params)?;
    handle
        .wait_step("commit_quota")
        .await
        .map_err(from_outcome)?;
    get_unchecked(app, id).await
}

/// The image service's image a volume is made from, as the caller may see
/// it, if it can be read now (`active`). (The create flow holds it again when
/// it records the volume.)
async fn image_source(
    app: &App,
    conn: &mut Conn,
    ctx: &Context,
    id: scoria_model::GlanceImageId,
) -> Result<crate::image_service::GlanceImage> {
    use scoria_model::glance::GlanceImageStatus;
    let i = crate::image_service::visible(conn, ctx, id).await?;
    match i.status {
        GlanceImageStatus::Active => {}
        GlanceImageStatus::Deactivated => {
            return Err(Error::Invalid(format!(
                "Invalid image identifier or unable to access requested image: image {id} is deactivated."
            )));
        }
        other => {
            return Err(Error::Invalid(format!(
                "Invalid image identifier or unable to access requested image: image {id} is {other}, not active."
            )));
        }
    }
    let declared = i.disk_format.clone().unwrap_or_default();
    let Some(format) = scoria_storage::inspect::DiskFormat::from_glance(&declared) else {
        return Err(Error::Invalid(format!(
            "Invalid input received: image {id} has disk format {declared:?}; a volume is made from raw, qcow2, vmdk, vdi, vhdx, vhd or iso images."
        )));
    };
    // A hostile image is refused here, before anything exists (the create
    // flow checks again as it reads the data): its bytes must be its declared
    // format and refer to no other file, and qemu-img, within its limits,
    // must agree. Its virtual size, from that inspection, sizes the volume.
    let path = app
        .env
        .image_store
        .local_path(&id.to_string())
        .ok_or_else(|| {
            Error::Unavailable("The image store cannot be read by the backends.".into())
        })?;
    let seen = scoria_storage::vet::check(&path, format, u64::MAX, app.env.inspect_limits)
        .await
        .map_err(|e| match e {
            scoria_storage::StorageError::Refused { refusal, .. } => {
                Error::Invalid(format!("Invalid image: image {id} is refused: {refusal}."))
            }
            other => Error::internal(format!("image {id} could not be inspected"), other),
        })?;
    let mut i = i;
    if let Some(v) = seen.virtual_size {
        i.virtual_size = Some(v as i64);
    }
    Ok(i)
}

/// The size of a volume made from `i`: the one asked for, which must hold
/// the image (its `min_disk`, its virtual size when known, else its size), or
/// the smallest that does.
fn image_fits(i: &crate::image_service::GlanceImage, asked: Option<i64>) -> Result<i64> {
    let gib = |bytes: i64| (bytes.max(0) as u64).div_ceil(GIB) as i64;
    let needed = i
        .virtual_size
        .or(i.size)
        .map(gib)
        .unwrap_or(1)
        .max(i.min_disk)
        .max(1);
    let Some(size) = asked else {
        return Ok(needed);
    };
    if i.min_disk > size {
        return Err(Error::Invalid(format!(
            "Invalid input received: Image minDisk size {}GB is larger than the volume size {size}GB.",
            i.min_disk
        )));
    }
    if let Some(v) = i.virtual_size
        && gib(v) > size
    {
        return Err(Error::Invalid(format!(
            "Invalid input received: Image virtual size is {}GB and doesn't fit in a volume of size {size}GB.",
            gib(v)
        )));
    }
    if i.virtual_size.is_none()
        && let Some(bytes) = i.size
        && gib(bytes) > size
        && i.disk_format.as_deref() == Some("raw")
    {
        return Err(Error::Invalid(format!(
            "Invalid input received: Size of specified image {}GB is larger than volume size {size}GB.",
            gib(bytes)
        )));
    }
    Ok(size)
}

/// What a new volume is made from, as the API checks it.
struct Origin {
    /// "source volume" or "snapshot", for messages.
    what: &'static str,
    id: String,
    size: i64,
    availability_zone: String,
    volume_type_id: VolumeTypeId,
    backend: Option<String>,
    bootable: bool,
}

impl Origin {
    fn of_volume(v: Volume) -> Origin {
        Origin {
            what: "source volume",
            id: v.id.to_string(),
            size: v.size,
            availability_zone: v.availability_zone,
            volume_type_id: v.volume_type_id,
            backend: v.backend,
            bootable: v.bootable,
        }
    }
}

/// The snapshot a volume is made from, as the caller may see it, if it can be
/// read now: it has its volume's zone, type, backend and bootable flag, and
/// its own size. (The create flow checks its status again when it records the
/// volume.)
async fn snapshot_source(
    conn: &mut Conn,
    ctx: &Context,
    id: scoria_model::SnapshotId,
) -> Result<Origin> {
    let s = crate::rules::snapshots::visible(conn, ctx, id).await?;
    if s.status != scoria_model::snapshot::SnapshotStatus::Available {
        return Err(crate::flows::volume_create::snapshot_not_readable(
            id, s.status,
        ));
    }
    let v = store::volume_get(conn, s.volume_id)
        .await?
        .ok_or_else(|| Error::volume_not_found(s.volume_id))?;
    Ok(Origin {
        what: "snapshot",
        id: s.id.to_string(),
        size: s.size,
        availability_zone: v.availability_zone,
        volume_type_id: s.volume_type_id,
        backend: v.backend,
        bootable: v.bootable,
    })
}

/// The source of a clone, as the caller may see it, if it can be read now.
/// (The create flow checks the status again when it records the clone.)
async fn clone_source(conn: &mut Conn, ctx: &Context, id: VolumeId) -> Result<Volume> {
    let src = visible(conn, ctx, id).await?;
    if !VolumeStatus::READABLE.contains(&src.status) {
        return Err(crate::rules::volumes::source_not_readable(&src));
    }
    Ok(src)
}

/// A clone is made on its source's backend: a type other than the source's
/// must be one that backend satisfies (the scheduler's capabilities filter).
async fn type_fits_source(
    app: &App,
    conn: &mut Conn,
    type_id: VolumeTypeId,
    type_name: &str,
    src: &Origin,
) -> Result<()> {
    let specs = volume_types::volume_type_extra_specs_get(conn, type_id).await?;
    let candidates = crate::capacity::gather(&app.env, conn).await?;
    let backend = src.backend.as_deref().unwrap_or_default();
    let reason = match candidates.iter().find(|c| c.name == backend) {
        None => format!("{backend}: not configured"),
        Some(c) => match crate::scheduler::capabilities_match(
            &specs,
            &c.capabilities,
            &crate::scheduler::known_keys(candidates.iter().map(|c| &c.capabilities)),
        ) {
            Ok(()) => return Ok(()),
            Err(reason) => format!("{}: {reason}", c.name),
        },
    };
    Err(Error::Invalid(format!(
        "Invalid input received: Volume type {type_name} does not fit the source volume's backend, where the copy is made ({reason}). Leave the type out to use the source's."
    )))
}

async fn get_unchecked(app: &App, id: VolumeId) -> Result<VolumeView> {
    let mut conn = app.store().read().await?;
    let v = store::volume_get(&mut conn, id)
        .await?
        .ok_or_else(|| Error::volume_not_found(id))?;
    let mut views = views(&app.env, &mut conn, vec![v], false).await?;
    views.pop().ok_or_else(|| Error::volume_not_found(id))
}

/// One volume; with its last flow's progress and its image's health when
/// `with_status`. The volume is looked up before the policy is asked (404
/// before 403), on one connection.
pub async fn get(app: &App, ctx: &Context, id: VolumeId, with_status: bool) -> Result<VolumeView> {
    let mut conn = app.store().read().await?;
    let v = visible(&mut conn, ctx, id).await?;
    ctx.authorize(Op::VolumeGet)?;
    let mut views = views(&app.env, &mut conn, vec![v], with_status).await?;
    views.pop().ok_or_else(|| Error::volume_not_found(id))
}

/// A page of volumes.
pub async fn list(app: &App, ctx: &Context, req: ListRequest) -> Result<ListResult> {
    ctx.authorize(Op::VolumeList)?;
    let project_id = if req.all_projects && ctx.authorize(Op::VolumeListAllProjects).is_ok() {
        req.project_id.clone()
    } else {
        Some(ctx.project()?.0.clone())
    };
    let q = VolumeQuery {
        project_id,
        name: req.name,
        status: req.status,
        availability_zone: req.availability_zone,
        bootable: req.bootable,
        metadata: req.metadata,
        group_id: req.group_id,
        sort: req.sort,
        limit: req.limit,
        offset: req.offset,
        marker: req.marker,
    };
    let mut conn = app.store().read().await?;
    let vols = store::volume_list(&mut conn, &q).await?;
    let count = if req.with_count {
        Some(store::volume_count(&mut conn, &q).await?)
    } else {
        None
    };
    Ok(ListResult {
        volumes: views(&app.env, &mut conn, vols, req.with_status).await?,
        count,
    })
}

/// Count, total size and metadata of the caller's volumes (`volumes/summary`).
pub async fn summary(
    app: &App,
    ctx: &Context,
    all_projects: bool,
) -> Result<(i64, i64, BTreeMap<String, Vec<String>>)> {
    ctx.authorize(Op::VolumeList)?;
    let project = if all_projects && ctx.authorize(Op::VolumeListAllProjects).is_ok() {
        None
    } else {
        Some(ctx.project()?.0.clone())
    };
    let mut conn = app.store().read().await?;
    Ok(store::volume_summary(&mut conn, project.as_deref()).await?)
}

/// Change name and/or description (`Some(None)` clears) and, when given,
/// replace the metadata.
pub async fn update(
    app: &App,
    ctx: &Context,
    id: VolumeId,
    name: Option<Option<String>>,
    description: Option<Option<String>>,
    metadata: Option<BTreeMap<String, String>>,
) -> Result<VolumeView> {
    crate::rules::volumes::authorize_on(app.store(), ctx, id, Op::VolumeUpdate).await?;
    if let Some(Some(n)) = &name {
        validate_text("name", n, MAX_NAME_LEN)?;
    }
    if let Some(Some(d)) = &description {
        validate_text("description", d, MAX_DESCRIPTION_LEN)?;
    }
    if let Some(m) = &metadata {
        validate_metadata(m)?;
    }
    let mut tx = app.store().begin().await?;
    let v = visible(&mut tx, ctx, id).await?;
    if v.status == VolumeStatus::Maintenance {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {id} is in maintenance."
        )));
    }
    store::volume_update_text(
        &mut tx,
        id,
        name.as_ref().map(|n| n.as_deref()),
        description.as_ref().map(|d| d.as_deref()),
    )
    .await?;
    if let Some(m) = &metadata {
        store::volume_metadata_replace(&mut tx, id, m).await?;
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    get_unchecked(app, id).await
}

/// Delete a volume (`force`: admins, any status but attached). Returns once
/// the volume is `deleting`; the rest runs on.
pub async fn delete(
    app: &App,
    ctx: &Context,
    id: VolumeId,
    force: bool,
    cascade: bool,
) -> Result<()> {
    // Existence and visibility first, so another project's volume is a 404
    // whatever its state and whoever asks.
    let op = if force {
        Op::VolumeForceDelete
    } else {
        Op::VolumeDelete
    };
    crate::rules::volumes::authorize_on(app.store(), ctx, id, op).await?;
    if force {
        // An admin's forced delete settles the volume's attachments first:
        // their exports are removed and their rows go (as os-force_detach).
        crate::attachments::detach_any(app, ctx, id, None, true).await?;
    }
    let params = volume_delete::Params {
        volume_id: id,
        project_id: if ctx.is_admin() {
            None
        } else {
            Some(ctx.project()?.0.clone())
        },
        force,
        request_id: Some(ctx.request_id.clone()),
        group_id: None,
        cascade,
        unmanage: false,
    };
    let handle = app.engine.start::<volume_delete::VolumeDelete>(params)?;
    handle.wait_step("begin_delete").await.map_err(from_outcome)
}

/// Grow a volume to `new_size` GiB; an `in-use` one too when `allow_in_use`
/// (microversion 3.42+). Returns once the quota is reserved.
pub async fn extend(
    app: &App,
    ctx: &Context,
    id: VolumeId,
    new_size: i64,
    allow_in_use: bool,
) -> Result<()> {
    crate::rules::volumes::authorize_on(app.store(), ctx, id, Op::VolumeExtend).await?;
    validate_size(new_size)?;
    {
        let mut conn = app.store().read().await?;
        visible(&mut conn, ctx, id).await?;
    }
    let params = volume_extend::Params {
        volume_id: id,
        project_id: if ctx.is_admin() {
            None
        } else {
            Some(ctx.project()?.0.clone())
        },
        new_size,
        request_id: Some(ctx.request_id.clone()),
        allow_in_use,
    };
    let handle = app.engine.start::<volume_extend::VolumeExtend>(params)?;
    handle
        .wait_step("reserve_quota")
        .await
        .map_err(from_outcome)
}

/// Wait until no flow works on a volume any more (tests and tools).
pub async fn wait_settled(app: &App, id: VolumeId) -> Result<()> {
    wait_settled_resource(app, &id.to_string()).await
}

/// Wait until no flow works on the resource `id` (a volume, a snapshot).
pub(crate) async fn wait_settled_resource(app: &App, id: &str) -> Result<()> {
    let mut ended = app.engine.ended();
    loop {
        ended.borrow_and_update();
        let busy = {
            let mut conn = app.store().read().await?;
            flow_store::flow_list_unsettled_for(&mut conn, id)
                .await?
                .iter()
                .any(|f| f.state.is_active())
        };
        if !busy {
            return Ok(());
        }
        // Woken when a flow ends; the timeout covers flows of another process.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(200), ended.changed()).await;
    }
}

/// Was the flow that answered a create successful in the end? (For tests.)
pub fn outcome_ok(o: &Outcome) -> bool {
    matches!(o, Outcome::Done)
}
