//! The image service (a Glance v2 subset): images users create, upload,
//! share, download and delete. These are Glance's images, kept as files of
//! the image store (`scoria_storage::image_store`), not the images that
//! hold volumes' bytes (`scoria_store::images`); volumes made from them come
//! later, on top of this.
//!
//! ```text
//!   create ──► queued ──upload starts──► saving ──stream complete──► active ◄──┐
//!                ▲                         │                         │         │ reactivate
//!                └── the upload failed, ───┘              deactivate │         │
//!                    passed a limit, was cut                         ▼         │
//!                    off, or the process died                     deactivated ─┘
//!
//!   (deactivate and reactivate: the owner's members or an admin)
//!   delete (not protected, not saving): the row goes, then the file
//! ```
//!
//! # Visibility
//!
//! An image is seen by its owner and admins; `public` and `community` images
//! by every project (community ones only in lists that ask for them);
//! `shared` images by the projects that are members of them (in lists once
//! they accepted). Anyone else is told the image does not exist (404). Only
//! the owner (or an admin) changes, deactivates or reactivates an image; only
//! an admin makes one public or downloads a deactivated one; only a member
//! decides its own membership.
//!
//! # Why an upload is one request, not a flow
//!
//! An upload is the request's body streamed into the image store, and what
//! is durable is decided by two write transactions around the stream:
//! `queued → saving` (holding the quota it announced) before, `saving →
//! active` with size and checksums after the file was committed (synced and
//! renamed into place). There is nothing to resume: the bytes are the
//! client's, and a server that died in the middle cannot ask for them again.
//! So an interrupted upload is undone, not resumed — the image goes back to
//! `queued` (Glance's "restore"; Scoria never sets `killed`), and the client
//! uploads again:
//! - a failure in the stream (a limit passed, the client gone, a disk
//!   error) aborts the file (its temporary is removed) and puts the image
//!   back in one transaction;
//! - a request dropped mid-stream does the same from a guard;
//! - a process that died does it at the next start ([`recover`]): every
//!   `saving` image goes back to `queued`, temporaries go, and every file no
//!   `active` or `deactivated` image names is removed (the one a crash left
//!   between its rename and its `active`).
//!
//! So after any crash, rows and files agree: an image has its file exactly
//! while it is `active` or `deactivated`, of the recorded size and md5
//! (`invariants`).
//!
//! # Quota
//!
//! A project's images may take `image_size_total` bytes (Glance's unified
//! limit of that name). Usage is derived from the rows: the sizes of the
//! images with data plus what uploads in progress hold (`upload_reserved`).
//! An upload reserves what its `Content-Length` announces (or a first step),
//! and reserves more in steps as it streams past that, each time in a write
//! transaction that checks the sum against the limit; so concurrent uploads
//! cannot together pass it, and an upload is refused (413) as soon as its
//! bytes would. A create is refused when the project is already at or over
//! its limit.

use std::collections::{BTreeMap, BTreeSet};

use scoria_model::GlanceImageId;
use scoria_model::glance::{
    ContainerFormat, DiskFormat, GlanceImageStatus, MAX_NAME_LEN, MAX_PROPERTIES,
    MAX_PROPERTY_KEY_LEN, MAX_PROPERTY_VALUE_LEN, MAX_TAG_LEN, MAX_TAGS, Visibility,
};
use scoria_store::Conn;
use scoria_store::glance::{self as store, GlanceImageQuery};
pub use scoria_store::glance::{
    BaseColumn, GlanceImage, GlanceMember, SortDir, SortKey, VisibilityFilter,
};

use crate::context::{Context, Op};
use crate::error::{Error, Result};
use crate::{App, Env};

mod members;
mod upload;

pub use members::{member_add, member_delete, member_get, member_list, member_update};
pub use upload::{Download, UploadBody, download, upload};

/// The caller may do `op`, or is told so in Glance's words.
fn authorize(ctx: &Context, op: Op) -> Result<()> {
    ctx.authorize(op).map_err(|_| forbidden(op.name()))
}

fn forbidden(action: &str) -> Error {
    Error::Forbidden(format!(
        "You are not authorized to complete {action} action."
    ))
}

