//! Back up a volume into the backup repository: a full backup, or an
//! incremental on top of the volume's `available` backup with the newest
//! data. Three sources (`source.rs`):
//!
//! - an `available` volume: its image file, read as it is;
//! - an `in-use` volume (`force`): the point-in-time view its export's
//!   daemon gives (image fleecing, `scoria_storage::export::file` `fleece`),
//!   read over NBD while the guest keeps writing;
//! - a snapshot (`snapshot_id`, of this volume, `available`): its frozen
//!   image, which never changes and never gets a bitmap.
//!
//! ```text
//!  reserve_quota ─► create_entry ─────────► commit_quota ─► copy ─────────────────► finish
//!   +1 backup,       the volume `backing-     (the API       the engine reads the    the backup
//!   +size backup     up`, the backup           answers)      changed chunks into     `available`, the
//!   GiB              `creating` (parent:                     the repository, the     volume back to
//!   undo: release    the latest available                    manifest durable, the   its status
//!                    backup when incremental)                bitmaps but the
//!                                                            latest's retired
//!                    undo: volume back; the                  undo: drop the
//!                    entry gone, or `error`                  manifest and the new
//!                    once quota committed                    bitmap (chunks: collect)
//! ```
//!
//! The volume is `backing-up` from `create_entry` to `finish` (and back to
//! `available` or `in-use` after, Cinder's `previous_status`): every
//! operation that would change it (extend, snapshot, revert, detach, …)
//! refuses it meanwhile. An available one is written by nothing, so the
//! backup reads one moment of it without a snapshot; an in-use one is read
//! through the fleecing export of the attachment that writes it, which
//! `create_entry` chose (one writable attachment; several writers, or only
//! read-only ones, are refused with 400). For a snapshot, the snapshot is
//! `backing-up` instead (so it cannot be deleted) and the volume keeps its
//! status. What is read, and why only the changed chunks of an incremental,
//! is `scoria_storage::backup_repo::engine`'s doc. A backup is `available`
//! only after its manifest is durable (`copy` is done).
//!
//! `copy` is one external step for every source: a re-run after a crash
//! finds the manifest (then only takes the fleece down) or the fleece (and
//! reads it again); its undo takes the fleece down and removes the new
//! bitmap, in the daemon when one serves the volume. The steps are the same
//! as before in-use and snapshot backups existed, and the new fields of the
//! parameters and of `create_entry`'s output have defaults, so flows
//! persisted by an older binary run unchanged (VERSION stays).

use scoria_flows::{Cx, Flow, FlowMeta, Step, StepError};
use scoria_model::attachment::{AttachMode, AttachmentStatus};
use scoria_model::backup::BackupStatus;
use scoria_model::snapshot::SnapshotStatus;
use scoria_model::volume::VolumeStatus;
use scoria_model::{AttachmentId, BackupId, SnapshotId, VolumeId};
use scoria_storage::backup_repo::engine::BackupJob;
use scoria_store::{Conn, attachments, backups, quotas, snapshots, volumes};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::Error;
use crate::{Env, flows::storage_error};

mod source;

pub struct BackupCreate;

/// Everything needed to make the backup, validated by the caller.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub backup_id: BackupId,
    pub project_id: String,
    pub user_id: String,
    pub volume_id: VolumeId,
    pub name: Option<String>,
    pub description: Option<String>,
    pub container: Option<String>,
    pub incremental: bool,
    /// Cinder's backup metadata (3.43).
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, String>,
    /// Back up an `in-use` volume (through its export's daemon).
    #[serde(default)]
    pub force: bool,
    /// Back up this snapshot of the volume instead of the volume.
    #[serde(default)]
    pub snapshot_id: Option<SnapshotId>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Reserved {
    reservation: String,
    size: i64,
}

