//! `/types…`: volume types, their extra specs, project access and encryption
//! specs. Handlers and views.
//!
//! Views follow Cinder's exactly, because strict clients (tempest) refuse
//! unknown keys: list and show carry `os-volume-type-access:is_public` and
//! (admins) `qos_specs_id`; create carries the former only; update neither.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use scoria_core::Context;
use scoria_core::volume_types::{
    self, Encryption, EncryptionChange, NewEncryption, NewType, PublicFilter, TypeChange,
    VolumeType,
};
use serde_json::{Map, Value, json};

use crate::State;
use crate::auth::Auth;
use crate::body::{self, JsonBody};
use crate::fault::{ApiError, ApiResult};
use crate::path::{PathParams as P, seg};
use crate::query::{self, Params, SortKeys};

/// The keys a type list sorts by (Cinder's columns of a type).
const TYPE_SORT_KEYS: SortKeys<&'static str> = SortKeys {
    parse: |k| {
        [
            "id",
            "name",
            "description",
            "is_public",
            "created_at",
            "updated_at",
        ]
        .into_iter()
        .find(|c| *c == k)
    },
    default: "created_at",
};

/// The value of sort key `k` of a type.
fn type_sort_value(t: &VolumeType, k: &str) -> String {
    match k {
        "id" => t.id.to_string(),
        "name" => t.name.clone(),
        "description" => t.description.clone().unwrap_or_default(),
        "is_public" => t.is_public.to_string(),
        "updated_at" => t.updated_at.clone().unwrap_or_default(),
        _ => t.created_at.clone(),
    }
}

/// Which response a type view is for (each has its own keys in Cinder).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Show,
    Create,
    Update,
}

fn type_view(t: &VolumeType, ctx: &Context, shape: Shape) -> Value {
    let mut v = json!({
        "id": t.id.to_string(),
        "name": t.name,
        "description": t.description,
        "is_public": t.is_public,
        "extra_specs": t.extra_specs,
    });
    if shape != Shape::Update {
        v["os-volume-type-access:is_public"] = json!(t.is_public);
    }
    if shape == Shape::Show && volume_types::reads_qos_specs_id(ctx) {
        v["qos_specs_id"] = json!(t.qos_specs_id.map(|q| q.to_string()));
    }
    v
}

// ---------------------------------------------------------------------------
// Types

/// `GET /types[?is_public=true|false|None]`, sorted and paged as every list
/// is (`sort`, `limit`, `marker`, `offset`; 400s for bad ones).
pub async fn list(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
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
    let mut list = volume_types::list(&state.app, &ctx, filter).await?;
    query::sort_in_memory(&mut list, &sort, type_sort_value);
    let list = query::page_in_memory(&q, list, |t| t.id)?;
    Ok(Json(json!({"volume_types": list
        .iter()
        .map(|t| type_view(t, &ctx, Shape::Show))
        .collect::<Vec<_>>()})))
}

/// `GET /types/{id}` (and `GET /types/default`).
pub async fn show(AxState(state): AxState<State>, Auth(ctx): Auth, p: P) -> ApiResult<Json<Value>> {
    let id = p.get("id").map(String::as_str).unwrap_or("default");
    let t = volume_types::get(&state.app, &ctx, id).await?;
    Ok(Json(
        json!({"volume_type": type_view(&t, &ctx, Shape::Show)}),
    ))
}

/// `POST /types` (200, as Cinder answers).
pub async fn create(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    JsonBody(b): JsonBody,
) -> ApiResult<Json<Value>> {
    body::only(&b, "request body", &["volume_type"])?;
    let vt = body::object(&b, "volume_type")?;
    body::only(
        vt,
        "volume_type",
        &[
            "name",
            "description",
            "extra_specs",
            "os-volume-type-access:is_public",
        ],
    )?;
    let name = body::opt_str(vt, "name")?.ok_or_else(|| {
        ApiError::bad_request(
            "Invalid input for field/attribute name: 'name' is a required property",
        )
    })?;
    let extra_specs = match vt.get("extra_specs") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(v) => body::string_map(v, "extra_specs")?,
    };
    let req = NewType {
        name,
        description: body::opt_str(vt, "description")?,
        is_public: body::boolean(vt, "os-volume-type-access:is_public")?.unwrap_or(true),
        extra_specs,
    };
    let t = volume_types::create(&state.app, &ctx, req).await?;
    Ok(Json(
        json!({"volume_type": type_view(&t, &ctx, Shape::Create)}),
    ))
}

