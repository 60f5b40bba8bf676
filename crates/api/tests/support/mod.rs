//! A Scoria application in a temporary directory, driven in-process through
//! its HTTP router (no sockets), with accounts made through the Identity API.
#![allow(dead_code)]

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request};
use scoria_core::{App, Config, DriverConfig};
use scoria_failpoints::Failpoints;
use serde_json::{Value, json};
use tower::ServiceExt;

pub mod steps;

/// Run one `qemu-io` command on a qcow2 file: whether it succeeded (a
/// `read -P` whose pattern does not match fails).
pub fn qemu_io(path: &std::path::Path, cmd: &str) -> bool {
    qemu_io_as("qcow2", path, cmd)
}

/// [`qemu_io`] on a file of `format`.
#[allow(clippy::disallowed_methods)]
pub fn qemu_io_as(format: &str, path: &std::path::Path, cmd: &str) -> bool {
    let out = std::process::Command::new("qemu-io")
        .args(["-f", format, "-c", cmd])
        .arg(path)
        .output()
        .expect("qemu-io");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    out.status.success() && !text.contains("Pattern verification failed")
}

/// Run `qemu-img ARGS` in `dir` (making foreign files); it must succeed.
#[allow(clippy::disallowed_methods)]
pub fn qemu_img(dir: &std::path::Path, args: &[&str]) {
    let ok = std::process::Command::new("qemu-img")
        .args(args)
        .current_dir(dir)
        .status()
        .expect("qemu-img")
        .success();
    assert!(ok, "qemu-img {args:?}");
}

pub const ADMIN_PASSWORD: &str = "api-tests-admin-password";

pub struct TestApp {
    pub dir: tempfile::TempDir,
    pub app: App,
    pub router: Router,
}

pub fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::with_data_dir(dir.to_path_buf());
    c.admin_password = Some(ADMIN_PASSWORD.into());
    c.store.durability = scoria_core::Durability::Normal;
    if let DriverConfig::File { fsync, .. } = &mut c.backends[0].driver {
        *fsync = false;
    }
    c.image_service.fsync = false;
    c
}

impl Drop for TestApp {
    fn drop(&mut self) {
        scoria_core::exports::kill_all_for_tests(&self.app.config.exports.run_dir);
    }
}

/// The reply to one request.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
}

impl TestApp {
    pub async fn new() -> TestApp {
        Self::with_config(|_| {}).await
    }

    /// A test app whose configuration `change` adjusts first (more backends…).
    pub async fn with_config(change: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = config(dir.path());
        change(&mut c);
        let app = App::open(c, Failpoints::new()).await.expect("open app");
        let router = scoria_api::router(app.clone());
        TestApp { dir, app, router }
    }

