//! The state one engine shares with the flows it runs: the store, the
//! environment, the failpoints, the registered kinds, the running tasks, the
//! leases. Below both the engine (which drives flows) and the step context
//! (which holds a weak reference to it, to start child flows), so neither
//! depends on the other through it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

use scoria_failpoints::Failpoints;
use scoria_store::Store;
use scoria_store::flows::{FlowRecord, StepRecord};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::handle::Status;
use crate::lease::{Lease, Leases};
use crate::options::EngineOptions;

pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Resumes flows of one kind from their records: the future that runs the
/// flow (or refuses it, when this build cannot run it), and the step names of
/// the definition it runs under. The flow is claimed already, under `lease`.
pub(crate) trait Resumer<E>: Send + Sync {
    fn resume(
        &self,
        shared: Arc<Shared<E>>,
        rec: FlowRecord,
        steps: Vec<StepRecord>,
        lease: Arc<Lease>,
        tx: watch::Sender<Status>,
    ) -> (BoxFuture, Arc<Vec<&'static str>>);
}

/// What an engine is made of (an [`crate::Engine`] is an `Arc` of it).
pub(crate) struct Shared<E> {
    pub(crate) store: Store,
    pub(crate) env: Arc<E>,
    pub(crate) fp: Arc<Failpoints>,
    pub(crate) options: EngineOptions,
    pub(crate) kinds: RwLock<HashMap<&'static str, Arc<dyn Resumer<E>>>>,
    pub(crate) stopping: AtomicBool,
    pub(crate) tasks: Mutex<JoinSet<()>>,
    /// Counts flows that ended in this process (for waiters).
    pub(crate) ended: watch::Sender<u64>,
    /// The leases of the flows this engine runs.
    pub(crate) leases: Leases,
    /// Set once the background tasks (renewal, claims) must stop.
    pub(crate) halt: watch::Sender<bool>,
    /// Whether the renewal task and the claim task were started.
    pub(crate) renewing: AtomicBool,
    pub(crate) claiming: AtomicBool,
}
