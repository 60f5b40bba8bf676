//! Per-project default volume types (`default_volume_types`): the type a
//! volume created in a project without a type gets.

use scoria_model::VolumeTypeId;
use sqlx::Row;

use crate::{Conn, Result, now, parse};

/// One project's default type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultType {
    pub project_id: String,
    pub volume_type_id: VolumeTypeId,
}

fn from_row(r: &sqlx::sqlite::SqliteRow) -> Result<DefaultType> {
    Ok(DefaultType {
        project_id: r.try_get("project_id")?,
        volume_type_id: parse("volume type id", r.try_get::<&str, _>("volume_type_id")?)?,
    })
}

/// Set (or replace) a project's default type.
pub async fn default_type_set(conn: &mut Conn, project_id: &str, t: VolumeTypeId) -> Result<()> {
    let at = now();
    sqlx::query(
        "INSERT INTO default_volume_types (project_id, volume_type_id, created_at)
         VALUES ($1, $2, $3)
         ON CONFLICT (project_id) DO UPDATE SET volume_type_id = $2, updated_at = $3",
    )
    .bind(project_id)
    .bind(t.to_string())
    .bind(&at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A project's default type, if it has one.
pub async fn default_type_get(conn: &mut Conn, project_id: &str) -> Result<Option<DefaultType>> {
    let row = sqlx::query("SELECT * FROM default_volume_types WHERE project_id = $1")
        .bind(project_id)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Every project's default type, by project.
pub async fn default_type_list(conn: &mut Conn) -> Result<Vec<DefaultType>> {
    let rows = sqlx::query("SELECT * FROM default_volume_types ORDER BY project_id")
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Unset a project's default type; false when it had none.
pub async fn default_type_unset(conn: &mut Conn, project_id: &str) -> Result<bool> {
    let r = sqlx::query("DELETE FROM default_volume_types WHERE project_id = $1")
        .bind(project_id)
        .execute(&mut *conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// The projects whose default type is `t`.
pub async fn default_type_projects(conn: &mut Conn, t: VolumeTypeId) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT project_id FROM default_volume_types WHERE volume_type_id = $1 ORDER BY project_id",
    )
    .bind(t.to_string())
    .fetch_all(&mut *conn)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume_types::DEFAULT_TYPE_ID;

    #[tokio::test]
    async fn set_replace_list_unset() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(
            &dir.path().join("db.sqlite"),
            &crate::StoreOptions::default(),
        )
        .await
        .unwrap();
        let mut conn = store.begin().await.unwrap();
        let t: VolumeTypeId = DEFAULT_TYPE_ID.parse().unwrap();
        assert_eq!(default_type_get(&mut conn, "p1").await.unwrap(), None);
        default_type_set(&mut conn, "p1", t).await.unwrap();
        default_type_set(&mut conn, "p1", t).await.unwrap();
        default_type_set(&mut conn, "p2", t).await.unwrap();
        let got = default_type_get(&mut conn, "p1").await.unwrap().unwrap();
        assert_eq!(got.volume_type_id, t);
        assert_eq!(default_type_list(&mut conn).await.unwrap().len(), 2);
        assert_eq!(
            default_type_projects(&mut conn, t).await.unwrap(),
            ["p1", "p2"]
        );
        assert!(default_type_unset(&mut conn, "p1").await.unwrap());
        assert!(!default_type_unset(&mut conn, "p1").await.unwrap());
        assert_eq!(default_type_projects(&mut conn, t).await.unwrap(), ["p2"]);
    }
}
