//! Images: the records of the bytes on the backends (VDSM's images).
//!
//! An image row names one file (later: one RBD image) on one backend by the
//! driver's name for it, with its format, virtual size, the image it is
//! layered on (`base_id`) and whether it may still change. A volume points at
//! its active image (`volumes.image_id`).
//!
//! Who uses an image is computed, never counted: [`image_users`] reads the
//! rows that refer to it (overlays layered on it, volumes whose active image
//! it is, snapshots that captured it). A later resource that uses images (snapshots, attachments, cached
//! images, backups in progress) adds its own rows and its own arm of that
//! query, so a use can never be forgotten by a counter that drifted.

use scoria_model::image::{ImageFormat, ImageHealth, ImageState};
use scoria_model::{ImageId, SnapshotId, VolumeId};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::{Conn, Result, StoreError, now, parse};

/// An image as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    pub id: ImageId,
    pub backend: String,
    /// The driver's name for it (a file name carrying the format).
    pub name: String,
    pub format: ImageFormat,
    /// Bytes.
    pub virtual_size: i64,
    /// The image this one is layered on.
    pub base_id: Option<ImageId>,
    pub mutable: bool,
    pub state: ImageState,
    pub health: ImageHealth,
    pub health_reason: Option<String>,
    pub created_at: String,
    pub updated_at: Option<String>,
}

/// What a flow records before it makes an image's data.
#[derive(Clone, Debug)]
pub struct NewImage {
    pub id: ImageId,
    pub backend: String,
    pub name: String,
    pub format: ImageFormat,
    pub virtual_size: i64,
    pub base_id: Option<ImageId>,
    pub mutable: bool,
    pub state: ImageState,
}

/// One use of an image, as the rows that refer to it say.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ImageUser {
    /// An image layered on it.
    Overlay(ImageId),
    /// A volume whose active image it is.
    Volume(VolumeId),
    /// A snapshot that captured it.
    Snapshot(SnapshotId),
    /// The image cache: it holds the data of this image service's image on
    /// this backend.
    Cache(String),
    /// An unmanaged snapshot's data, kept under this name (`snapshot-<id>`)
    /// until a manage brings it back or its volume goes (migration 0025).
    Unmanaged(String),
}

/// Who the user is, in words (the repository check's and the refusals').
impl std::fmt::Display for ImageUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageUser::Overlay(o) => write!(f, "image {o} (an overlay on it)"),
            ImageUser::Volume(v) => write!(f, "volume {v}"),
            ImageUser::Snapshot(s) => write!(f, "snapshot {s}"),
            ImageUser::Cache(g) => write!(f, "the image cache (image {g})"),
            ImageUser::Unmanaged(n) => write!(f, "the unmanaged snapshot {n}"),
        }
    }
}

