//! The engine's knobs ([`EngineOptions`]): what production uses by default,
//! what the generic flow tests switch on.

use std::time::Duration;

/// Knobs of the engine. The defaults are what production uses; the `rerun_*`
/// switches exist for the generic flow tests (every step and undo run twice).
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Run every step's action twice (a database step: once rolled back, then
    /// for real; an external step: twice in a row), to prove idempotence.
    pub rerun_steps: bool,
    /// Run every undo twice.
    pub rerun_undos: bool,
    /// How many times an undo is tried before the flow is declared stuck.
    pub undo_attempts: u32,
    /// Pause between undo attempts (doubled each time).
    pub undo_backoff: Duration,
    /// The node this engine runs as: the owner of the flows it runs. One
    /// process per node id (at start-up a node takes back every flow its id
    /// owns, as its previous incarnation is gone).
    pub node_id: String,
    /// How long a flow stays this node's without a renewal. Another node
    /// claims it once that has passed; this engine stops a step of a flow
    /// whose lease it could not renew before then.
    pub lease: Duration,
    /// How often the leases of running flows are renewed (at most a third of
    /// `lease`, so that two renewals can fail before a lease runs out).
    pub lease_renewal: Duration,
    /// How often an engine that resumed its flows at start-up
    /// ([`crate::Engine::resume_all`]) looks for flows whose lease expired
    /// (their node died) and claims them.
    pub claim_interval: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            rerun_steps: false,
            rerun_undos: false,
            undo_attempts: 3,
            undo_backoff: Duration::from_millis(200),
            node_id: "local".to_owned(),
            lease: Duration::from_secs(30),
            lease_renewal: Duration::from_secs(10),
            claim_interval: Duration::from_secs(30),
        }
    }
}
