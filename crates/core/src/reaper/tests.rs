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
                unmanage: false,
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

/// The routine pass reads only the candidates, and they are enough: a
/// volume with two snapshots is taken apart (each snapshot deleted, then the
/// volume), and each layer of its chain is freed, top down, as its last user
/// goes. An unused image whose candidate row was lost is left by the routine
/// pass (the invariant check names it) and freed by the full scan.
#[tokio::test]
async fn the_routine_pass_frees_each_layer_as_its_last_user_goes() {
    use scoria_model::ImageId;
    use scoria_model::image::{ImageFormat, ImageState};

    use super::reap_changed;
    use crate::flows::snapshot_delete;

    let w = World::new_for_tests();
    let e = w.plain().await;
    let (volume, first, second) = (VolumeId::new(), SnapshotId::new(), SnapshotId::new());
    w.create_volume(&e, volume, 1).await;
    w.create_snapshot(&e, first, volume).await;
    w.create_snapshot(&e, second, volume).await;
    let mut frozen = Vec::new();
    for s in [first, second] {
        let s = w.snapshot(&e, s).await.expect("read").expect("snapshot");
        frozen.push(s.image_id.expect("image"));
    }
    let (lower, upper) = (frozen[0], frozen[1]);
    let files = [
        w.image_path(&e, lower).await.expect("path"),
        w.image_path(&e, upper).await.expect("path"),
    ];
    let candidates = || async {
        let mut c = e.store().read().await.expect("read");
        images::image_unref_list(&mut c).await.expect("candidates")
    };

    // A stray: an unused image (no data) whose candidate row is lost.
    let stray = ImageId::new();
    {
        let backend = {
            let mut c = e.store().read().await.expect("read");
            images::image_get(&mut c, lower)
                .await
                .expect("read")
                .expect("image")
                .backend
        };
        let mut tx = e.store().begin().await.expect("begin");
        images::image_create(
            &mut tx,
            &images::NewImage {
                id: stray,
                backend,
                name: format!("image-{stray}.raw"),
                format: ImageFormat::Raw,
                virtual_size: 1 << 20,
                base_id: None,
                mutable: false,
                state: ImageState::Ready,
            },
        )
        .await
        .expect("stray");
        scoria_store::fixtures::image_unref_lose(&mut tx, stray)
            .await
            .expect("lose");
        tx.commit().await.expect("commit");
    }
    assert_eq!(reap_changed(e.env()).await.expect("reap").freed, 0);
    let bad = crate::invariants::check(e.env()).await.expect("check");
    assert!(
        bad.iter()
            .any(|b| b.contains(&stray.to_string()) && b.contains("not a candidate")),
        "{bad:?}"
    );
    // The pass pruned what it saw used: nothing is a candidate now.
    assert_eq!(candidates().await, []);

    // Each snapshot goes; its image is still under the volume's chain.
    for s in [first, second] {
        w.run::<snapshot_delete::SnapshotDelete>(
            &e,
            snapshot_delete::Params {
                snapshot_id: s,
                project_id: Some(PROJECT.into()),
                force: false,
                request_id: None,
                unmanage: false,
            },
            "a snapshot delete",
        )
        .await;
        assert!(
            !candidates().await.is_empty(),
            "the snapshot's image lost a user"
        );
        assert_eq!(reap_changed(e.env()).await.expect("reap").freed, 0);
        assert!(files.iter().all(|f| f.exists()));
        assert_eq!(candidates().await, []);
    }

    // The volume goes (its active image with it): the layers under it are
    // freed top down by one routine pass, the lower one through the upper's
    // delete making it a candidate.
    w.run::<volume_delete::VolumeDelete>(
        &e,
        volume_delete::Params {
            volume_id: volume,
            project_id: Some(PROJECT.into()),
            force: false,
            request_id: None,
            group_id: None,
            cascade: false,
            unmanage: false,
        },
        "the delete",
    )
    .await;
    assert_eq!(candidates().await, [upper]);
    assert_eq!(reap_changed(e.env()).await.expect("reap").freed, 2);
    assert!(files.iter().all(|f| !f.exists()));
    assert_eq!(candidates().await, []);

    // Only the full scan finds the stray.
    let mut c = e.store().read().await.expect("read");
    assert!(
        images::image_get(&mut c, stray)
            .await
            .expect("read")
            .is_some()
    );
    drop(c);
    assert_eq!(reap(e.env()).await.expect("reap").freed, 1);
    w.check_common(&e).await.expect("invariants");
}
