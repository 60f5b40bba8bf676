//! `/group_types…` (microversion 3.11 on) and `/groups…` (3.13 on): generic
//! volume groups, their types and group specs. Handlers and views.
//!
//! Below a route's microversion the route does not exist (404, as Cinder's
//! `VersionNotFoundForAPIMethod`). Views follow Cinder's exactly, because
//! strict clients (tempest) refuse unknown keys: a group type shows its
//! `group_specs` to admins only; a group's detail gains `group_snapshot_id`
//! and `source_group_id` at 3.14, `volumes` at 3.25 when `list_volume` is
//! asked for, `replication_status` at 3.38 and (admins) `project_id` at 3.58.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scoria_core::Context;
use scoria_core::groups::{
    self, CreateRequest, FromSourceRequest, Group, GroupType, GroupTypeChange, ListRequest,
    NewGroupType, PublicFilter, SortKey, UpdateRequest,
};
use scoria_model::GroupId;
use scoria_model::group::GroupStatus;
use serde_json::{Map, Value, json};

use crate::State;
use crate::action::{self, Action, Call};
use crate::auth::Auth;
use crate::body::{self, JsonBody};
use crate::fault::{ApiError, ApiResult};
use crate::microversion::{AtLeast, Version, not_supported};
use crate::path::{PathParams as P, links_base, seg};
use crate::query::{self, Paging, Params, SortKeys};

/// Group types: 3.11 on.
type TypesApi = AtLeast<11>;
/// Groups: 3.13 on.
type GroupsApi = AtLeast<13>;
/// `create-from-src`: 3.14 on.
const FROM_SOURCE: u32 = 14;
/// `reset_status`: 3.20 on.
const RESET_STATUS: u32 = 20;

/// The keys a group type list sorts by.
const TYPE_SORT_KEYS: SortKeys<SortKey> = SortKeys {
    parse: SortKey::parse_for_types,
    default: SortKey::CreatedAt,
};

/// The keys a group list sorts by.
const GROUP_SORT_KEYS: SortKeys<SortKey> = SortKeys {
    parse: SortKey::parse_for_groups,
    default: SortKey::CreatedAt,
};

// ---------------------------------------------------------------------------
// Group types

fn type_view(t: &GroupType, ctx: &Context) -> Value {
    let mut v = json!({
        "id": t.id.to_string(),
        "name": t.name,
        "description": t.description,
        "is_public": t.is_public,
    });
    if groups::reads_specs(ctx) {
        v["group_specs"] = json!(t.group_specs);
    }
    v
}

/// `GET /group_types[?is_public=true|false|None][&sort=…]`.
pub async fn type_list(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    _v: TypesApi,
    q: Params,
) -> ApiResult<Json<Value>> {
    // Read the raw value: `None` is meaningful here (every type).
    let raw =
        q.0.iter()
            .rev()
            .find(|(k, _)| k == "is_public")
            .map(|(_, v)| v.as_str());
    let filter = match raw {
        None => PublicFilter::Default,
        Some(v) if v.eq_ignore_ascii_case("none") => PublicFilter::All,
        Some(v) => match body::parse_bool(v) {
            Some(b) => PublicFilter::Only(b),
            // Only admins may filter, so only their filter is checked.
            None if ctx.is_admin() => {
                return Err(ApiError::bad_request(format!(
                    "Invalid is_public filter [{v}]"
                )));
            }
            None => PublicFilter::Default,
        },
    };
    let sort = query::sort(&q, &TYPE_SORT_KEYS)?;
    let list = groups::type_list(&state.app, &ctx, filter, &sort).await?;
    let list = query::page_in_memory(&q, list, |t| t.id)?;
    Ok(Json(json!({"group_types": list
        .iter()
        .map(|t| type_view(t, &ctx))
        .collect::<Vec<_>>()})))
}

/// `GET /group_types/{id}` (and `GET /group_types/default`).
pub async fn type_show(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    _v: TypesApi,
    p: P,
) -> ApiResult<Json<Value>> {
    let t = groups::type_get(&state.app, &ctx, seg(&p, "id")).await?;
    Ok(Json(json!({"group_type": type_view(&t, &ctx)})))
}

