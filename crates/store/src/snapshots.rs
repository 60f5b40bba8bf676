//! Snapshots and their metadata.
//!
//! A snapshot row points at the frozen image it captured (`image_id`), which
//! is one of that image's uses; the image outlives the row while overlays
//! still stand on it. Status changes are conditional updates, as for volumes.

use std::collections::BTreeMap;

use scoria_model::snapshot::SnapshotStatus;
use scoria_model::{ImageId, ReservationId, SnapshotId, VolumeId, VolumeTypeId};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

pub use crate::shared::SortDir;
use crate::shared::{KeyValues, Keyset, SqlValue};
use crate::{Conn, Result, StoreError, now, parse};

/// A snapshot as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub id: SnapshotId,
    pub project_id: String,
    pub user_id: String,
    /// The volume it was taken of.
    pub volume_id: VolumeId,
    pub volume_type_id: VolumeTypeId,
    pub name: Option<String>,
    pub description: Option<String>,
    /// GiB: the volume's size when it was taken.
    pub size: i64,
    pub status: SnapshotStatus,
    /// The frozen image, once taken.
    pub image_id: Option<ImageId>,
    pub reservation_id: Option<ReservationId>,
    pub last_flow_id: Option<String>,
    pub group_snapshot_id: Option<String>,
    /// The percent Nova last reported (`os-update_snapshot_status`), if any.
    pub progress: Option<i64>,
    pub created_at: String,
    pub updated_at: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// What a create flow writes when it makes the entry.
#[derive(Clone, Debug)]
pub struct NewSnapshot {
    pub id: SnapshotId,
    pub project_id: String,
    pub user_id: String,
    pub volume_id: VolumeId,
    pub volume_type_id: VolumeTypeId,
    pub name: Option<String>,
    pub description: Option<String>,
    pub size: i64,
    pub reservation_id: Option<ReservationId>,
    pub last_flow_id: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

fn from_row(r: &SqliteRow) -> Result<Snapshot> {
    Ok(Snapshot {
        id: parse("snapshot id", r.try_get::<&str, _>("id")?)?,
        project_id: r.try_get("project_id")?,
        user_id: r.try_get("user_id")?,
        volume_id: parse("volume id", r.try_get::<&str, _>("volume_id")?)?,
        volume_type_id: parse("volume type id", r.try_get::<&str, _>("volume_type_id")?)?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        size: r.try_get("size")?,
        status: parse("snapshot status", r.try_get::<&str, _>("status")?)?,
        image_id: r
            .try_get::<Option<&str>, _>("image_id")?
            .map(|s| parse("image id", s))
            .transpose()?,
        reservation_id: r
            .try_get::<Option<&str>, _>("reservation_id")?
            .map(|s| parse("reservation id", s))
            .transpose()?,
        last_flow_id: r.try_get("last_flow_id")?,
        group_snapshot_id: r.try_get("group_snapshot_id")?,
        progress: r.try_get("progress")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        metadata: BTreeMap::new(),
    })
}

const METADATA: KeyValues = KeyValues {
    table: "snapshot_metadata",
    owner: "snapshot_id",
};

/// Insert a new snapshot (`creating`) with its metadata. An entry with that id
/// already present is `Duplicate`.
pub async fn snapshot_create(conn: &mut Conn, s: &NewSnapshot) -> Result<()> {
    let r = sqlx::query(
        "INSERT INTO snapshots (id, project_id, user_id, volume_id, volume_type_id, name,
                description, size, status, reservation_id, last_flow_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'creating', $9, $10, $11)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(s.id.to_string())
    .bind(&s.project_id)
    .bind(&s.user_id)
    .bind(s.volume_id.to_string())
    .bind(s.volume_type_id.to_string())
    .bind(&s.name)
    .bind(&s.description)
    .bind(s.size)
    .bind(s.reservation_id.map(|r| r.to_string()))
    .bind(&s.last_flow_id)
    .bind(now())
    .execute(&mut *conn)
    .await?;
    if r.rows_affected() == 0 {
        return Err(StoreError::Duplicate(format!("snapshot {}", s.id)));
    }
    METADATA.merge(conn, &s.id.to_string(), &s.metadata).await
}

/// One snapshot with its metadata.
pub async fn snapshot_get(conn: &mut Conn, id: SnapshotId) -> Result<Option<Snapshot>> {
    let row = sqlx::query("SELECT * FROM snapshots WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let mut s = from_row(&row)?;
    s.metadata = METADATA.get(conn, &s.id.to_string()).await?;
    Ok(Some(s))
}

/// Every snapshot of every project (checks and tools), by creation.
pub async fn snapshot_list_all(conn: &mut Conn) -> Result<Vec<Snapshot>> {
    let rows = sqlx::query("SELECT * FROM snapshots ORDER BY created_at, id")
        .fetch_all(&mut *conn)
        .await?;
    let mut out = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    attach_metadata(conn, &mut out).await?;
    Ok(out)
}

/// The snapshots of one volume, oldest first.
pub async fn snapshot_list_for_volume(conn: &mut Conn, volume: VolumeId) -> Result<Vec<Snapshot>> {
    let rows = sqlx::query("SELECT * FROM snapshots WHERE volume_id = $1 ORDER BY created_at, id")
        .bind(volume.to_string())
        .fetch_all(&mut *conn)
        .await?;
    let mut out = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    attach_metadata(conn, &mut out).await?;
    Ok(out)
}

/// The snapshots of `volume` being taken now (`creating`): while one is, the
/// volume's active image is being switched, and nothing else may change it.
pub async fn snapshot_list_creating_for_volume(
    conn: &mut Conn,
    volume: VolumeId,
) -> Result<Vec<SnapshotId>> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM snapshots WHERE volume_id = $1 AND status = 'creating' ORDER BY id",
    )
    .bind(volume.to_string())
    .fetch_all(conn)
    .await?;
    rows.iter().map(|s| parse("snapshot id", s)).collect()
}

