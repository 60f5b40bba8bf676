//! What the benchmarks against a real `scoria serve` share: the release
//! binary started as a child process (a config file, a data directory of its
//! own, the admin password from the environment) and read from `/proc` (RSS,
//! CPU), an admin logged in through Keystone, a Block Storage client whose
//! creates and deletes poll to `available` and to 404 (right away, then every
//! millisecond), a pool of threads running n jobs, and the figures' helpers.
//! Every HTTP failure is an error: a benchmark stops rather than counting it.
// The server is a child process; it is stopped with kill(1).
#![allow(clippy::disallowed_methods, dead_code)]

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::{Value, json};

pub const PASSWORD: &str = "bench-password";
/// The status poll's interval: `$SCORIA_BENCH_POLL_MS`, else 1 ms.
fn poll() -> Duration {
    let ms = std::env::var("SCORIA_BENCH_POLL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0f64);
    Duration::from_secs_f64(ms / 1000.0)
}

/// One file backend (qcow2, the embedded defaults) whose over-subscription
/// ratio lets 100,000 volumes of 1 GiB fit on whatever disk runs the
/// benchmark (a blank qcow2 allocates about 200 KiB), so capacity is never
/// what is measured.
pub const ONE_BACKEND: &str = "[[backend]]\nname = \"file\"\ndriver = \"file\"\npath = \"volumes\"\n\
     max_over_subscription_ratio = 1000000.0\n";

/// The `scoria` binary: `$SCORIA_BIN`, or the one in the target directory
/// this example was built into.
pub fn scoria_bin() -> anyhow::Result<PathBuf> {
    let bin: PathBuf = match std::env::var_os("SCORIA_BIN") {
        Some(p) => p.into(),
        None => std::env::current_exe()?
            .parent()
            .and_then(|p| p.parent())
            .context("target directory")?
            .join("scoria"),
    };
    ensure!(bin.exists(), "no scoria binary at {}", bin.display());
    Ok(bin)
}

/// A running `scoria serve`, killed when dropped.
pub struct Server {
    child: Child,
    /// `http://…`.
    pub url: String,
}

impl Server {
    /// Start `bin serve` on a free 127.0.0.1 port with `config` and
    /// `data_dir`; returns once it says where it listens.
    pub fn start(bin: &Path, config: &Path, data_dir: &Path) -> anyhow::Result<Server> {
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .arg("--data-dir")
            .arg(data_dir)
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
        Ok(Server {
            child,
            url: format!("http://{addr}"),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The `/proc/<pid>/status` line `key` (VmRSS, VmHWM), in MiB.
    pub fn mem_mib(&self, key: &str) -> f64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        s.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|k| k.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }

    /// CPU time the server used so far (user + system).
    pub fn cpu(&self) -> Duration {
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

/// An HTTP agent for many concurrent clients of one server.
pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(600))
        .max_idle_connections_per_host(64)
        .build()
}

/// A Block Storage client with the admin's token.
#[derive(Clone)]
pub struct Client {
    pub agent: ureq::Agent,
    /// `http://…/v3/{project}`.
    pub base: String,
    pub token: String,
}

impl Client {
    /// Log in as the admin at `url` and make a client of its project's
    /// Block Storage; also returns the project's id.
    pub fn admin(agent: &ureq::Agent, url: &str) -> anyhow::Result<(Client, String)> {
        let (token, project) = login(agent, url)?;
        let client = Client {
            agent: agent.clone(),
            base: format!("{url}/v3/{project}"),
            token,
        };
        Ok((client, project))
    }

    /// One request; its status and JSON body (`null` when there is none).
    /// Only a transport failure is an error here.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
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
    pub fn get_timed(&self, path: &str) -> anyhow::Result<(Duration, Value)> {
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

    /// Lift the project's volume, snapshot and gigabyte quotas.
    pub fn unlimited_quota(&self, project: &str) -> anyhow::Result<()> {
        let (code, v) = self.call(
            "PUT",
            &format!("/os-quota-sets/{project}"),
            Some(json!({"quota_set": {"volumes": -1, "snapshots": -1, "gigabytes": -1}})),
        )?;
        ensure!(code == 200, "quota: {code} {v}");
        Ok(())
    }

    /// Create a 1 GiB volume and poll until it is `available`.
    pub fn create(&self) -> anyhow::Result<(Duration, String)> {
        let t = Instant::now();
        let (code, v) = self.call("POST", "/volumes", Some(json!({"volume": {"size": 1}})))?;
        ensure!(code == 202, "create: {code} {v}");
        let id = v["volume"]["id"].as_str().context("id")?.to_owned();
        loop {
            let (code, v) = self.call("GET", &format!("/volumes/{id}"), None)?;
            ensure!(code == 200, "show {id}: {code} {v}");
            match v["volume"]["status"].as_str() {
                Some("available") => return Ok((t.elapsed(), id)),
                Some("error") => bail!("volume {id} went to error"),
                _ => std::thread::sleep(poll()),
            }
        }
    }

    /// Delete a volume and poll until it is gone.
    pub fn delete(&self, id: &str) -> anyhow::Result<Duration> {
        let t = Instant::now();
        let (code, v) = self.call("DELETE", &format!("/volumes/{id}"), None)?;
        ensure!(code == 202, "delete: {code} {v}");
        loop {
            let (code, v) = self.call("GET", &format!("/volumes/{id}"), None)?;
            if code == 404 {
                return Ok(t.elapsed());
            }
            ensure!(code == 200, "show {id}: {code} {v}");
            if v["volume"]["status"].as_str() == Some("error_deleting") {
                bail!("volume {id} went to error_deleting");
            }
            std::thread::sleep(poll());
        }
    }
}

/// Log in as the admin, scoped to its project: the token and the project id.
pub fn login(agent: &ureq::Agent, url: &str) -> anyhow::Result<(String, String)> {
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
pub fn run<T: Send>(
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

/// The `p` quantile (0..1) of `v`, in milliseconds.
pub fn pct(v: &mut [Duration], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

/// A phase's throughput (per second) and latency (ms).
pub struct Phase {
    pub rate: f64,
    pub p50: f64,
    pub p99: f64,
}

/// The figures of jobs that took `lat` each and `wall` together.
pub fn phase(mut lat: Vec<Duration>, wall: Duration) -> Phase {
    Phase {
        rate: lat.len() as f64 / wall.as_secs_f64(),
        p50: pct(&mut lat, 0.5),
        p99: pct(&mut lat, 0.99),
    }
}

/// Create `n` volumes at concurrency `c`: the phase, the server's CPU per
/// create (ms) and the volumes' ids.
pub fn creates(
    server: &Server,
    client: &Client,
    c: usize,
    n: usize,
) -> anyhow::Result<(Phase, f64, Vec<String>)> {
    let cpu0 = server.cpu();
    let (made, wall) = run(c, n, |_| client.create())?;
    let cpu_per_create = (server.cpu() - cpu0).as_secs_f64() * 1000.0 / n as f64;
    let (lat, ids): (Vec<_>, Vec<_>) = made.into_iter().unzip();
    Ok((phase(lat, wall), cpu_per_create, ids))
}

/// Delete `ids` at concurrency `c`.
pub fn deletes(client: &Client, c: usize, ids: &[String]) -> anyhow::Result<Phase> {
    let (lat, wall) = run(c, ids.len(), |i| client.delete(&ids[i]))?;
    Ok(phase(lat, wall))
}

/// Create `n` volumes at concurrency `c`, then delete them at the same
/// concurrency: both phases and the server's CPU per create.
pub fn create_delete(
    server: &Server,
    client: &Client,
    c: usize,
    n: usize,
) -> anyhow::Result<(Phase, Phase, f64)> {
    let (create, cpu, ids) = creates(server, client, c, n)?;
    Ok((create, deletes(client, c, &ids)?, cpu))
}