/// Glance's answer for an image that does not exist (or may not be seen).
pub fn not_found(id: impl std::fmt::Display) -> Error {
    Error::NotFound(format!("No image found with ID {id}"))
}

/// Parse an image id from a URL segment: anything that is not a UUID names
/// no image (404).
pub fn parse_id(s: &str) -> Result<GlanceImageId> {
    s.parse().map_err(|_| not_found(s))
}

/// The project the caller acts for, or `None` for an admin (who sees all).
fn viewer(ctx: &Context) -> Option<String> {
    if ctx.is_admin() {
        None
    } else {
        ctx.project_id.as_ref().map(|p| p.0.clone())
    }
}

fn is_owner(ctx: &Context, i: &GlanceImage) -> bool {
    ctx.project_id.as_ref().is_some_and(|p| p.0 == i.owner)
}

/// Load an image the caller may see (see the module doc), or 404.
pub(crate) async fn visible(
    conn: &mut Conn,
    ctx: &Context,
    id: GlanceImageId,
) -> Result<GlanceImage> {
    let Some(i) = store::glance_image_get(conn, id).await? else {
        return Err(not_found(id));
    };
    let seen = ctx.is_admin()
        || is_owner(ctx, &i)
        || matches!(i.visibility, Visibility::Public | Visibility::Community)
        || (i.visibility == Visibility::Shared
            && match &ctx.project_id {
                Some(p) => store::glance_member_get(conn, id, p.as_str())
                    .await?
                    .is_some(),
                None => false,
            });
    if seen { Ok(i) } else { Err(not_found(id)) }
}

/// Load an image the caller may change: visible (else 404) and theirs, or
/// the caller is an admin (else 403 naming `action`).
async fn modifiable(
    conn: &mut Conn,
    ctx: &Context,
    id: GlanceImageId,
    action: &str,
) -> Result<GlanceImage> {
    let i = visible(conn, ctx, id).await?;
    if ctx.is_admin() || is_owner(ctx, &i) {
        Ok(i)
    } else {
        Err(forbidden(action))
    }
}

/// A create request, as parsed from the API.
#[derive(Clone, Debug, Default)]
pub struct CreateRequest {
    pub id: Option<GlanceImageId>,
    pub name: Option<String>,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    /// `shared` when absent (Glance's default).
    pub visibility: Option<Visibility>,
    pub protected: Option<bool>,
    pub os_hidden: Option<bool>,
    pub min_disk: Option<i64>,
    pub min_ram: Option<i64>,
    pub tags: Vec<String>,
    /// Admins may create an image for another project.
    pub owner: Option<String>,
    pub properties: BTreeMap<String, String>,
}

fn check_name(n: &str) -> Result<()> {
    if n.chars().count() > MAX_NAME_LEN {
        return Err(Error::Invalid(format!(
            "Provided object does not match schema 'image': '{n}' is too long"
        )));
    }
    Ok(())
}

fn check_format(disk: Option<&str>, container: Option<&str>) -> Result<()> {
    if let Some(d) = disk
        && d.parse::<DiskFormat>().is_err()
    {
        let all: Vec<&str> = DiskFormat::ALL.iter().map(|f| f.as_str()).collect();
        return Err(Error::Invalid(format!(
            "Invalid value '{d}' for parameter 'disk_format': Valid values are: {}.",
            all.join(", ")
        )));
    }
    if let Some(c) = container
        && c.parse::<ContainerFormat>().is_err()
    {
        return Err(Error::Invalid(format!(
            "Invalid value '{c}' for parameter 'container_format': Valid values are: bare."
        )));
    }
    Ok(())
}

fn check_min(what: &str, v: i64) -> Result<()> {
    if v < 0 {
        return Err(Error::Invalid(format!(
            "Provided object does not match schema 'image': {v} is less than the minimum of 0: Failed validating 'minimum' in schema['properties']['{what}']"
        )));
    }
    Ok(())
}

