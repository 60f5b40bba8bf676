//! The merge flow under the generic flow tests, and its refusals.

use scoria_flows::Engine;
use scoria_flows::testkit::{BoxFut, Expect};
use scoria_model::image::ImageHealth;
use scoria_model::volume::VolumeStatus;
use scoria_model::{ImageId, SnapshotId, VolumeId};
use scoria_storage::{Format, qemu};
use scoria_store::{images, snapshots};

use super::{ImageMerge, Params};
use crate::Env;
use crate::flows::snapshot_delete::{self, SnapshotDelete};
use crate::flows::testing::{self, Scenario, World, reads_layers, text, three_layers};

/// What each layer writes, 1 MiB each at its own offset: the bottom, the
/// deleted snapshot's layer, the kept snapshot's layer, the volume's own.
const BYTES: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// A volume with three snapshots and data in each of the four layers, the
/// middle snapshot deleted (its layer read only by the layer above, frozen:
/// the last snapshot's), on a backend whose `max_chain_depth` is 3. Done: the
/// last snapshot's layer stands on the first's, the deleted layer has no
/// user, the volume is `available` and `optimized`; failed: the chain is as
/// it was, the volume `available` and `degraded`. Either way, the record and
/// the file agree and every layer reads what was written.
struct Merge {
    volume: VolumeId,
    snapshots: [SnapshotId; 3],
    /// The deleted snapshot's layer, once `prepare` made it.
    layer: std::sync::OnceLock<ImageId>,
}

/// The chain a snapshot's or volume's image reads, top first, as records.
async fn chain(e: &Engine<Env>, top: ImageId) -> Result<Vec<images::Image>, String> {
    let mut c = e.store().read().await.map_err(text)?;
    images::image_chain(&mut c, top).await.map_err(text)
}

impl Merge {
    async fn snapshot_image(&self, e: &Engine<Env>, i: usize) -> Result<ImageId, String> {
        let mut c = e.store().read().await.map_err(text)?;
        snapshots::snapshot_get(&mut c, self.snapshots[i])
            .await
            .map_err(text)?
            .and_then(|s| s.image_id)
            .ok_or_else(|| format!("snapshot {i} has no image"))
    }
}

impl Scenario for Merge {
    type F = ImageMerge;
    const NAME: &'static str = "image_merge";

    fn prepare<'a>(&'a self, w: &'a World) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let e = w.plain().await;
            w.layered_volume(&e, self.volume, &self.snapshots, &BYTES)
                .await;
            let last = self.snapshot_image(&e, 2).await.expect("the last snapshot");
            let layer = chain(&e, last).await.expect("its chain")[1].id;
            self.layer.set(layer).expect("prepared once");
            w.run::<SnapshotDelete>(
                &e,
                snapshot_delete::Params {
                    snapshot_id: self.snapshots[1],
                    project_id: None,
                    force: false,
                    request_id: None,
                    unmanage: false,
                },
                "a snapshot delete",
            )
            .await;
            e.wait_idle().await;
        })
    }

    fn params(&self) -> Params {
        Params {
            volume_id: self.volume,
            layer_id: *self.layer.get().expect("prepared"),
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
            let top = v.image_id.ok_or("the volume has no image")?;
            let records = chain(e, top).await?;
            let merged = match (records.len(), expect) {
                (3, Expect::Done | Expect::Either) => true,
                (4, Expect::Failed | Expect::Either) => false,
                (n, _) => return Err(format!("expected {expect:?}, the chain has {n} layers")),
            };
            let want = if merged {
                ImageHealth::Optimized
            } else {
                ImageHealth::Degraded
            };
            if records[0].health != want {
                return Err(format!("the volume's image is {:?}", records[0].health));
            }
            // Each layer's file stands on what its record says.
            for pair in records.windows(2) {
                let path = w.image_path(e, pair[0].id).await?;
                let info = qemu::info(&path, Format::Qcow2).await.map_err(text)?;
                if info.backing.as_deref() != Some(pair[1].name.as_str()) {
                    return Err(format!(
                        "{} stands on {:?}, its record on {}",
                        pair[0].name, info.backing, pair[1].name
                    ));
                }
            }
            reads_layers(&w.image_of(e, self.volume).await, &BYTES, 4).await?;
            for (i, layers) in [(0, 1), (2, 3)] {
                let image = self.snapshot_image(e, i).await?;
                reads_layers(&w.image_path(e, image).await?, &BYTES, layers).await?;
            }
            Ok(())
        })
    }
}

#[tokio::test]
async fn passes_the_generic_flow_tests_on_the_file_backend() {
    let report = testing::generic_in(
        || World::with(three_layers, &[]),
        || Merge {
            volume: VolumeId::new(),
            snapshots: [SnapshotId::new(), SnapshotId::new(), SnapshotId::new()],
            layer: std::sync::OnceLock::new(),
        },
    )
    .await;
    println!("image_merge: {report:?}");
    assert!(report.crash_points >= 2, "{report:?}");
}

/// A layer a snapshot still captures, or one not in the volume's chain, is
/// refused and nothing changes; an attached volume's chain is merged.
#[tokio::test]
async fn refuses_a_layer_still_used_and_an_attached_volume() {
    let w = World::with(three_layers, &[]);
    let m = Merge {
        volume: VolumeId::new(),
        snapshots: [SnapshotId::new(), SnapshotId::new(), SnapshotId::new()],
        layer: std::sync::OnceLock::new(),
    };
    m.prepare(&w).await;
    let e = w.plain().await;
    let refused = async |layer: ImageId, why: &str| {
        let h = e
            .start::<ImageMerge>(Params {
                volume_id: m.volume,
                layer_id: layer,
            })
            .expect("start");
        match h.wait().await {
            scoria_flows::Outcome::Failed(f) => {
                assert!(f.to_string().contains(why), "{why}: {f}");
            }
            other => panic!("{why}: {other:?}"),
        }
    };
    let kept = m.snapshot_image(&e, 0).await.expect("the first snapshot");
    refused(kept, "is used by").await;
    refused(ImageId::new(), "is not under the active image").await;
    let v = w.volume(&e, m.volume).await.expect("read").expect("volume");
    let records = chain(&e, v.image_id.expect("image")).await.expect("chain");
    assert_eq!(records.len(), 4, "the chain changed");
    // Attached, the layer is merged all the same (through its export when
    // it has one) and the volume is in-use again.
    w.attach(&e, m.volume).await;
    let h = e
        .start::<ImageMerge>(Params {
            volume_id: m.volume,
            layer_id: *m.layer.get().expect("prepared"),
        })
        .expect("start");
    assert!(
        matches!(h.wait().await, scoria_flows::Outcome::Done),
        "the attached volume's layer merged"
    );
    let v = w.volume(&e, m.volume).await.expect("read").expect("volume");
    assert_eq!(v.status, VolumeStatus::InUse);
    let records = chain(&e, v.image_id.expect("image")).await.expect("chain");
    assert_eq!(records.len(), 3, "one layer fewer");
}
