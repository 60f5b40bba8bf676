//! The repository contract, run against every repository (the directory on
//! a temporary directory; the object store on the S3 server CI starts, see
//! [`fixtures`]), and the engine on real qcow2 files written with qemu-io,
//! against both too.

use super::engine::{self, BackupJob};
use super::fixtures::{Fixture, dir_fixture, s3_fixture};
use super::*;
use crate::qemu;
use crate::{Format, LocalFile, StorageError};

const MIB: u64 = 1 << 20;

fn manifest(id: &str, chunks: Vec<Option<String>>) -> Manifest {
    Manifest {
        version: Manifest::VERSION,
        backup_id: id.into(),
        parent: None,
        volume_size: chunks.len() as u64 * CHUNK_ALIGN,
        chunk_size: CHUNK_ALIGN,
        chunks,
        tracking: Tracking::Full,
        fallback_reason: None,
        bytes_read: 0,
        new_chunks: 0,
        new_bytes: 0,
    }
}

/// One test against both repositories: `<name>_dir` always, `<name>_s3`
/// when the S3 server is there (skipped, saying why, when not).
macro_rules! both {
    ($name:ident, $dir:ident, $s3:ident) => {
        #[test]
        fn $dir() {
            $name(&dir_fixture());
        }
        #[test]
        fn $s3() {
            if let Some(f) = s3_fixture(stringify!($s3)) {
                $name(&f);
            }
        }
    };
    (async $name:ident, $dir:ident, $s3:ident) => {
        #[tokio::test]
        async fn $dir() {
            $name(&dir_fixture()).await;
        }
        #[tokio::test]
        async fn $s3() {
            if let Some(f) = s3_fixture(stringify!($s3)) {
                $name(&f).await;
            }
        }
    };
}

both!(
    chunks_are_deduplicated_compressed_and_checked,
    chunks_dir,
    chunks_s3
);
both!(
    manifests_are_durable_and_collect_keeps_only_referenced_chunks,
    collect_dir,
    collect_s3
);
both!(async full_and_incremental_backups_restore_what_they_saw, engine_dir, engine_s3);

fn chunks_are_deduplicated_compressed_and_checked(f: &Fixture) {
    let r = &f.repo;
    let data = vec![7u8; 1 << 20];
    let h = chunk_hash(&data);
    let stored = r.put_chunk(&h, &data).unwrap();
    assert!(stored > 0 && stored < 1000, "compressed to {stored} bytes");
    assert_eq!(r.put_chunk(&h, &data).unwrap(), 0, "stored once");
    assert!(r.has_chunk(&h).unwrap());
    assert!(matches!(r.get_chunk(&h).unwrap(), ChunkRead::Data(d) if d == data));
    // Other data under the name: reported naming what it hashes to, never
    // returned.
    let eight = vec![8u8; 1 << 20];
    f.overwrite_chunk(&h, &zstd::bulk::compress(&eight, 3).unwrap());
    let other = chunk_hash(&eight);
    assert!(
        matches!(r.get_chunk(&h).unwrap(), ChunkRead::Corrupt(why) if why.contains(&other)),
        "corrupt, naming {other}"
    );
    assert_eq!(
        r.put_chunk(&h, &data).unwrap(),
        0,
        "a present name is not rewritten"
    );
    f.overwrite_chunk(&h, b"garbage");
    assert!(
        matches!(r.get_chunk(&h).unwrap(), ChunkRead::Corrupt(why) if why.contains("does not decompress"))
    );
    f.remove_chunk(&h);
    assert!(!r.has_chunk(&h).unwrap());
    assert!(matches!(r.get_chunk(&h).unwrap(), ChunkRead::Missing));
    assert!(r.get_chunk("../etc").is_err(), "names are hashes only");
    assert!(
        r.get_chunk(&h.to_uppercase()).is_err(),
        "lower-case hex only"
    );
    assert!(r.get_manifest("../x").is_err(), "backup ids are ids only");
}

