//! Manage an unmanaged snapshot: give the data an admin unmanaged
//! (`flows::snapshot_delete` with `unmanage`) a snapshot record again.
//!
//! ```text
//!  reserve_quota ───────────► take_over
//!   +1 snapshot, +size GiB     the snapshot `available` on the kept image,
//!   in the volume's project    its quota committed, the unmanaged record
//!   undo: release              gone: one transaction
//! ```
//!
//! No data moves: the image never left its volume's chain. Both steps are
//! database steps, so they commit together; the flow exists for the quota
//! reservation's bookkeeping and for its place in the flow list (an operation
//! on the snapshot and its volume, resumed or undone like any other).

use std::collections::BTreeMap;

use scoria_flows::{Cx, Flow, FlowMeta, Step, StepError};
use scoria_model::volume::VolumeStatus;
use scoria_model::{SnapshotId, VolumeId};
use scoria_store::{Conn, images, quotas, snapshots, unmanaged_snapshots, volumes};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Env;
use crate::error::Error;

pub struct SnapshotManage;

/// Everything needed, validated by the caller (`snapshots::manage`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub snapshot_id: SnapshotId,
    /// The volume's project: the snapshot is its, and counts against it.
    pub project_id: String,
    pub user_id: String,
    pub volume_id: VolumeId,
    /// Where the unmanaged snapshot is, and its name there.
    pub backend: String,
    pub source_name: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub request_id: Option<String>,
}

impl Flow for SnapshotManage {
    const KIND: &'static str = "snapshot_manage";
    type Params = Params;
    type Env = Env;

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::db("reserve_quota", |cx, c| Box::pin(reserve_quota(cx, c)))
                .undo_db(|cx, c| Box::pin(release_quota(cx, c))),
            Step::db("take_over", |cx, c| Box::pin(take_over(cx, c))),
        ]
    }

    fn meta(p: &Params) -> FlowMeta {
        FlowMeta {
            resource_type: Some("snapshot"),
            resource_id: Some(p.snapshot_id.to_string()),
            project_id: Some(p.project_id.clone()),
        }
    }
}

/// Cinder's refusal of a manage's `ref`.
pub fn invalid_ref(reference: &Value, why: &str) -> Error {
    Error::Invalid(format!(
        "Manage existing snapshot failed due to invalid backend reference {reference}: {why}"
    ))
}

/// The unmanaged snapshot and its volume, as they are now: the volume still
/// the one it belongs to, in the project the caller named, and in a state
/// to take it back (both steps check, so the API's refusals are these).
async fn sources(
    cx: &Cx<SnapshotManage>,
    c: &mut Conn,
) -> Result<(unmanaged_snapshots::UnmanagedSnapshot, volumes::Volume), StepError> {
    let p = &cx.params;
    let reference = json!({"source-name": p.source_name});
    let u = unmanaged_snapshots::unmanaged_snapshot_get(c, &p.backend, &p.source_name)
        .await?
        .ok_or_else(|| {
            invalid_ref(
                &reference,
                &format!(
                    "backend {} keeps no unmanaged snapshot of that name.",
                    p.backend
                ),
            )
        })?;
    if u.volume_id != p.volume_id {
        return Err(invalid_ref(
            &reference,
            &format!(
                "it is a snapshot of volume {}, not of {}.",
                u.volume_id, p.volume_id
            ),
        )
        .into());
    }
    let v = volumes::volume_get(c, p.volume_id)
        .await?
        .filter(|v| v.project_id == p.project_id)
        .ok_or_else(|| Error::volume_not_found(p.volume_id))?;
    if let Some(why) = not_manageable(c, &u, &v).await? {
        return Err(Error::InvalidState(format!("Invalid volume: {why}")).into());
    }
    Ok((u, v))
}

/// Why the unmanaged snapshot `u` of volume `v` cannot be managed now, if it
/// cannot: the volume is busy, or no longer stands on the kept image (it
/// was migrated or reverted past it).
pub async fn not_manageable(
    c: &mut Conn,
    u: &unmanaged_snapshots::UnmanagedSnapshot,
    v: &volumes::Volume,
) -> Result<Option<String>, Error> {
    if !matches!(v.status, VolumeStatus::Available | VolumeStatus::InUse) {
        return Ok(Some(format!(
            "Volume {} status must be available or in-use, but current status is: {}.",
            v.id, v.status
        )));
    }
    let Some(active) = v.image_id else {
        return Ok(Some(format!("Volume {} has no data.", v.id)));
    };
    let chain = images::image_chain(c, active).await?;
    if !chain.iter().any(|i| i.id == u.image_id) {
        return Ok(Some(format!(
            "Volume {} no longer stands on the data of {} (it was moved or reverted).",
            v.id, u.name
        )));
    }
    Ok(None)
}

async fn reserve_quota(cx: &Cx<SnapshotManage>, c: &mut Conn) -> Result<Value, StepError> {
    let (u, v) = sources(cx, c).await?;
    let deltas = scoria_model::quota::snapshot_deltas(v.volume_type_id, u.size);
    let ids = quotas::quota_reserve(c, cx.flow_id, &cx.params.project_id, &deltas, None)
        .await
        .map_err(Error::from)?;
    Ok(json!({"reservations": ids.iter().map(ToString::to_string).collect::<Vec<_>>()}))
}

async fn release_quota(cx: &Cx<SnapshotManage>, c: &mut Conn) -> Result<(), StepError> {
    quotas::reservation_release_flow(c, cx.flow_id).await?;
    Ok(())
}

/// The snapshot row on the kept image, counted on its own, and the
/// unmanaged record gone — in that order, so the image always has a user.
async fn take_over(cx: &Cx<SnapshotManage>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    let (u, v) = sources(cx, c).await?;
    // Counted on its own from its insert (no reservation on the row): the
    // flow's reservation goes in the same transaction.
    snapshots::snapshot_create(
        c,
        &snapshots::NewSnapshot {
            id: p.snapshot_id,
            project_id: p.project_id.clone(),
            user_id: p.user_id.clone(),
            volume_id: v.id,
            volume_type_id: v.volume_type_id,
            name: p.name.clone(),
            description: p.description.clone(),
            size: u.size,
            reservation_id: None,
            last_flow_id: Some(cx.flow_id.to_string()),
            metadata: p.metadata.clone(),
        },
    )
    .await?;
    quotas::reservation_release_flow(c, cx.flow_id).await?;
    if !snapshots::snapshot_mark_available(c, p.snapshot_id, u.image_id).await? {
        return Err(StepError::msg("the managed snapshot was not creating"));
    }
    unmanaged_snapshots::unmanaged_snapshot_remove(c, &u.backend, &u.name).await?;
    Ok(json!({"image_id": u.image_id}))
}

#[cfg(all(test, feature = "failpoints"))]
mod tests;
