//! Versioned definitions: a flow started by one build and resumed by a build
//! whose code moved on runs (or unwinds) with the steps it started with, or
//! is refused loudly when that definition is gone.
#![cfg(feature = "failpoints")]

use std::sync::{Arc, Mutex};

use scoria_failpoints::{Action, Failpoints};
use scoria_flows::{Cx, Engine, EngineOptions, Flow, FlowMeta, Outcome, Step, StepError};
use scoria_model::flow::{FlowState, StepState};
use scoria_store::flows as db;
use scoria_store::{Conn, Store, StoreOptions};
use serde_json::{Value, json};

/// What ran, in order (`v1.b`, `v1.undo_a`, …).
#[derive(Default)]
struct Env {
    log: Mutex<Vec<String>>,
}

impl Env {
    fn ran(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Params {
    name: String,
}

fn meta(p: &Params) -> FlowMeta {
    FlowMeta {
        resource_type: Some("thing"),
        resource_id: Some(p.name.clone()),
        project_id: None,
    }
}

/// The steps log their version and name; every flow type below uses them.
async fn db_step<F: Flow<Env = Env>>(cx: &Cx<F>, what: &str) -> Result<Value, StepError> {
    cx.env.log.lock().unwrap().push(what.to_owned());
    Ok(json!(what))
}

async fn undo<F: Flow<Env = Env>>(cx: &Cx<F>, what: &str) -> Result<(), StepError> {
    cx.env.log.lock().unwrap().push(what.to_owned());
    Ok(())
}

/// Version 1 of kind `thing`: a (db), b (external), c (db).
fn v1_steps<F: Flow<Env = Env>>() -> Vec<Step<F>> {
    vec![
        Step::db("a", |cx, _: &mut Conn| Box::pin(db_step(cx, "v1.a")))
            .undo_db(|cx, _| Box::pin(undo(cx, "v1.undo_a"))),
        Step::external("b", |cx| Box::pin(db_step(cx, "v1.b")))
            .undo_external(|cx| Box::pin(undo(cx, "v1.undo_b"))),
        Step::db("c", |cx, _| Box::pin(db_step(cx, "v1.c"))),
    ]
}

/// Version 2: a renamed step and a new one, undos of its own.
fn v2_steps<F: Flow<Env = Env>>() -> Vec<Step<F>> {
    vec![
        Step::db("a", |cx, _: &mut Conn| Box::pin(db_step(cx, "v2.a")))
            .undo_db(|cx, _| Box::pin(undo(cx, "v2.undo_a"))),
        Step::external("b2", |cx| Box::pin(db_step(cx, "v2.b2")))
            .undo_external(|cx| Box::pin(undo(cx, "v2.undo_b2"))),
        Step::external("x", |cx| Box::pin(db_step(cx, "v2.x"))),
        Step::db("c", |cx, _| Box::pin(db_step(cx, "v2.c"))),
    ]
}

/// The build before the change.
struct V1;

impl Flow for V1 {
    const KIND: &'static str = "thing";
    type Params = Params;
    type Env = Env;
    fn steps() -> Vec<Step<Self>> {
        v1_steps()
    }
    fn meta(p: &Params) -> FlowMeta {
        meta(p)
    }
}

/// The build after the change, keeping version 1 for flows under way.
struct V2;

impl Flow for V2 {
    const KIND: &'static str = "thing";
    const VERSION: u32 = 2;
    type Params = Params;
    type Env = Env;
    fn steps() -> Vec<Step<Self>> {
        v2_steps()
    }
    fn legacy() -> Vec<(u32, Vec<Step<Self>>)> {
        vec![(1, v1_steps())]
    }
    fn meta(p: &Params) -> FlowMeta {
        meta(p)
    }
}

/// A build after the change that dropped version 1 too early.
struct V2Only;

impl Flow for V2Only {
    const KIND: &'static str = "thing";
    const VERSION: u32 = 2;
    type Params = Params;
    type Env = Env;
    fn steps() -> Vec<Step<Self>> {
        v2_steps()
    }
    fn meta(p: &Params) -> FlowMeta {
        meta(p)
    }
}

/// A build that changed the steps but forgot to bump the version.
struct Unbumped;

impl Flow for Unbumped {
    const KIND: &'static str = "thing";
    type Params = Params;
    type Env = Env;
    fn steps() -> Vec<Step<Self>> {
        v2_steps()
    }
    fn meta(p: &Params) -> FlowMeta {
        meta(p)
    }
}

struct World {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        World { _dir: dir, path }
    }

    /// An engine (a build) over the world's database, registering `F`.
    async fn engine<F: Flow<Env = Env>>(&self, fp: Arc<Failpoints>) -> Engine<Env> {
        let store = Store::open(&self.path, &StoreOptions::default())
            .await
            .unwrap();
        let opts = EngineOptions {
            undo_backoff: std::time::Duration::from_millis(1),
            ..EngineOptions::default()
        };
        let e = Engine::new(store, Arc::new(Env::default()), fp, opts);
        e.register::<F>();
        e
    }

    /// Start a flow on a v1 build that dies as `crash_at` is reached (after
    /// `fail_at`, if given, injected an error). Returns its id.
    async fn interrupted_v1(&self, crash_at: &str, fail_at: Option<&str>) -> scoria_model::FlowId {
        let fp = Failpoints::new();
        if let Some(f) = fail_at {
            fp.arm(f, Action::Error, 1, Some(1));
        }
        fp.arm(crash_at, Action::Crash, 1, Some(1));
        let e = self.engine::<V1>(fp.clone()).await;
        let h = e.start::<V1>(Params { name: "t".into() }).unwrap();
        assert!(matches!(h.wait().await, Outcome::Interrupted));
        e.wait_idle().await;
        assert!(fp.is_dead(), "the v1 build crashed at {crash_at}");
        h.id
    }
}

async fn record(
    e: &Engine<Env>,
    id: scoria_model::FlowId,
) -> (db::FlowRecord, Vec<db::StepRecord>) {
    let mut c = e.store().read().await.unwrap();
    let rec = db::flow_get(&mut c, id).await.unwrap().unwrap();
    let steps = db::flow_steps(&mut c, id).await.unwrap();
    (rec, steps)
}

#[tokio::test]
async fn a_v1_flow_cut_short_resumes_with_v1_steps_on_a_build_that_moved_to_v2() {
    let w = World::new();
    let id = w.interrupted_v1("flow.thing.b.started", None).await;

    let e = w.engine::<V2>(Failpoints::new()).await;
    let (rec, _) = record(&e, id).await;
    assert_eq!(rec.definition_version, Some(1));
    assert_eq!(
        rec.step_names,
        Some(vec!["a".to_string(), "b".into(), "c".into()])
    );
    let resumed = e.resume_all().await.unwrap();
    assert_eq!(resumed.len(), 1);
    assert!(matches!(resumed[0].wait().await, Outcome::Done));
    // The started external step of v1 ran again, then v1's last step: nothing
    // of v2 ran on a flow started under v1.
    assert_eq!(e.env().ran(), ["v1.b", "v1.c"]);
    let (rec, steps) = record(&e, id).await;
    assert_eq!(
        (rec.state, rec.definition_version),
        (FlowState::Done, Some(1))
    );
    assert_eq!(
        steps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );

    // A flow started by the new build runs and records v2.
    let h = e.start::<V2>(Params { name: "u".into() }).unwrap();
    assert!(matches!(h.wait().await, Outcome::Done));
    assert_eq!(
        e.env().ran()[2..],
        [
            "v2.a".to_string(),
            "v2.b2".into(),
            "v2.x".into(),
            "v2.c".into()
        ]
    );
    let (rec, _) = record(&e, h.id).await;
    assert_eq!(rec.definition_version, Some(2));
    assert_eq!(
        rec.step_names,
        Some(vec!["a".to_string(), "b2".into(), "x".into(), "c".into()])
    );
}

#[tokio::test]
async fn a_v1_flow_on_a_build_without_v1_is_left_stuck_with_its_records() {
    let w = World::new();
    let id = w.interrupted_v1("flow.thing.b.started", None).await;
    let e = w.engine::<V2Only>(Failpoints::new()).await;
    let (_, before) = record(&e, id).await;
    let resumed = e.resume_all().await.unwrap();
    assert_eq!(resumed.len(), 1);
    let expected = format!(
        "flow {id} was started by definition thing v1 [a, b, c]; this build has v2 [a, b2, x, c]"
    );
    match resumed[0].wait().await {
        Outcome::Stuck(m) => assert_eq!(m, expected),
        other => panic!("{other:?}"),
    }
    e.wait_idle().await;
    assert!(e.env().ran().is_empty(), "{:?}", e.env().ran());
    let mut c = e.store().read().await.unwrap();
    let stuck = db::flow_list_by_state(&mut c, FlowState::Stuck)
        .await
        .unwrap();
    assert_eq!(stuck.len(), 1, "an admin sees it among the stuck flows");
    assert_eq!(stuck[0].last_error.as_deref(), Some(expected.as_str()));
    assert_eq!(stuck[0].params, json!({"name": "t"}));
    drop(c);
    let (_, after) = record(&e, id).await;
    assert_eq!(before, after, "its step records are as they were");
    assert_eq!(
        after.iter().map(|s| s.state).collect::<Vec<_>>(),
        [StepState::Done, StepState::Started]
    );
}

#[tokio::test]
async fn an_unwinding_v1_flow_unwinds_with_v1_undos() {
    let w = World::new();
    // Step c fails; the build dies once the flow is recorded unwinding.
    let id = w
        .interrupted_v1("flow.thing.unwinding", Some("flow.thing.c.run"))
        .await;
    let e = w.engine::<V2>(Failpoints::new()).await;
    let (rec, _) = record(&e, id).await;
    assert_eq!(rec.state, FlowState::Unwinding);
    let resumed = e.resume_all().await.unwrap();
    assert!(matches!(resumed[0].wait().await, Outcome::Failed(_)));
    assert_eq!(resumed[0].failed_step().as_deref(), Some("c"));
    assert_eq!(e.env().ran(), ["v1.undo_b", "v1.undo_a"]);
    let (rec, steps) = record(&e, id).await;
    assert_eq!(
        (rec.state, rec.failed_step.as_deref()),
        (FlowState::Failed, Some("c"))
    );
    assert!(
        steps.iter().all(|s| s.state == StepState::Undone),
        "{steps:?}"
    );
}

#[tokio::test]
async fn steps_changed_without_a_new_version_are_refused() {
    let w = World::new();
    let id = w.interrupted_v1("flow.thing.b.started", None).await;
    let e = w.engine::<Unbumped>(Failpoints::new()).await;
    let resumed = e.resume_all().await.unwrap();
    match resumed[0].wait().await {
        Outcome::Stuck(m) => assert_eq!(
            m,
            format!(
                "flow {id} was started by definition thing v1 [a, b, c]; this build has v1 [a, b2, x, c]"
            )
        ),
        other => panic!("{other:?}"),
    }
    assert!(e.env().ran().is_empty());
}
