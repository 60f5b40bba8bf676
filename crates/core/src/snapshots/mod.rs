//! Snapshots: take, read, list, change, delete; the admin's reset and forced
//! delete; Nova's status updates.
//!
//! Taking and deleting a snapshot are flows (`flows::snapshot_create`,
//! `flows::snapshot_delete`); the rest is one transaction each. A snapshot
//! counts against its project's `snapshots` and `gigabytes` quotas (Cinder's
//! default; per volume type too), from the request that takes it until it is
//! deleted — also while volumes made from it keep its data alive: the data
//! belongs to them then, not to the snapshot.

use std::collections::BTreeMap;

use scoria_model::flow::Progress;
use scoria_model::snapshot::SnapshotStatus;
use scoria_model::volume::{MAX_DESCRIPTION_LEN, MAX_NAME_LEN, VolumeStatus};
use scoria_model::{SnapshotId, VolumeId};
pub use scoria_store::snapshots::{Snapshot, SnapshotQuery, SortDir, SortKey};
use scoria_store::{Conn, flows as flow_store, snapshots as store};

use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result, from_outcome};
use crate::flows::{snapshot_create, snapshot_delete};
pub use crate::rules::snapshots::parse_id;
pub use manage::{ManageRequest, ManageableSnapshot, manage, manageable, unmanage};

mod manage;
use crate::rules::snapshots::visible;
use crate::rules::validate::{validate_metadata, validate_text};

/// A snapshot as the API shows it, with the progress of the flow that last
/// worked on it.
#[derive(Clone, Debug)]
pub struct SnapshotView {
    pub snapshot: Snapshot,
    pub progress: Option<Progress>,
    /// The frozen image's health and chain depth, once taken.
    pub image: Option<scoria_store::images::ImageStatus>,
}

impl SnapshotView {
    /// Cinder's `os-extended-snapshot-attributes:progress`: how far the
    /// snapshot was taken, `100%` once it is; before, what Nova last reported
    /// (`os-update_snapshot_status`), else the percent of the flow.
    pub fn percent(&self) -> String {
        let percent = match self.snapshot.status {
            SnapshotStatus::Available => 100,
            _ => self
                .snapshot
                .progress
                .or_else(|| {
                    self.progress
                        .as_ref()
                        .and_then(|p| p.percent)
                        .map(i64::from)
                })
                .unwrap_or(0),
        };
        format!("{percent}%")
    }
}

/// A create request, as parsed from the API.
#[derive(Clone, Debug, Default)]
pub struct CreateRequest {
    pub volume_id: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// Cinder's `force`: snapshot an `in-use` volume.
    pub force: bool,
    /// From microversion 3.66 an `in-use` volume needs no `force`.
    pub in_use_without_force: bool,
}

/// List filters and paging, as parsed from the API.
#[derive(Clone, Debug, Default)]
pub struct ListRequest {
    /// Admins only: every project (or `project_id` when given).
    pub all_projects: bool,
    pub project_id: Option<String>,
    pub name: Option<String>,
    pub status: Option<String>,
    pub volume_id: Option<String>,
    pub metadata: Vec<(String, String)>,
    pub sort: Vec<(SortKey, SortDir)>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    pub marker: Option<SnapshotId>,
    pub with_count: bool,
}

/// A page of snapshots and, when asked, how many match the filters.
#[derive(Clone, Debug)]
pub struct ListResult {
    pub snapshots: Vec<SnapshotView>,
    pub count: Option<i64>,
}

