//! `/v3/{project_id}/backups…`: create (full or incremental), list, show,
//! delete and restore backups, with Cinder's bodies.
//!
//! The detailed view is Cinder's (id, status, size, object_count,
//! availability_zone, container, times, name, description, fail_reason,
//! volume_id, links, is_incremental, has_dependent_backups, snapshot_id,
//! data_timestamp); `?with_progress=true` adds Scoria's `scoria:backup`: how
//! the data to read was found (`tracking`: `full`, `dirty-bitmap` or
//! `full-read`, with `fallback_reason`), the bytes read from the volume and
//! the bytes the backup added to the repository.
//!
//! Not yet: update (3.9), metadata (3.43), `export_record`/`import_record`,
//! `os-reset_status`, `os-force_delete`, sorting and markers. `force` backs
//! up an `in-use` volume (through its export's daemon) and `snapshot_id` a
//! snapshot of the volume (see `scoria_core::backups`).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scoria_core::backups::{self, BackupView, CreateRequest, ListRequest};
use scoria_model::BackupId;
use serde_json::{Map, Value, json};

use crate::State;
use crate::auth::Auth;
use crate::body::{self, JsonBody};
use crate::fault::{ApiError, ApiResult};
use crate::path::{PathParams, links_base, seg};
use crate::query::{self, MAX_LIMIT, Params};

fn path_id(p: &BTreeMap<String, String>) -> ApiResult<BackupId> {
    Ok(backups::parse_id(seg(p, "id"))?)
}

fn links(base: &(String, String), id: BackupId) -> Value {
    json!([
        {"rel": "self", "href": format!("{}/backups/{id}", base.0)},
        {"rel": "bookmark", "href": format!("{}/backups/{id}", base.1)},
    ])
}

/// `GET /backups`: id, name, links.
fn summary(view: &BackupView, base: &(String, String)) -> Value {
    let b = &view.backup;
    json!({"id": b.id.to_string(), "name": b.name, "links": links(base, b.id)})
}

/// The detailed view (show, detailed list).
fn detail(view: &BackupView, base: &(String, String), status: bool) -> Value {
    let b = &view.backup;
    let mut o = json!({
        "id": b.id.to_string(),
        "status": b.status.as_str(),
        "size": b.size,
        "object_count": b.object_count,
        "availability_zone": b.availability_zone,
        "container": b.container,
        "created_at": b.created_at,
        "updated_at": b.updated_at,
        "name": b.name,
        "description": b.description,
        "fail_reason": b.fail_reason,
        "volume_id": b.volume_id.to_string(),
        "links": links(base, b.id),
        "is_incremental": b.parent_id.is_some(),
        "has_dependent_backups": view.has_dependent_backups,
        "snapshot_id": b.snapshot_id.map(|s| s.to_string()),
        "data_timestamp": b.data_timestamp,
    });
    if status {
        let m = o.as_object_mut().expect("object");
        m.insert(
            "scoria:backup".into(),
            json!({
                "parent_id": b.parent_id.map(|p| p.to_string()),
                "tracking": b.tracking,
                "fallback_reason": b.fallback_reason,
                "bytes_read": b.bytes_read,
                "stored_bytes": b.stored_bytes,
                "progress": view.progress.as_ref().and_then(|p| p.percent),
            }),
        );
    }
    o
}

/// Cinder's schemas want a UUID where a body names a resource.
fn uuid_field(field: &str, raw: &str) -> ApiResult<()> {
    if uuid::Uuid::try_parse(raw).is_err() {
        return Err(ApiError::bad_request(format!(
            "Invalid input for field/attribute {field}. Value: {raw}. '{raw}' is not a 'uuid'"
        )));
    }
    Ok(())
}

