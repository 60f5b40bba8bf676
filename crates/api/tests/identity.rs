//! Identity v3 over HTTP, hermetic: a fresh data directory per test, requests
//! through the router in memory (no sockets).

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use scoria_core::{App, Config, DriverConfig, PasswordCost};
use serde_json::{Value, json};
use tower::ServiceExt;

const PUBLIC: &str = "http://scoria.test:8776";

struct Api {
    router: Router,
    _dir: tempfile::TempDir,
}

/// A response: status, headers, JSON body (`Null` when empty).
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

impl Api {
    async fn new() -> Api {
        Self::with(|_| {}).await
    }

    async fn with(tweak: impl FnOnce(&mut Config)) -> Api {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = Config::with_data_dir(dir.path().to_path_buf());
        c.store.durability = "normal".parse().expect("durability");
        c.backends[0].driver = DriverConfig::Memory { capacity_gib: 100 };
        c.password_cost = PasswordCost::TestOnlyMinimal;
        c.admin_password = Some("admin-secret".into());
        c.public_url = PUBLIC.into();
        tweak(&mut c);
        let app = App::open(c, scoria_failpoints::Failpoints::new())
            .await
            .expect("open");
        Api {
            router: scoria_api::router(app),
            _dir: dir,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        subject: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("x-auth-token", t);
        }
        if let Some(s) = subject {
            req = req.header("x-subject-token", s);
        }
        let body = match body {
            Some(Value::String(raw)) => Body::from(raw),
            Some(v) => {
                req = req.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let resp = self
            .router
            .clone()
            .oneshot(req.body(body).expect("request"))
            .await
            .expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("{path}: not JSON: {}", String::from_utf8_lossy(&bytes)))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None, None).await
    }

