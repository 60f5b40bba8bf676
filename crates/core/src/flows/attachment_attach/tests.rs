//! The attach flow under the generic tests, on the real file backend with
//! real export daemons.

use scoria_flows::Engine;
use scoria_flows::testkit::{BoxFut, Expect};
use scoria_model::attachment::AttachmentStatus;
use scoria_model::volume::VolumeStatus;
use scoria_model::{AttachmentId, VolumeId};
use serde_json::json;

use super::{AttachmentAttach, Params};
use crate::Env;
use crate::flows::testing::{self, PROJECT, Scenario, World};

/// The exports the file backend serves now: (id, serving).
pub(crate) async fn served(e: &Engine<Env>) -> Result<Vec<(String, bool)>, String> {
    use scoria_storage::export::Exporter;
    let exports = e.env().exports.get("file").ok_or("no exporter")?;
    Ok(exports
        .exporter
        .list()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|s| (s.id, s.serving))
        .collect())
}

/// An available volume attached with a connector by its owner.
struct Attach {
    volume: VolumeId,
    attachment: AttachmentId,
}

impl Scenario for Attach {
    type F = AttachmentAttach;
    const NAME: &'static str = "attachment_attach";

    fn prepare<'a>(&'a self, w: &'a World) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let e = w.plain().await;
            w.create_volume(&e, self.volume, 1).await;
        })
    }

    fn params(&self) -> Params {
        Params {
            attachment_id: self.attachment,
            volume_id: self.volume,
            project_id: Some(PROJECT.into()),
            instance_uuid: Some("instance-1".into()),
            connector: Some(json!({"host": "compute-1", "initiator": "x"})),
            mode: None,
            create: true,
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
            let done = a
                .as_ref()
                .is_some_and(|a| a.status == AttachmentStatus::Attaching)
                && v.status == VolumeStatus::Reserved
                && served == vec![(self.attachment.to_string(), true)];
            let failed = a.is_none() && v.status == VolumeStatus::Available && served.is_empty();
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
    let report = testing::generic(|| Attach {
        volume: VolumeId::new(),
        attachment: AttachmentId::new(),
    })
    .await;
    println!("attachment_attach: {report:?}");
    assert!(report.crash_points >= 3, "{report:?}");
}
