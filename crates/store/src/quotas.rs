//! Quota limits, reservations, and usage.
//!
//! Usage of a project has two parts, read in the transaction that wants to
//! change it:
//! - `in_use`: the resources that exist (volumes, snapshots and backups whose
//!   quota is committed: their `reservation_id` is NULL; groups, each from the
//!   transaction that makes it). These are read from `usage_totals`, which the
//!   triggers of migration 0021 change inside every statement that inserts,
//!   deletes or updates such a record: a few rows per project, so a check costs
//!   the same with 100 volumes or 100,000. The totals are a cache of a
//!   derivation, not a second source: [`derived_usage_totals`] computes them
//!   from the records and the invariant check compares the two.
//! - `reserved`: the `reservations` rows of flows that have not finished.
//!
//! A create flow *reserves* (inserts a reservation after checking the limits),
//! creates its entry pointing at the reservation, then *commits* (deletes the
//! reservation and clears the entry's pointer, in one transaction): at every
//! instant each unit of quota is counted exactly once. A failed flow *rolls back*
//! by deleting its reservations. Nothing can drift: the only writer of a total
//! is the trigger on the record it sums, in the same transaction.
//!
//! # Per-type keys
//!
//! Limits per volume type (`volumes_<type>`, `gigabytes_<type>`,
//! `snapshots_<type>`) live in the same `quota_classes` and `quota_limits`
//! tables, and reservations for them in `reservations`: the `resource` column
//! holds [`QuotaKey::stored`], which names the type by its **id**
//! (`volumes_7a3d2a5e-…`), not by its name as Cinder does. A type's id never
//! changes, so renaming a type is one update of `volume_types` and nothing
//! else: its limits, and the reservations of flows in flight that name it,
//! follow without being rewritten, and a rename racing a reservation cannot
//! strand a row under an old name. Names appear only at the API edge
//! (`scoria_core::quotas` translates in the transaction that reads or writes
//! the limits). Deleting a type deletes its limit rows in the same
//! transaction ([`quota_forget_type`]), so a later type of the same name
//! starts unlimited, as a new type should.
//!
//! Usage per type is derived like the rest: committed volumes grouped by their
//! `volume_type_id`, plus reservations whose key names the type. A retype
//! changes `volume_type_id` in one conditional update (only of a volume whose
//! quota is committed), so the volume's usage moves with its type in the same
//! commit and is never counted under both.

use std::collections::BTreeMap;

use scoria_model::quota::{self, QuotaKey, QuotaResource, Usage};
use scoria_model::{FlowId, ReservationId, VolumeTypeId};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::{Conn, Result, now, parse};

/// The class whose limits are the defaults.
pub const DEFAULT_CLASS: &str = "default";

/// Every project-wide resource at its built-in default.
fn builtin_defaults() -> BTreeMap<QuotaKey, i64> {
    QuotaResource::ALL
        .iter()
        .map(|r| (QuotaKey::Global(*r), r.default_limit()))
        .collect()
}

/// `(resource, hard_limit)` rows laid over `limits`. Rows for keys this
/// version does not know are ignored, not fatal.
fn overlay(limits: &mut BTreeMap<QuotaKey, i64>, rows: &[SqliteRow]) -> Result<()> {
    for r in rows {
        if let Some(key) = QuotaKey::parse_stored(r.try_get::<&str, _>("resource")?) {
            limits.insert(key, r.try_get("hard_limit")?);
        }
    }
    Ok(())
}

/// Limits of a quota class (the `default` class holds the defaults): every
/// project-wide resource (Cinder's built-in default when the table has no
/// row), and the per-type keys the class sets.
pub async fn quota_class_get(conn: &mut Conn, class: &str) -> Result<BTreeMap<QuotaKey, i64>> {
    let rows = sqlx::query("SELECT resource, hard_limit FROM quota_classes WHERE class_name = $1")
        .bind(class)
        .fetch_all(&mut *conn)
        .await?;
    let mut limits = builtin_defaults();
    overlay(&mut limits, &rows)?;
    Ok(limits)
}

