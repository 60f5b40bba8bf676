//! Version documents, extensions and availability zones.

use axum::Json;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::State;
use crate::auth::Auth;
use crate::fault::ApiResult;
use crate::microversion::{MAX, MIN};

fn version_doc(state: &State) -> Value {
    json!({
        "id": "v3.0",
        "status": "CURRENT",
        "version": MAX.to_string(),
        "min_version": MIN.to_string(),
        "updated": "2026-11-21T00:00:00Z",
        "links": [
            {"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
            {"rel": "self", "href": format!("{}/v3/", state.public_url)},
        ],
        "media-types": [
            {"base": "application/json", "type": "application/vnd.openstack.volume+json;version=3"}
        ],
    })
}

/// `GET /`: the versions this endpoint serves (300, as Cinder answers).
pub async fn root(AxState(state): AxState<State>) -> Response {
    let mut r = (
        StatusCode::MULTIPLE_CHOICES,
        Json(json!({"versions": [version_doc(&state)]})),
    )
        .into_response();
    if let Ok(v) = format!("{}/v3/", state.public_url).parse() {
        r.headers_mut().insert("location", v);
    }
    r
}

/// `GET /v3/`: the v3 version document.
pub async fn v3(AxState(state): AxState<State>) -> Json<Value> {
    Json(json!({"versions": [version_doc(&state)]}))
}

/// `GET /extensions`: the API extensions Scoria implements.
pub async fn extensions(Auth(ctx): Auth) -> ApiResult<Json<Value>> {
    ctx.authorize(scoria_core::Op::ExtensionList)?;
    let ext = |name: &str, alias: &str, description: &str| {
        json!({"name": name, "alias": alias, "description": description,
               "updated": "2026-11-21T00:00:00+00:00", "links": []})
    };
    Ok(Json(json!({"extensions": [
        ext("AdminActions", "os-admin-actions", "Enable admin actions."),
        ext("AvailabilityZones", "os-availability-zone", "Describe Availability Zones."),
        ext("Quotas", "os-quota-sets", "Quota management support."),
        ext("QuotaClasses", "os-quota-class-sets", "Quota classes management support."),
        ext("UsedLimits", "os-used-limits", "Provide data on limited resources that are being used."),
        ext("VolumeHostAttribute", "os-vol-host-attr", "Expose host as an attribute of a volume."),
        ext("VolumeTenantAttribute", "os-vol-tenant-attr", "Expose the internal project_id as an attribute of a volume."),
        ext("VolumeMigStatusAttribute", "os-vol-mig-status-attr", "Expose migration_status as an attribute of a volume."),
        ext("VolumeActions", "os-volume-actions", "Enable volume actions."),
        ext("VolumeTransfer", "os-volume-transfer", "Volume transfer management support."),
        ext("Types", "types", "Volume types support."),
        ext("Services", "os-services", "Services support."),
        ext("ExtendedServices", "os-extended-services", "Extended services support."),
        ext("Hosts", "os-hosts", "Admin-only host administration."),
        ext("Scheduler_stats", "scheduler-stats", "Scheduler stats support."),
        ext("Capabilities", "capabilities", "Capabilities support."),
        ext("TypesManage", "os-types-manage", "Types manage support."),
        ext("TypesExtraSpecs", "os-types-extra-specs", "Type extra specs support."),
        ext("VolumeTypeAccess", "os-volume-type-access", "Volume type access support."),
        ext("VolumeTypeEncryption", "encryption", "Encryption support for volume types."),
        ext("Qos_specs_manage", "qos-specs", "QoS specs support."),
    ]})))
}

/// `GET /os-availability-zone`.
pub async fn availability_zones(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
) -> ApiResult<Json<Value>> {
    ctx.authorize(scoria_core::Op::AvailabilityZoneList)?;
    let zones: Vec<Value> = state
        .app
        .env
        .availability_zones()
        .into_iter()
        .map(|z| json!({"zoneName": z, "zoneState": {"available": true}}))
        .collect();
    Ok(Json(json!({"availabilityZoneInfo": zones})))
}
