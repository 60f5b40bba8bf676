//! Operator APIs: `/os-services`, `/os-hosts`, `/scheduler-stats/get_pools`,
//! `/capabilities/{host}` (all admin only), with Cinder's shapes.

use axum::Json;
use axum::extract::{Extension, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scoria_core::Op;
use scoria_core::services::{self, Change, HostUsage, Pool, Service};
use serde_json::{Map, Value, json};

use crate::State;
use crate::auth::Auth;
use crate::body::{self, JsonBody};
use crate::fault::{ApiError, ApiResult};
use crate::microversion::Version;
use crate::path::{PathParams, seg};
use crate::query::Params;

fn status(s: &Service) -> &'static str {
    if s.disabled { "disabled" } else { "enabled" }
}

/// A service as `GET /os-services` shows it (by microversion).
fn service_view(s: &Service, v: Version) -> Value {
    let mut o = json!({
        "binary": s.binary,
        "host": s.host,
        "zone": s.zone,
        "status": status(s),
        // This process answers, so every one of its services is up, unless
        // a volume service's storage cannot be reached.
        "state": if s.down { "down" } else { "up" },
        "updated_at": s.updated_at,
        "disabled_reason": s.disabled_reason,
    });
    let volume = s.binary == services::VOLUME_BINARY;
    if volume {
        o["replication_status"] = json!("disabled");
        o["active_backend_id"] = Value::Null;
        o["frozen"] = json!(s.frozen);
    }
    if v.at_least(7) {
        o["cluster"] = Value::Null;
    }
    if v.at_least(49) && volume {
        o["backend_state"] = json!("up");
    }
    o
}

/// A query value, empty meaning absent.
fn nonempty<'a>(q: &'a Params, key: &str) -> Option<&'a str> {
    q.get(key).filter(|v| !v.is_empty())
}

/// `GET /os-services[?host=&binary=]`.
pub async fn list(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    Extension(v): Extension<Version>,
    q: Params,
) -> ApiResult<Json<Value>> {
    let list = services::list(
        &state.app,
        &ctx,
        nonempty(&q, "host"),
        nonempty(&q, "binary"),
    )
    .await?;
    Ok(Json(json!({
        "services": list.iter().map(|s| service_view(s, v)).collect::<Vec<_>>()
    })))
}

/// A bounded string field (Cinder's schema: 1 to 255 characters).
fn name_field(body: &Map<String, Value>, key: &str) -> ApiResult<Option<String>> {
    match body::opt_str(body, key)? {
        Some(s) if s.is_empty() || s.chars().count() > 255 => Err(ApiError::bad_request(format!(
            "Invalid input for field/attribute {key}: must be 1 to 255 characters."
        ))),
        other => Ok(other),
    }
}

fn host_field(body: &Map<String, Value>) -> ApiResult<String> {
    name_field(body, "host")?
        .ok_or_else(|| ApiError::bad_request("Missing required element 'host' in request body."))
}

/// Scoria has no clusters: a cluster named in a request matches nothing.
fn no_cluster(body: &Map<String, Value>) -> ApiResult<()> {
    match body::opt_str(body, "cluster")? {
        Some(c) => Err(ApiError::bad_request(format!(
            "No service found with cluster={c}: Scoria does not group services into clusters."
        ))),
        None => Ok(()),
    }
}

/// `PUT /os-services/{enable,disable,disable-log-reason,freeze,thaw}`.
pub async fn update(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: PathParams,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let action = seg(&path, "action");
    let app = &state.app;
    // Policy first, as Cinder: a caller without the right learns nothing
    // about what is wrong with the request.
    ctx.authorize(match action {
        "freeze" => Op::ServiceFreeze,
        "thaw" => Op::ServiceThaw,
        _ => Op::ServiceUpdate,
    })?;
    match action {
        "enable" | "disable" | "disable-log-reason" => {
            let mut allowed = vec!["host", "binary", "service", "cluster"];
            if action == "disable-log-reason" {
                allowed.push("disabled_reason");
            }
            body::only(&body, "os-services", &allowed)?;
            no_cluster(&body)?;
            let host = host_field(&body)?;
            let binary = name_field(&body, "binary")?;
            let service = name_field(&body, "service")?;
            let Some(binary_key) = binary.clone().or_else(|| service.clone()) else {
                return Err(ApiError::bad_request(
                    "Missing required element 'binary' in request body.",
                ));
            };
            let change = match action {
                "enable" => Change::Enable,
                "disable" => Change::Disable,
                _ => match body.get("disabled_reason") {
                    Some(Value::String(r)) => Change::DisableWithReason(r.clone()),
                    other => {
                        let shown = other.map_or("None".to_owned(), |v| match v {
                            Value::Null => "None".to_owned(),
                            v => v.to_string(),
                        });
                        return Err(ApiError::bad_request(format!(
                            "Invalid input for field/attribute disabled_reason. Value: {shown}. {shown} is not of type 'string'."
                        )));
                    }
                },
            };
            let svc = services::update(app, &ctx, &host, &binary_key, change.clone()).await?;
            let mut out = json!({
                "host": host,
                "service": service.unwrap_or_default(),
                "binary": binary.unwrap_or_default(),
                "status": status(&svc),
                "disabled": svc.disabled,
            });
            if change != Change::Disable {
                out["disabled_reason"] = json!(svc.disabled_reason);
            }
            Ok(Json(out).into_response())
        }
        "freeze" | "thaw" => {
            body::only(&body, "os-services", &["host", "cluster"])?;
            no_cluster(&body)?;
            let host = host_field(&body)?;
            services::freeze(app, &ctx, &host, action == "freeze").await?;
            Ok(StatusCode::OK.into_response())
        }
        other => Err(ApiError::bad_request(format!(
            "Invalid input received: Unknown action {other}."
        ))),
    }
}

