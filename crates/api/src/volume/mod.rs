//! `/v3/{project_id}/volumes…`: create, read, change, delete and metadata
//! handlers. Views are in [`view`], the `…/action` route and its table of
//! actions in [`actions`], an admin's view of a volume's images in [`tree`].

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Extension, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scoria_core::Op;
use scoria_core::volumes::SortKey;
use scoria_core::volumes::{self, CreateRequest, ListRequest};
use scoria_model::VolumeId;
use serde_json::{Map, Value, json};

use crate::State;
use crate::auth::Auth;
use crate::body::{self, JsonBody};
use crate::fault::{ApiError, ApiResult};
use crate::microversion::Version;
use crate::path::{PathParams, links_base, seg};
use crate::query::{self, MAX_LIMIT, Paging, Params, SortKeys};

pub mod actions;
pub mod manage;
pub mod tree;
pub mod view;

use view::detail;

/// Whether the caller sees the admin fields (host, tenant, migration…): an
/// admin, or a system reader.
fn admin_fields(ctx: &scoria_core::Context) -> bool {
    ctx.authorize(Op::VolumeAdminFields).is_ok()
}

/// The keys a volume list sorts by.
const SORT_KEYS: SortKeys<SortKey> = SortKeys {
    parse: SortKey::parse,
    default: SortKey::CreatedAt,
};

fn path_id(p: &BTreeMap<String, String>) -> ApiResult<VolumeId> {
    Ok(volumes::parse_id(seg(p, "id"))?)
}

// ---------------------------------------------------------------------------
// Create

pub async fn create(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    Extension(v): Extension<Version>,
    path: PathParams,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let vol = body::object(&body, "volume")?;
    let size = body::int(vol, "size")?;
    // A volume from a snapshot: Cinder's schema wants a UUID (400); an unknown
    // or invisible one is a 404.
    let snapshot_id = body::opt_str(vol, "snapshot_id")?
        .map(|s| {
            s.parse::<scoria_model::SnapshotId>().map_err(|_| {
                ApiError::bad_request(format!(
                    "Invalid input for field/attribute snapshot_id. Value: {s}. '{s}' is not a 'uuid'"
                ))
            })
        })
        .transpose()?;
    // A volume from a backup (3.47 on; before, Cinder ignores the field).
    let backup_id = match body::opt_str(vol, "backup_id")? {
        Some(s) if v.at_least(47) => Some(s.parse::<scoria_model::BackupId>().map_err(|_| {
            ApiError::bad_request(format!(
                "Invalid input for field/attribute backup_id. Value: {s}. '{s}' is not a 'uuid'"
            ))
        })?),
        _ => None,
    };
    // A clone: Cinder's schema wants a UUID here (400), and an unknown or
    // invisible one is a 404.
    let source_volid = body::opt_str(vol, "source_volid")?
        .map(|s| {
            s.parse::<VolumeId>().map_err(|_| {
                ApiError::bad_request(format!(
                    "Invalid input for field/attribute source_volid. Value: {s}. '{s}' is not a 'uuid'"
                ))
            })
        })
        .transpose()?;
    // A volume from an image (Cinder's `imageRef`, also `image_id`): an id
    // the caller can see; anything else names no image (400, as Cinder).
    let image_id = match body::opt_str(vol, "imageRef")? {
        Some(r) => Some(r),
        None => body::opt_str(vol, "image_id")?,
    }
    .map(|r| {
        r.parse::<scoria_model::GlanceImageId>().map_err(|_| {
            ApiError::bad_request(format!(
                "Invalid image identifier or unable to access requested image: {r}."
            ))
        })
    })
    .transpose()?;
    if vol.get("consistencygroup_id").is_some_and(|v| !v.is_null()) {
        return Err(ApiError::bad_request(
            "Consistency groups are not supported by this Scoria: use generic volume groups (group_id, microversion 3.13).",
        ));
    }
    // A volume is made in a group from 3.13 on; before, Cinder ignores the
    // field, and so does Scoria.
    let group_id = match body::opt_str(vol, "group_id")? {
        Some(g) if v.at_least(13) => Some(g.parse::<scoria_model::GroupId>().map_err(|_| {
            ApiError::bad_request(format!(
                "Invalid input for field/attribute group_id. Value: {g}. '{g}' is not a 'uuid'"
            ))
        })?),
        _ => None,
    };
    if size.is_none()
        && source_volid.is_none()
        && snapshot_id.is_none()
        && image_id.is_none()
        && backup_id.is_none()
    {
        return Err(ApiError::bad_request(
            "Invalid input for field/attribute size. Value: None. None is not of type 'integer', 'string'.",
        ));
    }
    let name = match body::opt_str(vol, "name")? {
        Some(n) => Some(n),
        None => body::opt_str(vol, "display_name")?,
    };
    let description = match body::opt_str(vol, "description")? {
        Some(d) => Some(d),
        None => body::opt_str(vol, "display_description")?,
    };
    let req = CreateRequest {
        name,
        description,
        size,
        source_volid,
        snapshot_id,
        image_id,
        availability_zone: body::opt_str(vol, "availability_zone")?,
        volume_type: body::opt_str(vol, "volume_type")?,
        metadata: body::opt_metadata(vol, "metadata")?.unwrap_or_default(),
        bootable: false,
        multiattach: body::boolean(vol, "multiattach")?.unwrap_or(false),
        group_id,
        backup_id,
        remove_on_failure: false,
        hints: crate::hints::parse(&body)?,
    };
    let view = volumes::create(&state.app, &ctx, req).await?;
    let links = links_base(&state, &ctx, &path);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"volume": detail(&view, admin_fields(&ctx), false, v, &links, false)})),
    )
        .into_response())
}

