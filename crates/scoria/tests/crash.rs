//! The crash test: a real `scoria serve` is killed again and again while clients
//! create, clone, extend and delete volumes and groups (volumes made in groups,
//! groups deleted with their volumes), take and delete snapshots, make volumes
//! from them and revert volumes to them, make volumes from an image of the
//! image service (through its cache) and upload volumes to new images; after
//! a last restart everything settles and the promises hold. The server has
//! two file backends (`file` and `other`), and the clients move volumes
//! between them (`os-migrate_volume`): a kill mid-migration loses no volume
//! and leaves exactly one copy of its data. Chains deeper than 3 layers are
//! degraded, and the clients run repository check-and-fix rounds too (every
//! kind: merges and flattens among the rest), one more once everything
//! settled, which must end `done` before the checks below.
//!
//! Each round starts the binary (sometimes with a failpoint armed to exit the
//! process on the spot at its n-th hit), lets a few client threads issue random
//! operations over HTTP, then kills it with SIGKILL at a random moment unless a
//! failpoint already ended it. At the end a clean restart settles every flow and
//! the test checks, through the API, through `qemu-img` on the backend directory
//! and through Scoria's own invariant check:
//! - every volume, group and snapshot is `available`, `error` or gone (nothing
//!   transitional), every image of the image service `active`, `queued` or
//!   `killed` (none left `saving`);
//! - quota usage equals the volumes, snapshots and groups that exist (count
//!   and gigabytes: a snapshot's size counts, as in Cinder), nothing reserved;
//! - every volume's active image reads, through its chain, as its virtual
//!   size (so no layer a volume stands on was freed), every file on the
//!   backend is a recorded image and every record has its file, no temporary
//!   is left, and Scoria's own invariant check (images, snapshots, chains)
//!   agrees;
//! - attachments (made with a connector and completed, and detached, by the
//!   clients too) are consistent with their volumes, and the export daemons
//!   serve exactly the attachments that want an export (Scoria's invariant
//!   check lists the daemons): none lost, none left over;
//! - backups (full and incremental ones made, restored into new volumes and
//!   deleted by the clients too) are `available` or `error`, counted exactly
//!   by the `backups` and `backup_gigabytes` quotas, and the repository holds
//!   a manifest for exactly the available ones, with every chunk they name.
#![cfg(feature = "failpoints")]
// The test drives the binary under test and qemu-img as processes.
#![allow(clippy::disallowed_methods)]

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::Daemons;

use anyhow::{Context, Result, bail};
use rand::Rng;
use serde_json::{Value, json};

const PASSWORD: &str = "crash-test-password";

/// Backup operations (create, restore, delete) accepted (202).
static BACKUP_OPS: AtomicUsize = AtomicUsize::new(0);
/// Migrations accepted (202).
static MIGRATIONS: AtomicUsize = AtomicUsize::new(0);
/// Repository fix rounds accepted (202).
static FIX_ROUNDS: AtomicUsize = AtomicUsize::new(0);

/// The second backend, beside the default `file` (in `<data>/volumes`).
const OTHER: &str = "other";

/// The configuration of every start: the two backends.
fn config_file(data: &Path) -> PathBuf {
    data.with_extension("toml")
}

fn write_config(data: &Path) -> Result<()> {
    std::fs::write(
        config_file(data),
        format!(
            "[[backend]]\nname = \"file\"\ndriver = \"file\"\npath = \"volumes\"\nmax_chain_depth = 3\n\n\
             [[backend]]\nname = \"{OTHER}\"\ndriver = \"file\"\npath = \"volumes-{OTHER}\"\nmax_chain_depth = 3\n"
        ),
    )?;
    Ok(())
}

/// The directory of a backend's files.
fn backend_dir(data: &Path, backend: &str) -> PathBuf {
    if backend == "file" {
        data.join("volumes")
    } else {
        data.join(format!("volumes-{backend}"))
    }
}

