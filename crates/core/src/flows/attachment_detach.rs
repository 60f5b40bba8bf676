//! Detach: stop serving an attachment and remove it.
//!
//! ```text
//!  begin_detach ─────────────► unexport ───────────────► remove_attachment
//!   the attachment goes         the storage host stops    the row goes; the
//!   `detaching` (its export     serving it (Exporter::    volume settles
//!   is no longer wanted)        remove; gone = success)   (`available` when it
//!   undo: its prior status      undo: serves it again     was the last one)
//!   back                        when it was served
//! ```
//!
//! Used by `DELETE /attachments/{id}`, the legacy `os-terminate_connection`
//! and `os-detach`, and an admin's `os-force_detach` (`force`: from any
//! status but `detaching`).

use scoria_flows::{Cx, Flow, FlowMeta, Step, StepError};
use scoria_model::attachment::AttachmentStatus;
use scoria_model::{AttachmentId, VolumeId};
use scoria_store::Conn;
use scoria_store::attachments as store;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Env;
use crate::error::Error;
use crate::rules::attachments::{not_found, settle};

pub struct AttachmentDetach;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub attachment_id: AttachmentId,
    /// The attachment's volume (the flow's resource).
    pub volume_id: VolumeId,
    /// The caller's project; `None` for an admin acting on any project.
    pub project_id: Option<String>,
    /// An admin's forced detach: from any status but `detaching`.
    #[serde(default)]
    pub force: bool,
}

impl Flow for AttachmentDetach {
    const KIND: &'static str = "attachment_detach";
    type Params = Params;
    type Env = Env;

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::db("begin_detach", |cx, c| Box::pin(begin_detach(cx, c)))
                .undo_db(|cx, c| Box::pin(abort_detach(cx, c))),
            Step::external("unexport", |cx| Box::pin(unexport(cx)))
                .undo_external(|cx| Box::pin(reexport(cx))),
            Step::db("remove_attachment", |cx, c| {
                Box::pin(remove_attachment(cx, c))
            }),
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

async fn begin_detach(cx: &Cx<AttachmentDetach>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    let a = match store::attachment_get(c, p.attachment_id).await? {
        Some(a)
            if a.volume_id == p.volume_id
                && p.project_id
                    .as_ref()
                    .is_none_or(|proj| *proj == a.project_id) =>
        {
            a
        }
        _ => return Err(not_found(p.attachment_id).into()),
    };
    if a.status == AttachmentStatus::Detaching {
        return Err(Error::InvalidState(format!(
            "Invalid volume attachment: attachment {} is being detached already.",
            a.id
        ))
        .into());
    }
    // An in-use backup reads through this attachment's daemon, a merge of
    // the volume's chain works in it.
    if !p.force
        && let Some(v) = scoria_store::volumes::volume_get(c, a.volume_id).await?
    {
        use scoria_model::volume::VolumeStatus;
        let until = match v.status {
            VolumeStatus::BackingUp => Some("its backup ends"),
            VolumeStatus::Maintenance => Some("the maintenance of its chain ends"),
            _ => None,
        };
        if let Some(until) = until {
            return Err(Error::InvalidState(format!(
                "Invalid volume: Volume {} is {}: it cannot be detached until {until}.",
                v.id, v.status
            ))
            .into());
        }
    }
    store::attachment_set_status(c, a.id, &[a.status], AttachmentStatus::Detaching).await?;
    Ok(json!({
        "prior_status": a.status,
        "exported": a.export.is_some() && AttachmentStatus::EXPORTED.contains(&a.status),
    }))
}

async fn abort_detach(cx: &Cx<AttachmentDetach>, c: &mut Conn) -> Result<(), StepError> {
    let Some(begun) = cx.output_opt::<Value>("begin_detach") else {
        return Ok(());
    };
    let prior: AttachmentStatus = begun["prior_status"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(AttachmentStatus::Attached);
    store::attachment_set_status(
        c,
        cx.params.attachment_id,
        &[AttachmentStatus::Detaching],
        prior,
    )
    .await?;
    settle(c, cx.params.volume_id).await?;
    Ok(())
}

async fn unexport(cx: &Cx<AttachmentDetach>) -> Result<Value, StepError> {
    crate::exports::remove(&cx.env, cx.params.attachment_id).await?;
    Ok(json!(true))
}

async fn reexport(cx: &Cx<AttachmentDetach>) -> Result<(), StepError> {
    let exported = cx
        .output_opt::<Value>("begin_detach")
        .is_some_and(|b| b["exported"] == json!(true));
    if exported {
        // `ensure` reads the row, which is still `detaching` until the undo
        // of `begin_detach` runs next: serve it as the row describes it.
        crate::exports::ensure(&cx.env, cx.params.attachment_id).await?;
    }
    Ok(())
}

async fn remove_attachment(cx: &Cx<AttachmentDetach>, c: &mut Conn) -> Result<Value, StepError> {
    if !store::attachment_delete(c, cx.params.attachment_id).await? {
        return Err(Error::InvalidState(format!(
            "Attachment {} is no longer being detached.",
            cx.params.attachment_id
        ))
        .into());
    }
    settle(c, cx.params.volume_id).await?;
    Ok(json!(true))
}

#[cfg(all(test, feature = "failpoints"))]
mod tests;
