//! A real `scoria serve` and the clients of its attachments' exports, for
//! the tests that drive the binary (`attach.rs`, `attach_live.rs`): the
//! server on a fresh data directory, an admin's API session, and an NBD
//! client (`qemu-img`, `qemu-io`, `nbdcopy`, `qemu-system-x86_64`) of one
//! attachment's `connection_info` over TLS-PSK.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

pub const PASSWORD: &str = "attach-test-password";

pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Server {
    pub fn start(data: &Path) -> Result<Server> {
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
            .env(
                "RUST_LOG",
                std::env::var("SCORIA_TEST_RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            // SCORIA_TEST_LOG=FILE keeps the server's log, for debugging.
            .stderr(match std::env::var_os("SCORIA_TEST_LOG") {
                Some(path) => Stdio::from(std::fs::File::create(path)?),
                None => Stdio::null(),
            })
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

    pub fn kill9(mut self) {
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

pub struct Api {
    pub agent: ureq::Agent,
    pub base: String,
    pub token: String,
}

impl Api {
    pub fn login(url: &str) -> Result<Api> {
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

    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
        self.call_at("3.54", method, path, body)
    }

    /// [`Api::call`] at microversion `version`.
    pub fn call_at(
        &self,
        version: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let req = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("X-Auth-Token", &self.token)
            .set("OpenStack-API-Version", &format!("volume {version}"));
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

    pub fn ok(&self, method: &str, path: &str, body: Option<Value>, want: u16) -> Result<Value> {
        let (status, v) = self.call(method, path, body)?;
        ensure!(status == want, "{method} {path}: {status} {v}");
        Ok(v)
    }

    pub fn volume(&self, id: &str) -> Result<Value> {
        Ok(self.ok("GET", &format!("/volumes/{id}"), None, 200)?["volume"].clone())
    }

    pub fn create_volume(&self, size: u64) -> Result<String> {
        self.create_volume_with(json!({"volume": {"size": size}}))
    }

    /// Upload `file` to the image service as a qcow2 image; its id.
    pub fn upload_image(&self, file: &Path) -> Result<String> {
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

    pub fn create_volume_with(&self, body: Value) -> Result<String> {
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
    pub fn attach(&self, volume: &str, mode: &str) -> Result<Value> {
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

    pub fn detach(&self, attachment: &Value) -> Result<()> {
        let id = attachment["id"].as_str().context("id")?;
        self.ok("DELETE", &format!("/attachments/{id}"), None, 200)?;
        Ok(())
    }
}

pub fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

pub fn boot_image() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("SCORIA_BOOT_IMAGE").map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/images/boot.qcow2")),
        Some(PathBuf::from("/work/shared/images/boot.qcow2")),
    ];
    candidates.into_iter().flatten().find(|p| p.exists())
}

/// A client's view of an attachment's export.
pub struct Client {
    pub host: String,
    pub port: u16,
    pub export: String,
    /// The directory of the client's `keys.psk`, and the identity.
    pub psk: Option<(PathBuf, String)>,
}

impl Client {
    pub fn of(attachment: &Value, keys_dir: &Path) -> Result<Client> {
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

    pub fn without_key(&self) -> Client {
        Client {
            host: self.host.clone(),
            port: self.port,
            export: self.export.clone(),
            psk: None,
        }
    }

    pub fn with_key_of(&self, other: &Client) -> Client {
        Client {
            host: self.host.clone(),
            port: self.port,
            export: self.export.clone(),
            psk: other.psk.clone(),
        }
    }

    pub fn object(&self) -> Vec<String> {
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

    pub fn opts(&self) -> String {
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
    pub fn can_read(&self) -> bool {
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
    pub fn write_from(&self, src: &Path, format: &str) -> Result<()> {
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
    pub fn nbdcopy_from(&self, src: &Path) -> Result<()> {
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
    pub fn read_to(&self, dst: &Path) -> Result<()> {
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
    pub fn boot(&self, log: &Path) -> Result<u64> {
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
pub fn pattern_file(path: &Path, len: usize) -> Result<()> {
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

pub fn same_prefix(a: &Path, b: &Path, len: u64) -> Result<bool> {
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

pub fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