/// `POST /group_types` (202).
pub async fn type_create(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    _v: TypesApi,
    JsonBody(b): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    body::only(&b, "request body", &["group_type"])?;
    let gt = body::object(&b, "group_type")?;
    body::only(
        gt,
        "group_type",
        &["name", "description", "is_public", "group_specs"],
    )?;
    let name = body::opt_str(gt, "name")?.ok_or_else(|| {
        ApiError::bad_request(
            "Invalid input for field/attribute group_type: 'name' is a required property",
        )
    })?;
    let group_specs = match gt.get("group_specs") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(v) => body::string_map(v, "group_specs")?,
    };
    let req = NewGroupType {
        name,
        description: body::opt_str(gt, "description")?,
        is_public: body::boolean(gt, "is_public")?.unwrap_or(true),
        group_specs,
    };
    let t = groups::type_create(&state.app, &ctx, req).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"group_type": type_view(&t, &ctx)})),
    ))
}

/// `PUT /group_types/{id}`: name, description, is_public.
pub async fn type_update(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    _v: TypesApi,
    p: P,
    JsonBody(b): JsonBody,
) -> ApiResult<Json<Value>> {
    body::only(&b, "request body", &["group_type"])?;
    let gt = body::object(&b, "group_type")?;
    body::only(gt, "group_type", &["name", "description", "is_public"])?;
    let change = GroupTypeChange {
        name: body::opt_str(gt, "name")?,
        description: body::opt_str(gt, "description")?,
        is_public: body::boolean(gt, "is_public")?,
    };
    let t = groups::type_update(&state.app, &ctx, seg(&p, "id"), change).await?;
    Ok(Json(json!({"group_type": type_view(&t, &ctx)})))
}

/// `DELETE /group_types/{id}` (202).
pub async fn type_delete(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    _v: TypesApi,
    p: P,
) -> ApiResult<StatusCode> {
    groups::type_delete(&state.app, &ctx, seg(&p, "id")).await?;
    Ok(StatusCode::ACCEPTED)
}

/// `GET /group_types/{id}/group_specs`.
pub async fn specs_list(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    _v: TypesApi,
    p: P,
) -> ApiResult<Json<Value>> {
    let specs = groups::specs_get(&state.app, &ctx, seg(&p, "id")).await?;
    Ok(Json(json!({"group_specs": specs})))
}

/// `POST /group_types/{id}/group_specs`: add or overwrite (202, echoes them).
pub async fn specs_create(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    _v: TypesApi,
    p: P,
    JsonBody(b): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    body::only(&b, "request body", &["group_specs"])?;
    let v = b.get("group_specs").ok_or_else(|| {
        ApiError::bad_request("Invalid input: 'group_specs' is a required property")
    })?;
    let specs = body::string_map(v, "group_specs")?;
    let specs = groups::specs_set(&state.app, &ctx, seg(&p, "id"), specs).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"group_specs": specs}))))
}

/// `GET /group_types/{id}/group_specs/{key}`: `{"key": "value"}`.
pub async fn spec_show(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    _v: TypesApi,
    p: P,
) -> ApiResult<Json<Value>> {
    let key = seg(&p, "key");
    let value = groups::spec_get(&state.app, &ctx, seg(&p, "id"), key).await?;
    Ok(Json(json!({ key: value })))
}

/// `PUT /group_types/{id}/group_specs/{key}`: the body is `{"key": "value"}`,
/// that one key exactly.
pub async fn spec_update(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    _v: TypesApi,
    p: P,
    JsonBody(b): JsonBody,
) -> ApiResult<Json<Value>> {
    let key = seg(&p, "key");
    let specs = body::string_map(&Value::Object(b.clone()), "group_specs")?;
    if specs.is_empty() {
        return Err(ApiError::bad_request("Request body empty"));
    }
    if !specs.contains_key(key) {
        return Err(ApiError::bad_request("Request body and URI mismatch"));
    }
    if specs.len() > 1 {
        return Err(ApiError::bad_request(
            "Request body contains too many items",
        ));
    }
    let specs = groups::specs_set(&state.app, &ctx, seg(&p, "id"), specs).await?;
    Ok(Json(json!(specs)))
}

