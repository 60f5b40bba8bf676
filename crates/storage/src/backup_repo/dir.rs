//! [`DirRepo`]: the backup repository as a directory.
//!
//! ```text
//! <root>/chunks/<first two hex digits>/<sha256>   zstd frame of the chunk
//! <root>/manifests/<backup id>.json
//! <root>/tmp/                                     temporaries (removed by collect)
//! ```
//!
//! Every file is written under `tmp/`, synced, then hard-linked to its name
//! (which never replaces a file) and the temporary unlinked; the directory
//! holding the name is synced.

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::codec::{self, Writers};
use super::{BackupRepo, ChunkRead, Collected, Manifest, WriterGuard};
use crate::{Result, StorageError, io_error};

/// A backup repository in a directory. See the module doc.
#[derive(Debug)]
pub struct DirRepo {
    root: PathBuf,
    fsync: bool,
    writers: Writers,
    next_temp: AtomicU64,
}

impl DirRepo {
    /// Open (creating if absent) the repository at `root`, which must be
    /// absolute. `fsync` off only for tests and benchmarks.
    pub fn open(root: impl Into<PathBuf>, fsync: bool) -> Result<Self> {
        let root = root.into();
        if !root.is_absolute() {
            return Err(StorageError::InvalidName(root.display().to_string()));
        }
        for sub in ["chunks", "manifests", "tmp"] {
            let d = root.join(sub);
            fs::create_dir_all(&d).map_err(|e| io_error(format!("creating {}", d.display()), e))?;
        }
        Ok(Self {
            root,
            fsync,
            writers: Writers::default(),
            next_temp: AtomicU64::new(0),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the chunk `hash` is stored (for tests and `verify`).
    pub fn chunk_path(&self, hash: &str) -> Result<PathBuf> {
        Ok(self.root.join(codec::chunk_key(hash)?))
    }

    fn manifest_path(&self, backup_id: &str) -> Result<PathBuf> {
        Ok(self.root.join(codec::manifest_key(backup_id)?))
    }

    /// Write `bytes` to `dest` through a synced temporary; an existing `dest`
    /// is left alone and reported `false`.
    fn publish(&self, dest: &Path, bytes: &[u8]) -> Result<bool> {
        let tmp = self.temp_path("put");
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(bytes)?;
            if self.fsync {
                f.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| io_error(format!("writing {}", tmp.display()), e))?;
        let linked = fs::hard_link(&tmp, dest);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                if self.fsync
                    && let Some(parent) = dest.parent()
                {
                    File::open(parent)
                        .and_then(|d| d.sync_all())
                        .map_err(|e| io_error(format!("syncing {}", parent.display()), e))?;
                }
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_error(format!("linking {}", dest.display()), e)),
        }
    }
}

fn read_dir_names(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(names),
        Err(e) => return Err(io_error(format!("listing {}", dir.display()), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_error(format!("listing {}", dir.display()), e))?;
        if let Some(n) = entry.file_name().to_str() {
            names.push(n.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

impl BackupRepo for DirRepo {
    fn put_chunk(&self, hash: &str, data: &[u8]) -> Result<u64> {
        let path = self.chunk_path(hash)?;
        if path.exists() {
            return Ok(0);
        }
        let dir = path.parent().expect("a chunk path has a parent");
        fs::create_dir_all(dir).map_err(|e| io_error(format!("creating {}", dir.display()), e))?;
        let compressed = codec::compress(data)?;
        if self.publish(&path, &compressed)? {
            Ok(compressed.len() as u64)
        } else {
            Ok(0)
        }
    }

    fn has_chunk(&self, hash: &str) -> Result<bool> {
        Ok(self.chunk_path(hash)?.exists())
    }

    fn get_chunk(&self, hash: &str) -> Result<ChunkRead> {
        let path = self.chunk_path(hash)?;
        let stored = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(ChunkRead::Missing),
            Err(e) => return Err(io_error(format!("reading {}", path.display()), e)),
        };
        Ok(codec::decode_chunk(hash, &stored))
    }

    fn put_manifest(&self, manifest: &Manifest) -> Result<()> {
        let path = self.manifest_path(&manifest.backup_id)?;
        let bytes = codec::encode_manifest(manifest)?;
        if !self.publish(&path, &bytes)? {
            let there = self.get_manifest(&manifest.backup_id)?;
            if there.as_ref() != Some(manifest) {
                return Err(codec::manifest_mismatch(&manifest.backup_id));
            }
        }
        Ok(())
    }

    fn get_manifest(&self, backup_id: &str) -> Result<Option<Manifest>> {
        let path = self.manifest_path(backup_id)?;
        match fs::read(&path) {
            Ok(b) => codec::decode_manifest(backup_id, &b).map(Some),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(format!("reading {}", path.display()), e)),
        }
    }

    fn delete_manifest(&self, backup_id: &str) -> Result<()> {
        let path = self.manifest_path(backup_id)?;
        match fs::remove_file(&path) {
            Ok(()) => {
                if self.fsync {
                    let dir = self.root.join("manifests");
                    File::open(&dir)
                        .and_then(|d| d.sync_all())
                        .map_err(|e| io_error(format!("syncing {}", dir.display()), e))?;
                }
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(format!("removing {}", path.display()), e)),
        }
    }

    fn list_manifests(&self) -> Result<Vec<String>> {
        Ok(read_dir_names(&self.root.join("manifests"))?
            .into_iter()
            .filter_map(|n| n.strip_suffix(".json").map(str::to_owned))
            .collect())
    }

    fn writer(&self) -> WriterGuard {
        self.writers.guard()
    }

    fn collect(&self) -> Result<Collected> {
        // The count stays locked for the whole collection: no writer starts.
        let Some(writers) = self.writers.idle() else {
            return Ok(Collected {
                skipped_busy: true,
                ..Collected::default()
            });
        };
        let mut done = Collected::default();
        let tmp = self.root.join("tmp");
        for n in read_dir_names(&tmp)? {
            let p = tmp.join(&n);
            if fs::remove_file(&p).is_ok() {
                done.temporaries += 1;
            }
        }
        let keep = codec::referenced(self)?;
        let chunks = self.root.join("chunks");
        for prefix in read_dir_names(&chunks)? {
            let dir = chunks.join(&prefix);
            for n in read_dir_names(&dir)? {
                if keep.contains(&n) {
                    continue;
                }
                let p = dir.join(&n);
                let len = fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                match fs::remove_file(&p) {
                    Ok(()) => {
                        done.chunks += 1;
                        done.bytes += len;
                    }
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error(format!("removing {}", p.display()), e)),
                }
            }
        }
        drop(writers);
        Ok(done)
    }

    fn temp_path(&self, what: &str) -> PathBuf {
        let n = self.next_temp.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{what}-{}-{n}", std::process::id()))
    }
}
