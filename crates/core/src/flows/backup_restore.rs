//! Restore a backup onto an `available` volume at least as large (a new
//! volume the API made for it, or an existing one).
//!
//! ```text
//!  begin ──────────────────────► restore ─────────────────────► finish
//!   the backup `restoring`, the    every chunk read and its       both back to
//!   volume `restoring-backup`      hash checked, then written     `available`
//!   undo: the backup `available`   over the volume's image
//!   with the failure as its
//!   `fail_reason`, the volume
//!   `error_restoring` (Cinder's)
//! ```
//!
//! The engine checks every chunk before it writes anything, so a missing or
//! corrupt chunk fails the restore with the backup and the chunk named (in
//! the backup's `fail_reason`), and the volume's data is unchanged; it is
//! still left `error_restoring`, as Cinder leaves it: it did not receive the
//! backup it was asked to.

use scoria_flows::{Cx, Flow, FlowMeta, Step, StepError};
use scoria_model::backup::BackupStatus;
use scoria_model::volume::VolumeStatus;
use scoria_model::{BackupId, VolumeId};
use scoria_storage::backup_repo::engine;
use scoria_storage::{LocalFile, StorageError};
use scoria_store::{Conn, backups, volumes};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::Error;
use crate::{Env, flows::storage_error};

pub struct BackupRestore;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub backup_id: BackupId,
    /// The caller's project; `None` for an admin acting on any project.
    pub project_id: Option<String>,
    pub volume_id: VolumeId,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Plan {
    backend: String,
    image_name: String,
}

impl Flow for BackupRestore {
    const KIND: &'static str = "backup_restore";
    type Params = Params;
    type Env = Env;

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::db("begin", |cx, c| Box::pin(begin(cx, c)))
                .undo_db(|cx, c| Box::pin(abort(cx, c))),
            Step::external("restore", |cx| Box::pin(restore(cx))),
            Step::db("finish", |cx, c| Box::pin(finish(cx, c))),
        ]
    }

    fn meta(p: &Params) -> FlowMeta {
        FlowMeta {
            resource_type: Some("backup"),
            resource_id: Some(p.backup_id.to_string()),
            project_id: p.project_id.clone(),
        }
    }
}

async fn begin(cx: &Cx<BackupRestore>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    let mine = |project: &str| p.project_id.as_deref().is_none_or(|mine| mine == project);
    let b = backups::backup_get(c, p.backup_id)
        .await?
        .filter(|b| mine(&b.project_id))
        .ok_or_else(|| crate::rules::backups::not_found(p.backup_id))?;
    let v = volumes::volume_get(c, p.volume_id)
        .await?
        .filter(|v| mine(&v.project_id))
        .ok_or_else(|| Error::volume_not_found(p.volume_id))?;
    if b.status != BackupStatus::Available {
        return Err(Error::InvalidState(format!(
            "Invalid backup: Backup status must be available, but is {}.",
            b.status
        ))
        .into());
    }
    if v.status != VolumeStatus::Available {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume to be restored to must be available, but its status is {}.",
            v.status
        ))
        .into());
    }
    if v.size < b.size {
        return Err(Error::Invalid(format!(
            "Invalid volume: volume size {} GB is too small to restore backup of size {} GB.",
            v.size, b.size
        ))
        .into());
    }
    crate::rules::attachments::assert_not_attached(c, v.id, "restored onto").await?;
    crate::rules::volumes::assert_not_held(c, v.id, "restored onto").await?;
    let image = crate::rules::images::active_image(c, &v)
        .await?
        .ok_or_else(|| {
            Error::InvalidState(format!("Invalid volume: Volume {} has no image.", v.id))
        })?;
    let flow = cx.flow_id.to_string();
    let moved = backups::backup_set_status(
        c,
        b.id,
        &[BackupStatus::Available],
        BackupStatus::Restoring,
        Some(&flow),
        Some(None),
    )
    .await?
        && volumes::volume_set_status_by_flow(
            c,
            v.id,
            &[VolumeStatus::Available],
            VolumeStatus::RestoringBackup,
            Some(&flow),
        )
        .await?;
    if !moved {
        return Err(Error::InvalidState(
            "Invalid backup: the backup or the volume changed status.".into(),
        )
        .into());
    }
    Ok(json!(Plan {
        backend: image.backend,
        image_name: image.name,
    }))
}

