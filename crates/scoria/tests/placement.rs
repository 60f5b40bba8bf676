//! Rescheduling against a real `scoria serve` with two file backends: the
//! failpoint `volume_create.backend_create:a` (armed through the debug
//! endpoint) makes every create on `a` fail as the backend would; a volume
//! created through HTTP ends `available` on `b`, its data a real qcow2 file
//! there (qemu-img reads it), nothing left on `a`; the admin's placement
//! record shows both attempts; the dry run answers and creates nothing.
#![cfg(feature = "failpoints")]
// The test drives the binary under test and qemu-img as processes.
#![allow(clippy::disallowed_methods)]

mod support;

use std::process::Command;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use support::serve::{Api, Server};

/// The files a backend directory holds (temporaries included).
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[test]
fn a_create_on_a_failing_backend_is_rescheduled_to_the_other() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path();
    let (a, b) = (data.join("volumes-a"), data.join("volumes-b"));
    std::fs::write(
        data.join("scoria-test.toml"),
        format!(
            "data_dir = {data:?}\n\
             [[backend]]\nname = \"a\"\npath = {a:?}\nfsync = false\n\
             [[backend]]\nname = \"b\"\npath = {b:?}\nfsync = false\n"
        ),
    )?;
    let server = Server::start(data)?;
    let api = Api::login(&server.url)?;

    // The dry run: both fit, equal space, the tie goes to `a`; nothing made.
    let dry = api.ok(
        "POST",
        "/scheduler-stats/placement",
        Some(json!({"volume": {"size": 1}})),
        200,
    )?;
    ensure!(dry["placement"]["backend"] == "a", "{dry}");
    let weighed = dry["placement"]["decision"]["candidates"]
        .as_array()
        .context("candidates")?
        .iter()
        .filter(|c| c["outcome"] == "weighed")
        .count();
    ensure!(weighed == 2, "{dry}");
    let listed = api.ok("GET", "/volumes", None, 200)?;
    ensure!(
        listed["volumes"].as_array().is_some_and(Vec::is_empty),
        "{listed}"
    );

    // Backend a fails every create from now on.
    let r = api
        .agent
        .put(&format!("{}/debug/failpoints", server.url))
        .set("X-Auth-Token", &api.token)
        .send_json(json!({"spec": "volume_create.backend_create:a=error"}))?;
    ensure!(r.status() == 204, "arming: {}", r.status());

    let id = api.create_volume(1)?;
    let record = api.ok("GET", &format!("/volumes/{id}/placement"), None, 200)?;
    let rows = record["placements"].as_array().context("placements")?;
    ensure!(rows.len() == 2, "{record}");
    ensure!(rows[0]["backend"] == "a", "{record}");
    ensure!(
        rows[0]["outcome"]
            .as_str()
            .is_some_and(|o| o.starts_with("failed: ")),
        "{record}"
    );
    ensure!(
        rows[1]["backend"] == "b" && rows[1]["outcome"] == "placed",
        "{record}"
    );
    ensure!(rows[1]["decision"]["chosen"] == "b", "{record}");

    // The data is a real image on b; a holds nothing.
    let on_b = files(&b);
    ensure!(on_b.len() == 1, "on b: {on_b:?}");
    let out = Command::new("qemu-img")
        .args(["info", "--output=json", "-U"])
        .arg(&on_b[0])
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: Value = serde_json::from_slice(&out.stdout)?;
    ensure!(info["virtual-size"] == 1u64 << 30, "{info}");
    ensure!(files(&a).is_empty(), "on a: {:?}", files(&a));

    // The volume says where it is (the admin sees its host).
    let v = api.volume(&id)?;
    let host = v["os-vol-host-attr:host"].as_str().unwrap_or("");
    ensure!(host.ends_with("#b"), "{v}");
    server.kill9();
    Ok(())
}
