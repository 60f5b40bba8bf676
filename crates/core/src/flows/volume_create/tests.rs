//! The create flow's generic-test scenarios: a blank volume; a clone and a
//! volume from a snapshot, each by overlay (space) and by copy
//! (performance), all larger than their source; a volume from an image of
//! the image service, filling the backend's image cache or from it.

use scoria_flows::Engine;
use scoria_flows::testkit::{BoxFut, Expect};
use scoria_model::volume::VolumeStatus::{self, Available, Error};
use scoria_model::{GlanceImageId, SnapshotId, VolumeId, VolumeTypeId};
use scoria_storage::{Format, qemu};

use super::{Params, VolumeCreate};
use crate::Env;
use crate::flows::testing::{self, PROJECT, Scenario, World, create_params, text};
use crate::flows::volume_delete;

/// What the volume under test is once flows settled, and what it may be.
async fn settled(
    w: &World,
    e: &Engine<Env>,
    id: VolumeId,
    size: i64,
    expect: Expect,
) -> Result<Option<VolumeStatus>, String> {
    let state = w.volume(e, id).await?.map(|v| (v.status, v.size));
    let ok = match expect {
        Expect::Either => true,
        Expect::Done => state == Some((Available, size)),
        Expect::Failed => state.is_none() || state == Some((Error, size)),
    };
    if !ok {
        return Err(format!("expected {expect:?}, the volume is {state:?}"));
    }
    w.check_told(e, id).await?;
    Ok(state.map(|(s, _)| s))
}

/// A blank 1 GiB volume.
struct Blank {
    volume: VolumeId,
}

impl Scenario for Blank {
    type F = VolumeCreate;
    const NAME: &'static str = "volume_create";

    fn prepare<'a>(&'a self, _: &'a World) -> BoxFut<'a, ()> {
        Box::pin(async {})
    }

    fn params(&self) -> Params {
        create_params(self.volume, 1)
    }

    fn check<'a>(
        &'a self,
        w: &'a World,
        e: &'a Engine<Env>,
        expect: Expect,
    ) -> BoxFut<'a, Result<(), String>> {
        Box::pin(async move { settled(w, e, self.volume, 1, expect).await.map(drop) })
    }
}

/// Where the source scenarios keep a copy of their source's data.
const REFERENCE: &str = "reference.qcow2";

/// Guest data written into a source: (offset, length, byte).
const PATTERN: &[(u64, u64, u8)] = &[
    (0, 1 << 20, 0xab),
    (512 << 20, 64 << 10, 0xcd),
    ((1 << 30) - 512, 512, 0x5a),
];

/// What a volume is made from in a source scenario.
#[derive(Clone, Copy, PartialEq, Eq)]
enum From {
    Volume,
    Snapshot,
}

/// A 2 GiB volume made from a 1 GiB volume holding known data, or from a
/// snapshot of it, by overlay or by copy. Once done, the new volume reads
/// exactly as the source did and writes to it reach nothing else; whatever
/// happened, the source still reads what it did, its volume is `available`,
/// takes writes, and can be deleted (with its snapshot) afterwards.
struct Copy {
    volume: VolumeId,
    source: VolumeId,
    snapshot: SnapshotId,
    from: From,
    /// The volume type saying `scoria:clone_strategy=performance`, or the
    /// default type (space).
    copy_type: Option<VolumeTypeId>,
}

impl Copy {
    fn new(from: From, by_copy: bool) -> Copy {
        Copy {
            volume: VolumeId::new(),
            source: VolumeId::new(),
            snapshot: SnapshotId::new(),
            from,
            copy_type: by_copy.then(VolumeTypeId::new),
        }
    }