/// `PUT /types/{id}`: name, description, is_public.
pub async fn update(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    p: P,
    JsonBody(b): JsonBody,
) -> ApiResult<Json<Value>> {
    body::only(&b, "request body", &["volume_type"])?;
    let vt = body::object(&b, "volume_type")?;
    body::only(vt, "volume_type", &["name", "description", "is_public"])?;
    let change = TypeChange {
        name: body::opt_str(vt, "name")?,
        description: body::opt_str(vt, "description")?,
        is_public: body::boolean(vt, "is_public")?,
    };
    let t = volume_types::update(&state.app, &ctx, seg(&p, "id"), change).await?;
    Ok(Json(
        json!({"volume_type": type_view(&t, &ctx, Shape::Update)}),
    ))
}

/// `DELETE /types/{id}` (202).
pub async fn delete(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    p: P,
) -> ApiResult<StatusCode> {
    volume_types::delete(&state.app, &ctx, seg(&p, "id")).await?;
    Ok(StatusCode::ACCEPTED)
}

// ---------------------------------------------------------------------------
// Extra specs

/// `GET /types/{id}/extra_specs`.
pub async fn extra_specs_list(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    p: P,
) -> ApiResult<Json<Value>> {
    let specs = volume_types::extra_specs_get(&state.app, &ctx, seg(&p, "id")).await?;
    Ok(Json(json!({"extra_specs": specs})))
}

/// `POST /types/{id}/extra_specs`: add or overwrite (200, echoes them).
pub async fn extra_specs_create(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    p: P,
    JsonBody(b): JsonBody,
) -> ApiResult<Json<Value>> {
    body::only(&b, "request body", &["extra_specs"])?;
    let v = b.get("extra_specs").ok_or_else(|| {
        ApiError::bad_request("Invalid input: 'extra_specs' is a required property")
    })?;
    let specs = body::string_map(v, "extra_specs")?;
    let specs = volume_types::extra_specs_set(&state.app, &ctx, seg(&p, "id"), specs, None).await?;
    Ok(Json(json!({"extra_specs": specs})))
}

/// `GET /types/{id}/extra_specs/{key}`: `{"key": "value"}`.
pub async fn extra_spec_show(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    p: P,
) -> ApiResult<Json<Value>> {
    let key = seg(&p, "key");
    let value = volume_types::extra_spec_get(&state.app, &ctx, seg(&p, "id"), key).await?;
    Ok(Json(json!({ key: value })))
}

/// `PUT /types/{id}/extra_specs/{key}`: the body is `{"key": "value"}`, that
/// one key exactly.
pub async fn extra_spec_update(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    p: P,
    JsonBody(b): JsonBody,
) -> ApiResult<Json<Value>> {
    let key = seg(&p, "key");
    let specs = body::string_map(&Value::Object(b.clone()), "extra_specs")?;
    if specs.is_empty() {
        return Err(ApiError::bad_request("{} does not have enough properties"));
    }
    if specs.len() > 1 {
        return Err(ApiError::bad_request(format!(
            "{} has too many properties",
            Value::Object(b)
        )));
    }
    if !specs.contains_key(key) {
        return Err(ApiError::bad_request("Request body and URI mismatch"));
    }
    let specs =
        volume_types::extra_specs_set(&state.app, &ctx, seg(&p, "id"), specs, Some(key)).await?;
    Ok(Json(json!(specs)))
}

