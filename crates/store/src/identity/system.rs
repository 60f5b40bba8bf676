//! Roles given to users on the system (Keystone's system scope: the whole
//! installation, `"system": {"all": true}`), not on a project.

use scoria_model::{DomainId, RoleId, UserId};
use sqlx::Row;

use super::{NameInDomain, Role};
use crate::{Conn, Result};

/// A role given to a user on the system, with the names of both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemGrant {
    pub user_id: UserId,
    pub user: NameInDomain,
    pub role: Role,
}

/// Give a role to a user on the system. True when it was not already given.
pub async fn system_grant_add(conn: &mut Conn, user_id: &UserId, role_id: &RoleId) -> Result<bool> {
    let r = sqlx::query(
        "INSERT INTO system_role_assignments (user_id, role_id) VALUES ($1, $2)
         ON CONFLICT DO NOTHING",
    )
    .bind(user_id.as_str())
    .bind(role_id.as_str())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Take a system role back. True when it had been given.
pub async fn system_grant_remove(
    conn: &mut Conn,
    user_id: &UserId,
    role_id: &RoleId,
) -> Result<bool> {
    let r = sqlx::query("DELETE FROM system_role_assignments WHERE user_id = $1 AND role_id = $2")
        .bind(user_id.as_str())
        .bind(role_id.as_str())
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Direct system grants, of one user and/or one role when given, by user
/// name then role name.
pub async fn system_grant_list(
    conn: &mut Conn,
    user_id: Option<&UserId>,
    role_id: Option<&RoleId>,
) -> Result<Vec<SystemGrant>> {
    let rows = sqlx::query(
        "SELECT a.user_id, u.name AS user_name, u.domain_id, d.name AS domain_name,
                a.role_id, r.name AS role_name
         FROM system_role_assignments a
         JOIN users u ON u.id = a.user_id
         JOIN domains d ON d.id = u.domain_id
         JOIN roles r ON r.id = a.role_id
         WHERE ($1 IS NULL OR a.user_id = $1) AND ($2 IS NULL OR a.role_id = $2)
         ORDER BY u.name, r.name",
    )
    .bind(user_id.map(UserId::as_str))
    .bind(role_id.map(RoleId::as_str))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(SystemGrant {
                user_id: UserId(r.try_get("user_id")?),
                user: NameInDomain {
                    name: r.try_get("user_name")?,
                    domain_id: DomainId(r.try_get("domain_id")?),
                    domain_name: r.try_get("domain_name")?,
                },
                role: Role {
                    id: RoleId(r.try_get("role_id")?),
                    name: r.try_get("role_name")?,
                },
            })
        })
        .collect()
}
