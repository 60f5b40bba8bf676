//! Take a snapshot of a volume: freeze its active image, and let the volume
//! go on on a new overlay. Constant time, whatever the volume's size or data,
//! and the same whether or not the volume is attached.
//!
//! ```text
//!  reserve_quota ─► create_entry ─► commit_quota ─► freeze ──────────► switch ─────────► go_live ──────────► finish
//!   +1 snapshot,     snapshot        (the API        make the volume's  the volume on     each export of the  the snapshot
//!   +size GiB        `creating`;     answers)        image immutable,   the overlay, the  volume moves onto   `available` on
//!   undo: release    the overlay's                   an overlay on it   base recorded     the overlay inside  the frozen image
//!                    record on the                   undo: delete the   immutable         its daemon; the
//!                    volume's image                  overlay, make the                    frozen image stops
//!                    undo: drop both,                image mutable                        changing
//!                    or snapshot                     again
//!                    `error` once                                        once the volume is on
//!                    quota committed                                     the overlay, no undo
//!                                                                        goes back (see below)
//! ```
//!
//! Before:  volume ──► I1 (mutable)
//! After:   volume ──► I2 (mutable overlay) ──► I1 (immutable) ◄── snapshot
//!
//! While the snapshot is `creating`, the volume is held (see
//! `rules::volumes::assert_not_held`): it cannot be deleted, extended,
//! reverted, transferred, cloned or snapshotted again, so nothing else
//! switches or resizes its image under the switch. Two snapshots of one volume
//! asked for at the same moment: the second is refused (400) until the first
//! is taken, which is milliseconds.
//!
//! # An attached volume
//!
//! Its export's `qemu-storage-daemon` writes the active image until told
//! otherwise, so freezing the file is not enough. The records move first
//! (`switch`: the volume, and so the export's desired state, is on the
//! overlay), the daemon after (`go_live`: `blockdev-snapshot` puts the
//! overlay under the running export; the guest keeps writing and never sees
//! the switch), and only then is the snapshot `available`, when nothing
//! writes its image any more. In that order a reconcile between the two
//! steps can only serve the newer chain (the export's client reconnects),
//! never drop what was written to the overlay; and the exporter refuses
//! outright to serve an image below what a daemon serves.
//!
//! Once `switch` committed there is no going back: the overlay may hold the
//! guest's writes. A failure after it (or while unwinding from one) leaves
//! the volume on the overlay — one layer deeper, which is consistent — and
//! the snapshot `error`: `thaw` and `remove_entry` keep the overlay and the
//! frozen image when the volume is on the overlay.
//!
//! A raw volume's image is frozen like any other; the overlay is qcow2 (on a
//! raw base, its format pinned), so after its first snapshot a volume of a
//! raw backend is qcow2. The backend's format governs blank volumes only.
//!
//! Snapshots of an `in-use` volume need `force` below microversion 3.66, as
//! in Cinder.

use std::collections::BTreeMap;

use scoria_flows::{Cx, Flow, FlowMeta, Step, StepError};
use scoria_model::image::ImageState;
use scoria_model::snapshot::SnapshotStatus;
use scoria_model::volume::VolumeStatus;
use scoria_model::{ImageId, SnapshotId, VolumeId, VolumeTypeId};
use scoria_storage::{Format, ImageSpec};
use scoria_store::{Conn, images, quotas, snapshots, volumes};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::Error;
use crate::{Env, flows::storage_error, messages};

pub struct SnapshotCreate;

/// Everything needed to take the snapshot, validated by the caller.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub snapshot_id: SnapshotId,
    pub project_id: String,
    pub user_id: String,
    pub volume_id: VolumeId,
    pub name: Option<String>,
    pub description: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// An `in-use` volume may be snapshotted (Cinder's `force`, or 3.66+).
    pub allow_in_use: bool,
    /// The request that asked for it (named by a failure message).
    #[serde(default)]
    pub request_id: Option<String>,
}

/// What the volume was when the quota was reserved.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Reserved {
    reservation: String,
    size: i64,
    volume_type_id: VolumeTypeId,
}

/// Which image is frozen and which overlay the volume goes on.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Plan {
    backend: String,
    base_id: ImageId,
    base_name: String,
    overlay_id: ImageId,
    overlay_name: String,
    /// Bytes: the volume's size.
    size: u64,
}

