//! Generic volume groups, their group types and group specs.
//!
//! A group belongs to a project, lists the volume types it accepts
//! (`volume_group_volume_types`) and sits on one backend; its volumes point at
//! it (`volumes.group_id`). Membership changes are conditional updates of that
//! column, so a volume is never in two groups and never joins a group while
//! another change holds it. A group row goes only once no volume points at it
//! ([`group_delete`], [`group_purge`]); with SQLite's foreign keys on, the
//! database refuses the rest anyway.
//!
//! Group types are to groups what volume types are to volumes: a name and
//! specs (`group_type_specs`) matched when a group is placed.
//!
//! Group types and their specs are in `types.rs`, re-exported here; the sort
//! keys both kinds of list share are here.

use std::collections::BTreeMap;

use scoria_model::group::GroupStatus;
use scoria_model::volume::VolumeStatus;
use scoria_model::{GroupId, GroupTypeId, VolumeId, VolumeTypeId};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::{Conn, Result, StoreError, now, parse};

mod types;

#[cfg(test)]
mod tests;

pub use types::*;

/// Columns group types and groups may be sorted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    Id,
    Name,
    Description,
    CreatedAt,
    UpdatedAt,
    /// Groups only.
    Status,
    /// Groups only.
    AvailabilityZone,
    /// Group types only.
    IsPublic,
}

impl SortKey {
    /// Parse an API sort key for group types.
    pub fn parse_for_types(s: &str) -> Option<SortKey> {
        Some(match s {
            "id" => SortKey::Id,
            "name" => SortKey::Name,
            "description" => SortKey::Description,
            "created_at" => SortKey::CreatedAt,
            "updated_at" => SortKey::UpdatedAt,
            "is_public" => SortKey::IsPublic,
            _ => return None,
        })
    }

    /// Parse an API sort key for groups.
    pub fn parse_for_groups(s: &str) -> Option<SortKey> {
        Some(match s {
            "id" => SortKey::Id,
            "name" => SortKey::Name,
            "description" => SortKey::Description,
            "created_at" => SortKey::CreatedAt,
            "updated_at" => SortKey::UpdatedAt,
            "status" => SortKey::Status,
            "availability_zone" => SortKey::AvailabilityZone,
            _ => return None,
        })
    }

    fn expr(self) -> &'static str {
        match self {
            SortKey::Id => "id",
            SortKey::Name => "COALESCE(name, '')",
            SortKey::Description => "COALESCE(description, '')",
            SortKey::CreatedAt => "created_at",
            SortKey::UpdatedAt => "COALESCE(updated_at, '')",
            SortKey::Status => "status",
            SortKey::AvailabilityZone => "availability_zone",
            SortKey::IsPublic => "CASE WHEN is_public THEN 1 ELSE 0 END",
        }
    }
}

pub use crate::shared::SortDir;

/// `ORDER BY` for `sort` (default `created_at desc`), `id` last as the
/// tie-breaker. Keys come from the whitelists above, never from the caller.
fn order_by(sort: &[(SortKey, SortDir)]) -> String {
    let mut sort = if sort.is_empty() {
        vec![(SortKey::CreatedAt, SortDir::Desc)]
    } else {
        sort.to_vec()
    };
    if !sort.iter().any(|(k, _)| *k == SortKey::Id) {
        let last = sort.last().map(|s| s.1).unwrap_or(SortDir::Desc);
        sort.push((SortKey::Id, last));
    }
    let parts: Vec<String> = sort
        .iter()
        .map(|(k, d)| {
            format!(
                "{} {}",
                k.expr(),
                if *d == SortDir::Asc { "ASC" } else { "DESC" }
            )
        })
        .collect();
    format!(" ORDER BY {}", parts.join(", "))
}

// ---------------------------------------------------------------------------
// Groups

