//! The engine's own behaviour, on a toy flow: a quota reservation (database), a
//! "file" in a shared set (external, idempotent), a commit (database).
#![cfg(feature = "failpoints")]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use scoria_failpoints::{Action, Failpoints};
use scoria_flows::testkit::{self, BoxFut, Expect, TestWorld};
use scoria_flows::{
    Cx, Engine, EngineOptions, Flow, FlowHandle, FlowMeta, Outcome, Step, StepError,
};
use scoria_model::flow::FlowState;
use scoria_model::quota::QuotaResource;
use scoria_store::{Conn, Store, StoreOptions, quotas};
use serde_json::{Value, json};

struct Env {
    files: Arc<Mutex<BTreeSet<String>>>,
    /// When set, `make` waits for a permit (tests that stop the engine while
    /// a step runs).
    gate: Option<Arc<tokio::sync::Semaphore>>,
}

struct Toy;

#[derive(serde::Serialize, serde::Deserialize)]
struct Params {
    project: String,
    name: String,
}

impl Flow for Toy {
    const KIND: &'static str = "toy";
    type Params = Params;
    type Env = Env;

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::db("reserve", |cx, c| Box::pin(reserve(cx, c)))
                .undo_db(|cx, c| Box::pin(release(cx, c))),
            Step::external("make", |cx| Box::pin(make(cx)))
                .undo_external(|cx| Box::pin(unmake(cx))),
            Step::db("commit", |cx, c| Box::pin(release_value(cx, c))),
        ]
    }

    fn meta(p: &Params) -> FlowMeta {
        FlowMeta {
            resource_type: Some("toy"),
            resource_id: Some(p.name.clone()),
            project_id: Some(p.project.clone()),
        }
    }
}

async fn reserve(cx: &Cx<Toy>, c: &mut Conn) -> Result<Value, StepError> {
    quotas::quota_reserve(
        c,
        cx.flow_id,
        &cx.params.project,
        &[(QuotaResource::Volumes.into(), 1)],
        None,
    )
    .await?;
    // The path is chosen here, persisted, and reused by every later attempt.
    Ok(json!({ "path": format!("file-{}", cx.params.name) }))
}

async fn release(cx: &Cx<Toy>, c: &mut Conn) -> Result<(), StepError> {
    quotas::reservation_release_flow(c, cx.flow_id).await?;
    Ok(())
}

async fn release_value(cx: &Cx<Toy>, c: &mut Conn) -> Result<Value, StepError> {
    release(cx, c).await?;
    Ok(Value::Null)
}

async fn make(cx: &Cx<Toy>) -> Result<Value, StepError> {
    if let Some(gate) = &cx.env.gate {
        gate.acquire()
            .await
            .map_err(|e| StepError::msg(e.to_string()))?
            .forget();
    }
    let path: Value = cx.output("reserve")?;
    let path = path["path"].as_str().unwrap_or_default().to_owned();
    cx.env.files.lock().unwrap().insert(path.clone());
    Ok(json!(path))
}

async fn unmake(cx: &Cx<Toy>) -> Result<(), StepError> {
    let path: Value = cx.output("reserve")?;
    cx.env
        .files
        .lock()
        .unwrap()
        .remove(path["path"].as_str().unwrap_or_default());
    Ok(())
}

struct World {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    files: Arc<Mutex<BTreeSet<String>>>,
    gate: Option<Arc<tokio::sync::Semaphore>>,
    /// The flow the generic tests start: `toy`, or `fan` (a parent of toys).
    kind: &'static str,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    World {
        _dir: dir,
        path,
        files: Default::default(),
        gate: None,
        kind: "toy",
    }
}

async fn fan_world() -> World {
    World {
        kind: "fan",
        ..world().await
    }
}

impl World {
    async fn open(&self, fp: Arc<Failpoints>, options: EngineOptions) -> Engine<Env> {
        let store = Store::open(&self.path, &StoreOptions::default())
            .await
            .unwrap();
        let engine = Engine::new(
            store,
            Arc::new(Env {
                files: self.files.clone(),
                gate: self.gate.clone(),
            }),
            fp,
            options,
        );
        engine.register::<Toy>();
        engine.register::<Fan>();
        engine
    }
}

