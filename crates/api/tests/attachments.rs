//! Attachments over HTTP (in process, with real export daemons): Cinder's
//! status transitions through the attachments API and the legacy actions,
//! multiattach only for types that allow it, in-use protection naming the
//! attachment, other projects' attachments as absent, and bad input refused
//! with a fault body and no change.

mod support;

use serde_json::{Value, json};
use support::TestApp;

const V: &str = "volume 3.54";
const INSTANCE: &str = "8b6d1a2e-3c4f-4e5a-9b8c-7d6e5f4a3b2c";

struct T {
    t: TestApp,
    p: support::Personas,
}

impl T {
    async fn new() -> T {
        let t = TestApp::new().await;
        let p = t.personas().await;
        T { t, p }
    }

    async fn at(
        &self,
        version: &str,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let r = self
            .t
            .raw(
                method,
                // The URL names the caller's own project (the cloud admin's
                // is its own), as Cinder requires.
                &format!(
                    "/v3/{}{path}",
                    if token == self.p.admin.0 {
                        &self.p.admin.1
                    } else {
                        &self.p.a
                    }
                ),
                Some(token),
                &[("OpenStack-API-Version", version)],
                body.map(|b| serde_json::to_vec(&b).expect("json")),
            )
            .await;
        (r.status, r.body)
    }

    async fn m(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let token = self.p.member.0.clone();
        self.at(V, method, path, &token, body).await
    }

    async fn volume(&self) -> String {
        self.t.volume(&self.p.member.0, &self.p.a).await
    }

    async fn status(&self, vol: &str) -> Value {
        let (s, v) = self.m("GET", &format!("/volumes/{vol}"), None).await;
        assert_eq!(s, 200, "{v}");
        v["volume"].clone()
    }

    async fn attach(&self, vol: &str, connector: Option<Value>) -> (u16, Value) {
        let mut a = json!({"volume_uuid": vol, "instance_uuid": INSTANCE});
        if let Some(c) = connector {
            a["connector"] = c;
        }
        self.m("POST", "/attachments", Some(json!({"attachment": a})))
            .await
    }
}

