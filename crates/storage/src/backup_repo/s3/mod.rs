//! [`S3Repo`]: the backup repository in an S3-compatible object store.
//!
//! ```text
//! <bucket>/<prefix>chunks/<first two hex digits>/<sha256>   zstd frame of the chunk
//! <bucket>/<prefix>manifests/<backup id>.json
//! ```
//!
//! The objects are byte for byte what [`DirRepo`](super::DirRepo) stores
//! under the same relative names (`codec.rs`), so a repository directory
//! copied into a bucket is the same repository.
//!
//! # Crash safety with S3's semantics
//!
//! A PUT is atomic (an object is visible whole or not at all) and a GET
//! after a PUT sees it, so no temporaries are needed: `put_chunk` HEADs the
//! key and PUTs only a chunk that is not there (same name, same bytes);
//! `put_manifest` GETs the manifest first and PUTs only when there is none
//! (an identical one is a re-run, a different one is refused), and is still
//! written last: a backup exists exactly when its manifest object does.
//!
//! The collector must not remove the chunks of a backup being written (no
//! manifest names them yet). Within one process the writer guard
//! ([`BackupRepo::writer`]) holds it off, as for the directory. *Two Scoria
//! processes sharing one bucket and prefix are not supported*: one's
//! collector would delete the chunks of the other's backup in progress,
//! whose manifest would then name missing chunks (its restore fails naming
//! them; nothing is silently wrong, but the backup is lost). Give each
//! Scoria its own prefix. A lease object would need conditional writes,
//! which S3-compatible servers do not all implement.
//!
//! The engine's local temporaries (restore staging) are in a local
//! directory ([`BackupRepo::temp_path`]), emptied by `collect`.

mod client;
mod sigv4;
mod xml;

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

pub use client::{S3Client, S3Config};
pub use xml::Object;

use super::codec::{self, Writers};
use super::{BackupRepo, ChunkRead, Collected, Manifest, WriterGuard};
use crate::{Result, io_error};

/// A backup repository in a bucket. See the module doc.
#[derive(Debug)]
pub struct S3Repo {
    client: S3Client,
    temp_dir: PathBuf,
    writers: Writers,
    next_temp: AtomicU64,
}

impl S3Repo {
    /// Open the repository in `config`'s bucket (which must exist: it is
    /// listed once, so a wrong endpoint, bucket or key fails here), with
    /// local temporaries in `temp_dir` (absolute; created).
    pub fn open(config: S3Config, temp_dir: impl Into<PathBuf>) -> Result<Self> {
        let temp_dir = temp_dir.into();
        if !temp_dir.is_absolute() {
            return Err(crate::StorageError::InvalidName(
                temp_dir.display().to_string(),
            ));
        }
        fs::create_dir_all(&temp_dir)
            .map_err(|e| io_error(format!("creating {}", temp_dir.display()), e))?;
        let client = S3Client::new(config)?;
        client.check()?;
        Ok(Self {
            client,
            temp_dir,
            writers: Writers::default(),
            next_temp: AtomicU64::new(0),
        })
    }

    /// The client, on the repository's bucket and prefix.
    pub fn client(&self) -> &S3Client {
        &self.client
    }
}

impl BackupRepo for S3Repo {
    fn put_chunk(&self, hash: &str, data: &[u8]) -> Result<u64> {
        let key = codec::chunk_key(hash)?;
        if self.client.head(&key)? {
            return Ok(0);
        }
        let compressed = codec::compress(data)?;
        self.client.put(&key, &compressed)?;
        Ok(compressed.len() as u64)
    }

    fn has_chunk(&self, hash: &str) -> Result<bool> {
        self.client.head(&codec::chunk_key(hash)?)
    }

    fn get_chunk(&self, hash: &str) -> Result<ChunkRead> {
        Ok(match self.client.get(&codec::chunk_key(hash)?)? {
            None => ChunkRead::Missing,
            Some(stored) => codec::decode_chunk(hash, &stored),
        })
    }

    fn put_manifest(&self, manifest: &Manifest) -> Result<()> {
        let key = codec::manifest_key(&manifest.backup_id)?;
        match self.get_manifest(&manifest.backup_id)? {
            Some(there) if there == *manifest => Ok(()),
            Some(_) => Err(codec::manifest_mismatch(&manifest.backup_id)),
            None => self.client.put(&key, &codec::encode_manifest(manifest)?),
        }
    }

    fn get_manifest(&self, backup_id: &str) -> Result<Option<Manifest>> {
        match self.client.get(&codec::manifest_key(backup_id)?)? {
            Some(b) => codec::decode_manifest(backup_id, &b).map(Some),
            None => Ok(None),
        }
    }

    fn delete_manifest(&self, backup_id: &str) -> Result<()> {
        self.client.delete(&codec::manifest_key(backup_id)?)
    }

    fn list_manifests(&self) -> Result<Vec<String>> {
        let mut ids: Vec<String> = self
            .client
            .list("manifests/")?
            .into_iter()
            .filter_map(|o| {
                let id = o.key.strip_prefix("manifests/")?.strip_suffix(".json")?;
                codec::valid_backup_id(id).is_ok().then(|| id.to_owned())
            })
            .collect();
        ids.sort();
        Ok(ids)
    }

    fn writer(&self) -> WriterGuard {
        self.writers.guard()
    }

    fn collect(&self) -> Result<Collected> {
        // Locked for the whole collection: no writer starts.
        let Some(writers) = self.writers.idle() else {
            return Ok(Collected {
                skipped_busy: true,
                ..Collected::default()
            });
        };
        let mut done = Collected::default();
        let entries = fs::read_dir(&self.temp_dir)
            .map_err(|e| io_error(format!("listing {}", self.temp_dir.display()), e))?;
        for entry in entries.flatten() {
            if fs::remove_file(entry.path()).is_ok() {
                done.temporaries += 1;
            }
        }
        // Listed after the manifests: a chunk is deleted only when no
        // manifest that existed before the listing names it.
        let keep = codec::referenced(self)?;
        for object in self.client.list("chunks/")? {
            // Only objects named as chunks are the repository's.
            let Some(hash) = object.key.rsplit('/').next() else {
                continue;
            };
            if codec::chunk_key(hash).ok().as_deref() != Some(object.key.as_str())
                || keep.contains(hash)
            {
                continue;
            }
            self.client.delete(&object.key)?;
            done.chunks += 1;
            done.bytes += object.size;
        }
        drop(writers);
        Ok(done)
    }

    fn temp_path(&self, what: &str) -> PathBuf {
        let n = self.next_temp.fetch_add(1, Ordering::Relaxed);
        self.temp_dir
            .join(format!("{what}-{}-{n}", std::process::id()))
    }
}
