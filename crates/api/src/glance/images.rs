//! `/v2/images…`: create, list, show, JSON-patch update, delete,
//! deactivate and reactivate, tags, and the schemas. The request checks here
//! are Glance's request deserializer's (read-only and reserved attributes,
//! JSON pointers, the patch media types, the schema's types); what a change
//! means is the application layer's.

use axum::Json;
use axum::extract::State as AxState;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use scoria_core::image_service::{
    self, BaseColumn, Change, CreateRequest, Field, ListRequest, SortDir, SortKey,
    VisibilityFilter, is_base,
};
use scoria_model::GlanceImageId;
use scoria_model::glance::{MemberStatus, Visibility};
use serde_json::{Map, Value, json};

use super::error::{GAuth, GBody, GPath, GQuery, GResult, GlanceError, media_type};
use super::views;
use crate::State;

/// Attributes a client may never set (Glance's `_disallowed_properties`).
const DISALLOWED: &[&str] = &["direct_url", "self", "file", "schema", "stores"];
/// Attributes only Glance sets.
const READ_ONLY: &[&str] = &[
    "created_at",
    "updated_at",
    "status",
    "checksum",
    "size",
    "virtual_size",
    "direct_url",
    "self",
    "file",
    "schema",
    "id",
    "os_hash_algo",
    "os_hash_value",
];
const RESERVED: &[&str] = &["location", "deleted", "deleted_at"];
/// Properties of this namespace are Glance's own.
const RESERVED_NAMESPACE: &str = "os_glance";

/// Glance's default and largest page (`limit_param_default`, `api_limit_max`).
const DEFAULT_LIMIT: i64 = 25;
const MAX_LIMIT: i64 = 1000;

pub(crate) fn image_id(s: &str) -> GResult<GlanceImageId> {
    Ok(image_service::parse_id(s)?)
}

fn schema_error(message: impl std::fmt::Display) -> GlanceError {
    GlanceError::bad_request(format!(
        "Provided object does not match schema 'image': {message}"
    ))
}

fn check_attribute_name(key: &str) -> GResult<()> {
    if READ_ONLY.contains(&key) {
        return Err(GlanceError::forbidden(format!(
            "Attribute '{key}' is read-only."
        )));
    }
    if RESERVED.contains(&key) || key.starts_with(RESERVED_NAMESPACE) {
        return Err(GlanceError::forbidden(format!(
            "Attribute '{key}' is reserved."
        )));
    }
    Ok(())
}

fn string_or_null(key: &str, v: &Value) -> GResult<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        other => Err(schema_error(format!(
            "{other} is not of type 'null', 'string': Failed validating 'type' in schema['properties']['{key}']"
        ))),
    }
}

fn boolean(key: &str, v: &Value) -> GResult<bool> {
    v.as_bool().ok_or_else(|| {
        schema_error(format!(
            "{v} is not of type 'boolean': Failed validating 'type' in schema['properties']['{key}']"
        ))
    })
}

fn integer(key: &str, v: &Value) -> GResult<i64> {
    v.as_i64().ok_or_else(|| {
        schema_error(format!(
            "{v} is not of type 'integer': Failed validating 'type' in schema['properties']['{key}']"
        ))
    })
}

fn visibility(v: &Value) -> GResult<Visibility> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            schema_error(format!(
                "{v} is not one of ['community', 'public', 'private', 'shared']: Failed validating 'enum' in schema['properties']['visibility']"
            ))
        })
}

fn tags(v: &Value) -> GResult<Vec<String>> {
    let bad = || {
        schema_error(format!(
            "{v} is not of type 'array' of strings: Failed validating 'type' in schema['properties']['tags']"
        ))
    };
    v.as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|t| t.as_str().map(str::to_owned).ok_or_else(bad))
        .collect()
}

