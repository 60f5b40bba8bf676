//! Members of shared images: the owner shares an image with a project
//! (`pending`), the project accepts or rejects it (or changes its mind), the
//! owner stops sharing.
//!
//! ```text
//!   add (owner) ──► pending ──update (member)──► accepted ⇄ rejected
//!                      └──────── delete (owner) at any time ───────► gone
//! ```
//!
//! The owner (and admins) see every member; a member sees only its own
//! membership. An image that is not `shared` has no members to add or list.

use scoria_model::GlanceImageId;
use scoria_model::glance::{MemberStatus, Visibility};
use scoria_store::glance as store;

use super::{GlanceImage, GlanceMember, authorize, forbidden, is_owner, visible};
use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result};

/// The most members an image may have (Glance's `image_member_quota`).
pub const MAX_MEMBERS: usize = 128;

fn member_not_found(image: GlanceImageId, member: &str) -> Error {
    Error::NotFound(format!("{member} is not a member of image {image}"))
}

fn only_shared(i: &GlanceImage) -> Result<()> {
    if i.visibility == Visibility::Shared {
        Ok(())
    } else {
        Err(Error::Forbidden("Only shared images have members.".into()))
    }
}

fn is_member(ctx: &Context, member: &str) -> bool {
    ctx.project_id.as_ref().is_some_and(|p| p.0 == member)
}

/// Share an image with `member` (its owner, or an admin).
pub async fn member_add(
    app: &App,
    ctx: &Context,
    id: GlanceImageId,
    member: &str,
) -> Result<GlanceMember> {
    authorize(ctx, Op::ImageMemberAdd)?;
    if member.is_empty() || member.len() > 255 {
        return Err(Error::Invalid("Member to be added not specified".into()));
    }
    let mut tx = app.store().begin().await?;
    let i = visible(&mut tx, ctx, id).await?;
    if !(ctx.is_admin() || is_owner(ctx, &i)) {
        return Err(forbidden("add_member"));
    }
    only_shared(&i)?;
    if store::glance_member_list(&mut tx, id).await?.len() >= MAX_MEMBERS {
        return Err(Error::TooLarge(format!(
            "Attempted: {}, Maximum: {MAX_MEMBERS}: the number of members of an image is limited",
            MAX_MEMBERS + 1
        )));
    }
    let m = match store::glance_member_create(&mut tx, id, member).await {
        Err(scoria_store::StoreError::Duplicate(_)) => {
            return Err(Error::Conflict(format!(
                "The target member {member} is already associated with image {id}."
            )));
        }
        other => other?,
    };
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(m)
}

/// The members the caller may see: all of them for the owner (and admins),
/// its own membership for a member.
pub async fn member_list(app: &App, ctx: &Context, id: GlanceImageId) -> Result<Vec<GlanceMember>> {
    authorize(ctx, Op::ImageMemberList)?;
    let mut conn = app.store().read().await?;
    let i = visible(&mut conn, ctx, id).await?;
    only_shared(&i)?;
    let all = store::glance_member_list(&mut conn, id).await?;
    if ctx.is_admin() || is_owner(ctx, &i) {
        return Ok(all);
    }
    Ok(all
        .into_iter()
        .filter(|m| is_member(ctx, &m.member))
        .collect())
}

/// One membership, for the owner, an admin, or the member itself.
pub async fn member_get(
    app: &App,
    ctx: &Context,
    id: GlanceImageId,
    member: &str,
) -> Result<GlanceMember> {
    authorize(ctx, Op::ImageMemberGet)?;
    let mut conn = app.store().read().await?;
    let i = visible(&mut conn, ctx, id).await?;
    only_shared(&i)?;
    if !(ctx.is_admin() || is_owner(ctx, &i) || is_member(ctx, member)) {
        return Err(member_not_found(id, member));
    }
    store::glance_member_get(&mut conn, id, member)
        .await?
        .ok_or_else(|| member_not_found(id, member))
}

/// A member accepts or rejects an image shared with it (admins may too).
pub async fn member_update(
    app: &App,
    ctx: &Context,
    id: GlanceImageId,
    member: &str,
    status: MemberStatus,
) -> Result<GlanceMember> {
    authorize(ctx, Op::ImageMemberUpdate)?;
    let mut tx = app.store().begin().await?;
    let i = visible(&mut tx, ctx, id).await?;
    only_shared(&i)?;
    if store::glance_member_get(&mut tx, id, member)
        .await?
        .is_none()
    {
        return Err(member_not_found(id, member));
    }
    if !(ctx.is_admin() || is_member(ctx, member)) {
        return Err(forbidden("modify_member"));
    }
    store::glance_member_set_status(&mut tx, id, member, status).await?;
    let m = store::glance_member_get(&mut tx, id, member)
        .await?
        .ok_or_else(|| member_not_found(id, member))?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(m)
}

/// The owner (or an admin) stops sharing with `member`.
pub async fn member_delete(
    app: &App,
    ctx: &Context,
    id: GlanceImageId,
    member: &str,
) -> Result<()> {
    authorize(ctx, Op::ImageMemberDelete)?;
    let mut tx = app.store().begin().await?;
    let i = visible(&mut tx, ctx, id).await?;
    only_shared(&i)?;
    if !(ctx.is_admin() || is_owner(ctx, &i)) {
        if is_member(ctx, member) {
            return Err(forbidden("delete_member"));
        }
        return Err(member_not_found(id, member));
    }
    if !store::glance_member_delete(&mut tx, id, member).await? {
        return Err(member_not_found(id, member));
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}
