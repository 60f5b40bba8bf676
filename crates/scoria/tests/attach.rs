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

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Daemons, qsd_pids};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

const PASSWORD: &str = "attach-test-password";

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(data: &Path) -> Result<Server> {
        let config = data.join("scoria-test.toml");
        if !config.exists() {
            std::fs::create_dir_all(data)?;
            std::fs::write(
                &config,
                format!(
                    "data_dir = {:?}\n[exports]\nreconcile_period_ms = 300\n",
                    data.to_string_lossy()
                ),
            )?;
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_scoria"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .env("SCORIA_ADMIN_PASSWORD", PASSWORD)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning scoria")?;
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
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .context("scoria did not start")?;
        Ok(Server {
            child,
            url: format!("http://{addr}"),
        })
    }

    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Api {
    agent: ureq::Agent,
    base: String,
    token: String,
}

impl Api {
    fn login(url: &str) -> Result<Api> {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .build();
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"name": "Default"}, "password": PASSWORD}}},
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}});
        let resp = agent
            .post(&format!("{url}/identity/v3/auth/tokens"))
            .send_json(body)?;
        let token = resp.header("x-subject-token").context("token")?.to_owned();
        let v: Value = resp.into_json()?;
        let project = v["token"]["project"]["id"].as_str().context("project")?;
        Ok(Api {
            agent,
            base: format!("{url}/v3/{project}"),
            token,
        })
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
        let req = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("X-Auth-Token", &self.token)
            .set("OpenStack-API-Version", "volume 3.54");
        let res = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        let (status, r) = match res {
            Ok(r) => (r.status(), r),
            Err(ureq::Error::Status(code, r)) => (code, r),
            Err(e) => bail!("{method} {path}: {e}"),
        };
        let text = r.into_string()?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    fn ok(&self, method: &str, path: &str, body: Option<Value>, want: u16) -> Result<Value> {
        let (status, v) = self.call(method, path, body)?;
        ensure!(status == want, "{method} {path}: {status} {v}");
        Ok(v)
    }

    fn volume(&self, id: &str) -> Result<Value> {
        Ok(self.ok("GET", &format!("/volumes/{id}"), None, 200)?["volume"].clone())
    }

    fn create_volume(&self, size: u64) -> Result<String> {
        self.create_volume_with(json!({"volume": {"size": size}}))
    }

    /// Upload `file` to the image service as a qcow2 image; its id.
    fn upload_image(&self, file: &Path) -> Result<String> {
        let root = self.base.split("/v3/").next().context("url")?;
        let created: Value = self
            .agent
            .post(&format!("{root}/image/v2/images"))
            .set("X-Auth-Token", &self.token)
            .send_json(json!({"name": "boot", "disk_format": "qcow2", "container_format": "bare"}))?
            .into_json()?;
        let id = created["id"].as_str().context("image id")?.to_owned();
        self.agent
            .put(&format!("{root}/image/v2/images/{id}/file"))
            .set("X-Auth-Token", &self.token)
            .set("Content-Type", "application/octet-stream")
            .send_bytes(&std::fs::read(file)?)?;
        Ok(id)
    }

    fn create_volume_with(&self, body: Value) -> Result<String> {
        let v = self.ok("POST", "/volumes", Some(body), 202)?;
        let id = v["volume"]["id"].as_str().context("id")?.to_owned();
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.volume(&id)?["status"] != "available" {
            ensure!(
                Instant::now() < deadline,
                "volume {id} never became available"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(id)
    }

    /// Attach `volume` with a connector and complete it; the attachment.
    fn attach(&self, volume: &str, mode: &str) -> Result<Value> {
        let a = self.ok(
            "POST",
            "/attachments",
            Some(json!({"attachment": {
                "volume_uuid": volume,
                "instance_uuid": "5a8d4f1e-0c2b-4f69-9e6a-3c1f2b7d8e90",
                "connector": {"host": "test-host", "platform": "x86_64"},
                "mode": mode}})),
            200,
        )?["attachment"]
            .clone();
        let id = a["id"].as_str().context("attachment id")?;
        let (status, body) = self.call(
            "POST",
            &format!("/attachments/{id}/action"),
            Some(json!({"os-complete": null})),
        )?;
        ensure!(status == 204, "os-complete: {status} {body}");
        Ok(a)
    }

    fn detach(&self, attachment: &Value) -> Result<()> {
        let id = attachment["id"].as_str().context("id")?;
        self.ok("DELETE", &format!("/attachments/{id}"), None, 200)?;
        Ok(())
    }
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn boot_image() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("SCORIA_BOOT_IMAGE").map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/images/boot.qcow2")),
        Some(PathBuf::from("/work/shared/images/boot.qcow2")),
    ];
    candidates.into_iter().flatten().find(|p| p.exists())
}

/// A client's view of an attachment's export.
struct Client {
    host: String,
    port: u16,
    export: String,
    /// The directory of the client's `keys.psk`, and the identity.
    psk: Option<(PathBuf, String)>,
}

impl Client {
    fn of(attachment: &Value, keys_dir: &Path) -> Result<Client> {
        let ci = &attachment["connection_info"];
        ensure!(ci["driver_volume_type"] == "nbd", "connection_info: {ci}");
        ensure!(ci["format"] == "raw" && ci["tls"] == true, "{ci}");
        let identity = ci["psk_identity"].as_str().context("psk_identity")?;
        let key = ci["psk_key"].as_str().context("psk_key")?;
        std::fs::create_dir_all(keys_dir)?;
        std::fs::write(keys_dir.join("keys.psk"), format!("{identity}:{key}\n"))?;
        Ok(Client {
            host: ci["host"].as_str().context("host")?.to_owned(),
            port: u16::try_from(ci["port"].as_u64().context("port")?)?,
            export: ci["export_name"]
                .as_str()
                .context("export_name")?
                .to_owned(),
            psk: Some((keys_dir.to_owned(), identity.to_owned())),
        })
    }

