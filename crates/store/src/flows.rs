//! Persisted flows and their steps (see `scoria_model::flow` for the states).
//!
//! Ownership: a running or unwinding flow is owned by one node (`owner`) until
//! its lease expires (`lease_expires_at`), under a `generation` that every
//! claim bumps. The engine writes about a flow only in transactions that first
//! pass [`flow_hold`] (owner and generation still its own), claims flows with
//! [`flow_claim`] (its own after a restart, unowned ones, and others' whose
//! lease expired) and keeps the leases of the flows it runs with
//! [`flow_renew_leases`]. Times are compared as text, in the fixed format of
//! [`crate::now`], which orders as the times do.

use std::time::Duration;

use scoria_model::FlowId;
use scoria_model::flow::{FlowState, StepState};
use serde_json::Value;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::{Conn, Result, StoreError, now, parse};

/// A flow as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowRecord {
    pub id: FlowId,
    pub kind: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub project_id: Option<String>,
    pub params: Value,
    pub state: FlowState,
    pub steps_total: i64,
    pub step_index: i64,
    pub step_name: Option<String>,
    pub percent: Option<i64>,
    pub failed_step: Option<String>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub finished_at: Option<String>,
    /// The version of its kind's definition the flow was started under
    /// (`None`: stored before versions were, read as version 1).
    pub definition_version: Option<i64>,
    /// The step names of that definition, in order (`None`: not recorded).
    pub step_names: Option<Vec<String>>,
    /// The node that runs the flow (`None`: not claimed since ownership was
    /// introduced).
    pub owner: Option<String>,
    /// Until when the owner holds it; a flow whose lease expired may be
    /// claimed by another node.
    pub lease_expires_at: Option<String>,
    /// Bumped by every claim: writes under an older generation are refused.
    pub generation: i64,
}

/// A new flow, before it is stored.
#[derive(Clone, Debug)]
pub struct NewFlow<'a> {
    pub id: FlowId,
    pub kind: &'a str,
    pub resource_type: Option<&'a str>,
    pub resource_id: Option<&'a str>,
    pub project_id: Option<&'a str>,
    pub params: &'a Value,
    pub steps_total: i64,
    pub first_step: &'a str,
    /// The version of the definition the flow runs under.
    pub definition_version: i64,
    /// That definition's step names, in order.
    pub step_names: &'a [&'a str],
    /// The node that starts it: it owns the flow from the first write.
    pub owner: &'a str,
    /// Until when (see [`lease_until`]).
    pub lease_until: &'a str,
}

/// One step's record.
#[derive(Clone, Debug, PartialEq)]
pub struct StepRecord {
    pub idx: i64,
    pub name: String,
    pub state: StepState,
    pub attempts: i64,
    pub output: Option<Value>,
    pub error: Option<String>,
}

fn json(what: &str, s: &str) -> Result<Value> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn flow_from_row(r: &SqliteRow) -> Result<FlowRecord> {
    Ok(FlowRecord {
        id: parse("flow id", r.try_get::<&str, _>("id")?)?,
        kind: r.try_get("kind")?,
        resource_type: r.try_get("resource_type")?,
        resource_id: r.try_get("resource_id")?,
        project_id: r.try_get("project_id")?,
        params: json("flow params", r.try_get::<&str, _>("params")?)?,
        state: parse("flow state", r.try_get::<&str, _>("state")?)?,
        steps_total: r.try_get("steps_total")?,
        step_index: r.try_get("step_index")?,
        step_name: r.try_get("step_name")?,
        percent: r.try_get("percent")?,
        failed_step: r.try_get("failed_step")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        finished_at: r.try_get("finished_at")?,
        definition_version: r.try_get("definition_version")?,
        step_names: r
            .try_get::<Option<&str>, _>("step_names")?
            .map(|s| {
                serde_json::from_str(s)
                    .map_err(|e| StoreError::Corrupt(format!("flow step names: {e}")))
            })
            .transpose()?,
        owner: r.try_get("owner")?,
        lease_expires_at: r.try_get("lease_expires_at")?,
        generation: r.try_get("generation")?,
    })
}

