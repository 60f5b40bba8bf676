//! Micro-benchmark: create and delete N blank qcow2 images through the file driver,
//! writing them natively or with `qemu-img create`, with and without fsync; plus
//! bare `qemu-img create` as the cost of the process alone.
//!
//! ```text
//! cargo run --release -p scoria-storage --example bench_create -- [N] [DIR]
//! ```
//!
//! DIR (default: a temporary directory under `$TMPDIR`) should be on the file
//! system whose figures matter; a tmpfs makes fsync free.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use scoria_storage::file::{FileDriver, FileOptions};
use scoria_storage::{Driver, Failpoints, Format, ImageSpec, qemu};

const SIZE: u64 = 10 << 30;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(500);
    let parent = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(&parent).context("creating the bench directory")?;
    // BENCH_NATIVE_ONLY=1 skips the qemu-img rows, e.g. to profile the native path.
    let only_native = std::env::var_os("BENCH_NATIVE_ONLY").is_some();
    println!(
        "{n} images of {} GiB in {}",
        SIZE >> 30,
        tmp.path().display()
    );
    println!("{:<28} {:>12} {:>12}", "", "create/op", "delete/op");

    for fsync in [true, false] {
        let mut create = [Duration::ZERO; 2];
        for (i, native_qcow2) in [true, false].into_iter().enumerate() {
            if only_native && !native_qcow2 {
                continue;
            }
            let dir = tmp.path().join(format!("driver-{fsync}-{native_qcow2}"));
            let options = FileOptions {
                fsync,
                native_qcow2,
            };
            let d = FileDriver::new(&dir, Failpoints::new(), options).await?;
            let (c, del) = run_driver(&d, n).await?;
            let how = if native_qcow2 { "native" } else { "qemu-img" };
            println!(
                "{:<28} {:>12} {:>12}",
                format!("driver, {how}, fsync {}", on(fsync)),
                per(c, n),
                per(del, n)
            );
            create[i] = c;
        }
        if only_native {
            continue;
        }
        println!(
            "{:<28} {:>11.1}x",
            format!("  qemu-img / native, fsync {}", on(fsync)),
            create[1].as_secs_f64() / create[0].as_secs_f64()
        );
    }

    if only_native {
        return Ok(());
    }
    let dir = tmp.path().join("bare");
    std::fs::create_dir(&dir)?;
    let (c, del) = run_bare(&dir, n).await?;
    println!(
        "{:<28} {:>12} {:>12}",
        "bare qemu-img create, rm",
        per(c, n),
        per(del, n)
    );
    Ok(())
}

fn on(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

fn per(total: Duration, n: usize) -> String {
    format!("{:.1} µs", total.as_secs_f64() * 1e6 / n as f64)
}

async fn run_driver(d: &FileDriver, n: usize) -> anyhow::Result<(Duration, Duration)> {
    let names: Vec<String> = (0..n).map(|i| format!("volume-{i}.qcow2")).collect();
    let start = Instant::now();
    for name in &names {
        d.create(&ImageSpec {
            name: name.clone(),
            size: SIZE,
            format: Format::Qcow2,
        })
        .await?;
    }
    let created = start.elapsed();
    let start = Instant::now();
    for name in &names {
        d.delete(name).await?;
    }
    Ok((created, start.elapsed()))
}

async fn run_bare(dir: &Path, n: usize) -> anyhow::Result<(Duration, Duration)> {
    let paths: Vec<_> = (0..n)
        .map(|i| dir.join(format!("volume-{i}.qcow2")))
        .collect();
    let start = Instant::now();
    for path in &paths {
        qemu::create(path, Format::Qcow2, SIZE).await?;
    }
    let created = start.elapsed();
    let start = Instant::now();
    for path in &paths {
        tokio::fs::remove_file(path).await?;
    }
    Ok((created, start.elapsed()))
}
