//! Uploads and downloads: the request's body streamed into the image store
//! (hashed and checked against the limits on the way), and an image's file
//! streamed back out. See the module doc of `image_service` for why an
//! upload is not a flow and what happens when one is interrupted.

use futures::{Stream, StreamExt};
use scoria_model::GlanceImageId;
use scoria_model::glance::{GlanceImageStatus, HASH_ALGO};
use scoria_storage::image_store::{DynImageStore, ObjectReader, ObjectWriter};
use scoria_store::Store;
use scoria_store::glance::{self as store, UploadedData};

use super::{GlanceImage, authorize, modifiable, not_found, over_quota, visible};
use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result};

/// How far ahead of what it received an upload without a `Content-Length`
/// reserves quota (one write transaction per step).
const RESERVE_STEP: u64 = 64 << 20;

/// The body of an upload: chunks of bytes, or the error that cut it off.
pub trait UploadBody:
    Stream<Item = std::result::Result<Self::Chunk, Self::Error>> + Unpin + Send
{
    type Chunk: AsRef<[u8]> + Send;
    type Error: std::error::Error + Send + Sync + 'static;
}

impl<S, C, E> UploadBody for S
where
    S: Stream<Item = std::result::Result<C, E>> + Unpin + Send,
    C: AsRef<[u8]> + Send,
    E: std::error::Error + Send + Sync + 'static,
{
    type Chunk = C;
    type Error = E;
}

/// Upload an image's data (`PUT …/file`): `queued` → `saving` → `active`.
/// `announced` is the request's `Content-Length`, if it had one.
pub async fn upload<B: UploadBody>(
    app: &App,
    ctx: &Context,
    id: GlanceImageId,
    announced: Option<u64>,
    body: B,
) -> Result<GlanceImage> {
    authorize(ctx, Op::ImageUpload)?;
    let limits = &app.config.image_service;
    let mut tx = app.store().begin().await?;
    let i = modifiable(&mut tx, ctx, id, "upload_image").await?;
    if i.status != GlanceImageStatus::Queued {
        return Err(Error::Conflict(format!(
            "Image status transition from {} to saving is not allowed",
            i.status
        )));
    }
    if i.disk_format.is_none() || i.container_format.is_none() {
        return Err(Error::Invalid(
            "Properties disk_format, container_format must be set prior to saving data.".into(),
        ));
    }
    if let Some(n) = announced
        && n > limits.max_image_size
    {
        return Err(too_large(limits.max_image_size));
    }
    let first = announced.unwrap_or(RESERVE_STEP).min(limits.max_image_size);
    let used = used(&mut tx, &i.owner, id).await?;
    let first = match announced {
        // An announced size over the quota is refused before a byte is read.
        Some(n) if used.saturating_add(n) > limits.image_size_total => {
            return Err(over_quota(limits.image_size_total, used, n));
        }
        Some(_) => first,
        None => first.min(limits.image_size_total.saturating_sub(used)),
    };
    if !store::glance_image_begin_upload(&mut tx, id, first as i64).await? {
        return Err(Error::Conflict(format!(
            "Image status transition from {} to saving is not allowed",
            i.status
        )));
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;

    // From here on the image is `saving` and this request owns it: every way
    // out puts it back to `queued` unless the upload completed, including a
    // request dropped mid-stream (the guard).
    let mut guard = Guard {
        store: Some(app.store().clone()),
        objects: app.env.image_store.clone(),
        id,
    };
    let outcome = stream_in(app, &i.owner, id, first, body).await;
    let result = match outcome {
        Ok(data) => finish(app, id, &data).await,
        Err(e) => Err(e),
    };
    let undo = guard.store.take();
    if result.is_err()
        && let Some(s) = undo
    {
        // No file may stay for an image that is not `active`: the stream may
        // have failed after its object was committed.
        if let Err(e) = app.env.image_store.delete(&id.to_string()).await {
            tracing::warn!(image = %id, error = %e, "a failed upload's file could not be removed; the next start removes it");
        }
        abort(&s, id).await;
    }
    let image = result?;
    tracing::info!(image = %id, size = image.size, "image uploaded");
    Ok(image)
}

/// Mark the upload done; on failure, remove the file it committed.
async fn finish(app: &App, id: GlanceImageId, data: &UploadedData) -> Result<GlanceImage> {
    let marked = async {
        let mut tx = app.store().begin().await?;
        if !store::glance_image_finish_upload(&mut tx, id, data).await? {
            return Err(Error::Conflict(format!(
                "Image {id} is no longer being uploaded."
            )));
        }
        let i = store::glance_image_get(&mut tx, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        tx.commit().await.map_err(scoria_store::StoreError::from)?;
        Ok(i)
    }
    .await;
    if marked.is_err() {
        // The row does not say `active`: its file must not stay (the next
        // start would remove it too).
        let _ = app.env.image_store.delete(&id.to_string()).await;
    }
    marked
}

/// What an interrupted upload leaves: the image `queued` again, no quota held.
async fn abort(s: &Store, id: GlanceImageId) {
    let undone = async {
        let mut tx = s.begin().await?;
        store::glance_image_abort_upload(&mut tx, id).await?;
        tx.commit().await.map_err(scoria_store::StoreError::from)?;
        Ok::<_, scoria_store::StoreError>(())
    }
    .await;
    if let Err(e) = undone {
        tracing::error!(image = %id, error = %e, "an upload could not be undone; the next start undoes it");
    }
}

/// Puts the image back to `queued` if the request is dropped mid-upload:
/// first its file goes (the drop may come after the file was committed),
/// then the row, so that no new upload starts before the file is gone.
struct Guard {
    store: Option<Store>,
    objects: DynImageStore,
    id: GlanceImageId,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(s) = self.store.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let (id, objects) = (self.id, self.objects.clone());
            tracing::warn!(image = %id, "an upload was cut off; the image is queued again");
            rt.spawn(async move {
                if let Err(e) = objects.delete(&id.to_string()).await {
                    tracing::warn!(image = %id, error = %e, "a cut-off upload's file could not be removed; the next start removes it");
                }
                abort(&s, id).await;
            });
        }
    }
}

