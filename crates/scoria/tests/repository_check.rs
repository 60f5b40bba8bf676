//! The repository check against a corrupted backend (issue 12): volumes
//! made through a real `scoria serve` on a file backend (`max_chain_depth`
//! 3), the server stopped, their files written with `qemu-io` and then
//! damaged behind Scoria's back — a file no record names, the temporary of
//! an interrupted copy, a migration's staging file, leaked clusters (a
//! refcount raised for a cluster nothing references), a corrupted L2 entry
//! (its COPIED flag cleared), a record whose file is gone, a file grown by
//! `qemu-img resize`, a chain of four layers whose deleted middle snapshot
//! only the chain reads, a deleted snapshot's data the reaper could
//! not free (failpoint `reaper.marked=error`), and a foreign qcow2 chain.
//! `scoria check` must list exactly the expected fixes, and the foreign
//! files with their reference counts; `scoria fix` applies them all (the
//! merge through the `image_merge` flow); a re-check then lists no fix, only
//! the two images recorded broken, the deep chain is one layer shorter and
//! `optimized` again, and every volume still reads what was written,
//! including what only the merged layer held.
#![cfg(feature = "failpoints")]
// The test drives the binary under test, qemu-img and qemu-io as processes.
#![allow(clippy::disallowed_methods)]

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use scoria_storage::{Format, qemu};
use serde_json::{Value, json};
use support::serve::{Api, Server};

/// Run `scoria <args> --config <config>`: exit code and stdout.
fn scoria(config: &Path, args: &[&str]) -> Result<(i32, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_scoria"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .output()
        .context("running scoria")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("scoria {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok((out.status.code().unwrap_or(-1), stdout))
}

fn wait_status(api: &Api, path: &str, key: &str, want: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, v) = api.call("GET", path, None)?;
        if want == "gone" && code == 404 {
            return Ok(());
        }
        if v[key]["status"] == want {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "{path} never became {want}: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn snapshot(api: &Api, volume: &str) -> Result<String> {
    let s = api.ok(
        "POST",
        "/snapshots",
        Some(json!({"snapshot": {"volume_id": volume, "name": "s"}})),
        202,
    )?;
    let id = s["snapshot"]["id"]
        .as_str()
        .context("snapshot id")?
        .to_owned();
    wait_status(api, &format!("/snapshots/{id}"), "snapshot", "available")?;
    Ok(id)
}

fn be(f: &mut std::fs::File, at: u64, len: usize) -> Result<u64> {
    let mut buf = [0u8; 8];
    f.seek(SeekFrom::Start(at))?;
    f.read_exact(&mut buf[8 - len..])?;
    Ok(u64::from_be_bytes(buf))
}

/// Leak one cluster: grow the file by a cluster and give that cluster a
/// refcount of 1 that nothing references (16-bit refcounts, the default).
fn leak_a_cluster(path: &Path) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let (table, order) = (be(&mut f, 48, 8)?, be(&mut f, 96, 4)?);
    ensure!(order == 4, "refcount order {order}");
    let block = be(&mut f, table, 8)?;
    let len = f.metadata()?.len();
    let cluster = len.div_ceil(65536);
    f.set_len((cluster + 1) * 65536)?;
    f.seek(SeekFrom::Start(block + 2 * cluster))?;
    f.write_all(&1u16.to_be_bytes())?;
    Ok(())
}

/// Clear the COPIED flag of the first L2 entry (guest offset 0, which must
/// be allocated): qemu-img check counts a corruption, `-r all` repairs it
/// without losing the data.
fn corrupt_l2_entry(path: &Path) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let l1 = be(&mut f, 40, 8)?;
    let l2 = be(&mut f, l1, 8)? & 0x00ff_ffff_ffff_fe00;
    let entry = be(&mut f, l2, 8)?;
    ensure!(entry >> 63 == 1, "the L2 entry {entry:#x} is not COPIED");
    f.seek(SeekFrom::Start(l2))?;
    f.write_all(&(entry & !(1 << 63)).to_be_bytes())?;
    Ok(())
}

