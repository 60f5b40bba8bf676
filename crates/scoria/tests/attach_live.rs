//! Work on an attached volume without the hypervisor, against a real
//! `scoria serve`, through the API only:
//!
//! - **Live snapshot:** while a client writes through the volume's export
//!   (one `qemu-io` connection, 1 MiB writes), the volume is snapshotted
//!   (`force`); the writer never sees an error or a reconnect. A volume made
//!   from the snapshot holds the data written before it, each of the
//!   concurrent writes whole or not at all, and nothing written after; every
//!   qcow2 file of the backend passes `qemu-img check`.
//! - **Live extend (3.42):** the attached volume grows to 2 GiB; a new
//!   connection with the same `connection_info` sees 2 GiB and can write
//!   past the old end; below 3.42 the extend of an `in-use` volume is a 400.
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
/// The data written before the snapshot: the first 32 MiB.
const BEFORE: u64 = 32 * MIB;
/// The concurrent writes: 1 MiB each of 0x5a, from 64 MiB.
const CONCURRENT_AT: u64 = 64 * MIB;
const CONCURRENT: u64 = 192;
/// Written after the snapshot is available: 4 MiB of 0x77 at 512 MiB.
const AFTER_AT: u64 = 512 * MIB;

fn wait_status(api: &Api, path: &str, key: &str, want: &str) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = api.ok("GET", path, None, 200)?[key].clone();
        if v["status"] == want {
            return Ok(v);
        }
        ensure!(
            Instant::now() < deadline
                && !v["status"].as_str().is_some_and(|s| s.starts_with("error")),
            "{path} is {} (waiting for {want})",
            v["status"]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `qemu-io` through the export, one connection, running `commands`.
fn qemu_io(client: &Client, commands: &[String]) -> Command {
    let mut cmd = Command::new("qemu-io");
    cmd.args(client.object())
        .args(["--image-opts", &client.opts()]);
    for c in commands {
        cmd.args(["-c", c]);
    }
    cmd
}

/// The size a new connection to the export reports.
fn export_size(client: &Client) -> Result<u64> {
    let out = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .args(client.object())
        .args(["--image-opts", &client.opts()])
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: Value = serde_json::from_slice(&out.stdout)?;
    info["virtual-size"].as_u64().context("virtual-size")
}

fn region(file: &std::fs::File, at: u64, len: u64) -> Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, at)?;
    Ok(buf)
}

