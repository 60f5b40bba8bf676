//! Volume types, their extra specs and project access.

use std::collections::BTreeMap;

use scoria_model::VolumeTypeId;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::{Conn, Result, StoreError, now, parse};

/// Id of `__DEFAULT__`, the type every installation starts with (seeded by the
/// first migration).
pub const DEFAULT_TYPE_ID: &str = "7a3d2a5e-1b4c-4f0e-9d8a-0c5e6f7a8b90";
/// Name of the default type, as Cinder names it.
pub const DEFAULT_TYPE_NAME: &str = "__DEFAULT__";

#[derive(Clone, Debug, PartialEq)]
pub struct VolumeType {
    pub id: VolumeTypeId,
    pub name: String,
    pub description: Option<String>,
    pub is_public: bool,
    pub extra_specs: BTreeMap<String, String>,
    pub created_at: String,
    pub updated_at: Option<String>,
}

fn from_row(r: &SqliteRow) -> Result<VolumeType> {
    Ok(VolumeType {
        id: parse("volume type id", r.try_get::<&str, _>("id")?)?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        is_public: r.try_get("is_public")?,
        extra_specs: BTreeMap::new(),
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

async fn with_specs(conn: &mut Conn, mut t: VolumeType) -> Result<VolumeType> {
    t.extra_specs = volume_type_extra_specs_get(conn, t.id).await?;
    Ok(t)
}

pub async fn volume_type_get(conn: &mut Conn, id: VolumeTypeId) -> Result<Option<VolumeType>> {
    let row = sqlx::query("SELECT * FROM volume_types WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(r) => Ok(Some(with_specs(conn, from_row(&r)?).await?)),
        None => Ok(None),
    }
}

pub async fn volume_type_get_by_name(conn: &mut Conn, name: &str) -> Result<Option<VolumeType>> {
    let row = sqlx::query("SELECT * FROM volume_types WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(r) => Ok(Some(with_specs(conn, from_row(&r)?).await?)),
        None => Ok(None),
    }
}

/// Types visible to a project (public ones and those shared with it); every
/// type when `project` is `None` (admins).
pub async fn volume_type_list(conn: &mut Conn, project: Option<&str>) -> Result<Vec<VolumeType>> {
    let rows = sqlx::query(
        "SELECT * FROM volume_types t
         WHERE $1 IS NULL OR t.is_public
            OR EXISTS (SELECT 1 FROM volume_type_projects p
                       WHERE p.volume_type_id = t.id AND p.project_id = $1)
         ORDER BY t.name",
    )
    .bind(project)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(with_specs(conn, from_row(r)?).await?);
    }
    Ok(out)
}

/// Create a type. A name already taken is `Duplicate`.
pub async fn volume_type_create(
    conn: &mut Conn,
    id: VolumeTypeId,
    name: &str,
    description: Option<&str>,
    is_public: bool,
    extra_specs: &BTreeMap<String, String>,
) -> Result<()> {
    let r = sqlx::query(
        "INSERT INTO volume_types (id, name, description, is_public, created_at)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(id.to_string())
    .bind(name)
    .bind(description)
    .bind(is_public)
    .bind(now())
    .execute(&mut *conn)
    .await?;
    if r.rows_affected() == 0 {
        return Err(StoreError::Duplicate(format!("volume type {name}")));
    }
    volume_type_extra_specs_merge(conn, id, extra_specs).await
}

pub async fn volume_type_extra_specs_get(
    conn: &mut Conn,
    id: VolumeTypeId,
) -> Result<BTreeMap<String, String>> {
    let rows =
        sqlx::query("SELECT key, value FROM volume_type_extra_specs WHERE volume_type_id = $1")
            .bind(id.to_string())
            .fetch_all(conn)
            .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("key")?, r.try_get("value")?)))
        .collect()
}

pub async fn volume_type_extra_specs_merge(
    conn: &mut Conn,
    id: VolumeTypeId,
    specs: &BTreeMap<String, String>,
) -> Result<()> {
    for (k, v) in specs {
        sqlx::query(
            "INSERT INTO volume_type_extra_specs (volume_type_id, key, value) VALUES ($1, $2, $3)
             ON CONFLICT (volume_type_id, key) DO UPDATE SET value = excluded.value",
        )
        .bind(id.to_string())
        .bind(k)
        .bind(v)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[tokio::test]
    async fn the_default_type_exists_and_names_are_unique() {
        let (s, _d) = testing::store().await;
        let mut tx = s.begin().await.unwrap();
        let d = volume_type_get_by_name(&mut tx, DEFAULT_TYPE_NAME)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.id.to_string(), DEFAULT_TYPE_ID);
        let id = VolumeTypeId::new();
        let specs = [("volume_backend_name".to_string(), "file".to_string())].into();
        volume_type_create(&mut tx, id, "private", None, false, &specs)
            .await
            .unwrap();
        let again =
            volume_type_create(&mut tx, VolumeTypeId::new(), "private", None, true, &specs).await;
        assert!(matches!(again, Err(StoreError::Duplicate(_))));
        assert_eq!(
            volume_type_list(&mut tx, Some("p")).await.unwrap().len(),
            1,
            "private hidden"
        );
        assert_eq!(volume_type_list(&mut tx, None).await.unwrap().len(), 2);
        assert_eq!(
            volume_type_get(&mut tx, id)
                .await
                .unwrap()
                .unwrap()
                .extra_specs,
            specs
        );
    }
}