/// `DELETE /types/{id}/extra_specs/{key}` (202).
pub async fn extra_spec_delete(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    p: P,
) -> ApiResult<StatusCode> {
    volume_types::extra_spec_delete(&state.app, &ctx, seg(&p, "id"), seg(&p, "key")).await?;
    Ok(StatusCode::ACCEPTED)
}

// ---------------------------------------------------------------------------
// Project access

/// `POST /types/{id}/action`: `addProjectAccess` / `removeProjectAccess`
/// `{"project": id}` (202).
pub async fn action(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    p: P,
    JsonBody(b): JsonBody,
) -> ApiResult<StatusCode> {
    let (name, args) = match b.iter().next() {
        Some((k, v)) if b.len() == 1 => (k.as_str(), v),
        _ => {
            return Err(ApiError::bad_request(
                "An action body holds exactly one action.",
            ));
        }
    };
    if !matches!(name, "addProjectAccess" | "removeProjectAccess") {
        return Err(ApiError::bad_request(format!(
            "There is no such action: {name}"
        )));
    }
    let Value::Object(args) = args else {
        return Err(ApiError::bad_request(format!(
            "Invalid input for {name}: must be an object."
        )));
    };
    body::only(args, name, &["project"])?;
    let project = body::opt_str(args, "project")?.ok_or_else(|| {
        ApiError::bad_request(format!(
            "Invalid input for {name}: 'project' is a required property"
        ))
    })?;
    let id = seg(&p, "id");
    if name == "addProjectAccess" {
        volume_types::access_add(&state.app, &ctx, id, &project).await?;
    } else {
        volume_types::access_remove(&state.app, &ctx, id, &project).await?;
    }
    Ok(StatusCode::ACCEPTED)
}

/// `GET /types/{id}/os-volume-type-access`.
pub async fn access_list(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    p: P,
) -> ApiResult<Json<Value>> {
    let id = seg(&p, "id");
    let projects = volume_types::access_list(&state.app, &ctx, id).await?;
    let items: Vec<Value> = projects
        .iter()
        .map(|pr| json!({"volume_type_id": id, "project_id": pr}))
        .collect();
    Ok(Json(json!({"volume_type_access": items})))
}

// ---------------------------------------------------------------------------
// Encryption specs

fn encryption_view(e: &Encryption) -> Map<String, Value> {
    let v = json!({
        "volume_type_id": e.volume_type_id.to_string(),
        "encryption_id": e.encryption_id.to_string(),
        "provider": e.provider,
        "cipher": e.cipher,
        "key_size": e.key_size,
        "control_location": e.control_location,
        "created_at": e.created_at,
        "updated_at": e.updated_at,
        "deleted": false,
        "deleted_at": null,
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The fields of an `encryption` body; `create` requires provider and
/// control_location (Cinder's schemas).
struct EncryptionBody {
    provider: Option<String>,
    cipher: Option<Option<String>>,
    key_size: Option<Option<i64>>,
    control_location: Option<String>,
}

fn encryption_body(b: &Map<String, Value>, create: bool) -> ApiResult<EncryptionBody> {
    body::only(b, "request body", &["encryption"])?;
    let e = body::object(b, "encryption")?;
    body::only(
        e,
        "encryption",
        &["provider", "cipher", "key_size", "control_location"],
    )?;
    let provider = match e.get("provider") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "Invalid input for field/attribute provider. Value: {v}. {v} is not of type 'string'"
            )));
        }
    };
    let control_location = match e.get("control_location") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "Invalid input for field/attribute control_location. Value: {v}. {v} is not one of ['front-end', 'back-end']"
            )));
        }
    };
    let key_size = match e.get("key_size") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(_) => match body::int(e, "key_size")? {
            Some(k) if k >= 0 => Some(Some(k)),
            _ => {
                return Err(ApiError::bad_request(
                    "Invalid input for field/attribute key_size: must be a non-negative integer.",
                ));
            }
        },
    };
    let out = EncryptionBody {
        provider,
        cipher: body::nullable_str(e, "cipher")?,
        key_size,
        control_location,
    };
    if create && out.provider.is_none() {
        return Err(ApiError::bad_request(
            "Invalid input for field/attribute encryption: 'provider' is a required property",
        ));
    }
    if create && out.control_location.is_none() {
        return Err(ApiError::bad_request(
            "Invalid input for field/attribute encryption: 'control_location' is a required property",
        ));
    }
    Ok(out)
}

