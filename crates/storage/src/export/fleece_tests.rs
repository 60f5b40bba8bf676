//! Backups of a served volume through its daemon's fleecing export: a writer
//! keeps writing while the backup reads, the backup holds exactly the image
//! of the instant the fleece started, an incremental reads only about what
//! changed, and a daemon killed with -9 leaves its bitmaps untrustworthy,
//! which both the daemon and the offline engine notice. (The fixture and
//! the NBD clients are `tests.rs`'s.)

use std::sync::Arc;

use super::tests::{Client, Fixture, MIB, kill9, pid_of, psk, tls, wait_gone};
use super::*;
use crate::backup_repo::engine::{self, BackupJob, NbdExport, Source};
use crate::backup_repo::{DirRepo, DynRepo, Manifest, Tracking};
use crate::{Format, LocalFile, qemu};

const VOLUME: u64 = 64 * MIB;

fn job(id: &str, parent: Option<Manifest>) -> BackupJob {
    BackupJob {
        backup_id: id.into(),
        chunk_size: MIB,
        parent,
        keep_bitmaps: Vec::new(),
    }
}

fn source(f: &file::Fleece) -> Source {
    Source::Nbd(NbdExport {
        source: f.source.clone(),
        changes: f.changes.clone(),
        no_changes: f.no_changes.clone(),
    })
}

/// Restore `m` into a new image and check each `(pattern, offset, len)`.
async fn restores_to(fx: &Fixture, repo: &DynRepo, m: &Manifest, want: &[(u8, u64, u64)]) {
    let path = fx.tmp.path().join(format!("restore-{}.qcow2", m.backup_id));
    qemu::create(&path, Format::Qcow2, VOLUME)
        .await
        .expect("create");
    let target = LocalFile {
        path: path.clone(),
        format: Format::Qcow2,
    };
    engine::restore(&target, repo, m).await.expect("restore");
    for &(pattern, offset, len) in want {
        assert!(
            qemu::read_pattern(&path, Format::Qcow2, offset, len, pattern)
                .await
                .expect("read"),
            "backup {}: {len} bytes at {offset} are not {pattern:#x}",
            m.backup_id
        );
    }
}

