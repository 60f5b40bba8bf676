//! The generic flow tests of `backup_create` for its other two sources: an
//! in-use volume read through its export's daemon (real
//! `qemu-storage-daemon`s, adopted across every simulated crash), and a
//! snapshot's frozen image.

use scoria_flows::Engine;
use scoria_flows::testkit::{BoxFut, Expect};
use scoria_model::backup::BackupStatus::{self, Available, Error};
use scoria_model::snapshot::SnapshotStatus;
use scoria_model::volume::VolumeStatus;
use scoria_model::{AttachmentId, BackupId, SnapshotId, VolumeId};
use scoria_storage::backup_repo::{Manifest, Tracking, engine};
use scoria_storage::{Format, qemu};
use scoria_store::backups;

use super::tests::params;
use super::{BackupCreate, Params};
use crate::Env;
use crate::flows::testing::{self, PROJECT, Scenario, World, text};

const MIB: u64 = 1 << 20;

/// The backup's status as `expect` allows, its manifest (for an available
/// one) verified, and the quota counting exactly the rows there are.
async fn backup_as_expected(
    e: &Engine<Env>,
    full: BackupId,
    backup: BackupId,
    expect: Expect,
) -> Result<(Option<backups::Backup>, Option<Manifest>), String> {
    let mut c = e.store().read().await.map_err(text)?;
    let b = backups::backup_get(&mut c, backup).await.map_err(text)?;
    let status = b.as_ref().map(|b| b.status);
    let ok = match expect {
        Expect::Either => true,
        Expect::Done => status == Some(Available),
        Expect::Failed => matches!(status, None | Some(Error)),
    };
    if !ok {
        return Err(format!("expected {expect:?}, the backup is {status:?}"));
    }
    let rows = 1 + i64::from(b.is_some());
    let usage = scoria_store::quotas::quota_usage(&mut c, PROJECT)
        .await
        .map_err(text)?;
    let used = usage
        .get(&scoria_model::quota::QuotaResource::Backups.into())
        .map(|u| (u.in_use, u.reserved));
    if used != Some((rows, 0)) {
        return Err(format!("{rows} backup rows, quota says {used:?}"));
    }
    drop(c);
    let repo = e.env().backup_repo.clone();
    let manifest = repo.get_manifest(&backup.to_string()).map_err(text)?;
    match (status == Some(BackupStatus::Available), &manifest) {
        (true, None) => return Err("an available backup without manifest".into()),
        (false, Some(_)) => return Err("a failed backup left its manifest".into()),
        _ => {}
    }
    if repo.collect().map_err(text)?.skipped_busy {
        return Err("a writer is still registered".into());
    }
    let f = repo
        .get_manifest(&full.to_string())
        .map_err(text)?
        .ok_or("the full backup's manifest is gone")?;
    engine::verify(&repo, &f).await.map_err(text)?;
    if let Some(m) = &manifest {
        engine::verify(&repo, m).await.map_err(text)?;
    }
    Ok((b.filter(|b| b.status == Available), manifest))
}

/// An incremental in-use backup (`force`) of an attached 1 GiB volume whose
/// full backup was taken offline (the daemon loaded its bitmap from the
/// file) and which was written 1 MiB since. Done: the backup `available`,
/// read through the daemon's bitmap (one 4 MiB chunk), the daemon holding
/// the full backup's and the new backup's bitmaps. Failed: no backup (or
/// `error`), and the daemon holds only the full backup's bitmap. Either
/// way the volume is `in-use` again, no fleecing export, job, temporary
/// bitmap or file is left, and the export serves the volume.
struct InUse {
    volume: VolumeId,
    full: BackupId,
    backup: BackupId,
    attachment: std::sync::Mutex<Option<AttachmentId>>,
}

impl Scenario for InUse {
    type F = BackupCreate;
    const NAME: &'static str = "backup_create (in-use)";