/// The typed value of attribute `key` (a base attribute or a custom
/// property, which must be a string).
fn field(key: &str, v: &Value) -> GResult<Field> {
    Ok(match key {
        "name" => Field::Name(string_or_null(key, v)?),
        "visibility" => Field::Visibility(visibility(v)?),
        "protected" => Field::Protected(boolean(key, v)?),
        "os_hidden" => Field::OsHidden(boolean(key, v)?),
        "min_disk" => Field::MinDisk(integer(key, v)?),
        "min_ram" => Field::MinRam(integer(key, v)?),
        "tags" => Field::Tags(tags(v)?),
        "disk_format" => Field::DiskFormat(string_or_null(key, v)?),
        "container_format" => Field::ContainerFormat(string_or_null(key, v)?),
        "owner" => Field::Owner(string_or_null(key, v)?.unwrap_or_default()),
        _ => match v {
            Value::String(s) => Field::Property(key.to_owned(), s.clone()),
            other => {
                return Err(schema_error(format!(
                    "{other} is not of type 'string': Failed validating 'type' in schema['additionalProperties']"
                )));
            }
        },
    })
}

// ---------------------------------------------------------------------------
// Create

pub async fn create(
    AxState(state): AxState<State>,
    GAuth(ctx): GAuth,
    body: GBody,
) -> GResult<Response> {
    body.expect_json()?;
    let Value::Object(b) = &body.value else {
        return Err(GlanceError::bad_request(
            "The request body must be a JSON object.",
        ));
    };
    let mut req = CreateRequest::default();
    for (key, v) in b {
        if DISALLOWED.contains(&key.as_str()) {
            return Err(GlanceError::forbidden(format!(
                "Attribute '{key}' is read-only."
            )));
        }
        if key == "id" {
            let s = v
                .as_str()
                .ok_or_else(|| schema_error(format!("{v} is not of type 'string'")))?;
            req.id = Some(s.parse().map_err(|_| {
                schema_error(format!(
                    "'{s}' does not match '^([0-9a-fA-F]){{8}}-([0-9a-fA-F]){{4}}-([0-9a-fA-F]){{4}}-([0-9a-fA-F]){{4}}-([0-9a-fA-F]){{12}}$'"
                ))
            })?);
            continue;
        }
        if key.chars().count() > 255 {
            return Err(GlanceError::bad_request(
                "Custom property should not be greater than 255 characters.",
            ));
        }
        check_attribute_name(key)?;
        match field(key, v)? {
            Field::Name(n) => req.name = n,
            Field::Visibility(x) => req.visibility = Some(x),
            Field::Protected(p) => req.protected = Some(p),
            Field::OsHidden(h) => req.os_hidden = Some(h),
            Field::MinDisk(n) => req.min_disk = Some(n),
            Field::MinRam(n) => req.min_ram = Some(n),
            Field::Tags(t) => req.tags = t,
            Field::DiskFormat(f) => req.disk_format = f,
            Field::ContainerFormat(f) => req.container_format = f,
            Field::Owner(o) => req.owner = Some(o).filter(|o| !o.is_empty()),
            Field::Property(k, v) => {
                req.properties.insert(k, v);
            }
        }
    }
    let i = image_service::create(&state.app, &ctx, req).await?;
    let mut r = (StatusCode::CREATED, Json(views::image(&i))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/v2/images/{}", i.id)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

// ---------------------------------------------------------------------------
// Read

pub async fn show(
    AxState(state): AxState<State>,
    GAuth(ctx): GAuth,
    GPath(id): GPath<String>,
) -> GResult<Json<Value>> {
    let i = image_service::get(&state.app, &ctx, image_id(&id)?).await?;
    Ok(Json(views::image(&i)))
}

/// Query keys that are not property filters.
const LIST_KEYS: &[&str] = &[
    "limit",
    "marker",
    "sort",
    "sort_key",
    "sort_dir",
    "name",
    "status",
    "visibility",
    "owner",
    "tag",
    "disk_format",
    "container_format",
    "protected",
    "os_hidden",
    "size_min",
    "size_max",
    "member_status",
];

fn bool_param(key: &str, v: &str) -> GResult<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(GlanceError::bad_request(format!(
            "Invalid value '{v}' for parameter '{key}': expected true or false."
        ))),
    }
}