fn check_tags(tags: &BTreeSet<String>) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(Error::TooLarge(format!(
            "Attempted: {}, Maximum: {MAX_TAGS}: the number of tags of an image is limited",
            tags.len()
        )));
    }
    if let Some(t) = tags.iter().find(|t| t.chars().count() > MAX_TAG_LEN) {
        return Err(Error::Invalid(format!(
            "Provided object does not match schema 'image': '{t}' is too long"
        )));
    }
    Ok(())
}

fn check_properties(props: &BTreeMap<String, String>) -> Result<()> {
    if props.len() > MAX_PROPERTIES {
        return Err(Error::TooLarge(format!(
            "Attempted: {}, Maximum: {MAX_PROPERTIES}: the number of properties of an image is limited",
            props.len()
        )));
    }
    for (k, v) in props {
        if k.is_empty() || k.chars().count() > MAX_PROPERTY_KEY_LEN {
            return Err(Error::Invalid(
                "Custom property should not be greater than 255 characters.".into(),
            ));
        }
        if v.chars().count() > MAX_PROPERTY_VALUE_LEN {
            return Err(Error::Invalid(format!(
                "Provided object does not match schema 'image': the value of {k} is too long"
            )));
        }
    }
    Ok(())
}

fn check_visibility(ctx: &Context, v: Visibility) -> Result<()> {
    if v == Visibility::Public {
        authorize(ctx, Op::ImagePublicize)?;
    }
    Ok(())
}

