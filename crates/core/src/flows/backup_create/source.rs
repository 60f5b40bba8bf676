//! What `copy` reads, by source, and what its undo takes back.
//!
//! - The volume's image file (an `available` volume): the engine adds the new
//!   bitmap to the file and retires the older ones itself.
//! - A snapshot's frozen image: read as it is; no bitmap is added or removed
//!   (a frozen image never changes, and the volume's bitmaps are not the
//!   snapshot's business).
//! - An in-use volume: the daemon of the attachment that writes it retires
//!   the older bitmaps and starts a fleecing export (`crate::exports::fleece`,
//!   under the backend's export lock), the engine reads that export over NBD,
//!   and the fleece is taken down again whether the read worked or not. A
//!   re-run after a crash that finds the manifest only takes the fleece down.

use scoria_flows::StepError;
use scoria_storage::LocalFile;
use scoria_storage::backup_repo::Manifest;
use scoria_storage::backup_repo::engine::{self, BackupJob, NbdExport, Source};

use super::Plan;
use crate::Env;
use crate::flows::storage_error;

async fn local_file(env: &Env, plan: &Plan) -> Result<LocalFile, StepError> {
    env.backend(&plan.backend)?
        .driver
        .local_file(&plan.image_name)
        .await
        .map_err(|e| storage_error("find the image to back up", e))
}

/// Read the backup `job` from the source `plan` names.
pub(super) async fn read(env: &Env, plan: &Plan, job: &BackupJob) -> Result<Manifest, StepError> {
    let repo = env.backup_repo.clone();
    let backed_up = |e| storage_error("back up the volume", e);
    if plan.snapshot.is_some() {
        let file = local_file(env, plan).await?;
        return engine::backup_from(&Source::Frozen(file), &repo, job)
            .await
            .map_err(backed_up);
    }
    let Some(attachment) = plan.attachment else {
        let file = local_file(env, plan).await?;
        return engine::backup(&file, &repo, job).await.map_err(backed_up);
    };
    let r = repo.clone();
    let id = job.backup_id.clone();
    let stored = tokio::task::spawn_blocking(move || r.get_manifest(&id))
        .await
        .map_err(|e| StepError::msg(e.to_string()))?
        .map_err(|e| storage_error("read the backup's manifest", e))?;
    if let Some(m) = stored {
        crate::exports::unfleece(env, &plan.backend, attachment, &job.backup_id, false).await?;
        return Ok(m);
    }
    let mut keep: Vec<String> = job
        .keep_bitmaps
        .iter()
        .map(|b| engine::bitmap_name(b))
        .collect();
    keep.push(engine::bitmap_name(&job.backup_id));
    let parent_bitmap = job
        .parent
        .as_ref()
        .map(|p| engine::bitmap_name(&p.backup_id));
    keep.extend(parent_bitmap.clone());
    let fleece = crate::exports::fleece(
        env,
        &plan.backend,
        attachment,
        &job.backup_id,
        parent_bitmap.as_deref(),
        &keep,
    )
    .await?;
    let source = Source::Nbd(NbdExport {
        source: fleece.source,
        changes: fleece.changes,
        no_changes: fleece.no_changes,
    });
    let read = engine::backup_from(&source, &repo, job).await;
    let down =
        crate::exports::unfleece(env, &plan.backend, attachment, &job.backup_id, false).await;
    let m = read.map_err(backed_up)?;
    down?;
    Ok(m)
}

/// Undo what `read` left besides the manifest: the fleece and the new bitmap
/// of an in-use backup, the new bitmap of an offline one. Idempotent.
pub(super) async fn forget(env: &Env, plan: &Plan, backup_id: &str) -> Result<(), StepError> {
    if plan.snapshot.is_some() {
        return Ok(());
    }
    if let Some(attachment) = plan.attachment {
        return crate::exports::unfleece(env, &plan.backend, attachment, backup_id, true).await;
    }
    match env
        .backend(&plan.backend)?
        .driver
        .local_file(&plan.image_name)
        .await
    {
        Ok(file) => engine::forget_bitmap(&file, backup_id)
            .await
            .map_err(|e| storage_error("remove the backup's dirty bitmap", e)),
        Err(scoria_storage::StorageError::NotFound(_)) => Ok(()),
        Err(e) => Err(storage_error("find the volume's image", e)),
    }
}
