//! Leases: how this engine knows it still owns the flows it runs.
//!
//! A flow that runs here is this node's until its lease expires, under the
//! generation of the claim (or creation) that made it so. Two fences keep two
//! engines from running one flow:
//!
//! - **in the database**: every transaction that writes about the flow first
//!   passes [`Leases::begin_held`] (a conditional update on owner and generation,
//!   which also extends the lease). A claim by another node bumps the
//!   generation, so the stale engine's next write finds nothing to update;
//!   it rolls back and stops;
//! - **in this process**: a step with effects outside the database runs
//!   while its lease is known to be live. The engine races the action against
//!   [`Lease::fenced`], which fires when a renewal finds the flow taken or when
//!   the local deadline passes without one (the deadline is a fifth of the
//!   lease before the expiry written, so the step stops before another node
//!   may claim the flow, as long as the nodes' clocks agree that closely).
//!
//! ```text
//!  claim/create ──► hold (each transaction) ──► ... ──► done/failed/stuck
//!   generation g     extends the lease            (the lease ends with the flow)
//!        │ renewal every `lease_renewal` while a step runs
//!        ▼
//!   not renewed before the deadline, or taken (generation g+1 elsewhere):
//!   the step is dropped, nothing more is written, Outcome::Interrupted
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use scoria_model::FlowId;
use scoria_store::flows as db;
use scoria_store::{Store, StoreError};
use tokio::sync::watch;
use tokio::time::Instant;

/// The error of a step or undo cut short because the flow's lease was lost.
#[derive(Debug, thiserror::Error)]
#[error("the flow's lease was lost (another node claimed it, or it could not be renewed in time)")]
pub(crate) struct LeaseLost;

/// This engine's hold on one flow.
#[derive(Debug)]
pub(crate) struct Lease {
    pub(crate) flow: FlowId,
    pub(crate) generation: i64,
    /// Until when the lease is known to be live here; `None` once lost.
    deadline: watch::Sender<Option<Instant>>,
    /// False for a new flow until its first transaction commits: there is
    /// nothing to renew before.
    stored: AtomicBool,
}

impl Lease {
    /// The lease of a flow that exists in the store (claimed, or created).
    pub(crate) fn new(flow: FlowId, generation: i64, deadline: Instant) -> Arc<Lease> {
        Arc::new(Lease {
            flow,
            generation,
            deadline: watch::channel(Some(deadline)).0,
            stored: AtomicBool::new(true),
        })
    }

    /// The lease of a flow being started: generation 1, which its first
    /// transaction writes.
    pub(crate) fn new_flow(flow: FlowId, deadline: Instant) -> Arc<Lease> {
        let lease = Lease::new(flow, 1, deadline);
        lease.stored.store(false, Ordering::SeqCst);
        lease
    }

    /// The flow's first transaction committed.
    pub(crate) fn mark_stored(&self) {
        self.stored.store(true, Ordering::SeqCst);
    }

    /// A write or a renewal committed a later expiry.
    pub(crate) fn extend(&self, until: Instant) {
        self.deadline.send_if_modified(|d| match d {
            Some(old) if *old < until => {
                *d = Some(until);
                true
            }
            _ => false,
        });
    }

    /// The flow is not (or may no longer be) this engine's. Sticky.
    pub(crate) fn lose(&self) {
        self.deadline.send_replace(None);
    }

    /// True once lost, or once the deadline passed without a renewal.
    pub(crate) fn is_lost(&self) -> bool {
        match *self.deadline.borrow() {
            None => true,
            Some(d) => Instant::now() >= d,
        }
    }

    /// Completes when the lease is lost (marking it lost if its deadline
    /// passed). Never completes while it is renewed in time.
    pub(crate) async fn fenced(&self) {
        let mut rx = self.deadline.subscribe();
        loop {
            let Some(deadline) = *rx.borrow_and_update() else {
                return;
            };
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    if *rx.borrow() == Some(deadline) {
                        self.lose();
                        return;
                    }
                }
                changed = rx.changed() => {
                    if changed.is_err() {
                        // The sender lives in `self`: cannot happen while borrowed.
                        return;
                    }
                }
            }
        }
    }
}

/// The expiry a transaction (or a renewal) writes, and the local deadline it
/// gives once committed.
pub(crate) struct Term {
    pub(crate) until: String,
    pub(crate) deadline: Instant,
}

/// The leases of the flows this engine runs.
pub(crate) struct Leases {
    pub(crate) node: String,
    length: Duration,
    held: Mutex<HashMap<FlowId, Arc<Lease>>>,
}

