//! Quota limits, reservations, and usage derived from what exists.
//!
//! Usage of a project is computed, in the transaction that wants to change it,
//! from two sources:
//! - `in_use`: the resources that exist (volumes whose quota is committed: their
//!   `reservation_id` is NULL; groups, each from the transaction that makes it;
//!   later snapshots and backups);
//! - `reserved`: the `reservations` rows of flows that have not finished.
//!
//! A create flow *reserves* (inserts a reservation after checking the limits),
//! creates its entry pointing at the reservation, then *commits* (deletes the
//! reservation and clears the entry's pointer, in one transaction): at every
//! instant each unit of quota is counted exactly once. A failed flow *rolls back*
//! by deleting its reservations. Nothing can drift because nothing is counted.

use std::collections::BTreeMap;

use scoria_model::quota::{self, QuotaExceeded, QuotaResource, Usage};
use scoria_model::{FlowId, ReservationId};
use sqlx::Row;

use crate::{Conn, Result, now, parse};

/// The class whose limits are the defaults.
pub const DEFAULT_CLASS: &str = "default";

/// Limits of a quota class (the `default` class holds the defaults). Resources
/// absent from the table get Cinder's built-in default.
pub async fn quota_class_get(conn: &mut Conn, class: &str) -> Result<BTreeMap<QuotaResource, i64>> {
    let rows = sqlx::query("SELECT resource, hard_limit FROM quota_classes WHERE class_name = $1")
        .bind(class)
        .fetch_all(&mut *conn)
        .await?;
    let mut limits: BTreeMap<QuotaResource, i64> = QuotaResource::ALL
        .iter()
        .map(|r| (*r, r.default_limit()))
        .collect();
    for r in rows {
        // Rows for resources this version does not know are ignored, not fatal.
        if let Ok(res) = r.try_get::<&str, _>("resource")?.parse::<QuotaResource>() {
            limits.insert(res, r.try_get("hard_limit")?);
        }
    }
    Ok(limits)
}

