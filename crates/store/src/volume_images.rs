//! Volumes made from the image service's images: the image metadata a volume
//! keeps (Cinder's `volume_image_metadata`), the holds on images being read,
//! and the image cache (one immutable copy of an image's data per backend,
//! which later volumes from the image are overlays on).

use std::collections::BTreeMap;

use scoria_model::{GlanceImageId, ImageId, VolumeId};
use sqlx::Row;

use crate::shared::KeyValues;
use crate::{Conn, Result, now, parse};

const METADATA: KeyValues = KeyValues {
    table: "volume_image_metadata",
    owner: "volume_id",
};

pub async fn volume_image_metadata_get(
    conn: &mut Conn,
    volume: VolumeId,
) -> Result<BTreeMap<String, String>> {
    METADATA.get(conn, &volume.to_string()).await
}

/// The image metadata of each of `volumes`, in one query.
pub async fn volume_image_metadata_get_many(
    conn: &mut Conn,
    volumes: &[VolumeId],
) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
    let ids: Vec<String> = volumes.iter().map(ToString::to_string).collect();
    METADATA.get_many(conn, &ids).await
}

pub async fn volume_image_metadata_merge(
    conn: &mut Conn,
    volume: VolumeId,
    items: &BTreeMap<String, String>,
) -> Result<()> {
    METADATA.merge(conn, &volume.to_string(), items).await
}

pub async fn volume_image_metadata_delete(
    conn: &mut Conn,
    volume: VolumeId,
    key: &str,
) -> Result<bool> {
    METADATA.delete(conn, &volume.to_string(), key).await
}

/// Record which image a volume is made from (in the create flow's entry
/// transaction).
pub async fn volume_set_glance_image(
    conn: &mut Conn,
    volume: VolumeId,
    image: GlanceImageId,
) -> Result<bool> {
    let r = sqlx::query("UPDATE volumes SET glance_image_id = $2 WHERE id = $1")
        .bind(volume.to_string())
        .bind(image.to_string())
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Hold an image a new volume is about to read: succeeds (true) only while
/// it is `active`. It changes nothing but writes the row (see
/// `volumes::volume_hold_for_read`): a delete asks [`glance_image_readers`] in
/// its own transaction, so one of the two sees the other.
pub async fn glance_image_hold_for_read(conn: &mut Conn, image: GlanceImageId) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE glance_images SET updated_at = updated_at WHERE id = $1 AND status = 'active'",
    )
    .bind(image.to_string())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The volumes being made from `image` now (their data is read from its
/// file): the image service does not delete it meanwhile.
pub async fn glance_image_readers(conn: &mut Conn, image: GlanceImageId) -> Result<Vec<VolumeId>> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM volumes WHERE glance_image_id = $1
           AND status IN ('creating', 'downloading') ORDER BY id",
    )
    .bind(image.to_string())
    .fetch_all(conn)
    .await?;
    rows.iter().map(|s| parse("volume id", s)).collect()
}

/// One entry of the image cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheEntry {
    pub glance_image_id: GlanceImageId,
    pub backend: String,
    /// The immutable image holding the data.
    pub image_id: ImageId,
    pub created_at: String,
    pub last_used_at: String,
    /// Virtual size of the cached image (bytes).
    pub virtual_size: i64,
    /// Whether the cached image is complete (`ready`) and frozen.
    pub ready: bool,
    /// How many images are layered on it now.
    pub overlays: i64,
}

const ENTRY: &str = "SELECT k.glance_image_id, k.backend, k.image_id, k.created_at, k.last_used_at,
        i.virtual_size, (i.state = 'ready' AND NOT i.mutable) AS ready,
        (SELECT COUNT(*) FROM images o WHERE o.base_id = k.image_id) AS overlays
     FROM image_cache k JOIN images i ON i.id = k.image_id";

fn entry(r: &sqlx::sqlite::SqliteRow) -> Result<CacheEntry> {
    Ok(CacheEntry {
        glance_image_id: parse("image id", r.try_get::<&str, _>("glance_image_id")?)?,
        backend: r.try_get("backend")?,
        image_id: parse("image id", r.try_get::<&str, _>("image_id")?)?,
        created_at: r.try_get("created_at")?,
        last_used_at: r.try_get("last_used_at")?,
        virtual_size: r.try_get("virtual_size")?,
        ready: r.try_get("ready")?,
        overlays: r.try_get("overlays")?,
    })
}

/// The cache entry of `image` on `backend`.
pub async fn cache_get(
    conn: &mut Conn,
    image: GlanceImageId,
    backend: &str,
) -> Result<Option<CacheEntry>> {
    sqlx::query(&format!(
        "{ENTRY} WHERE k.glance_image_id = $1 AND k.backend = $2"
    ))
    .bind(image.to_string())
    .bind(backend)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(entry)
    .transpose()
}

/// The entries of a backend, least recently used first.
pub async fn cache_list(conn: &mut Conn, backend: &str) -> Result<Vec<CacheEntry>> {
    sqlx::query(&format!(
        "{ENTRY} WHERE k.backend = $1 ORDER BY k.last_used_at, k.glance_image_id"
    ))
    .bind(backend)
    .fetch_all(conn)
    .await?
    .iter()
    .map(entry)
    .collect()
}

/// Every entry of every backend (checks and tools).
pub async fn cache_list_all(conn: &mut Conn) -> Result<Vec<CacheEntry>> {
    sqlx::query(&format!("{ENTRY} ORDER BY k.backend, k.last_used_at"))
        .fetch_all(conn)
        .await?
        .iter()
        .map(entry)
        .collect()
}

/// Record a new entry (its image recorded by the caller in the same
/// transaction); an entry for that image and backend already there is `false`.
pub async fn cache_create(
    conn: &mut Conn,
    image: GlanceImageId,
    backend: &str,
    data: ImageId,
) -> Result<bool> {
    let t = now();
    let r = sqlx::query(
        "INSERT INTO image_cache (glance_image_id, backend, image_id, created_at, last_used_at)
         VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING",
    )
    .bind(image.to_string())
    .bind(backend)
    .bind(data.to_string())
    .bind(&t)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Mark an entry used now (a volume was made from it).
pub async fn cache_touch(conn: &mut Conn, image: GlanceImageId, backend: &str) -> Result<()> {
    sqlx::query(
        "UPDATE image_cache SET last_used_at = $3 WHERE glance_image_id = $1 AND backend = $2",
    )
    .bind(image.to_string())
    .bind(backend)
    .bind(now())
    .execute(conn)
    .await?;
    Ok(())
}

/// Drop an entry (eviction, or its creation undone). Its image stays while
/// anything else uses it; the reaper frees it after.
pub async fn cache_delete(conn: &mut Conn, image: GlanceImageId, backend: &str) -> Result<bool> {
    let r = sqlx::query("DELETE FROM image_cache WHERE glance_image_id = $1 AND backend = $2")
        .bind(image.to_string())
        .bind(backend)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Drop every entry of `image` (the image service deleted it: no new volume
/// can be made from it; the volumes made already keep their data).
pub async fn cache_delete_for_glance_image(conn: &mut Conn, image: GlanceImageId) -> Result<u64> {
    let r = sqlx::query("DELETE FROM image_cache WHERE glance_image_id = $1")
        .bind(image.to_string())
        .execute(conn)
        .await?;
    Ok(r.rows_affected())
}