#[test]
fn a_volume_is_snapshotted_and_extended_while_a_client_writes_through_its_export() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let data = std::fs::canonicalize(tmp.path())?.join("data");
    let _daemons = Daemons(data.clone());
    let server = Server::start(&data)?;
    let api = Api::login(&server.url)?;
    let volume = api.create_volume(1)?;
    let att = api.attach(&volume, "rw")?;
    let client = Client::of(&att, &tmp.path().join("k"))?;

    // Known data first.
    let before = tmp.path().join("before.raw");
    pattern_file(&before, BEFORE as usize)?;
    client.write_from(&before, "raw")?;

    // A client writing while the snapshot is taken.
    let writes: Vec<String> = (0..CONCURRENT)
        .map(|i| format!("write -P 0x5a {} 1M", CONCURRENT_AT + i * MIB))
        .collect();
    let mut writer = qemu_io(&client, &writes)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("qemu-io")?;
    std::thread::sleep(Duration::from_millis(150));
    let t0 = Instant::now();
    let snap = api.ok(
        "POST",
        "/snapshots",
        Some(json!({"snapshot": {"volume_id": volume, "name": "live", "force": true}})),
        202,
    )?["snapshot"]
        .clone();
    let snap_id = snap["id"].as_str().context("snapshot id")?.to_owned();
    wait_status(
        &api,
        &format!("/snapshots/{snap_id}"),
        "snapshot",
        "available",
    )?;
    println!("live snapshot: POST → available in {:?}", t0.elapsed());
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
        "the writer saw the switch: {status} {out} {err}"
    );
    ensure!(
        out.matches("wrote 1048576/1048576").count() == CONCURRENT as usize,
        "not every write completed: {out}"
    );
    ensure!(api.volume(&volume)?["status"] == "in-use");
    // Written after the snapshot.
    let after = qemu_io(&client, &[format!("write -P 0x77 {AFTER_AT} 4M")]).output()?;
    ensure!(
        after.status.success(),
        "{}",
        String::from_utf8_lossy(&after.stderr)
    );

    // Every image file of the backend is consistent.
    let mut checked = 0;
    for entry in std::fs::read_dir(data.join("volumes"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "qcow2") {
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
            checked += 1;
        }
    }
    ensure!(
        checked >= 2,
        "the volume and its snapshot: {checked} images"
    );

    // What the snapshot holds, read through a volume made from it.
    let copy = api.create_volume_with(json!({"volume": {"size": 1, "snapshot_id": snap_id}}))?;
    let catt = api.attach(&copy, "ro")?;
    let cclient = Client::of(&catt, &tmp.path().join("kc"))?;
    let dump = tmp.path().join("snapshot.raw");
    cclient.read_to(&dump)?;
    api.detach(&catt)?;
    ensure!(
        same_prefix(&before, &dump, BEFORE)?,
        "the snapshot lost what was written before it"
    );
    let file = std::fs::File::open(&dump)?;
    let mut landed = 0;
    for i in 0..CONCURRENT {
        let block = region(&file, CONCURRENT_AT + i * MIB, MIB)?;
        if block.iter().all(|&b| b == 0x5a) {
            landed += 1;
        } else {
            ensure!(
                block.iter().all(|&b| b == 0),
                "concurrent write {i} is half in the snapshot"
            );
        }
    }
    println!("{landed} of {CONCURRENT} concurrent 1 MiB writes landed before the switch");
    ensure!(
        region(&file, AFTER_AT, 4 * MIB)?.iter().all(|&b| b == 0),
        "a write made after the snapshot reached it"
    );
    // The volume has it all.
    let now = qemu_io(
        &client,
        &[
            format!("read -P 0x5a {CONCURRENT_AT} {}", CONCURRENT * MIB),
            format!("read -P 0x77 {AFTER_AT} 4M"),
        ],
    )
    .output()?;
    let text = String::from_utf8_lossy(&now.stdout);
    ensure!(now.status.success() && !text.contains("failed"), "{text}");

    // Live extend: below 3.42 an in-use volume cannot be extended.
    let (code, body) = api.call_at(
        "3.41",
        "POST",
        &format!("/volumes/{volume}/action"),
        Some(json!({"os-extend": {"new_size": 2}})),
    )?;
    ensure!(
        code == 400 && body["badRequest"]["message"].is_string(),
        "{code} {body}"
    );
    ensure!(api.volume(&volume)?["size"] == 1);
    let t0 = Instant::now();
    api.ok(
        "POST",
        &format!("/volumes/{volume}/action"),
        Some(json!({"os-extend": {"new_size": 2}})),
        202,
    )?;
    wait_until("the extend", 60, || {
        api.volume(&volume)
            .is_ok_and(|v| v["size"] == 2 && v["status"] == "in-use")
    })?;
    println!("live extend: POST → in-use at 2 GiB in {:?}", t0.elapsed());
    let shown = api.ok(
        "GET",
        &format!("/attachments/{}", att["id"].as_str().context("id")?),
        None,
        200,
    )?;
    ensure!(
        shown["attachment"]["connection_info"] == att["connection_info"],
        "the connection_info changed: {shown}"
    );
    ensure!(
        export_size(&client)? == 2 << 30,
        "a new connection does not see 2 GiB"
    );
    let past = qemu_io(
        &client,
        &[
            "write -P 0x66 1536M 1M".into(),
            "read -P 0x66 1536M 1M".into(),
            format!("read -P 0x77 {AFTER_AT} 4M"),
        ],
    )
    .output()?;
    let text = String::from_utf8_lossy(&past.stdout);
    ensure!(past.status.success() && !text.contains("failed"), "{text}");

    api.detach(&att)?;
    ensure!(api.volume(&volume)?["status"] == "available");
    server.kill9();
    Ok(())
}