fn from_row(r: &SqliteRow) -> Result<Image> {
    Ok(Image {
        id: parse("image id", r.try_get::<&str, _>("id")?)?,
        backend: r.try_get("backend")?,
        name: r.try_get("name")?,
        format: parse("image format", r.try_get::<&str, _>("format")?)?,
        virtual_size: r.try_get("virtual_size")?,
        base_id: r
            .try_get::<Option<&str>, _>("base_id")?
            .map(|s| parse("image id", s))
            .transpose()?,
        mutable: r.try_get("mutable")?,
        state: parse("image state", r.try_get::<&str, _>("state")?)?,
        health: parse("image health", r.try_get::<&str, _>("health")?)?,
        health_reason: r.try_get("health_reason")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// Record a new image (healthy: `optimized`). An image with that id, or with
/// that name on that backend, already present is `Duplicate`.
pub async fn image_create(conn: &mut Conn, i: &NewImage) -> Result<()> {
    let r = sqlx::query(
        "INSERT INTO images (id, backend, name, format, virtual_size, base_id, mutable, state,
                             health, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'optimized', $9)
         ON CONFLICT DO NOTHING",
    )
    .bind(i.id.to_string())
    .bind(&i.backend)
    .bind(&i.name)
    .bind(i.format.as_str())
    .bind(i.virtual_size)
    .bind(i.base_id.map(|b| b.to_string()))
    .bind(i.mutable)
    .bind(i.state.as_str())
    .bind(now())
    .execute(conn)
    .await?;
    if r.rows_affected() == 0 {
        return Err(StoreError::Duplicate(format!(
            "image {} ({} on {})",
            i.id, i.name, i.backend
        )));
    }
    Ok(())
}

pub async fn image_get(conn: &mut Conn, id: ImageId) -> Result<Option<Image>> {
    sqlx::query("SELECT * FROM images WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// Every image, by backend and name (checks and tools).
pub async fn image_list_all(conn: &mut Conn) -> Result<Vec<Image>> {
    sqlx::query("SELECT * FROM images ORDER BY backend, name")
        .fetch_all(conn)
        .await?
        .iter()
        .map(from_row)
        .collect()
}

/// The images of one backend, by name.
pub async fn image_list_on_backend(conn: &mut Conn, backend: &str) -> Result<Vec<Image>> {
    sqlx::query("SELECT * FROM images WHERE backend = $1 ORDER BY name")
        .bind(backend)
        .fetch_all(conn)
        .await?
        .iter()
        .map(from_row)
        .collect()
}

/// Move an image to `to` if it is in one of `from`; reports whether it did.
pub async fn image_set_state(
    conn: &mut Conn,
    id: ImageId,
    from: &[ImageState],
    to: ImageState,
) -> Result<bool> {
    let mut sql = String::from("UPDATE images SET state = $2, updated_at = $3 WHERE id = $1");
    if !from.is_empty() {
        let params: Vec<String> = (0..from.len()).map(|i| format!("${}", i + 4)).collect();
        sql.push_str(&format!(" AND state IN ({})", params.join(", ")));
    }
    let mut q = sqlx::query(&sql)
        .bind(id.to_string())
        .bind(to.as_str())
        .bind(now());
    for s in from {
        q = q.bind(s.as_str());
    }
    Ok(q.execute(conn).await?.rows_affected() == 1)
}

/// Record an image's new virtual size (bytes), while it is mutable.
pub async fn image_set_size(conn: &mut Conn, id: ImageId, virtual_size: i64) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE images SET virtual_size = $2, updated_at = $3 WHERE id = $1 AND mutable",
    )
    .bind(id.to_string())
    .bind(virtual_size)
    .bind(now())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Record an image's health (and why, when it is not `optimized`).
pub async fn image_set_health(
    conn: &mut Conn,
    id: ImageId,
    health: ImageHealth,
    reason: Option<&str>,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE images SET health = $2, health_reason = $3, updated_at = $4 WHERE id = $1",
    )
    .bind(id.to_string())
    .bind(health.as_str())
    .bind(reason)
    .bind(now())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Put the image `id` on `to` (or on nothing) instead of `from`, only while
/// it stands on `from`: after its file was made to read the same on `to` (a
/// merge). `false` when it did not stand on `from`. The old base becomes a
/// candidate for the reaper (trigger `images_unref_base_moved`).
pub async fn image_set_base(
    conn: &mut Conn,
    id: ImageId,
    from: ImageId,
    to: Option<ImageId>,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE images SET base_id = $3, updated_at = $4 WHERE id = $1 AND base_id = $2",
    )
    .bind(id.to_string())
    .bind(from.to_string())
    .bind(to.map(|t| t.to_string()))
    .bind(now())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Record that an image can no longer change (its data was frozen by the
/// driver): from now on other images may be layered on it.
pub async fn image_freeze(conn: &mut Conn, id: ImageId) -> Result<bool> {
    image_set_mutable(conn, id, false).await
}

async fn image_set_mutable(conn: &mut Conn, id: ImageId, mutable: bool) -> Result<bool> {
    let r = sqlx::query("UPDATE images SET mutable = $2, updated_at = $3 WHERE id = $1")
        .bind(id.to_string())
        .bind(mutable)
        .bind(now())
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// No row refers to image `i` (a condition on an image aliased `i`).
const UNUSED: &str = "NOT EXISTS (SELECT 1 FROM images o WHERE o.base_id = i.id)
       AND NOT EXISTS (SELECT 1 FROM volumes v WHERE v.image_id = i.id)
       AND NOT EXISTS (SELECT 1 FROM snapshots s WHERE s.image_id = i.id)
       AND NOT EXISTS (SELECT 1 FROM image_cache k WHERE k.image_id = i.id)
       AND NOT EXISTS (SELECT 1 FROM unmanaged_snapshots m WHERE m.image_id = i.id)";

async fn list(conn: &mut Conn, sql: &str) -> Result<Vec<Image>> {
    sqlx::query(sql)
        .fetch_all(conn)
        .await?
        .iter()
        .map(from_row)
        .collect()
}

/// Images no row refers to any more, `ready` or already `deleting`: garbage
/// for the reaper. An image still `creating` belongs to the flow making it
/// (whose undo removes it) and is never listed. A scan of every image: the
/// reaper's safety net (at open and on its timer); its routine pass reads
/// [`image_list_unused_candidates`].
pub async fn image_list_unused(conn: &mut Conn) -> Result<Vec<Image>> {
    let sql = format!(
        "SELECT i.* FROM images i WHERE i.state IN ('ready', 'deleting') AND {UNUSED}
         ORDER BY i.backend, i.name"
    );
    list(conn, &sql).await
}

/// [`image_list_unused`] among the candidates only (`image_unref`, migration
/// 0022: new images and images that lost a user): costs what changed since
/// the last [`image_unref_prune`], whatever the number of images.
pub async fn image_list_unused_candidates(conn: &mut Conn) -> Result<Vec<Image>> {
    // CROSS JOIN: SQLite then keeps the candidates as the outer loop (with a
    // plain JOIN and no statistics it scans every image and probes
    // `image_unref`, the cost this function exists to avoid).
    let sql = format!(
        "SELECT i.* FROM image_unref u CROSS JOIN images i ON i.id = u.image_id
         WHERE i.state IN ('ready', 'deleting') AND {UNUSED}
         ORDER BY i.backend, i.name"
    );
    list(conn, &sql).await
}

/// Unused images (as [`image_list_unused`] lists them) that are not
/// candidates: the reaper's routine pass would never free them (the check).
pub async fn image_list_unused_not_candidates(conn: &mut Conn) -> Result<Vec<Image>> {
    let sql = format!(
        "SELECT i.* FROM images i WHERE i.state IN ('ready', 'deleting') AND {UNUSED}
           AND NOT EXISTS (SELECT 1 FROM image_unref u WHERE u.image_id = i.id)
         ORDER BY i.backend, i.name"
    );
    list(conn, &sql).await
}

/// The candidates, whatever their images' use (checks and tests).
pub async fn image_unref_list(conn: &mut Conn) -> Result<Vec<ImageId>> {
    let ids: Vec<String> = sqlx::query_scalar("SELECT image_id FROM image_unref ORDER BY image_id")
        .fetch_all(conn)
        .await?;
    ids.iter().map(|s| parse("image id", s)).collect()
}

/// Drop the candidates that are settled: images gone, or used. One statement
/// (run it in a write transaction), deciding on what is committed now — never
/// on what a caller read before — so a candidate whose last user went after
/// the caller's last look stays, and so does an unused image still `creating`
/// (its flow gives it a user, which prunes it next time, or removes it, which
/// drops its row). Returns how many went.
pub async fn image_unref_prune(conn: &mut Conn) -> Result<u64> {
    let r = sqlx::query(
        "DELETE FROM image_unref AS u WHERE
           NOT EXISTS (SELECT 1 FROM images i WHERE i.id = u.image_id)
           OR EXISTS (SELECT 1 FROM images o WHERE o.base_id = u.image_id)
           OR EXISTS (SELECT 1 FROM volumes v WHERE v.image_id = u.image_id)
           OR EXISTS (SELECT 1 FROM snapshots s WHERE s.image_id = u.image_id)
           OR EXISTS (SELECT 1 FROM image_cache k WHERE k.image_id = u.image_id)
           OR EXISTS (SELECT 1 FROM unmanaged_snapshots m WHERE m.image_id = u.image_id)",
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}

/// One row of the users' queries below: the kind of row, and its id.
fn user_of(kind: &str, id: &str) -> Result<ImageUser> {
    Ok(match kind {
        "overlay" => ImageUser::Overlay(parse("image id", id)?),
        "snapshot" => ImageUser::Snapshot(parse("snapshot id", id)?),
        "cache" => ImageUser::Cache(id.to_owned()),
        "unmanaged" => ImageUser::Unmanaged(id.to_owned()),
        _ => ImageUser::Volume(parse("volume id", id)?),
    })
}

/// Who uses an image, one entry per row that refers to it.
pub async fn image_users(conn: &mut Conn, id: ImageId) -> Result<Vec<ImageUser>> {
    let rows = sqlx::query(
        "SELECT 'overlay' AS kind, id FROM images WHERE base_id = $1
         UNION ALL
         SELECT 'volume' AS kind, id FROM volumes WHERE image_id = $1
         UNION ALL
         SELECT 'snapshot' AS kind, id FROM snapshots WHERE image_id = $1
         UNION ALL
         SELECT 'cache' AS kind, glance_image_id AS id FROM image_cache WHERE image_id = $1
         UNION ALL
         SELECT 'unmanaged' AS kind, name AS id FROM unmanaged_snapshots WHERE image_id = $1",
    )
    .bind(id.to_string())
    .fetch_all(conn)
    .await?;
    let mut users = rows
        .iter()
        .map(|r| {
            let id: &str = r.try_get("id")?;
            user_of(r.try_get("kind")?, id)
        })
        .collect::<Result<Vec<_>>>()?;
    users.sort();
    Ok(users)
}

/// [`image_users`] of every image of `backend`, in one query (the
/// repository check). Images nothing uses are absent from the map.
pub async fn image_users_on_backend(
    conn: &mut Conn,
    backend: &str,
) -> Result<std::collections::BTreeMap<ImageId, Vec<ImageUser>>> {
    let rows = sqlx::query(
        "SELECT i.id AS image, 'overlay' AS kind, o.id AS id
           FROM images i JOIN images o ON o.base_id = i.id WHERE i.backend = $1
         UNION ALL
         SELECT i.id, 'volume', v.id
           FROM images i JOIN volumes v ON v.image_id = i.id WHERE i.backend = $1
         UNION ALL
         SELECT i.id, 'snapshot', s.id
           FROM images i JOIN snapshots s ON s.image_id = i.id WHERE i.backend = $1
         UNION ALL
         SELECT i.id, 'cache', k.glance_image_id
           FROM images i JOIN image_cache k ON k.image_id = i.id WHERE i.backend = $1
         UNION ALL
         SELECT i.id, 'unmanaged', m.name
           FROM images i JOIN unmanaged_snapshots m ON m.image_id = i.id WHERE i.backend = $1",
    )
    .bind(backend)
    .fetch_all(conn)
    .await?;
    let mut out: std::collections::BTreeMap<ImageId, Vec<ImageUser>> = Default::default();
    for r in &rows {
        let image: ImageId = parse("image id", r.try_get::<&str, _>("image")?)?;
        let id: &str = r.try_get("id")?;
        let user = user_of(r.try_get("kind")?, id)?;
        out.entry(image).or_default().push(user);
    }
    for users in out.values_mut() {
        users.sort();
    }
    Ok(out)
}

/// Mark an unused image `deleting`, only while nothing uses it (checked in
/// the same statement); reports whether it did.
pub async fn image_mark_garbage(conn: &mut Conn, id: ImageId) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE images SET state = 'deleting', updated_at = $2
         WHERE id = $1 AND state IN ('ready', 'deleting')
           AND NOT EXISTS (SELECT 1 FROM images o WHERE o.base_id = $1)
           AND NOT EXISTS (SELECT 1 FROM volumes v WHERE v.image_id = $1)
           AND NOT EXISTS (SELECT 1 FROM snapshots s WHERE s.image_id = $1)
           AND NOT EXISTS (SELECT 1 FROM image_cache k WHERE k.image_id = $1)
           AND NOT EXISTS (SELECT 1 FROM unmanaged_snapshots m WHERE m.image_id = $1)",
    )
    .bind(id.to_string())
    .bind(now())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Remove an image's record, only once nothing uses it; reports whether it
/// went. An absent image is `false`.
pub async fn image_delete(conn: &mut Conn, id: ImageId) -> Result<bool> {
    let r = sqlx::query(
        "DELETE FROM images WHERE id = $1
           AND NOT EXISTS (SELECT 1 FROM images o WHERE o.base_id = $1)
           AND NOT EXISTS (SELECT 1 FROM volumes v WHERE v.image_id = $1)
           AND NOT EXISTS (SELECT 1 FROM snapshots s WHERE s.image_id = $1)
           AND NOT EXISTS (SELECT 1 FROM image_cache k WHERE k.image_id = $1)
           AND NOT EXISTS (SELECT 1 FROM unmanaged_snapshots m WHERE m.image_id = $1)",
    )
    .bind(id.to_string())
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// An image's health and the depth of its chain (itself included), as the
/// opt-in status views show them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageStatus {
    pub health: ImageHealth,
    pub reason: Option<String>,
    pub depth: i64,
}

/// [`ImageStatus`] of each of `ids`, in one query (a recursive walk down each
/// chain). Absent images are absent from the map.
pub async fn image_status_many(
    conn: &mut Conn,
    ids: &[ImageId],
) -> Result<std::collections::BTreeMap<ImageId, ImageStatus>> {
    let mut out = std::collections::BTreeMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let sql = "WITH RECURSIVE chain (top, id, depth) AS (
             SELECT id, id, 1 FROM images WHERE id IN (SELECT value FROM json_each($1))
             UNION ALL
             SELECT chain.top, images.base_id, chain.depth + 1
             FROM chain JOIN images ON images.id = chain.id
             WHERE images.base_id IS NOT NULL AND chain.depth < 1000
         )
         SELECT i.id, i.health, i.health_reason, MAX(chain.depth) AS depth
         FROM chain JOIN images i ON i.id = chain.top
         GROUP BY i.id, i.health, i.health_reason";
    let q = sqlx::query(sql).bind(crate::shared::id_list(ids));
    for r in q.fetch_all(conn).await? {
        out.insert(
            parse("image id", r.try_get::<&str, _>("id")?)?,
            ImageStatus {
                health: parse("image health", r.try_get::<&str, _>("health")?)?,
                reason: r.try_get("health_reason")?,
                depth: r.try_get("depth")?,
            },
        );
    }
    Ok(out)
}

/// The images layered directly on `id`.
pub async fn image_overlays(conn: &mut Conn, id: ImageId) -> Result<Vec<Image>> {
    sqlx::query("SELECT * FROM images WHERE base_id = $1 ORDER BY created_at, id")
        .bind(id.to_string())
        .fetch_all(conn)
        .await?
        .iter()
        .map(from_row)
        .collect()
}

/// The chain of an image, top first: the image, the one it is layered on, and
/// so on. A chain that loops or names a missing image is `Corrupt`.
pub async fn image_chain(conn: &mut Conn, id: ImageId) -> Result<Vec<Image>> {
    let mut chain: Vec<Image> = Vec::new();
    let mut next = Some(id);
    while let Some(id) = next {
        if chain.iter().any(|i| i.id == id) {
            return Err(StoreError::Corrupt(format!("image chain loops at {id}")));
        }
        let image = image_get(&mut *conn, id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("image chain names missing image {id}")))?;
        next = image.base_id;
        chain.push(image);
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    fn new(id: ImageId, name: &str, base: Option<ImageId>) -> NewImage {
        NewImage {
            id,
            backend: "file".into(),
            name: name.into(),
            format: ImageFormat::Qcow2,
            virtual_size: 1 << 30,
            base_id: base,
            mutable: base.is_some(),
            state: ImageState::Ready,
        }
    }

    #[tokio::test]
    async fn users_are_the_rows_that_refer_to_an_image() {
        let (store, _dir) = testing::store().await;
        let mut tx = store.begin().await.expect("begin");
        let (base, top, other) = (ImageId::new(), ImageId::new(), ImageId::new());
        image_create(&mut tx, &new(base, "image-base.qcow2", None))
            .await
            .expect("base");
        image_create(&mut tx, &new(top, "image-top.qcow2", Some(base)))
            .await
            .expect("top");
        image_create(&mut tx, &new(other, "image-other.qcow2", Some(base)))
            .await
            .expect("other");
        // A second record for a name already used on the backend is refused.
        let dup = image_create(&mut tx, &new(ImageId::new(), "image-top.qcow2", None)).await;
        assert!(matches!(dup, Err(StoreError::Duplicate(_))), "{dup:?}");

        let mut users = vec![ImageUser::Overlay(top), ImageUser::Overlay(other)];
        users.sort();
        assert_eq!(image_users(&mut tx, base).await.expect("users"), users);
        assert_eq!(image_users(&mut tx, top).await.expect("users"), []);
        let on_backend = image_users_on_backend(&mut tx, "file").await.expect("bulk");
        assert_eq!((on_backend.len(), on_backend.get(&base)), (1, Some(&users)));
        assert!(
            image_users_on_backend(&mut tx, "other")
                .await
                .expect("bulk")
                .is_empty()
        );
        let chain: Vec<ImageId> = image_chain(&mut tx, top)
            .await
            .expect("chain")
            .iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(chain, [top, base]);

        // Depths are counted down each chain, in one query.
        let status = image_status_many(&mut tx, &[base, top, ImageId::new()])
            .await
            .expect("status");
        assert_eq!(
            (status.len(), status[&base].depth, status[&top].depth),
            (2, 1, 2)
        );
        assert_eq!(status[&top].health, ImageHealth::Optimized);
        let overlays: Vec<ImageId> = image_overlays(&mut tx, base)
            .await
            .expect("overlays")
            .iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(overlays.len(), 2);
        assert!(overlays.contains(&top) && overlays.contains(&other));

        // A used image stays; once its users are gone it goes.
        assert!(!image_delete(&mut tx, base).await.expect("delete"));
        assert!(image_delete(&mut tx, top).await.expect("delete"));
        assert!(image_delete(&mut tx, other).await.expect("delete"));
        assert!(image_delete(&mut tx, base).await.expect("delete"));
        assert!(!image_delete(&mut tx, base).await.expect("delete again"));
        tx.commit().await.expect("commit");
    }

    #[tokio::test]
    async fn states_sizes_and_health_change_conditionally() {
        let (store, _dir) = testing::store().await;
        let mut tx = store.begin().await.expect("begin");
        let id = ImageId::new();
        image_create(
            &mut tx,
            &NewImage {
                mutable: true,
                state: ImageState::Creating,
                ..new(id, "image-a.raw", None)
            },
        )
        .await
        .expect("create");
        assert!(
            !image_set_state(&mut tx, id, &[ImageState::Ready], ImageState::Deleting)
                .await
                .expect("set")
        );
        assert!(
            image_set_state(&mut tx, id, &[ImageState::Creating], ImageState::Ready)
                .await
                .expect("set")
        );
        assert!(image_set_size(&mut tx, id, 2 << 30).await.expect("size"));
        assert!(
            image_set_health(&mut tx, id, ImageHealth::Degraded, Some("chain too deep"))
                .await
                .expect("health")
        );
        let i = image_get(&mut tx, id).await.expect("get").expect("present");
        assert_eq!(
            (
                i.state,
                i.virtual_size,
                i.health,
                i.health_reason.as_deref()
            ),
            (
                ImageState::Ready,
                2 << 30,
                ImageHealth::Degraded,
                Some("chain too deep")
            )
        );
        tx.commit().await.expect("commit");
    }
}
