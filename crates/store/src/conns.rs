//! The store's connections: the one writer behind an async mutex, and the
//! readers in a small pool of their own, both instead of sqlx's pool.
//!
//! Why not sqlx's pool: each sqlx SQLite connection runs on a thread of its
//! own, and every command sent to it is a round trip between threads. The
//! pool adds two per use: it pings the connection when it hands it out and
//! again, in a task of its own, when it comes back, before the next waiter
//! gets it. For the writer those round trips sit inside the critical section
//! every flow queues on, and for a `GET /volumes/{id}` they are two of its
//! four; on a busy machine each costs a context switch or two. Here a use
//! costs nothing but its own statements: the writer is handed over when its
//! guard drops, a reader goes back to the idle list at once.
//!
//! Cancellation stays safe without the ping: a connection's thread runs its
//! commands in order, so whatever a dropped future left pending (rows nobody
//! reads, a rollback queued by a dropped transaction) is finished before the
//! next holder's first command runs.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteTransactionManager};
use sqlx::{ConnectOptions, Connection, SqliteConnection, TransactionManager};
use tokio::sync::{Mutex, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

/// The single write connection (`None` once closed).
pub(crate) struct Writer {
    conn: Arc<Mutex<Option<SqliteConnection>>>,
    timeout: Duration,
}

impl Writer {
    pub(crate) async fn connect(
        options: &SqliteConnectOptions,
        timeout: Duration,
    ) -> sqlx::Result<Writer> {
        Ok(Writer {
            conn: Arc::new(Mutex::new(Some(options.connect().await?))),
            timeout,
        })
    }

    /// The connection, outside a transaction (migrations).
    pub(crate) async fn lock(&self) -> sqlx::Result<OwnedMutexGuard<Option<SqliteConnection>>> {
        let guard = tokio::time::timeout(self.timeout, self.conn.clone().lock_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?;
        if guard.is_none() {
            return Err(sqlx::Error::PoolClosed);
        }
        Ok(guard)
    }

    /// Begin a write transaction with `BEGIN IMMEDIATE`.
    pub(crate) async fn begin(&self) -> sqlx::Result<Tx> {
        let mut conn = self.lock().await?;
        SqliteTransactionManager::begin(open(&mut conn), Some("BEGIN IMMEDIATE".into())).await?;
        Ok(Tx { conn, open: true })
    }

    pub(crate) async fn close(&self) {
        if let Some(conn) = self.conn.lock().await.take() {
            let _ = conn.close().await;
        }
    }
}

pub(crate) fn open(conn: &mut Option<SqliteConnection>) -> &mut SqliteConnection {
    conn.as_mut().expect("a closed writer is never handed out")
}

/// A write transaction: it holds the writer until it is committed or
/// dropped (dropping rolls back). Use it as a connection (`&mut *tx`, or
/// `&mut tx` where a `&mut Conn` is wanted).
pub struct Tx {
    conn: OwnedMutexGuard<Option<SqliteConnection>>,
    open: bool,
}

impl Tx {
    /// Commit, and hand the writer to the next waiter.
    pub async fn commit(mut self) -> sqlx::Result<()> {
        SqliteTransactionManager::commit(open(&mut self.conn)).await?;
        self.open = false;
        Ok(())
    }

    /// Roll back, and hand the writer to the next waiter.
    pub async fn rollback(mut self) -> sqlx::Result<()> {
        SqliteTransactionManager::rollback(open(&mut self.conn)).await?;
        self.open = false;
        Ok(())
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if self.open {
            // Queued before the guard is released: it runs before the next
            // holder's first statement.
            SqliteTransactionManager::start_rollback(open(&mut self.conn));
        }
    }
}

impl Deref for Tx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        self.conn
            .as_ref()
            .expect("a closed writer is never handed out")
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        open(&mut self.conn)
    }
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").field("open", &self.open).finish()
    }
}

/// The read connections: up to `max`, opened when first needed, kept idle
/// between uses.
pub(crate) struct Readers {
    options: SqliteConnectOptions,
    idle: std::sync::Mutex<Vec<SqliteConnection>>,
    permits: Arc<Semaphore>,
    max: u32,
    timeout: Duration,
}

impl Readers {
    pub(crate) fn new(options: SqliteConnectOptions, max: u32, timeout: Duration) -> Arc<Readers> {
        let max = max.max(1);
        Arc::new(Readers {
            options,
            idle: std::sync::Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max as usize)),
            max,
            timeout,
        })
    }

    pub(crate) async fn acquire(self: &Arc<Self>) -> sqlx::Result<ReadConn> {
        let permit = tokio::time::timeout(self.timeout, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let idle = self.idle.lock().expect("idle readers").pop();
        let conn = match idle {
            Some(c) => c,
            None => self.options.connect().await?,
        };
        Ok(ReadConn {
            conn: Some(conn),
            readers: self.clone(),
            _permit: permit,
        })
    }

    /// Wait for every reader to come back, close them, refuse new uses.
    pub(crate) async fn close(&self) {
        if let Ok(all) = self.permits.acquire_many(self.max).await {
            all.forget();
        }
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle.lock().expect("idle readers"));
        for c in idle {
            let _ = c.close().await;
        }
    }
}

/// A read connection; back to the idle list when dropped.
pub struct ReadConn {
    conn: Option<SqliteConnection>,
    readers: Arc<Readers>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for ReadConn {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            self.readers.idle.lock().expect("idle readers").push(c);
        }
    }
}

impl Deref for ReadConn {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        self.conn.as_ref().expect("held until dropped")
    }
}

impl DerefMut for ReadConn {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.conn.as_mut().expect("held until dropped")
    }
}

impl std::fmt::Debug for ReadConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadConn")
    }
}