    async fn check_data(&self, w: &World, e: &Engine<Env>, made: bool) -> Result<(), String> {
        let source = w.volume(e, self.source).await?.map(|v| (v.status, v.size));
        if source != Some((Available, 1)) {
            return Err(format!("the source volume is {source:?}"));
        }
        let reference = w.path().join(REFERENCE);
        let source_image = w.image_of(e, self.source).await;
        let compare = |path: std::path::PathBuf| {
            let reference = reference.clone();
            async move {
                qemu::compare(&reference, Format::Qcow2, &path, Format::Qcow2)
                    .await
                    .map_err(text)
            }
        };
        if !compare(source_image.clone()).await? {
            return Err("the source volume's data changed".into());
        }
        if self.from == From::Snapshot {
            let s = w
                .snapshot(e, self.snapshot)
                .await?
                .ok_or("the snapshot is gone")?;
            let path = w.image_path(e, s.image_id.ok_or("no image")?).await?;
            if !compare(path).await? {
                return Err("the snapshot's data changed".into());
            }
        }
        if made {
            let image = w.image_of(e, self.volume).await;
            if !compare(image.clone()).await? {
                return Err("the new volume does not read as its source".into());
            }
            // Its writes reach nothing else.
            qemu::write_pattern(&image, Format::Qcow2, 0, 1 << 20, 0x77)
                .await
                .map_err(text)?;
            if !compare(source_image.clone()).await? {
                return Err("a write to the new volume reached its source".into());
            }
        }
        // The source takes writes again once the new volume is made.
        qemu::write_pattern(&source_image, Format::Qcow2, 1 << 20, 1 << 20, 0x66)
            .await
            .map_err(|e| format!("the source volume cannot be written: {e}"))?;
        // On a fresh engine: the one under test may still have a crash armed.
        let e = w.plain().await;
        let h = e
            .start::<volume_delete::VolumeDelete>(volume_delete::Params {
                volume_id: self.source,
                project_id: Some(PROJECT.into()),
                force: false,
                request_id: Some("req-test".into()),
                group_id: None,
                cascade: true,
                unmanage: false,
            })
            .map_err(text)?;
        match h.wait().await {
            scoria_flows::Outcome::Done => {}
            other => return Err(format!("deleting the source afterwards: {other:?}")),
        }
        e.wait_idle().await;
        Ok(())
    }
}

impl Scenario for Copy {
    type F = VolumeCreate;
    const NAME: &'static str = "volume_create (from a source)";

    fn prepare<'a>(&'a self, w: &'a World) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let e = w.plain().await;
            if let Some(t) = self.copy_type {
                let mut tx = e.store().begin().await.expect("begin");
                scoria_store::volume_types::volume_type_create(
                    &mut tx,
                    t,
                    "by-copy",
                    None,
                    true,
                    &[(
                        scoria_model::snapshot::CLONE_STRATEGY_SPEC.to_string(),
                        "performance".to_string(),
                    )]
                    .into(),
                )
                .await
                .expect("type");
                tx.commit().await.expect("commit");
            }
            w.create_volume(&e, self.source, 1).await;
            let image = w.image_of(&e, self.source).await;
            for &(offset, len, byte) in PATTERN {
                qemu::write_pattern(&image, Format::Qcow2, offset, len, byte)
                    .await
                    .expect("write the source's data");
            }
            // A fresh volume is one image: its file is its data.
            std::fs::copy(&image, w.path().join(REFERENCE)).expect("keep a reference");
            if self.from == From::Snapshot {
                w.create_snapshot(&e, self.snapshot, self.source).await;
            }
        })
    }

    fn params(&self) -> Params {
        let mut p = create_params(self.volume, 2);
        match self.from {
            From::Volume => p.source_volid = Some(self.source),
            From::Snapshot => p.snapshot_id = Some(self.snapshot),
        }
        if let Some(t) = self.copy_type {
            p.volume_type_id = t;
        }
        p
    }

    fn check<'a>(
        &'a self,
        w: &'a World,
        e: &'a Engine<Env>,
        expect: Expect,
    ) -> BoxFut<'a, Result<(), String>> {
        Box::pin(async move {
            let state = settled(w, e, self.volume, 2, expect).await?;
            self.check_data(w, e, state == Some(Available)).await
        })
    }
}

/// A 1 GiB volume from a 64 MiB qcow2 image holding known data: filling the backend's cache (no volume was made from the image
/// before) or from the cache (one was). Done: the volume reads as the image,
/// stands on the cached copy, and the cache entry is ready; failed: no cache
/// entry is left half made (an entry is ready or absent), and the image can
/// still be made into a volume afterwards.
struct FromImage {
    volume: VolumeId,
    image: GlanceImageId,
    /// A volume made from the image first (the cache is full).
    first: Option<VolumeId>,
}

/// The image's data, kept as the reference.
const IMAGE_FILE: &str = "image.qcow2";

impl FromImage {
    fn new(cached: bool) -> FromImage {
        FromImage {
            volume: VolumeId::new(),
            image: GlanceImageId::new(),
            first: cached.then(VolumeId::new),
        }
    }

    fn params_for(&self, volume: VolumeId) -> Params {
        let mut p = create_params(volume, 1);
        p.glance_image_id = Some(self.image);
        p.bootable = true;
        p
    }

    async fn cache(
        &self,
        e: &Engine<Env>,
    ) -> Result<Vec<scoria_store::volume_images::CacheEntry>, String> {
        let mut c = e.store().read().await.map_err(text)?;
        scoria_store::volume_images::cache_list_all(&mut c)
            .await
            .map_err(text)
    }
}

