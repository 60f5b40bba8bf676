//! The repository check and its fixes through the admin API, on the real
//! file backend with `max_chain_depth` 3 while the server runs: a volume
//! with three snapshots, the middle one deleted, is `degraded` in its view
//! (`scoria:image`); a check (a flow, polled to `done`) lists the merge of
//! the deleted snapshot's layer, with data only that layer holds (qemu-io);
//! applying the fix by id merges it, the layer's file goes, the volume is
//! `optimized` again with one layer fewer and reads every layer's data, and
//! a new check lists nothing. Bad bodies and unknown ids are 4xx. (Who may
//! do it: the policy table, `policy.rs`.) A raw file managed onto a qcow2
//! backend is `degraded` until the check's `optimize` converts it.

mod support;

use serde_json::{Value, json};
use support::{TestApp, qemu_img, qemu_io, qemu_io_as};

async fn poll(t: &TestApp, token: &str, p: &str, what: &str, id: &str) -> Value {
    let key = if what == "fixes" { "fix" } else { "check" };
    for _ in 0..600 {
        let r = t
            .call(
                "GET",
                &format!("/v3/{p}/scoria-repository/{what}/{id}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        match r.body[key]["status"].as_str() {
            Some("running") => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            _ => return r.body[key].clone(),
        }
    }
    panic!("the {what} {id} did not end");
}

async fn check(t: &TestApp, token: &str, p: &str) -> Value {
    let r = t
        .call(
            "POST",
            &format!("/v3/{p}/scoria-repository/checks"),
            Some(token),
            Some(json!({"check": {"backend": "file"}})),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let id = r.body["check"]["id"].as_str().unwrap().to_owned();
    let done = poll(t, token, p, "checks", &id).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(
        (done["stage"].as_str(), done["percent"].as_i64()),
        (Some("1/1"), Some(100))
    );
    done["report"].clone()
}

async fn image_view(t: &TestApp, token: &str, p: &str, vol: &str) -> Value {
    let r = t
        .call(
            "GET",
            &format!("/v3/{p}/volumes/{vol}?with_progress=true"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["volume"]["scoria:image"].clone()
}

#[tokio::test]
async fn a_check_and_a_merge_through_the_api_while_the_server_runs() {
    let t = TestApp::with_config(|c| {
        for b in &mut c.backends {
            b.max_chain_depth = 3;
        }
    })
    .await;
    let (token, p) = t.admin().await;
    let vol = t.volume(&token, &p).await;
    let mut snaps = Vec::new();
    for (i, byte) in [0x11, 0x22, 0x33].iter().enumerate() {
        let file = t.volume_file(&vol).await;
        assert!(qemu_io(&file, &format!("write -P {byte:#x} {i}M 1M")));
        snaps.push(t.snapshot(&token, &p, &vol).await);
    }
    assert!(qemu_io(&t.volume_file(&vol).await, "write -P 0x44 3M 1M"));
    let r = t
        .call(
            "DELETE",
            &format!("/v3/{p}/snapshots/{}", snaps[1]),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    t.wait_snapshot_gone(&token, &p, &snaps[1]).await;
    let before = image_view(&t, &token, &p, &vol).await;
    assert_eq!(
        (before["health"].as_str(), before["chain_depth"].as_i64()),
        (Some("degraded"), Some(4)),
        "{before}"
    );

    let report = check(&t, &token, &p).await;
    let fixes = report["fixes"].as_array().unwrap();
    assert_eq!(fixes.len(), 1, "{report:#}");
    let merge = &fixes[0];
    assert_eq!(
        (merge["kind"].as_str(), merge["problem"].as_str()),
        (Some("merge"), Some("deep_chain"))
    );
    assert_eq!(merge["effect"]["layers_removed"], 1);
    let id = merge["id"].as_str().unwrap().to_owned();

    // Bad requests change nothing.
    for (body, status) in [
        (json!({"fix": {"kinds": ["polish"]}}), 400),
        (json!({"fix": {"ids": "x"}}), 400),
        (json!({"fix": {"force": true}}), 400),
        (json!({"other": {}}), 400),
    ] {
        let r = t
            .call(
                "POST",
                &format!("/v3/{p}/scoria-repository/fixes"),
                Some(&token),
                Some(body.clone()),
            )
            .await;
        assert_eq!(r.status, status, "{body}: {:?}", r.body);
    }
    let r = t
        .call(
            "POST",
            &format!("/v3/{p}/scoria-repository/checks"),
            Some(&token),
            Some(json!({"check": {"backend": "nope"}})),
        )
        .await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    let r = t
        .call(
            "POST",
            &format!("/v3/{p}/scoria-repository/checks"),
            Some(&token),
            Some(json!({"check": {"quick": true, "full": true}})),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let r = t
        .call(
            "GET",
            &format!("/v3/{p}/scoria-repository/fixes/{}", uuid_like()),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    assert_eq!(image_view(&t, &token, &p, &vol).await["chain_depth"], 4);

    // The merged layer holds data nothing above it covers (root writes the
    // frozen file): the merge must carry it up.
    let layer = {
        let mut c = t.app.store().read().await.unwrap();
        let s = scoria_store::snapshots::snapshot_get(&mut c, snaps[2].parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        let chain = scoria_store::images::image_chain(&mut c, s.image_id.unwrap())
            .await
            .unwrap();
        chain[1].clone()
    };
    let layer_file = t.image_file(layer.id).await;
    assert!(qemu_io(&layer_file, "write -P 0x3c 5M 1M"));

    apply_one(&t, &token, &p, json!({"fix": {"ids": [id]}})).await;
    assert!(
        !layer_file.exists(),
        "the merged layer's file is still there"
    );

    let after = image_view(&t, &token, &p, &vol).await;
    assert_eq!(
        (after["health"].as_str(), after["chain_depth"].as_i64()),
        (Some("optimized"), Some(3)),
        "{after}"
    );
    let file = t.volume_file(&vol).await;
    for (at, byte) in [(0, 0x11), (1, 0x22), (2, 0x33), (3, 0x44), (5, 0x3c)] {
        assert!(
            qemu_io(&file, &format!("read -P {byte:#x} {at}M 1M")),
            "MiB {at}"
        );
    }
    settled_and_clean(&t, &token, &p, &vol).await;
}

/// Manage `name` (a file dropped into the backend) as an admin; the new
/// volume once `available`.
async fn manage(t: &TestApp, token: &str, p: &str, name: &str) -> String {
    let body = json!({"volume": {"host": "scoria@file", "ref": {"source-name": name}}});
    let r = t
        .call(
            "POST",
            &format!("/v3/{p}/os-volume-manage"),
            Some(token),
            Some(body),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let id = r.body["volume"]["id"].as_str().unwrap().to_owned();
    t.wait_status(token, p, &id, "available").await;
    id
}

/// A raw file managed onto a backend whose volumes are qcow2 (the default)
/// is `degraded` with the reason; a snapshot of another one freezes its raw
/// image, which is then a base and `optimized` (nothing to convert). The
/// check proposes one `optimize` (`raw_image`); applied while the server
/// runs, the volume is on a qcow2 image of its own that reads what the raw
/// file held, the raw file is gone, the volume `optimized`, and a new check
/// lists nothing.
#[tokio::test]
async fn a_managed_raw_file_is_degraded_until_the_check_converts_it() {
    let t = TestApp::new().await;
    let (token, p) = t.admin().await;
    let dir = t.dir.path().join("volumes");
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["guest.raw", "kept.raw"] {
        qemu_img(&dir, &["create", "-q", "-f", "raw", name, "1G"]);
        assert!(qemu_io_as("raw", &dir.join(name), "write -P 0x5a 0 1M"));
        assert!(qemu_io_as("raw", &dir.join(name), "write -P 0xa5 1023M 1M"));
    }
    let vol = manage(&t, &token, &p, "guest.raw").await;
    let kept = manage(&t, &token, &p, "kept.raw").await;
    let raw_file = t.volume_file(&vol).await;
    assert_eq!(raw_file.extension().and_then(|e| e.to_str()), Some("raw"));
    let before = image_view(&t, &token, &p, &vol).await;
    assert_eq!(before["health"], "degraded", "{before}");
    assert!(
        before["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("a raw image where the backend's volumes are qcow2")),
        "{before}"
    );
    let snap = t.snapshot(&token, &p, &kept).await;
    let r = t
        .call(
            "GET",
            &format!("/v3/{p}/snapshots/{snap}?with_progress=true"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body["snapshot"]["scoria:image"]["health"], "optimized",
        "{:?}",
        r.body
    );
    assert_eq!(
        image_view(&t, &token, &p, &kept).await["health"],
        "optimized"
    );

    let report = check(&t, &token, &p).await;
    let fixes = report["fixes"].as_array().unwrap();
    assert_eq!(fixes.len(), 1, "{report:#}");
    let fix = &fixes[0];
    assert_eq!(
        (fix["kind"].as_str(), fix["problem"].as_str()),
        (Some("optimize"), Some("raw_image")),
        "{fix}"
    );
    assert_eq!(fix["target"]["path"], raw_file.to_string_lossy().as_ref());
    apply_one(&t, &token, &p, json!({"fix": {"kinds": ["optimize"]}})).await;

    let file = t.volume_file(&vol).await;
    assert_eq!(file.extension().and_then(|e| e.to_str()), Some("qcow2"));
    assert!(!raw_file.exists(), "the raw file is still there");
    for (cmd, what) in [
        ("read -P 0x5a 0 1M", "the first MiB"),
        ("read -P 0 1M 1M", "the hole after it"),
        ("read -P 0xa5 1023M 1M", "the last MiB"),
    ] {
        assert!(qemu_io(&file, cmd), "{what} after the conversion");
    }
    let after = image_view(&t, &token, &p, &vol).await;
    assert_eq!(
        (after["health"].as_str(), after["chain_depth"].as_i64()),
        (Some("optimized"), Some(1)),
        "{after}"
    );
    settled_and_clean(&t, &token, &p, &vol).await;
}

/// Apply the fixes `body` selects through the API, polled to `done`: exactly
/// one, applied.
async fn apply_one(t: &TestApp, token: &str, p: &str, body: Value) {
    let r = t
        .call(
            "POST",
            &format!("/v3/{p}/scoria-repository/fixes"),
            Some(token),
            Some(body),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let run = r.body["fix"]["id"].as_str().unwrap().to_owned();
    let done = poll(t, token, p, "fixes", &run).await;
    assert_eq!(done["status"], "done", "{done}");
    let applied = done["outcome"]["applied"].as_array().unwrap();
    assert_eq!(applied.len(), 1, "{done}");
    assert_eq!(applied[0]["outcome"], "applied", "{done}");
}

/// After a fix: the volume `available`, and a new check lists nothing.
async fn settled_and_clean(t: &TestApp, token: &str, p: &str, vol: &str) {
    let r = t
        .call("GET", &format!("/v3/{p}/volumes/{vol}"), Some(token), None)
        .await;
    assert_eq!(r.body["volume"]["status"], "available");
    let report = check(t, token, p).await;
    assert_eq!(
        report["fixes"].as_array().map(Vec::len),
        Some(0),
        "{report:#}"
    );
}

fn uuid_like() -> String {
    scoria_model::FlowId::new().to_string()
}

/// AutoFix with `clean` every 100 ms: a file no record names and a
/// temporary no flow owns, planted while the server runs, are removed by a
/// round on its own; a volume's file is left alone, and the round shows as a
/// `repository_fix` operation.
#[tokio::test]
async fn autofix_cleans_on_its_schedule() {
    let t = TestApp::with_config(|c| {
        c.autofix = scoria_core::repository::autofix::AutoFix {
            kinds: vec![scoria_core::repository::FixKind::Clean],
            period: std::time::Duration::from_millis(100),
            after_operations: false,
        };
    })
    .await;
    let (token, p) = t.admin().await;
    let vol = t.volume(&token, &p).await;
    let file = t.volume_file(&vol).await;
    let dir = file.parent().unwrap().to_path_buf();
    let orphan = dir.join(format!("image-{}.qcow2", scoria_model::ImageId::new()));
    let temporary = dir.join(format!(".image-{}.qcow2.tmp", scoria_model::ImageId::new()));
    for f in [&orphan, &temporary] {
        scoria_storage::qemu::create(f, scoria_storage::Format::Qcow2, 1 << 20)
            .await
            .unwrap();
    }
    let mut gone = false;
    for _ in 0..300 {
        if !orphan.exists() && !temporary.exists() {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(gone, "AutoFix did not clean");
    assert!(file.exists(), "the volume's file went");
    let r = t
        .call(
            "GET",
            &format!("/v3/{p}/scoria-operations?state=done"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(
        r.body["operations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["operation"] == "repository_fix"),
        "{:?}",
        r.body
    );
}

/// How many `repository_fix` flows are done.
async fn fix_rounds(t: &TestApp, token: &str, p: &str) -> usize {
    let r = t
        .call(
            "GET",
            &format!("/v3/{p}/scoria-operations?state=done"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["operations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["operation"] == "repository_fix")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autofix_after_an_operation_cleans_and_does_not_feed_itself() {
    let t = TestApp::with_config(|c| {
        c.autofix = scoria_core::repository::autofix::AutoFix {
            kinds: vec![scoria_core::repository::FixKind::Clean],
            period: std::time::Duration::from_secs(3600),
            after_operations: true,
        };
    })
    .await;
    let (token, p) = t.admin().await;
    let vol = t.volume(&token, &p).await;
    let file = t.volume_file(&vol).await;
    let dir = file.parent().unwrap().to_path_buf();
    // The create's end starts a round: wait for it, then plant an orphan.
    for _ in 0..300 {
        if fix_rounds(&t, &token, &p).await == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        fix_rounds(&t, &token, &p).await,
        1,
        "a round after the create"
    );
    let orphan = dir.join(format!("image-{}.qcow2", scoria_model::ImageId::new()));
    scoria_storage::qemu::create(&orphan, scoria_storage::Format::Qcow2, 1 << 20)
        .await
        .unwrap();
    // No operation, no round (the schedule is an hour): the orphan stays,
    // and the round's own end started none.
    tokio::time::sleep(
        2 * scoria_core::repository::autofix::SETTLE + std::time::Duration::from_millis(500),
    )
    .await;
    assert!(orphan.exists(), "cleaned without an operation");
    assert_eq!(fix_rounds(&t, &token, &p).await, 1, "a round fed another");
    // An operation: a round follows and cleans.
    let r = t
        .call(
            "PUT",
            &format!("/v3/{p}/volumes/{vol}"),
            Some(&token),
            Some(json!({"volume": {"name": "renamed"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let other = t.volume(&token, &p).await;
    let mut gone = false;
    for _ in 0..300 {
        if !orphan.exists() {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(gone, "AutoFix did not clean after the operation");
    assert!(file.exists() && t.volume_file(&other).await.exists());
}
