//! Moving volumes between backends through the API: `os-migrate_volume`
//! (admins), `os-retype` with `migration_policy=on-demand`, and
//! `os-migrate_volume_completion`, on two file backends (`file`, `other`).

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::TestApp;

async fn two_backends() -> TestApp {
    TestApp::with_config(|c| {
        let mut b = c.backends[0].clone();
        b.name = "other".into();
        b.driver = scoria_core::DriverConfig::File {
            path: c.data_dir.join("volumes-b"),
            fsync: false,
        };
        // Less to promise than `file` on the same disk: new volumes go there.
        if let scoria_core::scheduler::OverSubscription::Fixed(r) = b.max_over_subscription_ratio {
            b.max_over_subscription_ratio =
                scoria_core::scheduler::OverSubscription::Fixed(r / 2.0);
        }
        c.backends.push(b);
    })
    .await
}

async fn show(t: &TestApp, token: &str, p: &str, id: &str) -> Value {
    let r = t
        .call("GET", &format!("/v3/{p}/volumes/{id}"), Some(token), None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["volume"].clone()
}

/// Wait until the volume's migration ended; its view then.
async fn settled(t: &TestApp, token: &str, p: &str, id: &str) -> Value {
    for _ in 0..2000 {
        let v = show(t, token, p, id).await;
        if v["migration_status"] != "migrating" && v["status"] == "available" {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the migration of {id} never ended");
}

async fn action(t: &TestApp, token: &str, p: &str, id: &str, body: Value) -> support::Reply {
    t.call(
        "POST",
        &format!("/v3/{p}/volumes/{id}/action"),
        Some(token),
        Some(body),
    )
    .await
}

/// Post `body` as an action on `id`: a 400 whose body says `says`.
async fn refused(t: &TestApp, token: &str, p: &str, id: &str, body: Value, says: &str) {
    let r = action(t, token, p, id, body.clone()).await;
    assert_eq!(r.status, 400, "{body}: {:?}", r.body);
    assert!(r.body.to_string().contains(says), "{body}: {:?}", r.body);
}

#[tokio::test]
async fn an_admin_migrates_a_volume_to_another_host() {
    let t = two_backends().await;
    let (token, p) = t.admin().await;
    let id = t.volume(&token, &p).await;
    let v = show(&t, &token, &p, &id).await;
    assert_eq!(v["os-vol-host-attr:host"], "scoria@file#file");
    assert!(v["migration_status"].is_null());

    // Cinder's refusals, each a 400 that changes nothing.
    for (host, says) in [
        (
            "scoria@nowhere",
            "No available service named scoria@nowhere",
        ),
        ("scoria@other#elsewhere", "No available service named"),
        (
            "scoria@file",
            "Destination host must be different than the current host",
        ),
        (
            "scoria@file#file",
            "Destination host must be different than the current host",
        ),
    ] {
        refused(
            &t,
            &token,
            &p,
            &id,
            json!({"os-migrate_volume": {"host": host}}),
            says,
        )
        .await;
    }
    let r = t
        .call_v(
            "POST",
            &format!("/v3/{p}/volumes/{id}/action"),
            Some(&token),
            Some(json!({"os-migrate_volume": {"cluster": "c1"}})),
            "3.16",
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(r.body.to_string().contains("no clusters"), "{:?}", r.body);
    // Before 3.16 `cluster` is not a parameter.
    refused(
        &t,
        &token,
        &p,
        &id,
        json!({"os-migrate_volume": {"cluster": "c1"}}),
        "additional property 'cluster' is not allowed",
    )
    .await;
    assert!(show(&t, &token, &p, &id).await["migration_status"].is_null());

    let r = action(
        &t,
        &token,
        &p,
        &id,
        json!({"os-migrate_volume": {"host": "scoria@other", "force_host_copy": false, "lock_volume": true}}),
    )
    .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let v = settled(&t, &token, &p, &id).await;
    assert_eq!(v["migration_status"], "success");
    assert_eq!(v["os-vol-mig-status-attr:migstat"], "success");
    assert_eq!(v["os-vol-host-attr:host"], "scoria@other#other");
    assert_eq!(v["id"], id.as_str());

    // Completion: the volume itself is the answer; another volume is not a
    // migration target.
    let r = action(
        &t,
        &token,
        &p,
        &id,
        json!({"os-migrate_volume_completion": {"new_volume": id, "error": false}}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body, json!({"save_volume_id": id}));
    let other = t.volume(&token, &p).await;
    refused(
        &t,
        &token,
        &p,
        &id,
        json!({"os-migrate_volume_completion": {"new_volume": other}}),
        "is not a migration target of volume",
    )
    .await;
}

#[tokio::test]
async fn a_volume_with_snapshots_or_attached_is_not_migrated() {
    let t = two_backends().await;
    let (token, p) = t.admin().await;
    let id = t.volume(&token, &p).await;
    let r = t
        .call(
            "POST",
            &format!("/v3/{p}/snapshots"),
            Some(&token),
            Some(json!({"snapshot": {"volume_id": id}})),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let snap = r.body["snapshot"]["id"].as_str().unwrap().to_owned();
    for _ in 0..2000 {
        let r = t
            .call(
                "GET",
                &format!("/v3/{p}/snapshots/{snap}"),
                Some(&token),
                None,
            )
            .await;
        if r.body["snapshot"]["status"] == "available" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    refused(
        &t,
        &token,
        &p,
        &id,
        json!({"os-migrate_volume": {"host": "scoria@other"}}),
        "must not have snapshots",
    )
    .await;
    let v = show(&t, &token, &p, &id).await;
    assert_eq!(v["os-vol-host-attr:host"], "scoria@file#file");
    assert!(v["migration_status"].is_null());

    // In use: live migration is not built.
    let id = t.volume(&token, &p).await;
    let r = action(&t, &token, &p, &id, json!({"os-reserve": {}})).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    refused(
        &t,
        &token,
        &p,
        &id,
        json!({"os-migrate_volume": {"host": "scoria@other"}}),
        "must be available",
    )
    .await;
}

#[tokio::test]
async fn an_on_demand_retype_moves_the_volume_and_changes_its_type_at_the_end() {
    let t = two_backends().await;
    let (token, p) = t.admin().await;
    let r = t
        .call(
            "POST",
            &format!("/v3/{p}/types"),
            Some(&token),
            Some(json!({"volume_type": {"name": "on-other", "extra_specs": {"volume_backend_name": "other"}}})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let id = t.volume(&token, &p).await;
    // Never: refused, nothing changes.
    refused(
        &t,
        &token,
        &p,
        &id,
        json!({"os-retype": {"new_type": "on-other", "migration_policy": "never"}}),
        "No valid backend was found",
    )
    .await;
    let r = action(
        &t,
        &token,
        &p,
        &id,
        json!({"os-retype": {"new_type": "on-other", "migration_policy": "on-demand"}}),
    )
    .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    // The type changes with the host, in one commit (as tempest waits).
    for _ in 0..2000 {
        let v = show(&t, &token, &p, &id).await;
        if v["volume_type"] == "on-other" {
            assert_eq!(v["migration_status"], "success", "{v}");
            assert_eq!(v["os-vol-host-attr:host"], "scoria@other#other", "{v}");
            assert_eq!(v["status"], "available", "{v}");
            // Per-type usage followed the type.
            let r = t
                .call(
                    "GET",
                    &format!("/v3/{p}/os-quota-sets/{p}?usage=True"),
                    Some(&token),
                    None,
                )
                .await;
            assert_eq!(
                r.body["quota_set"]["gigabytes_on-other"]["in_use"], 1,
                "{:?}",
                r.body
            );
            return;
        }
        assert_ne!(
            v["os-vol-host-attr:host"], "scoria@other#other",
            "moved before the type changed: {v}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the type never changed");
}
