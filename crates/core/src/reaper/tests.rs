//! The reaper against a real file backend, a crash at each of its steps.

use scoria_failpoints::{Action, Failpoints};
use scoria_flows::EngineOptions;
use scoria_model::{SnapshotId, VolumeId};
use scoria_store::images;

use super::reap;
use crate::flows::testing::{PROJECT, World};
use crate::flows::volume_delete;

/// A snapshot's frozen image, left unused once its volume went (with its
/// snapshot, cascaded), is freed by the reaper — also when the reaper is
/// killed after marking it or after deleting its data: the next pass
/// finishes, and never frees an image something still uses.
#[tokio::test]
async fn frees_unused_images_and_survives_a_crash_at_each_step() {
    for crash_at in [None, Some("reaper.marked"), Some("reaper.freed")] {
        let w = World::new_for_tests();
        let e = w.plain().await;
        let (volume, kept, snapshot) = (VolumeId::new(), VolumeId::new(), SnapshotId::new());
        w.create_volume(&e, volume, 1).await;
        w.create_volume(&e, kept, 1).await;
        w.create_snapshot(&e, snapshot, volume).await;
        let frozen = w
            .snapshot(&e, snapshot)
            .await
            .expect("read")
            .expect("snapshot")
            .image_id
            .expect("image");
        let frozen_file = w.image_path(&e, frozen).await.expect("path");
        w.run::<volume_delete::VolumeDelete>(
            &e,
            volume_delete::Params {
                volume_id: volume,
                project_id: Some(PROJECT.into()),
                force: false,
                request_id: None,
                group_id: None,
                cascade: true,
            },
            "the delete",
        )
        .await;
        // The frozen layer is garbage now, and still on disk.
        assert!(frozen_file.exists());
        let unused = {
            let mut c = e.store().read().await.expect("read");
            images::image_list_unused(&mut c).await.expect("unused")
        };
        assert_eq!(unused.iter().map(|i| i.id).collect::<Vec<_>>(), [frozen]);

        if let Some(point) = crash_at {
            let fp = Failpoints::new();
            fp.arm(point, Action::Crash, 1, Some(1));
            let crashing = w.open(fp, EngineOptions::default()).await;
            assert!(reap(crashing.env()).await.is_err(), "{point}");
            let mut c = e.store().read().await.expect("read");
            let i = images::image_get(&mut c, frozen).await.expect("read");
            assert_eq!(
                i.map(|i| i.state),
                Some(scoria_model::image::ImageState::Deleting),
                "{point}"
            );
        }
        let done = reap(e.env()).await.expect("reap");
        assert_eq!(done.freed, 1, "{crash_at:?}");
        assert!(!frozen_file.exists(), "{crash_at:?}");
        // Nothing else was touched: the other volume still has its data.
        assert!(w.image_of(&e, kept).await.exists());
        assert_eq!(reap(e.env()).await.expect("reap").freed, 0);
        w.check_common(&e).await.expect("invariants");
    }
}
