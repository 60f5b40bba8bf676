//! Delete a volume.
//!
//! ```text
//!  begin_delete ─────────────► delete_on_backend ─► remove_entry
//!   checks the rules, moves     removes the image    drops the entry: its
//!   the volume to `deleting`    (gone = success)     quota usage goes with it
//!   undo: back to the prior
//!   status, or `error_deleting`
//!   once the backend was touched
//! ```
//!
//! A volume's snapshots are deleted with it only with `cascade` (Cinder's);
//! without it, a volume with snapshots is refused. Its active image's data is
//! removed here; the images under it (the snapshots' frozen layers) are freed
//! by the reaper once nothing uses them — at once, unless a volume made from
//! one of the snapshots still stands on it.
//!
//! Refused (before anything changes) while the volume is attached, on a frozen
//! backend, in a transitional status, owned by another running flow, read by a
//! clone being created from it (even with `force`), or (without `force`) in a
//! status Cinder does not delete from. `force` (admins)
//! deletes from any status except attached, and supersedes flows left `stuck`
//! on the volume, releasing what they held. A volume `awaiting-transfer` is
//! deleted only by force; its first step voids the offer (deletes the transfer)
//! in the same transaction, so an undo before the backend was touched makes it
//! `available` again, not `awaiting-transfer` without a transfer. A failure on
//! the backend leaves the volume `error_deleting` and tells its project (a user
//! message).

use scoria_flows::{Cx, Flow, FlowMeta, Step, StepError};
use scoria_model::flow::FlowState;
use scoria_model::image::ImageState;
use scoria_model::snapshot::SnapshotStatus;
use scoria_model::volume::{AttachStatus, VolumeStatus};
use scoria_model::{GroupId, ImageId, SnapshotId, VolumeId};
use scoria_store::{Conn, flows as flow_store, images, quotas, snapshots, transfers, volumes};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::Error;
use crate::{Env, flows::storage_error, messages};

pub struct VolumeDelete;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub volume_id: VolumeId,
    /// The caller's project; `None` for an admin acting on any project.
    pub project_id: Option<String>,
    pub force: bool,
    /// The request that asked for the delete (named by a failure message).
    #[serde(default)]
    pub request_id: Option<String>,
    /// Set when the delete is part of deleting this group (the
    /// `group_delete` flow): only then may a member of a group be deleted.
    #[serde(default)]
    pub group_id: Option<GroupId>,
    /// Delete the volume's snapshots with it (Cinder's `cascade`); without
    /// it, a volume with snapshots is not deleted.
    #[serde(default)]
    pub cascade: bool,
    /// Cinder's unmanage (`os-unmanage`): the volume leaves Scoria, its data
    /// does not. The data is handed back as a self-contained file named
    /// [`handed_back_name`] on its backend (renamed when the active image
    /// stands alone, else a flattened copy), and the records go as for a
    /// delete. Never with `cascade`: a volume with snapshots is refused.
    #[serde(default)]
    pub unmanage: bool,
}

