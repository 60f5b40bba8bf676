//! Cinder's manage (admins): the list of files that can be managed (`GET
//! /manageable_volumes[/detail]`, 3.8 on) and the manage itself, `POST
//! /os-volume-manage` and, from 3.8, `POST /manageable_volumes`, both with `{"volume": {"host", "ref", "name",
//! "description", "volume_type", "availability_zone", "bootable",
//! "metadata"}}`, answering 202 with the new volume (`creating`). The
//! unmanage is the volume action `os-unmanage` (`actions.rs`). Semantics:
//! `scoria_core::volumes::{manage, manageable}`.

use axum::Json;
use axum::extract::{Extension, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scoria_core::Op;
use scoria_core::volumes::{self, ManageRequest, Manageable};
use serde_json::{Value, json};

use super::{admin_fields, detail};
use crate::State;
use crate::auth::Auth;
use crate::body::{self, JsonBody};
use crate::fault::{ApiError, ApiResult};
use crate::microversion::Version;
use crate::path::{PathParams, links_base};
use crate::query::{self, Params, SortKeys};

/// Microversion from which `/manageable_volumes` exists.
const MANAGEABLE_VOLUMES: u32 = 8;

/// Cinder's `cluster` has no meaning here.
const NO_CLUSTERS: &str =
    "Invalid input received: Scoria has no clusters; name the backend as host (scoria@<backend>).";

/// Before 3.8, `/manageable_volumes` is not there.
fn since_3_8(v: Version) -> ApiResult<()> {
    if v.at_least(MANAGEABLE_VOLUMES) {
        Ok(())
    } else {
        Err(ApiError::not_found("The resource could not be found."))
    }
}

/// `POST /os-volume-manage`.
pub async fn os_volume_manage(
    state: AxState<State>,
    auth: Auth,
    v: Extension<Version>,
    path: PathParams,
    body: JsonBody,
) -> ApiResult<Response> {
    manage(state, auth, v, path, body).await
}

/// `POST /manageable_volumes` (3.8 on; before, the route does not exist).
pub async fn manageable_volumes(
    state: AxState<State>,
    auth: Auth,
    v: Extension<Version>,
    path: PathParams,
    body: JsonBody,
) -> ApiResult<Response> {
    since_3_8(v.0)?;
    manage(state, auth, v, path, body).await
}

async fn manage(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    Extension(v): Extension<Version>,
    path: PathParams,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    // Policy first: a caller without the right learns nothing of the body.
    ctx.authorize(Op::VolumeManage)?;
    let vol = body::object(&body, "volume")?;
    body::only(
        vol,
        "volume",
        &[
            "host",
            "cluster",
            "ref",
            "name",
            "description",
            "volume_type",
            "availability_zone",
            "bootable",
            "metadata",
        ],
    )?;
    if vol.get("cluster").is_some_and(|c| !c.is_null()) {
        return Err(ApiError::bad_request(NO_CLUSTERS));
    }
    let host = body::opt_str(vol, "host")?.ok_or_else(|| {
        ApiError::bad_request("Invalid input received: host is required: scoria@<backend>.")
    })?;
    let reference = match vol.get("ref") {
        Some(Value::Object(r)) => r.clone(),
        _ => {
            return Err(ApiError::bad_request(
                "Invalid input for field/attribute ref: an object is required, e.g. {\"source-name\": \"volume-<id>\"}.",
            ));
        }
    };
    let req = ManageRequest {
        host,
        reference,
        name: body::opt_str(vol, "name")?,
        description: body::opt_str(vol, "description")?,
        volume_type: body::opt_str(vol, "volume_type")?,
        availability_zone: body::opt_str(vol, "availability_zone")?,
        bootable: body::boolean(vol, "bootable")?.unwrap_or(false),
        metadata: body::opt_metadata(vol, "metadata")?.unwrap_or_default(),
    };
    let view = volumes::manage(&state.app, &ctx, req).await?;
    let links = links_base(&state, &ctx, &path);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"volume": detail(&view, admin_fields(&ctx), false, v, &links, false)})),
    )
        .into_response())
}

/// What `GET /manageable_volumes` sorts on (Cinder takes these two).
#[derive(Clone, Copy)]
enum SortKey {
    Reference,
    Size,
}

const SORT_KEYS: SortKeys<SortKey> = SortKeys {
    parse: |k| match k {
        "reference" => Some(SortKey::Reference),
        "size" => Some(SortKey::Size),
        _ => None,
    },
    default: SortKey::Reference,
};

/// A page's `marker`: the reference of the last file of the page before,
/// as Cinder takes it (`{"source-name": "<file>"}`), or the bare file name.
#[derive(PartialEq)]
struct Marker(String);

impl std::str::FromStr for Marker {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(o)) => match o.get("source-name") {
                Some(Value::String(n)) if o.len() == 1 => Ok(Marker(n.clone())),
                _ => Err(()),
            },
            _ => Ok(Marker(s.to_owned())),
        }
    }
}

/// `GET /manageable_volumes?host=scoria@<backend>` (3.8 on).
pub async fn list_manageable(
    state: AxState<State>,
    auth: Auth,
    v: Extension<Version>,
    q: Params,
) -> ApiResult<Json<Value>> {
    list(state, auth, v, q, false).await
}

/// `GET /manageable_volumes/detail?host=scoria@<backend>` (3.8 on).
pub async fn list_manageable_detail(
    state: AxState<State>,
    auth: Auth,
    v: Extension<Version>,
    q: Params,
) -> ApiResult<Json<Value>> {
    list(state, auth, v, q, true).await
}

async fn list(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    Extension(v): Extension<Version>,
    q: Params,
    detail: bool,
) -> ApiResult<Json<Value>> {
    since_3_8(v)?;
    ctx.authorize(Op::VolumeListManageable)?;
    if q.get("cluster").is_some() {
        return Err(ApiError::bad_request(NO_CLUSTERS));
    }
    let host = q.get("host").filter(|h| !h.is_empty()).ok_or_else(|| {
        ApiError::bad_request("Invalid input received: host is required: scoria@<backend>.")
    })?;
    // Cinder sorts these by reference, descending, unless asked otherwise.
    let mut sort = query::sort(&q, &SORT_KEYS)?;
    if sort.is_empty() {
        sort.push((SortKey::Reference, volumes::SortDir::Desc));
    }
    let mut list = volumes::manageable(&state.app, &ctx, host).await?;
    query::sort_in_memory(&mut list, &sort, |m, k| match k {
        SortKey::Reference => m.source_name.clone(),
        SortKey::Size => format!("{:020}", m.size),
    });
    let list = query::page_in_memory(&q, list, |m| Marker(m.source_name.clone()))?;
    let view = |m: &Manageable| {
        let mut o = json!({
            "reference": {"source-name": m.source_name},
            "size": m.size,
            "safe_to_manage": m.safe_to_manage,
        });
        if detail {
            o["reason_not_safe"] = json!(m.reason_not_safe);
            o["cinder_id"] = Value::Null;
            o["extra_info"] = json!(m.extra_info());
            // Scoria's: what the file is to the others, for tools.
            o["format"] = json!(m.format);
            o["backing_chain"] = json!(m.backing_chain);
            o["referenced_by"] = json!(m.referenced_by);
        }
        o
    };
    Ok(Json(
        json!({"manageable-volumes": list.iter().map(view).collect::<Vec<_>>()}),
    ))
}
