//! Keystone's system scope over HTTP: role grants on the system, tokens
//! scoped to it, and what such a token may do in the Block Storage API (a
//! system reader reads, a system admin also runs the operator routes; neither
//! creates nor changes a project's resources).

mod support;

use serde_json::{Value, json};
use support::{Personas, TestApp};

const ADMIN_ROLE: &str = "5f2b6a0e8c1d4b3a9e7f0a1b2c3d4e01";
const READER_ROLE: &str = "5f2b6a0e8c1d4b3a9e7f0a1b2c3d4e03";

fn system_auth(user: &str, password: &str) -> Value {
    json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"name": "Default"}, "password": password}}},
        "scope": {"system": {"all": true}}}})
}

/// A system-scoped token for `user`, and the token body.
async fn system_login(t: &TestApp, user: &str, password: &str) -> (String, Value) {
    let r = t
        .call(
            "POST",
            "/identity/v3/auth/tokens",
            None,
            Some(system_auth(user, password)),
        )
        .await;
    assert_eq!(r.status, 201, "system login {user}: {:?}", r.body);
    let token = r.headers["x-subject-token"].to_str().unwrap().to_owned();
    (token, r.body)
}

async fn user_id(t: &TestApp, admin: &str, name: &str) -> String {
    let r = t
        .call(
            "GET",
            &format!("/identity/v3/users?name={name}"),
            Some(admin),
            None,
        )
        .await;
    r.body["users"][0]["id"].as_str().unwrap().to_owned()
}

