//! Volume transfers over HTTP: scripts of requests by the members and readers
//! of two projects, each step with its expected status and, where it matters,
//! the state that must hold after it (the volume's status and owner, the
//! pending transfers, both projects' quota usage). Then the views by
//! microversion, and concurrent accepts of one transfer.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};
use support::TestApp;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    AMember,
    AReader,
    BMember,
    BReader,
    Admin,
}

/// Two projects with a member and a reader each, and an admin.
struct World {
    t: TestApp,
    admin: String,
    admin_project: String,
    a: String,
    b: String,
    a_member: String,
    a_reader: String,
    b_member: String,
    b_reader: String,
    b_member_id: String,
}

impl World {
    async fn new() -> World {
        let t = TestApp::new().await;
        let (admin, admin_project) = t.admin().await;
        let a = t.project(&admin, "project-a").await;
        let b = t.project(&admin, "project-b").await;
        t.user(&admin, "a-member", "pw-a-member", &a, "member")
            .await;
        t.user(&admin, "a-reader", "pw-a-reader", &a, "reader")
            .await;
        let b_member_id = t
            .user(&admin, "b-member", "pw-b-member", &b, "member")
            .await;
        t.user(&admin, "b-reader", "pw-b-reader", &b, "reader")
            .await;
        let (a_member, _) = t.login("a-member", "pw-a-member", "project-a").await;
        let (a_reader, _) = t.login("a-reader", "pw-a-reader", "project-a").await;
        let (b_member, _) = t.login("b-member", "pw-b-member", "project-b").await;
        let (b_reader, _) = t.login("b-reader", "pw-b-reader", "project-b").await;
        World {
            t,
            admin,
            admin_project,
            a,
            b,
            a_member,
            a_reader,
            b_member,
            b_reader,
            b_member_id,
        }
    }

    fn caller(&self, who: Who) -> (&str, &str) {
        match who {
            Who::AMember => (&self.a_member, &self.a),
            Who::AReader => (&self.a_reader, &self.a),
            Who::BMember => (&self.b_member, &self.b),
            Who::BReader => (&self.b_reader, &self.b),
            Who::Admin => (&self.admin, &self.admin_project),
        }
    }

    /// An available volume of `size` GiB with metadata, in `who`'s project.
    async fn volume(&self, who: Who, size: i64) -> String {
        let (token, project) = self.caller(who);
        let r = self
            .t
            .call(
                "POST",
                &format!("/v3/{project}/volumes"),
                Some(token),
                Some(json!({"volume": {"size": size, "name": "moving", "metadata": {"tier": "gold"}}})),
            )
            .await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        let id = r.body["volume"]["id"].as_str().expect("id").to_owned();
        self.t.wait_status(token, project, &id, "available").await;
        id
    }

