//! Benchmark of attachments' exports through a real `scoria serve`: the time
//! from `POST /attachments` (with a connector) to an export a client can
//! open, and 4 KiB sequential and strided (pseudo-random: a prime stride
//! through the whole volume) read and write throughput through the
//! attachment's export, next to bare `qemu-nbd` serving the same file with
//! the same TLS-PSK, in the same run, as a ratio. Figures only.
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

/// `qemu-img bench` through `opts`; MiB/s.
fn bench(object: &str, opts: &str, write: bool, step: u64, count: u64) -> Result<f64> {
    let mut cmd = Command::new("qemu-img");
    cmd.args(["bench", "-c", &count.to_string(), "-d", "16", "-s", "4096"])
        .args(["-S", &step.to_string()]);
    if write {
        cmd.args(["-w", "--pattern=0x5a"]);
    }
    let t0 = Instant::now();
    let out = cmd
        .args(["--object", object, "--image-opts", opts])
        .stdout(Stdio::null())
        .output()?;
    let secs = t0.elapsed().as_secs_f64();
    ensure!(
        out.status.success(),
        "qemu-img bench: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((count * 4096) as f64 / (1 << 20) as f64 / secs)
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
fn measure(object: &str, opts: &str, rounds: usize, count: u64) -> Result<[f64; 4]> {
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
            best[i] = best[i].max(bench(object, opts, write, step, count)?);
        }
    }
    Ok(best)
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
    let data = std::fs::canonicalize(tmp.path())?.join("data");
    std::fs::create_dir_all(&data)?;
    let mut server = Command::new(&bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("SCORIA_ADMIN_PASSWORD", PASSWORD)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = server.stdout.take().context("stdout")?;
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

    let vol = call(
        &agent,
        &token,
        "POST",
        &format!("{base}/volumes"),
        Some(json!({"volume": {"size": 1}})),
    )?;
    let vol = vol["volume"]["id"].as_str().context("id")?.to_owned();
    while call(
        &agent,
        &token,
        "GET",
        &format!("{base}/volumes/{vol}"),
        None,
    )?["volume"]["status"]
        != "available"
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let keys = tmp.path().join("keys");
    std::fs::create_dir_all(&keys)?;

    // Time from POST /attachments to a readable export, a few times.
    let mut times = Vec::new();
    let mut last = Value::Null;
    for i in 0..5 {
        let t0 = Instant::now();
        let a = call(
            &agent,
            &token,
            "POST",
            &format!("{base}/attachments"),
            Some(json!({"attachment": {
            "volume_uuid": vol, "connector": {"host": "bench"}, "mode": "rw"}})),
        )?["attachment"]
            .clone();
        let ci = &a["connection_info"];
        std::fs::write(
            keys.join("keys.psk"),
            format!(
                "{}:{}\n",
                ci["psk_identity"].as_str().unwrap_or(""),
                ci["psk_key"].as_str().unwrap_or("")
            ),
        )?;
        let object = format!(
            "tls-creds-psk,id=tls0,endpoint=client,dir={},username={}",
            keys.display(),
            ci["psk_identity"].as_str().unwrap_or("")
        );
        let opts = format!(
            "driver=raw,file.driver=nbd,file.host={},file.port={},file.export={},file.tls-creds=tls0",
            ci["host"].as_str().unwrap_or(""),
            ci["port"],
            ci["export_name"].as_str().unwrap_or("")
        );
        ensure!(opens(&object, &opts), "the export does not open");
        times.push(t0.elapsed());
        if i < 4 {
            call(
                &agent,
                &token,
                "DELETE",
                &format!("{base}/attachments/{}", a["id"].as_str().unwrap_or("")),
                None,
            )?;
        } else {
            last = json!({"a": a, "object": object, "opts": opts});
        }
    }
    times.sort();
    println!(
        "POST /attachments -> readable export (qemu-img info opens it): median {:?}, min {:?}, max {:?} (5 runs)",
        times[2], times[0], times[4]
    );

    let object = last["object"].as_str().context("object")?.to_owned();
    let opts = last["opts"].as_str().context("opts")?.to_owned();
    // Fill the volume once so that reads read data.
    bench(&object, &opts, true, 4096, (1u64 << 30) / 4096)?;
    let scoria = measure(&object, &opts, rounds, count)?;
    let id = last["a"]["id"].as_str().context("id")?.to_owned();
    call(
        &agent,
        &token,
        "DELETE",
        &format!("{base}/attachments/{id}"),
        None,
    )?;

    // Bare qemu-nbd on the same file, with the same key.
    let files: Vec<PathBuf> = std::fs::read_dir(data.join("volumes"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "qcow2"))
        .collect();
    ensure!(files.len() == 1, "one volume file: {files:?}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let srv_keys = tmp.path().join("srv");
    std::fs::create_dir_all(&srv_keys)?;
    std::fs::copy(keys.join("keys.psk"), srv_keys.join("keys.psk"))?;
    let mut nbd = Command::new("qemu-nbd")
        .args([
            "-f",
            "qcow2",
            "-x",
            "bare",
            "-b",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .args(["--persistent", "--discard=unmap"])
        .arg("--object")
        .arg(format!(
            "tls-creds-psk,id=t0,endpoint=server,dir={}",
            srv_keys.display()
        ))
        .args(["--tls-creds", "t0"])
        .arg(&files[0])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let bare_opts = format!(
        "driver=raw,file.driver=nbd,file.host=127.0.0.1,file.port={port},file.export=bare,file.tls-creds=tls0"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !opens(&object, &bare_opts) {
        ensure!(Instant::now() < deadline, "qemu-nbd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let bare = measure(&object, &bare_opts, rounds, count);
    let _ = nbd.kill();
    let _ = nbd.wait();
    let bare = bare?;
    let _ = server.kill();
    let _ = server.wait();

    println!(
        "4 KiB requests, queue depth 16, {count} per run, best of {rounds}; MiB/s through TLS-PSK NBD:"
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
