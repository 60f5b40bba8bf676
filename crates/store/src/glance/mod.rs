//! The image service's images (Glance images), their custom properties, tags
//! and members. Not to be confused with `images.rs`, the bytes of volumes.
//!
//! An image's data is the object of the image store named by its id; the
//! rows say when it exists (`active`, `deactivated`). Status changes are
//! conditional updates; an upload holds quota in `upload_reserved` while it
//! is `saving` (see the migration `0012_image_service.sql`).

use std::collections::{BTreeMap, BTreeSet};

use scoria_model::GlanceImageId;
use scoria_model::glance::{GlanceImageStatus, Visibility};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::shared::KeyValues;
pub use crate::shared::SortDir;
use crate::{Conn, Result, StoreError, now, parse};

/// A Glance image as stored, with its properties and tags.
#[derive(Clone, Debug, PartialEq)]
pub struct GlanceImage {
    pub id: GlanceImageId,
    /// The owning project.
    pub owner: String,
    pub name: Option<String>,
    pub status: GlanceImageStatus,
    pub visibility: Visibility,
    pub protected: bool,
    pub os_hidden: bool,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub min_disk: i64,
    pub min_ram: i64,
    pub size: Option<i64>,
    pub virtual_size: Option<i64>,
    pub checksum: Option<String>,
    pub os_hash_algo: Option<String>,
    pub os_hash_value: Option<String>,
    /// Quota bytes an upload in progress holds.
    pub upload_reserved: i64,
    pub created_at: String,
    pub updated_at: String,
    pub properties: BTreeMap<String, String>,
    pub tags: BTreeSet<String>,
}

impl GlanceImage {
    /// A new `queued` image, without data.
    #[allow(clippy::too_many_arguments)]
    pub fn new(id: GlanceImageId, owner: &str) -> GlanceImage {
        let t = now();
        GlanceImage {
            id,
            owner: owner.to_owned(),
            name: None,
            status: GlanceImageStatus::Queued,
            visibility: Visibility::Shared,
            protected: false,
            os_hidden: false,
            disk_format: None,
            container_format: None,
            min_disk: 0,
            min_ram: 0,
            size: None,
            virtual_size: None,
            checksum: None,
            os_hash_algo: None,
            os_hash_value: None,
            upload_reserved: 0,
            created_at: t.clone(),
            updated_at: t,
            properties: BTreeMap::new(),
            tags: BTreeSet::new(),
        }
    }
}

/// What an upload learned of the data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadedData {
    pub size: i64,
    pub checksum: String,
    pub os_hash_algo: String,
    pub os_hash_value: String,
}

fn from_row(r: &SqliteRow) -> Result<GlanceImage> {
    Ok(GlanceImage {
        id: parse("glance image id", r.try_get::<&str, _>("id")?)?,
        owner: r.try_get("owner")?,
        name: r.try_get("name")?,
        status: parse("glance image status", r.try_get::<&str, _>("status")?)?,
        visibility: parse("visibility", r.try_get::<&str, _>("visibility")?)?,
        protected: r.try_get("protected")?,
        os_hidden: r.try_get("os_hidden")?,
        disk_format: r.try_get("disk_format")?,
        container_format: r.try_get("container_format")?,
        min_disk: r.try_get("min_disk")?,
        min_ram: r.try_get("min_ram")?,
        size: r.try_get("size")?,
        virtual_size: r.try_get("virtual_size")?,
        checksum: r.try_get("checksum")?,
        os_hash_algo: r.try_get("os_hash_algo")?,
        os_hash_value: r.try_get("os_hash_value")?,
        upload_reserved: r.try_get("upload_reserved")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        properties: BTreeMap::new(),
        tags: BTreeSet::new(),
    })
}

const PROPERTIES: KeyValues = KeyValues {
    table: "glance_image_properties",
    owner: "image_id",
};