/// A group as stored, with the volume types it accepts.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub id: GroupId,
    pub project_id: String,
    pub user_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub status: GroupStatus,
    pub availability_zone: String,
    pub group_type_id: GroupTypeId,
    pub backend: Option<String>,
    pub source_group_id: Option<GroupId>,
    pub group_snapshot_id: Option<String>,
    pub last_flow_id: Option<String>,
    pub created_at: String,
    pub updated_at: Option<String>,
    /// Sorted by id.
    pub volume_type_ids: Vec<VolumeTypeId>,
}

/// What is written when a group is made.
#[derive(Clone, Debug)]
pub struct NewGroup {
    pub id: GroupId,
    pub project_id: String,
    pub user_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub status: GroupStatus,
    pub availability_zone: String,
    pub group_type_id: GroupTypeId,
    pub backend: Option<String>,
    pub source_group_id: Option<GroupId>,
    pub last_flow_id: Option<String>,
    pub volume_type_ids: Vec<VolumeTypeId>,
}

fn group_from_row(r: &SqliteRow) -> Result<Group> {
    Ok(Group {
        id: parse("group id", r.try_get::<&str, _>("id")?)?,
        project_id: r.try_get("project_id")?,
        user_id: r.try_get("user_id")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        status: parse("group status", r.try_get::<&str, _>("status")?)?,
        availability_zone: r.try_get("availability_zone")?,
        group_type_id: parse("group type id", r.try_get::<&str, _>("group_type_id")?)?,
        backend: r.try_get("backend")?,
        source_group_id: r
            .try_get::<Option<&str>, _>("source_group_id")?
            .map(|s| parse("group id", s))
            .transpose()?,
        group_snapshot_id: r.try_get("group_snapshot_id")?,
        last_flow_id: r.try_get("last_flow_id")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        volume_type_ids: Vec::new(),
    })
}

/// Fill in the volume types of `groups` (one query).
async fn with_volume_types(conn: &mut Conn, groups: &mut [Group]) -> Result<()> {
    if groups.is_empty() {
        return Ok(());
    }
    let placeholders: Vec<String> = (1..=groups.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT group_id, volume_type_id FROM volume_group_volume_types
         WHERE group_id IN ({}) ORDER BY volume_type_id",
        placeholders.join(", ")
    );
    let mut q = sqlx::query(&sql);
    for g in groups.iter() {
        q = q.bind(g.id.to_string());
    }
    let rows = q.fetch_all(conn).await?;
    let mut by_group: BTreeMap<String, Vec<VolumeTypeId>> = BTreeMap::new();
    for r in rows {
        by_group
            .entry(r.try_get("group_id")?)
            .or_default()
            .push(parse(
                "volume type id",
                r.try_get::<&str, _>("volume_type_id")?,
            )?);
    }
    for g in groups.iter_mut() {
        g.volume_type_ids = by_group.remove(&g.id.to_string()).unwrap_or_default();
    }
    Ok(())
}

