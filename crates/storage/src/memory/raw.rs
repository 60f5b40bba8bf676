//! Raw files at the memory driver's edges: imports and exports have a real
//! file at their other end, which the driver reads and writes as sectors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::SECTOR;
use crate::file::create::remove_if_present;
use crate::{Result, SECTOR_SIZE, io_error};

/// A file in the system's temporary directory, removed when dropped.
pub(super) struct Scratch(pub(super) PathBuf);

impl Scratch {
    pub(super) fn new() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("scoria-memory-{}-{n}.raw", std::process::id());
        Self(std::env::temp_dir().join(name))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // A leftover in the temporary directory is harmless.
        let _ = remove_if_present(&self.0);
    }
}

/// The sectors of the raw file `path` that are not all zeroes (blocking).
pub(super) fn read_raw(path: &Path) -> Result<BTreeMap<u64, Box<[u8]>>> {
    use std::io::Read;
    let op = || format!("reading {}", path.display());
    let mut file = std::fs::File::open(path).map_err(|e| io_error(op(), e))?;
    let mut sectors = BTreeMap::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut index = 0u64;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match file
                .read(&mut buf[filled..])
                .map_err(|e| io_error(op(), e))?
            {
                0 => break,
                n => filled += n,
            }
        }
        for sector in buf[..filled].chunks(SECTOR) {
            if sector.iter().any(|&b| b != 0) {
                // A file whose length is not whole sectors reads as zeroes up
                // to the end of its last one.
                let mut whole = sector.to_vec();
                whole.resize(SECTOR, 0);
                sectors.insert(index, whole.into());
            }
            index += 1;
        }
        if filled < buf.len() {
            return Ok(sectors);
        }
    }
}

/// Write `sectors` into the empty raw file `file` of `size` bytes (blocking):
/// what is not written stays a hole.
pub(super) fn write_raw(
    file: &std::fs::File,
    size: u64,
    sectors: &BTreeMap<u64, Box<[u8]>>,
) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let op = || "writing an exported image".to_owned();
    file.set_len(size).map_err(|e| io_error(op(), e))?;
    for (index, sector) in sectors {
        file.write_all_at(sector, index * SECTOR_SIZE)
            .map_err(|e| io_error(op(), e))?;
    }
    Ok(())
}
