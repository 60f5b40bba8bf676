//! Delete a backup.
//!
//! ```text
//!  begin_delete ─────────────────► delete_data ──────────────► remove_entry
//!   refused while an incremental    the manifest goes, then a    the row goes: its
//!   depends on it (Cinder's);       collection removes the       quota usage with it
//!   `deleting`                      chunks no manifest uses
//!   undo: back to its status,       (skipped while a backup
//!   or `error_deleting` once        writes: the next one does)
//!   the data was touched
//! ```
//!
//! An admin's force delete (`force`) takes a backup in any status that no
//! running flow works on: Scoria's flows always end, so only a backup whose
//! flow is `stuck` (or one an admin reset) needs it.

use scoria_flows::{Cx, Flow, FlowMeta, Step, StepError};
use scoria_model::BackupId;
use scoria_model::backup::BackupStatus;
use scoria_store::{Conn, backups};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::Error;
use crate::{Env, flows::storage_error};

pub struct BackupDelete;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub backup_id: BackupId,
    /// The caller's project; `None` for an admin acting on any project.
    pub project_id: Option<String>,
    /// An admin's `os-force_delete`: any status, as long as no other flow is
    /// working on the backup (a stuck one does not count).
    #[serde(default)]
    pub force: bool,
}

impl Flow for BackupDelete {
    const KIND: &'static str = "backup_delete";
    type Params = Params;
    type Env = Env;

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::db("begin_delete", |cx, c| Box::pin(begin_delete(cx, c)))
                .undo_db(|cx, c| Box::pin(abort_delete(cx, c))),
            Step::external("delete_data", |cx| Box::pin(delete_data(cx))),
            Step::db("remove_entry", |cx, c| Box::pin(remove_entry(cx, c))),
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

async fn begin_delete(cx: &Cx<BackupDelete>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    let b = backups::backup_get(c, p.backup_id)
        .await?
        .filter(|b| {
            p.project_id
                .as_deref()
                .is_none_or(|mine| mine == b.project_id)
        })
        .ok_or_else(|| crate::rules::backups::not_found(p.backup_id))?;
    if p.force {
        let busy = scoria_store::flows::flow_list_unsettled_for(c, &b.id.to_string())
            .await?
            .into_iter()
            .any(|f| f.id != cx.flow_id && f.state != scoria_model::flow::FlowState::Stuck);
        if busy {
            return Err(Error::InvalidState(format!(
                "Invalid backup: backup {} is {} and a flow is still working on it; it ends by itself.",
                b.id, b.status
            ))
            .into());
        }
    } else if !BackupStatus::DELETABLE.contains(&b.status) {
        return Err(Error::InvalidState(format!(
            "Invalid backup: Backup status must be available or error, but is {}.",
            b.status
        ))
        .into());
    }
    if backups::backup_dependents(c, b.id).await? > 0 {
        return Err(Error::InvalidState(
            "Invalid backup: Incremental backups exist for this backup.".into(),
        )
        .into());
    }
    if !backups::backup_set_status(
        c,
        b.id,
        &[b.status],
        BackupStatus::Deleting,
        Some(&cx.flow_id.to_string()),
        None,
    )
    .await?
    {
        return Err(
            Error::InvalidState("Invalid backup: the backup changed status.".into()).into(),
        );
    }
    Ok(json!({ "prior_status": b.status }))
}

async fn abort_delete(cx: &Cx<BackupDelete>, c: &mut Conn) -> Result<(), StepError> {
    let to = if cx.output_opt::<Value>("delete_data").is_some()
        || cx.failure().is_some_and(|f| f.step == "delete_data")
    {
        BackupStatus::ErrorDeleting
    } else {
        cx.output_opt::<Value>("begin_delete")
            .and_then(|v| serde_json::from_value(v["prior_status"].clone()).ok())
            .unwrap_or(BackupStatus::Error)
    };
    backups::backup_set_status(
        c,
        cx.params.backup_id,
        &[BackupStatus::Deleting],
        to,
        None,
        None,
    )
    .await?;
    Ok(())
}

async fn delete_data(cx: &Cx<BackupDelete>) -> Result<Value, StepError> {
    let repo = cx.env.backup_repo.clone();
    let id = cx.params.backup_id.to_string();
    let collected = tokio::task::spawn_blocking(move || {
        repo.delete_manifest(&id)?;
        repo.collect()
    })
    .await
    .map_err(|e| StepError::msg(e.to_string()))?
    .map_err(|e| storage_error("remove the backup's data", e))?;
    Ok(json!({
        "chunks_removed": collected.chunks,
        "bytes_removed": collected.bytes,
        "collection_skipped": collected.skipped_busy,
    }))
}

async fn remove_entry(cx: &Cx<BackupDelete>, c: &mut Conn) -> Result<Value, StepError> {
    backups::backup_delete(c, cx.params.backup_id).await?;
    Ok(Value::Null)
}

#[cfg(all(test, feature = "failpoints"))]
mod tests {
    use scoria_flows::Engine;
    use scoria_flows::testkit::{BoxFut, Expect};
    use scoria_model::backup::BackupStatus;
    use scoria_model::{BackupId, VolumeId};
    use scoria_storage::{Format, qemu};
    use scoria_store::backups;

