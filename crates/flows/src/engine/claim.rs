//! Taking flows to run: at start-up ([`Engine::resume_all`]: this node's own
//! flows, unowned ones, and other nodes' whose lease expired) and while
//! running ([`Engine::claim_expired`], also on a timer once the engine
//! resumed at start-up); and the background tasks that renew the leases of
//! the flows this engine runs and look for flows to claim.
//!
//! ```text
//!   node A (live)          store                       node B
//!   renews every 10 s ──►  flow f: owner A, gen 3,
//!                          lease until t
//!   (A dies: no renewal)                       now > t: claim_expired
//!                          flow f: owner B, gen 4 ◄──  (conditional update)
//!   A's writes under gen 3 find nothing to update: A stops.
//! ```

use std::sync::Arc;
use std::sync::atomic::Ordering;

use scoria_store::StoreError;
use scoria_store::flows::{self as db, ClaimRule, FlowRecord, StepRecord};
use tokio::sync::watch;

use super::Engine;
use crate::error::EngineError;
use crate::handle::{FlowHandle, Status};
use crate::lease::Lease;
use crate::shared::Shared;

impl<E: Send + Sync + 'static> Engine<E> {
    /// At start-up: claim and resume every flow this node may take: its own
    /// (left running or unwinding by its previous incarnation; one process
    /// per node id), flows with no owner (stored before ownership was), and
    /// flows of other nodes whose lease expired. Flows of kinds this build
    /// does not know are left alone. From then on the engine also claims
    /// expired flows every `claim_interval` (see [`Engine::claim_expired`]).
    pub async fn resume_all(&self) -> Result<Vec<FlowHandle>, EngineError> {
        let handles = self.claim(ClaimRule::Restart).await?;
        self.start_claiming();
        Ok(handles)
    }

    /// Claim and resume the flows whose lease expired (their node died or
    /// lost the database) or that have no owner. Flows running here and
    /// live flows of other nodes are left alone.
    pub async fn claim_expired(&self) -> Result<Vec<FlowHandle>, EngineError> {
        self.claim(ClaimRule::Expired).await
    }

    async fn claim(&self, rule: ClaimRule) -> Result<Vec<FlowHandle>, EngineError> {
        let mut handles = Vec::new();
        if self.stopping() || self.inner.fp.is_dead() {
            return Ok(handles);
        }
        self.start_renewing();
        let leases = &self.inner.leases;
        let candidates = {
            let mut conn = self.inner.store.read().await?;
            db::flow_list_claimable(&mut conn, &leases.node, &scoria_store::now(), rule).await?
        };
        for rec in candidates {
            if self.stopping() || self.inner.fp.is_dead() {
                break;
            }
            if leases.holds(rec.id) {
                continue;
            }
            let resumer = self
                .inner
                .kinds
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(rec.kind.as_str())
                .cloned();
            let Some(resumer) = resumer else {
                if rule == ClaimRule::Restart {
                    tracing::error!(flow = %rec.id, kind = %rec.kind, "no such flow kind registered; left as is");
                }
                continue;
            };
            let Some((rec, steps, lease)) = self.claim_one(&rec, rule).await? else {
                continue;
            };
            let kind = rec.kind.clone();
            if self.after_commit(&format!("flow.{kind}.claimed")).is_err() {
                leases.remove(&lease);
                break;
            }
            let id = rec.id;
            let (tx, rx) = watch::channel(Status::default());
            tracing::info!(flow = %id, kind, generation = lease.generation, "resuming flow");
            let (fut, names) = resumer.resume(self.inner.clone(), rec, steps, lease, tx);
            self.spawn(fut);
            handles.push(FlowHandle { id, names, rx });
        }
        Ok(handles)
    }

    /// Claim one flow: in one transaction, take it (if still claimable) and
    /// read its step records. Its lease is renewed from then on.
    async fn claim_one(
        &self,
        rec: &FlowRecord,
        rule: ClaimRule,
    ) -> Result<Option<(FlowRecord, Vec<StepRecord>, Arc<Lease>)>, StoreError> {
        let leases = &self.inner.leases;
        let term = leases.term();
        let mut tx = self.inner.store.begin().await?;
        let now = scoria_store::now();
        let Some(claimed) =
            db::flow_claim(&mut tx, rec.id, &leases.node, &now, &term.until, rule).await?
        else {
            return Ok(None);
        };
        let steps = db::flow_steps(&mut tx, rec.id).await?;
        tx.commit().await?;
        let lease = Lease::new(claimed.id, claimed.generation, term.deadline);
        leases.insert(lease.clone());
        Ok(Some((claimed, steps, lease)))
    }

    /// Start the task renewing the leases of the flows this engine runs
    /// (once). It stops at shutdown, when the engine crashes (failpoint
    /// crash: a dead engine renews nothing) or when the engine is dropped.
    pub(super) fn start_renewing(&self) {
        if self.inner.renewing.swap(true, Ordering::SeqCst) {
            return;
        }
        let every = self.inner.options.lease_renewal;
        background(&self.inner, every, |shared| async move {
            if let Err(e) = shared.leases.renew(&shared.store).await {
                tracing::warn!(error = %e, "could not renew flow leases");
            }
        });
    }

    /// Start the task claiming expired flows (once), like renewal.
    fn start_claiming(&self) {
        if self.inner.claiming.swap(true, Ordering::SeqCst) {
            return;
        }
        let every = self.inner.options.claim_interval;
        background(&self.inner, every, |shared| async move {
            let engine = Engine { inner: shared };
            match engine.claim_expired().await {
                Ok(claimed) if !claimed.is_empty() => {
                    tracing::info!(count = claimed.len(), "claimed flows whose lease expired");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not claim expired flows"),
            }
        });
    }
}

/// Run `tick` every `every` until the engine halts, crashes or is dropped.
/// The task holds the engine only while a tick runs.
fn background<E, T, Fut>(shared: &Arc<Shared<E>>, every: std::time::Duration, tick: T)
where
    E: Send + Sync + 'static,
    T: Fn(Arc<Shared<E>>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let weak = Arc::downgrade(shared);
    let mut halt = shared.halt.subscribe();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = halt.changed() => return,
            }
            let Some(shared) = weak.upgrade() else { return };
            if *shared.halt.borrow() || shared.fp.is_dead() {
                return;
            }
            tick(shared).await;
        }
    });
}
