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
//! From 3.18 an admin also sees `os-backup-project-attr:project_id`, from
//! 3.43 everyone the backup's `metadata`, from 3.56 an admin its `user_id`.
//! Lists sort, page (`marker`, `limit`, `offset`) and count (3.45) as the
//! snapshot lists do. `actions.rs`: the admin actions, Cinder's backup
//! records and Scoria's verification. `force` backs up an `in-use` volume
//! (through its export's daemon) and `snapshot_id` a snapshot of the volume
//! (see `scoria_core::backups`).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::Extension;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scoria_core::backups::{self, BackupView, CreateRequest, ListRequest, SortKey};
use scoria_model::BackupId;
use serde_json::{Map, Value, json};

use crate::State;
use crate::auth::Auth;
use crate::body::{self, JsonBody};
use crate::fault::{ApiError, ApiResult};
use crate::microversion::Version;
use crate::path::{PathParams, links_base, seg};
use crate::query::{self, MAX_LIMIT, Params, SortKeys};

pub mod actions;

/// Project and user of a backup in its views (admins), and metadata.
const PROJECT_ATTR: u32 = 18;
const METADATA: u32 = 43;
const USER_ID: u32 = 56;
const UPDATE: u32 = 9;
const WITH_COUNT: u32 = 45;

const SORT_KEYS: SortKeys<SortKey> = SortKeys {
    parse: SortKey::parse,
    default: SortKey::CreatedAt,
};

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

/// What a view shows beyond Cinder's base fields.
#[derive(Clone, Copy)]
struct Shown {
    version: Version,
    admin: bool,
    progress: bool,
}

impl Shown {
    fn new(ctx: &scoria_core::Context, version: Version, progress: bool) -> Shown {
        Shown {
            version,
            admin: ctx
                .authorize(scoria_core::Op::BackupListAllProjects)
                .is_ok(),
            progress,
        }
    }
}

/// The detailed view (show, detailed list).
fn detail(view: &BackupView, base: &(String, String), shown: Shown) -> Value {
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
    let m = o.as_object_mut().expect("object");
    if shown.admin && shown.version.at_least(PROJECT_ATTR) {
        m.insert(
            "os-backup-project-attr:project_id".into(),
            json!(b.project_id),
        );
    }
    if shown.admin && shown.version.at_least(USER_ID) {
        m.insert("user_id".into(), json!(b.user_id));
    }
    if shown.version.at_least(METADATA) {
        m.insert("metadata".into(), json!(b.metadata));
    }
    if shown.progress {
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
    Extension(v): Extension<Version>,
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
        metadata: if v.at_least(METADATA) {
            body::opt_metadata(b, "metadata")?.unwrap_or_default()
        } else {
            Default::default()
        },
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
    Extension(v): Extension<Version>,
    path: PathParams,
    q: Params,
) -> ApiResult<Json<Value>> {
    let shown = Shown::new(&ctx, v, q.flag("with_progress")?);
    let view = backups::get(&state.app, &ctx, path_id(&path)?).await?;
    let base = links_base(&state, &ctx, &path.0);
    Ok(Json(json!({"backup": detail(&view, &base, shown)})))
}

fn list_request(ctx: &scoria_core::Context, q: &Params, v: Version) -> ApiResult<ListRequest> {
    crate::filters::BACKUP.check(q, v)?;
    let marker = match q.get("marker") {
        None | Some("") => None,
        Some(m) => Some(
            m.parse::<BackupId>()
                .map_err(|_| ApiError::not_found(format!("Marker {m} could not be found.")))?,
        ),
    };
    let volume_id = match q.get("volume_id") {
        None | Some("") => None,
        Some(v) => v.parse().ok(),
    };
    let all_projects = q.flag("all_tenants")? || q.flag("all_projects")?;
    Ok(ListRequest {
        all_projects: all_projects
            && ctx
                .authorize(scoria_core::Op::BackupListAllProjects)
                .is_ok(),
        project_id: q
            .get("project_id")
            .filter(|p| !p.is_empty())
            .map(str::to_owned),
        volume_id,
        status: q.get("status").map(str::to_owned),
        name: q
            .get("name")
            .or_else(|| q.get("display_name"))
            .map(str::to_owned),
        sort: query::sort(q, &SORT_KEYS)?,
        limit: Some(query::limit(q)?.unwrap_or(MAX_LIMIT)),
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
    // A volume id that is not a UUID names no volume: nothing matches.
    if req.volume_id.is_none() && q.get("volume_id").is_some_and(|v| !v.is_empty()) {
        return Ok(Json(json!({"backups": []})));
    }
    let size = req.limit.unwrap_or(MAX_LIMIT);
    let with_count = req.with_count;
    let shown = Shown::new(&ctx, v, q.flag("with_progress")?);
    let res = backups::list(&state.app, &ctx, req).await?;
    let base = links_base(&state, &ctx, &path);
    let items: Vec<Value> = res
        .backups
        .iter()
        .map(|b| {
            if full {
                detail(b, &base, shown)
            } else {
                summary(b, &base)
            }
        })
        .collect();
    let mut out = Map::new();
    if size > 0
        && res.backups.len() as i64 == size
        && let Some(last) = res.backups.last()
    {
        let url = format!("{}/backups{}", base.0, if full { "/detail" } else { "" });
        out.insert(
            "backups_links".into(),
            query::next_link(&q, &url, &["offset"], size, last.backup.id),
        );
    }
    out.insert("backups".into(), Value::Array(items));
    if with_count {
        out.insert("count".into(), json!(res.count.unwrap_or(0)));
    }
    Ok(Json(Value::Object(out)))
}

/// `GET /backups`.
pub async fn list(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    Extension(v): Extension<Version>,
    path: PathParams,
    q: Params,
) -> ApiResult<Json<Value>> {
    list_any(state, ctx, v, path.0, q, false).await
}

/// `GET /backups/detail`.
pub async fn list_detail(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    Extension(v): Extension<Version>,
    path: PathParams,
    q: Params,
) -> ApiResult<Json<Value>> {
    list_any(state, ctx, v, path.0, q, true).await
}

/// `PUT /backups/{id}` (3.9) `{"backup": {name, description, metadata
/// (3.43)}}` (200, the summary view, as Cinder answers).
pub async fn update(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    Extension(v): Extension<Version>,
    path: PathParams,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    if !v.at_least(UPDATE) {
        return Err(crate::microversion::not_supported(v));
    }
    let id = path_id(&path)?;
    body::only(&body, "request body", &["backup"])?;
    let b = body::object(&body, "backup")?;
    let keys: &[&str] = if v.at_least(METADATA) {
        &["name", "description", "metadata"]
    } else {
        &["name", "description"]
    };
    body::only(b, "backup", keys)?;
    let req = backups::admin::UpdateRequest {
        name: body::nullable_str(b, "name")?,
        description: body::nullable_str(b, "description")?,
        metadata: body::opt_metadata(b, "metadata")?,
    };
    let view = backups::admin::update(&state.app, &ctx, id, req).await?;
    let base = links_base(&state, &ctx, &path.0);
    Ok(Json(json!({"backup": summary(&view, &base)})))
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
