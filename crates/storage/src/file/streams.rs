//! Data in and out of the backend: copies between images, imports of outside
//! files (image upload), exports to outside files (image download, backup).
//!
//! All three are one `qemu-img convert -n` into a blank temporary of the final
//! shape (see [`super::create`]), with explicit formats on both sides; they
//! differ in what they check first. A copy or an export reads an image of the
//! backend through its whole chain, once [`super::layers::chain_of`] has shown
//! every link legal; an import reads a file that the driver does not own, so
//! it first asks qemu-img (`info -f <format>`) what that file refers to and
//! refuses it if it names any other file.

use std::path::Path;

use super::FileDriver;
use super::create::{CreateJob, blocking};
use super::layers::chain_of;
use crate::inspect::{DiskFormat, Inspection};
use crate::qemu::untrusted::Limits;
use crate::{
    Format, ImageInfo, ImageSpec, Progress, Result, StorageError, format_of_name, io_error,
    same_shape,
};

impl FileDriver {
    pub(super) async fn copy_image(
        &self,
        source: &str,
        spec: &ImageSpec,
        progress: Progress<'_>,
    ) -> Result<()> {
        spec.validate()?;
        let source_format = format_of_name(source)?;
        if source == spec.name {
            return Err(StorageError::InvalidName(spec.name.clone()));
        }
        self.fp.hit("storage.copy.before")?;
        let _guard = self.lock(&spec.name).await;
        let job = self.job(spec);
        // A re-run finds the copy in place; otherwise the source must be there,
        // of a legal chain and no larger than the copy.
        let found = {
            let (job, source, dir) = (job.clone(), source.to_owned(), self.dir.clone());
            blocking(move || {
                if let Some(found) = job.existing()? {
                    return Ok(Some(found));
                }
                let chain = chain_of(&dir, &source)?;
                fits(&job.spec, &source, &chain[0])?;
                Ok(None)
            })
            .await?
        };
        if let Some(found) = found {
            return same_shape(spec, None, found);
        }
        let source_path = self.dir.join(source);
        job.fill_by_convert(
            self.native(spec.format),
            &source_path,
            source_format.as_str(),
            progress,
        )
        .await?;
        if let Some(found) = publish(&job, "storage.copy.temp").await? {
            return same_shape(spec, None, found);
        }
        self.fp.hit("storage.copy.after")?;
        tracing::info!(name = %spec.name, source, size = spec.size, format = %spec.format, "image copied");
        Ok(())
    }

    pub(super) async fn import_file(
        &self,
        spec: &ImageSpec,
        source: &Path,
        source_format: Format,
        progress: Progress<'_>,
    ) -> Result<()> {
        spec.validate()?;
        self.fp.hit("storage.import.before")?;
        let _guard = self.lock(&spec.name).await;
        let job = self.job(spec);
        let found = {
            let job = job.clone();
            blocking(move || job.existing()).await?
        };
        if let Some(found) = found {
            return same_shape(spec, None, found);
        }
        let src = inspect_source(source, source_format).await?;
        fits(spec, &source.display().to_string(), &src)?;
        job.fill_by_convert(
            self.native(spec.format),
            source,
            source_format.as_str(),
            progress,
        )
        .await?;
        if let Some(found) = publish(&job, "storage.import.temp").await? {
            return same_shape(spec, None, found);
        }
        self.fp.hit("storage.import.after")?;
        tracing::info!(name = %spec.name, source = %source.display(), format = %spec.format, "image imported");
        Ok(())
    }

    pub(super) async fn import_untrusted_file(
        &self,
        spec: &ImageSpec,
        source: &Path,
        format: DiskFormat,
        limits: Limits,
        progress: Progress<'_>,
    ) -> Result<Inspection> {
        spec.validate()?;
        self.fp.hit("storage.import.before")?;
        let _guard = self.lock(&spec.name).await;
        let job = self.job(spec);
        let found = {
            let job = job.clone();
            blocking(move || job.existing()).await?
        };
        // The checks run again on a re-run: what they learn is the answer.
        let inspection = crate::vet::check(source, format, spec.size, limits).await?;
        if let Some(found) = found {
            same_shape(spec, None, found)?;
            return Ok(inspection);
        }
        job.fill_by_convert(
            self.native(spec.format),
            source,
            format.qemu_name(),
            progress,
        )
        .await?;
        if let Some(found) = publish(&job, "storage.import.temp").await? {
            same_shape(spec, None, found)?;
            return Ok(inspection);
        }
        self.fp.hit("storage.import.after")?;
        tracing::info!(name = %spec.name, source = %source.display(), declared = %format, format = %spec.format, "untrusted image imported");
        Ok(inspection)
    }

