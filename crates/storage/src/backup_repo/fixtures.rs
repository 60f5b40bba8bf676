//! The repositories the tests run against, with a way to damage what they
//! store from outside the trait (as rot or an operator would).
//!
//! The S3 repository needs a real S3-compatible server: `SCORIA_TEST_S3`
//! (`http://127.0.0.1:PORT`), `SCORIA_TEST_S3_ACCESS_KEY` and
//! `SCORIA_TEST_S3_SECRET_KEY` name it (`.ci/run` starts one and sets them).
//! Without them the S3 tests print why and pass without running: a
//! developer's machine need not have the server, CI always does. Each
//! fixture gets a prefix of its own in the bucket `scoria-test`, so tests run
//! in parallel and a collection sees only its own chunks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{DirRepo, DynRepo, S3Config, S3Repo, codec};

pub(super) struct Fixture {
    pub repo: DynRepo,
    kind: Kind,
    _dir: tempfile::TempDir,
}

enum Kind {
    Dir(Arc<DirRepo>),
    S3(Arc<S3Repo>),
}

impl Fixture {
    /// Replace the stored object of chunk `hash` with `bytes`.
    pub fn overwrite_chunk(&self, hash: &str, bytes: &[u8]) {
        match &self.kind {
            Kind::Dir(r) => std::fs::write(r.chunk_path(hash).unwrap(), bytes).unwrap(),
            Kind::S3(r) => r
                .client()
                .put(&codec::chunk_key(hash).unwrap(), bytes)
                .unwrap(),
        }
    }

    pub fn remove_chunk(&self, hash: &str) {
        match &self.kind {
            Kind::Dir(r) => std::fs::remove_file(r.chunk_path(hash).unwrap()).unwrap(),
            Kind::S3(r) => r.client().delete(&codec::chunk_key(hash).unwrap()).unwrap(),
        }
    }

    /// The S3 repository, for the tests only it has.
    pub fn s3(&self) -> &S3Repo {
        match &self.kind {
            Kind::S3(r) => r,
            Kind::Dir(_) => panic!("not an S3 fixture"),
        }
    }
}

pub(super) fn dir_fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let r = Arc::new(DirRepo::open(dir.path().join("backups"), true).unwrap());
    Fixture {
        repo: r.clone(),
        kind: Kind::Dir(r),
        _dir: dir,
    }
}

pub(super) const TEST_BUCKET: &str = "scoria-test";

/// The server's configuration, with a fresh prefix; `None` (printed) when
/// the environment names no server.
pub(super) fn s3_config(test: &str) -> Option<S3Config> {
    let Ok(endpoint) = std::env::var("SCORIA_TEST_S3") else {
        println!(
            "SKIPPED {test} on S3: SCORIA_TEST_S3 is not set (scripts/with-s3 starts a server and sets it; .ci/run runs the tests under it)"
        );
        return None;
    };
    assert!(
        endpoint.starts_with("http://127.0.0.1:") || endpoint.starts_with("http://localhost:"),
        "SCORIA_TEST_S3 must be a server on this machine, not {endpoint}"
    );
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000_000;
    let env = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| panic!("{k} must be set with SCORIA_TEST_S3"))
    };
    Some(S3Config {
        endpoint,
        region: "us-east-1".into(),
        bucket: TEST_BUCKET.into(),
        prefix: format!(
            "{test}-{}-{nanos}-{}/",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ),
        access_key: env("SCORIA_TEST_S3_ACCESS_KEY"),
        secret_key: env("SCORIA_TEST_S3_SECRET_KEY"),
    })
}

pub(super) fn s3_fixture(test: &str) -> Option<Fixture> {
    let config = s3_config(test)?;
    super::S3Client::new(config.clone())
        .unwrap()
        .create_bucket()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let r = Arc::new(S3Repo::open(config, dir.path().join("tmp")).unwrap());
    Some(Fixture {
        repo: r.clone(),
        kind: Kind::S3(r),
        _dir: dir,
    })
}
