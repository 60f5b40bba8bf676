//! `/v3/{project_id}/attachments…` (microversion 3.27 on): handlers and
//! views, and the JSON shape of `connection_info`.
//!
//! `connection_info` for Scoria's exports has `driver_volume_type: "nbd"`.
//! In an attachment it is flat, as Cinder's attachments API shows it (the
//! driver's `data` keys beside `driver_volume_type`, plus `attachment_id`);
//! `os-initialize_connection` answers the older nested shape
//! (`{"driver_volume_type", "data": {…}}`). The keys: `host` and `port` (or
//! `socket` for a unix socket), `export_name`, `format` (`raw`: the daemon
//! decodes the image), `access_mode` and `read_only`, `uri`, and for TLS
//! `tls: true` with `psk_identity` and `psk_key` (hex) — which only the
//! attachment's project and admins ever see, since an attachment of another
//! project does not exist for the caller.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scoria_core::attachments::{self, AttachmentView, ListRequest};
use scoria_core::exports::{Address, ConnectionInfo};
use scoria_model::attachment::{AttachMode, AttachmentStatus};
use scoria_model::{AttachmentId, VolumeId};
use serde_json::{Map, Value, json};

use crate::State;
use crate::action::{self, Action, Call};
use crate::auth::Auth;
use crate::body::{self, JsonBody};
use crate::fault::{ApiError, ApiResult};
use crate::microversion::AtLeast;
use crate::path::{PathParams, seg};
use crate::query::{Paging, Params};

/// The attachments API's first microversion.
pub const ATTACHMENTS: u32 = 27;
/// `os-complete`'s.
const COMPLETE: u32 = 44;
/// The microversion from which `mode` may be given.
const WITH_MODE: u32 = 54;

fn path_id(p: &BTreeMap<String, String>) -> ApiResult<AttachmentId> {
    Ok(attachments::parse_id(seg(p, "id"))?)
}

/// The driver's `data`: how to reach the export.
pub fn connection_data(ci: &ConnectionInfo) -> Map<String, Value> {
    let mut m = Map::new();
    match &ci.address {
        Address::Tcp { host, port } => {
            m.insert("host".into(), json!(host));
            m.insert("port".into(), json!(port));
        }
        Address::Unix { path } => {
            m.insert("socket".into(), json!(path.to_string_lossy()));
        }
    }
    m.insert("export_name".into(), json!(ci.export_name));
    m.insert("format".into(), json!("raw"));
    m.insert(
        "access_mode".into(),
        json!(if ci.read_only { "ro" } else { "rw" }),
    );
    m.insert("read_only".into(), json!(ci.read_only));
    m.insert("uri".into(), json!(ci.uri()));
    m.insert("tls".into(), json!(ci.psk.is_some()));
    if let Some((identity, key)) = &ci.psk {
        m.insert("psk_identity".into(), json!(identity));
        m.insert("psk_key".into(), json!(key));
    }
    m.insert("volume_id".into(), json!(ci.volume_id.to_string()));
    m
}

/// The nested shape (`os-initialize_connection`).
pub fn connection_nested(ci: &ConnectionInfo) -> Value {
    json!({"driver_volume_type": "nbd", "data": connection_data(ci)})
}

fn connection_flat(ci: &ConnectionInfo) -> Value {
    let mut m = connection_data(ci);
    m.insert("driver_volume_type".into(), json!("nbd"));
    m.insert("attachment_id".into(), json!(ci.attachment_id.to_string()));
    Value::Object(m)
}

fn summary(a: &AttachmentView) -> Value {
    let a = &a.attachment;
    json!({
        "id": a.id.to_string(),
        "status": a.status.as_str(),
        "instance": a.instance_uuid,
        "volume_id": a.volume_id.to_string(),
    })
}

fn detail(a: &AttachmentView) -> Value {
    let at = &a.attachment;
    json!({
        "id": at.id.to_string(),
        "status": at.status.as_str(),
        "instance": at.instance_uuid,
        "volume_id": at.volume_id.to_string(),
        "attached_at": at.attached_at,
        "detached_at": at.detached_at,
        "attach_mode": at.attach_mode.as_str(),
        "connection_info": a.connection_info.as_ref().map(connection_flat),
    })
}

fn parse_uuid(raw: &str, field: &str) -> ApiResult<VolumeId> {
    raw.parse::<VolumeId>().map_err(|_| {
        ApiError::bad_request(format!(
            "Invalid input for field/attribute {field}. Value: {raw}. '{raw}' is not a 'uuid'."
        ))
    })
}

/// A connector: an object or null.
fn connector(m: &Map<String, Value>) -> ApiResult<Option<Value>> {
    match m.get("connector") {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
        Some(_) => Err(ApiError::bad_request(
            "Invalid input for field/attribute connector: must be an object or null.",
        )),
    }
}