/// The given fields, as Cinder echoes them.
fn echo(e: &EncryptionBody) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some(p) = &e.provider {
        m.insert("provider".into(), json!(p));
    }
    if let Some(c) = &e.cipher {
        m.insert("cipher".into(), json!(c));
    }
    if let Some(k) = &e.key_size {
        m.insert("key_size".into(), json!(k));
    }
    if let Some(c) = &e.control_location {
        m.insert("control_location".into(), json!(c));
    }
    m
}

/// `GET /types/{id}/encryption`: the spec, or `{}` when the type has none.
pub async fn encryption_show(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    p: P,
) -> ApiResult<Json<Value>> {
    let e = volume_types::encryption_get(&state.app, &ctx, seg(&p, "id")).await?;
    Ok(Json(Value::Object(
        e.as_ref().map(encryption_view).unwrap_or_default(),
    )))
}

/// `GET /types/{id}/encryption/{key}`: one field, `{"cipher": "…"}`.
pub async fn encryption_item(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    p: P,
) -> ApiResult<Json<Value>> {
    let id = seg(&p, "id");
    let key = seg(&p, "key");
    let e = volume_types::encryption_get(&state.app, &ctx, id).await?;
    match e
        .as_ref()
        .map(encryption_view)
        .and_then(|m| m.get(key).cloned())
    {
        Some(v) => Ok(Json(json!({ key: v }))),
        None => Err(ApiError::not_found(format!(
            "Volume type encryption for type {id} does not exist."
        ))),
    }
}

/// `POST /types/{id}/encryption` (200).
pub async fn encryption_create(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    p: P,
    JsonBody(b): JsonBody,
) -> ApiResult<Json<Value>> {
    let e = encryption_body(&b, true)?;
    let mut out = echo(&e);
    let req = NewEncryption {
        provider: e.provider.unwrap_or_default(),
        cipher: e.cipher.flatten(),
        key_size: e.key_size.flatten(),
        control_location: e.control_location.unwrap_or_default(),
    };
    let created = volume_types::encryption_create(&state.app, &ctx, seg(&p, "id"), req).await?;
    out.insert(
        "volume_type_id".into(),
        json!(created.volume_type_id.to_string()),
    );
    out.insert(
        "encryption_id".into(),
        json!(created.encryption_id.to_string()),
    );
    Ok(Json(json!({"encryption": out})))
}

/// `PUT /types/{id}/encryption/{encryption_id}` (200, echoes the change).
/// The last segment is not checked, as in Cinder: clients send anything
/// there (cinderclient sends `provider`).
pub async fn encryption_update(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    p: P,
    JsonBody(b): JsonBody,
) -> ApiResult<Json<Value>> {
    let e = encryption_body(&b, false)?;
    let out = echo(&e);
    let change = EncryptionChange {
        provider: e.provider,
        cipher: e.cipher,
        key_size: e.key_size,
        control_location: e.control_location,
    };
    volume_types::encryption_update(&state.app, &ctx, seg(&p, "id"), change).await?;
    Ok(Json(json!({"encryption": out})))
}

/// `DELETE /types/{id}/encryption/{encryption_id}` (202; the last segment is
/// not checked, as in Cinder).
pub async fn encryption_delete(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    p: P,
) -> ApiResult<StatusCode> {
    volume_types::encryption_delete(&state.app, &ctx, seg(&p, "id")).await?;
    Ok(StatusCode::ACCEPTED)
}