    /// Send a request; `body` is sent as is (bytes) when given.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).expect("method"))
            .uri(path);
        if let Some(t) = token {
            req = req.header("x-auth-token", t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let typed = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        let req = match body {
            Some(b) if typed => req.body(Body::from(b)),
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b)),
            None => req.body(Body::empty()),
        }
        .expect("request");
        let resp = self.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
            .await
            .expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        self.raw(
            method,
            path,
            token,
            &[],
            body.map(|b| serde_json::to_vec(&b).expect("json")),
        )
        .await
    }

    /// [`call`](Self::call) at microversion `version` (e.g. "3.47").
    pub async fn call_v(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        version: &str,
    ) -> Reply {
        let header = format!("volume {version}");
        self.raw(
            method,
            path,
            token,
            &[("OpenStack-API-Version", header.as_str())],
            body.map(|b| serde_json::to_vec(&b).expect("json")),
        )
        .await
    }

    /// A token for `user` scoped to `project` (names in the Default domain).
    pub async fn login(&self, user: &str, password: &str, project: &str) -> (String, String) {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"name": "Default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"name": "Default"}}}}});
        let r = self
            .call("POST", "/identity/v3/auth/tokens", None, Some(body))
            .await;
        assert_eq!(r.status, 201, "login {user}: {:?}", r.body);
        let token = r
            .headers
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .expect("token")
            .to_owned();
        let project_id = r.body["token"]["project"]["id"]
            .as_str()
            .expect("project id")
            .to_owned();
        (token, project_id)
    }

    pub async fn admin(&self) -> (String, String) {
        self.login("admin", ADMIN_PASSWORD, "admin").await
    }

    /// Create a project; returns its id.
    pub async fn project(&self, admin: &str, name: &str) -> String {
        let r = self
            .call(
                "POST",
                "/identity/v3/projects",
                Some(admin),
                Some(json!({"project": {"name": name, "domain_id": "default"}})),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.body["project"]["id"].as_str().expect("id").to_owned()
    }

    /// Create a user with `role` on `project_id`; returns the user id.
    pub async fn user(
        &self,
        admin: &str,
        name: &str,
        password: &str,
        project_id: &str,
        role: &str,
    ) -> String {
        let r = self
            .call(
                "POST",
                "/identity/v3/users",
                Some(admin),
                Some(json!({"user": {"name": name, "password": password, "domain_id": "default", "default_project_id": project_id}})),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let uid = r.body["user"]["id"].as_str().expect("id").to_owned();
        let roles = self
            .call(
                "GET",
                &format!("/identity/v3/roles?name={role}"),
                Some(admin),
                None,
            )
            .await;
        let rid = roles.body["roles"][0]["id"]
            .as_str()
            .expect("role")
            .to_owned();
        let r = self
            .call(
                "PUT",
                &format!("/identity/v3/projects/{project_id}/users/{uid}/roles/{rid}"),
                Some(admin),
                None,
            )
            .await;
        assert_eq!(r.status, 204, "{:?}", r.body);
        uid
    }

    /// Create an available 1 GiB volume in the token's project.
    pub async fn volume(&self, token: &str, project: &str) -> String {
        let r = self
            .call(
                "POST",
                &format!("/v3/{project}/volumes"),
                Some(token),
                Some(json!({"volume": {"size": 1, "name": "fixture"}})),
            )
            .await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        let id = r.body["volume"]["id"].as_str().expect("id").to_owned();
        self.wait_status(token, project, &id, "available").await;
        id
    }

    /// Poll `GET path` until `done` holds for its reply (about 10 s at most).
    async fn wait_path(&self, token: &str, path: &str, done: impl Fn(&Reply) -> bool) -> bool {
        for _ in 0..5000 {
            let r = self.call("GET", path, Some(token), None).await;
            if done(&r) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        false
    }

    /// Poll volume `id` until `done` holds for its reply.
    async fn wait_volume(
        &self,
        token: &str,
        project: &str,
        id: &str,
        done: impl Fn(&Reply) -> bool,
    ) -> bool {
        let path = format!("/v3/{project}/volumes/{id}");
        self.wait_path(token, &path, done).await
    }

    /// Take an available snapshot of `volume` in the token's project.
    pub async fn snapshot(&self, token: &str, project: &str, volume: &str) -> String {
        let r = self
            .call(
                "POST",
                &format!("/v3/{project}/snapshots"),
                Some(token),
                Some(json!({"snapshot": {"volume_id": volume, "name": "fixture"}})),
            )
            .await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        let id = r.body["snapshot"]["id"].as_str().expect("id").to_owned();
        let path = format!("/v3/{project}/snapshots/{id}");
        let there = self.wait_path(token, &path, |r| {
            r.body["snapshot"]["status"] == "available"
        });
        assert!(there.await, "snapshot {id} never became available");
        id
    }

    /// Wait until snapshot `id` is gone (404).
    pub async fn wait_snapshot_gone(&self, token: &str, project: &str, id: &str) {
        let path = format!("/v3/{project}/snapshots/{id}");
        let gone = self.wait_path(token, &path, |r| r.status == 404);
        assert!(gone.await, "snapshot {id} is still there");
    }

    /// The file of an image on its (file) backend, as its record names it.
    pub async fn image_file(&self, image: scoria_model::ImageId) -> std::path::PathBuf {
        let mut c = self.app.store().read().await.expect("read");
        let i = scoria_store::images::image_get(&mut c, image)
            .await
            .expect("read image")
            .expect("the image");
        match self
            .app
            .env
            .backends
            .get(&i.backend)
            .map(|b| b.config.driver.clone())
        {
            Some(DriverConfig::File { path, .. }) => path.join(i.name),
            _ => self.dir.path().join("volumes").join(i.name),
        }
    }

    /// The file of volume `id`'s active image.
    pub async fn volume_file(&self, id: &str) -> std::path::PathBuf {
        let mut c = self.app.store().read().await.expect("read");
        let v = scoria_store::volumes::volume_get(&mut c, id.parse().expect("a volume id"))
            .await
            .expect("read volume")
            .expect("the volume");
        drop(c);
        self.image_file(v.image_id.expect("an active image")).await
    }

    /// Wait until volume `id` is gone (404).
    pub async fn wait_gone(&self, token: &str, project: &str, id: &str) {
        let gone = self.wait_volume(token, project, id, |r| r.status == 404);
        assert!(gone.await, "volume {id} is still there");
    }

    pub async fn wait_status(&self, token: &str, project: &str, id: &str, want: &str) {
        let there = self.wait_volume(token, project, id, |r| r.body["volume"]["status"] == want);
        assert!(there.await, "volume {id} never became {want}");
    }
}

impl TestApp {
    /// An admin token that has expired once the caller has slept 1.1 s:
    /// issued by a second handle on the same data directory whose tokens
    /// live one second.
    pub async fn short_lived_admin_token(&self) -> String {
        let mut c = config(self.dir.path());
        c.token_ttl = Duration::from_secs(1);
        let short = App::open(c, Failpoints::new()).await.expect("open");
        let t2 = TestApp {
            dir: tempfile::tempdir().expect("dir"),
            app: self.app.clone(),
            router: scoria_api::router(short),
        };
        t2.admin().await.0
    }
}

/// Fail unless each of `routes` (method, path template, as a route table
/// names them) is among `covered` (lower-case method, template): a route
/// added to a table without a row in its policy test fails the test.
pub fn assert_every_route_covered(
    what: &str,
    routes: &[(&str, &str)],
    covered: &[(String, String)],
) {
    for (method, path) in routes {
        assert!(
            covered.iter().any(|(m, p)| m == method && p == path),
            "{what} {method} {path} has no row in the policy table"
        );
    }
}

/// The callers most tests need: the admin, a member and a reader of project A,
/// a member of project B. Tokens are `(token, project id)`.
pub struct Personas {
    pub a: String,
    pub b: String,
    pub admin: (String, String),
    pub member: (String, String),
    pub reader: (String, String),
    pub other: (String, String),
}

impl TestApp {
    /// Make projects A and B and their users, and log everyone in.
    pub async fn personas(&self) -> Personas {
        let admin = self.admin().await;
        let a = self.project(&admin.0, "project-a").await;
        let b = self.project(&admin.0, "project-b").await;
        self.user(&admin.0, "a-member", "pw-a-member", &a, "member")
            .await;
        self.user(&admin.0, "a-reader", "pw-a-reader", &a, "reader")
            .await;
        self.user(&admin.0, "b-member", "pw-b-member", &b, "member")
            .await;
        Personas {
            member: self.login("a-member", "pw-a-member", "project-a").await,
            reader: self.login("a-reader", "pw-a-reader", "project-a").await,
            other: self.login("b-member", "pw-b-member", "project-b").await,
            admin,
            a,
            b,
        }
    }
}
