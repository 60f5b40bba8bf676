//! `os-quota-sets`, `os-quota-class-sets` and `limits`.
//!
//! Keys are Cinder's: the project-wide resources, and `volumes_<type name>`,
//! `gigabytes_<type name>`, `snapshots_<type name>` for the volume types
//! (see `scoria_core::quotas` for which types a caller sees).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State as AxState;
use scoria_core::quotas;
use scoria_model::quota::{NamedKey, QuotaResource};
use serde_json::{Map, Value, json};

use crate::State;
use crate::auth::Auth;
use crate::body::{self, JsonBody};
use crate::fault::{ApiError, ApiResult};
use crate::path::PathParams as P;
use crate::query::Params;

fn target(p: &BTreeMap<String, String>) -> ApiResult<String> {
    let id = p.get("target").cloned().unwrap_or_default();
    if id.is_empty() || id.len() > 255 {
        return Err(ApiError::bad_request("Invalid project id."));
    }
    Ok(id)
}

fn limits_json(id: &str, limits: &BTreeMap<NamedKey, i64>) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    for (k, l) in limits {
        m.insert(k.to_string(), json!(l));
    }
    Value::Object(m)
}

pub async fn show(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: P,
    q: Params,
) -> ApiResult<Json<Value>> {
    let project = target(&path)?;
    let set = quotas::show(&state.app, &ctx, &project).await?;
    let usage = q.flag("usage")?;
    let mut m = Map::new();
    m.insert("id".into(), json!(project));
    for (k, line) in &set.lines {
        let v = if usage {
            json!({"limit": line.limit, "in_use": line.usage.in_use, "reserved": line.usage.reserved, "allocated": 0})
        } else {
            json!(line.limit)
        };
        m.insert(k.to_string(), v);
    }
    Ok(Json(json!({"quota_set": m})))
}

pub async fn defaults(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: P,
) -> ApiResult<Json<Value>> {
    let project = target(&path)?;
    let d = quotas::defaults(&state.app, &ctx, &project).await?;
    Ok(Json(json!({"quota_set": limits_json(&project, &d)})))
}

/// Parse `{"quota_set": {"volumes": 5, "volumes_gold": 2, ...}}` (or
/// `quota_class_set`). Whether a per-type key names a type is the
/// application's question.
fn changes(body: &Map<String, Value>, key: &str) -> ApiResult<Vec<(NamedKey, i64)>> {
    let set = body::object(body, key)?;
    let mut out = Vec::new();
    for (k, _) in set.iter() {
        // Cinder ignores these bookkeeping keys in an update body.
        if k == "id" || k == "tenant_id" || k == "class_name" {
            continue;
        }
        let res = k
            .parse::<NamedKey>()
            .map_err(|_| ApiError::bad_request(format!("Bad key(s) in quota set: {k}")))?;
        let v = body::int(set, k)?.ok_or_else(|| {
            ApiError::bad_request(format!(
                "Invalid input received: Quota '{k}' must be an integer."
            ))
        })?;
        out.push((res, v));
    }
    if out.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Missing quota values in {key}."
        )));
    }
    Ok(out)
}

pub async fn update(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: P,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let project = target(&path)?;
    let ch = changes(&body, "quota_set")?;
    let set = quotas::update(&state.app, &ctx, &project, &ch).await?;
    let limits: BTreeMap<NamedKey, i64> = set
        .lines
        .iter()
        .map(|(k, l)| (k.clone(), l.limit))
        .collect();
    let mut v = limits_json(&project, &limits);
    if let Some(m) = v.as_object_mut() {
        m.remove("id");
    }
    Ok(Json(json!({"quota_set": v})))
}

pub async fn delete(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: P,
) -> ApiResult<axum::http::StatusCode> {
    let project = target(&path)?;
    quotas::delete(&state.app, &ctx, &project).await?;
    // 200 with no body, as Cinder answers (clients refuse a body here).
    Ok(axum::http::StatusCode::OK)
}

pub async fn class_show(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: P,
) -> ApiResult<Json<Value>> {
    let class = target(&path)?;
    let l = quotas::class_show(&state.app, &ctx, &class).await?;
    Ok(Json(json!({"quota_class_set": limits_json(&class, &l)})))
}

pub async fn class_update(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: P,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let class = target(&path)?;
    let ch = changes(&body, "quota_class_set")?;
    let l = quotas::class_update(&state.app, &ctx, &class, &ch).await?;
    let mut v = limits_json(&class, &l);
    if let Some(m) = v.as_object_mut() {
        m.remove("id");
    }
    Ok(Json(json!({"quota_class_set": v})))
}

pub async fn limits(AxState(state): AxState<State>, Auth(ctx): Auth) -> ApiResult<Json<Value>> {
    let set = quotas::limits(&state.app, &ctx).await?;
    let get = |r: QuotaResource| set.lines.get(&NamedKey::Global(r)).copied();
    let limit = |r| get(r).map(|l| l.limit).unwrap_or(-1);
    let used = |r| {
        get(r)
            .map(|l| l.usage.in_use + l.usage.reserved)
            .unwrap_or(0)
    };
    use QuotaResource::*;
    Ok(Json(json!({"limits": {"rate": [], "absolute": {
        "maxTotalVolumes": limit(Volumes),
        "maxTotalSnapshots": limit(Snapshots),
        "maxTotalVolumeGigabytes": limit(Gigabytes),
        "maxTotalBackups": limit(Backups),
        "maxTotalBackupGigabytes": limit(BackupGigabytes),
        "totalVolumesUsed": used(Volumes),
        "totalGigabytesUsed": used(Gigabytes),
        "totalSnapshotsUsed": used(Snapshots),
        "totalBackupsUsed": used(Backups),
        "totalBackupGigabytesUsed": used(BackupGigabytes),
    }}})))
}
