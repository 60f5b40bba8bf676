//! Persisted flows and their steps (see `scoria_model::flow` for the states).

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
    })
}

/// Store a new flow in state `running`, at step 0.
pub async fn flow_create(conn: &mut Conn, f: &NewFlow<'_>) -> Result<()> {
    let t = now();
    sqlx::query(
        "INSERT INTO flows (id, kind, resource_type, resource_id, project_id, params, state,
                            steps_total, step_index, step_name, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'running', $7, 0, $8, $9, $9)",
    )
    .bind(f.id.to_string())
    .bind(f.kind)
    .bind(f.resource_type)
    .bind(f.resource_id)
    .bind(f.project_id)
    .bind(f.params.to_string())
    .bind(f.steps_total)
    .bind(f.first_step)
    .bind(&t)
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
    for chunk in ids.chunks(500) {
        let params: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!("SELECT * FROM flows WHERE id IN ({})", params.join(", "));
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(id);
        }
        for row in q.fetch_all(&mut *conn).await? {
            let f = flow_from_row(&row)?;
            out.insert(f.id.to_string(), f);
        }
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

/// Record the percent of step `idx`, unless the flow has moved past it.
pub async fn flow_set_percent_at(
    conn: &mut Conn,
    id: FlowId,
    idx: i64,
    percent: i64,
) -> Result<()> {
    sqlx::query("UPDATE flows SET percent = $3, updated_at = $4 WHERE id = $1 AND step_index = $2")
        .bind(id.to_string())
        .bind(idx)
        .bind(percent)
        .bind(now())
        .execute(conn)
        .await?;
    Ok(())
}

/// Move the flow to `state`. `error` (with the failing step) is kept as the last
/// error; terminal states record when the flow finished.
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
                finished_at = $5, updated_at = $6
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

/// One step record to write (see [`flow_steps_set_many`]).
#[derive(Clone, Debug)]
pub struct StepWrite<'a> {
    pub idx: i64,
    pub name: &'a str,
    pub state: StepState,
    pub output: Option<&'a Value>,
    pub error: Option<&'a str>,
}

/// Write several step records in one statement (same rules as
/// [`flow_step_set`]).
pub async fn flow_steps_set_many(
    conn: &mut Conn,
    flow: FlowId,
    steps: &[StepWrite<'_>],
) -> Result<()> {
    if steps.is_empty() {
        return Ok(());
    }
    let t = now();
    let mut sql = String::from(
        "INSERT INTO flow_steps (flow_id, idx, name, state, attempts, output, error, started_at, finished_at) VALUES ",
    );
    for i in 0..steps.len() {
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
    let mut q = sqlx::query(&sql).bind(flow.to_string()).bind(&t);
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
        q = q.bind(finished.then(|| t.clone()));
    }
    q.execute(conn).await?;
    Ok(())
}

/// Point the flow at step `idx` and set its state in one statement (the end of
/// a transaction of steps). Terminal states record when the flow finished.
pub async fn flow_advance(
    conn: &mut Conn,
    id: FlowId,
    idx: i64,
    step_name: Option<&str>,
    state: FlowState,
    failed_step: Option<&str>,
    error: Option<&str>,
) -> Result<()> {
    let t = now();
    let finished = (!state.is_active()).then_some(t.as_str());
    sqlx::query(
        "UPDATE flows SET step_index = $2, step_name = $3, percent = NULL, state = $4,
                failed_step = COALESCE($5, failed_step), last_error = COALESCE($6, last_error),
                finished_at = $7, updated_at = $8
         WHERE id = $1",
    )
    .bind(id.to_string())
    .bind(idx)
    .bind(step_name)
    .bind(state.as_str())
    .bind(failed_step)
    .bind(error)
    .bind(finished)
    .bind(&t)
    .execute(conn)
    .await?;
    Ok(())
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
            flow_list_unsettled_for(&mut r, "v1").await.unwrap().len(),
            1
        );
    }
}