/// `DELETE /group_types/{id}/group_specs/{key}` (202).
pub async fn spec_delete(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    _v: TypesApi,
    p: P,
) -> ApiResult<StatusCode> {
    groups::spec_delete(&state.app, &ctx, seg(&p, "id"), seg(&p, "key")).await?;
    Ok(StatusCode::ACCEPTED)
}

// ---------------------------------------------------------------------------
// Groups

fn summary(g: &Group) -> Value {
    json!({"id": g.id.to_string(), "name": g.name})
}

fn detail(g: &Group, ctx: &Context, v: Version, volumes: Option<&[String]>) -> Value {
    let mut o = json!({
        "id": g.id.to_string(),
        "status": g.status.as_str(),
        "availability_zone": g.availability_zone,
        "created_at": g.created_at,
        "name": g.name,
        "description": g.description,
        "group_type": g.group_type_id.to_string(),
        "volume_types": g.volume_type_ids.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
    });
    if v.at_least(14) {
        o["group_snapshot_id"] = json!(g.group_snapshot_id);
        o["source_group_id"] = json!(g.source_group_id.map(|s| s.to_string()));
    }
    if let (true, Some(vols)) = (v.at_least(25), volumes) {
        o["volumes"] = json!(vols);
    }
    if v.at_least(38) {
        // Scoria does not replicate groups.
        o["replication_status"] = json!("disabled");
    }
    if v.at_least(58) && groups::reads_project(ctx) {
        o["project_id"] = json!(g.project_id);
    }
    o
}

fn path_group(p: &BTreeMap<String, String>) -> ApiResult<GroupId> {
    Ok(groups::parse_id(seg(p, "id"))?)
}

/// The member ids of `g` when the request asks for them (`list_volume`, 3.25).
async fn members(
    state: &State,
    ctx: &Context,
    v: Version,
    q: &Params,
    g: &Group,
) -> ApiResult<Option<Vec<String>>> {
    if !v.at_least(25) || !q.flag("list_volume")? {
        return Ok(None);
    }
    let ids = groups::volume_ids(&state.app, ctx, g.id).await?;
    Ok(Some(ids.iter().map(|i| i.to_string()).collect()))
}

/// `POST /groups` (202, the group's id and name).
pub async fn create(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    _v: GroupsApi,
    JsonBody(b): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    body::only(&b, "request body", &["group"])?;
    let g = body::object(&b, "group")?;
    body::only(
        g,
        "group",
        &[
            "name",
            "description",
            "group_type",
            "volume_types",
            "availability_zone",
        ],
    )?;
    let group_type = body::opt_str(g, "group_type")?.ok_or_else(|| {
        ApiError::bad_request(
            "Invalid input for field/attribute group: 'group_type' is a required property",
        )
    })?;
    let volume_types = match g.get("volume_types") {
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut out: Vec<String> = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) if !s.is_empty() && s.chars().count() <= 255 => {
                        if out.contains(s) {
                            return Err(ApiError::bad_request(format!(
                                "Invalid input for field/attribute volume_types: {s} is given more than once (the items must be unique)."
                            )));
                        }
                        out.push(s.clone());
                    }
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "Invalid input for field/attribute volume_types. Value: {other}. Each item must be a volume type id or name of 1 to 255 characters."
                        )));
                    }
                }
            }
            out
        }
        Some(Value::Array(_)) => {
            return Err(ApiError::bad_request(
                "Invalid input for field/attribute volume_types. Value: []. [] is too short",
            ));
        }
        None | Some(Value::Null) => {
            return Err(ApiError::bad_request(
                "Invalid input for field/attribute group: 'volume_types' is a required property",
            ));
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid input for field/attribute volume_types. Value: {other}. {other} is not of type 'array'"
            )));
        }
    };
    let req = CreateRequest {
        name: body::opt_str(g, "name")?,
        description: body::opt_str(g, "description")?,
        group_type,
        volume_types,
        availability_zone: body::opt_str(g, "availability_zone")?,
    };
    let g = groups::create(&state.app, &ctx, req).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"group": summary(&g)}))))
}