    fn prepare<'a>(&'a self, w: &'a World) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let e = w.plain().await;
            w.create_volume(&e, self.volume, 1).await;
            let image = w.image_of(&e, self.volume).await;
            qemu::write_pattern(&image, Format::Qcow2, 0, 8 * MIB, 0xa)
                .await
                .expect("write");
            w.run::<BackupCreate>(&e, params(self.volume, self.full, false), "a full backup")
                .await;
            qemu::write_pattern(&image, Format::Qcow2, 100 * MIB, MIB, 0xb)
                .await
                .expect("write");
            let a = w.attach(&e, self.volume).await;
            *self.attachment.lock().expect("lock") = Some(a);
        })
    }

    fn params(&self) -> Params {
        Params {
            force: true,
            ..params(self.volume, self.backup, true)
        }
    }

    fn check<'a>(
        &'a self,
        w: &'a World,
        e: &'a Engine<Env>,
        expect: Expect,
    ) -> BoxFut<'a, Result<(), String>> {
        Box::pin(async move {
            let (done, manifest) = backup_as_expected(e, self.full, self.backup, expect).await?;
            let v = w
                .volume(e, self.volume)
                .await?
                .ok_or("the volume is gone")?;
            if v.status != VolumeStatus::InUse {
                return Err(format!("the volume is {}", v.status));
            }
            let a = self
                .attachment
                .lock()
                .expect("lock")
                .ok_or("not prepared")?
                .to_string();
            let exports = e.env().exports.get("file").ok_or("no exporter")?;
            let live = exports
                .exporter
                .live_bitmaps(&a)
                .await
                .map_err(text)?
                .ok_or("no daemon serves the volume")?;
            let mut names: Vec<String> = live.into_iter().map(|b| b.name).collect();
            names.sort();
            let mut want = vec![engine::bitmap_name(&self.full.to_string())];
            if let Some(m) = &manifest {
                if m.tracking != Tracking::DirtyBitmap || m.bytes_read != 4 * MIB {
                    return Err(format!(
                        "the in-use incremental used {:?} and read {} bytes ({:?})",
                        m.tracking, m.bytes_read, m.fallback_reason
                    ));
                }
                want.push(engine::bitmap_name(&self.backup.to_string()));
            }
            want.sort();
            if names != want {
                return Err(format!("the daemon's bitmaps are {names:?}, not {want:?}"));
            }
            let dir = exports.exporter.run_dir().join(&a);
            let left: Vec<String> = std::fs::read_dir(&dir)
                .map_err(text)?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("fleece-"))
                .collect();
            if !left.is_empty() {
                return Err(format!("fleecing files left: {left:?}"));
            }
            crate::exports::reconcile(e.env())
                .await
                .map_err(|e| e.chain())?;
            let served = w.exports(e).await?;
            if served.len() != 1 || !served[0].serving {
                return Err(format!("the export serves {served:?}"));
            }
            let _ = done;
            Ok(())
        })
    }
}

#[tokio::test]
async fn an_in_use_backup_passes_the_generic_flow_tests() {
    let report = testing::generic(|| InUse {
        volume: VolumeId::new(),
        full: BackupId::new(),
        backup: BackupId::new(),
        attachment: std::sync::Mutex::new(None),
    })
    .await;
    println!("backup_create (in-use): {report:?}");
    assert!(report.crash_points >= 8, "{report:?}");
}

/// An incremental backup of a snapshot taken after a full backup, the
/// volume written after the snapshot. Done: the backup `available`, of the
/// snapshot (`snapshot_id`, `data_timestamp` its `created_at`), a full read
/// saying why, holding exactly the full backup's chunks (the write after
/// the snapshot is not in it). Failed: no backup (or `error`). Either way
/// the snapshot is `available` again, the volume `available`, and the
/// snapshot's frozen image has the bitmaps it had.
struct FromSnapshot {
    volume: VolumeId,
    full: BackupId,
    snapshot: SnapshotId,
    backup: BackupId,
}

impl Scenario for FromSnapshot {
    type F = BackupCreate;
    const NAME: &'static str = "backup_create (snapshot)";

