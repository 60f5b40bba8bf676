//! Backups (see migration 0018). Status changes are conditional updates, as
//! for volumes; usage against `backups` and `backup_gigabytes` is derived from
//! the rows whose reservation is cleared (`quotas::quota_usage`).

use scoria_model::backup::BackupStatus;
use scoria_model::{BackupId, ReservationId, SnapshotId, VolumeId};
use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::shared::{Keyset, SortDir, SqlValue};
use crate::{Conn, Result, StoreError, now, parse};

/// A backup as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Backup {
    pub id: BackupId,
    pub project_id: String,
    pub user_id: String,
    pub volume_id: VolumeId,
    pub snapshot_id: Option<SnapshotId>,
    /// The backup this one is an increment on.
    pub parent_id: Option<BackupId>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub container: Option<String>,
    pub availability_zone: Option<String>,
    /// GiB: the volume's size.
    pub size: i64,
    pub status: BackupStatus,
    pub fail_reason: Option<String>,
    pub object_count: i64,
    pub tracking: Option<String>,
    pub fallback_reason: Option<String>,
    pub bytes_read: Option<i64>,
    pub stored_bytes: Option<i64>,
    pub reservation_id: Option<ReservationId>,
    pub last_flow_id: Option<String>,
    pub data_timestamp: String,
    pub created_at: String,
    pub updated_at: Option<String>,
    /// Cinder's backup metadata (3.43).
    pub metadata: BTreeMap<String, String>,
    /// The volume's metadata as it was backed up; a restore applies it.
    pub volume_metadata: BTreeMap<String, String>,
}

/// What a create flow writes when it makes the entry.
#[derive(Clone, Debug)]
pub struct NewBackup {
    pub id: BackupId,
    pub project_id: String,
    pub user_id: String,
    pub volume_id: VolumeId,
    pub parent_id: Option<BackupId>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub container: Option<String>,
    pub availability_zone: Option<String>,
    pub size: i64,
    pub reservation_id: Option<ReservationId>,
    pub last_flow_id: Option<String>,
    /// The snapshot backed up, when the backup reads one.
    pub snapshot_id: Option<SnapshotId>,
    /// When the data was as backed up (Cinder's `data_timestamp`): the
    /// snapshot's `created_at` for a backup of a snapshot, else now.
    pub data_timestamp: Option<String>,
}

fn from_row(r: &SqliteRow) -> Result<Backup> {
    let opt_id = |col: &str| -> Result<Option<String>> { Ok(r.try_get::<Option<String>, _>(col)?) };
    Ok(Backup {
        id: parse("backup id", r.try_get::<&str, _>("id")?)?,
        project_id: r.try_get("project_id")?,
        user_id: r.try_get("user_id")?,
        volume_id: parse("volume id", r.try_get::<&str, _>("volume_id")?)?,
        snapshot_id: opt_id("snapshot_id")?
            .map(|s| parse("snapshot id", &s))
            .transpose()?,
        parent_id: opt_id("parent_id")?
            .map(|s| parse("backup id", &s))
            .transpose()?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        container: r.try_get("container")?,
        availability_zone: r.try_get("availability_zone")?,
        size: r.try_get("size")?,
        status: parse("backup status", r.try_get::<&str, _>("status")?)?,
        fail_reason: r.try_get("fail_reason")?,
        object_count: r.try_get("object_count")?,
        tracking: r.try_get("tracking")?,
        fallback_reason: r.try_get("fallback_reason")?,
        bytes_read: r.try_get("bytes_read")?,
        stored_bytes: r.try_get("stored_bytes")?,
        reservation_id: opt_id("reservation_id")?
            .map(|s| parse("reservation id", &s))
            .transpose()?,
        last_flow_id: r.try_get("last_flow_id")?,
        data_timestamp: r.try_get("data_timestamp")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        metadata: serde_json::from_str(r.try_get::<&str, _>("metadata")?)
            .map_err(|e| StoreError::Corrupt(format!("backup metadata: {e}")))?,
        volume_metadata: serde_json::from_str(r.try_get::<&str, _>("volume_metadata")?)
            .map_err(|e| StoreError::Corrupt(format!("backup volume metadata: {e}")))?,
    })
}