/// `GET /os-hosts[?zone=]`.
pub async fn hosts(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    q: Params,
) -> ApiResult<Json<Value>> {
    let list = services::hosts(&state.app, &ctx, nonempty(&q, "zone")).await?;
    let hosts: Vec<Value> = list
        .iter()
        .map(|s| {
            json!({
                "host_name": s.host,
                "service": s.binary,
                "zone": s.zone,
                "service-status": "available",
                "service-state": status(s),
                "last-update": s.updated_at,
            })
        })
        .collect();
    Ok(Json(json!({ "hosts": hosts })))
}

/// `GET /os-hosts/{host}`: what each project has on a volume host, the total
/// first (counts and sizes as strings, as Cinder shows them).
pub async fn host_show(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: PathParams,
) -> ApiResult<Json<Value>> {
    let host = seg(&path, "host");
    let usage = services::host_usage(&state.app, &ctx, host).await?;
    let rows: Vec<Value> = usage
        .iter()
        .map(|u: &HostUsage| {
            json!({"resource": {
                "host": host,
                "project": u.project,
                "volume_count": u.volume_count.to_string(),
                "total_volume_gb": u.total_volume_gb.to_string(),
                "snapshot_count": u.snapshot_count.to_string(),
                "total_snapshot_gb": u.total_snapshot_gb.to_string(),
            }})
        })
        .collect();
    Ok(Json(json!({ "host": rows })))
}

/// GiB with two decimals, as drivers report capacities.
fn gib(x: f64) -> f64 {
    (x * 100.0).floor() / 100.0
}

/// What a pool reports, as `get_pools?detail=True` shows it.
fn pool_capabilities(p: &Pool) -> Value {
    let c = &p.candidate;
    let cap = |k: &str| c.capabilities.get(k).cloned();
    json!({
        "pool_name": c.name,
        "volume_backend_name": c.name,
        "vendor_name": services::VENDOR_NAME,
        "driver_version": services::DRIVER_VERSION,
        "storage_protocol": cap("storage_protocol"),
        "total_capacity_gb": gib(c.total_gib),
        "free_capacity_gb": gib(c.free_gib),
        "allocated_capacity_gb": c.provisioned_gib,
        "provisioned_capacity_gb": c.provisioned_gib,
        // A string, as Cinder drivers report it ("20.0").
        "max_over_subscription_ratio": format!("{:?}", c.max_over_subscription_ratio),
        "reserved_percentage": c.reserved_percentage,
        "thin_provisioning_support": cap("thin_provisioning_support").as_deref() == Some("True"),
        "thick_provisioning_support": false,
        "multiattach": cap("multiattach").as_deref() == Some("True"),
        "QoS_support": false,
        "availability_zone": c.availability_zone,
        "backend_state": "up",
        "timestamp": p.timestamp,
    })
}

/// `GET /scheduler-stats/get_pools[?detail=True][&name=]`.
pub async fn pools(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    q: Params,
) -> ApiResult<Json<Value>> {
    let detail = q.flag("detail")?;
    let list = services::pools(&state.app, &ctx, nonempty(&q, "name")).await?;
    let pools: Vec<Value> = list
        .iter()
        .map(|p| {
            if detail {
                json!({"name": p.name, "capabilities": pool_capabilities(p)})
            } else {
                json!({"name": p.name})
            }
        })
        .collect();
    Ok(Json(json!({ "pools": pools })))
}

fn property(title: &str, description: &str) -> Value {
    json!({"title": title, "description": description, "type": "boolean"})
}

/// `GET /capabilities/{host}`: what a backend can do, for volume type
/// authors.
pub async fn capabilities(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: PathParams,
) -> ApiResult<Json<Value>> {
    let host = seg(&path, "host");
    let (backend, caps) = services::capabilities(&state.app, &ctx, host).await?;
    Ok(Json(json!({
        "namespace": format!("OS::Storage::Capabilities::{}", services::backend_host(&backend)),
        "vendor_name": services::VENDOR_NAME,
        "volume_backend_name": backend,
        "pool_name": backend,
        "driver_version": services::DRIVER_VERSION,
        "storage_protocol": caps.get("storage_protocol"),
        "display_name": null,
        "description": null,
        "visibility": null,
        "replication_targets": [],
        "properties": {
            "thin_provisioning": property(
                "Thin Provisioning",
                "Volumes take space on the backend only as data is written to them.",
            ),
            "compression": property("Compression", "Volume data is stored compressed."),
            "qos": property("QoS", "Volumes can be given I/O limits."),
            "replication_enabled": property(
                "Replication",
                "Volumes are copied to another backend.",
            ),
        },
    })))
}