fn bitmap_names(b: &[file::LiveBitmap]) -> Vec<String> {
    let mut names: Vec<String> = b.iter().map(|b| b.name.clone()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_fleecing_backup_is_the_instant_it_started_while_a_writer_keeps_writing() {
    let fx = Fixture::new();
    let ex = fx.exporter().await;
    let image = fx.backend.join("v.qcow2");
    qemu::create(&image, Format::Qcow2, VOLUME)
        .await
        .expect("create");
    qemu::write_pattern(&image, Format::Qcow2, 0, 8 * MIB, 0x0a)
        .await
        .expect("write");
    let key = psk("fl");
    let spec = tls("fl", "v.qcow2", false, &key);
    let info = ex.ensure(&spec).await.expect("ensure");
    let keys = fx.client_keys("fl", "fl", &key);
    let client = Client::new(&info, Some((&keys, "fl")));
    let repo: DynRepo = Arc::new(DirRepo::open(fx.tmp.path().join("repo"), false).expect("repo"));
    let mut writer = client.writable_session().await;

    // Full backup: every write issued after the fleece started is absent.
    let b1 = engine::bitmap_name("b1");
    let f1 = ex
        .fleece("fl", "b1", &b1, None)
        .await
        .expect("fleece")
        .expect("a daemon");
    assert_eq!(f1.changes, None);
    assert_eq!(
        ex.fleece("fl", "b1", &b1, None).await.expect("again"),
        Some(f1.clone())
    );
    let (src1, job1) = (source(&f1), job("b1", None));
    let backup = engine::backup_from(&src1, &repo, &job1);
    let writes = async {
        let mut ok = 0;
        for i in 0..64u64 {
            // 64 KiB of 0x0c every 128 KiB of the first 8 MiB, and 0x0c at 40 MiB.
            ok += u32::from(writer.writes(0x0c, i * 128 * 1024, 64 * 1024).await);
            tokio::task::yield_now().await;
        }
        ok += u32::from(writer.writes(0x0c, 40 * MIB, MIB).await);
        ok
    };
    let (full, ok) = tokio::join!(backup, writes);
    let full = full.expect("full backup");
    assert_eq!(ok, 65, "every write completed during the backup");
    assert_eq!(full.tracking, Tracking::Full);
    eprintln!(
        "full in-use backup: {} bytes read of a {VOLUME}-byte volume",
        full.bytes_read
    );
    ex.unfleece("fl", "b1").await.expect("unfleece");
    ex.unfleece("fl", "b1").await.expect("unfleece twice");
    assert!(
        !fx.run.join("fl").join("fleece-b1.qcow2").exists(),
        "the fleecing image is gone"
    );
    let live = ex
        .live_bitmaps("fl")
        .await
        .expect("bitmaps")
        .expect("daemon");
    assert_eq!(
        bitmap_names(&live),
        vec![b1.clone()],
        "only the new backup's bitmap stays"
    );
    restores_to(
        &fx,
        &repo,
        &full,
        &[(0x0a, 0, 8 * MIB), (0, 8 * MIB, VOLUME - 8 * MIB)],
    )
    .await;

    // The image itself has the writes.
    assert!(writer.reads(0x0c, 0, 64 * 1024).await);
    assert!(writer.writes(0x0b, 20 * MIB, MIB).await);

    // Incremental: only the chunks written since b1's instant are read.
    let b2 = engine::bitmap_name("b2");
    let f2 = ex
        .fleece("fl", "b2", &b2, Some(&b1))
        .await
        .expect("fleece")
        .expect("a daemon");
    assert!(f2.changes.is_some(), "{f2:?}");
    let (src2, job2) = (source(&f2), job("b2", Some(full.clone())));
    let backup = engine::backup_from(&src2, &repo, &job2);
    let writes = async { writer.writes(0x0d, 0, 4 * MIB).await };
    let (inc, ok) = tokio::join!(backup, writes);
    let inc = inc.expect("incremental");
    assert!(ok);
    assert_eq!(
        inc.tracking,
        Tracking::DirtyBitmap,
        "{:?}",
        inc.fallback_reason
    );
    eprintln!(
        "incremental in-use backup: {} bytes read of a {VOLUME}-byte volume ({} MiB written since the full one)",
        inc.bytes_read,
        4 + 1 + 1
    );
    // 8 MiB of interleaved writes, 1 MiB at 40 MiB and 1 MiB at 20 MiB.
    assert_eq!(inc.bytes_read, 10 * MIB);
    ex.unfleece("fl", "b2").await.expect("unfleece");
    // Retirement of the older bitmap through QMP.
    assert!(
        ex.remove_bitmaps_live("fl", &|name| name == b1)
            .await
            .expect("retire")
    );
    let live = ex
        .live_bitmaps("fl")
        .await
        .expect("bitmaps")
        .expect("daemon");
    assert_eq!(bitmap_names(&live), vec![b2.clone()]);
    let mut want = vec![(0x0b, 20 * MIB, MIB), (0x0c, 40 * MIB, MIB)];
    for i in 0..64u64 {
        want.push((0x0c, i * 128 * 1024, 64 * 1024));
        want.push((0x0a, i * 128 * 1024 + 64 * 1024, 64 * 1024));
    }
    restores_to(&fx, &repo, &inc, &want).await;
    drop(writer);

    // A clean stop writes b2 into the file; the next daemon loads it (flagged
    // in-use in the file while it runs); killed with -9, it leaves it so.
    ex.remove("fl").await.expect("remove");
    let bitmaps = qemu::backup::bitmaps(&image).await.expect("bitmaps");
    assert_eq!(
        bitmaps
            .iter()
            .map(|b| (b.name.clone(), b.in_use))
            .collect::<Vec<_>>(),
        vec![(b2.clone(), false)]
    );
    ex.ensure(&spec).await.expect("ensure");
    let pid = pid_of(&ex, "fl").await.expect("daemon");
    kill9(pid);
    wait_gone(pid).await;
    ex.ensure(&spec).await.expect("ensure again");
    let f3 = ex
        .fleece("fl", "b3", &engine::bitmap_name("b3"), Some(&b2))
        .await
        .expect("fleece")
        .expect("a daemon");
    let why = f3.no_changes.clone().expect("no usable bitmap");
    assert!(why.contains("inconsistent"), "{why}");
    let m3 = engine::backup_from(&source(&f3), &repo, &job("b3", Some(inc.clone())))
        .await
        .expect("backup");
    assert_eq!(m3.tracking, Tracking::FullRead);
    assert_eq!(m3.fallback_reason.as_deref(), Some(why.as_str()));
    eprintln!("after kill -9: {why}; {} bytes read", m3.bytes_read);
    ex.unfleece("fl", "b3").await.expect("unfleece");
    ex.remove("fl").await.expect("remove");
    // Offline, the same bitmap reads as in-use, and the offline engine falls
    // back to a full read too.
    let offline = engine::backup(
        &LocalFile {
            path: image.clone(),
            format: Format::Qcow2,
        },
        &repo,
        &job("b4", Some(inc)),
    )
    .await
    .expect("offline backup");
    assert_eq!(offline.tracking, Tracking::FullRead);
    assert!(
        offline
            .fallback_reason
            .as_deref()
            .is_some_and(|r| r.contains("inconsistent")),
        "{:?}",
        offline.fallback_reason
    );
    assert!(fx.daemon_pids().is_empty());
}

#[tokio::test]
async fn a_read_only_export_cannot_be_fleeced_and_nothing_served_is_none() {
    let fx = Fixture::new();
    let ex = fx.exporter().await;
    fx.image("r.qcow2").await;
    ex.ensure(&super::tests::unix("ro", "r.qcow2", true))
        .await
        .expect("ensure");
    let refused = ex.fleece("ro", "b", &engine::bitmap_name("b"), None).await;
    assert!(
        matches!(&refused, Err(ExportError::InvalidSpec { detail, .. }) if detail.contains("read-only")),
        "{refused:?}"
    );
    assert_eq!(
        ex.fleece("none", "b", "x", None).await.expect("no daemon"),
        None
    );
    assert!(
        !ex.remove_bitmaps_live("none", &|_| true)
            .await
            .expect("no daemon")
    );
    ex.remove("ro").await.expect("remove");
}