/// The volume's image and what the backup builds on.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Plan {
    backend: String,
    image_name: String,
    parent: Option<BackupId>,
    /// The volume's latest available backup: its bitmap stays.
    #[serde(default)]
    latest: Option<BackupId>,
    prior_status: VolumeStatus,
    /// An in-use backup: the attachment whose daemon writes the volume.
    #[serde(default)]
    attachment: Option<AttachmentId>,
    /// A backup of a snapshot (`backend`/`image_name` are its image).
    #[serde(default)]
    snapshot: Option<SnapshotId>,
}

/// What the copy recorded.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Copied {
    object_count: i64,
    tracking: String,
    fallback_reason: Option<String>,
    bytes_read: i64,
    stored_bytes: i64,
}

impl Flow for BackupCreate {
    const KIND: &'static str = "backup_create";
    type Params = Params;
    type Env = Env;

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::db("reserve_quota", |cx, c| Box::pin(reserve_quota(cx, c)))
                .undo_db(|cx, c| Box::pin(release_quota(cx, c))),
            Step::db("create_entry", |cx, c| Box::pin(create_entry(cx, c)))
                .undo_db(|cx, c| Box::pin(remove_entry(cx, c))),
            Step::db("commit_quota", |cx, c| Box::pin(commit_quota(cx, c))),
            Step::external("copy", |cx| Box::pin(copy(cx)))
                .undo_external(|cx| Box::pin(uncopy(cx))),
            Step::db("finish", |cx, c| Box::pin(finish(cx, c))),
        ]
    }

    fn meta(p: &Params) -> FlowMeta {
        FlowMeta {
            resource_type: Some("backup"),
            resource_id: Some(p.backup_id.to_string()),
            project_id: Some(p.project_id.clone()),
        }
    }
}

async fn volume(cx: &Cx<BackupCreate>, c: &mut Conn) -> Result<volumes::Volume, StepError> {
    let p = &cx.params;
    volumes::volume_get(c, p.volume_id)
        .await?
        .filter(|v| v.project_id == p.project_id)
        .ok_or_else(|| Error::volume_not_found(p.volume_id).into())
}

async fn reserve_quota(cx: &Cx<BackupCreate>, c: &mut Conn) -> Result<Value, StepError> {
    let v = volume(cx, c).await?;
    let deltas = scoria_model::quota::backup_deltas(v.size);
    let ids = quotas::quota_reserve(c, cx.flow_id, &cx.params.project_id, &deltas, None)
        .await
        .map_err(Error::from)?;
    let reservation = ids
        .first()
        .ok_or_else(|| StepError::msg("quota_reserve recorded no reservation"))?;
    Ok(json!(Reserved {
        reservation: reservation.to_string(),
        size: v.size,
    }))
}

async fn release_quota(cx: &Cx<BackupCreate>, c: &mut Conn) -> Result<(), StepError> {
    quotas::reservation_release_flow(c, cx.flow_id).await?;
    Ok(())
}

