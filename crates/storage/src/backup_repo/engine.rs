//! Reading a volume into the repository (a backup) and back (a restore).
//!
//! # Change tracking: persistent qcow2 dirty bitmaps
//!
//! Every backup of a qcow2 volume adds an enabled persistent bitmap
//! `scoria-backup-<backup id>` to the volume's active image before it reads
//! anything (the volume is `backing-up`: nothing writes to it meanwhile), and
//! removes every other `scoria-backup-*` bitmap but those the caller keeps
//! ([`BackupJob::keep_bitmaps`]: the volume's latest backup's, the one an
//! incremental reads). Older bitmaps are dropped at the *start* of the next
//! backup, never at the end of this one: a backup undone after it read keeps
//! the previous backup's bitmap usable. From then on every qemu process that writes to the
//! image (an export's `qemu-storage-daemon`, `qemu-img convert`, `qemu-io`)
//! marks what it writes in the bitmap. An incremental on top of backup P then
//! reads only the chunks that P's bitmap marks — listed by exporting the image
//! read-only through `qemu-nbd --bitmap` and mapping the export with
//! `x-dirty-bitmap` ([`crate::qemu::backup::dirty_extents`]) — and copies
//! every other entry of P's manifest.
//!
//! Why bitmaps rather than the layer structure: a layer is only cut when a
//! snapshot is taken, so "what is allocated in the layers above P's frozen
//! image" would need a snapshot per backup and would keep a frozen layer alive
//! per backup. A bitmap costs nothing in the chain and is exactly what
//! qemu's own incremental backup uses, also for a live volume later (the
//! storage daemon's `block-dirty-bitmap-*`).
//!
//! When the bitmap cannot be trusted the incremental falls back to reading
//! every allocated chunk and storing only those whose hash the repository
//! lacks ([`Tracking::FullRead`]), and the manifest says why
//! (`fallback_reason`): the bitmap is missing from the active image (a
//! snapshot moved the volume onto a new overlay, a revert or the bitmap was
//! never added because the volume is raw), flagged `in-use` (a writer did not
//! close the image cleanly), or the volume's size changed.
//!
//! # Sources
//!
//! A backup reads a [`Source`]: the volume's image file ([`Source::File`],
//! an `available` volume nothing writes; bitmaps handled here as above), a
//! frozen image ([`Source::Frozen`], a snapshot's: never given a bitmap, an
//! incremental reads everything and stores only the new chunks), or an NBD
//! export ([`Source::Nbd`], the point-in-time view of an attached volume that
//! its export's daemon serves: the daemon added the new bitmap and froze the
//! changes since the parent into a bitmap the export offers, so nothing here
//! touches bitmaps). The same reading, hashing and storing serves all three.
//!
//! Reads go through `qemu-img convert` of a byte range (the chain flattened),
//! at most [`RUN_CHUNKS`] chunks per process, into a temporary of the
//! repository; only the chunks a backup must read are read, and the bytes
//! read are counted in the manifest (`bytes_read`).
//!
//! # Restore
//!
//! Every chunk is read from the repository and its hash checked, into a
//! sparse raw temporary, *before* the target is touched: a missing or corrupt
//! chunk fails with [`StorageError::BadChunk`] naming the backup, the chunk
//! index and hash, and the target is unchanged. Then the temporary is written
//! over the target, zeroes included.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{ChunkRead, DynRepo, Manifest, Tracking};
use crate::file::create::blocking;
use crate::qemu::backup::{self as q, Extent};
use crate::qemu::nbd::{self, NbdSource};
use crate::{Format, LocalFile, Result, StorageError, io_error};

/// The most chunks read by one `qemu-img` process.
pub const RUN_CHUNKS: usize = 16;

pub const BITMAP_PREFIX: &str = "scoria-backup-";

/// The dirty bitmap a backup starts.
pub fn bitmap_name(backup_id: &str) -> String {
    format!("{BITMAP_PREFIX}{backup_id}")
}

