//! Backups of an attached volume and of a snapshot, against a real
//! `scoria serve`, through the API only (exports over TCP with TLS-PSK):
//!
//! - **Full in-use backup (`force`) under a writer:** pattern A is written
//!   through the export, then a `qemu-io` client writes 192 sequential 1 MiB
//!   blocks while the backup is requested. The backup holds A, a prefix of
//!   the writer's blocks each whole (those written before the daemon's
//!   fleecing instant), and nothing else; the writer never sees an error.
//! - **Incremental in-use backup:** B is written, the export read into a
//!   reference, the incremental taken (through the daemon's bitmap), C
//!   written after it: its restore equals the reference byte for byte.
//! - **Backup of a snapshot** of the still attached volume (`snapshot_id`):
//!   the snapshot is `backing-up` meanwhile and `available` after, the
//!   backup records it and its `created_at` as `data_timestamp`, and its
//!   restore equals the export as it was at the snapshot (E, written after,
//!   is absent).
//!
//! Each backup's tracking and bytes read are printed.
// The test drives the binary under test and qemu's tools as processes.
#![allow(clippy::disallowed_methods)]

mod support;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use support::Daemons;
use support::serve::{Api, Client, Server, pattern_file, same_prefix};

const MIB: u64 = 1 << 20;
const VOLUME: u64 = 1 << 30;
/// Pattern A: the first 32 MiB.
const A_LEN: u64 = 32 * MIB;
/// The writer's blocks: 1 MiB each of 0x5a, from 64 MiB.
const WRITER_AT: u64 = 64 * MIB;
const WRITES: u64 = 192;

fn wait_status(api: &Api, path: &str, key: &str, want: &str) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = api.ok("GET", path, None, 200)?[key].clone();
        if v["status"] == want {
            return Ok(v);
        }
        ensure!(
            Instant::now() < deadline
                && !v["status"].as_str().is_some_and(|s| s.starts_with("error")),
            "{path} is {} (waiting for {want}): {v}",
            v["status"]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn qemu_io(client: &Client, commands: &[String]) -> Command {
    let mut cmd = Command::new("qemu-io");
    cmd.args(client.object())
        .args(["--image-opts", &client.opts()]);
    for c in commands {
        cmd.args(["-c", c]);
    }
    cmd
}

fn write(client: &Client, command: &str) -> Result<()> {
    let out = qemu_io(client, &[command.to_owned()]).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && !text.contains("failed"),
        "{command}: {text}"
    );
    Ok(())
}

/// Start a backup; its id once `available`, and its `scoria:backup` figures.
fn backup(api: &Api, body: Value) -> Result<(String, Value)> {
    let t0 = Instant::now();
    let b = api.ok("POST", "/backups", Some(json!({ "backup": body })), 202)?["backup"].clone();
    let id = b["id"].as_str().context("backup id")?.to_owned();
    wait_status(api, &format!("/backups/{id}"), "backup", "available")?;
    let shown = api.ok(
        "GET",
        &format!("/backups/{id}?with_progress=true"),
        None,
        200,
    )?["backup"]
        .clone();
    let s = &shown["scoria:backup"];
    println!(
        "backup {id} ({body}): {:?}, tracking {}, {} bytes read of {VOLUME}, {} bytes stored{}",
        t0.elapsed(),
        s["tracking"],
        s["bytes_read"],
        s["stored_bytes"],
        s["fallback_reason"]
            .as_str()
            .map(|r| format!(" (fallback: {r})"))
            .unwrap_or_default()
    );
    Ok((id, shown))
}

/// Restore backup `id` into a new volume and read it into `dst` (raw).
fn restore_to(api: &Api, id: &str, keys: &Path, dst: &Path) -> Result<()> {
    let r = api.ok(
        "POST",
        &format!("/backups/{id}/restore"),
        Some(json!({"restore": {"name": format!("restore-{id}")}})),
        202,
    )?;
    let volume = r["restore"]["volume_id"]
        .as_str()
        .context("volume_id")?
        .to_owned();
    wait_status(api, &format!("/volumes/{volume}"), "volume", "available")?;
    let att = api.attach(&volume, "ro")?;
    Client::of(&att, keys)?.read_to(dst)?;
    api.detach(&att)?;
    Ok(())
}

fn region(file: &std::fs::File, at: u64, len: u64) -> Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, at)?;
    Ok(buf)
}

