//! `PUT /debug/failpoints` (admin only, and only in binaries built with the
//! `failpoints` feature): arm failpoints in a running server, e.g.
//! `{"spec": "flow.volume_create.create_on_backend.started=exit@3"}` or
//! `{"spec": "storage.copy.temp=sleep(2000)"}` (hold a copy for two seconds),
//! or disarm everything with `{"clear": true}`. Release builds have no such
//! route.

use axum::extract::State as AxState;
use axum::http::StatusCode;

use crate::State;
use crate::auth::Auth;
use crate::body::{self, JsonBody};
use crate::fault::{ApiError, ApiResult};

pub async fn failpoints(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    JsonBody(b): JsonBody,
) -> ApiResult<StatusCode> {
    if !ctx.is_admin() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Only admins may arm failpoints.",
        ));
    }
    let fp = &state.app.env.fp;
    if body::boolean(&b, "clear")?.unwrap_or(false) {
        fp.clear();
    }
    if let Some(spec) = body::opt_str(&b, "spec")? {
        fp.arm_spec(&spec).map_err(ApiError::bad_request)?;
        tracing::warn!(%spec, "failpoints armed through the debug endpoint");
    }
    Ok(StatusCode::NO_CONTENT)
}
