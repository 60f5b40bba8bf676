//! Backends as managed repositories, through the admin API while the server
//! runs, on real file backends (qemu-img, a real export daemon for the
//! attachment):
//!
//! - A file backend added at runtime takes a volume whose data qemu-io
//!   writes and reads back in its directory; bad adds are 4xx and change
//!   nothing.
//! - Deactivation closes a backend to new volumes; it is refused while a
//!   volume on it is attached (the refusal names it), and works once it is
//!   detached. Removal is refused while anything is on it (naming the
//!   volume), and works once its volume and snapshot are deleted and freed.
//! - A backend whose directory disappears is `down`: its volume shows
//!   `error` with the reason in its image health, its volume service is
//!   `down`, placement skips it; when the directory comes back all of that
//!   ends by itself.
//! - After a restart the added backend is back, the removed one stays out.

mod support;

use serde_json::{Value, json};
use support::{TestApp, qemu_io};

const INSTANCE: &str = "8b6d1a2e-3c4f-4e5a-9b8c-7d6e5f4a3b2c";

async fn backend(t: &TestApp, token: &str, p: &str, name: &str) -> Value {
    let r = t
        .call(
            "GET",
            &format!("/v3/{p}/scoria-backends/{name}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["backend"].clone()
}

async fn act(t: &TestApp, token: &str, p: &str, name: &str, body: Value) -> support::Reply {
    t.call(
        "POST",
        &format!("/v3/{p}/scoria-backends/{name}/action"),
        Some(token),
        Some(body),
    )
    .await
}

async fn host_of(t: &TestApp, token: &str, p: &str, vol: &str) -> String {
    let r = t
        .call("GET", &format!("/v3/{p}/volumes/{vol}"), Some(token), None)
        .await;
    r.body["volume"]["os-vol-host-attr:host"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Remove `name`, retrying while the reaper has not yet freed what a
/// delete left (the refusal names it meanwhile).
async fn remove_when_empty(t: &TestApp, token: &str, p: &str, name: &str) {
    for _ in 0..500 {
        let r = t
            .call(
                "DELETE",
                &format!("/v3/{p}/scoria-backends/{name}"),
                Some(token),
                None,
            )
            .await;
        if r.status == 204 {
            return;
        }
        assert_eq!(r.status, 400, "{:?}", r.body);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("backend {name} never became removable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_added_deactivated_down_and_removed_while_the_server_runs() {
    let t = TestApp::with_config(|c| {
        c.capacity_refresh = std::time::Duration::from_millis(100);
    })
    .await;
    let (token, p) = t.admin().await;
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let second = elsewhere.path().join("second");

    // One backend to begin with, the configuration's.
    let r = t
        .call(
            "GET",
            &format!("/v3/{p}/scoria-backends"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let names: Vec<&str> = r.body["backends"]
        .as_array()
        .expect("list")
        .iter()
        .map(|b| b["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, ["file"]);
    assert_eq!(r.body["backends"][0]["state"], "active");
    assert_eq!(r.body["backends"][0]["origin"], "configuration");

    // Bad adds: 4xx, nothing changes.
    let file_dir = t.dir.path().join("volumes");
    for (body, status, says) in [
        (
            json!({"backend": {"name": "x", "path": "relative"}}),
            400,
            "absolute",
        ),
        (
            json!({"backend": {"name": "x", "path": file_dir.join("inner")}}),
            400,
            "overlaps backend file",
        ),
        (
            json!({"backend": {"name": "x", "path": t.dir.path()}}),
            400,
            "data directory",
        ),
        (
            json!({"backend": {"name": "x", "path": second, "colour": "red"}}),
            400,
            "colour",
        ),
        (
            json!({"backend": {"name": "file", "path": second}}),
            409,
            "already exists",
        ),
        (
            json!({"backend": {"name": "x", "path": second, "format": "vmdk"}}),
            400,
            "format",
        ),
    ] {
        let r = t
            .call(
                "POST",
                &format!("/v3/{p}/scoria-backends"),
                Some(&token),
                Some(body),
            )
            .await;
        assert_eq!(r.status, status, "{:?}", r.body);
        assert!(r.body.to_string().contains(says), "{:?}", r.body);
    }
    assert!(!second.exists(), "a refused add made its directory");

    // Add a second backend; close the first so that volumes go there.
    let r = t
        .call(
            "POST",
            &format!("/v3/{p}/scoria-backends"),
            Some(&token),
            Some(json!({"backend": {"name": "second", "path": second, "availability_zone": "nova", "fsync": false}})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["backend"]["state"], "active");
    assert_eq!(r.body["backend"]["origin"], "api");
    assert!(second.is_dir());
    let r = act(
        &t,
        &token,
        &p,
        "file",
        json!({"deactivate": {"reason": "maintenance"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["backend"]["state"], "deactivated");
    assert_eq!(r.body["backend"]["reason"], "maintenance");

    let vol = t.volume(&token, &p).await;
    assert_eq!(host_of(&t, &token, &p, &vol).await, "scoria@second#second");
    let file = t.volume_file(&vol).await;
    assert!(file.starts_with(&second), "{}", file.display());
    assert!(qemu_io(&file, "write -P 0x5c 0 1M"));
    assert!(qemu_io(&file, "read -P 0x5c 0 1M"));

    // Attached: a deactivation is refused, naming the volume.
    let r = t
        .raw(
            "POST",
            &format!("/v3/{p}/attachments"),
            Some(&token),
            &[("OpenStack-API-Version", "volume 3.54")],
            Some(
                serde_json::to_vec(&json!({"attachment": {
                    "volume_uuid": vol, "instance_uuid": INSTANCE,
                    "connector": {"host": "h1", "mode": "rw"}}}))
                .expect("json"),
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let attachment = r.body["attachment"]["id"].as_str().expect("id").to_owned();
    let r = act(&t, &token, &p, "second", json!({"deactivate": {}})).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let msg = r.body.to_string();
    assert!(msg.contains(&format!("volume {vol} (reserved)")), "{msg}");
    assert_eq!(backend(&t, &token, &p, "second").await["state"], "active");
    let r = t
        .raw(
            "DELETE",
            &format!("/v3/{p}/attachments/{attachment}"),
            Some(&token),
            &[("OpenStack-API-Version", "volume 3.54")],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    t.wait_status(&token, &p, &vol, "available").await;

    // Removal refused while the volume is there, naming it.
    let r = t
        .call(
            "DELETE",
            &format!("/v3/{p}/scoria-backends/second"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(
        r.body
            .to_string()
            .contains(&format!("volume {vol} (available)")),
        "{:?}",
        r.body
    );

    // Down: the directory goes away (a lost mount), then comes back.
    let away = elsewhere.path().join("away");
    std::fs::rename(&second, &away).expect("rename");
    let b = backend(&t, &token, &p, "second").await;
    assert_eq!(b["state"], "down", "{b}");
    assert!(
        b["reason"].as_str().unwrap_or_default().contains("second"),
        "{b}"
    );
    let r = t
        .call(
            "GET",
            &format!("/v3/{p}/volumes/{vol}?with_progress=true"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.body["volume"]["status"], "error", "{:?}", r.body);
    let health = &r.body["volume"]["scoria:image"];
    assert_eq!(health["health"], "broken", "{health}");
    assert!(
        health["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("backend second is down"),
        "{health}"
    );
    let r = t
        .call(
            "GET",
            &format!("/v3/{p}/os-services?binary=cinder-volume"),
            Some(&token),
            None,
        )
        .await;
    let states: Vec<(String, String)> = r.body["services"]
        .as_array()
        .expect("services")
        .iter()
        .map(|s| {
            (
                s["host"].as_str().unwrap_or_default().to_owned(),
                s["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(
        states.contains(&("scoria@second".into(), "down".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&("scoria@file".into(), "up".into())),
        "{states:?}"
    );
    // Placement skips it: with the other one deactivated, nothing fits.
    let r = t
        .call(
            "POST",
            &format!("/v3/{p}/volumes"),
            Some(&token),
            Some(json!({"volume": {"size": 1}})),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let refused = r.body["volume"]["id"].as_str().expect("id").to_owned();
    t.wait_status(&token, &p, &refused, "error").await;
    std::fs::rename(&away, &second).expect("rename back");
    let b = backend(&t, &token, &p, "second").await;
    assert_eq!(b["state"], "active", "{b}");
    t.wait_status(&token, &p, &vol, "available").await;
    assert!(qemu_io(&file, "read -P 0x5c 0 1M"));

    // A snapshot's data keeps the backend in use once its volume is gone…
    let snap = t.snapshot(&token, &p, &vol).await;
    let r = t
        .call(
            "DELETE",
            &format!("/v3/{p}/volumes/{vol}?cascade=false"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        r.status, 400,
        "a volume with snapshots is not deleted: {:?}",
        r.body
    );
    let r = t
        .call(
            "DELETE",
            &format!("/v3/{p}/volumes/{vol}?cascade=true"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    t.wait_gone(&token, &p, &vol).await;
    t.wait_snapshot_gone(&token, &p, &snap).await;
    let r = t
        .call(
            "DELETE",
            &format!("/v3/{p}/volumes/{refused}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    t.wait_gone(&token, &p, &refused).await;

    // …and once everything is freed, the removal works.
    remove_when_empty(&t, &token, &p, "second").await;
    let r = t
        .call(
            "GET",
            &format!("/v3/{p}/scoria-backends/second"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    assert!(second.is_dir(), "a removal leaves the directory in place");
    let r = act(&t, &token, &p, "file", json!({"activate": {}})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["backend"]["state"], "active");

    // A third one, kept: after a restart it is back, `second` is not.
    let third = elsewhere.path().join("third");
    let r = t
        .call(
            "POST",
            &format!("/v3/{p}/scoria-backends"),
            Some(&token),
            Some(json!({"backend": {"name": "third", "path": third, "max_chain_depth": 4}})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    t.app.shutdown(std::time::Duration::from_secs(5)).await;
    let again = scoria_core::App::open(
        support::config(t.dir.path()),
        scoria_failpoints::Failpoints::new(),
    )
    .await
    .expect("reopen");
    let names: Vec<String> = again
        .env
        .backends
        .all()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["file", "third"]);
    let third = again.env.backends.get("third").expect("third");
    assert_eq!(third.config.max_chain_depth, 4);
    again.shutdown(std::time::Duration::from_secs(5)).await;
}
