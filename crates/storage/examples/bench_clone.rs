//! Micro-benchmark: clone a 1 GiB qcow2 volume holding 256 MiB of data
//! (qcow2 → qcow2) through the file driver (`copy_from`: blank temporary,
//! `qemu-img convert -n`, sync, rename), with and without fsync, against a bare
//! `qemu-img convert` of the same file as the baseline.
//!
//! ```text
//! cargo run --release -p scoria-storage --example bench_clone -- [N] [DIR]
//! ```
//!
//! N copies of each kind (default 5); DIR (default: a temporary directory under
//! `$TMPDIR`) should be on the file system whose figures matter.
// The baseline is a bare qemu-img process, which only this benchmark runs
// outside the qemu module.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use scoria_storage::file::{FileDriver, FileOptions};
use scoria_storage::{Driver, Failpoints, Format, ImageSpec, qemu};

const SIZE: u64 = 1 << 30;
/// 256 MiB of data, as 16 runs of 16 MiB spread over the volume.
const RUNS: u64 = 16;
const RUN: u64 = 16 << 20;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5);
    let parent = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(&parent).context("creating the bench directory")?;
    println!(
        "{n} clones of a {} GiB qcow2 volume with {} MiB of data, in {}",
        SIZE >> 30,
        (RUNS * RUN) >> 20,
        tmp.path().display()
    );
    println!("{:<30} {:>12} {:>14}", "", "per clone", "data rate");

    let mut rows = Vec::new();
    for fsync in [true, false] {
        let dir = tmp.path().join(format!("driver-fsync-{fsync}"));
        let d = FileDriver::new(
            &dir,
            Failpoints::new(),
            FileOptions {
                fsync,
                ..FileOptions::default()
            },
        )
        .await?;
        d.create(&spec("source.qcow2")).await?;
        fill(&dir.join("source.qcow2")).await?;
        let mut total = Duration::ZERO;
        for i in 0..n {
            let name = format!("clone-{i}.qcow2");
            let start = Instant::now();
            d.copy_from("source.qcow2", &spec(&name), &|_| {}).await?;
            total += start.elapsed();
            d.delete(&name).await?;
        }
        let label = format!(
            "driver copy_from, fsync {}",
            if fsync { "on" } else { "off" }
        );
        print_row(&label, total, n);
        rows.push(total);
    }

    let dir = tmp.path().join("bare");
    std::fs::create_dir(&dir)?;
    let source = dir.join("source.qcow2");
    qemu::create(&source, Format::Qcow2, SIZE).await?;
    fill(&source).await?;
    let mut bare = Duration::ZERO;
    for i in 0..n {
        let target = dir.join(format!("clone-{i}.qcow2"));
        let start = Instant::now();
        let status = std::process::Command::new(qemu::QEMU_IMG)
            .args(["convert", "-f", "qcow2", "-O", "qcow2"])
            .arg(&source)
            .arg(&target)
            .status()?;
        bare += start.elapsed();
        if !status.success() {
            bail!("qemu-img convert failed: {status}");
        }
        std::fs::remove_file(&target)?;
    }
    print_row("bare qemu-img convert", bare, n);
    for (fsync, total) in [("on", rows[0]), ("off", rows[1])] {
        println!(
            "{:<30} {:>11.2}x",
            format!("  driver / bare, fsync {fsync}"),
            total.as_secs_f64() / bare.as_secs_f64()
        );
    }
    Ok(())
}

fn spec(name: &str) -> ImageSpec {
    ImageSpec {
        name: name.into(),
        size: SIZE,
        format: Format::Qcow2,
    }
}

/// Write the data: RUNS runs of RUN bytes, evenly spread, each of its own byte.
async fn fill(path: &Path) -> anyhow::Result<()> {
    for i in 0..RUNS {
        let offset = i * (SIZE / RUNS);
        qemu::write_pattern(path, Format::Qcow2, offset, RUN, (i + 1) as u8).await?;
    }
    Ok(())
}

fn print_row(label: &str, total: Duration, n: usize) {
    let per = total.as_secs_f64() / n as f64;
    println!(
        "{label:<30} {:>9.1} ms {:>9.0} MiB/s",
        per * 1e3,
        (RUNS * RUN) as f64 / (1 << 20) as f64 / per
    );
}
