//! The progress of an operation as a user sees it (`?with_progress=true`), and
//! failpoints armed through the debug endpoint of a running server.
#![cfg(feature = "failpoints")]

mod support;

use serde_json::json;
use support::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_create_shows_its_stage_and_reason() {
    let t = TestApp::new().await;
    let (admin, p) = t.admin().await;
    // Only admins may arm failpoints.
    let (member, _) = {
        let proj = t.project(&admin, "p2").await;
        t.user(&admin, "m", "pw-m", &proj, "member").await;
        t.login("m", "pw-m", "p2").await
    };
    let r = t
        .call(
            "PUT",
            "/debug/failpoints",
            Some(&member),
            Some(json!({"spec": "x=error"})),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = t
        .call(
            "PUT",
            "/debug/failpoints",
            Some(&admin),
            Some(json!({"spec": "nonsense"})),
        )
        .await;
    assert_eq!(r.status, 400);

    let r = t
        .call(
            "PUT",
            "/debug/failpoints",
            Some(&admin),
            Some(json!({"spec": "flow.volume_create.create_on_backend.run=error"})),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = t
        .call(
            "POST",
            &format!("/v3/{p}/volumes"),
            Some(&admin),
            Some(json!({"volume": {"size": 1}})),
        )
        .await;
    assert_eq!(r.status, 202, "the API answers before the backend step");
    assert!(
        r.body["volume"].get("scoria:progress").is_none(),
        "progress is opt-in"
    );
    let id = r.body["volume"]["id"].as_str().unwrap().to_owned();
    t.wait_status(&admin, &p, &id, "error").await;
    // The entry turns `error` while the flow is still unwinding (its first
    // steps' undos run after); wait for the flow to end.
    t.app.engine.wait_idle().await;
    let r = t
        .call(
            "GET",
            &format!("/v3/{p}/volumes/{id}?with_progress=true"),
            Some(&admin),
            None,
        )
        .await;
    let prog = &r.body["volume"]["scoria:progress"];
    assert_eq!(prog["operation"], "volume_create", "{prog}");
    assert_eq!(prog["state"], "failed", "{prog}");
    assert_eq!(prog["stage"], "5/6", "{prog}");
    assert_eq!(prog["step"], "create_on_backend", "{prog}");
    assert!(
        prog["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("injected"),
        "{prog}"
    );
    // Without the parameter the view is Cinder's exactly.
    let r = t
        .call("GET", &format!("/v3/{p}/volumes/{id}"), Some(&admin), None)
        .await;
    assert!(r.body["volume"].get("scoria:progress").is_none());

    // Disarmed: creates work again and report their completed stages.
    let r = t
        .call(
            "PUT",
            "/debug/failpoints",
            Some(&admin),
            Some(json!({"clear": true})),
        )
        .await;
    assert_eq!(r.status, 204);
    let v = t.volume(&admin, &p).await;
    let r = t
        .call(
            "GET",
            &format!("/v3/{p}/volumes/detail?with_progress=1"),
            Some(&admin),
            None,
        )
        .await;
    let mine = r.body["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == v.as_str())
        .cloned()
        .unwrap();
    assert_eq!(mine["scoria:progress"]["state"], "done");
    assert_eq!(mine["scoria:progress"]["stage"], "6/6");
    assert_eq!(
        mine["scoria:progress"]["last_error"],
        serde_json::Value::Null
    );
}
