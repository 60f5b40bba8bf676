//! Identity names that look alike (issue 15, item 7): within a domain, user
//! and project names are unique ignoring case and trailing spaces (Keystone on
//! MySQL in practice), and names with control or zero-width characters are
//! refused. Every refusal is Keystone's error body and changes nothing.

mod support;

use serde_json::{Value, json};
use support::TestApp;

async fn names(t: &TestApp, admin: &str, what: &str) -> Vec<String> {
    let r = t
        .call("GET", &format!("/identity/v3/{what}"), Some(admin), None)
        .await;
    let mut n: Vec<String> = r.body[what]
        .as_array()
        .expect("list")
        .iter()
        .map(|u| u["name"].as_str().expect("name").to_owned())
        .collect();
    n.sort();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn look_alike_names_are_refused() {
    let t = TestApp::new().await;
    let (admin, _) = t.admin().await;
    let p = t.project(&admin, "Project-A").await;
    let bob = t.user(&admin, "bob", "pw-bob-12345", &p, "member").await;
    let before = (
        names(&t, &admin, "users").await,
        names(&t, &admin, "projects").await,
    );
    let user = |name: &str| json!({"user": {"name": name, "domain_id": "default"}});
    let project = |name: &str| json!({"project": {"name": name, "domain_id": "default"}});
    let cases: Vec<(&str, &str, String, Value, u16)> = vec![
        ("POST", "users", "Admin".into(), user("Admin"), 409),
        ("POST", "users", "ADMIN".into(), user("ADMIN"), 409),
        (
            "POST",
            "users",
            "trailing space".into(),
            user("admin "),
            409,
        ),
        (
            "POST",
            "users",
            "zero-width space".into(),
            user("admin\u{200b}"),
            400,
        ),
        (
            "POST",
            "users",
            "zero-width joiner".into(),
            user("ad\u{200d}min"),
            400,
        ),
        (
            "POST",
            "users",
            "byte-order mark".into(),
            user("\u{feff}admin"),
            400,
        ),
        ("POST", "users", "newline".into(), user("admin\n"), 400),
        (
            "POST",
            "users",
            "right-to-left override".into(),
            user("a\u{202e}b"),
            400,
        ),
        (
            "PATCH",
            "users/{bob}",
            "rename to Admin".into(),
            json!({"user": {"name": "Admin"}}),
            409,
        ),
        (
            "PATCH",
            "users/{bob}",
            "rename with a zero-width space".into(),
            json!({"user": {"name": "bob\u{200b}"}}),
            400,
        ),
        (
            "POST",
            "projects",
            "project-a".into(),
            project("project-a"),
            409,
        ),
        (
            "POST",
            "projects",
            "PROJECT-A  ".into(),
            project("PROJECT-A  "),
            409,
        ),
        (
            "POST",
            "projects",
            "zero-width in a project".into(),
            project("Project\u{200b}-A"),
            400,
        ),
        (
            "PATCH",
            "projects/{admin_project}",
            "rename a project onto another".into(),
            json!({"project": {"name": "project-A"}}),
            409,
        ),
    ];
    let admin_project = {
        let r = t
            .call("GET", "/identity/v3/auth/projects", Some(&admin), None)
            .await;
        r.body["projects"][0]["id"].as_str().expect("id").to_owned()
    };
    let mut failures = Vec::new();
    for (method, path, what, body, status) in cases {
        let path = format!(
            "/identity/v3/{}",
            path.replace("{bob}", &bob)
                .replace("{admin_project}", &admin_project)
        );
        let r = t.call(method, &path, Some(&admin), Some(body)).await;
        let keystone_body =
            r.body["error"]["code"] == status && r.body["error"]["message"].is_string();
        if r.status != status || !keystone_body {
            failures.push(format!("{what}: got {} {}", r.status, r.body));
        }
    }
    // A JSON body declared as something else: Keystone's 400.
    let r = t
        .raw(
            "POST",
            "/identity/v3/users",
            Some(&admin),
            &[("content-type", "text/plain")],
            Some(user("carol").to_string().into_bytes()),
        )
        .await;
    if r.status != 400 || r.body["error"]["code"] != 400 {
        failures.push(format!("text/plain body: got {} {}", r.status, r.body));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let after = (
        names(&t, &admin, "users").await,
        names(&t, &admin, "projects").await,
    );
    assert_eq!(before, after, "a refused request changed something");
    // Names that differ otherwise are fine, and a user keeps its own name
    // (or changes only its case) on update.
    let r = t
        .call(
            "POST",
            "/identity/v3/users",
            Some(&admin),
            Some(user("admin2")),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = t
        .call(
            "PATCH",
            &format!("/identity/v3/users/{bob}"),
            Some(&admin),
            Some(json!({"user": {"name": "Bob"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}