fn int_param(key: &str, v: &str) -> GResult<i64> {
    v.parse::<i64>()
        .map_err(|_| GlanceError::bad_request(format!("{key} param must be an integer")))
}

fn sort_key(k: &str) -> GResult<SortKey> {
    SortKey::parse(k.trim()).ok_or_else(|| {
        GlanceError::bad_request(format!(
            "Invalid sort key: {}. It must be one of the following: {}.",
            k.trim(),
            SortKey::NAMES.join(", ")
        ))
    })
}

fn sort_dir(d: &str) -> GResult<SortDir> {
    match d.trim() {
        "asc" => Ok(SortDir::Asc),
        "desc" => Ok(SortDir::Desc),
        other => Err(GlanceError::bad_request(format!(
            "Invalid sort direction: {other}"
        ))),
    }
}

/// Glance's sorting: `sort=k1:dir,k2` or repeated `sort_key`/`sort_dir`
/// (one direction for all keys, or one per key), not both.
fn sorting(pairs: &[(String, String)]) -> GResult<Vec<(SortKey, SortDir)>> {
    let all = |name: &str| -> Vec<&str> {
        pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let (sort, keys, dirs) = (all("sort"), all("sort_key"), all("sort_dir"));
    if !sort.is_empty() {
        if !keys.is_empty() || !dirs.is_empty() {
            return Err(GlanceError::bad_request(
                "Old and new sorting syntax cannot be combined",
            ));
        }
        let mut out = Vec::new();
        for item in sort.iter().flat_map(|s| s.trim().split(',')) {
            let (k, d) = item.split_once(':').unwrap_or((item, "desc"));
            out.push((
                sort_key(k)?,
                sort_dir(if d.is_empty() { "desc" } else { d })?,
            ));
        }
        return Ok(out);
    }
    let keys: Vec<SortKey> = keys.iter().map(|k| sort_key(k)).collect::<GResult<_>>()?;
    let dirs: Vec<SortDir> = dirs.iter().map(|d| sort_dir(d)).collect::<GResult<_>>()?;
    if dirs.len() > 1 && dirs.len() != keys.len() {
        return Err(GlanceError::bad_request(
            "Number of sort dirs does not match the number of sort keys",
        ));
    }
    let keys = if keys.is_empty() {
        vec![SortKey::CreatedAt]
    } else {
        keys
    };
    Ok(keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let d = dirs
                .get(i)
                .or(dirs.first())
                .copied()
                .unwrap_or(SortDir::Desc);
            (*k, d)
        })
        .collect())
}

