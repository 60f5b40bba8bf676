//! A volume's snapshot tree, for administrators (a Scoria extension): the
//! chain of images the volume stands on, top first, and for each image the
//! snapshots that captured it and the other volumes layered on it. It is read
//! from the image records alone — the same per-use rows that decide what may
//! be deleted — so it shows exactly why an image is still kept.

use scoria_model::image::{ImageHealth, ImageState};
use scoria_model::{ImageId, SnapshotId, VolumeId};
use scoria_store::{images, snapshots};

use crate::App;
use crate::context::{Context, Op};
use crate::error::Result;
use crate::rules::volumes::visible;

/// One image of the chain.
#[derive(Clone, Debug)]
pub struct ImageNode {
    pub id: ImageId,
    pub backend: String,
    pub name: String,
    pub format: String,
    pub virtual_size: i64,
    pub mutable: bool,
    pub state: ImageState,
    pub health: ImageHealth,
    pub health_reason: Option<String>,
    /// Snapshots that captured this image.
    pub snapshots: Vec<SnapshotId>,
    /// Volumes other than the one asked about whose active image is layered
    /// directly on this one (volumes made from a snapshot by overlay, clones).
    pub dependents: Vec<VolumeId>,
    /// The image service's image whose cached data this image is (the
    /// backend's image cache), if it is one.
    pub cache_of: Option<String>,
}

/// A volume's chain, top (its active image) first.
#[derive(Clone, Debug)]
pub struct VolumeTree {
    pub volume: VolumeId,
    pub chain: Vec<ImageNode>,
}

/// The tree of a volume (admins: it names backends and files).
pub async fn tree(app: &App, ctx: &Context, id: VolumeId) -> Result<VolumeTree> {
    crate::rules::volumes::authorize_on(app.store(), ctx, id, Op::VolumeAdminFields).await?;
    let mut conn = app.store().read().await?;
    let v = visible(&mut conn, ctx, id).await?;
    let chain = match v.image_id {
        Some(top) => images::image_chain(&mut conn, top).await?,
        None => Vec::new(),
    };
    let snaps = snapshots::snapshot_list_for_volume(&mut conn, id).await?;
    let mut out = Vec::with_capacity(chain.len());
    for image in chain {
        let mut dependents = Vec::new();
        for overlay in images::image_overlays(&mut conn, image.id).await? {
            for user in images::image_users(&mut conn, overlay.id).await? {
                if let images::ImageUser::Volume(other) = user
                    && other != id
                {
                    dependents.push(other);
                }
            }
        }
        let mut captured: Vec<SnapshotId> = snaps
            .iter()
            .filter(|s| s.image_id == Some(image.id))
            .map(|s| s.id)
            .collect();
        // Snapshots of other volumes never capture this volume's images, but a
        // snapshot of this volume's source (a clone by overlay) may have.
        let mut cache_of = None;
        for user in images::image_users(&mut conn, image.id).await? {
            match user {
                images::ImageUser::Snapshot(s) if !captured.contains(&s) => captured.push(s),
                images::ImageUser::Cache(glance) => cache_of = Some(glance),
                _ => {}
            }
        }
        out.push(ImageNode {
            id: image.id,
            backend: image.backend,
            name: image.name,
            format: image.format.as_str().to_owned(),
            virtual_size: image.virtual_size,
            mutable: image.mutable,
            state: image.state,
            health: image.health,
            health_reason: image.health_reason,
            snapshots: captured,
            dependents,
            cache_of,
        });
    }
    Ok(VolumeTree {
        volume: id,
        chain: out,
    })
}
