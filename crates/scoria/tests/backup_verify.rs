//! `scoria backup verify`: the command line checks a backup in the
//! repository the data directory names, without a server. A whole backup
//! verifies (exit 0, its chunks counted); after one chunk is overwritten the
//! command exits 1 naming that chunk's index and hash, and changes nothing
//! (the corrupt object is still there, the manifests are as they were).

// The test runs the scoria binary itself, which the rule that only the qemu
// module spawns processes does not cover.
#![allow(clippy::disallowed_methods)]

use std::process::Command;

use scoria_storage::backup_repo::engine::{self, BackupJob};
use scoria_storage::backup_repo::{DirRepo, DynRepo};
use scoria_storage::{Format, LocalFile, qemu};

fn verify(data_dir: &std::path::Path, id: &str, json: bool) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scoria"));
    cmd.args(["backup", "verify", "--data-dir"])
        .arg(data_dir)
        .arg(id);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().expect("run scoria backup verify");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn verify_names_a_corrupt_chunk_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let repo: DynRepo =
        std::sync::Arc::new(DirRepo::open(data.join("backups"), false).expect("the repository"));
    let image = dir.path().join("v.qcow2");
    qemu::create(&image, Format::Qcow2, 64 << 20)
        .await
        .expect("create");
    for (offset, byte) in [(0, 0x11), (20 << 20, 0x22), (40 << 20, 0x33)] {
        qemu::write_pattern(&image, Format::Qcow2, offset, 1 << 20, byte)
            .await
            .expect("write");
    }
    let file = LocalFile {
        path: image.clone(),
        format: Format::Qcow2,
    };
    let (good, bad) = (
        "6a0d1e3c-2b4f-4c8a-9e7d-1f2a3b4c5d6e",
        "7b1e2f4d-3c5a-4d9b-8f6e-2a3b4c5d6e7f",
    );
    let mut manifests = Vec::new();
    for id in [good, bad] {
        let job = BackupJob {
            backup_id: id.into(),
            chunk_size: 4 << 20,
            parent: None,
            keep_bitmaps: Vec::new(),
        };
        manifests.push(engine::backup(&file, &repo, &job).await.expect("backup"));
    }
    let (code, out) = verify(&data, bad, false);
    println!("{out}");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("3 chunks") && out.contains("0 bad"), "{out}");

    // Overwrite the backup's second data chunk (both backups share it: the
    // repository stores each chunk once).
    let (index, hash) = manifests[1]
        .chunks
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.clone().map(|h| (i, h)))
        .nth(1)
        .expect("a second data chunk");
    let path = data
        .join("backups")
        .join("chunks")
        .join(&hash[..2])
        .join(&hash);
    std::fs::write(&path, b"bit rot").expect("corrupt the chunk");
    let (code, out) = verify(&data, bad, true);
    println!("{out}");
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["bad"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["bad"][0]["index"], serde_json::json!(index));
    assert_eq!(v["bad"][0]["hash"], serde_json::json!(hash));
    // Nothing changed: the corrupt object is still there as it was, and the
    // manifests are untouched.
    assert_eq!(std::fs::read(&path).expect("still there"), b"bit rot");
    for m in &manifests {
        assert_eq!(
            repo.get_manifest(&m.backup_id).expect("read").as_ref(),
            Some(m)
        );
    }
    // An unknown backup is an error, not a pass.
    let (code, _) = verify(&data, "8c2f3a5e-4d6b-4e0c-9a7f-3b4c5d6e7f80", false);
    assert_ne!(code, 0);
}
