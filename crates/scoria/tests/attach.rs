//! Attachments against a real `scoria serve`, with real clients on the data
//! path: `qemu-img` and `nbdcopy` write through an attachment's NBD export
//! over TLS-PSK, `qemu-system-x86_64 -accel tcg` boots a guest from it.
//!
//! - `boot.qcow2` uploaded to the image service, a volume made from it
//!   (`imageRef`), attached through the attachments API (with a connector):
//!   a guest boots from the export (`BOOT-FROM-VOLUME-OK`); detached, attached again (new key, new
//!   export), it boots again and the boot counter the guest keeps in sector
//!   2047 went up: the write path works and persists; volumes made from a
//!   snapshot of it (overlays) boot the same way and their writes never
//!   reach the snapshot;
//! - a client without the key, or with another attachment's key, cannot
//!   read an export;
//! - 256 MiB of known data written through an export is exactly what the
//!   volume holds after the detach;
//! - Scoria killed with SIGKILL while a client writes 256 MiB through an
//!   export: the daemon keeps serving, the write completes intact; restarted, the attachment and its `connection_info` are the
//!   same; the daemon killed: it is started again with the same
//!   `connection_info`.
//!
//! The boot test is skipped, saying why, when `qemu-system-x86_64` or the
//! boot image is missing; `nbdcopy` falls back to `qemu-img` when missing.
// The test drives the binary under test and qemu's tools as processes.
#![allow(clippy::disallowed_methods)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::serve::{
    Api, Client, Server, boot_image, have, pattern_file, same_prefix, wait_until,
};
use support::{Daemons, qsd_pids};

use anyhow::{Context, Result, ensure};
use serde_json::json;

