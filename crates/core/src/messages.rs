//! User messages (`/messages`, microversion 3.3): what a project should learn
//! about an asynchronous operation that failed after the API answered.
//!
//! A flow records one in the same transaction as the status change that
//! reports its failure (the undo that marks a volume `error`,
//! `error_deleting` or `error_extending`), so each failure yields exactly one
//! message, whatever crashes and retries happen around it. A message names
//! the request that started the operation, the resource, and Cinder's event id
//! `VOLUME_<resource type>_<action>_<detail>` with the matching user message
//! (`<action>:<detail>`), so clients that know Cinder's events recognise them.
//! Messages expire after [`MESSAGE_TTL_DAYS`] (Cinder's default): expired ones
//! are never shown and are deleted when the next message is written.
//!
//! A project sees its own messages; an administrator sees every project's.

use scoria_model::{MessageId, VolumeId};
use scoria_store::messages::{self as store, MessageQuery};
pub use scoria_store::messages::{Message, MessageField};
pub use scoria_store::volumes::SortDir;
use scoria_store::{Conn, StoreError};

use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result};

/// How long a message is kept (Cinder's `message_ttl`: 30 days).
pub const MESSAGE_TTL_DAYS: i64 = 30;

/// What was being done: Cinder's action ids and texts where Cinder has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Action(pub &'static str, pub &'static str);

/// Why it failed: Cinder's detail ids and texts where Cinder has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Detail(pub &'static str, pub &'static str);

pub const UNKNOWN_ACTION: Action = Action("000", "unknown action");
pub const SCHEDULE_ALLOCATE_VOLUME: Action = Action("001", "schedule allocate volume");
pub const COPY_VOLUME_TO_IMAGE: Action = Action("005", "copy volume to image");
pub const EXTEND_VOLUME: Action = Action("007", "extend volume");
pub const CREATE_VOLUME_FROM_BACKEND: Action = Action("008", "create volume from backend storage");
pub const SNAPSHOT_CREATE: Action = Action("018", "create snapshot");
pub const REVERT_VOLUME: Action = Action("029", "revert volume to snapshot");
/// Cinder has no action for a failed delete; Scoria's own ids are in the 900s,
/// clear of Cinder's sequential numbering.
pub const DELETE_VOLUME: Action = Action("900", "delete volume");

pub const UNKNOWN_ERROR: Detail = Detail("001", "An unknown error occurred.");
pub const NO_BACKEND_AVAILABLE: Detail =
    Detail("003", "Could not find any available weighted backend.");
pub const FAILED_TO_UPLOAD_VOLUME: Detail =
    Detail("004", "Failed to upload volume to image at image service.");
pub const DRIVER_FAILED_EXTEND: Detail = Detail("010", "Volume Driver failed to extend volume.");
pub const DRIVER_FAILED_CREATE: Detail = Detail("012", "Driver failed to create the volume.");
pub const SNAPSHOT_CREATE_ERROR: Detail = Detail("013", "Snapshot failed to create.");
pub const DRIVER_FAILED_DELETE: Detail =
    Detail("900", "Volume Driver failed to delete the volume.");
pub const DRIVER_FAILED_REVERT: Detail = Detail(
    "901",
    "Volume Driver failed to revert the volume to the snapshot.",
);

/// Record that an operation on a volume failed, inside the caller's
/// transaction. `request_id`: the request that started the operation.
pub(crate) async fn record_volume_failure(
    conn: &mut Conn,
    project_id: &str,
    volume: VolumeId,
    request_id: &str,
    action: Action,
    detail: Detail,
) -> Result<(), StoreError> {
    record_failure(
        conn,
        project_id,
        "VOLUME",
        &volume.to_string(),
        request_id,
        action,
        detail,
    )
    .await
}

/// [`record_volume_failure`] with a note appended to the user message (the
/// backends a create tried, say); `""` for none.
pub(crate) async fn record_volume_failure_noted(
    conn: &mut Conn,
    project_id: &str,
    volume: VolumeId,
    request_id: &str,
    action: Action,
    detail: Detail,
    note: &str,
) -> Result<(), StoreError> {
    record_failure_noted(
        conn,
        project_id,
        "VOLUME",
        &volume.to_string(),
        request_id,
        action,
        detail,
        note,
    )
    .await
}

