//! `POST /v3/{project_id}/volumes/{id}/action`: the volume actions, one row
//! of [`ACTIONS`] each (see [`crate::action`]). The legacy attachment
//! actions (`os-attach`, `os-detach`, `os-initialize_connection`, …) are
//! rows over `scoria_core::attachments`.

use axum::extract::{Extension, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scoria_core::attachments;
use scoria_core::volumes::{self, MigrationPolicy};
use scoria_model::glance::Visibility;
use scoria_model::volume::{AttachStatus, VolumeStatus};
use scoria_model::{SnapshotId, VolumeId};

use super::path_id;
use crate::State;
use crate::action::{self, Action, Call};
use crate::auth::Auth;
use crate::body::{self, JsonBody};
use crate::fault::{ApiError, ApiResult};
use crate::microversion::Version;
use crate::path::PathParams;

/// Every volume action, by Cinder's name.
pub const ACTIONS: &[Action<VolumeId>] = &[
    Action::new("os-extend", |c| Box::pin(extend(c))),
    Action::new("os-set_bootable", |c| Box::pin(set_bootable(c))),
    Action::new("os-update_readonly_flag", |c| Box::pin(set_readonly(c))),
    Action::new("os-reset_status", |c| Box::pin(reset_status(c))),
    Action::new("os-force_delete", |c| Box::pin(force_delete(c))),
    Action::new("os-unmanage", |c| Box::pin(unmanage(c))),
    Action::new("os-retype", |c| Box::pin(retype(c))),
    Action::new("os-migrate_volume", |c| Box::pin(migrate(c))),
    Action::new("os-migrate_volume_completion", |c| {
        Box::pin(migrate_completion(c))
    }),
    Action::new("os-reserve", |c| Box::pin(reserve(c))),
    Action::new("os-unreserve", |c| Box::pin(unreserve(c))),
    Action::new("os-initialize_connection", |c| {
        Box::pin(initialize_connection(c))
    }),
    Action::new("os-terminate_connection", |c| {
        Box::pin(terminate_connection(c))
    }),
    Action::new("os-attach", |c| Box::pin(attach(c))),
    Action::new("os-detach", |c| Box::pin(detach(c))),
    Action::new("os-begin_detaching", |c| Box::pin(begin_detaching(c))),
    Action::new("os-roll_detaching", |c| Box::pin(roll_detaching(c))),
    Action::new("os-force_detach", |c| Box::pin(force_detach(c))),
    Action::new("revert", |c| Box::pin(revert(c))).since(REVERT),
    Action::new("os-set_image_metadata", |c| Box::pin(set_image_metadata(c))),
    Action::new("os-unset_image_metadata", |c| {
        Box::pin(unset_image_metadata(c))
    }),
    Action::new("os-show_image_metadata", |c| {
        Box::pin(show_image_metadata(c))
    }),
    Action::new("os-volume_upload_image", |c| Box::pin(upload_image(c))),
];

/// Microversion from which an upload names the image's visibility and
/// protection.
const UPLOAD_IMAGE_PARAMS: u32 = 1;
/// From 3.42 an `in-use` volume can be extended.
const EXTEND_IN_USE: u32 = 42;

/// Microversion from which `os-migrate_volume` takes a `cluster`.
const MIGRATE_CLUSTER: u32 = 16;

/// Microversion from which a volume may be reverted to a snapshot.
const REVERT: u32 = 40;

/// The route: the volume, then its one action.
pub async fn dispatch(
    AxState(state): AxState<State>,
    Auth(ctx): Auth,
    Extension(version): Extension<Version>,
    path: PathParams,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    action::dispatch(ACTIONS, &state.app, &ctx, version, path_id(&path)?, &body).await
}

/// The migration statuses an admin may set (Cinder's `os-reset_status`
/// schema).
const MIGRATION_STATUSES: &[&str] = &[
    "migrating",
    "error",
    "success",
    "completing",
    "none",
    "starting",
];

fn accepted() -> ApiResult<Response> {
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `os-extend` `{"new_size": n}` (202).
async fn extend(c: Call<'_, VolumeId>) -> ApiResult<Response> {
    let size = body::int(c.args, "new_size")?.ok_or_else(|| {
        ApiError::bad_request("Invalid input for os-extend: new_size is required.")
    })?;
    volumes::extend(c.app, c.ctx, c.id, size, c.version.at_least(EXTEND_IN_USE)).await?;
    accepted()
}

/// `os-set_bootable` `{"bootable": b}` (200).
async fn set_bootable(c: Call<'_, VolumeId>) -> ApiResult<Response> {
    let b = body::boolean(c.args, "bootable")?.ok_or_else(|| {
        ApiError::bad_request("Invalid input for os-set_bootable: bootable is required.")
    })?;
    volumes::set_bootable(c.app, c.ctx, c.id, b).await?;
    Ok(StatusCode::OK.into_response())
}

/// `os-set_image_metadata` `{"metadata": {…}}`: merged; 200 with all of it.
async fn set_image_metadata(c: Call<'_, VolumeId>) -> ApiResult<Response> {
    let items = body::opt_metadata(c.args, "metadata")?.ok_or_else(|| {
        ApiError::bad_request("Malformed request body: os-set_image_metadata needs metadata.")
    })?;
    let all = volumes::image_metadata_set(c.app, c.ctx, c.id, items).await?;
    Ok(axum::Json(serde_json::json!({ "metadata": all })).into_response())
}

/// `os-unset_image_metadata` `{"key": k}` (200, no body).
async fn unset_image_metadata(c: Call<'_, VolumeId>) -> ApiResult<Response> {
    let key = body::opt_str(c.args, "key")?
        .ok_or_else(|| ApiError::bad_request("The key cannot be None."))?;
    volumes::image_metadata_delete(c.app, c.ctx, c.id, &key).await?;
    Ok(StatusCode::OK.into_response())
}

/// `os-show_image_metadata` (200, `{"metadata": {…}}`).
async fn show_image_metadata(c: Call<'_, VolumeId>) -> ApiResult<Response> {
    let all = volumes::image_metadata_get(c.app, c.ctx, c.id).await?;
    Ok(axum::Json(serde_json::json!({ "metadata": all })).into_response())
}

/// `os-volume_upload_image` `{"image_name", "disk_format", "container_format",
/// "force", "visibility", "protected"}` (202): the volume's data goes into a
/// new image; the answer names it.
async fn upload_image(c: Call<'_, VolumeId>) -> ApiResult<Response> {
    let image_name = body::opt_str(c.args, "image_name")?
        .ok_or_else(|| ApiError::bad_request("No image_name was specified in request."))?;
    let force = body::boolean(c.args, "force")?.unwrap_or(false);
    let (mut visibility, mut protected) = (Visibility::Private, false);
    if c.version.at_least(UPLOAD_IMAGE_PARAMS) {
        if let Some(v) = body::opt_str(c.args, "visibility")? {
            visibility = v.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "Invalid input received: visibility {v} is not one of public, private, shared, community."
                ))
            })?;
        }
        protected = body::boolean(c.args, "protected")?.unwrap_or(false);
    }
    let req = volumes::UploadRequest {
        image_name,
        disk_format: body::opt_str(c.args, "disk_format")?.unwrap_or_else(|| "raw".into()),
        container_format: body::opt_str(c.args, "container_format")?
            .unwrap_or_else(|| "bare".into()),
        force,
        visibility,
        protected,
    };
    let (disk_format, container_format, name) = (
        req.disk_format.clone(),
        req.container_format.clone(),
        req.image_name.clone(),
    );
    let up = volumes::upload_to_image(c.app, c.ctx, c.id, req).await?;
    let v = &up.volume.volume;
    let mut o = serde_json::json!({
        "id": v.id.to_string(),
        "updated_at": v.updated_at,
        "status": v.status.as_str(),
        "display_description": v.description,
        "size": v.size,
        "volume_type": {
            "id": v.volume_type_id.to_string(),
            "name": up.volume.volume_type_name,
        },
        "image_id": up.image_id.to_string(),
        "container_format": container_format,
        "disk_format": disk_format,
        "image_name": name,
    });
    if c.version.at_least(UPLOAD_IMAGE_PARAMS) {
        o["visibility"] = serde_json::json!(visibility.as_str());
        o["protected"] = serde_json::json!(protected);
    }
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({ "os-volume_upload_image": o })),
    )
        .into_response())
}

