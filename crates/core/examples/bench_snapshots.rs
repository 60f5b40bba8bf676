//! Snapshots and volumes made from them, through the application layer on the
//! real file backend: a 1 GiB and a 100 GiB virtual volume holding the same
//! 256 MiB of data. For each size it times, over N rounds: taking a snapshot,
//! a volume from it by overlay (space strategy), a clone by overlay, and a
//! volume from it by copy (performance strategy) beside a bare `qemu-img
//! convert` of the same chain. Prints figures and ratios; asserts nothing.
//!
//! ```text
//! cargo run --release -p scoria-core --example bench_snapshots -- [rounds] [fsync:on|off]
//! ```
// The baseline is a bare qemu-img process, which only this benchmark runs
// outside the storage crate's qemu module.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use anyhow::Context as _;
use scoria_core::snapshots::{self, CreateRequest as SnapRequest};
use scoria_core::volumes::{self, CreateRequest};
use scoria_core::{App, Config, Context, DriverConfig};
use scoria_failpoints::Failpoints;
use scoria_model::snapshot::{CLONE_STRATEGY_SPEC, SnapshotStatus};
use scoria_model::volume::VolumeStatus;
use scoria_model::{ProjectId, SnapshotId, UserId, VolumeId, VolumeTypeId};
use scoria_storage::{Format, qemu};

/// 256 MiB of data, as 16 runs of 16 MiB spread over the first GiB.
const RUNS: u64 = 16;
const RUN: u64 = 16 << 20;

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

struct Bench {
    app: App,
    ctx: Context,
    dir: std::path::PathBuf,
    by_copy: VolumeTypeId,
}

impl Bench {
    async fn volume(&self, req: CreateRequest) -> anyhow::Result<VolumeId> {
        let v = volumes::create(&self.app, &self.ctx, req)
            .await
            .map_err(|e| anyhow::anyhow!(e.chain()))?;
        let id = v.volume.id;
        volumes::wait_settled(&self.app, id)
            .await
            .map_err(|e| anyhow::anyhow!(e.chain()))?;
        let v = volumes::get(&self.app, &self.ctx, id, true)
            .await
            .map_err(|e| anyhow::anyhow!(e.chain()))?;
        anyhow::ensure!(
            v.volume.status == VolumeStatus::Available,
            "volume {id} is {}",
            v.volume.status
        );
        Ok(id)
    }