/// The role assignments on the system, as (user id, role id) pairs.
async fn system_rows(t: &TestApp, admin: &str) -> Vec<(String, String)> {
    let r = t
        .call(
            "GET",
            "/identity/v3/role_assignments?scope.system=all",
            Some(admin),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["role_assignments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert_eq!(a["scope"], json!({"system": {"all": true}}), "{a}");
            (
                a["user"]["id"].as_str().unwrap().to_owned(),
                a["role"]["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn system_grants_admin_only_with_keystone_answers() {
    let t = TestApp::new().await;
    let p: Personas = t.personas().await;
    let admin = &p.admin.0;
    let admin_id = user_id(&t, admin, "admin").await;
    let reader_id = user_id(&t, admin, "a-reader").await;

    // The bootstrap admin is admin of the system, as keystone-manage
    // bootstrap makes it.
    assert_eq!(
        system_rows(&t, admin).await,
        [(admin_id.clone(), ADMIN_ROLE.to_owned())]
    );
    let path = format!("/identity/v3/system/users/{reader_id}/roles/{READER_ROLE}");
    let r = t.call("HEAD", &path, Some(admin), None).await;
    assert_eq!(r.status, 404);

    // A member may neither grant, check, list nor revoke; nothing changes.
    for m in ["PUT", "HEAD", "DELETE"] {
        let r = t.call(m, &path, Some(&p.member.0), None).await;
        assert_eq!(r.status, 403, "{m}");
        if m != "HEAD" {
            assert_eq!(r.body["error"]["code"], 403, "{m}: {:?}", r.body);
        }
    }
    let list = format!("/identity/v3/system/users/{reader_id}/roles");
    let r = t.call("GET", &list, Some(&p.member.0), None).await;
    assert_eq!(r.status, 403);
    let r = t
        .call(
            "GET",
            "/identity/v3/role_assignments?scope.system=all",
            Some(&p.member.0),
            None,
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(system_rows(&t, admin).await.len(), 1);

    // Unknown user or role: 404 with Keystone's body, nothing granted.
    for bad in [
        format!("/identity/v3/system/users/nope/roles/{READER_ROLE}"),
        format!("/identity/v3/system/users/{reader_id}/roles/nope"),
    ] {
        let r = t.call("PUT", &bad, Some(admin), None).await;
        assert_eq!(r.status, 404, "{bad}");
        assert_eq!(r.body["error"]["title"], "Not Found", "{:?}", r.body);
    }
    let r = t
        .call(
            "GET",
            "/identity/v3/system/users/nope/roles",
            Some(admin),
            None,
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(system_rows(&t, admin).await.len(), 1);

    // Grant (idempotent), check, list, report, revoke.
    for _ in 0..2 {
        let r = t.call("PUT", &path, Some(admin), None).await;
        assert_eq!(r.status, 204, "{:?}", r.body);
    }
    assert_eq!(t.call("HEAD", &path, Some(admin), None).await.status, 204);
    let r = t.call("GET", &list, Some(admin), None).await;
    assert_eq!(r.status, 200);
    let names: Vec<&str> = r.body["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["reader"]);
    let rows = system_rows(&t, admin).await;
    assert!(rows.contains(&(reader_id.clone(), READER_ROLE.to_owned())));
    assert_eq!(rows.len(), 2);
    // A report without scope holds both project and system rows; one of a
    // project only project rows.
    let r = t
        .call("GET", "/identity/v3/role_assignments", Some(admin), None)
        .await;
    let all = r.body["role_assignments"].as_array().unwrap();
    assert!(all.iter().any(|a| a["scope"].get("system").is_some()));
    assert!(all.iter().any(|a| a["scope"].get("project").is_some()));
    let r = t
        .call(
            "GET",
            &format!("/identity/v3/role_assignments?scope.project.id={}", p.a),
            Some(admin),
            None,
        )
        .await;
    let only = r.body["role_assignments"].as_array().unwrap();
    assert!(!only.is_empty());
    assert!(only.iter().all(|a| a["scope"].get("project").is_some()));
    // Effective: the implied roles of the system admin, with their link.
    let r = t
        .call(
            "GET",
            &format!("/identity/v3/role_assignments?scope.system=all&effective&user.id={admin_id}"),
            Some(admin),
            None,
        )
        .await;
    let eff = r.body["role_assignments"].as_array().unwrap();
    assert_eq!(eff.len(), 3, "{eff:?}");
    assert!(
        eff[0]["links"]["assignment"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/v3/system/users/{admin_id}/roles/{ADMIN_ROLE}"))
    );

    assert_eq!(t.call("DELETE", &path, Some(admin), None).await.status, 204);
    let r = t.call("DELETE", &path, Some(admin), None).await;
    assert_eq!(r.status, 404);
    assert_eq!(system_rows(&t, admin).await.len(), 1);
}

#[tokio::test]
async fn system_tokens_issued_validated_and_refused_without_a_role() {
    let t = TestApp::new().await;
    let p = t.personas().await;
    let (token, body) = system_login(&t, "admin", support::ADMIN_PASSWORD).await;
    let tk = &body["token"];
    assert_eq!(tk["system"], json!({"all": true}));
    assert!(tk.get("project").is_none(), "{tk}");
    let roles: Vec<&str> = tk["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["admin", "member", "reader"]);
    // The catalog still lists Block Storage, at its routes without a project.
    let volumev3 = tk["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == "volumev3")
        .expect("volumev3 in the catalog");
    assert!(
        volumev3["endpoints"][0]["url"]
            .as_str()
            .unwrap()
            .ends_with("/v3")
    );

    // Validated by its owner: the same scope.
    let r = t
        .raw(
            "GET",
            "/identity/v3/auth/tokens",
            Some(&token),
            &[("x-subject-token", &token)],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["token"]["system"], json!({"all": true}));
    assert!(r.body["token"].get("project").is_none());

    // A user without a role on the system: 401, Keystone's body.
    let r = t
        .call(
            "POST",
            "/identity/v3/auth/tokens",
            None,
            Some(system_auth("a-member", "pw-a-member")),
        )
        .await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], 401);
    assert!(r.headers.get("x-subject-token").is_none());
    // A system other than `all`: 400.
    let mut bad = system_auth("admin", support::ADMIN_PASSWORD);
    bad["auth"]["scope"] = json!({"system": {"all": false}});
    let r = t
        .call("POST", "/identity/v3/auth/tokens", None, Some(bad))
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);

    // Revoking the system role ends the token.
    let admin_id = user_id(&t, &p.admin.0, "admin").await;
    let r = t
        .call(
            "DELETE",
            &format!("/identity/v3/system/users/{admin_id}/roles/{ADMIN_ROLE}"),
            Some(&p.admin.0),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    let r = t.call("GET", "/v3/os-services", Some(&token), None).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
}

#[tokio::test]
async fn what_system_admins_and_readers_may_do_in_block_storage() {
    let t = TestApp::new().await;
    let p = t.personas().await;
    let admin = &p.admin.0;
    // A volume in project A, to be seen across projects.
    let vol = t.volume(&p.member.0, &p.a).await;
    let reader_id = user_id(&t, admin, "a-reader").await;
    let r = t
        .call(
            "PUT",
            &format!("/identity/v3/system/users/{reader_id}/roles/{READER_ROLE}"),
            Some(admin),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    let (sys_admin, _) = system_login(&t, "admin", support::ADMIN_PASSWORD).await;
    let (sys_reader, _) = system_login(&t, "a-reader", "pw-a-reader").await;
    let b = &p.b;

    // (method, path, body, [system admin, system reader]); the URL's project
    // is a target (B, where nothing of interest lives).
    let quota_put = json!({"quota_set": {"volumes": 17}});
    let rows: Vec<(&str, String, Option<Value>, [u16; 2])> = vec![
        ("GET", "/v3/os-services".into(), None, [200, 200]),
        ("GET", format!("/v3/{b}/os-services"), None, [200, 200]),
        ("GET", format!("/v3/{b}/os-hosts"), None, [200, 200]),
        (
            "GET",
            format!("/v3/{b}/scheduler-stats/get_pools"),
            None,
            [200, 200],
        ),
        (
            "GET",
            format!("/v3/{b}/volumes/detail?all_tenants=1"),
            None,
            [200, 200],
        ),
        (
            "GET",
            format!("/v3/{b}/os-quota-sets/{}", p.a),
            None,
            [200, 200],
        ),
        (
            "PUT",
            format!("/v3/{b}/os-quota-sets/{}", p.a),
            Some(quota_put.clone()),
            [200, 403],
        ),
        (
            "POST",
            format!("/v3/{b}/types"),
            Some(json!({"volume_type": {"name": "sys-made"}})),
            [200, 403],
        ),
        (
            "POST",
            // Under A's URL, where the volume is: a reader sees it (so 403,
            // not 404) but may not reset it.
            format!("/v3/{}/volumes/{vol}/action", p.a),
            Some(json!({"os-reset_status": {"status": "available"}})),
            [202, 403],
        ),
    ];
    for (method, path, body, [want_admin, want_reader]) in rows {
        for (who, token, want) in [
            ("system admin", &sys_admin, want_admin),
            ("system reader", &sys_reader, want_reader),
        ] {
            let r = t.call(method, &path, Some(token), body.clone()).await;
            assert_eq!(r.status, want, "{who} {method} {path}: {:?}", r.body);
        }
    }
    // The all-projects list holds A's volume though the URL names B.
    let r = t
        .call(
            "GET",
            &format!("/v3/{b}/volumes/detail?all_tenants=1"),
            Some(&sys_reader),
            None,
        )
        .await;
    let ids: Vec<&str> = r.body["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [vol.as_str()]);
    // Without a project in the URL (3.67 routes, where the CLI goes with a
    // system token): the all-projects list, but not a list of "its own".
    let r = t
        .call(
            "GET",
            "/v3/volumes/detail?all_tenants=1",
            Some(&sys_reader),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["volumes"][0]["id"], vol.as_str());
    let r = t.call("GET", "/v3/volumes", Some(&sys_reader), None).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let r = t
        .call(
            "GET",
            &format!("/v3/volumes/{vol}"),
            Some(&sys_reader),
            None,
        )
        .await;
    // Looked up first (Cinder's precedence): no project names it here.
    assert_eq!(r.status, 404, "{:?}", r.body);
    assert_eq!(r.body["itemNotFound"]["code"], 404);
    // The reader's refused quota update changed nothing; the admin's did.
    let r = t
        .call(
            "GET",
            &format!("/v3/{}/os-quota-sets/{}", p.admin.1, p.a),
            Some(admin),
            None,
        )
        .await;
    assert_eq!(r.body["quota_set"]["volumes"], 17);

    // Creating a volume with a system token is refused, saying why, and
    // creates nothing.
    let before = t
        .call(
            "GET",
            &format!("/v3/{}/volumes?all_tenants=1", p.admin.1),
            Some(admin),
            None,
        )
        .await;
    for token in [&sys_admin, &sys_reader] {
        let r = t
            .call(
                "POST",
                &format!("/v3/{b}/volumes"),
                Some(token),
                Some(json!({"volume": {"size": 1}})),
            )
            .await;
        assert_eq!(r.status, 403, "{:?}", r.body);
        let msg = r.body["forbidden"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("volume:create"), "{msg}");
        assert!(msg.contains("system-scoped token"), "{msg}");
    }
    let after = t
        .call(
            "GET",
            &format!("/v3/{}/volumes?all_tenants=1", p.admin.1),
            Some(admin),
            None,
        )
        .await;
    assert_eq!(before.body, after.body);

    // A URL project that does not exist: Cinder's 400, for a system token too.
    let r = t
        .call(
            "GET",
            "/v3/00000000000000000000000000000000/os-services",
            Some(&sys_admin),
            None,
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.body["badRequest"]["message"], "Malformed request url");

    // Project-scoped admins keep working as before; a project reader still
    // cannot list services.
    let r = t
        .call(
            "GET",
            &format!("/v3/{}/os-services", p.admin.1),
            Some(admin),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let r = t
        .call(
            "GET",
            &format!("/v3/{}/os-services", p.a),
            Some(&p.reader.0),
            None,
        )
        .await;
    assert_eq!(r.status, 403);
}