fn fault(body: &Value, code: u16) -> bool {
    body.as_object().is_some_and(|o| {
        o.len() == 1
            && o.values()
                .all(|f| f["code"] == code && f["message"].is_string())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_follow_cinder_through_reserve_connect_complete_and_delete() {
    let w = T::new().await;
    let vol = w.volume().await;
    // Reserve without a connector.
    let (s, a) = w.attach(&vol, None).await;
    assert_eq!(s, 200, "{a}");
    let a = a["attachment"].clone();
    assert_eq!(a["status"], "reserved");
    assert_eq!(a["instance"], INSTANCE);
    assert!(a["connection_info"].is_null(), "{a}");
    assert_eq!(w.status(&vol).await["status"], "reserved");
    let id = a["id"].as_str().expect("id").to_owned();
    // Completing without a connector is refused, and changes nothing.
    let (s, b) = w
        .m(
            "POST",
            &format!("/attachments/{id}/action"),
            Some(json!({"os-complete": null})),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    assert!(fault(&b, 400));
    // The connector: an export, `attaching`.
    let (s, u) = w
        .m(
            "PUT",
            &format!("/attachments/{id}"),
            Some(json!({"attachment": {"connector": {"host": "h1", "mode": "rw"}}})),
        )
        .await;
    assert_eq!(s, 200, "{u}");
    let ci = &u["attachment"]["connection_info"];
    assert_eq!(ci["driver_volume_type"], "nbd", "{ci}");
    assert_eq!(ci["attachment_id"], id.as_str());
    assert_eq!(ci["export_name"], id.as_str());
    assert_eq!(ci["tls"], true);
    assert!(
        ci["psk_key"].as_str().is_some_and(|k| k.len() == 64),
        "{ci}"
    );
    assert!(ci["port"].as_u64().is_some());
    assert_eq!(u["attachment"]["status"], "attaching");
    assert_eq!(u["attachment"]["attach_mode"], "rw");
    // Another project cannot see it, and the volume's list shows it to
    // nobody else either.
    let other = w.p.other.0.clone();
    let (s, b) =
        w.t.raw(
            "GET",
            &format!("/v3/{}/attachments/{id}", w.p.b),
            Some(&other),
            &[("OpenStack-API-Version", V)],
            None,
        )
        .await
        .into_pair();
    assert_eq!(s, 404, "{b}");
    // A reader sees it (its project's), with the key.
    let reader = w.p.reader.0.clone();
    let (s, r) = w
        .at(V, "GET", &format!("/attachments/{id}"), &reader, None)
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["attachment"]["connection_info"], *ci);
    // Complete: in-use, listed in the volume's view.
    let (s, _) = w
        .m(
            "POST",
            &format!("/attachments/{id}/action"),
            Some(json!({"os-complete": null})),
        )
        .await;
    assert_eq!(s, 204);
    let v = w.status(&vol).await;
    assert_eq!(v["status"], "in-use");
    assert_eq!(v["attachments"][0]["attachment_id"], id.as_str());
    assert_eq!(v["attachments"][0]["server_id"], INSTANCE);
    // Filters.
    let (s, l) = w
        .m("GET", &format!("/attachments?volume_id={vol}"), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(l["attachments"].as_array().map(Vec::len), Some(1), "{l}");
    assert!(
        l["attachments"][0].get("connection_info").is_none(),
        "summary: {l}"
    );
    let (_, l) = w
        .m("GET", "/attachments/detail?status=reserved", None)
        .await;
    assert_eq!(l["attachments"], json!([]));
    let (_, l) = w
        .m(
            "GET",
            &format!("/attachments/detail?instance_id={INSTANCE}"),
            None,
        )
        .await;
    assert_eq!(l["attachments"][0]["connection_info"], *ci);

    // In use: every change that would take its image from under its user
    // is refused, naming the attachment and instance, and changes nothing.
    for (method, path, body) in [
        ("DELETE", format!("/volumes/{vol}"), None),
        (
            "POST",
            format!("/volumes/{vol}/action"),
            Some(json!({"os-retype": {"new_type": "__DEFAULT__"}})),
        ),
        (
            "POST",
            "/volume-transfers".to_string(),
            Some(json!({"transfer": {"volume_id": vol}})),
        ),
    ] {
        let (s, b) = w.m(method, &path, body).await;
        assert!(s == 400, "{method} {path}: {s} {b}");
        assert!(fault(&b, 400), "{b}");
        if method == "DELETE" {
            assert!(
                b.to_string().contains(&id),
                "names the attachment: {method} {path}: {b}"
            );
        }
        assert_eq!(w.status(&vol).await["status"], "in-use", "{method} {path}");
    }
    // An in-use volume is extended from 3.42 on (by its export's daemon),
    // and snapshotted with `force` (inside the daemon); below 3.42 the
    // extend is refused and changes nothing.
    let token = w.p.member.0.clone();
    let extend = json!({"os-extend": {"new_size": 2}});
    let (s, b) = w
        .at(
            "volume 3.41",
            "POST",
            &format!("/volumes/{vol}/action"),
            &token,
            Some(extend.clone()),
        )
        .await;
    assert!(s == 400 && fault(&b, 400), "{s} {b}");
    assert!(b.to_string().contains("in-use"), "{b}");
    assert_eq!(w.status(&vol).await["size"], 1);
    let (s, b) = w
        .m(
            "POST",
            "/snapshots",
            Some(json!({"snapshot": {"volume_id": vol}})),
        )
        .await;
    assert!(
        s == 400 && fault(&b, 400),
        "an in-use snapshot needs force: {s} {b}"
    );
    let (s, b) = w
        .at(
            "volume 3.42",
            "POST",
            &format!("/volumes/{vol}/action"),
            &token,
            Some(extend),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    for _ in 0..200 {
        let v = w.status(&vol).await;
        if v["size"] == 2 && v["status"] == "in-use" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let v = w.status(&vol).await;
    assert!(v["size"] == 2 && v["status"] == "in-use", "{v}");
    let (s, b) = w
        .m(
            "POST",
            "/snapshots",
            Some(json!({"snapshot": {"volume_id": vol, "force": true}})),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let snap = b["snapshot"]["id"]
        .as_str()
        .expect("snapshot id")
        .to_owned();
    for _ in 0..200 {
        let (_, b) = w.m("GET", &format!("/snapshots/{snap}"), None).await;
        if b["snapshot"]["status"] == "available" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let (_, b) = w.m("GET", &format!("/snapshots/{snap}"), None).await;
    assert_eq!(b["snapshot"]["status"], "available", "{b}");
    assert_eq!(w.status(&vol).await["status"], "in-use");
    // Reverting an attached volume to it is refused (Cinder's status rule).
    let (s, b) = w
        .at(
            "volume 3.40",
            "POST",
            &format!("/volumes/{vol}/action"),
            &token,
            Some(json!({"revert": {"snapshot_id": snap}})),
        )
        .await;
    assert!(s == 400 && fault(&b, 400), "{s} {b}");
    assert!(b.to_string().contains("in-use"), "{b}");
    assert_eq!(w.status(&vol).await["status"], "in-use");
    let (s, b) = w.m("DELETE", &format!("/snapshots/{snap}"), None).await;
    assert_eq!(s, 202, "{b}");
    // A second attachment: the default type does not allow multiattach.
    let (s, b) = w.attach(&vol, None).await;
    assert_eq!(s, 400, "{b}");
    assert!(b.to_string().contains(&id), "names the attachment: {b}");

    // Delete: gone, the volume available again.
    let (s, d) = w.m("DELETE", &format!("/attachments/{id}"), None).await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["attachments"], json!([]));
    let v = w.status(&vol).await;
    assert_eq!(v["status"], "available");
    assert_eq!(v["attachments"], json!([]));
    let (s, _) = w.m("GET", &format!("/attachments/{id}"), None).await;
    assert_eq!(s, 404);
    let (s, _) = w.m("DELETE", &format!("/volumes/{vol}"), None).await;
    assert_eq!(s, 202, "a detached volume deletes");
}

trait IntoPair {
    fn into_pair(self) -> (u16, Value);
}

impl IntoPair for support::Reply {
    fn into_pair(self) -> (u16, Value) {
        (self.status, self.body)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_actions_attach_and_detach_like_nova_does() {
    let w = T::new().await;
    let vol = w.volume().await;
    let act = |body: Value| {
        let vol = vol.clone();
        let w = &w;
        async move {
            w.m("POST", &format!("/volumes/{vol}/action"), Some(body))
                .await
        }
    };
    assert_eq!(act(json!({"os-reserve": null})).await.0, 202);
    assert_eq!(w.status(&vol).await["status"], "attaching");
    let (s, ci) =
        act(json!({"os-initialize_connection": {"connector": {"host": "compute-1"}}})).await;
    assert_eq!(s, 200, "{ci}");
    let ci = &ci["connection_info"];
    assert_eq!(ci["driver_volume_type"], "nbd");
    assert!(ci["data"]["psk_identity"].is_string(), "{ci}");
    // Asked again for the same host: the same connection.
    let (_, again) =
        act(json!({"os-initialize_connection": {"connector": {"host": "compute-1"}}})).await;
    assert_eq!(again["connection_info"], *ci);
    let (s, b) =
        act(json!({"os-attach": {"instance_uuid": INSTANCE, "mountpoint": "/dev/vdb"}})).await;
    assert_eq!(s, 202, "{b}");
    let v = w.status(&vol).await;
    assert_eq!(v["status"], "in-use", "{v}");
    assert_eq!(v["attachments"][0]["device"], "/dev/vdb");
    assert_eq!(act(json!({"os-begin_detaching": null})).await.0, 202);
    assert_eq!(w.status(&vol).await["status"], "detaching");
    assert_eq!(act(json!({"os-roll_detaching": null})).await.0, 202);
    assert_eq!(w.status(&vol).await["status"], "in-use");
    assert_eq!(act(json!({"os-begin_detaching": null})).await.0, 202);
    assert_eq!(
        act(json!({"os-terminate_connection": {"connector": {"host": "compute-1"}}}))
            .await
            .0,
        202
    );
    assert_eq!(act(json!({"os-detach": {}})).await.0, 202);
    let v = w.status(&vol).await;
    assert_eq!(v["status"], "available", "{v}");
    let (_, l) = w.m("GET", "/attachments", None).await;
    assert_eq!(l["attachments"], json!([]));

    // An admin's force detach settles an attachment in any state.
    let (_, a) = w.attach(&vol, Some(json!({"host": "h"}))).await;
    assert_eq!(a["attachment"]["status"], "attaching", "{a}");
    let (s, b) = act(json!({"os-force_detach": {}})).await;
    assert_eq!(s, 403, "members may not: {b}");
    let admin = w.p.admin.0.clone();
    let (s, b) = w
        .at(
            V,
            "POST",
            &format!("/volumes/{vol}/action"),
            &admin,
            Some(json!({"os-force_detach": {}})),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(w.status(&vol).await["status"], "available");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiattach_needs_a_type_that_allows_it() {
    let w = T::new().await;
    let admin = w.p.admin.0.clone();
    let (s, t) = w
        .at(
            V,
            "POST",
            "/types",
            &admin,
            Some(json!({"volume_type": {"name": "shared", "extra_specs": {"multiattach": "<is> True"}}})),
        )
        .await;
    assert_eq!(s, 200, "{t}");
    let (s, v) = w
        .m(
            "POST",
            "/volumes",
            Some(json!({"volume": {"size": 1, "volume_type": "shared"}})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let vol = v["volume"]["id"].as_str().expect("id").to_owned();
    w.t.wait_status(&w.p.member.0, &w.p.a, &vol, "available")
        .await;
    let (s, a1) = w.attach(&vol, None).await;
    assert_eq!(s, 200, "{a1}");
    let (s, a2) = w.attach(&vol, None).await;
    assert_eq!(s, 200, "a multiattach type takes a second attachment: {a2}");
    let (_, l) = w
        .m("GET", &format!("/attachments?volume_id={vol}"), None)
        .await;
    assert_eq!(l["attachments"].as_array().map(Vec::len), Some(2));
    // One data path per volume for now: the second connector is refused
    // clearly, and the second attachment stays reserved.
    let id1 = a1["attachment"]["id"].as_str().expect("id");
    let id2 = a2["attachment"]["id"].as_str().expect("id");
    let (s, b) = w
        .m(
            "PUT",
            &format!("/attachments/{id1}"),
            Some(json!({"attachment": {"connector": {"host": "h1"}}})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = w
        .m(
            "PUT",
            &format!("/attachments/{id2}"),
            Some(json!({"attachment": {"connector": {"host": "h2"}}})),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    assert!(b.to_string().contains(id1), "{b}");
    let (_, a) = w.m("GET", &format!("/attachments/{id2}"), None).await;
    assert_eq!(a["attachment"]["status"], "reserved", "{a}");
    for id in [id1, id2] {
        assert_eq!(
            w.m("DELETE", &format!("/attachments/{id}"), None).await.0,
            200
        );
    }
    assert_eq!(w.status(&vol).await["status"], "available");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_fault_and_changes_nothing() {
    let w = T::new().await;
    let vol = w.volume().await;
    let member = w.p.member.0.clone();
    let action = format!("/volumes/{vol}/action");
    let cases: Vec<(&str, &str, &str, Option<Value>, u16)> = vec![
        (
            "volume 3.26",
            "POST",
            "/attachments",
            Some(json!({"attachment": {"volume_uuid": vol}})),
            404,
        ),
        (
            V,
            "POST",
            "/attachments",
            Some(json!({"attachment": {}})),
            400,
        ),
        (
            V,
            "POST",
            "/attachments",
            Some(json!({"attachment": {"volume_uuid": "nope"}})),
            400,
        ),
        (
            V,
            "POST",
            "/attachments",
            Some(json!({"attachment": {"volume_uuid": vol, "instance_uuid": "x"}})),
            400,
        ),
        (
            V,
            "POST",
            "/attachments",
            Some(json!({"attachment": {"volume_uuid": vol, "connector": "h"}})),
            400,
        ),
        (
            V,
            "POST",
            "/attachments",
            Some(json!({"attachment": {"volume_uuid": vol, "connector": {"mode": "rx"}}})),
            400,
        ),
        (
            V,
            "POST",
            "/attachments",
            Some(json!({"attachment": {"volume_uuid": vol, "mode": "wr"}})),
            400,
        ),
        (
            "volume 3.53",
            "POST",
            "/attachments",
            Some(json!({"attachment": {"volume_uuid": vol, "mode": "ro"}})),
            400,
        ),
        (
            V,
            "POST",
            "/attachments",
            Some(json!({"attachment": {"volume_uuid": vol, "colour": 1}})),
            400,
        ),
        (
            V,
            "POST",
            "/attachments",
            Some(json!({"attachments": {}})),
            400,
        ),
        (
            V,
            "POST",
            "/attachments",
            Some(json!({"attachment": {"volume_uuid": "3f1c2b9e-8d4a-4e6f-9b7c-1a2b3c4d5e6f"}})),
            404,
        ),
        (
            V,
            "PUT",
            "/attachments/3f1c2b9e-8d4a-4e6f-9b7c-1a2b3c4d5e6f",
            Some(json!({"attachment": {"connector": {}}})),
            404,
        ),
        (V, "GET", "/attachments/nope", None, 404),
        (
            V,
            "DELETE",
            "/attachments/3f1c2b9e-8d4a-4e6f-9b7c-1a2b3c4d5e6f",
            None,
            404,
        ),
        (V, "GET", "/attachments?status=glued", None, 400),
        (V, "GET", "/attachments?limit=-1", None, 400),
        (
            V,
            "POST",
            &action,
            Some(json!({"os-initialize_connection": {}})),
            400,
        ),
        (
            V,
            "POST",
            &action,
            Some(json!({"os-initialize_connection": {"connector": 5}})),
            400,
        ),
        (
            V,
            "POST",
            &action,
            Some(json!({"os-attach": {"mountpoint": "/dev/vdb"}})),
            400,
        ),
        (
            V,
            "POST",
            &action,
            Some(json!({"os-attach": {"instance_uuid": INSTANCE, "mode": "x"}})),
            400,
        ),
        (
            V,
            "POST",
            &action,
            Some(json!({"os-attach": {"instance_uuid": INSTANCE}})),
            400,
        ),
        (
            V,
            "POST",
            &action,
            Some(json!({"os-detach": {"attachment_id": "x"}})),
            400,
        ),
        (
            V,
            "POST",
            &action,
            Some(json!({"os-begin_detaching": null})),
            400,
        ),
    ];
    let before = w.status(&vol).await;
    for (version, method, path, body, want) in cases {
        let (s, b) = w.at(version, method, path, &member, body.clone()).await;
        assert_eq!(s, want, "{version} {method} {path} {body:?}: {b}");
        assert!(fault(&b, want), "{method} {path}: {b}");
    }
    let after = w.status(&vol).await;
    assert_eq!(before["status"], after["status"]);
    assert_eq!(after["status"], "available");
    let (_, l) = w.m("GET", "/attachments", None).await;
    assert_eq!(l["attachments"], json!([]), "nothing was attached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_and_plain_transports_are_what_the_operator_configured() {
    for (unix, tls) in [(true, true), (false, false)] {
        let t = TestApp::with_config(|c| {
            c.exports.unix = unix;
            c.exports.tls = tls;
        })
        .await;
        let p = t.personas().await;
        let w = T { t, p };
        let vol = w.volume().await;
        let (s, a) = w.attach(&vol, Some(json!({"host": "local"}))).await;
        assert_eq!(s, 200, "{a}");
        let ci = &a["attachment"]["connection_info"];
        assert_eq!(ci["tls"], false, "{ci}");
        assert!(ci.get("psk_key").is_none(), "no key without TLS: {ci}");
        if unix {
            let socket = ci["socket"].as_str().expect("a socket");
            assert!(std::path::Path::new(socket).exists(), "{socket}");
            assert!(
                ci["uri"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("nbd+unix:///")),
                "{ci}"
            );
            assert!(ci.get("port").is_none(), "{ci}");
        } else {
            assert!(
                ci["uri"].as_str().is_some_and(|u| u.starts_with("nbd://")),
                "{ci}"
            );
            assert!(ci["port"].as_u64().is_some(), "{ci}");
        }
        let id = a["attachment"]["id"].as_str().expect("id");
        assert_eq!(
            w.m("DELETE", &format!("/attachments/{id}"), None).await.0,
            200
        );
    }
}
