//! The image service as scripts of requests (`support/steps.rs`): the whole
//! lifecycle, visibility and members across two projects, protection,
//! deactivation, JSON patches, paging, the size limit and the quota, and bad
//! input (every refusal a 4xx with Glance's body, and nothing changed).
//! Checksums are computed here, independently of Scoria, and downloads
//! compared byte for byte.

mod support;

use axum::body::Body;
use axum::http::Request;
use futures::StreamExt;
use md5::Md5;
use serde_json::{Value, json};
use sha2::{Digest, Sha512};
use support::steps::{Step, Who, World, call};
use tower::ServiceExt;

use Who::*;

const PATCH: &str = "application/openstack-images-v2.1-json-patch";
const OCTETS: &str = "application/octet-stream";

fn create(who: Who, body: Value, status: u16) -> Step {
    call(who, "POST", "/image/v2/images", Some(body), status)
}

fn patch(who: Who, image: &str, ops: Value, status: u16) -> Step {
    patch_as(who, image, ops, status, PATCH)
}

fn patch_as(who: Who, image: &str, ops: Value, status: u16, content_type: &str) -> Step {
    call(
        who,
        "PATCH",
        &format!("/image/v2/images/{{{image}}}"),
        Some(ops),
        status,
    )
    .header("content-type", content_type)
}

fn upload(who: Who, image: &str, data: &[u8], status: u16) -> Step {
    call(
        who,
        "PUT",
        &format!("/image/v2/images/{{{image}}}/file"),
        None,
        status,
    )
    .header("content-type", OCTETS)
    .bytes(data.to_vec())
}

fn show(who: Who, image: &str, status: u16) -> Step {
    call(
        who,
        "GET",
        &format!("/image/v2/images/{{{image}}}"),
        None,
        status,
    )
}

fn raw_image(name: &str) -> Value {
    json!({"name": name, "disk_format": "raw", "container_format": "bare"})
}

/// `GET path` as `token`, the body's bytes and the response's headers.
async fn get_bytes(
    w: &World,
    token: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, axum::http::HeaderMap, Vec<u8>) {
    let mut req = Request::builder()
        .method("GET")
        .uri(path)
        .header("x-auth-token", token);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp =
        w.t.router
            .clone()
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20)
        .await
        .expect("body");
    (status, headers, bytes.to_vec())
}

#[tokio::test]
async fn lifecycle_create_upload_show_download_list_delete() {
    let mut w = World::new().await;
    let data = b"an image's bytes, as uploaded".to_vec();
    let md5 = hex::encode(Md5::digest(&data));
    let sha = hex::encode(Sha512::digest(&data));
    w.run(vec![
        create(
            Member,
            json!({"name": "img", "disk_format": "qcow2", "container_format": "bare",
                   "visibility": "private", "min_disk": 1, "min_ram": 64, "tags": ["a", "b"],
                   "os_distro": "debian"}),
            201,
        )
        .save("img", "/id")
        .has("/status", json!("queued"))
        .has("/owner", json!("{a}"))
        .has("/tags", json!(["a", "b"]))
        .has("/os_distro", json!("debian"))
        .has("/size", Value::Null)
        .has("/schema", json!("/v2/schemas/image")),
        show(Member, "img", 200)
            .has("/self", json!("/v2/images/{img}"))
            .has("/file", json!("/v2/images/{img}/file")),
        // No data yet: 204.
        call(Member, "GET", "/image/v2/images/{img}/file", None, 204),
        upload(Member, "img", &data, 204),
        show(Reader, "img", 200)
            .has("/status", json!("active"))
            .has("/size", json!(data.len()))
            .has("/checksum", json!(md5))
            .has("/os_hash_algo", json!("sha512"))
            .has("/os_hash_value", json!(sha))
            .has("/visibility", json!("private"))
            .has("/protected", json!(false))
            .has("/min_disk", json!(1))
            .has("/min_ram", json!(64)),
        // Uploading twice is a conflict; the data stays.
        upload(Member, "img", b"other", 409).says("active"),
        call(Member, "GET", "/image/v2/images", None, 200)
            .has("/images/0/id", json!("{img}"))
            .has("/first", json!("/v2/images"))
            .has("/schema", json!("/v2/schemas/images"))
            .lacks("/next")
            .lacks("/images/1"),
        call(Member, "DELETE", "/image/v2/images/{img}", None, 204),
        show(Member, "img", 404).says("No image found with ID"),
        call(Member, "GET", "/image/v2/images/{img}/file", None, 404),
        call(Member, "DELETE", "/image/v2/images/{img}", None, 404),
    ])
    .await;
    // The file went with the image.
    assert!(w.t.app.env.image_store.list().await.unwrap().is_empty());
    assert_eq!(
        scoria_core::invariants::check(&w.t.app.env).await.unwrap(),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn downloads_are_byte_identical_whole_and_in_ranges() {
    let mut w = World::new().await;
    // Bytes of every value, more than one read chunk.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    w.run(vec![
        create(Member, raw_image("bin"), 201).save("bin", "/id"),
        upload(Member, "bin", &data, 204),
    ])
    .await;
    let (token, _) = w.token(Member);
    let path = format!("/image/v2/images/{}/file", w.vars["bin"]);
    let (status, headers, got) = get_bytes(&w, &token, &path, &[]).await;
    assert_eq!(status, 200);
    assert!(got == data, "the download is not the upload");
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(headers["content-length"], data.len().to_string().as_str());
    assert_eq!(
        headers["content-md5"],
        hex::encode(Md5::digest(&data)).as_str()
    );
    let (status, headers, got) =
        get_bytes(&w, &token, &path, &[("range", "bytes=1000-1999")]).await;
    assert_eq!(status, 206);
    assert_eq!(got, &data[1000..2000]);
    assert_eq!(
        headers["content-range"],
        format!("bytes 1000-1999/{}", data.len()).as_str()
    );
    let (status, _, got) = get_bytes(&w, &token, &path, &[("range", "bytes=-10")]).await;
    assert_eq!((status, got.as_slice()), (206, &data[data.len() - 10..]));
    let (status, _, _) = get_bytes(&w, &token, &path, &[("range", "bytes=900000-")]).await;
    assert_eq!(status, 416);
}