/// The lease expiry to write for a lease of `length` starting now, in the
/// store's time format.
pub fn lease_until(length: Duration) -> String {
    let length = chrono::Duration::from_std(length).unwrap_or(chrono::Duration::MAX);
    let until = chrono::Utc::now()
        .checked_add_signed(length)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
    crate::format_time(until)
}

/// Store a new flow in state `running`, at step 0, owned by `f.owner` under
/// generation 1.
pub async fn flow_create(conn: &mut Conn, f: &NewFlow<'_>) -> Result<()> {
    create_in(conn, "", f).await
}

/// [`flow_create`] after `before` (statements without placeholders, sent in
/// the same command).
pub(crate) async fn create_in(conn: &mut Conn, before: &str, f: &NewFlow<'_>) -> Result<()> {
    let t = now();
    let names = serde_json::to_string(f.step_names)
        .map_err(|e| StoreError::Corrupt(format!("flow step names: {e}")))?;
    let sql = format!(
        "{before}INSERT INTO flows (id, kind, resource_type, resource_id, project_id, params, state,
                            steps_total, step_index, step_name, created_at, updated_at,
                            definition_version, step_names, owner, lease_expires_at, generation)
         VALUES ($1, $2, $3, $4, $5, $6, 'running', $7, 0, $8, $9, $9, $10, $11, $12, $13, 1)"
    );
    sqlx::query(&sql)
        .bind(f.id.to_string())
        .bind(f.kind)
        .bind(f.resource_type)
        .bind(f.resource_id)
        .bind(f.project_id)
        .bind(f.params.to_string())
        .bind(f.steps_total)
        .bind(f.first_step)
        .bind(&t)
        .bind(f.definition_version)
        .bind(names)
        .bind(f.owner)
        .bind(f.lease_until)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn flow_get(conn: &mut Conn, id: FlowId) -> Result<Option<FlowRecord>> {
    let row = sqlx::query("SELECT * FROM flows WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(flow_from_row).transpose()
}

/// Several flows by id (missing ids are skipped), keyed by id.
pub async fn flow_get_many(
    conn: &mut Conn,
    ids: &[String],
) -> Result<std::collections::BTreeMap<String, FlowRecord>> {
    let mut out = std::collections::BTreeMap::new();
    let rows = sqlx::query("SELECT * FROM flows WHERE id IN (SELECT value FROM json_each($1))")
        .bind(crate::shared::id_list(ids))
        .fetch_all(conn)
        .await?;
    for row in rows {
        let f = flow_from_row(&row)?;
        out.insert(f.id.to_string(), f);
    }
    Ok(out)
}

/// Flows the engine still has to drive (running or unwinding), oldest first.
pub async fn flow_list_active(conn: &mut Conn) -> Result<Vec<FlowRecord>> {
    let rows = sqlx::query(
        "SELECT * FROM flows WHERE state IN ('running', 'unwinding') ORDER BY created_at, id",
    )
    .fetch_all(conn)
    .await?;
    rows.iter().map(flow_from_row).collect()
}

/// Flows in the given state, newest first (e.g. `stuck` ones for an admin).
pub async fn flow_list_by_state(conn: &mut Conn, state: FlowState) -> Result<Vec<FlowRecord>> {
    let rows = sqlx::query("SELECT * FROM flows WHERE state = $1 ORDER BY created_at DESC, id")
        .bind(state.as_str())
        .fetch_all(conn)
        .await?;
    rows.iter().map(flow_from_row).collect()
}

/// Active flows (running, unwinding or stuck) that work on a resource.
pub async fn flow_list_unsettled_for(
    conn: &mut Conn,
    resource_id: &str,
) -> Result<Vec<FlowRecord>> {
    let rows = sqlx::query(
        "SELECT * FROM flows WHERE resource_id = $1 AND state IN ('running', 'unwinding', 'stuck')
         ORDER BY created_at, id",
    )
    .bind(resource_id)
    .fetch_all(conn)
    .await?;
    rows.iter().map(flow_from_row).collect()
}

/// Record that the flow works on step `idx` (named `name`) now.
pub async fn flow_at_step(conn: &mut Conn, id: FlowId, idx: i64, name: Option<&str>) -> Result<()> {
    sqlx::query(
        "UPDATE flows SET step_index = $2, step_name = $3, percent = NULL, updated_at = $4
         WHERE id = $1",
    )
    .bind(id.to_string())
    .bind(idx)
    .bind(name)
    .bind(now())
    .execute(conn)
    .await?;
    Ok(())
}

/// Record the percent of step `idx`, unless the flow has moved past it or
/// was claimed since (its generation is no longer `generation`).
pub async fn flow_set_percent_at(
    conn: &mut Conn,
    id: FlowId,
    generation: i64,
    idx: i64,
    percent: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE flows SET percent = $3, updated_at = $4
         WHERE id = $1 AND step_index = $2 AND generation = $5",
    )
    .bind(id.to_string())
    .bind(idx)
    .bind(percent)
    .bind(now())
    .bind(generation)
    .execute(conn)
    .await?;
    Ok(())
}