/// Insert a new image with its properties and tags; an id already taken is
/// `Duplicate`.
pub async fn glance_image_create(conn: &mut Conn, i: &GlanceImage) -> Result<()> {
    let r = sqlx::query(
        "INSERT INTO glance_images (id, owner, name, status, visibility, protected, os_hidden,
                disk_format, container_format, min_disk, min_ram, size, virtual_size, checksum,
                os_hash_algo, os_hash_value, upload_reserved, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, 0, $17, $18)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(i.id.to_string())
    .bind(&i.owner)
    .bind(&i.name)
    .bind(i.status.as_str())
    .bind(i.visibility.as_str())
    .bind(i.protected)
    .bind(i.os_hidden)
    .bind(&i.disk_format)
    .bind(&i.container_format)
    .bind(i.min_disk)
    .bind(i.min_ram)
    .bind(i.size)
    .bind(i.virtual_size)
    .bind(&i.checksum)
    .bind(&i.os_hash_algo)
    .bind(&i.os_hash_value)
    .bind(&i.created_at)
    .bind(&i.updated_at)
    .execute(&mut *conn)
    .await?;
    if r.rows_affected() == 0 {
        return Err(StoreError::Duplicate(format!(
            "Image with identifier {}",
            i.id
        )));
    }
    PROPERTIES
        .merge(conn, &i.id.to_string(), &i.properties)
        .await?;
    tags_insert(conn, i.id, &i.tags).await
}

