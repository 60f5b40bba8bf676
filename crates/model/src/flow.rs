//! The states of a persisted flow and of each of its steps.
//!
//! ```text
//!  flow:  running ──(all steps done)──────────────────► done
//!            │
//!            └─(a step failed)─► unwinding ──(undos ok)─► failed
//!                                    │
//!                                    └─(an undo failed)─► stuck   (admin attention)
//!
//!  step:  started ──► done ──(unwinding)──► undoing ──► undone
//!                                              │
//!                                              └──────► undo_failed
//! ```
//!
//! A database-only step never shows `started`: its effect and its `done` record
//! commit in one transaction. An external step (a file, a process) records
//! `started` first; after a crash a `started` step is run again, so external
//! steps are idempotent.

use crate::volume::string_enum;

string_enum!(
    /// The state of a flow.
    FlowState {
        Running = "running",
        Unwinding = "unwinding",
        Done = "done",
        Failed = "failed",
        Stuck = "stuck",
    }
);

string_enum!(
    /// The state of one step of a flow.
    StepState {
        Started = "started",
        Done = "done",
        Undoing = "undoing",
        Undone = "undone",
        UndoFailed = "undo_failed",
    }
);

impl FlowState {
    /// True while the engine still has work to do on the flow.
    pub fn is_active(self) -> bool {
        matches!(self, FlowState::Running | FlowState::Unwinding)
    }
}

/// What a user sees of an operation in progress, in VDSM's terms: stage `i/N`
/// with the step's name, percent complete where the step can tell, last error.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    pub operation: String,
    pub state: FlowState,
    /// 1-based stage being worked on (or `total` when done).
    pub stage: u32,
    pub total: u32,
    pub step: Option<String>,
    pub percent: Option<u8>,
    pub last_error: Option<String>,
}

impl Progress {
    /// `"3/7"`.
    pub fn stage_label(&self) -> String {
        format!("{}/{}", self.stage, self.total)
    }
}
