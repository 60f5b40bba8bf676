//! The image service through the application layer: uploads streamed and
//! hashed, limits and quota checked while streaming (also by concurrent
//! uploads), interrupted uploads and crashes leaving the image `queued` and
//! no file, and the invariants agreeing after each.

use std::sync::Arc;

use futures::stream;
use md5::Md5;
use scoria_core::image_service::{self, CreateRequest, GlanceImage};
use scoria_core::{App, Config, Context, Error};
use scoria_failpoints::Failpoints;
use scoria_model::glance::GlanceImageStatus;
use scoria_model::{GlanceImageId, ProjectId, UserId};
use sha2::{Digest, Sha512};

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

fn config(dir: &std::path::Path, change: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config::with_data_dir(dir.to_path_buf());
    c.admin_password = Some("image-service-tests".into());
    c.password_cost = scoria_core::PasswordCost::TestOnlyMinimal;
    c.image_service.fsync = false;
    change(&mut c);
    c
}

async fn app(dir: &std::path::Path, change: impl FnOnce(&mut Config)) -> App {
    App::open(config(dir, change), Failpoints::new())
        .await
        .expect("open")
}

async fn queued(app: &App, ctx: &Context) -> GlanceImage {
    image_service::create(
        app,
        ctx,
        CreateRequest {
            name: Some("img".into()),
            disk_format: Some("raw".into()),
            container_format: Some("bare".into()),
            ..Default::default()
        },
    )
    .await
    .expect("create")
}

type Chunk = Result<Vec<u8>, std::io::Error>;

fn body(chunks: Vec<Vec<u8>>) -> impl futures::Stream<Item = Chunk> + Unpin + Send {
    stream::iter(chunks.into_iter().map(Ok))
}

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn status(app: &App, ctx: &Context, id: GlanceImageId) -> GlanceImageStatus {
    image_service::get(app, ctx, id).await.expect("get").status
}

async fn files(app: &App) -> Vec<String> {
    app.env.image_store.list().await.expect("list")
}

async fn assert_settled(app: &App) {
    let bad = scoria_core::invariants::check(&app.env)
        .await
        .expect("check");
    assert!(bad.is_empty(), "{bad:?}");
}

#[tokio::test]
async fn an_upload_is_hashed_while_streamed_and_reads_back_in_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), |_| {}).await;
    let ctx = member(&ProjectId::new());
    let i = queued(&app, &ctx).await;
    let chunks: Vec<Vec<u8>> = (0..5).map(|k| data(100_000, k)).collect();
    let all: Vec<u8> = chunks.concat();
    let up = image_service::upload(&app, &ctx, i.id, None, body(chunks))
        .await
        .expect("upload");
    assert_eq!(up.status, GlanceImageStatus::Active);
    assert_eq!(up.size, Some(all.len() as i64));
    assert_eq!(
        up.checksum.as_deref(),
        Some(hex::encode(Md5::digest(&all)).as_str())
    );
    assert_eq!(up.os_hash_algo.as_deref(), Some("sha512"));
    assert_eq!(
        up.os_hash_value.as_deref(),
        Some(hex::encode(Sha512::digest(&all)).as_str())
    );
    assert_eq!(up.upload_reserved, 0);
    // A second upload to an active image is a conflict, and changes nothing.
    let again = image_service::upload(&app, &ctx, i.id, None, body(vec![b"x".to_vec()])).await;
    assert!(matches!(again, Err(Error::Conflict(_))), "{again:?}");
    let d = image_service::download(&app, &ctx, i.id, Some((10, Some(19))))
        .await
        .unwrap();
    let mut got = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut d.data.unwrap(), &mut got)
        .await
        .unwrap();
    assert_eq!((d.offset, d.len, got.as_slice()), (10, 10, &all[10..20]));
    assert_settled(&app).await;
    image_service::delete(&app, &ctx, i.id).await.unwrap();
    assert!(files(&app).await.is_empty(), "the file goes with the image");
    assert_settled(&app).await;
}

#[tokio::test]
async fn a_failed_or_cut_off_upload_leaves_the_image_queued_and_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), |c| c.image_service.max_image_size = 1000).await;
    let ctx = member(&ProjectId::new());
    let i = queued(&app, &ctx).await;
    // Past the size limit while streaming: 413, queued again.
    let r = image_service::upload(
        &app,
        &ctx,
        i.id,
        None,
        body(vec![data(600, 1), data(600, 2)]),
    )
    .await;
    assert!(matches!(r, Err(Error::TooLarge(_))), "{r:?}");
    assert_eq!(status(&app, &ctx, i.id).await, GlanceImageStatus::Queued);
    // Announced over the limit: refused before a byte is read.
    let r = image_service::upload(&app, &ctx, i.id, Some(1001), body(vec![])).await;
    assert!(matches!(r, Err(Error::TooLarge(_))), "{r:?}");
    // The body breaks off (the client went away).
    let broken = stream::iter(vec![
        Ok(data(10, 3)),
        Err(std::io::Error::other("connection reset")),
    ]);
    let r = image_service::upload(&app, &ctx, i.id, None, broken).await;
    assert!(matches!(r, Err(Error::Invalid(_))), "{r:?}");
    assert_eq!(status(&app, &ctx, i.id).await, GlanceImageStatus::Queued);
    // The request is dropped mid-stream: the guard puts it back.
    let pending = stream::iter(vec![Ok::<_, std::io::Error>(data(10, 4))]).chain(stream::pending());
    let upload = image_service::upload(&app, &ctx, i.id, None, Box::pin(pending));
    let _ = tokio::time::timeout(std::time::Duration::from_millis(200), upload).await;
    for _ in 0..100 {
        if status(&app, &ctx, i.id).await == GlanceImageStatus::Queued {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(status(&app, &ctx, i.id).await, GlanceImageStatus::Queued);
    assert!(files(&app).await.is_empty());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("images"))
        .unwrap()
        .collect();
    assert!(leftovers.is_empty(), "no temporary: {leftovers:?}");
    assert_settled(&app).await;
    // And the image can still be uploaded.
    let ok = image_service::upload(&app, &ctx, i.id, Some(5), body(vec![b"hello".to_vec()]))
        .await
        .unwrap();
    assert_eq!(ok.size, Some(5));
    assert_settled(&app).await;
}

