//! Micro-benchmark of the layer and stream operations of the file driver.
//!
//! - `create_overlay` on an immutable qcow2 base of 1 GiB and of 100 GiB, each
//!   holding 256 MiB of data: an overlay must cost the same on both (it reads
//!   nothing of the base but its header).
//! - `export_to` (qcow2 → qcow2 outside the backend) and `import_from` (back
//!   in) of the 1 GiB base, against a bare `qemu-img convert` of the same file
//!   as the baseline.
//!
//! ```text
//! cargo run --release -p scoria-storage --example bench_layers -- [N] [DIR]
//! ```
//!
//! N operations of each kind (default 200 overlays, N/40 + 1 streams); DIR
//! (default: a temporary directory under `$TMPDIR`) should be on the file
//! system whose figures matter. Prints figures; asserts nothing about time.
// The baseline is a bare qemu-img process, which only this benchmark runs
// outside the qemu module.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use scoria_storage::file::{FileDriver, FileOptions};
use scoria_storage::{Driver, Failpoints, Format, ImageSpec, qemu};

const GIB: u64 = 1 << 30;
/// 256 MiB of data, as 16 runs of 16 MiB spread over the image.
const RUNS: u64 = 16;
const RUN: u64 = 16 << 20;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200);
    let streams = n / 40 + 1;
    let parent = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(&parent).context("creating the bench directory")?;
    println!(
        "bases with {} MiB of data, in {}",
        (RUNS * RUN) >> 20,
        tmp.path().display()
    );

    for fsync in [true, false] {
        let dir = tmp.path().join(format!("backend-fsync-{fsync}"));
        let options = FileOptions {
            fsync,
            ..FileOptions::default()
        };
        let d = FileDriver::new(&dir, Failpoints::new(), options).await?;
        println!("\nfsync {}", on(fsync));
        println!("{:<40} {:>12}", "", "per op");
        for size in [GIB, 100 * GIB] {
            let base = format!("base-{}g.qcow2", size / GIB);
            d.create(&spec(&base, size)).await?;
            fill(&dir.join(&base), size).await?;
            // Write the data back now, so that no timed sync below pays for it.
            std::fs::File::open(dir.join(&base))?.sync_all()?;
            d.make_immutable(&base).await?;
        }
        // Overlays of the base's size, and of 100 GiB on both: the second pair
        // differs only by the base.
        for (base_size, overlay_size) in [(GIB, GIB), (100 * GIB, 100 * GIB), (GIB, 100 * GIB)] {
            let base = format!("base-{}g.qcow2", base_size / GIB);
            let mut total = Duration::ZERO;
            for i in 0..n {
                let name = format!("ov-{i}.qcow2");
                let start = Instant::now();
                d.create_overlay(&base, &spec(&name, overlay_size)).await?;
                total += start.elapsed();
                d.delete(&name).await?;
            }
            let label = format!(
                "create_overlay {} GiB on {} GiB base",
                overlay_size / GIB,
                base_size / GIB
            );
            println!("{label:<40} {:>9.3} ms", ms(total, n));
        }

        // Streams of the 1 GiB base, out and back in.
        let outside = tmp.path().join(format!("outside-{fsync}"));
        std::fs::create_dir(&outside)?;
        let (mut export, mut import) = (Duration::ZERO, Duration::ZERO);
        for i in 0..streams {
            let dest = outside.join(format!("out-{i}.qcow2"));
            let start = Instant::now();
            d.export_to("base-1g.qcow2", &dest, Format::Qcow2, &|_| {})
                .await?;
            export += start.elapsed();
            let name = format!("in-{i}.qcow2");
            let start = Instant::now();
            d.import_from(&spec(&name, GIB), &dest, Format::Qcow2, &|_| {})
                .await?;
            import += start.elapsed();
            d.delete(&name).await?;
            std::fs::remove_file(&dest)?;
        }
        print_stream("export_to, 1 GiB qcow2 → qcow2", export, streams);
        print_stream("import_from, 1 GiB qcow2 → qcow2", import, streams);
        if fsync {
            let source = dir.join("base-1g.qcow2");
            let mut bare = Duration::ZERO;
            for i in 0..streams {
                let target = outside.join(format!("bare-{i}.qcow2"));
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
            print_stream("bare qemu-img convert (no sync)", bare, streams);
        }
    }
    Ok(())
}

fn spec(name: &str, size: u64) -> ImageSpec {
    ImageSpec {
        name: name.into(),
        size,
        format: Format::Qcow2,
    }
}

/// Write the data: RUNS runs of RUN bytes, evenly spread, each of its own byte.
async fn fill(path: &Path, size: u64) -> anyhow::Result<()> {
    for i in 0..RUNS {
        let offset = i * (size / RUNS);
        qemu::write_pattern(path, Format::Qcow2, offset, RUN, (i + 1) as u8).await?;
    }
    Ok(())
}

fn ms(total: Duration, n: usize) -> f64 {
    total.as_secs_f64() * 1e3 / n as f64
}

fn print_stream(label: &str, total: Duration, n: usize) {
    let per = total.as_secs_f64() / n as f64;
    println!(
        "{label:<40} {:>9.1} ms {:>9.0} MiB/s",
        per * 1e3,
        (RUNS * RUN) as f64 / (1 << 20) as f64 / per
    );
}

fn on(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}