/// Move the flow to `state`. `error` (with the failing step) is kept as the last
/// error; terminal states record when the flow finished and end its lease
/// (the owner stays, as a record of who ran it last).
pub async fn flow_set_state(
    conn: &mut Conn,
    id: FlowId,
    state: FlowState,
    failed_step: Option<&str>,
    error: Option<&str>,
) -> Result<()> {
    let t = now();
    let finished = (!state.is_active()).then_some(t.as_str());
    sqlx::query(
        "UPDATE flows SET state = $2,
                failed_step = COALESCE($3, failed_step),
                last_error = COALESCE($4, last_error),
                finished_at = $5, updated_at = $6,
                lease_expires_at = CASE WHEN $5 IS NULL THEN lease_expires_at ELSE NULL END
         WHERE id = $1",
    )
    .bind(id.to_string())
    .bind(state.as_str())
    .bind(failed_step)
    .bind(error)
    .bind(finished)
    .bind(&t)
    .execute(conn)
    .await?;
    Ok(())
}

/// Write a step's record. `Started` counts an attempt; other states keep the
/// count. `output` replaces the stored one only when given.
pub async fn flow_step_set(
    conn: &mut Conn,
    flow: FlowId,
    idx: i64,
    name: &str,
    state: StepState,
    output: Option<&Value>,
    error: Option<&str>,
) -> Result<()> {
    let t = now();
    let finished = matches!(
        state,
        StepState::Done | StepState::Undone | StepState::UndoFailed
    )
    .then_some(t.as_str());
    let attempt = i64::from(state == StepState::Started);
    sqlx::query(
        "INSERT INTO flow_steps (flow_id, idx, name, state, attempts, output, error, started_at, finished_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (flow_id, idx) DO UPDATE SET
            state = excluded.state,
            attempts = flow_steps.attempts + $5,
            output = COALESCE(excluded.output, flow_steps.output),
            error = excluded.error,
            finished_at = excluded.finished_at",
    )
    .bind(flow.to_string())
    .bind(idx)
    .bind(name)
    .bind(state.as_str())
    .bind(attempt)
    .bind(output.map(Value::to_string))
    .bind(error)
    .bind(&t)
    .bind(finished)
    .execute(conn)
    .await?;
    Ok(())
}

/// One step record to write (see [`flow_steps_set_and_advance`]).
#[derive(Clone, Debug)]
pub struct StepWrite<'a> {
    pub idx: i64,
    pub name: &'a str,
    pub state: StepState,
    pub output: Option<&'a Value>,
    pub error: Option<&'a str>,
}

/// The multi-row upsert of `n` step records: `$1` the flow, `$2` the time,
/// then seven placeholders per record.
fn steps_sql(n: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO flow_steps (flow_id, idx, name, state, attempts, output, error, started_at, finished_at) VALUES ",
    );
    for i in 0..n {
        let b = 3 + i * 7;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "($1, ${}, ${}, ${}, ${}, ${}, ${}, $2, ${})",
            b,
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6
        ));
    }
    sql.push_str(
        " ON CONFLICT (flow_id, idx) DO UPDATE SET
            state = excluded.state,
            attempts = flow_steps.attempts + excluded.attempts,
            output = COALESCE(excluded.output, flow_steps.output),
            error = excluded.error,
            finished_at = excluded.finished_at",
    );
    sql
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

