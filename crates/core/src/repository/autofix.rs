//! AutoFix: the fixes of the configured kinds applied on a schedule and,
//! if configured, after operations, while the server runs (VDSM's
//! AutoFix). Each round is one `repository_fix` flow, the same as an
//! admin's through the API: a new check, then every fix of those kinds, each
//! re-testing its precondition as it acts. A round is skipped while another
//! fix runs. Off unless kinds are configured (`[repository] autofix`).
//!
//! After operations (`autofix_after_operations`): a round follows the end
//! of any flow, once ends have settled for [`SETTLE`] (a burst of
//! operations costs one round; one that never pauses, a round every ten
//! settles). Rounds run one at a time, and the ends of
//! the round's own flows (and of whatever ended while it ran, which its
//! check may or may not have seen) do not start another; the next operation
//! or the schedule does. The usual check skips unchanged images, so a round
//! costs about the survey of the backends' directories.

use std::time::Duration;

use scoria_flows::{Engine, Flow, Outcome};

use super::FixKind;
use super::flows::{FixParams, RepositoryFix};
use crate::Env;

/// What AutoFix applies, and how often.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoFix {
    /// The kinds applied each round; none: AutoFix is off.
    pub kinds: Vec<FixKind>,
    /// Between rounds (the first one period after start).
    pub period: Duration,
    /// A round after operations too, not only on the schedule.
    pub after_operations: bool,
}

/// How long flow ends gather before a round after operations.
pub const SETTLE: Duration = Duration::from_secs(1);

impl Default for AutoFix {
    fn default() -> Self {
        AutoFix {
            kinds: Vec::new(),
            period: Duration::from_secs(3600),
            after_operations: false,
        }
    }
}

/// Run AutoFix rounds until the task is aborted ([`crate::App::shutdown`]).
pub fn spawn(engine: Engine<Env>, autofix: AutoFix) -> tokio::task::JoinHandle<()> {
    let mut ended = engine.ended();
    tokio::spawn(async move {
        let mut next = tokio::time::Instant::now() + autofix.period;
        loop {
            ended.borrow_and_update();
            tokio::select! {
                changed = ended.changed(), if autofix.after_operations => {
                    if changed.is_err() {
                        return;
                    }
                    // Let a burst end, then one round for all of it (after
                    // ten settles at most: operations that never pause
                    // still get rounds).
                    for _ in 0..10 {
                        tokio::time::sleep(SETTLE).await;
                        if !ended.has_changed().unwrap_or(false) {
                            break;
                        }
                        ended.borrow_and_update();
                    }
                }
                _ = tokio::time::sleep_until(next) => {
                    next = tokio::time::Instant::now() + autofix.period;
                }
            }
            round(&engine, &autofix).await;
        }
    })
}

async fn round(engine: &Engine<Env>, autofix: &AutoFix) {
    let busy = match engine.store().read().await {
        Ok(mut conn) => scoria_store::flows::flow_list_active(&mut conn)
            .await
            .map(|flows| {
                flows
                    .iter()
                    .any(|f| f.kind == <RepositoryFix as Flow>::KIND)
            })
            .unwrap_or(true),
        Err(_) => true,
    };
    if busy {
        tracing::debug!("autofix: another fix runs; this round is skipped");
        return;
    }
    let started = engine.start::<RepositoryFix>(FixParams {
        kinds: autofix.kinds.clone(),
        ids: Vec::new(),
        offline: false,
    });
    match started {
        Ok(h) => match h.wait().await {
            Outcome::Done => tracing::info!(flow = %h.id, "autofix round done"),
            other => tracing::warn!(flow = %h.id, outcome = ?other, "autofix round did not finish"),
        },
        Err(e) => tracing::warn!(error = %e, "autofix round could not start"),
    }
}