/// Take a snapshot of a volume. Returns once its quota is committed
/// (`creating`); it is `available` a few milliseconds later.
pub async fn create(app: &App, ctx: &Context, req: CreateRequest) -> Result<SnapshotView> {
    // The volume is looked up before the policy is checked (Cinder's order:
    // a volume the caller cannot see is a 404 whoever asks).
    if let Some(v) = req
        .volume_id
        .as_deref()
        .and_then(|v| v.parse::<VolumeId>().ok())
    {
        crate::rules::volumes::authorize_on(app.store(), ctx, v, Op::SnapshotCreate).await?;
    }
    ctx.authorize(Op::SnapshotCreate)?;
    let project = ctx.project()?.clone();
    crate::rules::validate::validate_described(
        req.name.as_deref(),
        req.description.as_deref(),
        &req.metadata,
    )?;
    let Some(volume_id) = req.volume_id.as_deref() else {
        return Err(Error::Invalid(
            "Invalid input for field/attribute volume_id. Value: None. None is not of type 'string'.".into(),
        ));
    };
    let volume_id: VolumeId = volume_id
        .parse()
        .map_err(|_| Error::volume_not_found(volume_id))?;
    {
        let mut conn = app.store().read().await?;
        let v = crate::rules::volumes::visible(&mut conn, ctx, volume_id).await?;
        if v.project_id != project.0 {
            // An admin snapshotting another project's volume: the snapshot is
            // the volume's project's, as Cinder makes it.
            return Err(Error::Invalid(format!(
                "Invalid input received: volume {volume_id} belongs to another project; snapshot it with a token of that project."
            )));
        }
        if v.status == VolumeStatus::InUse && !(req.force || req.in_use_without_force) {
            return Err(Error::InvalidState(format!(
                "Invalid volume: Volume {volume_id} status must be available, but current status is: in-use. Use force to snapshot an in-use volume."
            )));
        }
    }
    let id = SnapshotId::new();
    let params = snapshot_create::Params {
        snapshot_id: id,
        project_id: project.0.clone(),
        user_id: ctx.user_id.0.clone(),
        volume_id,
        name: req.name,
        description: req.description,
        metadata: req.metadata,
        allow_in_use: req.force || req.in_use_without_force,
        request_id: Some(ctx.request_id.clone()),
    };
    let handle = app
        .engine
        .start::<snapshot_create::SnapshotCreate>(params)?;
    handle
        .wait_step("commit_quota")
        .await
        .map_err(from_outcome)?;
    get_unchecked(app, id).await
}

async fn get_unchecked(app: &App, id: SnapshotId) -> Result<SnapshotView> {
    let mut conn = app.store().read().await?;
    let s = store::snapshot_get(&mut conn, id)
        .await?
        .ok_or_else(|| crate::rules::snapshots::not_found(id))?;
    let mut views = views(&mut conn, vec![s]).await?;
    views
        .pop()
        .ok_or_else(|| crate::rules::snapshots::not_found(id))
}

/// One snapshot.
pub async fn get(app: &App, ctx: &Context, id: SnapshotId) -> Result<SnapshotView> {
    crate::rules::snapshots::authorize_on(app.store(), ctx, id, Op::SnapshotGet).await?;
    let mut conn = app.store().read().await?;
    let s = visible(&mut conn, ctx, id).await?;
    let mut views = views(&mut conn, vec![s]).await?;
    views
        .pop()
        .ok_or_else(|| crate::rules::snapshots::not_found(id))
}

/// A page of snapshots.
pub async fn list(app: &App, ctx: &Context, req: ListRequest) -> Result<ListResult> {
    ctx.authorize(Op::SnapshotList)?;
    let project_id = if req.all_projects && ctx.authorize(Op::SnapshotListAllProjects).is_ok() {
        req.project_id.clone()
    } else {
        Some(ctx.project()?.0.clone())
    };
    let q = SnapshotQuery {
        project_id,
        name: req.name,
        status: req.status,
        volume_id: req.volume_id,
        metadata: req.metadata,
        sort: req.sort,
        limit: req.limit,
        offset: req.offset,
        marker: req.marker,
    };
    let mut conn = app.store().read().await?;
    let snaps = store::snapshot_list(&mut conn, &q)
        .await
        .map_err(|e| match e {
            // Cinder answers a snapshot list after an unknown marker with a
            // 404 (its `MarkerNotFound` is a `NotFound`), and clients rely on it.
            scoria_store::StoreError::MarkerNotFound(m) => {
                Error::NotFound(format!("Marker {m} could not be found."))
            }
            e => e.into(),
        })?;
    let count = if req.with_count {
        Some(store::snapshot_count(&mut conn, &q).await?)
    } else {
        None
    };
    Ok(ListResult {
        snapshots: views(&mut conn, snaps).await?,
        count,
    })
}