    /// Log in by user and domain name; scoped to a project by name (in the
    /// default domain) or unscoped.
    async fn login(&self, user: &str, password: &str, project: Option<&str>) -> Reply {
        let mut auth = json!({"identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"name": "Default"}, "password": password}}}});
        if let Some(p) = project {
            auth["scope"] = json!({"project": {"name": p, "domain": {"id": "default"}}});
        }
        self.call(
            Method::POST,
            "/identity/v3/auth/tokens",
            None,
            None,
            Some(json!({ "auth": auth })),
        )
        .await
    }

    async fn token(&self, user: &str, password: &str, project: Option<&str>) -> String {
        let r = self.login(user, password, project).await;
        assert_eq!(r.status, StatusCode::CREATED, "{user}: {}", r.body);
        r.header("x-subject-token").to_owned()
    }

    async fn admin(&self) -> String {
        self.token("admin", "admin-secret", Some("admin")).await
    }
}

/// Replace what changes from run to run (ids, times, tokens, URLs with ids)
/// by placeholders, so bodies can be compared whole.
fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                match k.as_str() {
                    "id" | "audit_ids" | "default_project_id" | "parent_id" => {
                        if !matches!(val.as_str(), Some("default")) {
                            *val = json!("<id>");
                        }
                    }
                    "expires_at" | "issued_at" => *val = json!("<time>"),
                    _ => redact(val),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        Value::String(s) => {
            // Project ids inside URLs.
            if let Some(i) = s.find("/v3/") {
                let rest = &s[i + 4..];
                if rest.len() >= 32 && rest[..32].chars().all(|c| c.is_ascii_hexdigit()) {
                    *s = format!("{}/v3/<id>{}", &s[..i], &rest[32..]);
                }
            }
        }
        _ => {}
    }
}

fn redacted(mut v: Value) -> Value {
    redact(&mut v);
    v
}

#[tokio::test]
async fn version_documents() {
    let api = Api::new().await;
    let doc = json!({
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{PUBLIC}/identity/v3/")}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
    });
    // (path, status, body)
    let cases = [
        (
            "/identity",
            300,
            json!({"versions": {"values": [doc.clone()]}}),
        ),
        (
            "/identity/",
            300,
            json!({"versions": {"values": [doc.clone()]}}),
        ),
        ("/identity/v3", 200, json!({"version": doc.clone()})),
        ("/identity/v3/", 200, json!({"version": doc.clone()})),
    ];
    for (path, status, body) in cases {
        let r = api.call(Method::GET, path, None, None, None).await;
        assert_eq!(r.status.as_u16(), status, "{path}");
        assert_eq!(r.body, body, "{path}");
        if status == 300 {
            assert_eq!(r.header("location"), format!("{PUBLIC}/identity/v3/"));
        }
    }
}

#[tokio::test]
async fn a_scoped_token_and_its_catalog() {
    let api = Api::new().await;
    let r = api.login("admin", "admin-secret", Some("admin")).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("x-subject-token").len(), 45);
    let project_id = r.body["token"]["project"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let expires = r.body["token"]["expires_at"].as_str().unwrap();
    assert_eq!(expires.len(), "2026-11-21T08:50:31.000000Z".len());
    assert!(expires.ends_with('Z'));
    // The catalog points at this server, with the project substituted.
    let volumev3 = &r.body["token"]["catalog"][0]["endpoints"][0]["url"];
    assert_eq!(volumev3, &json!(format!("{PUBLIC}/v3/{project_id}")));

    let endpoints = |url: &str| {
        json!([
            {"id": "<id>", "interface": "public", "region_id": "RegionOne", "url": url, "region": "RegionOne"},
            {"id": "<id>", "interface": "internal", "region_id": "RegionOne", "url": url, "region": "RegionOne"},
            {"id": "<id>", "interface": "admin", "region_id": "RegionOne", "url": url, "region": "RegionOne"},
        ])
    };
    let bs = format!("{PUBLIC}/v3/<id>");
    let expected = json!({"token": {
        "methods": ["password"],
        "user": {"domain": {"id": "default", "name": "Default"}, "id": "<id>", "name": "admin",
                 "password_expires_at": null},
        "audit_ids": "<id>",
        "expires_at": "<time>",
        "issued_at": "<time>",
        "project": {"domain": {"id": "default", "name": "Default"}, "id": "<id>", "name": "admin"},
        "is_domain": false,
        "roles": [{"id": "<id>", "name": "admin"}, {"id": "<id>", "name": "member"},
                  {"id": "<id>", "name": "reader"}],
        "catalog": [
            {"endpoints": endpoints(&bs), "id": "<id>", "type": "volumev3", "name": "cinderv3"},
            {"endpoints": endpoints(&bs), "id": "<id>", "type": "block-storage", "name": "cinder"},
            {"endpoints": endpoints(&format!("{PUBLIC}/identity/v3")), "id": "<id>",
             "type": "identity", "name": "keystone"},
            {"endpoints": endpoints(&format!("{PUBLIC}/image")), "id": "<id>",
             "type": "image", "name": "glance"},
        ],
    }});
    assert_eq!(redacted(r.body.clone()), expected);

    // Endpoint ids are stable across tokens and unique.
    let again = api.login("admin", "admin-secret", Some("admin")).await;
    assert_eq!(r.body["token"]["catalog"], again.body["token"]["catalog"]);
    let mut ids: Vec<&str> = r.body["token"]["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["endpoints"].as_array().unwrap().iter())
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 12);

    // The registered catalog (`openstack endpoint list`): templated URLs.
    let t = r.header("x-subject-token");
    let volumev3 = r.body["token"]["catalog"][0]["id"].as_str().unwrap();
    let services = api.get("/identity/v3/services?type=volumev3", t).await;
    assert_eq!(services.body["services"][0]["id"], json!(volumev3));
    assert_eq!(services.body["services"].as_array().unwrap().len(), 1);
    let eps = api
        .get(
            &format!("/identity/v3/endpoints?interface=public&service_id={volumev3}"),
            t,
        )
        .await;
    assert_eq!(eps.status, StatusCode::OK);
    let list = eps.body["endpoints"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["url"], json!(format!("{PUBLIC}/v3/%(project_id)s")));

    // ?nocatalog, and an unscoped token: no catalog.
    let nocat = api
        .call(
            Method::POST,
            "/identity/v3/auth/tokens?nocatalog",
            None,
            None,
            Some(
                json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"id": "default"}, "password": "admin-secret"}}},
                "scope": {"project": {"id": project_id}}}}),
            ),
        )
        .await;
    assert_eq!(nocat.status, StatusCode::CREATED);
    assert!(nocat.body["token"].get("catalog").is_none());
    assert_eq!(nocat.body["token"]["roles"].as_array().unwrap().len(), 3);
    let unscoped = api
        .call(
            Method::POST,
            "/identity/v3/auth/tokens",
            None,
            None,
            Some(
                json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"name": "Default"}, "password": "admin-secret"}}},
                "scope": "unscoped"}}),
            ),
        )
        .await;
    assert_eq!(unscoped.status, StatusCode::CREATED);
    let unscoped_token = unscoped.header("x-subject-token").to_owned();
    assert_eq!(
        redacted(unscoped.body),
        json!({"token": {
            "methods": ["password"],
            "user": {"domain": {"id": "default", "name": "Default"}, "id": "<id>", "name": "admin",
                     "password_expires_at": null},
            "audit_ids": "<id>", "expires_at": "<time>", "issued_at": "<time>",
        }})
    );
    // The catalog of the caller's project.
    let t = r.header("x-subject-token");
    let cat = api.get("/identity/v3/auth/catalog", t).await;
    assert_eq!(cat.status, StatusCode::OK);
    assert_eq!(cat.body["catalog"], r.body["token"]["catalog"]);
    assert_eq!(
        api.get("/identity/v3/auth/catalog", &unscoped_token)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn failed_logins_and_malformed_requests_get_keystone_errors() {
    let api = Api::new().await;
    let pw = |user: Value| json!({"auth": {"identity": {"methods": ["password"], "password": {"user": user}}}});
    // (what, body, status)
    let cases: Vec<(&str, Value, u16)> = vec![
        (
            "wrong password",
            pw(json!({"name": "admin", "domain": {"name": "Default"}, "password": "x"})),
            401,
        ),
        (
            "unknown user",
            pw(json!({"name": "nobody", "domain": {"name": "Default"}, "password": "x"})),
            401,
        ),
        (
            "no password",
            pw(json!({"name": "admin", "domain": {"name": "Default"}})),
            401,
        ),
        (
            "name without domain",
            pw(json!({"name": "admin", "password": "x"})),
            400,
        ),
        ("not JSON", json!("{nope"), 400),
        ("no auth", json!({"x": 1}), 400),
        (
            // Scoria has no domain roles (system scope: `system_scope.rs`).
            "domain scope",
            json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": "admin", "domain": {"name": "Default"}, "password": "admin-secret"}}},
                "scope": {"domain": {"id": "default"}}}}),
            401,
        ),
        (
            "a system other than all",
            json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": "admin", "domain": {"name": "Default"}, "password": "admin-secret"}}},
                "scope": {"system": {"all": false}}}}),
            400,
        ),
    ];
    let mut messages = vec![];
    for (what, body, status) in cases {
        let r = api
            .call(
                Method::POST,
                "/identity/v3/auth/tokens",
                None,
                None,
                Some(body),
            )
            .await;
        assert_eq!(r.status.as_u16(), status, "{what}: {}", r.body);
        assert_eq!(r.body["error"]["code"], status, "{what}");
        assert!(r.body["error"]["title"].is_string(), "{what}");
        if status == 401 {
            assert_eq!(
                r.header("www-authenticate"),
                format!("Keystone uri=\"{PUBLIC}/identity\""),
                "{what}"
            );
            messages.push(r.body["error"]["message"].clone());
        }
    }
    assert_eq!(messages[0], messages[1], "no user enumeration");

    // Unknown routes and methods under /identity answer like Keystone.
    let r = api
        .call(Method::GET, "/identity/v3/nothing", None, None, None)
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body["error"]["title"].as_str()),
        (404, Some("Not Found"))
    );
    let r = api
        .call(Method::PUT, "/identity/v3/users", None, None, None)
        .await;
    assert_eq!(r.status.as_u16(), 405);
    assert_eq!(r.body["error"]["code"], 405);
}

