//! A group as the caller may see it, and what a volume created in a group
//! must satisfy (the group's project, status, volume types, zone and
//! backend). Shared by the groups API and the volume create flow.

use scoria_model::group::GroupStatus;
use scoria_model::volume::VolumeStatus;
use scoria_model::{GroupId, VolumeId, VolumeTypeId};
use scoria_store::Conn;
use scoria_store::groups::{self as store, Group};

use crate::context::{Context, Op};
use crate::error::{Error, Result};

pub(crate) fn group_not_found(id: impl std::fmt::Display) -> Error {
    Error::NotFound(format!("Group {id} could not be found."))
}

/// What a volume create naming a group checks before it starts: the group is
/// the caller's, `available`, accepts the volume's type, and its zone is the
/// one asked for. Returns the group's zone (the volume's). The create flow
/// checks status and type again when it records the membership.
pub(crate) async fn check_volume_create(
    conn: &mut Conn,
    ctx: &Context,
    id: GroupId,
    type_id: VolumeTypeId,
    zone: Option<&str>,
) -> Result<String> {
    let g = visible(conn, ctx, id).await?;
    if ctx.project_id.as_ref().is_none_or(|p| p.0 != g.project_id) {
        return Err(group_not_found(id));
    }
    if g.status != GroupStatus::Available {
        return Err(Error::InvalidState(format!(
            "Invalid group: Group {id} status must be available, but current status is: {}.",
            g.status
        )));
    }
    if !g.volume_type_ids.contains(&type_id) {
        return Err(Error::Invalid(format!(
            "Invalid input received: Invalid volume_type provided: {type_id}. The requested type is not among the volume types of group {id}."
        )));
    }
    if let Some(z) = zone
        && z != g.availability_zone
    {
        return Err(Error::Invalid(format!(
            "Invalid input received: Volume must be in the availability zone of group {id} ({}), not {z}.",
            g.availability_zone
        )));
    }
    Ok(g.availability_zone)
}

/// Record a new volume as a member of `id`, in the create flow's transaction:
/// the group must still exist in the volume's project, be `available` (or
/// `creating`, for the volumes a group is made with) and accept its type.
pub(crate) async fn join_on_create(
    conn: &mut Conn,
    id: GroupId,
    volume: VolumeId,
    project: &str,
    type_id: VolumeTypeId,
) -> Result<()> {
    let g = store::group_get(conn, id)
        .await?
        .filter(|g| g.project_id == project)
        .ok_or_else(|| group_not_found(id))?;
    if !store::group_hold(conn, id, &[GroupStatus::Available, GroupStatus::Creating]).await? {
        return Err(Error::InvalidState(format!(
            "Invalid group: Group {id} status must be available, but current status is: {}.",
            g.status
        )));
    }
    if !g.volume_type_ids.contains(&type_id) {
        return Err(Error::Invalid(format!(
            "Invalid input received: Invalid volume_type provided: {type_id}. The requested type is not among the volume types of group {id}."
        )));
    }
    if !store::group_add_volume(
        conn,
        id,
        volume,
        &[scoria_model::volume::VolumeStatus::Creating],
    )
    .await?
    {
        return Err(Error::InvalidState(format!(
            "Volume {volume} could not join group {id}."
        )));
    }
    Ok(())
}

/// The backend a group's volumes go to (`None`: the volume is in no group).
pub(crate) async fn backend_of(conn: &mut Conn, id: Option<GroupId>) -> Result<Option<String>> {
    let Some(id) = id else { return Ok(None) };
    let g = store::group_get(conn, id)
        .await?
        .ok_or_else(|| group_not_found(id))?;
    g.backend
        .map(Some)
        .ok_or_else(|| Error::InvalidState(format!("Invalid group: Group {id} has no backend.")))
}

/// Load a group the caller may see: their project's, or any for an admin.
/// Another project's group is reported absent.
pub(crate) async fn visible(conn: &mut Conn, ctx: &Context, id: GroupId) -> Result<Group> {
    match store::group_get(conn, id).await? {
        Some(g)
            if ctx.is_admin() || ctx.project_id.as_ref().is_some_and(|p| p.0 == g.project_id) =>
        {
            Ok(g)
        }
        _ => Err(group_not_found(id)),
    }
}

/// Cinder's precedence on a route that names a group: looked up first (404
/// whoever asks), then `op` checked (see [`super::volumes::authorize_on`]).
pub(crate) async fn authorize_on(
    store: &scoria_store::Store,
    ctx: &Context,
    id: GroupId,
    op: Op,
) -> Result<()> {
    let mut conn = store.read().await?;
    visible(&mut conn, ctx, id).await?;
    ctx.authorize(op)
}

/// Can a group delete delete a volume in this status? Cinder deletes members
/// whatever their status (but attached); Scoria keeps the volume delete
/// flow's rules and adds `error_deleting`, so that a member whose delete
/// failed can be deleted with its group.
pub(crate) fn deletable_member(s: VolumeStatus) -> bool {
    VolumeStatus::DELETABLE.contains(&s) || s == VolumeStatus::ErrorDeleting
}
