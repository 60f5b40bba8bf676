//! What a chunk and a manifest are as bytes, and the rules every repository
//! shares, whatever holds the bytes (a directory, an object store).
//!
//! Kept below the repositories so that they store exactly the same objects
//! (a chunk is the zstd frame of its data, named by the sha256 of the data;
//! a manifest is its JSON) under the same relative names, check them the same
//! way when reading, and hold the collector off with the same guard: a
//! repository copied from a directory into a bucket, or back, is the same
//! repository.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{BackupRepo, ChunkRead, Manifest, WriterGuard, chunk_hash};
use crate::{Result, StorageError, io_error};

/// zstd level: fast, and most of the gain on block data.
pub(super) const ZSTD_LEVEL: i32 = 3;

/// A chunk name is a lower-case sha256 in hex: nothing else reaches a path
/// or a key.
pub(super) fn valid_hash(hash: &str) -> Result<()> {
    if hash.len() == 64
        && hash
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        Ok(())
    } else {
        Err(StorageError::InvalidName(hash.to_owned()))
    }
}

/// A backup id is letters, digits and dashes (a UUID).
pub(super) fn valid_backup_id(backup_id: &str) -> Result<()> {
    if backup_id.is_empty()
        || !backup_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(StorageError::InvalidName(backup_id.to_owned()));
    }
    Ok(())
}

/// `chunks/<first two hex digits>/<hash>`, relative to the repository.
pub(super) fn chunk_key(hash: &str) -> Result<String> {
    valid_hash(hash)?;
    Ok(format!("chunks/{}/{hash}", &hash[..2]))
}

/// `manifests/<backup id>.json`, relative to the repository.
pub(super) fn manifest_key(backup_id: &str) -> Result<String> {
    valid_backup_id(backup_id)?;
    Ok(format!("manifests/{backup_id}.json"))
}

/// The stored form of a chunk's data.
pub(super) fn compress(data: &[u8]) -> Result<Vec<u8>> {
    zstd::bulk::compress(data, ZSTD_LEVEL).map_err(|e| io_error("compressing a chunk", e))
}

/// A stored chunk's data, decompressed and checked against its name.
pub(super) fn decode_chunk(hash: &str, stored: &[u8]) -> ChunkRead {
    let mut data = Vec::new();
    if let Err(e) = zstd::stream::copy_decode(stored, &mut data) {
        return ChunkRead::Corrupt(format!("does not decompress: {e}"));
    }
    let got = chunk_hash(&data);
    if got != hash {
        return ChunkRead::Corrupt(format!("its data hashes to {got}"));
    }
    ChunkRead::Data(data)
}

pub(super) fn encode_manifest(manifest: &Manifest) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(manifest)
        .map_err(|e| io_error("encoding a manifest", std::io::Error::other(e)))
}

pub(super) fn decode_manifest(backup_id: &str, bytes: &[u8]) -> Result<Manifest> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::BadImage {
        name: format!("manifest of backup {backup_id}"),
        detail: e.to_string(),
    })
}

/// What `put_manifest` answers when a different manifest is stored.
pub(super) fn manifest_mismatch(backup_id: &str) -> StorageError {
    StorageError::Mismatch {
        name: backup_id.to_owned(),
        detail: "a different manifest is stored for this backup".into(),
    }
}

/// Every chunk some manifest of `repo` refers to.
pub(super) fn referenced(repo: &dyn BackupRepo) -> Result<HashSet<String>> {
    let mut all = HashSet::new();
    for id in repo.list_manifests()? {
        if let Some(m) = repo.get_manifest(&id)? {
            all.extend(m.chunks.into_iter().flatten());
        }
    }
    Ok(all)
}

/// The in-process count of backups writing: [`BackupRepo::writer`] hands
/// out guards, and the collector holds the lock for its whole run, so no
/// writer starts while it deletes and it does not run while one writes.
#[derive(Debug, Default)]
pub(super) struct Writers(Arc<Mutex<u64>>);

impl Writers {
    pub(super) fn guard(&self) -> WriterGuard {
        *self.0.lock().expect("writers lock") += 1;
        let writers = self.0.clone();
        WriterGuard::new(move || *writers.lock().expect("writers lock") -= 1)
    }

    /// The lock, when no writer holds a guard.
    pub(super) fn idle(&self) -> Option<MutexGuard<'_, u64>> {
        let writers = self.0.lock().expect("writers lock");
        (*writers == 0).then_some(writers)
    }
}
