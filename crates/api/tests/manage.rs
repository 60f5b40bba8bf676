//! Manage and unmanage through HTTP, on the real file backend: a volume
//! unmanaged leaves its data as `volume-<id>.qcow2`, managed back by that
//! name its data reads as written (qemu-io); a file layered on another, one
//! already Scoria's, an unknown one and bad bodies are clear 4xx that change
//! nothing; members may do neither. The list of manageable files shows
//! Cinder's fields, sorts and pages as Cinder does, and says which files
//! stand on which.

// The test writes and reads the files with qemu-io.
#![allow(clippy::disallowed_methods)]

mod support;

use serde_json::{Value, json};
use support::{TestApp, qemu_img, qemu_io};

/// `qemu-img` arguments for a qcow2 overlay `top` on the qcow2 `base`.
fn overlay<'a>(base: &'a str, top: &'a str) -> [&'a str; 8] {
    ["create", "-f", "qcow2", "-b", base, "-F", "qcow2", top]
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
    assert!(qemu_io(&t.volume_file(&id).await, "write -P 0x5c 1M 2M"));
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
    let file = t.volume_file(&new).await;
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
        overlay("base.qcow2", "top.qcow2").to_vec(),
    ] {
        qemu_img(&dir, &args);
    }
    let manage = |project: &str, token: &str, name: &str| {
        let (path, token) = (format!("/v3/{project}/os-volume-manage"), token.to_owned());
        let body = json!({"volume": {"host": "scoria@file", "ref": {"source-name": name}}});
        let t = &t;
        async move { t.call("POST", &path, Some(&token), Some(body)).await }
    };
    let r = manage(ap, admin, "top").await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(r.body.to_string().contains("top.qcow2"), "{:?}", r.body);
    // Members may not manage or unmanage.
    let r = manage(&p.a, &p.member.0, "base").await;
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
    let r = manage(ap, admin, "base.qcow2").await;
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
    let r = manage(ap, admin, "base.qcow2").await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let id = r.body["volume"]["id"].as_str().unwrap().to_owned();
    t.wait_status(admin, ap, &id, "available").await;
}

#[tokio::test]
async fn foreign_files_are_listed_with_what_uses_them() {
    let t = TestApp::new().await;
    let p = t.personas().await;
    let (admin, ap) = (&p.admin.0, &p.admin.1);
    // One of Scoria's volumes (never listed) beside foreign files: a base
    // two overlays stand on, a self-contained raw file of 2 GiB and a byte,
    // and a qcow2 named raw.
    t.volume(admin, ap).await;
    let dir = t.dir.path().join("volumes");
    for args in [
        vec!["create", "-f", "qcow2", "base.qcow2", "1G"],
        overlay("base.qcow2", "top1.qcow2").to_vec(),
        overlay("base.qcow2", "top2.qcow2").to_vec(),
        vec!["create", "-f", "raw", "alone.raw", "2147483649"],
        vec!["create", "-f", "qcow2", "lying.raw", "1G"],
    ] {
        qemu_img(&dir, &args);
    }
    let list = |query: &str, version: &str| {
        let (t, path) = (&t, format!("/v3/{ap}/manageable_volumes{query}"));
        let version = version.to_owned();
        async move { t.call_v("GET", &path, Some(admin), None, &version).await }
    };
    let names = |r: &support::Reply| -> Vec<String> {
        r.body["manageable-volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["reference"]["source-name"].as_str().unwrap().to_owned())
            .collect()
    };

    // By reference, descending (Cinder's default order); the summary has
    // three fields.
    let r = list("?host=scoria@file", "3.8").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        names(&r),
        [
            "top2.qcow2",
            "top1.qcow2",
            "lying.raw",
            "base.qcow2",
            "alone.raw"
        ]
    );
    let first = r.body["manageable-volumes"][0].as_object().unwrap();
    let mut keys: Vec<&str> = first.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["reference", "safe_to_manage", "size"]);

    // The detail says what each file is to the others, and why not.
    let r = list("/detail?host=scoria@file&sort=reference:asc", "3.8").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let by_name = |n: &str| {
        r.body["manageable-volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["reference"]["source-name"] == n)
            .unwrap_or_else(|| panic!("{n} is not listed: {:?}", r.body))
            .clone()
    };
    let alone = by_name("alone.raw");
    assert_eq!(alone["safe_to_manage"], true, "{alone}");
    assert_eq!(alone["size"], 3, "2 GiB and a byte rounds up");
    assert_eq!(alone["reason_not_safe"], Value::Null);
    assert_eq!(alone["cinder_id"], Value::Null);
    let base = by_name("base.qcow2");
    assert_eq!(base["safe_to_manage"], false);
    assert_eq!(base["referenced_by"], json!(["top1.qcow2", "top2.qcow2"]));
    assert!(
        base["extra_info"]
            .as_str()
            .unwrap()
            .contains("backing file of 2 file(s)"),
        "{base}"
    );
    let top = by_name("top1.qcow2");
    assert_eq!(top["safe_to_manage"], false);
    assert_eq!(top["backing_chain"], json!(["base.qcow2"]));
    assert!(
        top["reason_not_safe"]
            .as_str()
            .unwrap()
            .contains("Layered on base.qcow2"),
        "{top}"
    );
    let lying = by_name("lying.raw");
    assert_eq!(lying["format"], "qcow2");
    assert_eq!(lying["safe_to_manage"], false);

    // Sorted by size, then paged with Cinder's marker (a reference).
    let r = list(
        "?host=scoria@file&sort=size:desc,reference:asc&limit=2",
        "3.8",
    )
    .await;
    assert_eq!(names(&r), ["alone.raw", "base.qcow2"]);
    let marker = "%7B%22source-name%22%3A%22base.qcow2%22%7D";
    let r = list(
        &format!("?host=scoria@file&sort=size:desc,reference:asc&limit=2&marker={marker}"),
        "3.8",
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(names(&r), ["lying.raw", "top1.qcow2"]);

    // Refused: before 3.8, without a host, with a host not ours, an unknown
    // sort key, a marker not in the list, a member.
    for (query, version, code) in [
        ("?host=scoria@file", "3.7", 404),
        ("", "3.8", 400),
        ("?host=scoria@elsewhere", "3.8", 404),
        ("?host=scoria@file&sort=name", "3.8", 400),
        ("?host=scoria@file&marker=nope.qcow2", "3.8", 400),
    ] {
        let r = list(query, version).await;
        assert_eq!(r.status, code, "{query} {version}: {:?}", r.body);
        assert!(r.body.get("itemNotFound").is_some() || r.body.get("badRequest").is_some());
    }
    let r = t
        .call_v(
            "GET",
            &format!("/v3/{}/manageable_volumes?host=scoria@file", p.a),
            Some(&p.member.0),
            None,
            "3.8",
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);

    // Once managed, a file is Scoria's and leaves the list.
    let r = t
        .call_v(
            "POST",
            &format!("/v3/{ap}/manageable_volumes"),
            Some(admin),
            Some(json!({"volume": {"host": "scoria@file", "ref": {"source-name": "alone.raw"}}})),
            "3.8",
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let id = r.body["volume"]["id"].as_str().unwrap().to_owned();
    t.wait_status(admin, ap, &id, "available").await;
    let r = list("?host=scoria@file", "3.8").await;
    assert_eq!(
        names(&r),
        ["top2.qcow2", "top1.qcow2", "lying.raw", "base.qcow2"]
    );
}
