//! `/v2/images/{id}/members…`: share an image, list and show its members,
//! accept or reject it as a member, stop sharing.

use axum::Json;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use scoria_core::image_service;
use scoria_model::glance::MemberStatus;
use serde_json::{Value, json};

use super::error::{GAuth, GBody, GPath, GResult, GlanceError};
use super::images::{image_id, unknown_keys};
use super::views;
use crate::State;

fn object(body: &GBody) -> GResult<&serde_json::Map<String, Value>> {
    body.expect_json()?;
    body.value
        .as_object()
        .ok_or_else(|| GlanceError::bad_request("The request body must be a JSON object."))
}

pub async fn list(
    AxState(state): AxState<State>,
    GAuth(ctx): GAuth,
    GPath(id): GPath<String>,
) -> GResult<Json<Value>> {
    let members = image_service::member_list(&state.app, &ctx, image_id(&id)?).await?;
    Ok(Json(json!({
        "members": members.iter().map(views::member).collect::<Vec<_>>(),
        "schema": "/v2/schemas/members",
    })))
}

pub async fn create(
    AxState(state): AxState<State>,
    GAuth(ctx): GAuth,
    GPath(id): GPath<String>,
    body: GBody,
) -> GResult<Json<Value>> {
    let id = image_id(&id)?;
    let b = object(&body)?;
    if let Some(k) = unknown_keys(b, &["member"]) {
        return Err(GlanceError::bad_request(format!(
            "Provided object does not match schema 'member': Additional properties are not allowed ('{k}' was unexpected)"
        )));
    }
    let member = match b.get("member") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(Value::String(_)) | None => {
            return Err(GlanceError::bad_request("Member to be added not specified"));
        }
        Some(other) => {
            return Err(GlanceError::bad_request(format!(
                "Provided object does not match schema 'member': {other} is not of type 'string'"
            )));
        }
    };
    let m = image_service::member_add(&state.app, &ctx, id, &member).await?;
    Ok(Json(views::member(&m)))
}

pub async fn show(
    AxState(state): AxState<State>,
    GAuth(ctx): GAuth,
    GPath((id, member)): GPath<(String, String)>,
) -> GResult<Json<Value>> {
    let m = image_service::member_get(&state.app, &ctx, image_id(&id)?, &member).await?;
    Ok(Json(views::member(&m)))
}

pub async fn update(
    AxState(state): AxState<State>,
    GAuth(ctx): GAuth,
    GPath((id, member)): GPath<(String, String)>,
    body: GBody,
) -> GResult<Json<Value>> {
    let id = image_id(&id)?;
    let b = object(&body)?;
    if let Some(k) = unknown_keys(b, &["status"]) {
        return Err(GlanceError::bad_request(format!(
            "Provided object does not match schema 'member': Additional properties are not allowed ('{k}' was unexpected)"
        )));
    }
    let status = match b.get("status") {
        None => return Err(GlanceError::bad_request("Status not specified")),
        Some(v) => v
            .as_str()
            .and_then(|s| s.parse::<MemberStatus>().ok())
            .ok_or_else(|| {
                GlanceError::bad_request(format!(
                    "Invalid status: {}",
                    v.as_str().map(str::to_owned).unwrap_or(v.to_string())
                ))
            })?,
    };
    let m = image_service::member_update(&state.app, &ctx, id, &member, status).await?;
    Ok(Json(views::member(&m)))
}

pub async fn delete(
    AxState(state): AxState<State>,
    GAuth(ctx): GAuth,
    GPath((id, member)): GPath<(String, String)>,
) -> GResult<StatusCode> {
    image_service::member_delete(&state.app, &ctx, image_id(&id)?, &member).await?;
    Ok(StatusCode::NO_CONTENT)
}
