//! The identity store's tests: seeded records, round trips, uniqueness of
//! names, filters, cascades on deletion, token revocation and expiry.

use scoria_model::{DomainId, ProjectId, RoleId, UserId};

use super::*;
use crate::{StoreError, now, testing};

fn user(name: &str) -> User {
    User {
        id: UserId::new(),
        name: name.into(),
        domain_id: DomainId::from(DEFAULT_DOMAIN_ID),
        password_hash: Some("$argon2id$fake".into()),
        enabled: true,
        default_project_id: None,
        email: None,
        description: None,
        created_at: now(),
    }
}

fn default_domain() -> DomainId {
    DomainId::from(DEFAULT_DOMAIN_ID)
}

#[tokio::test]
async fn seeded_domain_and_roles() {
    let (s, _d) = testing::store().await;
    let mut c = s.read().await.unwrap();
    let d = domain_get_by_name(&mut c, "Default")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.id.as_str(), DEFAULT_DOMAIN_ID);
    assert_eq!(domain_list(&mut c, Some("Default")).await.unwrap(), vec![d]);
    assert!(domain_list(&mut c, Some("nope")).await.unwrap().is_empty());
    let names: Vec<String> = role_list(&mut c, None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["admin", "member", "reader"]);
    assert_eq!(
        role_get(&mut c, ADMIN_ROLE_ID).await.unwrap().unwrap().name,
        "admin"
    );
    assert_eq!(
        role_get_by_name(&mut c, "reader")
            .await
            .unwrap()
            .unwrap()
            .id
            .as_str(),
        READER_ROLE_ID
    );
    let rules: Vec<(String, String)> = role_inference_list(&mut c)
        .await
        .unwrap()
        .into_iter()
        .map(|(p, i)| (p.name, i.name))
        .collect();
    assert_eq!(
        rules,
        [
            ("admin".to_string(), "member".to_string()),
            ("member".to_string(), "reader".to_string())
        ]
    );
}

#[tokio::test]
async fn domain_ensure_is_idempotent() {
    let (s, _d) = testing::store().await;
    let mut tx = s.begin().await.unwrap();
    let d = Domain {
        id: default_domain(),
        name: DEFAULT_DOMAIN_NAME.into(),
        description: "x".into(),
        enabled: true,
    };
    assert!(!domain_ensure(&mut tx, &d).await.unwrap());
    let other = Domain {
        id: DomainId::from("other"),
        name: "Other".into(),
        description: String::new(),
        enabled: true,
    };
    assert!(domain_ensure(&mut tx, &other).await.unwrap());
    assert!(!domain_ensure(&mut tx, &other).await.unwrap());
    assert_eq!(domain_list(&mut tx, None).await.unwrap().len(), 2);
}

#[tokio::test]
async fn project_round_trip_and_names_unique_per_domain() {
    let (s, _d) = testing::store().await;
    let mut tx = s.begin().await.unwrap();
    let p = new_project("p1", default_domain(), "first", true);
    project_create(&mut tx, &p).await.unwrap();
    let dup = new_project("p1", default_domain(), "", true);
    assert!(matches!(
        project_create(&mut tx, &dup).await,
        Err(StoreError::Duplicate(_))
    ));
    assert_eq!(
        project_get(&mut tx, p.id.as_str()).await.unwrap().as_ref(),
        Some(&p)
    );
    assert_eq!(
        project_get_by_name(&mut tx, DEFAULT_DOMAIN_ID, "p1")
            .await
            .unwrap()
            .as_ref(),
        Some(&p)
    );
    let p2 = new_project("p2", default_domain(), "", false);
    project_create(&mut tx, &p2).await.unwrap();
    let cases: Vec<(ProjectFilter, &[&str])> = vec![
        (ProjectFilter::default(), &["p1", "p2"]),
        (
            ProjectFilter {
                name: Some("p2".into()),
                ..Default::default()
            },
            &["p2"],
        ),
        (
            ProjectFilter {
                enabled: Some(true),
                ..Default::default()
            },
            &["p1"],
        ),
        (
            ProjectFilter {
                domain_id: Some(DomainId::from("nope")),
                ..Default::default()
            },
            &[],
        ),
    ];
    for (f, expect) in cases {
        let got: Vec<String> = project_list(&mut tx, &f)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(got, expect, "{f:?}");
    }
    // Renaming onto a taken name is a duplicate; other changes apply.
    let rename = ProjectUpdate {
        name: Some("p1".into()),
        ..Default::default()
    };
    assert!(matches!(
        project_update(&mut tx, &p2.id, &rename).await,
        Err(StoreError::Duplicate(_))
    ));
    let change = ProjectUpdate {
        description: Some("second".into()),
        enabled: Some(true),
        ..Default::default()
    };
    assert!(project_update(&mut tx, &p2.id, &change).await.unwrap());
    let got = project_get(&mut tx, p2.id.as_str()).await.unwrap().unwrap();
    assert_eq!(
        (got.name.as_str(), got.description.as_str(), got.enabled),
        ("p2", "second", true)
    );
    assert!(
        !project_update(&mut tx, &ProjectId::new(), &change)
            .await
            .unwrap()
    );
    assert!(project_delete(&mut tx, &p2.id).await.unwrap());
    assert!(!project_delete(&mut tx, &p2.id).await.unwrap());
    assert_eq!(project_resource_count(&mut tx, &p.id).await.unwrap(), 0);
}

