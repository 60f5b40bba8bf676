//! Snapshots and volumes from them as users see them: through HTTP (Keystone
//! token, Block Storage v3 JSON, a 2 ms status poll), against the whole
//! server in this process on 127.0.0.1 and the real file backend. A 1 GiB and
//! a 100 GiB volume, each holding the same 256 MiB of data; for each, over N
//! rounds, the time from the request to `available` of: a snapshot, a volume
//! from it by overlay, a clone by overlay, and (three rounds) a volume from it
//! by copy beside a bare `qemu-img convert` of the same image. Prints figures
//! and ratios; asserts nothing.
//!
//! ```text
//! cargo run --release -p scoria --example bench_http_snapshots -- [rounds]
//! ```
// The baseline is a bare qemu-img process.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use scoria_core::{App, Config};
use scoria_failpoints::Failpoints;
use serde_json::{Value, json};

const PASSWORD: &str = "bench-password";

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

    /// POST `body` to `path`, then poll `GET {path}/{id}` until `available`;
    /// the time from the request to the first `available` answer.
    fn until_available(
        &self,
        path: &str,
        key: &str,
        body: Value,
    ) -> anyhow::Result<(Duration, String)> {
        let t = Instant::now();
        let (code, v) = self.call("POST", path, Some(body))?;
        if code != 202 {
            bail!("POST {path}: {code} {v}");
        }
        let id = v[key]["id"].as_str().context("id")?.to_owned();
        loop {
            let (_, v) = self.call("GET", &format!("{path}/{id}"), None)?;
            match v[key]["status"].as_str() {
                Some("available") => return Ok((t.elapsed(), id)),
                Some("error") => {
                    let (_, m) =
                        self.call("GET", &format!("/messages?resource_uuid={id}"), None)?;
                    bail!("{key} {id} failed: {m}")
                }
                _ => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let tmp = tempfile::tempdir_in(std::env::current_dir()?)?;
    let dir = tmp.path().to_path_buf();
    let rt = tokio::runtime::Runtime::new()?;
    let (app, url) = rt.block_on(async {
        let mut config = Config::with_data_dir(dir.clone());
        config.admin_password = Some(PASSWORD.into());
        let app = App::open(config, Failpoints::new())
            .await
            .map_err(|e| anyhow::anyhow!(e.chain()))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let serving = app.clone();
        tokio::spawn(async move {
            let _ = scoria_api::serve(
                serving,
                listener,
                scoria_api::HttpLimits::default(),
                std::future::pending(),
            )
            .await;
        });
        Ok::<_, anyhow::Error>((app, url))
    })?;

    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(600))
        .build();
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
    let c = Client {
        agent,
        base: format!("{url}/v3/{project}"),
        token,
    };
    let (code, v) = c.call(
        "PUT",
        &format!("/os-quota-sets/{project}"),
        Some(json!({"quota_set": {"volumes": -1, "snapshots": -1, "gigabytes": -1}})),
    )?;
    anyhow::ensure!(code == 200, "quota: {code} {v}");
    let (code, v) = c.call(
        "POST",
        "/types",
        Some(json!({"volume_type": {"name": "by-copy",
            "extra_specs": {"scoria:clone_strategy": "performance"}}})),
    )?;
    anyhow::ensure!(code == 200, "type: {code} {v}");

    println!("{rounds} rounds per size, through HTTP at {url}, 256 MiB of data in each source");
    println!(
        "{:<10} {:>12} {:>16} {:>12} {:>18} {:>18} {:>8}",
        "size",
        "snapshot",
        "from snapshot",
        "clone",
        "from snap (copy)",
        "qemu-img convert",
        "ratio"
    );
    let mut medians = Vec::new();
    for gib in [1_u64, 100] {
        let (_, source) =
            c.until_available("/volumes", "volume", json!({"volume": {"size": gib}}))?;
        let image = rt.block_on(async {
            let mut conn = app.store().read().await?;
            let v = scoria_store::volumes::volume_get(&mut conn, source.parse()?)
                .await?
                .context("volume")?;
            let i = scoria_store::images::image_get(&mut conn, v.image_id.context("image")?)
                .await?
                .context("image record")?;
            Ok::<_, anyhow::Error>(dir.join("volumes").join(i.name))
        })?;
        for i in 0..16u64 {
            rt.block_on(scoria_storage::qemu::write_pattern(
                &image,
                scoria_storage::Format::Qcow2,
                i * (64 << 20),
                16 << 20,
                0x80 + i as u8,
            ))?;
        }
        let (mut snap, mut from, mut clone, mut copy, mut bare) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let (t, s) = c.until_available(
                "/snapshots",
                "snapshot",
                json!({"snapshot": {"volume_id": source}}),
            )?;
            snap.push(t);
            let (t, _) =
                c.until_available("/volumes", "volume", json!({"volume": {"snapshot_id": s}}))?;
            from.push(t);
            let (t, _) = c.until_available(
                "/volumes",
                "volume",
                json!({"volume": {"source_volid": source}}),
            )?;
            clone.push(t);
            if round < 3 {
                let (t, _) = c.until_available(
                    "/volumes",
                    "volume",
                    json!({"volume": {"snapshot_id": s, "volume_type": "by-copy"}}),
                )?;
                copy.push(t);
                let frozen = rt.block_on(async {
                    let mut conn = app.store().read().await?;
                    let s = scoria_store::snapshots::snapshot_get(&mut conn, s.parse()?)
                        .await?
                        .context("snapshot")?;
                    let i =
                        scoria_store::images::image_get(&mut conn, s.image_id.context("image")?)
                            .await?
                            .context("image record")?;
                    Ok::<_, anyhow::Error>(dir.join("volumes").join(i.name))
                })?;
                let out = dir.join(format!("bare-{gib}-{round}.qcow2"));
                let t = Instant::now();
                let status = std::process::Command::new("qemu-img")
                    .args(["convert", "-q", "-f", "qcow2", "-O", "qcow2"])
                    .arg(&frozen)
                    .arg(&out)
                    .status()?;
                anyhow::ensure!(status.success(), "qemu-img convert failed");
                bare.push(t.elapsed());
                std::fs::remove_file(&out)?;
            }
        }
        let (s, f, k, p, q) = (
            median(&mut snap),
            median(&mut from),
            median(&mut clone),
            median(&mut copy),
            median(&mut bare),
        );
        println!(
            "{:<10} {:>12} {:>16} {:>12} {:>18} {:>18} {:>7.2}×",
            format!("{gib} GiB"),
            ms(s),
            ms(f),
            ms(k),
            ms(p),
            ms(q),
            p.as_secs_f64() / q.as_secs_f64()
        );
        medians.push((s, f, k));
    }
    let r = |a: Duration, b: Duration| b.as_secs_f64() / a.as_secs_f64();
    println!(
        "100 GiB / 1 GiB (medians): snapshot {:.2}×, from snapshot {:.2}×, clone {:.2}× (constant time: about 1×)",
        r(medians[0].0, medians[1].0),
        r(medians[0].1, medians[1].1),
        r(medians[0].2, medians[1].2)
    );
    println!(
        "ratio: the performance strategy's copy (request to available) over a bare qemu-img convert"
    );
    rt.block_on(app.shutdown(Duration::from_secs(5)));
    Ok(())
}
