//! Extend (grow) a volume.
//!
//! ```text
//!  begin_extend ─────────► reserve_quota ─► extend_on_backend ─► finish_extend
//!   `available` →          +Δ GiB held       grows the image      new size, `available`,
//!   `extending`            undo: release     (already that big    reservation released:
//!   undo: `available`,                        = success)          usage = the new size
//!   or `error_extending`
//!   once the backend was touched
//! ```
//!
//! An attached volume (`in-use`, from microversion 3.42 as in Cinder) is
//! grown by its export's daemon: the export is taken down, its image grown
//! and the export added again at the same address with the same key; its
//! client reconnects and sees the new size (see `exports::extend`). It goes
//! `in-use` → `extending` → `in-use`.
//!
//! The API answers 202 once the quota is reserved; a bad status or size, a
//! frozen backend, a clone being copied from the volume (400) and an exceeded
//! quota (413) are answered synchronously
//! and change nothing. A failure on the backend leaves the volume
//! `error_extending` and tells its project (a user message).

use scoria_flows::{Cx, Flow, FlowMeta, Step, StepError};
use scoria_model::quota::{QuotaKey, QuotaResource, TypedResource};
use scoria_model::volume::{GIB, VolumeStatus};
use scoria_model::{ImageId, VolumeId, VolumeTypeId};
use scoria_store::{Conn, images, quotas, volumes};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::Error;
use crate::{Env, messages};

pub struct VolumeExtend;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub volume_id: VolumeId,
    /// The caller's project; `None` for an admin acting on any project.
    pub project_id: Option<String>,
    /// GiB.
    pub new_size: i64,
    /// The request that asked for the extend (named by a failure message).
    #[serde(default)]
    pub request_id: Option<String>,
    /// An `in-use` volume may be extended (microversion 3.42+).
    #[serde(default)]
    pub allow_in_use: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Begun {
    project_id: String,
    old_size: i64,
    /// The backend and name of the volume's active image.
    backend: Option<String>,
    location: Option<String>,
    /// The active image (absent in flows persisted before images were
    /// recorded: `finish_extend` then reads it from the volume).
    #[serde(default)]
    image_id: Option<ImageId>,
    /// The volume's type, whose `gigabytes_<type>` grows too. A retype waits
    /// for the extend (only `available` and `in-use` volumes are retyped).
    /// Absent in flows persisted before per-type quotas.
    #[serde(default)]
    volume_type_id: Option<VolumeTypeId>,
}

impl Flow for VolumeExtend {
    const KIND: &'static str = "volume_extend";
    type Params = Params;
    type Env = Env;

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::db("begin_extend", |cx, c| Box::pin(begin_extend(cx, c)))
                .undo_db(|cx, c| Box::pin(abort_extend(cx, c))),
            Step::db("reserve_quota", |cx, c| Box::pin(reserve_quota(cx, c)))
                .undo_db(|cx, c| Box::pin(release_quota(cx, c))),
            Step::external("extend_on_backend", |cx| Box::pin(extend_on_backend(cx))),
            Step::db("finish_extend", |cx, c| Box::pin(finish_extend(cx, c))),
        ]
    }

    fn meta(p: &Params) -> FlowMeta {
        FlowMeta {
            resource_type: Some("volume"),
            resource_id: Some(p.volume_id.to_string()),
            project_id: p.project_id.clone(),
        }
    }
}