/// The name an unmanaged volume's file gets on its backend: `volume-<id>`,
/// with its format's extension (what `os-volume-manage` takes back as
/// `{"source-name": "volume-<id>"}`).
pub fn handed_back_name(id: VolumeId, format: scoria_storage::Format) -> String {
    format!("volume-{id}.{}", format.extension())
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Begun {
    /// The status an undo puts back (the prior one, but `available` for a
    /// volume whose transfer offer this delete voided).
    prior_status: VolumeStatus,
    /// The snapshots deleted with the volume (`cascade`), with the status an
    /// undo puts back.
    #[serde(default)]
    snapshots: Vec<(SnapshotId, SnapshotStatus)>,
    /// The backend and name of the volume's active image.
    backend: Option<String>,
    location: Option<String>,
    /// The active image (absent in flows persisted before images were
    /// recorded: the steps then read it from the volume).
    #[serde(default)]
    image_id: Option<ImageId>,
    /// For an unmanage: the name the data is handed back under, and whether
    /// the active image is layered on another (then it is copied flattened).
    #[serde(default)]
    hand_back: Option<HandBack>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct HandBack {
    name: String,
    layered: bool,
    size: u64,
}

impl Flow for VolumeDelete {
    const KIND: &'static str = "volume_delete";
    type Params = Params;
    type Env = Env;

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::db("begin_delete", |cx, c| Box::pin(begin_delete(cx, c)))
                .undo_db(|cx, c| Box::pin(abort_delete(cx, c))),
            Step::external("delete_on_backend", |cx| Box::pin(delete_on_backend(cx))),
            Step::db("remove_entry", |cx, c| Box::pin(remove_entry(cx, c))),
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

/// Cinder's explanation of when a volume may be deleted.
pub const NOT_DELETABLE: &str = "Invalid volume: Volume status must be available or error or error_restoring or error_extending and must not be migrating, attached, belong to a group, have snapshots or be awaiting a transfer.";

async fn begin_delete(cx: &Cx<VolumeDelete>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    let v = volumes::volume_get(c, p.volume_id).await?;
    let v = match v {
        Some(v)
            if p.project_id
                .as_ref()
                .is_none_or(|proj| *proj == v.project_id) =>
        {
            v
        }
        _ => return Err(Error::volume_not_found(p.volume_id).into()),
    };
    crate::rules::volumes::assert_not_migrating_for(
        &v,
        "Volume cannot be deleted while migrating",
    )?;
    // The common case first: nothing in the way, in one query; otherwise
    // each check below says what is.
    let host = v.backend.as_deref().map(crate::rules::hosts::backend_host);
    let clear = volumes::volume_nothing_in_the_way(
        c,
        v.id,
        &cx.flow_id.to_string(),
        host.as_deref()
            .map(|h| (h, crate::rules::hosts::VOLUME_BINARY)),
    )
    .await?;
    if !clear {
        crate::rules::attachments::assert_not_attached(c, v.id, "deleted").await?;
    }
    if v.attach_status != AttachStatus::Detached {
        return Err(Error::InvalidState(format!(
            "{NOT_DELETABLE} (volume {} is {}).",
            v.id, v.attach_status
        ))
        .into());
    }
    if v.group_id != p.group_id {
        // A volume leaves its group only by being removed from it or with
        // the whole group (Cinder's rule, forced or not).
        return Err(Error::InvalidState(match v.group_id {
            Some(g) => format!(
                "{NOT_DELETABLE} (volume {} belongs to group {g}: delete the group with its volumes, or remove the volume from the group first).",
                v.id
            ),
            None => format!("Invalid volume: volume {} is no longer in the group being deleted.", v.id),
        })
        .into());
    }
    let others: Vec<_> = if clear {
        Vec::new()
    } else {
        crate::rules::hosts::assert_not_frozen(c, v.backend.as_deref()).await?;
        flow_store::flow_list_unsettled_for(c, &v.id.to_string())
            .await?
            .into_iter()
            .filter(|f| f.id != cx.flow_id)
            .collect()
    };
    if let Some(f) = others.iter().find(|f| f.state.is_active()) {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {} has an operation in progress ({}, {}).",
            v.id, f.kind, f.state
        ))
        .into());
    }
    if !p.force {
        let deletable = match p.group_id {
            Some(_) => crate::rules::groups::deletable_member(v.status),
            None => VolumeStatus::DELETABLE.contains(&v.status),
        };
        if !deletable {
            return Err(Error::InvalidState(format!(
                "{NOT_DELETABLE} (volume {} is {}).",
                v.id, v.status
            ))
            .into());
        }
        if !others.is_empty() {
            return Err(Error::InvalidState(format!(
                "Invalid volume: an operation on volume {} is stuck; an administrator must force-delete it.",
                v.id
            ))
            .into());
        }
    }
    // A forced delete settles the stuck flows on the volume: what they held
    // (reservations) is released, and they are recorded as failed.
    for f in &others {
        quotas::reservation_release_flow(c, f.id).await?;
        flow_store::flow_set_state(
            c,
            f.id,
            FlowState::Failed,
            None,
            Some("superseded by a forced delete"),
        )
        .await?;
    }
    let moved = volumes::volume_set_status_by_flow(
        c,
        v.id,
        &[v.status],
        VolumeStatus::Deleting,
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
    // Even a forced delete waits for the copies being made of the volume.
    if !clear {
        crate::rules::volumes::assert_not_held(c, v.id, "deleted").await?;
    }
    // Its snapshots go with it only when asked (Cinder's `cascade`), and only
    // those that may be deleted.
    let mut cascaded = Vec::new();
    let snaps = if clear {
        Vec::new()
    } else {
        snapshots::snapshot_list_for_volume(c, v.id).await?
    };
    if !snaps.is_empty() && (!p.cascade || p.unmanage) {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {} still has {} dependent snapshots.",
            v.id,
            snaps.len()
        ))
        .into());
    }
    for s in snaps {
        if !SnapshotStatus::DELETABLE.contains(&s.status) && !p.force {
            return Err(Error::InvalidState(format!(
                "Invalid volume: Snapshot {} of volume {} is {}; it must be available or error to be deleted with the volume.",
                s.id, v.id, s.status
            ))
            .into());
        }
        if !snapshots::snapshot_readers(c, s.id).await?.is_empty() {
            return Err(Error::InvalidState(format!(
                "Invalid volume: Snapshot {} of volume {} is being read to make a volume.",
                s.id, v.id
            ))
            .into());
        }
        snapshots::snapshot_set_status(c, s.id, &[s.status], SnapshotStatus::Deleting, None)
            .await?;
        cascaded.push((s.id, s.status));
    }
    let prior_status = if v.status == VolumeStatus::AwaitingTransfer {
        transfers::transfer_delete_for_volume(c, v.id).await?;
        VolumeStatus::Available
    } else {
        v.status
    };
    // The image is `deleting` from now on: once the backend was touched its
    // data may be partly gone, whatever becomes of the flow.
    let image = crate::rules::images::active_image(c, &v).await?;
    if let Some(i) = &image {
        images::image_set_state(c, i.id, &[], ImageState::Deleting).await?;
    }
    let hand_back = match (&image, p.unmanage) {
        (Some(i), true) => Some(HandBack {
            name: handed_back_name(v.id, crate::rules::images::storage_format(i.format)),
            layered: i.base_id.is_some(),
            size: v.size as u64 * scoria_model::volume::GIB,
        }),
        _ => None,
    };
    let begun = Begun {
        prior_status,
        hand_back,
        snapshots: cascaded,
        backend: image.as_ref().map(|i| i.backend.clone()),
        location: image.as_ref().map(|i| i.name.clone()),
        image_id: image.as_ref().map(|i| i.id),
    };
    serde_json::to_value(begun).map_err(|e| StepError::msg(e.to_string()))
}