impl Flow for SnapshotCreate {
    const KIND: &'static str = "snapshot_create";
    type Params = Params;
    type Env = Env;

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::db("reserve_quota", |cx, c| Box::pin(reserve_quota(cx, c)))
                .undo_db(|cx, c| Box::pin(release_quota(cx, c))),
            Step::db("create_entry", |cx, c| Box::pin(create_entry(cx, c)))
                .undo_db(|cx, c| Box::pin(remove_entry(cx, c))),
            Step::db("commit_quota", |cx, c| Box::pin(commit_quota(cx, c))),
            Step::external("freeze", |cx| Box::pin(freeze(cx)))
                .undo_external(|cx| Box::pin(thaw(cx))),
            Step::db("switch", |cx, c| Box::pin(switch(cx, c))),
            Step::external("go_live", |cx| Box::pin(go_live(cx))),
            Step::db("finish", |cx, c| Box::pin(finish(cx, c))),
        ]
    }

    /// 2: the daemon of an attached volume's export moves onto the overlay
    /// (`go_live`) before the snapshot is `available` (`finish`).
    const VERSION: u32 = 2;

    fn legacy() -> Vec<(u32, Vec<Step<Self>>)> {
        vec![(
            1,
            vec![
                Step::db("reserve_quota", |cx, c| Box::pin(reserve_quota(cx, c)))
                    .undo_db(|cx, c| Box::pin(release_quota(cx, c))),
                Step::db("create_entry", |cx, c| Box::pin(create_entry(cx, c)))
                    .undo_db(|cx, c| Box::pin(remove_entry(cx, c))),
                Step::db("commit_quota", |cx, c| Box::pin(commit_quota(cx, c))),
                Step::external("freeze", |cx| Box::pin(freeze(cx)))
                    .undo_external(|cx| Box::pin(thaw(cx))),
                Step::db("switch", |cx, c| Box::pin(switch_v1(cx, c))),
            ],
        )]
    }

    fn meta(p: &Params) -> FlowMeta {
        FlowMeta {
            resource_type: Some("snapshot"),
            resource_id: Some(p.snapshot_id.to_string()),
            project_id: Some(p.project_id.clone()),
        }
    }
}

/// The volume, if it is the caller's project's.
async fn volume(cx: &Cx<SnapshotCreate>, c: &mut Conn) -> Result<volumes::Volume, StepError> {
    let p = &cx.params;
    volumes::volume_get(c, p.volume_id)
        .await?
        .filter(|v| v.project_id == p.project_id)
        .ok_or_else(|| Error::volume_not_found(p.volume_id).into())
}

async fn reserve_quota(cx: &Cx<SnapshotCreate>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    let v = volume(cx, c).await?;
    let deltas = scoria_model::quota::snapshot_deltas(v.volume_type_id, v.size);
    let ids = quotas::quota_reserve(c, cx.flow_id, &p.project_id, &deltas, None)
        .await
        .map_err(Error::from)?;
    let reservation = ids
        .first()
        .ok_or_else(|| StepError::msg("quota_reserve recorded no reservation"))?;
    serde_json::to_value(Reserved {
        reservation: reservation.to_string(),
        size: v.size,
        volume_type_id: v.volume_type_id,
    })
    .map_err(|e| StepError::msg(e.to_string()))
}

async fn release_quota(cx: &Cx<SnapshotCreate>, c: &mut Conn) -> Result<(), StepError> {
    quotas::reservation_release_flow(c, cx.flow_id).await?;
    Ok(())
}

