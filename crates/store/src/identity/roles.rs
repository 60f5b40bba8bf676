//! Roles, the rules by which one role implies another, and the assignments of
//! roles to users on projects.

use scoria_model::{DomainId, ProjectId, RoleId, UserId};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::{Conn, Result};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Role {
    pub id: RoleId,
    pub name: String,
}

/// The name of a user or project and of its domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameInDomain {
    pub name: String,
    pub domain_id: DomainId,
    pub domain_name: String,
}

/// A role given to a user on a project, with the names of all three.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub user_id: UserId,
    pub user: NameInDomain,
    pub project_id: ProjectId,
    pub project: NameInDomain,
    pub role: Role,
}

#[derive(Clone, Debug, Default)]
pub struct AssignmentFilter {
    pub user_id: Option<UserId>,
    pub project_id: Option<ProjectId>,
    pub role_id: Option<RoleId>,
}

fn role_from_row(r: &SqliteRow) -> Result<Role> {
    Ok(Role {
        id: RoleId(r.try_get("id")?),
        name: r.try_get("name")?,
    })
}

/// Every role, or the one with `name`.
pub async fn role_list(conn: &mut Conn, name: Option<&str>) -> Result<Vec<Role>> {
    sqlx::query("SELECT * FROM roles WHERE $1 IS NULL OR name = $1 ORDER BY name")
        .bind(name)
        .fetch_all(conn)
        .await?
        .iter()
        .map(role_from_row)
        .collect()
}

pub async fn role_get(conn: &mut Conn, id: &str) -> Result<Option<Role>> {
    sqlx::query("SELECT * FROM roles WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?
        .map(|r| role_from_row(&r))
        .transpose()
}

pub async fn role_get_by_name(conn: &mut Conn, name: &str) -> Result<Option<Role>> {
    sqlx::query("SELECT * FROM roles WHERE name = $1")
        .bind(name)
        .fetch_optional(conn)
        .await?
        .map(|r| role_from_row(&r))
        .transpose()
}

/// The direct inference rules: (prior role, role it implies).
pub async fn role_inference_list(conn: &mut Conn) -> Result<Vec<(Role, Role)>> {
    let rows = sqlx::query(
        "SELECT p.id AS prior_id, p.name AS prior_name, i.id AS implied_id, i.name AS implied_name
         FROM implied_roles ir
         JOIN roles p ON p.id = ir.prior_role_id
         JOIN roles i ON i.id = ir.implied_role_id
         ORDER BY p.name, i.name",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                Role {
                    id: RoleId(r.try_get("prior_id")?),
                    name: r.try_get("prior_name")?,
                },
                Role {
                    id: RoleId(r.try_get("implied_id")?),
                    name: r.try_get("implied_name")?,
                },
            ))
        })
        .collect()
}

// ---------------------------------------------------------------- assignments

/// Give a role to a user on a project. True when it was not already given.
pub async fn role_assignment_add(
    conn: &mut Conn,
    user_id: &UserId,
    project_id: &ProjectId,
    role_id: &RoleId,
) -> Result<bool> {
    let r = sqlx::query(
        "INSERT INTO role_assignments (user_id, project_id, role_id) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(user_id.as_str())
    .bind(project_id.as_str())
    .bind(role_id.as_str())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Take a role back. True when it had been given.
pub async fn role_assignment_remove(
    conn: &mut Conn,
    user_id: &UserId,
    project_id: &ProjectId,
    role_id: &RoleId,
) -> Result<bool> {
    let r = sqlx::query(
        "DELETE FROM role_assignments WHERE user_id = $1 AND project_id = $2 AND role_id = $3",
    )
    .bind(user_id.as_str())
    .bind(project_id.as_str())
    .bind(role_id.as_str())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Direct assignments matching the filter, with names.
pub async fn role_assignment_list(
    conn: &mut Conn,
    f: &AssignmentFilter,
) -> Result<Vec<Assignment>> {
    let rows = sqlx::query(
        "SELECT a.user_id, u.name AS user_name, u.domain_id AS user_domain_id,
                ud.name AS user_domain_name,
                a.project_id, p.name AS project_name, p.domain_id AS project_domain_id,
                pd.name AS project_domain_name,
                a.role_id, r.name AS role_name
         FROM role_assignments a
         JOIN users u ON u.id = a.user_id
         JOIN domains ud ON ud.id = u.domain_id
         JOIN projects p ON p.id = a.project_id
         JOIN domains pd ON pd.id = p.domain_id
         JOIN roles r ON r.id = a.role_id
         WHERE ($1 IS NULL OR a.user_id = $1) AND ($2 IS NULL OR a.project_id = $2)
           AND ($3 IS NULL OR a.role_id = $3)
         ORDER BY u.name, p.name, r.name",
    )
    .bind(f.user_id.as_ref().map(UserId::as_str))
    .bind(f.project_id.as_ref().map(ProjectId::as_str))
    .bind(f.role_id.as_ref().map(RoleId::as_str))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Assignment {
                user_id: UserId(r.try_get("user_id")?),
                user: NameInDomain {
                    name: r.try_get("user_name")?,
                    domain_id: DomainId(r.try_get("user_domain_id")?),
                    domain_name: r.try_get("user_domain_name")?,
                },
                project_id: ProjectId(r.try_get("project_id")?),
                project: NameInDomain {
                    name: r.try_get("project_name")?,
                    domain_id: DomainId(r.try_get("project_domain_id")?),
                    domain_name: r.try_get("project_domain_name")?,
                },
                role: Role {
                    id: RoleId(r.try_get("role_id")?),
                    name: r.try_get("role_name")?,
                },
            })
        })
        .collect()
}
