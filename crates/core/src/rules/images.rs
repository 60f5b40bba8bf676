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

use crate::BackendConfig;
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

/// Why a writable raw image is degraded on a backend whose volumes are
/// qcow2 (a managed raw file, a backend whose format changed): `None` when it
/// is not. A frozen image (a snapshot's, a clone's base) stays as it is:
/// converting it would move the data under its users.
pub fn raw_reason(image: &Image, wants: Format) -> Option<&'static str> {
    (image.mutable && image.format == ImageFormat::Raw && wants == Format::Qcow2).then_some(
        "a raw image where the backend's volumes are qcow2: it keeps no dirty bitmaps (every \
         incremental backup reads it whole); converting it to qcow2 removes the difference",
    )
}

/// Record an image's health as the backend's rules say: `degraded` when its
/// chain is deeper than `max_chain_depth` layers (the repository check
/// offers a merge or a flatten) or when it is a writable raw image where the
/// backend wants qcow2 ([`raw_reason`]; the check offers a conversion), back
/// to `optimized` when a `degraded` one no longer is (after the fix, or once
/// a snapshot froze it). A `broken` image stays broken: that is a mend's.
pub async fn mark_health(conn: &mut Conn, image: ImageId, backend: &BackendConfig) -> Result<()> {
    let depth = store::image_chain(conn, image).await?.len();
    let Some(now) = store::image_get(conn, image).await? else {
        return Ok(());
    };
    if now.health == ImageHealth::Broken {
        return Ok(());
    }
    let max = backend.max_chain_depth;
    let mut why = Vec::new();
    if depth > max {
        why.push(format!(
            "its chain has {depth} layers, more than the backend's max_chain_depth ({max})"
        ));
    }
    if let Some(r) = raw_reason(&now, backend.format) {
        why.push(r.to_owned());
    }
    if !why.is_empty() {
        let reason = why.join("; ");
        if now.health != ImageHealth::Degraded || now.health_reason.as_deref() != Some(&reason) {
            store::image_set_health(conn, image, ImageHealth::Degraded, Some(&reason)).await?;
        }
    } else if now.health == ImageHealth::Degraded {
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