    fn without_key(&self) -> Client {
        Client {
            host: self.host.clone(),
            port: self.port,
            export: self.export.clone(),
            psk: None,
        }
    }

    fn with_key_of(&self, other: &Client) -> Client {
        Client {
            host: self.host.clone(),
            port: self.port,
            export: self.export.clone(),
            psk: other.psk.clone(),
        }
    }

    fn object(&self) -> Vec<String> {
        match &self.psk {
            Some((dir, user)) => vec![
                "--object".into(),
                format!(
                    "tls-creds-psk,id=tls0,endpoint=client,dir={},username={user}",
                    dir.display()
                ),
            ],
            None => vec![],
        }
    }

    fn opts(&self) -> String {
        let mut o = format!(
            "driver=raw,file.driver=nbd,file.host={},file.port={},file.export={}",
            self.host, self.port, self.export
        );
        if self.psk.is_some() {
            o.push_str(",file.tls-creds=tls0");
        }
        o
    }

    /// Whether `qemu-img info` can open the export.
    fn can_read(&self) -> bool {
        Command::new("qemu-img")
            .arg("info")
            .args(self.object())
            .args(["--image-opts", &self.opts()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Write `src` (of `format`) through the export.
    fn write_from(&self, src: &Path, format: &str) -> Result<()> {
        let out = Command::new("qemu-img")
            .args(["convert", "-n", "-f", format])
            .args(self.object())
            .arg("--target-image-opts")
            .arg(src)
            .arg(self.opts())
            .output()?;
        ensure!(
            out.status.success(),
            "qemu-img convert: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// Write `src` (raw) with nbdcopy, over TLS-PSK.
    fn nbdcopy_from(&self, src: &Path) -> Result<()> {
        let (dir, user) = self.psk.as_ref().context("a key")?;
        let uri = format!(
            "nbds://{user}@{}:{}/{}?tls-psk-file={}",
            self.host,
            self.port,
            self.export,
            dir.join("keys.psk").display()
        );
        let out = Command::new("nbdcopy")
            .arg("--destination-is-zero")
            .arg(src)
            .arg(&uri)
            .output()?;
        ensure!(
            out.status.success(),
            "nbdcopy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// Read the whole export into `dst` (raw).
    fn read_to(&self, dst: &Path) -> Result<()> {
        let out = Command::new("qemu-img")
            .arg("convert")
            .args(self.object())
            .args(["-O", "raw", "--image-opts", &self.opts()])
            .arg(dst)
            .output()?;
        ensure!(
            out.status.success(),
            "qemu-img convert (read): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// Boot a guest from the export; the boot counter it reports.
    fn boot(&self, log: &Path) -> Result<u64> {
        let (dir, user) = self.psk.as_ref().context("a key")?;
        let mut child = Command::new("qemu-system-x86_64")
            .args(["-accel", "tcg", "-machine", "pc", "-m", "256", "-smp", "1"])
            .args(["-nodefaults", "-no-user-config", "-display", "none"])
            .args(["-monitor", "none", "-serial", "stdio", "-no-reboot"])
            .arg("-object")
            .arg(format!(
                "tls-creds-psk,id=bootpsk0,endpoint=client,dir={},username={user}",
                dir.display()
            ))
            .arg("-drive")
            .arg(format!(
                "file=nbd://{}:{}/{},format=raw,if=virtio,cache=writeback,file.tls-creds=bootpsk0",
                self.host, self.port, self.export
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("qemu-system-x86_64")?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut text = String::new();
        let mut booted = false;
        let mut counter = None;
        let deadline = Instant::now() + Duration::from_secs(180);
        while Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let line = line.trim_end_matches('\r').to_owned();
                    text.push_str(&line);
                    text.push('\n');
                    if line.starts_with("BOOT-FROM-VOLUME-OK") {
                        booted = true;
                    }
                    if line.starts_with("BFV-WRITE-OK")
                        && let Some(n) = line.split("counter=").nth(1)
                    {
                        counter = n.split_whitespace().next().and_then(|n| n.parse().ok());
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            }
            if booted && counter.is_some() && child.try_wait()?.is_some() {
                break;
            }
        }
        if child.try_wait()?.is_none() {
            let _ = child.kill();
        }
        let status = child.wait()?;
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        std::fs::write(log, format!("{text}\n--- stderr ---\n{err}"))?;
        ensure!(
            booted,
            "no BOOT-FROM-VOLUME-OK (exit {status}); serial:\n{text}\n{err}"
        );
        counter.with_context(|| format!("no BFV-WRITE-OK counter; serial:\n{text}"))
    }
}

/// `len` bytes of a known pattern (an LCG), in a file.
fn pattern_file(path: &Path, len: usize) -> Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..len / buf.len() {
        for chunk in buf.chunks_mut(8) {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&buf)?;
    }
    f.flush()?;
    Ok(())
}

fn same_prefix(a: &Path, b: &Path, len: u64) -> Result<bool> {
    let mut fa = std::fs::File::open(a)?.take(len);
    let mut fb = std::fs::File::open(b)?.take(len);
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let na = fa.read(&mut ba)?;
        let nb = fb.read(&mut bb)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

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
