//! Listing volumes: filters, Cinder's sort keys, keyset pages, counts and
//! the summary.

use std::collections::BTreeMap;

use scoria_model::{GroupId, VolumeId};
use sqlx::Row;

use super::row::{JSON_PAGE_ROW, from_json, from_row};
use super::{Volume, volume_get};
use crate::shared::{Keyset, SortDir, SqlValue};
use crate::{Conn, Result, StoreError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    Id,
    Name,
    Size,
    Status,
    CreatedAt,
    UpdatedAt,
    AvailabilityZone,
    Bootable,
    Description,
    ProjectId,
}

impl SortKey {
    /// Parse an API sort key (Cinder's spellings, including the `display_*`
    /// synonyms).
    pub fn parse(s: &str) -> Option<SortKey> {
        Some(match s {
            "id" => SortKey::Id,
            "name" | "display_name" => SortKey::Name,
            "size" => SortKey::Size,
            "status" => SortKey::Status,
            "created_at" => SortKey::CreatedAt,
            "updated_at" => SortKey::UpdatedAt,
            "availability_zone" => SortKey::AvailabilityZone,
            "bootable" => SortKey::Bootable,
            "description" | "display_description" => SortKey::Description,
            "project_id" => SortKey::ProjectId,
            _ => return None,
        })
    }

    /// The SQL expression sorted on; nullable text sorts as the empty string so
    /// that keyset pagination can compare it.
    fn expr(self) -> &'static str {
        match self {
            SortKey::Id => "id",
            SortKey::Name => "COALESCE(name, '')",
            SortKey::Size => "size",
            SortKey::Status => "status",
            SortKey::CreatedAt => "created_at",
            SortKey::UpdatedAt => "COALESCE(updated_at, '')",
            SortKey::AvailabilityZone => "availability_zone",
            SortKey::Bootable => "CASE WHEN bootable THEN 1 ELSE 0 END",
            SortKey::Description => "COALESCE(description, '')",
            SortKey::ProjectId => "project_id",
        }
    }

    fn value(self, v: &Volume) -> SqlValue {
        match self {
            SortKey::Id => SqlValue::Text(v.id.to_string()),
            SortKey::Name => SqlValue::Text(v.name.clone().unwrap_or_default()),
            SortKey::Size => SqlValue::Int(v.size),
            SortKey::Status => SqlValue::Text(v.status.as_str().to_owned()),
            SortKey::CreatedAt => SqlValue::Text(v.created_at.clone()),
            SortKey::UpdatedAt => SqlValue::Text(v.updated_at.clone().unwrap_or_default()),
            SortKey::AvailabilityZone => SqlValue::Text(v.availability_zone.clone()),
            SortKey::Bootable => SqlValue::Int(i64::from(v.bootable)),
            SortKey::Description => SqlValue::Text(v.description.clone().unwrap_or_default()),
            SortKey::ProjectId => SqlValue::Text(v.project_id.clone()),
        }
    }
}

/// Filters, order and page of a volume list.
#[derive(Clone, Debug, Default)]
pub struct VolumeQuery {
    /// Only this project's volumes; `None` lists every project's (admins).
    pub project_id: Option<String>,
    pub name: Option<String>,
    pub status: Option<String>,
    pub availability_zone: Option<String>,
    pub bootable: Option<bool>,
    /// Every pair must be present in the volume's metadata.
    pub metadata: Vec<(String, String)>,
    /// Only the volumes of this group.
    pub group_id: Option<GroupId>,
    /// Sort keys in priority order; empty means `created_at desc`. `id` is
    /// always appended as the tie-breaker.
    pub sort: Vec<(SortKey, SortDir)>,
    pub limit: Option<i64>,
    /// Skip this many volumes (after the marker).
    pub offset: Option<i64>,
    /// Start after this volume (which must match the query's project).
    pub marker: Option<VolumeId>,
}

/// A page of volumes; `MarkerNotFound` when the marker names no visible volume.
pub async fn volume_list(conn: &mut Conn, q: &VolumeQuery) -> Result<Vec<Volume>> {
    let mut sort = if q.sort.is_empty() {
        vec![(SortKey::CreatedAt, SortDir::Desc)]
    } else {
        q.sort.clone()
    };
    if !sort.iter().any(|(k, _)| *k == SortKey::Id) {
        let last_dir = sort.last().map(|s| s.1).unwrap_or(SortDir::Desc);
        sort.push((SortKey::Id, last_dir));
    }
    let mut query = filtered(
        &format!("SELECT {JSON_PAGE_ROW} AS j FROM volumes WHERE 1 = 1"),
        q,
    );
    if let Some(marker) = q.marker {
        let m = match volume_get(conn, marker).await? {
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
    rows.iter().map(|r| from_json(r.try_get("j")?)).collect()
}

/// How many volumes match the query's filters (ignoring sort, limit, marker).
pub async fn volume_count(conn: &mut Conn, q: &VolumeQuery) -> Result<i64> {
    filtered("SELECT COUNT(*) FROM volumes WHERE 1 = 1", q)
        .fetch_count(conn)
        .await
}

/// The query's filters after `select`.
fn filtered(select: &str, q: &VolumeQuery) -> Keyset {
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
    if let Some(az) = &q.availability_zone {
        k.filter("availability_zone", SqlValue::Text(az.clone()));
    }
    if let Some(g) = &q.group_id {
        k.filter("group_id", SqlValue::Text(g.to_string()));
    }
    if let Some(b) = q.bootable {
        k.filter(
            "CASE WHEN bootable THEN 1 ELSE 0 END",
            SqlValue::Int(i64::from(b)),
        );
    }
    for (key, value) in &q.metadata {
        k.push(" AND EXISTS (SELECT 1 FROM volume_metadata m WHERE m.volume_id = volumes.id AND m.key = ");
        k.bind(SqlValue::Text(key.clone()));
        k.push(" AND m.value = ");
        k.bind(SqlValue::Text(value.clone()));
        k.push(")");
    }
    k
}

/// Every volume (for invariant checks and recovery), without metadata.
pub async fn volume_list_all(conn: &mut Conn) -> Result<Vec<Volume>> {
    let rows = sqlx::query("SELECT * FROM volumes ORDER BY created_at, id")
        .fetch_all(conn)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Count, total size and the union of metadata of the volumes a query matches
/// (`GET /volumes/summary`).
pub async fn volume_summary(
    conn: &mut Conn,
    project: Option<&str>,
) -> Result<(i64, i64, BTreeMap<String, Vec<String>>)> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS gb FROM volumes
         WHERE ($1 IS NULL OR project_id = $1)",
    )
    .bind(project)
    .fetch_one(&mut *conn)
    .await?;
    let rows = sqlx::query(
        "SELECT DISTINCT m.key, m.value FROM volume_metadata m JOIN volumes v ON v.id = m.volume_id
         WHERE ($1 IS NULL OR v.project_id = $1) ORDER BY m.key, m.value",
    )
    .bind(project)
    .fetch_all(&mut *conn)
    .await?;
    let mut meta: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in rows {
        meta.entry(r.try_get("key")?)
            .or_default()
            .push(r.try_get("value")?);
    }
    Ok((row.try_get("n")?, row.try_get("gb")?, meta))
}