/// Set limits of a quota class.
pub async fn quota_class_set(
    conn: &mut Conn,
    class: &str,
    limits: &[(QuotaKey, i64)],
) -> Result<()> {
    for (key, limit) in limits {
        sqlx::query(
            "INSERT INTO quota_classes (class_name, resource, hard_limit) VALUES ($1, $2, $3)
             ON CONFLICT (class_name, resource) DO UPDATE SET hard_limit = excluded.hard_limit",
        )
        .bind(class)
        .bind(key.stored())
        .bind(limit)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A project's own overrides (only the keys it overrides).
pub async fn quota_limit_overrides(
    conn: &mut Conn,
    project: &str,
) -> Result<BTreeMap<QuotaKey, i64>> {
    let rows = sqlx::query("SELECT resource, hard_limit FROM quota_limits WHERE project_id = $1")
        .bind(project)
        .fetch_all(&mut *conn)
        .await?;
    let mut out = BTreeMap::new();
    overlay(&mut out, &rows)?;
    Ok(out)
}

/// The limits that apply to a project: defaults overlaid with its overrides
/// (one query). Per-type keys that neither sets are absent (unlimited).
pub async fn quota_limits(conn: &mut Conn, project: &str) -> Result<BTreeMap<QuotaKey, i64>> {
    let rows = sqlx::query(LIMITS_SQL)
        .bind(DEFAULT_CLASS)
        .bind(project)
        .fetch_all(&mut *conn)
        .await?;
    limits_from(&rows)
}

/// The limits of the project `$2` in the class `$1` (two columns a row).
const LIMITS_SQL: &str = "SELECT c.resource AS resource, COALESCE(l.hard_limit, c.hard_limit) AS hard_limit
         FROM quota_classes c
         LEFT JOIN quota_limits l ON l.project_id = $2 AND l.resource = c.resource
         WHERE c.class_name = $1
         UNION ALL
         SELECT l.resource, l.hard_limit FROM quota_limits l
         WHERE l.project_id = $2
           AND NOT EXISTS (SELECT 1 FROM quota_classes c WHERE c.class_name = $1 AND c.resource = l.resource)";

fn limits_from(rows: &[SqliteRow]) -> Result<BTreeMap<QuotaKey, i64>> {
    let mut limits = builtin_defaults();
    overlay(&mut limits, rows)?;
    Ok(limits)
}

/// Override some of a project's limits.
pub async fn quota_limit_set(
    conn: &mut Conn,
    project: &str,
    limits: &[(QuotaKey, i64)],
) -> Result<()> {
    for (key, limit) in limits {
        sqlx::query(
            "INSERT INTO quota_limits (project_id, resource, hard_limit) VALUES ($1, $2, $3)
             ON CONFLICT (project_id, resource) DO UPDATE SET hard_limit = excluded.hard_limit",
        )
        .bind(project)
        .bind(key.stored())
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

/// Drop every limit of a type's keys, in every class and every project: the
/// type is being deleted, in the caller's transaction. Reservations naming it
/// stay: they belong to flows in flight, which release them.
pub async fn quota_forget_type(conn: &mut Conn, volume_type: VolumeTypeId) -> Result<()> {
    let [a, b, c] = QuotaKey::of_type(volume_type).map(QuotaKey::stored);
    for table in ["quota_classes", "quota_limits"] {
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE resource IN ($1, $2, $3)"
        ))
        .bind(&a)
        .bind(&b)
        .bind(&c)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A project's usage, derived from what exists and what is reserved (one
/// query): every project-wide resource that has usage, and the per-type keys
/// of the types the project uses or reserves.
pub async fn quota_usage(conn: &mut Conn, project: &str) -> Result<BTreeMap<QuotaKey, Usage>> {
    let rows = sqlx::query(USAGE_SQL)
        .bind(DEFAULT_CLASS)
        .bind(project)
        .fetch_all(&mut *conn)
        .await?;
    usage_from(rows)
}

/// What the project `$2` uses and reserves (four columns a row). What exists
/// comes from the totals the triggers of migration 0021 keep (a few rows per
/// project, whatever its size); what is reserved from the flows in flight.
const USAGE_SQL: &str = "SELECT kind, volume_type_id AS resource, n, gb
         FROM usage_totals WHERE project_id = $2 AND (n != 0 OR gb != 0)
         UNION ALL
         SELECT 'reserved', resource, CAST(SUM(delta) AS BIGINT), 0 FROM reservations
         WHERE project_id = $2 GROUP BY resource";

fn usage_from(rows: Vec<SqliteRow>) -> Result<BTreeMap<QuotaKey, Usage>> {
    use scoria_model::quota::TypedResource;
    let mut usage: BTreeMap<QuotaKey, Usage> = QuotaResource::ALL
        .iter()
        .filter(|r| r.has_usage())
        .map(|r| (QuotaKey::Global(*r), Usage::default()))
        .collect();
    for r in rows {
        let kind: &str = r.try_get("kind")?;
        let resource: &str = r.try_get("resource")?;
        if kind == "volumes" {
            let (n, gb): (i64, i64) = (r.try_get("n")?, r.try_get("gb")?);
            let t: VolumeTypeId = parse("volume type id", resource)?;
            for (key, amount) in [
                (QuotaKey::Global(QuotaResource::Volumes), n),
                (QuotaKey::Global(QuotaResource::Gigabytes), gb),
                (QuotaKey::PerType(TypedResource::Volumes, t), n),
                (QuotaKey::PerType(TypedResource::Gigabytes, t), gb),
            ] {
                usage.entry(key).or_default().in_use += amount;
            }
        } else if kind == "snapshots" {
            // A snapshot counts against `snapshots` and, as Cinder counts it
            // (`no_snapshot_gb_quota = False`), against `gigabytes`, overall
            // and for its volume type.
            let (n, gb): (i64, i64) = (r.try_get("n")?, r.try_get("gb")?);
            let t: VolumeTypeId = parse("volume type id", resource)?;
            for (key, amount) in [
                (QuotaKey::Global(QuotaResource::Snapshots), n),
                (QuotaKey::Global(QuotaResource::Gigabytes), gb),
                (QuotaKey::PerType(TypedResource::Snapshots, t), n),
                (QuotaKey::PerType(TypedResource::Gigabytes, t), gb),
            ] {
                usage.entry(key).or_default().in_use += amount;
            }
        } else if kind == "backups" {
            // A backup counts against `backups` and `backup_gigabytes` (its
            // volume's size) from its committed create until its delete.
            let (n, gb): (i64, i64) = (r.try_get("n")?, r.try_get("gb")?);
            usage
                .entry(QuotaKey::Global(QuotaResource::Backups))
                .or_default()
                .in_use += n;
            usage
                .entry(QuotaKey::Global(QuotaResource::BackupGigabytes))
                .or_default()
                .in_use += gb;
        } else if kind == "groups" {
            // Every group counts from the transaction that inserts it (a
            // group is made in one transaction, or by a flow's first step
            // after its quota check) until the one that deletes it.
            if let Some(u) = usage.get_mut(&QuotaKey::Global(QuotaResource::Groups)) {
                u.in_use = r.try_get("n")?;
            }
        } else {
            let key = QuotaKey::parse_stored(resource).ok_or_else(|| {
                crate::StoreError::Corrupt(format!("reservation resource {resource:?}"))
            })?;
            usage.entry(key).or_default().reserved = r.try_get("n")?;
        }
    }
    Ok(usage)
}

/// [`quota_limits`] and [`quota_usage`] in one command (two statements, one
/// round trip), the rows told apart by their width.
async fn limits_and_usage(
    conn: &mut Conn,
    project: &str,
) -> Result<(BTreeMap<QuotaKey, i64>, BTreeMap<QuotaKey, Usage>)> {
    let sql = format!("{LIMITS_SQL};\n{USAGE_SQL}");
    let rows = sqlx::query(&sql)
        .bind(DEFAULT_CLASS)
        .bind(project)
        .fetch_all(&mut *conn)
        .await?;
    let (limits, usage): (Vec<SqliteRow>, Vec<SqliteRow>) =
        rows.into_iter().partition(|r| r.columns().len() == 2);
    Ok((limits_from(&limits)?, usage_from(usage)?))
}

/// Check `deltas` against the project's limits and usage (derived now, in the
/// caller's transaction) without recording anything: for a change that takes
/// effect in that same transaction (a volume changing projects), so that there
/// is nothing to reserve. `single_size` is checked against
/// `per_volume_gigabytes`.
pub async fn quota_check(
    conn: &mut Conn,
    project: &str,
    deltas: &[(QuotaKey, i64)],
    single_size: Option<i64>,
) -> Result<()> {
    let (limits, usage) = limits_and_usage(conn, project).await?;
    if let Err(mut e) = quota::check(&limits, &usage, deltas, single_size) {
        // The message names a per-type key by its type's name, as the API does.
        if let QuotaKey::PerType(_, t) = e.key {
            e.type_name = sqlx::query_scalar("SELECT name FROM volume_types WHERE id = $1")
                .bind(t.to_string())
                .fetch_optional(&mut *conn)
                .await?;
        }
        return Err(e.into());
    }
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
    deltas: &[(QuotaKey, i64)],
    single_size: Option<i64>,
) -> Result<Vec<ReservationId>> {
    quota_check(conn, project, deltas, single_size).await?;
    let rows: Vec<(ReservationId, QuotaKey, i64)> = deltas
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
        q = q.bind(id.to_string()).bind(res.stored()).bind(*delta);
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

/// Totals by `(project id or "@" + backend, kind, volume type id)`: `(n, gb)`.
/// Kinds are `volumes`, `snapshots`, `backups`, `groups` per project and
/// `placed` per backend; zero totals are left out.
pub type Totals = BTreeMap<(String, String, String), (i64, i64)>;

/// The totals the triggers of migration 0021 maintain (`usage_totals`,
/// `backend_totals`), for the invariant check.
pub async fn maintained_totals(conn: &mut Conn) -> Result<Totals> {
    totals(
        conn,
        "SELECT project_id AS k, kind, volume_type_id AS t, n, gb FROM usage_totals
         UNION ALL
         SELECT '@' || backend, 'placed', '', n, gb FROM backend_totals",
    )
    .await
}

/// The same totals derived from the records by scanning them: what
/// [`maintained_totals`] must always equal.
pub async fn derived_totals(conn: &mut Conn) -> Result<Totals> {
    totals(
        conn,
        "SELECT project_id AS k, 'volumes' AS kind, volume_type_id AS t, COUNT(*) AS n,
                COALESCE(SUM(size), 0) AS gb
         FROM volumes WHERE reservation_id IS NULL GROUP BY project_id, volume_type_id
         UNION ALL
         SELECT project_id, 'snapshots', volume_type_id, COUNT(*), COALESCE(SUM(size), 0)
         FROM snapshots WHERE reservation_id IS NULL GROUP BY project_id, volume_type_id
         UNION ALL
         SELECT project_id, 'backups', '', COUNT(*), COALESCE(SUM(size), 0)
         FROM backups WHERE reservation_id IS NULL GROUP BY project_id
         UNION ALL
         SELECT project_id, 'groups', '', COUNT(*), 0 FROM volume_groups GROUP BY project_id
         UNION ALL
         SELECT '@' || backend, 'placed', '', COUNT(*), COALESCE(SUM(size), 0)
         FROM volumes WHERE backend IS NOT NULL GROUP BY backend",
    )
    .await
}

async fn totals(conn: &mut Conn, sql: &str) -> Result<Totals> {
    let rows = sqlx::query(sql).fetch_all(conn).await?;
    let mut out = Totals::new();
    for r in rows {
        let (n, gb): (i64, i64) = (r.try_get("n")?, r.try_get("gb")?);
        if n != 0 || gb != 0 {
            out.insert(
                (r.try_get("k")?, r.try_get("kind")?, r.try_get("t")?),
                (n, gb),
            );
        }
    }
    Ok(out)
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
    use crate::{StoreError, testing, volume_types, volumes};
    use scoria_model::VolumeId;
    use scoria_model::quota::TypedResource;
    use scoria_model::volume::VolumeStatus;

    const V: QuotaKey = QuotaKey::Global(QuotaResource::Volumes);
    const G: QuotaKey = QuotaKey::Global(QuotaResource::Gigabytes);
    const S: QuotaKey = QuotaKey::Global(QuotaResource::Snapshots);

    fn tv(t: VolumeTypeId) -> QuotaKey {
        QuotaKey::PerType(TypedResource::Volumes, t)
    }
    fn tg(t: VolumeTypeId) -> QuotaKey {
        QuotaKey::PerType(TypedResource::Gigabytes, t)
    }

    async fn new_type(c: &mut Conn, name: &str) -> VolumeTypeId {
        let id = VolumeTypeId::new();
        volume_types::volume_type_create(c, id, name, None, true, &BTreeMap::new())
            .await
            .unwrap();
        id
    }

    /// A volume whose quota is committed.
    async fn committed_volume(c: &mut Conn, project: &str, t: VolumeTypeId, size: i64) {
        let id = VolumeId::new();
        volumes::volume_create(
            c,
            &volumes::NewVolume {
                id,
                project_id: project.into(),
                user_id: "u".into(),
                name: None,
                description: None,
                size,
                status: VolumeStatus::Available,
                bootable: false,
                multiattach: false,
                availability_zone: "nova".into(),
                volume_type_id: t,
                snapshot_id: None,
                source_volid: None,
                reservation_id: None,
                last_flow_id: None,
                metadata: Default::default(),
            },
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn limits_overlay_defaults_and_overrides() {
        let (s, _d) = testing::store().await;
        let mut tx = s.begin().await.unwrap();
        let gold = new_type(&mut tx, "gold").await;
        assert_eq!(quota_limits(&mut tx, "p").await.unwrap()[&V], 10);
        assert_eq!(
            quota_limits(&mut tx, "p").await.unwrap().get(&tv(gold)),
            None
        );
        quota_class_set(&mut tx, DEFAULT_CLASS, &[(V, 20), (tv(gold), 3)])
            .await
            .unwrap();
        let l = quota_limits(&mut tx, "p").await.unwrap();
        assert_eq!((l[&V], l[&tv(gold)]), (20, 3));
        quota_limit_set(
            &mut tx,
            "p",
            &[(V, 2), (G, 5), (tv(gold), 1), (tg(gold), 7)],
        )
        .await
        .unwrap();
        let l = quota_limits(&mut tx, "p").await.unwrap();
        assert_eq!(
            (l[&V], l[&G], l[&S], l[&tv(gold)], l[&tg(gold)]),
            (2, 5, 10, 1, 7)
        );
        let l = quota_limits(&mut tx, "q").await.unwrap();
        assert_eq!((l[&V], l[&tv(gold)], l.get(&tg(gold))), (20, 3, None));
        assert_eq!(quota_limit_overrides(&mut tx, "p").await.unwrap().len(), 4);
        quota_limit_delete(&mut tx, "p").await.unwrap();
        let l = quota_limits(&mut tx, "p").await.unwrap();
        assert_eq!((l[&V], l[&tv(gold)]), (20, 3));
        let class = quota_class_get(&mut tx, DEFAULT_CLASS).await.unwrap();
        assert_eq!((class[&V], class[&tv(gold)]), (20, 3));
    }

    #[tokio::test]
    async fn a_deleted_type_takes_its_limits_along_and_a_rename_keeps_them() {
        let (s, _d) = testing::store().await;
        let mut tx = s.begin().await.unwrap();
        let (gold, silver) = (
            new_type(&mut tx, "gold").await,
            new_type(&mut tx, "silver").await,
        );
        quota_class_set(&mut tx, DEFAULT_CLASS, &[(tv(gold), 3), (tv(silver), 4)])
            .await
            .unwrap();
        quota_limit_set(&mut tx, "p", &[(tg(gold), 1), (tg(silver), 2)])
            .await
            .unwrap();
        volume_types::volume_type_update(&mut tx, gold, Some("platinum"), None, None)
            .await
            .unwrap();
        let l = quota_limits(&mut tx, "p").await.unwrap();
        assert_eq!((l[&tv(gold)], l[&tg(gold)]), (3, 1));
        assert_eq!(
            volume_types::volume_type_delete(&mut tx, gold)
                .await
                .unwrap(),
            Some(true)
        );
        let l = quota_limits(&mut tx, "p").await.unwrap();
        assert_eq!((l.get(&tv(gold)), l.get(&tg(gold))), (None, None));
        assert_eq!((l[&tv(silver)], l[&tg(silver)]), (4, 2));
        // A new type of the old name starts unlimited.
        let again = new_type(&mut tx, "platinum").await;
        assert_eq!(
            quota_limits(&mut tx, "p").await.unwrap().get(&tv(again)),
            None
        );
    }

    #[tokio::test]
    async fn reserve_checks_and_counts_reservations() {
        let (s, _d) = testing::store().await;
        let mut tx = s.begin().await.unwrap();
        quota_limit_set(&mut tx, "p", &[(V, 2)]).await.unwrap();
        let (f1, f2, f3) = (FlowId::new(), FlowId::new(), FlowId::new());
        quota_reserve(&mut tx, f1, "p", &[(V, 1), (G, 1)], Some(1))
            .await
            .unwrap();
        quota_reserve(&mut tx, f2, "p", &[(V, 1), (G, 1)], Some(1))
            .await
            .unwrap();
        let err = quota_reserve(&mut tx, f3, "p", &[(V, 1)], None)
            .await
            .unwrap_err();
        match err {
            StoreError::OverQuota(e) => {
                assert_eq!((e.key, e.limit, e.reserved), (V, 2, 2))
            }
            other => panic!("{other:?}"),
        }
        let u = quota_usage(&mut tx, "p").await.unwrap();
        let reserved = |n| Usage {
            in_use: 0,
            reserved: n,
        };
        assert_eq!((u[&V], u[&G]), (reserved(2), reserved(2)));
        assert_eq!(reservation_release_flow(&mut tx, f1).await.unwrap(), 2);
        assert_eq!(reservation_release_flow(&mut tx, f1).await.unwrap(), 0);
        assert_eq!(quota_usage(&mut tx, "p").await.unwrap()[&V].reserved, 1);
        quota_reserve(&mut tx, f3, "p", &[(V, 1)], None)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn usage_per_type_is_derived_from_volumes_and_reservations() {
        let (s, _d) = testing::store().await;
        let mut tx = s.begin().await.unwrap();
        let (gold, silver) = (
            new_type(&mut tx, "gold").await,
            new_type(&mut tx, "silver").await,
        );
        committed_volume(&mut tx, "p", gold, 2).await;
        committed_volume(&mut tx, "p", gold, 3).await;
        committed_volume(&mut tx, "p", silver, 4).await;
        committed_volume(&mut tx, "q", gold, 8).await;
        let flow = FlowId::new();
        quota_reserve(&mut tx, flow, "p", &quota::volume_deltas(gold, 1), Some(1))
            .await
            .unwrap();
        let u = quota_usage(&mut tx, "p").await.unwrap();
        let usage = |in_use, reserved| Usage { in_use, reserved };
        assert_eq!(u[&V], usage(3, 1));
        assert_eq!(u[&G], usage(9, 1));
        assert_eq!(u[&tv(gold)], usage(2, 1));
        assert_eq!(u[&tg(gold)], usage(5, 1));
        assert_eq!(u[&tv(silver)], usage(1, 0));
        assert_eq!(u[&tg(silver)], usage(4, 0));
        // The per-type limit refuses, naming the key by the type's name.
        quota_limit_set(&mut tx, "p", &[(tv(gold), 3)])
            .await
            .unwrap();
        let err = quota_check(&mut tx, "p", &quota::volume_deltas(gold, 1), Some(1))
            .await
            .unwrap_err();
        match err {
            StoreError::OverQuota(e) => {
                assert_eq!((e.key, e.limit, e.in_use, e.reserved), (tv(gold), 3, 2, 1));
                assert!(e.message().contains("'volumes_gold'"), "{}", e.message());
            }
            other => panic!("{other:?}"),
        }
        quota_check(&mut tx, "p", &quota::volume_deltas(silver, 1), Some(1))
            .await
            .unwrap();
        reservation_release_flow(&mut tx, flow).await.unwrap();
        quota_check(&mut tx, "p", &quota::volume_deltas(gold, 1), Some(1))
            .await
            .unwrap();
    }
}