/// Insert a new backup (`creating`). An entry with that id already present
/// is `Duplicate`.
pub async fn backup_create(conn: &mut Conn, b: &NewBackup) -> Result<()> {
    let at = now();
    let r = sqlx::query(
        "INSERT INTO backups (id, project_id, user_id, volume_id, parent_id, name, description,
                container, availability_zone, size, status, reservation_id, last_flow_id,
                data_timestamp, created_at, snapshot_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'creating', $11, $12,
                 COALESCE($14, $13), $13, $15)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(b.id.to_string())
    .bind(&b.project_id)
    .bind(&b.user_id)
    .bind(b.volume_id.to_string())
    .bind(b.parent_id.map(|p| p.to_string()))
    .bind(&b.name)
    .bind(&b.description)
    .bind(&b.container)
    .bind(&b.availability_zone)
    .bind(b.size)
    .bind(b.reservation_id.map(|r| r.to_string()))
    .bind(&b.last_flow_id)
    .bind(at)
    .bind(&b.data_timestamp)
    .bind(b.snapshot_id.map(|s| s.to_string()))
    .execute(&mut *conn)
    .await?;
    if r.rows_affected() == 0 {
        return Err(StoreError::Duplicate(format!("backup {}", b.id)));
    }
    Ok(())
}

