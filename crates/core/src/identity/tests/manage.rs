//! Identity management against a real store: who may create, read, change
//! and delete projects, users and role assignments, and what each change
//! leaves behind.

use super::*;

#[tokio::test]
async fn management_policy_and_round_trips() {
    let w = World::new().await;
    let (p, users) = w
        .populate("p", &[("alice", Some("member")), ("rita", Some("reader"))])
        .await;
    let admin = w.admin().await;
    let alice = w
        .ctx(&w.login("alice", "alice-pw", Some("p")).await.unwrap().token)
        .await
        .unwrap();
    let alice_id = users[0].id.to_string();
    let rita_id = users[1].id.to_string();

    // A member may not manage; may read themselves and their project.
    let refused = project_create(
        &w.app,
        &alice,
        ProjectCreate {
            name: "x".into(),
            ..Default::default()
        },
    )
    .await;
    match refused {
        Err(Error::Forbidden(m)) => assert_eq!(
            m,
            "You are not authorized to perform the requested action: identity:create_project."
        ),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        user_list(&w.app, &alice, UserQuery::default()).await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        user_get(&w.app, &alice, &rita_id).await,
        Err(Error::Forbidden(_))
    ));
    assert_eq!(
        user_get(&w.app, &alice, &alice_id).await.unwrap().name,
        "alice"
    );
    assert_eq!(
        project_get(&w.app, &alice, p.id.as_str())
            .await
            .unwrap()
            .name,
        "p"
    );
    assert_eq!(
        user_projects(&w.app, &alice, &alice_id)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(auth_projects(&w.app, &alice).await.unwrap()[0].id, p.id);
    assert_eq!(
        domain_get(&w.app, &alice, "default").await.unwrap().name,
        "Default"
    );
    assert!(matches!(
        domain_list(&w.app, &alice, None).await,
        Err(Error::Forbidden(_))
    ));

    // Duplicates conflict; unknown things are not found.
    let dup = project_create(
        &w.app,
        &admin,
        ProjectCreate {
            name: "p".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(matches!(dup, Err(Error::Conflict(_))), "{dup:?}");
    let dup = user_create(
        &w.app,
        &admin,
        UserCreate {
            name: "alice".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(matches!(dup, Err(Error::Conflict(_))));
    let bad_domain = project_create(
        &w.app,
        &admin,
        ProjectCreate {
            name: "z".into(),
            domain_id: Some("nope".into()),
            ..Default::default()
        },
    )
    .await;
    assert!(matches!(bad_domain, Err(Error::Invalid(_))));
    assert!(matches!(
        project_get(&w.app, &admin, "nope").await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        grant_create(&w.app, &admin, p.id.as_str(), &alice_id, "nope").await,
        Err(Error::NotFound(_))
    ));

    // Role assignment reports: filters, effective expansion.
    let names = |v: Vec<AssignmentEntry>| -> Vec<String> {
        v.into_iter()
            .map(|e| {
                let a = e.assignment;
                format!(
                    "{}/{}/{}{}",
                    a.user.name,
                    a.project.name,
                    a.role.name,
                    e.prior_role
                        .map(|r| format!("<{}", r.name))
                        .unwrap_or_default()
                )
            })
            .collect()
    };
    let cases: Vec<(AssignmentQuery, &[&str])> = vec![
        (
            AssignmentQuery {
                project_id: Some(p.id.to_string()),
                ..Default::default()
            },
            &["alice/p/member", "rita/p/reader"],
        ),
        (
            AssignmentQuery {
                user_id: Some(alice_id.clone()),
                effective: true,
                ..Default::default()
            },
            &["alice/p/member", "alice/p/reader<member"],
        ),
        (
            AssignmentQuery {
                project_id: Some(p.id.to_string()),
                role_id: Some(super::READER_ROLE_ID.into()),
                ..Default::default()
            },
            &["rita/p/reader"],
        ),
        (
            AssignmentQuery {
                project_id: Some(p.id.to_string()),
                role_id: Some(super::READER_ROLE_ID.into()),
                effective: true,
                ..Default::default()
            },
            &["alice/p/reader<member", "rita/p/reader"],
        ),
        (
            AssignmentQuery {
                user_id: Some("nobody".into()),
                ..Default::default()
            },
            &[],
        ),
    ];
    for (q, want) in cases {
        let mut got = names(assignment_list(&w.app, &admin, q.clone()).await.unwrap());
        got.sort();
        assert_eq!(got, want, "{q:?}");
    }
    let inferences = role_inferences(&w.app, &admin).await.unwrap();
    assert_eq!(inferences.len(), 2);

    // The bootstrap account is protected; others delete.
    let b = w.app.bootstrap_info();
    assert!(matches!(
        user_delete(&w.app, &admin, b.user_id.as_str()).await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        project_delete(&w.app, &admin, b.project_id.as_str()).await,
        Err(Error::Conflict(_))
    ));
    user_delete(&w.app, &admin, &rita_id).await.unwrap();
    assert!(matches!(
        user_delete(&w.app, &admin, &rita_id).await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn a_project_with_volumes_is_not_deleted() {
    let w = World::new().await;
    let (p, _) = w.populate("p", &[("alice", Some("member"))]).await;
    let admin = w.admin().await;
    let alice = w
        .ctx(&w.login("alice", "alice-pw", Some("p")).await.unwrap().token)
        .await
        .unwrap();
    let v = crate::volumes::create(
        &w.app,
        &alice,
        crate::volumes::CreateRequest {
            size: Some(1),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    crate::volumes::wait_settled(&w.app, v.volume.id)
        .await
        .unwrap();
    let refused = project_delete(&w.app, &admin, p.id.as_str()).await;
    assert!(matches!(refused, Err(Error::Conflict(_))), "{refused:?}");
    crate::volumes::delete(&w.app, &alice, v.volume.id, false, false)
        .await
        .unwrap();
    crate::volumes::wait_settled(&w.app, v.volume.id)
        .await
        .unwrap();
    project_delete(&w.app, &admin, p.id.as_str()).await.unwrap();
    assert!(w.ctx_is_gone(&alice).await);
}
