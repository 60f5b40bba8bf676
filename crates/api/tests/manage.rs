//! Manage and unmanage through HTTP, on the real file backend: a volume
//! unmanaged leaves its data as `volume-<id>.qcow2`, managed back by that
//! name its data reads as written (qemu-io); a file layered on another, one
//! already Scoria's, an unknown one and bad bodies are clear 4xx that change
//! nothing; members may do neither.

// The test writes and reads the files with qemu-io.
#![allow(clippy::disallowed_methods)]

mod support;

use serde_json::{Value, json};
use support::TestApp;

fn qemu_io(path: &std::path::Path, cmd: &str) -> bool {
    let out = std::process::Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", cmd])
        .arg(path)
        .output()
        .expect("qemu-io");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    out.status.success() && !text.contains("Pattern verification failed")
}

fn files(t: &TestApp) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(t.dir.path().join("volumes"))
        .expect("backend dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

async fn image_file(t: &TestApp, id: &str) -> std::path::PathBuf {
    let mut c = t.app.store().read().await.expect("read");
    let v = scoria_store::volumes::volume_get(&mut c, id.parse().unwrap())
        .await
        .unwrap()
        .expect("the volume");
    let i = scoria_store::images::image_get(&mut c, v.image_id.expect("image"))
        .await
        .unwrap()
        .expect("its image");
    t.dir.path().join("volumes").join(i.name)
}

async fn used_volumes(t: &TestApp, token: &str, p: &str) -> i64 {
    let r = t
        .call(
            "GET",
            &format!("/v3/{p}/os-quota-sets/{p}?usage=true"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["quota_set"]["volumes"]["in_use"].as_i64().unwrap()
}

#[tokio::test]
async fn an_unmanaged_volume_is_managed_back_with_its_data() {
    let t = TestApp::new().await;
    let (token, p) = t.admin().await;
    let id = t.volume(&token, &p).await;
    assert!(qemu_io(&image_file(&t, &id).await, "write -P 0x5c 1M 2M"));
    assert_eq!(used_volumes(&t, &token, &p).await, 1);

    let r = t
        .call(
            "POST",
            &format!("/v3/{p}/volumes/{id}/action"),
            Some(&token),
            Some(json!({"os-unmanage": null})),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    t.wait_gone(&token, &p, &id).await;
    let handed = format!("volume-{id}.qcow2");
    assert_eq!(files(&t), std::slice::from_ref(&handed));
    assert_eq!(used_volumes(&t, &token, &p).await, 0);

    let manage = |path: &str, body: Value| {
        let (t, token, path) = (&t, &token, path.to_owned());
        async move {
            t.call_v("POST", &path, Some(token), Some(body), "3.8")
                .await
        }
    };
    let body = |r: Value| {
        json!({"volume": {"host": "scoria@file#file", "ref": r, "name": "back",
                          "volume_type": "__DEFAULT__", "availability_zone": "nova"}})
    };
    let path = format!("/v3/{p}/manageable_volumes");
    // Refused, changing nothing: an unknown file, an unknown key, no ref, a
    // host that is not ours.
    for (b, code, says) in [
        (
            body(json!({"source-name": "volume-nope"})),
            400,
            "has no file volume-nope",
        ),
        (
            body(json!({"source-id": id})),
            400,
            "'source-id' is not understood",
        ),
        (json!({"volume": {"host": "scoria@file"}}), 400, "ref"),
        (
            json!({"volume": {"host": "scoria@elsewhere", "ref": {"source-name": handed}}}),
            404,
            "could not be found",
        ),
    ] {
        let r = manage(&path, b.clone()).await;
        assert_eq!(r.status, code, "{b}: {:?}", r.body);
        assert!(r.body.to_string().contains(says), "{b}: {:?}", r.body);
    }
    assert_eq!(files(&t), std::slice::from_ref(&handed));

    let r = manage(&path, body(json!({"source-name": format!("volume-{id}")}))).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let new = r.body["volume"]["id"].as_str().unwrap().to_owned();
    assert_ne!(new, id);
    t.wait_status(&token, &p, &new, "available").await;
    let v = t
        .call("GET", &format!("/v3/{p}/volumes/{new}"), Some(&token), None)
        .await
        .body["volume"]
        .clone();
    assert_eq!(v["name"], "back");
    assert_eq!(v["size"], 1);
    assert_eq!(v["os-vol-host-attr:host"], "scoria@file#file");
    assert_eq!(used_volumes(&t, &token, &p).await, 1);
    // The data is the same file's, under the new image's name.
    let file = image_file(&t, &new).await;
    assert_eq!(files(&t), [file.file_name().unwrap().to_string_lossy()]);
    assert!(qemu_io(&file, "read -P 0x5c 1M 2M"));
    assert!(qemu_io(&file, "read -P 0 0 1M"));

    // A file already Scoria's is not managed twice.
    let own = file.file_name().unwrap().to_string_lossy().into_owned();
    let r = manage(&path, body(json!({"source-name": own}))).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(
        r.body.to_string().contains("already Scoria's"),
        "{:?}",
        r.body
    );
}

#[tokio::test]
async fn layered_files_and_members_are_refused() {
    let t = TestApp::new().await;
    let p = t.personas().await;
    let (admin, ap) = (&p.admin.0, &p.admin.1);
    // A foreign chain: an overlay on a base, both dropped into the backend.
    let dir = t.dir.path().join("volumes");
    std::fs::create_dir_all(&dir).unwrap();
    for args in [
        vec!["create", "-f", "qcow2", "base.qcow2", "1G"],
        vec![
            "create",
            "-f",
            "qcow2",
            "-b",
            "base.qcow2",
            "-F",
            "qcow2",
            "top.qcow2",
        ],
    ] {
        let ok = std::process::Command::new("qemu-img")
            .args(&args)
            .current_dir(&dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "{args:?}");
    }
    let body =
        |name: &str| json!({"volume": {"host": "scoria@file", "ref": {"source-name": name}}});
    let r = t
        .call(
            "POST",
            &format!("/v3/{ap}/os-volume-manage"),
            Some(admin),
            Some(body("top")),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(r.body.to_string().contains("top.qcow2"), "{:?}", r.body);
    // Members may not manage or unmanage.
    let r = t
        .call(
            "POST",
            &format!("/v3/{}/os-volume-manage", p.a),
            Some(&p.member.0),
            Some(body("base")),
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let mine = t.volume(&p.member.0, &p.a).await;
    let r = t
        .call(
            "POST",
            &format!("/v3/{}/volumes/{mine}/action", p.a),
            Some(&p.member.0),
            Some(json!({"os-unmanage": {}})),
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    // The base is what top reads through: refused while top is there.
    let r = t
        .call(
            "POST",
            &format!("/v3/{ap}/os-volume-manage"),
            Some(admin),
            Some(body("base.qcow2")),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(
        r.body
            .to_string()
            .contains("is the backing file of top.qcow2"),
        "{:?}",
        r.body
    );
    // Alone, it is self-contained: an admin manages it (1 GiB).
    std::fs::remove_file(dir.join("top.qcow2")).unwrap();
    let r = t
        .call(
            "POST",
            &format!("/v3/{ap}/os-volume-manage"),
            Some(admin),
            Some(body("base.qcow2")),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let id = r.body["volume"]["id"].as_str().unwrap().to_owned();
    t.wait_status(admin, ap, &id, "available").await;
}