async fn begin_extend(cx: &Cx<VolumeExtend>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    let v = volumes::volume_get(c, p.volume_id).await?;
    let v = match v {
        Some(v)
            if p.project_id
                .as_ref()
                .is_none_or(|proj| *proj == v.project_id) =>
        {
            v
        }
        _ => return Err(Error::volume_not_found(p.volume_id).into()),
    };
    crate::rules::volumes::assert_not_migrating_for(
        &v,
        &format!(
            "Volume {} is migrating; it cannot be extended until the migration ends.",
            v.id
        ),
    )?;
    let in_use = p.allow_in_use && v.status == VolumeStatus::InUse;
    if !VolumeStatus::EXTENDABLE.contains(&v.status) && !in_use {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {} status must be {} to extend, but current status is: {}.",
            v.id,
            if p.allow_in_use {
                "available or in-use"
            } else {
                "available"
            },
            v.status
        ))
        .into());
    }
    if p.new_size <= v.size {
        return Err(Error::Invalid(format!(
            "Invalid input received: New size for extend must be greater than current size. (current: {}, extended: {}).",
            v.size, p.new_size
        ))
        .into());
    }
    crate::rules::hosts::assert_not_frozen(c, v.backend.as_deref()).await?;
    let moved = volumes::volume_set_status_by_flow(
        c,
        v.id,
        &[v.status],
        VolumeStatus::Extending,
        Some(&cx.flow_id.to_string()),
    )
    .await?;
    if !moved {
        return Err(Error::InvalidState(format!(
            "Invalid volume: volume {} changed status.",
            v.id
        ))
        .into());
    }
    // Attached is fine (when allowed): the export's daemon grows the image.
    crate::rules::volumes::assert_not_held_by_copies(c, v.id, "extended").await?;
    let image = crate::rules::images::active_image(c, &v).await?;
    let begun = Begun {
        project_id: v.project_id,
        old_size: v.size,
        backend: image.as_ref().map(|i| i.backend.clone()),
        location: image.as_ref().map(|i| i.name.clone()),
        image_id: image.map(|i| i.id),
        volume_type_id: Some(v.volume_type_id),
    };
    serde_json::to_value(begun).map_err(|e| StepError::msg(e.to_string()))
}

/// Undo of `begin_extend`: once the backend step has run (or failed half way)
/// the image may be bigger than the entry says, so the volume is left
/// `error_extending`; a failure before it puts `available` back.
async fn abort_extend(cx: &Cx<VolumeExtend>, c: &mut Conn) -> Result<(), StepError> {
    let touched = cx.output_opt::<Value>("extend_on_backend").is_some()
        || cx.failure().is_some_and(|f| f.step == "extend_on_backend");
    let to = if touched {
        VolumeStatus::ErrorExtending
    } else {
        VolumeStatus::Available
    };
    let id = cx.params.volume_id;
    let moved = volumes::volume_set_status(c, id, &[VolumeStatus::Extending], to).await?;
    // An attached volume is `in-use` again.
    crate::rules::attachments::settle(c, id).await?;
    if moved && touched {
        // The owner learns why the volume is `error_extending`.
        let begun: Begun = cx.output("begin_extend")?;
        messages::record_volume_failure(
            c,
            &begun.project_id,
            id,
            &messages::request_id_or(&cx.params.request_id, cx.flow_id),
            messages::EXTEND_VOLUME,
            if cx.failure().is_some_and(|f| f.step == "extend_on_backend") {
                messages::DRIVER_FAILED_EXTEND
            } else {
                messages::UNKNOWN_ERROR
            },
        )
        .await?;
    }
    Ok(())
}

async fn reserve_quota(cx: &Cx<VolumeExtend>, c: &mut Conn) -> Result<Value, StepError> {
    let begun: Begun = cx.output("begin_extend")?;
    let delta = cx.params.new_size - begun.old_size;
    let mut deltas = vec![(QuotaKey::Global(QuotaResource::Gigabytes), delta)];
    if let Some(t) = begun.volume_type_id {
        deltas.push((QuotaKey::PerType(TypedResource::Gigabytes, t), delta));
    }
    quotas::quota_reserve(
        c,
        cx.flow_id,
        &begun.project_id,
        &deltas,
        Some(cx.params.new_size),
    )
    .await
    .map_err(Error::from)?;
    Ok(json!(delta))
}

async fn release_quota(cx: &Cx<VolumeExtend>, c: &mut Conn) -> Result<(), StepError> {
    quotas::reservation_release_flow(c, cx.flow_id).await?;
    Ok(())
}

async fn extend_on_backend(cx: &Cx<VolumeExtend>) -> Result<Value, StepError> {
    let begun: Begun = cx.output("begin_extend")?;
    let (Some(backend), Some(location)) = (begun.backend, begun.location) else {
        return Err(Error::InvalidState(format!(
            "Volume {} has no data to extend.",
            cx.params.volume_id
        ))
        .into());
    };
    crate::exports::extend(
        &cx.env,
        cx.params.volume_id,
        &backend,
        &location,
        cx.params.new_size as u64 * GIB,
    )
    .await?;
    crate::capacity::refresh(&cx.env, &backend).await;
    Ok(Value::Null)
}

