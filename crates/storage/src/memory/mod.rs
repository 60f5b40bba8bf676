//! The in-memory backend: images as entries in a map, their data as sparse
//! sector maps.
//!
//! It exists for fast tests of logic above the storage layer (flows, quotas, the
//! scheduler, recovery, the choice between an overlay and a copy), which need a
//! driver with the file driver's semantics but none of its I/O. It follows the
//! same rules (names carry the format, sizes are multiples of 512, every
//! operation is idempotent, a different shape is `Mismatch`, immutable images
//! refuse writes, only legal backing references are followed) and hits the
//! same failpoints, and the crate's conformance tests run one suite against
//! both drivers to keep it so. It never stands in for a test that claims a
//! volume works.
//!
//! Each image keeps the sectors written into it ([`MemoryDriver::write_data`])
//! and, if it is an overlay, the name of its base: a read
//! ([`MemoryDriver::read_data`]) takes a sector from the first image of the
//! chain that has it, and reads zeroes beyond the end of the image it reaches.
//! A copy flattens the chain into the sectors that read as non-zero.
//!
//! Imports and exports have a real file at their other end, so they touch the
//! file system: the outside file is inspected and converted with qemu-img as
//! the file driver does (through a raw file in the system's temporary
//! directory when it is qcow2), with the same checks and the same
//! temp-and-rename job at the destination.
//!
//! Capacity ([`MemoryDriver::set_capacity`]) and capabilities
//! ([`MemoryDriver::set_capabilities`]) are what the test sets; images do not
//! consume capacity, so a scheduler test sees exactly the numbers it set, and
//! a backend without layering refuses overlays, so the application's fallback
//! to a full copy can be tested.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use raw::{Scratch, read_raw, write_raw};
use scoria_failpoints::Failpoints;

use crate::file::create::{CreateJob, blocking};
use crate::file::streams::{fits, inspect_source};
use crate::{
    Capabilities, Capacity, Driver, Format, ImageInfo, ImageSpec, Progress, Result, SECTOR_SIZE,
    StorageError, backing_name, format_of_name, io_error, qemu, same_shape, validate_size,
    walk_chain,
};

/// The capacity a new [`MemoryDriver`] reports: 1 TiB, all free.
pub const DEFAULT_CAPACITY: Capacity = Capacity {
    total: 1 << 40,
    free: 1 << 40,
};

/// The capabilities a new [`MemoryDriver`] reports: those of the file driver,
/// except that nothing can be exported (so no multiattach either).
pub fn default_capabilities() -> Capabilities {
    Capabilities {
        thin_provisioning: true,
        layering: true,
        online_snapshot: false,
        online_extend: false,
        multiattach: false,
        export_protocols: Vec::new(),
        formats: vec![Format::Qcow2, Format::Raw],
    }
}

mod raw;

const SECTOR: usize = SECTOR_SIZE as usize;

/// One image: its shape, its references as recorded, and its own data.
#[derive(Clone, Debug, Default)]
struct Image {
    size: u64,
    immutable: bool,
    /// The backing file and backing format the image records.
    backing: Option<(String, Option<String>)>,
    /// An external data file, which only [`MemoryDriver::plant`] can record.
    data_file: Option<String>,
    /// The sectors written into this image itself, by index.
    sectors: BTreeMap<u64, Box<[u8]>>,
}

type Images = BTreeMap<String, Image>;

/// Images in a map. See the module doc.
#[derive(Debug)]
pub struct MemoryDriver {
    fp: Arc<Failpoints>,
    images: Mutex<Images>,
    capacity: Mutex<Capacity>,
    capabilities: Mutex<Capabilities>,
}

impl MemoryDriver {
    /// An empty backend reporting [`DEFAULT_CAPACITY`].
    pub fn new(fp: Arc<Failpoints>) -> Self {
        Self::with_capacity(fp, DEFAULT_CAPACITY)
    }

    /// An empty backend reporting `capacity`.
    pub fn with_capacity(fp: Arc<Failpoints>, capacity: Capacity) -> Self {
        Self {
            fp,
            images: Mutex::default(),
            capacity: Mutex::new(capacity),
            capabilities: Mutex::new(default_capabilities()),
        }
    }

    /// Change the capacity the backend reports from now on.
    pub fn set_capacity(&self, capacity: Capacity) {
        *lock(&self.capacity) = capacity;
    }