async fn create_entry(cx: &Cx<SnapshotCreate>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    let reserved: Reserved = cx.output("reserve_quota")?;
    let v = volume(cx, c).await?;
    crate::rules::volumes::assert_not_migrating_for(
        &v,
        "Snapshot cannot be created while volume is migrating.",
    )?;
    let readable = match v.status {
        VolumeStatus::Available => true,
        VolumeStatus::InUse => p.allow_in_use,
        _ => false,
    };
    if !readable {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {} status must be available{}, but current status is: {}.",
            v.id,
            if p.allow_in_use { " or in-use" } else { "" },
            v.status
        ))
        .into());
    }
    if v.size != reserved.size {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {} changed size while its snapshot was being requested.",
            v.id
        ))
        .into());
    }
    // Attached is fine: the export moves onto the overlay (`go_live`).
    crate::rules::volumes::assert_not_held_by_copies(c, v.id, "snapshotted").await?;
    crate::rules::hosts::assert_not_frozen(c, v.backend.as_deref()).await?;
    let base = crate::rules::images::active_image(c, &v)
        .await?
        .filter(|i| i.state == ImageState::Ready)
        .ok_or_else(|| {
            Error::InvalidState(format!(
                "Invalid volume: Volume {} has no data to snapshot.",
                v.id
            ))
        })?;
    let backend = cx.env.backend(&base.backend)?;
    if !backend.driver.capabilities().layering {
        return Err(Error::Invalid(format!(
            "Invalid input received: backend {} cannot take snapshots (its driver does not layer images).",
            base.backend
        ))
        .into());
    }
    let reservation_id = reserved
        .reservation
        .parse()
        .map_err(|_| StepError::msg("reserve_quota recorded a bad reservation"))?;
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
            size: v.size,
            reservation_id: Some(reservation_id),
            last_flow_id: Some(cx.flow_id.to_string()),
            metadata: p.metadata.clone(),
        },
    )
    .await?;
    let overlay_id = ImageId::new();
    let overlay_name = crate::rules::images::name_for(overlay_id, Format::Qcow2);
    images::image_create(
        c,
        &images::NewImage {
            id: overlay_id,
            backend: base.backend.clone(),
            name: overlay_name.clone(),
            format: scoria_model::image::ImageFormat::Qcow2,
            virtual_size: base.virtual_size,
            base_id: Some(base.id),
            mutable: true,
            state: ImageState::Creating,
        },
    )
    .await?;
    serde_json::to_value(Plan {
        backend: base.backend,
        base_id: base.id,
        base_name: base.name,
        overlay_id,
        overlay_name,
        size: base.virtual_size as u64,
    })
    .map_err(|e| StepError::msg(e.to_string()))
}

/// Undo of `create_entry`, after `freeze`'s undo removed the overlay's data:
/// the overlay's record goes; the snapshot goes too before anyone was told of
/// it, and stays as `error` (told to its project once) after.
async fn remove_entry(cx: &Cx<SnapshotCreate>, c: &mut Conn) -> Result<(), StepError> {
    let p = &cx.params;
    if let Some(plan) = cx.output_opt::<Plan>("create_entry")
        && !on_overlay(c, p.volume_id, &plan).await?
    {
        images::image_delete(c, plan.overlay_id).await?;
    }
    if cx.output_opt::<Value>("commit_quota").is_some() {
        let moved = snapshots::snapshot_set_status(
            c,
            p.snapshot_id,
            &[SnapshotStatus::Creating],
            SnapshotStatus::Error,
            None,
        )
        .await?;
        if moved {
            messages::record_snapshot_failure(
                c,
                &p.project_id,
                p.snapshot_id,
                &messages::request_id_or(&p.request_id, cx.flow_id),
                messages::SNAPSHOT_CREATE,
                messages::SNAPSHOT_CREATE_ERROR,
            )
            .await?;
        }
    } else {
        snapshots::snapshot_delete(c, p.snapshot_id).await?;
    }
    Ok(())
}

async fn commit_quota(cx: &Cx<SnapshotCreate>, c: &mut Conn) -> Result<Value, StepError> {
    quotas::reservation_release_flow(c, cx.flow_id).await?;
    if !snapshots::snapshot_commit_quota(c, cx.params.snapshot_id).await? {
        return Err(Error::NotFound(format!(
            "Snapshot {} could not be found.",
            cx.params.snapshot_id
        ))
        .into());
    }
    Ok(json!(true))
}

async fn freeze(cx: &Cx<SnapshotCreate>) -> Result<Value, StepError> {
    let plan: Plan = cx.output("create_entry")?;
    let driver = &cx.env.backend(&plan.backend)?.driver;
    driver
        .make_immutable(&plan.base_name)
        .await
        .map_err(|e| storage_error("freeze the volume's image", e))?;
    driver
        .create_overlay(
            &plan.base_name,
            &ImageSpec {
                name: plan.overlay_name.clone(),
                size: plan.size,
                format: Format::Qcow2,
            },
        )
        .await
        .map_err(|e| storage_error("create the volume's new layer", e))?;
    crate::capacity::refresh(&cx.env, &plan.backend).await;
    Ok(Value::Null)
}

