//! What the tests against the real binary share: the export daemons of a
//! test's data directory, found and killed when the test ends (they outlive
//! Scoria by design; a test's must not).
#![allow(dead_code)]

pub mod serve;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Kills, on drop, every qemu-storage-daemon whose command line names the
/// directory.
pub struct Daemons(pub PathBuf);

impl Drop for Daemons {
    fn drop(&mut self) {
        for pid in qsd_pids(&self.0) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// The pids of the qemu-storage-daemons whose command line names `dir`.
pub fn qsd_pids(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.starts_with("qemu-storage-daemon") && cmd.contains(&needle) {
            pids.push(pid);
        }
    }
    pids
}