    /// Change the capabilities the backend reports, and follows, from now on:
    /// without `layering` overlays are `Unsupported`, and only `formats` can be
    /// created, copied to or imported.
    pub fn set_capabilities(&self, capabilities: Capabilities) {
        *lock(&self.capabilities) = capabilities;
    }

    /// Write `data` at `offset` into the image `name`, as a guest would: for
    /// tests that need images with known contents. Offset and length are whole
    /// sectors within the image (`InvalidSize`); an absent image is
    /// `NotFound`, an immutable one `Immutable`, one that `info` refuses
    /// `BadImage`.
    pub fn write_data(&self, name: &str, offset: u64, data: &[u8]) -> Result<()> {
        let mut images = lock(&self.images);
        let info = describe(&images, name)?.ok_or_else(|| not_found(name))?;
        if info.immutable {
            return Err(StorageError::Immutable(name.to_owned()));
        }
        check_range(&info, offset, data.len() as u64)?;
        let image = images.get_mut(name).ok_or_else(|| not_found(name))?;
        for (i, sector) in data.chunks(SECTOR).enumerate() {
            image
                .sectors
                .insert(offset / SECTOR_SIZE + i as u64, sector.into());
        }
        Ok(())
    }

    /// Read `len` bytes at `offset` of the image `name` through its chain, as
    /// a guest would. Errors are those of [`MemoryDriver::write_data`] (an
    /// immutable image can be read) and of [`Driver::chain`].
    pub fn read_data(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let images = lock(&self.images);
        let chain = chain_in(&images, name)?;
        check_range(&chain[0], offset, len)?;
        let mut out = Vec::with_capacity(len as usize);
        for index in offset / SECTOR_SIZE..(offset + len) / SECTOR_SIZE {
            match read_sector(&images, &chain, index) {
                Some(sector) => out.extend_from_slice(sector),
                None => out.resize(out.len() + SECTOR, 0),
            }
        }
        Ok(out)
    }

    /// Put `name` in the backend as a crafted or damaged file could be in a file
    /// backend: a qcow2 image of `size` bytes recording the backing file
    /// `backing` (a file name and the recorded format, if any) and the external
    /// data file `data_file`, whatever they are. For tests of the rules that
    /// refuse such images; replaces what was there.
    pub fn plant(
        &self,
        name: &str,
        size: u64,
        backing: Option<(&str, Option<&str>)>,
        data_file: Option<&str>,
    ) {
        let image = Image {
            size,
            backing: backing.map(|(file, format)| (file.to_owned(), format.map(str::to_owned))),
            data_file: data_file.map(str::to_owned),
            ..Image::default()
        };
        lock(&self.images).insert(name.to_owned(), image);
    }

    /// The image's own state (shape, references, sectors), for tests that check
    /// an image did not change.
    #[cfg(test)]
    pub(crate) fn fingerprint(&self, name: &str) -> Option<String> {
        lock(&self.images).get(name).map(|i| format!("{i:?}"))
    }

    /// Whether two images read the same through their chains (beyond the
    /// smaller one's end, the larger reads as zeroes), as `qemu-img compare`
    /// says of files.
    #[cfg(test)]
    pub(crate) fn same_data(&self, a: &str, b: &str) -> Result<bool> {
        let images = lock(&self.images);
        let (a, b) = (chain_in(&images, a)?, chain_in(&images, b)?);
        Ok(flatten(&images, &a) == flatten(&images, &b))
    }

    fn holds(&self, format: Format) -> Result<()> {
        if lock(&self.capabilities).formats.contains(&format) {
            Ok(())
        } else {
            Err(StorageError::Unsupported(format!(
                "this backend holds no {format} images"
            )))
        }
    }