async fn create_entry(cx: &Cx<BackupCreate>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    let reserved: Reserved = cx.output("reserve_quota")?;
    let v = volume(cx, c).await?;
    if v.size != reserved.size {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {} changed size while its backup was being requested.",
            v.id
        ))
        .into());
    }
    let latest = backups::backup_latest_available(c, v.id).await?;
    let parent = match (p.incremental, &latest) {
        (true, None) => {
            return Err(Error::Invalid(format!(
                "Invalid backup: No backups available to do an incremental backup of volume {}.",
                v.id
            ))
            .into());
        }
        (true, Some(b)) => Some(b.id),
        (false, _) => None,
    };
    let latest = latest.map(|b| b.id);
    let flow = cx.flow_id.to_string();
    let (image, attachment, data_timestamp) = match p.snapshot_id {
        Some(sid) => {
            let s = snapshot_of(c, &v, sid).await?;
            let image = match s.image_id {
                Some(i) => scoria_store::images::image_get(c, i).await?,
                None => None,
            }
            .ok_or_else(|| {
                Error::InvalidState(format!(
                    "Invalid snapshot: Snapshot {sid} has no data to back up."
                ))
            })?;
            if !snapshots::snapshot_set_status(
                c,
                sid,
                &[SnapshotStatus::Available],
                SnapshotStatus::BackingUp,
                Some(&flow),
            )
            .await?
            {
                return Err(Error::InvalidState(format!(
                    "Invalid snapshot: snapshot {sid} changed status."
                ))
                .into());
            }
            (image, None, Some(s.created_at))
        }
        None => {
            let attachment = match v.status {
                VolumeStatus::Available => {
                    crate::rules::attachments::assert_not_attached(c, v.id, "backed up").await?;
                    None
                }
                VolumeStatus::InUse if p.force => Some(writer_of(c, v.id).await?),
                VolumeStatus::InUse => {
                    return Err(Error::Invalid(format!(
                        "Invalid volume: Backing up an in-use volume must use the force flag (volume {}).",
                        v.id
                    ))
                    .into());
                }
                other => {
                    return Err(Error::InvalidState(format!(
                        "Invalid volume: The volume {} must be available or in-use to be backed up, but its status is {other}.",
                        v.id
                    ))
                    .into());
                }
            };
            // Attachments were settled above (none, or the writer read live).
            crate::rules::volumes::assert_not_held_by_copies(c, v.id, "backed up").await?;
            let image = crate::rules::images::active_image(c, &v)
                .await?
                .ok_or_else(|| {
                    Error::InvalidState(format!(
                        "Invalid volume: Volume {} has no data to back up.",
                        v.id
                    ))
                })?;
            if !volumes::volume_set_status_by_flow(
                c,
                v.id,
                &[v.status],
                VolumeStatus::BackingUp,
                Some(&flow),
            )
            .await?
            {
                return Err(Error::InvalidState(format!(
                    "Invalid volume: volume {} changed status.",
                    v.id
                ))
                .into());
            }
            (image, attachment, None)
        }
    };
    let reservation_id = reserved
        .reservation
        .parse()
        .map_err(|_| StepError::msg("reserve_quota recorded a bad reservation"))?;
    backups::backup_create(
        c,
        &backups::NewBackup {
            id: p.backup_id,
            project_id: p.project_id.clone(),
            user_id: p.user_id.clone(),
            volume_id: v.id,
            parent_id: parent,
            name: p.name.clone(),
            description: p.description.clone(),
            container: p.container.clone(),
            availability_zone: Some(v.availability_zone.clone()),
            size: v.size,
            reservation_id: Some(reservation_id),
            last_flow_id: Some(flow),
            snapshot_id: p.snapshot_id,
            data_timestamp,
        },
    )
    .await?;
    if !p.metadata.is_empty() {
        backups::backup_set_metadata(c, p.backup_id, &p.metadata).await?;
    }
    // The volume's metadata goes with its data: a restore gives it back.
    let volume_metadata = volumes::volume_metadata_get(c, v.id).await?;
    if !volume_metadata.is_empty() {
        backups::backup_set_volume_metadata(c, p.backup_id, &volume_metadata).await?;
    }
    Ok(json!(Plan {
        backend: image.backend,
        image_name: image.name,
        parent,
        latest,
        prior_status: v.status,
        attachment,
        snapshot: p.snapshot_id,
    }))
}

/// The snapshot `id` of `v`, which must be `available` (the volume may be
/// `available` or `in-use`, as in Cinder).
async fn snapshot_of(
    c: &mut Conn,
    v: &volumes::Volume,
    id: SnapshotId,
) -> Result<snapshots::Snapshot, StepError> {
    let s = snapshots::snapshot_get(c, id)
        .await?
        .filter(|s| s.project_id == v.project_id)
        .ok_or_else(|| Error::NotFound(format!("Snapshot {id} could not be found.")))?;
    if s.volume_id != v.id {
        return Err(Error::Invalid(format!(
            "Invalid input received: snapshot {id} is not a snapshot of volume {}.",
            v.id
        ))
        .into());
    }
    if s.status != SnapshotStatus::Available {
        return Err(Error::InvalidState(format!(
            "Invalid snapshot: Snapshot to be backed up must be available, but the current status is \"{}\".",
            s.status
        ))
        .into());
    }
    if !matches!(v.status, VolumeStatus::Available | VolumeStatus::InUse) {
        return Err(Error::InvalidState(format!(
            "Invalid volume: The volume {} must be available or in-use for a backup of its snapshot, but its status is {}.",
            v.id, v.status
        ))
        .into());
    }
    Ok(s)
}

