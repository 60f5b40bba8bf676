//! The migration flow on two real file backends (`file`, qcow2, and
//! `other`, raw): known data written with qemu-io, moved, and compared with
//! `qemu-img compare` against a copy kept aside; the generic tests fail and
//! crash it at every step.

use std::path::{Path, PathBuf};

use scoria_flows::Engine;
use scoria_flows::testkit::{BoxFut, Expect};
use scoria_model::quota::{QuotaKey, QuotaResource, TypedResource};
use scoria_model::volume::VolumeStatus;
use scoria_model::{SnapshotId, VolumeId, VolumeTypeId};
use scoria_storage::Format;
use scoria_storage::qemu;

use super::{Params, VolumeMigrate};
use crate::Env;
use crate::flows::testing::{self, PROJECT, SECOND, Scenario, World, text};

/// Write recognisable data into a volume's (qcow2) file, with qemu-io.
async fn write_pattern(file: &Path, pattern: u8, at: u64) {
    qemu::write_pattern(file, Format::Qcow2, at, 1 << 20, pattern)
        .await
        .expect("write");
    qemu::write_pattern(file, Format::Qcow2, 700 << 20, 64 << 10, pattern ^ 0xff)
        .await
        .expect("write");
}

/// Keep what a 1 GiB volume reads (its whole chain), as a raw file outside
/// the backends.
async fn keep(file: &Path, dest: &Path) {
    std::fs::File::create(dest)
        .and_then(|f| f.set_len(1 << 30))
        .expect("a blank raw file");
    qemu::convert_into(file, Format::Qcow2, dest, Format::Raw, &|_| {})
        .await
        .expect("keep the data");
}