    /// The existing image `spec.name`, compared with `spec` (layered on
    /// `backing`), or `None`.
    /// `merge_base` (`undo`: `unmerge_base`) of the driver.
    fn rebase(&self, name: &str, base: &str, undo: bool) -> Result<()> {
        format_of_name(name)?;
        let point = if undo { "unmerge" } else { "merge" };
        self.fp.hit(&format!("storage.{point}.before"))?;
        {
            let mut images = lock(&self.images);
            chain_in(&images, name)?;
            // An overlay is never smaller than its base, so what `base` reads
            // is its own sectors (within its size) over its base's.
            let under = chain_in(&images, base)?;
            let new_base = under.get(1).map(|i| i.name.clone());
            let own: Vec<(u64, Box<[u8]>)> = images
                .get(base)
                .map(|b| {
                    b.sectors
                        .range(..b.size / SECTOR_SIZE)
                        .map(|(i, s)| (*i, s.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let (from, to) = if undo {
                (new_base, Some(base.to_owned()))
            } else {
                (Some(base.to_owned()), new_base)
            };
            let top = images.get_mut(name).ok_or_else(|| not_found(name))?;
            let standing = top.backing.as_ref().map(|(b, _)| b.clone());
            if standing == to {
                return Ok(());
            }
            if standing != from {
                return Err(StorageError::Mismatch {
                    name: name.to_owned(),
                    detail: format!(
                        "it stands on {}, neither {base} nor its base",
                        standing.as_deref().unwrap_or("nothing")
                    ),
                });
            }
            if !undo {
                for (index, sector) in own {
                    top.sectors.entry(index).or_insert(sector);
                }
            }
            top.backing = to.map(|n| {
                let format = format_of_name(&n).map(|f| f.as_str().to_owned()).ok();
                (n, format)
            });
        }
        self.fp.hit(&format!("storage.{point}.after"))?;
        Ok(())
    }

    fn existing(&self, spec: &ImageSpec, backing: Option<&str>) -> Option<Result<()>> {
        existing_in(&lock(&self.images), spec, backing)
    }

    /// Put a complete image in place, unless one appeared meanwhile (then compare
    /// with it); true when it was put. There is no temporary to leave behind
    /// here; `temp` is hit where the file driver hits it, so crash tests
    /// enumerate the same points.
    fn publish(&self, spec: &ImageSpec, image: Image, temp: &str) -> Result<bool> {
        self.fp.hit(temp)?;
        let backing = image.backing.as_ref().map(|(file, _)| file.clone());
        let mut images = lock(&self.images);
        match existing_in(&images, spec, backing.as_deref()) {
            Some(found) => found.map(|()| false),
            None => {
                images.insert(spec.name.clone(), image);
                Ok(true)
            }
        }
    }
}

/// The image `spec.name` in `images`, compared with `spec` (layered on
/// `backing`), or `None` when absent. Something there that `info` refuses is a
/// `Mismatch`, as a foreign file in the way is for the file driver.
fn existing_in(images: &Images, spec: &ImageSpec, backing: Option<&str>) -> Option<Result<()>> {
    match describe(images, &spec.name) {
        Ok(found) => Some(same_shape(spec, backing, found?)),
        Err(StorageError::BadImage { name, detail }) => {
            Some(Err(StorageError::Mismatch { name, detail }))
        }
        Err(e) => Some(Err(e)),
    }
}

/// Lock a mutex, ignoring poison: every critical section leaves the map whole.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn not_found(name: &str) -> StorageError {
    StorageError::NotFound(name.to_owned())
}

/// What `info` says of the image `name`, applying the file driver's rules.
fn describe(images: &Images, name: &str) -> Result<Option<ImageInfo>> {
    let format = format_of_name(name)?;
    let Some(image) = images.get(name) else {
        return Ok(None);
    };
    if image.data_file.is_some() {
        return Err(StorageError::BadImage {
            name: name.to_owned(),
            detail: "it keeps its data in an external data file".into(),
        });
    }
    let backing = match &image.backing {
        None => None,
        Some((file, recorded)) => Some(backing_name(name, file, recorded.as_deref())?),
    };
    Ok(Some(ImageInfo {
        name: name.to_owned(),
        format,
        virtual_size: image.size,
        actual_size: image.sectors.len() as u64 * SECTOR_SIZE,
        backing_file: backing.clone(),
        data_file: None,
        backing,
        immutable: image.immutable,
    }))
}

fn chain_in(images: &Images, name: &str) -> Result<Vec<ImageInfo>> {
    format_of_name(name)?;
    walk_chain(name, |next| describe(images, next))
}

fn check_range(info: &ImageInfo, offset: u64, len: u64) -> Result<()> {
    let end = offset.checked_add(len);
    if !offset.is_multiple_of(SECTOR_SIZE)
        || !len.is_multiple_of(SECTOR_SIZE)
        || end.is_none_or(|end| end > info.virtual_size)
    {
        return Err(StorageError::InvalidSize {
            size: len,
            detail: format!(
                "{len} bytes at {offset} are not whole sectors within {} ({} bytes)",
                info.name, info.virtual_size
            ),
        });
    }
    Ok(())
}

/// The sector `index` as the top of `chain` reads it; `None` reads as zeroes.
fn read_sector<'a>(images: &'a Images, chain: &[ImageInfo], index: u64) -> Option<&'a [u8]> {
    for level in chain {
        // Beyond the end of an image its chain reads as zeroes.
        if index * SECTOR_SIZE >= level.virtual_size {
            return None;
        }
        if let Some(sector) = images.get(&level.name)?.sectors.get(&index) {
            return Some(sector);
        }
    }
    None
}

/// What the top of `chain` reads, as the sectors that are not all zeroes.
fn flatten(images: &Images, chain: &[ImageInfo]) -> BTreeMap<u64, Box<[u8]>> {
    let mut indexes: Vec<u64> = chain
        .iter()
        .filter_map(|level| images.get(&level.name))
        .flat_map(|image| image.sectors.keys().copied())
        .collect();
    indexes.sort_unstable();
    indexes.dedup();
    indexes
        .into_iter()
        .filter_map(|index| {
            let sector = read_sector(images, chain, index)?;
            sector
                .iter()
                .any(|&b| b != 0)
                .then(|| (index, sector.into()))
        })
        .collect()
}

#[async_trait::async_trait]
impl Driver for MemoryDriver {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        lock(&self.capabilities).clone()
    }

