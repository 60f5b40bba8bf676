//! The placement extensions through HTTP: a volume's placement record (admin)
//! and the scheduler's dry run, with the fault bodies of bad requests.

mod support;

use serde_json::{Value, json};
use support::TestApp;

fn fault(r: &support::Reply, kind: &str, code: u16) -> String {
    assert_eq!(r.status, code, "{:?}", r.body);
    assert_eq!(r.body[kind]["code"], code, "{:?}", r.body);
    r.body[kind]["message"]
        .as_str()
        .expect("message")
        .to_owned()
}

#[tokio::test]
async fn an_admin_reads_the_placement_record_of_a_volume() {
    let t = TestApp::new().await;
    let p = t.personas().await;
    let id = t.volume(&p.member.0, &p.a).await;
    let path = format!("/v3/{}/volumes/{id}/placement", p.admin.1);
    let r = t.call("GET", &path, Some(&p.admin.0), None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let rows = r.body["placements"].as_array().expect("placements");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["attempt"], 1);
    assert_eq!(rows[0]["backend"], "file");
    assert_eq!(rows[0]["outcome"], "placed");
    assert_eq!(rows[0]["decision"]["chosen"], "file");
    assert!(rows[0]["created_at"].is_string());
    // Not for the volume's own project's members.
    let own = format!("/v3/{}/volumes/{id}/placement", p.a);
    let r = t.call("GET", &own, Some(&p.member.0), None).await;
    fault(&r, "forbidden", 403);
    // An unknown volume.
    let r = t
        .call(
            "GET",
            &format!(
                "/v3/{}/volumes/{}/placement",
                p.admin.1,
                scoria_model::VolumeId::new()
            ),
            Some(&p.admin.0),
            None,
        )
        .await;
    assert!(fault(&r, "itemNotFound", 404).contains("could not be found"));
    let r = t
        .call(
            "GET",
            &format!("/v3/{}/volumes/not-a-uuid/placement", p.admin.1),
            Some(&p.admin.0),
            None,
        )
        .await;
    fault(&r, "itemNotFound", 404);
}

