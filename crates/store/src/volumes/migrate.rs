//! The writes of a migration (moving a volume's data to another backend,
//! `volume_migrate` in `scoria_core::flows`): its start and end each change
//! the row in one conditional statement, so a concurrent change of the
//! volume makes them not apply instead of mixing.

use scoria_model::volume::VolumeStatus;
use scoria_model::{ImageId, VolumeId, VolumeTypeId};

use crate::{Conn, Result, now};

/// The migration statuses during which a migration runs (Cinder's
/// `starting`, `migrating`, `completing`): the volume may not be deleted,
/// attached, extended, snapshotted, retyped or migrated again.
pub const MIGRATION_BUSY: &[&str] = &["starting", "migrating", "completing"];

/// Whether a volume's migration status says a migration runs.
pub fn is_migrating(migration_status: Option<&str>) -> bool {
    migration_status.is_some_and(|m| MIGRATION_BUSY.contains(&m))
}

/// Start a migration: only while the volume is `from` (its status), its
/// image is `image` and no migration runs; it becomes `to` with migration
/// status `migrating`, `flow` recorded as its last flow. Returns whether it
/// applied.
pub async fn volume_begin_migration(
    conn: &mut Conn,
    id: VolumeId,
    from: VolumeStatus,
    to: VolumeStatus,
    image: ImageId,
    flow: &str,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE volumes SET status = $3, migration_status = 'migrating', updated_at = $4,
                            last_flow_id = $5
         WHERE id = $1 AND status = $2 AND image_id = $6
           AND (migration_status IS NULL
                OR migration_status NOT IN ('starting', 'migrating', 'completing'))",
    )
    .bind(id.to_string())
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(now())
    .bind(flow)
    .bind(image.to_string())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Undo of a migration's start: migration status `error` while it is
/// `migrating`, and status `to` if it is still `during` (an admin's reset
/// meanwhile stays).
pub async fn volume_fail_migration(
    conn: &mut Conn,
    id: VolumeId,
    during: VolumeStatus,
    to: VolumeStatus,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE volumes SET status = CASE WHEN status = $2 THEN $3 ELSE status END,
                            migration_status = 'error', updated_at = $4
         WHERE id = $1 AND migration_status = 'migrating'",
    )
    .bind(id.to_string())
    .bind(during.as_str())
    .bind(to.as_str())
    .bind(now())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Where a migrated volume now lives, and what it becomes.
#[derive(Clone, Debug)]
pub struct Switch<'a> {
    /// The status it had before the migration (and has again).
    pub during: VolumeStatus,
    pub status: VolumeStatus,
    /// Its image before (the source) and after (on `backend`).
    pub from_image: ImageId,
    pub to_image: ImageId,
    pub backend: &'a str,
    pub availability_zone: &'a str,
    /// A retype's new type (and the multiattach flag it implies).
    pub new_type: Option<(VolumeTypeId, bool)>,
}

/// End a migration: the volume takes its new backend, image, zone (and
/// type), status `s.status` and migration status `success`, only while it is
/// still `s.during`, migrating, on `s.from_image`, and its quota committed.
/// The old image loses its user in this statement (the reaper's trigger
/// records it). Returns whether it applied.
pub async fn volume_switch_migration(
    conn: &mut Conn,
    id: VolumeId,
    s: &Switch<'_>,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE volumes SET backend = $2, image_id = $3, availability_zone = $4, status = $5,
                            migration_status = 'success', updated_at = $6,
                            volume_type_id = COALESCE($7, volume_type_id),
                            multiattach = COALESCE($8, multiattach)
         WHERE id = $1 AND status = $9 AND migration_status = 'migrating' AND image_id = $10
           AND reservation_id IS NULL",
    )
    .bind(id.to_string())
    .bind(s.backend)
    .bind(s.to_image.to_string())
    .bind(s.availability_zone)
    .bind(s.status.as_str())
    .bind(now())
    .bind(s.new_type.map(|(t, _)| t.to_string()))
    .bind(s.new_type.map(|(_, m)| m))
    .bind(s.during.as_str())
    .bind(s.from_image.to_string())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}