/// Create an image (`queued`, no data).
pub async fn create(app: &App, ctx: &Context, req: CreateRequest) -> Result<GlanceImage> {
    authorize(ctx, Op::ImageCreate)?;
    let project = ctx.project()?.0.clone();
    let owner = match req.owner {
        Some(o) if o != project && !ctx.is_admin() => {
            return Err(Error::Forbidden(
                "You are not permitted to create images owned by 'other'.".replace("other", &o),
            ));
        }
        Some(o) => o,
        None => project,
    };
    if let Some(n) = &req.name {
        check_name(n)?;
    }
    check_format(req.disk_format.as_deref(), req.container_format.as_deref())?;
    for (what, v) in [("min_disk", req.min_disk), ("min_ram", req.min_ram)] {
        if let Some(v) = v {
            check_min(what, v)?;
        }
    }
    let tags: BTreeSet<String> = req.tags.into_iter().collect();
    check_tags(&tags)?;
    check_properties(&req.properties)?;
    let visibility = req.visibility.unwrap_or(Visibility::Shared);
    check_visibility(ctx, visibility)?;
    let mut i = GlanceImage::new(req.id.unwrap_or_default(), &owner);
    i.name = req.name;
    i.disk_format = req.disk_format;
    i.container_format = req.container_format;
    i.visibility = visibility;
    i.protected = req.protected.unwrap_or(false);
    i.os_hidden = req.os_hidden.unwrap_or(false);
    i.min_disk = req.min_disk.unwrap_or(0);
    i.min_ram = req.min_ram.unwrap_or(0);
    i.tags = tags;
    i.properties = req.properties;
    let mut tx = app.store().begin().await?;
    let used = store::glance_image_usage(&mut tx, &owner, None).await?;
    let limit = app.config.image_service.image_size_total;
    if used >= 0 && used as u64 >= limit && limit > 0 {
        return Err(over_quota(limit, used as u64, 0));
    }
    match store::glance_image_create(&mut tx, &i).await {
        Err(scoria_store::StoreError::Duplicate(_)) => {
            return Err(Error::Conflict(format!(
                "Image with identifier {} already exists!",
                i.id
            )));
        }
        other => other?,
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(i)
}

/// Glance's refusal of an upload (or a create) over `image_size_total`.
pub(crate) fn over_quota(limit: u64, used: u64, more: u64) -> Error {
    Error::TooLarge(format!(
        "Image exceeds the storage quota: Resource image_size_total is over limit of {} MiB due to current usage {} MiB and delta {} MiB",
        limit >> 20,
        used.div_ceil(1 << 20),
        more.div_ceil(1 << 20)
    ))
}

/// One image the caller may see.
pub async fn get(app: &App, ctx: &Context, id: GlanceImageId) -> Result<GlanceImage> {
    authorize(ctx, Op::ImageGet)?;
    let mut conn = app.store().read().await?;
    visible(&mut conn, ctx, id).await
}

/// List filters and paging, as parsed from the API.
#[derive(Clone, Debug, Default)]
pub struct ListRequest {
    pub visibility: VisibilityFilter,
    /// `None`: any member status (`member_status=all`).
    pub member_status: Option<scoria_model::glance::MemberStatus>,
    pub name: Option<String>,
    pub status: Option<String>,
    pub owner: Option<String>,
    pub tags: Vec<String>,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub protected: Option<bool>,
    pub os_hidden: Option<bool>,
    pub size_min: Option<i64>,
    pub size_max: Option<i64>,
    pub columns: Vec<(BaseColumn, String)>,
    pub properties: Vec<(String, String)>,
    pub sort: Vec<(SortKey, SortDir)>,
    pub limit: Option<i64>,
    pub marker: Option<GlanceImageId>,
}

/// A page of the images the caller may see.
pub async fn list(app: &App, ctx: &Context, req: ListRequest) -> Result<Vec<GlanceImage>> {
    authorize(ctx, Op::ImageList)?;
    let viewer = viewer(ctx);
    if viewer.is_none() && !ctx.is_admin() {
        return Err(Error::Forbidden(
            "A project-scoped token is required.".into(),
        ));
    }
    let q = GlanceImageQuery {
        viewer,
        visibility: req.visibility,
        member_status: req.member_status,
        name: req.name,
        status: req.status,
        owner: req.owner,
        tags: req.tags,
        disk_format: req.disk_format,
        container_format: req.container_format,
        protected: req.protected,
        os_hidden: req.os_hidden,
        size_min: req.size_min,
        size_max: req.size_max,
        columns: req.columns,
        properties: req.properties,
        sort: req.sort,
        limit: req.limit,
        marker: req.marker,
    };
    let mut conn = app.store().read().await?;
    match store::glance_image_list(&mut conn, &q).await {
        Err(scoria_store::StoreError::MarkerNotFound(m)) => Err(Error::Invalid(format!(
            "Invalid marker. Image {m} could not be found."
        ))),
        other => Ok(other?),
    }
}

/// An attribute a change sets, with its value (typed by the API).
#[derive(Clone, Debug, PartialEq)]
pub enum Field {
    Name(Option<String>),
    Visibility(Visibility),
    Protected(bool),
    OsHidden(bool),
    MinDisk(i64),
    MinRam(i64),
    Tags(Vec<String>),
    DiskFormat(Option<String>),
    ContainerFormat(Option<String>),
    Owner(String),
    Property(String, String),
}

/// One operation of a JSON patch (`application/openstack-images-v2.1-json-patch`).
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// `add`: sets a base attribute, or adds (or overwrites) a property.
    Add(Field),
    /// `replace`: sets a base attribute, or a property that exists (409
    /// otherwise).
    Replace(Field),
    /// `remove` of the attribute at this path: only properties may go.
    Remove(String),
}

