//! The manage flow under the generic flow tests, and the unmanage before it.

use scoria_flows::Engine;
use scoria_flows::testkit::{BoxFut, Expect};
use scoria_model::snapshot::SnapshotStatus;
use scoria_model::{SnapshotId, VolumeId};
use scoria_storage::{Format, qemu};
use scoria_store::{images, unmanaged_snapshots};

use super::{Params, SnapshotManage};
use crate::Env;
use crate::flows::snapshot_delete::{self, SnapshotDelete, unmanaged_name};
use crate::flows::testing::{self, PROJECT, Scenario, USER, World, text};

/// A 1 GiB volume with data, snapshotted, the snapshot unmanaged, then
/// written again (so the kept layer and the volume differ): done, a new
/// snapshot is `available` on the kept image, which still holds the first
/// data, and the unmanaged record is gone; failed, the record and its image
/// are as they were and no snapshot exists.
struct Manage {
    volume: VolumeId,
    old: SnapshotId,
    new: SnapshotId,
}

impl Manage {
    async fn kept(
        &self,
        e: &Engine<Env>,
    ) -> Result<Option<unmanaged_snapshots::UnmanagedSnapshot>, String> {
        let mut c = e.store().read().await.map_err(text)?;
        unmanaged_snapshots::unmanaged_snapshot_get(&mut c, "file", &unmanaged_name(self.old))
            .await
            .map_err(text)
    }
}

impl Scenario for Manage {
    type F = SnapshotManage;
    const NAME: &'static str = "snapshot_manage";

    fn prepare<'a>(&'a self, w: &'a World) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let e = w.plain().await;
            w.create_volume(&e, self.volume, 1).await;
            let image = w.image_of(&e, self.volume).await;
            qemu::write_pattern(&image, Format::Qcow2, 0, 1 << 20, 0x42)
                .await
                .expect("write");
            w.create_snapshot(&e, self.old, self.volume).await;
            w.run::<SnapshotDelete>(
                &e,
                snapshot_delete::Params {
                    snapshot_id: self.old,
                    project_id: None,
                    force: false,
                    request_id: None,
                    unmanage: true,
                },
                "an unmanage",
            )
            .await;
            let top = w.image_of(&e, self.volume).await;
            qemu::write_pattern(&top, Format::Qcow2, 0, 1 << 20, 0x43)
                .await
                .expect("write");
            // Nothing freed the kept layer: the reaper counts it as used.
            e.wait_idle().await;
            let kept = self.kept(&e).await.expect("read").expect("kept");
            let mut c = e.store().read().await.expect("read");
            let image = images::image_get(&mut c, kept.image_id)
                .await
                .expect("image");
            assert!(image.is_some(), "the unmanaged snapshot's image went");
        })
    }

    fn params(&self) -> Params {
        Params {
            snapshot_id: self.new,
            project_id: PROJECT.into(),
            user_id: USER.into(),
            volume_id: self.volume,
            backend: "file".into(),
            source_name: unmanaged_name(self.old),
            name: Some("managed".into()),
            description: None,
            metadata: [("k".to_string(), "v".to_string())].into(),
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
            let s = w.snapshot(e, self.new).await?;
            let kept = self.kept(e).await?;
            let image = match (expect, &s, &kept) {
                (Expect::Done | Expect::Either, Some(s), None) => {
                    if s.status != SnapshotStatus::Available || s.size != 1 {
                        return Err(format!("the managed snapshot is {s:?}"));
                    }
                    s.image_id.ok_or("the managed snapshot has no image")?
                }
                (Expect::Failed | Expect::Either, None, Some(k)) => k.image_id,
                _ => {
                    return Err(format!(
                        "expected {expect:?}: snapshot {s:?}, kept {kept:?}"
                    ));
                }
            };
            let path = w.image_path(e, image).await?;
            if !qemu::read_pattern(&path, Format::Qcow2, 0, 1 << 20, 0x42)
                .await
                .map_err(text)?
            {
                return Err("the snapshot's data changed".into());
            }
            let top = w.image_of(e, self.volume).await;
            if !qemu::read_pattern(&top, Format::Qcow2, 0, 1 << 20, 0x43)
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
    let report = testing::generic(|| Manage {
        volume: VolumeId::new(),
        old: SnapshotId::new(),
        new: SnapshotId::new(),
    })
    .await;
    println!("snapshot_manage: {report:?}");
    assert!(report.crash_points >= 2, "{report:?}");
}