/// Failpoints that end the process on the spot (armed one per round, at a
/// random hit): every durable boundary of the engine and the file driver.
const EXIT_POINTS: &[&str] = &[
    "flow.volume_create.reserve_quota.done",
    "flow.volume_create.create_entry.done",
    "flow.volume_create.commit_quota.done",
    "flow.volume_create.schedule.done",
    "flow.volume_create.create_on_backend.started",
    "flow.volume_create.create_on_backend.ran",
    "flow.volume_create.create_on_backend.done",
    "flow.volume_create.finished",
    "flow.volume_delete.begin_delete.done",
    "flow.volume_delete.delete_on_backend.started",
    "flow.volume_delete.delete_on_backend.ran",
    "flow.volume_delete.finished",
    "flow.volume_extend.begin_extend.done",
    "flow.volume_extend.reserve_quota.done",
    "flow.volume_extend.extend_on_backend.started",
    "flow.volume_extend.extend_on_backend.ran",
    "flow.volume_extend.finished",
    "flow.volume_migrate.begin_migrate.done",
    "flow.volume_migrate.record_target.done",
    "flow.volume_migrate.copy_data.started",
    "flow.volume_migrate.copy_data.ran",
    "flow.volume_migrate.finished",
    "flow.group_delete.begin_delete.done",
    "flow.group_delete.delete_volumes.started",
    "flow.group_delete.delete_volumes.ran",
    "flow.group_delete.finished",
    "flow.backup_create.create_entry.done",
    "flow.backup_create.commit_quota.done",
    "flow.backup_create.copy.started",
    "flow.backup_create.copy.ran",
    "flow.backup_create.finished",
    "flow.backup_restore.begin.done",
    "flow.backup_restore.restore.started",
    "flow.backup_restore.restore.ran",
    "flow.backup_restore.finished",
    "flow.backup_delete.begin_delete.done",
    "flow.backup_delete.delete_data.started",
    "flow.backup_delete.delete_data.ran",
    "flow.snapshot_create.create_entry.done",
    "flow.snapshot_create.commit_quota.done",
    "flow.snapshot_create.freeze.started",
    "flow.snapshot_create.freeze.ran",
    "flow.snapshot_create.finished",
    "flow.snapshot_delete.finished",
    "flow.volume_revert.begin_revert.done",
    "flow.volume_revert.make_overlay.started",
    "flow.volume_revert.make_overlay.ran",
    "flow.volume_revert.finished",
    "flow.volume_upload.begin.done",
    "flow.volume_upload.convert.started",
    "flow.volume_upload.convert.ran",
    "flow.volume_upload.finished",
    "storage.import.temp",
    "storage.export.temp",
    "storage.immutable.after",
    "storage.overlay.temp",
    "storage.overlay.after",
    "reaper.marked",
    "reaper.freed",
    "flow.group_create_from_src.create_group.done",
    "flow.group_create_from_src.start_clones.started",
    "flow.group_create_from_src.start_clones.ran",
    "flow.group_create_from_src.wait_clones.started",
    "flow.group_create_from_src.finished",
    "storage.create.temp",
    "storage.create.after",
    "storage.copy.before",
    "storage.copy.temp",
    "storage.copy.after",
    "storage.delete.after",
    "storage.extend.before",
    "storage.extend.after",
    "flow.attachment_attach.reserve.done",
    "flow.attachment_attach.plan_export.done",
    "flow.attachment_attach.export.started",
    "flow.attachment_attach.export.ran",
    "flow.attachment_attach.finished",
    "flow.attachment_detach.begin_detach.done",
    "flow.attachment_detach.unexport.started",
    "flow.attachment_detach.unexport.ran",
    "flow.attachment_detach.finished",
    "flow.image_merge.begin_merge.done",
    "flow.image_merge.merge_on_backend.started",
    "flow.image_merge.merge_on_backend.ran",
    "flow.image_merge.finished",
    "flow.volume_flatten.begin_flatten.done",
    "flow.volume_flatten.copy.started",
    "flow.volume_flatten.copy.ran",
    "flow.volume_flatten.finished",
    "flow.repository_fix.apply.started",
    "flow.repository_fix.apply.ran",
    "storage.merge.after",
];

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(data: &Path, failpoints: Option<&str>) -> Result<Server> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_scoria"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .arg("--config")
            .arg(config_file(data))
            .env("SCORIA_ADMIN_PASSWORD", PASSWORD)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        // SCORIA_CRASH_LOG=FILE keeps every run's log (for a failure's why).
        if let Some(log) = std::env::var_os("SCORIA_CRASH_LOG") {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)?;
            cmd.stderr(Stdio::from(file));
        }
        if let Some(fp) = failpoints {
            cmd.env("SCORIA_FAILPOINTS", fp);
        }
        let mut child = cmd.spawn().context("spawning scoria")?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ")
                    && !sent
                {
                    let _ = tx.send(addr.trim().to_owned());
                    sent = true;
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                bail!("scoria did not start (it may have hit a failpoint while resuming)");
            }
        };
        Ok(Server {
            child,
            url: format!("http://{addr}"),
        })
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stop(mut self) -> Result<()> {
        // SIGTERM (sent with the `kill` command, to keep the test free of FFI):
        // a graceful stop pauses flows at a step boundary.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        bail!("scoria did not stop on SIGTERM within 60 s")
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(20))
        .build()
}

/// A project-scoped admin token and the project id.
fn login(url: &str) -> Result<(String, String)> {
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"name": "Default"}, "password": PASSWORD}}},
        "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}});
    let resp = agent()
        .post(&format!("{url}/identity/v3/auth/tokens"))
        .send_json(body)?;
    let token = resp
        .header("x-subject-token")
        .context("no X-Subject-Token")?
        .to_owned();
    let v: Value = resp.into_json()?;
    let project = v["token"]["project"]["id"]
        .as_str()
        .context("no project in token")?
        .to_owned();
    Ok((token, project))
}

struct Api {
    agent: ureq::Agent,
    base: String,
    token: String,
}

impl Api {
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> std::result::Result<(u16, Value), String> {
        // Groups need 3.13 (and reset_status 3.20); volumes are the same.
        self.call_at("3.20", method, path, body)
    }

