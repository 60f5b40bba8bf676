//! Benchmark of attachments' exports through a real `scoria serve`: the time
//! from `POST /attachments` (with a connector) to an export a client can
//! open, and 4 KiB sequential and strided (pseudo-random: a prime stride
//! through the whole volume) read and write throughput through the
//! attachment's export, next to bare `qemu-nbd` serving the same file, in
//! the same run, as a ratio. Figures only. The time to a readable export is
//! over TCP with TLS-PSK (Scoria's default); throughput is over unix sockets
//! on both sides (`[exports] unix = true`), because `qemu-img bench` takes no
//! TLS credentials — the transport is the same for both servers, so the
//! ratio compares the servers.
//!
//! ```text
//! cargo build -p scoria && cargo run -p scoria --example bench_attach -- [ROUNDS] [COUNT]
//! ```
//!
//! Uses the `scoria` binary next to the example's directory (build it first,
//! in the same profile). ROUNDS (default 3) rounds of each measurement, COUNT
//! (default 20000) 4 KiB requests per measurement at queue depth 16, with
//! `qemu-img bench` as the client; both servers use qemu's defaults (the
//! host's page cache) and pass discards down. Scoria is
//! not in the I/O path (the export is a `qemu-storage-daemon`), so a debug
//! build measures the same data path as a release one.
// The server under test, the baseline and the clients are processes.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

const PASSWORD: &str = "bench-attach-password";

fn call(
    agent: &ureq::Agent,
    token: &str,
    method: &str,
    url: &str,
    body: Option<Value>,
) -> Result<Value> {
    let req = agent
        .request(method, url)
        .set("X-Auth-Token", token)
        .set("OpenStack-API-Version", "volume 3.54");
    let r = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    match r {
        Ok(r) => Ok(serde_json::from_str(&r.into_string()?).unwrap_or(Value::Null)),
        Err(e) => bail!("{method} {url}: {e}"),
    }
}

/// `qemu-img bench` of the NBD URI `uri` (no TLS: `qemu-img bench` takes no
/// `--object`); MiB/s.
fn bench(uri: &str, write: bool, step: u64, count: u64) -> Result<f64> {
    bench_sized(uri, write, 4096, step, count)
}