impl TestWorld<Env> for World {
    fn engine(&self, fp: Arc<Failpoints>, options: EngineOptions) -> BoxFut<'_, Engine<Env>> {
        Box::pin(self.open(fp, options))
    }

    fn start<'a>(&'a self, engine: &'a Engine<Env>) -> BoxFut<'a, Result<FlowHandle, String>> {
        Box::pin(async move {
            if self.kind == "fragile" {
                engine.register::<Fragile>();
                return engine.start::<Fragile>(()).map_err(|e| e.to_string());
            }
            if self.kind == "fan" {
                return engine
                    .start::<Fan>(FanParams {
                        names: FAN.iter().map(|n| n.to_string()).collect(),
                    })
                    .map_err(|e| e.to_string());
            }
            engine
                .start::<Toy>(Params {
                    project: "p".into(),
                    name: "a".into(),
                })
                .map_err(|e| e.to_string())
        })
    }

    fn check<'a>(
        &'a self,
        engine: &'a Engine<Env>,
        expect: Expect,
    ) -> BoxFut<'a, Result<(), String>> {
        Box::pin(async move {
            let mut c = engine.store().read().await.map_err(|e| e.to_string())?;
            let reservations = quotas::reservation_list(&mut c)
                .await
                .map_err(|e| e.to_string())?;
            if !reservations.is_empty() {
                return Err(format!("stray reservations: {reservations:?}"));
            }
            let done_flows = scoria_store::flows::flow_list_by_state(&mut c, FlowState::Done)
                .await
                .map_err(|e| e.to_string())?;
            let files = self.files.lock().unwrap().clone();
            if self.kind == "fragile" {
                return Ok(());
            }
            if self.kind == "fan" {
                // Each child's file exists exactly when that child is done;
                // a parent that is done made every child.
                for name in FAN {
                    let child_done = done_flows
                        .iter()
                        .any(|f| f.kind == "toy" && f.resource_id.as_deref() == Some(*name));
                    if child_done != files.contains(&format!("file-{name}")) {
                        return Err(format!("child {name}: done {child_done}, files {files:?}"));
                    }
                }
                let parent_done = done_flows.iter().any(|f| f.kind == "fan");
                if (expect == Expect::Done || parent_done) && files.len() != FAN.len() {
                    return Err(format!("the parent is done but the files are {files:?}"));
                }
                if expect == Expect::Done && !parent_done {
                    return Err("the parent is not recorded done".into());
                }
                return Ok(());
            }
            let done = done_flows.len();
            let expect_file = match expect {
                Expect::Done => true,
                Expect::Failed => false,
                Expect::Either => done == 1,
            };
            if expect == Expect::Done && done != 1 {
                return Err("the flow is not recorded done".into());
            }
            if expect_file != files.contains("file-a") || files.len() > 1 {
                return Err(format!("files {files:?} but flow done = {done}"));
            }
            Ok(())
        })
    }
}

#[tokio::test]
async fn the_toy_flow_passes_the_generic_tests() {
    let report = testkit::run_all("toy", &["reserve", "make", "commit"], world).await;
    // 3 steps: 1 clean run + 6 injected errors + sweeps; every boundary crashed at.
    assert!(report.crash_points >= 10, "{report:?}");
    println!(
        "toy flow: {} scenarios, {} crash points",
        report.scenarios, report.crash_points
    );
}

#[tokio::test]
async fn a_failing_first_database_step_leaves_no_trace() {
    let w = world().await;
    let e = w.open(Failpoints::new(), EngineOptions::default()).await;
    let mut tx = e.store().begin().await.unwrap();
    quotas::quota_limit_set(&mut tx, "p", &[(QuotaResource::Volumes.into(), 0)])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let h = e
        .start::<Toy>(Params {
            project: "p".into(),
            name: "a".into(),
        })
        .unwrap();
    let err = match h.wait_step("reserve").await {
        Err(Outcome::Failed(err)) => err,
        other => panic!("{other:?}"),
    };
    assert!(
        err.downcast_ref::<scoria_store::StoreError>().is_some(),
        "{err:?}"
    );
    assert!(err.to_string().contains("volumes"), "{err}");
    let mut c = e.store().read().await.unwrap();
    for state in FlowState::ALL {
        let flows = scoria_store::flows::flow_list_by_state(&mut c, *state)
            .await
            .unwrap();
        assert!(flows.is_empty(), "{flows:?}");
    }
}

