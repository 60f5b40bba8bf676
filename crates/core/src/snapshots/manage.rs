//! Cinder's snapshot manage and unmanage (admins).
//!
//! - `os-unmanage` on a snapshot: the snapshot leaves the API and its
//!   project's quota, as a delete; its data stays in its volume's chain,
//!   recorded as the unmanaged snapshot `snapshot-<id>` (migration 0025).
//! - `GET /manageable_snapshots[/detail]?host=scoria@<backend>` (3.8 on):
//!   the backend's unmanaged snapshots, with their volume (Cinder's
//!   `source_reference`) and whether a manage would take them now.
//! - `os-snapshot-manage` (`POST /manageable_snapshots` from 3.8) with
//!   `{"volume_id", "ref": {"source-name": "snapshot-<id>"}}`: a new snapshot
//!   of that volume on the kept data, in the volume's project and quota
//!   (`flows::snapshot_manage`). Nothing is copied.
//!
//! Only data Scoria unmanaged can be managed as a snapshot. A foreign file
//! cannot: a snapshot is a point in its volume's chain, and a file from
//! elsewhere is in no volume's chain (manage it as a volume instead).
//! An unmanaged snapshot lives as long as its volume (see the migration).

use std::collections::BTreeMap;

use scoria_model::{SnapshotId, VolumeId};
use scoria_store::{unmanaged_snapshots, volumes};
use serde_json::Value;

use super::{SnapshotView, get_unchecked};
use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result, from_outcome};
use crate::flows::snapshot_manage;

/// What a manage asks (Cinder's `snapshot` body of `os-snapshot-manage`).
#[derive(Clone, Debug, Default)]
pub struct ManageRequest {
    pub volume_id: Option<String>,
    /// `{"source-name": "snapshot-<id>"}`.
    pub reference: serde_json::Map<String, Value>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// One unmanaged snapshot as `GET /manageable_snapshots` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManageableSnapshot {
    /// The `source-name` a manage takes.
    pub source_name: String,
    /// GiB.
    pub size: i64,
    /// The volume it is of (Cinder's `source_reference`).
    pub volume_id: VolumeId,
    pub safe_to_manage: bool,
    pub reason_not_safe: Option<String>,
    /// When the snapshot was taken and when it was unmanaged.
    pub taken_at: String,
    pub unmanaged_at: String,
}

impl ManageableSnapshot {
    /// Cinder's `extra_info`, a line for people.
    pub fn extra_info(&self) -> String {
        format!(
            "snapshot of volume {} taken {}, unmanaged {}",
            self.volume_id, self.taken_at, self.unmanaged_at
        )
    }
}

/// `os-unmanage`: as a delete (the same refusals), but the data stays.
/// Returns once the snapshot is `deleting`.
pub async fn unmanage(app: &App, ctx: &Context, id: SnapshotId) -> Result<()> {
    super::start_delete(app, ctx, id, Op::SnapshotUnmanage, false, true).await
}

/// `os-snapshot-manage`: a snapshot of `req.volume_id` on the unmanaged
/// snapshot `req.reference` names. Returns the snapshot, `available`.
pub async fn manage(app: &App, ctx: &Context, req: ManageRequest) -> Result<SnapshotView> {
    ctx.authorize(Op::SnapshotManage)?;
    crate::rules::validate::validate_described(
        req.name.as_deref(),
        req.description.as_deref(),
        &req.metadata,
    )?;
    let Some(volume_id) = req.volume_id.as_deref() else {
        return Err(Error::Invalid(
            "Invalid input for field/attribute volume_id. Value: None. None is not of type 'string'.".into(),
        ));
    };
    let volume_id: VolumeId = volume_id
        .parse()
        .map_err(|_| Error::volume_not_found(volume_id))?;
    let source_name = match req.reference.get("source-name") {
        Some(Value::String(n)) if req.reference.len() == 1 => n.clone(),
        _ => {
            return Err(snapshot_manage::invalid_ref(
                &Value::Object(req.reference.clone()),
                "give {\"source-name\": \"snapshot-<id>\"}, the name an unmanaged snapshot is kept under.",
            ));
        }
    };
    // The rest is checked by the flow, in its transaction: whether the
    // backend keeps that name for this volume, and whether the volume can
    // take it back now.
    let mut conn = app.store().read().await?;
    let v = volumes::volume_get(&mut conn, volume_id)
        .await?
        .ok_or_else(|| Error::volume_not_found(volume_id))?;
    let backend = v.backend.clone().ok_or_else(|| {
        Error::InvalidState(format!(
            "Invalid volume: Volume {volume_id} is on no backend."
        ))
    })?;
    drop(conn);
    let id = SnapshotId::new();
    let params = snapshot_manage::Params {
        snapshot_id: id,
        project_id: v.project_id.clone(),
        user_id: ctx.user_id.0.clone(),
        volume_id,
        backend,
        source_name,
        name: req.name,
        description: req.description,
        metadata: req.metadata,
        request_id: Some(ctx.request_id.clone()),
    };
    let handle = app
        .engine
        .start::<snapshot_manage::SnapshotManage>(params)?;
    match handle.wait().await {
        scoria_flows::Outcome::Done => get_unchecked(app, id).await,
        other => Err(from_outcome(other)),
    }
}

/// `GET /manageable_snapshots?host=`: the unmanaged snapshots of the
/// backend `host` names (`scoria@<backend>`), by name.
pub async fn manageable(app: &App, ctx: &Context, host: &str) -> Result<Vec<ManageableSnapshot>> {
    ctx.authorize(Op::SnapshotListManageable)?;
    let Some(backend) = crate::rules::hosts::backend_of_host(&app.env, host) else {
        return Err(Error::NotFound(format!(
            "Service {host} could not be found: name a backend of this Scoria (scoria@<backend>)."
        )));
    };
    let mut conn = app.store().read().await?;
    let kept = unmanaged_snapshots::unmanaged_snapshot_list_on_backend(&mut conn, backend).await?;
    let mut out = Vec::with_capacity(kept.len());
    for u in kept {
        let why = match volumes::volume_get(&mut conn, u.volume_id).await? {
            Some(v) => snapshot_manage::not_manageable(&mut conn, &u, &v).await?,
            None => Some(format!("Volume {} is gone.", u.volume_id)),
        };
        out.push(ManageableSnapshot {
            source_name: u.name,
            size: u.size,
            volume_id: u.volume_id,
            safe_to_manage: why.is_none(),
            reason_not_safe: why,
            taken_at: u.taken_at,
            unmanaged_at: u.created_at,
        });
    }
    Ok(out)
}
