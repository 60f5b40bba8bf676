//! The repository check's `merge` of an attached volume's chain, against a
//! real `scoria serve` (`max_chain_depth` 3), through the API only: the
//! volume is written through its export, snapshotted three times (`force`),
//! the middle snapshot deleted (its layer only the chain above reads), then
//! checked and fixed while one `qemu-io` connection keeps writing through
//! the export. The fix is a block-stream job in the export's daemon: the
//! writer sees no error and no reconnect, the merged layer's file is gone,
//! everything written before and during reads back through the export, every
//! qcow2 file passes `qemu-img check`, the volume is `in-use` again and a
//! new check proposes nothing.
// The test drives the binary under test and qemu's tools as processes.
#![allow(clippy::disallowed_methods)]

mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use support::Daemons;
use support::serve::{Api, Client, Server, pattern_file, same_prefix, wait_until};

const MIB: u64 = 1 << 20;
/// Written first: 16 MiB of a pattern.
const BEFORE: u64 = 16 * MIB;
/// The writes during the fix: 1 MiB each of 0x5a, from 64 MiB.
const CONCURRENT_AT: u64 = 64 * MIB;
const CONCURRENT: u64 = 128;

fn qemu_io(client: &Client, commands: &[String]) -> Command {
    let mut cmd = Command::new("qemu-io");
    cmd.args(client.object())
        .args(["--image-opts", &client.opts()]);
    for c in commands {
        cmd.args(["-c", c]);
    }
    cmd
}

fn io_ok(client: &Client, commands: &[String]) -> Result<()> {
    // Reads only: read-only, as a read-only attachment needs.
    let read_only = commands.iter().all(|c| c.starts_with("read"));
    let mut cmd = qemu_io(client, commands);
    if read_only {
        cmd.arg("-r");
    }
    let out = cmd.output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && !text.contains("failed"),
        "qemu-io {commands:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A repository check or fix run, polled until it ends.
fn run(api: &Api, what: &str, body: Value) -> Result<Value> {
    let key = if what == "fixes" { "fix" } else { "check" };
    let started = api.ok(
        "POST",
        &format!("/scoria-repository/{what}"),
        Some(body),
        202,
    )?;
    let id = started[key]["id"].as_str().context("run id")?.to_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now =
            api.ok("GET", &format!("/scoria-repository/{what}/{id}"), None, 200)?[key].clone();
        if now["status"] != "running" {
            ensure!(now["status"] == "done", "{what} {id}: {now:#}");
            return Ok(now);
        }
        ensure!(Instant::now() < deadline, "{what} {id} did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn qcow2_files(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "qcow2") {
            out.push(path);
        }
    }
    Ok(out)
}