/// Undo of `freeze`: the overlay goes, and the volume's image, which nothing
/// else is layered on (the volume was held), can be written again.
async fn thaw(cx: &Cx<SnapshotCreate>) -> Result<(), StepError> {
    let Some(plan) = cx.output_opt::<Plan>("create_entry") else {
        return Ok(());
    };
    {
        let mut c = cx.env.store.read().await?;
        if on_overlay(&mut c, cx.params.volume_id, &plan).await? {
            // Past the point of no return: the volume writes the overlay.
            return Ok(());
        }
    }
    let driver = &cx.env.backend(&plan.backend)?.driver;
    driver
        .delete(&plan.overlay_name)
        .await
        .map_err(|e| storage_error("remove a partly made layer", e))?;
    driver
        .make_mutable(&plan.base_name)
        .await
        .map_err(|e| storage_error("give the volume its image back", e))?;
    Ok(())
}

/// The volume moves onto the overlay in the records (and so does the desired
/// state of its exports); the snapshot stays `creating` until `finish`.
async fn switch(cx: &Cx<SnapshotCreate>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    let plan: Plan = cx.output("create_entry")?;
    images::image_freeze(c, plan.base_id).await?;
    images::image_set_state(
        c,
        plan.overlay_id,
        &[ImageState::Creating],
        ImageState::Ready,
    )
    .await?;
    if !volumes::volume_switch_image(c, p.volume_id, plan.base_id, plan.overlay_id).await? {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {} changed its data while it was being snapshotted.",
            p.volume_id
        ))
        .into());
    }
    Ok(Value::Null)
}

/// Whether `switch` moved the volume onto the overlay.
async fn on_overlay(c: &mut Conn, volume: VolumeId, plan: &Plan) -> Result<bool, StepError> {
    Ok(volumes::volume_get(c, volume)
        .await?
        .is_some_and(|v| v.image_id == Some(plan.overlay_id)))
}

/// The volume's exports, if it has any, move onto the overlay inside their
/// daemons (see the module doc): from here on nothing writes the frozen image.
async fn go_live(cx: &Cx<SnapshotCreate>) -> Result<Value, StepError> {
    let plan: Plan = cx.output("create_entry")?;
    crate::exports::snapshot_live(
        &cx.env,
        cx.params.volume_id,
        &plan.backend,
        &plan.overlay_name,
    )
    .await?;
    Ok(Value::Null)
}

/// The snapshot is `available` on the frozen image. Nothing here may fail
/// on a state another caller changed: the volume already writes the overlay,
/// so there is no going back (a snapshot an admin reset or force-deleted
/// meanwhile stays as they left it).
async fn finish(cx: &Cx<SnapshotCreate>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    let plan: Plan = cx.output("create_entry")?;
    if !snapshots::snapshot_mark_available(c, p.snapshot_id, plan.base_id).await? {
        tracing::warn!(snapshot = %p.snapshot_id, "the snapshot was no longer being created when it was taken");
    }
    let backend = cx.env.backend(&plan.backend)?;
    crate::rules::images::mark_health(c, plan.overlay_id, &backend.config).await?;
    // The snapshot's image is frozen now: a raw one is no longer degraded.
    crate::rules::images::mark_health(c, plan.base_id, &backend.config).await?;
    Ok(Value::Null)
}

/// Version 1's last step: `switch` and `finish` in one (flows persisted
/// before `go_live`, whose volumes had no export).
async fn switch_v1(cx: &Cx<SnapshotCreate>, c: &mut Conn) -> Result<Value, StepError> {
    switch(cx, c).await?;
    let p = &cx.params;
    let plan: Plan = cx.output("create_entry")?;
    if !snapshots::snapshot_mark_available(c, p.snapshot_id, plan.base_id).await? {
        return Err(Error::InvalidState(format!(
            "Snapshot {} is no longer being created.",
            p.snapshot_id
        ))
        .into());
    }
    let backend = cx.env.backend(&plan.backend)?;
    crate::rules::images::mark_health(c, plan.overlay_id, &backend.config).await?;
    // The snapshot's image is frozen now: a raw one is no longer degraded.
    crate::rules::images::mark_health(c, plan.base_id, &backend.config).await?;
    Ok(Value::Null)
}

#[cfg(all(test, feature = "failpoints"))]
mod tests;
