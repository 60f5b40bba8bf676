//! Placement records: one row per attempt to place a volume's create
//! (migration 0024). The create flow writes an attempt's row in the
//! transaction that places the volume, marks it failed when making the data
//! there fails, and reads the current attempt back when it resumes; admins
//! read the rows (`GET .../volumes/{id}/placement`). The rows go with the
//! volume's row.

use scoria_model::VolumeId;
use serde_json::Value;
use sqlx::Row;

use crate::{Conn, Result, StoreError, now};

/// The outcome of an attempt whose data is being (or was) made.
pub const PLACED: &str = "placed";
/// The outcome of an attempt for which no backend fitted.
pub const NO_VALID_BACKEND: &str = "no_valid_backend";
/// How the outcome of a failed attempt starts (`failed: <why>`).
pub const FAILED_PREFIX: &str = "failed: ";

/// One attempt, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    pub volume_id: VolumeId,
    /// From 1.
    pub attempt: i64,
    /// The backend chosen; `None` when none fitted.
    pub backend: Option<String>,
    /// `placed`, `failed: <why>` or `no_valid_backend`.
    pub outcome: String,
    /// The scheduler's account of the choice.
    pub decision: Value,
    /// The create flow's own record of where and how it makes the data.
    pub plan: Option<Value>,
    pub created_at: String,
}

/// An attempt to record.
#[derive(Clone, Debug)]
pub struct NewPlacement<'a> {
    pub volume_id: VolumeId,
    pub attempt: i64,
    pub backend: Option<&'a str>,
    pub outcome: &'a str,
    pub decision: &'a Value,
    pub plan: Option<&'a Value>,
}

fn json(what: &str, s: &str) -> Result<Value> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Placement> {
    let volume: String = r.try_get("volume_id")?;
    let decision: String = r.try_get("decision")?;
    let plan: Option<String> = r.try_get("plan")?;
    Ok(Placement {
        volume_id: crate::parse("placement volume", &volume)?,
        attempt: r.try_get("attempt")?,
        backend: r.try_get("backend")?,
        outcome: r.try_get("outcome")?,
        decision: json("placement decision", &decision)?,
        plan: plan
            .as_deref()
            .map(|p| json("placement plan", p))
            .transpose()?,
        created_at: r.try_get("created_at")?,
    })
}

/// Record an attempt. Idempotent: an attempt already recorded is left as it
/// is (false).
pub async fn placement_record(conn: &mut Conn, p: &NewPlacement<'_>) -> Result<bool> {
    let plan = p.plan.map(Value::to_string);
    let r = sqlx::query(
        "INSERT INTO placements (volume_id, attempt, backend, outcome, decision, plan, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (volume_id, attempt) DO NOTHING",
    )
    .bind(p.volume_id.to_string())
    .bind(p.attempt)
    .bind(p.backend)
    .bind(p.outcome)
    .bind(p.decision.to_string())
    .bind(plan)
    .bind(now())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Every attempt recorded for a volume, in order.
pub async fn placement_list(conn: &mut Conn, volume: VolumeId) -> Result<Vec<Placement>> {
    let rows = sqlx::query("SELECT * FROM placements WHERE volume_id = $1 ORDER BY attempt")
        .bind(volume.to_string())
        .fetch_all(conn)
        .await?;
    rows.iter().map(from_row).collect()
}

/// The latest attempt that placed the volume somewhere (has a plan), whatever
/// its outcome since.
pub async fn placement_current(conn: &mut Conn, volume: VolumeId) -> Result<Option<Placement>> {
    let row = sqlx::query(
        "SELECT * FROM placements WHERE volume_id = $1 AND plan IS NOT NULL
         ORDER BY attempt DESC LIMIT 1",
    )
    .bind(volume.to_string())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Mark an attempt that is still `placed` as `failed: <why>`. False when it
/// is not (already failed, or never placed): idempotent.
pub async fn placement_mark_failed(
    conn: &mut Conn,
    volume: VolumeId,
    attempt: i64,
    why: &str,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE placements SET outcome = $3 WHERE volume_id = $1 AND attempt = $2 AND outcome = $4",
    )
    .bind(volume.to_string())
    .bind(attempt)
    .bind(format!("{FAILED_PREFIX}{why}"))
    .bind(PLACED)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    async fn volume(conn: &mut Conn) -> VolumeId {
        crate::testing::volume(conn, scoria_model::volume::VolumeStatus::Creating).await
    }

    #[tokio::test]
    async fn attempts_are_recorded_once_marked_failed_once_and_go_with_the_volume() {
        let (store, _dir) = crate::testing::store().await;
        let mut tx = store.begin().await.unwrap();
        let v = volume(&mut tx).await;
        let decision = json!({"chosen": "a"});
        let plan = json!({"backend": "a"});
        let first = NewPlacement {
            volume_id: v,
            attempt: 1,
            backend: Some("a"),
            outcome: PLACED,
            decision: &decision,
            plan: Some(&plan),
        };
        assert!(placement_record(&mut tx, &first).await.unwrap());
        assert!(!placement_record(&mut tx, &first).await.unwrap());
        assert!(
            placement_mark_failed(&mut tx, v, 1, "disk on fire")
                .await
                .unwrap()
        );
        assert!(!placement_mark_failed(&mut tx, v, 1, "again").await.unwrap());
        let none = json!({"chosen": null});
        placement_record(
            &mut tx,
            &NewPlacement {
                volume_id: v,
                attempt: 2,
                backend: None,
                outcome: NO_VALID_BACKEND,
                decision: &none,
                plan: None,
            },
        )
        .await
        .unwrap();
        let all = placement_list(&mut tx, v).await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].outcome, "failed: disk on fire");
        assert_eq!(all[0].decision, decision);
        assert_eq!(all[1].backend, None);
        // The current attempt is the latest that placed something.
        let current = placement_current(&mut tx, v).await.unwrap().unwrap();
        assert_eq!((current.attempt, current.plan), (1, Some(plan)));
        crate::volumes::volume_purge(&mut tx, v).await.unwrap();
        assert!(placement_list(&mut tx, v).await.unwrap().is_empty());
        tx.commit().await.unwrap();
    }
}
