//! The control plane as users drive it, at scale: a fresh `scoria serve` (the
//! release binary beside this example, a temporary data directory, the real
//! file backend with a large over-subscription ratio, `durability = full`) driven over HTTP by this load generator
//! (Keystone token, Block Storage v3 JSON, statuses polled right away and
//! then every millisecond). Measures create and delete throughput and
//! latency (request → `available`, request → 404) at concurrency 1, 8 and 32;
//! create and delete throughput with N volumes already in the project; one
//! `GET /volumes/detail?limit=1000` with them present; the `GET /volumes/{id}`
//! rate; cold start to the first authenticated request; the server's CPU per
//! create; its RSS idle, after the volumes, and after many logins. Prints one
//! table, then the same figures as JSON. Asserts nothing.
//!
//! ```text
//! scripts/bench [--present 0,10000,100000] [--logins 1000]
//! ```
// The server is a child process; it is stopped with kill(1).
#![allow(clippy::disallowed_methods)]

use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::{Value, json};

const PASSWORD: &str = "bench-password";
const POLL: Duration = Duration::from_millis(1);

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The `/proc/<pid>/status` line `key` (VmRSS, VmHWM), in MiB.
    fn mem_mib(&self, key: &str) -> f64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        s.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|k| k.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }

    /// CPU time the server used so far (user + system).
    fn cpu(&self) -> Duration {
        let s = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name's closing parenthesis: utime is the
        // 12th, stime the 13th (1-based, counting from the state).
        let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
        // USER_HZ is 100 on Linux.
        Duration::from_millis(ticks * 10)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

#[derive(Clone)]
struct Client {
    agent: ureq::Agent,
    base: String,
    token: String,
}

impl Client {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<(u16, Value)> {
        let req = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("X-Auth-Token", &self.token)
            .set("OpenStack-API-Version", "volume 3.40");
        let res = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        match res {
            Ok(r) => {
                let status = r.status();
                Ok((status, r.into_json().unwrap_or(Value::Null)))
            }
            Err(ureq::Error::Status(code, r)) => Ok((code, r.into_json().unwrap_or(Value::Null))),
            Err(e) => Err(e.into()),
        }
    }

    /// A GET whose time ends at the body's last byte: the client's parsing
    /// of a large answer is not the server's time.
    fn get_timed(&self, path: &str) -> anyhow::Result<(Duration, Value)> {
        let t = Instant::now();
        let r = self
            .agent
            .get(&format!("{}{path}", self.base))
            .set("X-Auth-Token", &self.token)
            .set("OpenStack-API-Version", "volume 3.40")
            .call()?;
        let body = r.into_string()?;
        let took = t.elapsed();
        Ok((took, serde_json::from_str(&body)?))
    }

    /// Create a 1 GiB volume and poll until it is `available`.
    fn create(&self) -> anyhow::Result<(Duration, String)> {
        let t = Instant::now();
        let (code, v) = self.call("POST", "/volumes", Some(json!({"volume": {"size": 1}})))?;
        ensure!(code == 202, "create: {code} {v}");
        let id = v["volume"]["id"].as_str().context("id")?.to_owned();
        loop {
            let (_, v) = self.call("GET", &format!("/volumes/{id}"), None)?;
            match v["volume"]["status"].as_str() {
                Some("available") => return Ok((t.elapsed(), id)),
                Some("error") => bail!("volume {id} went to error"),
                _ => std::thread::sleep(POLL),
            }
        }
    }

    /// Delete a volume and poll until it is gone.
    fn delete(&self, id: &str) -> anyhow::Result<Duration> {
        let t = Instant::now();
        let (code, v) = self.call("DELETE", &format!("/volumes/{id}"), None)?;
        ensure!(code == 202, "delete: {code} {v}");
        loop {
            let (code, v) = self.call("GET", &format!("/volumes/{id}"), None)?;
            if code == 404 {
                return Ok(t.elapsed());
            }
            if v["volume"]["status"].as_str() == Some("error_deleting") {
                bail!("volume {id} went to error_deleting");
            }
            std::thread::sleep(POLL);
        }
    }
}

fn login(agent: &ureq::Agent, url: &str) -> anyhow::Result<(String, String)> {
    let resp = agent
        .post(&format!("{url}/identity/v3/auth/tokens"))
        .send_json(json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"name": "Default"}, "password": PASSWORD}}},
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}))?;
    let token = resp.header("x-subject-token").context("token")?.to_owned();
    let v: Value = resp.into_json()?;
    let project = v["token"]["project"]["id"]
        .as_str()
        .context("project")?
        .to_owned();
    Ok((token, project))
}

