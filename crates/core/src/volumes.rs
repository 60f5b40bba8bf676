//! Volumes: create, read, list, change, delete, extend.
//!
//! Each operation authorizes the caller, validates the request, then either
//! answers from the store or starts a flow and waits for the step after which
//! the answer is known (the quota commit of a create, the first step of a delete
//! or an extend): what the client is told has been made durable, and whatever
//! is left runs on in the background and survives a restart.

use std::collections::BTreeMap;

use scoria_flows::Outcome;
use scoria_model::flow::{FlowState, Progress};
use scoria_model::quota::{QuotaKey, TypedResource};
use scoria_model::volume::{AttachStatus, MAX_DESCRIPTION_LEN, MAX_NAME_LEN, VolumeStatus};
use scoria_model::{GroupId, VolumeId, VolumeTypeId};
use scoria_store::volumes::{self as store, VolumeQuery};
pub use scoria_store::volumes::{SortDir, SortKey, Volume};
use scoria_store::{Conn, flows as flow_store, transfers as transfer_store, volume_types};

use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result, from_outcome};
use crate::flows::{volume_create, volume_delete, volume_extend};
use crate::rules::types::resolve as resolve_type;
use crate::rules::validate::volume_size as validate_size;
pub use crate::rules::validate::{validate_metadata, validate_text};
pub use crate::rules::volumes::parse_id;
use crate::rules::volumes::{assert_not_being_cloned, refuse_encrypted, visible};