/// The volumes being created from `snapshot` now: they read its image.
pub async fn snapshot_readers(conn: &mut Conn, snapshot: SnapshotId) -> Result<Vec<VolumeId>> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM volumes WHERE snapshot_id = $1 AND status = 'creating' ORDER BY id",
    )
    .bind(snapshot.to_string())
    .fetch_all(conn)
    .await?;
    rows.iter().map(|s| parse("volume id", s)).collect()
}

/// Hold a snapshot a new volume is about to read: succeeds (true) only while
/// it is `available`. It changes nothing but writes the row (see
/// `volumes::volume_hold_for_read` for why): a delete changes the status
/// first and then asks [`snapshot_readers`], so one of the two sees the other.
pub async fn snapshot_hold_for_read(conn: &mut Conn, id: SnapshotId) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE snapshots SET updated_at = updated_at WHERE id = $1 AND status = 'available'",
    )
    .bind(id.to_string())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Move a snapshot to `to` if it is in one of `from` (any status when empty);
/// `flow`, when given, becomes its last flow. Reports whether it moved.
pub async fn snapshot_set_status(
    conn: &mut Conn,
    id: SnapshotId,
    from: &[SnapshotStatus],
    to: SnapshotStatus,
    flow: Option<&str>,
) -> Result<bool> {
    let mut sql = String::from(
        "UPDATE snapshots SET status = $2, updated_at = $3, last_flow_id = COALESCE($4, last_flow_id)
         WHERE id = $1",
    );
    if !from.is_empty() {
        let params: Vec<String> = (0..from.len()).map(|i| format!("${}", i + 5)).collect();
        sql.push_str(&format!(" AND status IN ({})", params.join(", ")));
    }
    let mut q = sqlx::query(&sql)
        .bind(id.to_string())
        .bind(to.as_str())
        .bind(now())
        .bind(flow);
    for s in from {
        q = q.bind(s.as_str());
    }
    Ok(q.execute(conn).await?.rows_affected() == 1)
}