/// Record that an operation on a snapshot failed, inside the caller's
/// transaction.
pub(crate) async fn record_snapshot_failure(
    conn: &mut Conn,
    project_id: &str,
    snapshot: scoria_model::SnapshotId,
    request_id: &str,
    action: Action,
    detail: Detail,
) -> Result<(), StoreError> {
    record_failure(
        conn,
        project_id,
        "SNAPSHOT",
        &snapshot.to_string(),
        request_id,
        action,
        detail,
    )
    .await
}

async fn record_failure(
    conn: &mut Conn,
    project_id: &str,
    resource_type: &str,
    resource: &str,
    request_id: &str,
    action: Action,
    detail: Detail,
) -> Result<(), StoreError> {
    record_failure_noted(
        conn,
        project_id,
        resource_type,
        resource,
        request_id,
        action,
        detail,
        "",
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn record_failure_noted(
    conn: &mut Conn,
    project_id: &str,
    resource_type: &str,
    resource: &str,
    request_id: &str,
    action: Action,
    detail: Detail,
    note: &str,
) -> Result<(), StoreError> {
    let now = chrono::Utc::now();
    let m = Message {
        id: MessageId::new(),
        project_id: project_id.to_owned(),
        request_id: request_id.to_owned(),
        resource_type: Some(resource_type.into()),
        resource_uuid: Some(resource.to_owned()),
        event_id: format!("VOLUME_{resource_type}_{}_{}", action.0, detail.0),
        message_level: "ERROR".into(),
        user_message: format!("{}:{}{note}", action.1, detail.1),
        created_at: scoria_store::format_time(now),
        expires_at: scoria_store::format_time(now + chrono::Duration::days(MESSAGE_TTL_DAYS)),
    };
    store::message_create(conn, &m).await
}

/// The request id recorded with a flow's failure message: the one its
/// parameters carry, or one derived from the flow (flows started before
/// parameters carried it).
pub(crate) fn request_id_or(request_id: &Option<String>, flow: scoria_model::FlowId) -> String {
    request_id.clone().unwrap_or_else(|| format!("req-{flow}"))
}

/// Filters, order and page of a list, as parsed from the API.
#[derive(Clone, Debug, Default)]
pub struct ListRequest {
    pub filters: Vec<(MessageField, String)>,
    pub sort: Vec<(MessageField, SortDir)>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    pub marker: Option<MessageId>,
}

fn not_found(id: impl std::fmt::Display) -> Error {
    Error::NotFound(format!("Message {id} could not be found."))
}

/// Parse a message id from a URL segment (anything else names no message).
pub fn parse_id(s: &str) -> Result<MessageId> {
    s.parse::<MessageId>().map_err(|_| not_found(s))
}

/// The project whose messages the caller sees (`None`: all, for admins).
fn scope(ctx: &Context) -> Result<Option<String>> {
    if ctx.is_admin() {
        Ok(None)
    } else {
        Ok(Some(ctx.project()?.0.clone()))
    }
}

/// A page of the messages the caller may see.
pub async fn list(app: &App, ctx: &Context, req: ListRequest) -> Result<Vec<Message>> {
    ctx.authorize(Op::MessageList)?;
    let q = MessageQuery {
        project_id: scope(ctx)?,
        filters: req.filters,
        sort: req.sort,
        limit: req.limit,
        offset: req.offset,
        marker: req.marker,
        now: scoria_store::now(),
    };
    let mut conn = app.store().read().await?;
    Ok(store::message_list(&mut conn, &q).await?)
}

async fn visible(conn: &mut Conn, ctx: &Context, id: MessageId) -> Result<Message> {
    let project = scope(ctx)?;
    match store::message_get(conn, id, &scoria_store::now()).await? {
        Some(m) if project.as_ref().is_none_or(|p| *p == m.project_id) => Ok(m),
        _ => Err(not_found(id)),
    }
}

/// One message (another project's is not found).
pub async fn get(app: &App, ctx: &Context, id: MessageId) -> Result<Message> {
    let mut conn = app.store().read().await?;
    let m = visible(&mut conn, ctx, id).await?;
    ctx.authorize(Op::MessageGet)?;
    Ok(m)
}

/// Delete a message.
pub async fn delete(app: &App, ctx: &Context, id: MessageId) -> Result<()> {
    let mut tx = app.store().begin().await?;
    visible(&mut tx, ctx, id).await?;
    ctx.authorize(Op::MessageDelete)?;
    store::message_delete(&mut tx, id).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(())
}
