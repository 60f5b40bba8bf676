//! Backends as managed repositories, for admins (a Scoria extension; the
//! `scoria-` prefix keeps it out of Cinder's namespace):
//!
//! - `GET /v3/{project}/scoria-backends`: every backend in service, with
//!   its `state` (`active`, `deactivated`, `down`), `reason`, `origin`
//!   (`configuration` or `api`), driver, path, format, zone, capacity and
//!   how many volumes are on it; `GET .../scoria-backends/{name}`: one.
//! - `POST /v3/{project}/scoria-backends` with `{"backend": {"name",
//!   "path", "format", "availability_zone", …}}`: a new file backend, in
//!   service at once and at every later start (201 and its view).
//! - `POST .../scoria-backends/{name}/action` with `{"deactivate":
//!   {"reason": "…"}}` or `{"activate": {}}`: close it to new volumes, or
//!   open it again (200 and its view); a deactivation is refused while
//!   anything on it is in use, naming it.
//! - `DELETE .../scoria-backends/{name}`: take it out of service (204);
//!   refused while anything is on it, naming it. Its files stay.
//!
//! Semantics: `scoria_core::backends::manage`.

use axum::Json;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scoria_core::backends::manage::{self, BackendSpec};
use serde_json::{Value, json};

use crate::State;
use crate::auth::Auth;
use crate::body::{self, JsonBody};
use crate::fault::{ApiError, ApiResult};
use crate::path::{PathParams, seg};

fn view(v: &manage::BackendView) -> Value {
    serde_json::to_value(v).unwrap_or_default()
}

/// `GET /scoria-backends`.
pub async fn list(AxState(state): AxState<State>, Auth(ctx): Auth) -> ApiResult<Json<Value>> {
    let all = manage::list(&state.app, &ctx).await?;
    Ok(Json(
        json!({"backends": all.iter().map(view).collect::<Vec<_>>()}),
    ))
}

/// `GET /scoria-backends/{name}`.
pub async fn show(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    p: PathParams,
) -> ApiResult<Json<Value>> {
    let b = manage::get(&state.app, &ctx, seg(&p, "name")).await?;
    Ok(Json(json!({"backend": view(&b)})))
}

/// `POST /scoria-backends`.
pub async fn add(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    ctx.authorize(scoria_core::Op::BackendAdd)?;
    body::only(&body, "the request", &["backend"])?;
    let m = body::object(&body, "backend")?;
    let spec: BackendSpec = serde_json::from_value(Value::Object(m.clone()))
        .map_err(|e| ApiError::bad_request(format!("Invalid input for backend: {e}.")))?;
    let b = manage::add(&state.app, &ctx, spec).await?;
    Ok((StatusCode::CREATED, Json(json!({"backend": view(&b)}))).into_response())
}

/// `POST /scoria-backends/{name}/action`.
pub async fn action(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    p: PathParams,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    ctx.authorize(scoria_core::Op::BackendUpdate)?;
    let name = seg(&p, "name");
    if body.len() != 1 {
        return Err(ApiError::bad_request(
            "There is either no action or more than one action in the request body.",
        ));
    }
    let b = if body.contains_key("deactivate") {
        let m = match body.get("deactivate") {
            Some(Value::Null) => serde_json::Map::new(),
            _ => body::object(&body, "deactivate")?.clone(),
        };
        body::only(&m, "deactivate", &["reason"])?;
        let reason = body::opt_str(&m, "reason")?;
        if reason.as_ref().is_some_and(|r| r.len() > 255) {
            return Err(ApiError::bad_request(
                "Invalid input for field/attribute reason: at most 255 characters.",
            ));
        }
        manage::set_active(&state.app, &ctx, name, false, reason.as_deref()).await?
    } else if body.contains_key("activate") {
        match body.get("activate") {
            Some(Value::Null) => {}
            _ => body::only(body::object(&body, "activate")?, "activate", &[])?,
        }
        manage::set_active(&state.app, &ctx, name, true, None).await?
    } else {
        return Err(ApiError::bad_request(
            "Invalid action: a backend takes deactivate or activate.",
        ));
    };
    Ok(Json(json!({"backend": view(&b)})))
}

/// `DELETE /scoria-backends/{name}`.
pub async fn remove(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    p: PathParams,
) -> ApiResult<Response> {
    manage::remove(&state.app, &ctx, seg(&p, "name")).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
