//! What only the S3 repository has, against the real server (see
//! `fixtures.rs`; skipped, saying why, without one): signatures the server
//! refuses, errors that name the object, listings across pages with keys
//! that need escaping, and the engine's throughput into and out of it.

use std::time::Instant;

use super::engine::{self, BackupJob};
use super::fixtures::{TEST_BUCKET, dir_fixture, s3_config, s3_fixture};
use super::{DEFAULT_CHUNK_SIZE, S3Client, S3Repo};
use crate::{Format, LocalFile, StorageError, qemu};

const MIB: u64 = 1 << 20;

#[test]
fn a_wrong_secret_is_refused_by_the_server_and_the_error_says_so() {
    let Some(f) = s3_fixture("wrong_secret") else {
        return;
    };
    let mut config = s3_config("wrong_secret").unwrap();
    let secret = "not-the-secret-0123456789";
    config.secret_key = secret.into();
    let tmp = tempfile::tempdir().unwrap();
    let err = S3Repo::open(config.clone(), tmp.path().join("t")).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, StorageError::ObjectStore { bucket, .. } if bucket == TEST_BUCKET),
        "{text}"
    );
    assert!(text.contains("HTTP 403"), "{text}");
    assert!(text.contains("SignatureDoesNotMatch"), "{text}");
    assert!(text.contains("secret_key"), "{text}");
    assert!(
        !text.contains(secret),
        "the secret is never printed: {text}"
    );
    assert!(!format!("{config:?}").contains(secret));
    // Object calls are refused the same way, naming the key.
    let client = S3Client::new(config.clone()).unwrap();
    let err = client.put("chunks/x", b"data").unwrap_err().to_string();
    assert!(
        err.contains("PUT of scoria-test/") && err.contains("chunks/x") && err.contains("403"),
        "{err}"
    );
    assert!(
        !f.s3().client().head("chunks/x").unwrap(),
        "nothing was stored"
    );

    config.access_key = "nobody".into();
    let err = S3Repo::open(config, tmp.path().join("t"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("HTTP 403"), "{err}");
}

#[test]
fn errors_name_the_bucket_and_key() {
    let Some(mut config) = s3_config("errors") else {
        return;
    };
    // Unique: the server may create a bucket for a PUT into it.
    config.bucket = format!("scoria-no-such-bucket-{}", std::process::id());
    let tmp = tempfile::tempdir().unwrap();
    let err = S3Repo::open(config.clone(), tmp.path().join("t"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&config.bucket) && err.contains("HTTP 404") && err.contains("NoSuchBucket"),
        "{err}"
    );
    // Nothing listens there: the transport's error, naming the object.
    let mut config = s3_config("errors").unwrap();
    config.endpoint = "http://127.0.0.1:9".into();
    let err = S3Client::new(config)
        .unwrap()
        .get("chunks/k")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("GET of scoria-test/") && err.contains("127.0.0.1:9"),
        "{err}"
    );
    // Bad settings are refused before any request.
    let mut config = s3_config("errors").unwrap();
    config.endpoint = "https://127.0.0.1:1".into();
    assert!(
        S3Client::new(config.clone())
            .unwrap_err()
            .to_string()
            .contains("https")
    );
    config.endpoint = "http://127.0.0.1:1".into();
    for prefix in ["a/../b", "./a", "a//b"] {
        let mut c = config.clone();
        c.prefix = prefix.into();
        assert!(S3Client::new(c).is_err(), "{prefix}");
    }
    config.bucket = "Bad_Bucket".into();
    assert!(S3Client::new(config).is_err());
}

#[test]
fn objects_round_trip_and_listings_cross_pages_with_escaped_keys() {
    let Some(f) = s3_fixture("listing") else {
        return;
    };
    let c = f.s3().client();
    assert_eq!(c.get("odd/none").unwrap(), None);
    assert!(!c.head("odd/none").unwrap());
    c.delete("odd/none").unwrap();
    let keys = [
        "odd/a&b",
        "odd/c<d>",
        "odd/e f+g",
        "odd/h'i\"j",
        "odd/k%20l",
        "odd/m=n?o",
        "odd/\u{e9}t\u{e9}",
    ];
    for (i, k) in keys.iter().enumerate() {
        c.put(k, &vec![i as u8; i]).unwrap();
    }
    c.put("other/x", b"x").unwrap();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(c.get(k).unwrap(), Some(vec![i as u8; i]), "{k}");
        assert!(c.head(k).unwrap(), "{k}");
    }
    let mut want: Vec<(String, u64)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.to_string(), i as u64))
        .collect();
    want.sort();
    for page in [Some(2), Some(3), None] {
        let got: Vec<(String, u64)> = c
            .list_pages("odd/", page)
            .unwrap()
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect();
        assert_eq!(got, want, "pages of {page:?}");
    }
    c.delete("odd/a&b").unwrap();
    assert_eq!(c.list("odd/").unwrap().len(), keys.len() - 1);
    assert!(c.list("nothing/").unwrap().is_empty());
}

/// A volume of pseudo-random data backed up and restored, timed, into the
/// bucket and, for comparison, into a directory; the figures are printed
/// (`--no-capture`), not asserted.
#[tokio::test]
async fn throughput_into_and_out_of_s3() {
    let Some(s3) = s3_fixture("throughput") else {
        return;
    };
    let data_mib: u64 = std::env::var("SCORIA_TEST_S3_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("data.raw");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&raw).unwrap();
        for i in 0..data_mib {
            file.write_all(&super::bench::random(MIB as usize, i + 1))
                .unwrap();
        }
    }
    let vol = LocalFile {
        path: dir.path().join("vol.qcow2"),
        format: Format::Qcow2,
    };
    qemu::create(&vol.path, Format::Qcow2, data_mib * MIB)
        .await
        .unwrap();
    qemu::convert_into(&raw, Format::Raw, &vol.path, Format::Qcow2, &|_| {})
        .await
        .unwrap();
    let job = BackupJob {
        backup_id: "full".into(),
        chunk_size: DEFAULT_CHUNK_SIZE,
        parent: None,
        keep_bitmaps: Vec::new(),
    };
    for (name, f) in [("S3", s3), ("directory", dir_fixture())] {
        let t = Instant::now();
        let full = engine::backup(&vol, &f.repo, &job).await.unwrap();
        let stored = t.elapsed();
        assert_eq!(full.bytes_read, data_mib * MIB);
        let target = LocalFile {
            path: dir.path().join(format!("target-{name}.qcow2")),
            format: Format::Qcow2,
        };
        qemu::create(&target.path, Format::Qcow2, data_mib * MIB)
            .await
            .unwrap();
        let t = Instant::now();
        engine::restore(&target, &f.repo, &full).await.unwrap();
        let restored = t.elapsed();
        assert!(
            qemu::compare(&target.path, target.format, &vol.path, vol.format)
                .await
                .unwrap()
        );
        // The next run backs up the same volume afresh.
        engine::forget_bitmap(&vol, "full").await.unwrap();
        let mibps = |d: std::time::Duration| data_mib as f64 / d.as_secs_f64();
        println!(
            "{name} throughput ({data_mib} MiB of pseudo-random data, {} chunks of 4 MiB, {} MiB \
             stored): stored in {:.2} s = {:.0} MiB/s, restored in {:.2} s = {:.0} MiB/s",
            full.new_chunks,
            full.new_bytes / MIB,
            stored.as_secs_f64(),
            mibps(stored),
            restored.as_secs_f64(),
            mibps(restored)
        );
    }
}
