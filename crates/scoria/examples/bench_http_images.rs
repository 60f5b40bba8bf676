//! Volumes from images as users make them: through HTTP (Keystone token,
//! Image v2 upload, Block Storage v3 JSON, a 2 ms status poll), against the
//! whole server in this process on 127.0.0.1 and the real file backend. Two
//! qcow2 images holding the same 256 MiB of data, of 1 GiB and 100 GiB
//! virtual size. For each: the first volume from it (the hardened import
//! that fills the backend's image cache: inspection, `qemu-img info` under
//! limits, convert) beside a bare `qemu-img convert` of the same file in the
//! same run, as a throughput ratio; then N volumes from the cached copy
//! (overlays), whose time should not depend on the image's size. Prints
//! figures and ratios; asserts nothing.
//!
//! ```text
//! cargo run --release -p scoria --example bench_http_images -- [rounds]
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

fn qemu_img(args: &[&str]) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let status = std::process::Command::new("qemu-img").args(args).status()?;
    anyhow::ensure!(status.success(), "qemu-img {args:?} failed");
    Ok(t.elapsed())
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
        let mut config = Config::with_data_dir(dir.join("data"));
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
        agent: agent.clone(),
        base: format!("{url}/v3/{project}"),
        token: token.clone(),
    };
    let (code, v) = c.call(
        "PUT",
        &format!("/os-quota-sets/{project}"),
        Some(json!({"quota_set": {"volumes": -1, "gigabytes": -1}})),
    )?;
    anyhow::ensure!(code == 200, "quota: {code} {v}");

    println!(
        "{rounds} cached rounds per image, through HTTP at {url}, 256 MiB of data in each image"
    );
    println!(
        "{:<10} {:>14} {:>18} {:>8} {:>18} {:>8} {:>16}",
        "virtual",
        "first (fill)",
        "qemu-img convert",
        "ratio",
        "convert + fsync",
        "ratio",
        "from cache (p50)"
    );
    let mut cached = Vec::new();
    for gib in [1_u64, 100] {
        let file = dir.join(format!("image-{gib}.qcow2"));
        let f = file.to_str().context("path")?;
        qemu_img(&["create", "-q", "-f", "qcow2", f, &format!("{gib}G")])?;
        for i in 0..16u64 {
            rt.block_on(scoria_storage::qemu::write_pattern(
                &file,
                scoria_storage::Format::Qcow2,
                i * (64 << 20),
                16 << 20,
                0x80 + i as u8,
            ))?;
        }
        let created: Value = agent
            .post(&format!("{url}/image/v2/images"))
            .set("X-Auth-Token", &token)
            .send_json(json!({"name": format!("img-{gib}"), "disk_format": "qcow2",
                "container_format": "bare"}))?
            .into_json()?;
        let image = created["id"].as_str().context("image id")?.to_owned();
        agent
            .put(&format!("{url}/image/v2/images/{image}/file"))
            .set("X-Auth-Token", &token)
            .set("Content-Type", "application/octet-stream")
            .send(std::fs::File::open(&file)?)?;
        let body = json!({"volume": {"imageRef": image, "size": gib}});
        let (first, _) = c.until_available("/volumes", "volume", body.clone())?;
        let out = dir.join(format!("bare-{gib}.qcow2"));
        let o = out.to_str().context("path")?;
        let convert = ["convert", "-q", "-f", "qcow2", "-O", "qcow2", f, o];
        let bare = qemu_img(&convert)?;
        std::fs::remove_file(&out)?;
        // The same, made durable as Scoria makes every image (fsync).
        let t = Instant::now();
        qemu_img(&convert)?;
        std::fs::File::open(&out)?.sync_all()?;
        let durable = t.elapsed();
        std::fs::remove_file(&out)?;
        let mut times = Vec::new();
        for _ in 0..rounds {
            times.push(c.until_available("/volumes", "volume", body.clone())?.0);
        }
        let p50 = median(&mut times);
        println!(
            "{:<10} {:>14} {:>18} {:>7.0}% {:>18} {:>7.0}% {:>16}",
            format!("{gib} GiB"),
            ms(first),
            ms(bare),
            100.0 * bare.as_secs_f64() / first.as_secs_f64(),
            ms(durable),
            100.0 * durable.as_secs_f64() / first.as_secs_f64(),
            ms(p50)
        );
        cached.push(p50);
    }
    println!(
        "from cache, 100 GiB / 1 GiB (medians): {:.2}× (constant time: about 1×)",
        cached[1].as_secs_f64() / cached[0].as_secs_f64()
    );
    println!(
        "ratio: throughput of the first volume from an image (request to available, every check included) as a share of a bare qemu-img convert, and of one made durable (fsync) as Scoria makes its images"
    );
    rt.block_on(app.shutdown(Duration::from_secs(5)));
    Ok(())
}
