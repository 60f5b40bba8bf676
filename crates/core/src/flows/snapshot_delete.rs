//! Delete a snapshot.
//!
//! ```text
//!  begin_delete ──────────────────► remove_entry
//!   checks the rules, moves the      drops the row: the snapshot leaves the API
//!   snapshot to `deleting`           and its quota (derived) with it
//!   undo: the prior status
//! ```
//!
//! The snapshot's data is not touched here. Its image is one of several
//! users' (the volume's overlay stands on it, and so may volumes made from
//! the snapshot); once the row is gone, the image is freed by the reaper
//! (`crate::reaper`) when nothing uses it any more — at once if nothing did,
//! or when the last volume standing on it goes. So a snapshot that volumes
//! depend on is deleted at once, and the data they read stays.
//!
//! Refused while a volume is being made from the snapshot by a full copy
//! (it reads the image; the create flow holds the snapshot from its first
//! transaction), while another operation is running on it, and (unless
//! forced by an admin) from a status Cinder does not delete from.

use scoria_flows::{Cx, Flow, FlowMeta, Step, StepError};
use scoria_model::SnapshotId;
use scoria_model::snapshot::SnapshotStatus;
use scoria_store::{Conn, flows as flow_store, images, snapshots, unmanaged_snapshots};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Env;
use crate::error::Error;

pub struct SnapshotDelete;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub snapshot_id: SnapshotId,
    /// The caller's project; `None` for an admin acting on any project.
    pub project_id: Option<String>,
    /// An admin's `os-force_delete`: from any status.
    pub force: bool,
    #[serde(default)]
    pub request_id: Option<String>,
    /// An admin's `os-unmanage`: the snapshot goes, its data stays in its
    /// volume's chain as the unmanaged snapshot `snapshot-<id>`
    /// ([`unmanaged_name`]), which `os-snapshot-manage` takes back.
    #[serde(default)]
    pub unmanage: bool,
}

/// The name an unmanaged snapshot's data is kept under: the `source-name`
/// by which a manage takes it back.
pub fn unmanaged_name(id: SnapshotId) -> String {
    format!("snapshot-{id}")
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Begun {
    prior_status: SnapshotStatus,
}

impl Flow for SnapshotDelete {
    const KIND: &'static str = "snapshot_delete";
    type Params = Params;
    type Env = Env;

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::db("begin_delete", |cx, c| Box::pin(begin_delete(cx, c)))
                .undo_db(|cx, c| Box::pin(abort_delete(cx, c))),
            Step::db("remove_entry", |cx, c| Box::pin(remove_entry(cx, c))),
        ]
    }

    fn meta(p: &Params) -> FlowMeta {
        FlowMeta {
            resource_type: Some("snapshot"),
            resource_id: Some(p.snapshot_id.to_string()),
            project_id: p.project_id.clone(),
        }
    }
}

/// Cinder's refusal of a snapshot in the wrong status.
pub fn not_deletable(id: SnapshotId, status: SnapshotStatus) -> Error {
    Error::InvalidState(format!(
        "Invalid snapshot: Snapshot status must be available or error and must not be part of a group, but snapshot {id} is {status}."
    ))
}

async fn begin_delete(cx: &Cx<SnapshotDelete>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    let s = snapshots::snapshot_get(c, p.snapshot_id)
        .await?
        .filter(|s| {
            p.project_id
                .as_ref()
                .is_none_or(|proj| *proj == s.project_id)
        })
        .ok_or_else(|| crate::rules::snapshots::not_found(p.snapshot_id))?;
    let others: Vec<_> = flow_store::flow_list_unsettled_for(c, &s.id.to_string())
        .await?
        .into_iter()
        .filter(|f| f.id != cx.flow_id && f.state.is_active())
        .collect();
    if let Some(f) = others.first() {
        return Err(Error::InvalidState(format!(
            "Invalid snapshot: Snapshot {} has an operation in progress ({}, {}).",
            s.id, f.kind, f.state
        ))
        .into());
    }
    if !p.force && !SnapshotStatus::DELETABLE.contains(&s.status) {
        return Err(not_deletable(s.id, s.status).into());
    }
    if s.group_snapshot_id.is_some() && !p.force {
        return Err(not_deletable(s.id, s.status).into());
    }
    let moved = snapshots::snapshot_set_status(
        c,
        s.id,
        &[s.status],
        SnapshotStatus::Deleting,
        Some(&cx.flow_id.to_string()),
    )
    .await?;
    if !moved {
        return Err(Error::InvalidState(format!(
            "Invalid snapshot: snapshot {} changed status.",
            s.id
        ))
        .into());
    }
    // After the status change, so that a create reading it sees one or the
    // other (see `snapshot_hold_for_read`).
    let readers = snapshots::snapshot_readers(c, s.id).await?;
    if !readers.is_empty() {
        let readers: Vec<String> = readers.iter().map(ToString::to_string).collect();
        return Err(Error::InvalidState(format!(
            "Invalid snapshot: Snapshot {} is in use: volume {} is being made from it; it cannot be deleted until then.",
            s.id,
            readers.join(", ")
        ))
        .into());
    }
    serde_json::to_value(Begun {
        prior_status: s.status,
    })
    .map_err(|e| StepError::msg(e.to_string()))
}