/// Insert a group with its volume types. An entry with that id already
/// present is `Duplicate` (a re-run of a step finds it there).
pub async fn group_create(conn: &mut Conn, g: &NewGroup) -> Result<()> {
    let r = sqlx::query(
        "INSERT INTO volume_groups (id, project_id, user_id, name, description, status,
                availability_zone, group_type_id, backend, source_group_id, last_flow_id,
                created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(g.id.to_string())
    .bind(&g.project_id)
    .bind(&g.user_id)
    .bind(&g.name)
    .bind(&g.description)
    .bind(g.status.as_str())
    .bind(&g.availability_zone)
    .bind(g.group_type_id.to_string())
    .bind(&g.backend)
    .bind(g.source_group_id.map(|s| s.to_string()))
    .bind(&g.last_flow_id)
    .bind(now())
    .execute(&mut *conn)
    .await?;
    if r.rows_affected() == 0 {
        return Err(StoreError::Duplicate(format!("group {}", g.id)));
    }
    for t in &g.volume_type_ids {
        sqlx::query(
            "INSERT INTO volume_group_volume_types (group_id, volume_type_id) VALUES ($1, $2)
             ON CONFLICT DO NOTHING",
        )
        .bind(g.id.to_string())
        .bind(t.to_string())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// One group with its volume types, or `None`.
pub async fn group_get(conn: &mut Conn, id: GroupId) -> Result<Option<Group>> {
    let row = sqlx::query("SELECT * FROM volume_groups WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let mut g = [group_from_row(&row)?];
    with_volume_types(conn, &mut g).await?;
    let [g] = g;
    Ok(Some(g))
}

/// Filters, order and page of a group list.
#[derive(Clone, Debug, Default)]
pub struct GroupQuery {
    /// Only this project's groups; `None`: every project's (admins).
    pub project_id: Option<String>,
    pub name: Option<String>,
    pub status: Option<String>,
    /// Sort keys in priority order; empty means `created_at desc`.
    pub sort: Vec<(SortKey, SortDir)>,
    /// Start after this group (which must be in the result).
    pub marker: Option<GroupId>,
    pub offset: Option<i64>,
    pub limit: Option<i64>,
}

/// A page of groups; `MarkerNotFound` when the marker is not among them.
///
/// The filtered list is sorted by the database and paged here: a project
/// holds few groups (the `groups` quota, 10 by default), so the whole list is
/// small.
pub async fn group_list(conn: &mut Conn, q: &GroupQuery) -> Result<Vec<Group>> {
    let sql = format!(
        "SELECT * FROM volume_groups
         WHERE ($1 IS NULL OR project_id = $1)
           AND ($2 IS NULL OR name = $2)
           AND ($3 IS NULL OR status = $3){}",
        order_by(&q.sort)
    );
    let rows = sqlx::query(&sql)
        .bind(&q.project_id)
        .bind(&q.name)
        .bind(&q.status)
        .fetch_all(&mut *conn)
        .await?;
    let mut groups = rows
        .iter()
        .map(group_from_row)
        .collect::<Result<Vec<_>>>()?;
    if let Some(m) = q.marker {
        let at = groups
            .iter()
            .position(|g| g.id == m)
            .ok_or_else(|| StoreError::MarkerNotFound(m.to_string()))?;
        groups.drain(..=at);
    }
    let skip = q.offset.unwrap_or(0).max(0) as usize;
    groups.drain(..skip.min(groups.len()));
    if let Some(limit) = q.limit {
        groups.truncate(limit.max(0) as usize);
    }
    with_volume_types(conn, &mut groups).await?;
    Ok(groups)
}

/// Every group (invariant checks).
pub async fn group_list_all(conn: &mut Conn) -> Result<Vec<Group>> {
    group_list(
        conn,
        &GroupQuery {
            sort: vec![(SortKey::CreatedAt, SortDir::Asc)],
            ..Default::default()
        },
    )
    .await
}

/// Change name and/or description (`Some(None)` clears). Returns whether the
/// group exists.
pub async fn group_update_text(
    conn: &mut Conn,
    id: GroupId,
    name: Option<Option<&str>>,
    description: Option<Option<&str>>,
) -> Result<bool> {
    crate::shared::update_text(conn, "volume_groups", &id.to_string(), name, description).await
}

/// Conditionally move a group to `to`: only if its status is one of `from`
/// (any status when `from` is empty); `flow`, when given, becomes its last
/// flow. Returns whether it applied.
pub async fn group_set_status(
    conn: &mut Conn,
    id: GroupId,
    from: &[GroupStatus],
    to: GroupStatus,
    flow: Option<&str>,
) -> Result<bool> {
    let mut sql = String::from(
        "UPDATE volume_groups SET status = $2, updated_at = $3,
            last_flow_id = COALESCE($4, last_flow_id)
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

/// Hold a group for a change of its membership: succeeds (true) only while
/// its status is one of `statuses`. It changes nothing but writes the row, so
/// on PostgreSQL a concurrent status change waits for the caller's commit (and
/// SQLite's single writer serializes the two anyway): a volume never joins a
/// group that is being deleted.
pub async fn group_hold(conn: &mut Conn, id: GroupId, statuses: &[GroupStatus]) -> Result<bool> {
    let params: Vec<String> = (0..statuses.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = format!(
        "UPDATE volume_groups SET updated_at = updated_at WHERE id = $1 AND status IN ({})",
        params.join(", ")
    );
    let mut q = sqlx::query(&sql).bind(id.to_string());
    for s in statuses {
        q = q.bind(s.as_str());
    }
    Ok(q.execute(conn).await?.rows_affected() == 1)
}

/// Remove a `deleting` group that no volume points at any more. Returns
/// whether it went.
pub async fn group_delete(conn: &mut Conn, id: GroupId) -> Result<bool> {
    let r = sqlx::query(
        "DELETE FROM volume_groups WHERE id = $1 AND status = 'deleting'
         AND NOT EXISTS (SELECT 1 FROM volumes v WHERE v.group_id = $1)",
    )
    .bind(id.to_string())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Remove a group whatever its status, if no volume points at it (the undo of
/// a create). Returns whether it went.
pub async fn group_purge(conn: &mut Conn, id: GroupId) -> Result<bool> {
    let r = sqlx::query(
        "DELETE FROM volume_groups WHERE id = $1
         AND NOT EXISTS (SELECT 1 FROM volumes v WHERE v.group_id = $1)",
    )
    .bind(id.to_string())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// A group being made from `id` (`creating`, with `id` as its source), if
/// any: while there is one, `id`'s volumes are about to be read.
pub async fn group_being_made_from(conn: &mut Conn, id: GroupId) -> Result<Option<GroupId>> {
    let g: Option<String> = sqlx::query_scalar(
        "SELECT id FROM volume_groups WHERE source_group_id = $1 AND status = 'creating' LIMIT 1",
    )
    .bind(id.to_string())
    .fetch_optional(conn)
    .await?;
    g.map(|s| parse("group id", &s)).transpose()
}

/// The ids of a group's volumes (oldest first).
pub async fn group_volume_ids(conn: &mut Conn, id: GroupId) -> Result<Vec<VolumeId>> {
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM volumes WHERE group_id = $1 ORDER BY created_at, id")
            .bind(id.to_string())
            .fetch_all(conn)
            .await?;
    ids.iter().map(|s| parse("volume id", s)).collect()
}

/// Put a volume in a group: only if it is in no group and its status is one of
/// `from`. Returns whether it applied.
pub async fn group_add_volume(
    conn: &mut Conn,
    id: GroupId,
    volume: VolumeId,
    from: &[VolumeStatus],
) -> Result<bool> {
    let params: Vec<String> = (0..from.len()).map(|i| format!("${}", i + 4)).collect();
    let sql = format!(
        "UPDATE volumes SET group_id = $1, updated_at = $3
         WHERE id = $2 AND group_id IS NULL AND status IN ({})",
        params.join(", ")
    );
    let mut q = sqlx::query(&sql)
        .bind(id.to_string())
        .bind(volume.to_string())
        .bind(now());
    for s in from {
        q = q.bind(s.as_str());
    }
    Ok(q.execute(conn).await?.rows_affected() == 1)
}

/// Take a volume out of a group: only if it is in it and its status is one of
/// `from`. Returns whether it applied.
pub async fn group_remove_volume(
    conn: &mut Conn,
    id: GroupId,
    volume: VolumeId,
    from: &[VolumeStatus],
) -> Result<bool> {
    let params: Vec<String> = (0..from.len()).map(|i| format!("${}", i + 4)).collect();
    let sql = format!(
        "UPDATE volumes SET group_id = NULL, updated_at = $3
         WHERE id = $2 AND group_id = $1 AND status IN ({})",
        params.join(", ")
    );
    let mut q = sqlx::query(&sql)
        .bind(id.to_string())
        .bind(volume.to_string())
        .bind(now());
    for s in from {
        q = q.bind(s.as_str());
    }
    Ok(q.execute(conn).await?.rows_affected() == 1)
}
