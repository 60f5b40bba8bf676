//! Backups: create (full or incremental), read, list, delete, restore.
//!
//! Create, delete and restore are flows (`flows::backup_create`,
//! `flows::backup_delete`, `flows::backup_restore`); the data lives in the
//! backup repository (`scoria_storage::backup_repo`, `Env::backup_repo`). A
//! backup counts against its project's `backups` and `backup_gigabytes` (its
//! volume's size) from the request that makes it until it is deleted.
//!
//! An `in-use` volume is backed up with `force` through its export's daemon
//! (a point-in-time fleecing export, no new layer), a snapshot of the volume
//! with `snapshot_id` (its frozen image); see `flows::backup_create`. A
//! restore onto a new volume, and a volume created from a backup (3.47), is
//! one volume create flow (`flows::volume_create`'s `from_backup.rs`).
//! `admin.rs`: update and metadata, an admin's reset-status, force-delete
//! and verification, and Cinder's backup records.

pub mod admin;

use scoria_model::backup::BackupStatus;
use scoria_model::flow::Progress;
use scoria_model::volume::{MAX_DESCRIPTION_LEN, MAX_NAME_LEN, VolumeStatus};
use scoria_model::{BackupId, VolumeId};
pub use scoria_storage::backup_repo::{DEFAULT_CHUNK_SIZE, S3Client, S3Config, valid_chunk_size};
pub use scoria_store::backups::{Backup, SortKey};
use scoria_store::{Conn, backups as store, flows as flow_store};

use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result, from_outcome};
use crate::flows::{backup_create, backup_delete, backup_restore};
use crate::rules::validate::validate_text;

pub use crate::rules::backups::not_found;
use crate::rules::backups::visible;

/// A backup id from a URL: anything not a UUID names no backup (404).
pub fn parse_id(s: &str) -> Result<BackupId> {
    s.parse::<BackupId>().map_err(|_| not_found(s))
}

/// A backup as the API shows it.
#[derive(Clone, Debug)]
pub struct BackupView {
    pub backup: Backup,
    pub has_dependent_backups: bool,
    pub progress: Option<Progress>,
}

