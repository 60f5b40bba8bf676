//! Transactions of a step's own: [`Cx::begin_held`] and [`Cx::commit_held`],
//! for an external step that records progress in the database between its
//! effects (the create flow's rescheduling loop does). Each opens with the
//! lease check of the engine's own transactions, so a run that lost its flow
//! to another node writes nothing; a failed check loses the lease here too,
//! and the engine stops the run when the step returns.

use scoria_store::Tx;

use crate::error::StepError;
use crate::lease::{LeaseLost, Term};
use crate::step::{Cx, Flow};

/// The lease term a held transaction wrote, for [`Cx::commit_held`].
pub struct HeldTerm(Term);

impl<F: Flow> Cx<F> {
    /// Open a write transaction that passed the flow's lease check. Fails
    /// (with nothing written) when the flow is no longer this engine's, or
    /// the engine is gone.
    pub async fn begin_held(&self) -> Result<(Tx, HeldTerm), StepError> {
        let shared = self.engine.upgrade().ok_or_else(StepError::interrupted)?;
        if self.lease.is_lost() {
            return Err(StepError::new(LeaseLost));
        }
        let term = shared.leases.term();
        match shared
            .leases
            .begin_held(&self.store, &self.lease, &term)
            .await?
        {
            Some(tx) => Ok((tx, HeldTerm(term))),
            None => Err(StepError::new(LeaseLost)),
        }
    }

    /// Commit a transaction of [`Cx::begin_held`]: the lease then runs to
    /// the term its check wrote.
    pub async fn commit_held(&self, tx: Tx, term: HeldTerm) -> Result<(), StepError> {
        tx.commit()
            .await
            .map_err(|e| StepError::new(scoria_store::StoreError::from(e)))?;
        self.lease.extend(term.0.deadline);
        Ok(())
    }
}
