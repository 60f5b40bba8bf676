//! Merge one layer of a volume's chain into the layer above it: the
//! repository check's `merge` fix, for a layer only that next layer reads
//! (a deleted snapshot's data).
//!
//! ```text
//!  begin_merge ────────────────► merge_on_backend ───────► finish_merge
//!   the layer still read only     the layer's data copied    the layer above recorded
//!   by the layer above, the       into the layer above,      on the layer's base; the
//!   volume `available` and        which then stands on the   volume `available`; the
//!   detached → `maintenance`      layer's base (reads the    chains' health again; the
//!   undo: `available`             same throughout)           layer left to the reaper
//!                                 undo: back on the layer
//! ```
//!
//! Before:  volume ──► I4 ──► I3 ──► I2 ──► I1      (I2: a deleted snapshot's)
//! After:   volume ──► I4 ──► I3 ──► I1              (I2 freed by the reaper)
//!
//! The layer above (I3) may be a snapshot's frozen image: what it reads does
//! not change, only its file does (`Driver::merge_base`, `qemu-img rebase`
//! in safe mode). Interrupted anywhere, the layer above reads the same on
//! either base, and the flow resumes: a re-run of the merge finds it done.
//! A failure after qemu-img finished (a sync, a failpoint) is undone by
//! putting the layer above back on the merged layer without copying
//! (`Driver::unmerge_base`): it holds all of that layer's data by then, so it
//! reads the same on either base. The record and the file never disagree for
//! longer than a resume.
//!
//! The volume is held (`maintenance`, from `available` or `in-use`) so that
//! nothing else changes its chain meanwhile: no detach, no new attachment,
//! no snapshot. An attached volume's chain is open in its export's daemon:
//! there the merge is a block-stream job (`crate::exports::merge`), which
//! its guest does not notice; its undo stops the export, puts the layer
//! back offline and serves it again (the guest reconnects). A volume
//! exported more than once is refused. A layer above that some other running
//! qemu holds (a clone's export) is refused by qemu's image lock: the
//! backend step fails and the volume goes back to what it was, nothing
//! changed.

use scoria_flows::{Cx, Flow, FlowMeta, Step, StepError};
use scoria_model::image::ImageState;
use scoria_model::{ImageId, VolumeId};
use scoria_store::Conn;
use scoria_store::images::{self, ImageUser};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Env;
use crate::error::Error;

pub struct ImageMerge;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    /// The volume whose chain holds the layer.
    pub volume_id: VolumeId,
    /// The layer to merge into the one above it.
    pub layer_id: ImageId,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Plan {
    backend: String,
    /// The layer above the merged one, and its driver name.
    child_id: ImageId,
    child_name: String,
    layer_name: String,
    /// What the layer above stands on afterwards.
    new_base: Option<ImageId>,
    /// The volume's active image (what its export serves). Empty in plans
    /// made before attached volumes were merged: those volumes were detached.
    #[serde(default)]
    top_name: String,
}

impl Flow for ImageMerge {
    const KIND: &'static str = "image_merge";
    type Params = Params;
    type Env = Env;

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::db("begin_merge", |cx, c| Box::pin(begin_merge(cx, c)))
                .undo_db(|cx, c| Box::pin(abort_merge(cx, c))),
            Step::external("merge_on_backend", |cx| Box::pin(merge_on_backend(cx)))
                .undo_external(|cx| Box::pin(unmerge_on_backend(cx))),
            Step::db("finish_merge", |cx, c| Box::pin(finish_merge(cx, c))),
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

fn refused(why: String) -> StepError {
    Error::InvalidState(why).into()
}

async fn begin_merge(cx: &Cx<ImageMerge>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    let v = crate::rules::volumes::hold_for_maintenance(c, cx.flow_id, p.volume_id, "merged", true)
        .await?;
    let Some(top) = v.image_id else {
        return Err(refused(format!("Volume {} has no data.", v.id)));
    };
    let chain = images::image_chain(c, top).await?;
    let Some(at) = chain
        .iter()
        .position(|i| i.id == p.layer_id)
        .filter(|&i| i > 0)
    else {
        return Err(refused(format!(
            "Image {} is not under the active image of volume {}.",
            p.layer_id, v.id
        )));
    };
    let (child, layer) = (&chain[at - 1], &chain[at]);
    let users = images::image_users(c, layer.id).await?;
    if users != [ImageUser::Overlay(child.id)] {
        let users: Vec<String> = users.iter().map(ToString::to_string).collect();
        return Err(refused(format!(
            "Image {} is used by {}: only a layer the next layer up alone reads is merged.",
            layer.id,
            users.join(", ")
        )));
    }
    if layer.state != ImageState::Ready || child.state != ImageState::Ready {
        return Err(refused(format!(
            "Images {} and {} must both be ready to be merged.",
            layer.id, child.id
        )));
    }
    serde_json::to_value(Plan {
        backend: layer.backend.clone(),
        child_id: child.id,
        child_name: child.name.clone(),
        layer_name: layer.name.clone(),
        new_base: layer.base_id,
        top_name: chain[0].name.clone(),
    })
    .map_err(|e| StepError::msg(e.to_string()))
}

async fn abort_merge(cx: &Cx<ImageMerge>, c: &mut Conn) -> Result<(), StepError> {
    crate::rules::volumes::release_maintenance(c, cx.params.volume_id).await?;
    Ok(())
}

async fn merge_on_backend(cx: &Cx<ImageMerge>) -> Result<Value, StepError> {
    let plan: Plan = cx.output("begin_merge")?;
    crate::exports::merge(
        &cx.env,
        cx.params.volume_id,
        &plan.backend,
        &plan.top_name,
        (&plan.child_name, &plan.layer_name),
        &|percent| cx.report_percent(percent),
    )
    .await?;
    crate::capacity::refresh(&cx.env, &plan.backend).await;
    Ok(Value::Null)
}

async fn unmerge_on_backend(cx: &Cx<ImageMerge>) -> Result<(), StepError> {
    let Some(plan) = cx.output_opt::<Plan>("begin_merge") else {
        return Ok(());
    };
    crate::exports::unmerge(
        &cx.env,
        cx.params.volume_id,
        &plan.backend,
        &plan.top_name,
        (&plan.child_name, &plan.layer_name),
    )
    .await
}

async fn finish_merge(cx: &Cx<ImageMerge>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    let plan: Plan = cx.output("begin_merge")?;
    // Nothing else changed the chain while the volume was held; a resumed
    // run may find this done already.
    images::image_set_base(c, plan.child_id, p.layer_id, plan.new_base).await?;
    crate::rules::volumes::release_maintenance(c, p.volume_id).await?;
    // Every image over the merged layer now has a shorter chain.
    let backend = cx.env.backend(&plan.backend)?;
    let mut above = vec![plan.child_id];
    let mut seen = 0;
    while let Some(&image) = above.get(seen) {
        seen += 1;
        crate::rules::images::mark_health(c, image, &backend.config).await?;
        above.extend(images::image_overlays(c, image).await?.iter().map(|o| o.id));
    }
    Ok(Value::Null)
}

#[cfg(all(test, feature = "failpoints"))]
mod tests;