/// Record the progress Nova reported for a snapshot (a percent).
pub async fn snapshot_set_progress(conn: &mut Conn, id: SnapshotId, percent: i64) -> Result<bool> {
    let r = sqlx::query("UPDATE snapshots SET progress = $2, updated_at = $3 WHERE id = $1")
        .bind(id.to_string())
        .bind(percent)
        .bind(now())
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Record the frozen image a snapshot captured and make it `available`, only
/// while it is `creating`.
pub async fn snapshot_mark_available(
    conn: &mut Conn,
    id: SnapshotId,
    image: ImageId,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE snapshots SET status = 'available', image_id = $2, updated_at = $3
         WHERE id = $1 AND status = 'creating'",
    )
    .bind(id.to_string())
    .bind(image.to_string())
    .bind(now())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The snapshot now counts against its project on its own: clear its
/// reservation (the caller deletes the reservation in the same transaction).
pub async fn snapshot_commit_quota(conn: &mut Conn, id: SnapshotId) -> Result<bool> {
    let r = sqlx::query("UPDATE snapshots SET reservation_id = NULL WHERE id = $1")
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Move a volume's snapshots to another project (a transfer accepted), in the
/// caller's transaction; returns how many moved.
pub async fn snapshot_move_with_volume(
    conn: &mut Conn,
    volume: VolumeId,
    project: &str,
    user: &str,
) -> Result<u64> {
    let r = sqlx::query(
        "UPDATE snapshots SET project_id = $2, user_id = $3, updated_at = $4 WHERE volume_id = $1",
    )
    .bind(volume.to_string())
    .bind(project)
    .bind(user)
    .bind(now())
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}

/// Change name and/or description (`Some(None)` clears).
pub async fn snapshot_update_text(
    conn: &mut Conn,
    id: SnapshotId,
    name: Option<Option<&str>>,
    description: Option<Option<&str>>,
) -> Result<bool> {
    crate::shared::update_text(conn, "snapshots", &id.to_string(), name, description).await
}

/// Remove the entry (and its metadata) whatever its status; returns whether a
/// row went. The caller has checked why it may go.
pub async fn snapshot_delete(conn: &mut Conn, id: SnapshotId) -> Result<bool> {
    let r = sqlx::query("DELETE FROM snapshots WHERE id = $1")
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn snapshot_metadata_get(
    conn: &mut Conn,
    id: SnapshotId,
) -> Result<BTreeMap<String, String>> {
    METADATA.get(conn, &id.to_string()).await
}

pub async fn snapshot_metadata_replace(
    conn: &mut Conn,
    id: SnapshotId,
    items: &BTreeMap<String, String>,
) -> Result<()> {
    METADATA.replace(conn, &id.to_string(), items).await
}

pub async fn snapshot_metadata_merge(
    conn: &mut Conn,
    id: SnapshotId,
    items: &BTreeMap<String, String>,
) -> Result<()> {
    METADATA.merge(conn, &id.to_string(), items).await
}

pub async fn snapshot_metadata_delete(conn: &mut Conn, id: SnapshotId, key: &str) -> Result<bool> {
    METADATA.delete(conn, &id.to_string(), key).await
}

/// What a snapshot list may be sorted by (Cinder's keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    Id,
    Name,
    Size,
    Status,
    CreatedAt,
    UpdatedAt,
    VolumeId,
    Description,
    ProjectId,
}

impl SortKey {
    /// Every key an API may name, for the parsers that list them.
    pub const NAMES: &'static [&'static str] = &[
        "id",
        "name",
        "display_name",
        "size",
        "volume_size",
        "status",
        "created_at",
        "updated_at",
        "volume_id",
        "description",
        "display_description",
        "project_id",
    ];

    /// Parse an API sort key (Cinder's spellings, with the `display_*` ones).
    pub fn parse(s: &str) -> Option<SortKey> {
        Some(match s {
            "id" => SortKey::Id,
            "name" | "display_name" => SortKey::Name,
            "size" | "volume_size" => SortKey::Size,
            "status" => SortKey::Status,
            "created_at" => SortKey::CreatedAt,
            "updated_at" => SortKey::UpdatedAt,
            "volume_id" => SortKey::VolumeId,
            "description" | "display_description" => SortKey::Description,
            "project_id" => SortKey::ProjectId,
            _ => return None,
        })
    }

    pub(crate) fn expr(self) -> &'static str {
        match self {
            SortKey::Id => "id",
            SortKey::Name => "COALESCE(name, '')",
            SortKey::Size => "size",
            SortKey::Status => "status",
            SortKey::CreatedAt => "created_at",
            SortKey::UpdatedAt => "COALESCE(updated_at, '')",
            SortKey::VolumeId => "volume_id",
            SortKey::Description => "COALESCE(description, '')",
            SortKey::ProjectId => "project_id",
        }
    }

    fn value(self, s: &Snapshot) -> SqlValue {
        match self {
            SortKey::Id => SqlValue::Text(s.id.to_string()),
            SortKey::Name => SqlValue::Text(s.name.clone().unwrap_or_default()),
            SortKey::Size => SqlValue::Int(s.size),
            SortKey::Status => SqlValue::Text(s.status.as_str().to_owned()),
            SortKey::CreatedAt => SqlValue::Text(s.created_at.clone()),
            SortKey::UpdatedAt => SqlValue::Text(s.updated_at.clone().unwrap_or_default()),
            SortKey::VolumeId => SqlValue::Text(s.volume_id.to_string()),
            SortKey::Description => SqlValue::Text(s.description.clone().unwrap_or_default()),
            SortKey::ProjectId => SqlValue::Text(s.project_id.clone()),
        }
    }
}