#[tokio::test]
async fn every_route_needs_a_token() {
    let api = Api::new().await;
    for (method, path) in scoria_api::routes::IDENTITY {
        let method: Method = method.to_uppercase().parse().unwrap();
        let path = format!("/identity{path}")
            .replace("{project_id}", "p")
            .replace("{user_id}", "u")
            .replace("{role_id}", "r")
            .replace("{domain_id}", "default");
        let body = (method == Method::POST || method == Method::PATCH).then(|| json!({}));
        let r = api
            .call(method.clone(), &path, Some("forged"), Some("x"), body)
            .await;
        let want = if method == Method::POST && path.ends_with("/auth/tokens") {
            // Issuing a token is the one thing done without one.
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(r.status, want, "{method} {path}");
    }
}

#[tokio::test]
async fn validate_and_revoke_reach_block_storage() {
    let api = Api::new().await;
    let admin = api.admin().await;
    let r = api.login("admin", "admin-secret", Some("admin")).await;
    let token = r.header("x-subject-token").to_owned();
    let project = r.body["token"]["project"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let volumes = format!("/v3/{project}/volumes");
    assert_eq!(api.get(&volumes, &token).await.status, StatusCode::OK);

    // Check and show, as admin and as the owner.
    for caller in [&admin, &token] {
        let shown = api
            .call(
                Method::GET,
                "/identity/v3/auth/tokens",
                Some(caller),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(shown.status, StatusCode::OK);
        assert_eq!(shown.header("x-subject-token"), token);
        assert_eq!(
            shown.body["token"]["audit_ids"],
            r.body["token"]["audit_ids"]
        );
        let head = api
            .call(
                Method::HEAD,
                "/identity/v3/auth/tokens",
                Some(caller),
                Some(&token),
                None,
            )
            .await;
        assert_eq!((head.status, head.body), (StatusCode::OK, Value::Null));
    }
    // Revoke: gone everywhere.
    let del = api
        .call(
            Method::DELETE,
            "/identity/v3/auth/tokens",
            Some(&admin),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    let r = api.get(&volumes, &token).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["error"]["code"], 401);
    for method in [Method::GET, Method::HEAD, Method::DELETE] {
        let r = api
            .call(
                method.clone(),
                "/identity/v3/auth/tokens",
                Some(&admin),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method}");
    }
    let r = api
        .call(
            Method::GET,
            "/identity/v3/auth/tokens",
            Some(&admin),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // A forged token never works.
    assert_eq!(
        api.get(&volumes, "forged").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let api = Api::with(|c| c.token_ttl = Duration::from_millis(300)).await;
    let r = api.login("admin", "admin-secret", Some("admin")).await;
    let token = r.header("x-subject-token").to_owned();
    let volumes = format!(
        "/v3/{}/volumes",
        r.body["token"]["project"]["id"].as_str().unwrap()
    );
    assert_eq!(api.get(&volumes, &token).await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        api.get(&volumes, &token).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.get("/identity/v3/auth/projects", &token).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// The calls tempest makes in `test_update_default_quota`, with the
/// reference's shapes.
#[tokio::test]
async fn tempest_project_round_trip() {
    let api = Api::new().await;
    let admin = api.admin().await;
    let r = api.get("/identity/v3/domains?name=Default", &admin).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body,
        json!({
            "domains": [{"id": "default", "name": "Default", "description": "The default domain",
                         "enabled": true, "tags": [], "options": {},
                         "links": {"self": format!("{PUBLIC}/identity/v3/domains/default")}}],
            "links": {"next": null, "self": format!("{PUBLIC}/identity/v3/domains?name=Default"),
                      "previous": null},
        })
    );
    let r = api
        .call(
            Method::POST,
            "/identity/v3/projects",
            Some(&admin),
            None,
            Some(
                json!({"project": {"description": "tempest-desc", "domain_id": "default",
                                    "name": "tempest-quota_class_tenant"}}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let id = r.body["project"]["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert_eq!(
        r.body,
        json!({"project": {
            "id": id, "name": "tempest-quota_class_tenant", "domain_id": "default",
            "description": "tempest-desc", "enabled": true, "parent_id": "default",
            "is_domain": false, "tags": [], "options": {},
            "links": {"self": format!("{PUBLIC}/identity/v3/projects/{id}")},
        }})
    );
    let r = api
        .call(
            Method::DELETE,
            &format!("/identity/v3/projects/{id}"),
            Some(&admin),
            None,
            None,
        )
        .await;
    assert_eq!((r.status, r.body), (StatusCode::NO_CONTENT, Value::Null));
}

/// One step of a management scenario: who calls what, and the status.
struct Step {
    who: &'static str,
    method: Method,
    path: String,
    body: Option<Value>,
    status: u16,
}

fn step(who: &'static str, method: Method, path: &str, body: Option<Value>, status: u16) -> Step {
    Step {
        who,
        method,
        path: path.to_owned(),
        body,
        status,
    }
}

#[tokio::test]
async fn management_round_trips_and_policy() {
    let api = Api::new().await;
    let admin = api.admin().await;
    let p = |path: &str| format!("/identity/v3{path}");
    let post = |path: &str, body: Value| {
        let api = &api;
        let admin = admin.clone();
        let path = p(path);
        async move {
            let r = api
                .call(Method::POST, &path, Some(&admin), None, Some(body))
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{path}: {}", r.body);
            r.body
        }
    };
    let project = post(
        "/projects",
        json!({"project": {"name": "p1", "description": "one"}}),
    )
    .await;
    let pid = project["project"]["id"].as_str().unwrap().to_owned();
    let alice = post(
        "/users",
        json!({"user": {"name": "alice", "password": "alice-pw", "email": "a@example.com",
                        "default_project_id": pid}}),
    )
    .await;
    let aid = alice["user"]["id"].as_str().unwrap().to_owned();
    assert_eq!(alice["user"]["email"], "a@example.com");
    assert!(alice["user"].get("password").is_none());
    let bob = post(
        "/users",
        json!({"user": {"name": "bob", "password": "bob-pw"}}),
    )
    .await;
    let bid = bob["user"]["id"].as_str().unwrap().to_owned();
    let roles = api.get(&p("/roles?name=member"), &admin).await;
    let member = roles.body["roles"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(roles.body["roles"].as_array().unwrap().len(), 1);
    let grant = p(&format!("/projects/{pid}/users/{aid}/roles/{member}"));

    // Before the grant alice cannot scope to p1 (401); with no scope she
    // gets an unscoped token although p1 is her default project.
    assert_eq!(
        api.login("alice", "alice-pw", Some("p1")).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = api.login("alice", "alice-pw", None).await;
    assert!(r.body["token"].get("project").is_none());

    let steps = vec![
        step(
            "admin",
            Method::POST,
            &p("/projects"),
            Some(json!({"project": {"name": "p1"}})),
            409,
        ),
        step(
            "admin",
            Method::POST,
            &p("/users"),
            Some(json!({"user": {"name": "bob"}})),
            409,
        ),
        step(
            "admin",
            Method::POST,
            &p("/projects"),
            Some(json!({"project": {}})),
            400,
        ),
        step(
            "admin",
            Method::POST,
            &p("/projects"),
            Some(json!({"project": {"name": 3}})),
            400,
        ),
        step(
            "admin",
            Method::POST,
            &p("/projects"),
            Some(json!("[1]")),
            400,
        ),
        step(
            "admin",
            Method::GET,
            &p(&format!("/projects/{pid}")),
            None,
            200,
        ),
        step("admin", Method::GET, &p("/projects/nope"), None, 404),
        step(
            "admin",
            Method::PATCH,
            &p(&format!("/projects/{pid}")),
            Some(json!({"project": {"description": "uno"}})),
            200,
        ),
        step(
            "admin",
            Method::PATCH,
            &p(&format!("/projects/{pid}")),
            Some(json!({"project": {"domain_id": "x"}})),
            400,
        ),
        step("admin", Method::PUT, &grant, None, 204),
        step("admin", Method::PUT, &grant, None, 204),
        step("admin", Method::HEAD, &grant, None, 204),
        step(
            "admin",
            Method::PUT,
            &p(&format!("/projects/{pid}/users/{aid}/roles/nope")),
            None,
            404,
        ),
        step(
            "admin",
            Method::HEAD,
            &p(&format!("/projects/{pid}/users/{bid}/roles/{member}")),
            None,
            404,
        ),
        step(
            "admin",
            Method::GET,
            &p(&format!("/projects/{pid}/users/{aid}/roles")),
            None,
            200,
        ),
        step(
            "admin",
            Method::GET,
            &p(&format!("/users/{aid}")),
            None,
            200,
        ),
        step(
            "admin",
            Method::PATCH,
            &p(&format!("/users/{bid}")),
            Some(json!({"user": {"enabled": "yes"}})),
            400,
        ),
        step(
            "admin",
            Method::PATCH,
            &p(&format!("/users/{bid}")),
            Some(json!({"user": {"description": "B"}})),
            200,
        ),
        step("admin", Method::GET, &p("/role_inferences"), None, 200),
        step("admin", Method::GET, &p("/services"), None, 200),
        step(
            "admin",
            Method::GET,
            &p("/endpoints?interface=public"),
            None,
            200,
        ),
        step("alice", Method::GET, &p("/endpoints"), None, 403),
        // alice, a member of p1.
        step(
            "alice",
            Method::GET,
            &p(&format!("/users/{aid}")),
            None,
            200,
        ),
        step(
            "alice",
            Method::GET,
            &p(&format!("/users/{aid}/projects")),
            None,
            200,
        ),
        step("alice", Method::GET, &p("/auth/projects"), None, 200),
        step(
            "alice",
            Method::GET,
            &p(&format!("/projects/{pid}")),
            None,
            200,
        ),
        step("alice", Method::GET, &p("/domains/default"), None, 200),
        step(
            "alice",
            Method::GET,
            &p(&format!("/users/{bid}")),
            None,
            403,
        ),
        step("alice", Method::GET, &p("/users"), None, 403),
        step("alice", Method::GET, &p("/projects"), None, 403),
        step("alice", Method::GET, &p("/domains"), None, 403),
        step("alice", Method::GET, &p("/roles"), None, 403),
        step("alice", Method::GET, &p("/role_assignments"), None, 403),
        step(
            "alice",
            Method::POST,
            &p("/projects"),
            Some(json!({"project": {"name": "mine"}})),
            403,
        ),
        step(
            "alice",
            Method::POST,
            &p("/users"),
            Some(json!({"user": {"name": "eve"}})),
            403,
        ),
        step("alice", Method::PUT, &grant, None, 403),
        step(
            "alice",
            Method::DELETE,
            &p(&format!("/projects/{pid}")),
            None,
            403,
        ),
        step(
            "alice",
            Method::POST,
            &p(&format!("/users/{bid}/password")),
            Some(json!({"user": {"password": "x", "original_password": "bob-pw"}})),
            403,
        ),
        step(
            "alice",
            Method::POST,
            &p(&format!("/users/{aid}/password")),
            Some(json!({"user": {"password": "x", "original_password": "wrong"}})),
            401,
        ),
        step(
            "alice",
            Method::POST,
            &p(&format!("/users/{aid}/password")),
            Some(json!({"user": {"password": "x"}})),
            400,
        ),
    ];
    // alice logs in once admin's steps have granted her a role.
    let mut alice_token = String::new();
    for s in steps {
        if s.who == "alice" && alice_token.is_empty() {
            alice_token = api.token("alice", "alice-pw", Some("p1")).await;
        }
        let token = if s.who == "admin" {
            &admin
        } else {
            &alice_token
        };
        let r = api
            .call(s.method.clone(), &s.path, Some(token), None, s.body.clone())
            .await;
        assert_eq!(
            r.status.as_u16(),
            s.status,
            "{} {} {}: {}",
            s.who,
            s.method,
            s.path,
            r.body
        );
        if s.status == 403 {
            assert!(
                r.body["error"]["message"].as_str().unwrap().starts_with(
                    "You are not authorized to perform the requested action: identity:"
                ),
                "{}",
                r.body
            );
        }
    }
    // Now alice's token works on Block Storage; her default project scopes
    // her token when she asks for none.
    assert_eq!(
        api.get(&format!("/v3/{pid}/volumes"), &alice_token)
            .await
            .status,
        StatusCode::OK
    );
    let r = api.login("alice", "alice-pw", None).await;
    assert_eq!(r.body["token"]["project"]["id"], json!(pid));
    assert_eq!(
        r.body["token"]["roles"],
        json!([{"id": member, "name": "member"}, {"id": r.body["token"]["roles"][1]["id"], "name": "reader"}])
    );

    // Role assignment reports (the CLI's `role assignment list`).
    // (query, expected rows as user/project/role)
    let cases: Vec<(String, Vec<&str>)> = vec![
        (format!("?scope.project.id={pid}"), vec!["alice/p1/member"]),
        (
            format!("?user.id={aid}&effective"),
            vec!["alice/p1/member", "alice/p1/reader"],
        ),
        (
            format!("?user.id={aid}&scope.project.id={pid}&include_names=True"),
            vec!["alice/p1/member"],
        ),
        (format!("?role.id={member}"), vec!["alice/p1/member"]),
        ("?user.id=nobody".to_string(), vec![]),
        ("?group.id=g".to_string(), vec![]),
        (
            "?include_names".to_string(),
            vec!["admin/admin/admin", "admin/system/admin", "alice/p1/member"],
        ),
        // The bootstrap admin is admin of the system (system rows only).
        ("?scope.system=all".to_string(), vec!["admin/system/admin"]),
    ];
    for (q, want) in cases {
        let r = api
            .get(&p(&format!("/role_assignments{q}&include_names")), &admin)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{q}");
        let mut got: Vec<String> = r.body["role_assignments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let scope = match a["scope"].get("system") {
                    Some(s) => {
                        assert_eq!(s, &json!({"all": true}));
                        "system"
                    }
                    None => a["scope"]["project"]["name"].as_str().unwrap(),
                };
                format!(
                    "{}/{scope}/{}",
                    a["user"]["name"].as_str().unwrap(),
                    a["role"]["name"].as_str().unwrap()
                )
            })
            .collect();
        got.sort();
        assert_eq!(got, want, "{q}");
    }
    let r = api
        .get(
            &p(&format!("/role_assignments?scope.project.id={pid}")),
            &admin,
        )
        .await;
    assert_eq!(
        redacted(r.body["role_assignments"][0].clone()),
        json!({
            "links": {"assignment": format!("{PUBLIC}/identity/v3/projects/{pid}/users/{aid}/roles/{member}")},
            "role": {"id": "<id>"}, "scope": {"project": {"id": "<id>"}}, "user": {"id": "<id>"},
        })
    );

    // Alice changes her password: her tokens die, the new one works.
    let r = api
        .call(
            Method::POST,
            &p(&format!("/users/{aid}/password")),
            Some(&alice_token),
            None,
            Some(json!({"user": {"password": "new-pw", "original_password": "alice-pw"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        api.get(&format!("/v3/{pid}/volumes"), &alice_token)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let alice_token = api.token("alice", "new-pw", Some("p1")).await;

    // Taking the role back ends her access; then clean everything up.
    let cleanup = vec![
        step("admin", Method::DELETE, &grant, None, 204),
        step("admin", Method::DELETE, &grant, None, 404),
        step("admin", Method::HEAD, &grant, None, 404),
        step("alice", Method::GET, &p("/auth/projects"), None, 401),
        step(
            "admin",
            Method::DELETE,
            &p(&format!("/users/{aid}")),
            None,
            204,
        ),
        step(
            "admin",
            Method::DELETE,
            &p(&format!("/users/{aid}")),
            None,
            404,
        ),
        step(
            "admin",
            Method::DELETE,
            &p(&format!("/projects/{pid}")),
            None,
            204,
        ),
        step(
            "admin",
            Method::GET,
            &p(&format!("/projects/{pid}")),
            None,
            404,
        ),
        step("admin", Method::GET, &p("/projects?name=p1"), None, 200),
    ];
    for s in cleanup {
        let token = if s.who == "admin" {
            &admin
        } else {
            &alice_token
        };
        let r = api
            .call(s.method.clone(), &s.path, Some(token), None, s.body.clone())
            .await;
        assert_eq!(
            r.status.as_u16(),
            s.status,
            "{} {} {}: {}",
            s.who,
            s.method,
            s.path,
            r.body
        );
    }
    let r = api.get(&p("/projects?name=p1"), &admin).await;
    assert_eq!(r.body["projects"], json!([]));
}

#[tokio::test]
async fn a_project_with_volumes_cannot_be_deleted() {
    let api = Api::new().await;
    let admin = api.admin().await;
    let r = api
        .call(
            Method::POST,
            "/identity/v3/projects",
            Some(&admin),
            None,
            Some(json!({"project": {"name": "busy"}})),
        )
        .await;
    let pid = r.body["project"]["id"].as_str().unwrap().to_owned();
    let me = api.login("admin", "admin-secret", Some("admin")).await;
    let uid = me.body["token"]["user"]["id"].as_str().unwrap().to_owned();
    let member = scoria_core::identity::MEMBER_ROLE_ID;
    let grant = format!("/identity/v3/projects/{pid}/users/{uid}/roles/{member}");
    assert_eq!(
        api.call(Method::PUT, &grant, Some(&admin), None, None)
            .await
            .status
            .as_u16(),
        204
    );
    let t = api.token("admin", "admin-secret", Some("busy")).await;
    let v = api
        .call(
            Method::POST,
            &format!("/v3/{pid}/volumes"),
            Some(&t),
            None,
            Some(json!({"volume": {"size": 1}})),
        )
        .await;
    assert_eq!(v.status, StatusCode::ACCEPTED, "{}", v.body);
    let r = api
        .call(
            Method::DELETE,
            &format!("/identity/v3/projects/{pid}"),
            Some(&admin),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("volume")
    );
}