pub async fn list(
    AxState(state): AxState<State>,
    GAuth(ctx): GAuth,
    GQuery(q): GQuery,
) -> GResult<Json<Value>> {
    let pairs = &q.0;
    let get = |k: &str| {
        pairs
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let limit = match get("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => {
            let l = int_param("limit", l)?;
            if l < 0 {
                return Err(GlanceError::bad_request("limit param must be positive"));
            }
            l.min(MAX_LIMIT)
        }
    };
    let marker = match get("marker") {
        None => None,
        Some(m) => Some(m.parse::<GlanceImageId>().map_err(|_| {
            GlanceError::bad_request(format!("Invalid marker. Image {m} could not be found."))
        })?),
    };
    let visibility = match get("visibility") {
        None => VisibilityFilter::Default,
        Some("all") => VisibilityFilter::All,
        Some(v) => VisibilityFilter::Only(
            v.parse()
                .map_err(|_| GlanceError::bad_request(format!("Invalid visibility value: {v}")))?,
        ),
    };
    let member_status = match get("member_status").unwrap_or("accepted") {
        "all" => None,
        s => Some(
            s.parse::<MemberStatus>()
                .map_err(|_| GlanceError::bad_request(format!("Invalid status: {s}")))?,
        ),
    };
    if get("changes-since").is_some() {
        return Err(GlanceError::bad_request(
            "The \"changes-since\" filter is no longer available on v2.",
        ));
    }
    let size = |k: &str| get(k).map(|v| int_param(k, v)).transpose();
    let req = ListRequest {
        visibility,
        member_status,
        name: get("name").map(str::to_owned),
        status: get("status").map(str::to_owned),
        owner: get("owner").map(str::to_owned),
        tags: pairs
            .iter()
            .filter(|(k, _)| k == "tag")
            .map(|(_, v)| v.trim().to_owned())
            .collect(),
        disk_format: get("disk_format").map(str::to_owned),
        container_format: get("container_format").map(str::to_owned),
        protected: get("protected")
            .map(|v| bool_param("protected", v))
            .transpose()?,
        os_hidden: get("os_hidden")
            .map(|v| bool_param("os_hidden", v))
            .transpose()?,
        size_min: size("size_min")?,
        size_max: size("size_max")?,
        columns: pairs
            .iter()
            .filter_map(|(k, v)| BaseColumn::parse(k).map(|c| (c, v.clone())))
            .collect(),
        properties: pairs
            .iter()
            .filter(|(k, _)| !LIST_KEYS.contains(&k.as_str()) && BaseColumn::parse(k).is_none())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        sort: sorting(pairs)?,
        limit: Some(limit),
        marker,
    };
    let images = image_service::list(&state.app, &ctx, req).await?;
    // `first` repeats the query without its marker; `next` adds the last
    // image of a full page as the marker.
    let without_marker: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k != "marker")
        .cloned()
        .collect();
    let encode = |p: &[(String, String)]| serde_urlencoded::to_string(p).unwrap_or_default();
    let query = encode(&without_marker);
    let mut body = json!({
        "images": images.iter().map(views::image).collect::<Vec<_>>(),
        "first": if query.is_empty() { "/v2/images".to_owned() } else { format!("/v2/images?{query}") },
        "schema": "/v2/schemas/images",
    });
    if limit > 0
        && images.len() as i64 == limit
        && let Some(last) = images.last()
    {
        let mut next = without_marker.clone();
        next.push(("marker".into(), last.id.to_string()));
        body["next"] = json!(format!("/v2/images?{}", encode(&next)));
    }
    Ok(Json(body))
}

// ---------------------------------------------------------------------------
// Update

const PATCH_V21: &str = "application/openstack-images-v2.1-json-patch";
const PATCH_V20: &str = "application/openstack-images-v2.0-json-patch";

/// Decode Glance's restricted JSON pointers (`/name`, `/tags`, `/k~1v`).
fn pointer(p: &str) -> GResult<Vec<String>> {
    let bad = |why: &str| GlanceError::bad_request(format!("Pointer `{p}` {why}"));
    if !p.starts_with('/') {
        return Err(bad("does not start with \"/\"."));
    }
    if p[1..].contains("//") {
        return Err(bad("contains adjacent \"/\"."));
    }
    if p.len() > 1 && p.ends_with('/') {
        return Err(bad("end with \"/\"."));
    }
    let bytes = p.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'~' && !matches!(bytes.get(i + 1), Some(b'0' | b'1')) {
            return Err(bad(
                "contains \"~\" not part of a recognized escape sequence.",
            ));
        }
    }
    Ok(p[1..]
        .split('/')
        .map(|part| part.replace("~1", "/").replace("~0", "~").trim().to_owned())
        .collect())
}

