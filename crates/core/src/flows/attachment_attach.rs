//! Attach: reserve a volume for an instance and, given a connector, serve it.
//!
//! ```text
//!  reserve ─────────────────► plan_export ─────────────► export
//!   (create) checks the        given a connector:         the storage host
//!   volume's status and        records it, picks the      serves the volume
//!   type's multiattach,        export's address, export   (Exporter::ensure;
//!   writes the attachment      name and key; attachment   idempotent: the same
//!   `reserved`, the volume     `attaching`                row gives the same
//!   `reserved`                 undo: back to `reserved`,  daemon)
//!   undo: removes the row,     connector and plan         undo: removes the
//!   the volume settles         forgotten                  export
//! ```
//!
//! Used by `POST /attachments` (with or without a connector), `PUT
//! /attachments/{id}` (`create: false`: the row exists, only the last two
//! steps act) and the legacy `os-initialize_connection`. The caller waits
//! for the whole flow: its answer is the connection info, which is good only
//! once the export serves. `os-complete` (or `os-attach`) later makes the
//! attachment `attached` and the volume `in-use`, one transaction, no flow.

use scoria_flows::{Cx, Flow, FlowMeta, Step, StepError};
use scoria_model::attachment::{AttachMode, AttachmentStatus};
use scoria_model::volume::VolumeStatus;
use scoria_model::{AttachmentId, VolumeId};
use scoria_store::attachments::{self as store, NewAttachment};
use scoria_store::{Conn, volume_types, volumes};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Env;
use crate::error::Error;
use crate::rules::attachments::{not_found, settle};

pub struct AttachmentAttach;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub attachment_id: AttachmentId,
    pub volume_id: VolumeId,
    /// The caller's project; `None` for an admin acting on any project.
    pub project_id: Option<String>,
    pub instance_uuid: Option<String>,
    /// The connector, as the client gave it (an object).
    pub connector: Option<Value>,
    /// The mode asked for (3.54's `mode`), if any.
    pub mode: Option<AttachMode>,
    /// Make the attachment (`POST`); else it exists (`PUT`).
    pub create: bool,
}

impl Flow for AttachmentAttach {
    const KIND: &'static str = "attachment_attach";
    type Params = Params;
    type Env = Env;

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::db("reserve", |cx, c| Box::pin(reserve(cx, c)))
                .undo_db(|cx, c| Box::pin(unreserve(cx, c))),
            Step::db("plan_export", |cx, c| Box::pin(plan_export(cx, c)))
                .undo_db(|cx, c| Box::pin(unplan_export(cx, c))),
            Step::external("export", |cx| Box::pin(export(cx)))
                .undo_external(|cx| Box::pin(unexport(cx))),
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

/// Whether the volume's type allows several attachments at once.
async fn type_allows_multiattach(c: &mut Conn, v: &volumes::Volume) -> Result<bool, StepError> {
    Ok(volume_types::volume_type_get(c, v.volume_type_id)
        .await?
        .is_some_and(|t| crate::rules::types::is_true_spec(t.extra_specs.get("multiattach"))))
}

async fn reserve(cx: &Cx<AttachmentAttach>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    let v = match volumes::volume_get(c, p.volume_id).await? {
        Some(v)
            if p.project_id
                .as_ref()
                .is_none_or(|proj| *proj == v.project_id) =>
        {
            v
        }
        _ => return Err(Error::volume_not_found(p.volume_id).into()),
    };
    if !p.create {
        let a = store::attachment_get(c, p.attachment_id).await?;
        match a {
            Some(a) if a.volume_id == v.id => {
                if !matches!(
                    a.status,
                    AttachmentStatus::Reserved | AttachmentStatus::Attaching
                ) {
                    return Err(Error::InvalidState(format!(
                        "Invalid volume attachment: attachment {} is {}; only a reserved or attaching attachment takes a connector.",
                        a.id, a.status
                    ))
                    .into());
                }
                return Ok(json!({"created": false}));
            }
            _ => return Err(not_found(p.attachment_id).into()),
        }
    }
    crate::rules::volumes::assert_not_migrating_for(
        &v,
        &format!(
            "Volume {} is migrating; it cannot be attached until the migration ends.",
            v.id
        ),
    )?;
    if v.image_id.is_none() {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {} has no data yet (it is {}).",
            v.id, v.status
        ))
        .into());
    }
    let multi = type_allows_multiattach(c, &v).await?;
    let others = store::attachment_list_for_volume(c, v.id).await?;
    let from: &[VolumeStatus] = if multi {
        &[
            VolumeStatus::Available,
            VolumeStatus::InUse,
            VolumeStatus::Reserved,
        ]
    } else {
        // `attaching`: reserved by the legacy `os-reserve`, which Nova follows
        // with `os-initialize_connection`.
        &[VolumeStatus::Available, VolumeStatus::Attaching]
    };
    if !from.contains(&v.status) || (!multi && !others.is_empty()) {
        let why = match others.first() {
            Some(a) if !multi => format!(
                " It is attached already (attachment {}, instance {}) and its type does not allow multiattach.",
                a.id,
                a.instance_uuid.as_deref().unwrap_or("none")
            ),
            _ => String::new(),
        };
        let allowed: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {} status must be {}, but it is {}.{why}",
            v.id,
            allowed.join(" or "),
            v.status
        ))
        .into());
    }
    crate::rules::volumes::assert_not_held_by_copies(c, v.id, "attached").await?;
    let mode = match (p.mode, v.read_only) {
        (Some(AttachMode::ReadWrite), Some(true)) => {
            return Err(Error::Invalid(format!(
                "Invalid attach mode 'rw' for volume {}: it is read-only.",
                v.id
            ))
            .into());
        }
        (Some(m), _) => m,
        (None, _) => AttachMode::Unset,
    };
    store::attachment_create(
        c,
        &NewAttachment {
            id: p.attachment_id,
            volume_id: v.id,
            project_id: v.project_id.clone(),
            instance_uuid: p.instance_uuid.clone(),
            status: AttachmentStatus::Reserved,
            attach_mode: mode,
        },
    )
    .await?;
    if v.status != VolumeStatus::Attaching {
        volumes::volume_set_status(c, v.id, &[v.status], VolumeStatus::Reserved).await?;
    }
    settle(c, v.id).await?;
    Ok(json!({"created": true}))
}