#[tokio::test]
async fn visibility_and_members_across_two_projects() {
    let mut w = World::new().await;
    let listed = |who, query: &str, n: usize| {
        let s = call(who, "GET", &format!("/image/v2/images{query}"), None, 200);
        if n == 0 {
            s.lacks("/images/0")
        } else {
            s.has(&format!("/images/{}/id", n - 1), json!("{img}"))
                .lacks(&format!("/images/{n}"))
        }
    };
    w.run(vec![
        create(Member, raw_image("private"), 201).save("img", "/id"),
        upload(Member, "img", b"data", 204),
        patch(
            Member,
            "img",
            json!([{"op": "replace", "path": "/visibility", "value": "private"}]),
            200,
        ),
        // Another project's private image does not exist for B.
        show(Other, "img", 404).says("No image found"),
        call(Other, "GET", "/image/v2/images/{img}/file", None, 404),
        patch(
            Other,
            "img",
            json!([{"op": "replace", "path": "/name", "value": "x"}]),
            404,
        ),
        call(Other, "DELETE", "/image/v2/images/{img}", None, 404),
        listed(Other, "", 0),
        // A private image has no members.
        call(
            Member,
            "POST",
            "/image/v2/images/{img}/members",
            Some(json!({"member": "{b}"})),
            403,
        )
        .says("Only shared images have members"),
        // Shared with B: pending until B accepts.
        patch(
            Member,
            "img",
            json!([{"op": "replace", "path": "/visibility", "value": "shared"}]),
            200,
        ),
        call(
            Member,
            "POST",
            "/image/v2/images/{img}/members",
            Some(json!({"member": "{b}"})),
            200,
        )
        .has("/member_id", json!("{b}"))
        .has("/image_id", json!("{img}"))
        .has("/status", json!("pending"))
        .has("/schema", json!("/v2/schemas/member")),
        call(
            Member,
            "POST",
            "/image/v2/images/{img}/members",
            Some(json!({"member": "{b}"})),
            409,
        )
        .says("already associated"),
        show(Other, "img", 200).has("/visibility", json!("shared")),
        listed(Other, "", 0),
        listed(Other, "?member_status=pending", 1),
        listed(Other, "?member_status=all", 1),
        call(Other, "GET", "/image/v2/images/{img}/members", None, 200)
            .has("/members/0/member_id", json!("{b}"))
            .lacks("/members/1"),
        // Only the member decides; only the owner shares.
        call(
            Member,
            "PUT",
            "/image/v2/images/{img}/members/{b}",
            Some(json!({"status": "accepted"})),
            403,
        ),
        call(
            Other,
            "POST",
            "/image/v2/images/{img}/members",
            Some(json!({"member": "{admin_p}"})),
            403,
        ),
        call(
            Other,
            "PUT",
            "/image/v2/images/{img}/members/{b}",
            Some(json!({"status": "accepted"})),
            200,
        )
        .has("/status", json!("accepted")),
        listed(Other, "", 1),
        listed(Other, "?visibility=shared", 1),
        call(
            Other,
            "GET",
            "/image/v2/images/{img}/members/{b}",
            None,
            200,
        )
        .has("/status", json!("accepted")),
        // B may download it, not change or delete it.
        call(Other, "GET", "/image/v2/images/{img}/file", None, 200),
        patch(
            Other,
            "img",
            json!([{"op": "replace", "path": "/name", "value": "x"}]),
            403,
        ),
        call(Other, "DELETE", "/image/v2/images/{img}", None, 403),
        call(
            Other,
            "DELETE",
            "/image/v2/images/{img}/members/{b}",
            None,
            403,
        ),
        call(
            Member,
            "DELETE",
            "/image/v2/images/{img}/members/{b}",
            None,
            204,
        ),
        call(
            Member,
            "GET",
            "/image/v2/images/{img}/members/{b}",
            None,
            404,
        ),
        show(Other, "img", 404),
        // Community: seen by all, listed only when asked for.
        patch(
            Member,
            "img",
            json!([{"op": "replace", "path": "/visibility", "value": "community"}]),
            200,
        ),
        show(Other, "img", 200),
        listed(Other, "", 0),
        listed(Other, "?visibility=community", 1),
        listed(Other, "?visibility=all", 1),
        // Public: only an admin may publish.
        patch(
            Member,
            "img",
            json!([{"op": "replace", "path": "/visibility", "value": "public"}]),
            403,
        )
        .says("publicize_image"),
        create(Member, json!({"name": "p", "visibility": "public"}), 403),
        patch(
            Admin,
            "img",
            json!([{"op": "replace", "path": "/visibility", "value": "public"}]),
            200,
        ),
        listed(Other, "", 1),
        listed(Other, "?visibility=public", 1),
        listed(Other, "?visibility=private", 0),
        // Admins see everything.
        show(Admin, "img", 200).has("/owner", json!("{a}")),
    ])
    .await;
}