fn qemu_img(args: &[&str]) -> Result<()> {
    let out = Command::new("qemu-img").args(args).output()?;
    ensure!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// (problem, what it names) of each fix: the image id or the file name.
fn listed(report: &Value) -> BTreeSet<(String, String)> {
    report["fixes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            let target = &f["target"];
            let what = match target["image_id"].as_str() {
                Some(id) => id.to_owned(),
                None => Path::new(target["path"].as_str().unwrap_or_default())
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            };
            (f["problem"].as_str().unwrap_or_default().to_owned(), what)
        })
        .collect()
}

fn pair(problem: &str, what: impl ToString) -> (String, String) {
    (problem.to_owned(), what.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_lists_exactly_the_damage_and_fixing_it_all_leaves_no_fix() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().to_path_buf();
    let backend = data.join("volumes");
    let config = data.join("scoria-test.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {data:?}\n\
             [[backend]]\nname = \"file\"\npath = {backend:?}\nfsync = false\nmax_chain_depth = 3\n"
        ),
    )?;

    // Volumes through the real server.
    let server = Server::start(&data)?;
    let api = Api::login(&server.url)?;
    let names = [
        "ok", "leak", "corrupt", "missing", "resized", "deep", "gone", "snaps",
    ];
    let mut vols = std::collections::BTreeMap::new();
    for n in names {
        vols.insert(n, api.create_volume(1)?);
    }
    // deep: three snapshots (four layers, more than 3), the middle one
    // deleted: its layer is read only by the chain above it.
    let mut snaps = Vec::new();
    for _ in 0..3 {
        snaps.push(snapshot(&api, &vols["deep"])?);
    }
    api.ok("DELETE", &format!("/snapshots/{}", snaps[1]), None, 202)?;
    // snaps: three snapshots kept: every layer is a snapshot's (optimize).
    for _ in 0..3 {
        snapshot(&api, &vols["snaps"])?;
    }
    wait_status(
        &api,
        &format!("/snapshots/{}", snaps[1]),
        "snapshot",
        "gone",
    )?;
    // gone: a snapshot, then the volume deleted with it while the reaper
    // fails: the chain stays, nothing uses it.
    snapshot(&api, &vols["gone"])?;
    let r = api
        .agent
        .put(&format!("{}/debug/failpoints", server.url))
        .set("X-Auth-Token", &api.token)
        .send_json(json!({"spec": "reaper.marked=error"}))?;
    ensure!(r.status() == 204, "arming: {}", r.status());
    api.ok(
        "DELETE",
        &format!("/volumes/{}?cascade=true", vols["gone"]),
        None,
        202,
    )?;
    wait_status(
        &api,
        &format!("/volumes/{}", vols["gone"]),
        "volume",
        "gone",
    )?;
    // The check reads beside a running server.
    let (code, out) = scoria(&config, &["check", "--json"])?;
    ensure!(
        code == 0 || code == 1,
        "check beside the server: {code} {out}"
    );
    server.kill9();

    // Each volume's active image, from the records.
    let store = scoria_store::Store::open_read_only(
        &data.join("scoria.db"),
        &scoria_store::StoreOptions::default(),
    )
    .await?;
    let mut image = std::collections::BTreeMap::new();
    let mut gone_images = Vec::new();
    let deep_chain;
    {
        let mut conn = store.read().await?;
        for (n, v) in &vols {
            if *n == "gone" {
                continue;
            }
            let vol = scoria_store::volumes::volume_get(&mut conn, v.parse()?)
                .await?
                .context("volume")?;
            let img = scoria_store::images::image_get(&mut conn, vol.image_id.context("image")?)
                .await?
                .context("image")?;
            image.insert(*n, img);
        }
        deep_chain = scoria_store::images::image_chain(&mut conn, image["deep"].id).await?;
        ensure!(deep_chain.len() == 4, "deep chain of {}", deep_chain.len());
        let snaps_chain = scoria_store::images::image_chain(&mut conn, image["snaps"].id).await?;
        ensure!(
            snaps_chain.len() == 4,
            "snaps chain of {}",
            snaps_chain.len()
        );
        for i in scoria_store::images::image_list_all(&mut conn).await? {
            if !image.values().any(|a| a.id == i.id)
                && !deep_chain.iter().chain(&snaps_chain).any(|d| d.id == i.id)
            {
                gone_images.push(i.id);
            }
        }
    }
    store.close().await;
    // The volume's own image went with it; its snapshot's stays.
    ensure!(
        gone_images.len() == 1,
        "the deleted snapshot's data: {gone_images:?}"
    );
    let path = |n: &str| backend.join(&image[n].name);

    // Data, then damage.
    for n in ["ok", "leak", "corrupt", "resized", "deep", "snaps"] {
        qemu::write_pattern(&path(n), Format::Qcow2, 0, 1 << 20, 0x5a).await?;
        qemu::write_pattern(&path(n), Format::Qcow2, 300 << 20, 1 << 20, 0xa5).await?;
    }
    // Data only the deleted snapshot's layer holds (frozen: root writes it),
    // which the merge must carry into the layer above.
    let merged_layer = backend.join(&deep_chain[2].name);
    let kept_layer = backend.join(&deep_chain[1].name);
    qemu::write_pattern(&merged_layer, Format::Qcow2, 100 << 20, 1 << 20, 0x3c).await?;
    leak_a_cluster(&path("leak"))?;
    corrupt_l2_entry(&path("corrupt"))?;
    std::fs::remove_file(path("missing"))?;
    qemu_img(&[
        "resize",
        "-q",
        "-f",
        "qcow2",
        &path("resized").to_string_lossy(),
        "2G",
    ])?;
    let orphan = format!("image-{}.qcow2", scoria_model::ImageId::new());
    qemu::create(&backend.join(&orphan), Format::Qcow2, 1 << 30).await?;
    let temporary = format!(".image-{}.qcow2.tmp", scoria_model::ImageId::new());
    qemu::create(&backend.join(&temporary), Format::Qcow2, 1 << 30).await?;
    std::fs::create_dir_all(data.join("staging"))?;
    let staging = format!("migrate-{}.raw", scoria_model::FlowId::new());
    std::fs::write(data.join("staging").join(&staging), vec![7u8; 4096])?;
    // A foreign chain: golden under child1 and child2, grandchild on child1.
    let b = |n: &str| backend.join(n).to_string_lossy().into_owned();
    qemu_img(&["create", "-q", "-f", "qcow2", &b("golden.qcow2"), "64M"])?;
    for (child, base) in [
        ("child1.qcow2", "golden.qcow2"),
        ("child2.qcow2", "golden.qcow2"),
        ("grandchild.qcow2", "child1.qcow2"),
    ] {
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "qcow2",
            "-b",
            base,
            &b(child),
        ])?;
    }

    // The check: exactly these fixes.
    let before: BTreeSet<String> = std::fs::read_dir(&backend)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()?;
    let (code, out) = scoria(&config, &["check", "--json"])?;
    ensure!(code == 1, "check: {code} {out}");
    let report: Value = serde_json::from_str(&out)?;
    let mut expected: BTreeSet<(String, String)> = [
        pair("orphan_file", &orphan),
        pair("temporary", &temporary),
        pair("staging_file", &staging),
        pair("leaks", image["leak"].id),
        pair("corruption", image["corrupt"].id),
        pair("missing_file", image["missing"].id),
        pair("size_mismatch", image["resized"].id),
        pair("deep_chain", image["deep"].id),
        pair("deep_chain", image["snaps"].id),
    ]
    .into_iter()
    .collect();
    for id in &gone_images {
        expected.insert(pair("unused_image", id));
    }
    ensure!(
        listed(&report) == expected,
        "listed {:#?}\nexpected {expected:#?}",
        listed(&report)
    );
    let fixes = report["fixes"].as_array().context("fixes")?;
    let deep = fixes
        .iter()
        .find(|f| f["problem"] == "deep_chain" && f["kind"] == "merge")
        .context("deep")?;
    let snaps_fix = fixes
        .iter()
        .find(|f| f["problem"] == "deep_chain" && f["kind"] == "optimize")
        .context("snaps")?;
    ensure!(
        snaps_fix["target"]["image_id"] == image["snaps"].id.to_string()
            && snaps_fix["effect"]["layers_removed"] == 3,
        "{snaps_fix}"
    );
    ensure!(
        deep["kind"] == "merge" && deep["effect"]["layers_removed"] == 1,
        "{deep}"
    );
    ensure!(
        deep["in_use"][0]
            .as_str()
            .is_some_and(|u| u.contains(&vols["deep"])),
        "{deep}"
    );
    let leak = fixes
        .iter()
        .find(|f| f["problem"] == "leaks")
        .context("leak")?;
    ensure!(
        leak["kind"] == "mend" && leak["effect"]["bytes_freed"] == 65536,
        "{leak}"
    );
    // Foreign files with their reference counts, none of them a fix.
    let foreign: BTreeSet<(String, u64, usize)> = report["foreign"]
        .as_array()
        .context("foreign")?
        .iter()
        .map(|f| {
            (
                f["file"].as_str().unwrap_or_default().to_owned(),
                f["references"].as_u64().unwrap_or(99),
                f["chain"].as_array().map_or(0, Vec::len),
            )
        })
        .collect();
    let want: BTreeSet<(String, u64, usize)> = [
        ("child1.qcow2".to_owned(), 1, 2),
        ("child2.qcow2".to_owned(), 0, 2),
        ("golden.qcow2".to_owned(), 2, 1),
        ("grandchild.qcow2".to_owned(), 0, 3),
    ]
    .into_iter()
    .collect();
    ensure!(foreign == want, "{foreign:?}");
    // Read only: the directory is as it was; the ids are stable.
    let after: BTreeSet<String> = std::fs::read_dir(&backend)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()?;
    ensure!(before == after, "the check changed the backend");
    let (code, text) = scoria(&config, &["check"])?;
    println!("{text}");
    ensure!(code == 1, "{text}");
    for f in fixes {
        let id = f["id"].as_str().context("id")?;
        ensure!(text.contains(id), "{id} not in the second check:\n{text}");
    }

    // Fix one by id, then everything else.
    let orphan_id = fixes
        .iter()
        .find(|f| f["problem"] == "orphan_file")
        .and_then(|f| f["id"].as_str())
        .context("orphan id")?;
    let (code, out) = scoria(&config, &["fix", orphan_id])?;
    ensure!(code == 0, "fix {orphan_id}: {code} {out}");
    ensure!(!backend.join(&orphan).exists());
    let (code, out) = scoria(&config, &["fix", "clean-000000000000"])?;
    ensure!(code == 1 && out.contains("not found"), "{code} {out}");
    let (code, out) = scoria(&config, &["fix", "--json"])?;
    ensure!(code == 0, "fix all: {code} {out}");
    let done: Value = serde_json::from_str(&out)?;
    for a in done["applied"].as_array().context("applied")? {
        ensure!(a["outcome"] == "applied", "{a}");
    }

    // The re-check: no fix, only the broken records.
    let (code, out) = scoria(&config, &["check", "--json"])?;
    ensure!(code == 0, "re-check: {code} {out}");
    let report: Value = serde_json::from_str(&out)?;
    ensure!(listed(&report).is_empty(), "{report:#}");
    let broken: BTreeSet<String> = report["broken"]
        .as_array()
        .context("broken")?
        .iter()
        .filter_map(|b| b["image_id"].as_str().map(str::to_owned))
        .collect();
    let want: BTreeSet<String> = [image["missing"].id, image["resized"].id]
        .iter()
        .map(ToString::to_string)
        .collect();
    ensure!(broken == want, "{broken:?}");
    ensure!(report["foreign"].as_array().map(Vec::len) == Some(4));
    for gone in [&temporary, &orphan] {
        ensure!(!backend.join(gone).exists(), "{gone} is still there");
    }
    ensure!(!data.join("staging").join(&staging).exists());
    for id in &gone_images {
        ensure!(
            !std::fs::read_dir(&backend)?
                .flatten()
                .any(|e| e.file_name().to_string_lossy().contains(&id.to_string())),
            "the file of unused image {id} is still there"
        );
    }

    // Records: the missing volume in error, its image broken with the reason.
    let flat;
    let store = scoria_store::Store::open_read_only(
        &data.join("scoria.db"),
        &scoria_store::StoreOptions::default(),
    )
    .await?;
    {
        let mut conn = store.read().await?;
        let v = scoria_store::volumes::volume_get(&mut conn, vols["missing"].parse()?)
            .await?
            .context("volume")?;
        ensure!(
            v.status == scoria_model::volume::VolumeStatus::Error,
            "{:?}",
            v.status
        );
        let i = scoria_store::images::image_get(&mut conn, image["missing"].id)
            .await?
            .context("image")?;
        ensure!(
            i.health == scoria_model::image::ImageHealth::Broken
                && i.health_reason.as_deref() == Some("its file is missing"),
            "{i:?}"
        );
        for id in &gone_images {
            ensure!(
                scoria_store::images::image_get(&mut conn, *id)
                    .await?
                    .is_none()
            );
        }
        // The deep chain without its merged layer, healthy again.
        let chain = scoria_store::images::image_chain(&mut conn, image["deep"].id).await?;
        let ids: Vec<_> = chain.iter().map(|i| i.id).collect();
        ensure!(
            ids == [deep_chain[0].id, deep_chain[1].id, deep_chain[3].id],
            "{ids:?}"
        );
        ensure!(
            chain[0].health == scoria_model::image::ImageHealth::Optimized,
            "{:?}",
            chain[0]
        );
        let v = scoria_store::volumes::volume_get(&mut conn, vols["deep"].parse()?)
            .await?
            .context("volume")?;
        ensure!(v.status == scoria_model::volume::VolumeStatus::Available);
        // snaps: on a flattened image of its own, healthy; the old top gone.
        let v = scoria_store::volumes::volume_get(&mut conn, vols["snaps"].parse()?)
            .await?
            .context("volume")?;
        ensure!(v.status == scoria_model::volume::VolumeStatus::Available);
        let chain =
            scoria_store::images::image_chain(&mut conn, v.image_id.context("image")?).await?;
        ensure!(
            chain.len() == 1
                && chain[0].health == scoria_model::image::ImageHealth::Optimized
                && chain[0].id != image["snaps"].id,
            "{chain:?}"
        );
        flat = backend.join(&chain[0].name);
    }
    store.close().await;
    ensure!(
        !path("snaps").exists(),
        "the flattened volume's old top is still there"
    );
    ensure!(!merged_layer.exists(), "the merged layer is still there");
    for layer in [&path("deep"), &kept_layer] {
        ensure!(
            qemu::read_pattern(layer, Format::Qcow2, 100 << 20, 1 << 20, 0x3c).await?,
            "{} lost the merged layer's data",
            layer.display()
        );
    }

    // Every volume still reads what was written.
    for n in ["ok", "leak", "corrupt", "resized", "deep", "snaps"] {
        let file = if n == "snaps" { flat.clone() } else { path(n) };
        for (offset, byte) in [(0, 0x5a), (300 << 20, 0xa5)] {
            ensure!(
                qemu::read_pattern(&file, Format::Qcow2, offset, 1 << 20, byte).await?,
                "{n} lost its data at {offset}"
            );
        }
        let report = qemu::check(&file, Format::Qcow2).await?;
        ensure!(report.is_clean(), "{n}: {report:?}");
    }
    let _: PathBuf = path("ok");
    Ok(())
}
