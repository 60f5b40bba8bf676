//! Role grants on the system: `/v3/system/users/{user_id}/roles[/{role_id}]`.

use axum::Json;
use axum::extract::{OriginalUri, State as AxState};
use axum::http::StatusCode;
use scoria_core::identity;
use serde_json::Value;

use super::error::{IdAuth, IdPath, IdResult};
use super::{base, self_link, views};
use crate::State;

type GrantPath = IdPath<(String, String)>;

pub async fn grant_create(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    IdPath((user, role)): GrantPath,
) -> IdResult<StatusCode> {
    identity::system_grant_create(&state.app, &ctx, &user, &role).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn grant_check(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    IdPath((user, role)): GrantPath,
) -> IdResult<StatusCode> {
    identity::system_grant_check(&state.app, &ctx, &user, &role).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn grant_revoke(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    IdPath((user, role)): GrantPath,
) -> IdResult<StatusCode> {
    identity::system_grant_revoke(&state.app, &ctx, &user, &role).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn grant_list(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    IdPath(user): IdPath<String>,
    uri: OriginalUri,
) -> IdResult<Json<Value>> {
    let b = base(&state);
    let roles = identity::system_grant_list(&state.app, &ctx, &user).await?;
    Ok(Json(views::list(
        "roles",
        roles.iter().map(|r| views::role(&b, r)).collect(),
        self_link(&state, &uri),
    )))
}
