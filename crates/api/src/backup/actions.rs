//! `POST /v3/{project_id}/backups/{id}/action`: an admin's `os-reset_status`
//! and `os-force_delete` (Cinder's), and `scoria-verify` (Scoria's: check
//! every chunk of the backup without restoring it); and Cinder's backup
//! records: `GET /backups/{id}/export_record`, `POST /backups/import_record`.

use axum::Json;
use axum::extract::{Extension, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scoria_core::backups::admin;
use scoria_model::BackupId;
use serde_json::json;

use super::{path_id, summary};
use crate::State;
use crate::action::{self, Action, Call};
use crate::auth::Auth;
use crate::body::{self, JsonBody};
use crate::fault::{ApiError, ApiResult};
use crate::microversion::Version;
use crate::path::{PathParams, links_base};

/// Every backup action, by name.
pub const ACTIONS: &[Action<BackupId>] = &[
    Action::new("os-reset_status", |c| Box::pin(reset_status(c))),
    Action::new("os-force_delete", |c| Box::pin(force_delete(c))),
    Action::new("scoria-verify", |c| Box::pin(verify(c))),
];

/// The route: the backup, then its one action.
pub async fn dispatch(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    Extension(version): Extension<Version>,
    path: PathParams,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    action::dispatch(ACTIONS, &state.app, &ctx, version, path_id(&path)?, &body).await
}

/// `os-reset_status` `{"status": "available" | "error"}` (admin, 202).
async fn reset_status(c: Call<'_, BackupId>) -> ApiResult<Response> {
    body::only(c.args, "os-reset_status", &["status"])?;
    let status = body::opt_str(c.args, "status")?.ok_or_else(|| {
        ApiError::bad_request(
            "Invalid input for field/attribute os-reset_status: 'status' is a required property.",
        )
    })?;
    admin::reset_status(c.app, c.ctx, c.id, &status).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `os-force_delete` (admin, 202).
async fn force_delete(c: Call<'_, BackupId>) -> ApiResult<Response> {
    admin::force_delete(c.app, c.ctx, c.id).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `scoria-verify` (admin, 200): `{"verify": {backup_id, chunks, bytes,
/// ok, bad: [{index, hash, problem}]}}`. Changes nothing.
async fn verify(c: Call<'_, BackupId>) -> ApiResult<Response> {
    body::only(c.args, "scoria-verify", &[])?;
    let v = admin::verify(c.app, c.ctx, c.id).await?;
    Ok(Json(json!({"verify": {
        "backup_id": v.backup_id,
        "chunks": v.chunks,
        "bytes": v.bytes,
        "ok": v.bad.is_empty(),
        "bad": v.bad,
    }}))
    .into_response())
}

/// `GET /backups/{id}/export_record` (admin): `{"backup-record":
/// {backup_service, backup_url}}`.
pub async fn export_record(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: PathParams,
) -> ApiResult<Json<serde_json::Value>> {
    let r = admin::export_record(&state.app, &ctx, path_id(&path)?).await?;
    Ok(Json(json!({"backup-record": {
        "backup_service": r.backup_service,
        "backup_url": r.backup_url,
    }})))
}

/// `POST /backups/import_record` `{"backup-record": {backup_service,
/// backup_url}}` (admin, 201, the summary view).
pub async fn import_record(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    path: PathParams,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    body::only(&body, "request body", &["backup-record"])?;
    let r = body::object(&body, "backup-record")?;
    body::only(r, "backup-record", &["backup_service", "backup_url"])?;
    let field = |name: &str| -> ApiResult<String> {
        body::opt_str(r, name)?.ok_or_else(|| {
            ApiError::bad_request(format!(
                "Invalid input for field/attribute backup-record: '{name}' is a required property."
            ))
        })
    };
    let (service, url) = (field("backup_service")?, field("backup_url")?);
    let view = admin::import_record(&state.app, &ctx, &service, &url).await?;
    let base = links_base(&state, &ctx, &path.0);
    Ok((
        StatusCode::CREATED,
        Json(json!({"backup": summary(&view, &base)})),
    )
        .into_response())
}