/// `os-update_readonly_flag` `{"readonly": b}` (202).
async fn set_readonly(c: Call<'_, VolumeId>) -> ApiResult<Response> {
    let r = body::boolean(c.args, "readonly")?.ok_or_else(|| {
        ApiError::bad_request("Invalid input for os-update_readonly_flag: readonly is required.")
    })?;
    volumes::set_readonly(c.app, c.ctx, c.id, r).await?;
    accepted()
}

/// `os-reset_status` `{"status", "attach_status", "migration_status"}`, at
/// least one (202).
async fn reset_status(c: Call<'_, VolumeId>) -> ApiResult<Response> {
    let status = body::opt_str(c.args, "status")?
        .map(|s| {
            s.to_ascii_lowercase().parse::<VolumeStatus>().map_err(|_| {
                ApiError::bad_request(format!("Invalid input received: Invalid status {s}."))
            })
        })
        .transpose()?;
    let attach = body::opt_str(c.args, "attach_status")?
        .map(|s| {
            s.parse::<AttachStatus>().map_err(|_| {
                ApiError::bad_request(format!(
                    "Invalid input received: Invalid attach status {s}."
                ))
            })
        })
        .transpose()?;
    // Cinder's schema: one of its migration statuses, or null.
    let migration = body::nullable_str(c.args, "migration_status")?
        .map(|m| {
            m.map(|s| {
                let l = s.to_ascii_lowercase();
                if MIGRATION_STATUSES.contains(&l.as_str()) {
                    Ok(l)
                } else {
                    Err(ApiError::bad_request(format!(
                        "Invalid input for field/attribute migration_status. Value: {s}. '{s}' is not one of {MIGRATION_STATUSES:?}"
                    )))
                }
            })
            .transpose()
        })
        .transpose()?;
    if status.is_none() && attach.is_none() && migration.is_none() {
        return Err(ApiError::bad_request(
            "Must specify 'status', 'attach_status' or 'migration_status' for update.",
        ));
    }
    volumes::reset_status(c.app, c.ctx, c.id, status, attach, migration).await?;
    accepted()
}

