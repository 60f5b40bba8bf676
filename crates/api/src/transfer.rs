//! `/v3/{project_id}/os-volume-transfer…` and, its newer name (microversion
//! 3.55), `/volume-transfers…`: handlers and views.
//!
//! Both paths serve the same handlers at every microversion, as Cinder's
//! router does; the microversion decides the body: `no_snapshots` is accepted
//! and shown from 3.55, and 3.57 adds `source_project_id`,
//! `destination_project_id` and `accepted` to the detailed views. Links always
//! name `os-volume-transfer`, as Cinder's do.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Extension, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scoria_core::transfers::{self, ListRequest, Offer, Transfer};
use scoria_model::{TransferId, VolumeId};
use serde_json::{Map, Value, json};

use crate::State;
use crate::auth::Auth;
use crate::body::{self, JsonBody};
use crate::fault::{ApiError, ApiResult};
use crate::microversion::Version;
use crate::path::{PathParams, links_base, seg};
use crate::query::{self, Params, SortKeys};

/// The keys a transfer list sorts by.
const SORT_KEYS: SortKeys<&'static str> = SortKeys {
    parse: |k| {
        ["id", "name", "volume_id", "created_at"]
            .into_iter()
            .find(|c| *c == k)
    },
    default: "created_at",
};

/// The value of sort key `k` of a transfer.
fn sort_value(t: &Transfer, k: &str) -> String {
    match k {
        "id" => t.id.to_string(),
        "name" => t.name.clone().unwrap_or_default(),
        "volume_id" => t.volume_id.to_string(),
        _ => t.created_at.clone(),
    }
}

/// Microversion from which a transfer may leave the volume's snapshots behind.
const WITH_SNAPSHOTS: u32 = 55;
/// Microversion from which views show where a transfer comes from and goes to.
const WITH_HISTORY: u32 = 57;

fn path_id(p: &BTreeMap<String, String>) -> ApiResult<TransferId> {
    Ok(transfers::parse_id(seg(p, "id"))?)
}

fn links(l: &(String, String), id: &TransferId) -> Value {
    json!([
        {"rel": "self", "href": format!("{}/os-volume-transfer/{id}", l.0)},
        {"rel": "bookmark", "href": format!("{}/os-volume-transfer/{id}", l.1)},
    ])
}

fn summary(t: &Transfer, l: &(String, String)) -> Value {
    json!({
        "id": t.id.to_string(),
        "volume_id": t.volume_id.to_string(),
        "name": t.name,
        "links": links(l, &t.id),
    })
}

fn detail(t: &Transfer, v: Version, l: &(String, String)) -> Value {
    let mut o = json!({
        "id": t.id.to_string(),
        "created_at": t.created_at,
        "name": t.name,
        "volume_id": t.volume_id.to_string(),
        "links": links(l, &t.id),
    });
    let m = o.as_object_mut().expect("object");
    if v.at_least(WITH_SNAPSHOTS) {
        m.insert("no_snapshots".into(), json!(t.no_snapshots));
    }
    if v.at_least(WITH_HISTORY) {
        // A transfer is listed only while it is pending: once accepted it is
        // gone, so it has no destination yet.
        m.insert("source_project_id".into(), json!(t.source_project_id));
        m.insert("destination_project_id".into(), Value::Null);
        m.insert("accepted".into(), json!(false));
    }
    o
}

/// `POST …/os-volume-transfer`: offer a volume. The only answer that shows
/// the auth key.
pub async fn create(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    Extension(v): Extension<Version>,
    path: PathParams,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    body::only(&body, "request body", &["transfer"])?;
    let t = body::object(&body, "transfer")?;
    let allowed: &[&str] = if v.at_least(WITH_SNAPSHOTS) {
        &["volume_id", "name", "no_snapshots"]
    } else {
        &["volume_id", "name"]
    };
    body::only(t, "transfer", allowed)?;
    let raw = body::opt_str(t, "volume_id")?.ok_or_else(|| {
        ApiError::bad_request(
            "Invalid input for field/attribute transfer: 'volume_id' is a required property.",
        )
    })?;
    let volume_id = raw.parse::<VolumeId>().map_err(|_| {
        ApiError::bad_request(format!(
            "Invalid input for field/attribute volume_id. Value: {raw}. '{raw}' is not a 'uuid'."
        ))
    })?;
    let name = body::opt_str(t, "name")?;
    let no_snapshots = body::boolean(t, "no_snapshots")?.unwrap_or(false);
    let Offer { transfer, auth_key } =
        transfers::create(&state.app, &ctx, volume_id, name, no_snapshots).await?;
    let l = links_base(&state, &ctx, &path);
    let mut view = detail(&transfer, v, &l);
    view["auth_key"] = json!(auth_key);
    Ok((StatusCode::ACCEPTED, Json(json!({ "transfer": view }))).into_response())
}

