//! Unmanaged snapshots (migration 0025): the data of a snapshot an admin
//! unmanaged, kept in its volume's chain under the name a manage takes back.
//! Each row is one use of its image (see `images::image_users`).

use scoria_model::{ImageId, VolumeId};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::{Conn, Result, StoreError, parse};

/// An unmanaged snapshot as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnmanagedSnapshot {
    pub backend: String,
    /// `snapshot-<id>`: the `source-name` of a manage.
    pub name: String,
    pub image_id: ImageId,
    /// The volume whose history it is.
    pub volume_id: VolumeId,
    /// GiB.
    pub size: i64,
    /// When the snapshot was taken.
    pub taken_at: String,
    /// When it was unmanaged.
    pub created_at: String,
}

fn from_row(r: &SqliteRow) -> Result<UnmanagedSnapshot> {
    Ok(UnmanagedSnapshot {
        backend: r.try_get("backend")?,
        name: r.try_get("name")?,
        image_id: parse("image id", r.try_get::<&str, _>("image_id")?)?,
        volume_id: parse("volume id", r.try_get::<&str, _>("volume_id")?)?,
        size: r.try_get("size")?,
        taken_at: r.try_get("taken_at")?,
        created_at: r.try_get("created_at")?,
    })
}

/// Record an unmanaged snapshot (in the transaction that removes the
/// snapshot's row, so that its image never lacks a user). A name already
/// taken on the backend is a duplicate.
pub async fn unmanaged_snapshot_record(conn: &mut Conn, u: &UnmanagedSnapshot) -> Result<()> {
    let r = sqlx::query(
        "INSERT INTO unmanaged_snapshots (backend, name, image_id, volume_id, size, taken_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (backend, name) DO NOTHING",
    )
    .bind(&u.backend)
    .bind(&u.name)
    .bind(u.image_id.to_string())
    .bind(u.volume_id.to_string())
    .bind(u.size)
    .bind(&u.taken_at)
    .bind(&u.created_at)
    .execute(conn)
    .await?;
    if r.rows_affected() == 0 {
        return Err(StoreError::Duplicate(format!(
            "unmanaged snapshot {} on {}",
            u.name, u.backend
        )));
    }
    Ok(())
}

/// One by its name on a backend.
pub async fn unmanaged_snapshot_get(
    conn: &mut Conn,
    backend: &str,
    name: &str,
) -> Result<Option<UnmanagedSnapshot>> {
    sqlx::query("SELECT * FROM unmanaged_snapshots WHERE backend = $1 AND name = $2")
        .bind(backend)
        .bind(name)
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// Every one on a backend, by name.
pub async fn unmanaged_snapshot_list_on_backend(
    conn: &mut Conn,
    backend: &str,
) -> Result<Vec<UnmanagedSnapshot>> {
    sqlx::query("SELECT * FROM unmanaged_snapshots WHERE backend = $1 ORDER BY name")
        .bind(backend)
        .fetch_all(conn)
        .await?
        .iter()
        .map(from_row)
        .collect()
}

/// Drop one (a manage took it back, in the transaction that gives its
/// image to the new snapshot); reports whether it was there.
pub async fn unmanaged_snapshot_remove(conn: &mut Conn, backend: &str, name: &str) -> Result<bool> {
    let r = sqlx::query("DELETE FROM unmanaged_snapshots WHERE backend = $1 AND name = $2")
        .bind(backend)
        .bind(name)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}
