//! What a flow is made of: its definition ([`Flow`]), its steps ([`Step`]) and
//! the context every step sees ([`Cx`]). The step functions take the context,
//! and the context is typed by the flow, so the three live together; the
//! engine that runs them is above, reached through a weak reference to its
//! shared state.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};

use scoria_failpoints::Failpoints;
use scoria_model::FlowId;
use scoria_store::{Conn, Store};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::StepError;
use crate::lease::Lease;
use crate::shared::Shared;

/// A boxed step future.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = Result<T, StepError>> + Send + 'a>>;

/// A database step's action: runs inside the flow's write transaction and
/// returns the step's output (kept for later steps and for a resumed run).
pub type DbFn<F> = for<'a> fn(&'a Cx<F>, &'a mut Conn) -> BoxFut<'a, Value>;
/// An external step's action: idempotent, returns the step's output.
pub type ExtFn<F> = for<'a> fn(&'a Cx<F>) -> BoxFut<'a, Value>;
/// A database undo, inside a write transaction.
pub type DbUndoFn<F> = for<'a> fn(&'a Cx<F>, &'a mut Conn) -> BoxFut<'a, ()>;
/// An external undo: idempotent ("already gone" is success).
pub type ExtUndoFn<F> = for<'a> fn(&'a Cx<F>) -> BoxFut<'a, ()>;

/// How a step does its work.
pub enum Run<F: Flow> {
    Db(DbFn<F>),
    External(ExtFn<F>),
}

/// How a step's work is undone.
pub enum Undo<F: Flow> {
    Db(DbUndoFn<F>),
    External(ExtUndoFn<F>),
}

/// One named step of a flow.
pub struct Step<F: Flow> {
    pub name: &'static str,
    pub run: Run<F>,
    pub undo: Option<Undo<F>>,
}

impl<F: Flow> Step<F> {
    /// A step that only changes the database.
    pub fn db(name: &'static str, f: DbFn<F>) -> Self {
        Step {
            name,
            run: Run::Db(f),
            undo: None,
        }
    }

    /// A step with an effect outside the database.
    pub fn external(name: &'static str, f: ExtFn<F>) -> Self {
        Step {
            name,
            run: Run::External(f),
            undo: None,
        }
    }

    /// Give the step a database undo.
    pub fn undo_db(mut self, f: DbUndoFn<F>) -> Self {
        self.undo = Some(Undo::Db(f));
        self
    }

    /// Give the step an external undo.
    pub fn undo_external(mut self, f: ExtUndoFn<F>) -> Self {
        self.undo = Some(Undo::External(f));
        self
    }
}

/// What the flows table records about the resource a flow works on.
#[derive(Clone, Debug, Default)]
pub struct FlowMeta {
    pub resource_type: Option<&'static str>,
    pub resource_id: Option<String>,
    pub project_id: Option<String>,
}

/// A kind of flow: its parameters, the environment its steps use, its steps.
pub trait Flow: Sized + Send + Sync + 'static {
    /// Stable name, stored with every flow of the kind (`volume_create`).
    const KIND: &'static str;
    /// Everything the flow needs to run or resume, stored as JSON.
    type Params: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// Shared services the steps use (store, drivers, configuration).
    type Env: Send + Sync + 'static;

    /// The version of [`Flow::steps`], stored with every flow started under
    /// it. Bump it whenever the steps change in a way a flow already under
    /// way would notice (a step added, removed, renamed or moved, or a step
    /// whose output or effect changed), and keep the previous list in
    /// [`Flow::legacy`] until the flows started under it have drained.
    const VERSION: u32 = 1;

    /// The steps, in order. Must be the same list for every call.
    fn steps() -> Vec<Step<Self>>;

    /// Earlier definitions this build can still run: `(version, steps)`
    /// pairs, so that flows started by an older build resume (or unwind)
    /// with the steps they started with. A flow whose version is neither
    /// [`Flow::VERSION`] nor listed here is refused and left `stuck`. The
    /// parameters are shared by every version (add fields with defaults).
    fn legacy() -> Vec<(u32, Vec<Step<Self>>)> {
        Vec::new()
    }

    /// The resource the flow works on, for the flows table.
    fn meta(params: &Self::Params) -> FlowMeta;
}

/// Why a flow is unwinding: the step that failed and its error message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub step: String,
    pub message: String,
}

/// The context a step runs in.
pub struct Cx<F: Flow> {
    pub flow_id: FlowId,
    pub params: F::Params,
    pub env: Arc<F::Env>,
    pub(crate) outputs: BTreeMap<String, Value>,
    pub(crate) failure: Option<Failure>,
    pub(crate) store: Store,
    pub(crate) fp: Arc<Failpoints>,
    pub(crate) step_index: i64,
    pub(crate) last_percent: Arc<AtomicI64>,
    /// The engine running the flow, for steps that start and wait for other
    /// flows ([`Cx::start_flow`]). Weak, so that a flow never keeps its
    /// engine alive.
    pub(crate) engine: Weak<Shared<F::Env>>,
    /// This engine's hold on the flow.
    pub(crate) lease: Arc<Lease>,
}

impl<F: Flow> Cx<F> {
    /// The output of an earlier step that completed, decoded.
    pub fn output<T: DeserializeOwned>(&self, step: &str) -> Result<T, StepError> {
        let v = self
            .outputs
            .get(step)
            .ok_or_else(|| StepError::msg(format!("step {step} has no recorded output")))?;
        serde_json::from_value(v.clone())
            .map_err(|e| StepError::msg(format!("output of step {step} is not as expected: {e}")))
    }

    /// The output of an earlier step if it completed.
    pub fn output_opt<T: DeserializeOwned>(&self, step: &str) -> Option<T> {
        self.outputs
            .get(step)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// While unwinding: which step failed and why.
    pub fn failure(&self) -> Option<&Failure> {
        self.failure.as_ref()
    }

    /// The failpoints of this engine (for steps that have boundaries of their own).
    pub fn failpoints(&self) -> &Arc<Failpoints> {
        &self.fp
    }

    /// Report how far the running step is (0-100). Cheap to call often: only a
    /// change of at least one percent is written, in the background.
    pub fn report_percent(&self, percent: u8) {
        let p = i64::from(percent.min(100));
        if self.last_percent.swap(p, Ordering::Relaxed) == p {
            return;
        }
        let store = self.store.clone();
        let (id, idx, generation) = (self.flow_id, self.step_index, self.lease.generation);
        tokio::spawn(async move {
            let res = async {
                let mut tx = store.begin().await?;
                scoria_store::flows::flow_set_percent_at(&mut tx, id, generation, idx, p).await?;
                tx.commit().await?;
                Ok::<_, scoria_store::StoreError>(())
            }
            .await;
            if let Err(e) = res {
                tracing::debug!(flow = %id, error = %e, "could not record progress");
            }
        });
    }
}
