//! `GET /v3/{project_id}/scoria-operations[?state=stuck]` and
//! `GET /v3/{project_id}/scoria-operations/{id}` (admin): Scoria's persisted
//! flows — what is running, unwinding, or stuck waiting for a person, with the
//! stage, step, percent and last error of each, and every step's record.
//! Not a Cinder API; the `scoria-` prefix keeps it out of Cinder's namespace.

use axum::Json;
use axum::extract::State as AxState;
use scoria_core::operations::{self, FlowRecord};
use scoria_model::flow::FlowState;
use serde_json::{Value, json};

use crate::State;
use crate::auth::Auth;
use crate::fault::{ApiError, ApiResult};
use crate::path::{PathParams, seg};
use crate::query::Params;

/// A flow's stage, `i/N` (`N/N` once done).
pub fn stage(f: &FlowRecord) -> String {
    let at = if f.state == FlowState::Done {
        f.steps_total
    } else {
        (f.step_index + 1).min(f.steps_total)
    };
    format!("{at}/{}", f.steps_total)
}

fn view(f: &FlowRecord) -> Value {
    json!({
        "id": f.id.to_string(),
        "operation": f.kind,
        "state": f.state.as_str(),
        "resource_type": f.resource_type,
        "resource_id": f.resource_id,
        "project_id": f.project_id,
        "stage": stage(f),
        "step": f.step_name,
        "percent": f.percent,
        "failed_step": f.failed_step,
        "last_error": f.last_error,
        "created_at": f.created_at,
        "updated_at": f.updated_at,
        "finished_at": f.finished_at,
    })
}

pub async fn list(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    q: Params,
) -> ApiResult<Json<Value>> {
    let st = match q.get("state") {
        None | Some("") => None,
        Some(s) => Some(s.parse::<FlowState>().map_err(|_| {
            ApiError::bad_request(format!(
                "Invalid state '{s}': running, unwinding, done, failed or stuck."
            ))
        })?),
    };
    let flows = operations::list(&state.app, &ctx, st).await?;
    Ok(Json(
        json!({"operations": flows.iter().map(view).collect::<Vec<_>>()}),
    ))
}

pub async fn show(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    p: PathParams,
) -> ApiResult<Json<Value>> {
    let id = seg(&p, "id");
    let (f, steps) = operations::get(&state.app, &ctx, id).await?;
    let mut v = view(&f);
    v["steps"] = json!(steps
        .iter()
        .map(|s| json!({"index": s.idx, "name": s.name, "state": s.state.as_str(), "attempts": s.attempts, "error": s.error}))
        .collect::<Vec<_>>());
    Ok(Json(json!({"operation": v})))
}
