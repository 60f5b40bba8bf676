//! Quota under concurrency: 50 creates at once against a limit of 10 volumes;
//! 20 creates of one type against a limit of 5 volumes of that type.

use std::collections::BTreeSet;
use std::sync::Arc;

use scoria_core::volumes::{self, CreateRequest};
use scoria_core::{App, Config, Context, DriverConfig, Error};
use scoria_failpoints::Failpoints;
use scoria_model::quota::{NamedKey, QuotaResource, TypedResource};
use scoria_model::{ProjectId, UserId};

fn member(project: &ProjectId) -> Context {
    Context {
        system: false,
        request_id: "req-test".into(),
        user_id: UserId::new(),
        user_name: "member".into(),
        project_id: Some(project.clone()),
        project_name: None,
        roles: ["member", "reader"].iter().map(|s| s.to_string()).collect(),
    }
}

fn admin() -> Context {
    let mut c = member(&ProjectId::new());
    c.roles.insert("admin".into());
    c
}

async fn app(dir: &std::path::Path) -> App {
    let mut c = Config::with_data_dir(dir.to_path_buf());
    if let DriverConfig::File { fsync, .. } = &mut c.backends[0].driver {
        *fsync = false;
    }
    App::open(c, Failpoints::new()).await.expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_creates_against_a_limit_of_ten() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let project = ProjectId::new();
    scoria_core::quotas::update(
        &app,
        &admin(),
        project.as_str(),
        &[(QuotaResource::Volumes.into(), 10)],
    )
    .await
    .unwrap();
    let ctx = Arc::new(member(&project));
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (app, ctx) = (app.clone(), ctx.clone());
        tasks.push(tokio::spawn(async move {
            let req = CreateRequest {
                name: Some(format!("v{i}")),
                size: Some(1),
                ..Default::default()
            };
            volumes::create(&app, &ctx, req).await
        }));
    }
    let (mut ok, mut over) = (BTreeSet::new(), 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(v) => {
                ok.insert(v.volume.id);
            }
            Err(Error::OverQuota(q)) => {
                assert_eq!((q.key, q.limit), (QuotaResource::Volumes.into(), 10));
                assert!(q.message().contains("volumes"), "{}", q.message());
                over += 1;
            }
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!((ok.len(), over), (10, 40));
    app.engine.wait_idle().await;
    let set = scoria_core::quotas::show(&app, &ctx, project.as_str())
        .await
        .unwrap();
    let line = set.lines[&QuotaResource::Volumes.into()];
    assert_eq!((line.usage.in_use, line.usage.reserved), (10, 0));
    assert_eq!(set.lines[&QuotaResource::Gigabytes.into()].usage.in_use, 10);
    let listed = volumes::list(&app, &ctx, Default::default()).await.unwrap();
    assert_eq!(
        listed
            .volumes
            .iter()
            .map(|v| v.volume.id)
            .collect::<BTreeSet<_>>(),
        ok
    );
    assert!(
        listed
            .volumes
            .iter()
            .all(|v| v.volume.status.as_str() == "available")
    );
    let bad = scoria_core::invariants::check(&app.env).await.unwrap();
    assert!(bad.is_empty(), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_creates_of_one_type_against_a_limit_of_five() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let project = ProjectId::new();
    let gold = scoria_core::volume_types::create(
        &app,
        &admin(),
        scoria_core::volume_types::NewType {
            name: "gold".into(),
            is_public: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let volumes_gold = NamedKey::PerType(TypedResource::Volumes, "gold".into());
    scoria_core::quotas::update(
        &app,
        &admin(),
        project.as_str(),
        &[
            (volumes_gold.clone(), 5),
            (QuotaResource::Volumes.into(), 30),
        ],
    )
    .await
    .unwrap();
    let ctx = Arc::new(member(&project));
    let mut tasks = Vec::new();
    // Twenty of type gold, and five of the default type in the same rush: the
    // default type has no limit of its own.
    for i in 0..25 {
        let (app, ctx) = (app.clone(), ctx.clone());
        tasks.push(tokio::spawn(async move {
            let req = CreateRequest {
                name: Some(format!("v{i}")),
                size: Some(1),
                volume_type: (i < 20).then(|| "gold".to_owned()),
                ..Default::default()
            };
            (i < 20, volumes::create(&app, &ctx, req).await)
        }));
    }
    let (mut gold_ok, mut other_ok, mut over) = (0, 0, 0);
    for t in tasks {
        match t.await.unwrap() {
            (true, Ok(_)) => gold_ok += 1,
            (false, Ok(_)) => other_ok += 1,
            (true, Err(Error::OverQuota(q))) => {
                assert_eq!(
                    (q.key_name(), q.limit),
                    ("volumes_gold".to_owned(), 5),
                    "{}",
                    q.message()
                );
                assert!(q.message().contains("'volumes_gold'"), "{}", q.message());
                over += 1;
            }
            (gold, other) => panic!("unexpected outcome (gold: {gold}) {other:?}"),
        }
    }
    assert_eq!((gold_ok, over, other_ok), (5, 15, 5));
    app.engine.wait_idle().await;
    let set = scoria_core::quotas::show(&app, &ctx, project.as_str())
        .await
        .unwrap();
    let line = set.lines[&volumes_gold];
    assert_eq!(
        (line.limit, line.usage.in_use, line.usage.reserved),
        (5, 5, 0)
    );
    let default_type = NamedKey::PerType(TypedResource::Volumes, "__DEFAULT__".into());
    assert_eq!(set.lines[&default_type].usage.in_use, 5);
    assert_eq!(set.lines[&QuotaResource::Volumes.into()].usage.in_use, 10);
    let listed = volumes::list(&app, &ctx, Default::default()).await.unwrap();
    let of_gold = listed
        .volumes
        .iter()
        .filter(|v| v.volume.volume_type_id == gold.id)
        .count();
    assert_eq!((listed.volumes.len(), of_gold), (10, 5));
    let bad = scoria_core::invariants::check(&app.env).await.unwrap();
    assert!(bad.is_empty(), "{bad:?}");
}

#[tokio::test]
async fn lifecycle_through_the_application_layer() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let project = ProjectId::new();
    let ctx = member(&project);
    let other = member(&ProjectId::new());
    let v = volumes::create(
        &app,
        &ctx,
        CreateRequest {
            size: Some(1),
            name: Some("a".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let id = v.volume.id;
    volumes::wait_settled(&app, id).await.unwrap();
    // Another project cannot see it, change it or delete it: it does not exist for them.
    assert!(matches!(
        volumes::get(&app, &other, id, true).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        volumes::delete(&app, &other, id, false, false).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        volumes::extend(&app, &other, id, 2, false).await,
        Err(Error::NotFound(_))
    ));
    // Extend: only growing.
    assert!(matches!(
        volumes::extend(&app, &ctx, id, 1, false).await,
        Err(Error::Invalid(_))
    ));
    volumes::extend(&app, &ctx, id, 3, false).await.unwrap();
    volumes::wait_settled(&app, id).await.unwrap();
    let got = volumes::get(&app, &ctx, id, true).await.unwrap();
    assert_eq!(
        (got.volume.size, got.volume.status.as_str()),
        (3, "available")
    );
    let p = got.progress.expect("progress of the extend");
    assert_eq!(
        (p.operation.as_str(), p.stage_label().as_str()),
        ("volume_extend", "4/4")
    );
    // A reader may not change it; a non-admin may not force-delete it.
    let mut reader = ctx.clone();
    reader.roles = ["reader".to_string()].into();
    assert!(matches!(
        volumes::delete(&app, &reader, id, false, false).await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        volumes::delete(&app, &ctx, id, true, false).await,
        Err(Error::Forbidden(_))
    ));
    // Attached volumes cannot be deleted by their owner (an admin's forced
    // delete detaches them first: the attachment tests show it).
    volumes::reset_status(
        &app,
        &admin(),
        id,
        None,
        Some("attached".parse().unwrap()),
        None,
    )
    .await
    .unwrap();
    assert!(matches!(
        volumes::delete(&app, &ctx, id, false, false).await,
        Err(Error::InvalidState(_))
    ));
    volumes::reset_status(
        &app,
        &admin(),
        id,
        None,
        Some("detached".parse().unwrap()),
        None,
    )
    .await
    .unwrap();
    volumes::delete(&app, &ctx, id, false, false).await.unwrap();
    volumes::wait_settled(&app, id).await.unwrap();
    assert!(matches!(
        volumes::get(&app, &ctx, id, true).await,
        Err(Error::NotFound(_))
    ));
    let bad = scoria_core::invariants::check(&app.env).await.unwrap();
    assert!(bad.is_empty(), "{bad:?}");
}
