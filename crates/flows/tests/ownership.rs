//! Flow ownership: engines of different nodes on one database never run one
//! flow at once; a dead node's flows are claimed once their lease expired; a
//! node that lost a flow cannot write to it any more.
#![cfg(feature = "failpoints")]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scoria_failpoints::{Action, Failpoints};
use scoria_flows::{
    Cx, Engine, EngineOptions, Flow, FlowHandle, FlowMeta, Outcome, Step, StepError,
};
use scoria_model::FlowId;
use scoria_model::flow::{FlowState, StepState};
use scoria_store::flows::{self as db, ClaimRule};
use scoria_store::{Conn, Store, StoreOptions};
use serde_json::Value;

/// What every engine of a test saw, shared by them all.
#[derive(Default)]
struct Ledger {
    /// Flows whose external step is running, and on which node.
    inside: Mutex<HashMap<String, &'static str>>,
    /// Times a node entered a flow's external step while another was in it.
    overlaps: Mutex<Vec<String>>,
    /// Everything that ran, in order: (flow, node, event).
    events: Mutex<Vec<(String, &'static str, &'static str)>>,
}

impl Ledger {
    fn event(&self, flow: &str, node: &'static str, what: &'static str) {
        self.events
            .lock()
            .unwrap()
            .push((flow.to_owned(), node, what));
    }

    fn events_of(&self, flow: &str) -> Vec<(&'static str, &'static str)> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.0 == flow)
            .map(|e| (e.1, e.2))
            .collect()
    }
}

/// In a flow's external step until dropped (also when the step is cut short).
struct Inside<'a> {
    ledger: &'a Ledger,
    flow: String,
    node: &'static str,
}

impl<'a> Inside<'a> {
    fn enter(ledger: &'a Ledger, flow: &str, node: &'static str) -> Self {
        if let Some(other) = ledger.inside.lock().unwrap().insert(flow.to_owned(), node) {
            ledger
                .overlaps
                .lock()
                .unwrap()
                .push(format!("{node} entered {flow} while {other} was in it"));
        }
        ledger.event(flow, node, "enter");
        Inside {
            ledger,
            flow: flow.to_owned(),
            node,
        }
    }
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.ledger.inside.lock().unwrap().remove(&self.flow);
        self.ledger.event(&self.flow, self.node, "exit");
    }
}

struct Env {
    node: &'static str,
    ledger: Arc<Ledger>,
    /// When set, the external step waits for a permit after entering.
    gate: Option<Arc<tokio::sync::Semaphore>>,
}

/// A database step, an external step that takes `work_ms`, a database step.
struct Probe;

#[derive(serde::Serialize, serde::Deserialize)]
struct Params {
    name: String,
    work_ms: u64,
}

impl Flow for Probe {
    const KIND: &'static str = "probe";
    type Params = Params;
    type Env = Env;

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::db("begin", |cx, c| Box::pin(db_step(cx, c, "begin"))),
            Step::external("work", |cx| Box::pin(work(cx))),
            Step::db("finish", |cx, c| Box::pin(db_step(cx, c, "finish"))),
        ]
    }

    fn meta(p: &Params) -> FlowMeta {
        FlowMeta {
            resource_type: Some("probe"),
            resource_id: Some(p.name.clone()),
            project_id: None,
        }
    }
}

async fn db_step(cx: &Cx<Probe>, _: &mut Conn, what: &'static str) -> Result<Value, StepError> {
    cx.env.ledger.event(&cx.params.name, cx.env.node, what);
    Ok(Value::Null)
}

async fn work(cx: &Cx<Probe>) -> Result<Value, StepError> {
    let _inside = Inside::enter(&cx.env.ledger, &cx.params.name, cx.env.node);
    if let Some(gate) = &cx.env.gate {
        gate.acquire()
            .await
            .map_err(|e| StepError::msg(e.to_string()))?
            .forget();
    }
    tokio::time::sleep(Duration::from_millis(cx.params.work_ms)).await;
    cx.env.ledger.event(&cx.params.name, cx.env.node, "worked");
    Ok(Value::Null)
}