async fn finish_extend(cx: &Cx<VolumeExtend>, c: &mut Conn) -> Result<Value, StepError> {
    quotas::reservation_release_flow(c, cx.flow_id).await?;
    let begun: Begun = cx.output("begin_extend")?;
    let image = match begun.image_id {
        Some(id) => Some(id),
        None => volumes::volume_get(c, cx.params.volume_id)
            .await?
            .and_then(|v| v.image_id),
    };
    if let Some(image) = image {
        images::image_set_size(c, image, cx.params.new_size * GIB as i64).await?;
    }
    if !volumes::volume_finish_extend(c, cx.params.volume_id, cx.params.new_size).await? {
        return Err(Error::InvalidState(format!(
            "Volume {} is no longer being extended.",
            cx.params.volume_id
        ))
        .into());
    }
    // `available`, or `in-use` when it is attached.
    crate::rules::attachments::settle(c, cx.params.volume_id).await?;
    Ok(Value::Null)
}

#[cfg(all(test, feature = "failpoints"))]
mod tests {
    use scoria_flows::Engine;
    use scoria_flows::testkit::{BoxFut, Expect};
    use scoria_model::VolumeId;
    use scoria_model::volume::VolumeStatus::{Available, ErrorExtending, InUse};

    use super::{Params, VolumeExtend};
    use crate::Env;
    use crate::flows::testing::{self, PROJECT, Scenario, World};

    /// A 1 GiB volume grown to 2 GiB by its owner: available, or attached
    /// with its export served (then the export's daemon grows it).
    struct Extend {
        volume: VolumeId,
        attached: bool,
    }

    impl Scenario for Extend {
        type F = VolumeExtend;
        const NAME: &'static str = "volume_extend";

        fn prepare<'a>(&'a self, w: &'a World) -> BoxFut<'a, ()> {
            Box::pin(async move {
                let e = w.plain().await;
                w.create_volume(&e, self.volume, 1).await;
                if self.attached {
                    w.attach(&e, self.volume).await;
                }
            })
        }

        fn params(&self) -> Params {
            Params {
                volume_id: self.volume,
                project_id: Some(PROJECT.into()),
                new_size: 2,
                request_id: Some("req-test".into()),
                allow_in_use: self.attached,
            }
        }

        fn check<'a>(
            &'a self,
            w: &'a World,
            e: &'a Engine<Env>,
            expect: Expect,
        ) -> BoxFut<'a, Result<(), String>> {
            Box::pin(async move {
                let state = w.volume(e, self.volume).await?.map(|v| (v.status, v.size));
                let idle = if self.attached { InUse } else { Available };
                let ok = match expect {
                    Expect::Either => true,
                    Expect::Done => state == Some((idle, 2)),
                    Expect::Failed => {
                        state == Some((idle, 1)) || state == Some((ErrorExtending, 1))
                    }
                };
                if !ok {
                    return Err(format!("expected {expect:?}, the volume is {state:?}"));
                }
                if state.is_some_and(|(_, size)| size == 2) {
                    let image = w.image_of(e, self.volume).await;
                    // The header, as the daemon (which holds the file) wrote it.
                    let info =
                        scoria_storage::qcow2::read_header(&image).map_err(|e| format!("{e:?}"))?;
                    if info.virtual_size != 2 << 30 {
                        return Err(format!("the image is {} bytes", info.virtual_size));
                    }
                }
                if self.attached {
                    // The export serves again, whatever happened.
                    crate::exports::reconcile(e.env())
                        .await
                        .map_err(|e| e.chain())?;
                    let exports = w.exports(e).await?;
                    if exports.len() != 1 || !exports[0].serving {
                        return Err(format!("the export is {exports:?}"));
                    }
                }
                w.check_told(e, self.volume).await
            })
        }
    }

    #[tokio::test]
    async fn passes_the_generic_flow_tests_on_the_file_backend() {
        let report = testing::generic(|| Extend {
            volume: VolumeId::new(),
            attached: false,
        })
        .await;
        println!("volume_extend: {report:?}");
        assert!(report.crash_points >= 5, "{report:?}");
    }

    #[tokio::test]
    async fn an_attached_volume_passes_the_generic_flow_tests() {
        let report = testing::generic(|| Extend {
            volume: VolumeId::new(),
            attached: true,
        })
        .await;
        println!("volume_extend (attached): {report:?}");
        assert!(report.crash_points >= 5, "{report:?}");
    }
}