/// One operation of the patch, in either draft's spelling.
fn operation(raw: &Value, draft10: bool) -> GResult<Change> {
    let Value::Object(o) = raw else {
        return Err(GlanceError::bad_request("Operations must be JSON objects."));
    };
    let (op, path) = if draft10 {
        let op = match o.get("op") {
            None => {
                return Err(GlanceError::bad_request(
                    "Unable to find `op` in JSON Schema change. It must be one of the following: add, remove, replace.",
                ));
            }
            Some(Value::String(op)) if ["add", "remove", "replace"].contains(&op.as_str()) => {
                op.clone()
            }
            Some(other) => {
                let shown = other
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or(other.to_string());
                return Err(GlanceError::bad_request(format!(
                    "Invalid operation: `{shown}`. It must be one of the following: add, remove, replace."
                )));
            }
        };
        let path = o.get("path").ok_or_else(|| {
            GlanceError::bad_request("Unable to find 'path' in JSON Schema change")
        })?;
        (op, path)
    } else {
        let ops: Vec<&str> = ["add", "remove", "replace"]
            .into_iter()
            .filter(|k| o.contains_key(*k))
            .collect();
        match ops.as_slice() {
            [op] => (op.to_string(), &o[*op]),
            [] => {
                return Err(GlanceError::bad_request(
                    "Operation objects must contain exactly one member named \"add\", \"remove\", or \"replace\".",
                ));
            }
            _ => {
                return Err(GlanceError::bad_request(
                    "Operation objects must contain only one member named \"add\", \"remove\", or \"replace\".",
                ));
            }
        }
    };
    let path = path.as_str().ok_or_else(|| {
        GlanceError::bad_request(format!("Pointer `{path}` does not start with \"/\"."))
    })?;
    let parts = pointer(path)?;
    let root = parts.first().cloned().unwrap_or_default();
    if root == "locations" {
        return Err(GlanceError::forbidden(format!(
            "It's not allowed to {} locations if locations are invisible.",
            if op == "replace" {
                "update"
            } else {
                op.as_str()
            }
        )));
    }
    if parts.len() != 1 || root.is_empty() {
        return Err(GlanceError::bad_request(format!(
            "Invalid JSON pointer for this resource: '/{}'",
            parts.join("/")
        )));
    }
    check_attribute_name(&root)?;
    if op == "remove" {
        return Ok(Change::Remove(root));
    }
    let value = o.get("value").ok_or_else(|| {
        GlanceError::bad_request(format!(
            "Operation \"{op}\" requires a member named \"value\"."
        ))
    })?;
    let f = field(&root, value)?;
    Ok(if op == "add" {
        Change::Add(f)
    } else {
        Change::Replace(f)
    })
}

pub async fn update(
    AxState(state): AxState<State>,
    GAuth(ctx): GAuth,
    GPath(id): GPath<String>,
    req: axum::extract::Request,
) -> GResult<Json<Value>> {
    let id = image_id(&id)?;
    let (parts, body) = req.into_parts();
    let draft10 = match media_type(&parts).as_deref() {
        Some(PATCH_V21) => true,
        Some(PATCH_V20) => false,
        _ => {
            let mut e = GlanceError::unsupported_media_type();
            e.headers.push((
                header::HeaderName::from_static("accept-patch"),
                HeaderValue::from_static(
                    "application/openstack-images-v2.0-json-patch, application/openstack-images-v2.1-json-patch",
                ),
            ));
            return Err(e);
        }
    };
    let body = <GBody as axum::extract::FromRequest<()>>::from_request(
        axum::extract::Request::from_parts(parts, body),
        &(),
    )
    .await?;
    let Value::Array(ops) = &body.value else {
        return Err(GlanceError::bad_request(
            "Request body must be a JSON array of operation objects.",
        ));
    };
    let changes = ops
        .iter()
        .map(|raw| operation(raw, draft10))
        .collect::<GResult<Vec<_>>>()?;
    // A removal of a base attribute is refused before anything changes.
    if let Some(Change::Remove(p)) = changes
        .iter()
        .find(|c| matches!(c, Change::Remove(p) if is_base(p)))
    {
        return Err(GlanceError::forbidden(format!(
            "Property {p} may not be removed."
        )));
    }
    let i = image_service::update(&state.app, &ctx, id, changes).await?;
    Ok(Json(views::image(&i)))
}

// ---------------------------------------------------------------------------
// Delete, actions, tags