fn bind_steps<'q>(mut q: Query<'q>, steps: &'q [StepWrite<'q>], t: &str) -> Query<'q> {
    for st in steps {
        let finished = matches!(
            st.state,
            StepState::Done | StepState::Undone | StepState::UndoFailed
        );
        q = q
            .bind(st.idx)
            .bind(st.name)
            .bind(st.state.as_str())
            .bind(i64::from(st.state == StepState::Started))
            .bind(st.output.map(Value::to_string))
            .bind(st.error);
        q = q.bind(finished.then(|| t.to_owned()));
    }
    q
}

/// Where a transaction of steps leaves its flow (see [`flow_advance`]).
#[derive(Clone, Copy, Debug)]
pub struct Advance<'a> {
    pub idx: i64,
    pub step_name: Option<&'a str>,
    pub state: FlowState,
    pub failed_step: Option<&'a str>,
    pub error: Option<&'a str>,
}

/// The flow's row as [`Advance`] says, from placeholder `$base` on (`$1` is
/// the flow, `$2` the time).
fn advance_sql(base: usize) -> String {
    let [i, name, state, failed, error, finished] = std::array::from_fn(|k| base + k);
    format!(
        "UPDATE flows SET step_index = ${i}, step_name = ${name}, percent = NULL, state = ${state},
                failed_step = COALESCE(${failed}, failed_step), last_error = COALESCE(${error}, last_error),
                finished_at = ${finished}, updated_at = $2,
                lease_expires_at = CASE WHEN ${finished} IS NULL THEN lease_expires_at ELSE NULL END
         WHERE id = $1"
    )
}

fn bind_advance<'q>(q: Query<'q>, a: &Advance<'q>, t: &str) -> Query<'q> {
    let finished = (!a.state.is_active()).then(|| t.to_owned());
    q.bind(a.idx)
        .bind(a.step_name)
        .bind(a.state.as_str())
        .bind(a.failed_step)
        .bind(a.error)
        .bind(finished)
}

/// Point the flow at step `idx` and set its state in one statement (the end of
/// a transaction of steps). Terminal states record when the flow finished and
/// end its lease.
pub async fn flow_advance(
    conn: &mut Conn,
    id: FlowId,
    idx: i64,
    step_name: Option<&str>,
    state: FlowState,
    failed_step: Option<&str>,
    error: Option<&str>,
) -> Result<()> {
    let a = Advance {
        idx,
        step_name,
        state,
        failed_step,
        error,
    };
    flow_steps_set_and_advance(conn, id, &[], &a).await
}

/// The end of a transaction of steps: its step records (one multi-row
/// upsert, same rules as [`flow_step_set`]) and the flow's row
/// ([`flow_advance`]) in one command, two statements run back to back on
/// the connection's thread (one round trip instead of two).
pub async fn flow_steps_set_and_advance(
    conn: &mut Conn,
    flow: FlowId,
    steps: &[StepWrite<'_>],
    advance: &Advance<'_>,
) -> Result<()> {
    let t = now();
    let sql = if steps.is_empty() {
        advance_sql(3)
    } else {
        format!(
            "{}; {}",
            steps_sql(steps.len()),
            advance_sql(3 + steps.len() * 7)
        )
    };
    let q = bind_steps(sqlx::query(&sql).bind(flow.to_string()).bind(&t), steps, &t);
    bind_advance(q, advance, &t).execute(conn).await?;
    Ok(())
}

/// Which flows a node may claim (see [`flow_claim`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimRule {
    /// At start-up: the node's own flows whatever their lease (its previous
    /// incarnation is gone: one process per node id), flows with no owner,
    /// and other nodes' flows whose lease expired.
    Restart,
    /// While running: flows with no owner and flows whose lease expired.
    Expired,
}

/// The condition a claimable flow meets, with the placeholders of the time
/// now (`$now`) and of the node's own id when its own flows are claimable
/// whatever their lease (`$own`: bound to NULL otherwise, which makes
/// `owner = NULL` false).
fn claimable(now: usize, own: usize) -> String {
    format!(
        "state IN ('running', 'unwinding')
         AND (owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at < ${now}
              OR owner = ${own})"
    )
}

fn own_flows(node: &str, rule: ClaimRule) -> Option<&str> {
    (rule == ClaimRule::Restart).then_some(node)
}

