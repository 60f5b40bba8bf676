//! Revert a volume to one of its snapshots (the `revert` action, 3.40) — any of them,
//! not only the latest as Cinder requires — in constant time: the volume goes
//! on a new overlay on the snapshot's image.
//!
//! ```text
//!  begin_revert ──────────────────► make_overlay ──────────► switch
//!   volume `reverting`, snapshot     the overlay on the       the volume on the overlay,
//!   `restoring`; the overlay's       snapshot's image         `available`; the snapshot
//!   record (`creating`)              undo: delete it          `available`
//!   undo: statuses back, record
//!   gone (a failure after the API
//!   answered is told once)
//! ```
//!
//! Before:  volume ──► I3 ──► I2 ──► I1 ◄── snapshot s1
//! After:   volume ──► I4 ──► I1 ◄── s1      (I3, and I2 if no snapshot or
//!                                             volume uses it, are freed by
//!                                             the reaper)
//!
//! The volume keeps its size: when it was extended after the snapshot, the
//! overlay is as large as the volume and reads zeroes beyond the snapshot's
//! end. Nothing is destroyed by the flow itself, so every failure leaves the
//! volume on its own data, `available`. Refused while the volume is attached
//! (Cinder's rule: only `available` volumes), held (being copied or
//! snapshotted), or on a frozen backend.

use scoria_flows::{Cx, Flow, FlowMeta, Step, StepError};
use scoria_model::image::{ImageFormat, ImageState};
use scoria_model::snapshot::SnapshotStatus;
use scoria_model::volume::{AttachStatus, GIB, VolumeStatus};
use scoria_model::{ImageId, SnapshotId, VolumeId};
use scoria_storage::{Format, ImageSpec};
use scoria_store::{Conn, flows as flow_store, images, snapshots, volumes};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::{Env, flows::storage_error, messages};

pub struct VolumeRevert;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub volume_id: VolumeId,
    pub snapshot_id: SnapshotId,
    /// The caller's project; `None` for an admin acting on any project.
    pub project_id: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Plan {
    project_id: String,
    backend: String,
    old_image: ImageId,
    base_name: String,
    overlay_id: ImageId,
    overlay_name: String,
    /// Bytes: the volume's size.
    size: u64,
}

impl Flow for VolumeRevert {
    const KIND: &'static str = "volume_revert";
    type Params = Params;
    type Env = Env;

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::db("begin_revert", |cx, c| Box::pin(begin_revert(cx, c)))
                .undo_db(|cx, c| Box::pin(abort_revert(cx, c))),
            Step::external("make_overlay", |cx| Box::pin(make_overlay(cx)))
                .undo_external(|cx| Box::pin(remove_overlay(cx))),
            Step::db("switch", |cx, c| Box::pin(switch(cx, c))),
        ]
    }

    fn meta(p: &Params) -> FlowMeta {
        FlowMeta {
            resource_type: Some("volume"),
            resource_id: Some(p.volume_id.to_string()),
            project_id: p.project_id.clone(),
        }
    }
}

async fn begin_revert(cx: &Cx<VolumeRevert>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    let v = volumes::volume_get(c, p.volume_id)
        .await?
        .filter(|v| {
            p.project_id
                .as_ref()
                .is_none_or(|proj| *proj == v.project_id)
        })
        .ok_or_else(|| Error::volume_not_found(p.volume_id))?;
    let s = snapshots::snapshot_get(c, p.snapshot_id)
        .await?
        .filter(|s| s.project_id == v.project_id)
        .ok_or_else(|| crate::rules::snapshots::not_found(p.snapshot_id))?;
    if s.volume_id != v.id {
        return Err(Error::Invalid(format!(
            "Invalid input received: snapshot {} is not a snapshot of volume {}.",
            s.id, v.id
        ))
        .into());
    }
    if v.status != VolumeStatus::Available || v.attach_status != AttachStatus::Detached {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {} status must be available and detached to revert, but current status is: {}.",
            v.id, v.status
        ))
        .into());
    }
    if s.status != SnapshotStatus::Available {
        return Err(Error::InvalidState(format!(
            "Invalid snapshot: Snapshot {} status must be available to revert to, but current status is: {}.",
            s.id, s.status
        ))
        .into());
    }
    let busy = flow_store::flow_list_unsettled_for(c, &v.id.to_string())
        .await?
        .into_iter()
        .find(|f| f.id != cx.flow_id && f.state.is_active());
    if let Some(f) = busy {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {} has an operation in progress ({}).",
            v.id, f.kind
        ))
        .into());
    }
    crate::rules::hosts::assert_not_frozen(c, v.backend.as_deref()).await?;
    let moved = volumes::volume_set_status_by_flow(
        c,
        v.id,
        &[VolumeStatus::Available],
        VolumeStatus::Reverting,
        Some(&cx.flow_id.to_string()),
    )
    .await?;
    if !moved {
        return Err(Error::InvalidState(format!(
            "Invalid volume: volume {} changed status.",
            v.id
        ))
        .into());
    }
    crate::rules::volumes::assert_not_held(c, v.id, "reverted").await?;
    snapshots::snapshot_set_status(
        c,
        s.id,
        &[SnapshotStatus::Available],
        SnapshotStatus::Restoring,
        None,
    )
    .await?;
    let old = crate::rules::images::active_image(c, &v)
        .await?
        .ok_or_else(|| {
            Error::InvalidState(format!("Invalid volume: Volume {} has no data.", v.id))
        })?;
    let base = s
        .image_id
        .ok_or_else(|| StepError::msg(format!("snapshot {} has no image", s.id)))?;
    let base = images::image_get(c, base)
        .await?
        .ok_or_else(|| StepError::msg(format!("snapshot {}'s image is missing", s.id)))?;
    let overlay_id = ImageId::new();
    let overlay_name = crate::rules::images::name_for(overlay_id, Format::Qcow2);
    let size = v.size * GIB as i64;
    images::image_create(
        c,
        &images::NewImage {
            id: overlay_id,
            backend: base.backend.clone(),
            name: overlay_name.clone(),
            format: ImageFormat::Qcow2,
            virtual_size: size,
            base_id: Some(base.id),
            mutable: true,
            state: ImageState::Creating,
        },
    )
    .await?;
    serde_json::to_value(Plan {
        project_id: v.project_id,
        backend: base.backend,
        old_image: old.id,
        base_name: base.name,
        overlay_id,
        overlay_name,
        size: size as u64,
    })
    .map_err(|e| StepError::msg(e.to_string()))
}