impl Scenario for FromImage {
    type F = VolumeCreate;
    const NAME: &'static str = "volume_create (from an image)";

    fn prepare<'a>(&'a self, w: &'a World) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let file = w.path().join(IMAGE_FILE);
            qemu::create(&file, Format::Qcow2, 64 << 20)
                .await
                .expect("make the image");
            for &(offset, len, byte) in &[(0, 1 << 20, 0xab), (32 << 20, 4096, 0xcd)] {
                qemu::write_pattern(&file, Format::Qcow2, offset, len, byte)
                    .await
                    .expect("write the image's data");
            }
            let e = w.plain().await;
            w.create_glance_image(&e, self.image, &file, "qcow2").await;
            if let Some(first) = self.first {
                w.run::<VolumeCreate>(&e, self.params_for(first), "a first volume from the image")
                    .await;
            }
        })
    }

    fn params(&self) -> Params {
        self.params_for(self.volume)
    }

    fn check<'a>(
        &'a self,
        w: &'a World,
        e: &'a Engine<Env>,
        expect: Expect,
    ) -> BoxFut<'a, Result<(), String>> {
        Box::pin(async move {
            let state = settled(w, e, self.volume, 1, expect).await?;
            let reference = w.path().join(IMAGE_FILE);
            let cache = self.cache(e).await?;
            if cache.iter().any(|c| !c.ready) {
                return Err(format!("a cache entry is left half made: {cache:?}"));
            }
            if state == Some(Available) {
                let image = w.image_of(e, self.volume).await;
                if !qemu::compare(&reference, Format::Qcow2, &image, Format::Qcow2)
                    .await
                    .map_err(text)?
                {
                    return Err("the volume does not read as its image".into());
                }
                if cache.len() != 1 {
                    return Err(format!("the cache should hold the image: {cache:?}"));
                }
            }
            if let Some(first) = self.first {
                let image = w.image_of(e, first).await;
                if !qemu::compare(&reference, Format::Qcow2, &image, Format::Qcow2)
                    .await
                    .map_err(text)?
                {
                    return Err("the first volume's data changed".into());
                }
            }
            // The image still makes volumes.
            let e = w.plain().await;
            let again = VolumeId::new();
            let h = e
                .start::<VolumeCreate>(self.params_for(again))
                .map_err(text)?;
            match h.wait().await {
                scoria_flows::Outcome::Done => {}
                other => return Err(format!("a volume from the image afterwards: {other:?}")),
            }
            e.wait_idle().await;
            Ok(())
        })
    }
}

#[tokio::test]
async fn a_volume_filling_the_image_cache_passes_the_generic_flow_tests() {
    let report = testing::generic(|| FromImage::new(false)).await;
    println!("volume_create (from an image, filling the cache): {report:?}");
    assert!(report.crash_points >= 10, "{report:?}");
}

#[tokio::test]
async fn a_volume_from_the_image_cache_passes_the_generic_flow_tests() {
    let report = testing::generic(|| FromImage::new(true)).await;
    println!("volume_create (from an image, cached): {report:?}");
    assert!(report.crash_points >= 10, "{report:?}");
}

#[tokio::test]
async fn passes_the_generic_flow_tests_on_the_file_backend() {
    let report = testing::generic(|| Blank {
        volume: VolumeId::new(),
    })
    .await;
    println!("volume_create: {report:?}");
    assert!(report.crash_points >= 10, "{report:?}");
}

#[tokio::test]
async fn a_clone_by_overlay_passes_the_generic_flow_tests() {
    let report = testing::generic(|| Copy::new(From::Volume, false)).await;
    println!("volume_create (clone, space): {report:?}");
    assert!(report.crash_points >= 10, "{report:?}");
}

#[tokio::test]
async fn a_clone_by_copy_passes_the_generic_flow_tests() {
    let report = testing::generic(|| Copy::new(From::Volume, true)).await;
    println!("volume_create (clone, performance): {report:?}");
    assert!(report.crash_points >= 10, "{report:?}");
}

#[tokio::test]
async fn a_volume_from_a_snapshot_by_overlay_passes_the_generic_flow_tests() {
    let report = testing::generic(|| Copy::new(From::Snapshot, false)).await;
    println!("volume_create (from a snapshot, space): {report:?}");
    assert!(report.crash_points >= 10, "{report:?}");
}

#[tokio::test]
async fn a_volume_from_a_snapshot_by_copy_passes_the_generic_flow_tests() {
    let report = testing::generic(|| Copy::new(From::Snapshot, true)).await;
    println!("volume_create (from a snapshot, performance): {report:?}");
    assert!(report.crash_points >= 10, "{report:?}");
}
