//! What administrators changed about the backends at runtime (migration
//! 0026): backends added through the API, and deactivated or removed ones.
//! No row means a backend of the configuration file, `active`.

use sqlx::Row;

use crate::{Conn, Result, now};

/// A backend's recorded administrative state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendRow {
    pub name: String,
    /// Its settings (JSON) when it was added through the API.
    pub spec: Option<String>,
    /// `active`, `deactivated` or `removed`.
    pub state: String,
    pub reason: Option<String>,
    pub updated_at: String,
}

fn from_row(r: &sqlx::sqlite::SqliteRow) -> Result<BackendRow> {
    Ok(BackendRow {
        name: r.try_get("name")?,
        spec: r.try_get("spec")?,
        state: r.try_get("state")?,
        reason: r.try_get("reason")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// Every recorded backend, by name.
pub async fn backend_list(conn: &mut Conn) -> Result<Vec<BackendRow>> {
    let rows =
        sqlx::query("SELECT name, spec, state, reason, updated_at FROM backends ORDER BY name")
            .fetch_all(conn)
            .await?;
    rows.iter().map(from_row).collect()
}

pub async fn backend_get(conn: &mut Conn, name: &str) -> Result<Option<BackendRow>> {
    let row =
        sqlx::query("SELECT name, spec, state, reason, updated_at FROM backends WHERE name = $1")
            .bind(name)
            .fetch_optional(conn)
            .await?;
    row.as_ref().map(from_row).transpose()
}

/// Record a backend's state (and its settings, when `spec` is `Some`;
/// `None` keeps those recorded).
pub async fn backend_put(
    conn: &mut Conn,
    name: &str,
    spec: Option<&str>,
    state: &str,
    reason: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO backends (name, spec, state, reason, updated_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (name) DO UPDATE SET
             spec = COALESCE(excluded.spec, backends.spec),
             state = excluded.state,
             reason = excluded.reason,
             updated_at = excluded.updated_at",
    )
    .bind(name)
    .bind(spec)
    .bind(state)
    .bind(reason)
    .bind(now())
    .execute(conn)
    .await?;
    Ok(())
}

/// The names of the backends that take no new volumes (deactivated or
/// removed): placement asks inside its transaction.
pub async fn backend_closed(conn: &mut Conn) -> Result<std::collections::BTreeSet<String>> {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT name FROM backends WHERE state <> 'active'")
            .fetch_all(conn)
            .await?;
    Ok(names.into_iter().collect())
}

/// What is on a backend, in words, as far as the records know: its
/// volumes (with their status), and each image there with whoever uses it
/// (or that nothing does yet: data waiting to be freed). At most `limit`
/// entries, and how many there are in all.
pub async fn backend_contents(
    conn: &mut Conn,
    backend: &str,
    limit: usize,
) -> Result<(Vec<String>, usize)> {
    let mut out = Vec::new();
    let mut total = 0usize;
    let volumes = sqlx::query("SELECT id, status FROM volumes WHERE backend = $1 ORDER BY id")
        .bind(backend)
        .fetch_all(&mut *conn)
        .await?;
    for r in &volumes {
        total += 1;
        if out.len() < limit {
            let id: String = r.try_get("id")?;
            let status: String = r.try_get("status")?;
            out.push(format!("volume {id} ({status})"));
        }
    }
    let users = crate::images::image_users_on_backend(&mut *conn, backend).await?;
    let images = crate::images::image_list_on_backend(&mut *conn, backend).await?;
    for i in images {
        // A volume's own image is named through its volume above.
        let named: Vec<String> = users
            .get(&i.id)
            .map(|us| {
                us.iter()
                    .filter(|u| !matches!(u, crate::images::ImageUser::Volume(_)))
                    .map(|u| u.to_string())
                    .collect()
            })
            .unwrap_or_default();
        let is_volumes = users.get(&i.id).is_some_and(|us| {
            us.iter()
                .any(|u| matches!(u, crate::images::ImageUser::Volume(_)))
        });
        if is_volumes && named.is_empty() {
            continue;
        }
        total += 1;
        if out.len() < limit {
            out.push(if named.is_empty() {
                format!(
                    "image {} (used by nothing: its data waits to be freed)",
                    i.id
                )
            } else {
                format!("image {} (used by {})", i.id, named.join(", "))
            });
        }
    }
    Ok((out, total))
}

/// What on a backend is in use now, in words: volumes attached or with an
/// operation running (any status but `available` and `error`), and images
/// being made or freed. At most `limit` entries, and how many in all.
pub async fn backend_busy(
    conn: &mut Conn,
    backend: &str,
    limit: usize,
) -> Result<(Vec<String>, usize)> {
    let rows = sqlx::query(
        "SELECT 'volume ' || id || ' (' || status || ')' AS what FROM volumes
          WHERE backend = $1 AND status NOT IN ('available', 'error')
         UNION ALL
         SELECT 'image ' || id || ' (' || state || ')' FROM images
          WHERE backend = $1 AND state IN ('creating', 'deleting')
         ORDER BY 1",
    )
    .bind(backend)
    .fetch_all(conn)
    .await?;
    let total = rows.len();
    let out = rows
        .iter()
        .take(limit)
        .map(|r| r.try_get("what"))
        .collect::<std::result::Result<_, _>>()?;
    Ok((out, total))
}
