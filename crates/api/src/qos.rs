//! `/qos-specs…`: QoS specs and their associations with volume types.
//! Handlers and views (Cinder's shapes: a spec is `{id, name, consumer,
//! specs}`; create and show add top-level `links`).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use scoria_core::Context;
use scoria_core::qos_specs::{self, QosSpecs};
use serde_json::{Value, json};

use crate::State;
use crate::auth::Auth;
use crate::body::{self, JsonBody};
use crate::fault::{ApiError, ApiResult};
use crate::path::{PathParams as P, links_base, seg};
use crate::query::{self, Params, SortKeys};

/// The keys a QoS specs list sorts by.
const SORT_KEYS: SortKeys<&'static str> = SortKeys {
    parse: |k| {
        ["id", "name", "consumer", "created_at", "updated_at"]
            .into_iter()
            .find(|c| *c == k)
    },
    default: "created_at",
};

/// The value of sort key `k` of QoS specs.
fn sort_value(q: &QosSpecs, k: &str) -> String {
    match k {
        "id" => q.id.to_string(),
        "name" => q.name.clone(),
        "consumer" => q.consumer.clone(),
        "updated_at" => q.updated_at.clone().unwrap_or_default(),
        _ => q.created_at.clone(),
    }
}

fn view(q: &QosSpecs) -> Value {
    json!({
        "id": q.id.to_string(),
        "name": q.name,
        "consumer": q.consumer,
        "specs": q.specs,
    })
}

/// `{"qos_specs": …, "links": [self, bookmark]}`.
fn detail(state: &State, ctx: &Context, p: &BTreeMap<String, String>, q: &QosSpecs) -> Value {
    let (own, bookmark) = links_base(state, ctx, p);
    json!({
        "qos_specs": view(q),
        "links": [
            {"rel": "self", "href": format!("{own}/qos-specs/{}", q.id)},
            {"rel": "bookmark", "href": format!("{bookmark}/qos-specs/{}", q.id)},
        ],
    })
}

/// `GET /qos-specs`.
pub async fn list(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    q: Params,
) -> ApiResult<Json<Value>> {
    let sort = query::sort(&q, &SORT_KEYS)?;
    let mut list = qos_specs::list(&state.app, &ctx).await?;
    query::sort_in_memory(&mut list, &sort, sort_value);
    let list = query::page_in_memory(&q, list, |s| s.id)?;
    Ok(Json(
        json!({"qos_specs": list.iter().map(view).collect::<Vec<_>>()}),
    ))
}

/// `POST /qos-specs` (200): `name`, optional `consumer`, every other key a spec.
pub async fn create(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    p: P,
    JsonBody(b): JsonBody,
) -> ApiResult<Json<Value>> {
    body::only(&b, "request body", &["qos_specs"])?;
    let mut specs = body::string_values(body::object(&b, "qos_specs")?, "qos_specs")?;
    let name = specs.remove("name").ok_or_else(|| {
        ApiError::bad_request(
            "Invalid input for field/attribute qos_specs: 'name' is a required property",
        )
    })?;
    let consumer = specs.remove("consumer");
    let q = qos_specs::create(&state.app, &ctx, &name, consumer.as_deref(), specs).await?;
    Ok(Json(detail(&state, &ctx, &p, &q)))
}

/// `GET /qos-specs/{id}`.
pub async fn show(AxState(state): AxState<State>, Auth(ctx): Auth, p: P) -> ApiResult<Json<Value>> {
    let q = qos_specs::get(&state.app, &ctx, seg(&p, "id")).await?;
    Ok(Json(detail(&state, &ctx, &p, &q)))
}

/// `PUT /qos-specs/{id}`: add or overwrite specs (`consumer` included);
/// answers with what was set.
pub async fn update(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    p: P,
    JsonBody(b): JsonBody,
) -> ApiResult<Json<Value>> {
    body::only(&b, "request body", &["qos_specs"])?;
    let given = body::string_values(body::object(&b, "qos_specs")?, "qos_specs")?;
    let mut specs = given.clone();
    let consumer = specs.remove("consumer");
    qos_specs::update(&state.app, &ctx, seg(&p, "id"), consumer.as_deref(), &specs).await?;
    Ok(Json(json!({"qos_specs": given})))
}

/// `PUT /qos-specs/{id}/delete_keys` `{"keys": [...]}` (202).
pub async fn delete_keys(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    p: P,
    JsonBody(b): JsonBody,
) -> ApiResult<StatusCode> {
    body::only(&b, "request body", &["keys"])?;
    let bad = || {
        ApiError::bad_request(
            "Invalid input for field/attribute keys: must be a list of distinct strings of 1 to 255 characters.",
        )
    };
    let Some(Value::Array(items)) = b.get("keys") else {
        return Err(bad());
    };
    let mut keys: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::String(s) if !s.is_empty() && s.chars().count() <= 255 && !keys.contains(s) => {
                keys.push(s.clone())
            }
            _ => return Err(bad()),
        }
    }
    qos_specs::delete_keys(&state.app, &ctx, seg(&p, "id"), &keys).await?;
    Ok(StatusCode::ACCEPTED)
}

/// `DELETE /qos-specs/{id}[?force=true]` (202).
pub async fn delete(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    p: P,
    q: Params,
) -> ApiResult<StatusCode> {
    let force = q.flag("force")?;
    qos_specs::delete(&state.app, &ctx, seg(&p, "id"), force).await?;
    Ok(StatusCode::ACCEPTED)
}

/// `GET /qos-specs/{id}/associations`.
pub async fn associations(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    p: P,
) -> ApiResult<Json<Value>> {
    let list = qos_specs::associations(&state.app, &ctx, seg(&p, "id")).await?;
    let items: Vec<Value> = list
        .iter()
        .map(|(t, name)| json!({"association_type": "volume_type", "id": t.to_string(), "name": name}))
        .collect();
    Ok(Json(json!({"qos_associations": items})))
}

/// `GET /qos-specs/{id}/associate?vol_type_id=` (202).
pub async fn associate(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    p: P,
    q: Params,
) -> ApiResult<StatusCode> {
    qos_specs::associate(&state.app, &ctx, seg(&p, "id"), q.get("vol_type_id")).await?;
    Ok(StatusCode::ACCEPTED)
}

/// `GET /qos-specs/{id}/disassociate?vol_type_id=` (202).
pub async fn disassociate(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    p: P,
    q: Params,
) -> ApiResult<StatusCode> {
    qos_specs::disassociate(&state.app, &ctx, seg(&p, "id"), q.get("vol_type_id")).await?;
    Ok(StatusCode::ACCEPTED)
}

/// `GET /qos-specs/{id}/disassociate_all` (202).
pub async fn disassociate_all(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    p: P,
) -> ApiResult<StatusCode> {
    qos_specs::disassociate_all(&state.app, &ctx, seg(&p, "id")).await?;
    Ok(StatusCode::ACCEPTED)
}