#[test]
fn an_attached_volume_and_a_snapshot_are_backed_up_while_a_client_writes() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let data = std::fs::canonicalize(tmp.path())?.join("data");
    let _daemons = Daemons(data.clone());
    let server = Server::start(&data)?;
    let api = Api::login(&server.url)?;
    let volume = api.create_volume(1)?;
    let att = api.attach(&volume, "rw")?;
    let client = Client::of(&att, &tmp.path().join("k"))?;
    let a = tmp.path().join("a.raw");
    pattern_file(&a, A_LEN as usize)?;
    client.write_from(&a, "raw")?;

    // Without force an in-use volume is refused, as in Cinder.
    let (code, body) = api.call(
        "POST",
        "/backups",
        Some(json!({"backup": {"volume_id": volume}})),
    )?;
    ensure!(code == 400, "{code} {body}");

    // The full backup, requested while the writer writes.
    let writes: Vec<String> = (0..WRITES)
        .map(|i| format!("write -P 0x5a {} 1M", WRITER_AT + i * MIB))
        .collect();
    let mut writer = qemu_io(&client, &writes)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("qemu-io")?;
    std::thread::sleep(Duration::from_millis(100));
    let (full, shown) = backup(
        &api,
        json!({"volume_id": volume, "force": true, "name": "full"}),
    )?;
    ensure!(shown["scoria:backup"]["tracking"] == "full");
    ensure!(api.volume(&volume)?["status"] == "in-use");
    let status = writer.wait()?;
    let mut out = String::new();
    writer
        .stdout
        .take()
        .context("stdout")?
        .read_to_string(&mut out)?;
    let mut err = String::new();
    writer
        .stderr
        .take()
        .context("stderr")?
        .read_to_string(&mut err)?;
    ensure!(
        status.success() && !out.contains("failed") && err.is_empty(),
        "the writer noticed the backup: {status} {out} {err}"
    );
    ensure!(
        out.matches("wrote 1048576/1048576").count() == WRITES as usize,
        "not every write completed: {out}"
    );

    // Incremental: B, then the reference, the backup, and C after it.
    write(&client, "write -P 0x77 512M 4M")?;
    let reference = tmp.path().join("reference.raw");
    client.read_to(&reference)?;
    let (inc, shown) = backup(
        &api,
        json!({"volume_id": volume, "force": true, "incremental": true, "name": "inc"}),
    )?;
    let s = &shown["scoria:backup"];
    ensure!(s["tracking"] == "dirty-bitmap", "{shown}");
    ensure!(shown["is_incremental"] == true, "{shown}");
    // What changed since the full backup's instant: at most the writer's
    // blocks and B, in 4 MiB chunks.
    let read = s["bytes_read"].as_u64().context("bytes_read")?;
    ensure!(
        read <= (WRITES + 8) * MIB,
        "the incremental read {read} bytes"
    );
    write(&client, "write -P 0x33 700M 1M")?;

    // A snapshot of the attached volume, and a backup of it; E after the
    // snapshot is not in it.
    let snap = api.ok(
        "POST",
        "/snapshots",
        Some(json!({"snapshot": {"volume_id": volume, "name": "s", "force": true}})),
        202,
    )?["snapshot"]
        .clone();
    let snap_id = snap["id"].as_str().context("snapshot id")?.to_owned();
    let snap = wait_status(
        &api,
        &format!("/snapshots/{snap_id}"),
        "snapshot",
        "available",
    )?;
    let at_snapshot = tmp.path().join("at-snapshot.raw");
    client.read_to(&at_snapshot)?;
    write(&client, "write -P 0x44 0 1M")?;
    let (from_snap, shown) = backup(
        &api,
        json!({"volume_id": volume, "snapshot_id": snap_id, "incremental": true, "name": "snap"}),
    )?;
    ensure!(shown["snapshot_id"] == snap_id.as_str(), "{shown}");
    ensure!(
        shown["data_timestamp"] == snap["created_at"],
        "{shown} {snap}"
    );
    ensure!(shown["scoria:backup"]["tracking"] == "full-read", "{shown}");
    let s = api.ok("GET", &format!("/snapshots/{snap_id}"), None, 200)?;
    ensure!(s["snapshot"]["status"] == "available", "{s}");
    ensure!(api.volume(&volume)?["status"] == "in-use");

    api.detach(&att)?;
    ensure!(api.volume(&volume)?["status"] == "available");

    // The full backup: A, a prefix of the writer's blocks, each whole.
    let r = tmp.path().join("full.raw");
    restore_to(&api, &full, &tmp.path().join("k1"), &r)?;
    ensure!(same_prefix(&a, &r, A_LEN)?, "the full backup lost A");
    let file = std::fs::File::open(&r)?;
    let mut landed = 0;
    for i in 0..WRITES {
        let block = region(&file, WRITER_AT + i * MIB, MIB)?;
        if block.iter().all(|&b| b == 0x5a) {
            ensure!(
                landed == i,
                "block {i} is in the backup but block {landed} is not"
            );
            landed += 1;
        } else {
            ensure!(
                block.iter().all(|&b| b == 0),
                "write {i} is half in the backup"
            );
        }
    }
    ensure!(
        region(&file, 512 * MIB, 4 * MIB)?.iter().all(|&b| b == 0),
        "B reached the full backup"
    );
    println!("{landed} of {WRITES} concurrent 1 MiB writes landed before the backup's instant");
    ensure!(
        landed < WRITES,
        "the writer finished before the backup started: nothing was concurrent"
    );

    // The incremental: the export as it was, exactly.
    let r = tmp.path().join("inc.raw");
    restore_to(&api, &inc, &tmp.path().join("k2"), &r)?;
    ensure!(
        same_prefix(&reference, &r, VOLUME)?,
        "the incremental differs from the export at its time"
    );

    // The snapshot's backup: the snapshot's data, exactly.
    let r = tmp.path().join("snap.raw");
    restore_to(&api, &from_snap, &tmp.path().join("k3"), &r)?;
    ensure!(
        same_prefix(&at_snapshot, &r, VOLUME)?,
        "the snapshot's backup differs from the snapshot"
    );

    server.kill9();
    Ok(())
}
