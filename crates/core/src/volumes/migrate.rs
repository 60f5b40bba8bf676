//! Moving a volume's data to another backend: the admin's
//! `os-migrate_volume` and `os-migrate_volume_completion`, and the start of
//! an on-demand retype's move (see `flows::volume_migrate` for the flow).
//!
//! A destination is named as Cinder's hosts are: `scoria@<backend>`, or the
//! pool `scoria@<backend>#<backend>` (each backend has one pool, see
//! `services.rs`). It must pass the scheduler's filters for the volume (its
//! type's extra specs, its size against the destination's free space), zone
//! aside: an admin may move a volume to another zone, as in Cinder.

use scoria_model::VolumeId;
use scoria_model::volume::VolumeStatus;
use scoria_store::volume_types;

use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result, from_outcome};
use crate::flows::volume_migrate::{self, VolumeMigrate};
use crate::rules::volumes::visible;

/// What `os-migrate_volume` asks.
#[derive(Clone, Debug, Default)]
pub struct MigrateRequest {
    /// `scoria@<backend>[#<pool>]`.
    pub host: Option<String>,
    /// Microversion 3.16's `cluster`: Scoria has no clusters.
    pub cluster: Option<String>,
    /// Cinder's flag to skip a driver-assisted move: every Scoria move is a
    /// host copy, so it changes nothing.
    pub force_host_copy: bool,
    /// The volume is `maintenance` while it moves.
    pub lock_volume: bool,
}

/// `os-migrate_volume` (admins): move volume `id`'s data to the backend
/// `req.host` names, as a flow; answers once the migration started (the
/// volume's `migration_status` is `migrating`) or why it cannot.
pub async fn migrate(app: &App, ctx: &Context, id: VolumeId, req: MigrateRequest) -> Result<()> {
    crate::rules::volumes::authorize_on(app.store(), ctx, id, Op::VolumeMigrate).await?;
    if req.cluster.is_some() {
        return Err(Error::Invalid(
            "Invalid input received: Scoria has no clusters; name the destination host (scoria@<backend>) instead of a cluster.".into(),
        ));
    }
    let Some(host) = req.host.as_deref() else {
        return Err(Error::Invalid(
            "Invalid input received: A host or a cluster must be specified.".into(),
        ));
    };
    let Some(dest) = crate::rules::hosts::backend_of_host(&app.env, host) else {
        return Err(Error::Invalid(format!(
            "Invalid host: No available service named {host}."
        )));
    };
    let mut conn = app.store().read().await?;
    let v = visible(&mut conn, ctx, id).await?;
    if v.backend.as_deref() == Some(dest) {
        return Err(Error::Invalid(
            "Invalid host: Destination host must be different than the current host.".into(),
        ));
    }
    precheck(&v)?;
    let request = crate::scheduler::Request {
        size_gib: v.size,
        availability_zone: None,
        extra_specs: volume_types::volume_type_extra_specs_get(&mut conn, v.volume_type_id).await?,
        ..Default::default()
    };
    let mut candidates = crate::capacity::gather(&app.env, &mut conn).await?;
    drop(conn);
    candidates.retain(|c| c.name == dest);
    if candidates.is_empty() {
        return Err(Error::Invalid(format!(
            "No valid host was found. {host}: its capacity is not known yet."
        )));
    }
    crate::scheduler::place(&app.env.scheduler, &request, &candidates).map_err(|e| {
        Error::Invalid(format!("No valid host was found. {}", e.reasons.join("; ")))
    })?;
    start(
        app,
        volume_migrate::Params {
            volume_id: id,
            destination: dest.to_string(),
            new_type: None,
            lock_volume: req.lock_volume,
            request_id: Some(ctx.request_id.clone()),
        },
    )
    .await
}

/// The refusals that need no transaction (the flow's first step asks again).
pub(crate) fn precheck(v: &scoria_store::volumes::Volume) -> Result<()> {
    crate::rules::volumes::assert_not_migrating(v)?;
    if v.status == VolumeStatus::InUse {
        return Err(volume_migrate::live_migration_refused(v.id));
    }
    if let Some(g) = v.group_id {
        return Err(volume_migrate::group_refused(v.id, g));
    }
    if v.status != VolumeStatus::Available {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {} status must be available, but current status is: {}.",
            v.id, v.status
        )));
    }
    Ok(())
}

/// Start the flow and answer once its first step committed (or failed).
pub(crate) async fn start(app: &App, params: volume_migrate::Params) -> Result<()> {
    let handle = app.engine.start::<VolumeMigrate>(params)?;
    handle
        .wait_step("begin_migrate")
        .await
        .map_err(from_outcome)
}

/// `os-migrate_volume_completion` (admins). Cinder's Nova calls it after
/// swapping an attached volume's data onto a second, temporary volume, to
/// have the two volumes' ids exchanged; it answers the id that remains.
/// Scoria moves data without a second volume, and the volume keeps its id, so
/// there is nothing to exchange: naming the volume itself as `new_volume`
/// (with or without `error`) answers its id once no migration of it runs,
/// and any other volume is refused (400).
pub async fn migrate_completion(
    app: &App,
    ctx: &Context,
    id: VolumeId,
    new_volume: VolumeId,
    _error: bool,
) -> Result<VolumeId> {
    crate::rules::volumes::authorize_on(app.store(), ctx, id, Op::VolumeMigrateCompletion).await?;
    let mut conn = app.store().read().await?;
    let v = visible(&mut conn, ctx, id).await?;
    if new_volume != id {
        visible(&mut conn, ctx, new_volume).await?;
        return Err(Error::Invalid(format!(
            "Invalid input received: Scoria moves a volume's data without a second volume; volume {new_volume} is not a migration target of volume {id}."
        )));
    }
    if scoria_store::volumes::is_migrating(v.migration_status.as_deref()) {
        return Err(Error::InvalidState(format!(
            "Invalid volume: The migration of volume {id} is still running; it completes by itself."
        )));
    }
    Ok(id)
}
