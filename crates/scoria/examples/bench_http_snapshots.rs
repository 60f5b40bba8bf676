//! Snapshots and volumes from them as users see them: through HTTP (Keystone
//! token, Block Storage v3 JSON, a 2 ms status poll), against the whole
//! server in this process on 127.0.0.1 and the real file backend. A 1 GiB and
//! a 100 GiB volume, each holding the same 256 MiB of data; for each, over N
//! rounds, the time from the request to `available` of: a snapshot, a volume
//! from it by overlay, a clone by overlay, and (three rounds) a volume from it
//! by copy beside a bare `qemu-img convert` of the same image. Prints figures
//! and ratios; asserts nothing.
//!
//! ```text
//! cargo run --release -p scoria --example bench_http_snapshots -- [rounds]
//! ```
// The baseline is a bare qemu-img process.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;

mod http_bench;

use http_bench::{median, ms};

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let tmp = tempfile::tempdir_in(std::env::current_dir()?)?;
    let dir = tmp.path().to_path_buf();
    let rt = tokio::runtime::Runtime::new()?;
    let (app, c) = http_bench::start(&rt, &dir)?;
    let (url, project) = (c.url.clone(), c.project.clone());
    let (code, v) = c.call(
        "PUT",
        &format!("/os-quota-sets/{project}"),
        Some(json!({"quota_set": {"volumes": -1, "snapshots": -1, "gigabytes": -1}})),
    )?;
    anyhow::ensure!(code == 200, "quota: {code} {v}");
    let (code, v) = c.call(
        "POST",
        "/types",
        Some(json!({"volume_type": {"name": "by-copy",
            "extra_specs": {"scoria:clone_strategy": "performance"}}})),
    )?;
    anyhow::ensure!(code == 200, "type: {code} {v}");

    println!("{rounds} rounds per size, through HTTP at {url}, 256 MiB of data in each source");
    println!(
        "{:<10} {:>12} {:>16} {:>12} {:>18} {:>18} {:>8}",
        "size",
        "snapshot",
        "from snapshot",
        "clone",
        "from snap (copy)",
        "qemu-img convert",
        "ratio"
    );
    let mut medians = Vec::new();
    for gib in [1_u64, 100] {
        let (_, source) =
            c.until_available("/volumes", "volume", json!({"volume": {"size": gib}}))?;
        let image = rt.block_on(async {
            let mut conn = app.store().read().await?;
            let v = scoria_store::volumes::volume_get(&mut conn, source.parse()?)
                .await?
                .context("volume")?;
            let i = scoria_store::images::image_get(&mut conn, v.image_id.context("image")?)
                .await?
                .context("image record")?;
            Ok::<_, anyhow::Error>(dir.join("volumes").join(i.name))
        })?;
        for i in 0..16u64 {
            rt.block_on(scoria_storage::qemu::write_pattern(
                &image,
                scoria_storage::Format::Qcow2,
                i * (64 << 20),
                16 << 20,
                0x80 + i as u8,
            ))?;
        }
        let (mut snap, mut from, mut clone, mut copy, mut bare) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let (t, s) = c.until_available(
                "/snapshots",
                "snapshot",
                json!({"snapshot": {"volume_id": source}}),
            )?;
            snap.push(t);
            let (t, _) =
                c.until_available("/volumes", "volume", json!({"volume": {"snapshot_id": s}}))?;
            from.push(t);
            let (t, _) = c.until_available(
                "/volumes",
                "volume",
                json!({"volume": {"source_volid": source}}),
            )?;
            clone.push(t);
            if round < 3 {
                let (t, _) = c.until_available(
                    "/volumes",
                    "volume",
                    json!({"volume": {"snapshot_id": s, "volume_type": "by-copy"}}),
                )?;
                copy.push(t);
                let frozen = rt.block_on(async {
                    let mut conn = app.store().read().await?;
                    let s = scoria_store::snapshots::snapshot_get(&mut conn, s.parse()?)
                        .await?
                        .context("snapshot")?;
                    let i =
                        scoria_store::images::image_get(&mut conn, s.image_id.context("image")?)
                            .await?
                            .context("image record")?;
                    Ok::<_, anyhow::Error>(dir.join("volumes").join(i.name))
                })?;
                let out = dir.join(format!("bare-{gib}-{round}.qcow2"));
                let t = Instant::now();
                let status = std::process::Command::new("qemu-img")
                    .args(["convert", "-q", "-f", "qcow2", "-O", "qcow2"])
                    .arg(&frozen)
                    .arg(&out)
                    .status()?;
                anyhow::ensure!(status.success(), "qemu-img convert failed");
                bare.push(t.elapsed());
                std::fs::remove_file(&out)?;
            }
        }
        let (s, f, k, p, q) = (
            median(&mut snap),
            median(&mut from),
            median(&mut clone),
            median(&mut copy),
            median(&mut bare),
        );
        println!(
            "{:<10} {:>12} {:>16} {:>12} {:>18} {:>18} {:>7.2}×",
            format!("{gib} GiB"),
            ms(s),
            ms(f),
            ms(k),
            ms(p),
            ms(q),
            p.as_secs_f64() / q.as_secs_f64()
        );
        medians.push((s, f, k));
    }
    let r = |a: Duration, b: Duration| b.as_secs_f64() / a.as_secs_f64();
    println!(
        "100 GiB / 1 GiB (medians): snapshot {:.2}×, from snapshot {:.2}×, clone {:.2}× (constant time: about 1×)",
        r(medians[0].0, medians[1].0),
        r(medians[0].1, medians[1].1),
        r(medians[0].2, medians[1].2)
    );
    println!(
        "ratio: the performance strategy's copy (request to available) over a bare qemu-img convert"
    );
    rt.block_on(app.shutdown(Duration::from_secs(5)));
    Ok(())
}
