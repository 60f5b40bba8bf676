//! The image service's images (Glance images), their custom properties, tags
//! and members. Not to be confused with `images.rs`, the bytes of volumes.
//!
//! An image's data is the object of the image store named by its id; the
//! rows say when it exists (`active`, `deactivated`). Status changes are
//! conditional updates; an upload holds quota in `upload_reserved` while it
//! is `saving` (see the migration `0012_image_service.sql`).

use std::collections::{BTreeMap, BTreeSet};

use scoria_model::GlanceImageId;
use scoria_model::glance::{GlanceImageStatus, MemberStatus, Visibility};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

pub use crate::shared::SortDir;
use crate::shared::{KeyValues, Keyset, SqlValue};
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

// ---------------------------------------------------------------------------
// Listing

/// Columns a list may be sorted by (Glance's sort keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    Name,
    Status,
    ContainerFormat,
    DiskFormat,
    Size,
    Id,
    CreatedAt,
    UpdatedAt,
}

impl SortKey {
    pub const NAMES: &'static [&'static str] = &[
        "name",
        "status",
        "container_format",
        "disk_format",
        "size",
        "id",
        "created_at",
        "updated_at",
    ];

    pub fn parse(s: &str) -> Option<SortKey> {
        Some(match s {
            "name" => SortKey::Name,
            "status" => SortKey::Status,
            "container_format" => SortKey::ContainerFormat,
            "disk_format" => SortKey::DiskFormat,
            "size" => SortKey::Size,
            "id" => SortKey::Id,
            "created_at" => SortKey::CreatedAt,
            "updated_at" => SortKey::UpdatedAt,
            _ => return None,
        })
    }

    /// The expression sorted on; nullable columns sort as '' or -1 so that
    /// keyset paging can compare them.
    fn expr(self) -> &'static str {
        match self {
            SortKey::Name => "COALESCE(name, '')",
            SortKey::Status => "status",
            SortKey::ContainerFormat => "COALESCE(container_format, '')",
            SortKey::DiskFormat => "COALESCE(disk_format, '')",
            SortKey::Size => "COALESCE(size, -1)",
            SortKey::Id => "id",
            SortKey::CreatedAt => "created_at",
            SortKey::UpdatedAt => "updated_at",
        }
    }

    fn value(self, i: &GlanceImage) -> SqlValue {
        let text = |s: &Option<String>| SqlValue::Text(s.clone().unwrap_or_default());
        match self {
            SortKey::Name => text(&i.name),
            SortKey::Status => SqlValue::Text(i.status.as_str().to_owned()),
            SortKey::ContainerFormat => text(&i.container_format),
            SortKey::DiskFormat => text(&i.disk_format),
            SortKey::Size => SqlValue::Int(i.size.unwrap_or(-1)),
            SortKey::Id => SqlValue::Text(i.id.to_string()),
            SortKey::CreatedAt => SqlValue::Text(i.created_at.clone()),
            SortKey::UpdatedAt => SqlValue::Text(i.updated_at.clone()),
        }
    }
}

/// Which images of other projects a list shows (Glance's `visibility`
/// filter, or its absence).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum VisibilityFilter {
    /// The viewer's own images, public ones and shared ones it is a member
    /// of (with the member status asked for): Glance's default.
    #[default]
    Default,
    /// Only images of this visibility that the viewer may see.
    Only(Visibility),
    /// Everything the viewer may see, community images included.
    All,
}

/// Base columns a list filters on by exact value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaseColumn {
    Id,
    Size,
    VirtualSize,
    Checksum,
    OsHashValue,
    MinDisk,
    MinRam,
}

impl BaseColumn {
    /// The column for a query key, if it names one.
    pub fn parse(s: &str) -> Option<BaseColumn> {
        Some(match s {
            "id" => BaseColumn::Id,
            "size" => BaseColumn::Size,
            "virtual_size" => BaseColumn::VirtualSize,
            "checksum" => BaseColumn::Checksum,
            "os_hash_value" => BaseColumn::OsHashValue,
            "min_disk" => BaseColumn::MinDisk,
            "min_ram" => BaseColumn::MinRam,
            _ => return None,
        })
    }

