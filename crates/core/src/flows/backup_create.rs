//! Back up an `available` volume into the backup repository: a full backup,
//! or an incremental on top of the volume's latest `available` backup.
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
//! The volume is `backing-up` from `create_entry` to `finish`: nothing writes
//! it (it is not attached, and every operation that would change it refuses a
//! volume that is not `available`), so the backup reads one moment of it
//! without a snapshot. What is read, and why only the changed chunks of an
//! incremental, is `scoria_storage::backup_repo::engine`'s doc. A backup is
//! `available` only after its manifest is durable (`copy` is done).
//!
//! Not yet: `in-use` volumes (`force`) and `snapshot_id` need a point-in-time
//! snapshot through the storage daemon; the API refuses them (see
//! `crate::backups`).

use scoria_flows::{Cx, Flow, FlowMeta, Step, StepError};
use scoria_model::backup::BackupStatus;
use scoria_model::volume::VolumeStatus;
use scoria_model::{BackupId, VolumeId};
use scoria_storage::backup_repo::engine::{self, BackupJob};
use scoria_store::{Conn, backups, quotas, volumes};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::Error;
use crate::{Env, flows::storage_error};

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
    if v.status != VolumeStatus::Available {
        return Err(Error::InvalidState(format!(
            "Invalid volume: The volume {} must be available to be backed up, but its status is {}.",
            v.id, v.status
        ))
        .into());
    }
    if v.size != reserved.size {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {} changed size while its backup was being requested.",
            v.id
        ))
        .into());
    }
    crate::rules::attachments::assert_not_attached(c, v.id, "backed up").await?;
    crate::rules::volumes::assert_not_held(c, v.id, "backed up").await?;
    let image = crate::rules::images::active_image(c, &v)
        .await?
        .ok_or_else(|| {
            Error::InvalidState(format!(
                "Invalid volume: Volume {} has no data to back up.",
                v.id
            ))
        })?;
    let latest = backups::backup_latest_available(c, v.id)
        .await?
        .map(|b| b.id);
    let parent = match (p.incremental, latest) {
        (true, None) => {
            return Err(Error::Invalid(format!(
                "Invalid backup: No backups available to do an incremental backup of volume {}.",
                v.id
            ))
            .into());
        }
        (true, parent) => parent,
        (false, _) => None,
    };
    if !volumes::volume_set_status_by_flow(
        c,
        v.id,
        &[VolumeStatus::Available],
        VolumeStatus::BackingUp,
        Some(&cx.flow_id.to_string()),
    )
    .await?
    {
        return Err(Error::InvalidState(format!(
            "Invalid volume: volume {} changed status.",
            v.id
        ))
        .into());
    }
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
            last_flow_id: Some(cx.flow_id.to_string()),
        },
    )
    .await?;
    if !p.metadata.is_empty() {
        backups::backup_set_metadata(c, p.backup_id, &p.metadata).await?;
    }
    Ok(json!(Plan {
        backend: image.backend,
        image_name: image.name,
        parent,
        latest,
        prior_status: v.status,
    }))
}

