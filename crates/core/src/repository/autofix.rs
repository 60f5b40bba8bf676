//! AutoFix: the fixes of the configured kinds applied on a schedule, while
//! the server runs (VDSM's AutoFix). Each round is one `repository_fix`
//! flow, the same as an admin's through the API: a new check, then every fix
//! of those kinds, each re-testing its precondition as it acts. A round is
//! skipped while another fix runs. Off unless kinds are configured
//! (`[repository] autofix`).

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
}

impl Default for AutoFix {
    fn default() -> Self {
        AutoFix {
            kinds: Vec::new(),
            period: Duration::from_secs(3600),
        }
    }
}

/// Run AutoFix rounds until the task is aborted ([`crate::App::shutdown`]).
pub fn spawn(engine: Engine<Env>, autofix: AutoFix) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(autofix.period).await;
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
