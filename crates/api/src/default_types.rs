//! `/v3/{project_id}/default-types…` (3.62, admins): per-project default
//! volume types, in Cinder's shapes (`{"default_type": {"project_id",
//! "volume_type_id"}}`). Below 3.62 the routes do not exist (404).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use scoria_core::default_types::{self, DefaultType};
use serde_json::{Value, json};

use crate::State;
use crate::auth::Auth;
use crate::body::{self, JsonBody};
use crate::fault::{ApiError, ApiResult};
use crate::microversion::AtLeast;
use crate::path::{PathParams, seg};

/// Microversion from which the routes exist.
pub type DefaultTypesApi = AtLeast<62>;

fn view(d: &DefaultType) -> Value {
    json!({"project_id": d.project_id, "volume_type_id": d.volume_type_id.to_string()})
}

fn target(p: &BTreeMap<String, String>) -> ApiResult<&str> {
    let t = seg(p, "target");
    if t.is_empty() || t.len() > 255 {
        return Err(ApiError::bad_request("Invalid project id."));
    }
    Ok(t)
}

/// `PUT /default-types/{target}` `{"default_type": {"volume_type": id or name}}`.
pub async fn set(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    _v: DefaultTypesApi,
    p: PathParams,
    JsonBody(b): JsonBody,
) -> ApiResult<Json<Value>> {
    body::only(&b, "request body", &["default_type"])?;
    let d = body::object(&b, "default_type")?;
    body::only(d, "default_type", &["volume_type"])?;
    let wanted = body::opt_str(d, "volume_type")?.ok_or_else(|| {
        ApiError::bad_request(
            "Invalid input for field/attribute default_type: 'volume_type' is a required property",
        )
    })?;
    let set = default_types::set(&state.app, &ctx, target(&p)?, &wanted).await?;
    Ok(Json(json!({"default_type": view(&set)})))
}

/// `GET /default-types/{target}`.
pub async fn show(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    _v: DefaultTypesApi,
    p: PathParams,
) -> ApiResult<Json<Value>> {
    let d = default_types::get(&state.app, &ctx, target(&p)?).await?;
    Ok(Json(json!({"default_type": view(&d)})))
}

/// `GET /default-types`.
pub async fn list(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    _v: DefaultTypesApi,
) -> ApiResult<Json<Value>> {
    let all = default_types::list(&state.app, &ctx).await?;
    Ok(Json(
        json!({"default_types": all.iter().map(view).collect::<Vec<_>>()}),
    ))
}

/// `DELETE /default-types/{target}` (204).
pub async fn unset(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    _v: DefaultTypesApi,
    p: PathParams,
) -> ApiResult<StatusCode> {
    default_types::unset(&state.app, &ctx, target(&p)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
