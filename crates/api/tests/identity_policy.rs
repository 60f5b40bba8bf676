//! Every Identity route, walked with every kind of caller (as `policy.rs` does
//! for Block Storage): no token, an expired token, a member of another
//! project, a reader, a member and an admin of project A. A route added to the
//! Identity table without a row here fails `every_identity_route_has_a_row`.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::TestApp;

/// Expected statuses for [no token, expired, other project's member, reader, member, admin].
type Expect = [u16; 6];

struct Row {
    method: &'static str,
    /// `{a}`: project A; `{me}`: the caller's own user id; `{r}`: the member
    /// role; `{np}`: a fresh project; `{nu}`: a fresh user (a member of A);
    /// `{ua}`: A's member.
    path: &'static str,
    body: Option<Value>,
    /// The `X-Subject-Token` is a fresh token of the caller.
    subject: bool,
    expect: Expect,
}

fn rows() -> Vec<Row> {
    let r = |method, path, body: Option<Value>, expect| Row {
        method,
        path,
        body,
        subject: false,
        expect,
    };
    let s = |method, path, expect| Row {
        method,
        path,
        body: None,
        subject: true,
        expect,
    };
    let anyone = [401, 401, 200, 200, 200, 200];
    let admin = [401, 401, 403, 403, 403, 200];
    vec![
        s("GET", "/identity/v3/auth/tokens", anyone),
        s("HEAD", "/identity/v3/auth/tokens", anyone),
        s(
            "DELETE",
            "/identity/v3/auth/tokens",
            [401, 401, 204, 204, 204, 204],
        ),
        r("GET", "/identity/v3/auth/projects", None, anyone),
        r("GET", "/identity/v3/auth/catalog", None, anyone),
        r("GET", "/identity/v3/domains", None, admin),
        r("GET", "/identity/v3/domains/default", None, anyone),
        r("GET", "/identity/v3/projects", None, admin),
        r(
            "POST",
            "/identity/v3/projects",
            Some(json!({"project": {"name": "{fresh}", "domain_id": "default"}})),
            [401, 401, 403, 403, 403, 201],
        ),
        r(
            "GET",
            "/identity/v3/projects/{a}",
            None,
            [401, 401, 403, 200, 200, 200],
        ),
        r(
            "PATCH",
            "/identity/v3/projects/{np}",
            Some(json!({"project": {"description": "d"}})),
            admin,
        ),
        r(
            "DELETE",
            "/identity/v3/projects/{np}",
            None,
            [401, 401, 403, 403, 403, 204],
        ),
        r(
            "GET",
            "/identity/v3/projects/{a}/users/{ua}/roles",
            None,
            admin,
        ),
        r(
            "PUT",
            "/identity/v3/projects/{np}/users/{ua}/roles/{r}",
            None,
            [401, 401, 403, 403, 403, 204],
        ),
        r(
            "HEAD",
            "/identity/v3/projects/{a}/users/{ua}/roles/{r}",
            None,
            [401, 401, 403, 403, 403, 204],
        ),
        r(
            "DELETE",
            "/identity/v3/projects/{a}/users/{nu}/roles/{r}",
            None,
            [401, 401, 403, 403, 403, 204],
        ),
        r("GET", "/identity/v3/users", None, admin),
        r(
            "POST",
            "/identity/v3/users",
            Some(
                json!({"user": {"name": "{fresh}", "password": "pw-fresh-user", "domain_id": "default"}}),
            ),
            [401, 401, 403, 403, 403, 201],
        ),
        r("GET", "/identity/v3/users/{me}", None, anyone),
        r(
            "GET",
            "/identity/v3/users/{ua}",
            None,
            [401, 401, 403, 403, 200, 200],
        ),
        r(
            "PATCH",
            "/identity/v3/users/{nu}",
            Some(json!({"user": {"description": "d"}})),
            admin,
        ),
        r(
            "DELETE",
            "/identity/v3/users/{nu}",
            None,
            [401, 401, 403, 403, 403, 204],
        ),
        r("GET", "/identity/v3/users/{me}/projects", None, anyone),
        r("GET", "/identity/v3/roles", None, admin),
        r("GET", "/identity/v3/roles/{r}", None, admin),
        r("GET", "/identity/v3/role_inferences", None, admin),
        r("GET", "/identity/v3/role_assignments", None, admin),
        r(
            "GET",
            "/identity/v3/role_assignments?scope.system=all",
            None,
            admin,
        ),
        // Grants on the system: admins only (the project admin here holds
        // the admin role on a project, as Scoria's admin rule reads it).
        r("GET", "/identity/v3/system/users/{ua}/roles", None, admin),
        r(
            "PUT",
            "/identity/v3/system/users/{nu}/roles/{r}",
            None,
            [401, 401, 403, 403, 403, 204],
        ),
        r(
            "HEAD",
            "/identity/v3/system/users/{nu}/roles/{r}",
            None,
            // A fresh user holds no system role: 404 once authorized.
            [401, 401, 403, 403, 403, 404],
        ),
        r(
            "DELETE",
            "/identity/v3/system/users/{nu}/roles/{r}",
            None,
            // A fresh user holds no system role: 404 once authorized.
            [401, 401, 403, 403, 403, 404],
        ),
        r("GET", "/identity/v3/services", None, admin),
        r("GET", "/identity/v3/endpoints", None, admin),
        // Anyone may log in; the caller's token plays no part.
        r(
            "POST",
            "/identity/v3/auth/tokens",
            Some(
                json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
                "name": "a-member", "domain": {"name": "Default"}, "password": "pw-a-member"}}}}}),
            ),
            [201, 201, 201, 201, 201, 201],
        ),
        // Last: changing one's own password (to the same one) revokes the
        // caller's tokens.
        r(
            "POST",
            "/identity/v3/users/{me}/password",
            Some(json!({"user": {"original_password": "{pw}", "password": "{pw}"}})),
            [401, 401, 204, 204, 204, 204],
        ),
    ]
}

