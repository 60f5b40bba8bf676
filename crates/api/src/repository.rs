//! The repository check and its fixes for admins (a Scoria extension, not a
//! Cinder API; the `scoria-` prefix keeps it out of Cinder's namespace):
//!
//! - `POST /v3/{project}/scoria-repository/checks` with `{"check":
//!   {"backend": "<name>", "quick": false, "full": false}}` (all optional;
//!   `full`: `qemu-img check` even on unchanged images): 202 and the
//!   check, a flow; `GET .../checks/{id}`: its state, stage `i/N`, percent
//!   (of the images `qemu-img check`ed) and, once `done`, its `report`
//!   (`backends`, `fixes`, `foreign`, `broken`, as `scoria check --json`).
//! - `POST /v3/{project}/scoria-repository/fixes` with `{"fix": {"kinds":
//!   ["clean", …], "ids": ["<fix id>", …]}}` (every fix when both are empty):
//!   202 and the run, a flow that checks again and applies the chosen fixes
//!   (merges and flattens as their own flows); `GET .../fixes/{id}`: its
//!   state and, once `done`, its `outcome` (each fix `applied`, `skipped` or
//!   `failed` with why, and the ids the new check did not list). One run at
//!   a time: another is a 400.
//!
//! Semantics: `scoria_core::repository::{ops, flows}`.

use axum::Json;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scoria_core::operations::FlowRecord;
use scoria_core::repository::flows::{CheckParams, FixParams};
use scoria_core::repository::{FixKind, ops};
use scoria_model::flow::FlowState;
use serde_json::{Value, json};

use crate::State;
use crate::auth::Auth;
use crate::body::{self, JsonBody};
use crate::fault::{ApiError, ApiResult};
use crate::path::{PathParams, seg};

fn view(f: &FlowRecord) -> Value {
    json!({
        "id": f.id.to_string(),
        "status": f.state.as_str(),
        "stage": crate::operations::stage(f),
        "step": f.step_name,
        "percent": if f.state == FlowState::Done { Some(100) } else { f.percent },
        "last_error": f.last_error,
        "params": f.params,
        "created_at": f.created_at,
        "finished_at": f.finished_at,
    })
}

/// What the answer to a start shows: the flow has just been handed to the
/// engine (the GET shows its record from then on).
fn started(id: scoria_model::FlowId, params: Value) -> Value {
    json!({"id": id.to_string(), "status": "running", "stage": "1/1", "percent": null, "params": params})
}

/// The object under `key`, or an empty one when the body has none.
fn section(
    body: &serde_json::Map<String, Value>,
    key: &str,
    allowed: &[&str],
) -> Result<serde_json::Map<String, Value>, ApiError> {
    body::only(body, "the request", &[key])?;
    let m = match body.get(key) {
        None => serde_json::Map::new(),
        Some(_) => body::object(body, key)?.clone(),
    };
    body::only(&m, key, allowed)?;
    Ok(m)
}

fn strings(m: &serde_json::Map<String, Value>, key: &str) -> Result<Vec<String>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "Invalid input for field/attribute {key}: a list of strings is required."
                    ))
                })
            })
            .collect(),
        Some(_) => Err(ApiError::bad_request(format!(
            "Invalid input for field/attribute {key}: a list of strings is required."
        ))),
    }
}

/// `POST /scoria-repository/checks`.
pub async fn start_check(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    ctx.authorize(scoria_core::Op::RepositoryCheck)?;
    let m = section(&body, "check", &["backend", "quick", "full"])?;
    let params = CheckParams {
        backend: body::opt_str(&m, "backend")?,
        quick: body::boolean(&m, "quick")?.unwrap_or(false),
        full: body::boolean(&m, "full")?.unwrap_or(false),
    };
    if params.quick && params.full {
        return Err(ApiError::bad_request(
            "Invalid input for check: quick and full exclude each other.",
        ));
    }
    let echo = serde_json::to_value(&params).unwrap_or_default();
    let id = ops::start_check(&state.app, &ctx, params).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"check": started(id, echo)})),
    )
        .into_response())
}

/// `POST /scoria-repository/fixes`.
pub async fn start_fix(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    ctx.authorize(scoria_core::Op::RepositoryFix)?;
    let m = section(&body, "fix", &["kinds", "ids"])?;
    let kinds = strings(&m, "kinds")?
        .iter()
        .map(|k| k.parse::<FixKind>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            ApiError::bad_request(format!("Invalid input for field/attribute kinds: {e}."))
        })?;
    let params = FixParams {
        kinds,
        ids: strings(&m, "ids")?,
        offline: false,
    };
    let echo = serde_json::to_value(&params).unwrap_or_default();
    let id = ops::start_fix(&state.app, &ctx, params).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"fix": started(id, echo)})),
    )
        .into_response())
}

/// `GET /scoria-repository/checks/{id}`.
pub async fn show_check(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    p: PathParams,
) -> ApiResult<Json<Value>> {
    let (f, report) = ops::get(&state.app, &ctx, "check", seg(&p, "id")).await?;
    let mut v = view(&f);
    v["report"] = report.unwrap_or(Value::Null);
    Ok(Json(json!({"check": v})))
}

/// `GET /scoria-repository/fixes/{id}`.
pub async fn show_fix(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    p: PathParams,
) -> ApiResult<Json<Value>> {
    let (f, outcome) = ops::get(&state.app, &ctx, "fix", seg(&p, "id")).await?;
    let mut v = view(&f);
    v["outcome"] = outcome.unwrap_or(Value::Null);
    Ok(Json(json!({"fix": v})))
}