/// Undo of `create_entry`: the volume gets its status back; the backup goes
/// before anyone was told of it, and stays as `error` after.
async fn remove_entry(cx: &Cx<BackupCreate>, c: &mut Conn) -> Result<(), StepError> {
    let p = &cx.params;
    if let Some(plan) = cx.output_opt::<Plan>("create_entry") {
        volumes::volume_set_status(
            c,
            p.volume_id,
            &[VolumeStatus::BackingUp],
            plan.prior_status,
        )
        .await?;
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
    let driver = &cx.env.backend(&plan.backend)?.driver;
    let file = driver
        .local_file(&plan.image_name)
        .await
        .map_err(|e| storage_error("find the volume's image", e))?;
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
    let m = engine::backup(&file, &repo, &job)
        .await
        .map_err(|e| storage_error("back up the volume", e))?;
    tracing::info!(
        backup = %p.backup_id,
        volume = %p.volume_id,
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
/// collection) and the bitmap it started is removed, so the next incremental
/// builds on the previous backup's.
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
    let driver = &cx.env.backend(&plan.backend)?.driver;
    match driver.local_file(&plan.image_name).await {
        Ok(file) => engine::forget_bitmap(&file, &p.backup_id.to_string())
            .await
            .map_err(|e| storage_error("remove the backup's dirty bitmap", e)),
        Err(scoria_storage::StorageError::NotFound(_)) => Ok(()),
        Err(e) => Err(storage_error("find the volume's image", e)),
    }
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
    volumes::volume_set_status(
        c,
        p.volume_id,
        &[VolumeStatus::BackingUp],
        plan.prior_status,
    )
    .await?;
    Ok(Value::Null)
}

#[cfg(all(test, feature = "failpoints"))]
mod tests {
    use scoria_flows::Engine;
    use scoria_flows::testkit::{BoxFut, Expect};
    use scoria_model::backup::BackupStatus::{Available, Error};
    use scoria_model::volume::VolumeStatus;
    use scoria_model::{BackupId, VolumeId};
    use scoria_storage::backup_repo::engine;
    use scoria_storage::{Format, qemu};
    use scoria_store::backups;

    use super::{BackupCreate, Params};
    use crate::Env;
    use crate::flows::testing::{self, PROJECT, Scenario, USER, World, text};

    /// An incremental backup of a 1 GiB volume that has a full backup, after
    /// a write. Done: the backup `available`, its manifest complete (every
    /// chunk verifies) and the volume's only bitmap its own. Failed: no
    /// backup (or one in `error`), no manifest, the full backup's bitmap
    /// still there. Either way the volume is `available`, the quota counts
    /// exactly the rows that exist, and a collection leaves every chunk of
    /// the full backup.
    struct Inc {
        volume: VolumeId,
        full: BackupId,
        backup: BackupId,
    }

    fn params(volume: VolumeId, backup: BackupId, incremental: bool) -> Params {
        Params {
            backup_id: backup,
            project_id: PROJECT.into(),
            user_id: USER.into(),
            volume_id: volume,
            name: Some("b".into()),
            description: None,
            container: None,
            incremental,
            metadata: Default::default(),
        }
    }

    impl Scenario for Inc {
        type F = BackupCreate;
        const NAME: &'static str = "backup_create";

        fn prepare<'a>(&'a self, w: &'a World) -> BoxFut<'a, ()> {
            Box::pin(async move {
                let e = w.plain().await;
                w.create_volume(&e, self.volume, 1).await;
                let image = w.image_of(&e, self.volume).await;
                qemu::write_pattern(&image, Format::Qcow2, 0, 8 << 20, 0xa)
                    .await
                    .expect("write");
                w.run::<BackupCreate>(&e, params(self.volume, self.full, false), "a full backup")
                    .await;
                qemu::write_pattern(&image, Format::Qcow2, 100 << 20, 1 << 20, 0xb)
                    .await
                    .expect("write");
            })
        }

        fn params(&self) -> Params {
            params(self.volume, self.backup, true)
        }

        fn check<'a>(
            &'a self,
            w: &'a World,
            e: &'a Engine<Env>,
            expect: Expect,
        ) -> BoxFut<'a, Result<(), String>> {
            Box::pin(async move {
                let mut c = e.store().read().await.map_err(text)?;
                let b = backups::backup_get(&mut c, self.backup)
                    .await
                    .map_err(text)?;
                let status = b.as_ref().map(|b| b.status);
                let ok = match expect {
                    Expect::Either => true,
                    Expect::Done => status == Some(Available),
                    Expect::Failed => matches!(status, None | Some(Error)),
                };
                if !ok {
                    return Err(format!("expected {expect:?}, the backup is {status:?}"));
                }
                let rows = 1 + i64::from(b.is_some());
                let usage = scoria_store::quotas::quota_usage(&mut c, PROJECT)
                    .await
                    .map_err(text)?;
                let used = usage
                    .get(&scoria_model::quota::QuotaResource::Backups.into())
                    .map(|u| (u.in_use, u.reserved));
                if used != Some((rows, 0)) {
                    return Err(format!("{rows} backup rows, quota says {used:?}"));
                }
                drop(c);
                let v = w
                    .volume(e, self.volume)
                    .await?
                    .ok_or("the volume is gone")?;
                if v.status != VolumeStatus::Available {
                    return Err(format!("the volume is {}", v.status));
                }
                let repo = e.env().backup_repo.clone();
                let file = scoria_storage::LocalFile {
                    path: w.image_of(e, self.volume).await,
                    format: Format::Qcow2,
                };
                let bitmaps: Vec<String> = qemu::backup::bitmaps(&file.path)
                    .await
                    .map_err(text)?
                    .into_iter()
                    .map(|b| b.name)
                    .collect();
                let manifest = repo.get_manifest(&self.backup.to_string()).map_err(text)?;
                let owner = if status == Some(Available) {
                    let m = manifest
                        .as_ref()
                        .ok_or("an available backup without manifest")?;
                    if m.tracking != scoria_storage::backup_repo::Tracking::DirtyBitmap {
                        return Err(format!("the incremental used {:?}", m.tracking));
                    }
                    self.backup
                } else {
                    if manifest.is_some() {
                        return Err("a failed backup left its manifest".into());
                    }
                    self.full
                };
                let mut want = vec![engine::bitmap_name(&self.full.to_string())];
                if owner == self.backup {
                    want.push(engine::bitmap_name(&self.backup.to_string()));
                }
                want.sort();
                let mut bitmaps = bitmaps;
                bitmaps.sort();
                if bitmaps != want {
                    return Err(format!("the volume's bitmaps are {bitmaps:?}"));
                }
                let busy = repo.collect().map_err(text)?;
                if busy.skipped_busy {
                    return Err("a writer is still registered".into());
                }
                let full = repo
                    .get_manifest(&self.full.to_string())
                    .map_err(text)?
                    .ok_or("the full backup's manifest is gone")?;
                engine::verify(&repo, &full).await.map_err(text)?;
                if let Some(m) = manifest {
                    engine::verify(&repo, &m).await.map_err(text)?;
                }
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn passes_the_generic_flow_tests_on_the_file_backend() {
        let report = testing::generic(|| Inc {
            volume: VolumeId::new(),
            full: BackupId::new(),
            backup: BackupId::new(),
        })
        .await;
        println!("backup_create: {report:?}");
        assert!(report.crash_points >= 8, "{report:?}");
    }
}
