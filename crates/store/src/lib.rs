//! The store: everything Scoria remembers, in one SQL database.
//!
//! What is stored and why:
//! - **flows** and **flow_steps**: each multi-step operation's parameters and the
//!   outcome of each step, so a restart resumes it or finishes undoing it;
//! - **volumes**, their **metadata**, **volume types** (extra specs, project
//!   access, encryption specs), **QoS specs**: the resources users see;
//! - **images**: the bytes of volumes as records (backend, driver-level name,
//!   format, virtual size, the image each is layered on, mutability, health).
//!   A volume points at its active image; who uses an image is computed from
//!   the rows that refer to it, one per use, never kept as a counter;
//! - **snapshots** and their metadata: each points at the frozen image it
//!   captured; volumes made from one name it;
//! - **group types** (with their group specs) and generic **volume groups**:
//!   the volume types a group accepts, the backend it sits on; volumes point at
//!   their group;
//! - **glance_images** (the image service's images, Glance's sense), their
//!   custom properties, tags and members: the object of each in the image
//!   store is named by its id and exists while it is `active` or
//!   `deactivated`;
//! - **transfers**: pending offers of a volume to another project (a salted
//!   hash of each auth key, never the key);
//! - **quota_classes**, **quota_limits**: limits (class defaults and per-project
//!   overrides); **reservations**: quota held by flows that have not finished.
//!   Usage is *derived* from resources and reservations inside the transaction
//!   that changes them, never kept as a counter;
//! - identity: projects, users, roles, assignments, tokens (hashed);
//! - **services**: what an administrator changed about a volume service
//!   (disabled, and why); **messages**: what a project should learn about an
//!   asynchronous operation that failed, until the message expires.
//!
//! SQLite is the embedded default (one file in the data directory, WAL mode, a
//! busy timeout, `synchronous=FULL` unless configured otherwise). Writes go
//! through exactly one connection, held by one transaction at a time (an
//! async mutex, `conns.rs`), and every write transaction starts with `BEGIN
//! IMMEDIATE`, so a transaction that reads and then writes (a quota check, a
//! conditional status change) can never be invalidated by another writer:
//! writers queue in the process instead of spinning on SQLite's lock. Reads
//! use a separate small pool and see the last committed state.
//!
//! The SQL is kept portable to PostgreSQL (`$n` placeholders, `ON CONFLICT`,
//! `RETURNING`, TEXT ids and timestamps), because several nodes will share one.
//! Store functions are named `resource_verb` and take a `&mut Conn`: pass
//! `&mut *tx` inside a write transaction or `&mut *store.read().await?` outside.
//! State changes are conditional updates (`... WHERE id = $1 AND status = $2`)
//! that report whether they applied, never read-modify-write in the caller.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use std::sync::Arc;

use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

pub mod attachments;
pub mod backends;
pub mod backups;
mod conns;
pub mod default_types;
pub mod flows;
pub mod glance;
pub mod groups;
pub mod identity;
pub mod image_checks;
pub mod images;
pub mod messages;
pub mod placements;
pub mod qos_specs;
pub mod quotas;
pub mod services;
mod shared;
pub mod snapshots;
pub mod transfers;
pub mod unmanaged_snapshots;
pub mod volume_images;
pub mod volume_types;
pub mod volumes;

#[doc(hidden)]
pub mod fixtures;
mod migrations;