/// The attachment whose daemon writes the in-use volume `volume`: the one
/// writable exported attachment. Several writers are refused (no one daemon
/// sees every write, so none can give one instant of the volume; today a
/// multiattach volume's second attachment gets no export, so this cannot
/// happen yet), and so is
/// a volume attached only read-only (its daemons opened the image read-only:
/// they can neither track writes nor copy them aside; nothing writes it, but
/// its image is held by them, so detach it or attach it read-write).
async fn writer_of(c: &mut Conn, volume: VolumeId) -> Result<AttachmentId, StepError> {
    let exported: Vec<_> = attachments::attachment_list_for_volume(c, volume)
        .await?
        .into_iter()
        .filter(|a| a.export.is_some() && AttachmentStatus::EXPORTED.contains(&a.status))
        .collect();
    let writers: Vec<_> = exported
        .iter()
        .filter(|a| a.attach_mode != AttachMode::ReadOnly)
        .collect();
    match writers.as_slice() {
        [one] => Ok(one.id),
        [] if exported.is_empty() => Err(Error::Invalid(format!(
            "Invalid volume: Volume {volume} is in-use but Scoria serves it through no export: an in-use backup reads it through its export."
        ))
        .into()),
        [] => Err(Error::Invalid(format!(
            "Invalid volume: Volume {volume} is attached read-only only: an in-use backup needs the daemon that writes it (detach it and back it up, or attach it read-write)."
        ))
        .into()),
        many => Err(Error::Invalid(format!(
            "Invalid volume: Volume {volume} has {} writable attachments: an in-use backup reads one instant through the one daemon that writes it, and no daemon sees the others' writes.",
            many.len()
        ))
        .into()),
    }
}

/// Undo of `create_entry`: the volume gets its status back; the backup goes
/// before anyone was told of it, and stays as `error` after.
async fn remove_entry(cx: &Cx<BackupCreate>, c: &mut Conn) -> Result<(), StepError> {
    let p = &cx.params;
    if let Some(plan) = cx.output_opt::<Plan>("create_entry") {
        release_source(c, p.volume_id, &plan).await?;
    }
    if cx.output_opt::<Value>("commit_quota").is_some() {
        let reason = cx
            .failure()
            .map(|f| f.message.clone())
            .unwrap_or_else(|| "the backup failed".into());
        backups::backup_set_status(
            c,
            p.backup_id,
            &[BackupStatus::Creating],
            BackupStatus::Error,
            None,
            Some(Some(&reason)),
        )
        .await?;
    } else {
        backups::backup_delete(c, p.backup_id).await?;
    }
    Ok(())
}

async fn commit_quota(cx: &Cx<BackupCreate>, c: &mut Conn) -> Result<Value, StepError> {
    quotas::reservation_release_flow(c, cx.flow_id).await?;
    if !backups::backup_commit_quota(c, cx.params.backup_id).await? {
        return Err(Error::NotFound(format!(
            "Backup {} could not be found.",
            cx.params.backup_id
        ))
        .into());
    }
    Ok(json!(true))
}