/// `os-force_delete` (202).
async fn force_delete(c: Call<'_, VolumeId>) -> ApiResult<Response> {
    volumes::delete(c.app, c.ctx, c.id, true, false).await?;
    accepted()
}

/// `os-unmanage` (admins, 202): the volume leaves Scoria, its data stays on
/// its backend as `volume-<id>.<format>`.
async fn unmanage(c: Call<'_, VolumeId>) -> ApiResult<Response> {
    volumes::unmanage(c.app, c.ctx, c.id).await?;
    accepted()
}

/// `os-retype` `{"new_type", "migration_policy"}` (202).
async fn retype(c: Call<'_, VolumeId>) -> ApiResult<Response> {
    body::only(c.args, "os-retype", &["new_type", "migration_policy"])?;
    let new_type = body::opt_str(c.args, "new_type")?.ok_or_else(|| {
        ApiError::bad_request("Invalid input for os-retype: new_type is required.")
    })?;
    let policy = match body::opt_str(c.args, "migration_policy")?.as_deref() {
        None | Some("never") => MigrationPolicy::Never,
        Some("on-demand") => MigrationPolicy::OnDemand,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid input for field/attribute migration_policy. Value: {other}. It is not one of ['on-demand', 'never']."
            )));
        }
    };
    volumes::retype(c.app, c.ctx, c.id, &new_type, policy).await?;
    accepted()
}

