//! An upload interrupted by the end of the process: a real `scoria serve` exits
//! on the spot (a failpoint armed with `exit`) at each durable boundary of an
//! upload — while the data is being written, after the file is complete under
//! its temporary name, after it was renamed into place but before the image
//! is `active` — or is killed with SIGKILL mid-stream. After a restart the
//! image is `queued` again, holds no quota, has no file and no temporary in
//! the image store, the invariants hold, and it can be uploaded again.
#![cfg(feature = "failpoints")]
// The test drives the binary under test as a process.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

const PASSWORD: &str = "glance-crash-test-password";

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(data: &Path, failpoints: Option<&str>) -> Result<Server> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_scoria"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .env("SCORIA_ADMIN_PASSWORD", PASSWORD)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
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
        let Ok(addr) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            bail!("scoria did not start");
        };
        Ok(Server {
            child,
            url: format!("http://{addr}"),
        })
    }

    /// Wait for the process to end by itself (a failpoint's exit).
    fn wait_exit(mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        bail!("scoria did not exit at its failpoint")
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(20))
        .build()
}

fn login(url: &str) -> Result<String> {
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"name": "Default"}, "password": PASSWORD}}},
        "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}});
    let resp = agent()
        .post(&format!("{url}/identity/v3/auth/tokens"))
        .send_json(body)?;
    Ok(resp
        .header("x-subject-token")
        .context("no X-Subject-Token")?
        .to_owned())
}

fn image(url: &str, token: &str, id: &str) -> Result<Value> {
    let r = agent()
        .get(&format!("{url}/image/v2/images/{id}"))
        .set("X-Auth-Token", token)
        .call()?;
    Ok(r.into_json()?)
}

/// A body that sends `first` bytes, then stalls until the server is gone.
struct Stalling {
    left: usize,
}

impl Read for Stalling {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            std::thread::sleep(Duration::from_millis(50));
            return Err(std::io::Error::other("stalled on purpose"));
        }
        let n = buf.len().min(self.left);
        buf[..n].fill(7);
        self.left -= n;
        Ok(n)
    }
}

fn upload(url: &str, token: &str, id: &str, body: impl Read) -> Result<u16, String> {
    match agent()
        .put(&format!("{url}/image/v2/images/{id}/file"))
        .set("X-Auth-Token", token)
        .set("Content-Type", "application/octet-stream")
        .send(body)
    {
        Ok(r) => Ok(r.status()),
        Err(ureq::Error::Status(code, _)) => Ok(code),
        Err(e) => Err(e.to_string()),
    }
}

fn files(data: &Path) -> Vec<String> {
    std::fs::read_dir(data.join("images"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// After the restart: the image is queued, no file, the invariants hold,
/// and the image takes an upload again.
fn check_after_restart(data: &Path, id: &str, what: &str) -> Result<()> {
    let server = Server::start(data, None)?;
    let token = login(&server.url)?;
    let i = image(&server.url, &token, id)?;
    assert_eq!(i["status"], "queued", "{what}: {i}");
    assert!(i["size"].is_null(), "{what}: {i}");
    assert!(files(data).is_empty(), "{what}: {:?}", files(data));
    let status = upload(&server.url, &token, id, &b"the second attempt"[..]);
    assert_eq!(status, Ok(204), "{what}");
    assert_eq!(
        image(&server.url, &token, id)?["status"],
        "active",
        "{what}"
    );
    server.kill();
    // Scoria's own invariant check agrees.
    let rt = tokio::runtime::Runtime::new()?;
    let bad = rt.block_on(async {
        let mut config = scoria_core::Config::with_data_dir(data.to_path_buf());
        config.admin_password = Some(PASSWORD.into());
        let app = scoria_core::App::open(config, scoria_failpoints::Failpoints::new())
            .await
            .map_err(|e| anyhow::anyhow!(e.chain()))?;
        let bad = scoria_core::invariants::check(&app.env)
            .await
            .map_err(|e| anyhow::anyhow!(e.chain()))?;
        app.shutdown(Duration::from_secs(5)).await;
        Ok::<_, anyhow::Error>(bad)
    })?;
    assert!(bad.is_empty(), "{what}: {bad:?}");
    Ok(())
}

fn queued_image(url: &str, token: &str) -> Result<String> {
    let r = agent()
        .post(&format!("{url}/image/v2/images"))
        .set("X-Auth-Token", token)
        .send_json(json!({"name": "crash", "disk_format": "raw", "container_format": "bare"}))?;
    let v: Value = r.into_json()?;
    Ok(v["id"].as_str().context("id")?.to_owned())
}

#[test]
fn an_upload_cut_off_by_the_end_of_the_process_leaves_the_image_queued_and_no_file() -> Result<()> {
    for point in [
        "image_store.write",
        "image_store.commit.temp",
        "image_store.commit.after",
    ] {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        // The image is made by a first server, the upload hits the second's
        // failpoint.
        let server = Server::start(&data, None)?;
        let token = login(&server.url)?;
        let id = queued_image(&server.url, &token)?;
        server.kill();
        let server = Server::start(&data, Some(&format!("{point}=exit")))?;
        let token = login(&server.url)?;
        let outcome = upload(&server.url, &token, &id, &[5u8; 200_000][..]);
        assert!(outcome.is_err(), "{point}: the server answered {outcome:?}");
        server.wait_exit()?;
        check_after_restart(&data, &id, point)?;
    }
    Ok(())
}

#[test]
fn an_upload_killed_mid_stream_leaves_the_image_queued_and_no_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let server = Server::start(&data, None)?;
    let token = login(&server.url)?;
    let id = queued_image(&server.url, &token)?;
    let url = server.url.clone();
    let (t, i) = (token.clone(), id.clone());
    // The client sends a megabyte, then stalls; the server is killed while
    // the image is `saving`.
    let client = std::thread::spawn(move || upload(&url, &t, &i, Stalling { left: 1 << 20 }));
    let deadline = Instant::now() + Duration::from_secs(20);
    while image(&server.url, &token, &id)?["status"] != "saving" {
        if Instant::now() > deadline {
            bail!("the upload never started");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    server.kill();
    let _ = client.join();
    check_after_restart(&data, &id, "SIGKILL")
}
