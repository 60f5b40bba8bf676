//! Cinder's snapshot manage (admins): `GET /manageable_snapshots[/detail]`
//! (3.8 on), and `POST /os-snapshot-manage` or, from 3.8, `POST
//! /manageable_snapshots` with `{"snapshot": {"volume_id", "ref", "name",
//! "description", "metadata"}}`, answering 202 with the new snapshot. The
//! unmanage is the snapshot action `os-unmanage` (`actions.rs`). Semantics:
//! `scoria_core::snapshots::{manage, manageable}`.

use axum::Json;
use axum::extract::{Extension, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scoria_core::Op;
use scoria_core::snapshots::{self, ManageRequest, ManageableSnapshot};
use serde_json::{Value, json};

use crate::State;
use crate::auth::Auth;
use crate::body::{self, JsonBody};
use crate::fault::{ApiError, ApiResult};
use crate::manageable::{self, since_3_8};
use crate::microversion::Version;
use crate::query::Params;

/// `POST /os-snapshot-manage`.
pub async fn os_snapshot_manage(
    state: AxState<State>,
    auth: Auth,
    body: JsonBody,
) -> ApiResult<Response> {
    manage(state, auth, body).await
}

/// `POST /manageable_snapshots` (3.8 on; before, the route does not exist).
pub async fn manageable_snapshots(
    state: AxState<State>,
    auth: Auth,
    v: Extension<Version>,
    body: JsonBody,
) -> ApiResult<Response> {
    since_3_8(v.0)?;
    manage(state, auth, body).await
}

async fn manage(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    // Policy first: a caller without the right learns nothing of the body.
    ctx.authorize(Op::SnapshotManage)?;
    let snap = body::object(&body, "snapshot")?;
    body::only(
        snap,
        "snapshot",
        &["volume_id", "ref", "name", "description", "metadata"],
    )?;
    let reference = match snap.get("ref") {
        Some(Value::Object(r)) => r.clone(),
        _ => {
            return Err(ApiError::bad_request(
                "Invalid input for field/attribute ref: an object is required, e.g. {\"source-name\": \"snapshot-<id>\"}.",
            ));
        }
    };
    let req = ManageRequest {
        volume_id: body::opt_str(snap, "volume_id")?,
        reference,
        name: body::opt_str(snap, "name")?,
        description: body::opt_str(snap, "description")?,
        metadata: body::opt_metadata(snap, "metadata")?.unwrap_or_default(),
    };
    let view = snapshots::manage(&state.app, &ctx, req).await?;
    // Cinder answers a manage with the summary fields only.
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"snapshot": super::view::summary(&view, false)})),
    )
        .into_response())
}

/// `GET /manageable_snapshots?host=scoria@<backend>` (3.8 on).
pub async fn list_manageable(
    state: AxState<State>,
    auth: Auth,
    v: Extension<Version>,
    q: Params,
) -> ApiResult<Json<Value>> {
    list(state, auth, v, q, false).await
}

/// `GET /manageable_snapshots/detail?host=scoria@<backend>` (3.8 on).
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
    let host = manageable::list_host(v, &ctx, Op::SnapshotListManageable, &q)?;
    let list = snapshots::manageable(&state.app, &ctx, host).await?;
    let list = manageable::sort_and_page(&q, list, |m| &m.source_name, |m| m.size)?;
    let view = |m: &ManageableSnapshot| {
        let mut o = manageable::Entry {
            name: &m.source_name,
            size: m.size,
            safe: m.safe_to_manage,
            reason_not_safe: m.reason_not_safe.as_deref(),
            extra_info: m.extra_info(),
        }
        .to_json(detail);
        o["source_reference"] = json!({"source-id": m.volume_id.to_string()});
        o
    };
    Ok(Json(
        json!({"manageable-snapshots": list.iter().map(view).collect::<Vec<_>>()}),
    ))
}
