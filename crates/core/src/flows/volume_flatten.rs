//! Put a volume on an image of its own, flattened: the repository check's
//! `optimize` fix, for a chain deeper than the backend allows whose every
//! layer is still a snapshot's (so none can be merged away).
//!
//! ```text
//!  begin_flatten ────────────────► copy ──────────────────► switch
//!   the volume `available` and      the whole chain read     the volume on the copy,
//!   detached → `maintenance`; the   into the new image       `available`; the copy
//!   new image's record `creating`   (sparse, no backing)     `optimized`; the old top
//!   undo: `available`, record gone  undo: delete it          layer left to the reaper
//! ```
//!
//! Before:  volume ──► I4 ──► I3 ──► I2 ──► I1     (I1–I3: snapshots')
//! After:   volume ──► I5                           (I4 freed; the snapshots
//!                                                   keep I1–I3)
//!
//! The volume reads the same before and after; the snapshots keep their
//! layers, so the copy costs the volume's allocated data once more in space
//! and makes every later read a one-layer read. Only a detached volume is
//! flattened: an attached one is flattened offline, after its detach (a
//! merge of an attached chain runs online, see `image_merge`).

use scoria_flows::{Cx, Flow, FlowMeta, Step, StepError};
use scoria_model::image::{ImageFormat, ImageState};
use scoria_model::{ImageId, VolumeId};
use scoria_storage::{Format, ImageSpec};
use scoria_store::{Conn, images, volumes};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::{Env, flows::storage_error};

pub struct VolumeFlatten;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub volume_id: VolumeId,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Plan {
    backend: String,
    old_image: ImageId,
    old_name: String,
    image_id: ImageId,
    name: String,
    /// Bytes.
    size: u64,
}

impl Flow for VolumeFlatten {
    const KIND: &'static str = "volume_flatten";
    type Params = Params;
    type Env = Env;

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::db("begin_flatten", |cx, c| Box::pin(begin_flatten(cx, c)))
                .undo_db(|cx, c| Box::pin(abort_flatten(cx, c))),
            Step::external("copy", |cx| Box::pin(copy(cx)))
                .undo_external(|cx| Box::pin(remove_copy(cx))),
            Step::db("switch", |cx, c| Box::pin(switch(cx, c))),
        ]
    }

    fn meta(p: &Params) -> FlowMeta {
        FlowMeta {
            resource_type: Some("volume"),
            resource_id: Some(p.volume_id.to_string()),
            project_id: None,
        }
    }
}

async fn begin_flatten(cx: &Cx<VolumeFlatten>, c: &mut Conn) -> Result<Value, StepError> {
    let v = crate::rules::volumes::hold_for_maintenance(
        c,
        cx.flow_id,
        cx.params.volume_id,
        "flattened",
        false,
    )
    .await?;
    let old = crate::rules::images::active_image(c, &v)
        .await?
        .ok_or_else(|| Error::InvalidState(format!("Volume {} has no data.", v.id)))?;
    let image_id = ImageId::new();
    let name = crate::rules::images::name_for(image_id, Format::Qcow2);
    images::image_create(
        c,
        &images::NewImage {
            id: image_id,
            backend: old.backend.clone(),
            name: name.clone(),
            format: ImageFormat::Qcow2,
            virtual_size: old.virtual_size,
            base_id: None,
            mutable: true,
            state: ImageState::Creating,
        },
    )
    .await?;
    serde_json::to_value(Plan {
        backend: old.backend,
        old_image: old.id,
        old_name: old.name,
        image_id,
        name,
        size: old.virtual_size as u64,
    })
    .map_err(|e| StepError::msg(e.to_string()))
}

async fn abort_flatten(cx: &Cx<VolumeFlatten>, c: &mut Conn) -> Result<(), StepError> {
    let plan: Plan = cx.output("begin_flatten")?;
    images::image_delete(c, plan.image_id).await?;
    crate::rules::volumes::release_maintenance(c, cx.params.volume_id).await?;
    Ok(())
}

async fn copy(cx: &Cx<VolumeFlatten>) -> Result<Value, StepError> {
    let plan: Plan = cx.output("begin_flatten")?;
    let spec = ImageSpec {
        name: plan.name.clone(),
        size: plan.size,
        format: Format::Qcow2,
    };
    cx.env
        .backend(&plan.backend)?
        .driver
        .copy_from(&plan.old_name, &spec, &|percent| cx.report_percent(percent))
        .await
        .map_err(|e| storage_error("copy the volume's chain into an image of its own", e))?;
    crate::capacity::refresh(&cx.env, &plan.backend).await;
    Ok(Value::Null)
}

async fn remove_copy(cx: &Cx<VolumeFlatten>) -> Result<(), StepError> {
    let Some(plan) = cx.output_opt::<Plan>("begin_flatten") else {
        return Ok(());
    };
    cx.env
        .backend(&plan.backend)?
        .driver
        .delete(&plan.name)
        .await
        .map_err(|e| storage_error("remove a partly made copy", e))
}

async fn switch(cx: &Cx<VolumeFlatten>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    let plan: Plan = cx.output("begin_flatten")?;
    images::image_set_state(c, plan.image_id, &[ImageState::Creating], ImageState::Ready).await?;
    if !volumes::volume_switch_image(c, p.volume_id, plan.old_image, plan.image_id).await? {
        return Err(Error::InvalidState(format!(
            "Volume {} changed its data while it was being flattened.",
            p.volume_id
        ))
        .into());
    }
    crate::rules::volumes::release_maintenance(c, p.volume_id).await?;
    let backend = cx.env.backend(&plan.backend)?;
    crate::rules::images::mark_health(c, plan.image_id, &backend.config).await?;
    Ok(Value::Null)
}

#[cfg(all(test, feature = "failpoints"))]
mod tests;