fn template(path: &str) -> String {
    path.split('?')
        .next()
        .unwrap_or(path)
        .trim_start_matches("/identity")
        .replace("{a}", "{project_id}")
        .replace("{np}", "{project_id}")
        .replace("{me}", "{user_id}")
        .replace("{ua}", "{user_id}")
        .replace("{nu}", "{user_id}")
        .replace("{r}", "{role_id}")
        .replace("/domains/default", "/domains/{domain_id}")
}

#[test]
fn every_identity_route_has_a_row() {
    let covered: Vec<(String, String)> = rows()
        .iter()
        .map(|r| (r.method.to_lowercase(), template(r.path)))
        .collect();
    support::assert_every_route_covered("identity route", scoria_api::routes::IDENTITY, &covered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_identity_route_with_every_caller() {
    let t = TestApp::new().await;
    // An expired token (once the sleep below has passed).
    let expired = t.short_lived_admin_token().await;
    let (admin, _) = t.admin().await;
    let a = t.project(&admin, "project-a").await;
    let b = t.project(&admin, "project-b").await;
    let ua = t
        .user(&admin, "a-member", "pw-a-member", &a, "member")
        .await;
    let people = [
        ("b-member", "pw-b-member", "project-b", b.as_str(), "member"),
        ("a-reader", "pw-a-reader", "project-a", a.as_str(), "reader"),
        ("a-member", "pw-a-member", "project-a", a.as_str(), "member"),
        ("a-admin", "pw-a-admin", "project-a", a.as_str(), "admin"),
    ];
    let mut ids = vec![String::new(), String::new()];
    for (name, pw, _, pid, role) in &people {
        ids.push(if *name == "a-member" {
            ua.clone()
        } else {
            t.user(&admin, name, pw, pid, role).await
        });
    }
    let roles = t
        .call("GET", "/identity/v3/roles?name=member", Some(&admin), None)
        .await;
    let member_role = roles.body["roles"][0]["id"]
        .as_str()
        .expect("role")
        .to_owned();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let names = [
        "no token",
        "expired token",
        "other project's member",
        "reader",
        "member",
        "admin",
    ];
    let mut failures = Vec::new();
    let mut n = 0;
    for row in rows() {
        for i in 0..6 {
            n += 1;
            // A fresh token for every call (a row may revoke the caller's).
            let (token, password) = match i {
                0 => (None, String::new()),
                1 => (Some(expired.clone()), String::new()),
                _ => {
                    let (name, pw, project, _, _) = people[i - 2];
                    (Some(t.login(name, pw, project).await.0), pw.to_owned())
                }
            };
            let mut path = row
                .path
                .replace("{a}", &a)
                .replace("{ua}", &ua)
                .replace("{r}", &member_role)
                .replace("{me}", if ids[i].is_empty() { &ua } else { &ids[i] });
            if path.contains("{np}") {
                path = path.replace("{np}", &t.project(&admin, &format!("np-{n}")).await);
            }
            if path.contains("{nu}") {
                let nu = t
                    .user(&admin, &format!("nu-{n}"), "pw-nu", &a, "member")
                    .await;
                path = path.replace("{nu}", &nu);
            }
            let body = row.body.as_ref().map(|b| {
                b.to_string()
                    .replace("{fresh}", &format!("fresh-{n}"))
                    .replace("{pw}", &password)
                    .into_bytes()
            });
            let subject = match (row.subject, i) {
                (true, 0 | 1) => token.clone(),
                (true, _) => {
                    let (name, pw, project, _, _) = people[i - 2];
                    Some(t.login(name, pw, project).await.0)
                }
                (false, _) => None,
            };
            let headers: Vec<(&str, &str)> = subject
                .as_deref()
                .map(|s| vec![("x-subject-token", s)])
                .unwrap_or_default();
            let r = t
                .raw(row.method, &path, token.as_deref(), &headers, body)
                .await;
            if r.status != row.expect[i] {
                failures.push(format!(
                    "{} {} as {}: got {}, expected {} ({})",
                    row.method, row.path, names[i], r.status, row.expect[i], r.body
                ));
            }
            if r.status >= 400 && row.method != "HEAD" {
                // Identity refusals carry Keystone's error body.
                let ok =
                    r.body["error"]["code"] == r.status && r.body["error"]["message"].is_string();
                if !ok {
                    failures.push(format!(
                        "{} {} as {}: not a Keystone error: {}",
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
