//! Attachments (Cinder's attachments API, 3.27+) and the legacy volume
//! actions Nova and older clients use for the same thing.
//!
//! An attachment is one use of a volume by an instance, and once it has a
//! connector, the intent that the volume is served to it (see
//! [`crate::exports`]). Attach and detach are flows
//! (`flows::attachment_attach`, `flows::attachment_detach`); completing an
//! attachment, and the legacy status holds (`os-begin_detaching`,
//! `os-roll_detaching`), are one transaction each.
//!
//! The legacy calls map onto attachments: `os-initialize_connection` makes
//! an attachment for the connector's host (or reuses the one it made
//! before) and answers its connection info; `os-attach` completes it;
//! `os-terminate_connection` and `os-detach` detach it; `os-force_detach`
//! (admins) detaches whatever it finds.

use scoria_flows::Outcome;
use scoria_model::attachment::{AttachMode, AttachmentStatus};
use scoria_model::volume::VolumeStatus;
use scoria_model::{AttachmentId, VolumeId};
use scoria_store::attachments::{self as store, Attachment, AttachmentQuery};
use scoria_store::volumes;
use serde_json::Value;

use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result, from_outcome};
use crate::exports::ConnectionInfo;
use crate::flows::{attachment_attach as attach, attachment_detach as detach};
use crate::rules::attachments::{not_found, settle, visible};

pub use crate::rules::attachments::parse_id;

/// An attachment with what a client needs to reach its export (when it has
/// one).
#[derive(Clone, Debug)]
pub struct AttachmentView {
    pub attachment: Attachment,
    pub connection_info: Option<ConnectionInfo>,
}

/// Filters of a list (`GET /attachments`).
#[derive(Clone, Debug, Default)]
pub struct ListRequest {
    /// Admins only: every project's.
    pub all_projects: bool,
    pub volume_id: Option<VolumeId>,
    pub instance_id: Option<String>,
    pub status: Option<AttachmentStatus>,
    pub limit: Option<i64>,
    pub marker: Option<AttachmentId>,
}

/// The caller's project, or `None` for an admin (who acts on any).
fn scope(ctx: &Context) -> Result<Option<String>> {
    if ctx.is_admin() {
        Ok(None)
    } else {
        Ok(Some(ctx.project()?.0.clone()))
    }
}

async fn view(app: &App, a: Attachment) -> Result<AttachmentView> {
    let backend = if a.export.is_some() {
        let mut c = app.store().read().await?;
        match volumes::volume_get(&mut c, a.volume_id)
            .await?
            .and_then(|v| v.image_id)
        {
            Some(i) => scoria_store::images::image_get(&mut c, i)
                .await?
                .map(|i| i.backend),
            None => None,
        }
    } else {
        None
    };
    let connection_info = if AttachmentStatus::EXPORTED.contains(&a.status) {
        crate::exports::connection_info(&app.env, &a, backend.as_deref())
    } else {
        None
    };
    Ok(AttachmentView {
        attachment: a,
        connection_info,
    })
}

async fn load(app: &App, ctx: &Context, id: AttachmentId) -> Result<Attachment> {
    let mut c = app.store().read().await?;
    visible(&mut c, ctx, id).await
}

/// Check a connector: an object (its `mode`, if any, `rw` or `ro`).
fn check_connector(connector: &Value) -> Result<()> {
    let Some(o) = connector.as_object() else {
        return Err(Error::Invalid(
            "Invalid input received: connector must be an object.".into(),
        ));
    };
    if let Some(m) = o.get("mode")
        && !matches!(m.as_str(), Some("rw" | "ro"))
    {
        return Err(Error::Invalid(format!(
            "Invalid input received: Invalid attach mode {m} in the connector: it must be rw or ro."
        )));
    }
    if let Some(h) = o.get("host")
        && !h.is_string()
    {
        return Err(Error::Invalid(
            "Invalid input received: connector host must be a string.".into(),
        ));
    }
    Ok(())
}

async fn run_attach(app: &App, params: attach::Params) -> Result<()> {
    let h = app.engine.start::<attach::AttachmentAttach>(params)?;
    match h.wait().await {
        Outcome::Done => Ok(()),
        other => Err(from_outcome(other)),
    }
}

async fn run_detach(app: &App, params: detach::Params) -> Result<()> {
    let h = app.engine.start::<detach::AttachmentDetach>(params)?;
    match h.wait().await {
        Outcome::Done => Ok(()),
        other => Err(from_outcome(other)),
    }
}