fn manifests_are_durable_and_collect_keeps_only_referenced_chunks(f: &Fixture) {
    let r = &f.repo;
    let a = vec![1u8; 4096];
    let b = vec![2u8; 4096];
    let c = vec![3u8; 4096];
    let (ha, hb, hc) = (chunk_hash(&a), chunk_hash(&b), chunk_hash(&c));
    for (h, d) in [(&ha, &a), (&hb, &b), (&hc, &c)] {
        r.put_chunk(h, d).unwrap();
    }
    let m1 = manifest("b1", vec![Some(ha.clone()), None, Some(hb.clone())]);
    r.put_manifest(&m1).unwrap();
    r.put_manifest(&m1).unwrap();
    let mut other = m1.clone();
    other.chunks[1] = Some(hc.clone());
    assert!(matches!(
        r.put_manifest(&other),
        Err(StorageError::Mismatch { .. })
    ));
    assert_eq!(r.get_manifest("b1").unwrap(), Some(m1.clone()));
    assert_eq!(r.get_manifest("b2").unwrap(), None);
    let m2 = manifest("b0", vec![Some(ha.clone())]);
    r.put_manifest(&m2).unwrap();
    assert_eq!(
        r.list_manifests().unwrap(),
        vec!["b0".to_string(), "b1".to_string()],
        "sorted"
    );
    r.delete_manifest("b0").unwrap();
    assert_eq!(r.list_manifests().unwrap(), vec!["b1".to_string()]);
    // A writer holds the collector off: `c` belongs to a backup in progress.
    let w = r.writer();
    assert!(r.collect().unwrap().skipped_busy);
    assert!(r.has_chunk(&hc).unwrap());
    // A second writer, and the first gone: still held off.
    let w2 = r.writer();
    drop(w);
    assert!(r.collect().unwrap().skipped_busy);
    drop(w2);
    std::fs::write(r.temp_path("left"), b"x").unwrap();
    let done = r.collect().unwrap();
    assert_eq!(
        (done.chunks, done.temporaries, done.skipped_busy),
        (1, 1, false)
    );
    assert!(done.bytes > 0, "{done:?}");
    assert!(!r.has_chunk(&hc).unwrap());
    assert!(r.has_chunk(&ha).unwrap() && r.has_chunk(&hb).unwrap());
    assert_eq!(
        r.collect().unwrap(),
        Collected::default(),
        "nothing more to remove"
    );
    r.delete_manifest("b1").unwrap();
    r.delete_manifest("b1").unwrap();
    assert_eq!(r.collect().unwrap().chunks, 2);
    assert!(r.list_manifests().unwrap().is_empty());
}

async fn qcow2(dir: &tempfile::TempDir, name: &str, size: u64) -> LocalFile {
    let path = dir.path().join(name);
    qemu::create(&path, Format::Qcow2, size).await.unwrap();
    LocalFile {
        path,
        format: Format::Qcow2,
    }
}

async fn write(f: &LocalFile, pattern: u8, offset: u64, len: u64) {
    qemu::write_pattern(&f.path, f.format, offset, len, pattern)
        .await
        .unwrap();
}