/// Apply a JSON patch: every change or none.
pub async fn update(
    app: &App,
    ctx: &Context,
    id: GlanceImageId,
    changes: Vec<Change>,
) -> Result<GlanceImage> {
    authorize(ctx, Op::ImageUpdate)?;
    let mut tx = app.store().begin().await?;
    let mut i = modifiable(&mut tx, ctx, id, "modify_image").await?;
    if changes.is_empty() {
        return Ok(i);
    }
    let status = i.status;
    for c in changes {
        apply(ctx, &mut i, c)?;
    }
    check_tags(&i.tags)?;
    check_properties(&i.properties)?;
    if !store::glance_image_save(&mut tx, &i, status).await? {
        return Err(Error::Conflict(format!(
            "Image {id} changed while it was being updated; try again."
        )));
    }
    let saved = store::glance_image_get(&mut tx, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(saved)
}

fn apply(ctx: &Context, i: &mut GlanceImage, c: Change) -> Result<()> {
    let (field, replace) = match c {
        Change::Remove(path) => {
            return match i.properties.remove(&path) {
                Some(_) => Ok(()),
                None if is_base(&path) => Err(Error::Forbidden(format!(
                    "Property {path} may not be removed."
                ))),
                None => Err(Error::Conflict(format!("Property {path} does not exist."))),
            };
        }
        Change::Add(f) => (f, false),
        Change::Replace(f) => (f, true),
    };
    let queued_only = |what: &str, i: &GlanceImage| {
        if i.status == GlanceImageStatus::Queued {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "Attribute {what} can be only replaced for a queued image."
            )))
        }
    };
    match field {
        Field::Name(n) => {
            if let Some(n) = &n {
                check_name(n)?;
            }
            i.name = n;
        }
        Field::Visibility(v) => {
            check_visibility(ctx, v)?;
            i.visibility = v;
        }
        Field::Protected(p) => i.protected = p,
        Field::OsHidden(h) => i.os_hidden = h,
        Field::MinDisk(v) => {
            check_min("min_disk", v)?;
            i.min_disk = v;
        }
        Field::MinRam(v) => {
            check_min("min_ram", v)?;
            i.min_ram = v;
        }
        Field::Tags(t) => i.tags = t.into_iter().collect(),
        Field::DiskFormat(f) => {
            if f != i.disk_format {
                queued_only("disk_format", i)?;
                check_format(f.as_deref(), None)?;
                i.disk_format = f;
            }
        }
        Field::ContainerFormat(f) => {
            if f != i.container_format {
                queued_only("container_format", i)?;
                check_format(None, f.as_deref())?;
                i.container_format = f;
            }
        }
        Field::Owner(o) => {
            if !ctx.is_admin() {
                return Err(Error::Forbidden(
                    "Owner can't be updated by non admin.".into(),
                ));
            }
            i.owner = o;
        }
        Field::Property(k, v) => {
            if replace && !i.properties.contains_key(&k) {
                return Err(Error::Conflict(format!("Property {k} does not exist.")));
            }
            i.properties.insert(k, v);
        }
    }
    Ok(())
}

/// The attributes every image has (they cannot be removed).
pub fn is_base(path: &str) -> bool {
    matches!(
        path,
        "checksum"
            | "created_at"
            | "container_format"
            | "disk_format"
            | "id"
            | "min_disk"
            | "min_ram"
            | "name"
            | "size"
            | "virtual_size"
            | "status"
            | "tags"
            | "owner"
            | "updated_at"
            | "visibility"
            | "protected"
            | "os_hidden"
    )
}

/// Delete an image: the row, then its file.
pub async fn delete(app: &App, ctx: &Context, id: GlanceImageId) -> Result<()> {
    authorize(ctx, Op::ImageDelete)?;
    let mut tx = app.store().begin().await?;
    let i = modifiable(&mut tx, ctx, id, "delete_image").await?;
    if i.protected {
        return Err(Error::Forbidden(format!(
            "Image {id} is protected and cannot be deleted."
        )));
    }
    if i.status == GlanceImageStatus::Saving {
        return Err(Error::Conflict(format!(
            "Image {id} is being uploaded; it can be deleted once the upload ends."
        )));
    }
    // A volume being made from it reads its file (the create flow holds the
    // image from its first transaction; see `glance_image_hold_for_read`).
    let readers = scoria_store::volume_images::glance_image_readers(&mut tx, id).await?;
    if let Some(v) = readers.first() {
        return Err(Error::Conflict(format!(
            "Image {id} is in use: volume {v} is being made from it; delete it when that is done."
        )));
    }
    if !store::glance_image_delete(&mut tx, id).await? {
        return Err(Error::Conflict(format!(
            "Image {id} changed while it was being deleted; try again."
        )));
    }
    // No new volume can be made from it: its cache entries go (the volumes
    // made from them keep their data, which the reaper frees after them).
    scoria_store::volume_images::cache_delete_for_glance_image(&mut tx, id).await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    // The row is gone: the image is. A file left by a failure here is
    // removed at the next start (`recover`).
    if let Err(e) = app.env.image_store.delete(&id.to_string()).await {
        tracing::warn!(image = %id, error = %e, "the image's file could not be removed; the next start removes it");
    }
    Ok(())
}