async fn unreserve(cx: &Cx<AttachmentAttach>, c: &mut Conn) -> Result<(), StepError> {
    let created = cx
        .output_opt::<Value>("reserve")
        .is_some_and(|o| o["created"] == json!(true));
    if created && store::attachment_delete(c, cx.params.attachment_id).await? {
        settle(c, cx.params.volume_id).await?;
    }
    Ok(())
}

/// The mode of an attachment given its request, the connector and the
/// volume's read-only flag.
fn mode_of(asked: AttachMode, connector: &Value, read_only: bool) -> Result<AttachMode, Error> {
    if asked != AttachMode::Unset {
        return Ok(asked);
    }
    match connector.get("mode").and_then(Value::as_str) {
        Some("ro") => Ok(AttachMode::ReadOnly),
        Some("rw") if read_only => Err(Error::Invalid(
            "Invalid attach mode 'rw': the volume is read-only.".into(),
        )),
        Some("rw") => Ok(AttachMode::ReadWrite),
        None if read_only => Ok(AttachMode::ReadOnly),
        None => Ok(AttachMode::ReadWrite),
        Some(other) => Err(Error::Invalid(format!(
            "Invalid attach mode {other:?}: it must be rw or ro."
        ))),
    }
}

async fn plan_export(cx: &Cx<AttachmentAttach>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    let Some(connector) = &p.connector else {
        return Ok(Value::Null);
    };
    let a = store::attachment_get(c, p.attachment_id)
        .await?
        .ok_or_else(|| not_found(p.attachment_id))?;
    let v = volumes::volume_get(c, a.volume_id)
        .await?
        .ok_or_else(|| Error::volume_not_found(a.volume_id))?;
    let mode = mode_of(a.attach_mode, connector, v.read_only == Some(true))?;
    // One export per volume for now: two daemons cannot open one image (its
    // lock, and qcow2's metadata, have one writer), and one daemon serving
    // two exports would let either key open both (see docs/attachments.md).
    if a.export.is_none()
        && let Some(other) = store::attachment_list_for_volume(c, a.volume_id)
            .await?
            .into_iter()
            .find(|o| {
                o.id != a.id && o.export.is_some() && AttachmentStatus::EXPORTED.contains(&o.status)
            })
    {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {} is served to attachment {} (instance {}) already; Scoria serves one connection per volume at a time (multiattach records are kept, a second data path is not built yet).",
            a.volume_id,
            other.id,
            other.instance_uuid.as_deref().unwrap_or("none")
        ))
        .into());
    }
    // A new connector for an attachment that has an export keeps it: the
    // same address and key.
    let plan = match &a.export {
        Some(plan) => plan.clone(),
        None => crate::exports::plan(&cx.env, c, a.id).await?,
    };
    let host = connector.get("host").and_then(Value::as_str);
    let text = connector.to_string();
    store::attachment_set_connection(
        c,
        a.id,
        Some(&text),
        host,
        mode,
        Some(&plan),
        AttachmentStatus::Attaching,
    )
    .await?;
    settle(c, a.volume_id).await?;
    Ok(json!({
        "prior_status": a.status,
        "prior_mode": a.attach_mode,
        "prior_connector": a.connector,
        "prior_host": a.host_name,
        "had_export": a.export.is_some(),
    }))
}

async fn unplan_export(cx: &Cx<AttachmentAttach>, c: &mut Conn) -> Result<(), StepError> {
    let Some(prior) = cx.output_opt::<Value>("plan_export") else {
        return Ok(());
    };
    if prior.is_null() {
        return Ok(());
    }
    let Some(a) = store::attachment_get(c, cx.params.attachment_id).await? else {
        return Ok(());
    };
    if prior["had_export"] == json!(true) {
        // The attachment was served before this flow: it stays so.
        return Ok(());
    }
    let status = prior["prior_status"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(AttachmentStatus::Reserved);
    let mode = prior["prior_mode"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(AttachMode::Unset);
    store::attachment_set_connection(
        c,
        a.id,
        prior["prior_connector"].as_str(),
        prior["prior_host"].as_str(),
        mode,
        None,
        status,
    )
    .await?;
    settle(c, a.volume_id).await?;
    Ok(())
}

async fn export(cx: &Cx<AttachmentAttach>) -> Result<Value, StepError> {
    if cx.params.connector.is_none() {
        return Ok(Value::Null);
    }
    crate::exports::ensure(&cx.env, cx.params.attachment_id).await?;
    Ok(json!(true))
}

async fn unexport(cx: &Cx<AttachmentAttach>) -> Result<(), StepError> {
    let had = cx
        .output_opt::<Value>("plan_export")
        .is_some_and(|o| o["had_export"] == json!(true));
    if cx.params.connector.is_some() && !had {
        crate::exports::remove(&cx.env, cx.params.attachment_id).await?;
    }
    Ok(())
}

#[cfg(all(test, feature = "failpoints"))]
pub(crate) mod tests;