/// Undo of `begin_revert`: the volume never left its own data, so it is
/// `available` again; a failure of the backend step is told once.
async fn abort_revert(cx: &Cx<VolumeRevert>, c: &mut Conn) -> Result<(), StepError> {
    let p = &cx.params;
    let plan: Plan = cx.output("begin_revert")?;
    images::image_delete(c, plan.overlay_id).await?;
    snapshots::snapshot_set_status(
        c,
        p.snapshot_id,
        &[SnapshotStatus::Restoring],
        SnapshotStatus::Available,
        None,
    )
    .await?;
    let moved = volumes::volume_set_status(
        c,
        p.volume_id,
        &[VolumeStatus::Reverting],
        VolumeStatus::Available,
    )
    .await?;
    if moved && cx.failure().is_some_and(|f| f.step == "make_overlay") {
        messages::record_volume_failure(
            c,
            &plan.project_id,
            p.volume_id,
            &messages::request_id_or(&p.request_id, cx.flow_id),
            messages::REVERT_VOLUME,
            messages::DRIVER_FAILED_REVERT,
        )
        .await?;
    }
    Ok(())
}

async fn make_overlay(cx: &Cx<VolumeRevert>) -> Result<Value, StepError> {
    let plan: Plan = cx.output("begin_revert")?;
    cx.env
        .backend(&plan.backend)?
        .driver
        .create_overlay(
            &plan.base_name,
            &ImageSpec {
                name: plan.overlay_name.clone(),
                size: plan.size,
                format: Format::Qcow2,
            },
        )
        .await
        .map_err(|e| storage_error("make the volume's new layer", e))?;
    crate::capacity::refresh(&cx.env, &plan.backend).await;
    Ok(Value::Null)
}

async fn remove_overlay(cx: &Cx<VolumeRevert>) -> Result<(), StepError> {
    let Some(plan) = cx.output_opt::<Plan>("begin_revert") else {
        return Ok(());
    };
    cx.env
        .backend(&plan.backend)?
        .driver
        .delete(&plan.overlay_name)
        .await
        .map_err(|e| storage_error("remove a partly made layer", e))
}

async fn switch(cx: &Cx<VolumeRevert>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    let plan: Plan = cx.output("begin_revert")?;
    images::image_set_state(
        c,
        plan.overlay_id,
        &[ImageState::Creating],
        ImageState::Ready,
    )
    .await?;
    if !volumes::volume_switch_image(c, p.volume_id, plan.old_image, plan.overlay_id).await? {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {} changed its data while it was being reverted.",
            p.volume_id
        ))
        .into());
    }
    snapshots::snapshot_set_status(
        c,
        p.snapshot_id,
        &[SnapshotStatus::Restoring],
        SnapshotStatus::Available,
        None,
    )
    .await?;
    if !volumes::volume_set_status(
        c,
        p.volume_id,
        &[VolumeStatus::Reverting],
        VolumeStatus::Available,
    )
    .await?
    {
        return Err(Error::InvalidState(format!(
            "Volume {} is no longer being reverted.",
            p.volume_id
        ))
        .into());
    }
    let backend = cx.env.backend(&plan.backend)?;
    crate::rules::images::mark_health(c, plan.overlay_id, &backend.config).await?;
    Ok(Value::Null)
}