use futures::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_uploads_never_pass_the_quota_together() {
    let dir = tempfile::tempdir().unwrap();
    // Room for three uploads of 300 KiB, not four; none announces its size.
    let app = app(dir.path(), |c| {
        c.image_service.image_size_total = 1000 * 1024
    })
    .await;
    let ctx = Arc::new(member(&ProjectId::new()));
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(queued(&app, &ctx).await.id);
    }
    let mut tasks = Vec::new();
    for (k, id) in ids.iter().copied().enumerate() {
        let (app, ctx) = (app.clone(), ctx.clone());
        tasks.push(tokio::spawn(async move {
            let chunks: Vec<Vec<u8>> = (0..30)
                .map(|j| data(10 * 1024, (k * 30 + j) as u8))
                .collect();
            image_service::upload(&app, &ctx, id, None, body(chunks)).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(Error::TooLarge(m)) => assert!(m.contains("image_size_total"), "{m}"),
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(ok <= 3, "{ok} uploads of 300 KiB fit in 1000 KiB");
    assert!(ok >= 1);
    assert_settled(&app).await;
}

#[tokio::test]
async fn a_create_over_the_quota_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), |c| c.image_service.image_size_total = 10).await;
    let ctx = member(&ProjectId::new());
    let i = queued(&app, &ctx).await;
    image_service::upload(&app, &ctx, i.id, None, body(vec![data(10, 0)]))
        .await
        .unwrap();
    let r = image_service::create(&app, &ctx, CreateRequest::default()).await;
    assert!(matches!(r, Err(Error::TooLarge(_))), "{r:?}");
}

#[cfg(feature = "failpoints")]
#[tokio::test]
async fn after_a_crash_at_any_point_of_an_upload_rows_and_files_agree() {
    use scoria_failpoints::Action;
    for point in [
        "image_store.write",
        "image_store.commit.temp",
        "image_store.commit.after",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let fp = Failpoints::new();
        let app = App::open(config(dir.path(), |_| {}), fp.clone())
            .await
            .unwrap();
        let ctx = member(&ProjectId::new());
        let i = queued(&app, &ctx).await;
        // A crash: this instance does nothing more after the point (no undo
        // runs, the guard's task fails too), as if the process died there.
        fp.arm(point, Action::Crash, 1, None);
        let r = image_service::upload(&app, &ctx, i.id, None, body(vec![data(4096, 9)])).await;
        assert!(r.is_err(), "{point}");
        app.shutdown(std::time::Duration::from_secs(1)).await;
        drop(app);
        // The next start makes them agree.
        let app = App::open(config(dir.path(), |_| {}), Failpoints::new())
            .await
            .unwrap();
        let got = image_service::get(&app, &ctx, i.id).await.unwrap();
        assert_eq!(got.status, GlanceImageStatus::Queued, "{point}");
        assert!(files(&app).await.is_empty(), "{point}");
        assert_settled(&app).await;
        app.shutdown(std::time::Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn a_start_after_a_crash_mid_upload_queues_the_image_and_removes_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), |_| {}).await;
    let ctx = member(&ProjectId::new());
    let (a, b) = (queued(&app, &ctx).await, queued(&app, &ctx).await);
    // What a process killed mid-upload leaves: `a` saving with a temporary,
    // `b` saving with its file renamed into place but not yet `active`.
    {
        let mut tx = app.store().begin().await.unwrap();
        for id in [a.id, b.id] {
            assert!(
                scoria_store::glance::glance_image_begin_upload(&mut tx, id, 4096)
                    .await
                    .unwrap()
            );
        }
        tx.commit().await.unwrap();
    }
    let images = dir.path().join("images");
    std::fs::write(images.join(format!(".{}.tmp", a.id)), b"half").unwrap();
    std::fs::write(images.join(b.id.to_string()), b"whole").unwrap();
    assert!(
        !scoria_core::invariants::check(&app.env)
            .await
            .unwrap()
            .is_empty()
    );
    app.shutdown(std::time::Duration::from_secs(1)).await;
    drop(app);
    let app = self::app(dir.path(), |_| {}).await;
    for id in [a.id, b.id] {
        let got = image_service::get(&app, &ctx, id).await.unwrap();
        assert_eq!(
            (got.status, got.upload_reserved),
            (GlanceImageStatus::Queued, 0)
        );
    }
    assert!(std::fs::read_dir(&images).unwrap().next().is_none());
    assert_settled(&app).await;
}