/// What to back up.
#[derive(Clone, Debug)]
pub struct BackupJob {
    pub backup_id: String,
    pub chunk_size: u64,
    /// The backup this one is an increment on (its manifest).
    pub parent: Option<Manifest>,
    /// Backups whose bitmaps stay (the volume's latest backup, whether or
    /// not this one builds on it); every other backup bitmap is removed.
    pub keep_bitmaps: Vec<String>,
}

/// What a backup reads (see the module doc).
#[derive(Clone, Debug)]
pub enum Source {
    /// A volume's image that nothing writes while it is read.
    File(LocalFile),
    /// An image that never changes (a snapshot's): no bitmap is added to it.
    Frozen(LocalFile),
    /// A point-in-time export of an attached volume.
    Nbd(NbdExport),
}

/// A fleecing export and what it offers for an incremental.
#[derive(Clone, Debug)]
pub struct NbdExport {
    pub source: NbdSource,
    /// The bitmap the export offers: what changed since the parent backup.
    pub changes: Option<String>,
    /// Why there is none (told in the manifest's `fallback_reason`).
    pub no_changes: Option<String>,
}

impl Source {
    async fn size(&self) -> Result<u64> {
        match self {
            Self::File(f) | Self::Frozen(f) => {
                Ok(crate::qemu::info(&f.path, f.format).await?.virtual_size)
            }
            Self::Nbd(n) => nbd::size(&n.source).await,
        }
    }

    async fn data_extents(&self) -> Result<Vec<Extent>> {
        match self {
            Self::File(f) | Self::Frozen(f) => q::data_extents(&f.path, f.format).await,
            Self::Nbd(n) => nbd::data_extents(&n.source).await,
        }
    }

    async fn read_range(&self, offset: u64, len: u64, dest: &Path) -> Result<()> {
        match self {
            Self::File(f) | Self::Frozen(f) => {
                q::read_range(&f.path, f.format, offset, len, dest).await
            }
            Self::Nbd(n) => nbd::read_range(&n.source, offset, len, dest).await,
        }
    }
}

/// Back up the image `file` (nothing writes it meanwhile) into `repo`: see
/// [`backup_from`].
pub async fn backup(file: &LocalFile, repo: &DynRepo, job: &BackupJob) -> Result<Manifest> {
    backup_from(&Source::File(file.clone()), repo, job).await
}