/// Filters, order and page of a snapshot list.
#[derive(Clone, Debug, Default)]
pub struct SnapshotQuery {
    /// Only this project's snapshots; `None` lists every project's (admins).
    pub project_id: Option<String>,
    pub name: Option<String>,
    pub status: Option<String>,
    pub volume_id: Option<String>,
    /// Every pair must be present in the snapshot's metadata.
    pub metadata: Vec<(String, String)>,
    /// Sort keys in priority order; empty means `created_at desc`; `id` is
    /// always appended as the tie-breaker.
    pub sort: Vec<(SortKey, SortDir)>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    /// Start after this snapshot (which must match the query's project).
    pub marker: Option<SnapshotId>,
}

/// A page of snapshots; `MarkerNotFound` when the marker names no visible one.
pub async fn snapshot_list(conn: &mut Conn, q: &SnapshotQuery) -> Result<Vec<Snapshot>> {
    let mut sort = if q.sort.is_empty() {
        vec![(SortKey::CreatedAt, SortDir::Desc)]
    } else {
        q.sort.clone()
    };
    if !sort.iter().any(|(k, _)| *k == SortKey::Id) {
        let last_dir = sort.last().map(|s| s.1).unwrap_or(SortDir::Desc);
        sort.push((SortKey::Id, last_dir));
    }
    let mut query = filtered("SELECT * FROM snapshots WHERE 1 = 1", q);
    if let Some(marker) = q.marker {
        let m = match snapshot_get(conn, marker).await? {
            Some(m) if q.project_id.as_ref().is_none_or(|p| *p == m.project_id) => m,
            _ => return Err(StoreError::MarkerNotFound(marker.to_string())),
        };
        let after: Vec<_> = sort
            .iter()
            .map(|(k, d)| (k.expr(), *d, k.value(&m)))
            .collect();
        query.after(&after);
    }
    let order: Vec<_> = sort.iter().map(|(k, d)| (k.expr(), *d)).collect();
    query.order_and_page(&order, q.limit, q.offset);
    let rows = query.fetch_all(&mut *conn).await?;
    let mut out = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    attach_metadata(conn, &mut out).await?;
    Ok(out)
}

/// How many snapshots match the query's filters (ignoring sort and paging).
pub async fn snapshot_count(conn: &mut Conn, q: &SnapshotQuery) -> Result<i64> {
    filtered("SELECT COUNT(*) FROM snapshots WHERE 1 = 1", q)
        .fetch_count(conn)
        .await
}

fn filtered(select: &str, q: &SnapshotQuery) -> Keyset {
    let mut k = Keyset::new(select);
    if let Some(p) = &q.project_id {
        k.filter("project_id", SqlValue::Text(p.clone()));
    }
    if let Some(n) = &q.name {
        k.filter("name", SqlValue::Text(n.clone()));
    }
    if let Some(s) = &q.status {
        k.filter("status", SqlValue::Text(s.clone()));
    }
    if let Some(v) = &q.volume_id {
        k.filter("volume_id", SqlValue::Text(v.clone()));
    }
    for (key, value) in &q.metadata {
        k.push(" AND EXISTS (SELECT 1 FROM snapshot_metadata m WHERE m.snapshot_id = snapshots.id AND m.key = ");
        k.bind(SqlValue::Text(key.clone()));
        k.push(" AND m.value = ");
        k.bind(SqlValue::Text(value.clone()));
        k.push(")");
    }
    k
}

async fn attach_metadata(conn: &mut Conn, snaps: &mut [Snapshot]) -> Result<()> {
    let ids: Vec<String> = snaps.iter().map(|s| s.id.to_string()).collect();
    let mut by_id = METADATA.get_many(conn, &ids).await?;
    for s in snaps.iter_mut() {
        if let Some(m) = by_id.remove(&s.id.to_string()) {
            s.metadata = m;
        }
    }
    Ok(())
}
