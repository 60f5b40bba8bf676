//! The flow engine: multi-step operations that survive crashes.
//!
//! A *flow* is a list of named steps, each with an action and an optional undo
//! (Cinder's taskflow flows, persisted the way Oxide's steno persists sagas). Its
//! parameters, each step's start and outcome, and its state are stored, so that a
//! restart resumes what was running and finishes undoing what was unwinding.
//!
//! # Two kinds of steps, two guarantees
//!
//! - a **database step** ([`Run::Db`]) gets the write transaction; its effect and
//!   its `done` record commit together, so it happens exactly once;
//! - an **external step** ([`Run::External`]) touches the world (a file, a
//!   process). Its `started` record commits first, then it runs, then `done`
//!   commits. After a crash in between it runs again, so it must be idempotent:
//!   ids and paths are chosen by an earlier step and read from that step's
//!   output ([`Cx::output`]); "already exists" and "already gone" are success.
//!   It must also survive being cut short anywhere (a crash, or its node
//!   losing the flow's lease: see below).
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
//! # Batches: consecutive database steps share one transaction
//!
//! The engine does not open a transaction per step. Every run of consecutive
//! database steps goes into one write transaction (`BEGIN IMMEDIATE`),
//! together with the `done` record of the external step before them and the
//! `started` record of the external step after them; a flow of database
//! steps only is one transaction from its first step to `done`.
//!
//! ```text
//!   steps:   db0   db1   ext2        ext2 runs       db3   db4   (end)
//!   tx 1:  [create flow, db0, db1, ext2 started]
//!   tx 2:                            [ext2 done, db3, db4, flow done]
//! ```
//!
//! Steps run without savepoints, since success is the common case. The
//! retry rule of a batch:
//! - **a database step fails**: the whole transaction rolls back, and the
//!   batch is run again in a fresh one *up to the failing step* (its prefix
//!   runs a second time, which database steps allow: they depend only on the
//!   transaction), which then records that prefix done and the flow
//!   unwinding from the failing step. The effect is that of keeping the
//!   prefix. A new flow whose very first step fails leaves no trace at all;
//! - **the database fails** (busy, I/O): the transaction is retried up to five
//!   times with a growing pause (100 ms, 200 ms, … 1.6 s); after that nothing
//!   of it is stored and the run stops (`Interrupted`), the flow as it was
//!   persisted, for the next claim to resume.
//!
//! # Versions
//!
//! Steps are matched by index when a flow resumes, so every flow stores the
//! version of its kind's definition ([`Flow::VERSION`], 1 by default) and that
//! definition's step names. A build that changes a kind's steps bumps its
//! version and keeps the old list in [`Flow::legacy`] until the flows started
//! under it have drained; a flow resumes (or unwinds) with the steps it
//! started with. A flow whose definition this build does not have (or whose
//! step names or step records differ from it) is refused: it goes `stuck`
//! with a message naming both definitions ("flow X was started by definition
//! volume_delete v1 [a, b, c]; this build has v2 [a, b2, c]"), its
//! parameters and step records untouched. Flows stored before versions were
//! are version 1 and are checked against their step records.
//!
//! # Ownership: nodes, leases, generations
//!
//! Every running or unwinding flow is owned by one node (the engine's
//! [`EngineOptions::node_id`]), until its lease expires, under a generation
//! that every claim bumps. One process runs per node id.
//!
//! ```text
//!                 create (gen 1, owner = this node)
//!                         │
//!    ┌────────────────────▼─────────────────────┐
//!    │ every transaction of the engine about the │  UPDATE flows SET lease = now + L
//!    │ flow opens with the lease check           │  WHERE id AND owner AND generation
//!    └────────────────────┬─────────────────────┘  (no row: roll back, stop)
//!                         │  a step running long: the lease is renewed
//!                         │  every `lease_renewal`, by a background task
//!    node dies ───────────┤
//!    (no more renewals)   ▼
//!             lease expires ─► another node claims: owner = it, gen + 1
//!                              the dead node's writes under the old
//!                              generation find nothing to update
//! ```
//!
//! - **Writes are fenced**: the check is one conditional update in the
//!   transactions the engine opens anyway; a run that fails it writes
//!   nothing more and ends `Interrupted`.
//! - **Steps are fenced too**: an external step (or undo) runs only while its
//!   lease is live here. It is raced against the lease, which is lost when a
//!   renewal finds the flow taken, or when a fifth of the lease is left
//!   without a successful renewal; the step is then dropped where it is. So
//!   a step stops before another node may claim its flow, as long as the
//!   nodes' clocks agree within a fifth of the lease (6 s by default).
//! - **Claims**: at start-up ([`Engine::resume_all`]) a node claims its own
//!   flows whatever their lease (its previous incarnation is gone), flows
//!   with no owner (stored before ownership was) and other nodes' flows
//!   whose lease expired, never a live flow of another node. After that it
//!   claims expired flows every [`EngineOptions::claim_interval`]
//!   ([`Engine::claim_expired`]). A flow of a kind this build does not know
//!   is not claimed.
//! - **Stopping**: a crashed engine stops renewing; a flow paused by
//!   [`Engine::shutdown`] gives its lease up, so another node may take it at
//!   once.
//!
//! # Failpoints
//!
//! See `scoria-failpoints`; for a flow of kind `K` and step `S`:
//! `flow.K.S.run` (before the action: an injected error fails the step),
//! `flow.K.S.started` (after an external step's `started` record commits),
//! `flow.K.S.ran` (after the action, before its outcome is recorded),
//! `flow.K.S.done` (after the `done` record commits),
//! `flow.K.unwinding` (after the flow is marked unwinding),
//! `flow.K.S.undo` (before an undo runs), `flow.K.S.undoing` (after an external
//! undo's `undoing` record commits), `flow.K.S.undone` (after `undone` commits),
//! `flow.K.finished` (after the final state commits),
//! `flow.K.claimed` (after a claim of the flow commits, before it runs),
//! `flow.K.lease_lost` (when a run stops because it lost the flow's lease;
//! whatever it is armed with, the run stops).
//!
//! # Code map
//!
//! `error.rs` (step errors, outcomes) and `options.rs` are at the bottom;
//! `handle.rs` follows a flow; `lease.rs` holds this engine's leases;
//! `shared.rs` is the state an engine shares with its flows; `step.rs` what a
//! flow is made of and the context its steps see; `definition.rs` the
//! versions of a kind; `engine/` runs flows (`mod.rs` the public face,
//! `claim.rs` claims and background tasks, `drive.rs` batches, `unwind.rs`
//! undos); `children.rs` lets a step drive other flows; `held.rs` gives a step
//! transactions of its own, fenced like the engine's; `testkit.rs` holds
//! the generic flow tests.

mod children;
mod definition;
mod engine;
mod error;
mod handle;
mod held;
mod lease;
mod options;
mod shared;
mod step;
pub mod testkit;

pub use engine::Engine;
pub use error::{EngineError, Outcome, StepError};
pub use handle::FlowHandle;
pub use held::HeldTerm;
pub use options::EngineOptions;
pub use step::{Cx, DbFn, DbUndoFn, ExtFn, ExtUndoFn, Failure, Flow, FlowMeta, Run, Step, Undo};