    async fn create(&self, spec: &ImageSpec) -> Result<()> {
        spec.validate()?;
        self.holds(spec.format)?;
        self.fp.hit("storage.create.before")?;
        if let Some(found) = self.existing(spec, None) {
            return found;
        }
        let image = Image {
            size: spec.size,
            ..Image::default()
        };
        if self.publish(spec, image, "storage.create.temp")? {
            self.fp.hit("storage.create.after")?;
        }
        Ok(())
    }

    async fn copy_from(
        &self,
        source: &str,
        spec: &ImageSpec,
        progress: Progress<'_>,
    ) -> Result<()> {
        spec.validate()?;
        format_of_name(source)?;
        if source == spec.name {
            return Err(StorageError::InvalidName(spec.name.clone()));
        }
        self.holds(spec.format)?;
        self.fp.hit("storage.copy.before")?;
        if let Some(found) = self.existing(spec, None) {
            return found;
        }
        let sectors = {
            let images = lock(&self.images);
            let chain = chain_in(&images, source)?;
            fits(spec, source, &chain[0])?;
            flatten(&images, &chain)
        };
        progress(100);
        let image = Image {
            size: spec.size,
            sectors,
            ..Image::default()
        };
        if self.publish(spec, image, "storage.copy.temp")? {
            self.fp.hit("storage.copy.after")?;
        }
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<()> {
        format_of_name(name)?;
        self.fp.hit("storage.delete.before")?;
        lock(&self.images).remove(name);
        self.fp.hit("storage.delete.after")?;
        Ok(())
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        crate::same_format(from, to)?;
        self.fp.hit("storage.rename.before")?;
        {
            let mut images = lock(&self.images);
            match (images.contains_key(from), images.contains_key(to)) {
                (true, true) => {
                    return Err(StorageError::Mismatch {
                        name: to.to_owned(),
                        detail: format!("cannot rename {from} over it: it exists"),
                    });
                }
                (false, false) => return Err(not_found(from)),
                (false, true) => {}
                (true, false) => {
                    let image = images.remove(from).ok_or_else(|| not_found(from))?;
                    images.insert(to.to_owned(), image);
                }
            }
        }
        self.fp.hit("storage.rename.after")?;
        Ok(())
    }

    async fn extend(&self, name: &str, new_size: u64) -> Result<()> {
        let format = format_of_name(name)?;
        validate_size(format, new_size)?;
        self.fp.hit("storage.extend.before")?;
        {
            let mut images = lock(&self.images);
            let info = describe(&images, name)?.ok_or_else(|| not_found(name))?;
            if info.immutable {
                return Err(StorageError::Immutable(name.to_owned()));
            }
            if info.virtual_size >= new_size {
                return Ok(());
            }
            images.get_mut(name).ok_or_else(|| not_found(name))?.size = new_size;
        }
        self.fp.hit("storage.extend.after")?;
        Ok(())
    }

    async fn info(&self, name: &str) -> Result<Option<ImageInfo>> {
        describe(&lock(&self.images), name)
    }

    async fn list(&self) -> Result<Vec<String>> {
        Ok(lock(&self.images).keys().cloned().collect())
    }

    async fn capacity(&self) -> Result<Capacity> {
        Ok(*lock(&self.capacity))
    }

    async fn make_immutable(&self, name: &str) -> Result<()> {
        format_of_name(name)?;
        self.fp.hit("storage.immutable.before")?;
        {
            let mut images = lock(&self.images);
            let info = describe(&images, name)?.ok_or_else(|| not_found(name))?;
            if info.immutable {
                return Ok(());
            }
            images
                .get_mut(name)
                .ok_or_else(|| not_found(name))?
                .immutable = true;
        }
        self.fp.hit("storage.immutable.after")?;
        Ok(())
    }

    async fn make_mutable(&self, name: &str) -> Result<()> {
        format_of_name(name)?;
        self.fp.hit("storage.mutable.before")?;
        {
            let mut images = lock(&self.images);
            let info = describe(&images, name)?.ok_or_else(|| not_found(name))?;
            if !info.immutable {
                return Ok(());
            }
            images
                .get_mut(name)
                .ok_or_else(|| not_found(name))?
                .immutable = false;
        }
        self.fp.hit("storage.mutable.after")?;
        Ok(())
    }

    async fn create_overlay(&self, base: &str, spec: &ImageSpec) -> Result<()> {
        spec.validate()?;
        let base_format = format_of_name(base)?;
        if base == spec.name {
            return Err(StorageError::InvalidName(spec.name.clone()));
        }
        if !lock(&self.capabilities).layering {
            return Err(StorageError::Unsupported(
                "this backend cannot layer images".into(),
            ));
        }
        if spec.format != Format::Qcow2 {
            return Err(StorageError::Unsupported(format!(
                "an overlay is a qcow2 image, {} is {}",
                spec.name, spec.format
            )));
        }
        self.holds(spec.format)?;
        self.fp.hit("storage.overlay.before")?;
        if let Some(found) = self.existing(spec, Some(base)) {
            return found;
        }
        {
            let images = lock(&self.images);
            let chain = chain_in(&images, base)?;
            if !chain[0].immutable {
                return Err(StorageError::MutableBase(base.to_owned()));
            }
            if chain[0].virtual_size > spec.size {
                return Err(StorageError::InvalidSize {
                    size: spec.size,
                    detail: format!(
                        "smaller than the base image {base} ({} bytes)",
                        chain[0].virtual_size
                    ),
                });
            }
        }
        let image = Image {
            size: spec.size,
            backing: Some((base.to_owned(), Some(base_format.as_str().to_owned()))),
            ..Image::default()
        };
        if self.publish(spec, image, "storage.overlay.temp")? {
            self.fp.hit("storage.overlay.after")?;
        }
        Ok(())
    }

    async fn merge_base(&self, name: &str, base: &str) -> Result<()> {
        self.rebase(name, base, false)
    }

    async fn unmerge_base(&self, name: &str, base: &str) -> Result<()> {
        self.rebase(name, base, true)
    }

    async fn chain(&self, name: &str) -> Result<Vec<ImageInfo>> {
        chain_in(&lock(&self.images), name)
    }

    async fn inspect_untrusted(
        &self,
        source: &Path,
        format: crate::inspect::DiskFormat,
        limits: crate::qemu::untrusted::Limits,
    ) -> Result<crate::inspect::Inspection> {
        crate::vet::check(source, format, u64::MAX, limits).await
    }

    async fn import_untrusted(
        &self,
        spec: &ImageSpec,
        source: &Path,
        format: crate::inspect::DiskFormat,
        limits: crate::qemu::untrusted::Limits,
        progress: Progress<'_>,
    ) -> Result<crate::inspect::Inspection> {
        spec.validate()?;
        self.holds(spec.format)?;
        let inspection = crate::vet::check(source, format, spec.size, limits).await?;
        // Its data, as raw bytes made by qemu-img from the checked file, is then
        // imported like any trusted file.
        let scratch = Scratch::new();
        let (path, size) = (scratch.0.clone(), inspection.virtual_size.unwrap_or(0));
        blocking(move || {
            let file = std::fs::File::create_new(&path)
                .map_err(|e| io_error(format!("creating {}", path.display()), e))?;
            file.set_len(size)
                .map_err(|e| io_error(format!("sizing {}", path.display()), e))
        })
        .await?;
        qemu::convert_named_into(source, format.qemu_name(), &scratch.0, Format::Raw, &|_| {})
            .await?;
        self.import_from(spec, &scratch.0, Format::Raw, progress)
            .await?;
        drop(scratch);
        Ok(inspection)
    }

    async fn import_from(
        &self,
        spec: &ImageSpec,
        source: &Path,
        source_format: Format,
        progress: Progress<'_>,
    ) -> Result<()> {
        spec.validate()?;
        self.holds(spec.format)?;
        self.fp.hit("storage.import.before")?;
        if let Some(found) = self.existing(spec, None) {
            return found;
        }
        let src = inspect_source(source, source_format).await?;
        fits(spec, &source.display().to_string(), &src)?;
        let sectors = match source_format {
            Format::Raw => {
                let source = source.to_owned();
                blocking(move || read_raw(&source)).await?
            }
            Format::Qcow2 => {
                let scratch = Scratch::new();
                let path = scratch.0.clone();
                let size = src.virtual_size;
                blocking(move || {
                    let file = std::fs::File::create_new(&path)
                        .map_err(|e| io_error(format!("creating {}", path.display()), e))?;
                    file.set_len(size)
                        .map_err(|e| io_error(format!("sizing {}", path.display()), e))
                })
                .await?;
                qemu::convert_into(source, source_format, &scratch.0, Format::Raw, &|_| {}).await?;
                let path = scratch.0.clone();
                let sectors = blocking(move || read_raw(&path)).await?;
                drop(scratch);
                sectors
            }
        };
        progress(100);
        let image = Image {
            size: spec.size,
            sectors,
            ..Image::default()
        };
        if self.publish(spec, image, "storage.import.temp")? {
            self.fp.hit("storage.import.after")?;
        }
        Ok(())
    }

    async fn export_to(
        &self,
        name: &str,
        dest: &Path,
        dest_format: Format,
        progress: Progress<'_>,
    ) -> Result<()> {
        format_of_name(name)?;
        if !dest.is_absolute() {
            return Err(StorageError::InvalidName(dest.display().to_string()));
        }
        self.fp.hit("storage.export.before")?;
        let (size, sectors) = {
            let images = lock(&self.images);
            let chain = chain_in(&images, name)?;
            (chain[0].virtual_size, flatten(&images, &chain))
        };
        // Durable at the destination, like the file driver's exports.
        let job = CreateJob::at(dest, size, dest_format, true, &self.fp)?;
        let found = {
            let job = job.clone();
            blocking(move || job.existing()).await?
        };
        if let Some(found) = found {
            return same_shape(&job.spec, None, found);
        }
        match dest_format {
            Format::Raw => {
                let writer = job.clone();
                let written = blocking(move || {
                    let file = writer.open_temp()?;
                    write_raw(&file, size, &sectors)?;
                    file.sync_all()
                        .map_err(|e| io_error(format!("syncing {}", writer.temp.display()), e))
                })
                .await;
                if let Err(e) = written {
                    job.discard_temp().await;
                    return Err(e);
                }
            }
            Format::Qcow2 => {
                let scratch = Scratch::new();
                let path = scratch.0.clone();
                blocking(move || {
                    let file = std::fs::File::create_new(&path)
                        .map_err(|e| io_error(format!("creating {}", path.display()), e))?;
                    write_raw(&file, size, &sectors)
                })
                .await?;
                job.fill_by_convert(true, &scratch.0, "raw", &|_| {})
                    .await?;
            }
        }
        progress(100);
        let published = {
            let job = job.clone();
            blocking(move || job.publish("storage.export.temp")).await?
        };
        if let Some(found) = published {
            return same_shape(&job.spec, None, found);
        }
        self.fp.hit("storage.export.after")?;
        Ok(())
    }

    async fn local_file(&self, name: &str) -> Result<crate::LocalFile> {
        format_of_name(name)?;
        Err(StorageError::Unsupported(
            "the memory backend's images are not files: it cannot be backed up".into(),
        ))
    }
}

#[cfg(test)]
mod tests;
