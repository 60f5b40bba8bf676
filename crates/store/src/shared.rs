//! SQL shapes several resources share, written once:
//! - [`KeyValues`]: a `(owner, key, value)` table — volume metadata, volume
//!   type extra specs, group type specs;
//! - [`NamedTypes`]: a table of named, public-or-private types — volume types
//!   and group types;
//! - [`Keyset`]: a list query with filters and keyset pagination ("rows after
//!   the marker in this order"), used by volume and message lists.
//!
//! - [`id_list`]: many ids bound as one JSON array parameter, read with
//!   `json_each` (`… IN (SELECT value FROM json_each($1))`): one bind
//!   whatever the number of ids. (A statement with a placeholder per id costs
//!   quadratically in sqlx, which looks each parameter up by name: a third of
//!   a 1000-volume page went there.)
//!
//! Table and column names come only from the `&'static str` constants of the
//! callers, never from a request, so formatting them into SQL is safe.

use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::sqlite::{SqliteArguments, SqliteRow};

use crate::{Conn, Result, StoreError, now};

/// `ids` as a JSON array of strings: one parameter for `json_each`.
pub(crate) fn id_list<T: std::fmt::Display>(ids: impl IntoIterator<Item = T>) -> String {
    let ids: Vec<String> = ids.into_iter().map(|i| i.to_string()).collect();
    serde_json::to_string(&ids).unwrap_or_else(|_| "[]".to_owned())
}

/// A `(owner, key, value)` table keyed by `(owner, key)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyValues {
    pub table: &'static str,
    pub owner: &'static str,
}

impl KeyValues {
    /// Every pair of one owner.
    pub async fn get(self, conn: &mut Conn, owner: &str) -> Result<BTreeMap<String, String>> {
        let sql = format!(
            "SELECT key, value FROM {} WHERE {} = $1",
            self.table, self.owner
        );
        let rows = sqlx::query(&sql).bind(owner).fetch_all(conn).await?;
        rows.iter()
            .map(|r| Ok((r.try_get("key")?, r.try_get("value")?)))
            .collect()
    }

    /// Every pair of each of `owners`, in one query (owners without pairs are
    /// absent from the map).
    pub async fn get_many(
        self,
        conn: &mut Conn,
        owners: &[String],
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        if owners.is_empty() {
            return Ok(out);
        }
        let sql = format!(
            "SELECT {o} AS owner, key, value FROM {t}
             WHERE {o} IN (SELECT value FROM json_each($1))",
            o = self.owner,
            t = self.table,
        );
        let query = sqlx::query(&sql).bind(id_list(owners));
        for r in query.fetch_all(conn).await? {
            out.entry(r.try_get("owner")?)
                .or_default()
                .insert(r.try_get("key")?, r.try_get("value")?);
        }
        Ok(out)
    }

    /// Add or overwrite the given keys, keeping the others (one statement).
    pub async fn merge(
        self,
        conn: &mut Conn,
        owner: &str,
        items: &BTreeMap<String, String>,
    ) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let values: Vec<String> = (0..items.len())
            .map(|i| format!("($1, ${}, ${})", 2 + i * 2, 3 + i * 2))
            .collect();
        let sql = format!(
            "INSERT INTO {t} ({o}, key, value) VALUES {v}
             ON CONFLICT ({o}, key) DO UPDATE SET value = excluded.value",
            t = self.table,
            o = self.owner,
            v = values.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(owner);
        for (k, v) in items {
            q = q.bind(k).bind(v);
        }
        q.execute(conn).await?;
        Ok(())
    }

    /// Replace every pair of one owner with `items`.
    pub async fn replace(
        self,
        conn: &mut Conn,
        owner: &str,
        items: &BTreeMap<String, String>,
    ) -> Result<()> {
        let sql = format!("DELETE FROM {} WHERE {} = $1", self.table, self.owner);
        sqlx::query(&sql).bind(owner).execute(&mut *conn).await?;
        self.merge(conn, owner, items).await
    }

    /// Delete one key; returns whether it existed.
    pub async fn delete(self, conn: &mut Conn, owner: &str, key: &str) -> Result<bool> {
        let sql = format!(
            "DELETE FROM {} WHERE {} = $1 AND key = $2",
            self.table, self.owner
        );
        let r = sqlx::query(&sql)
            .bind(owner)
            .bind(key)
            .execute(conn)
            .await?;
        Ok(r.rows_affected() == 1)
    }
}

/// A table of types with a unique `name`, a `description`, `is_public` and
/// timestamps.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NamedTypes {
    pub table: &'static str,
    /// How errors name a row ("Volume Type").
    pub what: &'static str,
}

impl NamedTypes {
    /// Insert a type; a name already taken is `Duplicate`.
    pub async fn create(
        self,
        conn: &mut Conn,
        id: &str,
        name: &str,
        description: Option<&str>,
        is_public: bool,
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO {} (id, name, description, is_public, created_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            self.table
        );
        let r = sqlx::query(&sql)
            .bind(id)
            .bind(name)
            .bind(description)
            .bind(is_public)
            .bind(now())
            .execute(conn)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::Duplicate(format!("{} {name}", self.what)));
        }
        Ok(())
    }

    /// Change what is given. Returns whether the type exists; a name taken by
    /// another type is `Duplicate`.
    pub async fn update(
        self,
        conn: &mut Conn,
        id: &str,
        name: Option<&str>,
        description: Option<&str>,
        is_public: Option<bool>,
    ) -> Result<bool> {
        if let Some(n) = name {
            let sql = format!("SELECT id FROM {} WHERE name = $1 AND id <> $2", self.table);
            let taken: Option<String> = sqlx::query_scalar(&sql)
                .bind(n)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
            if taken.is_some() {
                return Err(StoreError::Duplicate(format!("{} {n}", self.what)));
            }
        }
        let sql = format!(
            "UPDATE {} SET
                name = COALESCE($2, name),
                description = COALESCE($3, description),
                is_public = COALESCE($4, is_public),
                updated_at = $5
             WHERE id = $1",
            self.table
        );
        let r = sqlx::query(&sql)
            .bind(id)
            .bind(name)
            .bind(description)
            .bind(is_public)
            .bind(now())
            .execute(conn)
            .await?;
        Ok(r.rows_affected() == 1)
    }
}

