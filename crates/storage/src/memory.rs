//! The in-memory backend: images as entries in a map.
//!
//! It exists for fast tests of logic above the storage layer (flows, quotas, the
//! scheduler, recovery), which need a driver with the file driver's semantics but
//! none of its I/O. It follows the same rules (names carry the format, sizes are
//! multiples of 512, create/copy/delete/extend are idempotent, a different shape is
//! `Mismatch`) and hits the same failpoints, and the crate's conformance tests run
//! one suite against both drivers to keep it so. It never stands in for a test that
//! claims a volume works.
//!
//! Capacity is a fixed figure set by the test ([`MemoryDriver::set_capacity`]);
//! images do not consume it, so a scheduler test sees exactly the numbers it set.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use scoria_failpoints::Failpoints;

use crate::{
    Capacity, Driver, Format, ImageInfo, ImageSpec, Result, StorageError, format_of_name,
    validate_size,
};

/// The capacity a new [`MemoryDriver`] reports: 1 TiB, all free.
pub const DEFAULT_CAPACITY: Capacity = Capacity {
    total: 1 << 40,
    free: 1 << 40,
};

/// Images in a map. See the module doc.
#[derive(Debug)]
pub struct MemoryDriver {
    fp: Arc<Failpoints>,
    images: Mutex<BTreeMap<String, (Format, u64)>>,
    capacity: Mutex<Capacity>,
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
        }
    }

    /// Change the capacity the backend reports from now on.
    pub fn set_capacity(&self, capacity: Capacity) {
        *lock(&self.capacity) = capacity;
    }
}

/// Lock a mutex, ignoring poison: every critical section leaves the map whole.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[async_trait::async_trait]
impl Driver for MemoryDriver {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn create(&self, spec: &ImageSpec) -> Result<()> {
        spec.validate()?;
        self.fp.hit("storage.create.before")?;
        {
            let images = lock(&self.images);
            if let Some(&(_, size)) = images.get(&spec.name) {
                if size == spec.size {
                    return Ok(());
                }
                return Err(StorageError::Mismatch {
                    name: spec.name.clone(),
                    detail: format!("virtual size {size} instead of {}", spec.size),
                });
            }
        }
        // There is no temporary to leave behind here; the failpoint still fires
        // where the file driver's would, so crash tests enumerate the same points.
        self.fp.hit("storage.create.temp")?;
        lock(&self.images)
            .entry(spec.name.clone())
            .or_insert((spec.format, spec.size));
        self.fp.hit("storage.create.after")?;
        Ok(())
    }

    async fn copy_from(
        &self,
        source: &str,
        spec: &ImageSpec,
        progress: &(dyn Fn(u8) + Send + Sync),
    ) -> Result<()> {
        spec.validate()?;
        format_of_name(source)?;
        if source == spec.name {
            return Err(StorageError::InvalidName(spec.name.clone()));
        }
        self.fp.hit("storage.copy.before")?;
        {
            let images = lock(&self.images);
            if let Some(&(_, size)) = images.get(&spec.name) {
                if size == spec.size {
                    return Ok(());
                }
                return Err(StorageError::Mismatch {
                    name: spec.name.clone(),
                    detail: format!("virtual size {size} instead of {}", spec.size),
                });
            }
            let &(_, source_size) = images
                .get(source)
                .ok_or_else(|| StorageError::NotFound(source.to_owned()))?;
            if source_size > spec.size {
                return Err(StorageError::InvalidSize {
                    size: spec.size,
                    detail: format!("smaller than the source image {source} ({source_size} bytes)"),
                });
            }
        }
        // Nothing to copy: the entry is all there is.
        progress(100);
        self.fp.hit("storage.copy.temp")?;
        lock(&self.images)
            .entry(spec.name.clone())
            .or_insert((spec.format, spec.size));
        self.fp.hit("storage.copy.after")?;
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<()> {
        format_of_name(name)?;
        self.fp.hit("storage.delete.before")?;
        lock(&self.images).remove(name);
        self.fp.hit("storage.delete.after")?;
        Ok(())
    }

    async fn extend(&self, name: &str, new_size: u64) -> Result<()> {
        let format = format_of_name(name)?;
        validate_size(format, new_size)?;
        self.fp.hit("storage.extend.before")?;
        {
            let mut images = lock(&self.images);
            let (_, size) = images
                .get_mut(name)
                .ok_or_else(|| StorageError::NotFound(name.to_owned()))?;
            if *size >= new_size {
                return Ok(());
            }
            *size = new_size;
        }
        self.fp.hit("storage.extend.after")?;
        Ok(())
    }

    async fn info(&self, name: &str) -> Result<Option<ImageInfo>> {
        format_of_name(name)?;
        Ok(lock(&self.images)
            .get(name)
            .map(|&(format, size)| ImageInfo {
                name: name.to_owned(),
                format,
                virtual_size: size,
                // Nothing is allocated anywhere.
                actual_size: 0,
                backing_file: None,
                data_file: None,
            }))
    }

    async fn list(&self) -> Result<Vec<String>> {
        Ok(lock(&self.images).keys().cloned().collect())
    }

    async fn capacity(&self) -> Result<Capacity> {
        Ok(*lock(&self.capacity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn capacity_is_what_the_test_set() {
        let d = MemoryDriver::new(Failpoints::new());
        assert_eq!(d.capacity().await.expect("capacity"), DEFAULT_CAPACITY);
        let small = Capacity {
            total: 100 << 30,
            free: 10 << 30,
        };
        d.set_capacity(small);
        let spec = ImageSpec {
            name: "v.raw".into(),
            size: 50 << 30,
            format: Format::Raw,
        };
        d.create(&spec).await.expect("create");
        assert_eq!(d.capacity().await.expect("capacity"), small);
    }
}
