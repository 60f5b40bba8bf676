//! A data directory written by release 7 (volumes as files, no image
//! records) opens under this release: the store migrates, every volume reads
//! as before and points at its image, and every volume deletes, file and
//! all, leaving the invariants whole.

use scoria_core::volumes;
use scoria_core::{App, Config, Context, DriverConfig};
use scoria_failpoints::Failpoints;
use scoria_model::volume::{AttachStatus, GIB, VolumeStatus};
use scoria_model::{ProjectId, UserId, VolumeId};
use scoria_storage::{Format, qemu};
use scoria_store::fixtures::{V7Volume, insert_v7_volume};
use scoria_store::{Store, StoreOptions, images};

fn admin() -> Context {
    Context {
        system: false,
        request_id: "req-test".into(),
        user_id: UserId::new(),
        user_name: "admin".into(),
        project_id: Some(ProjectId::new()),
        project_name: None,
        roles: ["admin", "member", "reader"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    }
}

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::with_data_dir(dir.to_path_buf());
    c.store.durability = scoria_store::Durability::Normal;
    c.admin_password = Some("secret".into());
    if let DriverConfig::File { fsync, .. } = &mut c.backends[0].driver {
        *fsync = false;
    }
    c
}

#[tokio::test]
async fn a_release_7_data_directory_migrates_and_every_volume_reads_and_deletes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = dir.path().join("volumes");
    std::fs::create_dir_all(&backend).expect("backend dir");
    let project = ProjectId::new();

    // Release 7's database: a volume in every status, each with its file where
    // one was made (every status but a failed create's), and one volume that
    // was never placed.
    let old = Store::open_before(&dir.path().join("scoria.db"), &StoreOptions::default(), 8)
        .await
        .expect("open at 7");
    let mut tx = old.begin().await.expect("begin");
    let mut made = Vec::new();
    for status in VolumeStatus::ALL {
        let id = VolumeId::new();
        let name = format!("volume-{id}.qcow2");
        let attach_status = if *status == VolumeStatus::InUse {
            AttachStatus::Attached
        } else {
            AttachStatus::Detached
        };
        let v = V7Volume {
            id,
            project_id: project.as_str().into(),
            size: 1,
            status: *status,
            attach_status,
            placed: Some(("file".into(), name.clone(), "qcow2".into())),
        };
        insert_v7_volume(&mut tx, &v).await.expect("insert");
        if *status != VolumeStatus::Error {
            qemu::create(&backend.join(&name), Format::Qcow2, GIB)
                .await
                .expect("qemu-img create");
        }
        made.push((v, name));
    }
    let unplaced = V7Volume {
        id: VolumeId::new(),
        project_id: project.as_str().into(),
        size: 1,
        status: VolumeStatus::Error,
        attach_status: AttachStatus::Detached,
        placed: None,
    };
    insert_v7_volume(&mut tx, &unplaced).await.expect("insert");
    tx.commit().await.expect("commit");
    old.close().await;

    let app = App::open(config(dir.path()), Failpoints::new())
        .await
        .expect("open migrates");
    assert!(app.store().schema_version().await.expect("version") >= 9);
    let ctx = admin();

    // Every volume reads as it was, and its image record names its file.
    for (v, name) in &made {
        let view = volumes::get(&app, &ctx, v.id, true).await.expect("get");
        assert_eq!(
            (
                view.volume.status,
                view.volume.size,
                view.volume.backend.as_deref()
            ),
            (v.status, 1, Some("file"))
        );
        let mut c = app.store().read().await.expect("read");
        let image = images::image_get(&mut c, view.volume.image_id.expect("an image"))
            .await
            .expect("read image")
            .expect("the image");
        assert_eq!(&image.name, name);
        assert_eq!(image.virtual_size, GIB as i64);
    }
    let view = volumes::get(&app, &ctx, unplaced.id, true)
        .await
        .expect("get");
    assert_eq!(view.volume.image_id, None);

    // Every volume deletes: the attached one once an admin marked it
    // detached, the rest by force from whatever status they are in.
    for v in made.iter().map(|(v, _)| v).chain([&unplaced]) {
        if v.attach_status == AttachStatus::Attached {
            volumes::reset_status(
                &app,
                &ctx,
                v.id,
                Some(VolumeStatus::Available),
                Some(AttachStatus::Detached),
                None,
            )
            .await
            .expect("reset");
        }
        volumes::delete(&app, &ctx, v.id, true, false)
            .await
            .unwrap_or_else(|e| panic!("delete of a {} volume: {e:?}", v.status));
        volumes::wait_settled(&app, v.id).await.expect("settle");
        let gone = volumes::get(&app, &ctx, v.id, true).await;
        assert!(gone.is_err(), "the {} volume is still there", v.status);
    }
    app.engine.wait_idle().await;
    let left: Vec<_> = std::fs::read_dir(&backend)
        .expect("read backend")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "files left: {left:?}");
    let mut c = app.store().read().await.expect("read");
    assert!(
        images::image_list_all(&mut c)
            .await
            .expect("list")
            .is_empty()
    );
    drop(c);
    let bad = scoria_core::invariants::check(&app.env)
        .await
        .expect("check");
    assert!(bad.is_empty(), "{bad:?}");
}