    fn call_at(
        &self,
        version: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> std::result::Result<(u16, Value), String> {
        let req = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("X-Auth-Token", &self.token)
            .set("OpenStack-API-Version", &format!("volume {version}"));
        let res = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        match res {
            Ok(r) => {
                let status = r.status();
                let text = r.into_string().map_err(|e| e.to_string())?;
                Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
            }
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                Ok((code, serde_json::from_str(&text).unwrap_or(Value::Null)))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn volumes(&self) -> Result<Vec<Value>> {
        match self.call("GET", "/volumes/detail", None) {
            Ok((200, v)) => Ok(v["volumes"].as_array().cloned().unwrap_or_default()),
            other => bail!("listing volumes: {other:?}"),
        }
    }

    /// The image service's images (the image API sits beside `/v3`).
    fn images(&self) -> Result<Vec<Value>> {
        let root = self.base.split("/v3/").next().unwrap_or_default();
        let r = self
            .agent
            .get(&format!("{root}/image/v2/images?limit=1000"))
            .set("X-Auth-Token", &self.token)
            .call()?;
        let v: Value = r.into_json()?;
        Ok(v["images"].as_array().cloned().unwrap_or_default())
    }

    fn snapshots(&self) -> Result<Vec<Value>> {
        match self.call("GET", "/snapshots/detail", None) {
            Ok((200, v)) => Ok(v["snapshots"].as_array().cloned().unwrap_or_default()),
            other => bail!("listing snapshots: {other:?}"),
        }
    }

    fn backups(&self) -> Result<Vec<Value>> {
        match self.call("GET", "/backups/detail", None) {
            Ok((200, v)) => Ok(v["backups"].as_array().cloned().unwrap_or_default()),
            other => bail!("listing backups: {other:?}"),
        }
    }

    fn groups(&self) -> Result<Vec<Value>> {
        match self.call("GET", "/groups/detail", None) {
            Ok((200, v)) => Ok(v["groups"].as_array().cloned().unwrap_or_default()),
            other => bail!("listing groups: {other:?}"),
        }
    }
}

/// Random operations until `stop`; counts the requests answered and the clones
/// accepted. Volumes are made alone or in a group of `group_type`, cloned,
/// extended, snapshotted, made from snapshots, reverted and deleted (with
/// their snapshots or not); snapshots are deleted in any order, also while
/// volumes stand on them; groups are made, copied (`create-from-src`), and
/// deleted with their volumes.
#[allow(clippy::too_many_arguments)]
fn client(
    api: Api,
    group_type: String,
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicUsize>,
    clones: Arc<AtomicUsize>,
    taken: Arc<AtomicUsize>,
    image: String,
    imaged: Arc<AtomicUsize>,
    attached: Arc<AtomicUsize>,
) {
    let mut rng = rand::thread_rng();
    while !stop.load(Ordering::Relaxed) {
        let (vols, groups, snaps) = match (api.volumes(), api.groups(), api.snapshots()) {
            (Ok(v), Ok(g), Ok(s)) => (v, g, s),
            _ => return,
        };
        if rng.gen_range(0..8) == 0 {
            // The image operations: a volume from the image (its cache), or a
            // volume uploaded to a new image.
            let available: Vec<&Value> =
                vols.iter().filter(|v| v["status"] == "available").collect();
            let result = if rng.gen_bool(0.5) || available.is_empty() {
                api.call(
                    "POST",
                    "/volumes",
                    Some(json!({"volume": {"imageRef": image, "size": rng.gen_range(1..=2), "name": "crash-from-image"}})),
                )
            } else {
                let v = available[rng.gen_range(0..available.len())];
                api.call(
                    "POST",
                    &format!("/volumes/{}/action", v["id"].as_str().unwrap_or_default()),
                    Some(json!({"os-volume_upload_image": {"image_name": "crash-up", "disk_format": "qcow2"}})),
                )
            };
            match result {
                Ok((code, body)) => {
                    assert!(code < 500 || code == 503, "server error {code}: {body}");
                    ops.fetch_add(1, Ordering::Relaxed);
                    if code == 202 {
                        imaged.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(_) => return,
            }
            continue;
        }
        if rng.gen_range(0..25) == 0 {
            // A repository check-and-fix round among the others' work: every
            // fix of every kind (a 400 while another round runs).
            match api.call("POST", "/scoria-repository/fixes", Some(json!({"fix": {}}))) {
                Ok((code, body)) => {
                    assert!(
                        code == 202 || code == 400 || code == 503,
                        "fix round {code}: {body}"
                    );
                    ops.fetch_add(1, Ordering::Relaxed);
                    if code == 202 {
                        FIX_ROUNDS.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(_) => return,
            }
            continue;
        }
        let ready: Vec<&Value> = snaps
            .iter()
            .filter(|s| s["status"] == "available")
            .collect();
        if rng.gen_range(0..7) == 0 {
            // The backup operations: a full or incremental backup of an
            // available volume, a restore into a new volume, a delete.
            let Ok(backups) = api.backups() else { return };
            let done: Vec<&Value> = backups
                .iter()
                .filter(|b| b["status"] == "available")
                .collect();
            let available: Vec<&Value> =
                vols.iter().filter(|v| v["status"] == "available").collect();
            let pick = rng.gen_range(0..4);
            let result = if pick < 2 || done.is_empty() {
                if available.is_empty() {
                    continue;
                }
                let v = available[rng.gen_range(0..available.len())];
                api.call(
                    "POST",
                    "/backups",
                    Some(json!({"backup": {"volume_id": v["id"], "incremental": pick == 1, "name": "crash-backup"}})),
                )
            } else {
                let b = done[rng.gen_range(0..done.len())];
                let id = b["id"].as_str().unwrap_or_default();
                if pick == 2 {
                    api.call(
                        "POST",
                        &format!("/backups/{id}/restore"),
                        Some(json!({"restore": {}})),
                    )
                } else {
                    api.call("DELETE", &format!("/backups/{id}"), None)
                }
            };
            match result {
                Ok((code, body)) => {
                    assert!(code < 500 || code == 503, "server error {code}: {body}");
                    ops.fetch_add(1, Ordering::Relaxed);
                    if code == 202 {
                        BACKUP_OPS.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(_) => return,
            }
            continue;
        }
        if rng.gen_range(0..6) == 0 {
            // Attach an available volume (with a connector, then complete),
            // or detach an attachment.
            let available: Vec<&Value> =
                vols.iter().filter(|v| v["status"] == "available").collect();
            let result = if rng.gen_range(0..2) == 0 && !available.is_empty() {
                let v = available[rng.gen_range(0..available.len())];
                let r = api.call_at(
                    "3.44",
                    "POST",
                    "/attachments",
                    Some(json!({"attachment": {"volume_uuid": v["id"],
                        "instance_uuid": "0b9c8d7e-6f5a-4b3c-9d2e-1f0a9b8c7d6e",
                        "connector": {"host": "crash-host"}}})),
                );
                match r {
                    Ok((200, body)) => {
                        attached.fetch_add(1, Ordering::Relaxed);
                        let id = body["attachment"]["id"].as_str().unwrap_or_default();
                        api.call_at(
                            "3.44",
                            "POST",
                            &format!("/attachments/{id}/action"),
                            Some(json!({"os-complete": null})),
                        )
                    }
                    other => other,
                }
            } else {
                match api.call_at("3.44", "GET", "/attachments", None) {
                    Ok((200, body)) => {
                        let list = body["attachments"].as_array().cloned().unwrap_or_default();
                        if list.is_empty() {
                            continue;
                        }
                        let a = &list[rng.gen_range(0..list.len())];
                        let id = a["id"].as_str().unwrap_or_default();
                        api.call_at("3.44", "DELETE", &format!("/attachments/{id}"), None)
                    }
                    other => other,
                }
            };
            match result {
                Ok((code, body)) => {
                    assert!(code < 500 || code == 503, "server error {code}: {body}");
                    ops.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => return,
            }
            continue;
        }
        if rng.gen_range(0..9) == 0 {
            // Move an available volume to the other backend.
            let available: Vec<&Value> =
                vols.iter().filter(|v| v["status"] == "available").collect();
            if available.is_empty() {
                continue;
            }
            let v = available[rng.gen_range(0..available.len())];
            let here = v["os-vol-host-attr:host"].as_str().unwrap_or_default();
            let to = if here.starts_with("scoria@file") {
                OTHER
            } else {
                "file"
            };
            match api.call(
                "POST",
                &format!("/volumes/{}/action", v["id"].as_str().unwrap_or_default()),
                Some(json!({"os-migrate_volume": {"host": format!("scoria@{to}"), "lock_volume": rng.gen_bool(0.5)}})),
            ) {
                Ok((code, body)) => {
                    assert!(code < 500 || code == 503, "server error {code}: {body}");
                    ops.fetch_add(1, Ordering::Relaxed);
                    if code == 202 {
                        MIGRATIONS.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(_) => return,
            }
            continue;
        }
        if rng.gen_range(0..3) == 0 {
            // The snapshot operations, a third of the time.
            let pick = rng.gen_range(0..5);
            let snapshotting = pick == 0 || ready.is_empty();
            let result = if snapshotting {
                let available: Vec<&Value> =
                    vols.iter().filter(|v| v["status"] == "available").collect();
                if available.is_empty() {
                    continue;
                }
                let v = available[rng.gen_range(0..available.len())];
                api.call(
                    "POST",
                    "/snapshots",
                    Some(json!({"snapshot": {"volume_id": v["id"], "name": "crash-snap"}})),
                )
            } else {
                let s = ready[rng.gen_range(0..ready.len())];
                let id = s["id"].as_str().unwrap_or_default();
                match pick {
                    1 => api.call("DELETE", &format!("/snapshots/{id}"), None),
                    2 => {
                        let size = s["size"].as_i64().unwrap_or(1) + rng.gen_range(0..=1);
                        api.call(
                            "POST",
                            "/volumes",
                            Some(json!({"volume": {"snapshot_id": id, "size": size, "name": "crash-from-snap"}})),
                        )
                    }
                    3 => api.call_at(
                        "3.40",
                        "POST",
                        &format!(
                            "/volumes/{}/action",
                            s["volume_id"].as_str().unwrap_or_default()
                        ),
                        Some(json!({"revert": {"snapshot_id": id}})),
                    ),
                    _ => api.call(
                        "DELETE",
                        &format!(
                            "/volumes/{}?cascade=true",
                            s["volume_id"].as_str().unwrap_or_default()
                        ),
                        None,
                    ),
                }
            };
            match result {
                Ok((code, body)) => {
                    assert!(code < 500 || code == 503, "server error {code}: {body}");
                    ops.fetch_add(1, Ordering::Relaxed);
                    if snapshotting && code == 202 {
                        taken.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(_) => return,
            }
            continue;
        }
        let available: Vec<&Value> = vols.iter().filter(|v| v["status"] == "available").collect();
        let open: Vec<&Value> = groups
            .iter()
            .filter(|g| g["status"] == "available")
            .collect();
        let pick = rng.gen_range(0..13);
        let cloning = (4..6).contains(&pick) && !available.is_empty();
        let result = if pick == 12 && !open.is_empty() {
            // A copy of a group (refused, 400, when it is empty).
            let g = open[rng.gen_range(0..open.len())];
            api.call(
                "POST",
                "/groups/action",
                Some(
                    json!({"create-from-src": {"source_group_id": g["id"], "name": "crash-copy"}}),
                ),
            )
        } else if pick >= 10 && (pick != 11 || open.is_empty()) {
            api.call(
                "POST",
                "/groups",
                Some(
                    json!({"group": {"group_type": group_type, "volume_types": ["__DEFAULT__"],
                    "name": "crash"}}),
                ),
            )
        } else if pick == 11 {
            let g = open[rng.gen_range(0..open.len())];
            let id = g["id"].as_str().unwrap_or_default();
            api.call(
                "POST",
                &format!("/groups/{id}/action"),
                Some(json!({"delete": {"delete-volumes": true}})),
            )
        } else if pick < 4 || available.is_empty() {
            let size = rng.gen_range(1..=3);
            let mut volume = json!({"size": size, "name": "crash"});
            if pick < 2 && !open.is_empty() {
                volume["group_id"] = open[rng.gen_range(0..open.len())]["id"].clone();
            }
            api.call("POST", "/volumes", Some(json!({ "volume": volume })))
        } else {
            let v = available[rng.gen_range(0..available.len())];
            let id = v["id"].as_str().unwrap_or_default();
            if pick < 6 {
                // A clone, sometimes bigger than its source; the source may
                // have changed since the list (then 400 or 404).
                let size = v["size"].as_i64().unwrap_or(1) + rng.gen_range(0..=1);
                api.call(
                    "POST",
                    "/volumes",
                    Some(json!({"volume": {"source_volid": id, "size": size, "name": "crash-clone"}})),
                )
            } else if pick < 8 {
                let size = v["size"].as_i64().unwrap_or(1) + 1;
                api.call(
                    "POST",
                    &format!("/volumes/{id}/action"),
                    Some(json!({"os-extend": {"new_size": size}})),
                )
            } else {
                api.call("DELETE", &format!("/volumes/{id}"), None)
            }
        };
        match result {
            Ok((code, body)) => {
                assert!(code < 500 || code == 503, "server error {code}: {body}");
                ops.fetch_add(1, Ordering::Relaxed);
                if cloning && code == 202 {
                    clones.fetch_add(1, Ordering::Relaxed);
                }
            }
            // The server died under us: that is the point.
            Err(_) => return,
        }
    }
}

/// Upload a 64 MiB qcow2 image holding a little data; returns its id.
fn upload_image(url: &str, token: &str, scratch: &Path) -> Result<String> {
    let file = scratch.join("image.qcow2");
    let status = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&file)
        .arg("64M")
        .status()?;
    anyhow::ensure!(status.success(), "qemu-img create");
    let status = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "write -P 0x5a 0 1M"])
        .arg(&file)
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "qemu-io write");
    let a = agent();
    let created: Value = a
        .post(&format!("{url}/image/v2/images"))
        .set("X-Auth-Token", token)
        .send_json(
            json!({"name": "crash-image", "disk_format": "qcow2", "container_format": "bare"}),
        )?
        .into_json()?;
    let id = created["id"].as_str().context("image id")?.to_owned();
    a.put(&format!("{url}/image/v2/images/{id}/file"))
        .set("X-Auth-Token", token)
        .set("Content-Type", "application/octet-stream")
        .send_bytes(&std::fs::read(&file)?)?;
    Ok(id)
}

fn qemu_virtual_size(path: &Path) -> Result<u64> {
    let out = Command::new("qemu-img")
        .args(["info", "-U", "--output=json", "-f", "qcow2"])
        .arg(path)
        .output()
        .context("running qemu-img")?;
    if !out.status.success() {
        bail!(
            "qemu-img info {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout)?;
    v["virtual-size"].as_u64().context("no virtual-size")
}

#[test]
fn kill_nine_at_random_moments_loses_nothing_and_leaves_nothing_stuck() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data: PathBuf = dir.path().join("data");
    let rounds = 30;
    let mut rng = rand::thread_rng();
    let (mut kills, mut exits) = (0, 0);
    let ops = Arc::new(AtomicUsize::new(0));
    let clones = Arc::new(AtomicUsize::new(0));
    let taken = Arc::new(AtomicUsize::new(0));
    let imaged = Arc::new(AtomicUsize::new(0));
    let attached = Arc::new(AtomicUsize::new(0));
    let _daemons = Daemons(data.clone());
    write_config(&data)?;
    let exit_seen: Arc<Mutex<BTreeMap<String, usize>>> = Default::default();

    // First start: raise the quota so the run is limited by time, not quota,
    // and make the group type the clients' groups are of.
    let (group_type, image);
    {
        let s = Server::start(&data, None)?;
        let (token, project) = login(&s.url)?;
        let api = Api {
            agent: agent(),
            base: format!("{}/v3/{project}", s.url),
            token,
        };
        let (code, body) = api
            .call(
                "PUT",
                &format!("/os-quota-sets/{project}"),
                Some(
                    json!({"quota_set": {"volumes": 10000, "gigabytes": 100000, "groups": 10000, "snapshots": 10000, "backups": 10000, "backup_gigabytes": 100000}}),
                ),
            )
            .map_err(anyhow::Error::msg)?;
        assert_eq!(code, 200, "{body}");
        let (code, body) = api
            .call(
                "POST",
                "/group_types",
                Some(json!({"group_type": {"name": "crash"}})),
            )
            .map_err(anyhow::Error::msg)?;
        assert_eq!(code, 202, "{body}");
        group_type = body["group_type"]["id"]
            .as_str()
            .context("group type id")?
            .to_owned();
        image = upload_image(&s.url, &api.token, dir.path())?;
        s.kill();
    }

    // At least `rounds` rounds, and on until enough requests were served (a
    // loaded machine serves fewer per round), within a bound.
    for round in 0.. {
        if round >= rounds && (ops.load(Ordering::Relaxed) >= 300 || round >= 150) {
            break;
        }
        // Every other round arms one exit failpoint at a random hit.
        let armed = (round % 2 == 1).then(|| {
            let name = EXIT_POINTS[rng.gen_range(0..EXIT_POINTS.len())];
            (name.to_owned(), rng.gen_range(1..6))
        });
        let spec = armed.as_ref().map(|(n, at)| format!("{n}=exit@{at}"));
        let server = match Server::start(&data, spec.as_deref()) {
            Ok(s) => s,
            Err(e) if armed.is_some() => {
                // Resuming left-over flows reached the failpoint before the
                // listener announced itself: that is a crash point too.
                exits += 1;
                eprintln!("round {round}: exited while starting ({e})");
                continue;
            }
            Err(e) => return Err(e),
        };
        let (token, project) = match login(&server.url) {
            Ok(t) => t,
            Err(e) => {
                server.kill();
                if armed.is_some() {
                    exits += 1;
                    continue;
                }
                return Err(e);
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for _ in 0..4 {
            let api = Api {
                agent: agent(),
                base: format!("{}/v3/{project}", server.url),
                token: token.clone(),
            };
            let (stop, ops, clones, taken, gt, img, imaged, att) = (
                stop.clone(),
                ops.clone(),
                clones.clone(),
                taken.clone(),
                group_type.clone(),
                image.clone(),
                imaged.clone(),
                attached.clone(),
            );
            threads.push(std::thread::spawn(move || {
                client(api, gt, stop, ops, clones, taken, img, imaged, att)
            }));
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(100..700)));
        let mut server = server;
        let exited = server.child.try_wait()?.is_some();
        if exited {
            exits += 1;
            if let Some((name, _)) = &armed {
                *exit_seen.lock().unwrap().entry(name.clone()).or_default() += 1;
            }
        } else {
            kills += 1;
        }
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join()
                .map_err(|_| anyhow::anyhow!("client thread panicked"))?;
        }
    }

    // Last start: no failpoints; let every resumed flow settle.
    let server = Server::start(&data, None)?;
    let (token, project) = login(&server.url)?;
    let api = Api {
        agent: agent(),
        base: format!("{}/v3/{project}", server.url),
        token,
    };
    type Settled = (Vec<Value>, Vec<Value>, Vec<Value>, Vec<Value>);
    let settle = || -> Result<Settled> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (vols, groups, snaps, backups) = (
                api.volumes()?,
                api.groups()?,
                api.snapshots()?,
                api.backups()?,
            );
            let busy = vols
                .iter()
                .chain(&groups)
                .chain(&snaps)
                .chain(&backups)
                .filter(|v| {
                    !matches!(
                        v["status"].as_str(),
                        Some("available" | "error" | "in-use" | "reserved" | "error_restoring")
                    )
                })
                .count();
            if busy == 0 {
                return Ok((vols, groups, snaps, backups));
            }
            if Instant::now() > deadline {
                bail!(
                    "{busy} volumes, groups, snapshots or backups still transitional: {vols:?} {groups:?} {snaps:?} {backups:?}"
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    settle()?;
    // A last check-and-fix round once everything settled: it must end
    // `done`, and what follows must still hold after it.
    // (A round resumed from before the kill may still run: a 400 until then.)
    let deadline = Instant::now() + Duration::from_secs(300);
    let run = loop {
        let (code, body) = api
            .call("POST", "/scoria-repository/fixes", Some(json!({"fix": {}})))
            .map_err(anyhow::Error::msg)?;
        if code == 202 {
            break body["fix"]["id"].as_str().context("fix run id")?.to_owned();
        }
        assert_eq!(code, 400, "{body}");
        if Instant::now() > deadline {
            bail!("a fix round never ended: {body}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let last_round = loop {
        let (code, body) = api
            .call("GET", &format!("/scoria-repository/fixes/{run}"), None)
            .map_err(anyhow::Error::msg)?;
        assert_eq!(code, 200, "{body}");
        if body["fix"]["status"] != "running" {
            break body["fix"].clone();
        }
        if Instant::now() > deadline {
            bail!("the last fix round did not end: {body}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(last_round["status"], "done", "{last_round}");
    let mut last_fixes: BTreeMap<String, usize> = BTreeMap::new();
    for a in last_round["outcome"]["applied"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = format!(
            "{} {}",
            a["problem"].as_str().unwrap_or("?"),
            a["outcome"].as_str().unwrap_or("?")
        );
        *last_fixes.entry(key).or_default() += 1;
        assert_ne!(a["outcome"], "failed", "the last round: {a}");
    }
    let (vols, groups, snaps, backups) = settle()?;

    // No image of the image service is left `saving`.
    let images = loop {
        let images = api.images()?;
        if images.iter().all(|i| i["status"] != "saving") {
            break images;
        }
        if Instant::now() > deadline {
            bail!("images left saving: {images:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };

    // Quota usage equals what exists.
    let (code, q) = api
        .call("GET", &format!("/os-quota-sets/{project}?usage=true"), None)
        .map_err(anyhow::Error::msg)?;
    assert_eq!(code, 200);
    let count = vols.len() as i64;
    let gigabytes: i64 = vols
        .iter()
        .chain(&snaps)
        .map(|v| v["size"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(q["quota_set"]["volumes"]["in_use"], count, "{q}");
    assert_eq!(q["quota_set"]["snapshots"]["in_use"], snaps.len(), "{q}");
    assert_eq!(q["quota_set"]["snapshots"]["reserved"], 0, "{q}");
    assert_eq!(q["quota_set"]["gigabytes"]["in_use"], gigabytes, "{q}");
    assert_eq!(q["quota_set"]["volumes"]["reserved"], 0, "{q}");
    assert_eq!(q["quota_set"]["gigabytes"]["reserved"], 0, "{q}");
    assert_eq!(q["quota_set"]["groups"]["in_use"], groups.len(), "{q}");
    assert_eq!(q["quota_set"]["backups"]["in_use"], backups.len(), "{q}");
    assert_eq!(q["quota_set"]["backups"]["reserved"], 0, "{q}");
    let backup_gb: i64 = backups
        .iter()
        .map(|b| b["size"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(
        q["quota_set"]["backup_gigabytes"]["in_use"], backup_gb,
        "{q}"
    );
    // The repository holds a manifest for exactly the available backups,
    // and every chunk a manifest names.
    let repo = data.join("backups");
    let mut manifests: Vec<String> = std::fs::read_dir(repo.join("manifests"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .map(str::to_owned)
        })
        .collect();
    manifests.sort();
    let mut wanted: Vec<String> = backups
        .iter()
        .filter(|b| b["status"] == "available")
        .map(|b| b["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    wanted.sort();
    assert_eq!(manifests, wanted, "manifests vs available backups");
    for id in &manifests {
        let m: Value = serde_json::from_slice(&std::fs::read(
            repo.join("manifests").join(format!("{id}.json")),
        )?)?;
        for h in m["chunks"].as_array().cloned().unwrap_or_default() {
            if let Some(h) = h.as_str() {
                assert!(
                    repo.join("chunks").join(&h[..2]).join(h).exists(),
                    "backup {id} lacks chunk {h}"
                );
            }
        }
    }
    let members = vols.iter().filter(|v| !v["group_id"].is_null()).count();
    // Every attachment's volume shows it (once completed), and an in-use
    // volume has its attachment listed.
    let (code, atts) = api
        .call_at("3.44", "GET", "/attachments/detail", None)
        .map_err(anyhow::Error::msg)?;
    assert_eq!(code, 200, "{atts}");
    let atts = atts["attachments"].as_array().cloned().unwrap_or_default();
    for v in vols.iter().filter(|v| v["status"] == "in-use") {
        assert!(
            atts.iter()
                .any(|a| a["volume_id"] == v["id"] && a["status"] == "attached"),
            "in-use volume {} has no attached attachment: {atts:?}",
            v["id"]
        );
    }
    server.stop()?;

    // Scoria's own invariant check agrees (flows, reservations, images), and
    // the image records say where each volume's data is.
    let rt = tokio::runtime::Runtime::new()?;
    let (bad, names, mut recorded) = rt.block_on(async {
        let mut config = scoria_core::Config::with_data_dir(data.clone());
        config.admin_password = Some(PASSWORD.into());
        let mut other = config.backends[0].clone();
        other.name = OTHER.into();
        other.driver = scoria_core::DriverConfig::File {
            path: backend_dir(&data, OTHER),
            fsync: true,
        };
        config.backends.push(other);
        let app = scoria_core::App::open(config, scoria_failpoints::Failpoints::new())
            .await
            .map_err(|e| anyhow::anyhow!(e.chain()))?;
        // Settled includes the reaper's work: images nothing uses are freed.
        scoria_core::reaper::reap(&app.env)
            .await
            .map_err(|e| anyhow::anyhow!(e.chain()))?;
        let bad = scoria_core::invariants::check(&app.env)
            .await
            .map_err(|e| anyhow::anyhow!(e.chain()))?;
        let mut names = BTreeMap::new();
        let mut recorded = Vec::new();
        {
            let mut conn = app.store().read().await.map_err(anyhow::Error::msg)?;
            for i in scoria_store::images::image_list_all(&mut conn)
                .await
                .map_err(anyhow::Error::msg)?
            {
                recorded.push(format!("{}/{}", i.backend, i.name));
            }
            for v in scoria_store::volumes::volume_list_all(&mut conn)
                .await
                .map_err(anyhow::Error::msg)?
            {
                if let Some(image) = v.image_id {
                    let i = scoria_store::images::image_get(&mut conn, image)
                        .await
                        .map_err(anyhow::Error::msg)?
                        .context("a volume's image record")?;
                    names.insert(v.id.to_string(), format!("{}/{}", i.backend, i.name));
                }
            }
        }
        app.shutdown(Duration::from_secs(5)).await;
        Ok::<_, anyhow::Error>((bad, names, recorded))
    })?;

    // Independently of Scoria's own check: every volume's active image reads
    // as its size (qemu-img says so, through its chain), and the backend holds
    // the recorded images and nothing else (the layers under volumes are
    // images too, recorded).
    // Files as `<backend>/<name>`, on both backends.
    let mut files: Vec<String> = Vec::new();
    for b in ["file", OTHER] {
        let dir = backend_dir(&data, b);
        if !dir.exists() {
            continue;
        }
        for e in std::fs::read_dir(&dir)? {
            files.push(format!("{b}/{}", e?.file_name().to_string_lossy()));
        }
    }
    files.sort();
    // No migration is left running, and each volume's file is on its host.
    for v in &vols {
        assert_ne!(v["migration_status"], "migrating", "{v}");
        assert_ne!(v["migration_status"], "starting", "{v}");
        assert_ne!(v["migration_status"], "completing", "{v}");
    }
    let mut expected: Vec<String> = Vec::new();
    let mut errors = 0;
    for v in &vols {
        let id = v["id"].as_str().context("id")?;
        let name = names.get(id);
        if v["status"] == "error" {
            // A failed create may have removed its image; if it is there it is
            // the volume's, and deleting the volume removes it.
            errors += 1;
            if let Some(name) = name.filter(|n| files.contains(n)) {
                expected.push(name.clone());
            }
            continue;
        }
        let name = name.with_context(|| format!("volume {id} has no image"))?;
        let host = v["os-vol-host-attr:host"].as_str().unwrap_or_default();
        let (b, file) = name.split_once('/').context("backend/name")?;
        assert_eq!(
            host,
            format!("scoria@{b}#{b}"),
            "volume {id}'s image is on its host"
        );
        let size = qemu_virtual_size(&backend_dir(&data, b).join(file))
            .with_context(|| format!("volume {id}"))?;
        assert_eq!(size, v["size"].as_u64().unwrap_or(0) << 30, "image of {id}");
        expected.push(name.clone());
    }
    expected.sort();
    recorded.sort();
    assert!(
        expected.iter().all(|n| recorded.contains(n)),
        "a volume's image has no record"
    );
    assert_eq!(files, recorded, "images on the backend vs image records");
    assert!(bad.is_empty(), "{bad:?}");

    println!(
        "crash test: {} crash points exercised ({kills} kill -9, {exits} failpoint exits) over {} requests \
         ({} clones, {} snapshots, {} image operations, {} attachments, {} backup operations, {} migrations, {} fix rounds accepted; {} images, {} attachments, {} backups at the end); {} volumes checked ({errors} in error, {members} in {} groups), {} snapshots left; \
         last fix round {last_fixes:?}; \
         exit failpoints reached: {:?}",
        kills + exits,
        ops.load(Ordering::Relaxed),
        clones.load(Ordering::Relaxed),
        taken.load(Ordering::Relaxed),
        imaged.load(Ordering::Relaxed),
        attached.load(Ordering::Relaxed),
        BACKUP_OPS.load(Ordering::Relaxed),
        MIGRATIONS.load(Ordering::Relaxed),
        FIX_ROUNDS.load(Ordering::Relaxed),
        images.len(),
        atts.len(),
        backups.len(),
        vols.len(),
        groups.len(),
        snaps.len(),
        exit_seen.lock().unwrap()
    );
    assert!(
        ops.load(Ordering::Relaxed) >= 200,
        "too few operations to mean anything"
    );
    assert!(!vols.is_empty());
    assert!(
        clones.load(Ordering::Relaxed) > 0,
        "no clone was made: the copy path went untested"
    );
    assert!(
        taken.load(Ordering::Relaxed) > 0,
        "no snapshot was taken: the snapshot path went untested"
    );
    assert!(
        MIGRATIONS.load(Ordering::Relaxed) > 0,
        "no migration was accepted: the migration path went untested"
    );
    assert!(
        FIX_ROUNDS.load(Ordering::Relaxed) > 0,
        "no fix round was accepted: fixing beside the clients went untested"
    );
    Ok(())
}
