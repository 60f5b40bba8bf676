//! A volume's metadata: read, replace, merge, delete one key; and its image
//! metadata (Cinder's `volume_image_metadata`: what a volume made from an
//! image keeps of it), read, merged and deleted by key.

use std::collections::BTreeMap;

use scoria_model::VolumeId;
use scoria_model::volume::VolumeStatus;
use scoria_store::volume_images;
use scoria_store::volumes as store;

use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result};
use crate::rules::validate::validate_metadata;
use crate::rules::volumes::visible;

/// All metadata of a volume.
pub async fn metadata_get(
    app: &App,
    ctx: &Context,
    id: VolumeId,
) -> Result<BTreeMap<String, String>> {
    crate::rules::volumes::authorize_on(app.store(), ctx, id, Op::VolumeMetadataGet).await?;
    let mut conn = app.store().read().await?;
    Ok(visible(&mut conn, ctx, id).await?.metadata)
}

/// Replace (`replace`) or merge the metadata; returns the result.
pub async fn metadata_set(
    app: &App,
    ctx: &Context,
    id: VolumeId,
    items: BTreeMap<String, String>,
    replace: bool,
) -> Result<BTreeMap<String, String>> {
    crate::rules::volumes::authorize_on(app.store(), ctx, id, Op::VolumeMetadataUpdate).await?;
    validate_metadata(&items)?;
    let mut tx = app.store().begin().await?;
    visible(&mut tx, ctx, id).await?;
    if replace {
        store::volume_metadata_replace(&mut tx, id, &items).await?;
    } else {
        store::volume_metadata_merge(&mut tx, id, &items).await?;
    }
    let out = store::volume_metadata_get(&mut tx, id).await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(out)
}

/// Delete one metadata key (404 when absent).
pub async fn metadata_delete(app: &App, ctx: &Context, id: VolumeId, key: &str) -> Result<()> {
    crate::rules::volumes::authorize_on(app.store(), ctx, id, Op::VolumeMetadataDelete).await?;
    let mut tx = app.store().begin().await?;
    visible(&mut tx, ctx, id).await?;
    if !store::volume_metadata_delete(&mut tx, id, key).await? {
        return Err(Error::NotFound(format!(
            "Volume {id} has no metadata with key {key}."
        )));
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// A volume's image metadata.
pub async fn image_metadata_get(
    app: &App,
    ctx: &Context,
    id: VolumeId,
) -> Result<BTreeMap<String, String>> {
    ctx.authorize(Op::VolumeImageMetadataGet)?;
    let mut conn = app.store().read().await?;
    visible(&mut conn, ctx, id).await?;
    Ok(volume_images::volume_image_metadata_get(&mut conn, id).await?)
}

/// Merge `items` into a volume's image metadata; returns all of it. As
/// Cinder, refused while the volume is being uploaded or maintained.
pub async fn image_metadata_set(
    app: &App,
    ctx: &Context,
    id: VolumeId,
    items: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    ctx.authorize(Op::VolumeImageMetadataSet)?;
    validate_metadata(&items)?;
    let mut tx = app.store().begin().await?;
    let v = visible(&mut tx, ctx, id).await?;
    refuse_busy(&v)?;
    volume_images::volume_image_metadata_merge(&mut tx, id, &items).await?;
    let out = volume_images::volume_image_metadata_get(&mut tx, id).await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(out)
}

/// Delete one key of a volume's image metadata (404 when absent).
pub async fn image_metadata_delete(
    app: &App,
    ctx: &Context,
    id: VolumeId,
    key: &str,
) -> Result<()> {
    ctx.authorize(Op::VolumeImageMetadataRemove)?;
    let mut tx = app.store().begin().await?;
    let v = visible(&mut tx, ctx, id).await?;
    refuse_busy(&v)?;
    if !volume_images::volume_image_metadata_delete(&mut tx, id, key).await? {
        return Err(Error::NotFound(format!(
            "Volume {id} has no image metadata with key {key}."
        )));
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

fn refuse_busy(v: &store::Volume) -> Result<()> {
    if matches!(
        v.status,
        VolumeStatus::Uploading | VolumeStatus::Maintenance
    ) {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {} is {}; its image metadata cannot be changed now.",
            v.id, v.status
        )));
    }
    Ok(())
}
