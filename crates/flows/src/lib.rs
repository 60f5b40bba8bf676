//! The flow engine: multi-step operations that survive crashes.
//!
//! A *flow* is a list of named steps, each with an action and an optional undo
//! (Cinder's taskflow flows, persisted the way Oxide's steno persists sagas). Its
//! parameters, each step's start and outcome, and its state are stored, so that a
//! restart resumes what was running and finishes undoing what was unwinding.
//!
//! Two kinds of steps, two guarantees:
//! - a **database step** ([`Run::Db`]) gets the write transaction; its effect and
//!   its `done` record commit together, so it happens exactly once;
//! - an **external step** ([`Run::External`]) touches the world (a file, a
//!   process). Its `started` record commits first, then it runs, then `done`
//!   commits. After a crash in between it runs again, so it must be idempotent:
//!   ids and paths are chosen by an earlier step and read from that step's
//!   output ([`Cx::output`]); "already exists" and "already gone" are success.
//!
//! On a step failure the completed steps are undone in reverse (an external step
//! that failed is undone too, since it may have done part of its work; undos are
//! idempotent). An undo that keeps failing leaves the flow `stuck` with its
//! error, for an admin: nothing silently disappears.
//!
//! ```text
//!   start ─► [step 0] ─► [step 1] ─► ... ─► [step n-1] ─► done
//!                            │ fails
//!                            ▼
//!                        unwinding: undo(1)?, undo(0) ─► failed
//!                                        │ undo keeps failing
//!                                        ▼
//!                                      stuck
//! ```
//!
//! Failpoints (see `scoria-failpoints`), for a flow of kind `K` and step `S`:
//! `flow.K.S.run` (before the action: an injected error fails the step),
//! `flow.K.S.started` (after an external step's `started` record commits),
//! `flow.K.S.ran` (after the action, before its outcome is recorded),
//! `flow.K.S.done` (after the `done` record commits),
//! `flow.K.unwinding` (after the flow is marked unwinding),
//! `flow.K.S.undo` (before an undo runs), `flow.K.S.undoing` (after an external
//! undo's `undoing` record commits), `flow.K.S.undone` (after `undone` commits),
//! `flow.K.finished` (after the final state commits).

mod children;
mod definition;
mod engine;
mod error;
mod handle;
mod lease;
mod options;
mod shared;
mod step;
pub mod testkit;

pub use engine::Engine;
pub use error::{EngineError, Outcome, StepError};
pub use handle::FlowHandle;
pub use options::EngineOptions;
pub use step::{Cx, DbFn, DbUndoFn, ExtFn, ExtUndoFn, Failure, Flow, FlowMeta, Run, Step, Undo};