async fn abort(cx: &Cx<BackupRestore>, c: &mut Conn) -> Result<(), StepError> {
    let p = &cx.params;
    let reason = cx
        .failure()
        .map(|f| format!("restore onto volume {} failed: {}", p.volume_id, f.message))
        .unwrap_or_else(|| "the restore failed".into());
    backups::backup_set_status(
        c,
        p.backup_id,
        &[BackupStatus::Restoring],
        BackupStatus::Available,
        None,
        Some(Some(&reason)),
    )
    .await?;
    volumes::volume_set_status(
        c,
        p.volume_id,
        &[VolumeStatus::RestoringBackup],
        VolumeStatus::ErrorRestoring,
    )
    .await?;
    Ok(())
}

async fn restore(cx: &Cx<BackupRestore>) -> Result<Value, StepError> {
    let p = &cx.params;
    let plan: Plan = cx.output("begin")?;
    let driver = &cx.env.backend(&plan.backend)?.driver;
    let file = driver
        .local_file(&plan.image_name)
        .await
        .map_err(|e| storage_error("find the volume's image", e))?;
    let done = restore_into(&cx.env, p.backup_id, &file).await?;
    tracing::info!(backup = %p.backup_id, volume = %p.volume_id, chunks = done.chunks, bytes = done.bytes, "backup restored");
    crate::capacity::refresh(&cx.env, &plan.backend).await;
    Ok(json!({"chunks": done.chunks, "bytes": done.bytes}))
}

/// A restored volume gets the backed-up volume's metadata (its keys set,
/// the volume's other keys kept), as Cinder's restores give it.
pub(crate) async fn give_volume_metadata(
    c: &mut Conn,
    backup: BackupId,
    volume: VolumeId,
) -> Result<(), StepError> {
    if let Some(b) = backups::backup_get(c, backup).await?
        && !b.volume_metadata.is_empty()
    {
        volumes::volume_metadata_merge(c, volume, &b.volume_metadata).await?;
    }
    Ok(())
}

/// Write backup `id` over the image `file`: its manifest read, every chunk
/// checked before anything is written (a missing or corrupt one is a 400
/// naming the backup and the chunk, and `file` is unchanged). Also how a
/// volume made from a backup gets its data (`volume_create`).
pub(crate) async fn restore_into(
    env: &Env,
    id: BackupId,
    file: &LocalFile,
) -> Result<engine::Restored, StepError> {
    let repo = env.backup_repo.clone();
    let r = repo.clone();
    let name = id.to_string();
    let manifest = tokio::task::spawn_blocking(move || r.get_manifest(&name))
        .await
        .map_err(|e| StepError::msg(e.to_string()))?
        .map_err(|e| storage_error("read the backup's manifest", e))?
        .ok_or_else(|| {
            StepError::new(Error::Invalid(format!(
                "Invalid backup: backup {id} has no manifest in the repository."
            )))
        })?;
    engine::restore(file, &repo, &manifest)
        .await
        .map_err(|e| match e {
            e @ StorageError::BadChunk { .. } => {
                StepError::new(Error::Invalid(format!("Invalid backup: {e}.")))
            }
            e => storage_error("restore the backup", e),
        })
}

async fn finish(cx: &Cx<BackupRestore>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    backups::backup_set_status(
        c,
        p.backup_id,
        &[BackupStatus::Restoring],
        BackupStatus::Available,
        None,
        None,
    )
    .await?;
    volumes::volume_set_status(
        c,
        p.volume_id,
        &[VolumeStatus::RestoringBackup],
        VolumeStatus::Available,
    )
    .await?;
    give_volume_metadata(c, p.backup_id, p.volume_id).await?;
    Ok(Value::Null)
}

#[cfg(all(test, feature = "failpoints"))]
mod tests {
    use scoria_flows::Engine;
    use scoria_flows::testkit::{BoxFut, Expect};
    use scoria_model::backup::BackupStatus;
    use scoria_model::volume::VolumeStatus;
    use scoria_model::{BackupId, VolumeId};
    use scoria_storage::{Format, qemu};
    use scoria_store::backups;

