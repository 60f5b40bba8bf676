//! A volume made from a backup: Cinder's `backup_id` at volume create (3.47),
//! and the new volume a restore without `volume_id` makes for itself.
//!
//! The create flow's steps do it, so it is one flow that resumes or unwinds
//! like any create, and never a blank volume left behind by a restore that
//! did not start:
//!
//! - `create_entry` holds the backup in its transaction ([`hold`]: it must be
//!   the project's and `available`; it becomes `restoring`, this flow its
//!   last), so nobody deletes it or restores it elsewhere meanwhile;
//! - `schedule` places a blank volume of the backend's format, as for any
//!   blank volume, and makes it `restoring-backup` (Cinder's status while a
//!   backup's data is written);
//! - `create_on_backend` makes the blank image and [`restore`]s the backup
//!   into it: every chunk checked before anything is written (a missing or
//!   corrupt chunk fails the create naming the backup and the chunk);
//! - `mark_available` lets go of the backup ([`release`]) and gives the
//!   volume the backed-up volume's metadata; an undo lets go too, with the
//!   failure as the backup's `fail_reason`.
//!
//! A failed create leaves the volume `error`, as Cinder does, except the
//! volume a restore made for itself ([`FromBackup::remove_on_failure`]): the
//! user asked for a restore, not a volume, so that volume goes (its quota
//! with it) and the backup's `fail_reason` and the project's user message
//! say why.

use scoria_flows::{Cx, StepError};
use scoria_model::BackupId;
use scoria_model::backup::BackupStatus;
use scoria_store::{Conn, backups};
use serde::{Deserialize, Serialize};

use super::{Placement, VolumeCreate};
use crate::error::Error;
use crate::flows::storage_error;

/// The backup a volume is made from.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FromBackup {
    pub backup_id: BackupId,
    /// Remove the volume when the flow fails after the API answered, instead
    /// of leaving it `error`.
    #[serde(default)]
    pub remove_on_failure: bool,
}

/// In `create_entry`: the backup is the project's, `available`, no larger
/// than the volume, and now `restoring` for this flow.
pub(super) async fn hold(cx: &Cx<VolumeCreate>, c: &mut Conn) -> Result<(), StepError> {
    let p = &cx.params;
    let Some(from) = &p.backup else {
        return Ok(());
    };
    let b = backups::backup_get(c, from.backup_id)
        .await?
        .filter(|b| b.project_id == p.project_id)
        .ok_or_else(|| crate::rules::backups::not_found(from.backup_id))?;
    if b.status != BackupStatus::Available {
        return Err(Error::InvalidState(format!(
            "Invalid backup: Backup status must be available, but is {}.",
            b.status
        ))
        .into());
    }
    if p.size < b.size {
        return Err(Error::Invalid(format!(
            "Invalid input received: volume size {} GB is too small to restore backup of size {} GB.",
            p.size, b.size
        ))
        .into());
    }
    if !backups::backup_hold_for_restore(c, b.id, &cx.flow_id.to_string()).await? {
        return Err(Error::InvalidState(format!(
            "Invalid backup: backup {} changed status.",
            b.id
        ))
        .into());
    }
    Ok(())
}

/// In `mark_available` and the undo of `create_entry`: the backup is
/// `available` again, with `failure` as its `fail_reason`.
pub(super) async fn release(
    cx: &Cx<VolumeCreate>,
    c: &mut Conn,
    failure: Option<&str>,
) -> Result<(), StepError> {
    if let Some(from) = &cx.params.backup {
        if failure.is_none() {
            crate::flows::backup_restore::give_volume_metadata(
                c,
                from.backup_id,
                cx.params.volume_id,
            )
            .await?;
        }
        let reason = failure.map(|f| {
            format!(
                "restore into new volume {} failed: {f}",
                cx.params.volume_id
            )
        });
        backups::backup_release_by_flow(
            c,
            from.backup_id,
            &cx.flow_id.to_string(),
            reason.as_deref(),
        )
        .await?;
    }
    Ok(())
}

/// In `create_on_backend`, once the blank image exists: the backup's data
/// written into it.
pub(super) async fn restore(cx: &Cx<VolumeCreate>, place: &Placement) -> Result<(), StepError> {
    let Some(from) = &cx.params.backup else {
        return Ok(());
    };
    let driver = &cx.env.backend(&place.backend)?.driver;
    let file = driver
        .local_file(&place.location)
        .await
        .map_err(|e| storage_error("find the new volume's image", e))?;
    let done = crate::flows::backup_restore::restore_into(&cx.env, from.backup_id, &file).await?;
    tracing::info!(
        backup = %from.backup_id,
        volume = %cx.params.volume_id,
        chunks = done.chunks,
        bytes = done.bytes,
        "backup restored into a new volume"
    );
    Ok(())
}
