//! `qemu-img check -r`: repairing a qcow2 image's metadata, for the
//! repository check's `mend` fixes (its read-only sibling,
//! [`super::check`], finds what this repairs).
//!
//! `leaks` frees clusters that are allocated but referenced by nothing
//! (wasted space only, always safe); `all` also repairs corruptions —
//! refcounts that disagree with the references, flags that disagree with
//! refcounts — which can lose the data of an entry qemu must drop. The
//! image must not be open elsewhere (qemu's image lock refuses otherwise).

use std::path::Path;

use serde::Deserialize;

use super::img::QemuImg;
use crate::{Format, Result};

/// What `qemu-img check -r` may repair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repair {
    /// Leaked clusters only.
    Leaks,
    /// Leaks and corruptions.
    All,
}

impl Repair {
    fn as_str(self) -> &'static str {
        match self {
            Repair::Leaks => "leaks",
            Repair::All => "all",
        }
    }
}

/// What a repair did and what remains, as `qemu-img check -r --output=json`
/// reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RepairReport {
    #[serde(default)]
    pub leaks_fixed: u64,
    #[serde(default)]
    pub corruptions_fixed: u64,
    /// What remains after the repair.
    #[serde(default)]
    pub leaks: u64,
    #[serde(default)]
    pub corruptions: u64,
    pub check_errors: u64,
}

impl RepairReport {
    /// Nothing remains to repair.
    pub fn is_clean(&self) -> bool {
        self.leaks == 0 && self.corruptions == 0 && self.check_errors == 0
    }
}

/// Repair the qcow2 image at `path` (absolute) with `qemu-img check -r`.
/// What could not be repaired is in the report, not an error; an image qemu
/// cannot open is an error.
pub async fn repair(path: &Path, format: Format, what: Repair) -> Result<RepairReport> {
    let cmd = QemuImg::new("check")
        .arg("-r")
        .arg(what.as_str())
        .arg("--output=json")
        .format(format)
        .image(path)?;
    let out = cmd.output().await?;
    // 0: clean after the repair; 2, 3: corruptions or leaks remain.
    match out.status.code() {
        Some(0 | 2 | 3) => cmd.parse(&out.stdout),
        _ => Err(cmd.failed(&out)),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use super::*;

    #[tokio::test]
    async fn leaks_are_repaired_and_a_clean_image_stays_clean() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.qcow2");
        super::super::create(&path, Format::Qcow2, 1 << 20)
            .await
            .expect("create");
        assert_eq!(
            repair(&path, Format::Qcow2, Repair::Leaks)
                .await
                .expect("repair"),
            RepairReport::default()
        );
        // A refcount of 1 for a cluster past the end: a leak.
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open");
        let mut b = [0u8; 8];
        f.read_exact_at(&mut b, 48).expect("table");
        let table = u64::from_be_bytes(b);
        f.read_exact_at(&mut b, table).expect("block");
        let block = u64::from_be_bytes(b);
        let cluster = f.metadata().expect("len").len().div_ceil(65536);
        f.set_len((cluster + 1) * 65536).expect("grow");
        f.write_all_at(&1u16.to_be_bytes(), block + 2 * cluster)
            .expect("refcount");
        drop(f);
        assert_eq!(
            super::super::check(&path, Format::Qcow2)
                .await
                .expect("check")
                .leaks,
            1
        );
        let r = repair(&path, Format::Qcow2, Repair::Leaks)
            .await
            .expect("repair");
        assert_eq!((r.leaks_fixed, r.is_clean()), (1, true), "{r:?}");
        assert!(
            super::super::check(&path, Format::Qcow2)
                .await
                .expect("check")
                .is_clean()
        );
    }
}
