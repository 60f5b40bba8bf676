//! `/v3/{project_id}/snapshots…`: take, read, change and delete snapshots,
//! and their metadata. Views are in [`view`], the `…/action` route and its
//! table of actions in [`actions`].
//!
//! Every route exists at every microversion, as in Cinder; the microversion
//! decides the body (see [`view`]), whether `force` is still asked for (an
//! `in-use` volume needs it below 3.66; from 3.66 only `true` is accepted, for
//! old clients), and from which version filters are checked (3.22 `metadata`,
//! 3.33 unknown filters refused, 3.45 `with_count`).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Extension, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scoria_core::snapshots::{self, CreateRequest, ListRequest, SortKey};
use scoria_model::SnapshotId;
use serde_json::{Map, Value, json};

use crate::State;
use crate::auth::Auth;
use crate::body::{self, JsonBody};
use crate::fault::{ApiError, ApiResult};
use crate::microversion::Version;
use crate::path::{PathParams, links_base, seg};
use crate::query::{self, MAX_LIMIT, Params, SortKeys};

pub mod actions;
pub mod manage;
pub mod view;

use view::detail;

/// From 3.22 a list may be filtered by metadata.
const METADATA_FILTER: u32 = 22;
/// From 3.45 a list may count what matches (`with_count`).
const WITH_COUNT: u32 = 45;
/// From 3.66 an `in-use` volume is snapshotted without `force`.
const IN_USE_WITHOUT_FORCE: u32 = 66;

/// The keys a snapshot list sorts by (Cinder's, with `display_*`).
const SORT_KEYS: SortKeys<SortKey> = SortKeys {
    parse: SortKey::parse,
    default: SortKey::CreatedAt,
};

fn path_id(p: &BTreeMap<String, String>) -> ApiResult<SnapshotId> {
    Ok(snapshots::parse_id(seg(p, "id"))?)
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

// ---------------------------------------------------------------------------
// Create

/// `POST /snapshots` `{"snapshot": {volume_id, name, description, metadata,
/// force}}` (202).
pub async fn create(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    Extension(v): Extension<Version>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    body::only(&body, "request body", &["snapshot"])?;
    let s = body::object(&body, "snapshot")?;
    body::only(
        s,
        "snapshot",
        &[
            "volume_id",
            "name",
            "display_name",
            "description",
            "display_description",
            "metadata",
            "force",
        ],
    )?;
    // `volume_id` is required, and a UUID or null; null names no volume (404,
    // as Cinder answers).
    let volume_id = match s.get("volume_id") {
        None => {
            return Err(ApiError::bad_request(
                "Invalid input for field/attribute snapshot: 'volume_id' is a required property.",
            ));
        }
        Some(Value::Null) => {
            return Err(ApiError::not_found("Volume None could not be found."));
        }
        Some(_) => {
            let raw = body::opt_str(s, "volume_id")?.unwrap_or_default();
            uuid_field("volume_id", &raw)?;
            raw
        }
    };
    let force = body::boolean(s, "force")?;
    if v.at_least(IN_USE_WITHOUT_FORCE) && force == Some(false) {
        return Err(ApiError::bad_request(
            "Since microversion 3.66 the 'force' flag is invalid for this request. For backward compatibility, however, a 'true' value is accepted.",
        ));
    }
    let req = CreateRequest {
        volume_id: Some(volume_id),
        name: match body::opt_str(s, "name")? {
            Some(n) => Some(n),
            None => body::opt_str(s, "display_name")?,
        },
        description: match body::opt_str(s, "description")? {
            Some(d) => Some(d),
            None => body::opt_str(s, "display_description")?,
        },
        metadata: body::opt_metadata(s, "metadata")?.unwrap_or_default(),
        force: force.unwrap_or(false),
        in_use_without_force: v.at_least(IN_USE_WITHOUT_FORCE),
    };
    let view = snapshots::create(&state.app, &ctx, req).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"snapshot": detail(&view, v, false, false)})),
    )
        .into_response())
}

// ---------------------------------------------------------------------------
// Read