#[tokio::test]
async fn user_round_trip_and_update_of_nullable_fields() {
    let (s, _d) = testing::store().await;
    let mut tx = s.begin().await.unwrap();
    let mut u = user("alice");
    u.email = Some("a@example.com".into());
    user_create(&mut tx, &u).await.unwrap();
    assert!(matches!(
        user_create(&mut tx, &user("alice")).await,
        Err(StoreError::Duplicate(_))
    ));
    assert_eq!(
        user_get(&mut tx, u.id.as_str()).await.unwrap().as_ref(),
        Some(&u)
    );
    assert_eq!(
        user_get_by_name(&mut tx, DEFAULT_DOMAIN_ID, "alice")
            .await
            .unwrap()
            .as_ref(),
        Some(&u)
    );
    let b = user("bob");
    user_create(&mut tx, &b).await.unwrap();
    let names = |v: Vec<User>| v.into_iter().map(|u| u.name).collect::<Vec<_>>();
    assert_eq!(
        names(user_list(&mut tx, &UserFilter::default()).await.unwrap()),
        ["alice", "bob"]
    );
    let only_bob = UserFilter {
        name: Some("bob".into()),
        domain_id: Some(default_domain()),
        enabled: Some(true),
    };
    assert_eq!(names(user_list(&mut tx, &only_bob).await.unwrap()), ["bob"]);

    let p = new_project("p", default_domain(), "", true);
    project_create(&mut tx, &p).await.unwrap();
    // (update, expected (email, default project, enabled, hash))
    type Expect = (Option<&'static str>, bool, bool, &'static str);
    let cases: Vec<(UserUpdate, Expect)> = vec![
        (
            UserUpdate::default(),
            (Some("a@example.com"), false, true, "$argon2id$fake"),
        ),
        (
            UserUpdate {
                email: Some(None),
                default_project_id: Some(Some(p.id.clone())),
                ..Default::default()
            },
            (None, true, true, "$argon2id$fake"),
        ),
        (
            UserUpdate {
                enabled: Some(false),
                password_hash: Some("$argon2id$new".into()),
                ..Default::default()
            },
            (None, true, false, "$argon2id$new"),
        ),
        (
            UserUpdate {
                default_project_id: Some(None),
                email: Some(Some("b@example.com".into())),
                ..Default::default()
            },
            (Some("b@example.com"), false, false, "$argon2id$new"),
        ),
    ];
    for (upd, (email, has_default, enabled, hash)) in cases {
        assert!(user_update(&mut tx, &u.id, &upd).await.unwrap());
        let got = user_get(&mut tx, u.id.as_str()).await.unwrap().unwrap();
        assert_eq!(got.email.as_deref(), email);
        assert_eq!(got.default_project_id.is_some(), has_default);
        assert_eq!(got.enabled, enabled);
        assert_eq!(got.password_hash.as_deref(), Some(hash));
    }
    let rename = UserUpdate {
        name: Some("bob".into()),
        ..Default::default()
    };
    assert!(matches!(
        user_update(&mut tx, &u.id, &rename).await,
        Err(StoreError::Duplicate(_))
    ));
    assert!(user_delete(&mut tx, &u.id).await.unwrap());
    assert!(!user_delete(&mut tx, &u.id).await.unwrap());
    assert!(
        !user_update(&mut tx, &u.id, &UserUpdate::default())
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn assignments_filter_and_cascade() {
    let (s, _d) = testing::store().await;
    let mut tx = s.begin().await.unwrap();
    let (a, b) = (user("a"), user("b"));
    user_create(&mut tx, &a).await.unwrap();
    user_create(&mut tx, &b).await.unwrap();
    let (p, q) = (
        new_project("p", default_domain(), "", true),
        new_project("q", default_domain(), "", true),
    );
    project_create(&mut tx, &p).await.unwrap();
    project_create(&mut tx, &q).await.unwrap();
    let (admin, member) = (RoleId::from(ADMIN_ROLE_ID), RoleId::from(MEMBER_ROLE_ID));
    assert!(
        role_assignment_add(&mut tx, &a.id, &p.id, &admin)
            .await
            .unwrap()
    );
    assert!(
        !role_assignment_add(&mut tx, &a.id, &p.id, &admin)
            .await
            .unwrap()
    );
    role_assignment_add(&mut tx, &a.id, &q.id, &member)
        .await
        .unwrap();
    role_assignment_add(&mut tx, &b.id, &q.id, &member)
        .await
        .unwrap();

    let cases: Vec<(AssignmentFilter, &[&str])> = vec![
        (
            AssignmentFilter::default(),
            &["a/p/admin", "a/q/member", "b/q/member"],
        ),
        (
            AssignmentFilter {
                user_id: Some(a.id.clone()),
                ..Default::default()
            },
            &["a/p/admin", "a/q/member"],
        ),
        (
            AssignmentFilter {
                project_id: Some(q.id.clone()),
                ..Default::default()
            },
            &["a/q/member", "b/q/member"],
        ),
        (
            AssignmentFilter {
                role_id: Some(admin.clone()),
                ..Default::default()
            },
            &["a/p/admin"],
        ),
        (
            AssignmentFilter {
                user_id: Some(b.id.clone()),
                project_id: Some(p.id.clone()),
                role_id: None,
            },
            &[],
        ),
    ];
    for (f, expect) in cases {
        let got: Vec<String> = role_assignment_list(&mut tx, &f)
            .await
            .unwrap()
            .into_iter()
            .map(|x| format!("{}/{}/{}", x.user.name, x.project.name, x.role.name))
            .collect();
        assert_eq!(got, expect, "{f:?}");
    }
    let names: Vec<String> = project_list_for_user(&mut tx, &a.id)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["p", "q"]);

    assert!(
        role_assignment_remove(&mut tx, &a.id, &p.id, &admin)
            .await
            .unwrap()
    );
    assert!(
        !role_assignment_remove(&mut tx, &a.id, &p.id, &admin)
            .await
            .unwrap()
    );
    // Deleting a project or a user takes their assignments with them.
    project_delete(&mut tx, &q.id).await.unwrap();
    user_delete(&mut tx, &b.id).await.unwrap();
    assert!(
        role_assignment_list(&mut tx, &AssignmentFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn tokens_revoke_expire_and_cascade() {
    let (s, _d) = testing::store().await;
    let mut tx = s.begin().await.unwrap();
    let u = user("t");
    user_create(&mut tx, &u).await.unwrap();
    let p = new_project("p", default_domain(), "", true);
    project_create(&mut tx, &p).await.unwrap();
    let t0 = chrono::Utc::now();
    let token = |hash: &str, project: Option<&ProjectId>, ttl_secs: i64| TokenRecord {
        hash: hash.into(),
        user_id: u.id.clone(),
        project_id: project.cloned(),
        audit_id: format!("audit-{hash}"),
        parent_audit_id: None,
        methods: vec!["password".into()],
        issued_at: t0,
        expires_at: t0 + chrono::Duration::seconds(ttl_secs),
        revoked: false,
        system: false,
    };
    let live = token("h1", Some(&p.id), 3600);
    let unscoped = TokenRecord {
        parent_audit_id: Some("audit-h1".into()),
        methods: vec!["token".into(), "password".into()],
        ..token("h2", None, 3600)
    };
    let old = token("h3", None, -10);
    let system = TokenRecord {
        system: true,
        ..token("h4", None, 3600)
    };
    for t in [&live, &unscoped, &old, &system] {
        token_insert(&mut tx, t).await.unwrap();
    }
    // Times round-trip to the microsecond.
    let got = token_get(&mut tx, "h1").await.unwrap().unwrap();
    assert_eq!(
        got.expires_at.timestamp_micros(),
        live.expires_at.timestamp_micros()
    );
    assert_eq!(got.project_id, live.project_id);
    let got2 = token_get(&mut tx, "h2").await.unwrap().unwrap();
    assert_eq!(got2.methods, ["token", "password"]);
    assert_eq!(got2.parent_audit_id.as_deref(), Some("audit-h1"));
    assert!(token_get(&mut tx, "nope").await.unwrap().is_none());
    assert!(!got2.system);
    assert!(token_get(&mut tx, "h4").await.unwrap().unwrap().system);

    assert!(token_revoke(&mut tx, "h1").await.unwrap());
    assert!(!token_revoke(&mut tx, "h1").await.unwrap());
    assert!(token_get(&mut tx, "h1").await.unwrap().unwrap().revoked);
    assert_eq!(token_revoke_user(&mut tx, &u.id).await.unwrap(), 3);
    assert_eq!(
        token_delete_expired(&mut tx, chrono::Utc::now())
            .await
            .unwrap(),
        1
    );
    assert!(token_get(&mut tx, "h3").await.unwrap().is_none());
    // A project's tokens go with it; a user's too.
    project_delete(&mut tx, &p.id).await.unwrap();
    assert!(token_get(&mut tx, "h1").await.unwrap().is_none());
    user_delete(&mut tx, &u.id).await.unwrap();
    assert!(token_get(&mut tx, "h2").await.unwrap().is_none());
}

#[tokio::test]
async fn system_grants_add_remove_list_and_cascade() {
    let (s, _d) = testing::store().await;
    let mut tx = s.begin().await.unwrap();
    let (a, b) = (user("sa"), user("sb"));
    user_create(&mut tx, &a).await.unwrap();
    user_create(&mut tx, &b).await.unwrap();
    let admin = RoleId::from(ADMIN_ROLE_ID);
    let reader = RoleId::from(READER_ROLE_ID);
    assert!(system_grant_add(&mut tx, &a.id, &admin).await.unwrap());
    assert!(!system_grant_add(&mut tx, &a.id, &admin).await.unwrap());
    assert!(system_grant_add(&mut tx, &b.id, &reader).await.unwrap());
    let all = system_grant_list(&mut tx, None, None).await.unwrap();
    let pairs: Vec<(&str, &str)> = all
        .iter()
        .map(|g| (g.user_id.as_str(), g.role.name.as_str()))
        .collect();
    assert_eq!(pairs, [(a.id.as_str(), "admin"), (b.id.as_str(), "reader")]);
    let only_b = system_grant_list(&mut tx, Some(&b.id), None).await.unwrap();
    assert_eq!(only_b.len(), 1);
    assert_eq!(only_b[0].user.name, "sb");
    assert!(
        system_grant_list(&mut tx, Some(&b.id), Some(&admin))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(system_grant_remove(&mut tx, &a.id, &admin).await.unwrap());
    assert!(!system_grant_remove(&mut tx, &a.id, &admin).await.unwrap());
    // A user's system roles go with the user.
    user_delete(&mut tx, &b.id).await.unwrap();
    assert!(
        system_grant_list(&mut tx, None, None)
            .await
            .unwrap()
            .is_empty()
    );
}