/// Run `n` jobs on `threads` threads; every job's result and the wall time.
fn run<T: Send>(
    threads: usize,
    n: usize,
    job: impl Fn(usize) -> anyhow::Result<T> + Sync,
) -> anyhow::Result<(Vec<T>, Duration)> {
    let next = AtomicUsize::new(0);
    let out = Mutex::new(Vec::with_capacity(n));
    let t = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return Ok(());
                        }
                        let r = job(i)?;
                        out.lock().unwrap_or_else(|e| e.into_inner()).push(r);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok((
        out.into_inner().unwrap_or_else(|e| e.into_inner()),
        t.elapsed(),
    ))
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

struct Phase {
    rate: f64,
    p50: f64,
    p99: f64,
}

fn phase(mut lat: Vec<Duration>, wall: Duration) -> Phase {
    Phase {
        rate: lat.len() as f64 / wall.as_secs_f64(),
        p50: pct(&mut lat, 0.5),
        p99: pct(&mut lat, 0.99),
    }
}

/// Create `n` volumes at concurrency `c`, then delete them at the same
/// concurrency: both phases and the server's CPU per create.
fn create_delete(
    server: &Server,
    client: &Client,
    c: usize,
    n: usize,
) -> anyhow::Result<(Phase, Phase, f64)> {
    let cpu0 = server.cpu();
    let (made, wall) = run(c, n, |_| client.create())?;
    let cpu_per_create = (server.cpu() - cpu0).as_secs_f64() * 1000.0 / n as f64;
    let (lat, ids): (Vec<_>, Vec<_>) = made.into_iter().unzip();
    let create = phase(lat, wall);
    let (lat, wall) = run(c, n, |i| client.delete(&ids[i]))?;
    Ok((create, phase(lat, wall), cpu_per_create))
}