/// `deactivate` (an admin, or a member of the owning project, as Glance's
/// defaults say): an `active` image's data can be downloaded only by admins
/// until it is reactivated. A deactivated image is success.
pub async fn deactivate(app: &App, ctx: &Context, id: GlanceImageId) -> Result<()> {
    toggle(
        app,
        ctx,
        id,
        Op::ImageDeactivate,
        GlanceImageStatus::Active,
        GlanceImageStatus::Deactivated,
    )
    .await
}

/// `reactivate` (as `deactivate`): a deactivated image is `active` again. An
/// active image is success.
pub async fn reactivate(app: &App, ctx: &Context, id: GlanceImageId) -> Result<()> {
    toggle(
        app,
        ctx,
        id,
        Op::ImageReactivate,
        GlanceImageStatus::Deactivated,
        GlanceImageStatus::Active,
    )
    .await
}

async fn toggle(
    app: &App,
    ctx: &Context,
    id: GlanceImageId,
    op: Op,
    from: GlanceImageStatus,
    to: GlanceImageStatus,
) -> Result<()> {
    authorize(ctx, op)?;
    let mut tx = app.store().begin().await?;
    let i = modifiable(&mut tx, ctx, id, op.name()).await?;
    if i.status == to {
        return Ok(());
    }
    if i.status != from || !store::glance_image_set_status(&mut tx, id, from, to).await? {
        return Err(Error::Forbidden(format!(
            "Not allowed to {} image in status '{}'",
            op.name(),
            i.status
        )));
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// `PUT …/tags/{tag}`: add a tag (an existing one is success).
pub async fn tag_add(app: &App, ctx: &Context, id: GlanceImageId, tag: &str) -> Result<()> {
    authorize(ctx, Op::ImageUpdate)?;
    let mut tx = app.store().begin().await?;
    let i = modifiable(&mut tx, ctx, id, "modify_image").await?;
    let mut tags = i.tags.clone();
    tags.insert(tag.to_owned());
    check_tags(&tags)?;
    store::glance_image_tag_add(&mut tx, id, tag).await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// `DELETE …/tags/{tag}`: remove a tag (404 when the image lacks it).
pub async fn tag_delete(app: &App, ctx: &Context, id: GlanceImageId, tag: &str) -> Result<()> {
    authorize(ctx, Op::ImageUpdate)?;
    let mut tx = app.store().begin().await?;
    modifiable(&mut tx, ctx, id, "modify_image").await?;
    if !store::glance_image_tag_delete(&mut tx, id, tag).await? {
        return Err(Error::NotFound(format!("Tag {tag} not found")));
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// Make rows and files agree after a crash (see the module doc): at start,
/// when no upload can be running. Returns how many uploads were undone and
/// how many files removed.
pub async fn recover(env: &Env) -> Result<(usize, usize)> {
    let store_error = |e| Error::internal("The image store failed to start.", e);
    let temporaries = env
        .image_store
        .remove_temporaries()
        .await
        .map_err(store_error)?;
    let mut tx = env.store.begin().await?;
    let undone = store::glance_image_abort_all_uploads(&mut tx).await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    for id in &undone {
        tracing::warn!(image = %id, "an upload was interrupted by the end of the process; the image is queued again");
    }
    let mut conn = env.store.read().await?;
    let with_data: BTreeSet<String> = store::glance_image_list_all(&mut conn)
        .await?
        .into_iter()
        .filter(|i| i.status.has_data())
        .map(|i| i.id.to_string())
        .chain(
            store::glance_image_list_filling(&mut conn)
                .await?
                .into_iter()
                .map(|id| id.to_string()),
        )
        .collect();
    drop(conn);
    let mut removed = temporaries;
    for name in env.image_store.list().await.map_err(store_error)? {
        if !with_data.contains(&name) {
            env.image_store.delete(&name).await.map_err(store_error)?;
            tracing::info!(file = %name, "removed an image file no image names");
            removed += 1;
        }
    }
    Ok((undone.len(), removed))
}
