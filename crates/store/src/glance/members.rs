//! The projects an image is shared with (Glance's members).

use scoria_model::GlanceImageId;
use scoria_model::glance::MemberStatus;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::{Conn, Result, StoreError, now, parse};

/// A project an image is shared with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlanceMember {
    pub image_id: GlanceImageId,
    pub member: String,
    pub status: MemberStatus,
    pub created_at: String,
    pub updated_at: String,
}

fn member_from_row(r: &SqliteRow) -> Result<GlanceMember> {
    Ok(GlanceMember {
        image_id: parse("glance image id", r.try_get::<&str, _>("image_id")?)?,
        member: r.try_get("member")?,
        status: parse("member status", r.try_get::<&str, _>("status")?)?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// Share an image with a project (`pending`); an existing member is
/// `Duplicate`.
pub async fn glance_member_create(
    conn: &mut Conn,
    image: GlanceImageId,
    member: &str,
) -> Result<GlanceMember> {
    let t = now();
    let r = sqlx::query(
        "INSERT INTO glance_image_members (image_id, member, status, created_at, updated_at)
         VALUES ($1, $2, 'pending', $3, $3) ON CONFLICT DO NOTHING",
    )
    .bind(image.to_string())
    .bind(member)
    .bind(&t)
    .execute(&mut *conn)
    .await?;
    if r.rows_affected() == 0 {
        return Err(StoreError::Duplicate(format!(
            "Member {member} of image {image}"
        )));
    }
    Ok(GlanceMember {
        image_id: image,
        member: member.to_owned(),
        status: MemberStatus::Pending,
        created_at: t.clone(),
        updated_at: t,
    })
}

pub async fn glance_member_get(
    conn: &mut Conn,
    image: GlanceImageId,
    member: &str,
) -> Result<Option<GlanceMember>> {
    let row = sqlx::query("SELECT * FROM glance_image_members WHERE image_id = $1 AND member = $2")
        .bind(image.to_string())
        .bind(member)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(member_from_row).transpose()
}

/// The members of an image, oldest first.
pub async fn glance_member_list(
    conn: &mut Conn,
    image: GlanceImageId,
) -> Result<Vec<GlanceMember>> {
    let rows = sqlx::query(
        "SELECT * FROM glance_image_members WHERE image_id = $1 ORDER BY created_at, member",
    )
    .bind(image.to_string())
    .fetch_all(conn)
    .await?;
    rows.iter().map(member_from_row).collect()
}

/// Set a member's status; returns whether the member exists.
pub async fn glance_member_set_status(
    conn: &mut Conn,
    image: GlanceImageId,
    member: &str,
    status: MemberStatus,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE glance_image_members SET status = $3, updated_at = $4
         WHERE image_id = $1 AND member = $2",
    )
    .bind(image.to_string())
    .bind(member)
    .bind(status.as_str())
    .bind(now())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Stop sharing with a project; returns whether it was a member.
pub async fn glance_member_delete(
    conn: &mut Conn,
    image: GlanceImageId,
    member: &str,
) -> Result<bool> {
    let r = sqlx::query("DELETE FROM glance_image_members WHERE image_id = $1 AND member = $2")
        .bind(image.to_string())
        .bind(member)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}
