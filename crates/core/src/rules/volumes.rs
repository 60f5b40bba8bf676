//! A volume as the caller may see it, and the rules that keep a volume
//! readable while it is being copied (see `flows::volume_create`'s module
//! doc): every flow that would change or remove a volume asks
//! [`assert_not_held`] in its own first transaction.

use scoria_model::VolumeId;
use scoria_model::VolumeTypeId;
use scoria_store::Conn;
use scoria_store::volume_types;
use scoria_store::volumes::{self as store, Volume};

use crate::context::{Context, Op};
use crate::error::{Error, Result};

/// Parse a volume id from a URL segment: anything that is not a UUID names no
/// volume (404, as Cinder answers for `volumes/None`).
pub fn parse_id(s: &str) -> Result<VolumeId> {
    s.parse::<VolumeId>()
        .map_err(|_| Error::volume_not_found(s))
}

/// Load a volume the caller may see: their project's, or any for an admin.
/// Another project's volume is reported absent.
pub(crate) async fn visible(conn: &mut Conn, ctx: &Context, id: VolumeId) -> Result<Volume> {
    let v = store::volume_get(conn, id).await?;
    match v {
        Some(v)
            if ctx.is_admin() || ctx.project_id.as_ref().is_some_and(|p| p.0 == v.project_id) =>
        {
            Ok(v)
        }
        _ => Err(Error::volume_not_found(id)),
    }
}

/// Cinder's precedence on a route that names a volume: the volume is looked
/// up first, so one that does not exist or that the caller may not see is a
/// 404 whoever asks; only then is `op` checked (403 for a volume the caller
/// can see but may not act on).
pub(crate) async fn authorize_on(
    store: &scoria_store::Store,
    ctx: &Context,
    id: VolumeId,
    op: Op,
) -> Result<()> {
    let mut conn = store.read().await?;
    visible(&mut conn, ctx, id).await?;
    ctx.authorize(op)
}

/// Refuse to change `id` (`what`: "deleted", "extended", …) while it is held:
/// volumes are being created from it (they read its image, and a clone by
/// overlay switches its active image), or a snapshot of it is being taken
/// (which freezes its active image and switches it to a new overlay). Asked
/// inside the transaction that changes `id`, after its status change (see
/// `scoria_store::volumes::volume_hold_for_read` for why that order).
pub(crate) async fn assert_not_held(conn: &mut Conn, id: VolumeId, what: &str) -> Result<()> {
    assert_not_held_by_copies(conn, id, what).await?;
    // An attached volume is served by a running export: its image must stay
    // what the export serves.
    crate::rules::attachments::assert_not_attached(conn, id, what).await
}

/// The part of [`assert_not_held`] about copies: clones and snapshots being
/// made of `id` (an attach asks only this one).
pub(crate) async fn assert_not_held_by_copies(
    conn: &mut Conn,
    id: VolumeId,
    what: &str,
) -> Result<()> {
    let clones = store::volume_clones_in_progress(conn, id).await?;
    if !clones.is_empty() {
        let clones: Vec<String> = clones.iter().map(ToString::to_string).collect();
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {id} is in use: it is being copied to create volume {}; it cannot be {what} until then.",
            clones.join(", ")
        )));
    }
    let snapshots = scoria_store::snapshots::snapshot_list_creating_for_volume(conn, id).await?;
    if !snapshots.is_empty() {
        let snapshots: Vec<String> = snapshots.iter().map(ToString::to_string).collect();
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {id} is in use: snapshot {} of it is being taken; it cannot be {what} until then.",
            snapshots.join(", ")
        )));
    }
    Ok(())
}

/// Scoria does not encrypt volumes yet: refuse a type that asks for it, so
/// that nobody believes their data is encrypted when it is not.
pub(crate) async fn refuse_encrypted(conn: &mut Conn, type_id: VolumeTypeId) -> Result<()> {
    if volume_types::volume_type_encryption_get(conn, type_id)
        .await?
        .is_some()
    {
        return Err(encryption_unsupported(type_id));
    }
    Ok(())
}

/// Refuse a type that is gone or asks for encryption, in one query.
pub(crate) async fn refuse_missing_or_encrypted(
    conn: &mut Conn,
    type_id: VolumeTypeId,
) -> Result<()> {
    match volume_types::volume_type_exists_encrypted(conn, type_id).await? {
        None => Err(crate::rules::types::type_not_found(type_id)),
        Some(true) => Err(encryption_unsupported(type_id)),
        Some(false) => Ok(()),
    }
}

