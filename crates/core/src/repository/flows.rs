//! The check and the fixes as flows: what `scoria fix` and the admin API
//! (`/v3/{project}/scoria-repository/...`) run.
//!
//! - `repository_check` — one step, `scan`: the check of every backend (or
//!   one), its percent the share of images `qemu-img check`ed; its output is
//!   the report. It only reads, so an interrupted check simply runs again.
//! - `repository_fix` — one step, `apply`: a new check, then the chosen
//!   fixes of it (see [`super::fixes`]), merges and flattens as child flows
//!   (`image_merge`, `volume_flatten`), each with its own steps and undo.
//!   Every fix re-tests its precondition as it acts, so a step run again
//!   after a crash applies what is still to do: it first waits for a child
//!   an earlier run started, then finds the repository as that child left
//!   it. Its output is what each fix did.

use scoria_flows::{Cx, Flow, FlowMeta, Step, StepError};
use scoria_model::FlowId;
use scoria_store::Store;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::fixes::{Outcome, Selection};
use super::{CheckOptions, FixKind, check_reporting};
use crate::Env;
use crate::error::{Error, Result};

/// The resource both flows name: the repository, not one volume.
const RESOURCE: &str = "repository";

pub struct RepositoryCheck;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CheckParams {
    /// One backend, or every one.
    #[serde(default)]
    pub backend: Option<String>,
    /// Headers only (see [`CheckOptions::quick`]).
    #[serde(default)]
    pub quick: bool,
    /// Every image, changed or not (see [`CheckOptions::full`]).
    #[serde(default)]
    pub full: bool,
}

impl Flow for RepositoryCheck {
    const KIND: &'static str = "repository_check";
    type Params = CheckParams;
    type Env = Env;

    fn steps() -> Vec<Step<Self>> {
        vec![Step::external("scan", |cx| Box::pin(scan(cx)))]
    }

    fn meta(p: &CheckParams) -> FlowMeta {
        FlowMeta {
            resource_type: Some(RESOURCE),
            resource_id: p.backend.clone(),
            project_id: None,
        }
    }
}

async fn scan(cx: &Cx<RepositoryCheck>) -> std::result::Result<Value, StepError> {
    let backends: Vec<crate::BackendConfig> = cx
        .env
        .backends
        .values()
        .iter()
        .map(|b| b.config.clone())
        .collect();
    let report = check_reporting(
        &cx.env.store,
        &cx.env.staging_dir,
        &backends,
        cx.params.backend.as_deref(),
        CheckOptions {
            quick: cx.params.quick,
            full: cx.params.full,
        },
        &|percent| cx.report_percent(percent),
    )
    .await?;
    super::record_seen(&cx.env.store, &report).await?;
    serde_json::to_value(report).map_err(|e| StepError::msg(e.to_string()))
}

pub struct RepositoryFix;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FixParams {
    /// Every fix of these kinds…
    #[serde(default)]
    pub kinds: Vec<FixKind>,
    /// …and these fixes (ids a check printed); every fix when both are empty.
    #[serde(default)]
    pub ids: Vec<String>,
    /// Run by `scoria fix`, no server running: mends are applied too. A
    /// server's run (the API, AutoFix) reports them `skipped`: repairing an
    /// image or recording it broken needs it to itself, which a running
    /// server cannot promise (an operation may start on it at any moment).
    #[serde(default)]
    pub offline: bool,
}

impl Flow for RepositoryFix {
    const KIND: &'static str = "repository_fix";
    type Params = FixParams;
    type Env = Env;

    fn steps() -> Vec<Step<Self>> {
        vec![Step::external("apply", |cx| Box::pin(apply(cx)))]
    }

    fn meta(_: &FixParams) -> FlowMeta {
        FlowMeta {
            resource_type: Some(RESOURCE),
            resource_id: None,
            project_id: None,
        }
    }
}

async fn apply(cx: &Cx<RepositoryFix>) -> std::result::Result<Value, StepError> {
    let selection = Selection {
        kinds: cx.params.kinds.clone(),
        ids: cx.params.ids.clone(),
        offline: cx.params.offline,
    };
    let outcome = super::fixes::apply(cx, &selection).await?;
    serde_json::to_value(outcome).map_err(|e| StepError::msg(e.to_string()))
}

/// The output of a finished flow's only step: a check's report, a fix's
/// outcome. `None` while it has none.
pub async fn output_of(store: &Store, flow: FlowId) -> Result<Option<Value>> {
    let mut conn = store.read().await?;
    Ok(scoria_store::flows::flow_steps(&mut conn, flow)
        .await?
        .into_iter()
        .next()
        .and_then(|s| s.output))
}

/// What a finished `repository_fix` flow did.
pub async fn fix_outcome(store: &Store, flow: FlowId) -> Result<Outcome> {
    let value = output_of(store, flow)
        .await?
        .ok_or_else(|| Error::InvalidState(format!("flow {flow} has no outcome")))?;
    serde_json::from_value(value)
        .map_err(|e| Error::internal(format!("the outcome of flow {flow}"), e))
}