struct World {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    ledger: Arc<Ledger>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        World {
            _dir: dir,
            path,
            ledger: Default::default(),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
        }
    }

    /// An engine of `node` (a process: a store of its own on the shared
    /// database file), with `lease` and `renewal`.
    async fn engine(
        &self,
        node: &'static str,
        fp: Arc<Failpoints>,
        lease: Duration,
        renewal: Duration,
        gated: bool,
    ) -> Engine<Env> {
        let store = Store::open(&self.path, &StoreOptions::default())
            .await
            .unwrap();
        let env = Env {
            node,
            ledger: self.ledger.clone(),
            gate: gated.then(|| self.gate.clone()),
        };
        let opts = EngineOptions {
            node_id: node.to_owned(),
            lease,
            lease_renewal: renewal,
            // The tests claim by hand.
            claim_interval: Duration::from_secs(3600),
            ..EngineOptions::default()
        };
        let e = Engine::new(store, Arc::new(env), fp, opts);
        e.register::<Probe>();
        e
    }
}

fn probe(name: &str, work_ms: u64) -> Params {
    Params {
        name: name.to_owned(),
        work_ms,
    }
}

async fn flow(e: &Engine<Env>, id: FlowId) -> db::FlowRecord {
    let mut c = e.store().read().await.unwrap();
    db::flow_get(&mut c, id).await.unwrap().unwrap()
}

async fn steps(e: &Engine<Env>, id: FlowId) -> Vec<(String, StepState)> {
    let mut c = e.store().read().await.unwrap();
    db::flow_steps(&mut c, id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.name, s.state))
        .collect()
}