#[tokio::test]
async fn an_undo_that_keeps_failing_leaves_the_flow_stuck_and_visible() {
    let w = world().await;
    let fp = Failpoints::new();
    fp.arm("flow.toy.commit.run", Action::Error, 1, None);
    fp.arm("flow.toy.make.undo", Action::Error, 1, None);
    let opts = EngineOptions {
        undo_backoff: std::time::Duration::from_millis(1),
        ..Default::default()
    };
    let e = w.open(fp, opts).await;
    let h = e
        .start::<Toy>(Params {
            project: "p".into(),
            name: "a".into(),
        })
        .unwrap();
    let outcome = h.wait().await;
    assert!(
        matches!(&outcome, Outcome::Stuck(m) if m.contains("make")),
        "{outcome:?}"
    );
    let mut c = e.store().read().await.unwrap();
    let stuck = scoria_store::flows::flow_list_by_state(&mut c, FlowState::Stuck)
        .await
        .unwrap();
    assert_eq!(stuck.len(), 1);
    assert!(
        stuck[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("undo of step make")
    );
    let steps = scoria_store::flows::flow_steps(&mut c, h.id).await.unwrap();
    assert_eq!(steps[1].state, scoria_model::flow::StepState::UndoFailed);
    assert_eq!(
        steps[1].error.as_deref(),
        Some("failpoint flow.toy.make.undo injected an error")
    );
    // The reservation is still held by the stuck flow: nothing silently vanished.
    assert_eq!(quotas::reservation_list(&mut c).await.unwrap().len(), 1);
}

#[tokio::test]
async fn shutdown_pauses_at_a_step_boundary_and_a_new_engine_resumes() {
    let w = world().await;
    let fp = Failpoints::new();
    let e = w.open(fp, EngineOptions::default()).await;
    // Shut down before the flow starts running: it must not run a step.
    let h = e
        .start::<Toy>(Params {
            project: "p".into(),
            name: "a".into(),
        })
        .unwrap();
    h.wait_step("reserve").await.unwrap();
    e.shutdown(std::time::Duration::from_secs(5)).await;
    assert!(
        e.start::<Toy>(Params {
            project: "p".into(),
            name: "b".into()
        })
        .is_err()
    );
    let e2 = w.open(Failpoints::new(), EngineOptions::default()).await;
    let resumed = e2.resume_all().await.unwrap();
    for h in &resumed {
        assert!(matches!(h.wait().await, Outcome::Done));
    }
    e2.wait_idle().await;
    assert!(w.files.lock().unwrap().contains("file-a"));
    let mut c = e2.store().read().await.unwrap();
    assert!(
        scoria_store::flows::flow_list_active(&mut c)
            .await
            .unwrap()
            .is_empty()
    );
}

/// The children a fan flow makes.
const FAN: &[&str] = &["c1", "c2", "c3"];

/// A flow that drives other flows: one toy flow per name, started and waited
/// for by its one external step.
struct Fan;

#[derive(serde::Serialize, serde::Deserialize)]
struct FanParams {
    names: Vec<String>,
}

impl Flow for Fan {
    const KIND: &'static str = "fan";
    type Params = FanParams;
    type Env = Env;

    fn steps() -> Vec<Step<Self>> {
        vec![Step::external("spawn", |cx| Box::pin(spawn(cx)))]
    }

    fn meta(_: &FanParams) -> FlowMeta {
        FlowMeta {
            resource_type: Some("fan"),
            resource_id: Some("fan".into()),
            project_id: Some("p".into()),
        }
    }
}

/// Idempotent: a child already running (resumed after a crash) is waited
/// for, one that made its file is not started again, and the outcome is
/// judged from what exists.
async fn spawn(cx: &Cx<Fan>) -> Result<Value, StepError> {
    let mut started = Vec::new();
    for name in &cx.params.names {
        cx.wait_settled(name).await?;
        if !cx
            .env
            .files
            .lock()
            .unwrap()
            .contains(&format!("file-{name}"))
        {
            started.push(cx.start_flow::<Toy>(Params {
                project: "p".into(),
                name: name.clone(),
            })?);
        }
    }
    for h in &started {
        cx.wait_flow(h).await?;
    }
    let files = cx.env.files.lock().unwrap().clone();
    let missing: Vec<&String> = cx
        .params
        .names
        .iter()
        .filter(|n| !files.contains(&format!("file-{n}")))
        .collect();
    if !missing.is_empty() {
        return Err(StepError::msg(format!(
            "children {missing:?} were not made"
        )));
    }
    Ok(Value::Null)
}

#[tokio::test]
async fn a_flow_that_drives_child_flows_passes_the_generic_tests() {
    let report = testkit::run_all("fan", &["spawn"], fan_world).await;
    // Crashes land in the parent and in each child.
    assert!(report.crash_points >= 10, "{report:?}");
    println!(
        "fan flow: {} scenarios, {} crash points",
        report.scenarios, report.crash_points
    );
}

#[tokio::test]
async fn a_parent_waiting_for_its_children_pauses_at_shutdown_and_resumes() {
    let mut w = fan_world().await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    w.gate = Some(gate.clone());
    let e = w.open(Failpoints::new(), EngineOptions::default()).await;
    let parent = e
        .start::<Fan>(FanParams {
            names: vec!["c1".into()],
        })
        .unwrap();
    // Wait until the child holds at its gate.
    loop {
        let mut c = e.store().read().await.unwrap();
        let active = scoria_store::flows::flow_list_active(&mut c).await.unwrap();
        if active
            .iter()
            .any(|f| f.kind == "toy" && f.step_name.as_deref() == Some("make"))
        {
            break;
        }
        drop(c);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // Stop (the engine stops starting steps at once), then open the gate.
    let stop = e.shutdown(std::time::Duration::from_secs(5));
    let open = async {
        gate.add_permits(1);
    };
    tokio::join!(stop, open);
    // The parent did not fail: it paused, as its child did.
    assert!(matches!(parent.wait().await, Outcome::Interrupted));
    w.gate = None;
    let e2 = w.open(Failpoints::new(), EngineOptions::default()).await;
    for h in e2.resume_all().await.unwrap() {
        assert!(matches!(h.wait().await, Outcome::Done));
    }
    e2.wait_idle().await;
    assert!(w.files.lock().unwrap().contains("file-c1"));
}

/// A flow whose undo drives a child flow: its one step succeeds, the next
/// always fails, and undoing the first starts a toy flow and waits for it.
struct Revert;

impl Flow for Revert {
    const KIND: &'static str = "revert";
    type Params = FanParams;
    type Env = Env;

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::external("noop", |_| Box::pin(async { Ok(Value::Null) }))
                .undo_external(|cx| Box::pin(spawn_in_undo(cx))),
            Step::db("boom", |_, _| {
                Box::pin(async { Err(StepError::msg("boom")) })
            }),
        ]
    }

    fn meta(_: &FanParams) -> FlowMeta {
        FlowMeta {
            resource_type: Some("revert"),
            resource_id: Some("revert".into()),
            project_id: Some("p".into()),
        }
    }
}