#[tokio::test]
async fn protection_and_deactivation() {
    let mut w = World::new().await;
    w.run(vec![
        create(Member, json!({"name": "keep", "disk_format": "raw", "container_format": "bare", "protected": true}), 201)
            .save("img", "/id")
            .has("/protected", json!(true)),
        upload(Member, "img", b"protected bytes", 204),
        call(Member, "DELETE", "/image/v2/images/{img}", None, 403).says("is protected"),
        call(Admin, "DELETE", "/image/v2/images/{img}", None, 403).says("is protected"),
        show(Member, "img", 200).has("/status", json!("active")),
        // The owner (or an admin) deactivates; a deactivated image's data is
        // for admins only, even the owner's.
        call(Reader, "POST", "/image/v2/images/{img}/actions/deactivate", None, 403),
        call(Other, "POST", "/image/v2/images/{img}/actions/deactivate", None, 404),
        call(Member, "POST", "/image/v2/images/{img}/actions/deactivate", None, 204),
        call(Admin, "POST", "/image/v2/images/{img}/actions/deactivate", None, 204),
        show(Reader, "img", 200).has("/status", json!("deactivated")),
        call(Member, "GET", "/image/v2/images/{img}/file", None, 403).says("deactivated"),
        call(Admin, "GET", "/image/v2/images/{img}/file", None, 200),
        call(Reader, "POST", "/image/v2/images/{img}/actions/reactivate", None, 403),
        call(Member, "POST", "/image/v2/images/{img}/actions/reactivate", None, 204),
        call(Admin, "POST", "/image/v2/images/{img}/actions/reactivate", None, 204),
        show(Member, "img", 200).has("/status", json!("active")),
        call(Member, "GET", "/image/v2/images/{img}/file", None, 200),
        // A queued image cannot be deactivated.
        create(Member, raw_image("empty"), 201).save("empty", "/id"),
        call(Admin, "POST", "/image/v2/images/{empty}/actions/deactivate", None, 403).says("queued"),
        // Unprotected, it goes.
        patch(Member, "img", json!([{"op": "replace", "path": "/protected", "value": false}]), 200),
        call(Member, "DELETE", "/image/v2/images/{img}", None, 204),
        show(Member, "img", 404),
    ])
    .await;
}