fn encryption_unsupported(type_id: VolumeTypeId) -> Error {
    Error::Invalid(format!(
        "Volume type {type_id} asks for encryption, and encrypted volumes are not supported yet by Scoria."
    ))
}

/// Cinder's refusal of a source that is not `available` or `in-use`.
pub(crate) fn source_not_readable(v: &Volume) -> Error {
    Error::InvalidState(format!(
        "Invalid volume: Unable to create a volume from an originating source volume when its status is not one of available, in-use values (volume {} is {}).",
        v.id, v.status
    ))
}

/// Refuse to act on a volume whose data is being moved to another backend
/// (`flows::volume_migrate`; Cinder's words).
pub(crate) fn assert_not_migrating(v: &Volume) -> Result<()> {
    if store::is_migrating(v.migration_status.as_deref()) {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {} is already part of an active migration.",
            v.id
        )));
    }
    Ok(())
}

/// [`assert_not_migrating`] with the action's own message.
pub(crate) fn assert_not_migrating_for(v: &Volume, message: &str) -> Result<()> {
    if store::is_migrating(v.migration_status.as_deref()) {
        return Err(Error::InvalidState(format!("Invalid volume: {message}")));
    }
    Ok(())
}

/// Hold a volume for maintenance of its chain by the flow `flow` (a merge, a
/// flatten: `what` says which in refusals): an `available`, detached volume
/// (or, with `attached`, an `in-use`, attached one, whose chain its export's
/// daemon changes) that no migration, other flow or copy holds, on a backend
/// that is not frozen, goes `maintenance`, which refuses detaching, new
/// attachments and every other operation until [`release_maintenance`].
pub(crate) async fn hold_for_maintenance(
    conn: &mut Conn,
    flow: scoria_model::FlowId,
    id: VolumeId,
    what: &str,
    attached: bool,
) -> Result<Volume> {
    use scoria_model::volume::{AttachStatus, VolumeStatus};
    let v = store::volume_get(conn, id)
        .await?
        .ok_or_else(|| Error::volume_not_found(id))?;
    let from = match (v.status, v.attach_status) {
        (VolumeStatus::Available, AttachStatus::Detached) => VolumeStatus::Available,
        (VolumeStatus::InUse, AttachStatus::Attached) if attached => VolumeStatus::InUse,
        _ if attached => {
            return Err(Error::InvalidState(format!(
                "Volume {id} is {} and {}: only an available, detached or an in-use, attached volume's chain is {what}.",
                v.status, v.attach_status
            )));
        }
        _ => {
            return Err(Error::InvalidState(format!(
                "Volume {id} is {} and {}: only an available, detached volume's chain is {what} (an attached volume is {what} only offline: detach it first).",
                v.status, v.attach_status
            )));
        }
    };
    assert_not_migrating(&v)?;
    let busy = scoria_store::flows::flow_list_unsettled_for(conn, &id.to_string())
        .await?
        .into_iter()
        .find(|f| f.id != flow && f.state.is_active());
    if let Some(f) = busy {
        return Err(Error::InvalidState(format!(
            "Volume {id} has an operation in progress ({}).",
            f.kind
        )));
    }
    crate::rules::hosts::assert_not_frozen(conn, v.backend.as_deref()).await?;
    let moved = store::volume_set_status_by_flow(
        conn,
        id,
        &[from],
        VolumeStatus::Maintenance,
        Some(&flow.to_string()),
    )
    .await?;
    if !moved {
        return Err(Error::InvalidState(format!("Volume {id} changed status.")));
    }
    if attached {
        assert_not_held_by_copies(conn, id, what).await?;
    } else {
        assert_not_held(conn, id, what).await?;
    }
    Ok(v)
}

/// End [`hold_for_maintenance`]: the volume `available` again, or `in-use`
/// if it is attached (a re-run finds it so already).
pub(crate) async fn release_maintenance(conn: &mut Conn, id: VolumeId) -> Result<()> {
    use scoria_model::volume::{AttachStatus, VolumeStatus};
    let attached = store::volume_get(conn, id)
        .await?
        .is_some_and(|v| v.attach_status == AttachStatus::Attached);
    let to = if attached {
        VolumeStatus::InUse
    } else {
        VolumeStatus::Available
    };
    store::volume_set_status(conn, id, &[VolumeStatus::Maintenance], to).await?;
    Ok(())
}
