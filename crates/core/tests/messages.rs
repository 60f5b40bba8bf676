//! What tempest's user-message test does: a volume of a type whose extra specs
//! no backend satisfies fails to schedule, ends in `error`, and its project
//! gets one message naming the request that created it.

use scoria_core::messages::{self, ListRequest};
use scoria_core::volumes::{self, CreateRequest};
use scoria_core::{App, Config, Context, DriverConfig};
use scoria_failpoints::Failpoints;
use scoria_model::volume::VolumeStatus;
use scoria_model::{ProjectId, UserId, VolumeTypeId};

fn member(project: &ProjectId, request_id: &str) -> Context {
    Context {
        system: false,
        request_id: request_id.into(),
        user_id: UserId::new(),
        user_name: "member".into(),
        project_id: Some(project.clone()),
        project_name: None,
        roles: ["member", "reader"].iter().map(|s| s.to_string()).collect(),
    }
}

#[tokio::test]
async fn an_unsatisfiable_type_leaves_the_volume_in_error_with_one_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::with_data_dir(dir.path().to_path_buf());
    if let DriverConfig::File { fsync, .. } = &mut c.backends[0].driver {
        *fsync = false;
    }
    let app = App::open(c, Failpoints::new()).await.unwrap();
    // (extra specs of the type, does the volume schedule?)
    let table: &[(&[(&str, &str)], bool)] = &[
        (
            &[
                ("storage_protocol", "tempest-storage_protocol-1"),
                ("vendor_name", "tempest-vendor_name-1"),
            ],
            false,
        ),
        (
            &[("storage_protocol", "nbd"), ("vendor_name", "Scoria")],
            true,
        ),
        (&[("volume_backend_name", "nowhere")], false),
    ];
    let project = ProjectId::new();
    for (i, (specs, schedules)) in table.iter().enumerate() {
        let type_id = VolumeTypeId::new();
        let mut tx = app.store().begin().await.unwrap();
        scoria_store::volume_types::volume_type_create(
            &mut tx,
            type_id,
            &format!("type-{i}"),
            None,
            true,
            &specs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();

        let request_id = format!("req-{i}");
        let ctx = member(&project, &request_id);
        let view = volumes::create(
            &app,
            &ctx,
            CreateRequest {
                size: Some(1),
                volume_type: Some(type_id.to_string()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let id = view.volume.id;
        volumes::wait_settled(&app, id).await.unwrap();
        let v = volumes::get(&app, &ctx, id, true).await.unwrap().volume;
        let told: Vec<_> = messages::list(&app, &ctx, ListRequest::default())
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.resource_uuid.as_deref() == Some(&id.to_string()))
            .collect();
        if *schedules {
            assert_eq!(v.status, VolumeStatus::Available, "{specs:?}");
            assert!(told.is_empty(), "{specs:?}: {told:?}");
        } else {
            assert_eq!(v.status, VolumeStatus::Error, "{specs:?}");
            assert_eq!(told.len(), 1, "{specs:?}: {told:?}");
            let m = &told[0];
            assert_eq!(m.event_id, "VOLUME_VOLUME_001_003");
            assert_eq!(m.request_id, request_id);
            assert_eq!(m.project_id, project.as_str());
            assert_eq!(m.message_level, "ERROR");
        }
    }
    app.shutdown(std::time::Duration::from_secs(5)).await;
}
