//! Changing a backup's record, and the administrator's actions: update
//! (3.9: name, description; 3.43: metadata), `os-reset_status`,
//! `os-force_delete`, verification of a backup's data without restoring it
//! (a Scoria extension, also `scoria backup verify` on the command line),
//! and Cinder's backup records (`export_record` / `import_record`).
//!
//! A backup record is Cinder's: `backup_service` names the repository kind
//! that holds the data, `backup_url` is the backup's fields as base64 JSON.
//! Scoria's record also names the manifest the data is described by
//! (`scoria_manifest`: the exported backup's id), so a record imported under
//! another id (tempest does that: the same data, a new id) points at the
//! same chunks: the import copies that manifest under the new id, and both
//! backups share every chunk (a delete removes only its own manifest; the
//! collector keeps any chunk a manifest still names).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use scoria_model::BackupId;
use scoria_model::backup::BackupStatus;
use scoria_model::volume::{MAX_DESCRIPTION_LEN, MAX_NAME_LEN};
use scoria_storage::backup_repo::DynRepo;
use scoria_storage::backup_repo::engine::{self, Verified};
use scoria_store::backups as store;

use super::{BackupView, get_unchecked, not_found, visible};
use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result, from_outcome};
use crate::flows::backup_delete;
use crate::rules::validate::validate_text;

/// The `backup_service` of records of a directory repository.
pub const DIR_SERVICE: &str = "scoria.backup.repository.dir";

/// An update request: each field only when given.
#[derive(Clone, Debug, Default)]
pub struct UpdateRequest {
    pub name: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub metadata: Option<BTreeMap<String, String>>,
}

/// Update a backup's name, description or metadata (its owner or an admin).
pub async fn update(
    app: &App,
    ctx: &Context,
    id: BackupId,
    req: UpdateRequest,
) -> Result<BackupView> {
    for (field, value, max) in [
        ("name", &req.name, MAX_NAME_LEN),
        ("description", &req.description, MAX_DESCRIPTION_LEN),
    ] {
        if let Some(Some(v)) = value {
            validate_text(field, v, max)?;
        }
    }
    if let Some(m) = &req.metadata {
        crate::rules::validate::validate_metadata(m)?;
    }
    {
        let mut w = app.store().begin().await?;
        visible(&mut w, ctx, id).await?;
        ctx.authorize(Op::BackupUpdate)?;
        store::backup_update(
            &mut w,
            id,
            &store::BackupUpdate {
                name: req.name,
                description: req.description,
                metadata: req.metadata,
            },
        )
        .await?;
        w.commit().await.map_err(scoria_store::StoreError::from)?;
    }
    get_unchecked(app, id).await
}

/// Cinder's precedence for a project resource: a backup the caller cannot
/// see is a 404 whoever asks; the policy (403) comes after.
async fn lookup_then_authorize(
    app: &App,
    ctx: &Context,
    id: BackupId,
    op: Op,
) -> Result<scoria_store::backups::Backup> {
    let mut conn = app.store().read().await?;
    let b = visible(&mut conn, ctx, id).await?;
    ctx.authorize(op)?;
    Ok(b)
}

