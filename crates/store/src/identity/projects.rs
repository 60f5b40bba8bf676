//! Projects: the owners of Block Storage resources, each in a domain, with a
//! name unique in it.

use scoria_model::{DomainId, ProjectId, UserId};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::unique_violation;
use crate::{Conn, Result, StoreError, now};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Project {
    pub id: ProjectId,
    pub name: String,
    pub domain_id: DomainId,
    pub description: String,
    pub enabled: bool,
    pub created_at: String,
}

#[derive(Clone, Debug, Default)]
pub struct ProjectFilter {
    pub name: Option<String>,
    pub domain_id: Option<DomainId>,
    pub enabled: Option<bool>,
}

#[derive(Clone, Debug, Default)]
pub struct ProjectUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

fn project_from_row(r: &SqliteRow) -> Result<Project> {
    Ok(Project {
        id: ProjectId(r.try_get("id")?),
        name: r.try_get("name")?,
        domain_id: DomainId(r.try_get("domain_id")?),
        description: r.try_get("description")?,
        enabled: r.try_get("enabled")?,
        created_at: r.try_get("created_at")?,
    })
}

/// Create a project. A name taken in its domain (or a taken id) is `Duplicate`.
pub async fn project_create(conn: &mut Conn, p: &Project) -> Result<()> {
    let r = sqlx::query(
        "INSERT INTO projects (id, name, domain_id, description, enabled, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(p.id.as_str())
    .bind(&p.name)
    .bind(p.domain_id.as_str())
    .bind(&p.description)
    .bind(p.enabled)
    .bind(&p.created_at)
    .execute(conn)
    .await?;
    if r.rows_affected() == 0 {
        return Err(StoreError::Duplicate(format!(
            "A project named {} in domain {}",
            p.name, p.domain_id
        )));
    }
    Ok(())
}

pub async fn project_get(conn: &mut Conn, id: &str) -> Result<Option<Project>> {
    sqlx::query("SELECT * FROM projects WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?
        .map(|r| project_from_row(&r))
        .transpose()
}

pub async fn project_get_by_name(
    conn: &mut Conn,
    domain_id: &str,
    name: &str,
) -> Result<Option<Project>> {
    sqlx::query("SELECT * FROM projects WHERE domain_id = $1 AND name = $2")
        .bind(domain_id)
        .bind(name)
        .fetch_optional(conn)
        .await?
        .map(|r| project_from_row(&r))
        .transpose()
}

pub async fn project_list(conn: &mut Conn, f: &ProjectFilter) -> Result<Vec<Project>> {
    sqlx::query(
        "SELECT * FROM projects
         WHERE ($1 IS NULL OR name = $1) AND ($2 IS NULL OR domain_id = $2)
           AND ($3 IS NULL OR enabled = $3)
         ORDER BY name, id",
    )
    .bind(f.name.as_deref())
    .bind(f.domain_id.as_ref().map(DomainId::as_str))
    .bind(f.enabled)
    .fetch_all(conn)
    .await?
    .iter()
    .map(project_from_row)
    .collect()
}

/// Projects on which a user holds at least one role.
pub async fn project_list_for_user(conn: &mut Conn, user_id: &UserId) -> Result<Vec<Project>> {
    sqlx::query(
        "SELECT * FROM projects p
         WHERE EXISTS (SELECT 1 FROM role_assignments a
                       WHERE a.project_id = p.id AND a.user_id = $1)
         ORDER BY p.name, p.id",
    )
    .bind(user_id.as_str())
    .fetch_all(conn)
    .await?
    .iter()
    .map(project_from_row)
    .collect()
}

/// Change a project. False when it does not exist; a new name taken in its
/// domain is `Duplicate`.
pub async fn project_update(conn: &mut Conn, id: &ProjectId, u: &ProjectUpdate) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE projects SET name = COALESCE($2, name),
                description = COALESCE($3, description),
                enabled = COALESCE($4, enabled)
         WHERE id = $1",
    )
    .bind(id.as_str())
    .bind(u.name.as_deref())
    .bind(u.description.as_deref())
    .bind(u.enabled)
    .execute(conn)
    .await;
    match r {
        Ok(r) => Ok(r.rows_affected() == 1),
        Err(e) if unique_violation(&e) => Err(StoreError::Duplicate(format!(
            "A project named {}",
            u.name.as_deref().unwrap_or_default()
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Delete a project with its role assignments and tokens. False when it did
/// not exist.
pub async fn project_delete(conn: &mut Conn, id: &ProjectId) -> Result<bool> {
    let r = sqlx::query("DELETE FROM projects WHERE id = $1")
        .bind(id.as_str())
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// How many things Block Storage still keeps for a project: volumes (in any
/// status), groups and reservations of unfinished flows. A project is only
/// deleted when this is zero. (Add snapshots and backups here when they get
/// tables of their own that are not reached through a volume.)
pub async fn project_resource_count(conn: &mut Conn, id: &ProjectId) -> Result<i64> {
    let n: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM volumes WHERE project_id = $1)
              + (SELECT COUNT(*) FROM volume_groups WHERE project_id = $1)
              + (SELECT COUNT(*) FROM reservations WHERE project_id = $1)",
    )
    .bind(id.as_str())
    .fetch_one(conn)
    .await?;
    Ok(n)
}

/// A fresh project record in a domain (id chosen here, created now).
pub fn new_project(name: &str, domain_id: DomainId, description: &str, enabled: bool) -> Project {
    Project {
        id: ProjectId::new(),
        name: name.to_owned(),
        domain_id,
        description: description.to_owned(),
        enabled,
        created_at: now(),
    }
}