/// `POST …/attachments` `{"attachment": {"volume_uuid", "instance_uuid",
/// "connector", "mode"}}` (200).
pub async fn create(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    AtLeast(v): AtLeast<ATTACHMENTS>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    body::only(&body, "request body", &["attachment"])?;
    let a = body::object(&body, "attachment")?;
    let allowed: &[&str] = if v.at_least(WITH_MODE) {
        &["volume_uuid", "instance_uuid", "connector", "mode"]
    } else {
        &["volume_uuid", "instance_uuid", "connector"]
    };
    body::only(a, "attachment", allowed)?;
    let raw = body::opt_str(a, "volume_uuid")?.ok_or_else(|| {
        ApiError::bad_request(
            "Invalid input for field/attribute attachment: 'volume_uuid' is a required property.",
        )
    })?;
    let volume_id = parse_uuid(&raw, "volume_uuid")?;
    let instance = body::opt_str(a, "instance_uuid")?;
    if let Some(i) = &instance
        && i.parse::<VolumeId>().is_err()
    {
        return Err(ApiError::bad_request(format!(
            "Invalid input for field/attribute instance_uuid. Value: {i}. '{i}' is not a 'uuid'."
        )));
    }
    let connector = connector(a)?;
    let mode = match body::opt_str(a, "mode")?.as_deref() {
        None => None,
        Some("rw") => Some(AttachMode::ReadWrite),
        Some("ro") => Some(AttachMode::ReadOnly),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid input for field/attribute mode. Value: {other}. '{other}' is not one of ['rw', 'ro']."
            )));
        }
    };
    let view = attachments::create(&state.app, &ctx, volume_id, instance, connector, mode).await?;
    Ok(Json(json!({"attachment": detail(&view)})).into_response())
}

/// `PUT …/attachments/{id}` `{"attachment": {"connector": {...}}}` (200).
pub async fn update(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    AtLeast(_): AtLeast<ATTACHMENTS>,
    path: PathParams,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let id = path_id(&path)?;
    body::only(&body, "request body", &["attachment"])?;
    let a = body::object(&body, "attachment")?;
    body::only(a, "attachment", &["connector"])?;
    let connector = connector(a)?.ok_or_else(|| {
        ApiError::bad_request(
            "Invalid input for field/attribute attachment: 'connector' is a required property.",
        )
    })?;
    let view = attachments::update(&state.app, &ctx, id, connector).await?;
    Ok(Json(json!({"attachment": detail(&view)})).into_response())
}

/// `DELETE …/attachments/{id}` (200): the volume's remaining attachments.
pub async fn delete(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    AtLeast(_): AtLeast<ATTACHMENTS>,
    path: PathParams,
) -> ApiResult<Response> {
    let id = path_id(&path)?;
    let rest = attachments::delete(&state.app, &ctx, id).await?;
    let items: Vec<Value> = rest.iter().map(detail).collect();
    Ok(Json(json!({"attachments": items})).into_response())
}

/// `GET …/attachments/{id}`.
pub async fn show(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    AtLeast(_): AtLeast<ATTACHMENTS>,
    path: PathParams,
) -> ApiResult<Json<Value>> {
    let view = attachments::get(&state.app, &ctx, path_id(&path)?).await?;
    Ok(Json(json!({"attachment": detail(&view)})))
}

async fn list_any(
    state: State,
    ctx: scoria_core::Context,
    q: Params,
    full: bool,
) -> ApiResult<Json<Value>> {
    let page = Paging::<AttachmentId>::parse(&q)?;
    let status = match q.get("status").or(q.get("attach_status")) {
        None => None,
        Some(s) => Some(s.parse::<AttachmentStatus>().map_err(|_| {
            ApiError::bad_request(format!("Invalid input received: Invalid status {s}."))
        })?),
    };
    let volume_id = match q.get("volume_id") {
        None => None,
        Some(raw) => Some(parse_uuid(raw, "volume_id")?),
    };
    let req = ListRequest {
        all_projects: q.flag("all_tenants")? || q.flag("all_projects")?,
        volume_id,
        instance_id: q.get("instance_id").map(str::to_owned),
        status,
        limit: Some(page.size()),
        marker: page.marker,
    };
    let list = attachments::list(&state.app, &ctx, req).await?;
    let items: Vec<Value> = list
        .iter()
        .map(|a| if full { detail(a) } else { summary(a) })
        .collect();
    Ok(Json(json!({"attachments": items})))
}

/// `GET …/attachments`: id, status, instance and volume of each.
pub async fn list(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    AtLeast(_): AtLeast<ATTACHMENTS>,
    q: Params,
) -> ApiResult<Json<Value>> {
    list_any(state, ctx, q, false).await
}

/// `GET …/attachments/detail`.
pub async fn list_detail(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    AtLeast(_): AtLeast<ATTACHMENTS>,
    q: Params,
) -> ApiResult<Json<Value>> {
    list_any(state, ctx, q, true).await
}

/// Every attachment action, by Cinder's name.
pub const ACTIONS: &[Action<AttachmentId>] =
    &[Action::new("os-complete", |c| Box::pin(complete(c))).since(COMPLETE)];

/// `POST …/attachments/{id}/action`.
pub async fn dispatch(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    AtLeast(version): AtLeast<ATTACHMENTS>,
    path: PathParams,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    action::dispatch(ACTIONS, &state.app, &ctx, version, path_id(&path)?, &body).await
}

/// `os-complete` (204).
async fn complete(c: Call<'_, AttachmentId>) -> ApiResult<Response> {
    attachments::complete(c.app, c.ctx, c.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