/// `POST /attachments`: reserve `volume` for `instance`, and with a
/// connector serve it too.
pub async fn create(
    app: &App,
    ctx: &Context,
    volume_id: VolumeId,
    instance_uuid: Option<String>,
    connector: Option<Value>,
    mode: Option<AttachMode>,
) -> Result<AttachmentView> {
    // Cinder's precedence: the volume is looked up first (a missing or
    // foreign one is a 404 whoever asks), then the policy.
    {
        let mut c = app.store().read().await?;
        crate::rules::volumes::visible(&mut c, ctx, volume_id).await?;
    }
    ctx.authorize(Op::AttachmentCreate)?;
    if let Some(c) = &connector {
        check_connector(c)?;
    }
    let id = AttachmentId::new();
    run_attach(
        app,
        attach::Params {
            attachment_id: id,
            volume_id,
            project_id: scope(ctx)?,
            instance_uuid,
            connector,
            mode,
            create: true,
        },
    )
    .await?;
    view(app, load(app, ctx, id).await?).await
}

/// `PUT /attachments/{id}` with a connector: serve the volume to it.
pub async fn update(
    app: &App,
    ctx: &Context,
    id: AttachmentId,
    connector: Value,
) -> Result<AttachmentView> {
    let a = load(app, ctx, id).await?;
    ctx.authorize(Op::AttachmentUpdate)?;
    check_connector(&connector)?;
    run_attach(
        app,
        attach::Params {
            attachment_id: id,
            volume_id: a.volume_id,
            project_id: scope(ctx)?,
            instance_uuid: None,
            connector: Some(connector),
            mode: None,
            create: false,
        },
    )
    .await?;
    view(app, load(app, ctx, id).await?).await
}

/// `os-complete`: the consumer has connected; the attachment is `attached`
/// and the volume `in-use`.
pub async fn complete(app: &App, ctx: &Context, id: AttachmentId) -> Result<()> {
    let mut tx = app.store().begin().await?;
    let a = visible(&mut tx, ctx, id).await?;
    ctx.authorize(Op::AttachmentComplete)?;
    if !store::attachment_set_status(
        &mut tx,
        id,
        &[AttachmentStatus::Attaching, AttachmentStatus::Attached],
        AttachmentStatus::Attached,
    )
    .await?
    {
        return Err(Error::InvalidState(format!(
            "Invalid volume attachment: attachment {id} is {}; it must have a connector (be attaching) to be completed.",
            a.status
        )));
    }
    settle(&mut tx, a.volume_id).await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// `DELETE /attachments/{id}`: stop serving it and remove it. Answers the
/// volume's remaining attachments.
pub async fn delete(app: &App, ctx: &Context, id: AttachmentId) -> Result<Vec<AttachmentView>> {
    let a = load(app, ctx, id).await?;
    ctx.authorize(Op::AttachmentDelete)?;
    run_detach(
        app,
        detach::Params {
            attachment_id: id,
            volume_id: a.volume_id,
            project_id: scope(ctx)?,
            force: false,
        },
    )
    .await?;
    let rest = {
        let mut c = app.store().read().await?;
        store::attachment_list_for_volume(&mut c, a.volume_id).await?
    };
    let mut out = Vec::new();
    for a in rest {
        out.push(view(app, a).await?);
    }
    Ok(out)
}

/// `GET /attachments/{id}`.
pub async fn get(app: &App, ctx: &Context, id: AttachmentId) -> Result<AttachmentView> {
    ctx.authorize(Op::AttachmentGet)?;
    view(app, load(app, ctx, id).await?).await
}

/// `GET /attachments` and `/attachments/detail`.
pub async fn list(app: &App, ctx: &Context, req: ListRequest) -> Result<Vec<AttachmentView>> {
    ctx.authorize(Op::AttachmentGet)?;
    let project_id = if req.all_projects && ctx.is_admin() {
        None
    } else {
        Some(ctx.project()?.0.clone())
    };
    let q = AttachmentQuery {
        project_id,
        volume_id: req.volume_id,
        instance_uuid: req.instance_id,
        status: req.status,
        limit: req.limit,
        marker: req.marker,
    };
    let rows = {
        let mut c = app.store().read().await?;
        store::attachment_list(&mut c, &q).await?
    };
    let mut out = Vec::new();
    for a in rows {
        out.push(view(app, a).await?);
    }
    Ok(out)
}

/// The attachments of these volumes (for volume views), by volume.
pub async fn of_volumes(
    app: &App,
    ids: &[VolumeId],
) -> Result<std::collections::BTreeMap<VolumeId, Vec<Attachment>>> {
    let mut c = app.store().read().await?;
    let mut out = std::collections::BTreeMap::new();
    for id in ids {
        let atts = store::attachment_list_for_volume(&mut c, *id).await?;
        if !atts.is_empty() {
            out.insert(*id, atts);
        }
    }
    Ok(out)
}

// ---- the legacy volume actions ----

/// The attachment `os-initialize_connection` made for this connector's host,
/// not yet attached.
fn for_connector<'a>(atts: &'a [Attachment], connector: &Value) -> Option<&'a Attachment> {
    let host = connector.get("host").and_then(Value::as_str);
    atts.iter()
        .filter(|a| a.host_name.as_deref() == host || host.is_none())
        .max_by(|a, b| a.created_at.cmp(&b.created_at))
}