/// Back up `source` into `repo` as `job` says, and return the durable
/// manifest. A manifest already stored for the backup is returned as it is
/// (a re-run after a crash).
pub async fn backup_from(source: &Source, repo: &DynRepo, job: &BackupJob) -> Result<Manifest> {
    if !super::valid_chunk_size(job.chunk_size) {
        return Err(StorageError::InvalidSize {
            size: job.chunk_size,
            detail: "not a valid chunk size".into(),
        });
    }
    let r = repo.clone();
    let id = job.backup_id.clone();
    if let Some(m) = blocking(move || r.get_manifest(&id)).await? {
        return Ok(m);
    }
    // Taken on a blocking thread: it waits while a collection runs, which
    // for an object store is many requests long.
    let r = repo.clone();
    let _writing = blocking(move || Ok(r.writer())).await?;
    let size = source.size().await?;
    let chunk = job.chunk_size;
    let count = size.div_ceil(chunk) as usize;
    if let Source::File(file) = source
        && file.format == Format::Qcow2
    {
        q::bitmap_add(&file.path, &bitmap_name(&job.backup_id)).await?;
        let mut keep: Vec<&str> = job.keep_bitmaps.iter().map(String::as_str).collect();
        keep.push(&job.backup_id);
        keep.extend(job.parent.as_ref().map(|p| p.backup_id.as_str()));
        retire_bitmaps(file, &keep).await?;
    }
    let (to_read, mut chunks, tracking, fallback_reason) = match &job.parent {
        None => (
            overlapping(&source.data_extents().await?, chunk, count),
            vec![None; count],
            Tracking::Full,
            None,
        ),
        Some(p) => match changed_since(source, p, size, chunk).await {
            Ok(dirty) => (
                overlapping(&dirty, chunk, count),
                p.chunks.clone(),
                Tracking::DirtyBitmap,
                None,
            ),
            Err(reason) => {
                tracing::info!(backup = %job.backup_id, %reason, "incremental backup falls back to a full read");
                (
                    overlapping(&source.data_extents().await?, chunk, count),
                    vec![None; count],
                    Tracking::FullRead,
                    Some(reason),
                )
            }
        },
    };
    let mut bytes_read = 0;
    let mut new_chunks = 0;
    let mut new_bytes = 0;
    for run in runs(&to_read) {
        let start = run[0] as u64 * chunk;
        let end = ((run[run.len() - 1] as u64 + 1) * chunk).min(size);
        let tmp = repo.temp_path("read");
        let read = source.read_range(start, end - start, &tmp).await;
        if let Err(e) = read {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        bytes_read += end - start;
        let r = repo.clone();
        let run_for_task = run.clone();
        let stored = blocking(move || {
            let out = store_run(&r, &tmp, &run_for_task, start, end, chunk);
            let _ = std::fs::remove_file(&tmp);
            out
        })
        .await?;
        for (i, (hash, written)) in run.iter().zip(stored) {
            if written > 0 {
                new_chunks += 1;
                new_bytes += written;
            }
            chunks[*i] = hash;
        }
    }
    let manifest = Manifest {
        version: Manifest::VERSION,
        backup_id: job.backup_id.clone(),
        parent: job.parent.as_ref().map(|p| p.backup_id.clone()),
        volume_size: size,
        chunk_size: chunk,
        chunks,
        tracking,
        fallback_reason,
        bytes_read,
        new_chunks,
        new_bytes,
    };
    let r = repo.clone();
    let m = manifest.clone();
    blocking(move || r.put_manifest(&m)).await?;
    Ok(manifest)
}

/// Hash and store the chunks of one run read into `tmp`: for each, its hash
/// (`None`: zeroes) and the stored bytes it added.
fn store_run(
    repo: &DynRepo,
    tmp: &Path,
    run: &[usize],
    start: u64,
    end: u64,
    chunk: u64,
) -> Result<Vec<(Option<String>, u64)>> {
    let f = File::open(tmp).map_err(|e| io_error(format!("opening {}", tmp.display()), e))?;
    let mut out = Vec::with_capacity(run.len());
    let mut buf = vec![0u8; chunk as usize];
    for (k, _) in run.iter().enumerate() {
        let off = k as u64 * chunk;
        let len = chunk.min(end - start - off) as usize;
        f.read_exact_at(&mut buf[..len], off)
            .map_err(|e| io_error(format!("reading {}", tmp.display()), e))?;
        let data = &buf[..len];
        let Some(hash) = scoria_digest::chunk_digest(data) else {
            out.push((None, 0));
            continue;
        };
        let written = repo.put_chunk(&hash, data)?;
        out.push((Some(hash), written));
    }
    Ok(out)
}

/// What changed since the parent backup, as `source` can tell; or why that
/// cannot be known.
async fn changed_since(
    source: &Source,
    parent: &Manifest,
    size: u64,
    chunk: u64,
) -> std::result::Result<Vec<Extent>, String> {
    let same_shape = same_shape(parent, size, chunk);
    match source {
        Source::File(file) => {
            same_shape?;
            dirty_since(file, parent).await
        }
        Source::Frozen(_) => Err(format!(
            "a backup from a snapshot reads the snapshot's whole frozen image: a frozen image carries no dirty bitmap (parent backup {})",
            parent.backup_id
        )),
        Source::Nbd(n) => {
            same_shape?;
            match (&n.changes, &n.no_changes) {
                (Some(bitmap), _) => nbd::dirty_extents(&n.source, bitmap).await.map_err(|e| {
                    format!("reading the dirty bitmap through the export failed: {e}")
                }),
                (None, Some(why)) => Err(why.clone()),
                (None, None) => Err(format!(
                    "the export offers no dirty bitmap for backup {}",
                    parent.backup_id
                )),
            }
        }
    }
}

/// Whether an incremental of a `size`-byte volume in `chunk`-byte chunks can
/// build on `parent`'s manifest entry by entry.
fn same_shape(parent: &Manifest, size: u64, chunk: u64) -> std::result::Result<(), String> {
    if parent.volume_size != size {
        return Err(format!(
            "the volume's size changed since backup {} ({} → {size} bytes)",
            parent.backup_id, parent.volume_size
        ));
    }
    if parent.chunk_size != chunk {
        return Err(format!(
            "the chunk size changed since backup {}",
            parent.backup_id
        ));
    }
    Ok(())
}

/// What changed in the image `file` since `parent`, by its bitmap.
async fn dirty_since(
    file: &LocalFile,
    parent: &Manifest,
) -> std::result::Result<Vec<Extent>, String> {
    if file.format != Format::Qcow2 {
        return Err("the volume is raw: raw images have no dirty bitmap".into());
    }
    let name = bitmap_name(&parent.backup_id);
    let bitmaps = q::bitmaps(&file.path).await.map_err(|e| e.to_string())?;
    match bitmaps.iter().find(|b| b.name == name) {
        None => Err(format!(
            "the dirty bitmap of backup {} is not in the volume's active image (a snapshot, revert or restore since)",
            parent.backup_id
        )),
        Some(b) if b.in_use => Err(format!(
            "the dirty bitmap of backup {} is inconsistent (a writer did not close the volume cleanly)",
            parent.backup_id
        )),
        Some(_) => q::dirty_extents(&file.path, &name)
            .await
            .map_err(|e| format!("reading the dirty bitmap failed: {e}")),
    }
}

/// Remove every backup bitmap of the image but those of the backups `keep`.
/// A raw image has none.
pub async fn retire_bitmaps(file: &LocalFile, keep: &[&str]) -> Result<()> {
    if file.format != Format::Qcow2 {
        return Ok(());
    }
    let keep: Vec<String> = keep.iter().map(|k| bitmap_name(k)).collect();
    for b in q::bitmaps(&file.path).await? {
        if b.name.starts_with(BITMAP_PREFIX) && !keep.contains(&b.name) {
            q::bitmap_remove(&file.path, &b.name).await?;
        }
    }
    Ok(())
}

/// Undo of a backup that did not complete: remove the bitmap it started.
pub async fn forget_bitmap(file: &LocalFile, backup_id: &str) -> Result<()> {
    if file.format != Format::Qcow2 {
        return Ok(());
    }
    q::bitmap_remove(&file.path, &bitmap_name(backup_id)).await
}

/// Chunk indices (of `count`) that any of `extents` overlaps.
fn overlapping(extents: &[Extent], chunk: u64, count: usize) -> BTreeSet<usize> {
    let mut out = BTreeSet::new();
    for e in extents {
        if e.length == 0 {
            continue;
        }
        let first = (e.start / chunk) as usize;
        let last = ((e.start + e.length - 1) / chunk) as usize;
        out.extend(first..=last.min(count.saturating_sub(1)));
    }
    out.retain(|i| *i < count);
    out
}

/// Consecutive indices, at most [`RUN_CHUNKS`] per run.
fn runs(indices: &BTreeSet<usize>) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    for &i in indices {
        match out.last_mut() {
            Some(run) if run[run.len() - 1] + 1 == i && run.len() < RUN_CHUNKS => run.push(i),
            _ => out.push(vec![i]),
        }
    }
    out
}

