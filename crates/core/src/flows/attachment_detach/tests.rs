//! The detach flow under the generic tests, on the real file backend with
//! real export daemons.

use scoria_flows::Engine;
use scoria_flows::testkit::{BoxFut, Expect};
use scoria_model::attachment::AttachmentStatus;
use scoria_model::volume::VolumeStatus;
use scoria_model::{AttachmentId, VolumeId};
use serde_json::json;

use super::{AttachmentDetach, Params};
use crate::Env;
use crate::flows::attachment_attach::{self, tests::served};
use crate::flows::testing::{self, PROJECT, Scenario, World};

/// A volume attached (with its export serving and the attachment
/// completed), detached by its owner.
struct Detach {
    volume: VolumeId,
    attachment: AttachmentId,
}

impl Scenario for Detach {
    type F = AttachmentDetach;
    const NAME: &'static str = "attachment_detach";

    fn prepare<'a>(&'a self, w: &'a World) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let e = w.plain().await;
            w.create_volume(&e, self.volume, 1).await;
            w.run::<attachment_attach::AttachmentAttach>(
                &e,
                attachment_attach::Params {
                    attachment_id: self.attachment,
                    volume_id: self.volume,
                    project_id: Some(PROJECT.into()),
                    instance_uuid: Some("instance-1".into()),
                    connector: Some(json!({"host": "compute-1"})),
                    mode: None,
                    create: true,
                },
                "the attachment",
            )
            .await;
            let mut tx = e.store().begin().await.expect("begin");
            scoria_store::attachments::attachment_set_status(
                &mut tx,
                self.attachment,
                &[AttachmentStatus::Attaching],
                AttachmentStatus::Attached,
            )
            .await
            .expect("complete");
            crate::rules::attachments::settle(&mut tx, self.volume)
                .await
                .expect("settle");
            tx.commit().await.expect("commit");
        })
    }

    fn params(&self) -> Params {
        Params {
            attachment_id: self.attachment,
            volume_id: self.volume,
            project_id: Some(PROJECT.into()),
            force: false,
        }
    }

    fn check<'a>(
        &'a self,
        w: &'a World,
        e: &'a Engine<Env>,
        expect: Expect,
    ) -> BoxFut<'a, Result<(), String>> {
        Box::pin(async move {
            let v = w.volume(e, self.volume).await?.ok_or("volume gone")?;
            let a = {
                let mut c = e.store().read().await.map_err(testing::text)?;
                scoria_store::attachments::attachment_get(&mut c, self.attachment)
                    .await
                    .map_err(testing::text)?
            };
            let served = served(e).await?;
            let done = a.is_none() && v.status == VolumeStatus::Available && served.is_empty();
            let failed = a
                .as_ref()
                .is_some_and(|a| a.status == AttachmentStatus::Attached)
                && v.status == VolumeStatus::InUse
                && served == vec![(self.attachment.to_string(), true)];
            let ok = match expect {
                Expect::Done => done,
                Expect::Failed => failed,
                Expect::Either => done || failed,
            };
            if !ok {
                return Err(format!(
                    "expected {expect:?}: volume {}, attachment {a:?}, exports {served:?}",
                    v.status
                ));
            }
            Ok(())
        })
    }
}

#[tokio::test]
async fn passes_the_generic_flow_tests_on_the_file_backend() {
    let report = testing::generic(|| Detach {
        volume: VolumeId::new(),
        attachment: AttachmentId::new(),
    })
    .await;
    println!("attachment_detach: {report:?}");
    assert!(report.crash_points >= 3, "{report:?}");
}