async fn spawn_in_undo(cx: &Cx<Revert>) -> Result<(), StepError> {
    for name in &cx.params.names {
        cx.wait_settled(name).await?;
        if !cx
            .env
            .files
            .lock()
            .unwrap()
            .contains(&format!("file-{name}"))
        {
            let h = cx.start_flow::<Toy>(Params {
                project: "p".into(),
                name: name.clone(),
            })?;
            cx.wait_flow(&h).await?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn an_undo_waiting_for_a_child_pauses_at_shutdown_and_is_not_stuck() {
    let mut w = fan_world().await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    w.gate = Some(gate.clone());
    let e = w.open(Failpoints::new(), EngineOptions::default()).await;
    e.register::<Revert>();
    let h = e
        .start::<Revert>(FanParams {
            names: vec!["u1".into()],
        })
        .unwrap();
    loop {
        let mut c = e.store().read().await.unwrap();
        let active = scoria_store::flows::flow_list_active(&mut c).await.unwrap();
        if active
            .iter()
            .any(|f| f.kind == "toy" && f.step_name.as_deref() == Some("make"))
        {
            break;
        }
        drop(c);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let stop = e.shutdown(std::time::Duration::from_secs(5));
    let open = async {
        gate.add_permits(1);
    };
    tokio::join!(stop, open);
    assert!(matches!(h.wait().await, Outcome::Interrupted));
    {
        let mut c = e.store().read().await.unwrap();
        let unwinding = scoria_store::flows::flow_list_by_state(&mut c, FlowState::Unwinding)
            .await
            .unwrap();
        assert!(
            unwinding.iter().any(|f| f.kind == "revert"),
            "{unwinding:?}"
        );
    }
    w.gate = None;
    let e2 = w.open(Failpoints::new(), EngineOptions::default()).await;
    e2.register::<Revert>();
    for h in e2.resume_all().await.unwrap() {
        h.wait().await;
    }
    e2.wait_idle().await;
    assert!(w.files.lock().unwrap().contains("file-u1"));
    let mut c = e2.store().read().await.unwrap();
    let failed = scoria_store::flows::flow_list_by_state(&mut c, FlowState::Failed)
        .await
        .unwrap();
    assert!(failed.iter().any(|f| f.kind == "revert"), "{failed:?}");
    assert!(
        scoria_store::flows::flow_list_by_state(&mut c, FlowState::Stuck)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A flow with a bug the generic tests must catch: its first step fails
/// whenever an error is armed for its second step (it consumes that
/// failpoint), so "an error at step b" fails it at step a instead.
struct Fragile;

impl Flow for Fragile {
    const KIND: &'static str = "fragile";
    type Params = ();
    type Env = Env;

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::external("a", |cx| {
                Box::pin(async move {
                    cx.failpoints().hit("flow.fragile.b.run")?;
                    Ok(Value::Null)
                })
            }),
            Step::db("b", |_, _| Box::pin(async { Ok(Value::Null) })),
        ]
    }

    fn meta(_: &()) -> FlowMeta {
        FlowMeta::default()
    }
}

#[tokio::test]
#[should_panic(expected = "the flow failed at another step")]
async fn the_generic_tests_catch_a_flow_that_fails_at_the_wrong_step() {
    testkit::run_all("fragile", &["a", "b"], || async {
        World {
            kind: "fragile",
            ..world().await
        }
    })
    .await;
}