/// One database connection (inside a transaction or not).
pub type Conn = sqlx::SqliteConnection;
pub use conns::{ReadConn, Savepoint, Tx};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Db(#[from] sqlx::Error),
    #[error("migration {version} ({name}) failed")]
    Migration {
        version: i64,
        name: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    OverQuota(#[from] scoria_model::quota::QuotaExceeded),
    #[error("{0} already exists")]
    Duplicate(String),
    #[error("marker {0} not found")]
    MarkerNotFound(String),
}

impl StoreError {
    /// True for errors that retrying cannot fix because they are about the data
    /// (as opposed to a busy or broken database).
    pub fn is_data_error(&self) -> bool {
        matches!(
            self,
            StoreError::OverQuota(_) | StoreError::Duplicate(_) | StoreError::MarkerNotFound(_)
        )
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How hard commits are made durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL`: a commit survives power loss.
    #[default]
    Full,
    /// `synchronous=NORMAL`: a commit survives a process crash; the last commits
    /// may be lost on power loss (the database stays consistent).
    Normal,
}

impl FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "full" => Ok(Durability::Full),
            "normal" => Ok(Durability::Normal),
            other => Err(format!("unknown durability {other:?} (full, normal)")),
        }
    }
}

/// Options for opening the store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub durability: Durability,
    /// Read connections (writes always use one).
    pub readers: u32,
    /// How long a writer from another process waits for the lock.
    pub busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Full,
            readers: 4,
            busy_timeout: Duration::from_secs(10),
        }
    }
}

/// Handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    write: Arc<conns::Writer>,
    read: Arc<conns::Readers>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Open (creating if needed) the SQLite database at `path` and bring its
    /// schema up to date.
    pub async fn open(path: &Path, options: &StoreOptions) -> Result<Store> {
        Self::open_migrated(path, options, None).await
    }

    /// As [`Store::open`], applying only the migrations below `version`: a
    /// database as an older release left it, for the tests of migrations.
    #[doc(hidden)]
    pub async fn open_before(path: &Path, options: &StoreOptions, version: i64) -> Result<Store> {
        Self::open_migrated(path, options, Some(version)).await
    }

    async fn open_migrated(
        path: &Path,
        options: &StoreOptions,
        before: Option<i64>,
    ) -> Result<Store> {
        let base = SqliteConnectOptions::new()
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match options.durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(options.busy_timeout)
            .foreign_keys(true)
            .statement_cache_capacity(256);
        let write = conns::Writer::connect(
            &base.clone().create_if_missing(true),
            Duration::from_secs(600),
        )
        .await?;
        migrations::run(conns::open(&mut *write.lock().await?), before).await?;
        let read = conns::Readers::new(
            base.read_only(true),
            options.readers,
            Duration::from_secs(60),
        );
        Ok(Store {
            write: Arc::new(write),
            read,
        })
    }

    /// Open an existing database for reading only: no migration, nothing
    /// created, and every connection read-only (a write, `begin` included,
    /// fails). For tools that look at a data directory whether or not a
    /// server runs on it (SQLite's WAL lets a reader in beside the writer).
    /// A database whose schema is not this build's is refused: its rows
    /// would be misread.
    pub async fn open_read_only(path: &Path, options: &StoreOptions) -> Result<Store> {
        if !path.is_file() {
            return Err(StoreError::Corrupt(format!(
                "no database at {}",
                path.display()
            )));
        }
        let base = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(options.busy_timeout)
            .foreign_keys(true)
            .read_only(true);
        let read = conns::Readers::new(base.clone(), options.readers, Duration::from_secs(60));
        let write = Arc::new(conns::Writer::connect(&base, Duration::from_secs(60)).await?);
        let store = Store { write, read };
        let (have, want) = (store.schema_version().await?, migrations::latest());
        if have != want {
            return Err(StoreError::Corrupt(format!(
                "the database at {} has schema version {have}, this build reads {want}",
                path.display()
            )));
        }
        Ok(store)
    }

    /// Begin a write transaction. It holds the database's write lock until it is
    /// committed or dropped (dropping rolls back).
    pub async fn begin(&self) -> Result<Tx> {
        Ok(self.write.begin().await?)
    }

    /// Begin a write transaction that stores a new flow's row, in one
    /// command ([`flows::flow_create`] sent with the `BEGIN IMMEDIATE`).
    pub async fn begin_creating(&self, flow: &flows::NewFlow<'_>) -> Result<Tx> {
        let mut tx = self.write.begin_by_caller().await?;
        flows::create_in(&mut tx, "BEGIN IMMEDIATE; ", flow).await?;
        Ok(tx)
    }

    /// Begin a write transaction and hold a flow's lease in the same
    /// command ([`flows::flow_hold`], sent with the `BEGIN IMMEDIATE`: one
    /// round trip less). Whether the lease was held; if not, drop the
    /// transaction.
    pub async fn begin_holding(
        &self,
        id: scoria_model::FlowId,
        owner: &str,
        generation: i64,
        until: &str,
    ) -> Result<(Tx, bool)> {
        let mut tx = self.write.begin_by_caller().await?;
        let held =
            flows::hold_in(&mut tx, "BEGIN IMMEDIATE; ", id, owner, generation, until).await?;
        Ok((tx, held))
    }

    /// A connection for reading committed state.
    pub async fn read(&self) -> Result<ReadConn> {
        Ok(self.read.acquire().await?)
    }

    /// Close both pools, waiting for connections to be returned.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    /// The schema version (number of migrations applied).
    pub async fn schema_version(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")
            .fetch_one(&mut *self.read().await?)
            .await?;
        Ok(row.try_get("v")?)
    }
}

/// Take a savepoint inside a write transaction.
pub async fn savepoint(tx: &mut Tx) -> Result<Savepoint<'_>> {
    Ok(tx.savepoint().await?)
}

/// The current time as the store writes it: UTC, microseconds, no zone suffix
/// (Cinder's `created_at` format).
pub fn now() -> String {
    format_time(chrono::Utc::now())
}

/// Format a time the way the store keeps it.
pub fn format_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

/// Parse a stored value into a typed one, reporting corruption rather than
/// panicking.
pub(crate) fn parse<T: FromStr>(what: &str, s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse::<T>()
        .map_err(|e| StoreError::Corrupt(format!("{what} {s:?}: {e}")))
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A store in a fresh temporary directory (kept alive by the returned guard).
    pub async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("scoria.db"), &StoreOptions::default())
            .await
            .expect("open store");
        (store, dir)
    }

    /// A 1 GiB volume of project `p1` in `status`, recorded in `conn`.
    pub async fn volume(
        conn: &mut Conn,
        status: scoria_model::volume::VolumeStatus,
    ) -> scoria_model::VolumeId {
        let id = scoria_model::VolumeId::new();
        crate::volumes::volume_create(
            conn,
            &crate::volumes::NewVolume {
                id,
                project_id: "p1".into(),
                user_id: "u1".into(),
                name: None,
                description: None,
                size: 1,
                status,
                bootable: false,
                multiattach: false,
                availability_zone: "nova".into(),
                volume_type_id: crate::volume_types::DEFAULT_TYPE_ID.parse().unwrap(),
                snapshot_id: None,
                source_volid: None,
                reservation_id: None,
                last_flow_id: None,
                metadata: Default::default(),
            },
        )
        .await
        .expect("volume");
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn open_migrates_once_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let s = Store::open(&path, &StoreOptions::default()).await.unwrap();
        let v = s.schema_version().await.unwrap();
        assert!(v >= 1);
        s.close().await;
        let s = Store::open(&path, &StoreOptions::default()).await.unwrap();
        assert_eq!(
            s.schema_version().await.unwrap(),
            v,
            "reopening applies nothing twice"
        );
    }

    #[tokio::test]
    async fn a_read_only_store_reads_beside_a_writer_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let missing =
            Store::open_read_only(&dir.path().join("absent.db"), &StoreOptions::default()).await;
        assert!(
            matches!(missing, Err(StoreError::Corrupt(_))),
            "{missing:?}"
        );
        assert!(!dir.path().join("absent.db").exists());
        let writer = Store::open(&path, &StoreOptions::default()).await.unwrap();
        let mut tx = writer.begin().await.unwrap();
        sqlx::query("INSERT INTO quota_limits (project_id, resource, hard_limit) VALUES ('p', 'volumes', 3)")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let reader = Store::open_read_only(&path, &StoreOptions::default())
            .await
            .unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM quota_limits")
            .fetch_one(&mut *reader.read().await.unwrap())
            .await
            .unwrap();
        assert_eq!(n, 1);
        let mut tx = reader.begin().await.unwrap();
        let w = sqlx::query("DELETE FROM quota_limits")
            .execute(&mut *tx)
            .await;
        assert!(w.is_err(), "a read-only store wrote: {w:?}");
        drop(tx);
        reader.close().await;
        writer.close().await;
        // An older schema is refused rather than misread.
        let old = dir.path().join("old.sqlite");
        Store::open_before(&old, &StoreOptions::default(), 3)
            .await
            .unwrap()
            .close()
            .await;
        let r = Store::open_read_only(&old, &StoreOptions::default()).await;
        assert!(matches!(r, Err(StoreError::Corrupt(_))), "{r:?}");
    }

    #[tokio::test]
    async fn write_transactions_are_immediate_and_serialised() {
        let (s, _d) = testing::store().await;
        let mut tx = s.begin().await.unwrap();
        // While one write transaction is open, a second writer waits for it.
        let s2 = s.clone();
        let waiter = tokio::spawn(async move {
            let mut tx2 = s2.begin().await.unwrap();
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM quota_limits")
                .fetch_one(&mut *tx2)
                .await
                .unwrap();
            tx2.commit().await.unwrap();
            n
        });
        sqlx::query("INSERT INTO quota_limits (project_id, resource, hard_limit) VALUES ('p', 'volumes', 3)")
            .execute(&mut *tx)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        tx.commit().await.unwrap();
        assert_eq!(
            waiter.await.unwrap(),
            1,
            "the second writer saw the first one's commit"
        );
    }

    #[test]
    fn time_format_is_cinders() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-21T05:22:24.498092Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(format_time(t), "2026-11-21T05:22:24.498092");
    }
}
