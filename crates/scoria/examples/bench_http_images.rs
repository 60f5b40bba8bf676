//! Volumes from images as users make them: through HTTP (Keystone token,
//! Image v2 upload, Block Storage v3 JSON, a 2 ms status poll), against the
//! whole server in this process on 127.0.0.1 and the real file backend. Two
//! qcow2 images holding the same 256 MiB of data, of 1 GiB and 100 GiB
//! virtual size. For each: the first volume from it (the hardened import
//! that fills the backend's image cache: inspection, `qemu-img info` under
//! limits, convert) beside a bare `qemu-img convert` of the same file in the
//! same run, as a throughput ratio; then N volumes from the cached copy
//! (overlays), whose time should not depend on the image's size. Prints
//! figures and ratios; asserts nothing.
//!
//! ```text
//! cargo run --release -p scoria --example bench_http_images -- [rounds]
//! ```
// The baseline is a bare qemu-img process.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};

mod http_bench;

use http_bench::{median, ms};

fn qemu_img(args: &[&str]) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let status = std::process::Command::new("qemu-img").args(args).status()?;
    anyhow::ensure!(status.success(), "qemu-img {args:?} failed");
    Ok(t.elapsed())
}

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let tmp = tempfile::tempdir_in(std::env::current_dir()?)?;
    let dir = tmp.path().to_path_buf();
    let rt = tokio::runtime::Runtime::new()?;
    let (app, c) = http_bench::start(&rt, &dir.join("data"))?;
    let (url, project) = (c.url.clone(), c.project.clone());
    let (code, v) = c.call(
        "PUT",
        &format!("/os-quota-sets/{project}"),
        Some(json!({"quota_set": {"volumes": -1, "gigabytes": -1}})),
    )?;
    anyhow::ensure!(code == 200, "quota: {code} {v}");

    println!(
        "{rounds} cached rounds per image, through HTTP at {url}, 256 MiB of data in each image"
    );
    println!(
        "{:<10} {:>14} {:>18} {:>8} {:>18} {:>8} {:>16}",
        "virtual",
        "first (fill)",
        "qemu-img convert",
        "ratio",
        "convert + fsync",
        "ratio",
        "from cache (p50)"
    );
    let mut cached = Vec::new();
    for gib in [1_u64, 100] {
        let file = dir.join(format!("image-{gib}.qcow2"));
        let f = file.to_str().context("path")?;
        qemu_img(&["create", "-q", "-f", "qcow2", f, &format!("{gib}G")])?;
        for i in 0..16u64 {
            rt.block_on(scoria_storage::qemu::write_pattern(
                &file,
                scoria_storage::Format::Qcow2,
                i * (64 << 20),
                16 << 20,
                0x80 + i as u8,
            ))?;
        }
        let created: Value = c
            .agent
            .post(&format!("{url}/image/v2/images"))
            .set("X-Auth-Token", &c.token)
            .send_json(json!({"name": format!("img-{gib}"), "disk_format": "qcow2",
                "container_format": "bare"}))?
            .into_json()?;
        let image = created["id"].as_str().context("image id")?.to_owned();
        c.agent
            .put(&format!("{url}/image/v2/images/{image}/file"))
            .set("X-Auth-Token", &c.token)
            .set("Content-Type", "application/octet-stream")
            .send(std::fs::File::open(&file)?)?;
        let body = json!({"volume": {"imageRef": image, "size": gib}});
        let (first, _) = c.until_available("/volumes", "volume", body.clone())?;
        let out = dir.join(format!("bare-{gib}.qcow2"));
        let o = out.to_str().context("path")?;
        let convert = ["convert", "-q", "-f", "qcow2", "-O", "qcow2", f, o];
        let bare = qemu_img(&convert)?;
        std::fs::remove_file(&out)?;
        // The same, made durable as Scoria makes every image (fsync).
        let t = Instant::now();
        qemu_img(&convert)?;
        std::fs::File::open(&out)?.sync_all()?;
        let durable = t.elapsed();
        std::fs::remove_file(&out)?;
        let mut times = Vec::new();
        for _ in 0..rounds {
            times.push(c.until_available("/volumes", "volume", body.clone())?.0);
        }
        let p50 = median(&mut times);
        println!(
            "{:<10} {:>14} {:>18} {:>7.0}% {:>18} {:>7.0}% {:>16}",
            format!("{gib} GiB"),
            ms(first),
            ms(bare),
            100.0 * bare.as_secs_f64() / first.as_secs_f64(),
            ms(durable),
            100.0 * durable.as_secs_f64() / first.as_secs_f64(),
            ms(p50)
        );
        cached.push(p50);
    }
    println!(
        "from cache, 100 GiB / 1 GiB (medians): {:.2}× (constant time: about 1×)",
        cached[1].as_secs_f64() / cached[0].as_secs_f64()
    );
    println!(
        "ratio: throughput of the first volume from an image (request to available, every check included) as a share of a bare qemu-img convert, and of one made durable (fsync) as Scoria makes its images"
    );
    rt.block_on(app.shutdown(Duration::from_secs(5)));
    Ok(())
}