/// Undo of `begin_delete`: once the backend step has run (or failed half way)
/// the image may be gone, so the volume is left `error_deleting` for an admin;
/// a failure before it puts the prior status back.
async fn abort_delete(cx: &Cx<VolumeDelete>, c: &mut Conn) -> Result<(), StepError> {
    let begun: Begun = cx.output("begin_delete")?;
    let touched = cx.output_opt::<Value>("delete_on_backend").is_some()
        || cx.failure().is_some_and(|f| f.step == "delete_on_backend");
    let to = if touched {
        VolumeStatus::ErrorDeleting
    } else {
        begun.prior_status
    };
    let id = cx.params.volume_id;
    for (s, prior) in &begun.snapshots {
        // The snapshots' data was not touched: they are as they were.
        snapshots::snapshot_set_status(c, *s, &[SnapshotStatus::Deleting], *prior, None).await?;
    }
    let moved = volumes::volume_set_status(c, id, &[VolumeStatus::Deleting], to).await?;
    if moved
        && !touched
        && let Some(image) = begun.image_id
    {
        // Untouched: the data is whole again.
        images::image_set_state(c, image, &[ImageState::Deleting], ImageState::Ready).await?;
    }
    if moved
        && touched
        && let Some(v) = volumes::volume_get(c, id).await?
    {
        // The owner learns why the volume is `error_deleting`.
        messages::record_volume_failure(
            c,
            &v.project_id,
            id,
            &messages::request_id_or(&cx.params.request_id, cx.flow_id),
            messages::DELETE_VOLUME,
            if cx.failure().is_some_and(|f| f.step == "delete_on_backend") {
                messages::DRIVER_FAILED_DELETE
            } else {
                messages::UNKNOWN_ERROR
            },
        )
        .await?;
    }
    Ok(())
}

async fn delete_on_backend(cx: &Cx<VolumeDelete>) -> Result<Value, StepError> {
    let begun: Begun = cx.output("begin_delete")?;
    if let (Some(backend), Some(location)) = (begun.backend, begun.location) {
        let driver = &cx.env.backend(&backend)?.driver;
        if let Some(h) = &begun.hand_back {
            hand_back(driver.as_ref(), &location, h).await?;
        } else {
            driver
                .delete(&location)
                .await
                .map_err(|e| storage_error("delete the volume", e))?;
        }
        crate::capacity::refresh(&cx.env, &backend).await;
    }
    Ok(Value::Null)
}