/// Wait until the flow `name` is in its external step.
async fn until_inside(w: &World, name: &str) {
    let t = Instant::now();
    while !w.ledger.inside.lock().unwrap().contains_key(name) {
        assert!(t.elapsed() < Duration::from_secs(10), "{name} never ran");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Another node takes the flow over, as one whose clock saw its lease
/// expire would.
async fn take_over(e: &Engine<Env>, id: FlowId, node: &str) -> i64 {
    let mut tx = e.store().begin().await.unwrap();
    let later = db::lease_until(Duration::from_secs(3600));
    let until = db::lease_until(Duration::from_secs(30));
    let claimed = db::flow_claim(&mut tx, id, node, &later, &until, ClaimRule::Expired)
        .await
        .unwrap()
        .expect("claimable by a node that sees the lease expired");
    tx.commit().await.unwrap();
    claimed.generation
}

#[tokio::test]
async fn two_engines_on_one_database_never_run_one_flow_at_once() {
    let w = World::new();
    // Long enough that a loaded machine (CI runs many tests at once on two
    // cores) does not starve a renewal past a lease: a lease that lapses while
    // its engine lives is the engine's loss, and this test asserts it never
    // happens here.
    let lease = Duration::from_millis(2000);
    let renewal = Duration::from_millis(100);
    let fp1 = Failpoints::new();
    // Engine 1 dies as the eighth flow finishes its work; by then the
    // longest-working flows have outlived their first lease, kept by renewal.
    fp1.arm("flow.probe.work.ran", Action::Crash, 8, Some(1));
    let e1 = w.engine("n1", fp1.clone(), lease, renewal, false).await;
    let e2 = w
        .engine("n2", Failpoints::new(), lease, renewal, false)
        .await;
    assert!(e2.resume_all().await.unwrap().is_empty());

    // The last two work past the point where engine 2 may claim them: only
    // engine 1 stopping their step (its leases not renewed) keeps the two
    // engines apart.
    let names: Vec<String> = (0..10).map(|i| format!("f{i}")).collect();
    let mut handles: Vec<FlowHandle> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let work_ms = if i < 8 { 200 + 300 * i as u64 } else { 5000 };
        handles.push(e1.start::<Probe>(probe(name, work_ms)).unwrap());
    }
    let ids: BTreeMap<FlowId, String> = handles
        .iter()
        .zip(&names)
        .map(|(h, n)| (h.id, n.clone()))
        .collect();

    // Engine 2 looks for flows to claim all along.
    let started = Instant::now();
    let mut claimed: Vec<FlowHandle> = Vec::new();
    loop {
        let got = e2.claim_expired().await.unwrap();
        assert!(
            got.is_empty() || fp1.is_dead(),
            "engine 2 claimed {:?} while engine 1 was alive",
            got.iter().map(|h| &ids[&h.id]).collect::<Vec<_>>()
        );
        claimed.extend(got);
        let mut c = e2.store().read().await.unwrap();
        let done = db::flow_list_by_state(&mut c, FlowState::Done)
            .await
            .unwrap()
            .len();
        drop(c);
        if done == names.len() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "only {done} flows done: did the crashed engine go on renewing its leases?"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    e1.wait_idle().await;
    assert!(fp1.is_dead());
    assert!(!claimed.is_empty(), "engine 1 died with flows under way");

    let overlaps = w.ledger.overlaps.lock().unwrap().clone();
    assert!(overlaps.is_empty(), "{overlaps:?}");
    // Every flow ended exactly once, on one engine or the other. A flow of
    // engine 1 may have committed its end just before another flow's crash
    // killed the engine: its record is done, but the dead engine never said
    // so on its handle (as a real crash would not), and engine 2 had nothing
    // to claim.
    let mut ends: BTreeMap<FlowId, usize> = BTreeMap::new();
    for h in handles.iter().chain(&claimed) {
        if matches!(h.wait().await, Outcome::Done) {
            *ends.entry(h.id).or_default() += 1;
        }
    }
    for h in &handles {
        if ends.contains_key(&h.id) || claimed.iter().any(|c| c.id == h.id) {
            continue;
        }
        let rec = flow(&e1, h.id).await;
        assert_eq!(
            (rec.state, rec.owner.as_deref(), rec.generation),
            (FlowState::Done, Some("n1"), 1),
            "{}: not done on any handle",
            ids[&h.id]
        );
        assert!(matches!(h.wait().await, Outcome::Interrupted));
        ends.insert(h.id, 1);
    }
    assert_eq!(ends.len(), names.len(), "{ends:?}");
    assert!(ends.values().all(|n| *n == 1), "{ends:?}");
    for h in &claimed {
        let name = &ids[&h.id];
        let rec = flow(&e2, h.id).await;
        assert_eq!(
            (rec.state, rec.owner.as_deref(), rec.generation),
            (FlowState::Done, Some("n2"), 2),
            "{name}"
        );
        // Nothing of engine 1 ran on the flow once engine 2 had started on it.
        let events = w.ledger.events_of(name);
        let first_n2 = events.iter().position(|e| e.0 == "n2").unwrap();
        assert!(
            events[first_n2..].iter().all(|e| e.0 == "n2"),
            "{name}: {events:?}"
        );
    }
    // The crashed engine stopped renewing: the steps it was still running
    // lost their lease and were cut short, long before their work was over.
    for name in ["f8", "f9"] {
        let events = w.ledger.events_of(name);
        assert!(
            events.contains(&("n1", "exit")) && !events.contains(&("n1", "worked")),
            "{name}: {events:?}"
        );
    }
    for h in &handles {
        if !claimed.iter().any(|c| c.id == h.id) {
            let rec = flow(&e1, h.id).await;
            assert_eq!((rec.owner.as_deref(), rec.generation), (Some("n1"), 1));
        }
    }
}

#[tokio::test]
async fn a_stale_engine_cannot_write_after_its_flow_was_taken_over() {
    let w = World::new();
    let fp1 = Failpoints::new();
    fp1.arm("flow.probe.lease_lost", Action::Sleep(0), 1, None);
    // No renewal happens during the test: only the write can notice.
    let (lease, renewal) = (Duration::from_secs(30), Duration::from_secs(10));
    let e1 = w.engine("n1", fp1.clone(), lease, renewal, true).await;
    let h = e1.start::<Probe>(probe("t", 0)).unwrap();
    until_inside(&w, "t").await;
    assert_eq!(take_over(&e1, h.id, "n2").await, 2);
    w.gate.add_permits(1);
    assert!(matches!(h.wait().await, Outcome::Interrupted));
    e1.wait_idle().await;
    assert_eq!(fp1.armed_hits(), [("flow.probe.lease_lost".to_string(), 1)]);
    // The stale engine's work is not recorded done, and its last step never ran.
    assert_eq!(
        steps(&e1, h.id).await,
        [
            ("begin".to_string(), StepState::Done),
            ("work".to_string(), StepState::Started)
        ]
    );
    let rec = flow(&e1, h.id).await;
    assert_eq!(
        (rec.state, rec.owner.as_deref(), rec.generation),
        (FlowState::Running, Some("n2"), 2)
    );
    assert_eq!(
        w.ledger.events_of("t"),
        [
            ("n1", "begin"),
            ("n1", "enter"),
            ("n1", "worked"),
            ("n1", "exit")
        ]
    );

    // Node n2 (re)starting takes its flow and finishes it.
    let e2 = w
        .engine("n2", Failpoints::new(), lease, renewal, false)
        .await;
    let resumed = e2.resume_all().await.unwrap();
    assert_eq!(resumed.len(), 1);
    assert!(matches!(resumed[0].wait().await, Outcome::Done));
    let rec = flow(&e2, h.id).await;
    assert_eq!((rec.state, rec.generation), (FlowState::Done, 3));
    assert_eq!(
        w.ledger.events_of("t")[4..],
        [
            ("n2", "enter"),
            ("n2", "worked"),
            ("n2", "exit"),
            ("n2", "finish")
        ]
    );
}

#[tokio::test]
async fn a_renewal_that_finds_the_flow_taken_stops_the_running_step() {
    let w = World::new();
    let e1 = w
        .engine(
            "n1",
            Failpoints::new(),
            Duration::from_secs(30),
            Duration::from_millis(50),
            true,
        )
        .await;
    let h = e1.start::<Probe>(probe("t", 0)).unwrap();
    until_inside(&w, "t").await;
    take_over(&e1, h.id, "n2").await;
    // The gate stays shut: only the lease can end the step.
    let outcome = tokio::time::timeout(Duration::from_secs(10), h.wait())
        .await
        .expect("the step was stopped");
    assert!(matches!(outcome, Outcome::Interrupted), "{outcome:?}");
    assert!(w.ledger.inside.lock().unwrap().is_empty());
    assert_eq!(
        w.ledger.events_of("t"),
        [("n1", "begin"), ("n1", "enter"), ("n1", "exit")]
    );
    assert_eq!(steps(&e1, h.id).await[1].1, StepState::Started);
}

#[tokio::test]
async fn at_start_up_a_node_takes_its_own_and_expired_flows_but_not_live_ones() {
    let w = World::new();
    let long = Duration::from_secs(30);
    let renewal = Duration::from_millis(50);
    // Node n1 is alive, in the middle of a flow.
    let e1 = w.engine("n1", Failpoints::new(), long, renewal, true).await;
    let live = e1.start::<Probe>(probe("live", 0)).unwrap();
    until_inside(&w, "live").await;
    // Node n2's previous incarnation died in a flow (its lease is still live).
    let crash = || {
        let fp = Failpoints::new();
        fp.arm("flow.probe.work.started", Action::Crash, 1, Some(1));
        fp
    };
    let old_n2 = w.engine("n2", crash(), long, renewal, false).await;
    let mine = old_n2.start::<Probe>(probe("mine", 0)).unwrap();
    assert!(matches!(mine.wait().await, Outcome::Interrupted));
    old_n2.wait_idle().await;
    // Node n3 died too, with a short lease that has run out.
    let short = Duration::from_millis(100);
    let n3 = w.engine("n3", crash(), short, renewal, false).await;
    let theirs = n3.start::<Probe>(probe("theirs", 0)).unwrap();
    assert!(matches!(theirs.wait().await, Outcome::Interrupted));
    n3.wait_idle().await;
    tokio::time::sleep(short * 2).await;

    let n2 = w
        .engine("n2", Failpoints::new(), long, renewal, false)
        .await;
    let resumed = n2.resume_all().await.unwrap();
    let mut got: Vec<FlowId> = resumed.iter().map(|h| h.id).collect();
    let mut want = vec![mine.id, theirs.id];
    got.sort();
    want.sort();
    assert_eq!(got, want, "its own flow and the expired one, not n1's");
    for h in &resumed {
        assert!(matches!(h.wait().await, Outcome::Done));
        let rec = flow(&n2, h.id).await;
        assert_eq!((rec.owner.as_deref(), rec.generation), (Some("n2"), 2));
    }
    let rec = flow(&e1, live.id).await;
    assert_eq!(
        (rec.state, rec.owner.as_deref(), rec.generation),
        (FlowState::Running, Some("n1"), 1)
    );
    w.gate.add_permits(1);
    assert!(matches!(live.wait().await, Outcome::Done));
}

#[tokio::test]
async fn a_flow_paused_at_shutdown_gives_up_its_lease_for_another_node() {
    let w = World::new();
    let long = Duration::from_secs(30);
    let renewal = Duration::from_secs(10);
    let e1 = w.engine("n1", Failpoints::new(), long, renewal, true).await;
    let h = e1.start::<Probe>(probe("t", 0)).unwrap();
    until_inside(&w, "t").await;
    let stop = e1.shutdown(Duration::from_secs(10));
    let open = async {
        w.gate.add_permits(1);
    };
    tokio::join!(stop, open);
    assert!(matches!(h.wait().await, Outcome::Interrupted));
    let rec = flow(&e1, h.id).await;
    assert_eq!(
        (rec.state, rec.owner.as_deref(), rec.lease_expires_at),
        (FlowState::Running, Some("n1"), None)
    );
    // Another node need not wait 30 s for the lease to run out.
    let e2 = w
        .engine("n2", Failpoints::new(), long, renewal, false)
        .await;
    let claimed = e2.claim_expired().await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(matches!(claimed[0].wait().await, Outcome::Done));
    assert_eq!(flow(&e2, h.id).await.generation, 2);
}