/// `os-initialize_connection` `{"connector": {...}}`: serve the volume to
/// this connector and answer how to reach it.
pub async fn initialize_connection(
    app: &App,
    ctx: &Context,
    volume_id: VolumeId,
    connector: Value,
) -> Result<ConnectionInfo> {
    ctx.authorize(Op::VolumeInitializeConnection)?;
    check_connector(&connector)?;
    let existing = {
        let mut c = app.store().read().await?;
        crate::rules::volumes::visible(&mut c, ctx, volume_id).await?;
        let atts = store::attachment_list_for_volume(&mut c, volume_id).await?;
        for_connector(&atts, &connector)
            .filter(|a| {
                matches!(
                    a.status,
                    AttachmentStatus::Reserved | AttachmentStatus::Attaching
                ) || (a.status == AttachmentStatus::Attached && a.export.is_some())
            })
            .cloned()
    };
    let id = match existing {
        Some(a) if a.status == AttachmentStatus::Attached => a.id,
        Some(a) => {
            update(app, ctx, a.id, connector).await?;
            a.id
        }
        None => {
            create(app, ctx, volume_id, None, Some(connector), None)
                .await?
                .attachment
                .id
        }
    };
    view(app, load(app, ctx, id).await?)
        .await?
        .connection_info
        .ok_or_else(|| Error::Internal {
            message: "the export has no connection info".into(),
            source: None,
        })
}

/// `os-attach` `{"instance_uuid", "host_name", "mountpoint", "mode"}`:
/// complete the attachment `os-initialize_connection` made (or the only one
/// pending).
pub async fn legacy_attach(
    app: &App,
    ctx: &Context,
    volume_id: VolumeId,
    instance_uuid: Option<String>,
    host_name: Option<String>,
    mountpoint: Option<String>,
) -> Result<()> {
    ctx.authorize(Op::VolumeAttach)?;
    let mut tx = app.store().begin().await?;
    crate::rules::volumes::visible(&mut tx, ctx, volume_id).await?;
    let atts = store::attachment_list_for_volume(&mut tx, volume_id).await?;
    let pending = atts
        .iter()
        .filter(|a| a.status == AttachmentStatus::Attaching)
        .find(|a| host_name.is_none() || a.host_name == host_name)
        .or_else(|| {
            atts.iter()
                .find(|a| a.status == AttachmentStatus::Attaching)
        })
        .cloned();
    let Some(a) = pending else {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {volume_id} has no connection initialized to attach (call os-initialize_connection first)."
        )));
    };
    store::attachment_set_instance(
        &mut tx,
        a.id,
        instance_uuid.as_deref(),
        host_name.as_deref(),
        mountpoint.as_deref(),
    )
    .await?;
    store::attachment_set_status(
        &mut tx,
        a.id,
        &[AttachmentStatus::Attaching],
        AttachmentStatus::Attached,
    )
    .await?;
    // The legacy `attaching` of os-reserve has done its work.
    volumes::volume_set_status(
        &mut tx,
        volume_id,
        &[VolumeStatus::Attaching, VolumeStatus::Reserved],
        VolumeStatus::InUse,
    )
    .await?;
    settle(&mut tx, volume_id).await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// `os-begin_detaching`: `in-use` → `detaching` (Nova, before it detaches).