    fn prepare<'a>(&'a self, w: &'a World) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let e = w.plain().await;
            w.create_volume(&e, self.volume, 1).await;
            let image = w.image_of(&e, self.volume).await;
            qemu::write_pattern(&image, Format::Qcow2, 0, 8 * MIB, 0xa)
                .await
                .expect("write");
            w.run::<BackupCreate>(&e, params(self.volume, self.full, false), "a full backup")
                .await;
            w.create_snapshot(&e, self.snapshot, self.volume).await;
            let image = w.image_of(&e, self.volume).await;
            qemu::write_pattern(&image, Format::Qcow2, 0, MIB, 0xc)
                .await
                .expect("write");
        })
    }

    fn params(&self) -> Params {
        Params {
            snapshot_id: Some(self.snapshot),
            ..params(self.volume, self.backup, true)
        }
    }

    fn check<'a>(
        &'a self,
        w: &'a World,
        e: &'a Engine<Env>,
        expect: Expect,
    ) -> BoxFut<'a, Result<(), String>> {
        Box::pin(async move {
            let (done, manifest) = backup_as_expected(e, self.full, self.backup, expect).await?;
            let s = w
                .snapshot(e, self.snapshot)
                .await?
                .ok_or("the snapshot is gone")?;
            if s.status != SnapshotStatus::Available {
                return Err(format!("the snapshot is {}", s.status));
            }
            let v = w
                .volume(e, self.volume)
                .await?
                .ok_or("the volume is gone")?;
            if v.status != VolumeStatus::Available {
                return Err(format!("the volume is {}", v.status));
            }
            let frozen = w.image_path(e, s.image_id.ok_or("no image")?).await?;
            let bitmaps: Vec<String> = qemu::backup::bitmaps(&frozen)
                .await
                .map_err(text)?
                .into_iter()
                .map(|b| b.name)
                .collect();
            if bitmaps != vec![engine::bitmap_name(&self.full.to_string())] {
                return Err(format!("the snapshot's image has bitmaps {bitmaps:?}"));
            }
            if let (Some(b), Some(m)) = (done, manifest) {
                if b.snapshot_id != Some(self.snapshot) || b.data_timestamp != s.created_at {
                    return Err(format!(
                        "the backup records snapshot {:?} at {}, the snapshot was taken at {}",
                        b.snapshot_id, b.data_timestamp, s.created_at
                    ));
                }
                let why = m.fallback_reason.as_deref().unwrap_or_default();
                if m.tracking != Tracking::FullRead || !why.contains("snapshot") {
                    return Err(format!("the backup used {:?} ({why})", m.tracking));
                }
                let full = e
                    .env()
                    .backup_repo
                    .get_manifest(&self.full.to_string())
                    .map_err(text)?
                    .ok_or("no full manifest")?;
                if m.chunks != full.chunks || m.new_chunks != 0 {
                    return Err("the snapshot's backup differs from the data it froze".into());
                }
            }
            Ok(())
        })
    }
}

#[tokio::test]
async fn a_snapshot_backup_passes_the_generic_flow_tests() {
    let report = testing::generic(|| FromSnapshot {
        volume: VolumeId::new(),
        full: BackupId::new(),
        snapshot: SnapshotId::new(),
        backup: BackupId::new(),
    })
    .await;
    println!("backup_create (snapshot): {report:?}");
    assert!(report.crash_points >= 8, "{report:?}");
}

