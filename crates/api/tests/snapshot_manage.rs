//! Snapshot unmanage and manage through HTTP, on the real file backend: an
//! unmanaged snapshot leaves the API and the quota but its data stays in the
//! volume's chain, listed by `GET /manageable_snapshots`; managed back by its
//! name it is a new snapshot of the same size that reads what was written
//! before the unmanage (qemu-io), while the volume reads what was written
//! after. A wrong volume, an unknown name and bad bodies are 4xx that
//! change nothing; deleting the volume takes its unmanaged snapshots along.
//! (Who may do it: the policy table, `policy.rs`.)

mod support;

use serde_json::{Value, json};
use support::{TestApp, qemu_io};

async fn snapshot_image(t: &TestApp, id: &str) -> scoria_model::ImageId {
    let mut c = t.app.store().read().await.expect("read");
    scoria_store::snapshots::snapshot_get(&mut c, id.parse().unwrap())
        .await
        .unwrap()
        .expect("the snapshot")
        .image_id
        .expect("taken")
}

async fn usage(t: &TestApp, token: &str, p: &str) -> (i64, i64) {
    let r = t
        .call(
            "GET",
            &format!("/v3/{p}/os-quota-sets/{p}?usage=true"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let q = &r.body["quota_set"];
    (
        q["snapshots"]["in_use"].as_i64().unwrap(),
        q["gigabytes"]["in_use"].as_i64().unwrap(),
    )
}

async fn manageable(t: &TestApp, token: &str, p: &str) -> Vec<Value> {
    let r = t
        .call_v(
            "GET",
            &format!("/v3/{p}/manageable_snapshots/detail?host=scoria@file"),
            Some(token),
            None,
            "3.8",
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["manageable-snapshots"].as_array().unwrap().clone()
}

#[tokio::test]
async fn an_unmanaged_snapshot_is_managed_back_with_its_data() {
    let t = TestApp::new().await;
    let (token, p) = t.admin().await;
    let vol = t.volume(&token, &p).await;
    let other = t.volume(&token, &p).await;
    assert!(qemu_io(&t.volume_file(&vol).await, "write -P 0x5c 1M 2M"));
    let snap = t.snapshot(&token, &p, &vol).await;
    let frozen = snapshot_image(&t, &snap).await;
    assert_eq!(usage(&t, &token, &p).await, (1, 3));

    let r = t
        .call(
            "POST",
            &format!("/v3/{p}/snapshots/{snap}/action"),
            Some(&token),
            Some(json!({"os-unmanage": null})),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    t.wait_snapshot_gone(&token, &p, &snap).await;
    assert_eq!(usage(&t, &token, &p).await, (0, 2));
    // The volume goes on writing on its overlay; the kept layer does not
    // change, and the reaper leaves it alone.
    assert!(qemu_io(&t.volume_file(&vol).await, "write -P 0x6d 1M 1M"));
    scoria_core::reaper::reap(&t.app.env).await.expect("reap");
    let kept = t.image_file(frozen).await;
    assert!(kept.exists(), "the unmanaged snapshot's data went");

    let name = format!("snapshot-{snap}");
    let list = manageable(&t, &token, &p).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["reference"], json!({"source-name": name}));
    assert_eq!(list[0]["size"], 1);
    assert_eq!(list[0]["safe_to_manage"], true);
    assert_eq!(list[0]["source_reference"], json!({"source-id": vol}));
    assert_eq!(list[0]["cinder_id"], Value::Null);
    // Before 3.8 the list is not there.
    let r = t
        .call(
            "GET",
            &format!("/v3/{p}/manageable_snapshots?host=scoria@file"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 404, "{:?}", r.body);

    let manage = |body: Value| {
        let (t, token, path) = (&t, &token, format!("/v3/{p}/os-snapshot-manage"));
        async move { t.call("POST", &path, Some(token), Some(body)).await }
    };
    let body = |volume: &str, r: Value| {
        json!({"snapshot": {"volume_id": volume, "ref": r, "name": "back",
                            "description": "d", "metadata": {"k": "v"}}})
    };
    for (b, code, says) in [
        (
            body(&vol, json!({"source-name": "snapshot-nope"})),
            400,
            "keeps no unmanaged snapshot",
        ),
        (body(&other, json!({"source-name": name})), 400, "not of"),
        (body(&vol, json!({"source-id": snap})), 400, "source-name"),
        (
            body(
                "8a4e2b51-0c7b-4b8e-9f3a-6c1d2e3f4a5b",
                json!({"source-name": name}),
            ),
            404,
            "could not be found",
        ),
        (json!({"snapshot": {"volume_id": vol}}), 400, "ref"),
        (
            json!({"snapshot": {"volume_id": vol, "ref": {"source-name": name}, "size": 2}}),
            400,
            "size",
        ),
    ] {
        let r = manage(b.clone()).await;
        assert_eq!(r.status, code, "{b}: {:?}", r.body);
        assert!(r.body.to_string().contains(says), "{b}: {:?}", r.body);
    }
    assert_eq!(manageable(&t, &token, &p).await.len(), 1);
    assert_eq!(usage(&t, &token, &p).await, (0, 2));

    let r = manage(body(&vol, json!({"source-name": name}))).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let s = r.body["snapshot"].as_object().unwrap();
    let mut keys: Vec<&str> = s.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "created_at",
            "description",
            "id",
            "metadata",
            "name",
            "size",
            "status",
            "updated_at",
            "volume_id"
        ]
    );
    assert_eq!(s["status"], "available");
    assert_eq!(s["size"], 1);
    assert_eq!(s["volume_id"], vol.as_str());
    assert_eq!(s["metadata"], json!({"k": "v"}));
    let new = s["id"].as_str().unwrap().to_owned();
    assert_ne!(new, snap);
    assert_eq!(snapshot_image(&t, &new).await, frozen);
    assert_eq!(usage(&t, &token, &p).await, (1, 3));
    assert!(manageable(&t, &token, &p).await.is_empty());
    // The snapshot reads what was written before the unmanage, the volume
    // what was written after.
    assert!(qemu_io(&kept, "read -P 0x5c 1M 2M"));
    let top = t.volume_file(&vol).await;
    assert!(qemu_io(&top, "read -P 0x6d 1M 1M"));
    assert!(qemu_io(&top, "read -P 0x5c 2M 1M"));
    // The name is taken back: a second manage finds nothing.
    let r = manage(body(&vol, json!({"source-name": name}))).await;
    assert_eq!(r.status, 400, "{:?}", r.body);

    // Unmanaged again, then the volume deleted: the kept data goes with it.
    let r = t
        .call(
            "POST",
            &format!("/v3/{p}/snapshots/{new}/action"),
            Some(&token),
            Some(json!({"os-unmanage": {}})),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    t.wait_snapshot_gone(&token, &p, &new).await;
    assert_eq!(manageable(&t, &token, &p).await.len(), 1);
    let r = t
        .call(
            "DELETE",
            &format!("/v3/{p}/volumes/{vol}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    t.wait_gone(&token, &p, &vol).await;
    assert!(manageable(&t, &token, &p).await.is_empty());
    scoria_core::reaper::reap(&t.app.env).await.expect("reap");
    assert!(!kept.exists(), "the volume's history outlived it");
}
