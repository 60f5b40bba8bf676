//! Changing a volume's type (`os-retype`): in place, when the volume's backend
//! satisfies the new type; otherwise, with `migration_policy=on-demand`, by
//! moving the data to a backend that does (`flows::volume_migrate`).

use scoria_model::VolumeId;
use scoria_model::quota::{QuotaKey, TypedResource};
use scoria_model::volume::VolumeStatus;
use scoria_store::volume_types;
use scoria_store::volumes as store;

use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result};
use crate::rules::types::resolve as resolve_type;
use crate::rules::volumes::{refuse_encrypted, visible};

/// What a retype may do when the volume's backend does not suit the new type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MigrationPolicy {
    /// Refuse.
    Never,
    /// Move the data to a backend that suits, chosen by the scheduler.
    OnDemand,
}

/// Change a volume's type (`os-retype`). The volume must be `available` or
/// `in-use`. When the volume's backend still satisfies the new type's extra
/// specs, the retype is a change of the record alone, made in one
/// conditional update. When it does not, policy `never` refuses (400) and
/// `on-demand` moves the volume (`available` only: live migration is not
/// built) to the backend the scheduler picks among the others, in the
/// volume's zone as Cinder does, for the new type's extra specs; the type
/// then changes in the flow's last commit, with the host.
///
/// The volume's project must have room for it under the new type's limits
/// (`volumes_<new>`, `gigabytes_<new>`; 413 otherwise), checked in the
/// transaction that changes the type. Usage per type is derived from the
/// volumes' types, so the volume leaves the old type's usage and enters the
/// new one's in that same commit; there is nothing to reserve or release.
pub async fn retype(
    app: &App,
    ctx: &Context,
    id: VolumeId,
    new_type: &str,
    policy: MigrationPolicy,
) -> Result<()> {
    crate::rules::volumes::authorize_on(app.store(), ctx, id, Op::VolumeRetype).await?;
    let mut tx = app.store().begin().await?;
    let v = visible(&mut tx, ctx, id).await?;
    crate::rules::volumes::assert_not_migrating(&v)?;
    if !matches!(v.status, VolumeStatus::Available | VolumeStatus::InUse) {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume status must be available or in-use, but current status is: {}.",
            v.status
        )));
    }
    // Its multiattach flag and backend follow the type: not under a running
    // export.
    crate::rules::attachments::assert_not_attached(&mut tx, id, "retyped").await?;
    let new = resolve_type(&mut tx, ctx, Some(new_type)).await?;
    if new.id == v.volume_type_id {
        return Err(Error::Invalid(format!(
            "Invalid input received: New volume_type same as original: {new_type}."
        )));
    }
    refuse_encrypted(&mut tx, new.id).await?;
    if let Some(g) = v.group_id {
        // A group's volumes are of the group's types.
        let group = scoria_store::groups::group_get(&mut tx, g).await?;
        if group.is_none_or(|g| !g.volume_type_ids.contains(&new.id)) {
            return Err(Error::Invalid(format!(
                "Invalid input received: volume {id} belongs to group {g}, which does not accept volume type {new_type}."
            )));
        }
    }
    let old = volume_types::volume_type_get(&mut tx, v.volume_type_id).await?;
    let old_multiattach = old
        .as_ref()
        .is_some_and(|t| crate::rules::types::is_true_spec(t.extra_specs.get("multiattach")));
    let new_multiattach = crate::rules::types::is_true_spec(new.extra_specs.get("multiattach"));
    // A flag the user asked for at create stays unless the old type implied it.
    let multiattach = new_multiattach || (v.multiattach && !old_multiattach);
    if v.status == VolumeStatus::InUse {
        if multiattach != v.multiattach {
            return Err(Error::Invalid(
                "Invalid input received: Retype requires volume to be \"available\" when changing multiattach."
                    .into(),
            ));
        }
        let old_qos = old.as_ref().and_then(|t| t.qos_specs_id);
        if old_qos != new.qos_specs_id {
            return Err(Error::InvalidState(
                "Invalid volume: Retype cannot change the QoS specs of an in-use volume.".into(),
            ));
        }
    }
    let Some(backend) = v.backend.as_deref() else {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {id} has no backend."
        )));
    };
    let here = app.env.backend(backend)?;
    let all = app.env.backends.values();
    let known = crate::scheduler::known_keys(all.iter().map(|b| &b.capabilities));
    let must_move =
        crate::scheduler::capabilities_match(&new.extra_specs, &here.capabilities, &known);
    if let Err(why) = &must_move
        && policy == MigrationPolicy::Never
    {
        return Err(Error::Invalid(format!(
            "No valid backend was found. {backend}: {why}"
        )));
    }
    scoria_store::quotas::quota_check(
        &mut tx,
        &v.project_id,
        &[
            (QuotaKey::PerType(TypedResource::Volumes, new.id), 1),
            (QuotaKey::PerType(TypedResource::Gigabytes, new.id), v.size),
        ],
        None,
    )
    .await?;
    if must_move.is_err() {
        super::migrate::precheck(&v)?;
        let request = crate::scheduler::Request {
            size_gib: v.size,
            availability_zone: Some(v.availability_zone.clone()),
            extra_specs: new.extra_specs.clone(),
            ..Default::default()
        };
        let mut candidates = crate::capacity::gather(&app.env, &mut tx).await?;
        drop(tx);
        candidates.retain(|c| c.name != backend);
        let dest = crate::scheduler::place(&app.env.scheduler, &request, &candidates)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        return super::migrate::start(
            app,
            crate::flows::volume_migrate::Params {
                volume_id: id,
                destination: dest,
                new_type: Some((new.id, multiattach)),
                lock_volume: false,
                request_id: Some(ctx.request_id.clone()),
            },
        )
        .await;
    }
    if !store::volume_retype(&mut tx, id, v.volume_type_id, new.id, multiattach).await? {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {id} changed while it was being retyped; try again."
        )));
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}
