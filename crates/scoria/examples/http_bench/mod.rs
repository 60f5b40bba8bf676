//! What the HTTP benchmarks share: a whole Scoria served in this process on
//! 127.0.0.1 (a temporary data directory, the real file backend), an admin
//! logged in through Keystone, a Block Storage client that polls to
//! `available`, and the figures' helpers.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use scoria_core::{App, Config};
use scoria_failpoints::Failpoints;
use serde_json::{Value, json};

const PASSWORD: &str = "bench-password";

pub struct Client {
    pub agent: ureq::Agent,
    /// `http://…/v3/{project}`.
    pub base: String,
    pub token: String,
    /// `http://…`.
    pub url: String,
    pub project: String,
}

impl Client {
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

    /// POST `body` to `path`, then poll `GET {path}/{id}` until `available`;
    /// the time from the request to the first `available` answer.
    pub fn until_available(
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

pub fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Serve a fresh Scoria whose data directory is `data` on 127.0.0.1 and log
/// in as its admin; the app (for reading its records) and the client.
pub fn start(rt: &tokio::runtime::Runtime, data: &Path) -> anyhow::Result<(App, Client)> {
    let (app, url) = rt.block_on(async {
        let mut config = Config::with_data_dir(data.to_path_buf());
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
    let client = Client {
        agent,
        base: format!("{url}/v3/{project}"),
        token,
        url,
        project,
    };
    Ok((app, client))
}