#[tokio::test]
async fn json_patches_and_tags() {
    let mut w = World::new().await;
    let ops = |v: Value| v;
    w.run(vec![
        create(Member, json!({"name": "p", "k1": "v1"}), 201).save("img", "/id"),
        patch(Member, "img", ops(json!([
            {"op": "replace", "path": "/name", "value": "renamed"},
            {"op": "add", "path": "/k2", "value": "v2"},
            {"op": "replace", "path": "/k1", "value": "v1b"},
            {"op": "add", "path": "/min_ram", "value": 512},
            {"op": "replace", "path": "/tags", "value": ["x", "y"]},
            {"op": "replace", "path": "/disk_format", "value": "vmdk"},
            {"op": "replace", "path": "/container_format", "value": "bare"},
            {"op": "add", "path": "/os_hidden", "value": false},
        ])), 200)
            .has("/name", json!("renamed"))
            .has("/k1", json!("v1b"))
            .has("/k2", json!("v2"))
            .has("/min_ram", json!(512))
            .has("/tags", json!(["x", "y"]))
            .has("/disk_format", json!("vmdk")),
        patch(Member, "img", json!([{"op": "remove", "path": "/k2"}]), 200).lacks("/k2"),
        // The 2.0 draft (tempest's).
        patch_as(Member, "img", json!([{"replace": "/name", "value": "draft4"}]), 200,
            "application/openstack-images-v2.0-json-patch")
            .has("/name", json!("draft4")),
        // Refusals; none of them changes anything.
        patch(Member, "img", json!([{"op": "replace", "path": "/nothere", "value": "v"}]), 409).says("does not exist"),
        patch(Member, "img", json!([{"op": "remove", "path": "/nothere"}]), 409).says("does not exist"),
        patch(Member, "img", json!([{"op": "remove", "path": "/name"}]), 403).says("may not be removed"),
        patch(Member, "img", json!([{"op": "replace", "path": "/size", "value": 5}]), 403).says("read-only"),
        patch(Member, "img", json!([{"op": "replace", "path": "/status", "value": "active"}]), 403).says("read-only"),
        patch(Member, "img", json!([{"op": "add", "path": "/location", "value": "x"}]), 403).says("reserved"),
        patch(Member, "img", json!([{"op": "add", "path": "/os_glance_import", "value": "x"}]), 403).says("reserved"),
        patch(Member, "img", json!([{"op": "add", "path": "/locations/-", "value": {"url": "file:///etc/passwd", "metadata": {}}}]), 403),
        patch(Member, "img", json!({"op": "replace"}), 400).says("JSON array"),
        patch(Member, "img", json!(["replace"]), 400).says("JSON objects"),
        patch(Member, "img", json!([{"path": "/name", "value": "x"}]), 400).says("op"),
        patch(Member, "img", json!([{"op": "move", "path": "/name", "value": "x"}]), 400).says("Invalid operation"),
        patch(Member, "img", json!([{"op": "replace", "path": "name", "value": "x"}]), 400).says("does not start with"),
        patch(Member, "img", json!([{"op": "replace", "path": "/a/b", "value": "x"}]), 400).says("Invalid JSON pointer"),
        patch(Member, "img", json!([{"op": "replace", "path": "/name"}]), 400).says("requires a member named \"value\""),
        patch(Member, "img", json!([{"op": "replace", "path": "/min_ram", "value": "1"}]), 400).says("integer"),
        patch(Member, "img", json!([{"op": "replace", "path": "/min_ram", "value": -1}]), 400).says("minimum"),
        patch(Member, "img", json!([{"op": "replace", "path": "/visibility", "value": "everyone"}]), 400),
        patch(Member, "img", json!([{"op": "add", "path": "/k3", "value": 3}]), 400).says("string"),
        patch(Member, "img", json!([{"op": "replace", "path": "/disk_format", "value": "ami"}]), 400),
        // A good change after a bad one in the same patch: nothing applies.
        patch(Member, "img", json!([
            {"op": "replace", "path": "/name", "value": "half"},
            {"op": "replace", "path": "/nothere", "value": "v"},
        ]), 409),
        patch_as(Member, "img", json!([{"op": "replace", "path": "/name", "value": "x"}]), 415,
            "application/json"),
        call(Member, "PATCH", "/image/v2/images/{img}", Some(json!([])), 415)
            .header("content-type", "text/plain"),
        patch(Member, "img", json!([]), 200).has("/name", json!("draft4")),
        show(Member, "img", 200)
            .has("/name", json!("draft4"))
            .has("/k1", json!("v1b"))
            .has("/tags", json!(["x", "y"]))
            .has("/min_ram", json!(512))
            .lacks("/k3")
            .lacks("/location"),
        // Tags one by one.
        call(Member, "PUT", "/image/v2/images/{img}/tags/z", None, 204),
        call(Member, "PUT", "/image/v2/images/{img}/tags/z", None, 204),
        call(Member, "DELETE", "/image/v2/images/{img}/tags/x", None, 204),
        call(Member, "DELETE", "/image/v2/images/{img}/tags/x", None, 404),
        call(Reader, "PUT", "/image/v2/images/{img}/tags/r", None, 403),
        show(Member, "img", 200).has("/tags", json!(["y", "z"])),
        call(Member, "GET", "/image/v2/images?tag=y&tag=z", None, 200).has("/images/0/id", json!("{img}")),
        call(Member, "GET", "/image/v2/images?tag=x", None, 200).lacks("/images/0"),
        call(Member, "GET", "/image/v2/images?k1=v1b", None, 200).has("/images/0/id", json!("{img}")),
        // Once active, the formats are fixed.
        upload(Member, "img", b"x", 204),
        patch(Member, "img", json!([{"op": "replace", "path": "/disk_format", "value": "raw"}]), 403).says("queued"),
        // Only an admin gives an image away.
        patch(Member, "img", json!([{"op": "replace", "path": "/owner", "value": "{b}"}]), 403).says("non admin"),
        patch(Admin, "img", json!([{"op": "replace", "path": "/owner", "value": "{b}"}]), 200)
            .has("/owner", json!("{b}")),
        show(Member, "img", 404),
    ])
    .await;
}