/// Full, then incrementals that read only what changed, restored and
/// compared; the fallback when the bitmap is gone; a corrupt chunk named.
async fn full_and_incremental_backups_restore_what_they_saw(f: &Fixture) {
    let dir = tempfile::tempdir().unwrap();
    let r = &f.repo;
    let vol = qcow2(&dir, "vol.qcow2", 64 * MIB).await;
    write(&vol, 0xa, 0, 16 * MIB).await;
    let job = |id: &str, parent: Option<Manifest>| BackupJob {
        backup_id: id.into(),
        chunk_size: DEFAULT_CHUNK_SIZE,
        parent,
        keep_bitmaps: Vec::new(),
    };
    let full = engine::backup(&vol, r, &job("full", None)).await.unwrap();
    assert_eq!(full.tracking, Tracking::Full);
    assert_eq!(
        full.bytes_read,
        16 * MIB,
        "only the allocated chunks are read"
    );
    assert_eq!(full.data_chunks(), 4);
    // The same chunk pattern four times: stored once.
    assert_eq!(full.new_chunks, 1);
    let copy_a = dir.path().join("a.qcow2");
    qemu::create(&copy_a, Format::Qcow2, 64 * MIB)
        .await
        .unwrap();
    qemu::convert_into(&vol.path, vol.format, &copy_a, Format::Qcow2, &|_| {})
        .await
        .unwrap();

    write(&vol, 0xb, 4 * MIB, 64 << 10).await;
    write(&vol, 0xb, 40 * MIB, MIB).await;
    let inc = engine::backup(&vol, r, &job("inc1", Some(full.clone())))
        .await
        .unwrap();
    assert_eq!(
        inc.tracking,
        Tracking::DirtyBitmap,
        "{:?}",
        inc.fallback_reason
    );
    assert_eq!(
        inc.bytes_read,
        2 * DEFAULT_CHUNK_SIZE,
        "two dirty chunks read"
    );
    assert_eq!(inc.new_chunks, 2);
    assert_eq!(inc.parent.as_deref(), Some("full"));
    // The parent's bitmap stays until the next backup starts.
    let names = |b: Vec<qemu::backup::Bitmap>| b.into_iter().map(|b| b.name).collect::<Vec<_>>();
    let bitmaps = names(qemu::backup::bitmaps(&vol.path).await.unwrap());
    assert_eq!(
        bitmaps,
        vec![engine::bitmap_name("full"), engine::bitmap_name("inc1")]
    );
    engine::retire_bitmaps(&vol, &["inc1"]).await.unwrap();
    let bitmaps = names(qemu::backup::bitmaps(&vol.path).await.unwrap());
    assert_eq!(bitmaps, vec![engine::bitmap_name("inc1")]);

    // Restore both and compare with what the volume was.
    let target = qcow2(&dir, "t.qcow2", 64 * MIB).await;
    write(&target, 0xf, 0, 64 * MIB).await;
    engine::restore(&target, r, &full).await.unwrap();
    assert!(
        qemu::compare(&target.path, target.format, &copy_a, Format::Qcow2)
            .await
            .unwrap()
    );
    engine::restore(&target, r, &inc).await.unwrap();
    assert!(
        qemu::compare(&target.path, target.format, &vol.path, vol.format)
            .await
            .unwrap()
    );

    // Without the bitmap (a snapshot moved the volume): a full read, hashes
    // compared, nothing new stored.
    engine::forget_bitmap(&vol, "inc1").await.unwrap();
    let fb = engine::backup(&vol, r, &job("inc2", Some(inc.clone())))
        .await
        .unwrap();
    assert_eq!(fb.tracking, Tracking::FullRead);
    assert!(
        fb.fallback_reason
            .as_deref()
            .unwrap()
            .contains("not in the volume's active image")
    );
    assert_eq!(fb.new_chunks, 0);
    assert_eq!(fb.chunks, inc.chunks);
    // A re-run finds the manifest.
    assert_eq!(
        engine::backup(&vol, r, &job("inc2", None)).await.unwrap(),
        fb
    );

    // A corrupt chunk: verify and restore name it; the target is untouched.
    let (index, hash) = inc
        .chunks
        .iter()
        .enumerate()
        .find_map(|(i, h)| h.clone().map(|h| (i, h)))
        .unwrap();
    f.overwrite_chunk(&hash, b"rot");
    let err = engine::verify(r, &inc).await.unwrap_err();
    assert!(
        matches!(&err, StorageError::BadChunk { backup, index: i, hash: h, .. }
        if backup == "inc1" && *i == index as u64 && *h == hash),
        "{err}"
    );
    let fresh = qcow2(&dir, "fresh.qcow2", 64 * MIB).await;
    write(&fresh, 0x5, 0, MIB).await;
    let err = engine::restore(&fresh, r, &inc).await.unwrap_err();
    assert!(err.to_string().contains(&hash), "{err}");
    assert!(
        qemu::read_pattern(&fresh.path, fresh.format, 0, MIB, 0x5)
            .await
            .unwrap()
    );
}