/// `GET /snapshots/{id}[?with_progress=true]`.
pub async fn show(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    Extension(v): Extension<Version>,
    path: PathParams,
    q: Params,
) -> ApiResult<Json<Value>> {
    let status = q.flag("with_progress")?;
    let view = snapshots::get(&state.app, &ctx, path_id(&path)?).await?;
    Ok(Json(json!({"snapshot": detail(&view, v, true, status)})))
}

fn list_request(ctx: &scoria_core::Context, q: &Params, v: Version) -> ApiResult<ListRequest> {
    crate::filters::SNAPSHOT.check(q, v)?;
    // A marker names a snapshot: one that is not an id names none (404, as
    // for an unknown one).
    let marker = match q.get("marker") {
        None | Some("") => None,
        Some(m) => Some(
            m.parse::<SnapshotId>()
                .map_err(|_| ApiError::not_found(format!("Marker {m} could not be found.")))?,
        ),
    };
    let limit = query::limit(q)?.unwrap_or(MAX_LIMIT);
    let all_projects = q.flag("all_tenants")? || q.flag("all_projects")?;
    Ok(ListRequest {
        all_projects: all_projects
            && ctx
                .authorize(scoria_core::Op::SnapshotListAllProjects)
                .is_ok(),
        project_id: q
            .get("project_id")
            .filter(|p| !p.is_empty())
            .map(str::to_owned),
        name: q
            .get("name")
            .or_else(|| q.get("display_name"))
            .map(str::to_owned),
        status: q.get("status").map(str::to_owned),
        volume_id: q.get("volume_id").map(str::to_owned),
        metadata: match q.get("metadata") {
            Some(m) if v.at_least(METADATA_FILTER) && !m.is_empty() => {
                crate::volume::metadata_filter(m)?
            }
            _ => Vec::new(),
        },
        sort: query::sort(q, &SORT_KEYS)?,
        limit: Some(limit),
        offset: q.uint("offset")?,
        marker,
        with_count: v.at_least(WITH_COUNT) && q.flag("with_count")?,
    })
}

async fn list_any(
    state: State,
    ctx: scoria_core::Context,
    v: Version,
    path: BTreeMap<String, String>,
    q: Params,
    full: bool,
) -> ApiResult<Json<Value>> {
    let req = list_request(&ctx, &q, v)?;
    let status = q.flag("with_progress")?;
    let size = req.limit.unwrap_or(MAX_LIMIT);
    let with_count = req.with_count;
    let res = snapshots::list(&state.app, &ctx, req).await?;
    let items: Vec<Value> = res
        .snapshots
        .iter()
        .map(|s| {
            if full {
                detail(s, v, true, status)
            } else {
                view::summary(s, status)
            }
        })
        .collect();
    let mut out = Map::new();
    if size > 0
        && res.snapshots.len() as i64 == size
        && let Some(last) = res.snapshots.last()
    {
        let links = links_base(&state, &ctx, &path);
        let url = format!("{}/snapshots{}", links.0, if full { "/detail" } else { "" });
        // The next page starts after the marker: an offset would skip again.
        out.insert(
            "snapshots_links".into(),
            query::next_link(&q, &url, &["offset"], size, last.snapshot.id),
        );
    }
    out.insert("snapshots".into(), Value::Array(items));
    if with_count {
        out.insert("count".into(), json!(res.count.unwrap_or(0)));
    }
    Ok(Json(Value::Object(out)))
}

/// `GET /snapshots`.
pub async fn list(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    Extension(v): Extension<Version>,
    path: PathParams,
    q: Params,
) -> ApiResult<Json<Value>> {
    list_any(state, ctx, v, path.0, q, false).await
}

/// `GET /snapshots/detail`.
pub async fn list_detail(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    Extension(v): Extension<Version>,
    path: PathParams,
    q: Params,
) -> ApiResult<Json<Value>> {
    list_any(state, ctx, v, path.0, q, true).await
}

// ---------------------------------------------------------------------------
// Change

