//! A benchmark, run by hand (`cargo nextest run -p scoria-storage --run-ignored
//! only -E 'test(backup_bench)' --no-capture`; `SCORIA_BENCH_DATA_MIB` sets
//! the data written, 1024 by default; `SCORIA_BENCH_FSYNC=0` skips the
//! repository's syncs): a 10 GiB qcow2 volume holding random
//! data; a full backup timed next to a bare `qemu-img convert` of the same
//! volume into a raw file in the same run; then 100 MiB changed in 25 places
//! and an incremental, timed, with the bytes it read.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use super::engine::{self, BackupJob};
use super::{DEFAULT_CHUNK_SIZE, DirRepo, DynRepo};
use crate::{Format, LocalFile, qemu};

const MIB: u64 = 1 << 20;

/// A cheap pseudo-random stream (xorshift): incompressible enough for zstd.
pub(super) fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[tokio::test]
#[ignore = "a benchmark: minutes and gigabytes"]
async fn backup_bench() {
    let data_mib: u64 = std::env::var("SCORIA_BENCH_DATA_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("data.raw");
    {
        let mut f = std::fs::File::create(&raw).unwrap();
        for i in 0..data_mib {
            f.write_all(&random(MIB as usize, i + 1)).unwrap();
        }
    }
    let vol = LocalFile {
        path: dir.path().join("vol.qcow2"),
        format: Format::Qcow2,
    };
    qemu::create(&vol.path, Format::Qcow2, 10 << 30)
        .await
        .unwrap();
    qemu::convert_into(&raw, Format::Raw, &vol.path, Format::Qcow2, &|_| {})
        .await
        .unwrap();
    std::fs::remove_file(&raw).unwrap();

    let copy = dir.path().join("copy.raw");
    qemu::create(&copy, Format::Raw, 10 << 30).await.unwrap();
    let t = Instant::now();
    qemu::convert_into(&vol.path, vol.format, &copy, Format::Raw, &|_| {})
        .await
        .unwrap();
    let convert = t.elapsed();
    std::fs::remove_file(&copy).unwrap();

    let fsync = std::env::var("SCORIA_BENCH_FSYNC").as_deref() != Ok("0");
    let repo: DynRepo = Arc::new(DirRepo::open(dir.path().join("backups"), fsync).unwrap());
    let t = Instant::now();
    let full = engine::backup(
        &vol,
        &repo,
        &BackupJob {
            backup_id: "full".into(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            parent: None,
            keep_bitmaps: Vec::new(),
        },
    )
    .await
    .unwrap();
    let full_time = t.elapsed();
    let mibps = |bytes: u64, d: std::time::Duration| bytes as f64 / MIB as f64 / d.as_secs_f64();
    println!(
        "volume 10 GiB, {data_mib} MiB of random data; qemu-img convert to raw: {:.2} s ({:.0} MiB/s)",
        convert.as_secs_f64(),
        mibps(data_mib * MIB, convert)
    );
    println!(
        "full backup (fsync {fsync}): {:.2} s ({:.0} MiB/s), read {} MiB, stored {} MiB in {} chunks",
        full_time.as_secs_f64(),
        mibps(full.bytes_read, full_time),
        full.bytes_read / MIB,
        full.new_bytes / MIB,
        full.new_chunks
    );

    // 100 MiB changed: 25 regions of 4 MiB, spread over the volume.
    for i in 0..25u64 {
        let offset = i * 400 * MIB + 4 * MIB;
        qemu::write_pattern(&vol.path, vol.format, offset, 4 * MIB, (i + 1) as u8)
            .await
            .unwrap();
    }
    let t = Instant::now();
    let inc = engine::backup(
        &vol,
        &repo,
        &BackupJob {
            backup_id: "inc".into(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            parent: Some(full),
            keep_bitmaps: Vec::new(),
        },
    )
    .await
    .unwrap();
    let inc_time = t.elapsed();
    println!(
        "incremental, 100 MiB changed in 25 places: {:.2} s, tracking {}, read {} MiB, stored {} KiB in {} chunks",
        inc_time.as_secs_f64(),
        inc.tracking.as_str(),
        inc.bytes_read / MIB,
        inc.new_bytes >> 10,
        inc.new_chunks
    );
    assert_eq!(inc.bytes_read, 100 * MIB);
}