/// Active flows `node` may claim under `rule` at time `now`, oldest first.
pub async fn flow_list_claimable(
    conn: &mut Conn,
    node: &str,
    now: &str,
    rule: ClaimRule,
) -> Result<Vec<FlowRecord>> {
    let sql = format!(
        "SELECT * FROM flows WHERE {} ORDER BY created_at, id",
        claimable(1, 2)
    );
    let rows = sqlx::query(&sql)
        .bind(now)
        .bind(own_flows(node, rule))
        .fetch_all(conn)
        .await?;
    rows.iter().map(flow_from_row).collect()
}

/// Claim flow `id` for `node` if `rule` allows it at `now`: it becomes the
/// node's until `until`, under the next generation. Returns the flow as
/// claimed, or `None` when it is not claimable (live elsewhere, finished, or
/// gone).
pub async fn flow_claim(
    conn: &mut Conn,
    id: FlowId,
    node: &str,
    now: &str,
    until: &str,
    rule: ClaimRule,
) -> Result<Option<FlowRecord>> {
    let sql = format!(
        "UPDATE flows SET owner = $2, lease_expires_at = $5, generation = generation + 1,
                updated_at = $3
         WHERE id = $1 AND {}
         RETURNING *",
        claimable(3, 4)
    );
    let row = sqlx::query(&sql)
        .bind(id.to_string())
        .bind(node)
        .bind(now)
        .bind(own_flows(node, rule))
        .bind(until)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(flow_from_row).transpose()
}

/// The lease check of every engine transaction that writes about a flow: if
/// the flow is active and still `owner`'s under `generation`, extend its lease
/// to `until` and return true; otherwise change nothing and return false (the
/// caller rolls back and stops running the flow).
pub async fn flow_hold(
    conn: &mut Conn,
    id: FlowId,
    owner: &str,
    generation: i64,
    until: &str,
) -> Result<bool> {
    hold_in(conn, "", id, owner, generation, until).await
}

/// [`flow_hold`] after `before` (statements without placeholders, sent in
/// the same command).
pub(crate) async fn hold_in(
    conn: &mut Conn,
    before: &str,
    id: FlowId,
    owner: &str,
    generation: i64,
    until: &str,
) -> Result<bool> {
    let sql = format!(
        "{before}UPDATE flows SET lease_expires_at = $4
         WHERE id = $1 AND owner = $2 AND generation = $3 AND state IN ('running', 'unwinding')
         RETURNING 1"
    );
    let rows = sqlx::query(&sql)
        .bind(id.to_string())
        .bind(owner)
        .bind(generation)
        .bind(until)
        .fetch_all(conn)
        .await?;
    Ok(rows.len() == 1)
}

/// Extend to `until` the leases of those of `flows` that are active and
/// owned by `owner`. Returns the id and generation of each flow renewed; a
/// flow missing from the answer is no longer the owner's (or has finished).
pub async fn flow_renew_leases(
    conn: &mut Conn,
    owner: &str,
    flows: &[FlowId],
    until: &str,
) -> Result<Vec<(FlowId, i64)>> {
    let mut out = Vec::with_capacity(flows.len());
    let rows = sqlx::query(
        "UPDATE flows SET lease_expires_at = $2
         WHERE owner = $1 AND state IN ('running', 'unwinding')
           AND id IN (SELECT value FROM json_each($3))
         RETURNING id, generation",
    )
    .bind(owner)
    .bind(until)
    .bind(crate::shared::id_list(flows))
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        out.push((
            parse("flow id", row.try_get::<&str, _>("id")?)?,
            row.try_get("generation")?,
        ));
    }
    Ok(out)
}

/// Give up the lease of a flow this node stopped running (at shutdown), so
/// that another node may claim it at once. Returns false when the flow was no
/// longer `owner`'s under `generation`.
pub async fn flow_release(
    conn: &mut Conn,
    id: FlowId,
    owner: &str,
    generation: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE flows SET lease_expires_at = NULL
         WHERE id = $1 AND owner = $2 AND generation = $3 AND state IN ('running', 'unwinding')",
    )
    .bind(id.to_string())
    .bind(owner)
    .bind(generation)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// All step records of a flow, in order.