    async fn snapshot(&self, volume: VolumeId) -> anyhow::Result<SnapshotId> {
        let s = snapshots::create(
            &self.app,
            &self.ctx,
            SnapRequest {
                volume_id: Some(volume.to_string()),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!(e.chain()))?;
        let id = s.snapshot.id;
        snapshots::wait_settled(&self.app, id)
            .await
            .map_err(|e| anyhow::anyhow!(e.chain()))?;
        let s = snapshots::get(&self.app, &self.ctx, id)
            .await
            .map_err(|e| anyhow::anyhow!(e.chain()))?;
        anyhow::ensure!(
            s.snapshot.status == SnapshotStatus::Available,
            "snapshot {id} is {}",
            s.snapshot.status
        );
        Ok(id)
    }

    /// The file of a volume's active image.
    async fn image(&self, volume: VolumeId) -> anyhow::Result<std::path::PathBuf> {
        let mut c = self.app.store().read().await?;
        let v = scoria_store::volumes::volume_get(&mut c, volume)
            .await?
            .context("volume")?;
        let i = scoria_store::images::image_get(&mut c, v.image_id.context("image")?)
            .await?
            .context("image record")?;
        Ok(self.dir.join("volumes").join(i.name))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let fsync = args.get(2).map(|s| s != "off").unwrap_or(true);
    let tmp = tempfile::tempdir_in(std::env::current_dir()?)?;
    let dir = tmp.path().to_path_buf();
    let mut config = Config::with_data_dir(dir.clone());
    if let DriverConfig::File { fsync: f, .. } = &mut config.backends[0].driver {
        *f = fsync;
    }
    let app = App::open(config, Failpoints::new())
        .await
        .map_err(|e| anyhow::anyhow!(e.chain()))?;
    let ctx = Context {
        system: false,
        request_id: "bench".into(),
        user_id: UserId::new(),
        user_name: "bench".into(),
        project_id: Some(ProjectId::new()),
        project_name: None,
        roles: ["admin", "member", "reader"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    // Room for the rounds: volumes, snapshots, gigabytes.
    scoria_core::quotas::update(
        &app,
        &ctx,
        ctx.project_id.as_ref().context("project")?.as_str(),
        &[
            (scoria_model::quota::QuotaResource::Volumes.into(), -1),
            (scoria_model::quota::QuotaResource::Snapshots.into(), -1),
            (scoria_model::quota::QuotaResource::Gigabytes.into(), -1),
        ],
    )
    .await
    .map_err(|e| anyhow::anyhow!(e.chain()))?;
    let by_copy = VolumeTypeId::new();
    {
        let mut tx = app.store().begin().await?;
        scoria_store::volume_types::volume_type_create(
            &mut tx,
            by_copy,
            "by-copy",
            None,
            true,
            &[(CLONE_STRATEGY_SPEC.to_string(), "performance".to_string())].into(),
        )
        .await?;
        tx.commit().await?;
    }
    let b = Bench {
        app,
        ctx,
        dir,
        by_copy,
    };
    println!(
        "{rounds} rounds per size, fsync {}, 256 MiB of data in each source, in {}",
        if fsync { "on" } else { "off" },
        b.dir.display()
    );
    println!(
        "{:<12} {:>12} {:>16} {:>14} {:>16} {:>16} {:>8}",
        "size",
        "snapshot",
        "from snapshot",
        "clone",
        "from snap (copy)",
        "qemu-img convert",
        "ratio"
    );
    let mut medians = Vec::new();
    for gib in [1_i64, 100] {
        let source = b
            .volume(CreateRequest {
                size: Some(gib),
                ..Default::default()
            })
            .await?;
        let image = b.image(source).await?;
        for i in 0..RUNS {
            qemu::write_pattern(
                &image,
                Format::Qcow2,
                i * (1 << 30) / RUNS,
                RUN,
                0xa0 + i as u8,
            )
            .await?;
        }
        let (mut snap, mut from, mut clone, mut copy, mut bare) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut last = None;
        for round in 0..rounds {
            let t = Instant::now();
            let s = b.snapshot(source).await?;
            snap.push(t.elapsed());
            last = Some(s);

            let t = Instant::now();
            b.volume(CreateRequest {
                snapshot_id: Some(s),
                ..Default::default()
            })
            .await?;
            from.push(t.elapsed());

            let t = Instant::now();
            b.volume(CreateRequest {
                source_volid: Some(source),
                ..Default::default()
            })
            .await?;
            clone.push(t.elapsed());

            // The full copies are slow: a few rounds are enough.
            if round < 3 {
                let t = Instant::now();
                b.volume(CreateRequest {
                    snapshot_id: Some(s),
                    volume_type: Some(b.by_copy.to_string()),
                    ..Default::default()
                })
                .await?;
                copy.push(t.elapsed());

                let frozen = {
                    let mut c = b.app.store().read().await?;
                    let s = scoria_store::snapshots::snapshot_get(&mut c, s)
                        .await?
                        .context("snapshot")?;
                    let i = scoria_store::images::image_get(&mut c, s.image_id.context("image")?)
                        .await?
                        .context("image record")?;
                    b.dir.join("volumes").join(i.name)
                };
                let out = b.dir.join(format!("bare-{gib}-{round}.qcow2"));
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
        let _ = last;
        let (s, f, c, p, q) = (
            median(&mut snap),
            median(&mut from),
            median(&mut clone),
            median(&mut copy),
            median(&mut bare),
        );
        println!(
            "{:<12} {:>12} {:>16} {:>14} {:>16} {:>16} {:>7.2}×",
            format!("{gib} GiB"),
            ms(s),
            ms(f),
            ms(c),
            ms(p),
            ms(q),
            p.as_secs_f64() / q.as_secs_f64()
        );
        medians.push((s, f, c));
    }
    let ratio = |a: Duration, b: Duration| b.as_secs_f64() / a.as_secs_f64();
    let (small, big) = (medians[0], medians[1]);
    println!(
        "100 GiB / 1 GiB (medians): snapshot {:.2}×, from snapshot {:.2}×, clone {:.2}× (constant time means about 1×)",
        ratio(small.0, big.0),
        ratio(small.1, big.1),
        ratio(small.2, big.2)
    );
    println!(
        "ratio: the performance strategy's copy over a bare qemu-img convert of the same image"
    );
    b.app.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