#[tokio::test]
async fn lists_filter_sort_and_page_with_next_links() {
    let mut w = World::new().await;
    let mut steps = Vec::new();
    for (i, name) in ["c", "a", "e", "b", "d"].iter().enumerate() {
        steps.push(
            create(Member, raw_image(name), 201).save(["i0", "i1", "i2", "i3", "i4"][i], "/id"),
        );
    }
    steps.extend([
        upload(Member, "i0", &[0u8; 100], 204),
        upload(Member, "i1", &[0u8; 300], 204),
        call(
            Member,
            "GET",
            "/image/v2/images?sort=name:asc&limit=2",
            None,
            200,
        )
        .has("/images/0/name", json!("a"))
        .has("/images/1/name", json!("b"))
        .lacks("/images/2")
        .has("/first", json!("/v2/images?sort=name%3Aasc&limit=2"))
        .has(
            "/next",
            json!("/v2/images?sort=name%3Aasc&limit=2&marker={i3}"),
        ),
        call(
            Member,
            "GET",
            "/image/v2/images?sort=name:asc&limit=2&marker={i3}",
            None,
            200,
        )
        .has("/images/0/name", json!("c"))
        .has("/images/1/name", json!("d"))
        .has(
            "/next",
            json!("/v2/images?sort=name%3Aasc&limit=2&marker={i4}"),
        ),
        call(
            Member,
            "GET",
            "/image/v2/images?sort=name:asc&limit=2&marker={i4}",
            None,
            200,
        )
        .has("/images/0/name", json!("e"))
        .lacks("/images/1")
        .lacks("/next"),
        call(
            Member,
            "GET",
            "/image/v2/images?sort_key=name&sort_dir=desc&limit=1",
            None,
            200,
        )
        .has("/images/0/name", json!("e")),
        call(
            Member,
            "GET",
            "/image/v2/images?status=active&sort=size:desc",
            None,
            200,
        )
        .has("/images/0/name", json!("a"))
        .has("/images/1/name", json!("c"))
        .lacks("/images/2"),
        call(Member, "GET", "/image/v2/images?size_min=200", None, 200)
            .has("/images/0/name", json!("a"))
            .lacks("/images/1"),
        call(Member, "GET", "/image/v2/images?size_max=200", None, 200)
            .has("/images/0/name", json!("c"))
            .lacks("/images/1"),
        call(Member, "GET", "/image/v2/images?size=300", None, 200)
            .has("/images/0/name", json!("a"))
            .lacks("/images/1"),
        call(Member, "GET", "/image/v2/images?size=big", None, 200).lacks("/images/0"),
        call(Member, "GET", "/image/v2/images?id={i2}", None, 200)
            .has("/images/0/name", json!("e"))
            .lacks("/images/1"),
        call(Member, "GET", "/image/v2/images?name=d", None, 200)
            .has("/images/0/id", json!("{i4}"))
            .lacks("/images/1"),
        call(
            Member,
            "GET",
            "/image/v2/images?disk_format=qcow2",
            None,
            200,
        )
        .lacks("/images/0"),
        call(
            Member,
            "GET",
            "/image/v2/images?container_format=bare&protected=false&limit=10",
            None,
            200,
        )
        .has("/images/4/container_format", json!("bare")),
        call(
            Member,
            "GET",
            "/image/v2/images?owner={a}&limit=0",
            None,
            200,
        )
        .lacks("/images/0"),
        call(Other, "GET", "/image/v2/images", None, 200).lacks("/images/0"),
        // Bad parameters.
        call(Member, "GET", "/image/v2/images?sort_key=owner", None, 400).says("Invalid sort key"),
        call(Member, "GET", "/image/v2/images?sort=name:up", None, 400).says("sort direction"),
        call(
            Member,
            "GET",
            "/image/v2/images?sort=name&sort_key=size",
            None,
            400,
        )
        .says("cannot be combined"),
        call(Member, "GET", "/image/v2/images?limit=x", None, 400).says("integer"),
        call(Member, "GET", "/image/v2/images?limit=-1", None, 400).says("positive"),
        call(
            Member,
            "GET",
            "/image/v2/images?visibility=everyone",
            None,
            400,
        )
        .says("visibility"),
        call(
            Member,
            "GET",
            "/image/v2/images?member_status=maybe",
            None,
            400,
        )
        .says("Invalid status"),
        call(
            Member,
            "GET",
            "/image/v2/images?marker={nothing}",
            None,
            400,
        )
        .says("Invalid marker"),
        call(
            Member,
            "GET",
            "/image/v2/images?marker=not-an-id",
            None,
            400,
        )
        .says("Invalid marker"),
        call(Member, "GET", "/image/v2/images?protected=maybe", None, 400),
        call(Member, "GET", "/image/v2/images?size_min=big", None, 400),
    ]);
    w.run(steps).await;
}