async fn volume_count(t: &TestApp, token: &str, project: &str) -> usize {
    let r = t
        .call(
            "GET",
            &format!("/v3/{project}/volumes?all_tenants=1"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["volumes"].as_array().expect("volumes").len()
}

#[tokio::test]
async fn a_dry_run_says_where_a_volume_would_go_and_creates_nothing() {
    let t = TestApp::new().await;
    let (admin, project) = t.admin().await;
    let path = format!("/v3/{project}/scheduler-stats/placement");
    let before = volume_count(&t, &admin, &project).await;
    let r = t
        .call(
            "POST",
            &path,
            Some(&admin),
            Some(json!({"volume": {"size": 1, "volume_type": "__DEFAULT__", "availability_zone": "nova"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["placement"]["backend"], "file");
    let d = &r.body["placement"]["decision"];
    assert_eq!(d["chosen"], "file");
    assert_eq!(d["candidates"][0]["outcome"], "weighed", "{d}");
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .starts_with("Backend file was chosen")
    );
    // Nowhere to go: an answer, not an error, saying why.
    let r = t
        .call(
            "POST",
            &path,
            Some(&admin),
            Some(json!({"volume": {"size": 1, "availability_zone": "mars"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["placement"]["backend"], Value::Null);
    let d = &r.body["placement"]["decision"];
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .starts_with("No valid backend was found"),
        "{d}"
    );
    assert_eq!(d["candidates"][0]["outcome"], "removed", "{d}");
    assert!(
        d["candidates"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("not mars"),
        "{d}"
    );
    assert_eq!(volume_count(&t, &admin, &project).await, before);
}

#[tokio::test]
async fn a_bad_dry_run_is_a_clear_4xx() {
    let t = TestApp::new().await;
    let p = t.personas().await;
    let post = |token: String, project: String, body: Value| {
        let t = &t;
        async move {
            let path = format!("/v3/{project}/scheduler-stats/placement");
            t.call("POST", &path, Some(&token), Some(body)).await
        }
    };
    let admin = p.admin.0.clone();
    for (body, want) in [
        (json!({}), "Missing required element 'volume'"),
        (json!({"volume": 1}), "must be an object"),
        (json!({"volume": {}}), "Missing required element 'size'"),
        (
            json!({"volume": {"size": 0}}),
            "must be an integer and greater than 0",
        ),
        (json!({"volume": {"size": "big"}}), "size"),
        (
            json!({"volume": {"size": 1, "name": "x"}}),
            "additional property 'name'",
        ),
    ] {
        let r = post(admin.clone(), p.admin.1.clone(), body.clone()).await;
        let m = fault(&r, "badRequest", 400);
        assert!(m.contains(want), "{body}: {m}");
    }
    let r = post(
        admin.clone(),
        p.admin.1.clone(),
        json!({"volume": {"size": 1, "volume_type": "nope"}}),
    )
    .await;
    assert!(fault(&r, "itemNotFound", 404).contains("nope"));
    // Policy before the body: a member learns nothing of what is wrong.
    let r = post(p.member.0.clone(), p.a.clone(), json!({})).await;
    fault(&r, "forbidden", 403);
}

/// `OS-SCH-HNT:scheduler_hints`: malformed hints are a 400 that creates
/// nothing; a hint naming a volume the caller cannot see treats it as absent
/// (`same_host` then finds no backend, and the message names no backend and
/// no other project's volume).
#[tokio::test]
async fn scheduler_hints_are_validated_and_see_only_the_callers_volumes() {
    let t = TestApp::new().await;
    let p = t.personas().await;
    let (member, a) = (&p.member.0, &p.a);
    let mine = t.volume(member, a).await;
    let theirs = t.volume(&p.other.0, &p.b).await;
    let path = format!("/v3/{a}/volumes");
    let before = volume_count(&t, &p.admin.0, &p.admin.1).await;
    for hints in [
        json!("same_host"),
        json!({"same_host": "not-a-uuid"}),
        json!({"different_host": [mine, mine]}),
        json!({"same_host": 42}),
    ] {
        let body = json!({"volume": {"size": 1}, "OS-SCH-HNT:scheduler_hints": hints});
        let r = t.call("POST", &path, Some(member), Some(body)).await;
        let m = fault(&r, "badRequest", 400);
        assert!(m.starts_with("Invalid input for field/attribute"), "{m}");
    }
    assert_eq!(volume_count(&t, &p.admin.0, &p.admin.1).await, before);

    let create = async |hints: Value| {
        let body = json!({"volume": {"size": 1}, "OS-SCH-HNT:scheduler_hints": hints});
        let r = t.call("POST", &path, Some(member), Some(body)).await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        r.body["volume"]["id"].as_str().expect("id").to_owned()
    };
    // Its own volume: placed with it (other hints are accepted and ignored).
    let with = create(json!({"same_host": mine, "query": "ignored"})).await;
    t.wait_status(member, a, &with, "available").await;
    let with = create(json!({"same_host": [mine, with], "different_host": []})).await;
    t.wait_status(member, a, &with, "available").await;
    // Another project's volume counts as absent.
    let lost = create(json!({"same_host": theirs})).await;
    t.wait_status(member, a, &lost, "error").await;
    let r = t
        .raw(
            "GET",
            &format!("/v3/{a}/messages?resource_uuid={lost}"),
            Some(member),
            &[("OpenStack-API-Version", "volume 3.5")],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let told = r.body["messages"][0]["user_message"]
        .as_str()
        .expect("a message")
        .to_owned();
    assert!(told.contains("No backend fits the request"), "{told}");
    assert!(!told.contains(&theirs) && !told.contains("file"), "{told}");
    let free = create(json!({"different_host": theirs})).await;
    t.wait_status(member, a, &free, "available").await;

    // The dry run takes the same hints.
    let dry = format!("/v3/{}/scheduler-stats/placement", p.admin.1);
    let r = t
        .call(
            "POST",
            &dry,
            Some(&p.admin.0),
            Some(json!({"volume": {"size": 1}, "OS-SCH-HNT:scheduler_hints": {"different_host": mine}})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["placement"]["backend"], Value::Null, "{:?}", r.body);
    let why = r.body["placement"]["decision"]["candidates"].to_string();
    assert!(why.contains("DifferentBackendFilter"), "{why}");
}