async fn abort_delete(cx: &Cx<SnapshotDelete>, c: &mut Conn) -> Result<(), StepError> {
    let begun: Begun = cx.output("begin_delete")?;
    snapshots::snapshot_set_status(
        c,
        cx.params.snapshot_id,
        &[SnapshotStatus::Deleting],
        begun.prior_status,
        None,
    )
    .await?;
    Ok(())
}

async fn remove_entry(cx: &Cx<SnapshotDelete>, c: &mut Conn) -> Result<Value, StepError> {
    if cx.params.unmanage {
        keep_unmanaged(c, cx.params.snapshot_id).await?;
    }
    if !snapshots::snapshot_delete(c, cx.params.snapshot_id).await? {
        return Err(crate::rules::snapshots::not_found(cx.params.snapshot_id).into());
    }
    Ok(json!(true))
}

/// Before an unmanaged snapshot's row goes, in the same transaction: record
/// its image under [`unmanaged_name`], so that the image never lacks a user.
/// A snapshot without data (one that failed) leaves nothing.
async fn keep_unmanaged(c: &mut Conn, id: SnapshotId) -> Result<(), StepError> {
    let Some(s) = snapshots::snapshot_get(c, id).await? else {
        return Ok(());
    };
    let Some(image_id) = s.image_id else {
        return Ok(());
    };
    let Some(image) = images::image_get(c, image_id).await? else {
        return Ok(());
    };
    unmanaged_snapshots::unmanaged_snapshot_record(
        c,
        &unmanaged_snapshots::UnmanagedSnapshot {
            backend: image.backend,
            name: unmanaged_name(id),
            image_id,
            volume_id: s.volume_id,
            size: s.size,
            taken_at: s.created_at,
            created_at: scoria_store::now(),
        },
    )
    .await?;
    Ok(())
}

#[cfg(all(test, feature = "failpoints"))]
mod tests {
    use scoria_flows::Engine;
    use scoria_flows::testkit::{BoxFut, Expect};
    use scoria_model::snapshot::SnapshotStatus;
    use scoria_model::{SnapshotId, VolumeId};
    use scoria_storage::{Format, qemu};
    use scoria_store::unmanaged_snapshots;

    use super::{Params, SnapshotDelete};
    use crate::Env;
    use crate::flows::testing::{self, PROJECT, Scenario, World, text};

    /// A snapshot of a 1 GiB volume, deleted while the volume still stands
    /// on its image: done, the snapshot is gone and the volume still reads
    /// the data it had; failed, the snapshot is `available` as it was.
    struct Delete {
        volume: VolumeId,
        snapshot: SnapshotId,
        /// `os-unmanage`: done, the snapshot's data is kept under its name.
        unmanage: bool,
    }

    impl Scenario for Delete {
        type F = SnapshotDelete;
        const NAME: &'static str = "snapshot_delete";

        fn prepare<'a>(&'a self, w: &'a World) -> BoxFut<'a, ()> {
            Box::pin(async move {
                let e = w.plain().await;
                w.create_volume(&e, self.volume, 1).await;
                qemu::write_pattern(
                    &w.image_of(&e, self.volume).await,
                    Format::Qcow2,
                    0,
                    1 << 20,
                    0x42,
                )
                .await
                .expect("write");
                w.create_snapshot(&e, self.snapshot, self.volume).await;
            })
        }

        fn params(&self) -> Params {
            Params {
                snapshot_id: self.snapshot,
                project_id: Some(PROJECT.into()),
                force: false,
                request_id: Some("req-test".into()),
                unmanage: self.unmanage,
            }
        }

        fn check<'a>(
            &'a self,
            w: &'a World,
            e: &'a Engine<Env>,
            expect: Expect,
        ) -> BoxFut<'a, Result<(), String>> {
            Box::pin(async move {
                let status = w.snapshot(e, self.snapshot).await?.map(|s| s.status);
                let ok = match expect {
                    Expect::Either => true,
                    Expect::Done => status.is_none(),
                    Expect::Failed => status == Some(SnapshotStatus::Available),
                };
                if !ok {
                    return Err(format!("expected {expect:?}, the snapshot is {status:?}"));
                }
                let mut c = e.store().read().await.map_err(text)?;
                let kept = unmanaged_snapshots::unmanaged_snapshot_get(
                    &mut c,
                    "file",
                    &super::unmanaged_name(self.snapshot),
                )
                .await
                .map_err(text)?;
                drop(c);
                if kept.is_some() != (self.unmanage && status.is_none()) {
                    return Err(format!(
                        "the snapshot is {status:?}, its data kept: {kept:?}"
                    ));
                }
                let image = w.image_of(e, self.volume).await;
                if !qemu::read_pattern(&image, Format::Qcow2, 0, 1 << 20, 0x42)
                    .await
                    .map_err(text)?
                {
                    return Err("the volume lost its data".into());
                }
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn passes_the_generic_flow_tests_on_the_file_backend() {
        let report = testing::generic(|| Delete {
            volume: VolumeId::new(),
            snapshot: SnapshotId::new(),
            unmanage: false,
        })
        .await;
        println!("snapshot_delete: {report:?}");
        assert!(report.crash_points >= 3, "{report:?}");
    }

    #[tokio::test]
    async fn an_unmanage_passes_the_generic_flow_tests() {
        let report = testing::generic(|| Delete {
            volume: VolumeId::new(),
            snapshot: SnapshotId::new(),
            unmanage: true,
        })
        .await;
        println!("snapshot unmanage: {report:?}");
        assert!(report.crash_points >= 3, "{report:?}");
    }
}
