//! Issued tokens, kept by the hex SHA-256 of the token (see the parent module),
//! until they expire.

use chrono::{DateTime, NaiveDateTime, Utc};
use scoria_model::{ProjectId, UserId};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::{Conn, Result, StoreError, format_time};

/// An issued token, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    /// Hex SHA-256 of the token.
    pub hash: String,
    pub user_id: UserId,
    /// `None`: an unscoped or system-scoped token.
    pub project_id: Option<ProjectId>,
    /// Scoped to the system (`"system": {"all": true}`); no project then.
    pub system: bool,
    pub audit_id: String,
    /// The audit id of the token this one was made from (re-scoping).
    pub parent_audit_id: Option<String>,
    pub methods: Vec<String>,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked: bool,
}

fn parse_time(what: &str, s: &str) -> Result<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|t| t.and_utc())
        .map_err(|e| StoreError::Corrupt(format!("{what} {s:?}: {e}")))
}

fn token_from_row(r: &SqliteRow) -> Result<TokenRecord> {
    let methods: String = r.try_get("methods")?;
    Ok(TokenRecord {
        hash: r.try_get("token_hash")?,
        user_id: UserId(r.try_get("user_id")?),
        project_id: r.try_get::<Option<String>, _>("project_id")?.map(ProjectId),
        system: r.try_get("system")?,
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
                             issued_at, expires_at, revoked, system)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
    .bind(t.system)
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