fn main() -> anyhow::Result<()> {
    let mut present: Vec<usize> = vec![0, 10_000];
    let mut logins = 1000usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--present" => {
                present = args
                    .next()
                    .context("--present N,N,…")?
                    .split(',')
                    .map(|s| s.trim().parse())
                    .collect::<Result<_, _>>()?;
                present.sort_unstable();
            }
            "--logins" => logins = args.next().context("--logins N")?.parse()?,
            other => bail!("unknown argument {other:?} (--present N,N,… --logins N)"),
        }
    }
    let bin = match std::env::var_os("SCORIA_BIN") {
        Some(p) => p.into(),
        None => std::env::current_exe()?
            .parent()
            .and_then(|p| p.parent())
            .context("target directory")?
            .join("scoria"),
    };
    ensure!(bin.exists(), "no scoria binary at {}", bin.display());
    let tmp = tempfile::tempdir_in(std::env::current_dir()?)?;
    let mut report = serde_json::Map::new();
    let mut table: Vec<(String, String)> = Vec::new();

    // The embedded defaults but for the over-subscription ratio: 100,000
    // volumes of 1 GiB must fit on whatever disk runs the benchmark (a blank
    // qcow2 allocates about 200 KiB), so capacity is never what is measured.
    let config = tmp.path().join("scoria.toml");
    std::fs::write(
        &config,
        "[[backend]]\nname = \"file\"\ndriver = \"file\"\npath = \"volumes\"\n\
         max_over_subscription_ratio = 1000000.0\n",
    )?;
    // Cold start: from spawning the process to the first authenticated answer.
    let t0 = Instant::now();
    let mut child = Command::new(&bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .env("SCORIA_ADMIN_PASSWORD", PASSWORD)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = std::io::BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().context("scoria serve exited")??;
        if let Some(a) = line.strip_prefix("listening on ") {
            break a.trim().to_owned();
        }
    };
    // Keep reading its output so that it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let server = Server {
        child,
        url: format!("http://{addr}"),
    };
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(600))
        .max_idle_connections_per_host(64)
        .build();
    let (token, project) = login(&agent, &server.url)?;
    let client = Client {
        agent: agent.clone(),
        base: format!("{}/v3/{project}", server.url),
        token,
    };
    let (code, _) = client.call("GET", "/volumes?limit=1", None)?;
    ensure!(code == 200, "first request: {code}");
    let cold = t0.elapsed().as_secs_f64() * 1000.0;
    std::thread::sleep(Duration::from_millis(500));
    let rss_idle = server.mem_mib("VmRSS");
    table.push((
        "cold start → first authenticated request".into(),
        format!("{cold:.0} ms"),
    ));
    table.push(("RSS idle".into(), format!("{rss_idle:.1} MiB")));
    report.insert("cold_start_ms".into(), json!(cold));
    report.insert("rss_idle_mib".into(), json!(rss_idle));

    let (code, v) = client.call(
        "PUT",
        &format!("/os-quota-sets/{project}"),
        Some(json!({"quota_set": {"volumes": -1, "snapshots": -1, "gigabytes": -1}})),
    )?;
    ensure!(code == 200, "quota: {code} {v}");

    // Throughput and latency by concurrency, on an empty project.
    let mut by_c = Vec::new();
    for (c, n) in [(1usize, 100usize), (8, 400), (32, 800)] {
        let (cr, de, cpu) = create_delete(&server, &client, c, n)?;
        table.push((
            format!("concurrency {c:>2}: creates/s · create→available p50/p99"),
            format!("{:.0} · {:.1}/{:.1} ms", cr.rate, cr.p50, cr.p99),
        ));
        table.push((
            format!("concurrency {c:>2}: deletes/s · delete→gone p50/p99"),
            format!("{:.0} · {:.1}/{:.1} ms", de.rate, de.p50, de.p99),
        ));
        by_c.push(json!({"concurrency": c, "volumes": n,
            "creates_per_s": cr.rate, "create_p50_ms": cr.p50, "create_p99_ms": cr.p99,
            "deletes_per_s": de.rate, "delete_p50_ms": de.p50, "delete_p99_ms": de.p99,
            "server_cpu_ms_per_create": cpu}));
    }
    report.insert("by_concurrency".into(), json!(by_c));

    // With many volumes present in the project: populate (at concurrency 32,
    // each to available), then 400 creates and their deletes at 8.
    let mut have = 0usize;
    let mut by_n = Vec::new();
    let mut sample: Vec<String> = Vec::new();
    for &want in &present {
        if want > have {
            let t = Instant::now();
            let (made, _) = run(32, want - have, |_| client.create())?;
            if sample.len() < 1000 {
                sample.extend(made.into_iter().map(|(_, id)| id).take(1000));
            }
            eprintln!(
                "populated {have} → {want} volumes in {:.1} s",
                t.elapsed().as_secs_f64()
            );
            have = want;
        }
        let (cr, de, cpu) = create_delete(&server, &client, 8, 400)?;
        table.push((
            format!("{want:>6} present: creates/s · deletes/s (c 8) · server CPU/create"),
            format!("{:.0} · {:.0} · {cpu:.2} ms", cr.rate, de.rate),
        ));
        by_n.push(json!({"present": want, "creates_per_s": cr.rate,
            "create_p50_ms": cr.p50, "create_p99_ms": cr.p99,
            "deletes_per_s": de.rate, "server_cpu_ms_per_create": cpu}));
    }
    report.insert("by_present".into(), json!(by_n));
    let rss_volumes = server.mem_mib("VmRSS");

    // One page of 1000 with them present.
    if have >= 1000 {
        let mut lat = Vec::new();
        for _ in 0..30 {
            let (took, v) = client.get_timed("/volumes/detail?limit=1000")?;
            ensure!(
                v["volumes"].as_array().map_or(0, Vec::len) == 1000,
                "list length"
            );
            lat.push(took);
        }
        let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
        table.push((
            format!("GET /volumes/detail?limit=1000 with {have} present p50/p99"),
            format!("{p50:.1}/{p99:.1} ms"),
        ));
        report.insert(
            "list_detail_1000".into(),
            json!({"present": have, "p50_ms": p50, "p99_ms": p99}),
        );
    }

    // GET /volumes/{id}, 8 clients, about 3 s.
    if sample.is_empty() {
        let (_, id) = client.create()?;
        sample.push(id);
    }
    let n = 6000;
    let (_, wall) = run(8, n, |i| {
        let (code, _) = client.call(
            "GET",
            &format!("/volumes/{}", sample[i % sample.len()]),
            None,
        )?;
        ensure!(code == 200, "show: {code}");
        Ok(())
    })?;
    let show_rate = n as f64 / wall.as_secs_f64();
    table.push((
        "GET /volumes/{id} per second (c 8)".into(),
        format!("{show_rate:.0}"),
    ));
    report.insert("show_per_s".into(), json!(show_rate));

    // Logins, 8 at a time.
    let t = Instant::now();
    run(8, logins, |_| login(&agent, &server.url))?;
    let login_rate = logins as f64 / t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    let (rss_after, hwm) = (server.mem_mib("VmRSS"), server.mem_mib("VmHWM"));
    table.push((
        format!("logins/s ({logins}, c 8)"),
        format!("{login_rate:.1}"),
    ));
    table.push((
        format!("RSS with {have} volumes · after {logins} logins · peak"),
        format!("{rss_volumes:.1} · {rss_after:.1} · {hwm:.1} MiB"),
    ));
    report.insert("logins".into(), json!(logins));
    report.insert("logins_per_s".into(), json!(login_rate));
    report.insert("rss_with_volumes_mib".into(), json!(rss_volumes));
    report.insert("rss_after_logins_mib".into(), json!(rss_after));
    report.insert("rss_peak_mib".into(), json!(hwm));

    let w = table
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    println!(
        "{:<w$}  figure",
        "scoria serve, over HTTP, durability = full"
    );
    println!("{}", "-".repeat(w + 24));
    for (k, v) in &table {
        println!("{k:<w$}  {v}");
    }
    println!("{}", serde_json::to_string(&Value::Object(report))?);
    drop(server);
    Ok(())
}
