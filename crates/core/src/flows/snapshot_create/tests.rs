//! The snapshot flow under the generic tests, on the real file backend: of
//! an available volume, and of an attached one whose export's daemon moves
//! onto the overlay.

use scoria_flows::Engine;
use scoria_flows::testkit::{BoxFut, Expect};
use scoria_model::snapshot::SnapshotStatus::{Available, Error};
use scoria_model::volume::VolumeStatus;
use scoria_model::{SnapshotId, VolumeId};
use scoria_storage::{Format, qemu};

use super::{Params, SnapshotCreate};
use crate::Env;
use crate::flows::testing::{self, PROJECT, Scenario, USER, World, text};

/// Guest data: before the snapshot, and written after it.
const BEFORE: (u64, u64, u8) = (0, 1 << 20, 0xab);
const AFTER: (u64, u64, u8) = (0, 1 << 20, 0xcd);

/// The snapshot's status is what the outcome allows.
fn as_expected(
    status: Option<scoria_model::snapshot::SnapshotStatus>,
    expect: Expect,
) -> Result<(), String> {
    let ok = match expect {
        Expect::Either => true,
        Expect::Done => status == Some(Available),
        Expect::Failed => matches!(status, None | Some(Error)),
    };
    if !ok {
        return Err(format!("expected {expect:?}, the snapshot is {status:?}"));
    }
    Ok(())
}

/// The file of an available snapshot's frozen image, which reads the data
/// written before the snapshot.
async fn frozen_with_data(
    w: &World,
    e: &Engine<Env>,
    s: &scoria_store::snapshots::Snapshot,
) -> Result<std::path::PathBuf, String> {
    let frozen = w.image_path(e, s.image_id.ok_or("no image")?).await?;
    let (o, l, b) = BEFORE;
    if !qemu::read_pattern(&frozen, Format::Qcow2, o, l, b)
        .await
        .map_err(text)?
    {
        return Err("the snapshot does not read the data written before it".into());
    }
    Ok(frozen)
}

/// A snapshot of an available 1 GiB volume holding known data. Done: the
/// snapshot is `available` on the volume's old image, the volume on an
/// overlay reading the same; a write to the volume afterwards does not
/// reach the snapshot. Failed: no snapshot (or one in `error`, told once),
/// the volume on its own image, which can be written again.
struct Snap {
    volume: VolumeId,
    snapshot: SnapshotId,
}

impl Scenario for Snap {
    type F = SnapshotCreate;
    const NAME: &'static str = "snapshot_create";

    fn prepare<'a>(&'a self, w: &'a World) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let e = w.plain().await;
            w.create_volume(&e, self.volume, 1).await;
            let (o, l, b) = BEFORE;
            qemu::write_pattern(&w.image_of(&e, self.volume).await, Format::Qcow2, o, l, b)
                .await
                .expect("write the volume's data");
        })
    }

    fn params(&self) -> Params {
        Params {
            snapshot_id: self.snapshot,
            project_id: PROJECT.into(),
            user_id: USER.into(),
            volume_id: self.volume,
            name: Some("s".into()),
            description: None,
            metadata: [("k".to_string(), "v".to_string())].into(),
            allow_in_use: false,
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
            let snap = w.snapshot(e, self.snapshot).await?;
            let status = snap.as_ref().map(|s| s.status);
            as_expected(status, expect)?;
            let told = w.messages_about(e, self.snapshot).await?;
            if told != usize::from(status == Some(Error)) {
                return Err(format!(
                    "snapshot is {status:?} and {told} messages tell of it"
                ));
            }
            let v = w
                .volume(e, self.volume)
                .await?
                .ok_or("the volume is gone")?;
            if v.status != VolumeStatus::Available {
                return Err(format!("the volume is {}", v.status));
            }
            // The volume reads its data, and takes a write.
            let image = w.image_of(e, self.volume).await;
            let (o, l, b) = BEFORE;
            if !qemu::read_pattern(&image, Format::Qcow2, o, l, b)
                .await
                .map_err(text)?
            {
                return Err("the volume does not read its data".into());
            }
            let (o, l, b) = AFTER;
            qemu::write_pattern(&image, Format::Qcow2, o, l, b)
                .await
                .map_err(|e| format!("the volume cannot be written: {e}"))?;
            if let Some(s) = snap.filter(|s| s.status == Available) {
                frozen_with_data(w, e, &s).await?;
            }
            Ok(())
        })
    }
}

#[tokio::test]
async fn passes_the_generic_flow_tests_on_the_file_backend() {
    let report = testing::generic(|| Snap {
        volume: VolumeId::new(),
        snapshot: SnapshotId::new(),
    })
    .await;
    println!("snapshot_create: {report:?}");
    assert!(report.crash_points >= 8, "{report:?}");
}

/// A snapshot of an attached (`in-use`) volume whose export serves. Done:
/// the snapshot `available` on the image the export served, consistent and
/// holding the data; the same daemon serves the volume's new overlay, so
/// what the guest writes next goes there. Failed: no snapshot (or `error`),
/// and the export serves whatever the volume's active image is — its own,
/// or the overlay when the failure came after the switch (no going back) —
/// never an image below it.
struct SnapAttached {
    volume: VolumeId,
    snapshot: SnapshotId,
}

impl Scenario for SnapAttached {
    type F = SnapshotCreate;
    const NAME: &'static str = "snapshot_create (attached)";

    fn prepare<'a>(&'a self, w: &'a World) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let e = w.plain().await;
            w.create_volume(&e, self.volume, 1).await;
            let (o, l, b) = BEFORE;
            qemu::write_pattern(&w.image_of(&e, self.volume).await, Format::Qcow2, o, l, b)
                .await
                .expect("write the volume's data");
            w.attach(&e, self.volume).await;
        })
    }

    fn params(&self) -> Params {
        Params {
            snapshot_id: self.snapshot,
            project_id: PROJECT.into(),
            user_id: USER.into(),
            volume_id: self.volume,
            name: None,
            description: None,
            metadata: Default::default(),
            allow_in_use: true,
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
            let snap = w.snapshot(e, self.snapshot).await?;
            let status = snap.as_ref().map(|s| s.status);
            as_expected(status, expect)?;
            let v = w
                .volume(e, self.volume)
                .await?
                .ok_or("the volume is gone")?;
            if v.status != VolumeStatus::InUse {
                return Err(format!("the volume is {}", v.status));
            }
            // The export serves the volume's active image, whatever happened.
            crate::exports::reconcile(e.env())
                .await
                .map_err(|e| e.chain())?;
            let active = w.image_of(e, self.volume).await;
            let active = active
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_owned);
            let exports = w.exports(e).await?;
            if exports.len() != 1 || !exports[0].serving || exports[0].image != active {
                return Err(format!(
                    "the export serves {exports:?}, the volume is on {active:?}"
                ));
            }
            if let Some(s) = snap.filter(|s| s.status == Available) {
                let frozen = frozen_with_data(w, e, &s).await?;
                if Some(
                    frozen
                        .file_name()
                        .and_then(|n| n.to_str())
                        .map(str::to_owned),
                ) == Some(active)
                {
                    return Err("the export still serves the snapshot's image".into());
                }
            }
            Ok(())
        })
    }
}

#[tokio::test]
async fn an_attached_volume_passes_the_generic_flow_tests() {
    let report = testing::generic(|| SnapAttached {
        volume: VolumeId::new(),
        snapshot: SnapshotId::new(),
    })
    .await;
    println!("snapshot_create (attached): {report:?}");
    assert!(report.crash_points >= 8, "{report:?}");
}