/// `POST /backups` `{"backup": {volume_id, name, description, incremental,
/// force, snapshot_id, container}}` (202).
pub async fn create(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: PathParams,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    body::only(&body, "request body", &["backup"])?;
    let b = body::object(&body, "backup")?;
    body::only(
        b,
        "backup",
        &[
            "volume_id",
            "name",
            "description",
            "incremental",
            "force",
            "snapshot_id",
            "container",
            "metadata",
            "availability_zone",
        ],
    )?;
    let volume_id = match b.get("volume_id") {
        None => {
            return Err(ApiError::bad_request(
                "Invalid input for field/attribute backup: 'volume_id' is a required property.",
            ));
        }
        Some(_) => {
            let raw = body::opt_str(b, "volume_id")?.unwrap_or_default();
            uuid_field("volume_id", &raw)?;
            raw
        }
    };
    let snapshot_id = body::opt_str(b, "snapshot_id")?;
    if let Some(s) = &snapshot_id {
        uuid_field("snapshot_id", s)?;
    }
    let req = CreateRequest {
        volume_id: Some(volume_id),
        name: body::opt_str(b, "name")?,
        description: body::opt_str(b, "description")?,
        container: body::opt_str(b, "container")?,
        incremental: body::boolean(b, "incremental")?.unwrap_or(false),
        force: body::boolean(b, "force")?.unwrap_or(false),
        snapshot_id,
    };
    let view = backups::create(&state.app, &ctx, req).await?;
    let base = links_base(&state, &ctx, &path.0);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"backup": summary(&view, &base)})),
    )
        .into_response())
}

/// `GET /backups/{id}[?with_progress=true]`.
pub async fn show(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: PathParams,
    q: Params,
) -> ApiResult<Json<Value>> {
    let status = q.flag("with_progress")?;
    let view = backups::get(&state.app, &ctx, path_id(&path)?).await?;
    let base = links_base(&state, &ctx, &path.0);
    Ok(Json(json!({"backup": detail(&view, &base, status)})))
}

async fn list_any(
    state: State,
    ctx: scoria_core::Context,
    path: BTreeMap<String, String>,
    q: Params,
    full: bool,
) -> ApiResult<Json<Value>> {
    let volume_id = match q.get("volume_id") {
        None | Some("") => None,
        Some(v) => match v.parse() {
            Ok(v) => Some(v),
            Err(_) => return Ok(Json(json!({"backups": []}))),
        },
    };
    let all_projects = q.flag("all_tenants")? || q.flag("all_projects")?;
    let req = ListRequest {
        all_projects,
        project_id: q
            .get("project_id")
            .filter(|p| !p.is_empty())
            .map(str::to_owned),
        volume_id,
        status: q.get("status").map(str::to_owned),
        limit: Some(query::limit(&q)?.unwrap_or(MAX_LIMIT)),
        offset: q.uint("offset")?,
    };
    let status = q.flag("with_progress")?;
    let all = backups::list(&state.app, &ctx, req).await?;
    let base = links_base(&state, &ctx, &path);
    let items: Vec<Value> = all
        .iter()
        .map(|b| {
            if full {
                detail(b, &base, status)
            } else {
                summary(b, &base)
            }
        })
        .collect();
    let mut out = Map::new();
    out.insert("backups".into(), Value::Array(items));
    Ok(Json(Value::Object(out)))
}

/// `GET /backups`.
pub async fn list(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: PathParams,
    q: Params,
) -> ApiResult<Json<Value>> {
    list_any(state, ctx, path.0, q, false).await
}

/// `GET /backups/detail`.
pub async fn list_detail(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: PathParams,
    q: Params,
) -> ApiResult<Json<Value>> {
    list_any(state, ctx, path.0, q, true).await
}

/// `DELETE /backups/{id}` (202); refused while an incremental depends on it.
pub async fn delete(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: PathParams,
) -> ApiResult<StatusCode> {
    backups::delete(&state.app, &ctx, path_id(&path)?).await?;
    Ok(StatusCode::ACCEPTED)
}

/// `POST /backups/{id}/restore` `{"restore": {volume_id?, name?}}` (202):
/// onto an existing `available` volume at least as large, or a new one.
pub async fn restore(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: PathParams,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    body::only(&body, "request body", &["restore"])?;
    let r = match body.get("restore") {
        Some(Value::Null) | None => Map::new(),
        Some(_) => body::object(&body, "restore")?.clone(),
    };
    body::only(&r, "restore", &["volume_id", "name"])?;
    let volume_id = body::opt_str(&r, "volume_id")?;
    if let Some(v) = &volume_id {
        uuid_field("volume_id", v)?;
    }
    let name = body::opt_str(&r, "name")?;
    let started = backups::restore(&state.app, &ctx, path_id(&path)?, volume_id, name).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"restore": {
            "backup_id": started.backup_id.to_string(),
            "volume_id": started.volume_id.to_string(),
            "volume_name": started.volume_name,
        }})),
    )
        .into_response())
}