    /// The column, and whether it holds integers.
    fn column(self) -> (&'static str, bool) {
        match self {
            BaseColumn::Id => ("id", false),
            BaseColumn::Size => ("size", true),
            BaseColumn::VirtualSize => ("virtual_size", true),
            BaseColumn::Checksum => ("checksum", false),
            BaseColumn::OsHashValue => ("os_hash_value", false),
            BaseColumn::MinDisk => ("min_disk", true),
            BaseColumn::MinRam => ("min_ram", true),
        }
    }
}

/// Filters, order and page of an image list.
#[derive(Clone, Debug, Default)]
pub struct GlanceImageQuery {
    /// The project looking; `None` is an admin, who sees every image.
    pub viewer: Option<String>,
    pub visibility: VisibilityFilter,
    /// Shared images are listed for a member whose status is this (`None`:
    /// any status).
    pub member_status: Option<MemberStatus>,
    pub name: Option<String>,
    pub status: Option<String>,
    pub owner: Option<String>,
    /// Every one of these tags.
    pub tags: Vec<String>,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub protected: Option<bool>,
    /// `None`: hidden images are left out (Glance's default).
    pub os_hidden: Option<bool>,
    pub size_min: Option<i64>,
    pub size_max: Option<i64>,
    /// Exact values of base columns (`size`, `checksum`, `min_disk`, …).
    pub columns: Vec<(BaseColumn, String)>,
    /// Custom properties that must have these values.
    pub properties: Vec<(String, String)>,
    /// Sort keys in priority order; empty means `created_at desc`. `id` is
    /// always appended as the tie-breaker.
    pub sort: Vec<(SortKey, SortDir)>,
    pub limit: Option<i64>,
    /// Start after this image (which must be one the viewer may see).
    pub marker: Option<GlanceImageId>,
}

/// A page of images; `MarkerNotFound` when the marker names no image the
/// viewer may see.
pub async fn glance_image_list(conn: &mut Conn, q: &GlanceImageQuery) -> Result<Vec<GlanceImage>> {
    let mut sort = if q.sort.is_empty() {
        vec![(SortKey::CreatedAt, SortDir::Desc)]
    } else {
        q.sort.clone()
    };
    if !sort.iter().any(|(k, _)| *k == SortKey::Id) {
        let last = sort.last().map(|s| s.1).unwrap_or(SortDir::Desc);
        sort.push((SortKey::Id, last));
    }
    let mut k = Keyset::new("SELECT * FROM glance_images WHERE 1 = 1");
    if let Some(marker) = q.marker {
        let m = match glance_image_get(conn, marker).await? {
            Some(m) if may_see(conn, q.viewer.as_deref(), &m).await? => m,
            _ => return Err(StoreError::MarkerNotFound(marker.to_string())),
        };
        filters(&mut k, q);
        let after: Vec<_> = sort
            .iter()
            .map(|(key, d)| (key.expr(), *d, key.value(&m)))
            .collect();
        k.after(&after);
    } else {
        filters(&mut k, q);
    }
    let order: Vec<_> = sort.iter().map(|(key, d)| (key.expr(), *d)).collect();
    k.order_and_page(&order, q.limit, None);
    let rows = k.fetch_all(&mut *conn).await?;
    let mut images = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    attach(conn, &mut images).await?;
    Ok(images)
}

/// Whether `viewer` (`None`: an admin) may see `i` at all: its owner, an
/// admin, anyone for public and community images, a member of a shared one
/// (whatever its status).
async fn may_see(conn: &mut Conn, viewer: Option<&str>, i: &GlanceImage) -> Result<bool> {
    let Some(p) = viewer else { return Ok(true) };
    Ok(i.owner == p
        || matches!(i.visibility, Visibility::Public | Visibility::Community)
        || (i.visibility == Visibility::Shared
            && glance_member_get(conn, i.id, p).await?.is_some()))
}