async fn tags_insert(conn: &mut Conn, id: GlanceImageId, tags: &BTreeSet<String>) -> Result<()> {
    for t in tags {
        sqlx::query(
            "INSERT INTO glance_image_tags (image_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(id.to_string())
        .bind(t)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// One image with its properties and tags, or `None`.
pub async fn glance_image_get(conn: &mut Conn, id: GlanceImageId) -> Result<Option<GlanceImage>> {
    let row = sqlx::query("SELECT * FROM glance_images WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let mut images = vec![from_row(&row)?];
    attach(conn, &mut images).await?;
    Ok(images.pop())
}

/// Write back what a change made of an image's mutable attributes (name,
/// visibility, protection, formats, minimums, hidden flag, owner, properties
/// and tags), only while it still has the status `status` it was read with (the
/// caller reads and writes in one write transaction). Returns whether the
/// image was there so.
pub async fn glance_image_save(
    conn: &mut Conn,
    i: &GlanceImage,
    status: GlanceImageStatus,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE glance_images SET name = $3, visibility = $4, protected = $5, os_hidden = $6,
                disk_format = $7, container_format = $8, min_disk = $9, min_ram = $10,
                updated_at = $11, owner = $12
         WHERE id = $1 AND status = $2",
    )
    .bind(i.id.to_string())
    .bind(status.as_str())
    .bind(&i.name)
    .bind(i.visibility.as_str())
    .bind(i.protected)
    .bind(i.os_hidden)
    .bind(&i.disk_format)
    .bind(&i.container_format)
    .bind(i.min_disk)
    .bind(i.min_ram)
    .bind(now())
    .bind(&i.owner)
    .execute(&mut *conn)
    .await?;
    if r.rows_affected() == 0 {
        return Ok(false);
    }
    PROPERTIES
        .replace(conn, &i.id.to_string(), &i.properties)
        .await?;
    sqlx::query("DELETE FROM glance_image_tags WHERE image_id = $1")
        .bind(i.id.to_string())
        .execute(&mut *conn)
        .await?;
    tags_insert(conn, i.id, &i.tags).await?;
    Ok(true)
}

/// Conditionally move an image to `to`, only from one of `from`. Returns
/// whether it applied.
pub async fn glance_image_set_status(
    conn: &mut Conn,
    id: GlanceImageId,
    from: GlanceImageStatus,
    to: GlanceImageStatus,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE glance_images SET status = $3, updated_at = $4 WHERE id = $1 AND status = $2",
    )
    .bind(id.to_string())
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(now())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// An upload starts: `queued` → `saving`, holding `reserve` bytes of quota.
/// Returns whether it applied (another upload may have started first).
pub async fn glance_image_begin_upload(
    conn: &mut Conn,
    id: GlanceImageId,
    reserve: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE glance_images SET status = 'saving', upload_reserved = $2, updated_at = $3
         WHERE id = $1 AND status = 'queued'",
    )
    .bind(id.to_string())
    .bind(reserve)
    .bind(now())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// An upload in progress holds `reserve` bytes now (it only grows). Returns
/// whether the image is still `saving`.
pub async fn glance_image_reserve(
    conn: &mut Conn,
    id: GlanceImageId,
    reserve: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE glance_images SET upload_reserved = MAX(upload_reserved, $2)
         WHERE id = $1 AND status = 'saving'",
    )
    .bind(id.to_string())
    .bind(reserve)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// An upload is complete and its object durable: `saving` → `active`, with
/// what it learned of the data; the reservation ends. Returns whether the
/// image was still `saving`.
pub async fn glance_image_finish_upload(
    conn: &mut Conn,
    id: GlanceImageId,
    data: &UploadedData,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE glance_images SET status = 'active', size = $2, checksum = $3, os_hash_algo = $4,
                os_hash_value = $5, upload_reserved = 0, updated_at = $6
         WHERE id = $1 AND status = 'saving'",
    )
    .bind(id.to_string())
    .bind(data.size)
    .bind(&data.checksum)
    .bind(&data.os_hash_algo)
    .bind(&data.os_hash_value)
    .bind(now())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// An upload of a volume's data (a flow) starts on a new image `i`: the row
/// is created `saving`, holding `reserve` bytes, filled by `volume`.
pub async fn glance_image_create_filled_by(
    conn: &mut Conn,
    i: &GlanceImage,
    volume: &str,
    reserve: i64,
) -> Result<()> {
    glance_image_create(conn, i).await?;
    sqlx::query(
        "UPDATE glance_images SET status = 'saving', upload_reserved = $2, filled_by_volume = $3
         WHERE id = $1",
    )
    .bind(i.id.to_string())
    .bind(reserve)
    .bind(volume)
    .execute(conn)
    .await?;
    Ok(())
}

/// The end of a volume's upload: `saving` → `active` with what the flow
/// learned of the data (`virtual_size` too); the flow lets go of the image.
pub async fn glance_image_finish_fill(
    conn: &mut Conn,
    id: GlanceImageId,
    data: &UploadedData,
    virtual_size: i64,
) -> Result<bool> {
    if !glance_image_finish_upload(conn, id, data).await? {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE glance_images SET filled_by_volume = NULL, virtual_size = $2 WHERE id = $1",
    )
    .bind(id.to_string())
    .bind(virtual_size)
    .execute(conn)
    .await?;
    Ok(true)
}

/// A volume's upload failed: the image is `killed` (Glance's status for an
/// image whose data never arrived), holding no quota, let go of.
pub async fn glance_image_kill_fill(conn: &mut Conn, id: GlanceImageId) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE glance_images SET status = 'killed', upload_reserved = 0, filled_by_volume = NULL,
                updated_at = $2
         WHERE id = $1 AND filled_by_volume IS NOT NULL",
    )
    .bind(id.to_string())
    .bind(now())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The images volumes' upload flows are filling (their files are the flows').
pub async fn glance_image_list_filling(conn: &mut Conn) -> Result<Vec<GlanceImageId>> {
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM glance_images WHERE filled_by_volume IS NOT NULL")
            .fetch_all(conn)
            .await?;
    ids.iter().map(|s| parse("glance image id", s)).collect()
}

/// An upload failed or was interrupted: `saving` → `queued`, the reservation
/// ends. Returns whether the image was `saving`.
pub async fn glance_image_abort_upload(conn: &mut Conn, id: GlanceImageId) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE glance_images SET status = 'queued', upload_reserved = 0, updated_at = $2
         WHERE id = $1 AND status = 'saving'",
    )
    .bind(id.to_string())
    .bind(now())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// At start, no upload request is running: every `saving` image goes back
