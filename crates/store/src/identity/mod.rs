//! Identity records: domains, projects, users, roles and their inference rules,
//! role assignments on projects, tokens.
//!
//! Tokens are kept by the hex SHA-256 of the token: a copy of the database
//! lets nobody act as anyone. Revoking a token marks its row; rows are deleted
//! once expired. Deleting a user or a project removes its assignments and
//! tokens (foreign keys cascade).

use chrono::{DateTime, NaiveDateTime, Utc};
use scoria_model::{DomainId, ProjectId, RoleId, UserId};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::{Conn, Result, StoreError, format_time, now};

/// The domain every installation has (seeded by the identity migration).
pub const DEFAULT_DOMAIN_ID: &str = "default";
pub const DEFAULT_DOMAIN_NAME: &str = "Default";
/// The seeded roles. admin implies member, member implies reader.
pub const ADMIN_ROLE_ID: &str = "5f2b6a0e8c1d4b3a9e7f0a1b2c3d4e01";
pub const MEMBER_ROLE_ID: &str = "5f2b6a0e8c1d4b3a9e7f0a1b2c3d4e02";
pub const READER_ROLE_ID: &str = "5f2b6a0e8c1d4b3a9e7f0a1b2c3d4e03";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Domain {
    pub id: DomainId,
    pub name: String,
    pub description: String,
    pub enabled: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Project {
    pub id: ProjectId,
    pub name: String,
    pub domain_id: DomainId,
    pub description: String,
    pub enabled: bool,
    pub created_at: String,
}

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

#[derive(Clone, Debug, Default)]
pub struct AssignmentFilter {
    pub user_id: Option<UserId>,
    pub project_id: Option<ProjectId>,
    pub role_id: Option<RoleId>,
}

/// An issued token, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    /// Hex SHA-256 of the token.
    pub hash: String,
    pub user_id: UserId,
    /// `None`: an unscoped token.
    pub project_id: Option<ProjectId>,
    pub audit_id: String,
    /// The audit id of the token this one was made from (re-scoping).
    pub parent_audit_id: Option<String>,
    pub methods: Vec<String>,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked: bool,
}

fn unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

fn parse_time(what: &str, s: &str) -> Result<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|t| t.and_utc())
        .map_err(|e| StoreError::Corrupt(format!("{what} {s:?}: {e}")))
}

// ---------------------------------------------------------------- domains

fn domain_from_row(r: &SqliteRow) -> Result<Domain> {
    Ok(Domain {
        id: DomainId(r.try_get("id")?),
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        enabled: r.try_get("enabled")?,
    })
}