// ---------------------------------------------------------------------------
// Read

pub async fn show(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    Extension(v): Extension<Version>,
    path: PathParams,
    q: Params,
) -> ApiResult<Json<Value>> {
    let id = path_id(&path)?;
    let progress = q.flag("with_progress")?;
    let view = volumes::get(&state.app, &ctx, id, progress).await?;
    let links = links_base(&state, &ctx, &path);
    Ok(Json(
        json!({"volume": detail(&view, admin_fields(&ctx), true, v, &links, progress)}),
    ))
}

/// Cinder accepts `metadata` as a JSON (or Python-literal) object string.
pub(crate) fn metadata_filter(raw: &str) -> ApiResult<Vec<(String, String)>> {
    let normalized = raw.replace('\'', "\"");
    let v: Value = serde_json::from_str(&normalized).map_err(|_| {
        ApiError::bad_request(format!(
            "Invalid metadata filter {raw:?}: expected an object."
        ))
    })?;
    let m = body::metadata(&v, "metadata")?;
    Ok(m.into_iter().collect())
}

fn list_request(ctx: &scoria_core::Context, q: &Params, v: Version) -> ApiResult<ListRequest> {
    crate::filters::VOLUME.check(q, v)?;
    let page = Paging::<VolumeId>::parse(q)?;
    let bootable =
        match q.get("bootable") {
            None | Some("") => None,
            Some(b) => Some(body::parse_bool(b).ok_or_else(|| {
                ApiError::bad_request(format!("Invalid value '{b}' for bootable."))
            })?),
        };
    let all_projects = q.flag("all_tenants")? || q.flag("all_projects")?;
    Ok(ListRequest {
        all_projects: all_projects && ctx.authorize(Op::VolumeListAllProjects).is_ok(),
        project_id: q
            .get("project_id")
            .filter(|p| !p.is_empty())
            .map(str::to_owned),
        name: q
            .get("name")
            .or_else(|| q.get("display_name"))
            .map(str::to_owned),
        status: q.get("status").map(str::to_owned),
        availability_zone: q.get("availability_zone").map(str::to_owned),
        bootable,
        metadata: match q.get("metadata") {
            Some(m) if !m.is_empty() => metadata_filter(m)?,
            _ => Vec::new(),
        },
        // The `group_id` filter exists from 3.10 on.
        group_id: match q.get("group_id") {
            Some(g) if v.at_least(10) && !g.is_empty() => {
                Some(g.parse::<scoria_model::GroupId>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "Invalid input received: group_id {g} is not a UUID."
                    ))
                })?)
            }
            _ => None,
        },
        sort: query::sort(q, &SORT_KEYS)?,
        limit: Some(page.size()),
        offset: q.uint("offset")?,
        marker: page.marker,
        with_count: v.at_least(45) && q.flag("with_count")?,
        with_status: q.flag("with_progress")?,
    })
}

async fn list_any(
    state: State,
    ctx: scoria_core::Context,
    v: Version,
    path: BTreeMap<String, String>,
    q: Params,
    full: bool,
) -> ApiResult<Response> {
    let req = list_request(&ctx, &q, v)?;
    let progress = q.flag("with_progress")?;
    let size = req.limit.unwrap_or(MAX_LIMIT);
    let with_count = req.with_count;
    let res = volumes::list(&state.app, &ctx, req).await?;
    let links = links_base(&state, &ctx, &path);
    let next = match res.volumes.last() {
        Some(last) if res.volumes.len() as i64 == size => {
            let url = format!("{}/volumes{}", links.0, if full { "/detail" } else { "" });
            Some(query::next_link(
                &q,
                &url,
                &["offset"],
                size,
                last.volume.id,
            ))
        }
        _ => None,
    };
    let count = with_count.then(|| res.count.unwrap_or(0));
    let admin = admin_fields(&ctx);
    let page = |volumes| Page {
        volumes,
        volumes_links: next,
        count,
    };
    Ok(if full {
        let details = res.volumes.iter().map(|view| view::Detail {
            view,
            admin,
            read: true,
            v,
            links: &links,
            progress,
        });
        Json(page(details.map(Item::Detail).collect())).into_response()
    } else {
        let summaries = res.volumes.iter().map(|view| view::summary(view, &links));
        Json(page(summaries.map(Item::Summary).collect())).into_response()
    })
}