/// Whether two images read the same (`qemu-img compare`).
async fn same(a: &Path, a_fmt: Format, b: &Path, b_fmt: Format) -> Result<(), String> {
    if qemu::compare(a, a_fmt, b, b_fmt).await.map_err(text)? {
        Ok(())
    } else {
        Err(format!("{} and {} differ", a.display(), b.display()))
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A 1 GiB volume holding known data moved from `file` to `other`: blank,
/// made from a snapshot (an overlay on the snapshot's image), locked, or
/// retyped to a second type.
struct Migrate {
    volume: VolumeId,
    from_snapshot: Option<(VolumeId, SnapshotId)>,
    lock: bool,
    retype: Option<VolumeTypeId>,
}

impl Migrate {
    fn new() -> Migrate {
        Migrate {
            volume: VolumeId::new(),
            from_snapshot: None,
            lock: false,
            retype: None,
        }
    }

    fn kept(&self, w: &World) -> PathBuf {
        w.path().join(format!("kept-{}.raw", self.volume))
    }
}

impl Scenario for Migrate {
    type F = VolumeMigrate;
    const NAME: &'static str = "volume_migrate";

    fn prepare<'a>(&'a self, w: &'a World) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let e = w.plain().await;
            if let Some((origin, snap)) = self.from_snapshot {
                w.create_volume(&e, origin, 1).await;
                write_pattern(&w.image_of(&e, origin).await, 0x5a, 0).await;
                w.create_snapshot(&e, snap, origin).await;
                w.run::<crate::flows::volume_create::VolumeCreate>(
                    &e,
                    crate::flows::volume_create::Params {
                        snapshot_id: Some(snap),
                        ..testing::create_params(self.volume, 1)
                    },
                    "a volume from the snapshot",
                )
                .await;
                // Its own writes on top of the snapshot's data.
                write_pattern(&w.image_of(&e, self.volume).await, 0x33, 4 << 20).await;
            } else {
                w.create_volume(&e, self.volume, 1).await;
                write_pattern(&w.image_of(&e, self.volume).await, 0xab, 0).await;
            }
            let v = w.volume(&e, self.volume).await.unwrap().unwrap();
            assert_eq!(v.backend.as_deref(), Some("file"));
            keep(&w.image_of(&e, self.volume).await, &self.kept(w)).await;
            if let Some(t) = self.retype {
                let mut tx = e.store().begin().await.expect("begin");
                scoria_store::volume_types::volume_type_create(
                    &mut tx,
                    t,
                    "other-type",
                    None,
                    true,
                    &Default::default(),
                )
                .await
                .expect("type");
                tx.commit().await.expect("commit");
            }
        })
    }

    fn params(&self) -> Params {
        Params {
            volume_id: self.volume,
            destination: SECOND.into(),
            new_type: self.retype.map(|t| (t, false)),
            lock_volume: self.lock,
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
            let moved = v.backend.as_deref() == Some(SECOND);
            let ok = match expect {
                Expect::Done => moved,
                Expect::Failed => !moved,
                Expect::Either => true,
            };
            if !ok {
                return Err(format!(
                    "expected {expect:?}, the volume is on {:?}",
                    v.backend
                ));
            }
            if v.status != VolumeStatus::Available {
                return Err(format!("the volume is {}", v.status));
            }
            let file = w.image_of(e, self.volume).await;
            let b_files = files_in(&w.backend_dir(SECOND));
            let want_type = match (moved, self.retype) {
                (true, Some(t)) => t,
                _ => testing::default_type(),
            };
            if v.volume_type_id != want_type {
                return Err(format!("the volume's type is {}", v.volume_type_id));
            }
            if moved {
                if v.migration_status.as_deref() != Some("success") {
                    return Err(format!("migration status {:?}", v.migration_status));
                }
                same(&self.kept(w), Format::Raw, &file, Format::Raw).await?;
                // Exactly one copy: the new file; the old image was reaped.
                if b_files.len() != 1 {
                    return Err(format!("on {SECOND}: {b_files:?}"));
                }
                let on_file = files_in(&w.backend_dir("file"));
                let expected_left = usize::from(self.from_snapshot.is_some()) * 2;
                if on_file.len() != expected_left {
                    return Err(format!("left on file: {on_file:?}"));
                }
            } else {
                // `None`: the first step failed before it changed anything.
                if !matches!(v.migration_status.as_deref(), None | Some("error")) {
                    return Err(format!("migration status {:?}", v.migration_status));
                }
                if !b_files.is_empty() {
                    return Err(format!("left on {SECOND}: {b_files:?}"));
                }
                same(&self.kept(w), Format::Raw, &file, Format::Qcow2).await?;
            }
            // Quota: exactly the volume, under its type.
            let mut c = e.store().read().await.map_err(text)?;
            let usage = scoria_store::quotas::quota_usage(&mut c, PROJECT)
                .await
                .map_err(text)?;
            // The origin volume and its snapshot count too (Cinder counts
            // snapshots' gigabytes).
            let origin_gib = 2 * i64::from(self.from_snapshot.is_some());
            let get = |k: QuotaKey| usage.get(&k).map(|u| (u.in_use, u.reserved));
            if get(QuotaKey::Global(QuotaResource::Gigabytes)) != Some((1 + origin_gib, 0)) {
                return Err(format!("usage {usage:?}"));
            }
            let typed = get(QuotaKey::PerType(TypedResource::Gigabytes, want_type));
            let typed_want = if want_type == testing::default_type() {
                1 + origin_gib
            } else {
                1
            };
            if typed != Some((typed_want, 0)) {
                return Err(format!("usage under {want_type}: {typed:?} ({usage:?})"));
            }
            w.check_told(e, self.volume).await
        })
    }
}

#[tokio::test]
async fn passes_the_generic_flow_tests_between_two_file_backends() {
    let report = testing::generic_in(World::with_second_backend, Migrate::new).await;
    println!("volume_migrate: {report:?}");
    assert!(report.crash_points >= 6, "{report:?}");
}