/// to `queued`, but those a volume's upload flow is filling (it resumes or
/// undoes them). Returns their ids.
pub async fn glance_image_abort_all_uploads(conn: &mut Conn) -> Result<Vec<GlanceImageId>> {
    let ids: Vec<String> = sqlx::query_scalar(
        "UPDATE glance_images SET status = 'queued', upload_reserved = 0, updated_at = $1
         WHERE status = 'saving' AND filled_by_volume IS NULL RETURNING id",
    )
    .bind(now())
    .fetch_all(conn)
    .await?;
    ids.iter().map(|s| parse("glance image id", s)).collect()
}

/// Remove an image with its properties, tags and members, unless it is
/// protected (or `saving`: an upload owns it). Returns whether a row went.
pub async fn glance_image_delete(conn: &mut Conn, id: GlanceImageId) -> Result<bool> {
    let r = sqlx::query(
        "DELETE FROM glance_images WHERE id = $1 AND NOT protected AND status <> 'saving'",
    )
    .bind(id.to_string())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The bytes a project's images take in the image store, or are about to:
/// the sizes of its images with data plus what its uploads hold (excluding
/// the image `except`, whose upload is asking).
pub async fn glance_image_usage(
    conn: &mut Conn,
    owner: &str,
    except: Option<GlanceImageId>,
) -> Result<i64> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(CASE WHEN status IN ('active', 'deactivated') THEN COALESCE(size, 0)
                                  ELSE 0 END + upload_reserved), 0)
         FROM glance_images WHERE owner = $1 AND ($2 IS NULL OR id <> $2)",
    )
    .bind(owner)
    .bind(except.map(|e| e.to_string()))
    .fetch_one(conn)
    .await?;
    Ok(n)
}

/// Add a tag; returns whether it was new.
pub async fn glance_image_tag_add(conn: &mut Conn, id: GlanceImageId, tag: &str) -> Result<bool> {
    let r = sqlx::query(
        "INSERT INTO glance_image_tags (image_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(id.to_string())
    .bind(tag)
    .execute(&mut *conn)
    .await?;
    touch(conn, id).await?;
    Ok(r.rows_affected() == 1)
}

/// Remove a tag; returns whether it was there.
pub async fn glance_image_tag_delete(
    conn: &mut Conn,
    id: GlanceImageId,
    tag: &str,
) -> Result<bool> {
    let r = sqlx::query("DELETE FROM glance_image_tags WHERE image_id = $1 AND tag = $2")
        .bind(id.to_string())
        .bind(tag)
        .execute(&mut *conn)
        .await?;
    touch(conn, id).await?;
    Ok(r.rows_affected() == 1)
}

async fn touch(conn: &mut Conn, id: GlanceImageId) -> Result<()> {
    sqlx::query("UPDATE glance_images SET updated_at = $2 WHERE id = $1")
        .bind(id.to_string())
        .bind(now())
        .execute(conn)
        .await?;
    Ok(())
}

/// Every image (invariant checks, start-up), without properties or tags.
pub async fn glance_image_list_all(conn: &mut Conn) -> Result<Vec<GlanceImage>> {
    let rows = sqlx::query("SELECT * FROM glance_images ORDER BY created_at, id")
        .fetch_all(conn)
        .await?;
    rows.iter().map(from_row).collect()
}

async fn attach(conn: &mut Conn, images: &mut [GlanceImage]) -> Result<()> {
    if images.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = images.iter().map(|i| i.id.to_string()).collect();
    let mut props = PROPERTIES.get_many(conn, &ids).await?;
    let placeholders: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT image_id, tag FROM glance_image_tags WHERE image_id IN ({})",
        placeholders.join(", ")
    );
    let mut q = sqlx::query(&sql);
    for id in &ids {
        q = q.bind(id);
    }
    let mut tags: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in q.fetch_all(&mut *conn).await? {
        tags.entry(r.try_get("image_id")?)
            .or_default()
            .insert(r.try_get("tag")?);
    }
    for i in images.iter_mut() {
        let id = i.id.to_string();
        i.properties = props.remove(&id).unwrap_or_default();
        i.tags = tags.remove(&id).unwrap_or_default();
    }
    Ok(())
}

mod list;
mod members;
pub use list::*;
pub use members::*;

#[cfg(test)]
mod tests;