impl Leases {
    pub(crate) fn new(node: String, length: Duration) -> Leases {
        Leases {
            node,
            length,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// A lease starting now. The local deadline keeps a fifth of the lease
    /// in hand: the margin for clocks and scheduling between this node and
    /// one that would claim the flow.
    pub(crate) fn term(&self) -> Term {
        let deadline = Instant::now() + self.length - self.length / 5;
        Term {
            until: db::lease_until(self.length),
            deadline,
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<FlowId, Arc<Lease>>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A run of this lease's flow goes on here: renew it (once stored).
    pub(crate) fn insert(&self, lease: Arc<Lease>) {
        self.held().insert(lease.flow, lease);
    }

    /// Stop renewing this lease (its run ended).
    pub(crate) fn remove(&self, lease: &Arc<Lease>) {
        let mut held = self.held();
        if held.get(&lease.flow).is_some_and(|l| Arc::ptr_eq(l, lease)) {
            held.remove(&lease.flow);
        }
    }

    /// Is a run of this flow going on here?
    pub(crate) fn holds(&self, flow: FlowId) -> bool {
        self.held().contains_key(&flow)
    }

    /// Begin a transaction about `lease`'s flow with the lease check as its
    /// first command ([`Store::begin_holding`]): the transaction when the
    /// flow is still this node's under the lease's generation (its lease
    /// then runs to `term`, once the transaction commits); `None` when it is
    /// not, and the lease is then lost.
    pub(crate) async fn begin_held(
        &self,
        store: &Store,
        lease: &Lease,
        term: &Term,
    ) -> Result<Option<scoria_store::Tx>, StoreError> {
        if lease.is_lost() {
            return Ok(None);
        }
        let (tx, held) = store
            .begin_holding(lease.flow, &self.node, lease.generation, &term.until)
            .await?;
        if !held {
            lease.lose();
            return Ok(None);
        }
        Ok(Some(tx))
    }

    /// Renew every lease held, in one transaction. A flow the store no
    /// longer shows as this node's under the same generation is lost (its
    /// run notices at its next boundary, or at once if a step is running).
    pub(crate) async fn renew(&self, store: &Store) -> Result<(), StoreError> {
        let leases: Vec<Arc<Lease>> = self
            .held()
            .values()
            .filter(|l| l.stored.load(Ordering::SeqCst))
            .cloned()
            .collect();
        if leases.is_empty() {
            return Ok(());
        }
        let ids: Vec<FlowId> = leases.iter().map(|l| l.flow).collect();
        let term = self.term();
        let mut tx = store.begin().await?;
        let renewed = db::flow_renew_leases(&mut tx, &self.node, &ids, &term.until).await?;
        tx.commit().await?;
        let renewed: HashMap<FlowId, i64> = renewed.into_iter().collect();
        for lease in leases {
            if renewed.get(&lease.flow) == Some(&lease.generation) {
                lease.extend(term.deadline);
            } else {
                // Taken by another node, or finished since it was listed.
                tracing::debug!(flow = %lease.flow, "lease not renewed");
                lease.lose();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test]
    async fn a_lease_fences_at_its_deadline_unless_extended() {
        let start = Instant::now();
        let lease = Lease::new(FlowId::new(), 1, start + 100 * MS);
        assert!(!lease.is_lost());
        let fence = {
            let lease = lease.clone();
            tokio::spawn(async move {
                lease.fenced().await;
                Instant::now()
            })
        };
        tokio::time::sleep(50 * MS).await;
        lease.extend(start + 200 * MS);
        lease.extend(start + 150 * MS);
        let fired = fence.await.unwrap() - start;
        assert!(
            fired >= 200 * MS && fired < 400 * MS,
            "extended, never shortened: fenced after {fired:?}"
        );
        assert!(lease.is_lost());
        lease.extend(Instant::now() + 1000 * MS);
        assert!(lease.is_lost(), "a lost lease stays lost");
    }

    #[tokio::test]
    async fn losing_a_lease_fences_at_once() {
        let lease = Lease::new(FlowId::new(), 1, Instant::now() + 10_000 * MS);
        let fence = {
            let lease = lease.clone();
            tokio::spawn(async move { lease.fenced().await })
        };
        tokio::time::sleep(20 * MS).await;
        assert!(!fence.is_finished());
        lease.lose();
        tokio::time::timeout(1000 * MS, fence)
            .await
            .expect("fenced at once")
            .unwrap();
    }
}