async fn used(conn: &mut scoria_store::Conn, owner: &str, id: GlanceImageId) -> Result<u64> {
    Ok(store::glance_image_usage(conn, owner, Some(id))
        .await?
        .max(0) as u64)
}

fn too_large(limit: u64) -> Error {
    Error::TooLarge(format!(
        "The incoming image is too large: the largest image this server accepts is {limit} bytes."
    ))
}

/// Stream the body into a new object, hashing it and holding quota ahead of
/// it; returns what it learned once the object is committed.
async fn stream_in<B: UploadBody>(
    app: &App,
    owner: &str,
    id: GlanceImageId,
    mut reserved: u64,
    mut body: B,
) -> Result<UploadedData> {
    let limits = &app.config.image_service;
    let objects: &DynImageStore = &app.env.image_store;
    let name = id.to_string();
    let storage = |e| Error::internal("The image store failed to store the image.", e);
    // A file a failed attempt could not remove is in the way of this one;
    // this request owns the image (`saving`), so nobody else writes it.
    objects.delete(&name).await.map_err(storage)?;
    let mut writer: Box<dyn ObjectWriter> = objects.create(&name).await.map_err(storage)?;
    let mut hasher = scoria_digest::ImageHasher::new();
    let mut received: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            Error::Invalid(format!(
                "The image data could not be read from the request: {e}"
            ))
        })?;
        let bytes = chunk.as_ref();
        received += bytes.len() as u64;
        if received > limits.max_image_size {
            return Err(too_large(limits.max_image_size));
        }
        if received > reserved {
            reserved = reserve(app.store(), limits.image_size_total, owner, id, received).await?;
        }
        hasher.update(bytes);
        writer.write(bytes).await.map_err(|e| match e {
            scoria_storage::StorageError::NoSpace => {
                Error::TooLarge("Image storage media is full.".into())
            }
            e => storage(e),
        })?;
    }
    let size = writer.commit().await.map_err(storage)?;
    let digest = hasher.finish();
    Ok(UploadedData {
        size: size as i64,
        checksum: digest.md5,
        os_hash_algo: HASH_ALGO.to_owned(),
        os_hash_value: digest.sha512,
    })
}

/// Hold at least `needed` bytes for the upload (a step more when the quota
/// allows), or refuse it: 413 once `needed` would pass the project's limit.
async fn reserve(
    s: &Store,
    limit: u64,
    owner: &str,
    id: GlanceImageId,
    needed: u64,
) -> Result<u64> {
    let mut tx = s.begin().await?;
    let used = used(&mut tx, owner, id).await?;
    if used.saturating_add(needed) > limit {
        return Err(over_quota(limit, used, needed));
    }
    let ahead = needed
        .saturating_add(RESERVE_STEP)
        .min(limit.saturating_sub(used))
        .max(needed);
    if !store::glance_image_reserve(&mut tx, id, ahead as i64).await? {
        return Err(Error::Conflict(format!(
            "Image {id} is no longer being uploaded."
        )));
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(ahead)
}

/// What a download reads.
pub struct Download {
    pub image: GlanceImage,
    /// `None`: the image has no data (Glance answers 204).
    pub data: Option<ObjectReader>,
    /// Where the bytes start and how many there are.
    pub offset: u64,
    pub len: u64,
}

/// Download an image's data (`GET …/file`), all of it or the byte range
/// `[start, end]` (inclusive, `end` clamped to the data). A deactivated
/// image's data is only for admins (403); an image without data has none
/// (`data: None`).
pub async fn download(
    app: &App,
    ctx: &Context,
    id: GlanceImageId,
    range: Option<(u64, Option<u64>)>,
) -> Result<Download> {
    authorize(ctx, Op::ImageDownload)?;
    let mut conn = app.store().read().await?;
    let image = visible(&mut conn, ctx, id).await?;
    drop(conn);
    if image.status == GlanceImageStatus::Deactivated && !ctx.is_admin() {
        return Err(Error::Forbidden(
            "The requested image has been deactivated. Image data download is forbidden.".into(),
        ));
    }
    if !image.status.has_data() {
        return Ok(Download {
            image,
            data: None,
            offset: 0,
            len: 0,
        });
    }
    let size = image.size.unwrap_or(0).max(0) as u64;
    let (offset, len) = match range {
        None => (0, size),
        Some((start, _)) if start >= size => {
            return Err(Error::Invalid(format!(
                "Requested range not satisfiable: the image has {size} bytes."
            )));
        }
        Some((start, end)) => {
            let last = end.unwrap_or(size - 1).min(size - 1);
            if last < start {
                return Err(Error::Invalid(
                    "Requested range not satisfiable: it ends before it starts.".into(),
                ));
            }
            (start, last - start + 1)
        }
    };
    let data = app
        .env
        .image_store
        .open(&id.to_string(), offset, Some(len))
        .await
        .map_err(|e| Error::internal("The image store failed to read the image.", e))?;
    Ok(Download {
        image,
        data: Some(data),
        offset,
        len,
    })
}