/// An unmanage's data handed back as the self-contained file `h.name`: the
/// active image renamed when it stands alone, else copied flattened and then
/// removed (what it stood on is the reaper's). A re-run finds the file
/// handed back and the image gone, and succeeds.
async fn hand_back(
    driver: &dyn scoria_storage::Driver,
    location: &str,
    h: &HandBack,
) -> Result<(), StepError> {
    if !h.layered {
        return driver
            .rename(location, &h.name)
            .await
            .map_err(|e| storage_error("hand the volume's file back", e));
    }
    let present =
        |r: Result<Option<_>, _>| r.map(|i: Option<scoria_storage::ImageInfo>| i.is_some());
    let source = present(driver.info(location).await)
        .map_err(|e| storage_error("look at the volume's image", e))?;
    if source {
        let spec = scoria_storage::ImageSpec {
            name: h.name.clone(),
            size: h.size,
            format: scoria_storage::format_of_name(&h.name)
                .map_err(|e| storage_error("name the handed back file", e))?,
        };
        driver
            .copy_from(location, &spec, &|_| {})
            .await
            .map_err(|e| storage_error("copy the volume's data into a file of its own", e))?;
        driver
            .delete(location)
            .await
            .map_err(|e| storage_error("remove the volume's image", e))?;
    }
    Ok(())
}

async fn remove_entry(cx: &Cx<VolumeDelete>, c: &mut Conn) -> Result<Value, StepError> {
    let image = volumes::volume_get(c, cx.params.volume_id)
        .await?
        .and_then(|v| v.image_id);
    // The cascaded snapshots leave with the volume; the images they and the
    // volume stood on are freed by the reaper once nothing uses them.
    let begun: Begun = cx.output("begin_delete")?;
    for (s, _) in &begun.snapshots {
        snapshots::snapshot_delete(c, *s).await?;
    }
    if !volumes::volume_delete(c, cx.params.volume_id).await? {
        return Err(Error::InvalidState(format!(
            "Volume {} is no longer being deleted.",
            cx.params.volume_id
        ))
        .into());
    }
    // Its data is gone (`delete_on_backend`), and nothing else used it.
    if let Some(image) = image {
        images::image_delete(c, image).await?;
    }
    Ok(json!(true))
}

#[cfg(all(test, feature = "failpoints"))]
mod tests {
    use scoria_flows::Engine;
    use scoria_flows::testkit::{BoxFut, Expect};
    use scoria_model::VolumeId;
    use scoria_model::volume::VolumeStatus::{Available, AwaitingTransfer, ErrorDeleting};

    use super::{Params, VolumeDelete};
    use crate::Env;
    use crate::flows::testing::{self, PROJECT, Scenario, USER, World};

    /// An available 1 GiB volume, deleted by its owner; or (`offered`) a
    /// volume offered for transfer, deleted by an admin's force.
    struct Delete {
        volume: VolumeId,
        offered: bool,
    }

    impl Scenario for Delete {
        type F = VolumeDelete;
        const NAME: &'static str = "volume_delete";

        fn prepare<'a>(&'a self, w: &'a World) -> BoxFut<'a, ()> {
            Box::pin(async move {
                let e = w.plain().await;
                w.create_volume(&e, self.volume, 1).await;
                if self.offered {
                    let mut tx = e.store().begin().await.expect("begin");
                    let v = scoria_store::volumes::volume_get(&mut tx, self.volume)
                        .await
                        .expect("read")
                        .expect("the volume");
                    crate::transfers::offer(&mut tx, &v, USER, None, false)
                        .await
                        .expect("offer the volume");
                    tx.commit().await.expect("commit");
                }
            })
        }

        fn params(&self) -> Params {
            Params {
                volume_id: self.volume,
                project_id: (!self.offered).then(|| PROJECT.into()),
                force: self.offered,
                request_id: Some("req-test".into()),
                group_id: None,
                cascade: false,
                unmanage: false,
            }
        }

