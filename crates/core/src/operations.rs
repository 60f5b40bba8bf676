//! Operations (flows) as an admin sees them: what is running, unwinding, or
//! stuck waiting for a person, with each step's record. Nothing here changes
//! anything; a stuck flow is settled by the operation that supersedes it
//! (e.g. a forced delete of its volume).

use scoria_model::FlowId;
use scoria_model::flow::FlowState;
pub use scoria_store::flows::{FlowRecord, StepRecord};

use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result};

/// Flows in `state`, or every unsettled one (running, unwinding, stuck).
pub async fn list(app: &App, ctx: &Context, state: Option<FlowState>) -> Result<Vec<FlowRecord>> {
    ctx.authorize(Op::FlowListStuck)?;
    let mut conn = app.store().read().await?;
    let states = match state {
        Some(s) => vec![s],
        None => vec![FlowState::Running, FlowState::Unwinding, FlowState::Stuck],
    };
    let mut out = Vec::new();
    for s in states {
        out.extend(scoria_store::flows::flow_list_by_state(&mut conn, s).await?);
    }
    Ok(out)
}

/// One flow and its steps.
pub async fn get(app: &App, ctx: &Context, id: &str) -> Result<(FlowRecord, Vec<StepRecord>)> {
    ctx.authorize(Op::FlowListStuck)?;
    let not_found = || Error::NotFound(format!("Operation {id} could not be found."));
    let id: FlowId = id.parse().map_err(|_| not_found())?;
    let mut conn = app.store().read().await?;
    let f = scoria_store::flows::flow_get(&mut conn, id)
        .await?
        .ok_or_else(not_found)?;
    let steps = scoria_store::flows::flow_steps(&mut conn, id).await?;
    Ok((f, steps))
}