/// Change the `name` and/or `description` of row `id` of `table`
/// (`Some(None)` clears a field). Returns whether the row exists.
pub(crate) async fn update_text(
    conn: &mut Conn,
    table: &'static str,
    id: &str,
    name: Option<Option<&str>>,
    description: Option<Option<&str>>,
) -> Result<bool> {
    let sql = format!(
        "UPDATE {table} SET
            name = CASE WHEN $2 THEN $3 ELSE name END,
            description = CASE WHEN $4 THEN $5 ELSE description END,
            updated_at = $6
         WHERE id = $1"
    );
    let r = sqlx::query(&sql)
        .bind(id)
        .bind(name.is_some())
        .bind(name.flatten())
        .bind(description.is_some())
        .bind(description.flatten())
        .bind(now())
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// A value bound into a list query.
#[derive(Clone, Debug)]
pub(crate) enum SqlValue {
    Text(String),
    Int(i64),
}

/// Sort direction of a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortDir {
    Asc,
    Desc,
}

/// A list query under construction: `SELECT … WHERE …` with bound values,
/// then the keyset condition, the order and the page.
pub(crate) struct Keyset {
    sql: String,
    args: Vec<SqlValue>,
}

impl Keyset {
    /// Start from `SELECT … WHERE <condition>` (must end in a condition so
    /// that filters can follow with `AND`).
    pub fn new(select: &str) -> Keyset {
        Keyset {
            sql: select.to_owned(),
            args: Vec::new(),
        }
    }

    /// Append SQL text.
    pub fn push(&mut self, s: &str) {
        self.sql.push_str(s);
    }

    /// Append a placeholder bound to `v`.
    pub fn bind(&mut self, v: SqlValue) {
        self.args.push(v);
        self.sql.push_str(&format!("${}", self.args.len()));
    }

    /// `AND <expr> = <v>`.
    pub fn filter(&mut self, expr: &str, v: SqlValue) {
        self.push(&format!(" AND {expr} = "));
        self.bind(v);
    }

    /// Rows strictly after the marker in the order `sort`, given the marker's
    /// value of each sort expression: `(k1 > m1) OR (k1 = m1 AND k2 > m2) …`
    /// (`<` for descending keys).
    pub fn after(&mut self, sort: &[(&str, SortDir, SqlValue)]) {
        self.push(" AND (");
        for i in 0..sort.len() {
            if i > 0 {
                self.push(" OR ");
            }
            self.push("(");
            for (expr, _, value) in &sort[..i] {
                self.push(&format!("{expr} = "));
                self.bind(value.clone());
                self.push(" AND ");
            }
            let (expr, dir, value) = &sort[i];
            self.push(expr);
            self.push(if *dir == SortDir::Asc { " > " } else { " < " });
            self.bind(value.clone());
            self.push(")");
        }
        self.push(")");
    }

    /// `ORDER BY` the sort expressions, then `LIMIT`/`OFFSET` when given.
    pub fn order_and_page(
        &mut self,
        sort: &[(&str, SortDir)],
        limit: Option<i64>,
        offset: Option<i64>,
    ) {
        let order: Vec<String> = sort
            .iter()
            .map(|(e, d)| format!("{e} {}", if *d == SortDir::Asc { "ASC" } else { "DESC" }))
            .collect();
        self.push(&format!(" ORDER BY {}", order.join(", ")));
        match (limit, offset) {
            (None, None) => {}
            // SQLite and PostgreSQL both read -1 / ALL differently; a huge
            // limit means "no limit" to both.
            (l, o) => self.push(&format!(
                " LIMIT {} OFFSET {}",
                l.map(|l| l.max(0)).unwrap_or(i64::MAX),
                o.unwrap_or(0).max(0)
            )),
        }
    }

    /// Run it.
    pub async fn fetch_all(self, conn: &mut Conn) -> Result<Vec<SqliteRow>> {
        let mut q: sqlx::query::Query<'_, sqlx::Sqlite, SqliteArguments<'_>> =
            sqlx::query(&self.sql);
        for a in &self.args {
            q = match a {
                SqlValue::Text(s) => q.bind(s.as_str()),
                SqlValue::Int(i) => q.bind(*i),
            };
        }
        Ok(q.fetch_all(conn).await?)
    }

    /// Run it as a `SELECT COUNT(*) …`.
    pub async fn fetch_count(self, conn: &mut Conn) -> Result<i64> {
        let mut q = sqlx::query_scalar::<_, i64>(&self.sql);
        for a in &self.args {
            q = match a {
                SqlValue::Text(s) => q.bind(s.as_str()),
                SqlValue::Int(i) => q.bind(*i),
            };
        }
        Ok(q.fetch_one(conn).await?)
    }
}