#[tokio::test]
async fn hidden_images_stay_out_of_default_lists() {
    let mut w = World::new().await;
    w.run(vec![
        create(Member, json!({"name": "h", "os_hidden": true}), 201).save("img", "/id"),
        call(Member, "GET", "/image/v2/images", None, 200).lacks("/images/0"),
        call(Member, "GET", "/image/v2/images?os_hidden=true", None, 200)
            .has("/images/0/id", json!("{img}")),
        show(Member, "img", 200).has("/os_hidden", json!(true)),
    ])
    .await;
}

#[tokio::test]
async fn uploads_past_the_size_limit_or_the_quota_are_413_and_leave_the_image_queued() {
    let mut w = World::with_config(|c| {
        c.image_service.max_image_size = 1000;
        c.image_service.image_size_total = 1500;
    })
    .await;
    w.run(vec![
        create(Member, raw_image("big"), 201).save("big", "/id"),
        upload(Member, "big", &[1u8; 1001], 413).says("too large"),
        show(Member, "big", 200)
            .has("/status", json!("queued"))
            .has("/size", Value::Null),
        upload(Member, "big", &[1u8; 1000], 204),
        create(Member, raw_image("second"), 201).save("second", "/id"),
        // 1000 + 600 passes the project's 1500 bytes.
        upload(Member, "second", &[2u8; 600], 413).says("image_size_total"),
        show(Member, "second", 200).has("/status", json!("queued")),
        upload(Member, "second", &[2u8; 500], 204),
        // At the limit, even a create is refused; another project is not.
        create(Member, raw_image("third"), 413).says("image_size_total"),
        create(Other, raw_image("elsewhere"), 201),
        // Deleting frees the quota.
        call(Member, "DELETE", "/image/v2/images/{big}", None, 204),
        create(Member, raw_image("third"), 201),
    ])
    .await;
    assert_eq!(
        scoria_core::invariants::check(&w.t.app.env).await.unwrap(),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn bad_input_is_4xx_with_glances_body_and_changes_nothing() {
    let mut w = World::new().await;
    w.run(vec![
        create(Member, raw_image("good"), 201).save("img", "/id"),
        // Not JSON, not an object, not JSON at all.
        call(Member, "POST", "/image/v2/images", None, 400)
            .header("content-type", "application/json")
            .bytes(b"{not json".to_vec())
            .says("Malformed JSON"),
        call(Member, "POST", "/image/v2/images", None, 400)
            .header("content-type", "application/json")
            .bytes(b"   ".to_vec())
            .says("Body expected"),
        create(Member, json!(["a"]), 400).says("JSON object"),
        call(Member, "POST", "/image/v2/images", None, 415)
            .header("content-type", "text/plain")
            .bytes(b"{}".to_vec()),
        // Attributes a client may not set, values of the wrong type.
        create(Member, json!({"size": 5}), 403).says("read-only"),
        create(Member, json!({"status": "active"}), 403).says("read-only"),
        create(Member, json!({"checksum": "x"}), 403).says("read-only"),
        create(Member, json!({"self": "x"}), 403).says("read-only"),
        create(Member, json!({"location": "file:///etc/passwd"}), 403).says("reserved"),
        create(Member, json!({"os_glance_x": "1"}), 403).says("reserved"),
        create(Member, json!({"custom": 5}), 400).says("string"),
        create(Member, json!({"name": 5}), 400),
        create(Member, json!({"name": "x".repeat(256)}), 400).says("too long"),
        create(Member, json!({"disk_format": "ami"}), 400).says("disk_format"),
        create(Member, json!({"container_format": "ovf"}), 400).says("container_format"),
        create(Member, json!({"visibility": "everyone"}), 400),
        create(Member, json!({"protected": "yes"}), 400).says("boolean"),
        create(Member, json!({"min_disk": -1}), 400).says("minimum"),
        create(Member, json!({"min_ram": "1"}), 400).says("integer"),
        create(Member, json!({"tags": "t"}), 400).says("array"),
        create(Member, json!({"id": "not-a-uuid"}), 400).says("does not match"),
        create(Member, json!({"id": "{img}"}), 409).says("already exists"),
        create(Member, json!({"owner": "{b}"}), 403),
        create(Reader, raw_image("reader"), 403).says("add_image"),
        // Uploads: the media type, the formats, the status.
        call(Member, "PUT", "/image/v2/images/{img}/file", None, 415)
            .header("content-type", "application/json")
            .bytes(b"data".to_vec()),
        call(Member, "PUT", "/image/v2/images/{img}/file", None, 415)
            .bytes(b"data".to_vec())
            .header("content-type", "text/plain"),
        create(Member, json!({"name": "formatless"}), 201).save("bare", "/id"),
        upload(Member, "bare", b"data", 400).says("disk_format"),
        upload(Member, "nothing", b"data", 404),
        call(Member, "PUT", "/image/v2/images/not-an-id/file", None, 404)
            .header("content-type", OCTETS)
            .bytes(b"x".to_vec()),
        // Members: the body's shape.
        patch(
            Member,
            "img",
            json!([{"op": "replace", "path": "/visibility", "value": "shared"}]),
            200,
        ),
        call(
            Member,
            "POST",
            "/image/v2/images/{img}/members",
            Some(json!({})),
            400,
        )
        .says("not specified"),
        call(
            Member,
            "POST",
            "/image/v2/images/{img}/members",
            Some(json!({"member": 5})),
            400,
        ),
        call(
            Member,
            "POST",
            "/image/v2/images/{img}/members",
            Some(json!({"member": "{b}", "x": 1})),
            400,
        )
        .says("Additional properties"),
        call(
            Member,
            "POST",
            "/image/v2/images/{img}/members",
            Some(json!({"member": "{b}"})),
            200,
        ),
        call(
            Other,
            "PUT",
            "/image/v2/images/{img}/members/{b}",
            Some(json!({"status": "maybe"})),
            400,
        )
        .says("Invalid status"),
        call(
            Other,
            "PUT",
            "/image/v2/images/{img}/members/{b}",
            Some(json!({})),
            400,
        )
        .says("Status not specified"),
        call(
            Other,
            "PUT",
            "/image/v2/images/{img}/members/{b}",
            Some(json!({"status": "accepted", "x": 1})),
            400,
        ),
        call(
            Member,
            "GET",
            "/image/v2/images/{img}/members/nobody",
            None,
            404,
        ),
        // Unknown routes and methods.
        call(Member, "GET", "/image/v2/nothing", None, 404),
        call(
            Member,
            "POST",
            "/image/v2/images/{img}",
            Some(json!({})),
            405,
        ),
        // After all of that: the two images, as they were made.
        call(Member, "GET", "/image/v2/images?sort=name:asc", None, 200)
            .has("/images/0/name", json!("formatless"))
            .has("/images/1/name", json!("good"))
            .has("/images/1/status", json!("queued"))
            .lacks("/images/2"),
        call(Member, "GET", "/image/v2/images/{img}/members", None, 200)
            .has("/members/0/status", json!("pending"))
            .lacks("/members/1"),
    ])
    .await;
}

#[tokio::test]
async fn version_documents_schemas_and_error_formats() {
    let w = World::new().await;
    let r = w.t.call("GET", "/image", None, None).await;
    assert_eq!(r.status, 300);
    assert_eq!(r.body["versions"][0]["id"], "v2.7");
    assert_eq!(r.body["versions"][0]["status"], "CURRENT");
    let r = w.t.call("GET", "/image/versions", None, None).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body["versions"][0]["links"][0]["href"]
            .as_str()
            .unwrap()
            .ends_with("/image/v2/")
    );
    let (token, _) = w.token(Member);
    for (schema, name) in [
        ("image", "image"),
        ("images", "images"),
        ("member", "member"),
        ("members", "members"),
    ] {
        let r =
            w.t.call(
                "GET",
                &format!("/image/v2/schemas/{schema}"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!((r.status, r.body["name"].as_str()), (200, Some(name)));
    }
    // The catalog names the image service where clients look for it.
    let r =
        w.t.call("GET", "/identity/v3/auth/catalog", Some(&token), None)
            .await;
    let image = r.body["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == "image")
        .expect("an image service in the catalog")
        .clone();
    assert_eq!(image["name"], "glance");
    assert!(
        image["endpoints"][0]["url"]
            .as_str()
            .unwrap()
            .ends_with("/image")
    );
    // Without Accept (a browser, curl): WebOb's HTML page; text/plain: plain.
    let path = format!("/image/v2/images/{}", support::steps::NOTHING);
    let (status, headers, body) = get_bytes(&w, &token, &path, &[]).await;
    assert_eq!(status, 404);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = String::from_utf8(body).unwrap();
    assert!(
        html.contains("<h1>404 Not Found</h1>") && html.contains("No image found"),
        "{html}"
    );
    let (_, headers, body) = get_bytes(&w, &token, &path, &[("accept", "text/plain")]).await;
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(
        String::from_utf8(body)
            .unwrap()
            .starts_with("404 Not Found\n\nNo image found")
    );
    // A request without a token: the token middleware's 401.
    let r = w.t.call("GET", "/image/v2/images", None, None).await;
    assert_eq!(r.status, 401);
    assert!(r.headers.contains_key("www-authenticate"));
}

/// Resident and peak resident memory of this process, in KiB.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .expect("a /proc/self/status field")
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_of_256_mib_is_streamed_in_bounded_memory() {
    const TOTAL: usize = 256 << 20;
    const CHUNK: usize = 64 << 10;
    let mut w = World::new().await;
    w.run(vec![
        create(Member, raw_image("big"), 201).save("big", "/id"),
    ])
    .await;
    let (token, _) = w.token(Member);
    let id = w.vars["big"].clone();
    // The body is made as it is sent, one 64 KiB chunk at a time; the test
    // hashes the same chunks on the way.
    let hashes = std::sync::Arc::new(std::sync::Mutex::new((Md5::new(), Sha512::new())));
    let h = hashes.clone();
    let base: Vec<u8> = (0..CHUNK).map(|i| (i * 31 % 251) as u8).collect();
    let body = futures::stream::iter(0..TOTAL / CHUNK).map(move |k| {
        let mut chunk = base.clone();
        chunk[..8].copy_from_slice(&(k as u64).to_le_bytes());
        let mut g = h.lock().unwrap();
        g.0.update(&chunk);
        g.1.update(&chunk);
        Ok::<_, std::io::Error>(bytes::Bytes::from(chunk))
    });
    let (before, _) = rss_kib();
    // Forget the peak so far: the peak read below is this upload's.
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
    let req = Request::builder()
        .method("PUT")
        .uri(format!("/image/v2/images/{id}/file"))
        .header("x-auth-token", &token)
        .header("content-type", OCTETS)
        .header("content-length", TOTAL.to_string())
        .body(Body::from_stream(body))
        .expect("request");
    let resp = w.t.router.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), 204);
    let (_, peak) = rss_kib();
    let grew_mib = peak.saturating_sub(before) / 1024;
    println!(
        "RSS before {} MiB, peak during the upload {} MiB",
        before / 1024,
        peak / 1024
    );
    assert!(
        grew_mib < 64,
        "the peak RSS grew by {grew_mib} MiB during a 256 MiB upload"
    );
    let (md5, sha) = {
        let g = hashes.lock().unwrap();
        (
            hex::encode(g.0.clone().finalize()),
            hex::encode(g.1.clone().finalize()),
        )
    };
    w.run(vec![
        show(Member, "big", 200)
            .has("/size", json!(TOTAL))
            .has("/checksum", json!(md5))
            .has("/os_hash_value", json!(sha)),
    ])
    .await;
    // And the download streams too.
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
    let (before, _) = rss_kib();
    let req = Request::builder()
        .uri(format!("/image/v2/images/{id}/file"))
        .header("x-auth-token", &token)
        .body(Body::empty())
        .expect("request");
    let resp = w.t.router.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), 200);
    let mut stream = resp.into_body().into_data_stream();
    let mut got = Md5::new();
    let mut n = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("chunk");
        n += chunk.len();
        got.update(&chunk);
    }
    let (_, peak) = rss_kib();
    assert_eq!((n, hex::encode(got.finalize())), (TOTAL, md5));
    assert!(
        peak.saturating_sub(before) / 1024 < 64,
        "the peak RSS grew by {} MiB during a 256 MiB download",
        peak.saturating_sub(before) / 1024
    );
}
