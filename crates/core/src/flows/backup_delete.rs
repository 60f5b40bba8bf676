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
        .ok_or_else(|| crate::backups::not_found(p.backup_id))?;
    if !BackupStatus::DELETABLE.contains(&b.status) {
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