        fn check<'a>(
            &'a self,
            w: &'a World,
            e: &'a Engine<Env>,
            expect: Expect,
        ) -> BoxFut<'a, Result<(), String>> {
            Box::pin(async move {
                let state = w.volume(e, self.volume).await?.map(|v| (v.status, v.size));
                let ok = match expect {
                    Expect::Either => true,
                    Expect::Done => state.is_none(),
                    // Failing before the first step leaves the offer standing
                    // (the invariants check that its transfer still exists);
                    // an undo of the first step leaves the volume
                    // `available`, the offer void.
                    Expect::Failed if self.offered => matches!(
                        state,
                        Some((AwaitingTransfer | Available | ErrorDeleting, 1))
                    ),
                    Expect::Failed => matches!(state, Some((Available | ErrorDeleting, 1))),
                };
                if !ok {
                    return Err(format!("expected {expect:?}, the volume is {state:?}"));
                }
                w.check_told(e, self.volume).await
            })
        }
    }

    #[tokio::test]
    async fn passes_the_generic_flow_tests_on_the_file_backend() {
        let report = testing::generic(|| Delete {
            volume: VolumeId::new(),
            offered: false,
        })
        .await;
        println!("volume_delete: {report:?}");
        assert!(report.crash_points >= 5, "{report:?}");
    }

    /// An unmanage of a volume holding known data: standing alone (renamed)
    /// or (`layered`) a clone layered on its source's frozen image (copied
    /// flattened). Done: the volume is gone and `volume-<id>.qcow2` reads the
    /// data on its own; failed: the volume is still there with its data.
    struct Unmanage {
        volume: VolumeId,
        layered: bool,
    }

    const PATTERN: u8 = 0x6e;

    async fn reads_data(path: &std::path::Path) -> Result<bool, String> {
        use scoria_storage::{Format, qemu};
        let at = |off, len, byte| qemu::read_pattern(path, Format::Qcow2, off, len, byte);
        Ok(at(2 << 20, 1 << 20, PATTERN).await.map_err(testing::text)?
            && at(0, 1 << 20, 0).await.map_err(testing::text)?)
    }

    impl Scenario for Unmanage {
        type F = VolumeDelete;
        const NAME: &'static str = "volume_delete (unmanage)";

        fn prepare<'a>(&'a self, w: &'a World) -> BoxFut<'a, ()> {
            Box::pin(async move {
                let e = w.plain().await;
                let first = if self.layered {
                    VolumeId::new()
                } else {
                    self.volume
                };
                w.create_volume(&e, first, 1).await;
                let image = w.image_of(&e, first).await;
                scoria_storage::qemu::write_pattern(
                    &image,
                    scoria_storage::Format::Qcow2,
                    2 << 20,
                    1 << 20,
                    PATTERN,
                )
                .await
                .expect("write");
                if self.layered {
                    w.run::<crate::flows::volume_create::VolumeCreate>(
                        &e,
                        crate::flows::volume_create::Params {
                            source_volid: Some(first),
                            ..testing::create_params(self.volume, 1)
                        },
                        "a clone",
                    )
                    .await;
                }
            })
        }

        fn params(&self) -> Params {
            Params {
                volume_id: self.volume,
                project_id: None,
                force: false,
                request_id: Some("req-test".into()),
                group_id: None,
                cascade: false,
                unmanage: true,
            }
        }

        fn check<'a>(
            &'a self,
            w: &'a World,
            e: &'a Engine<Env>,
            expect: Expect,
        ) -> BoxFut<'a, Result<(), String>> {
            Box::pin(async move {
                let handed = w.backend_dir("file").join(super::handed_back_name(
                    self.volume,
                    scoria_storage::Format::Qcow2,
                ));
                let state = w.volume(e, self.volume).await?.map(|v| v.status);
                match state {
                    None if expect != Expect::Failed => {
                        if !reads_data(&handed).await? {
                            return Err("the handed back file lost the data".into());
                        }
                        let info =
                            scoria_storage::qemu::info(&handed, scoria_storage::Format::Qcow2)
                                .await
                                .map_err(testing::text)?;
                        if info.backing_file.is_some() {
                            return Err("the handed back file is layered".into());
                        }
                    }
                    Some(Available) if expect != Expect::Done => {
                        if !reads_data(&w.image_of(e, self.volume).await).await? {
                            return Err("the volume lost its data".into());
                        }
                    }
                    // Touched and undone: the data is in one of the two.
                    Some(ErrorDeleting) if expect != Expect::Done => {
                        let image = w.image_of(e, self.volume).await;
                        let kept = (image.exists() && reads_data(&image).await?)
                            || (handed.exists() && reads_data(&handed).await?);
                        if !kept {
                            return Err("an undone unmanage lost the data".into());
                        }
                    }
                    other => return Err(format!("expected {expect:?}, the volume is {other:?}")),
                }
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn an_unmanage_hands_the_data_back_under_the_generic_tests() {
        for layered in [false, true] {
            let report = testing::generic(|| Unmanage {
                volume: VolumeId::new(),
                layered,
            })
            .await;
            assert!(report.crash_points >= 5, "{report:?}");
        }
    }

    #[tokio::test]
    async fn a_forced_delete_voids_a_transfer_offer_under_the_generic_tests() {
        let report = testing::generic(|| Delete {
            volume: VolumeId::new(),
            offered: true,
        })
        .await;
        println!("volume_delete (offered volume, forced): {report:?}");
        assert!(report.crash_points >= 5, "{report:?}");
    }
}