/// While a backup reads them, the snapshot cannot be deleted (it is
/// `backing-up`) and the in-use volume cannot be detached (it is
/// `backing-up`); both return to their status after. The backups are held
/// in `copy` by a sleeping failpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_a_backup_reads_is_held_until_it_ends() {
    use scoria_failpoints::{Action, Failpoints};
    use scoria_flows::{EngineOptions, Outcome};

    use crate::flows::{attachment_detach, snapshot_delete};

    let w = World::new_for_tests();
    let fp = Failpoints::new();
    let e = w.open(fp.clone(), EngineOptions::default()).await;
    let (volume, snapshot) = (VolumeId::new(), SnapshotId::new());
    w.create_volume(&e, volume, 1).await;
    w.create_snapshot(&e, snapshot, volume).await;
    let attachment = w.attach(&e, volume).await;
    let failed = |o: Outcome, says: &str| match o {
        Outcome::Failed(err) if err.to_string().contains(says) => {}
        other => panic!("expected a refusal saying {says:?}, got {other:?}"),
    };

    fp.arm(
        "flow.backup_create.copy.run",
        Action::Sleep(1500),
        0,
        Some(1),
    );
    let b = e
        .start::<BackupCreate>(Params {
            snapshot_id: Some(snapshot),
            ..params(volume, BackupId::new(), false)
        })
        .expect("start");
    b.wait_step("commit_quota").await.expect("entry");
    let s = w
        .snapshot(&e, snapshot)
        .await
        .expect("read")
        .expect("snapshot");
    assert_eq!(s.status, SnapshotStatus::BackingUp);
    let del = e
        .start::<snapshot_delete::SnapshotDelete>(snapshot_delete::Params {
            snapshot_id: snapshot,
            project_id: Some(PROJECT.into()),
            force: false,
            request_id: None,
            unmanage: false,
        })
        .expect("start");
    failed(del.wait().await, "backing-up");
    assert!(matches!(b.wait().await, Outcome::Done));
    let s = w
        .snapshot(&e, snapshot)
        .await
        .expect("read")
        .expect("snapshot");
    assert_eq!(s.status, SnapshotStatus::Available);
    let v = w.volume(&e, volume).await.expect("read").expect("volume");
    assert_eq!(
        v.status,
        VolumeStatus::InUse,
        "a snapshot's backup leaves the volume as it is"
    );

    fp.arm(
        "flow.backup_create.copy.run",
        Action::Sleep(1500),
        0,
        Some(1),
    );
    let b = e
        .start::<BackupCreate>(Params {
            force: true,
            ..params(volume, BackupId::new(), false)
        })
        .expect("start");
    b.wait_step("commit_quota").await.expect("entry");
    let v = w.volume(&e, volume).await.expect("read").expect("volume");
    assert_eq!(v.status, VolumeStatus::BackingUp);
    let detach = e
        .start::<attachment_detach::AttachmentDetach>(attachment_detach::Params {
            attachment_id: attachment,
            volume_id: volume,
            project_id: Some(PROJECT.into()),
            force: false,
        })
        .expect("start");
    failed(detach.wait().await, "backing-up");
    assert!(matches!(b.wait().await, Outcome::Done));
    let v = w.volume(&e, volume).await.expect("read").expect("volume");
    assert_eq!(v.status, VolumeStatus::InUse);
    e.wait_idle().await;
}

/// A volume attached read-only only is refused an in-use backup, saying why
/// (its daemon opened the image read-only), and stays as it was.
#[tokio::test]
async fn a_read_only_attachment_is_refused_an_in_use_backup() {
    use scoria_flows::Outcome;

    let w = World::new_for_tests();
    let e = w.plain().await;
    let volume = VolumeId::new();
    w.create_volume(&e, volume, 1).await;
    w.attach_as(
        &e,
        volume,
        Some(scoria_model::attachment::AttachMode::ReadOnly),
    )
    .await;
    let before = w.volume(&e, volume).await.expect("read").expect("volume");
    let backup = BackupId::new();
    let h = e
        .start::<BackupCreate>(Params {
            force: true,
            ..params(volume, backup, false)
        })
        .expect("start");
    match h.wait().await {
        Outcome::Failed(err) => {
            assert!(err.to_string().contains("read-only"), "{err}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let after = w.volume(&e, volume).await.expect("read").expect("volume");
    assert_eq!(after.status, before.status);
    let mut c = e.store().read().await.expect("read");
    assert!(
        backups::backup_get(&mut c, backup)
            .await
            .expect("read")
            .is_none()
    );
}