pub async fn flow_steps(conn: &mut Conn, flow: FlowId) -> Result<Vec<StepRecord>> {
    let rows = sqlx::query(
        "SELECT idx, name, state, attempts, output, error FROM flow_steps
         WHERE flow_id = $1 ORDER BY idx",
    )
    .bind(flow.to_string())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(StepRecord {
                idx: r.try_get("idx")?,
                name: r.try_get("name")?,
                state: parse("step state", r.try_get::<&str, _>("state")?)?,
                attempts: r.try_get("attempts")?,
                output: r
                    .try_get::<Option<&str>, _>("output")?
                    .map(|s| json("step output", s))
                    .transpose()?,
                error: r.try_get("error")?,
            })
        })
        .collect()
}

/// Forget finished flows older than `before` (an ISO time as [`crate::now`]
/// writes it). Returns how many were removed.
pub async fn flow_prune_finished(conn: &mut Conn, before: &str) -> Result<u64> {
    let done =
        sqlx::query("DELETE FROM flows WHERE state IN ('done', 'failed') AND finished_at < $1")
            .bind(before)
            .execute(conn)
            .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[tokio::test]
    async fn a_flow_and_its_steps_round_trip() {
        let (s, _d) = testing::store().await;
        let id = FlowId::new();
        let params = serde_json::json!({"size": 1});
        let mut tx = s.begin().await.unwrap();
        flow_create(
            &mut tx,
            &NewFlow {
                id,
                kind: "volume_create",
                resource_type: Some("volume"),
                resource_id: Some("v1"),
                project_id: Some("p1"),
                params: &params,
                steps_total: 3,
                first_step: "a",
                definition_version: 2,
                step_names: &["a", "b", "c"],
                owner: "n1",
                lease_until: &lease_until(Duration::from_secs(30)),
            },
        )
        .await
        .unwrap();
        flow_step_set(&mut tx, id, 0, "a", StepState::Started, None, None)
            .await
            .unwrap();
        flow_step_set(&mut tx, id, 0, "a", StepState::Started, None, None)
            .await
            .unwrap();
        let out = serde_json::json!({"path": "x"});
        flow_step_set(&mut tx, id, 0, "a", StepState::Done, Some(&out), None)
            .await
            .unwrap();
        flow_at_step(&mut tx, id, 1, Some("b")).await.unwrap();
        tx.commit().await.unwrap();

        let mut r = s.read().await.unwrap();
        let f = flow_get(&mut r, id).await.unwrap().unwrap();
        assert_eq!(
            (f.state, f.step_index, f.step_name.as_deref()),
            (FlowState::Running, 1, Some("b"))
        );
        assert_eq!(f.params, params);
        assert_eq!(f.definition_version, Some(2));
        assert_eq!(
            f.step_names.as_deref(),
            Some(&["a".to_string(), "b".into(), "c".into()][..])
        );
        assert_eq!((f.owner.as_deref(), f.generation), (Some("n1"), 1));
        assert!(f.lease_expires_at.as_deref() > Some(f.created_at.as_str()));
        let steps = flow_steps(&mut r, id).await.unwrap();
        assert_eq!(steps.len(), 1);
        assert_eq!((steps[0].state, steps[0].attempts), (StepState::Done, 2));
        assert_eq!(steps[0].output.as_ref(), Some(&out));
        assert_eq!(flow_list_active(&mut r).await.unwrap().len(), 1);
        drop(r);

        let mut tx = s.begin().await.unwrap();
        flow_set_state(&mut tx, id, FlowState::Stuck, Some("b"), Some("boom"))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let mut r = s.read().await.unwrap();
        assert!(flow_list_active(&mut r).await.unwrap().is_empty());
        let stuck = flow_list_by_state(&mut r, FlowState::Stuck).await.unwrap();
        assert_eq!(stuck[0].last_error.as_deref(), Some("boom"));
        assert!(stuck[0].finished_at.is_some());
        assert_eq!(
            stuck[0].lease_expires_at, None,
            "a flow that stopped holds no lease"
        );
        assert_eq!(
            flow_list_unsettled_for(&mut r, "v1").await.unwrap().len(),
            1
        );
    }
}