#[test]
fn a_vm_boots_from_an_attached_volume_and_its_writes_persist() -> Result<()> {
    let Some(image) = boot_image() else {
        println!(
            "SKIPPED: no boot image (set SCORIA_BOOT_IMAGE or provide ../shared/images/boot.qcow2)"
        );
        return Ok(());
    };
    if !have("qemu-system-x86_64") {
        println!(
            "SKIPPED: qemu-system-x86_64 is not installed (apt-get install -t bookworm-backports qemu-system-x86)"
        );
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let data = std::fs::canonicalize(tmp.path())?.join("data");
    let _daemons = Daemons(data.clone());
    let server = Server::start(&data)?;
    let api = Api::login(&server.url)?;
    // Through the API only: the boot image goes to the image service, the
    // volume is made from it (hardened import, bootable).
    let glance_image = api.upload_image(&image)?;
    let vol = api.create_volume_with(json!({"volume": {"size": 1, "imageRef": glance_image}}))?;
    ensure!(api.volume(&vol)?["bootable"] == "true", "not bootable");

    let t0 = Instant::now();
    let a1 = api.attach(&vol, "rw")?;
    let attach_ms = t0.elapsed().as_millis();
    let c1 = Client::of(&a1, &tmp.path().join("keys1"))?;
    ensure!(
        c1.can_read(),
        "the export is not readable right after POST /attachments"
    );
    println!("POST /attachments + os-complete to a readable export: {attach_ms} ms");
    let v = api.volume(&vol)?;
    ensure!(v["status"] == "in-use", "{v}");
    ensure!(v["attachments"][0]["attachment_id"] == a1["id"], "{v}");
    let (status, body) = api.call("DELETE", &format!("/volumes/{vol}"), None)?;
    ensure!(
        status == 400 && body.to_string().contains(a1["id"].as_str().unwrap_or("?")),
        "deleting an attached volume: {status} {body}"
    );

    let first = c1.boot(&tmp.path().join("boot1.log"))?;
    println!("first boot: counter={first}");

    api.detach(&a1)?;
    let v = api.volume(&vol)?;
    ensure!(
        v["status"] == "available" && v["attachments"] == json!([]),
        "{v}"
    );
    ensure!(!c1.can_read(), "the export still serves after the detach");

    let a2 = api.attach(&vol, "rw")?;
    ensure!(a2["id"] != a1["id"], "a new attachment");
    let c2 = Client::of(&a2, &tmp.path().join("keys2"))?;
    let second = c2.boot(&tmp.path().join("boot2.log"))?;
    println!("second boot: counter={second}");
    ensure!(
        second > first,
        "the boot counter did not go up: {first} then {second}"
    );
    api.detach(&a2)?;

    // A volume made from a snapshot of it (an overlay on the snapshot, the
    // space strategy) boots the same way, and its writes never reach the
    // snapshot: a second volume from the same snapshot counts from the
    // snapshot's value again.
    let snap = api.ok(
        "POST",
        "/snapshots",
        Some(json!({"snapshot": {"volume_id": vol, "name": "boot-snap"}})),
        202,
    )?["snapshot"]["id"]
        .as_str()
        .context("snapshot id")?
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.ok("GET", &format!("/snapshots/{snap}"), None, 200)?["snapshot"]["status"]
        != "available"
    {
        ensure!(
            Instant::now() < deadline,
            "snapshot {snap} never became available"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut from_snapshot = Vec::new();
    for i in 0..2 {
        let clone = api.ok(
            "POST",
            "/volumes",
            Some(json!({"volume": {"snapshot_id": snap, "size": 1}})),
            202,
        )?["volume"]["id"]
            .as_str()
            .context("id")?
            .to_owned();
        let deadline = Instant::now() + Duration::from_secs(60);
        while api.volume(&clone)?["status"] != "available" {
            ensure!(
                Instant::now() < deadline,
                "volume {clone} never became available"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let a = api.attach(&clone, "rw")?;
        let c = Client::of(&a, &tmp.path().join(format!("keys-clone{i}")))?;
        from_snapshot.push(c.boot(&tmp.path().join(format!("boot-clone{i}.log")))?);
        api.detach(&a)?;
    }
    println!("boots from volumes made from the snapshot: counters {from_snapshot:?}");
    ensure!(
        from_snapshot == vec![second + 1, second + 1],
        "a volume from the snapshot did not boot from the snapshot's data, or its writes reached the snapshot: {from_snapshot:?} after {second}"
    );
    drop(server);
    Ok(())
}

#[test]
fn an_export_opens_only_with_its_own_key_and_keeps_what_was_written() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let data = std::fs::canonicalize(tmp.path())?.join("data");
    let _daemons = Daemons(data.clone());
    let server = Server::start(&data)?;
    let api = Api::login(&server.url)?;
    let v1 = api.create_volume(1)?;
    let v2 = api.create_volume(1)?;
    let a1 = api.attach(&v1, "rw")?;
    let a2 = api.attach(&v2, "rw")?;
    let c1 = Client::of(&a1, &tmp.path().join("k1"))?;
    let c2 = Client::of(&a2, &tmp.path().join("k2"))?;
    ensure!(
        c1.can_read() && c2.can_read(),
        "each key opens its own export"
    );
    ensure!(!c1.without_key().can_read(), "an export opened without TLS");
    ensure!(
        !c1.with_key_of(&c2).can_read(),
        "an export opened with another attachment's key"
    );
    ensure!(
        !c2.with_key_of(&c1).can_read(),
        "an export opened with another attachment's key"
    );

    // 256 MiB of known data through the export.
    const LEN: usize = 256 << 20;
    let src = tmp.path().join("pattern.raw");
    pattern_file(&src, LEN)?;
    let t0 = Instant::now();
    if have("nbdcopy") {
        c1.nbdcopy_from(&src)?;
        println!(
            "nbdcopy wrote 256 MiB through the export in {:?}",
            t0.elapsed()
        );
    } else {
        println!("nbdcopy is not installed: writing with qemu-img convert");
        c1.write_from(&src, "raw")?;
    }
    api.detach(&a1)?;
    // After the detach, the volume holds exactly that: read it back through
    // a fresh read-only attachment.
    let r = api.attach(&v1, "ro")?;
    ensure!(r["connection_info"]["read_only"] == true, "{r}");
    let cr = Client::of(&r, &tmp.path().join("kr"))?;
    let back = tmp.path().join("back.raw");
    cr.read_to(&back)?;
    ensure!(
        same_prefix(&src, &back, LEN as u64)?,
        "the volume does not hold what was written"
    );
    ensure!(
        std::fs::metadata(&back)?.len() == 1 << 30,
        "the export is not the volume's size"
    );
    // A read-only export refuses writes.
    ensure!(
        cr.write_from(&src, "raw").is_err(),
        "a read-only export took a write"
    );
    api.detach(&r)?;
    api.detach(&a2)?;
    ensure!(
        qsd_pids(&data).is_empty(),
        "daemons left after every detach"
    );
    Ok(())
}

#[test]
fn exports_survive_a_scoria_crash_and_come_back_after_a_daemon_crash() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let data = std::fs::canonicalize(tmp.path())?.join("data");
    let _daemons = Daemons(data.clone());
    let server = Server::start(&data)?;
    let api = Api::login(&server.url)?;
    let vol = api.create_volume(1)?;
    let a = api.attach(&vol, "rw")?;
    let c = Client::of(&a, &tmp.path().join("k"))?;
    ensure!(c.can_read(), "export serves");
    let pids = qsd_pids(&data);
    ensure!(pids.len() == 1, "one daemon per export: {pids:?}");

    // Scoria dies while a client writes 256 MiB through the export: the
    // daemon stays, the client finishes, the data is all there.
    const LEN: usize = 256 << 20;
    let src = tmp.path().join("pattern.raw");
    pattern_file(&src, LEN)?;
    let writer = {
        let c = Client {
            host: c.host.clone(),
            port: c.port,
            export: c.export.clone(),
            psk: c.psk.clone(),
        };
        let src = src.clone();
        std::thread::spawn(move || c.write_from(&src, "raw"))
    };
    std::thread::sleep(Duration::from_millis(300));
    server.kill9();
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))?
        .context("the client's write across Scoria's kill -9")?;
    ensure!(c.can_read(), "the export stopped with Scoria");
    let back = tmp.path().join("back.raw");
    c.read_to(&back)?;
    ensure!(
        same_prefix(&src, &back, LEN as u64)?,
        "the data written across the kill is not all there"
    );
    let server = Server::start(&data)?;
    let api = Api::login(&server.url)?;
    let id = a["id"].as_str().context("id")?;
    let again = api.ok("GET", &format!("/attachments/{id}"), None, 200)?["attachment"].clone();
    ensure!(
        again["connection_info"] == a["connection_info"],
        "connection_info changed across a restart: {} vs {}",
        again["connection_info"],
        a["connection_info"]
    );
    ensure!(
        qsd_pids(&data) == pids,
        "the daemon was replaced, not adopted"
    );
    let list = api.ok("GET", "/attachments", None, 200)?;
    ensure!(
        list["attachments"].as_array().map(Vec::len) == Some(1),
        "{list}"
    );

    // The daemon dies: the reconciler starts it again, same connection.
    for pid in &pids {
        Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()?;
    }
    wait_until("the daemon's restart", 30, || {
        let now = qsd_pids(&data);
        !now.is_empty() && now != pids && c.can_read()
    })?;
    let again = api.ok("GET", &format!("/attachments/{id}"), None, 200)?["attachment"].clone();
    ensure!(
        again["connection_info"] == a["connection_info"],
        "connection_info changed"
    );

    // Both die: Scoria's next start serves it again.
    let pids = qsd_pids(&data);
    server.kill9();
    for pid in &pids {
        Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()?;
    }
    ensure!(!c.can_read(), "nothing serves while both are down");
    let server = Server::start(&data)?;
    wait_until("the export after both died", 30, || c.can_read())?;
    let api = Api::login(&server.url)?;
    api.detach(&a)?;
    wait_until("the daemon's end", 10, || qsd_pids(&data).is_empty())?;
    Ok(())
}