fn filters(k: &mut Keyset, q: &GlanceImageQuery) {
    let member = |k: &mut Keyset, p: &str, status: Option<MemberStatus>| {
        k.push(
            "EXISTS (SELECT 1 FROM glance_image_members m WHERE m.image_id = glance_images.id AND m.member = ",
        );
        k.bind(SqlValue::Text(p.to_owned()));
        if let Some(s) = status {
            k.push(" AND m.status = ");
            k.bind(SqlValue::Text(s.as_str().to_owned()));
        }
        k.push(")");
    };
    let text = |s: &str| SqlValue::Text(s.to_owned());
    match (&q.viewer, q.visibility) {
        (None, VisibilityFilter::Default | VisibilityFilter::All) => {}
        (None, VisibilityFilter::Only(v)) => k.filter("visibility", text(v.as_str())),
        (Some(p), VisibilityFilter::Default) => {
            k.push(" AND (owner = ");
            k.bind(text(p));
            k.push(" OR visibility = 'public' OR (visibility = 'shared' AND ");
            member(k, p, q.member_status);
            k.push("))");
        }
        (Some(p), VisibilityFilter::All) => {
            k.push(" AND (owner = ");
            k.bind(text(p));
            k.push(" OR visibility IN ('public', 'community') OR (visibility = 'shared' AND ");
            member(k, p, q.member_status);
            k.push("))");
        }
        (Some(p), VisibilityFilter::Only(v)) => {
            k.filter("visibility", text(v.as_str()));
            match v {
                Visibility::Public | Visibility::Community => {}
                Visibility::Private => k.filter("owner", text(p)),
                Visibility::Shared => {
                    k.push(" AND (owner = ");
                    k.bind(text(p));
                    k.push(" OR ");
                    member(k, p, q.member_status);
                    k.push(")");
                }
            }
        }
    }
    if let Some(n) = &q.name {
        k.filter("name", text(n));
    }
    if let Some(s) = &q.status {
        k.filter("status", text(s));
    }
    if let Some(o) = &q.owner {
        k.filter("owner", text(o));
    }
    if let Some(f) = &q.disk_format {
        k.filter("disk_format", text(f));
    }
    if let Some(f) = &q.container_format {
        k.filter("container_format", text(f));
    }
    if let Some(p) = q.protected {
        k.filter(
            "CASE WHEN protected THEN 1 ELSE 0 END",
            SqlValue::Int(i64::from(p)),
        );
    }
    k.filter(
        "CASE WHEN os_hidden THEN 1 ELSE 0 END",
        SqlValue::Int(i64::from(q.os_hidden.unwrap_or(false))),
    );
    if let Some(min) = q.size_min {
        k.push(" AND size >= ");
        k.bind(SqlValue::Int(min));
    }
    if let Some(max) = q.size_max {
        k.push(" AND size <= ");
        k.bind(SqlValue::Int(max));
    }
    for (c, value) in &q.columns {
        let (column, integer) = c.column();
        match (integer, value.parse::<i64>()) {
            (true, Ok(n)) => k.filter(column, SqlValue::Int(n)),
            // No integer column equals a value that is not an integer.
            (true, Err(_)) => k.push(" AND 1 = 0"),
            (false, _) => k.filter(column, text(value)),
        }
    }
    for t in &q.tags {
        k.push(" AND EXISTS (SELECT 1 FROM glance_image_tags t WHERE t.image_id = glance_images.id AND t.tag = ");
        k.bind(text(t));
        k.push(")");
    }
    for (key, value) in &q.properties {
        k.push(" AND EXISTS (SELECT 1 FROM glance_image_properties p WHERE p.image_id = glance_images.id AND p.key = ");
        k.bind(text(key));
        k.push(" AND p.value = ");
        k.bind(text(value));
        k.push(")");
    }
}