#[tokio::test]
async fn a_locked_retype_passes_the_generic_flow_tests() {
    let report = testing::generic_in(World::with_second_backend, || Migrate {
        lock: true,
        retype: Some(VolumeTypeId::new()),
        ..Migrate::new()
    })
    .await;
    println!("volume_migrate (retype): {report:?}");
    assert!(report.crash_points >= 6, "{report:?}");
}

#[tokio::test]
async fn a_volume_from_a_snapshot_moves_flattened_and_outlives_the_snapshot() {
    let report = testing::generic_in(World::with_second_backend, || Migrate {
        from_snapshot: Some((VolumeId::new(), SnapshotId::new())),
        ..Migrate::new()
    })
    .await;
    println!("volume_migrate (from a snapshot): {report:?}");

    // Once moved, the snapshot and its volume can go: the moved volume
    // stands alone and still reads its data.
    let w = World::with_second_backend();
    let s = Migrate {
        from_snapshot: Some((VolumeId::new(), SnapshotId::new())),
        ..Migrate::new()
    };
    s.prepare(&w).await;
    let e = w.plain().await;
    w.run::<VolumeMigrate>(&e, s.params(), "the migration")
        .await;
    let (origin, snap) = s.from_snapshot.unwrap();
    w.run::<crate::flows::snapshot_delete::SnapshotDelete>(
        &e,
        crate::flows::snapshot_delete::Params {
            snapshot_id: snap,
            project_id: None,
            force: false,
            request_id: None,
            unmanage: false,
        },
        "the snapshot's delete",
    )
    .await;
    let _ = origin;
    crate::reaper::reap_changed(e.env()).await.expect("reap");
    let file = w.image_of(&e, s.volume).await;
    same(&s.kept(&w), Format::Raw, &file, Format::Raw)
        .await
        .expect("the data");
    let info = qemu::info(&file, Format::Raw).await.expect("qemu-img info");
    assert!(
        !info.refers_to_other_files(),
        "the moved volume stands alone: {info:?}"
    );
    w.check_common(&e).await.expect("invariants");
}

#[tokio::test]
async fn a_migrating_volume_refuses_other_actions() {
    let w = World::with_second_backend();
    let e = w.plain().await;
    let id = VolumeId::new();
    w.create_volume(&e, id, 1).await;
    // As the flow's first step leaves it: migrating, status unchanged.
    let mut tx = e.store().begin().await.expect("begin");
    let v = scoria_store::volumes::volume_get(&mut tx, id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        scoria_store::volumes::volume_begin_migration(
            &mut tx,
            id,
            VolumeStatus::Available,
            VolumeStatus::Available,
            v.image_id.unwrap(),
            "test",
        )
        .await
        .unwrap()
    );
    tx.commit().await.unwrap();
    let refused = |outcome: scoria_flows::Outcome, words: &str| match outcome {
        scoria_flows::Outcome::Failed(f) => {
            assert!(f.to_string().contains(words), "{f}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    };
    let ext = e
        .start::<crate::flows::volume_extend::VolumeExtend>(crate::flows::volume_extend::Params {
            volume_id: id,
            project_id: None,
            new_size: 2,
            request_id: None,
            allow_in_use: false,
        })
        .unwrap();
    refused(ext.wait().await, "is migrating");
    let del = e
        .start::<crate::flows::volume_delete::VolumeDelete>(crate::flows::volume_delete::Params {
            volume_id: id,
            project_id: None,
            force: true,
            cascade: false,
            unmanage: false,
            group_id: None,
            request_id: None,
        })
        .unwrap();
    refused(del.wait().await, "Volume cannot be deleted while migrating");
    let again = e
        .start::<VolumeMigrate>(Params {
            volume_id: id,
            destination: SECOND.into(),
            new_type: None,
            lock_volume: false,
            request_id: None,
        })
        .unwrap();
    refused(again.wait().await, "already part of an active migration");
    let v = w.volume(&e, id).await.unwrap().unwrap();
    assert_eq!(v.size, 1);
    assert_eq!(v.backend.as_deref(), Some("file"));
}
