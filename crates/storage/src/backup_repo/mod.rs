//! The backup repository: where backups' data lives, outside the backends.
//!
//! A backup is a *manifest* (one per backup) and *chunks*. The volume is cut
//! into chunks of a fixed size (default 4 MiB, [`DEFAULT_CHUNK_SIZE`]); the
//! manifest lists, for each chunk index, either the sha256 of the chunk's
//! bytes or nothing for a chunk that reads as zeroes (never stored). A chunk
//! is stored once under its hash, zstd-compressed, whoever refers to it: two
//! backups of the same volume share every chunk that did not change, and an
//! incremental backup's manifest is complete on its own (the unchanged
//! entries are copied from its parent's manifest), so a restore reads one
//! manifest, never a chain.
//!
//! The repository is behind the [`BackupRepo`] trait; [`DirRepo`] is a
//! directory (`<data_dir>/backups` by default), [`S3Repo`] a bucket of an
//! S3-compatible object store. Both store the same bytes under the same
//! relative names (`codec.rs`).
//!
//! # Crash safety
//!
//! (The directory's way; `s3/mod.rs` says how the object store gets the
//! same guarantees from S3's atomic PUT.) Chunks and manifests are written
//! to a temporary, synced, and linked into place without replacing anything (a chunk already there is the same
//! bytes, by its name). The manifest is written last: a backup exists, for a
//! restore and for the collector, exactly when its manifest is durable. The
//! chunks of a backup interrupted before its manifest are referenced by no
//! manifest and go at the next [`BackupRepo::collect`], which refuses to run
//! while a backup is writing ([`BackupRepo::writer`]).
//!
//! # Verification
//!
//! Reading a chunk ([`BackupRepo::get_chunk`]) decompresses it and checks its
//! sha256 against its name: a missing or corrupt chunk is reported, never
//! returned.
//!
//! `engine.rs` reads a volume into the repository and back (see its doc for
//! the change tracking).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Result;

#[cfg(test)]
mod bench;
mod codec;
mod dir;
pub mod engine;
#[cfg(test)]
mod fixtures;
mod s3;
#[cfg(test)]
mod s3_tests;
#[cfg(test)]
mod tests;

pub use dir::DirRepo;
pub use s3::{Object, S3Client, S3Config, S3Repo};

/// 4 MiB.
pub const DEFAULT_CHUNK_SIZE: u64 = 4 << 20;
/// Chunk sizes are multiples of 64 KiB (qcow2's default cluster and bitmap
/// granularity), from 64 KiB to 64 MiB.
pub const CHUNK_ALIGN: u64 = 64 << 10;
pub const MAX_CHUNK_SIZE: u64 = 64 << 20;

/// Whether `size` can be a chunk size.
pub fn valid_chunk_size(size: u64) -> bool {
    (CHUNK_ALIGN..=MAX_CHUNK_SIZE).contains(&size) && size.is_multiple_of(CHUNK_ALIGN)
}

/// How a backup found the data it read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tracking {
    /// A full backup: every allocated chunk was read.
    Full,
    /// An incremental read only the chunks the previous backup's dirty bitmap
    /// marks.
    DirtyBitmap,
    /// An incremental without a usable bitmap: every allocated chunk was read
    /// and only those whose hash the repository lacked were stored.
    FullRead,
}

impl Tracking {
    pub fn as_str(self) -> &'static str {
        match self {
            Tracking::Full => "full",
            Tracking::DirtyBitmap => "dirty-bitmap",
            Tracking::FullRead => "full-read",
        }
    }
}

/// One backup's description of the volume's data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub backup_id: String,
    /// The backup this one is an increment on.
    pub parent: Option<String>,
    /// The volume's virtual size, in bytes.
    pub volume_size: u64,
    pub chunk_size: u64,
    /// For each chunk index: the sha256 (hex) of its bytes, or `None` when it
    /// reads as zeroes. The last chunk may be short (`volume_size` ends it).
    pub chunks: Vec<Option<String>>,
    pub tracking: Tracking,
    /// Why an incremental fell back to a full read, if it did.
    #[serde(default)]
    pub fallback_reason: Option<String>,
    /// Guest bytes this backup read from the volume.
    pub bytes_read: u64,
    /// Chunks this backup added to the repository, and their stored
    /// (compressed) size.
    pub new_chunks: u64,
    pub new_bytes: u64,
}

impl Manifest {
    pub const VERSION: u32 = 1;

    /// The length of chunk `index`.
    pub fn chunk_len(&self, index: usize) -> u64 {
        let start = index as u64 * self.chunk_size;
        self.chunk_size.min(self.volume_size.saturating_sub(start))
    }

    /// Chunks holding data (not zero).
    pub fn data_chunks(&self) -> u64 {
        self.chunks.iter().filter(|c| c.is_some()).count() as u64
    }
}

/// What reading a chunk found.
#[derive(Debug)]
pub enum ChunkRead {
    /// The chunk's bytes, their hash checked.
    Data(Vec<u8>),
    Missing,
    /// Present but not the bytes its name says.
    Corrupt(String),
}

/// What a collection removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Collected {
    pub chunks: u64,
    pub bytes: u64,
    pub temporaries: u64,
    /// A backup was writing: nothing was removed.
    pub skipped_busy: bool,
}

/// Held while a backup writes chunks whose manifest is not written yet: the
/// collector does not run meanwhile.
pub struct WriterGuard {
    release: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl WriterGuard {
    pub(crate) fn new(release: impl FnOnce() + Send + Sync + 'static) -> Self {
        Self {
            release: Some(Box::new(release)),
        }
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        if let Some(f) = self.release.take() {
            f();
        }
    }
}

/// A store of chunks and manifests. Blocking calls (file I/O, compression):
/// async callers run them on a blocking thread.
pub trait BackupRepo: Send + Sync + std::fmt::Debug {
    /// Store `data` under `hash` (its sha256, hex) unless a chunk of that name
    /// is there. Returns the stored (compressed) bytes written, 0 when the
    /// chunk was already there.
    fn put_chunk(&self, hash: &str, data: &[u8]) -> Result<u64>;

    /// Whether a chunk of that name is stored (not checked).
    fn has_chunk(&self, hash: &str) -> Result<bool>;

    /// A chunk's bytes, decompressed and checked against `hash`.
    fn get_chunk(&self, hash: &str) -> Result<ChunkRead>;

    /// Make `manifest` durable; one already stored for the backup is
    /// replaced only by the same content (a re-run).
    fn put_manifest(&self, manifest: &Manifest) -> Result<()>;

    fn get_manifest(&self, backup_id: &str) -> Result<Option<Manifest>>;

    /// Remove a backup's manifest (its chunks go at the next collection);
    /// absent is success.
    fn delete_manifest(&self, backup_id: &str) -> Result<()>;

    /// Backup ids with a manifest, sorted.
    fn list_manifests(&self) -> Result<Vec<String>>;

    /// A guard to hold while writing a backup (see [`WriterGuard`]).
    fn writer(&self) -> WriterGuard;

    /// Remove every chunk no manifest refers to, and leftover temporaries;
    /// nothing while a writer is held.
    fn collect(&self) -> Result<Collected>;

    /// A path for a temporary file of this repository (not created).
    fn temp_path(&self, what: &str) -> std::path::PathBuf;
}

pub type DynRepo = Arc<dyn BackupRepo>;

/// sha256 of `data`, lower-case hex (computed in `scoria-digest`, optimized
/// in every build profile).
pub fn chunk_hash(data: &[u8]) -> String {
    scoria_digest::sha256_hex(data)
}