    use super::{BackupRestore, Params};
    use crate::Env;
    use crate::flows::backup_create::{self, BackupCreate};
    use crate::flows::testing::{self, PROJECT, Scenario, USER, World, text};

    const DATA: (u64, u64, u8) = (4 << 20, 1 << 20, 0x5a);
    const OTHER: (u64, u64, u8) = (0, 8 << 20, 0x11);

    /// A backup of a volume holding DATA restored onto a second volume
    /// holding OTHER. Done: the target reads DATA and not OTHER, both
    /// `available`. Failed: the backup `available` (with a reason), the
    /// target `error_restoring`, or untouched and `available` when refused
    /// before it began. Either way the backup still verifies.
    struct Restore {
        source: VolumeId,
        target: VolumeId,
        backup: BackupId,
    }

    impl Scenario for Restore {
        type F = BackupRestore;
        const NAME: &'static str = "backup_restore";

        fn prepare<'a>(&'a self, w: &'a World) -> BoxFut<'a, ()> {
            Box::pin(async move {
                let e = w.plain().await;
                w.create_volume(&e, self.source, 1).await;
                w.create_volume(&e, self.target, 1).await;
                let (o, l, b) = DATA;
                qemu::write_pattern(&w.image_of(&e, self.source).await, Format::Qcow2, o, l, b)
                    .await
                    .expect("write");
                let (o, l, b) = OTHER;
                qemu::write_pattern(&w.image_of(&e, self.target).await, Format::Qcow2, o, l, b)
                    .await
                    .expect("write");
                let params = backup_create::Params {
                    backup_id: self.backup,
                    project_id: PROJECT.into(),
                    user_id: USER.into(),
                    volume_id: self.source,
                    name: None,
                    description: None,
                    container: None,
                    incremental: false,
                    metadata: Default::default(),
                    force: false,
                    snapshot_id: None,
                };
                w.run::<BackupCreate>(&e, params, "a backup").await;
            })
        }

        fn params(&self) -> Params {
            Params {
                backup_id: self.backup,
                project_id: Some(PROJECT.into()),
                volume_id: self.target,
            }
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
                    .map_err(text)?
                    .ok_or("the backup is gone")?;
                drop(c);
                if b.status != BackupStatus::Available {
                    return Err(format!("the backup is {}", b.status));
                }
                let t = w
                    .volume(e, self.target)
                    .await?
                    .ok_or("the target is gone")?;
                let image = w.image_of(e, self.target).await;
                let untouched = qemu::read_pattern(&image, Format::Qcow2, 0, 1 << 20, OTHER.2)
                    .await
                    .map_err(text)?;
                // A restore refused before it began leaves the target as it
                // was; one that began and failed leaves it `error_restoring`.
                let ok = match expect {
                    Expect::Either => true,
                    Expect::Done => t.status == VolumeStatus::Available && !untouched,
                    Expect::Failed => {
                        t.status == VolumeStatus::ErrorRestoring
                            || (t.status == VolumeStatus::Available && untouched)
                    }
                };
                if !ok {
                    return Err(format!(
                        "expected {expect:?}, the target is {} (old data: {untouched})",
                        t.status
                    ));
                }
                if t.status == VolumeStatus::Available && !untouched {
                    let (o, l, byte) = DATA;
                    if !qemu::read_pattern(&image, Format::Qcow2, o, l, byte)
                        .await
                        .map_err(text)?
                    {
                        return Err("the restored volume does not read the backup".into());
                    }
                } else if t.status == VolumeStatus::ErrorRestoring && b.fail_reason.is_none() {
                    return Err("a failed restore left no reason".into());
                }
                let repo = e.env().backup_repo.clone();
                let m = repo
                    .get_manifest(&self.backup.to_string())
                    .map_err(text)?
                    .ok_or("the manifest is gone")?;
                scoria_storage::backup_repo::engine::verify(&repo, &m)
                    .await
                    .map_err(text)?;
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn passes_the_generic_flow_tests_on_the_file_backend() {
        let report = testing::generic(|| Restore {
            source: VolumeId::new(),
            target: VolumeId::new(),
            backup: BackupId::new(),
        })
        .await;
        println!("backup_restore: {report:?}");
        assert!(report.crash_points >= 4, "{report:?}");
    }
}
