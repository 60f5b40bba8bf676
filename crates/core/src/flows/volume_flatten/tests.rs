//! The flatten flow under the generic flow tests.

use scoria_flows::Engine;
use scoria_flows::testkit::{BoxFut, Expect};
use scoria_model::image::ImageHealth;
use scoria_model::volume::VolumeStatus;
use scoria_model::{SnapshotId, VolumeId};
use scoria_store::{images, snapshots};

use super::{Params, VolumeFlatten};
use crate::Env;
use crate::flows::testing::{self, Scenario, World, reads_layers, text, three_layers};

const BYTES: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// A volume with three snapshots and data in each of its four layers, on a
/// backend whose `max_chain_depth` is 3: every layer is a snapshot's, so
/// only a flatten shortens it. Done: the volume is on an image of its own
/// (no base), `optimized`, and reads all four layers' data; failed: on its
/// old top layer, `degraded`. Either way `available`, and every snapshot
/// reads what it captured.
struct Flatten {
    volume: VolumeId,
    snapshots: [SnapshotId; 3],
}

impl Scenario for Flatten {
    type F = VolumeFlatten;
    const NAME: &'static str = "volume_flatten";

    fn prepare<'a>(&'a self, w: &'a World) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let e = w.plain().await;
            w.layered_volume(&e, self.volume, &self.snapshots, &BYTES)
                .await;
            e.wait_idle().await;
        })
    }

    fn params(&self) -> Params {
        Params {
            volume_id: self.volume,
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
            let mut c = e.store().read().await.map_err(text)?;
            let chain = images::image_chain(&mut c, v.image_id.ok_or("no image")?)
                .await
                .map_err(text)?;
            let (flat, health) = match (chain.len(), expect) {
                (1, Expect::Done | Expect::Either) => (true, ImageHealth::Optimized),
                (4, Expect::Failed | Expect::Either) => (false, ImageHealth::Degraded),
                (n, _) => return Err(format!("expected {expect:?}, the chain has {n} layers")),
            };
            if chain[0].health != health {
                return Err(format!("flat {flat}: the image is {:?}", chain[0].health));
            }
            reads_layers(&w.image_of(e, self.volume).await, &BYTES, 4).await?;
            for (i, s) in self.snapshots.iter().enumerate() {
                let image = snapshots::snapshot_get(&mut c, *s)
                    .await
                    .map_err(text)?
                    .and_then(|s| s.image_id)
                    .ok_or("a snapshot lost its image")?;
                reads_layers(&w.image_path(e, image).await?, &BYTES, i + 1).await?;
            }
            Ok(())
        })
    }
}

#[tokio::test]
async fn passes_the_generic_flow_tests_on_the_file_backend() {
    let report = testing::generic_in(
        || World::with(three_layers, &[]),
        || Flatten {
            volume: VolumeId::new(),
            snapshots: [SnapshotId::new(), SnapshotId::new(), SnapshotId::new()],
        },
    )
    .await;
    println!("volume_flatten: {report:?}");
    assert!(report.crash_points >= 2, "{report:?}");
}