async fn copy(cx: &Cx<BackupCreate>) -> Result<Value, StepError> {
    let p = &cx.params;
    let plan: Plan = cx.output("create_entry")?;
    let repo = cx.env.backup_repo.clone();
    let parent = match plan.parent {
        Some(id) => {
            let r = repo.clone();
            let id = id.to_string();
            let m = tokio::task::spawn_blocking(move || r.get_manifest(&id))
                .await
                .map_err(|e| StepError::msg(e.to_string()))?
                .map_err(|e| storage_error("read the parent backup's manifest", e))?;
            Some(m.ok_or_else(|| {
                StepError::new(Error::Invalid(format!(
                    "Invalid backup: the parent backup {} has no manifest in the repository.",
                    plan.parent.map(|p| p.to_string()).unwrap_or_default()
                )))
            })?)
        }
        None => None,
    };
    let job = BackupJob {
        backup_id: p.backup_id.to_string(),
        chunk_size: cx.env.backup_chunk_size,
        parent,
        keep_bitmaps: plan.latest.iter().map(|b| b.to_string()).collect(),
    };
    let m = source::read(&cx.env, &plan, &job).await?;
    tracing::info!(
        backup = %p.backup_id,
        volume = %p.volume_id,
        snapshot = ?plan.snapshot,
        attachment = ?plan.attachment,
        tracking = m.tracking.as_str(),
        bytes_read = m.bytes_read,
        new_chunks = m.new_chunks,
        stored_bytes = m.new_bytes,
        volume_bytes = m.volume_size,
        "backup written"
    );
    Ok(json!(Copied {
        object_count: m.new_chunks as i64,
        tracking: m.tracking.as_str().into(),
        fallback_reason: m.fallback_reason.clone(),
        bytes_read: m.bytes_read as i64,
        stored_bytes: m.new_bytes as i64,
    }))
}

/// Undo of `copy`: the manifest goes (the chunks only it used go at the next
/// collection), the fleece of an in-use backup is taken down, and the bitmap
/// it started is removed (in the daemon when one serves the volume), so the
/// next incremental builds on the previous backup's.
async fn uncopy(cx: &Cx<BackupCreate>) -> Result<(), StepError> {
    let p = &cx.params;
    let Some(plan) = cx.output_opt::<Plan>("create_entry") else {
        return Ok(());
    };
    let repo = cx.env.backup_repo.clone();
    let id = p.backup_id.to_string();
    tokio::task::spawn_blocking(move || repo.delete_manifest(&id))
        .await
        .map_err(|e| StepError::msg(e.to_string()))?
        .map_err(|e| storage_error("remove a partly made backup", e))?;
    source::forget(&cx.env, &plan, &p.backup_id.to_string()).await
}

async fn finish(cx: &Cx<BackupCreate>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    let plan: Plan = cx.output("create_entry")?;
    let copied: Copied = cx.output("copy")?;
    if !backups::backup_mark_available(
        c,
        p.backup_id,
        &backups::Finished {
            object_count: copied.object_count,
            tracking: &copied.tracking,
            fallback_reason: copied.fallback_reason.as_deref(),
            bytes_read: copied.bytes_read,
            stored_bytes: copied.stored_bytes,
        },
    )
    .await?
    {
        return Err(Error::InvalidState(format!(
            "Backup {} is no longer being created.",
            p.backup_id
        ))
        .into());
    }
    release_source(c, p.volume_id, &plan).await?;
    Ok(Value::Null)
}

/// The volume back to its prior status, or the snapshot to `available`.
async fn release_source(c: &mut Conn, volume: VolumeId, plan: &Plan) -> Result<(), StepError> {
    match plan.snapshot {
        Some(s) => {
            snapshots::snapshot_set_status(
                c,
                s,
                &[SnapshotStatus::BackingUp],
                SnapshotStatus::Available,
                None,
            )
            .await?;
        }
        None => {
            volumes::volume_set_status(c, volume, &[VolumeStatus::BackingUp], plan.prior_status)
                .await?;
        }
    }
    Ok(())
}

#[cfg(all(test, feature = "failpoints"))]
mod tests;
#[cfg(all(test, feature = "failpoints"))]
mod tests_sources;