fn bench_sized(uri: &str, write: bool, size: u64, step: u64, count: u64) -> Result<f64> {
    let mut cmd = Command::new("qemu-img");
    cmd.args(["bench", "-c", &count.to_string(), "-d", "16"])
        .args(["-s", &size.to_string()])
        .args(["-S", &step.to_string()]);
    if write {
        cmd.args(["-w", "--pattern=0x5a"]);
    }
    let t0 = Instant::now();
    let out = cmd
        .args(["-f", "raw", uri])
        .stdout(Stdio::null())
        .output()?;
    let secs = t0.elapsed().as_secs_f64();
    ensure!(
        out.status.success(),
        "qemu-img bench: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((count * size) as f64 / (1 << 20) as f64 / secs)
}

fn opens(object: &str, opts: &str) -> bool {
    Command::new("qemu-img")
        .args(["info", "--object", object, "--image-opts", opts])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Sequential (step 4 KiB) and strided (a prime number of 4 KiB blocks)
/// read and write, `rounds` times each; the best MiB/s of each.
fn measure(uri: &str, rounds: usize, count: u64) -> Result<[f64; 4]> {
    let strided = 4096 * 7919;
    let mut best = [0f64; 4];
    for _ in 0..rounds {
        for (i, (write, step)) in [
            (false, 4096),
            (false, strided),
            (true, 4096),
            (true, strided),
        ]
        .into_iter()
        .enumerate()
        {
            best[i] = best[i].max(bench(uri, write, step, count)?);
        }
    }
    Ok(best)
}

/// Kills, on drop, the export daemons under a directory (they outlive
/// Scoria by design; the benchmark's must not, even when it fails).
struct Daemons(PathBuf);

impl Drop for Daemons {
    fn drop(&mut self) {
        let needle = self.0.to_string_lossy().into_owned();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmd = String::from_utf8_lossy(&cmd);
            if cmd.starts_with("qemu-storage-daemon") && cmd.contains(&needle) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

struct Scoria {
    child: std::process::Child,
    agent: ureq::Agent,
    token: String,
    base: String,
}

impl Drop for Scoria {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `scoria serve` on `data`, exporting over unix sockets if `unix`, logged in.
fn start(bin: &Path, data: &Path, unix: bool) -> Result<Scoria> {
    std::fs::create_dir_all(data)?;
    let config = data.join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[exports]\nunix = {unix}\n",
            data.to_string_lossy()
        ),
    )?;
    let mut child = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("SCORIA_ADMIN_PASSWORD", PASSWORD)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().context("scoria exited")??;
        if let Some(a) = line.strip_prefix("listening on ") {
            break a.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let url = format!("http://{addr}");
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build();
    let resp = agent
        .post(&format!("{url}/identity/v3/auth/tokens"))
        .send_json(json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"name": "Default"}, "password": PASSWORD}}},
        "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}))?;
    let token = resp.header("x-subject-token").context("token")?.to_owned();
    let v: Value = resp.into_json()?;
    let base = format!(
        "{url}/v3/{}",
        v["token"]["project"]["id"].as_str().context("project")?
    );
    Ok(Scoria {
        child,
        agent,
        token,
        base,
    })
}

impl Scoria {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        call(
            &self.agent,
            &self.token,
            method,
            &format!("{}{path}", self.base),
            body,
        )
    }

    fn volume(&self) -> Result<String> {
        let v = self.call("POST", "/volumes", Some(json!({"volume": {"size": 1}})))?;
        let id = v["volume"]["id"].as_str().context("id")?.to_owned();
        while self.call("GET", &format!("/volumes/{id}"), None)?["volume"]["status"] != "available"
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(id)
    }

    fn attach(&self, vol: &str) -> Result<Value> {
        Ok(self.call(
            "POST",
            "/attachments",
            Some(json!({"attachment": {"volume_uuid": vol, "connector": {"host": "bench"}, "mode": "rw"}})),
        )?["attachment"]
            .clone())
    }

    fn detach(&self, a: &Value) -> Result<()> {
        self.call(
            "DELETE",
            &format!("/attachments/{}", a["id"].as_str().unwrap_or("")),
            None,
        )?;
        Ok(())
    }
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(3);
    let count: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(20000);
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("scoria"))
        .context("the scoria binary's directory")?;
    ensure!(
        bin.exists(),
        "{} is missing: cargo build -p scoria first",
        bin.display()
    );
    let tmp = tempfile::tempdir()?;
    let root = std::fs::canonicalize(tmp.path())?;
    let _daemons = Daemons(root.clone());

    // Time from POST /attachments to a readable export, over TCP with TLS-PSK.
    {
        let s = start(&bin, &root.join("tls"), false)?;
        let vol = s.volume()?;
        let keys = root.join("keys");
        std::fs::create_dir_all(&keys)?;
        let mut times = Vec::new();
        for _ in 0..5 {
            let t0 = Instant::now();
            let a = s.attach(&vol)?;
            let ci = &a["connection_info"];
            let identity = ci["psk_identity"].as_str().unwrap_or("");
            std::fs::write(
                keys.join("keys.psk"),
                format!("{identity}:{}\n", ci["psk_key"].as_str().unwrap_or("")),
            )?;
            let object = format!(
                "tls-creds-psk,id=tls0,endpoint=client,dir={},username={identity}",
                keys.display()
            );
            let opts = format!(
                "driver=raw,file.driver=nbd,file.host={},file.port={},file.export={},file.tls-creds=tls0",
                ci["host"].as_str().unwrap_or(""),
                ci["port"],
                ci["export_name"].as_str().unwrap_or("")
            );
            ensure!(opens(&object, &opts), "the export does not open");
            times.push(t0.elapsed());
            s.detach(&a)?;
        }
        times.sort();
        println!(
            "POST /attachments -> export readable over TLS-PSK (qemu-img info opens it): median {:?}, min {:?}, max {:?} (5 runs)",
            times[2], times[0], times[4]
        );
    }

    // Throughput, over unix sockets (qemu-img bench takes no TLS object):
    // Scoria's export, then bare qemu-nbd on the same file.
    let data = root.join("unix");
    let s = start(&bin, &data, true)?;
    let vol = s.volume()?;
    let files: Vec<PathBuf> = std::fs::read_dir(data.join("volumes"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "qcow2"))
        .collect();
    ensure!(files.len() == 1, "one volume file: {files:?}");
    let socket = root.join("bare.sock");
    let bare_uri = format!("nbd+unix:///bare?socket={}", socket.display());
    // Rounds alternate between the servers, so that a busy machine slows
    // both alike; the best of each is kept.
    let (mut scoria, mut bare) = ([0f64; 4], [0f64; 4]);
    for round in 0..rounds {
        let a = s.attach(&vol)?;
        let ci = &a["connection_info"];
        let uri = format!(
            "nbd+unix:///{}?socket={}",
            ci["export_name"].as_str().context("export")?,
            ci["socket"].as_str().context("socket")?
        );
        if round == 0 {
            // Fill the whole volume once (1 MiB writes) so that reads read
            // data and both servers' writes land in allocated clusters.
            bench_sized(&uri, true, 1 << 20, 1 << 20, 1024)?;
        }
        let m = measure(&uri, 1, count)?;
        s.detach(&a)?;
        let mut nbd = Command::new("qemu-nbd")
            .args([
                "-f",
                "qcow2",
                "-x",
                "bare",
                "--persistent",
                "--discard=unmap",
                "-k",
            ])
            .arg(&socket)
            .arg(&files[0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while bench(&bare_uri, false, 4096, 1).is_err() {
            ensure!(Instant::now() < deadline, "qemu-nbd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let b = measure(&bare_uri, 1, count);
        let _ = nbd.kill();
        let _ = nbd.wait();
        let b = b?;
        for i in 0..4 {
            scoria[i] = scoria[i].max(m[i]);
            bare[i] = bare[i].max(b[i]);
        }
    }
    drop(s);

    println!(
        "4 KiB requests, queue depth 16, {count} per run, best of {rounds}, NBD over a unix socket; MiB/s:"
    );
    for (i, name) in [
        "sequential read",
        "strided read",
        "sequential write",
        "strided write",
    ]
    .iter()
    .enumerate()
    {
        println!(
            "  {name:<17} scoria export {:>8.1}   bare qemu-nbd {:>8.1}   ratio {:>5.1}%",
            scoria[i],
            bare[i],
            100.0 * scoria[i] / bare[i]
        );
    }
    Ok(())
}
