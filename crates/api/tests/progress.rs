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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_operation_is_visible_to_admins_and_a_forced_delete_settles_it() {
    let t = TestApp::new().await;
    let (admin, p) = t.admin().await;
    // The backend step fails, and so does every try of the undo that would mark
    // the entry `error`: the flow cannot finish unwinding.
    let spec =
        "flow.volume_create.create_on_backend.run=error;flow.volume_create.create_entry.undo=error";
    let r = t
        .call(
            "PUT",
            "/debug/failpoints",
            Some(&admin),
            Some(json!({ "spec": spec })),
        )
        .await;
    assert_eq!(r.status, 204);
    let r = t
        .call(
            "POST",
            &format!("/v3/{p}/volumes"),
            Some(&admin),
            Some(json!({"volume": {"size": 1}})),
        )
        .await;
    assert_eq!(r.status, 202);
    let id = r.body["volume"]["id"].as_str().unwrap().to_owned();
    let stuck = loop {
        let r = t
            .call(
                "GET",
                &format!("/v3/{p}/scoria-operations?state=stuck"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(r.status, 200);
        let ops = r.body["operations"].as_array().cloned().unwrap_or_default();
        if let Some(op) = ops.into_iter().find(|o| o["resource_id"] == id.as_str()) {
            break op;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(stuck["operation"], "volume_create");
    assert_eq!(stuck["failed_step"], "create_on_backend");
    assert!(
        stuck["last_error"]
            .as_str()
            .unwrap()
            .contains("undo of step create_entry failed"),
        "{stuck}"
    );
    let r = t
        .call(
            "GET",
            &format!(
                "/v3/{p}/scoria-operations/{}",
                stuck["id"].as_str().unwrap()
            ),
            Some(&admin),
            None,
        )
        .await;
    let steps = r.body["operation"]["steps"].as_array().unwrap().clone();
    assert!(
        steps
            .iter()
            .any(|s| s["name"] == "create_entry" && s["state"] == "undo_failed"),
        "{steps:?}"
    );
    // The volume is left as the flow left it (transitional), and a normal
    // delete is refused while the stuck flow holds it.
    let r = t
        .call(
            "DELETE",
            &format!("/v3/{p}/volumes/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);

    // An admin's forced delete supersedes the stuck flow and removes everything.
    t.call(
        "PUT",
        "/debug/failpoints",
        Some(&admin),
        Some(json!({"clear": true})),
    )
    .await;
    let r = t
        .call(
            "POST",
            &format!("/v3/{p}/volumes/{id}/action"),
            Some(&admin),
            Some(json!({"os-force_delete": {}})),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    for _ in 0..500 {
        let r = t
            .call("GET", &format!("/v3/{p}/volumes/{id}"), Some(&admin), None)
            .await;
        if r.status == 404 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    t.app.engine.wait_idle().await;
    let r = t
        .call(
            "GET",
            &format!("/v3/{p}/scoria-operations"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.body["operations"], json!([]), "nothing left unsettled");
    let bad = scoria_core::invariants::check(&t.app.env).await.unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    let q = t
        .call(
            "GET",
            &format!("/v3/{p}/os-quota-sets/{p}?usage=true"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        q.body["quota_set"]["volumes"],
        json!({"limit": 10, "in_use": 0, "reserved": 0, "allocated": 0})
    );
}