/// A volume as the API shows it: the record, its type's name, and the progress
/// of the last operation on it.
#[derive(Clone, Debug)]
pub struct VolumeView {
    pub volume: Volume,
    pub volume_type_name: String,
    pub progress: Option<Progress>,
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
    pub availability_zone: Option<String>,
    /// Name or id of a volume type; the default type when absent.
    pub volume_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub bootable: bool,
    pub multiattach: bool,
    /// Make the volume in this group (3.13): the group must be the caller's,
    /// `available`, and accept the volume's type.
    pub group_id: Option<GroupId>,
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
    pub marker: Option<VolumeId>,
    pub with_count: bool,
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
    if let Some(n) = &req.name {
        validate_text("name", n, MAX_NAME_LEN)?;
    }
    if let Some(d) = &req.description {
        validate_text("description", d, MAX_DESCRIPTION_LEN)?;
    }
    validate_metadata(&req.metadata)?;
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
    let source = match req.source_volid {
        Some(id) => Some(clone_source(&mut conn, ctx, id).await?),
        None => None,
    };
    let size = match (req.size, &source) {
        (Some(size), Some(src)) if size < src.size => {
            return Err(Error::Invalid(format!(
                "Invalid input received: Volume size {size}GB must not be smaller than the source volume size {}GB.",
                src.size
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
            (req.availability_zone, t.id, req.bootable)
        }
        Some(src) => {
            if let Some(az) = &req.availability_zone
                && *az != src.availability_zone
            {
                return Err(Error::Invalid(format!(
                    "Invalid input received: Volume must be in the same availability zone as the source volume ({}), not {az}.",
                    src.availability_zone
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
    // A group's volume goes to the group's zone and backend; a clone is made
    // on its source's backend, so the two must be the same.
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
                        "Invalid input received: source volume {} is on backend {}, and the volumes of group {g} on backend {}.",
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
    };
    let handle = app.engine.start::<volume_create::VolumeCreate>(params)?;
    handle
        .wait_step("commit_quota")
        .await
        .map_err(from_outcome)?;
    get_unchecked(app, id).await
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
    src: &Volume,
) -> Result<()> {
    let specs = volume_types::volume_type_extra_specs_get(conn, type_id).await?;
    let candidates = crate::capacity::gather(&app.env, conn).await?;
    let backend = src.backend.as_deref().unwrap_or_default();
    let reason = match candidates.iter().find(|c| c.name == backend) {
        None => format!("{backend}: not configured"),
        Some(c) => match crate::scheduler::capabilities_match(&specs, &c.capabilities) {
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
    let mut views = views(&mut conn, vec![v]).await?;
    views.pop().ok_or_else(|| Error::volume_not_found(id))
}

/// One volume.
pub async fn get(app: &App, ctx: &Context, id: VolumeId) -> Result<VolumeView> {
    ctx.authorize(Op::VolumeGet)?;
    let mut conn = app.store().read().await?;
    let v = visible(&mut conn, ctx, id).await?;
    let mut views = views(&mut conn, vec![v]).await?;
    views.pop().ok_or_else(|| Error::volume_not_found(id))
}

/// A page of volumes.
pub async fn list(app: &App, ctx: &Context, req: ListRequest) -> Result<ListResult> {
    ctx.authorize(Op::VolumeList)?;
    let project_id = if req.all_projects && ctx.is_admin() {
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
        volumes: views(&mut conn, vols).await?,
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
    let project = if all_projects && ctx.is_admin() {
        None
    } else {
        Some(ctx.project()?.0.clone())
    };
    let mut conn = app.store().read().await?;
    Ok(store::volume_summary(&mut conn, project.as_deref()).await?)
}

async fn views(conn: &mut Conn, vols: Vec<Volume>) -> Result<Vec<VolumeView>> {
    let flow_ids: Vec<String> = vols.iter().filter_map(|v| v.last_flow_id.clone()).collect();
    let flows = flow_store::flow_get_many(conn, &flow_ids).await?;
    let mut type_names: BTreeMap<VolumeTypeId, String> = BTreeMap::new();
    let mut out = Vec::with_capacity(vols.len());
    for v in vols {
        let type_name = match type_names.get(&v.volume_type_id) {
            Some(n) => n.clone(),
            None => {
                let n = volume_types::volume_type_get(conn, v.volume_type_id)
                    .await?
                    .map(|t| t.name)
                    .unwrap_or_else(|| v.volume_type_id.to_string());
                type_names.insert(v.volume_type_id, n.clone());
                n
            }
        };
        let progress = v
            .last_flow_id
            .as_ref()
            .and_then(|id| flows.get(id))
            .map(|f| Progress {
                operation: f.kind.clone(),
                state: f.state,
                stage: if f.state == FlowState::Done {
                    f.steps_total as u32
                } else {
                    (f.step_index + 1).min(f.steps_total) as u32
                },
                total: f.steps_total as u32,
                step: f.step_name.clone(),
                percent: f.percent.map(|p| p.clamp(0, 100) as u8),
                last_error: f.last_error.clone(),
            });
        out.push(VolumeView {
            volume: v,
            volume_type_name: type_name,
            progress,
        });
    }
    Ok(out)
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
    ctx.authorize(Op::VolumeUpdate)?;
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
pub async fn delete(app: &App, ctx: &Context, id: VolumeId, force: bool) -> Result<()> {
    ctx.authorize(if force {
        Op::VolumeForceDelete
    } else {
        Op::VolumeDelete
    })?;
    {
        // Existence and visibility first, so another project's volume is a 404
        // whatever its state.
        let mut conn = app.store().read().await?;
        visible(&mut conn, ctx, id).await?;
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
    };
    let handle = app.engine.start::<volume_delete::VolumeDelete>(params)?;
    handle.wait_step("begin_delete").await.map_err(from_outcome)
}

/// Grow a volume to `new_size` GiB. Returns once the quota is reserved.
pub async fn extend(app: &App, ctx: &Context, id: VolumeId, new_size: i64) -> Result<()> {
    ctx.authorize(Op::VolumeExtend)?;
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
    };
    let handle = app.engine.start::<volume_extend::VolumeExtend>(params)?;
    handle
        .wait_step("reserve_quota")
        .await
        .map_err(from_outcome)
}

/// What a retype may do when the volume's backend does not suit the new type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MigrationPolicy {
    /// Refuse.
    Never,
    /// Move the data to a backend that suits (not built yet: refused too).
    OnDemand,
}

/// Change a volume's type (`os-retype`). The volume must be `available` or
/// `in-use`. When the volume's backend still satisfies the new type's extra
/// specs, the retype is a change of the record alone, made in one
/// conditional update; moving data to another backend is not built yet, so a
/// retype that would need it is refused (400) whatever the policy.
///
/// The volume's project must have room for it under the new type's limits
/// (`volumes_<new>`, `gigabytes_<new>`; 413 otherwise), checked in the
/// transaction that changes the type. Usage per type is derived from the
/// volumes' types, so the volume leaves the old type's usage and enters the
/// new one's in that same commit; there is nothing to reserve or release.
pub async fn retype(
    app: &App,
    ctx: &Context,
    id: VolumeId,
    new_type: &str,
    policy: MigrationPolicy,
) -> Result<()> {
    ctx.authorize(Op::VolumeRetype)?;
    let mut tx = app.store().begin().await?;
    let v = visible(&mut tx, ctx, id).await?;
    if !matches!(v.status, VolumeStatus::Available | VolumeStatus::InUse) {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume status must be available or in-use, but current status is: {}.",
            v.status
        )));
    }
    let new = resolve_type(&mut tx, ctx, Some(new_type)).await?;
    if new.id == v.volume_type_id {
        return Err(Error::Invalid(format!(
            "Invalid input received: New volume_type same as original: {new_type}."
        )));
    }
    refuse_encrypted(&mut tx, new.id).await?;
    if let Some(g) = v.group_id {
        // A group's volumes are of the group's types.
        let group = scoria_store::groups::group_get(&mut tx, g).await?;
        if group.is_none_or(|g| !g.volume_type_ids.contains(&new.id)) {
            return Err(Error::Invalid(format!(
                "Invalid input received: volume {id} belongs to group {g}, which does not accept volume type {new_type}."
            )));
        }
    }
    let old = volume_types::volume_type_get(&mut tx, v.volume_type_id).await?;
    let old_multiattach = old
        .as_ref()
        .is_some_and(|t| crate::rules::types::is_true_spec(t.extra_specs.get("multiattach")));
    let new_multiattach = crate::rules::types::is_true_spec(new.extra_specs.get("multiattach"));
    // A flag the user asked for at create stays unless the old type implied it.
    let multiattach = new_multiattach || (v.multiattach && !old_multiattach);
    if v.status == VolumeStatus::InUse {
        if multiattach != v.multiattach {
            return Err(Error::Invalid(
                "Invalid input received: Retype requires volume to be \"available\" when changing multiattach."
                    .into(),
            ));
        }
        let old_qos = old.as_ref().and_then(|t| t.qos_specs_id);
        if old_qos != new.qos_specs_id {
            return Err(Error::InvalidState(
                "Invalid volume: Retype cannot change the QoS specs of an in-use volume.".into(),
            ));
        }
    }
    let Some(backend) = v.backend.as_deref() else {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {id} has no backend."
        )));
    };
    if let Err(why) = crate::scheduler::capabilities_match(
        &new.extra_specs,
        &crate::scheduler::backend_capabilities(backend),
    ) {
        let elsewhere = app.env.backends.keys().find(|b| {
            b.as_str() != backend
                && crate::scheduler::capabilities_match(
                    &new.extra_specs,
                    &crate::scheduler::backend_capabilities(b),
                )
                .is_ok()
        });
        return Err(match (policy, elsewhere) {
            (MigrationPolicy::OnDemand, Some(b)) => Error::Invalid(format!(
                "Retyping volume {id} to {} needs its data moved to backend {b}, which this Scoria cannot do yet.",
                new.name
            )),
            _ => Error::Invalid(format!("No valid backend was found. {backend}: {why}")),
        });
    }
    scoria_store::quotas::quota_check(
        &mut tx,
        &v.project_id,
        &[
            (QuotaKey::PerType(TypedResource::Volumes, new.id), 1),
            (QuotaKey::PerType(TypedResource::Gigabytes, new.id), v.size),
        ],
        None,
    )
    .await?;
    if !store::volume_retype(&mut tx, id, v.volume_type_id, new.id, multiattach).await? {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {id} changed while it was being retyped; try again."
        )));
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// Wait until no flow works on a volume any more (tests and tools).
pub async fn wait_settled(app: &App, id: VolumeId) -> Result<()> {
    let mut ended = app.engine.ended();
    loop {
        ended.borrow_and_update();
        let busy = {
            let mut conn = app.store().read().await?;
            flow_store::flow_list_unsettled_for(&mut conn, &id.to_string())
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

/// Set or clear the bootable flag.
pub async fn set_bootable(app: &App, ctx: &Context, id: VolumeId, bootable: bool) -> Result<()> {
    ctx.authorize(Op::VolumeSetBootable)?;
    let mut tx = app.store().begin().await?;
    visible(&mut tx, ctx, id).await?;
    store::volume_set_bootable(&mut tx, id, bootable).await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// Set or clear the read-only flag (only while `available`, as Cinder).
pub async fn set_readonly(app: &App, ctx: &Context, id: VolumeId, readonly: bool) -> Result<()> {
    ctx.authorize(Op::VolumeUpdateReadonly)?;
    let mut tx = app.store().begin().await?;
    let v = visible(&mut tx, ctx, id).await?;
    if v.status != VolumeStatus::Available {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume status must be available to update readonly flag, but current status is: {}.",
            v.status
        )));
    }
    store::volume_set_read_only(&mut tx, id, readonly).await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// Admin: set status fields by hand. Refused while a flow works on the volume:
/// the flow owns its status until it ends (and it always ends).
pub async fn reset_status(
    app: &App,
    ctx: &Context,
    id: VolumeId,
    status: Option<VolumeStatus>,
    attach_status: Option<AttachStatus>,
    migration_status: Option<Option<String>>,
) -> Result<()> {
    ctx.authorize(Op::VolumeResetStatus)?;
    let mut tx = app.store().begin().await?;
    let v = visible(&mut tx, ctx, id).await?;
    let busy = flow_store::flow_list_unsettled_for(&mut tx, &id.to_string())
        .await?
        .into_iter()
        .find(|f| f.state.is_active());
    if let Some(f) = busy {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {id} has an operation in progress ({}); its status is set when it ends.",
            f.kind
        )));
    }
    // A volume awaits a transfer exactly while a transfer of it exists: an
    // offer is made only through the transfer API, and resetting a waiting
    // volume to another status withdraws its offer.
    match status {
        Some(VolumeStatus::AwaitingTransfer) if v.status != VolumeStatus::AwaitingTransfer => {
            return Err(Error::Invalid(format!(
                "Invalid input received: volume {id} can only await a transfer by being offered for one (os-volume-transfer)."
            )));
        }
        Some(s) if s != VolumeStatus::AwaitingTransfer => {
            transfer_store::transfer_delete_for_volume(&mut tx, id).await?;
        }
        _ => {}
    }
    store::volume_reset_state(
        &mut tx,
        id,
        status,
        attach_status,
        migration_status.as_ref().map(|m| m.as_deref()),
    )
    .await?;
    // A volume being copied stays readable until its copies are made.
    if let Some(s) = status
        && !VolumeStatus::READABLE.contains(&s)
    {
        assert_not_being_cloned(&mut tx, id, &format!("reset to {s}")).await?;
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// Reserve a volume for an attachment (`available` → `attaching`), as Nova does
/// before it attaches.
pub async fn reserve(app: &App, ctx: &Context, id: VolumeId) -> Result<()> {
    ctx.authorize(Op::VolumeAttach)?;
    let mut tx = app.store().begin().await?;
    let v = visible(&mut tx, ctx, id).await?;
    let from: &[VolumeStatus] = if v.multiattach {
        &[VolumeStatus::Available, VolumeStatus::InUse]
    } else {
        &[VolumeStatus::Available]
    };
    if !store::volume_set_status(&mut tx, id, from, VolumeStatus::Attaching).await? {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume status must be available to reserve, but the status is {}.",
            v.status
        )));
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// Undo [`reserve`] (`attaching` → `available`).
pub async fn unreserve(app: &App, ctx: &Context, id: VolumeId) -> Result<()> {
    ctx.authorize(Op::VolumeAttach)?;
    let mut tx = app.store().begin().await?;
    let v = visible(&mut tx, ctx, id).await?;
    if !store::volume_set_status(
        &mut tx,
        id,
        &[VolumeStatus::Attaching],
        VolumeStatus::Available,
    )
    .await?
    {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume status must be attaching to unreserve, but the status is {}.",
            v.status
        )));
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Metadata

/// All metadata of a volume.
pub async fn metadata_get(
    app: &App,
    ctx: &Context,
    id: VolumeId,
) -> Result<BTreeMap<String, String>> {
    ctx.authorize(Op::VolumeMetadataGet)?;
    let mut conn = app.store().read().await?;
    Ok(visible(&mut conn, ctx, id).await?.metadata)
}

/// Replace (`replace`) or merge the metadata; returns the result.
pub async fn metadata_set(
    app: &App,
    ctx: &Context,
    id: VolumeId,
    items: BTreeMap<String, String>,
    replace: bool,
) -> Result<BTreeMap<String, String>> {
    ctx.authorize(Op::VolumeMetadataUpdate)?;
    validate_metadata(&items)?;
    let mut tx = app.store().begin().await?;
    visible(&mut tx, ctx, id).await?;
    if replace {
        store::volume_metadata_replace(&mut tx, id, &items).await?;
    } else {
        store::volume_metadata_merge(&mut tx, id, &items).await?;
    }
    let out = store::volume_metadata_get(&mut tx, id).await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(out)
}

/// Delete one metadata key (404 when absent).
pub async fn metadata_delete(app: &App, ctx: &Context, id: VolumeId, key: &str) -> Result<()> {
    ctx.authorize(Op::VolumeMetadataDelete)?;
    let mut tx = app.store().begin().await?;
    visible(&mut tx, ctx, id).await?;
    if !store::volume_metadata_delete(&mut tx, id, key).await? {
        return Err(Error::NotFound(format!(
            "Volume {id} has no metadata with key {key}."
        )));
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// Was the flow that answered a create successful in the end? (For tests.)
pub fn outcome_ok(o: &Outcome) -> bool {
    matches!(o, Outcome::Done)
}
