//! How the application layer names and describes images to the storage
//! layer: the driver-level name of a new image, and the two spellings of a
//! format (the model's, which the store keeps, and the storage crate's, which
//! drivers take; `scoria-storage` does not depend on `scoria-model`).

use scoria_model::ImageId;
use scoria_model::image::{ImageFormat, ImageHealth};
use scoria_storage::Format;
use scoria_store::Conn;
use scoria_store::images::{self as store, Image};
use scoria_store::volumes::Volume;

use crate::error::Result;

/// The driver-level name of a new image: `image-<id>.<format>`. The name
/// carries the format, so no driver ever has to guess it.
pub fn name_for(id: ImageId, format: Format) -> String {
    format!("image-{id}.{}", format.extension())
}

/// Whether `file_name` is a name [`name_for`] gives (`image-<uuid>.<format>`):
/// a file so named on a backend is Scoria's and must have a record; any
/// other file there is foreign (an administrator's, or a volume handed back
/// by an unmanage) and is only reported, never owned.
pub fn is_scoria_name(file_name: &str) -> bool {
    file_name
        .strip_prefix("image-")
        .and_then(|rest| rest.rsplit_once('.'))
        .is_some_and(|(id, ext)| matches!(ext, "qcow2" | "raw") && id.parse::<ImageId>().is_ok())
}

/// The store's spelling of a storage format.
pub fn model_format(f: Format) -> ImageFormat {
    match f {
        Format::Qcow2 => ImageFormat::Qcow2,
        Format::Raw => ImageFormat::Raw,
    }
}

/// The storage crate's spelling of a recorded format.
pub fn storage_format(f: ImageFormat) -> Format {
    match f {
        ImageFormat::Qcow2 => Format::Qcow2,
        ImageFormat::Raw => Format::Raw,
    }
}

/// A volume's active image, if it has one.
pub async fn active_image(conn: &mut Conn, v: &Volume) -> Result<Option<Image>> {
    match v.image_id {
        Some(id) => Ok(store::image_get(conn, id).await?),
        None => Ok(None),
    }
}

/// Record an image's health as its chain's depth says: `degraded` when the
/// chain is deeper than `max` layers (the repository check offers a merge),
/// back to `optimized` when a `degraded` one no longer is (after a merge). A
/// `broken` image stays broken: that is a mend's, not the depth's.
pub async fn mark_depth(conn: &mut Conn, image: ImageId, max: usize) -> Result<()> {
    let depth = store::image_chain(conn, image).await?.len();
    let Some(now) = store::image_get(conn, image).await? else {
        return Ok(());
    };
    if depth > max && now.health != ImageHealth::Broken {
        store::image_set_health(
            conn,
            image,
            ImageHealth::Degraded,
            Some(&format!(
                "its chain has {depth} layers, more than the backend's max_chain_depth ({max})"
            )),
        )
        .await?;
    } else if depth <= max && now.health == ImageHealth::Degraded {
        store::image_set_health(conn, image, ImageHealth::Optimized, None).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_storage_names_of_their_format() {
        for f in [Format::Qcow2, Format::Raw] {
            let name = name_for(ImageId::new(), f);
            assert_eq!(scoria_storage::format_of_name(&name).expect("valid"), f);
            assert_eq!(storage_format(model_format(f)), f);
        }
    }
}