pub async fn backup_get(conn: &mut Conn, id: BackupId) -> Result<Option<Backup>> {
    let row = sqlx::query("SELECT * FROM backups WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Backups sort by the keys snapshots do (the same columns, Cinder's
/// spellings).
pub use crate::snapshots::SortKey;

fn sort_value(k: SortKey, b: &Backup) -> SqlValue {
    match k {
        SortKey::Id => SqlValue::Text(b.id.to_string()),
        SortKey::Name => SqlValue::Text(b.name.clone().unwrap_or_default()),
        SortKey::Size => SqlValue::Int(b.size),
        SortKey::Status => SqlValue::Text(b.status.as_str().to_owned()),
        SortKey::CreatedAt => SqlValue::Text(b.created_at.clone()),
        SortKey::UpdatedAt => SqlValue::Text(b.updated_at.clone().unwrap_or_default()),
        SortKey::VolumeId => SqlValue::Text(b.volume_id.to_string()),
        SortKey::Description => SqlValue::Text(b.description.clone().unwrap_or_default()),
        SortKey::ProjectId => SqlValue::Text(b.project_id.clone()),
    }
}

/// Filters, order and page of a backup list.
#[derive(Clone, Debug, Default)]
pub struct BackupQuery {
    /// Only this project's backups; `None` lists every project's (admins).
    pub project_id: Option<String>,
    pub volume_id: Option<VolumeId>,
    pub status: Option<String>,
    pub name: Option<String>,
    /// Sort keys in priority order; empty means `created_at desc`; `id` is
    /// always appended as the tie-breaker.
    pub sort: Vec<(SortKey, SortDir)>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    /// Start after this backup (which must match the query's project).
    pub marker: Option<BackupId>,
}

fn filtered(select: &str, q: &BackupQuery) -> Keyset {
    let mut k = Keyset::new(select);
    if let Some(p) = &q.project_id {
        k.filter("project_id", SqlValue::Text(p.clone()));
    }
    if let Some(v) = &q.volume_id {
        k.filter("volume_id", SqlValue::Text(v.to_string()));
    }
    if let Some(s) = &q.status {
        k.filter("status", SqlValue::Text(s.clone()));
    }
    if let Some(n) = &q.name {
        k.filter("name", SqlValue::Text(n.clone()));
    }
    k
}

/// A page of backups; `MarkerNotFound` when the marker names no visible one.
pub async fn backup_list(conn: &mut Conn, q: &BackupQuery) -> Result<Vec<Backup>> {
    let mut sort = if q.sort.is_empty() {
        vec![(SortKey::CreatedAt, SortDir::Desc)]
    } else {
        q.sort.clone()
    };
    if !sort.iter().any(|(k, _)| *k == SortKey::Id) {
        let last_dir = sort.last().map(|s| s.1).unwrap_or(SortDir::Desc);
        sort.push((SortKey::Id, last_dir));
    }
    let mut query = filtered("SELECT * FROM backups WHERE 1 = 1", q);
    if let Some(marker) = q.marker {
        let m = match backup_get(conn, marker).await? {
            Some(m) if q.project_id.as_ref().is_none_or(|p| *p == m.project_id) => m,
            _ => return Err(StoreError::MarkerNotFound(marker.to_string())),
        };
        let after: Vec<_> = sort
            .iter()
            .map(|(k, d)| (k.expr(), *d, sort_value(*k, &m)))
            .collect();
        query.after(&after);
    }
    let order: Vec<_> = sort.iter().map(|(k, d)| (k.expr(), *d)).collect();
    query.order_and_page(&order, q.limit, q.offset);
    let rows = query.fetch_all(&mut *conn).await?;
    rows.iter().map(from_row).collect()
}

/// How many backups match the query's filters (ignoring sort and paging).
pub async fn backup_count(conn: &mut Conn, q: &BackupQuery) -> Result<i64> {
    filtered("SELECT COUNT(*) FROM backups WHERE 1 = 1", q)
        .fetch_count(conn)
        .await
}

/// The `available` backup of a volume with the newest data (by
/// `data_timestamp`, as Cinder picks an incremental's parent).
pub async fn backup_latest_available(conn: &mut Conn, volume: VolumeId) -> Result<Option<Backup>> {
    let row = sqlx::query(
        "SELECT * FROM backups WHERE volume_id = $1 AND status = 'available'
         ORDER BY data_timestamp DESC, created_at DESC, rowid DESC LIMIT 1",
    )
    .bind(volume.to_string())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// How many backups are increments on `id`.
pub async fn backup_dependents(conn: &mut Conn, id: BackupId) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM backups WHERE parent_id = $1")
            .bind(id.to_string())
            .fetch_one(conn)
            .await?,
    )
}

/// Of `ids`, those with at least one dependent backup.
pub async fn backup_with_dependents(conn: &mut Conn, ids: &[BackupId]) -> Result<Vec<BackupId>> {
    // One query for a whole page (`backups_by_parent` serves it), not one per
    // backup.
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let q = sqlx::query_scalar::<_, String>(
        "SELECT DISTINCT parent_id FROM backups
         WHERE parent_id IN (SELECT value FROM json_each($1))",
    )
    .bind(crate::shared::id_list(ids));
    let parents: std::collections::HashSet<String> = q.fetch_all(conn).await?.into_iter().collect();
    Ok(ids
        .iter()
        .filter(|id| parents.contains(&id.to_string()))
        .copied()
        .collect())
}

/// Move a backup to `to` if it is in one of `from` (any when empty); `flow`,
/// when given, becomes its last flow; `fail_reason` is replaced when given
/// (`Some(None)` clears it). Reports whether it moved.
pub async fn backup_set_status(
    conn: &mut Conn,
    id: BackupId,
    from: &[BackupStatus],
    to: BackupStatus,
    flow: Option<&str>,
    fail_reason: Option<Option<&str>>,
) -> Result<bool> {
    let mut sql = String::from(
        "UPDATE backups SET status = $2, updated_at = $3, last_flow_id = COALESCE($4, last_flow_id),
                fail_reason = CASE WHEN $5 THEN $6 ELSE fail_reason END
         WHERE id = $1",
    );
    if !from.is_empty() {
        let params: Vec<String> = (0..from.len()).map(|i| format!("${}", i + 7)).collect();
        sql.push_str(&format!(" AND status IN ({})", params.join(", ")));
    }
    let mut q = sqlx::query(&sql)
        .bind(id.to_string())
        .bind(to.as_str())
        .bind(now())
        .bind(flow)
        .bind(fail_reason.is_some())
        .bind(fail_reason.flatten());
    for s in from {
        q = q.bind(s.as_str());
    }
    Ok(q.execute(conn).await?.rows_affected() == 1)
}

/// What a finished backup read and stored.
#[derive(Clone, Debug)]
pub struct Finished<'a> {
    pub object_count: i64,
    pub tracking: &'a str,
    pub fallback_reason: Option<&'a str>,
    pub bytes_read: i64,
    pub stored_bytes: i64,
}