/// `GET …/os-volume-transfer/{id}`.
pub async fn show(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    Extension(v): Extension<Version>,
    path: PathParams,
) -> ApiResult<Json<Value>> {
    let t = transfers::get(&state.app, &ctx, path_id(&path)?).await?;
    let l = links_base(&state, &ctx, &path);
    Ok(Json(json!({ "transfer": detail(&t, v, &l) })))
}

async fn list_any(
    state: State,
    ctx: scoria_core::Context,
    v: Version,
    path: BTreeMap<String, String>,
    q: Params,
    full: bool,
) -> ApiResult<Json<Value>> {
    // A project's transfers are few (one per volume at most): sorted and
    // paged in memory, as the other short lists are.
    let sort = query::sort(&q, &SORT_KEYS)?;
    let size = query::limit(&q)?.unwrap_or(query::MAX_LIMIT);
    let req = ListRequest {
        all_projects: q.flag("all_tenants")? || q.flag("all_projects")?,
        name: q.get("name").map(str::to_owned),
        limit: None,
        marker: None,
    };
    let mut list = transfers::list(&state.app, &ctx, req).await?;
    query::sort_in_memory(&mut list, &sort, sort_value);
    let list = query::page_in_memory::<_, TransferId>(&q, list, |t| t.id)?;
    let l = links_base(&state, &ctx, &path);
    let items: Vec<Value> = list
        .iter()
        .map(|t| {
            if full {
                detail(t, v, &l)
            } else {
                summary(t, &l)
            }
        })
        .collect();
    let mut out = Map::new();
    if list.len() as i64 == size
        && let Some(last) = list.last()
    {
        let url = format!(
            "{}/os-volume-transfer{}",
            l.0,
            if full { "/detail" } else { "" }
        );
        out.insert(
            "transfers_links".into(),
            query::next_link(&q, &url, &["offset"], size, last.id),
        );
    }
    out.insert("transfers".into(), Value::Array(items));
    Ok(Json(Value::Object(out)))
}

/// `GET …/os-volume-transfer`: id, name, volume and links of each.
pub async fn list(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    Extension(v): Extension<Version>,
    path: PathParams,
    q: Params,
) -> ApiResult<Json<Value>> {
    list_any(state, ctx, v, path.0, q, false).await
}

/// `GET …/os-volume-transfer/detail`.
pub async fn list_detail(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    Extension(v): Extension<Version>,
    path: PathParams,
    q: Params,
) -> ApiResult<Json<Value>> {
    list_any(state, ctx, v, path.0, q, true).await
}

/// `DELETE …/os-volume-transfer/{id}`: withdraw the offer.
pub async fn delete(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: PathParams,
) -> ApiResult<StatusCode> {
    transfers::delete(&state.app, &ctx, path_id(&path)?).await?;
    Ok(StatusCode::ACCEPTED)
}

/// `POST …/os-volume-transfer/{id}/accept`: take the volume over.
pub async fn accept(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: PathParams,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let id = path_id(&path)?;
    body::only(&body, "request body", &["accept"])?;
    let a = body::object(&body, "accept")?;
    body::only(a, "accept", &["auth_key"])?;
    // Cinder takes the key as a string or, all digits, as a number.
    let auth_key = match a.get("auth_key") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        None => {
            return Err(ApiError::bad_request(
                "Invalid input for field/attribute accept: 'auth_key' is a required property.",
            ));
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid input for field/attribute auth_key. Value: {other}. {other} is not of type 'string', 'integer'."
            )));
        }
    };
    let t = transfers::accept(&state.app, &ctx, id, &auth_key).await?;
    let l = links_base(&state, &ctx, &path);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "transfer": summary(&t, &l) })),
    )
        .into_response())
}
