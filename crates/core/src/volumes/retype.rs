//! Changing a volume's type (`os-retype`): in place, when the volume's backend
//! satisfies the new type; moving data to another backend is not built yet.

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
    /// Move the data to a backend that suits (not built yet: refused too).
    OnDemand,
}

/// Change a volume's type (`os-retype`). The volume must be `available` or
/// `in-use`. When the volume's backend still satisfies the new type's extra
/// specs, the retype is a change of the record alone, made in one
/// conditional update; moving data to another backend is not built yet, so a
/// retype that would need it is refused (400) whatever the policy.
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
    let known = crate::scheduler::known_keys(app.env.backends.values().map(|b| &b.capabilities));
    if let Err(why) =
        crate::scheduler::capabilities_match(&new.extra_specs, &here.capabilities, &known)
    {
        let elsewhere = app.env.backends.iter().find_map(|(name, b)| {
            (name.as_str() != backend
                && crate::scheduler::capabilities_match(&new.extra_specs, &b.capabilities, &known)
                    .is_ok())
            .then_some(name)
        });
        return Err(match (policy, elsewhere) {
            (MigrationPolicy::OnDemand, Some(b)) => Error::Invalid(format!(
                "Retyping volume {id} to {} needs its data moved to backend {b}, which this Scoria cannot do yet.",
                new.name
            )),
            _ => Error::Invalid(format!("No valid backend was found. {backend}: {why}")),
        });
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
    if !store::volume_retype(&mut tx, id, v.volume_type_id, new.id, multiattach).await? {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {id} changed while it was being retyped; try again."
        )));
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}
