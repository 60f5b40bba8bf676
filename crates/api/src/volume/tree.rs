//! `GET /v3/{project_id}/scoria-volumes/{id}/tree` (admin): the images a
//! volume stands on, its active image first, and for each the snapshots that
//! captured it and the other volumes layered on it — why each image is kept.
//! Not a Cinder API; the `scoria-` prefix keeps it out of Cinder's namespace.

use axum::Json;
use axum::extract::State as AxState;
use scoria_core::volumes::{self, ImageNode};
use serde_json::{Value, json};

use super::path_id;
use crate::State;
use crate::auth::Auth;
use crate::fault::ApiResult;
use crate::path::PathParams;

fn node(n: &ImageNode) -> Value {
    json!({
        "id": n.id.to_string(),
        "backend": n.backend,
        "name": n.name,
        "format": n.format,
        "virtual_size": n.virtual_size,
        "mutable": n.mutable,
        "state": n.state.as_str(),
        "health": n.health.as_str(),
        "health_reason": n.health_reason,
        "snapshots": n.snapshots.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "dependents": n.dependents.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "cache_of": n.cache_of,
    })
}

/// `{"tree": {"volume_id", "chain": [image, …]}}`; `virtual_size` in bytes.
pub async fn show(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: PathParams,
) -> ApiResult<Json<Value>> {
    let t = volumes::tree(&state.app, &ctx, path_id(&path)?).await?;
    Ok(Json(json!({"tree": {
        "volume_id": t.volume.to_string(),
        "chain": t.chain.iter().map(node).collect::<Vec<_>>(),
    }})))
}
