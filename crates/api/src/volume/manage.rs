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
use crate::manageable::{self, NO_CLUSTERS, since_3_8};
use crate::microversion::Version;
use crate::path::{PathParams, links_base};
use crate::query::Params;

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
    let host = manageable::list_host(v, &ctx, Op::VolumeListManageable, &q)?;
    let list = volumes::manageable(&state.app, &ctx, host).await?;
    let list = manageable::sort_and_page(&q, list, |m| &m.source_name, |m| m.size)?;
    let view = |m: &Manageable| {
        let mut o = manageable::Entry {
            name: &m.source_name,
            size: m.size,
            safe: m.safe_to_manage,
            reason_not_safe: m.reason_not_safe.as_deref(),
            extra_info: m.extra_info(),
        }
        .to_json(detail);
        if detail {
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