    use super::{BackupDelete, Params};
    use crate::Env;
    use crate::flows::backup_create::{self, BackupCreate};
    use crate::flows::testing::{self, PROJECT, Scenario, USER, World, text};

    /// The deletion of the second of two full backups of a volume whose data
    /// changed in between. Done: its row and manifest are gone, and so are
    /// the chunks only it used; the first backup still verifies. Failed: the
    /// row is back in `available` (or `error_deleting` once its data was
    /// touched). The chunks only it used are there exactly while its
    /// manifest is; the quota counts the rows that exist.
    struct Del {
        volume: VolumeId,
        keep: BackupId,
        backup: BackupId,
    }

    fn create(volume: VolumeId, backup: BackupId) -> backup_create::Params {
        backup_create::Params {
            backup_id: backup,
            project_id: PROJECT.into(),
            user_id: USER.into(),
            volume_id: volume,
            name: None,
            description: None,
            container: None,
            incremental: false,
            metadata: Default::default(),
            force: false,
            snapshot_id: None,
        }
    }

    impl Scenario for Del {
        type F = BackupDelete;
        const NAME: &'static str = "backup_delete";

        fn prepare<'a>(&'a self, w: &'a World) -> BoxFut<'a, ()> {
            Box::pin(async move {
                let e = w.plain().await;
                w.create_volume(&e, self.volume, 1).await;
                let image = w.image_of(&e, self.volume).await;
                qemu::write_pattern(&image, Format::Qcow2, 0, 4 << 20, 0x1)
                    .await
                    .expect("write");
                w.run::<BackupCreate>(&e, create(self.volume, self.keep), "a backup")
                    .await;
                qemu::write_pattern(&image, Format::Qcow2, 64 << 20, 4 << 20, 0x2)
                    .await
                    .expect("write");
                w.run::<BackupCreate>(&e, create(self.volume, self.backup), "a backup")
                    .await;
            })
        }

        fn params(&self) -> Params {
            Params {
                backup_id: self.backup,
                project_id: Some(PROJECT.into()),
                force: false,
            }
        }

        fn check<'a>(
            &'a self,
            _w: &'a World,
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
                    Expect::Done => status.is_none(),
                    Expect::Failed => matches!(
                        status,
                        Some(BackupStatus::Available | BackupStatus::ErrorDeleting)
                    ),
                };
                if !ok {
                    return Err(format!("expected {expect:?}, the backup is {status:?}"));
                }
                let usage = scoria_store::quotas::quota_usage(&mut c, PROJECT)
                    .await
                    .map_err(text)?;
                let used = usage
                    .get(&scoria_model::quota::QuotaResource::Backups.into())
                    .map(|u| u.in_use);
                let rows = 1 + i64::from(b.is_some());
                if used != Some(rows) {
                    return Err(format!("{rows} backup rows, quota says {used:?}"));
                }
                let repo = e.env().backup_repo.clone();
                let manifest = repo.get_manifest(&self.backup.to_string()).map_err(text)?;
                if status.is_none() && manifest.is_some() {
                    return Err("a deleted backup left its manifest".into());
                }
                if status == Some(BackupStatus::Available) && manifest.is_none() {
                    return Err("an available backup lost its manifest".into());
                }
                repo.collect().map_err(text)?;
                let keep = repo
                    .get_manifest(&self.keep.to_string())
                    .map_err(text)?
                    .ok_or("the other backup's manifest is gone")?;
                scoria_storage::backup_repo::engine::verify(&repo, &keep)
                    .await
                    .map_err(text)?;
                // The chunk only this backup held (4 MiB of 0x2) is there
                // exactly while its manifest is (`error_deleting`: both gone).
                let later = scoria_storage::backup_repo::chunk_hash(&vec![2u8; 4 << 20]);
                if repo.has_chunk(&later).map_err(text)? != manifest.is_some() {
                    return Err(format!(
                        "the backup is {status:?}; its manifest and its own chunk disagree"
                    ));
                }
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn passes_the_generic_flow_tests_on_the_file_backend() {
        let report = testing::generic(|| Del {
            volume: VolumeId::new(),
            keep: BackupId::new(),
            backup: BackupId::new(),
        })
        .await;
        println!("backup_delete: {report:?}");
        assert!(report.crash_points >= 3, "{report:?}");
    }
}