/// Create a domain unless one with its id exists. True when created.
pub async fn domain_ensure(conn: &mut Conn, d: &Domain) -> Result<bool> {
    let r = sqlx::query(
        "INSERT INTO domains (id, name, description, enabled) VALUES ($1, $2, $3, $4)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(d.id.as_str())
    .bind(&d.name)
    .bind(&d.description)
    .bind(d.enabled)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn domain_get(conn: &mut Conn, id: &str) -> Result<Option<Domain>> {
    sqlx::query("SELECT * FROM domains WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?
        .map(|r| domain_from_row(&r))
        .transpose()
}

pub async fn domain_get_by_name(conn: &mut Conn, name: &str) -> Result<Option<Domain>> {
    sqlx::query("SELECT * FROM domains WHERE name = $1")
        .bind(name)
        .fetch_optional(conn)
        .await?
        .map(|r| domain_from_row(&r))
        .transpose()
}

/// Every domain, or the one with `name`.
pub async fn domain_list(conn: &mut Conn, name: Option<&str>) -> Result<Vec<Domain>> {
    sqlx::query("SELECT * FROM domains WHERE $1 IS NULL OR name = $1 ORDER BY name")
        .bind(name)
        .fetch_all(conn)
        .await?
        .iter()
        .map(domain_from_row)
        .collect()
}

// ---------------------------------------------------------------- projects

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

// ---------------------------------------------------------------- users

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

// ---------------------------------------------------------------- roles

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

// ---------------------------------------------------------------- tokens

fn token_from_row(r: &SqliteRow) -> Result<TokenRecord> {
    let methods: String = r.try_get("methods")?;
    Ok(TokenRecord {
        hash: r.try_get("token_hash")?,
        user_id: UserId(r.try_get("user_id")?),
        project_id: r.try_get::<Option<String>, _>("project_id")?.map(ProjectId),
        audit_id: r.try_get("audit_id")?,
        parent_audit_id: r.try_get("parent_audit_id")?,
        methods: methods
            .split(',')
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect(),
        issued_at: parse_time("token issued_at", r.try_get("issued_at")?)?,
        expires_at: parse_time("token expires_at", r.try_get("expires_at")?)?,
        revoked: r.try_get("revoked")?,
    })
}

pub async fn token_insert(conn: &mut Conn, t: &TokenRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO tokens (token_hash, user_id, project_id, audit_id, parent_audit_id, methods,
                             issued_at, expires_at, revoked)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&t.hash)
    .bind(t.user_id.as_str())
    .bind(t.project_id.as_ref().map(ProjectId::as_str))
    .bind(&t.audit_id)
    .bind(t.parent_audit_id.as_deref())
    .bind(t.methods.join(","))
    .bind(format_time(t.issued_at))
    .bind(format_time(t.expires_at))
    .bind(t.revoked)
    .execute(conn)
    .await?;
    Ok(())
}

/// The token with this hash (revoked and expired ones included).
pub async fn token_get(conn: &mut Conn, hash: &str) -> Result<Option<TokenRecord>> {
    sqlx::query("SELECT * FROM tokens WHERE token_hash = $1")
        .bind(hash)
        .fetch_optional(conn)
        .await?
        .map(|r| token_from_row(&r))
        .transpose()
}

/// Revoke one token. True when it existed and was not yet revoked.
pub async fn token_revoke(conn: &mut Conn, hash: &str) -> Result<bool> {
    let r = sqlx::query("UPDATE tokens SET revoked = TRUE WHERE token_hash = $1 AND NOT revoked")
        .bind(hash)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Revoke every token of a user; the number revoked.
pub async fn token_revoke_user(conn: &mut Conn, user_id: &UserId) -> Result<u64> {
    let r = sqlx::query("UPDATE tokens SET revoked = TRUE WHERE user_id = $1 AND NOT revoked")
        .bind(user_id.as_str())
        .execute(conn)
        .await?;
    Ok(r.rows_affected())
}

/// Forget tokens that expired before `before`; the number deleted.
pub async fn token_delete_expired(conn: &mut Conn, before: DateTime<Utc>) -> Result<u64> {
    let r = sqlx::query("DELETE FROM tokens WHERE expires_at < $1")
        .bind(format_time(before))
        .execute(conn)
        .await?;
    Ok(r.rows_affected())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    fn user(name: &str) -> User {
        User {
            id: UserId::new(),
            name: name.into(),
            domain_id: DomainId::from(DEFAULT_DOMAIN_ID),
            password_hash: Some("$argon2id$fake".into()),
            enabled: true,
            default_project_id: None,
            email: None,
            description: None,
            created_at: now(),
        }
    }

    fn default_domain() -> DomainId {
        DomainId::from(DEFAULT_DOMAIN_ID)
    }

    #[tokio::test]
    async fn seeded_domain_and_roles() {
        let (s, _d) = testing::store().await;
        let mut c = s.read().await.unwrap();
        let d = domain_get_by_name(&mut c, "Default")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.id.as_str(), DEFAULT_DOMAIN_ID);
        assert_eq!(domain_list(&mut c, Some("Default")).await.unwrap(), vec![d]);
        assert!(domain_list(&mut c, Some("nope")).await.unwrap().is_empty());
        let names: Vec<String> = role_list(&mut c, None)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["admin", "member", "reader"]);
        assert_eq!(
            role_get(&mut c, ADMIN_ROLE_ID).await.unwrap().unwrap().name,
            "admin"
        );
        assert_eq!(
            role_get_by_name(&mut c, "reader")
                .await
                .unwrap()
                .unwrap()
                .id
                .as_str(),
            READER_ROLE_ID
        );
        let rules: Vec<(String, String)> = role_inference_list(&mut c)
            .await
            .unwrap()
            .into_iter()
            .map(|(p, i)| (p.name, i.name))
            .collect();
        assert_eq!(
            rules,
            [
                ("admin".to_string(), "member".to_string()),
                ("member".to_string(), "reader".to_string())
            ]
        );
    }

    #[tokio::test]
    async fn domain_ensure_is_idempotent() {
        let (s, _d) = testing::store().await;
        let mut tx = s.begin().await.unwrap();
        let d = Domain {
            id: default_domain(),
            name: DEFAULT_DOMAIN_NAME.into(),
            description: "x".into(),
            enabled: true,
        };
        assert!(!domain_ensure(&mut tx, &d).await.unwrap());
        let other = Domain {
            id: DomainId::from("other"),
            name: "Other".into(),
            description: String::new(),
            enabled: true,
        };
        assert!(domain_ensure(&mut tx, &other).await.unwrap());
        assert!(!domain_ensure(&mut tx, &other).await.unwrap());
        assert_eq!(domain_list(&mut tx, None).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn project_round_trip_and_names_unique_per_domain() {
        let (s, _d) = testing::store().await;
        let mut tx = s.begin().await.unwrap();
        let p = new_project("p1", default_domain(), "first", true);
        project_create(&mut tx, &p).await.unwrap();
        let dup = new_project("p1", default_domain(), "", true);
        assert!(matches!(
            project_create(&mut tx, &dup).await,
            Err(StoreError::Duplicate(_))
        ));
        assert_eq!(
            project_get(&mut tx, p.id.as_str()).await.unwrap().as_ref(),
            Some(&p)
        );
        assert_eq!(
            project_get_by_name(&mut tx, DEFAULT_DOMAIN_ID, "p1")
                .await
                .unwrap()
                .as_ref(),
            Some(&p)
        );
        let p2 = new_project("p2", default_domain(), "", false);
        project_create(&mut tx, &p2).await.unwrap();
        let cases: Vec<(ProjectFilter, &[&str])> = vec![
            (ProjectFilter::default(), &["p1", "p2"]),
            (
                ProjectFilter {
                    name: Some("p2".into()),
                    ..Default::default()
                },
                &["p2"],
            ),
            (
                ProjectFilter {
                    enabled: Some(true),
                    ..Default::default()
                },
                &["p1"],
            ),
            (
                ProjectFilter {
                    domain_id: Some(DomainId::from("nope")),
                    ..Default::default()
                },
                &[],
            ),
        ];
        for (f, expect) in cases {
            let got: Vec<String> = project_list(&mut tx, &f)
                .await
                .unwrap()
                .into_iter()
                .map(|p| p.name)
                .collect();
            assert_eq!(got, expect, "{f:?}");
        }
        // Renaming onto a taken name is a duplicate; other changes apply.
        let rename = ProjectUpdate {
            name: Some("p1".into()),
            ..Default::default()
        };
        assert!(matches!(
            project_update(&mut tx, &p2.id, &rename).await,
            Err(StoreError::Duplicate(_))
        ));
        let change = ProjectUpdate {
            description: Some("second".into()),
            enabled: Some(true),
            ..Default::default()
        };
        assert!(project_update(&mut tx, &p2.id, &change).await.unwrap());
        let got = project_get(&mut tx, p2.id.as_str()).await.unwrap().unwrap();
        assert_eq!(
            (got.name.as_str(), got.description.as_str(), got.enabled),
            ("p2", "second", true)
        );
        assert!(
            !project_update(&mut tx, &ProjectId::new(), &change)
                .await
                .unwrap()
        );
        assert!(project_delete(&mut tx, &p2.id).await.unwrap());
        assert!(!project_delete(&mut tx, &p2.id).await.unwrap());
        assert_eq!(project_resource_count(&mut tx, &p.id).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn user_round_trip_and_update_of_nullable_fields() {
        let (s, _d) = testing::store().await;
        let mut tx = s.begin().await.unwrap();
        let mut u = user("alice");
        u.email = Some("a@example.com".into());
        user_create(&mut tx, &u).await.unwrap();
        assert!(matches!(
            user_create(&mut tx, &user("alice")).await,
            Err(StoreError::Duplicate(_))
        ));
        assert_eq!(
            user_get(&mut tx, u.id.as_str()).await.unwrap().as_ref(),
            Some(&u)
        );
        assert_eq!(
            user_get_by_name(&mut tx, DEFAULT_DOMAIN_ID, "alice")
                .await
                .unwrap()
                .as_ref(),
            Some(&u)
        );
        let b = user("bob");
        user_create(&mut tx, &b).await.unwrap();
        let names = |v: Vec<User>| v.into_iter().map(|u| u.name).collect::<Vec<_>>();
        assert_eq!(
            names(user_list(&mut tx, &UserFilter::default()).await.unwrap()),
            ["alice", "bob"]
        );
        let only_bob = UserFilter {
            name: Some("bob".into()),
            domain_id: Some(default_domain()),
            enabled: Some(true),
        };
        assert_eq!(names(user_list(&mut tx, &only_bob).await.unwrap()), ["bob"]);

        let p = new_project("p", default_domain(), "", true);
        project_create(&mut tx, &p).await.unwrap();
        // (update, expected (email, default project, enabled, hash))
        type Expect = (Option<&'static str>, bool, bool, &'static str);
        let cases: Vec<(UserUpdate, Expect)> = vec![
            (
                UserUpdate::default(),
                (Some("a@example.com"), false, true, "$argon2id$fake"),
            ),
            (
                UserUpdate {
                    email: Some(None),
                    default_project_id: Some(Some(p.id.clone())),
                    ..Default::default()
                },
                (None, true, true, "$argon2id$fake"),
            ),
            (
                UserUpdate {
                    enabled: Some(false),
                    password_hash: Some("$argon2id$new".into()),
                    ..Default::default()
                },
                (None, true, false, "$argon2id$new"),
            ),
            (
                UserUpdate {
                    default_project_id: Some(None),
                    email: Some(Some("b@example.com".into())),
                    ..Default::default()
                },
                (Some("b@example.com"), false, false, "$argon2id$new"),
            ),
        ];
        for (upd, (email, has_default, enabled, hash)) in cases {
            assert!(user_update(&mut tx, &u.id, &upd).await.unwrap());
            let got = user_get(&mut tx, u.id.as_str()).await.unwrap().unwrap();
            assert_eq!(got.email.as_deref(), email);
            assert_eq!(got.default_project_id.is_some(), has_default);
            assert_eq!(got.enabled, enabled);
            assert_eq!(got.password_hash.as_deref(), Some(hash));
        }
        let rename = UserUpdate {
            name: Some("bob".into()),
            ..Default::default()
        };
        assert!(matches!(
            user_update(&mut tx, &u.id, &rename).await,
            Err(StoreError::Duplicate(_))
        ));
        assert!(user_delete(&mut tx, &u.id).await.unwrap());
        assert!(!user_delete(&mut tx, &u.id).await.unwrap());
        assert!(
            !user_update(&mut tx, &u.id, &UserUpdate::default())
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn assignments_filter_and_cascade() {
        let (s, _d) = testing::store().await;
        let mut tx = s.begin().await.unwrap();
        let (a, b) = (user("a"), user("b"));
        user_create(&mut tx, &a).await.unwrap();
        user_create(&mut tx, &b).await.unwrap();
        let (p, q) = (
            new_project("p", default_domain(), "", true),
            new_project("q", default_domain(), "", true),
        );
        project_create(&mut tx, &p).await.unwrap();
        project_create(&mut tx, &q).await.unwrap();
        let (admin, member) = (RoleId::from(ADMIN_ROLE_ID), RoleId::from(MEMBER_ROLE_ID));
        assert!(
            role_assignment_add(&mut tx, &a.id, &p.id, &admin)
                .await
                .unwrap()
        );
        assert!(
            !role_assignment_add(&mut tx, &a.id, &p.id, &admin)
                .await
                .unwrap()
        );
        role_assignment_add(&mut tx, &a.id, &q.id, &member)
            .await
            .unwrap();
        role_assignment_add(&mut tx, &b.id, &q.id, &member)
            .await
            .unwrap();

        let cases: Vec<(AssignmentFilter, &[&str])> = vec![
            (
                AssignmentFilter::default(),
                &["a/p/admin", "a/q/member", "b/q/member"],
            ),
            (
                AssignmentFilter {
                    user_id: Some(a.id.clone()),
                    ..Default::default()
                },
                &["a/p/admin", "a/q/member"],
            ),
            (
                AssignmentFilter {
                    project_id: Some(q.id.clone()),
                    ..Default::default()
                },
                &["a/q/member", "b/q/member"],
            ),
            (
                AssignmentFilter {
                    role_id: Some(admin.clone()),
                    ..Default::default()
                },
                &["a/p/admin"],
            ),
            (
                AssignmentFilter {
                    user_id: Some(b.id.clone()),
                    project_id: Some(p.id.clone()),
                    role_id: None,
                },
                &[],
            ),
        ];
        for (f, expect) in cases {
            let got: Vec<String> = role_assignment_list(&mut tx, &f)
                .await
                .unwrap()
                .into_iter()
                .map(|x| format!("{}/{}/{}", x.user.name, x.project.name, x.role.name))
                .collect();
            assert_eq!(got, expect, "{f:?}");
        }
        let names: Vec<String> = project_list_for_user(&mut tx, &a.id)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["p", "q"]);

        assert!(
            role_assignment_remove(&mut tx, &a.id, &p.id, &admin)
                .await
                .unwrap()
        );
        assert!(
            !role_assignment_remove(&mut tx, &a.id, &p.id, &admin)
                .await
                .unwrap()
        );
        // Deleting a project or a user takes their assignments with them.
        project_delete(&mut tx, &q.id).await.unwrap();
        user_delete(&mut tx, &b.id).await.unwrap();
        assert!(
            role_assignment_list(&mut tx, &AssignmentFilter::default())
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn tokens_revoke_expire_and_cascade() {
        let (s, _d) = testing::store().await;
        let mut tx = s.begin().await.unwrap();
        let u = user("t");
        user_create(&mut tx, &u).await.unwrap();
        let p = new_project("p", default_domain(), "", true);
        project_create(&mut tx, &p).await.unwrap();
        let t0 = chrono::Utc::now();
        let token = |hash: &str, project: Option<&ProjectId>, ttl_secs: i64| TokenRecord {
            hash: hash.into(),
            user_id: u.id.clone(),
            project_id: project.cloned(),
            audit_id: format!("audit-{hash}"),
            parent_audit_id: None,
            methods: vec!["password".into()],
            issued_at: t0,
            expires_at: t0 + chrono::Duration::seconds(ttl_secs),
            revoked: false,
        };
        let live = token("h1", Some(&p.id), 3600);
        let unscoped = TokenRecord {
            parent_audit_id: Some("audit-h1".into()),
            methods: vec!["token".into(), "password".into()],
            ..token("h2", None, 3600)
        };
        let old = token("h3", None, -10);
        for t in [&live, &unscoped, &old] {
            token_insert(&mut tx, t).await.unwrap();
        }
        // Times round-trip to the microsecond.
        let got = token_get(&mut tx, "h1").await.unwrap().unwrap();
        assert_eq!(
            got.expires_at.timestamp_micros(),
            live.expires_at.timestamp_micros()
        );
        assert_eq!(got.project_id, live.project_id);
        let got2 = token_get(&mut tx, "h2").await.unwrap().unwrap();
        assert_eq!(got2.methods, ["token", "password"]);
        assert_eq!(got2.parent_audit_id.as_deref(), Some("audit-h1"));
        assert!(token_get(&mut tx, "nope").await.unwrap().is_none());

        assert!(token_revoke(&mut tx, "h1").await.unwrap());
        assert!(!token_revoke(&mut tx, "h1").await.unwrap());
        assert!(token_get(&mut tx, "h1").await.unwrap().unwrap().revoked);
        assert_eq!(token_revoke_user(&mut tx, &u.id).await.unwrap(), 2);
        assert_eq!(
            token_delete_expired(&mut tx, chrono::Utc::now())
                .await
                .unwrap(),
            1
        );
        assert!(token_get(&mut tx, "h3").await.unwrap().is_none());
        // A project's tokens go with it; a user's too.
        project_delete(&mut tx, &p.id).await.unwrap();
        assert!(token_get(&mut tx, "h1").await.unwrap().is_none());
        user_delete(&mut tx, &u.id).await.unwrap();
        assert!(token_get(&mut tx, "h2").await.unwrap().is_none());
    }
}