/// `os-reset_status`: an admin sets a backup `available` or `error` (Cinder's
/// two), refused while a flow works on it (it ends by itself: Scoria's
/// flows resume or unwind after any crash).
pub async fn reset_status(app: &App, ctx: &Context, id: BackupId, status: &str) -> Result<()> {
    lookup_then_authorize(app, ctx, id, Op::BackupResetStatus).await?;
    let to: BackupStatus = status
        .parse()
        .ok()
        .filter(|s| matches!(s, BackupStatus::Available | BackupStatus::Error))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "Invalid input for field/attribute status. Value: {status}. '{status}' is not one of ['available', 'error']"
            ))
        })?;
    // The repository is read before the write transaction opens: no I/O
    // outside the database while the one writer is held.
    if to == BackupStatus::Available {
        let repo = app.env.backup_repo.clone();
        if manifest(&repo, id).await?.is_none() {
            return Err(Error::InvalidState(format!(
                "Invalid backup: backup {id} has no data in the repository; it cannot be available."
            )));
        }
    }
    let mut w = app.store().begin().await?;
    let b = store::backup_get(&mut w, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let busy = scoria_store::flows::flow_list_unsettled_for(&mut w, &id.to_string())
        .await?
        .into_iter()
        .any(|f| f.state != scoria_model::flow::FlowState::Stuck);
    if busy {
        return Err(Error::InvalidState(format!(
            "Invalid backup: backup {id} is {} and a flow is still working on it; it ends by itself.",
            b.status
        )));
    }
    store::backup_set_status(&mut w, id, &[], to, None, None).await?;
    w.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// `os-force_delete`: delete a backup in any status no running flow holds.
pub async fn force_delete(app: &App, ctx: &Context, id: BackupId) -> Result<()> {
    lookup_then_authorize(app, ctx, id, Op::BackupForceDelete).await?;
    let handle = app
        .engine
        .start::<backup_delete::BackupDelete>(backup_delete::Params {
            backup_id: id,
            project_id: None,
            force: true,
        })?;
    handle
        .wait_step("begin_delete")
        .await
        .map_err(from_outcome)?;
    Ok(())
}

async fn manifest(
    repo: &DynRepo,
    id: BackupId,
) -> Result<Option<scoria_storage::backup_repo::Manifest>> {
    let r = repo.clone();
    let name = id.to_string();
    tokio::task::spawn_blocking(move || r.get_manifest(&name))
        .await
        .map_err(|e| Error::internal("the repository read did not run", e))?
        .map_err(|e| Error::internal("the backup repository cannot be read", e))
}

/// Check every chunk of backup `id` in `repo`: present, decompresses, and
/// the bytes its hash names. Reports each bad chunk; changes nothing.
pub async fn verify_in(repo: &DynRepo, id: BackupId) -> Result<Verified> {
    let m = manifest(repo, id).await?.ok_or_else(|| {
        Error::InvalidState(format!(
            "Invalid backup: backup {id} has no manifest in the repository."
        ))
    })?;
    engine::verify_all(repo, &m)
        .await
        .map_err(|e| Error::internal("the backup repository cannot be read", e))
}

/// Verify a backup through the API (admin).
pub async fn verify(app: &App, ctx: &Context, id: BackupId) -> Result<Verified> {
    let b = lookup_then_authorize(app, ctx, id, Op::BackupVerify).await?;
    if b.status == BackupStatus::Creating {
        return Err(Error::InvalidState(format!(
            "Invalid backup: backup {id} is still being created."
        )));
    }
    let repo = app.env.backup_repo.clone();
    verify_in(&repo, id).await
}

pub use crate::flows::backup_import::Record;

/// An exported record: Cinder's `backup_service` and `backup_url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportedRecord {
    pub backup_service: String,
    pub backup_url: String,
}

/// `export_record` (admin): the record of an `available` backup.
pub async fn export_record(app: &App, ctx: &Context, id: BackupId) -> Result<ExportedRecord> {
    let b = lookup_then_authorize(app, ctx, id, Op::BackupExportRecord).await?;
    if b.status != BackupStatus::Available {
        return Err(Error::InvalidState(format!(
            "Invalid backup: Backup status must be available and not {}.",
            b.status
        )));
    }
    let record = Record {
        id: b.id,
        volume_id: b.volume_id,
        snapshot_id: b.snapshot_id,
        parent_id: b.parent_id,
        display_name: b.name,
        display_description: b.description,
        container: b.container,
        availability_zone: b.availability_zone,
        size: b.size,
        object_count: b.object_count,
        user_id: Some(b.user_id),
        project_id: Some(b.project_id),
        data_timestamp: Some(b.data_timestamp),
        metadata: b.metadata,
        scoria_manifest: Some(b.id),
    };
    let json = serde_json::to_vec(&record)
        .map_err(|e| Error::internal("a backup record cannot be written", e))?;
    Ok(ExportedRecord {
        backup_service: DIR_SERVICE.into(),
        backup_url: BASE64.encode(json),
    })
}

/// Decode an imported record, refusing what is not one of ours.
pub fn decode_record(backup_service: &str, backup_url: &str) -> Result<Record> {
    if backup_service != DIR_SERVICE {
        return Err(Error::Invalid(format!(
            "Invalid input received: backup service {backup_service} is not this Scoria's ({DIR_SERVICE}): its records cannot be imported here."
        )));
    }
    let bytes = BASE64.decode(backup_url.trim()).map_err(|e| {
        Error::Invalid(format!(
            "Invalid input received: backup_url is not base64: {e}."
        ))
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::Invalid(format!(
            "Invalid input received: backup_url is not a backup record: {e}."
        ))
    })
}

/// `import_record` (admin): a backup row for a record whose data is in the
/// repository, owned by the importing admin's project. Returns once it is
/// `available`.
pub async fn import_record(
    app: &App,
    ctx: &Context,
    backup_service: &str,
    backup_url: &str,
) -> Result<BackupView> {
    ctx.authorize(Op::BackupImportRecord)?;
    let record = decode_record(backup_service, backup_url)?;
    let id = record.id;
    {
        let mut conn = app.store().read().await?;
        if store::backup_get(&mut conn, id).await?.is_some() {
            return Err(Error::Invalid(format!(
                "Invalid backup: Backup already exists in database: {id}."
            )));
        }
    }
    let handle = app
        .engine
        .start::<crate::flows::backup_import::BackupImport>(
            crate::flows::backup_import::Params {
                record,
                project_id: ctx.project()?.0.clone(),
                user_id: ctx.user_id.0.clone(),
            },
        )?;
    match handle.wait().await {
        scoria_flows::Outcome::Done => get_unchecked(app, id).await,
        other => Err(from_outcome(other)),
    }
}