/// A create request, as parsed from the API.
#[derive(Clone, Debug, Default)]
pub struct CreateRequest {
    pub volume_id: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub container: Option<String>,
    pub incremental: bool,
    pub force: bool,
    pub snapshot_id: Option<String>,
    /// 3.43.
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// List filters and paging.
#[derive(Clone, Debug, Default)]
pub struct ListRequest {
    pub all_projects: bool,
    pub project_id: Option<String>,
    pub volume_id: Option<VolumeId>,
    pub status: Option<String>,
    pub name: Option<String>,
    pub sort: Vec<(store::SortKey, scoria_store::snapshots::SortDir)>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    pub marker: Option<BackupId>,
    pub with_count: bool,
}

/// A page of backups and, when asked (3.45), how many match the filters.
#[derive(Clone, Debug)]
pub struct ListResult {
    pub backups: Vec<BackupView>,
    pub count: Option<i64>,
}

/// What a restore was started on.
#[derive(Clone, Debug)]
pub struct RestoreStarted {
    pub backup_id: BackupId,
    pub volume_id: VolumeId,
    pub volume_name: Option<String>,
}

async fn views(conn: &mut Conn, all: Vec<Backup>) -> Result<Vec<BackupView>> {
    let ids: Vec<BackupId> = all.iter().map(|b| b.id).collect();
    let with_dependents = store::backup_with_dependents(conn, &ids).await?;
    let flow_ids: Vec<String> = all.iter().filter_map(|b| b.last_flow_id.clone()).collect();
    let flows = flow_store::flow_get_many(conn, &flow_ids).await?;
    Ok(all
        .into_iter()
        .map(|b| BackupView {
            has_dependent_backups: with_dependents.contains(&b.id),
            progress: b
                .last_flow_id
                .as_ref()
                .and_then(|id| flows.get(id))
                .map(crate::rules::progress::of_flow),
            backup: b,
        })
        .collect())
}

async fn get_unchecked(app: &App, id: BackupId) -> Result<BackupView> {
    let mut conn = app.store().read().await?;
    let b = store::backup_get(&mut conn, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    views(&mut conn, vec![b])
        .await?
        .pop()
        .ok_or_else(|| not_found(id))
}

/// Start a backup of a volume. Returns once its quota is committed
/// (`creating`).
pub async fn create(app: &App, ctx: &Context, req: CreateRequest) -> Result<BackupView> {
    if let Some(v) = req
        .volume_id
        .as_deref()
        .and_then(|v| v.parse::<VolumeId>().ok())
    {
        crate::rules::volumes::authorize_on(app.store(), ctx, v, Op::BackupCreate).await?;
    }
    ctx.authorize(Op::BackupCreate)?;
    let project = ctx.project()?.clone();
    for (field, value, max) in [
        ("name", &req.name, MAX_NAME_LEN),
        ("description", &req.description, MAX_DESCRIPTION_LEN),
        ("container", &req.container, MAX_NAME_LEN),
    ] {
        if let Some(v) = value {
            validate_text(field, v, max)?;
        }
    }
    let Some(volume_id) = req.volume_id.as_deref() else {
        return Err(Error::Invalid(
            "Invalid input for field/attribute volume_id. Value: None. None is not of type 'string'.".into(),
        ));
    };
    let volume_id: VolumeId = volume_id
        .parse()
        .map_err(|_| Error::volume_not_found(volume_id))?;
    let snapshot_id = match req.snapshot_id.as_deref() {
        Some(s) => Some(
            s.parse::<scoria_model::SnapshotId>()
                .map_err(|_| Error::NotFound(format!("Snapshot {s} could not be found.")))?,
        ),
        None => None,
    };
    {
        let mut conn = app.store().read().await?;
        let v = crate::rules::volumes::visible(&mut conn, ctx, volume_id).await?;
        if v.project_id != project.0 {
            return Err(Error::Invalid(format!(
                "Invalid input received: volume {volume_id} belongs to another project; back it up with a token of that project."
            )));
        }
        if v.status == VolumeStatus::InUse && !req.force && snapshot_id.is_none() {
            return Err(Error::Invalid(format!(
                "Invalid volume: Backing up an in-use volume must use the force flag (volume {volume_id})."
            )));
        }
        if !matches!(v.status, VolumeStatus::Available | VolumeStatus::InUse) {
            return Err(Error::InvalidState(format!(
                "Invalid volume: The volume {volume_id} must be available or in-use to be backed up, but its status is {}.",
                v.status
            )));
        }
    }
    // The flow's first transaction checks the rest (the snapshot's status
    // and volume, the attachment whose daemon writes an in-use volume) and
    // its refusals are this request's answer.
    let id = BackupId::new();
    let params = backup_create::Params {
        backup_id: id,
        project_id: project.0.clone(),
        user_id: ctx.user_id.0.clone(),
        volume_id,
        name: req.name,
        description: req.description,
        container: req.container,
        incremental: req.incremental,
        metadata: req.metadata,
        force: req.force,
        snapshot_id,
    };
    let handle = app.engine.start::<backup_create::BackupCreate>(params)?;
    handle
        .wait_step("commit_quota")
        .await
        .map_err(from_outcome)?;
    get_unchecked(app, id).await
}

/// One backup.
pub async fn get(app: &App, ctx: &Context, id: BackupId) -> Result<BackupView> {
    let mut conn = app.store().read().await?;
    let b = visible(&mut conn, ctx, id).await?;
    ctx.authorize(Op::BackupGet)?;
    views(&mut conn, vec![b])
        .await?
        .pop()
        .ok_or_else(|| not_found(id))
}

/// A page of backups (newest first unless sorted otherwise).
pub async fn list(app: &App, ctx: &Context, req: ListRequest) -> Result<ListResult> {
    ctx.authorize(Op::BackupList)?;
    let project = if req.all_projects && ctx.authorize(Op::BackupListAllProjects).is_ok() {
        req.project_id.clone()
    } else {
        Some(ctx.project()?.0.clone())
    };
    if let Some(s) = &req.status
        && s.parse::<BackupStatus>().is_err()
    {
        return Ok(ListResult {
            backups: Vec::new(),
            count: req.with_count.then_some(0),
        });
    }
    let q = store::BackupQuery {
        project_id: project,
        volume_id: req.volume_id,
        status: req.status,
        name: req.name,
        sort: req.sort,
        limit: Some(req.limit.unwrap_or(1000).clamp(0, 1000)),
        offset: req.offset.map(|o| o.max(0)),
        marker: req.marker,
    };
    let mut conn = app.store().read().await?;
    let all = match store::backup_list(&mut conn, &q).await {
        // Cinder's `MarkerNotFound` is a 404, as for the other lists.
        Err(scoria_store::StoreError::MarkerNotFound(m)) => {
            return Err(Error::NotFound(format!("Marker {m} could not be found.")));
        }
        other => other?,
    };
    let count = if req.with_count {
        Some(store::backup_count(&mut conn, &q).await?)
    } else {
        None
    };
    Ok(ListResult {
        backups: views(&mut conn, all).await?,
        count,
    })
}

/// Delete a backup (refused while an incremental depends on it). Returns
/// once it is `deleting`.
pub async fn delete(app: &App, ctx: &Context, id: BackupId) -> Result<()> {
    {
        let mut conn = app.store().read().await?;
        visible(&mut conn, ctx, id).await?;
    }
    ctx.authorize(Op::BackupDelete)?;
    let params = backup_delete::Params {
        backup_id: id,
        project_id: if ctx.is_admin() {
            None
        } else {
            Some(ctx.project()?.0.clone())
        },
        force: false,
    };
    let handle = app.engine.start::<backup_delete::BackupDelete>(params)?;
    handle
        .wait_step("begin_delete")
        .await
        .map_err(from_outcome)?;
    Ok(())
}

/// Restore a backup onto `volume_id` (an `available` volume at least as
/// large), or onto a new volume of the backup's size made for it (named
/// `name`, else Cinder's `restore_backup_<id>`). Returns once the restore
/// has begun (backup `restoring`, volume `restoring-backup`).
pub async fn restore(
    app: &App,
    ctx: &Context,
    id: BackupId,
    volume_id: Option<String>,
    name: Option<String>,
) -> Result<RestoreStarted> {
    let b = {
        let mut conn = app.store().read().await?;
        visible(&mut conn, ctx, id).await?
    };
    ctx.authorize(Op::BackupRestore)?;
    if b.status != BackupStatus::Available {
        return Err(Error::InvalidState(format!(
            "Invalid backup: Backup status must be available, but is {}.",
            b.status
        )));
    }
    if let Some(n) = &name {
        validate_text("name", n, MAX_NAME_LEN)?;
    }
    let (volume_id, volume_name) = match volume_id {
        Some(v) => {
            let v = crate::rules::volumes::parse_id(&v)?;
            let mut conn = app.store().read().await?;
            let vol = crate::rules::volumes::visible(&mut conn, ctx, v).await?;
            if vol.project_id != b.project_id {
                return Err(Error::volume_not_found(v));
            }
            (v, vol.name)
        }
        None => {
            // One create flow makes the volume and writes the backup into
            // it (`flows::volume_create`'s `from_backup.rs`); a volume that
            // cannot be made is removed again.
            if ctx.project()?.0 != b.project_id {
                return Err(Error::Invalid(format!(
                    "Invalid input received: backup {id} belongs to another project: restore it onto a volume of that project (volume_id)."
                )));
            }
            let name = name.unwrap_or_else(|| format!("restore_backup_{id}"));
            let made = crate::volumes::create(
                app,
                ctx,
                crate::volumes::CreateRequest {
                    name: Some(name.clone()),
                    description: Some(format!("auto-created to restore backup {id}")),
                    size: Some(b.size),
                    availability_zone: b.availability_zone.clone(),
                    backup_id: Some(id),
                    remove_on_failure: true,
                    ..Default::default()
                },
            )
            .await?;
            return Ok(RestoreStarted {
                backup_id: id,
                volume_id: made.volume.id,
                volume_name: Some(name),
            });
        }
    };
    let params = backup_restore::Params {
        backup_id: id,
        project_id: if ctx.is_admin() {
            None
        } else {
            Some(ctx.project()?.0.clone())
        },
        volume_id,
    };
    let handle = app.engine.start::<backup_restore::BackupRestore>(params)?;
    handle.wait_step("begin").await.map_err(from_outcome)?;
    Ok(RestoreStarted {
        backup_id: id,
        volume_id,
        volume_name,
    })
}