/// `PUT /snapshots/{id}` `{"snapshot": {name, description}}` (or their
/// `display_*` names), at least one (200).
pub async fn update(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    Extension(v): Extension<Version>,
    path: PathParams,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let id = path_id(&path)?;
    body::only(&body, "request body", &["snapshot"])?;
    let s = body::object(&body, "snapshot")?;
    let keys = ["name", "description", "display_name", "display_description"];
    body::only(s, "snapshot", &keys)?;
    if s.is_empty() {
        return Err(ApiError::bad_request(
            "Invalid input for field/attribute snapshot: one of name, description, display_name or display_description is required.",
        ));
    }
    let name = match body::nullable_str(s, "name")? {
        Some(n) => Some(n),
        None => body::nullable_str(s, "display_name")?,
    };
    let description = match body::nullable_str(s, "description")? {
        Some(d) => Some(d),
        None => body::nullable_str(s, "display_description")?,
    };
    let view = snapshots::update(&state.app, &ctx, id, name, description).await?;
    Ok(Json(json!({"snapshot": detail(&view, v, false, false)})))
}

/// `DELETE /snapshots/{id}` (202). A snapshot that volumes were made from is
/// deleted at once; its data stays for as long as they read it.
pub async fn delete(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: PathParams,
) -> ApiResult<StatusCode> {
    snapshots::delete(&state.app, &ctx, path_id(&path)?, false).await?;
    Ok(StatusCode::ACCEPTED)
}

// ---------------------------------------------------------------------------
// Metadata

fn key(p: &BTreeMap<String, String>) -> String {
    p.get("key").cloned().unwrap_or_default()
}

/// `GET /snapshots/{id}/metadata`.
pub async fn metadata_show(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: PathParams,
) -> ApiResult<Json<Value>> {
    let md = snapshots::metadata_get(&state.app, &ctx, path_id(&path)?).await?;
    Ok(Json(json!({"metadata": md})))
}

async fn metadata_write(
    state: State,
    ctx: scoria_core::Context,
    path: BTreeMap<String, String>,
    body: Map<String, Value>,
    replace: bool,
) -> ApiResult<Json<Value>> {
    let id = path_id(&path)?;
    let items = body::metadata(
        body.get("metadata").ok_or_else(|| {
            ApiError::bad_request("Malformed request body: metadata is required.")
        })?,
        "metadata",
    )?;
    let md = snapshots::metadata_set(&state.app, &ctx, id, items, replace).await?;
    Ok(Json(json!({"metadata": md})))
}

/// `POST /snapshots/{id}/metadata`: merge.
pub async fn metadata_merge(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: PathParams,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    metadata_write(state, ctx, path.0, body, false).await
}

/// `PUT /snapshots/{id}/metadata`: replace.
pub async fn metadata_replace(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: PathParams,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    metadata_write(state, ctx, path.0, body, true).await
}

/// `GET /snapshots/{id}/metadata/{key}`: `{"meta": {key: value}}`.
pub async fn metadata_key_show(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: PathParams,
) -> ApiResult<Json<Value>> {
    let id = path_id(&path)?;
    let k = key(&path);
    let md = snapshots::metadata_get(&state.app, &ctx, id).await?;
    match md.get(&k) {
        Some(v) => Ok(Json(json!({"meta": {k: v}}))),
        None => Err(ApiError::not_found(format!(
            "Metadata item was not found: snapshot {id} has no metadata with key {k}."
        ))),
    }
}

/// `PUT /snapshots/{id}/metadata/{key}` `{"meta": {key: value}}`.
pub async fn metadata_key_set(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: PathParams,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let id = path_id(&path)?;
    let k = key(&path);
    let meta = body::metadata(
        body.get("meta")
            .ok_or_else(|| ApiError::bad_request("Malformed request body: meta is required."))?,
        "meta",
    )?;
    if meta.len() != 1 {
        return Err(ApiError::bad_request(
            "Request body contains too many items.",
        ));
    }
    if !meta.contains_key(&k) {
        return Err(ApiError::bad_request("Request body and URI mismatch."));
    }
    snapshots::metadata_set(&state.app, &ctx, id, meta.clone(), false).await?;
    Ok(Json(json!({"meta": meta})))
}

/// `DELETE /snapshots/{id}/metadata/{key}` (200, no body).
pub async fn metadata_key_delete(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: PathParams,
) -> ApiResult<StatusCode> {
    snapshots::metadata_delete(&state.app, &ctx, path_id(&path)?, &key(&path)).await?;
    Ok(StatusCode::OK)
}