#[cfg(all(test, feature = "failpoints"))]
mod tests {
    use scoria_flows::Engine;
    use scoria_flows::testkit::{BoxFut, Expect};
    use scoria_model::snapshot::SnapshotStatus;
    use scoria_model::volume::VolumeStatus;
    use scoria_model::{SnapshotId, VolumeId};
    use scoria_storage::{Format, qemu};

    use super::{Params, VolumeRevert};
    use crate::Env;
    use crate::flows::testing::{self, PROJECT, Scenario, World, text};

    /// A volume with three snapshots, each taken after writing its own byte
    /// over the first MiB, reverted to the *first*. Done: the volume reads
    /// the first byte, the three snapshots are `available` and still read
    /// theirs; failed: the volume reads the last byte it had, `available`.
    struct Revert {
        volume: VolumeId,
        snapshots: [SnapshotId; 3],
    }

    const BYTES: [u8; 3] = [0x11, 0x22, 0x33];
    const LAST: u8 = 0x44;
    const MIB: u64 = 1 << 20;

    impl Scenario for Revert {
        type F = VolumeRevert;
        const NAME: &'static str = "volume_revert";

        fn prepare<'a>(&'a self, w: &'a World) -> BoxFut<'a, ()> {
            Box::pin(async move {
                let e = w.plain().await;
                w.create_volume(&e, self.volume, 1).await;
                for (s, byte) in self.snapshots.iter().zip(BYTES) {
                    let image = w.image_of(&e, self.volume).await;
                    qemu::write_pattern(&image, Format::Qcow2, 0, MIB, byte)
                        .await
                        .expect("write");
                    w.create_snapshot(&e, *s, self.volume).await;
                }
                let image = w.image_of(&e, self.volume).await;
                qemu::write_pattern(&image, Format::Qcow2, 0, MIB, LAST)
                    .await
                    .expect("write");
            })
        }

        fn params(&self) -> Params {
            Params {
                volume_id: self.volume,
                snapshot_id: self.snapshots[0],
                project_id: Some(PROJECT.into()),
                request_id: Some("req-test".into()),
            }
        }

        fn check<'a>(
            &'a self,
            w: &'a World,
            e: &'a Engine<Env>,
            expect: Expect,
        ) -> BoxFut<'a, Result<(), String>> {
            Box::pin(async move {
                let v = w
                    .volume(e, self.volume)
                    .await?
                    .ok_or("the volume is gone")?;
                if v.status != VolumeStatus::Available {
                    return Err(format!("the volume is {}", v.status));
                }
                let image = w.image_of(e, self.volume).await;
                let reads = |byte| {
                    let image = image.clone();
                    async move {
                        qemu::read_pattern(&image, Format::Qcow2, 0, MIB, byte)
                            .await
                            .map_err(text)
                    }
                };
                let reverted = reads(BYTES[0]).await?;
                let kept = reads(LAST).await?;
                let ok = match expect {
                    Expect::Done => reverted,
                    Expect::Failed => kept,
                    Expect::Either => reverted || kept,
                };
                if !ok {
                    return Err(format!(
                        "expected {expect:?}: reads the first snapshot's data: {reverted}, its own: {kept}"
                    ));
                }
                for (s, byte) in self.snapshots.iter().zip(BYTES) {
                    let snap = w.snapshot(e, *s).await?.ok_or("a snapshot is gone")?;
                    if snap.status != SnapshotStatus::Available {
                        return Err(format!("snapshot {s} is {}", snap.status));
                    }
                    let path = w.image_path(e, snap.image_id.ok_or("no image")?).await?;
                    if !qemu::read_pattern(&path, Format::Qcow2, 0, MIB, byte)
                        .await
                        .map_err(text)?
                    {
                        return Err(format!("snapshot {s} lost its data"));
                    }
                }
                // The volume takes writes, which reach no snapshot.
                qemu::write_pattern(&image, Format::Qcow2, 0, MIB, 0x55)
                    .await
                    .map_err(|e| format!("the volume cannot be written: {e}"))?;
                // A revert that did not happen because the backend failed is
                // told once (the volume is `available` again, on its own
                // data); one that happened is never told.
                let told = w.messages_about(e, self.volume).await?;
                if told > usize::from(!reverted) {
                    return Err(format!("{told} messages tell of the volume"));
                }
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn passes_the_generic_flow_tests_on_the_file_backend() {
        let report = testing::generic(|| Revert {
            volume: VolumeId::new(),
            snapshots: [SnapshotId::new(), SnapshotId::new(), SnapshotId::new()],
        })
        .await;
        println!("volume_revert: {report:?}");
        assert!(report.crash_points >= 5, "{report:?}");
    }
}