/// `os-migrate_volume` `{"host", "force_host_copy", "lock_volume"}`, from
/// 3.16 also `"cluster"` (202, admins): the volume's data moves to another
/// backend.
async fn migrate(c: Call<'_, VolumeId>) -> ApiResult<Response> {
    let cluster_ok = c.version.at_least(MIGRATE_CLUSTER);
    let allowed: &[&str] = if cluster_ok {
        &["host", "cluster", "force_host_copy", "lock_volume"]
    } else {
        &["host", "force_host_copy", "lock_volume"]
    };
    body::only(c.args, "os-migrate_volume", allowed)?;
    let req = volumes::MigrateRequest {
        host: body::opt_str(c.args, "host")?,
        cluster: if cluster_ok {
            body::opt_str(c.args, "cluster")?
        } else {
            None
        },
        force_host_copy: body::boolean(c.args, "force_host_copy")?.unwrap_or(false),
        lock_volume: body::boolean(c.args, "lock_volume")?.unwrap_or(false),
    };
    volumes::migrate(c.app, c.ctx, c.id, req).await?;
    accepted()
}

/// `os-migrate_volume_completion` `{"new_volume", "error"}` (200, admins):
/// `{"save_volume_id": id}`; see `scoria_core::volumes::migrate_completion`.
async fn migrate_completion(c: Call<'_, VolumeId>) -> ApiResult<Response> {
    body::only(
        c.args,
        "os-migrate_volume_completion",
        &["new_volume", "error"],
    )?;
    let raw = body::opt_str(c.args, "new_volume")?.ok_or_else(|| {
        ApiError::bad_request(
            "Invalid input for field/attribute os-migrate_volume_completion: 'new_volume' is a required property.",
        )
    })?;
    let new_volume = raw.parse::<VolumeId>().map_err(|_| {
        ApiError::bad_request(format!(
            "Invalid input for field/attribute new_volume. Value: {raw}. '{raw}' is not a 'uuid'"
        ))
    })?;
    let error = body::boolean(c.args, "error")?.unwrap_or(false);
    let saved = volumes::migrate_completion(c.app, c.ctx, c.id, new_volume, error).await?;
    Ok(axum::Json(serde_json::json!({"save_volume_id": saved.to_string()})).into_response())
}

/// `revert` `{"snapshot_id": id}` (3.40, 202): the volume reads as the
/// snapshot did. Cinder reverts to the latest snapshot only; Scoria to any
/// snapshot of the volume.
async fn revert(c: Call<'_, VolumeId>) -> ApiResult<Response> {
    body::only(c.args, "revert", &["snapshot_id"])?;
    let raw = body::opt_str(c.args, "snapshot_id")?.ok_or_else(|| {
        ApiError::bad_request(
            "Invalid input for field/attribute revert: 'snapshot_id' is a required property.",
        )
    })?;
    let snapshot = raw.parse::<SnapshotId>().map_err(|_| {
        ApiError::bad_request(format!(
            "Invalid input for field/attribute snapshot_id. Value: {raw}. '{raw}' is not a 'uuid'"
        ))
    })?;
    volumes::revert(c.app, c.ctx, c.id, snapshot).await?;
    accepted()
}

/// `os-reserve` (202).
async fn reserve(c: Call<'_, VolumeId>) -> ApiResult<Response> {
    volumes::reserve(c.app, c.ctx, c.id).await?;
    accepted()
}

/// `os-unreserve` (202).
async fn unreserve(c: Call<'_, VolumeId>) -> ApiResult<Response> {
    volumes::unreserve(c.app, c.ctx, c.id).await?;
    accepted()
}

/// The `connector` object of an action.
fn connector_of(c: &Call<'_, VolumeId>, action: &str) -> ApiResult<serde_json::Value> {
    match c.args.get("connector") {
        Some(v @ serde_json::Value::Object(_)) => Ok(v.clone()),
        Some(_) => Err(ApiError::bad_request(format!(
            "Invalid input for {action}: connector must be an object."
        ))),
        None => Err(ApiError::bad_request(format!(
            "Invalid input for {action}: connector is required."
        ))),
    }
}

