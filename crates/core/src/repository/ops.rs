//! The check and the fixes for the admin API: start one as a flow, read
//! how far it is and, once done, what it found or did (the step's output).
//! The flows are in [`super::flows`].

use scoria_flows::Flow;
use scoria_model::FlowId;
use scoria_model::flow::FlowState;
use scoria_store::flows::FlowRecord;
use serde_json::Value;

use super::flows::{CheckParams, FixParams, RepositoryCheck, RepositoryFix, output_of};
use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result};

/// Start a check of every backend, or of `params.backend` (a backend this
/// Scoria does not have is a 404).
pub async fn start_check(app: &App, ctx: &Context, params: CheckParams) -> Result<FlowId> {
    ctx.authorize(Op::RepositoryCheck)?;
    if let Some(b) = &params.backend
        && !app.env.backends.contains_key(b)
    {
        return Err(Error::NotFound(format!("Backend {b} could not be found.")));
    }
    let h = app.engine.start::<RepositoryCheck>(params)?;
    recorded(app, h.id).await
}

/// Start applying fixes: refused while another fix runs (two would race for
/// the same targets).
pub async fn start_fix(app: &App, ctx: &Context, params: FixParams) -> Result<FlowId> {
    ctx.authorize(Op::RepositoryFix)?;
    let running = {
        let mut conn = app.store().read().await?;
        scoria_store::flows::flow_list_active(&mut conn)
            .await?
            .into_iter()
            .find(|f| f.kind == <RepositoryFix as Flow>::KIND)
    };
    if let Some(f) = running {
        return Err(Error::InvalidState(format!(
            "Fixes {} are being applied; apply more once they are done.",
            f.id
        )));
    }
    let h = app.engine.start::<RepositoryFix>(params)?;
    recorded(app, h.id).await
}

/// A check (`what`: "check") or a fix ("fix") and, once it is done, its
/// report or outcome.
pub async fn get(
    app: &App,
    ctx: &Context,
    what: &str,
    id: &str,
) -> Result<(FlowRecord, Option<Value>)> {
    let (op, kind) = match what {
        "check" => (Op::RepositoryCheck, <RepositoryCheck as Flow>::KIND),
        _ => (Op::RepositoryFix, <RepositoryFix as Flow>::KIND),
    };
    ctx.authorize(op)?;
    let not_found = || Error::NotFound(format!("The {what} {id} could not be found."));
    let id: FlowId = id.parse().map_err(|_| not_found())?;
    let f = {
        let mut conn = app.store().read().await?;
        scoria_store::flows::flow_get(&mut conn, id).await?
    }
    .filter(|f| f.kind == kind)
    .ok_or_else(not_found)?;
    let output = if f.state == FlowState::Done {
        output_of(app.store(), id).await?
    } else {
        None
    };
    Ok((f, output))
}

/// `id` once the engine has written its record (its first transaction, a
/// moment after the start), so that a GET right after the answer finds it.
async fn recorded(app: &App, id: FlowId) -> Result<FlowId> {
    for _ in 0..2000 {
        let found = {
            let mut conn = app.store().read().await?;
            scoria_store::flows::flow_get(&mut conn, id)
                .await?
                .is_some()
        };
        if found {
            return Ok(id);
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    Err(Error::InvalidState(format!(
        "flow {id} was not recorded in time"
    )))
}
