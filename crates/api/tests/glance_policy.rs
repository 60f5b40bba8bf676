//! Every image route, walked with every kind of caller (as `policy.rs` does
//! for Block Storage): no token, an expired token, a member of another
//! project, a reader, a member and an admin of project A. A route added to
//! the image table without a row here fails `every_image_route_has_a_row`.
//! Every refusal but a 401 carries Glance's body.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::TestApp;

/// Expected statuses for [no token, expired, other project's member, reader, member, admin].
type Expect = [u16; 6];

struct Row {
    method: &'static str,
    /// Fixtures, made fresh for every call: `{i}` an active private image
    /// of project A (tagged `t`); `{q}` a queued one; `{s}` an active image
    /// of A shared with project B (`{b}`, pending); `{n}` a shared image of A
    /// without members.
    path: &'static str,
    body: Option<Value>,
    content_type: &'static str,
    expect: Expect,
}

fn rows() -> Vec<Row> {
    let r = |method, path, body: Option<Value>, expect| Row {
        method,
        path,
        body,
        content_type: "application/json",
        expect,
    };
    let anyone = [401, 401, 200, 200, 200, 200];
    let a_only = [401, 401, 404, 200, 200, 200];
    let a_member = [401, 401, 404, 403, 204, 204];
    vec![
        r("GET", "/image/v2/images", None, anyone),
        r(
            "POST",
            "/image/v2/images",
            Some(json!({"name": "x"})),
            [401, 401, 201, 403, 201, 201],
        ),
        r("GET", "/image/v2/images/{i}", None, a_only),
        Row {
            content_type: "application/openstack-images-v2.1-json-patch",
            ..r(
                "PATCH",
                "/image/v2/images/{i}",
                Some(json!([{"op": "replace", "path": "/name", "value": "n"}])),
                [401, 401, 404, 403, 200, 200],
            )
        },
        r("DELETE", "/image/v2/images/{i}", None, a_member),
        Row {
            content_type: "application/octet-stream",
            ..r("PUT", "/image/v2/images/{q}/file", None, a_member)
        },
        r("GET", "/image/v2/images/{i}/file", None, a_only),
        r(
            "POST",
            "/image/v2/images/{i}/actions/deactivate",
            None,
            a_member,
        ),
        r(
            "POST",
            "/image/v2/images/{i}/actions/reactivate",
            None,
            a_member,
        ),
        r("PUT", "/image/v2/images/{i}/tags/u", None, a_member),
        r("DELETE", "/image/v2/images/{i}/tags/t", None, a_member),
        r("GET", "/image/v2/images/{s}/members", None, anyone),
        r(
            "POST",
            "/image/v2/images/{n}/members",
            Some(json!({"member": "{b}"})),
            [401, 401, 404, 403, 200, 200],
        ),
        r("GET", "/image/v2/images/{s}/members/{b}", None, anyone),
        r(
            "PUT",
            "/image/v2/images/{s}/members/{b}",
            Some(json!({"status": "accepted"})),
            [401, 401, 200, 403, 403, 200],
        ),
        r(
            "DELETE",
            "/image/v2/images/{s}/members/{b}",
            None,
            [401, 401, 403, 403, 204, 204],
        ),
        r("GET", "/image/v2/schemas/image", None, anyone),
        r("GET", "/image/v2/schemas/images", None, anyone),
        r("GET", "/image/v2/schemas/member", None, anyone),
        r("GET", "/image/v2/schemas/members", None, anyone),
    ]
}

fn template(path: &str) -> String {
    path.trim_start_matches("/image")
        .replace("{i}", "{image_id}")
        .replace("{q}", "{image_id}")
        .replace("{s}", "{image_id}")
        .replace("{n}", "{image_id}")
        .replace("{b}", "{member_id}")
        .replace("/tags/u", "/tags/{tag}")
        .replace("/tags/t", "/tags/{tag}")
}

#[test]
fn every_image_route_has_a_row() {
    let covered: Vec<(String, String)> = rows()
        .iter()
        .map(|r| (r.method.to_lowercase(), template(r.path)))
        .collect();
    support::assert_every_route_covered("image route", scoria_api::routes::IMAGE, &covered);
}

/// A new image of the member's project; uploaded (active) unless `queued`.
async fn image(t: &TestApp, token: &str, visibility: &str, queued: bool) -> String {
    let r = t
        .call(
            "POST",
            "/image/v2/images",
            Some(token),
            Some(
                json!({"name": "fixture", "disk_format": "raw", "container_format": "bare",
                        "visibility": visibility, "tags": ["t"]}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["id"].as_str().expect("id").to_owned();
    if !queued {
        let r = t
            .raw(
                "PUT",
                &format!("/image/v2/images/{id}/file"),
                Some(token),
                &[("content-type", "application/octet-stream")],
                Some(b"fixture data".to_vec()),
            )
            .await;
        assert_eq!(r.status, 204, "{:?}", r.body);
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_image_route_with_every_caller() {
    let t = TestApp::new().await;
    let expired = t.short_lived_admin_token().await;
    let p = t.personas().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let callers = [
        None,
        Some(expired.clone()),
        Some(p.other.0.clone()),
        Some(p.reader.0.clone()),
        Some(p.member.0.clone()),
        Some(p.admin.0.clone()),
    ];
    let names = [
        "no token",
        "expired token",
        "other project's member",
        "reader",
        "member",
        "admin",
    ];
    let member = p.member.0.clone();
    let mut failures = Vec::new();
    for row in rows() {
        for (i, token) in callers.iter().enumerate() {
            let mut path = row.path.replace("{b}", &p.b);
            if path.contains("{i}") {
                path = path.replace("{i}", &image(&t, &member, "private", false).await);
            }
            if path.contains("{q}") {
                path = path.replace("{q}", &image(&t, &member, "private", true).await);
            }
            if path.contains("{n}") {
                path = path.replace("{n}", &image(&t, &member, "shared", false).await);
            }
            if path.contains("{s}") {
                let s = image(&t, &member, "shared", false).await;
                let r = t
                    .call(
                        "POST",
                        &format!("/image/v2/images/{s}/members"),
                        Some(&member),
                        Some(json!({"member": p.b})),
                    )
                    .await;
                assert_eq!(r.status, 200, "{:?}", r.body);
                path = path.replace("{s}", &s);
            }
            let body = match (&row.body, row.content_type) {
                (Some(b), _) => Some(b.to_string().replace("{b}", &p.b).into_bytes()),
                (None, "application/octet-stream") => Some(b"data".to_vec()),
                (None, _) => None,
            };
            let headers = [
                ("content-type", row.content_type),
                ("accept", "application/json"),
            ];
            let r = t
                .raw(row.method, &path, token.as_deref(), &headers, body)
                .await;
            if r.status != row.expect[i] {
                failures.push(format!(
                    "{} {} as {}: got {}, expected {} ({})",
                    row.method, row.path, names[i], r.status, row.expect[i], r.body
                ));
            }
            if r.status >= 400 && r.status != 401 {
                let code = format!("{} ", r.status);
                let glance = r.body["code"]
                    .as_str()
                    .is_some_and(|c| c.starts_with(&code))
                    && r.body["message"].is_string()
                    && r.body["title"].is_string();
                if !glance {
                    failures.push(format!(
                        "{} {} as {}: not a Glance error: {}",
                        row.method, row.path, names[i], r.body
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