// ---------------------------------------------------------------------------
// Members

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    fn image(owner: &str, name: &str, visibility: Visibility) -> GlanceImage {
        let mut i = GlanceImage::new(GlanceImageId::new(), owner);
        i.name = Some(name.into());
        i.visibility = visibility;
        i.tags = ["t1".to_string()].into();
        i.properties = [("os".to_string(), name.to_string())].into();
        i
    }

    fn data(size: i64) -> UploadedData {
        UploadedData {
            size,
            checksum: "c".into(),
            os_hash_algo: "sha512".into(),
            os_hash_value: "h".into(),
        }
    }

    #[tokio::test]
    async fn an_upload_moves_through_its_statuses_once() {
        let (s, _d) = testing::store().await;
        let mut tx = s.begin().await.unwrap();
        let i = image("p", "a", Visibility::Private);
        glance_image_create(&mut tx, &i).await.unwrap();
        assert!(matches!(
            glance_image_create(&mut tx, &i).await,
            Err(StoreError::Duplicate(_))
        ));
        assert!(glance_image_begin_upload(&mut tx, i.id, 10).await.unwrap());
        assert!(
            !glance_image_begin_upload(&mut tx, i.id, 10).await.unwrap(),
            "one upload at a time"
        );
        assert_eq!(glance_image_usage(&mut tx, "p", None).await.unwrap(), 10);
        assert_eq!(
            glance_image_usage(&mut tx, "p", Some(i.id)).await.unwrap(),
            0
        );
        assert!(glance_image_reserve(&mut tx, i.id, 30).await.unwrap());
        assert!(glance_image_reserve(&mut tx, i.id, 20).await.unwrap());
        assert_eq!(
            glance_image_usage(&mut tx, "p", None).await.unwrap(),
            30,
            "never shrinks"
        );
        assert!(
            !glance_image_delete(&mut tx, i.id).await.unwrap(),
            "an upload owns it"
        );
        assert!(glance_image_abort_upload(&mut tx, i.id).await.unwrap());
        assert_eq!(glance_image_usage(&mut tx, "p", None).await.unwrap(), 0);
        assert!(glance_image_begin_upload(&mut tx, i.id, 5).await.unwrap());
        assert!(
            glance_image_finish_upload(&mut tx, i.id, &data(25))
                .await
                .unwrap()
        );
        assert!(
            !glance_image_finish_upload(&mut tx, i.id, &data(25))
                .await
                .unwrap()
        );
        let got = glance_image_get(&mut tx, i.id).await.unwrap().unwrap();
        assert_eq!(
            (got.status, got.size, got.upload_reserved),
            (GlanceImageStatus::Active, Some(25), 0)
        );
        assert_eq!(got.tags, i.tags);
        assert_eq!(got.properties, i.properties);
        assert_eq!(glance_image_usage(&mut tx, "p", None).await.unwrap(), 25);
        assert!(
            glance_image_set_status(
                &mut tx,
                i.id,
                GlanceImageStatus::Active,
                GlanceImageStatus::Deactivated
            )
            .await
            .unwrap()
        );
        assert_eq!(
            glance_image_usage(&mut tx, "p", None).await.unwrap(),
            25,
            "deactivated data counts"
        );
        assert!(glance_image_delete(&mut tx, i.id).await.unwrap());
        assert!(glance_image_get(&mut tx, i.id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn start_up_puts_interrupted_uploads_back_to_queued() {
        let (s, _d) = testing::store().await;
        let mut tx = s.begin().await.unwrap();
        let (a, b) = (
            image("p", "a", Visibility::Private),
            image("p", "b", Visibility::Private),
        );
        glance_image_create(&mut tx, &a).await.unwrap();
        glance_image_create(&mut tx, &b).await.unwrap();
        glance_image_begin_upload(&mut tx, a.id, 100).await.unwrap();
        assert_eq!(
            glance_image_abort_all_uploads(&mut tx).await.unwrap(),
            [a.id]
        );
        let got = glance_image_get(&mut tx, a.id).await.unwrap().unwrap();
        assert_eq!(
            (got.status, got.upload_reserved),
            (GlanceImageStatus::Queued, 0)
        );
    }

    #[tokio::test]
    async fn lists_show_what_each_project_may_see_and_page_with_a_marker() {
        let (s, _d) = testing::store().await;
        let mut tx = s.begin().await.unwrap();
        let own = image("p", "own", Visibility::Private);
        let public = image("q", "public", Visibility::Public);
        let private = image("q", "private", Visibility::Private);
        let community = image("q", "community", Visibility::Community);
        let shared = image("q", "shared", Visibility::Shared);
        let pending = image("q", "pending", Visibility::Shared);
        for i in [&own, &public, &private, &community, &shared, &pending] {
            glance_image_create(&mut tx, i).await.unwrap();
        }
        glance_member_create(&mut tx, shared.id, "p").await.unwrap();
        glance_member_create(&mut tx, pending.id, "p")
            .await
            .unwrap();
        assert!(
            glance_member_set_status(&mut tx, shared.id, "p", MemberStatus::Accepted)
                .await
                .unwrap()
        );
        let names = |v: Vec<GlanceImage>| {
            let mut n: Vec<String> = v.into_iter().map(|i| i.name.unwrap()).collect();
            n.sort();
            n
        };
        let q = |visibility, member_status| GlanceImageQuery {
            viewer: Some("p".into()),
            visibility,
            member_status,
            ..GlanceImageQuery::default()
        };
        use VisibilityFilter::*;
        let accepted = Some(MemberStatus::Accepted);
        assert_eq!(
            names(
                glance_image_list(&mut tx, &q(Default, accepted))
                    .await
                    .unwrap()
            ),
            ["own", "public", "shared"]
        );
        assert_eq!(
            names(glance_image_list(&mut tx, &q(Default, None)).await.unwrap()),
            ["own", "pending", "public", "shared"]
        );
        assert_eq!(
            names(glance_image_list(&mut tx, &q(All, accepted)).await.unwrap()),
            ["community", "own", "public", "shared"]
        );
        assert_eq!(
            names(
                glance_image_list(&mut tx, &q(Only(Visibility::Private), accepted))
                    .await
                    .unwrap()
            ),
            ["own"]
        );
        assert_eq!(
            names(
                glance_image_list(&mut tx, &q(Only(Visibility::Community), accepted))
                    .await
                    .unwrap()
            ),
            ["community"]
        );
        let admin = GlanceImageQuery::default();
        assert_eq!(glance_image_list(&mut tx, &admin).await.unwrap().len(), 6);
        // Another project's private image is no marker.
        let mut bad = q(Default, accepted);
        bad.marker = Some(private.id);
        assert!(matches!(
            glance_image_list(&mut tx, &bad).await,
            Err(StoreError::MarkerNotFound(_))
        ));
        // Paging by name, two at a time, loses and repeats nothing.
        let mut seen = Vec::new();
        let mut marker = None;
        loop {
            let mut page_q = GlanceImageQuery {
                sort: vec![(SortKey::Name, SortDir::Asc)],
                limit: Some(2),
                marker,
                ..GlanceImageQuery::default()
            };
            page_q.viewer = None;
            let page = glance_image_list(&mut tx, &page_q).await.unwrap();
            if page.is_empty() {
                break;
            }
            marker = page.last().map(|i| i.id);
            seen.extend(page.into_iter().map(|i| i.name.unwrap()));
        }
        assert_eq!(
            seen,
            ["community", "own", "pending", "private", "public", "shared"]
        );
        // Tags and properties filter.
        let mut tagged = q(Default, accepted);
        tagged.tags = vec!["t1".into()];
        tagged.properties = vec![("os".into(), "own".into())];
        assert_eq!(
            names(glance_image_list(&mut tx, &tagged).await.unwrap()),
            ["own"]
        );
    }

    #[tokio::test]
    async fn saving_rewrites_attributes_properties_and_tags_only_in_the_status_read() {
        let (s, _d) = testing::store().await;
        let mut tx = s.begin().await.unwrap();
        let mut i = image("p", "a", Visibility::Private);
        glance_image_create(&mut tx, &i).await.unwrap();
        i.name = Some("b".into());
        i.tags = ["x".to_string(), "y".to_string()].into();
        i.properties = [("k".to_string(), "v".to_string())].into();
        assert!(
            !glance_image_save(&mut tx, &i, GlanceImageStatus::Active)
                .await
                .unwrap()
        );
        assert!(
            glance_image_save(&mut tx, &i, GlanceImageStatus::Queued)
                .await
                .unwrap()
        );
        let got = glance_image_get(&mut tx, i.id).await.unwrap().unwrap();
        assert_eq!(
            (got.name, got.tags, got.properties),
            (i.name, i.tags, i.properties)
        );
        assert!(glance_image_tag_add(&mut tx, i.id, "z").await.unwrap());
        assert!(!glance_image_tag_add(&mut tx, i.id, "z").await.unwrap());
        assert!(glance_image_tag_delete(&mut tx, i.id, "x").await.unwrap());
        assert!(!glance_image_tag_delete(&mut tx, i.id, "x").await.unwrap());
        let got = glance_image_get(&mut tx, i.id).await.unwrap().unwrap();
        assert_eq!(got.tags, ["y".to_string(), "z".to_string()].into());
        assert!(glance_member_create(&mut tx, i.id, "q").await.is_ok());
        assert!(matches!(
            glance_member_create(&mut tx, i.id, "q").await,
            Err(StoreError::Duplicate(_))
        ));
        assert_eq!(glance_member_list(&mut tx, i.id).await.unwrap().len(), 1);
        assert!(glance_member_delete(&mut tx, i.id, "q").await.unwrap());
        assert!(!glance_member_delete(&mut tx, i.id, "q").await.unwrap());
    }
}
