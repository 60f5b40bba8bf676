//! Attachments as the caller may see them, the volume status their rows
//! imply, and the hold an attachment puts on its volume.
//!
//! A volume's `status` and `attach_status` follow its attachment rows
//! ([`settle`]): `in-use`/`attached` while one is `attached`, `reserved`
//! while one is reserved or attaching, `available`/`detached` when none is
//! left. Two legacy statuses set by Nova's old calls without a row are kept
//! while they still make sense: `attaching` (`os-reserve`) until an
//! attachment completes, `detaching` (`os-begin_detaching`) while one is
//! still attached.

use scoria_model::attachment::AttachmentStatus;
use scoria_model::volume::{AttachStatus, VolumeStatus};
use scoria_model::{AttachmentId, VolumeId};
use scoria_store::Conn;
use scoria_store::attachments::{self as store, Attachment};
use scoria_store::volumes;

use crate::context::Context;
use crate::error::{Error, Result};

/// Cinder's wording for an attachment nobody may see.
pub fn not_found(id: impl std::fmt::Display) -> Error {
    Error::NotFound(format!(
        "Volume attachment could not be found with filter: attachment_id = {id}."
    ))
}

/// Parse an attachment id from a URL segment (anything else names none).
pub fn parse_id(s: &str) -> Result<AttachmentId> {
    s.parse::<AttachmentId>().map_err(|_| not_found(s))
}

/// Load an attachment the caller may see: their project's, or any for an
/// admin.
pub(crate) async fn visible(c: &mut Conn, ctx: &Context, id: AttachmentId) -> Result<Attachment> {
    match store::attachment_get(c, id).await? {
        Some(a)
            if ctx.is_admin() || ctx.project_id.as_ref().is_some_and(|p| p.0 == a.project_id) =>
        {
            Ok(a)
        }
        _ => Err(not_found(id)),
    }
}

/// Set the volume's `status` and `attach_status` from its attachment rows
/// (see the module doc). A volume in a status no attachment explains
/// (`error`, `maintenance`, …) is left alone.
pub(crate) async fn settle(c: &mut Conn, volume: VolumeId) -> Result<()> {
    let Some(v) = volumes::volume_get(c, volume).await? else {
        return Ok(());
    };
    if !matches!(
        v.status,
        VolumeStatus::Available
            | VolumeStatus::Reserved
            | VolumeStatus::Attaching
            | VolumeStatus::InUse
            | VolumeStatus::Detaching
    ) {
        return Ok(());
    }
    let atts = store::attachment_list_for_volume(c, volume).await?;
    let attached = atts.iter().any(|a| a.status == AttachmentStatus::Attached);
    let pending = atts.iter().any(|a| {
        matches!(
            a.status,
            AttachmentStatus::Reserved | AttachmentStatus::Attaching
        )
    });
    let (status, attach) = if attached {
        let s = if v.status == VolumeStatus::Detaching {
            VolumeStatus::Detaching
        } else {
            VolumeStatus::InUse
        };
        (s, AttachStatus::Attached)
    } else if pending {
        let s = if v.status == VolumeStatus::Attaching {
            VolumeStatus::Attaching
        } else {
            VolumeStatus::Reserved
        };
        (s, AttachStatus::Attaching)
    } else if atts.is_empty() && v.status == VolumeStatus::Attaching {
        // `os-reserve` without a row yet: Nova's next call makes one.
        (VolumeStatus::Attaching, AttachStatus::Detached)
    } else {
        (VolumeStatus::Available, AttachStatus::Detached)
    };
    if status != v.status || attach != v.attach_status {
        volumes::volume_reset_state(c, volume, Some(status), Some(attach), None).await?;
    }
    Ok(())
}

/// Refuse to change volume `id` (`what`: "deleted", "retyped", …) while any
/// attachment uses it, naming the attachment and its instance.
pub(crate) async fn assert_not_attached(c: &mut Conn, id: VolumeId, what: &str) -> Result<()> {
    let atts = store::attachment_list_for_volume(c, id).await?;
    if let Some(a) = atts.first() {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {id} is in use by attachment {} (instance {}, {}); it cannot be {what} until it is detached.",
            a.id,
            a.instance_uuid.as_deref().unwrap_or("none"),
            a.status
        )));
    }
    Ok(())
}