fn attachment_id_of(c: &Call<'_, VolumeId>) -> ApiResult<Option<scoria_model::AttachmentId>> {
    body::opt_str(c.args, "attachment_id")?
        .map(|raw| {
            raw.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "Invalid input for field/attribute attachment_id. Value: {raw}. '{raw}' is not a 'uuid'."
                ))
            })
        })
        .transpose()
}

/// `os-initialize_connection` `{"connector": {...}}` (200,
/// `{"connection_info": {"driver_volume_type": "nbd", "data": {...}}}`).
async fn initialize_connection(c: Call<'_, VolumeId>) -> ApiResult<Response> {
    body::only(c.args, "os-initialize_connection", &["connector"])?;
    let connector = connector_of(&c, "os-initialize_connection")?;
    let ci = attachments::initialize_connection(c.app, c.ctx, c.id, connector).await?;
    Ok(axum::Json(
        serde_json::json!({"connection_info": crate::attachments::connection_nested(&ci)}),
    )
    .into_response())
}

/// `os-terminate_connection` `{"connector": {...}}` (202).
async fn terminate_connection(c: Call<'_, VolumeId>) -> ApiResult<Response> {
    body::only(c.args, "os-terminate_connection", &["connector"])?;
    let connector = connector_of(&c, "os-terminate_connection")?;
    attachments::terminate_connection(c.app, c.ctx, c.id, connector).await?;
    accepted()
}

/// `os-attach` `{"instance_uuid", "host_name", "mountpoint", "mode"}` (202).
async fn attach(c: Call<'_, VolumeId>) -> ApiResult<Response> {
    body::only(
        c.args,
        "os-attach",
        &["instance_uuid", "host_name", "mountpoint", "mode"],
    )?;
    let instance = body::opt_str(c.args, "instance_uuid")?;
    let host = body::opt_str(c.args, "host_name")?;
    if instance.is_none() && host.is_none() {
        return Err(ApiError::bad_request(
            "Invalid request to attach volume to an invalid target",
        ));
    }
    let mountpoint = body::opt_str(c.args, "mountpoint")?;
    if let Some(m) = body::opt_str(c.args, "mode")?
        && m != "rw"
        && m != "ro"
    {
        return Err(ApiError::bad_request(
            "Invalid request to attach volume with an invalid mode. Attaching mode should be 'rw' or 'ro'",
        ));
    }
    attachments::legacy_attach(c.app, c.ctx, c.id, instance, host, mountpoint).await?;
    accepted()
}

/// `os-detach` `{"attachment_id"}` (202).
async fn detach(c: Call<'_, VolumeId>) -> ApiResult<Response> {
    body::only(c.args, "os-detach", &["attachment_id"])?;
    let id = attachment_id_of(&c)?;
    attachments::legacy_detach(c.app, c.ctx, c.id, id).await?;
    accepted()
}

/// `os-begin_detaching` (202).
async fn begin_detaching(c: Call<'_, VolumeId>) -> ApiResult<Response> {
    attachments::begin_detaching(c.app, c.ctx, c.id).await?;
    accepted()
}

/// `os-roll_detaching` (202).
async fn roll_detaching(c: Call<'_, VolumeId>) -> ApiResult<Response> {
    attachments::roll_detaching(c.app, c.ctx, c.id).await?;
    accepted()
}

/// `os-force_detach` `{"attachment_id", "connector"}` (202, admins).
async fn force_detach(c: Call<'_, VolumeId>) -> ApiResult<Response> {
    body::only(c.args, "os-force_detach", &["attachment_id", "connector"])?;
    let id = attachment_id_of(&c)?;
    attachments::force_detach(c.app, c.ctx, c.id, id).await?;
    accepted()
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
}
