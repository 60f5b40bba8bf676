//! Import a backup record (Cinder's `import_record`, admin): the backup's
//! data is already in the repository, described by the manifest the record
//! names; the import gives it a row (and, under a new id, a manifest of its
//! own).
//!
//! ```text
//!  copy_manifest ─────────────────────► create_entry
//!   the named manifest, checked (every     the row, `available`, in the
//!   chunk present), stored under the      importing admin's project: it
//!   record's id                           counts against its quota from now
//!   undo: that manifest goes (when the
//!   flow wrote it)
//! ```
//!
//! As in Cinder, an import is an administrator's act and not limited by the
//! project's quota; it is counted (usage is derived from the rows).

use std::collections::BTreeMap;

use scoria_flows::{Cx, Flow, FlowMeta, Step, StepError};
use scoria_model::BackupId;
use scoria_store::{Conn, backups};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::Error;
use crate::{Env, flows::storage_error};

pub struct BackupImport;

/// The fields of a backup record (`backup_url`, decoded).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub id: BackupId,
    pub volume_id: scoria_model::VolumeId,
    #[serde(default)]
    pub snapshot_id: Option<scoria_model::SnapshotId>,
    #[serde(default)]
    pub parent_id: Option<BackupId>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub display_description: Option<String>,
    #[serde(default)]
    pub container: Option<String>,
    #[serde(default)]
    pub availability_zone: Option<String>,
    pub size: i64,
    #[serde(default)]
    pub object_count: i64,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub project_id: Option<String>,
    #[serde(default)]
    pub data_timestamp: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The backup whose manifest describes the data (the exported one's id).
    #[serde(default)]
    pub scoria_manifest: Option<BackupId>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub record: Record,
    /// The importing admin's project and user: the backup's owners.
    pub project_id: String,
    pub user_id: String,
}

impl Flow for BackupImport {
    const KIND: &'static str = "backup_import";
    type Params = Params;
    type Env = Env;

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::external("copy_manifest", |cx| Box::pin(copy_manifest(cx)))
                .undo_external(|cx| Box::pin(uncopy(cx))),
            Step::db("create_entry", |cx, c| Box::pin(create_entry(cx, c))),
        ]
    }

    fn meta(p: &Params) -> FlowMeta {
        FlowMeta {
            resource_type: Some("backup"),
            resource_id: Some(p.record.id.to_string()),
            project_id: Some(p.project_id.clone()),
        }
    }
}

fn source(p: &Params) -> BackupId {
    p.record.scoria_manifest.unwrap_or(p.record.id)
}

async fn copy_manifest(cx: &Cx<BackupImport>) -> Result<Value, StepError> {
    let p = &cx.params;
    let (id, from) = (p.record.id, source(p));
    let repo = cx.env.backup_repo.clone();
    let written =
        tokio::task::spawn_blocking(move || -> Result<Result<(bool, &'static str), Error>, _> {
            let Some(mut m) = repo.get_manifest(&from.to_string())? else {
                return Ok(Err(Error::Invalid(format!(
                    "Invalid backup: the record's data (manifest {from}) is not in the repository."
                ))));
            };
            for h in m.chunks.iter().flatten() {
                if !repo.has_chunk(h)? {
                    return Ok(Err(Error::Invalid(format!(
                        "Invalid backup: chunk {h} of backup {from} is missing from the repository."
                    ))));
                }
            }
            let ours = repo.get_manifest(&id.to_string())?.is_none();
            m.backup_id = id.to_string();
            repo.put_manifest(&m)?;
            Ok(Ok((ours && id != from, m.tracking.as_str())))
        })
        .await
        .map_err(|e| StepError::msg(e.to_string()))?
        .map_err(|e| storage_error("copy the backup's manifest", e))?
        .map_err(StepError::new)?;
    Ok(json!({ "wrote": written.0, "tracking": written.1 }))
}

/// Undo of `copy_manifest`: the manifest it wrote goes; the one it was
/// copied from (the exported backup's own) stays.
async fn uncopy(cx: &Cx<BackupImport>) -> Result<(), StepError> {
    let p = &cx.params;
    let wrote = cx
        .output_opt::<Value>("copy_manifest")
        .is_some_and(|v| v["wrote"].as_bool() == Some(true));
    // `wrote` is false when the manifest was there already (or is the source).
    if !wrote {
        return Ok(());
    }
    let repo = cx.env.backup_repo.clone();
    let id = p.record.id.to_string();
    tokio::task::spawn_blocking(move || repo.delete_manifest(&id))
        .await
        .map_err(|e| StepError::msg(e.to_string()))?
        .map_err(|e| storage_error("remove an imported manifest", e))
}

async fn create_entry(cx: &Cx<BackupImport>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    let r = &p.record;
    if backups::backup_get(c, r.id).await?.is_some() {
        return Err(Error::Invalid(format!(
            "Invalid backup: Backup already exists in database: {}.",
            r.id
        ))
        .into());
    }
    let parent = match r.parent_id {
        Some(id) if backups::backup_get(c, id).await?.is_some() => Some(id),
        _ => None,
    };
    backups::backup_create(
        c,
        &backups::NewBackup {
            id: r.id,
            project_id: p.project_id.clone(),
            user_id: p.user_id.clone(),
            volume_id: r.volume_id,
            parent_id: parent,
            name: r.display_name.clone(),
            description: r.display_description.clone(),
            container: r.container.clone(),
            availability_zone: r.availability_zone.clone(),
            size: r.size,
            reservation_id: None,
            last_flow_id: Some(cx.flow_id.to_string()),
            snapshot_id: r.snapshot_id,
            data_timestamp: r.data_timestamp.clone(),
        },
    )
    .await?;
    if !r.metadata.is_empty() {
        backups::backup_set_metadata(c, r.id, &r.metadata).await?;
    }
    let copied: Value = cx.output("copy_manifest")?;
    let tracking = copied["tracking"].as_str().unwrap_or("full");
    backups::backup_mark_available(
        c,
        r.id,
        &backups::Finished {
            object_count: r.object_count,
            tracking,
            fallback_reason: None,
            bytes_read: 0,
            stored_bytes: 0,
        },
    )
    .await?;
    Ok(Value::Null)
}
