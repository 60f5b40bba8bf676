//! The create flow's generic tests for a volume made from a backup (3.47,
//! and the volume a restore makes for itself, removed when it fails).

use scoria_flows::Engine;
use scoria_flows::testkit::{BoxFut, Expect};
use scoria_model::backup::BackupStatus;
use scoria_model::volume::VolumeStatus::{Available, Error};
use scoria_model::{BackupId, VolumeId};
use scoria_storage::{Format, qemu};

use super::{FromBackup, Params, VolumeCreate};
use crate::Env;
use crate::flows::backup_create::{self, BackupCreate};
use crate::flows::testing::{self, PROJECT, Scenario, USER, World, create_params, text};

const REFERENCE: &str = "reference.qcow2";

/// A 2 GiB volume from a full backup of a 1 GiB volume holding known data.
/// Done: it reads as the backed-up volume did (then zeroes), is `available`;
/// failed: it is `error` (told), or gone when it was the restore's own.
/// Either way the backup is `available` again and verifies, and the quota
/// counts exactly the volumes that exist.
struct FromBackupScenario {
    volume: VolumeId,
    source: VolumeId,
    backup: BackupId,
    remove_on_failure: bool,
}

impl Scenario for FromBackupScenario {
    type F = VolumeCreate;
    const NAME: &'static str = "volume_create (from a backup)";

    fn prepare<'a>(&'a self, w: &'a World) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let e = w.plain().await;
            w.create_volume(&e, self.source, 1).await;
            let image = w.image_of(&e, self.source).await;
            for (offset, byte) in [(0, 0x3c), (600 << 20, 0x4d)] {
                qemu::write_pattern(&image, Format::Qcow2, offset, 1 << 20, byte)
                    .await
                    .expect("write the source's data");
            }
            std::fs::copy(&image, w.path().join(REFERENCE)).expect("keep a reference");
            w.run::<BackupCreate>(
                &e,
                backup_create::Params {
                    backup_id: self.backup,
                    project_id: PROJECT.into(),
                    user_id: USER.into(),
                    volume_id: self.source,
                    name: None,
                    description: None,
                    container: None,
                    incremental: false,
                    force: false,
                    snapshot_id: None,
                    metadata: Default::default(),
                },
                "a full backup",
            )
            .await;
        })
    }

    fn params(&self) -> Params {
        let mut p = create_params(self.volume, 2);
        p.backup = Some(FromBackup {
            backup_id: self.backup,
            remove_on_failure: self.remove_on_failure,
        });
        p
    }

    fn check<'a>(
        &'a self,
        w: &'a World,
        e: &'a Engine<Env>,
        expect: Expect,
    ) -> BoxFut<'a, Result<(), String>> {
        Box::pin(async move {
            let state = w.volume(e, self.volume).await?.map(|v| (v.status, v.size));
            let ok = match expect {
                Expect::Either => true,
                Expect::Done => state == Some((Available, 2)),
                Expect::Failed if self.remove_on_failure => state.is_none(),
                Expect::Failed => state.is_none() || state == Some((Error, 2)),
            };
            if !ok {
                return Err(format!("expected {expect:?}, the volume is {state:?}"));
            }
            if self.remove_on_failure && state.is_none() {
                // Removed after the API answered: one message says why.
                if w.messages_about(e, self.volume).await? > 1 {
                    return Err("more than one message about the removed volume".into());
                }
            } else {
                w.check_told(e, self.volume).await?;
            }
            if state == Some((Available, 2)) {
                let image = w.image_of(e, self.volume).await;
                let same = qemu::compare(
                    &w.path().join(REFERENCE),
                    Format::Qcow2,
                    &image,
                    Format::Qcow2,
                )
                .await
                .map_err(text)?;
                if !same {
                    return Err("the volume does not read as the backed-up volume".into());
                }
            }
            let mut c = e.store().read().await.map_err(text)?;
            let b = scoria_store::backups::backup_get(&mut c, self.backup)
                .await
                .map_err(text)?
                .ok_or("the backup is gone")?;
            if b.status != BackupStatus::Available {
                return Err(format!("the backup is {}", b.status));
            }
            let usage = scoria_store::quotas::quota_usage(&mut c, PROJECT)
                .await
                .map_err(text)?;
            let volumes = 1 + i64::from(state.is_some());
            let used = usage
                .get(&scoria_model::quota::QuotaResource::Volumes.into())
                .map(|u| (u.in_use, u.reserved));
            if used != Some((volumes, 0)) {
                return Err(format!("{volumes} volumes, quota says {used:?}"));
            }
            drop(c);
            let repo = e.env().backup_repo.clone();
            let m = repo
                .get_manifest(&self.backup.to_string())
                .map_err(text)?
                .ok_or("the backup's manifest is gone")?;
            scoria_storage::backup_repo::engine::verify(&repo, &m)
                .await
                .map_err(text)?;
            Ok(())
        })
    }
}

fn scenario(remove_on_failure: bool) -> FromBackupScenario {
    FromBackupScenario {
        volume: VolumeId::new(),
        source: VolumeId::new(),
        backup: BackupId::new(),
        remove_on_failure,
    }
}

#[tokio::test]
async fn a_volume_from_a_backup_passes_the_generic_flow_tests() {
    let report = testing::generic(|| scenario(false)).await;
    println!("volume_create (from a backup): {report:?}");
    assert!(report.crash_points >= 10, "{report:?}");
}

#[tokio::test]
async fn a_restore_into_a_new_volume_passes_the_generic_flow_tests() {
    let report = testing::generic(|| scenario(true)).await;
    println!("volume_create (a restore's own volume): {report:?}");
    assert!(report.crash_points >= 10, "{report:?}");
}
