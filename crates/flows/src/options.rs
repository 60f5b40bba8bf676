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
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            rerun_steps: false,
            rerun_undos: false,
            undo_attempts: 3,
            undo_backoff: Duration::from_millis(200),
        }
    }
}
