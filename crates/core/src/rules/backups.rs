//! Backup rules shared by the backup calls, the volume create that restores
//! a backup and the backup flows: what a caller may see and restore, and
//! Cinder's 404.

use scoria_model::BackupId;
use scoria_model::backup::BackupStatus;
use scoria_store::Conn;
use scoria_store::backups::{self as store, Backup};

use crate::context::{Context, Op};
use crate::error::{Error, Result};

/// Cinder's 404 for a backup.
pub fn not_found(id: impl std::fmt::Display) -> Error {
    Error::NotFound(format!("Backup {id} could not be found."))
}

/// A backup the caller may see: its project's, or any for an admin.
pub(crate) async fn visible(conn: &mut Conn, ctx: &Context, id: BackupId) -> Result<Backup> {
    match store::backup_get(conn, id).await? {
        Some(b)
            if ctx.is_admin() || ctx.project_id.as_ref().is_some_and(|p| p.0 == b.project_id) =>
        {
            Ok(b)
        }
        _ => Err(not_found(id)),
    }
}

/// A backup the caller may restore now: visible, `available`. (The flow
/// that restores it holds it again, atomically.)
pub(crate) async fn restorable(conn: &mut Conn, ctx: &Context, id: BackupId) -> Result<Backup> {
    let b = visible(conn, ctx, id).await?;
    ctx.authorize(Op::BackupRestore)?;
    if b.status != BackupStatus::Available {
        return Err(Error::InvalidState(format!(
            "Invalid backup: Backup status must be available, but is {}.",
            b.status
        )));
    }
    Ok(b)
}
