//! Group types and their group specs (`group_type_specs`), the records a group
//! is placed by (see the parent module). Apart from the groups themselves,
//! whose queries never need them; they share only the sort keys.

use std::collections::BTreeMap;

use scoria_model::GroupTypeId;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{SortDir, SortKey, order_by};
use crate::shared::{KeyValues, NamedTypes};
use crate::{Conn, Result, parse};

#[derive(Clone, Debug, PartialEq)]
pub struct GroupType {
    pub id: GroupTypeId,
    pub name: String,
    pub description: Option<String>,
    pub is_public: bool,
    pub group_specs: BTreeMap<String, String>,
    pub created_at: String,
    pub updated_at: Option<String>,
}

const TYPES: NamedTypes = NamedTypes {
    table: "group_types",
    what: "Group Type",
};
const SPECS: KeyValues = KeyValues {
    table: "group_type_specs",
    owner: "group_type_id",
};

fn type_from_row(r: &SqliteRow) -> Result<GroupType> {
    Ok(GroupType {
        id: parse("group type id", r.try_get::<&str, _>("id")?)?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        is_public: r.try_get("is_public")?,
        group_specs: BTreeMap::new(),
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

async fn with_specs(conn: &mut Conn, mut t: GroupType) -> Result<GroupType> {
    t.group_specs = group_type_specs_get(conn, t.id).await?;
    Ok(t)
}

pub async fn group_type_get(conn: &mut Conn, id: GroupTypeId) -> Result<Option<GroupType>> {
    let row = sqlx::query("SELECT * FROM group_types WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(r) => Ok(Some(with_specs(conn, type_from_row(&r)?).await?)),
        None => Ok(None),
    }
}

pub async fn group_type_get_by_name(conn: &mut Conn, name: &str) -> Result<Option<GroupType>> {
    let row = sqlx::query("SELECT * FROM group_types WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(r) => Ok(Some(with_specs(conn, type_from_row(&r)?).await?)),
        None => Ok(None),
    }
}

/// Group types, public or private ones only (`is_public`), or all (`None`).
pub async fn group_type_list(
    conn: &mut Conn,
    is_public: Option<bool>,
    sort: &[(SortKey, SortDir)],
) -> Result<Vec<GroupType>> {
    let sql = format!(
        "SELECT * FROM group_types WHERE $1 IS NULL OR is_public = $1{}",
        order_by(sort)
    );
    let rows = sqlx::query(&sql)
        .bind(is_public)
        .fetch_all(&mut *conn)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(with_specs(conn, type_from_row(r)?).await?);
    }
    Ok(out)
}

/// Create a group type with its specs. A name already taken is `Duplicate`.
pub async fn group_type_create(
    conn: &mut Conn,
    id: GroupTypeId,
    name: &str,
    description: Option<&str>,
    is_public: bool,
    specs: &BTreeMap<String, String>,
) -> Result<()> {
    TYPES
        .create(conn, &id.to_string(), name, description, is_public)
        .await?;
    group_type_specs_merge(conn, id, specs).await
}

/// Change what is given. Returns whether the type exists; a name taken by
/// another type is `Duplicate`.
pub async fn group_type_update(
    conn: &mut Conn,
    id: GroupTypeId,
    name: Option<&str>,
    description: Option<&str>,
    is_public: Option<bool>,
) -> Result<bool> {
    TYPES
        .update(conn, &id.to_string(), name, description, is_public)
        .await
}

/// Delete a group type (its specs go with it) if no group has it. Returns
/// `Ok(None)` when it does not exist and `Ok(Some(false))` when groups still
/// have it.
pub async fn group_type_delete(conn: &mut Conn, id: GroupTypeId) -> Result<Option<bool>> {
    let r = sqlx::query(
        "DELETE FROM group_types WHERE id = $1
         AND NOT EXISTS (SELECT 1 FROM volume_groups g WHERE g.group_type_id = $1)",
    )
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    if r.rows_affected() == 1 {
        return Ok(Some(true));
    }
    let exists: Option<String> = sqlx::query_scalar("SELECT id FROM group_types WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(exists.map(|_| false))
}

pub async fn group_type_specs_get(
    conn: &mut Conn,
    id: GroupTypeId,
) -> Result<BTreeMap<String, String>> {
    SPECS.get(conn, &id.to_string()).await
}

/// Add or overwrite the given specs; the others stay.
pub async fn group_type_specs_merge(
    conn: &mut Conn,
    id: GroupTypeId,
    specs: &BTreeMap<String, String>,
) -> Result<()> {
    SPECS.merge(conn, &id.to_string(), specs).await
}

/// Remove one spec; returns whether it was there.
pub async fn group_type_spec_delete(conn: &mut Conn, id: GroupTypeId, key: &str) -> Result<bool> {
    SPECS.delete(conn, &id.to_string(), key).await
}
