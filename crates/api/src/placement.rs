//! Scoria's placement extensions (admin): `GET /volumes/{id}/placement`, the
//! record of every attempt to place a volume's create, and `POST
//! /scheduler-stats/placement`, a dry run saying where a volume would go and
//! why (nothing is created).

use axum::Json;
use axum::extract::State as AxState;
use scoria_core::Op;
use scoria_core::placement::{self, DryRunRequest};
use serde_json::{Value, json};

use crate::State;
use crate::auth::Auth;
use crate::body::{self, JsonBody};
use crate::fault::{ApiError, ApiResult};
use crate::path::{PathParams, seg};

/// `GET /volumes/{id}/placement`.
pub async fn show(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: PathParams,
) -> ApiResult<Json<Value>> {
    let rows = placement::volume_placements(&state.app, &ctx, seg(&path, "id")).await?;
    let placements: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "attempt": r.attempt,
                "backend": r.backend,
                "outcome": r.outcome,
                "decision": r.decision,
                "created_at": r.created_at,
            })
        })
        .collect();
    Ok(Json(json!({ "placements": placements })))
}

/// `POST /scheduler-stats/placement` with `{"volume": {"size",
/// "volume_type", "availability_zone"}}` and, as on a create,
/// `OS-SCH-HNT:scheduler_hints`.
pub async fn dry_run(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    // Policy first: a caller without the right learns nothing of the body.
    ctx.authorize(Op::PlacementDryRun)?;
    let vol = body::object(&body, "volume")?;
    body::only(vol, "volume", &["size", "volume_type", "availability_zone"])?;
    let size = body::int(vol, "size")?
        .ok_or_else(|| ApiError::bad_request("Missing required element 'size' in request body."))?;
    let req = DryRunRequest {
        size,
        volume_type: body::opt_str(vol, "volume_type")?,
        availability_zone: body::opt_str(vol, "availability_zone")?,
        hints: crate::hints::parse(&body)?,
    };
    let d = placement::dry_run(&state.app, &ctx, &req).await?;
    Ok(Json(json!({
        "placement": {
            "backend": d.backend,
            "decision": d.decision,
        }
    })))
}