/// What a restore wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    pub chunks: u64,
    pub bytes: u64,
}

/// A chunk a verification found missing or corrupt.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BadChunk {
    pub index: u64,
    pub hash: String,
    pub problem: String,
}

/// What [`verify_all`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Verified {
    pub backup_id: String,
    /// Data chunks checked, and their (decompressed) bytes.
    pub chunks: u64,
    pub bytes: u64,
    /// Every chunk that is missing or not the bytes its hash says.
    pub bad: Vec<BadChunk>,
}

/// Check every chunk of `manifest` (present, decompresses, hash matches)
/// without writing anything. Returns the data chunks checked; the first bad
/// chunk is an error naming it ([`StorageError::BadChunk`]).
pub async fn verify(repo: &DynRepo, manifest: &Manifest) -> Result<u64> {
    let v = verify_all(repo, manifest).await?;
    match v.bad.into_iter().next() {
        None => Ok(v.chunks),
        Some(b) => Err(StorageError::BadChunk {
            backup: v.backup_id,
            index: b.index,
            hash: b.hash,
            problem: b.problem,
        }),
    }
}

/// Check every chunk of `manifest` and report each bad one (a repository
/// that cannot be read at all is an error).
pub async fn verify_all(repo: &DynRepo, manifest: &Manifest) -> Result<Verified> {
    let r = repo.clone();
    let m = manifest.clone();
    blocking(move || {
        let mut out = Verified {
            backup_id: m.backup_id.clone(),
            ..Verified::default()
        };
        for (i, h) in m.chunks.iter().enumerate() {
            let Some(h) = h else { continue };
            out.chunks += 1;
            match checked_chunk(&r, &m, i, h) {
                Ok(d) => out.bytes += d.len() as u64,
                Err(StorageError::BadChunk {
                    index,
                    hash,
                    problem,
                    ..
                }) => out.bad.push(BadChunk {
                    index,
                    hash,
                    problem,
                }),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    })
    .await
}

fn checked_chunk(repo: &DynRepo, m: &Manifest, index: usize, hash: &str) -> Result<Vec<u8>> {
    let bad = |problem: String| StorageError::BadChunk {
        backup: m.backup_id.clone(),
        index: index as u64,
        hash: hash.to_owned(),
        problem,
    };
    match repo.get_chunk(hash)? {
        ChunkRead::Data(d) if d.len() as u64 == m.chunk_len(index) => Ok(d),
        ChunkRead::Data(d) => Err(bad(format!(
            "{} bytes long where the manifest needs {}",
            d.len(),
            m.chunk_len(index)
        ))),
        ChunkRead::Missing => Err(bad("missing from the repository".into())),
        ChunkRead::Corrupt(why) => Err(bad(format!("corrupt ({why})"))),
    }
}

/// Write the backup `manifest` over the image `file` (at least as large).
/// Every chunk is checked before the image is touched.
pub async fn restore(file: &LocalFile, repo: &DynRepo, manifest: &Manifest) -> Result<Restored> {
    let size = crate::qemu::info(&file.path, file.format)
        .await?
        .virtual_size;
    if size < manifest.volume_size {
        return Err(StorageError::InvalidSize {
            size,
            detail: format!(
                "the backup is {} bytes, larger than the target",
                manifest.volume_size
            ),
        });
    }
    // Taken on a blocking thread: it waits while a collection runs, which
    // for an object store is many requests long.
    let r = repo.clone();
    let _writing = blocking(move || Ok(r.writer())).await?;
    let tmp = repo.temp_path("restore");
    let r = repo.clone();
    let m = manifest.clone();
    let t = tmp.clone();
    let assembled = blocking(move || {
        let f = File::create(&t).map_err(|e| io_error(format!("creating {}", t.display()), e))?;
        f.set_len(m.volume_size)
            .map_err(|e| io_error(format!("sizing {}", t.display()), e))?;
        let mut done = Restored {
            chunks: 0,
            bytes: 0,
        };
        for (i, h) in m.chunks.iter().enumerate() {
            if let Some(h) = h {
                let d = checked_chunk(&r, &m, i, h)?;
                f.write_all_at(&d, i as u64 * m.chunk_size)
                    .map_err(|e| io_error(format!("writing {}", t.display()), e))?;
                done.chunks += 1;
                done.bytes += d.len() as u64;
            }
        }
        Ok(done)
    })
    .await;
    let result = match assembled {
        Ok(done) => q::write_raw(&tmp, &file.path, file.format)
            .await
            .map(|()| done),
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_file(&tmp);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_overlapped_and_runs() {
        let e = |start, length| Extent { start, length };
        let got = overlapping(&[e(0, 1), e(10, 20), e(95, 100)], 10, 10);
        assert_eq!(got.into_iter().collect::<Vec<_>>(), vec![0, 1, 2, 9]);
        let set: BTreeSet<usize> = (0..20).chain([30, 31]).collect();
        let r = runs(&set);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].len(), RUN_CHUNKS);
        assert_eq!(r[2], vec![30, 31]);
    }
}
