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
//! reads) is finished before the next holder's first command runs, and a
//! dropped transaction keeps the writer until its rollback is done.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection};
use tokio::sync::{Mutex, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

/// The writer's connection and whether a dropped transaction may have left
/// it inside a transaction (rolled back before the next use).
pub(crate) struct Slot {
    conn: Option<SqliteConnection>,
    dirty: bool,
}

/// The single write connection (`None` once closed).
///
/// Transactions are begun, committed and rolled back with plain statements
/// (`BEGIN IMMEDIATE`, `COMMIT`, `ROLLBACK`), one round trip each: sqlx's
/// own transaction manager follows a custom `BEGIN` with a second round
/// trip that checks the statement opened a transaction, and it is the only
/// writer's critical section every flow queues on.
pub(crate) struct Writer {
    slot: Arc<Mutex<Slot>>,
    timeout: Duration,
}

impl Writer {
    pub(crate) async fn connect(
        options: &SqliteConnectOptions,
        timeout: Duration,
    ) -> sqlx::Result<Writer> {
        Ok(Writer {
            slot: Arc::new(Mutex::new(Slot {
                conn: Some(options.connect().await?),
                dirty: false,
            })),
            timeout,
        })
    }

    /// The connection, outside a transaction (migrations).
    pub(crate) async fn lock(&self) -> sqlx::Result<OwnedMutexGuard<Slot>> {
        let mut guard = tokio::time::timeout(self.timeout, self.slot.clone().lock_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?;
        if guard.conn.is_none() {
            return Err(sqlx::Error::PoolClosed);
        }
        if guard.dirty {
            settle(&mut guard).await?;
        }
        Ok(guard)
    }

    /// The writer, to be begun by the caller's own first command
    /// (`BEGIN IMMEDIATE; …`): a transaction whose drop rolls back whatever
    /// of that command ran.
    pub(crate) async fn begin_by_caller(&self) -> sqlx::Result<Tx> {
        Ok(Tx {
            slot: Some(self.lock().await?),
            open: true,
        })
    }

    /// Begin a write transaction with `BEGIN IMMEDIATE`.
    pub(crate) async fn begin(&self) -> sqlx::Result<Tx> {
        let mut slot = self.lock().await?;
        sqlx::query("BEGIN IMMEDIATE")
            .execute(open(&mut slot))
            .await?;
        Ok(Tx {
            slot: Some(slot),
            open: true,
        })
    }

    pub(crate) async fn close(&self) {
        let mut slot = self.slot.lock().await;
        if slot.dirty {
            let _ = settle(&mut slot).await;
        }
        if let Some(conn) = slot.conn.take() {
            let _ = conn.close().await;
        }
    }
}

/// Roll back what a dropped transaction left open. "No transaction is
/// active" is fine: it was never begun, or already ended.
async fn settle(slot: &mut Slot) -> sqlx::Result<()> {
    let conn = slot
        .conn
        .as_mut()
        .expect("a closed writer is never settled");
    match sqlx::query("ROLLBACK").execute(conn).await {
        Ok(_) => {}
        Err(sqlx::Error::Database(e)) if e.message().contains("no transaction is active") => {}
        Err(e) => return Err(e),
    }
    slot.dirty = false;
    Ok(())
}

pub(crate) fn open(slot: &mut Slot) -> &mut SqliteConnection {
    slot.conn
        .as_mut()
        .expect("a closed writer is never handed out")
}

/// A write transaction: it holds the writer until it is committed or
/// dropped (dropping rolls back). Use it as a connection (`&mut *tx`, or
/// `&mut tx` where a `&mut Conn` is wanted).
pub struct Tx {
    /// `None` only while being dropped.
    slot: Option<OwnedMutexGuard<Slot>>,
    open: bool,
}

impl Tx {
    fn conn(&mut self) -> &mut SqliteConnection {
        open(self.slot.as_mut().expect("held until dropped"))
    }

    /// Commit, and hand the writer to the next waiter. If the commit fails
    /// the transaction is rolled back when dropped.
    pub async fn commit(mut self) -> sqlx::Result<()> {
        sqlx::query("COMMIT").execute(self.conn()).await?;
        self.open = false;
        Ok(())
    }

    /// Roll back, and hand the writer to the next waiter.
    pub async fn rollback(mut self) -> sqlx::Result<()> {
        sqlx::query("ROLLBACK").execute(self.conn()).await?;
        self.open = false;
        Ok(())
    }

    /// A savepoint: what is done through it is undone by its `rollback`.
    pub async fn savepoint(&mut self) -> sqlx::Result<Savepoint<'_>> {
        sqlx::query("SAVEPOINT scoria_step")
            .execute(self.conn())
            .await?;
        Ok(Savepoint { tx: self })
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let Some(mut slot) = self.slot.take() else {
            return;
        };
        slot.dirty = true;
        // Rolled back at once in a task of its own that keeps the writer
        // until then (the next holder starts on a clean connection and no
        // other process waits on a write lock nobody uses); without a
        // runtime, by the next holder.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = settle(&mut slot).await {
                    tracing::warn!(error = %e, "rolling back a dropped write transaction");
                }
            });
        }
    }
}

impl Deref for Tx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        self.slot
            .as_ref()
            .and_then(|s| s.conn.as_ref())
            .expect("a closed writer is never handed out")
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.conn()
    }
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").field("open", &self.open).finish()
    }
}

/// A savepoint inside a [`Tx`] ([`Tx::savepoint`]). Dropped without
/// [`Savepoint::rollback`] it stays part of the transaction, whose owner
/// commits or drops it as a whole.
pub struct Savepoint<'a> {
    tx: &'a mut Tx,
}

impl Savepoint<'_> {
    /// Undo everything done since the savepoint was taken.
    pub async fn rollback(self) -> sqlx::Result<()> {
        sqlx::query("ROLLBACK TO scoria_step; RELEASE scoria_step")
            .execute(self.tx.conn())
            .await?;
        Ok(())
    }
}

impl Deref for Savepoint<'_> {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        self.tx
    }
}

impl DerefMut for Savepoint<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.tx
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