async fn views(conn: &mut Conn, snaps: Vec<Snapshot>) -> Result<Vec<SnapshotView>> {
    let flow_ids: Vec<String> = snaps
        .iter()
        .filter_map(|s| s.last_flow_id.clone())
        .collect();
    let flows = flow_store::flow_get_many(conn, &flow_ids).await?;
    let images: Vec<_> = snaps.iter().filter_map(|s| s.image_id).collect();
    let statuses = scoria_store::images::image_status_many(conn, &images).await?;
    Ok(snaps
        .into_iter()
        .map(|s| {
            let progress = s
                .last_flow_id
                .as_ref()
                .and_then(|id| flows.get(id))
                .map(crate::rules::progress::of_flow);
            let image = s.image_id.and_then(|i| statuses.get(&i).cloned());
            SnapshotView {
                snapshot: s,
                progress,
                image,
            }
        })
        .collect())
}

/// Change name and/or description (`Some(None)` clears).
pub async fn update(
    app: &App,
    ctx: &Context,
    id: SnapshotId,
    name: Option<Option<String>>,
    description: Option<Option<String>>,
) -> Result<SnapshotView> {
    crate::rules::snapshots::authorize_on(app.store(), ctx, id, Op::SnapshotUpdate).await?;
    if let Some(Some(n)) = &name {
        validate_text("name", n, MAX_NAME_LEN)?;
    }
    if let Some(Some(d)) = &description {
        validate_text("description", d, MAX_DESCRIPTION_LEN)?;
    }
    let mut tx = app.store().begin().await?;
    visible(&mut tx, ctx, id).await?;
    store::snapshot_update_text(
        &mut tx,
        id,
        name.as_ref().map(|n| n.as_deref()),
        description.as_ref().map(|d| d.as_deref()),
    )
    .await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    get_unchecked(app, id).await
}

/// Delete a snapshot (`force`: an admin's, from any status). Returns once it
/// is `deleting`; the rest runs on (and is quick: the data is the reaper's).
pub async fn delete(app: &App, ctx: &Context, id: SnapshotId, force: bool) -> Result<()> {
    let op = if force {
        Op::SnapshotForceDelete
    } else {
        Op::SnapshotDelete
    };
    start_delete(app, ctx, id, op, force, false).await
}

/// Start the delete flow (an unmanage is one) once `op` is allowed on the
/// snapshot; returns once it is `deleting`.
async fn start_delete(
    app: &App,
    ctx: &Context,
    id: SnapshotId,
    op: Op,
    force: bool,
    unmanage: bool,
) -> Result<()> {
    crate::rules::snapshots::authorize_on(app.store(), ctx, id, op).await?;
    let params = snapshot_delete::Params {
        snapshot_id: id,
        project_id: if ctx.is_admin() {
            None
        } else {
            Some(ctx.project()?.0.clone())
        },
        force,
        request_id: Some(ctx.request_id.clone()),
        unmanage,
    };
    let handle = app
        .engine
        .start::<snapshot_delete::SnapshotDelete>(params)?;
    handle.wait_step("begin_delete").await.map_err(from_outcome)
}

