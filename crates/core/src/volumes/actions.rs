//! The small volume actions that change one record in one transaction: the
//! bootable and read-only flags, an admin's status reset, and Nova's
//! reserve/unreserve holds. None of them touches the backend, so none is a
//! flow.

use scoria_model::VolumeId;
use scoria_model::volume::{AttachStatus, VolumeStatus};
use scoria_store::volumes as store;
use scoria_store::{flows as flow_store, transfers as transfer_store};

use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result};
use crate::rules::volumes::{assert_not_held, visible};

/// Set or clear the bootable flag.
pub async fn set_bootable(app: &App, ctx: &Context, id: VolumeId, bootable: bool) -> Result<()> {
    crate::rules::volumes::authorize_on(app.store(), ctx, id, Op::VolumeSetBootable).await?;
    let mut tx = app.store().begin().await?;
    visible(&mut tx, ctx, id).await?;
    store::volume_set_bootable(&mut tx, id, bootable).await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// Set or clear the read-only flag (only while `available`, as Cinder).
pub async fn set_readonly(app: &App, ctx: &Context, id: VolumeId, readonly: bool) -> Result<()> {
    crate::rules::volumes::authorize_on(app.store(), ctx, id, Op::VolumeUpdateReadonly).await?;
    let mut tx = app.store().begin().await?;
    let v = visible(&mut tx, ctx, id).await?;
    if v.status != VolumeStatus::Available {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume status must be available to update readonly flag, but current status is: {}.",
            v.status
        )));
    }
    store::volume_set_read_only(&mut tx, id, readonly).await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// Admin: set status fields by hand. Refused while a flow works on the volume:
/// the flow owns its status until it ends (and it always ends).
pub async fn reset_status(
    app: &App,
    ctx: &Context,
    id: VolumeId,
    status: Option<VolumeStatus>,
    attach_status: Option<AttachStatus>,
    migration_status: Option<Option<String>>,
) -> Result<()> {
    crate::rules::volumes::authorize_on(app.store(), ctx, id, Op::VolumeResetStatus).await?;
    let mut tx = app.store().begin().await?;
    let v = visible(&mut tx, ctx, id).await?;
    let busy = flow_store::flow_list_unsettled_for(&mut tx, &id.to_string())
        .await?
        .into_iter()
        .find(|f| f.state.is_active());
    if let Some(f) = busy {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {id} has an operation in progress ({}); its status is set when it ends.",
            f.kind
        )));
    }
    // A volume awaits a transfer exactly while a transfer of it exists: an
    // offer is made only through the transfer API, and resetting a waiting
    // volume to another status withdraws its offer.
    match status {
        Some(VolumeStatus::AwaitingTransfer) if v.status != VolumeStatus::AwaitingTransfer => {
            return Err(Error::Invalid(format!(
                "Invalid input received: volume {id} can only await a transfer by being offered for one (os-volume-transfer)."
            )));
        }
        Some(s) if s != VolumeStatus::AwaitingTransfer => {
            transfer_store::transfer_delete_for_volume(&mut tx, id).await?;
        }
        _ => {}
    }
    store::volume_reset_state(
        &mut tx,
        id,
        status,
        attach_status,
        migration_status.as_ref().map(|m| m.as_deref()),
    )
    .await?;
    // A volume being copied stays readable until its copies are made.
    if let Some(s) = status
        && !VolumeStatus::READABLE.contains(&s)
    {
        assert_not_held(&mut tx, id, &format!("reset to {s}")).await?;
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// Reserve a volume for an attachment (`available` → `attaching`), as Nova does
/// before it attaches.
pub async fn reserve(app: &App, ctx: &Context, id: VolumeId) -> Result<()> {
    crate::rules::volumes::authorize_on(app.store(), ctx, id, Op::VolumeAttach).await?;
    let mut tx = app.store().begin().await?;
    let v = visible(&mut tx, ctx, id).await?;
    crate::rules::volumes::assert_not_migrating_for(
        &v,
        &format!("Volume {id} is migrating; it cannot be attached until the migration ends."),
    )?;
    let from: &[VolumeStatus] = if v.multiattach {
        &[VolumeStatus::Available, VolumeStatus::InUse]
    } else {
        &[VolumeStatus::Available]
    };
    if !store::volume_set_status(&mut tx, id, from, VolumeStatus::Attaching).await? {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume status must be available to reserve, but the status is {}.",
            v.status
        )));
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// Undo [`reserve`] (`attaching` → `available`).
pub async fn unreserve(app: &App, ctx: &Context, id: VolumeId) -> Result<()> {
    crate::rules::volumes::authorize_on(app.store(), ctx, id, Op::VolumeAttach).await?;
    let mut tx = app.store().begin().await?;
    let v = visible(&mut tx, ctx, id).await?;
    if !store::volume_set_status(
        &mut tx,
        id,
        &[VolumeStatus::Attaching],
        VolumeStatus::Available,
    )
    .await?
    {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume status must be attaching to unreserve, but the status is {}.",
            v.status
        )));
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}