pub async fn delete(
    AxState(state): AxState<State>,
    GAuth(ctx): GAuth,
    GPath(id): GPath<String>,
) -> GResult<StatusCode> {
    image_service::delete(&state.app, &ctx, image_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn deactivate(
    AxState(state): AxState<State>,
    GAuth(ctx): GAuth,
    GPath(id): GPath<String>,
) -> GResult<StatusCode> {
    image_service::deactivate(&state.app, &ctx, image_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn reactivate(
    AxState(state): AxState<State>,
    GAuth(ctx): GAuth,
    GPath(id): GPath<String>,
) -> GResult<StatusCode> {
    image_service::reactivate(&state.app, &ctx, image_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn tag_add(
    AxState(state): AxState<State>,
    GAuth(ctx): GAuth,
    GPath((id, tag)): GPath<(String, String)>,
) -> GResult<StatusCode> {
    if tag.chars().count() > scoria_model::glance::MAX_TAG_LEN {
        return Err(GlanceError::bad_request(format!(
            "Provided object does not match schema 'image': '{tag}' is too long"
        )));
    }
    image_service::tag_add(&state.app, &ctx, image_id(&id)?, &tag).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn tag_delete(
    AxState(state): AxState<State>,
    GAuth(ctx): GAuth,
    GPath((id, tag)): GPath<(String, String)>,
) -> GResult<StatusCode> {
    image_service::tag_delete(&state.app, &ctx, image_id(&id)?, &tag).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------
// Schemas

pub async fn schema_image(GAuth(_): GAuth) -> Json<Value> {
    Json(views::image_schema())
}

pub async fn schema_images(GAuth(_): GAuth) -> Json<Value> {
    Json(views::images_schema())
}

pub async fn schema_member(GAuth(_): GAuth) -> Json<Value> {
    Json(views::member_schema())
}

pub async fn schema_members(GAuth(_): GAuth) -> Json<Value> {
    Json(views::members_schema())
}

/// Unused keys of a body object, for messages.
pub(crate) fn unknown_keys(m: &Map<String, Value>, allowed: &[&str]) -> Option<String> {
    m.keys().find(|k| !allowed.contains(&k.as_str())).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_are_glances() {
        assert_eq!(pointer("/name").unwrap(), ["name"]);
        assert_eq!(pointer("/a~1b~0c").unwrap(), ["a/b~c"]);
        for bad in ["name", "/a//b", "/a/", "/a~2"] {
            assert_eq!(pointer(bad).unwrap_err().status, 400, "{bad}");
        }
    }

    #[test]
    fn both_drafts_parse_to_the_same_change() {
        let d10 = operation(
            &json!({"op": "replace", "path": "/name", "value": "x"}),
            true,
        )
        .unwrap();
        let d4 = operation(&json!({"replace": "/name", "value": "x"}), false).unwrap();
        assert_eq!(d10, d4);
        assert_eq!(d10, Change::Replace(Field::Name(Some("x".into()))));
        let bad = [
            (json!({"op": "move", "path": "/name"}), 400),
            (json!({"path": "/name"}), 400),
            (json!({"op": "add", "path": "/name"}), 400),
            (json!({"op": "replace", "path": "/size", "value": 1}), 403),
            (
                json!({"op": "add", "path": "/os_glance_x", "value": "1"}),
                403,
            ),
            (json!({"op": "add", "path": "/k", "value": 1}), 400),
            (
                json!({"op": "replace", "path": "/min_ram", "value": "1"}),
                400,
            ),
            (json!({"op": "add", "path": "/a/b", "value": "1"}), 400),
            (json!("add"), 400),
        ];
        for (raw, status) in bad {
            assert_eq!(operation(&raw, true).unwrap_err().status, status, "{raw}");
        }
    }

    #[test]
    fn sorting_takes_both_syntaxes() {
        let p = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(
            sorting(&p(&[("sort", "name:asc,size")])).unwrap(),
            [
                (SortKey::Name, SortDir::Asc),
                (SortKey::Size, SortDir::Desc)
            ]
        );
        assert_eq!(
            sorting(&p(&[
                ("sort_key", "name"),
                ("sort_key", "size"),
                ("sort_dir", "asc")
            ]))
            .unwrap(),
            [(SortKey::Name, SortDir::Asc), (SortKey::Size, SortDir::Asc)]
        );
        assert!(sorting(&p(&[("sort", "name"), ("sort_key", "size")])).is_err());
        assert!(sorting(&p(&[("sort_key", "owner")])).is_err());
        assert!(sorting(&p(&[("sort_dir", "up")])).is_err());
    }
}
