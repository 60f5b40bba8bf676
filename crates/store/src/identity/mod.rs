//! Identity records: domains, projects, users, roles and their inference rules,
//! role assignments on projects, tokens.
//!
//! Tokens are kept by the hex SHA-256 of the token: a copy of the database
//! lets nobody act as anyone. Revoking a token marks its row; rows are deleted
//! once expired. Deleting a user or a project removes its assignments and
//! tokens (foreign keys cascade).
//!
//! One file per kind of record: `projects.rs`, `users.rs`, `roles.rs` (with
//! their inference rules and the assignments of roles to users on projects),
//! `system.rs` (roles given on the system) and `tokens.rs`; domains, the namespace of users and projects, are here. Their
//! items are re-exported from here: `identity::project_create` and the like are
//! the paths to use.

use scoria_model::DomainId;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::{Conn, Result};

mod projects;
mod roles;
mod system;
mod tokens;
mod users;

#[cfg(test)]
mod tests;

pub use projects::*;
pub use roles::*;
pub use system::*;
pub use tokens::*;
pub use users::*;

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

fn unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
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
