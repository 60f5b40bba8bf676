//! Upload a volume to a new image of the image service
//! (`os-volume_upload_image`): the `volume_upload` flow. The answer comes
//! once the volume is `uploading` and the image `saving` (the flow's first
//! step), so every refusal is synchronous and changes nothing.

use scoria_model::glance::Visibility;
use scoria_model::{GlanceImageId, VolumeId};
use scoria_storage::Format;

use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result, from_outcome};
use crate::flows::volume_upload;
use crate::rules::volumes::visible;

/// What the caller asked for.
#[derive(Clone, Debug)]
pub struct UploadRequest {
    pub image_name: String,
    /// Glance's `disk_format` of the new image: `raw` (the default) or `qcow2`.
    pub disk_format: String,
    pub container_format: String,
    pub force: bool,
    pub visibility: Visibility,
    pub protected: bool,
}

/// What the answer shows.
#[derive(Clone, Debug)]
pub struct Uploading {
    pub image_id: GlanceImageId,
    pub volume: super::VolumeView,
}

pub async fn upload_to_image(
    app: &App,
    ctx: &Context,
    id: VolumeId,
    req: UploadRequest,
) -> Result<Uploading> {
    ctx.authorize(Op::VolumeUploadImage)?;
    if req.visibility == Visibility::Public {
        ctx.authorize(Op::VolumeUploadPublic)?;
    }
    let disk_format = match req.disk_format.as_str() {
        "raw" => Format::Raw,
        "qcow2" => Format::Qcow2,
        other => {
            return Err(Error::Invalid(format!(
                "Invalid disk-format '{other}' is specified. Allowed disk-formats are raw, qcow2."
            )));
        }
    };
    if req.container_format != "bare" {
        return Err(Error::Invalid(format!(
            "Invalid container-format '{}' is specified. Allowed container-formats are bare.",
            req.container_format
        )));
    }
    if req.image_name.len() > 255 {
        return Err(Error::Invalid(
            "Invalid input received: image_name must be at most 255 characters.".into(),
        ));
    }
    let project_id = {
        let mut conn = app.store().read().await?;
        visible(&mut conn, ctx, id).await?.project_id
    };
    let image_id = GlanceImageId::new();
    let params = volume_upload::Params {
        volume_id: id,
        project_id,
        image_id,
        image_name: req.image_name,
        disk_format,
        container_format: req.container_format,
        visibility: req.visibility,
        protected: req.protected,
        force: req.force,
        image_size_total: app.config.image_service.image_size_total,
        request_id: Some(ctx.request_id.clone()),
    };
    let handle = app.engine.start::<volume_upload::VolumeUpload>(params)?;
    handle.wait_step("begin").await.map_err(from_outcome)?;
    Ok(Uploading {
        image_id,
        volume: super::get_unchecked(app, id).await?,
    })
}