    /// Set some of a project's limits.
    async fn limits(&self, project: &str, limits: Value) {
        let r = self
            .t
            .call(
                "PUT",
                &format!("/v3/{}/os-quota-sets/{project}", self.admin_project),
                Some(&self.admin),
                Some(json!({ "quota_set": limits })),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }

    /// (volumes, gigabytes) in use by a project; nothing may be left reserved.
    async fn usage(&self, project: &str) -> (i64, i64) {
        let r = self
            .t
            .call(
                "GET",
                &format!(
                    "/v3/{}/os-quota-sets/{project}?usage=true",
                    self.admin_project
                ),
                Some(&self.admin),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let q = &r.body["quota_set"];
        assert_eq!(q["volumes"]["reserved"], 0, "{q}");
        assert_eq!(q["gigabytes"]["reserved"], 0, "{q}");
        (
            q["volumes"]["in_use"].as_i64().expect("int"),
            q["gigabytes"]["in_use"].as_i64().expect("int"),
        )
    }

    /// What the admin sees of the volume and of all pending transfers.
    async fn state(&self, volume: &str) -> State {
        self.t.app.engine.wait_idle().await;
        let p = &self.admin_project;
        let r = self
            .t
            .call(
                "GET",
                &format!("/v3/{p}/volumes/{volume}"),
                Some(&self.admin),
                None,
            )
            .await;
        let volume = match r.status {
            404 => None,
            200 => {
                let owner = r.body["volume"]["os-vol-tenant-attr:tenant_id"]
                    .as_str()
                    .expect("tenant");
                let owner = if owner == self.a {
                    'A'
                } else if owner == self.b {
                    'B'
                } else {
                    '?'
                };
                let status = r.body["volume"]["status"].as_str().expect("status");
                Some((status.to_owned(), owner))
            }
            other => panic!("volume show: {other} {}", r.body),
        };
        let r = self
            .t
            .call(
                "GET",
                &format!("/v3/{p}/os-volume-transfer?all_tenants=true"),
                Some(&self.admin),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        State {
            volume,
            transfers: r.body["transfers"].as_array().map_or(0, Vec::len),
            usage: [self.usage(&self.a).await, self.usage(&self.b).await],
        }
    }

    /// Every promise Scoria keeps (derived usage, images, transfers) holds.
    async fn invariants(&self) {
        self.t.app.engine.wait_idle().await;
        let bad = scoria_core::invariants::check(&self.t.app.env)
            .await
            .expect("check");
        assert!(bad.is_empty(), "invariants: {bad:?}");
    }
}

/// What must hold after a step.
#[derive(Debug, PartialEq)]
struct State {
    /// The volume's status and owning project ('A' or 'B'); `None`: gone.
    volume: Option<(String, char)>,
    /// Pending transfers of every project.
    transfers: usize,
    /// (volumes, gigabytes) in use by A and by B.
    usage: [(i64, i64); 2],
}

fn state(volume: Option<(&str, char)>, transfers: usize, usage: [(i64, i64); 2]) -> State {
    State {
        volume: volume.map(|(s, o)| (s.to_owned(), o)),
        transfers,
        usage,
    }
}

struct Step {
    what: &'static str,
    who: Who,
    method: &'static str,
    /// `{p}` the caller's project, `{b}` project B, `{v}` the volume, `{t}`
    /// the last transfer offered, `{u}` an id that names nothing.
    path: &'static str,
    /// `{v}` and `{k}` (the last offer's key) are replaced in the body.
    body: Option<Value>,
    status: u16,
    after: Option<State>,
}

fn step(
    what: &'static str,
    who: Who,
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    status: u16,
) -> Step {
    Step {
        what,
        who,
        method,
        path,
        body,
        status,
        after: None,
    }
}

impl Step {
    fn then(mut self, s: State) -> Step {
        self.after = Some(s);
        self
    }
}

fn offer_body() -> Option<Value> {
    Some(json!({"transfer": {"volume_id": "{v}", "name": "to b"}}))
}

fn accept_body() -> Option<Value> {
    Some(json!({"accept": {"auth_key": "{k}"}}))
}

const NOTHING: &str = "3f1c2b9e-8d4a-4e6f-9b7c-1a2b3c4d5e6f";

/// Run a script against `volume`; returns the failures (all of them, so one
/// run shows every mismatch).
async fn run(w: &World, volume: &str, script: Vec<Step>) {
    let mut transfer = String::from(NOTHING);
    let mut key = String::from("none-yet");
    let mut failures = Vec::new();
    for s in script {
        let (token, project) = w.caller(s.who);
        let path = s
            .path
            .replace("{p}", project)
            .replace("{b}", &w.b)
            .replace("{v}", volume)
            .replace("{t}", &transfer)
            .replace("{u}", NOTHING);
        let body = s.body.map(|b| {
            b.to_string()
                .replace("{v}", volume)
                .replace("{k}", &key)
                .into_bytes()
        });
        let r = w.t.raw(s.method, &path, Some(token), &[], body).await;
        if r.status != s.status {
            failures.push(format!(
                "{}: got {}, expected {} ({})",
                s.what, r.status, s.status, r.body
            ));
            continue;
        }
        if r.status >= 400 {
            let fault = match r.status {
                400 => "badRequest",
                403 => "forbidden",
                404 => "itemNotFound",
                413 => "overLimit",
                _ => "?",
            };
            if !r.body[fault]["message"].is_string() {
                failures.push(format!("{}: not a {fault} fault: {}", s.what, r.body));
            }
        }
        if let Some(k) = r.body["transfer"]["auth_key"].as_str() {
            key = k.to_owned();
            transfer = r.body["transfer"]["id"].as_str().expect("id").to_owned();
        }
        if let Some(want) = s.after {
            let got = w.state(volume).await;
            if got != want {
                failures.push(format!("{}: state {got:?}, expected {want:?}", s.what));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    w.invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offer_withdraw_and_accept() {
    use Who::*;
    let w = World::new().await;
    let v = w.volume(AMember, 2).await;
    let t = "/v3/{p}/os-volume-transfer";
    let one = "/v3/{p}/os-volume-transfer/{t}";
    let accept = "/v3/{p}/os-volume-transfer/{t}/accept";
    let action = "/v3/{p}/volumes/{v}/action";
    let start = [(1, 2), (0, 0)];
    run(
        &w,
        &v,
        vec![
            step(
                "a reader cannot offer",
                AReader,
                "POST",
                t,
                offer_body(),
                403,
            )
            .then(state(Some(("available", 'A')), 0, start)),
            step(
                "another project cannot offer A's volume",
                BMember,
                "POST",
                t,
                offer_body(),
                404,
            ),
            step(
                "an unknown volume cannot be offered",
                AMember,
                "POST",
                t,
                Some(json!({"transfer": {"volume_id": NOTHING}})),
                404,
            ),
            step("A's member offers", AMember, "POST", t, offer_body(), 202).then(state(
                Some(("awaiting-transfer", 'A')),
                1,
                start,
            )),
            step("no second offer", AMember, "POST", t, offer_body(), 400),
            step(
                "no delete while offered",
                AMember,
                "DELETE",
                "/v3/{p}/volumes/{v}",
                None,
                400,
            ),
            step(
                "no extend while offered",
                AMember,
                "POST",
                action,
                Some(json!({"os-extend": {"new_size": 3}})),
                400,
            ),
            step(
                "no attach while offered",
                AMember,
                "POST",
                action,
                Some(json!({"os-reserve": {}})),
                400,
            )
            .then(state(Some(("awaiting-transfer", 'A')), 1, start)),
            step("A's reader sees the offer", AReader, "GET", one, None, 200),
            step("B does not see it", BReader, "GET", one, None, 404),
            step("B cannot withdraw it", BMember, "DELETE", one, None, 404),
            step(
                "A's reader cannot withdraw it",
                AReader,
                "DELETE",
                one,
                None,
                403,
            ),
            step("A's member withdraws it", AMember, "DELETE", one, None, 202).then(state(
                Some(("available", 'A')),
                0,
                start,
            )),
            step("a withdrawn offer is gone", AMember, "GET", one, None, 404),
            step(
                "its key opens nothing",
                BMember,
                "POST",
                accept,
                accept_body(),
                404,
            ),
            step("A offers again", AMember, "POST", t, offer_body(), 202),
            step(
                "a wrong key is refused",
                BMember,
                "POST",
                accept,
                Some(json!({"accept": {"auth_key": "0123456789abcdef0123456789abcdef"}})),
                400,
            )
            .then(state(Some(("awaiting-transfer", 'A')), 1, start)),
            step(
                "an unknown transfer is not found",
                BMember,
                "POST",
                "/v3/{p}/os-volume-transfer/{u}/accept",
                accept_body(),
                404,
            ),
            step(
                "a reader cannot accept",
                BReader,
                "POST",
                accept,
                accept_body(),
                403,
            )
            .then(state(Some(("awaiting-transfer", 'A')), 1, start)),
            step(
                "B's member accepts",
                BMember,
                "POST",
                accept,
                accept_body(),
                202,
            )
            .then(state(Some(("available", 'B')), 0, [(0, 0), (1, 2)])),
            step(
                "a second accept finds nothing",
                BMember,
                "POST",
                accept,
                accept_body(),
                404,
            ),
            step(
                "the accepted transfer is gone",
                AMember,
                "GET",
                one,
                None,
                404,
            ),
            step(
                "A no longer sees the volume",
                AMember,
                "GET",
                "/v3/{p}/volumes/{v}",
                None,
                404,
            ),
            step(
                "B sees it",
                BReader,
                "GET",
                "/v3/{p}/volumes/{v}",
                None,
                200,
            ),
            step("B can offer it on", BMember, "POST", t, offer_body(), 202).then(state(
                Some(("awaiting-transfer", 'B')),
                1,
                [(0, 0), (1, 2)],
            )),
            step("and withdraw", BMember, "DELETE", one, None, 202).then(state(
                Some(("available", 'B')),
                0,
                [(0, 0), (1, 2)],
            )),
        ],
    )
    .await;
    // The volume moved whole: its metadata, its size, the accepting user.
    let r =
        w.t.call(
            "GET",
            &format!("/v3/{}/volumes/{v}", w.b),
            Some(&w.b_member),
            None,
        )
        .await;
    let vol = &r.body["volume"];
    assert_eq!(vol["user_id"], w.b_member_id.as_str(), "{vol}");
    assert_eq!(vol["os-vol-tenant-attr:tenant_id"], w.b.as_str(), "{vol}");
    assert_eq!(vol["metadata"], json!({"tier": "gold"}), "{vol}");
    assert_eq!(vol["size"], 2, "{vol}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_over_quota_is_413_and_changes_nothing() {
    use Who::*;
    let w = World::new().await;
    let v = w.volume(AMember, 2).await;
    // B already holds a 2 GiB volume and may hold 3 GiB in all.
    w.limits(&w.b, json!({"gigabytes": 3})).await;
    w.volume(BMember, 2).await;
    let accept = "/v3/{p}/volume-transfers/{t}/accept";
    let before = [(1, 2), (1, 2)];
    let quota = |limits: Value| Some(json!({ "quota_set": limits }));
    let set_b = "/v3/{p}/os-quota-sets/{b}";
    let script = vec![
        step(
            "A offers",
            AMember,
            "POST",
            "/v3/{p}/volume-transfers",
            offer_body(),
            202,
        ),
        step(
            "too many gigabytes for B",
            BMember,
            "POST",
            accept,
            accept_body(),
            413,
        )
        .then(state(Some(("awaiting-transfer", 'A')), 1, before)),
        step(
            "B may hold one volume",
            Admin,
            "PUT",
            set_b,
            quota(json!({"gigabytes": -1, "volumes": 1})),
            200,
        ),
        step(
            "too many volumes for B",
            BMember,
            "POST",
            accept,
            accept_body(),
            413,
        )
        .then(state(Some(("awaiting-transfer", 'A')), 1, before)),
        step(
            "B may hold 1 GiB volumes only",
            Admin,
            "PUT",
            set_b,
            quota(json!({"volumes": 2, "per_volume_gigabytes": 1})),
            200,
        ),
        step(
            "too big a volume for B",
            BMember,
            "POST",
            accept,
            accept_body(),
            413,
        )
        .then(state(Some(("awaiting-transfer", 'A')), 1, before)),
        step(
            "B may hold it",
            Admin,
            "PUT",
            set_b,
            quota(json!({"per_volume_gigabytes": -1})),
            200,
        ),
        step("now B accepts", BMember, "POST", accept, accept_body(), 202).then(state(
            Some(("available", 'B')),
            0,
            [(0, 0), (2, 4)],
        )),
    ];
    run(&w, &v, script).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_available_volumes_are_offered_and_admins_can_void_offers() {
    use Who::*;
    let w = World::new().await;
    let v = w.volume(AMember, 1).await;
    let t = "/v3/{p}/os-volume-transfer";
    let action = "/v3/{p}/volumes/{v}/action";
    let reset = |status: &str| Some(json!({"os-reset_status": {"status": status}}));
    run(
        &w,
        &v,
        vec![
            step(
                "no awaiting-transfer without an offer",
                Admin,
                "POST",
                action,
                reset("awaiting-transfer"),
                400,
            ),
            step("A offers", AMember, "POST", t, offer_body(), 202).then(state(
                Some(("awaiting-transfer", 'A')),
                1,
                [(1, 1), (0, 0)],
            )),
            step(
                "a reset voids the offer",
                Admin,
                "POST",
                action,
                reset("error"),
                202,
            )
            .then(state(Some(("error", 'A')), 0, [(1, 1), (0, 0)])),
            step(
                "the voided offer cannot be accepted",
                BMember,
                "POST",
                "/v3/{p}/os-volume-transfer/{t}/accept",
                accept_body(),
                404,
            ),
            step(
                "an errored volume is not offered",
                AMember,
                "POST",
                t,
                offer_body(),
                400,
            )
            .then(state(Some(("error", 'A')), 0, [(1, 1), (0, 0)])),
            step(
                "back to available",
                Admin,
                "POST",
                action,
                reset("available"),
                202,
            ),
            step("A offers again", AMember, "POST", t, offer_body(), 202),
            step(
                "an admin force-deletes the offered volume",
                Admin,
                "POST",
                action,
                Some(json!({"os-force_delete": {}})),
                202,
            )
            .then(state(None, 0, [(0, 0), (0, 0)])),
            step(
                "its transfer went with it",
                AMember,
                "GET",
                "/v3/{p}/os-volume-transfer/{t}",
                None,
                404,
            ),
            step(
                "and cannot be accepted",
                BMember,
                "POST",
                "/v3/{p}/os-volume-transfer/{t}/accept",
                accept_body(),
                404,
            ),
        ],
    )
    .await;
}

/// The keys of each view, by microversion: tempest's schemas allow no others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_have_cinders_keys_at_each_microversion() {
    let w = World::new().await;
    let base = ["id", "name", "volume_id", "links"];
    let detail = ["id", "name", "volume_id", "links", "created_at"];
    let v55 = ["no_snapshots"];
    let v57 = [
        "no_snapshots",
        "source_project_id",
        "destination_project_id",
        "accepted",
    ];
    // (microversion, path family, extra keys of the detailed views)
    let cases: [(&str, &str, &[&str]); 5] = [
        ("3.0", "os-volume-transfer", &[]),
        ("3.54", "os-volume-transfer", &[]),
        ("3.55", "volume-transfers", &v55),
        ("3.55", "os-volume-transfer", &v55),
        ("3.57", "volume-transfers", &v57),
    ];
    let keys = |v: &Value| -> BTreeSet<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let set = |names: &[&str], extra: &[&str]| -> BTreeSet<String> {
        names.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let (a, b) = (w.a.clone(), w.b.clone());
    for (mv, family, extra) in cases {
        let header = format!("volume {mv}");
        let h = [("OpenStack-API-Version", header.as_str())];
        let vol = w.volume(Who::AMember, 1).await;
        let call = |method: &'static str, path: String, token: &str, body: Option<Value>| {
            let body = body.map(|b| b.to_string().into_bytes());
            let token = token.to_owned();
            let t = &w.t;
            async move { t.raw(method, &path, Some(&token), &h, body).await }
        };
        let what = format!("{mv} {family}");
        let r = call(
            "POST",
            format!("/v3/{a}/{family}"),
            &w.a_member,
            Some(json!({"transfer": {"volume_id": vol}})),
        )
        .await;
        assert_eq!(r.status, 202, "{what}: {}", r.body);
        let created = &r.body["transfer"];
        assert_eq!(
            keys(created),
            set(&detail, &[extra, &["auth_key"][..]].concat()),
            "{what}"
        );
        let id = created["id"].as_str().expect("id").to_owned();
        let key = created["auth_key"].as_str().expect("key").to_owned();
        assert!(
            created["links"][0]["href"]
                .as_str()
                .is_some_and(|h| h.ends_with(&format!("/v3/{a}/os-volume-transfer/{id}"))),
            "{what}: {created}"
        );
        if mv == "3.57" {
            assert_eq!(created["source_project_id"], a.as_str(), "{what}");
            assert_eq!(created["destination_project_id"], Value::Null, "{what}");
            assert_eq!(created["accepted"], false, "{what}");
        }
        let r = call("GET", format!("/v3/{a}/{family}/{id}"), &w.a_reader, None).await;
        assert_eq!(r.status, 200, "{what}: {}", r.body);
        assert_eq!(keys(&r.body["transfer"]), set(&detail, extra), "{what}");
        let r = call("GET", format!("/v3/{a}/{family}"), &w.a_reader, None).await;
        assert_eq!(r.status, 200, "{what}: {}", r.body);
        assert_eq!(keys(&r.body), set(&["transfers"], &[]), "{what}");
        for item in r.body["transfers"].as_array().expect("list") {
            assert_eq!(keys(item), set(&base, &[]), "{what}");
        }
        let r = call("GET", format!("/v3/{a}/{family}/detail"), &w.a_reader, None).await;
        assert_eq!(r.status, 200, "{what}: {}", r.body);
        let items = r.body["transfers"].as_array().expect("list");
        assert!(items.iter().any(|i| i["id"] == id.as_str()), "{what}");
        for item in items {
            assert_eq!(keys(item), set(&detail, extra), "{what}");
            assert!(
                item.get("auth_key").is_none(),
                "{what}: the key is shown once"
            );
        }
        let r = call(
            "POST",
            format!("/v3/{b}/{family}/{id}/accept"),
            &w.b_member,
            Some(json!({"accept": {"auth_key": key}})),
        )
        .await;
        assert_eq!(r.status, 202, "{what}: {}", r.body);
        assert_eq!(keys(&r.body), set(&["transfer"], &[]), "{what}");
        assert_eq!(keys(&r.body["transfer"]), set(&base, &[]), "{what}");
        assert_eq!(r.body["transfer"]["volume_id"], vol.as_str(), "{what}");
    }
    // From 3.55 an offer may leave snapshots behind: kept and shown.
    let vol = w.volume(Who::AMember, 1).await;
    let h = [("OpenStack-API-Version", "volume 3.55")];
    let body = json!({"transfer": {"volume_id": vol, "no_snapshots": true}});
    let r =
        w.t.raw(
            "POST",
            &format!("/v3/{a}/volume-transfers"),
            Some(&w.a_member),
            &h,
            Some(body.to_string().into_bytes()),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.body["transfer"]["id"].as_str().expect("id");
    let r =
        w.t.raw(
            "GET",
            &format!("/v3/{a}/volume-transfers/{id}"),
            Some(&w.a_member),
            &h,
            None,
        )
        .await;
    assert_eq!(r.body["transfer"]["no_snapshots"], true, "{}", r.body);
    w.invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_are_per_project_paged_and_admins_may_see_all() {
    let w = World::new().await;
    let mut mine = Vec::new();
    for _ in 0..3 {
        let vol = w.volume(Who::AMember, 1).await;
        let r =
            w.t.call(
                "POST",
                &format!("/v3/{}/os-volume-transfer", w.a),
                Some(&w.a_member),
                Some(json!({"transfer": {"volume_id": vol, "name": "mine"}})),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.body);
        mine.push(r.body["transfer"]["id"].as_str().expect("id").to_owned());
    }
    let theirs = w.volume(Who::BMember, 1).await;
    let r =
        w.t.call(
            "POST",
            &format!("/v3/{}/os-volume-transfer", w.b),
            Some(&w.b_member),
            Some(json!({"transfer": {"volume_id": theirs, "name": "theirs"}})),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    // (caller, query, expected number of transfers, a next link?)
    let cases: &[(Who, &str, usize, bool)] = &[
        (Who::AReader, "", 3, false),
        (Who::BReader, "", 1, false),
        (Who::AReader, "?all_tenants=true", 3, false),
        (Who::Admin, "", 0, false),
        (Who::Admin, "?all_tenants=true", 4, false),
        (Who::Admin, "?all_tenants=true&name=theirs", 1, false),
        (Who::AReader, "?limit=2", 2, true),
        (Who::AReader, "?limit=3", 3, true),
        (Who::AReader, "?limit=4", 3, false),
        (Who::AReader, "?name=nobody", 0, false),
    ];
    for (who, query, n, next) in cases {
        let (token, project) = w.caller(*who);
        let r =
            w.t.call(
                "GET",
                &format!("/v3/{project}/os-volume-transfer/detail{query}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{who:?} {query}: {}", r.body);
        assert_eq!(
            r.body["transfers"].as_array().map(Vec::len),
            Some(*n),
            "{who:?} {query}: {}",
            r.body
        );
        assert_eq!(
            r.body.get("transfers_links").is_some(),
            *next,
            "{who:?} {query}: {}",
            r.body
        );
    }
    // Following the next links walks every offer of A once.
    let mut seen = Vec::new();
    let mut url = format!("/v3/{}/os-volume-transfer?limit=1", w.a);
    loop {
        let r = w.t.call("GET", &url, Some(&w.a_reader), None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        for t in r.body["transfers"].as_array().expect("list") {
            seen.push(t["id"].as_str().expect("id").to_owned());
        }
        match r.body["transfers_links"][0]["href"].as_str() {
            Some(href) => {
                url = href
                    .split_once("/v3/")
                    .map(|(_, rest)| format!("/v3/{rest}"))
                    .expect("a link into the API")
            }
            None => break,
        }
    }
    seen.sort();
    mine.sort();
    assert_eq!(seen, mine);
    w.invariants().await;
}

/// Ten projects race to accept one transfer: exactly one gets the volume, the
/// others find nothing, and usage moves by exactly one volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_accepts_have_exactly_one_winner() {
    let w = World::new().await;
    let v = w.volume(Who::AMember, 3).await;
    let mut racers = Vec::new();
    for i in 0..10 {
        let name = format!("racer-{i}");
        let project = w.t.project(&w.admin, &name).await;
        w.t.user(&w.admin, &name, "pw-racer", &project, "member")
            .await;
        let (token, _) = w.t.login(&name, "pw-racer", &name).await;
        racers.push((project, token));
    }
    let r =
        w.t.call(
            "POST",
            &format!("/v3/{}/os-volume-transfer", w.a),
            Some(&w.a_member),
            Some(json!({"transfer": {"volume_id": v}})),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.body["transfer"]["id"].as_str().expect("id").to_owned();
    let key = r.body["transfer"]["auth_key"]
        .as_str()
        .expect("key")
        .to_owned();

    let w = Arc::new(w);
    let start = Arc::new(tokio::sync::Barrier::new(racers.len()));
    let mut tasks = Vec::new();
    for (project, token) in racers.clone() {
        let (w, start, id, key) = (w.clone(), start.clone(), id.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let r =
                w.t.call(
                    "POST",
                    &format!("/v3/{project}/os-volume-transfer/{id}/accept"),
                    Some(&token),
                    Some(json!({"accept": {"auth_key": key}})),
                )
                .await;
            (project, r.status)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (project, status) = task.await.expect("task");
        match status {
            202 => winners.push(project),
            404 => {}
            other => panic!("an accept answered {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let winner = &winners[0];
    w.t.app.engine.wait_idle().await;
    assert_eq!(w.usage(&w.a).await, (0, 0));
    for (project, _) in &racers {
        let want = if project == winner { (1, 3) } else { (0, 0) };
        assert_eq!(w.usage(project).await, want, "project {project}");
    }
    let r =
        w.t.call(
            "GET",
            &format!("/v3/{}/volumes/{v}", w.admin_project),
            Some(&w.admin),
            None,
        )
        .await;
    assert_eq!(
        r.body["volume"]["os-vol-tenant-attr:tenant_id"],
        winner.as_str()
    );
    assert_eq!(r.body["volume"]["status"], "available");
    w.invariants().await;
}