/// `GET /groups/{id}`.
pub async fn show(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    AtLeast(v): GroupsApi,
    p: P,
    q: Params,
) -> ApiResult<Json<Value>> {
    let g = groups::get(&state.app, &ctx, path_group(&p)?).await?;
    let vols = members(&state, &ctx, v, &q, &g).await?;
    Ok(Json(json!({"group": detail(&g, &ctx, v, vols.as_deref())})))
}

async fn list_any(
    state: State,
    ctx: Context,
    v: Version,
    path: BTreeMap<String, String>,
    q: Params,
    full: bool,
) -> ApiResult<Json<Value>> {
    crate::filters::GROUP.check(&q, v)?;
    let page = Paging::<GroupId>::parse(&q)?;
    let req = ListRequest {
        all_projects: q.flag("all_tenants")? || q.flag("all_projects")?,
        project_id: q
            .get("project_id")
            .filter(|p| !p.is_empty())
            .map(str::to_owned),
        name: q.get("name").map(str::to_owned),
        status: q.get("status").map(str::to_owned),
        sort: query::sort(&q, &GROUP_SORT_KEYS)?,
        marker: page.marker,
        offset: q.uint("offset")?,
        limit: Some(page.size()),
    };
    let list = groups::list(&state.app, &ctx, req).await?;
    let mut items = Vec::with_capacity(list.len());
    for g in &list {
        items.push(if full {
            let vols = members(&state, &ctx, v, &q, g).await?;
            detail(g, &ctx, v, vols.as_deref())
        } else {
            summary(g)
        });
    }
    let mut out = Map::new();
    out.insert("groups".into(), Value::Array(items));
    // Only a page cut by the limit the client asked for links on.
    if let (Some(limit), Some(last)) = (page.limit, list.last())
        && list.len() as i64 == limit
    {
        let links = links_base(&state, &ctx, &path);
        let url = format!("{}/groups{}", links.0, if full { "/detail" } else { "" });
        out.insert(
            "group_links".into(),
            query::next_link(&q, &url, &[], limit, last.id),
        );
    }
    Ok(Json(Value::Object(out)))
}

/// `GET /groups`: ids and names.
pub async fn list(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    AtLeast(v): GroupsApi,
    p: P,
    q: Params,
) -> ApiResult<Json<Value>> {
    list_any(state, ctx, v, p.0, q, false).await
}

/// `GET /groups/detail`.
pub async fn list_detail(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    AtLeast(v): GroupsApi,
    p: P,
    q: Params,
) -> ApiResult<Json<Value>> {
    list_any(state, ctx, v, p.0, q, true).await
}

/// A comma-separated list of volume ids (`"id1,id2,"`), at most 255
/// characters as in Cinder's schema.
fn id_list(m: &Map<String, Value>, key: &str) -> ApiResult<Vec<String>> {
    let Some(s) = body::opt_str(m, key)? else {
        return Ok(Vec::new());
    };
    if s.chars().count() > 255 {
        return Err(ApiError::bad_request(format!(
            "Invalid input for field/attribute {key}: it is longer than 255 characters."
        )));
    }
    Ok(s.split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect())
}

/// `PUT /groups/{id}` (202, no body): name, description, `add_volumes`,
/// `remove_volumes`.
pub async fn update(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    _v: GroupsApi,
    p: P,
    JsonBody(b): JsonBody,
) -> ApiResult<StatusCode> {
    body::only(&b, "request body", &["group"])?;
    let g = body::object(&b, "group")?;
    body::only(
        g,
        "group",
        &["name", "description", "add_volumes", "remove_volumes"],
    )?;
    let req = UpdateRequest {
        name: body::opt_str(g, "name")?,
        description: body::opt_str(g, "description")?,
        add_volumes: id_list(g, "add_volumes")?,
        remove_volumes: id_list(g, "remove_volumes")?,
    };
    groups::update(&state.app, &ctx, path_group(&p)?, req).await?;
    Ok(StatusCode::ACCEPTED)
}

