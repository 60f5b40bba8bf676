//! `POST /v3/{project_id}/snapshots/{id}/action`: the snapshot actions, one
//! row of [`ACTIONS`] each (see [`crate::action`]): an admin's
//! `os-reset_status`, `os-force_delete` and `os-unmanage`, and `os-update_snapshot_status`,
//! which Nova sends while it takes a snapshot of an attached volume itself.

use axum::extract::{Extension, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scoria_core::snapshots;
use scoria_model::SnapshotId;
use scoria_model::snapshot::SnapshotStatus;

use super::path_id;
use crate::State;
use crate::action::{self, Action, Call};
use crate::auth::Auth;
use crate::body::{self, JsonBody};
use crate::fault::{ApiError, ApiResult};
use crate::microversion::Version;
use crate::path::PathParams;

/// Every snapshot action, by Cinder's name.
pub const ACTIONS: &[Action<SnapshotId>] = &[
    Action::new("os-reset_status", |c| Box::pin(reset_status(c))),
    Action::new("os-force_delete", |c| Box::pin(force_delete(c))),
    Action::new("os-update_snapshot_status", |c| Box::pin(update_status(c))),
    Action::new("os-unmanage", |c| Box::pin(unmanage(c))),
];

/// The route: the snapshot, then its one action.
pub async fn dispatch(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    Extension(version): Extension<Version>,
    path: PathParams,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    action::dispatch(ACTIONS, &state.app, &ctx, version, path_id(&path)?, &body).await
}

fn accepted() -> ApiResult<Response> {
    Ok(StatusCode::ACCEPTED.into_response())
}

/// The `status` argument of `action`, required.
fn status_arg(c: &Call<'_, SnapshotId>, action: &str) -> ApiResult<SnapshotStatus> {
    let raw = body::opt_str(c.args, "status")?.ok_or_else(|| {
        ApiError::bad_request(format!(
            "Invalid input for field/attribute {action}: 'status' is a required property."
        ))
    })?;
    raw.parse::<SnapshotStatus>().map_err(|_| {
        ApiError::bad_request(format!(
            "Invalid input received: Invalid snapshot status {raw}."
        ))
    })
}

/// `os-reset_status` `{"status": s}` (admin, 202).
async fn reset_status(c: Call<'_, SnapshotId>) -> ApiResult<Response> {
    body::only(c.args, "os-reset_status", &["status"])?;
    let status = status_arg(&c, "os-reset_status")?;
    snapshots::reset_status(c.app, c.ctx, c.id, status).await?;
    accepted()
}

/// `os-force_delete` (admin, 202): from any status.
async fn force_delete(c: Call<'_, SnapshotId>) -> ApiResult<Response> {
    snapshots::delete(c.app, c.ctx, c.id, true).await?;
    accepted()
}

/// `os-unmanage` (admins, 202): the snapshot leaves Scoria, its data stays
/// in its volume's chain as `snapshot-<id>`, which `os-snapshot-manage`
/// takes back.
async fn unmanage(c: Call<'_, SnapshotId>) -> ApiResult<Response> {
    snapshots::unmanage(c.app, c.ctx, c.id).await?;
    accepted()
}

/// `os-update_snapshot_status` `{"status": s, "progress": "NN%"}` (202).
async fn update_status(c: Call<'_, SnapshotId>) -> ApiResult<Response> {
    body::only(c.args, "os-update_snapshot_status", &["status", "progress"])?;
    let status = status_arg(&c, "os-update_snapshot_status")?;
    let progress = body::opt_str(c.args, "progress")?
        .map(|p| parse_progress(&p))
        .transpose()?;
    snapshots::update_status(c.app, c.ctx, c.id, status, progress).await?;
    accepted()
}

/// Nova reports progress as a percentage string (`"73%"`).
fn parse_progress(p: &str) -> ApiResult<u8> {
    p.strip_suffix('%')
        .and_then(|n| n.parse::<u8>().ok())
        .filter(|n| *n <= 100)
        .ok_or_else(|| ApiError::bad_request("progress must be an integer percentage"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_action_is_named_once() {
        let mut names: Vec<&str> = ACTIONS.iter().map(|a| a.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ACTIONS.len());
    }

    #[test]
    fn progress_is_a_percentage() {
        assert_eq!(parse_progress("0%").unwrap(), 0);
        assert_eq!(parse_progress("80%").unwrap(), 80);
        assert_eq!(parse_progress("100%").unwrap(), 100);
        for bad in ["80", "101%", "-1%", "%", "eighty%", "8 0%"] {
            assert_eq!(parse_progress(bad).unwrap_err().status, 400, "{bad}");
        }
    }
}