/// Admin: set a snapshot's status by hand (Cinder's list of statuses).
/// Refused while a flow works on it.
pub async fn reset_status(
    app: &App,
    ctx: &Context,
    id: SnapshotId,
    status: SnapshotStatus,
) -> Result<()> {
    crate::rules::snapshots::authorize_on(app.store(), ctx, id, Op::SnapshotResetStatus).await?;
    if !SnapshotStatus::RESETTABLE.contains(&status) {
        return Err(Error::Invalid(format!(
            "Invalid input received: Snapshot status {status} is not one of {}.",
            SnapshotStatus::RESETTABLE
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut tx = app.store().begin().await?;
    let s = visible(&mut tx, ctx, id).await?;
    refuse_if_busy(&mut tx, &s).await?;
    store::snapshot_set_status(&mut tx, id, &[], status, None).await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

async fn refuse_if_busy(conn: &mut Conn, s: &Snapshot) -> Result<()> {
    if let Some(f) = flow_store::flow_list_unsettled_for(conn, &s.id.to_string())
        .await?
        .into_iter()
        .find(|f| f.state.is_active())
    {
        return Err(Error::InvalidState(format!(
            "Invalid snapshot: Snapshot {} has an operation in progress ({}); its status is set when it ends.",
            s.id, f.kind
        )));
    }
    Ok(())
}

/// `os-update_snapshot_status`, which Nova uses while it takes a snapshot of
/// an attached volume itself: Cinder's transitions only (`creating` →
/// `available` or `error`, `deleting` → `error_deleting`), with the progress
/// Nova reports (a percent), if any. Scoria takes its own snapshots, so a
/// snapshot one of its flows is working on is refused.
pub async fn update_status(
    app: &App,
    ctx: &Context,
    id: SnapshotId,
    status: SnapshotStatus,
    progress: Option<u8>,
) -> Result<()> {
    crate::rules::snapshots::authorize_on(app.store(), ctx, id, Op::SnapshotUpdateStatus).await?;
    let mut tx = app.store().begin().await?;
    let s = visible(&mut tx, ctx, id).await?;
    let allowed = match s.status {
        SnapshotStatus::Creating => {
            matches!(status, SnapshotStatus::Available | SnapshotStatus::Error)
        }
        SnapshotStatus::Deleting => status == SnapshotStatus::ErrorDeleting,
        _ => false,
    };
    if !allowed {
        return Err(Error::InvalidState(format!(
            "Invalid snapshot: Provided snapshot status {status} not allowed for snapshot with status {}.",
            s.status
        )));
    }
    refuse_if_busy(&mut tx, &s).await?;
    if status == SnapshotStatus::Available && s.image_id.is_none() {
        return Err(Error::InvalidState(format!(
            "Invalid snapshot: Snapshot {id} has no data: Scoria takes its own snapshots, and this one was never taken."
        )));
    }
    store::snapshot_set_status(&mut tx, id, &[s.status], status, None).await?;
    if let Some(p) = progress {
        store::snapshot_set_progress(&mut tx, id, i64::from(p.min(100))).await?;
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// All metadata of a snapshot.
pub async fn metadata_get(
    app: &App,
    ctx: &Context,
    id: SnapshotId,
) -> Result<BTreeMap<String, String>> {
    crate::rules::snapshots::authorize_on(app.store(), ctx, id, Op::SnapshotMetadataGet).await?;
    let mut conn = app.store().read().await?;
    Ok(visible(&mut conn, ctx, id).await?.metadata)
}

/// Replace (`replace`) or merge the metadata; returns the result.
pub async fn metadata_set(
    app: &App,
    ctx: &Context,
    id: SnapshotId,
    items: BTreeMap<String, String>,
    replace: bool,
) -> Result<BTreeMap<String, String>> {
    crate::rules::snapshots::authorize_on(app.store(), ctx, id, Op::SnapshotMetadataUpdate).await?;
    validate_metadata(&items)?;
    let mut tx = app.store().begin().await?;
    visible(&mut tx, ctx, id).await?;
    if replace {
        store::snapshot_metadata_replace(&mut tx, id, &items).await?;
    } else {
        store::snapshot_metadata_merge(&mut tx, id, &items).await?;
    }
    let out = store::snapshot_metadata_get(&mut tx, id).await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(out)
}

/// Delete one metadata key (404 when absent).
pub async fn metadata_delete(app: &App, ctx: &Context, id: SnapshotId, key: &str) -> Result<()> {
    crate::rules::snapshots::authorize_on(app.store(), ctx, id, Op::SnapshotMetadataDelete).await?;
    let mut tx = app.store().begin().await?;
    visible(&mut tx, ctx, id).await?;
    if !store::snapshot_metadata_delete(&mut tx, id, key).await? {
        return Err(Error::NotFound(format!(
            "Metadata item was not found: snapshot {id} has no metadata with key {key}."
        )));
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// Wait until no flow works on a snapshot any more (tests and tools).
pub async fn wait_settled(app: &App, id: SnapshotId) -> Result<()> {
    crate::volumes::wait_settled_resource(app, &id.to_string()).await
}