pub async fn begin_detaching(app: &App, ctx: &Context, id: VolumeId) -> Result<()> {
    ctx.authorize(Op::VolumeDetach)?;
    let mut tx = app.store().begin().await?;
    let v = crate::rules::volumes::visible(&mut tx, ctx, id).await?;
    if !volumes::volume_set_status(&mut tx, id, &[VolumeStatus::InUse], VolumeStatus::Detaching)
        .await?
    {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Unable to detach volume. Volume status must be 'in-use' and attach_status must be 'attached' to detach (volume {id} is {}).",
            v.status
        )));
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// `os-roll_detaching`: `detaching` → `in-use` (Nova's detach failed).
pub async fn roll_detaching(app: &App, ctx: &Context, id: VolumeId) -> Result<()> {
    ctx.authorize(Op::VolumeDetach)?;
    let mut tx = app.store().begin().await?;
    crate::rules::volumes::visible(&mut tx, ctx, id).await?;
    // Cinder: a no-op unless the volume is detaching.
    if volumes::volume_set_status(&mut tx, id, &[VolumeStatus::Detaching], VolumeStatus::InUse)
        .await?
    {
        settle(&mut tx, id).await?;
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// `os-terminate_connection` `{"connector"}`: stop serving the volume to
/// that connector's host (its attachment goes).
pub async fn terminate_connection(
    app: &App,
    ctx: &Context,
    volume_id: VolumeId,
    connector: Value,
) -> Result<()> {
    ctx.authorize(Op::VolumeTerminateConnection)?;
    check_connector(&connector)?;
    let target = {
        let mut c = app.store().read().await?;
        crate::rules::volumes::visible(&mut c, ctx, volume_id).await?;
        let atts = store::attachment_list_for_volume(&mut c, volume_id).await?;
        for_connector(&atts, &connector).map(|a| a.id)
    };
    if let Some(id) = target {
        run_detach(
            app,
            detach::Params {
                attachment_id: id,
                volume_id,
                project_id: scope(ctx)?,
                force: false,
            },
        )
        .await?;
    }
    Ok(())
}

/// `os-detach` `{"attachment_id"}`: detach that attachment (or the only
/// one). A volume whose connection was terminated already is detached.
pub async fn legacy_detach(
    app: &App,
    ctx: &Context,
    volume_id: VolumeId,
    attachment_id: Option<AttachmentId>,
) -> Result<()> {
    ctx.authorize(Op::VolumeDetach)?;
    detach_any(app, ctx, volume_id, attachment_id, false).await
}

/// `os-force_detach` (admins): detach whatever the volume has, from any
/// status; the exports go and the records agree.
pub async fn force_detach(
    app: &App,
    ctx: &Context,
    volume_id: VolumeId,
    attachment_id: Option<AttachmentId>,
) -> Result<()> {
    ctx.authorize(Op::VolumeForceDetach)?;
    detach_any(app, ctx, volume_id, attachment_id, true).await
}

/// Detach every attachment of `volume_id` (or the one named), `force`d for
/// an admin: the exports go, the rows go, the volume settles. Also what an
/// admin's forced delete of an attached volume does first.
pub(crate) async fn detach_any(
    app: &App,
    ctx: &Context,
    volume_id: VolumeId,
    attachment_id: Option<AttachmentId>,
    force: bool,
) -> Result<()> {
    let atts = {
        let mut c = app.store().read().await?;
        crate::rules::volumes::visible(&mut c, ctx, volume_id).await?;
        store::attachment_list_for_volume(&mut c, volume_id).await?
    };
    let targets: Vec<AttachmentId> = match attachment_id {
        Some(id) => match atts.iter().find(|a| a.id == id) {
            Some(a) => vec![a.id],
            None => return Err(not_found(id)),
        },
        None if force || atts.len() <= 1 => atts.iter().map(|a| a.id).collect(),
        None => {
            return Err(Error::Invalid(format!(
                "Invalid input received: volume {volume_id} has {} attachments: name the one to detach (attachment_id).",
                atts.len()
            )));
        }
    };
    for id in targets {
        run_detach(
            app,
            detach::Params {
                attachment_id: id,
                volume_id,
                project_id: scope(ctx)?,
                force,
            },
        )
        .await?;
    }
    // The legacy `detaching` of os-begin_detaching ends here.
    let mut tx = app.store().begin().await?;
    settle(&mut tx, volume_id).await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}