    pub(super) async fn export_image(
        &self,
        name: &str,
        dest: &Path,
        dest_format: Format,
        progress: Progress<'_>,
    ) -> Result<()> {
        let format = format_of_name(name)?;
        let outside = {
            let (dest, dir) = (dest.to_owned(), self.dir.clone());
            blocking(move || outside_backend(&dest, &dir)).await
        };
        outside?;
        self.fp.hit("storage.export.before")?;
        let _guard = self.lock(name).await;
        let chain = {
            let (dir, name) = (self.dir.clone(), name.to_owned());
            blocking(move || chain_of(&dir, &name)).await?
        };
        let job = CreateJob::at(
            dest,
            chain[0].virtual_size,
            dest_format,
            self.options.fsync,
            &self.fp,
        )?;
        let found = {
            let job = job.clone();
            blocking(move || job.existing()).await?
        };
        if let Some(found) = found {
            return same_shape(&job.spec, None, found);
        }
        let path = self.dir.join(name);
        job.fill_by_convert(self.native(dest_format), &path, format.as_str(), progress)
            .await?;
        if let Some(found) = publish(&job, "storage.export.temp").await? {
            return same_shape(&job.spec, None, found);
        }
        self.fp.hit("storage.export.after")?;
        tracing::info!(name, dest = %dest.display(), format = %dest_format, "image exported");
        Ok(())
    }

    /// Whether blank images of `format` are written natively.
    fn native(&self, format: Format) -> bool {
        format == Format::Raw || self.options.native_qcow2
    }
}

async fn publish(job: &CreateJob, failpoint: &'static str) -> Result<Option<ImageInfo>> {
    let job = job.clone();
    blocking(move || job.publish(failpoint)).await
}

/// `InvalidSize` when the image `source` (described by `info`) does not fit in
/// `spec`.
pub(crate) fn fits(spec: &ImageSpec, source: &str, info: &ImageInfo) -> Result<()> {
    if info.virtual_size > spec.size {
        return Err(StorageError::InvalidSize {
            size: spec.size,
            detail: format!(
                "smaller than the source image {source} ({} bytes)",
                info.virtual_size
            ),
        });
    }
    Ok(())
}

/// Describe the outside file `source` (absolute) as `qemu-img info -f
/// <format>` sees it, refusing one that refers to other files: importing it
/// would copy whatever file of the host it names. Absent is `NotFound`.
pub(crate) async fn inspect_source(source: &Path, format: Format) -> Result<ImageInfo> {
    let shown = || source.display().to_string();
    if !source.is_absolute() {
        return Err(StorageError::InvalidName(shown()));
    }
    let meta = match tokio::fs::metadata(source).await {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StorageError::NotFound(shown()));
        }
        Err(e) => return Err(io_error(format!("inspecting {}", shown()), e)),
    };
    if !meta.is_file() {
        return Err(StorageError::BadImage {
            name: shown(),
            detail: "not a regular file".into(),
        });
    }
    let info = crate::qemu::info(source, format).await?;
    if info.refers_to_other_files() {
        return Err(StorageError::BadImage {
            name: shown(),
            detail: "it refers to a backing or data file".into(),
        });
    }
    Ok(info)
}

/// `InvalidName` unless `dest` is an absolute path whose directory exists and
/// is not the backend directory `backend` (blocking): an export makes a file
/// outside the backend, never an image or temporary in it.
pub(crate) fn outside_backend(dest: &Path, backend: &Path) -> Result<()> {
    let invalid = || StorageError::InvalidName(dest.display().to_string());
    let parent = dest
        .parent()
        .filter(|_| dest.is_absolute() && dest.file_name().is_some())
        .ok_or_else(invalid)?;
    let canonical = |p: &Path| {
        std::fs::canonicalize(p).map_err(|e| io_error(format!("resolving {}", p.display()), e))
    };
    if canonical(parent)? == canonical(backend)? {
        return Err(invalid());
    }
    Ok(())
}