#[test]
fn an_attached_volumes_chain_is_merged_while_a_client_writes_through_its_export() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let data = std::fs::canonicalize(tmp.path())?.join("data");
    let backend = data.join("volumes");
    std::fs::create_dir_all(&data)?;
    std::fs::write(
        data.join("scoria-test.toml"),
        format!(
            "data_dir = {data:?}\n[exports]\nreconcile_period_ms = 300\n\
             [[backend]]\nname = \"file\"\npath = {backend:?}\nfsync = false\nmax_chain_depth = 3\n"
        ),
    )?;
    let _daemons = Daemons(data.clone());
    let server = Server::start(&data)?;
    let api = Api::login(&server.url)?;
    let volume = api.create_volume(1)?;
    let att = api.attach(&volume, "rw")?;
    let client = Client::of(&att, &tmp.path().join("k"))?;
    let before = tmp.path().join("before.raw");
    pattern_file(&before, BEFORE as usize)?;
    client.write_from(&before, "raw")?;

    // Three snapshots of the attached volume, a MiB of its own written
    // before each; the middle one deleted.
    let mut snaps = Vec::new();
    for i in 0..3u64 {
        io_ok(&client, &[format!("write -P {} {}M 1M", 0x21 + i, 32 + i)])?;
        let s = api.ok(
            "POST",
            "/snapshots",
            Some(json!({"snapshot": {"volume_id": volume, "name": "s", "force": true}})),
            202,
        )?["snapshot"]["id"]
            .as_str()
            .context("snapshot id")?
            .to_owned();
        wait_until("the snapshot", 60, || {
            api.ok("GET", &format!("/snapshots/{s}"), None, 200)
                .is_ok_and(|v| v["snapshot"]["status"] == "available")
        })?;
        snaps.push(s);
    }
    io_ok(&client, &["write -P 0x24 35M 1M".into()])?;
    api.ok("DELETE", &format!("/snapshots/{}", snaps[1]), None, 202)?;
    wait_until("the snapshot's deletion", 60, || {
        api.call("GET", &format!("/snapshots/{}", snaps[1]), None)
            .is_ok_and(|(code, _)| code == 404)
    })?;

    let report = run(&api, "checks", json!({"check": {"backend": "file"}}))?["report"].clone();
    let fixes = report["fixes"].as_array().context("fixes")?;
    ensure!(fixes.len() == 1, "one fix: {report:#}");
    let merge = &fixes[0];
    ensure!(
        merge["kind"] == "merge"
            && merge["reason"]
                .as_str()
                .is_some_and(|r| r.contains("online")),
        "an online merge: {merge:#}"
    );
    let files_before = qcow2_files(&backend)?.len();

    // The writer keeps one connection through the fix.
    let writes: Vec<String> = (0..CONCURRENT)
        .map(|i| format!("write -P 0x5a {} 1M", CONCURRENT_AT + i * MIB))
        .collect();
    let mut writer = qemu_io(&client, &writes)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("qemu-io")?;
    std::thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    let done = run(&api, "fixes", json!({"fix": {"ids": [merge["id"]]}}))?;
    println!("live merge: POST → done in {:?}", t0.elapsed());
    let applied = &done["outcome"]["applied"];
    ensure!(
        applied[0]["outcome"] == "applied",
        "the merge was applied: {done:#}"
    );
    let status = writer.wait()?;
    let (mut out, mut err) = (String::new(), String::new());
    writer
        .stdout
        .take()
        .context("stdout")?
        .read_to_string(&mut out)?;
    writer
        .stderr
        .take()
        .context("stderr")?
        .read_to_string(&mut err)?;
    ensure!(
        status.success() && !out.contains("failed") && err.is_empty(),
        "the writer saw the merge: {status} {out} {err}"
    );
    ensure!(out.matches("wrote 1048576/1048576").count() == CONCURRENT as usize);

    // One layer fewer, the volume attached as before, everything there.
    ensure!(
        qcow2_files(&backend)?.len() == files_before - 1,
        "the merged layer's file is gone"
    );
    ensure!(api.volume(&volume)?["status"] == "in-use");
    let dump = tmp.path().join("after.raw");
    client.read_to(&dump)?;
    ensure!(
        same_prefix(&before, &dump, BEFORE)?,
        "the first data changed"
    );
    io_ok(
        &client,
        &[
            "read -P 0x21 32M 1M".into(),
            "read -P 0x22 33M 1M".into(),
            "read -P 0x23 34M 1M".into(),
            "read -P 0x24 35M 1M".into(),
            format!("read -P 0x5a {CONCURRENT_AT} {}", CONCURRENT * MIB),
        ],
    )?;
    for path in qcow2_files(&backend)? {
        let check = Command::new("qemu-img")
            .args(["check", "-U", "-f", "qcow2"])
            .arg(&path)
            .output()?;
        ensure!(
            check.status.success(),
            "qemu-img check {}: {}",
            path.display(),
            String::from_utf8_lossy(&check.stdout)
        );
    }
    let report = run(&api, "checks", json!({"check": {"backend": "file"}}))?["report"].clone();
    ensure!(
        report["fixes"].as_array().is_some_and(Vec::is_empty),
        "nothing left to fix: {report:#}"
    );
    // The kept snapshots still hold their data: the last one, read through
    // a volume made from it.
    let copy = api.create_volume_with(json!({"volume": {"size": 1, "snapshot_id": snaps[2]}}))?;
    let catt = api.attach(&copy, "ro")?;
    let cclient = Client::of(&catt, &tmp.path().join("kc"))?;
    io_ok(
        &cclient,
        &[
            "read -P 0x21 32M 1M".into(),
            "read -P 0x22 33M 1M".into(),
            "read -P 0x23 34M 1M".into(),
            "read -P 0 35M 1M".into(),
        ],
    )?;
    api.detach(&catt)?;
    api.detach(&att)?;
    ensure!(api.volume(&volume)?["status"] == "available");
    server.kill9();
    Ok(())
}