/// Make a `creating` backup `available` with what it recorded.
pub async fn backup_mark_available(
    conn: &mut Conn,
    id: BackupId,
    f: &Finished<'_>,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE backups SET status = 'available', object_count = $2, tracking = $3,
                fallback_reason = $4, bytes_read = $5, stored_bytes = $6, updated_at = $7,
                fail_reason = NULL
         WHERE id = $1 AND status = 'creating'",
    )
    .bind(id.to_string())
    .bind(f.object_count)
    .bind(f.tracking)
    .bind(f.fallback_reason)
    .bind(f.bytes_read)
    .bind(f.stored_bytes)
    .bind(now())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The backup counts against its project on its own: clear its reservation
/// (the caller deletes the reservation in the same transaction).
pub async fn backup_commit_quota(conn: &mut Conn, id: BackupId) -> Result<bool> {
    let r = sqlx::query("UPDATE backups SET reservation_id = NULL WHERE id = $1")
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Remove the entry whatever its status; returns whether a row went.
pub async fn backup_delete(conn: &mut Conn, id: BackupId) -> Result<bool> {
    let r = sqlx::query("DELETE FROM backups WHERE id = $1")
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Hold an `available` backup for flow `flow` to restore it: `restoring`
/// with the flow as its last. Reports whether it moved.
pub async fn backup_hold_for_restore(conn: &mut Conn, id: BackupId, flow: &str) -> Result<bool> {
    backup_set_status(
        conn,
        id,
        &[BackupStatus::Available],
        BackupStatus::Restoring,
        Some(flow),
        Some(None),
    )
    .await
}

/// Let go of a backup flow `flow` held ([`backup_hold_for_restore`]): back
/// to `available`, with `fail_reason` when the restore failed. A backup
/// another flow holds (or none) is left alone.
pub async fn backup_release_by_flow(
    conn: &mut Conn,
    id: BackupId,
    flow: &str,
    fail_reason: Option<&str>,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE backups SET status = 'available', updated_at = $3, fail_reason = $4
         WHERE id = $1 AND status = 'restoring' AND last_flow_id = $2",
    )
    .bind(id.to_string())
    .bind(flow)
    .bind(now())
    .bind(fail_reason)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Replace a backup's metadata.
pub async fn backup_set_metadata(
    conn: &mut Conn,
    id: BackupId,
    metadata: &BTreeMap<String, String>,
) -> Result<bool> {
    let json = serde_json::to_string(metadata)
        .map_err(|e| StoreError::Corrupt(format!("backup metadata: {e}")))?;
    let r = sqlx::query("UPDATE backups SET metadata = $2, updated_at = $3 WHERE id = $1")
        .bind(id.to_string())
        .bind(json)
        .bind(now())
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// What an update changes: each field only when given (`Some(None)` clears
/// a name or description).
#[derive(Clone, Debug, Default)]
pub struct BackupUpdate {
    pub name: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub metadata: Option<BTreeMap<String, String>>,
}

/// Apply `u` to a backup; reports whether it exists.
pub async fn backup_update(conn: &mut Conn, id: BackupId, u: &BackupUpdate) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE backups SET
            name = CASE WHEN $2 THEN $3 ELSE name END,
            description = CASE WHEN $4 THEN $5 ELSE description END,
            updated_at = $6
         WHERE id = $1",
    )
    .bind(id.to_string())
    .bind(u.name.is_some())
    .bind(u.name.clone().flatten())
    .bind(u.description.is_some())
    .bind(u.description.clone().flatten())
    .bind(now())
    .execute(&mut *conn)
    .await?;
    if r.rows_affected() != 1 {
        return Ok(false);
    }
    if let Some(m) = &u.metadata {
        backup_set_metadata(conn, id, m).await?;
    }
    Ok(true)
}

/// Record the backed-up volume's metadata with the backup.
pub async fn backup_set_volume_metadata(
    conn: &mut Conn,
    id: BackupId,
    metadata: &BTreeMap<String, String>,
) -> Result<bool> {
    let json = serde_json::to_string(metadata)
        .map_err(|e| StoreError::Corrupt(format!("backup volume metadata: {e}")))?;
    let r = sqlx::query("UPDATE backups SET volume_metadata = $2 WHERE id = $1")
        .bind(id.to_string())
        .bind(json)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}