/// The actions of `POST /groups/{id}/action` (202, no body).
pub const ACTIONS: &[Action<GroupId>] = &[
    Action::new("delete", |c| Box::pin(delete(c))),
    Action::new("reset_status", |c| Box::pin(reset_status(c))).since(RESET_STATUS),
];

/// `POST /groups/{id}/action`: the one action of the body, on the group.
pub async fn action(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    AtLeast(version): GroupsApi,
    p: P,
    JsonBody(b): JsonBody,
) -> ApiResult<Response> {
    // Cinder's schema wants an object for `delete` (`{"delete": null}` is
    // refused, where bodiless actions of other resources take `null`).
    if b.get("delete").is_some_and(Value::is_null) {
        return Err(ApiError::bad_request(
            "Invalid input for field/attribute delete. Value: None. None is not of type 'object'",
        ));
    }
    action::dispatch(ACTIONS, &state.app, &ctx, version, path_group(&p)?, &b).await
}

/// `delete` `{"delete-volumes": bool}`.
async fn delete(c: Call<'_, GroupId>) -> ApiResult<Response> {
    body::only(c.args, "delete", &["delete-volumes"])?;
    let delete_volumes = body::boolean(c.args, "delete-volumes")?.unwrap_or(false);
    groups::delete(c.app, c.ctx, c.id, delete_volumes).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `reset_status` `{"status": …}` (3.20).
async fn reset_status(c: Call<'_, GroupId>) -> ApiResult<Response> {
    body::only(c.args, "reset_status", &["status"])?;
    let raw = body::opt_str(c.args, "status")?
        .ok_or_else(|| ApiError::bad_request("Must specify 'status'"))?;
    let status = raw
        .to_ascii_lowercase()
        .parse::<GroupStatus>()
        .map_err(|_| {
            ApiError::bad_request(format!(
                "Invalid input for field/attribute status. Value: {raw}. It is not a group status."
            ))
        })?;
    groups::reset_status(c.app, c.ctx, c.id, status).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `POST /groups/action`: `create-from-src` (3.14).
pub async fn create_from_source(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    AtLeast(v): GroupsApi,
    JsonBody(b): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if !v.at_least(FROM_SOURCE) {
        return Err(not_supported(v));
    }
    body::only(&b, "request body", &["create-from-src"])?;
    let src = body::object(&b, "create-from-src")?;
    body::only(
        src,
        "create-from-src",
        &[
            "name",
            "description",
            "source_group_id",
            "group_snapshot_id",
        ],
    )?;
    let name = body::opt_str(src, "name")?;
    let description = body::opt_str(src, "description")?;
    let uuid = |field: &str| -> ApiResult<Option<String>> {
        match body::opt_str(src, field)? {
            None => Ok(None),
            Some(s) if s.parse::<uuid::Uuid>().is_ok() => Ok(Some(s)),
            Some(s) => Err(ApiError::bad_request(format!(
                "Invalid input for field/attribute {field}. Value: {s}. '{s}' is not a 'uuid'"
            ))),
        }
    };
    let source = uuid("source_group_id")?;
    let snapshot = uuid("group_snapshot_id")?;
    let source = match (source, snapshot.as_deref()) {
        (None, None) => {
            return Err(ApiError::bad_request(
                "Either 'group_snapshot_id' or 'source_group_id' must be provided to create a group from a source.",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "Cannot provide both 'group_snapshot_id' and 'source_group_id' to create a group from a source.",
            ));
        }
        (s, _) => s.map(|s| groups::parse_id(&s)).transpose()?,
    };
    let req = FromSourceRequest {
        name,
        description,
        source_group: source,
        group_snapshot: snapshot,
    };
    let g = groups::create_from_source(&state.app, &ctx, req).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"group": summary(&g)}))))
}