/// One volume of a list page: the detailed view or the summary.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Item<'a> {
    Detail(view::Detail<'a>),
    Summary(Value),
}

/// A page of volumes as Cinder answers a list: the views, the link to the
/// next page when this one is full, the count when asked (3.45).
#[derive(serde::Serialize)]
struct Page<'a> {
    volumes: Vec<Item<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    volumes_links: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<i64>,
}

pub async fn list(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    Extension(v): Extension<Version>,
    path: PathParams,
    q: Params,
) -> ApiResult<Response> {
    list_any(state, ctx, v, path.0, q, false).await
}

pub async fn list_detail(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    Extension(v): Extension<Version>,
    path: PathParams,
    q: Params,
) -> ApiResult<Response> {
    list_any(state, ctx, v, path.0, q, true).await
}

pub async fn summary(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    Extension(v): Extension<Version>,
    q: Params,
) -> ApiResult<Json<Value>> {
    if !v.at_least(12) {
        return Err(ApiError::not_found(
            "The volume summary needs microversion 3.12 or later.",
        ));
    }
    let all = (q.flag("all_tenants")? || q.flag("all_projects")?)
        && ctx.authorize(Op::VolumeListAllProjects).is_ok();
    let (count, size, metadata) = volumes::summary(&state.app, &ctx, all).await?;
    let mut s = json!({"total_size": size, "total_count": count});
    if v.at_least(36) {
        s["metadata"] = json!(metadata);
    }
    Ok(Json(json!({"volume-summary": s})))
}

// ---------------------------------------------------------------------------
// Change

pub async fn update(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    Extension(v): Extension<Version>,
    path: PathParams,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let id = path_id(&path)?;
    let vol = body::object(&body, "volume")?;
    body::only(
        vol,
        "volume",
        &[
            "name",
            "description",
            "display_name",
            "display_description",
            "metadata",
        ],
    )?;
    let name = match body::nullable_str(vol, "name")? {
        Some(n) => Some(n),
        None => body::nullable_str(vol, "display_name")?,
    };
    let description = match body::nullable_str(vol, "description")? {
        Some(d) => Some(d),
        None => body::nullable_str(vol, "display_description")?,
    };
    let metadata = body::opt_metadata(vol, "metadata")?;
    let view = volumes::update(&state.app, &ctx, id, name, description, metadata).await?;
    let links = links_base(&state, &ctx, &path);
    Ok(Json(
        json!({"volume": detail(&view, admin_fields(&ctx), false, v, &links, false)}),
    ))
}

pub async fn delete(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: PathParams,
    q: Params,
) -> ApiResult<StatusCode> {
    let id = path_id(&path)?;
    // `cascade` deletes the volume's snapshots with it.
    let cascade = q.flag("cascade")?;
    let force = q.flag("force")?;
    volumes::delete(&state.app, &ctx, id, force, cascade).await?;
    Ok(StatusCode::ACCEPTED)
}

// ---------------------------------------------------------------------------
// Metadata

fn key(p: &BTreeMap<String, String>) -> String {
    p.get("key").cloned().unwrap_or_default()
}

pub async fn metadata_show(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: PathParams,
) -> ApiResult<Json<Value>> {
    let md = volumes::metadata_get(&state.app, &ctx, path_id(&path)?).await?;
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
    let md = volumes::metadata_set(&state.app, &ctx, id, items, replace).await?;
    Ok(Json(json!({"metadata": md})))
}

pub async fn metadata_merge(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: PathParams,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    metadata_write(state, ctx, path.0, body, false).await
}

pub async fn metadata_replace(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: PathParams,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    metadata_write(state, ctx, path.0, body, true).await
}

pub async fn metadata_key_show(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: PathParams,
) -> ApiResult<Json<Value>> {
    let id = path_id(&path)?;
    let k = key(&path);
    let md = volumes::metadata_get(&state.app, &ctx, id).await?;
    match md.get(&k) {
        Some(v) => Ok(Json(json!({"meta": {k: v}}))),
        None => Err(ApiError::not_found(format!(
            "Volume {id} has no metadata with key {k}."
        ))),
    }
}

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
    volumes::metadata_set(&state.app, &ctx, id, meta.clone(), false).await?;
    Ok(Json(json!({"meta": meta})))
}

pub async fn metadata_key_delete(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: PathParams,
) -> ApiResult<StatusCode> {
    volumes::metadata_delete(&state.app, &ctx, path_id(&path)?, &key(&path)).await?;
    Ok(StatusCode::OK)
}