/// Set limits of a quota class.
pub async fn quota_class_set(
    conn: &mut Conn,
    class: &str,
    limits: &[(QuotaResource, i64)],
) -> Result<()> {
    for (res, limit) in limits {
        sqlx::query(
            "INSERT INTO quota_classes (class_name, resource, hard_limit) VALUES ($1, $2, $3)
             ON CONFLICT (class_name, resource) DO UPDATE SET hard_limit = excluded.hard_limit",
        )
        .bind(class)
        .bind(res.as_str())
        .bind(limit)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A project's own overrides (only the resources it overrides).
pub async fn quota_limit_overrides(
    conn: &mut Conn,
    project: &str,
) -> Result<BTreeMap<QuotaResource, i64>> {
    let rows = sqlx::query("SELECT resource, hard_limit FROM quota_limits WHERE project_id = $1")
        .bind(project)
        .fetch_all(&mut *conn)
        .await?;
    let mut out = BTreeMap::new();
    for r in rows {
        if let Ok(res) = r.try_get::<&str, _>("resource")?.parse::<QuotaResource>() {
            out.insert(res, r.try_get("hard_limit")?);
        }
    }
    Ok(out)
}

/// The limits that apply to a project: defaults overlaid with its overrides
/// (one query).
pub async fn quota_limits(conn: &mut Conn, project: &str) -> Result<BTreeMap<QuotaResource, i64>> {
    let rows = sqlx::query(
        "SELECT c.resource AS resource, COALESCE(l.hard_limit, c.hard_limit) AS hard_limit
         FROM quota_classes c
         LEFT JOIN quota_limits l ON l.project_id = $2 AND l.resource = c.resource
         WHERE c.class_name = $1
         UNION ALL
         SELECT l.resource, l.hard_limit FROM quota_limits l
         WHERE l.project_id = $2
           AND NOT EXISTS (SELECT 1 FROM quota_classes c WHERE c.class_name = $1 AND c.resource = l.resource)",
    )
    .bind(DEFAULT_CLASS)
    .bind(project)
    .fetch_all(&mut *conn)
    .await?;
    let mut limits: BTreeMap<QuotaResource, i64> = QuotaResource::ALL
        .iter()
        .map(|r| (*r, r.default_limit()))
        .collect();
    for r in rows {
        if let Ok(res) = r.try_get::<&str, _>("resource")?.parse::<QuotaResource>() {
            limits.insert(res, r.try_get("hard_limit")?);
        }
    }
    Ok(limits)
}

/// Override some of a project's limits.
pub async fn quota_limit_set(
    conn: &mut Conn,
    project: &str,
    limits: &[(QuotaResource, i64)],
) -> Result<()> {
    for (res, limit) in limits {
        sqlx::query(
            "INSERT INTO quota_limits (project_id, resource, hard_limit) VALUES ($1, $2, $3)
             ON CONFLICT (project_id, resource) DO UPDATE SET hard_limit = excluded.hard_limit",
        )
        .bind(project)
        .bind(res.as_str())
        .bind(limit)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Drop all of a project's overrides (back to the defaults).
pub async fn quota_limit_delete(conn: &mut Conn, project: &str) -> Result<()> {
    sqlx::query("DELETE FROM quota_limits WHERE project_id = $1")
        .bind(project)
        .execute(conn)
        .await?;
    Ok(())
}

/// A project's usage, derived from what exists and what is reserved (one
/// query).
pub async fn quota_usage(conn: &mut Conn, project: &str) -> Result<BTreeMap<QuotaResource, Usage>> {
    let mut usage: BTreeMap<QuotaResource, Usage> = QuotaResource::ALL
        .iter()
        .filter(|r| r.has_usage())
        .map(|r| (*r, Usage::default()))
        .collect();
    let rows = sqlx::query(
        "SELECT 'in_use' AS kind, '' AS resource, COUNT(*) AS n, COALESCE(SUM(size), 0) AS gb
         FROM volumes WHERE project_id = $1 AND reservation_id IS NULL
         UNION ALL
         SELECT 'groups', '', COUNT(*), 0 FROM volume_groups WHERE project_id = $1
         UNION ALL
         SELECT 'reserved', resource, SUM(delta), 0 FROM reservations
         WHERE project_id = $1 GROUP BY resource",
    )
    .bind(project)
    .fetch_all(&mut *conn)
    .await?;
    for r in rows {
        let kind: &str = r.try_get("kind")?;
        if kind == "in_use" {
            let (n, gb): (i64, i64) = (r.try_get("n")?, r.try_get("gb")?);
            if let Some(u) = usage.get_mut(&QuotaResource::Volumes) {
                u.in_use = n;
            }
            if let Some(u) = usage.get_mut(&QuotaResource::Gigabytes) {
                u.in_use = gb;
            }
        } else if kind == "groups" {
            // Every group counts from the transaction that inserts it (a
            // group is made in one transaction, or by a flow's first step
            // after its quota check) until the one that deletes it.
            if let Some(u) = usage.get_mut(&QuotaResource::Groups) {
                u.in_use = r.try_get("n")?;
            }
        } else {
            let res: QuotaResource =
                parse("reservation resource", r.try_get::<&str, _>("resource")?)?;
            usage.entry(res).or_default().reserved = r.try_get("n")?;
        }
    }
    Ok(usage)
}

/// Check `deltas` against the project's limits and usage (derived now, in the
/// caller's transaction) without recording anything: for a change that takes
/// effect in that same transaction (a volume changing projects), so that there
/// is nothing to reserve. `single_size` is checked against
/// `per_volume_gigabytes`.
pub async fn quota_check(
    conn: &mut Conn,
    project: &str,
    deltas: &[(QuotaResource, i64)],
    single_size: Option<i64>,
) -> Result<()> {
    let limits = quota_limits(conn, project).await?;
    let usage = quota_usage(conn, project).await?;
    quota::check(&limits, &usage, deltas, single_size).map_err(|e: QuotaExceeded| e)?;
    Ok(())
}

/// Check `deltas` against the project's limits and usage and, if they fit,
/// record them as reservations held by `flow`, all in the caller's transaction.
/// Positive deltas only are reserved. `single_size` is checked against
/// `per_volume_gigabytes`.
pub async fn quota_reserve(
    conn: &mut Conn,
    flow: FlowId,
    project: &str,
    deltas: &[(QuotaResource, i64)],
    single_size: Option<i64>,
) -> Result<Vec<ReservationId>> {
    quota_check(conn, project, deltas, single_size).await?;
    let rows: Vec<(ReservationId, QuotaResource, i64)> = deltas
        .iter()
        .filter(|(r, d)| *d > 0 && r.has_usage())
        .map(|&(r, d)| (ReservationId::new(), r, d))
        .collect();
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    // One multi-row insert: $1 flow, $2 project, $3 time, then (id, resource, delta) per row.
    let values: Vec<String> = (0..rows.len())
        .map(|i| {
            format!(
                "(${}, $1, $2, ${}, ${}, $3)",
                4 + i * 3,
                5 + i * 3,
                6 + i * 3
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO reservations (id, flow_id, project_id, resource, delta, created_at) VALUES {}",
        values.join(", ")
    );
    let mut q = sqlx::query(&sql)
        .bind(flow.to_string())
        .bind(project)
        .bind(now());
    for (id, res, delta) in &rows {
        q = q.bind(id.to_string()).bind(res.as_str()).bind(*delta);
    }
    q.execute(&mut *conn).await?;
    Ok(rows.into_iter().map(|(id, _, _)| id).collect())
}

/// Delete the reservations a flow holds (commit or roll back: which one it is
/// depends on what the caller does in the same transaction). Returns how many
/// rows went; zero is fine (already released).
pub async fn reservation_release_flow(conn: &mut Conn, flow: FlowId) -> Result<u64> {
    let r = sqlx::query("DELETE FROM reservations WHERE flow_id = $1")
        .bind(flow.to_string())
        .execute(conn)
        .await?;
    Ok(r.rows_affected())
}

/// Every reservation, for invariant checks: (flow id, project, resource, delta).
pub async fn reservation_list(conn: &mut Conn) -> Result<Vec<(String, String, String, i64)>> {
    let rows = sqlx::query("SELECT flow_id, project_id, resource, delta FROM reservations")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("flow_id")?,
                r.try_get("project_id")?,
                r.try_get("resource")?,
                r.try_get("delta")?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{StoreError, testing};
    use QuotaResource::*;

    #[tokio::test]
    async fn limits_overlay_defaults_and_overrides() {
        let (s, _d) = testing::store().await;
        let mut tx = s.begin().await.unwrap();
        assert_eq!(quota_limits(&mut tx, "p").await.unwrap()[&Volumes], 10);
        quota_class_set(&mut tx, DEFAULT_CLASS, &[(Volumes, 20)])
            .await
            .unwrap();
        assert_eq!(quota_limits(&mut tx, "p").await.unwrap()[&Volumes], 20);
        quota_limit_set(&mut tx, "p", &[(Volumes, 2), (Gigabytes, 5)])
            .await
            .unwrap();
        let l = quota_limits(&mut tx, "p").await.unwrap();
        assert_eq!((l[&Volumes], l[&Gigabytes], l[&Snapshots]), (2, 5, 10));
        assert_eq!(quota_limits(&mut tx, "q").await.unwrap()[&Volumes], 20);
        quota_limit_delete(&mut tx, "p").await.unwrap();
        assert_eq!(quota_limits(&mut tx, "p").await.unwrap()[&Volumes], 20);
    }

    #[tokio::test]
    async fn reserve_checks_and_counts_reservations() {
        let (s, _d) = testing::store().await;
        let mut tx = s.begin().await.unwrap();
        quota_limit_set(&mut tx, "p", &[(Volumes, 2)])
            .await
            .unwrap();
        let (f1, f2, f3) = (FlowId::new(), FlowId::new(), FlowId::new());
        quota_reserve(&mut tx, f1, "p", &[(Volumes, 1), (Gigabytes, 1)], Some(1))
            .await
            .unwrap();
        quota_reserve(&mut tx, f2, "p", &[(Volumes, 1), (Gigabytes, 1)], Some(1))
            .await
            .unwrap();
        let err = quota_reserve(&mut tx, f3, "p", &[(Volumes, 1)], None)
            .await
            .unwrap_err();
        match err {
            StoreError::OverQuota(e) => {
                assert_eq!((e.resource, e.limit, e.reserved), (Volumes, 2, 2))
            }
            other => panic!("{other:?}"),
        }
        let u = quota_usage(&mut tx, "p").await.unwrap();
        assert_eq!(
            u[&Volumes],
            Usage {
                in_use: 0,
                reserved: 2
            }
        );
        assert_eq!(
            u[&Gigabytes],
            Usage {
                in_use: 0,
                reserved: 2
            }
        );
        assert_eq!(reservation_release_flow(&mut tx, f1).await.unwrap(), 2);
        assert_eq!(reservation_release_flow(&mut tx, f1).await.unwrap(), 0);
        assert_eq!(
            quota_usage(&mut tx, "p").await.unwrap()[&Volumes].reserved,
            1
        );
        quota_reserve(&mut tx, f3, "p", &[(Volumes, 1)], None)
            .await
            .unwrap();
    }
}
