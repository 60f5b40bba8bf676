//! Users: who logs in (by password, kept as its hash) and to whom roles are
//! given, each in a domain, with a name unique in it.

use scoria_model::{DomainId, ProjectId, UserId};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::unique_violation;
use crate::{Conn, Result, StoreError};

#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub domain_id: DomainId,
    /// PHC string of the password's hash; `None`: the user cannot log in with
    /// a password.
    pub password_hash: Option<String>,
    pub enabled: bool,
    pub default_project_id: Option<ProjectId>,
    pub email: Option<String>,
    pub description: Option<String>,
    pub created_at: String,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash stays out of logs.
        f.debug_struct("User")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("domain_id", &self.domain_id)
            .field("enabled", &self.enabled)
            .field("default_project_id", &self.default_project_id)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, Default)]
pub struct UserFilter {
    pub name: Option<String>,
    pub domain_id: Option<DomainId>,
    pub enabled: Option<bool>,
}

/// Changes to a user; `None` leaves a field as it is. For the nullable fields
/// `Some(None)` clears it.
#[derive(Clone, Default)]
pub struct UserUpdate {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub default_project_id: Option<Option<ProjectId>>,
    pub email: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub password_hash: Option<String>,
}

fn user_from_row(r: &SqliteRow) -> Result<User> {
    Ok(User {
        id: UserId(r.try_get("id")?),
        name: r.try_get("name")?,
        domain_id: DomainId(r.try_get("domain_id")?),
        password_hash: r.try_get("password_hash")?,
        enabled: r.try_get("enabled")?,
        default_project_id: r
            .try_get::<Option<String>, _>("default_project_id")?
            .map(ProjectId),
        email: r.try_get("email")?,
        description: r.try_get("description")?,
        created_at: r.try_get("created_at")?,
    })
}

/// Create a user. A name taken in its domain (or a taken id) is `Duplicate`.
pub async fn user_create(conn: &mut Conn, u: &User) -> Result<()> {
    let r = sqlx::query(
        "INSERT INTO users (id, name, domain_id, password_hash, enabled, default_project_id,
                            email, description, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
    )
    .bind(u.id.as_str())
    .bind(&u.name)
    .bind(u.domain_id.as_str())
    .bind(u.password_hash.as_deref())
    .bind(u.enabled)
    .bind(u.default_project_id.as_ref().map(ProjectId::as_str))
    .bind(u.email.as_deref())
    .bind(u.description.as_deref())
    .bind(&u.created_at)
    .execute(conn)
    .await?;
    if r.rows_affected() == 0 {
        return Err(StoreError::Duplicate(format!(
            "A user named {} in domain {}",
            u.name, u.domain_id
        )));
    }
    Ok(())
}

pub async fn user_get(conn: &mut Conn, id: &str) -> Result<Option<User>> {
    sqlx::query("SELECT * FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?
        .map(|r| user_from_row(&r))
        .transpose()
}

pub async fn user_get_by_name(
    conn: &mut Conn,
    domain_id: &str,
    name: &str,
) -> Result<Option<User>> {
    sqlx::query("SELECT * FROM users WHERE domain_id = $1 AND name = $2")
        .bind(domain_id)
        .bind(name)
        .fetch_optional(conn)
        .await?
        .map(|r| user_from_row(&r))
        .transpose()
}

pub async fn user_list(conn: &mut Conn, f: &UserFilter) -> Result<Vec<User>> {
    sqlx::query(
        "SELECT * FROM users
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
    .map(user_from_row)
    .collect()
}

/// Change a user. False when it does not exist; a new name taken in its
/// domain is `Duplicate`.
pub async fn user_update(conn: &mut Conn, id: &UserId, u: &UserUpdate) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE users SET name = COALESCE($2, name),
                enabled = COALESCE($3, enabled),
                default_project_id = CASE WHEN $4 THEN $5 ELSE default_project_id END,
                email = CASE WHEN $6 THEN $7 ELSE email END,
                description = CASE WHEN $8 THEN $9 ELSE description END,
                password_hash = COALESCE($10, password_hash)
         WHERE id = $1",
    )
    .bind(id.as_str())
    .bind(u.name.as_deref())
    .bind(u.enabled)
    .bind(u.default_project_id.is_some())
    .bind(
        u.default_project_id
            .as_ref()
            .and_then(|p| p.as_ref().map(ProjectId::as_str)),
    )
    .bind(u.email.is_some())
    .bind(u.email.as_ref().and_then(|e| e.as_deref()))
    .bind(u.description.is_some())
    .bind(u.description.as_ref().and_then(|d| d.as_deref()))
    .bind(u.password_hash.as_deref())
    .execute(conn)
    .await;
    match r {
        Ok(r) => Ok(r.rows_affected() == 1),
        Err(e) if unique_violation(&e) => Err(StoreError::Duplicate(format!(
            "A user named {}",
            u.name.as_deref().unwrap_or_default()
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Delete a user with their role assignments and tokens. False when they did
/// not exist.
pub async fn user_delete(conn: &mut Conn, id: &UserId) -> Result<bool> {
    let r = sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id.as_str())
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}
