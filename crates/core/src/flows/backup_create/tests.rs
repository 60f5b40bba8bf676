//! The generic flow tests of `backup_create`: an offline incremental, an
//! in-use backup through a real export daemon, and a backup of a snapshot.
use scoria_flows::Engine;
use scoria_flows::testkit::{BoxFut, Expect};
use scoria_model::backup::BackupStatus::{Available, Error};
use scoria_model::volume::VolumeStatus;
use scoria_model::{BackupId, VolumeId};
use scoria_storage::backup_repo::engine;
use scoria_storage::{Format, qemu};
use scoria_store::backups;

use super::{BackupCreate, Params};
use crate::Env;
use crate::flows::testing::{self, PROJECT, Scenario, USER, World, text};

/// An incremental backup of a 1 GiB volume that has a full backup, after
/// a write. Done: the backup `available`, its manifest complete (every
/// chunk verifies) and the volume's only bitmap its own. Failed: no
/// backup (or one in `error`), no manifest, the full backup's bitmap
/// still there. Either way the volume is `available`, the quota counts
/// exactly the rows that exist, and a collection leaves every chunk of
/// the full backup.
struct Inc {
    volume: VolumeId,
    full: BackupId,
    backup: BackupId,
}

pub(super) fn params(volume: VolumeId, backup: BackupId, incremental: bool) -> Params {
    Params {
        backup_id: backup,
        project_id: PROJECT.into(),
        user_id: USER.into(),
        volume_id: volume,
        name: Some("b".into()),
        description: None,
        container: None,
        incremental,
        force: false,
        snapshot_id: None,
        metadata: Default::default(),
    }
}

impl Scenario for Inc {
    type F = BackupCreate;
    const NAME: &'static str = "backup_create";

    fn prepare<'a>(&'a self, w: &'a World) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let e = w.plain().await;
            w.create_volume(&e, self.volume, 1).await;
            let image = w.image_of(&e, self.volume).await;
            qemu::write_pattern(&image, Format::Qcow2, 0, 8 << 20, 0xa)
                .await
                .expect("write");
            w.run::<BackupCreate>(&e, params(self.volume, self.full, false), "a full backup")
                .await;
            qemu::write_pattern(&image, Format::Qcow2, 100 << 20, 1 << 20, 0xb)
                .await
                .expect("write");
        })
    }

    fn params(&self) -> Params {
        params(self.volume, self.backup, true)
    }

    fn check<'a>(
        &'a self,
        w: &'a World,
        e: &'a Engine<Env>,
        expect: Expect,
    ) -> BoxFut<'a, Result<(), String>> {
        Box::pin(async move {
            let mut c = e.store().read().await.map_err(text)?;
            let b = backups::backup_get(&mut c, self.backup)
                .await
                .map_err(text)?;
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
            let v = w
                .volume(e, self.volume)
                .await?
                .ok_or("the volume is gone")?;
            if v.status != VolumeStatus::Available {
                return Err(format!("the volume is {}", v.status));
            }
            let repo = e.env().backup_repo.clone();
            let file = scoria_storage::LocalFile {
                path: w.image_of(e, self.volume).await,
                format: Format::Qcow2,
            };
            let bitmaps: Vec<String> = qemu::backup::bitmaps(&file.path)
                .await
                .map_err(text)?
                .into_iter()
                .map(|b| b.name)
                .collect();
            let manifest = repo.get_manifest(&self.backup.to_string()).map_err(text)?;
            let owner = if status == Some(Available) {
                let m = manifest
                    .as_ref()
                    .ok_or("an available backup without manifest")?;
                if m.tracking != scoria_storage::backup_repo::Tracking::DirtyBitmap {
                    return Err(format!("the incremental used {:?}", m.tracking));
                }
                self.backup
            } else {
                if manifest.is_some() {
                    return Err("a failed backup left its manifest".into());
                }
                self.full
            };
            let mut want = vec![engine::bitmap_name(&self.full.to_string())];
            if owner == self.backup {
                want.push(engine::bitmap_name(&self.backup.to_string()));
            }
            want.sort();
            let mut bitmaps = bitmaps;
            bitmaps.sort();
            if bitmaps != want {
                return Err(format!("the volume's bitmaps are {bitmaps:?}"));
            }
            let busy = repo.collect().map_err(text)?;
            if busy.skipped_busy {
                return Err("a writer is still registered".into());
            }
            let full = repo
                .get_manifest(&self.full.to_string())
                .map_err(text)?
                .ok_or("the full backup's manifest is gone")?;
            engine::verify(&repo, &full).await.map_err(text)?;
            if let Some(m) = manifest {
                engine::verify(&repo, &m).await.map_err(text)?;
            }
            Ok(())
        })
    }
}

#[tokio::test]
async fn passes_the_generic_flow_tests_on_the_file_backend() {
    let report = testing::generic(|| Inc {
        volume: VolumeId::new(),
        full: BackupId::new(),
        backup: BackupId::new(),
    })
    .await;
    println!("backup_create: {report:?}");
    assert!(report.crash_points >= 8, "{report:?}");
}
