//! The generic flow tests, which every flow passes.
//!
//! Given a [`TestWorld`] (a fresh store and backend, prepared so the flow under
//! test can run), [`run_all`] drives the flow through:
//!
//! 1. a clean run with every step run twice;
//! 2. for each step in turn, an error injected before its action (`.run`) and
//!    after it (`.ran`), with every undo run twice: the flow must fail *at that
//!    step* (so a flow that fails earlier for another reason does not pass);
//! 3. a crash after every durable write: the n-th failpoint hit (any name)
//!    kills the engine, a fresh engine resumes, for n = 1, 2, … until a run
//!    ends without reaching the n-th hit;
//! 4. the same crash sweep while unwinding from a failure at each step (a flow
//!    that ends failed must have failed at that step).
//!
//! After each scenario the flows must have settled (nothing running or
//! unwinding) and the world's own invariants must hold ([`TestWorld::check`]):
//! nothing leaked. Needs failpoints compiled in (`--features failpoints`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use scoria_failpoints::{Action, Failpoints};
use scoria_model::FlowId;
use scoria_model::flow::FlowState;

use crate::{Engine, EngineOptions, FlowHandle, Outcome};

pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a scenario expects of the flow once everything settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The flow completed.
    Done,
    /// The flow failed and was undone.
    Failed,
    /// Either (after a crash the flow may have resumed to the end, or unwound).
    Either,
}

/// A world in which the flow under test can run, made fresh per scenario.
pub trait TestWorld<E>: Send + Sync {
    /// An engine over this world's persistent state (the same store and backend
    /// every time), with the given failpoints. Registers the flows it needs.
    fn engine(&self, fp: Arc<Failpoints>, options: EngineOptions) -> BoxFut<'_, Engine<E>>;
    /// Start the flow under test.
    fn start<'a>(&'a self, engine: &'a Engine<E>) -> BoxFut<'a, Result<FlowHandle, String>>;
    /// Check the world's invariants once flows have settled.
    fn check<'a>(&'a self, engine: &'a Engine<E>, expect: Expect)
    -> BoxFut<'a, Result<(), String>>;
}

/// Figures of a generic test run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub scenarios: usize,
    pub crash_points: usize,
}

/// Run every generic scenario for the flow `kind` with steps `steps`.
/// `new_world` makes a fresh, prepared world. Panics (with the scenario's name)
/// on the first violation.
pub async fn run_all<E, W, Fut>(kind: &str, steps: &[&str], new_world: impl Fn() -> Fut) -> Report
where
    E: Send + Sync + 'static,
    W: TestWorld<E>,
    Fut: Future<Output = W>,
{
    assert!(
        Failpoints::compiled_in(),
        "the generic flow tests need --features failpoints"
    );
    let mut report = Report::default();
    let quick = EngineOptions {
        undo_backoff: Duration::from_millis(1),
        ..EngineOptions::default()
    };

    // 1. Clean run, every step twice.
    {
        let w = new_world().await;
        let opts = EngineOptions {
            rerun_steps: true,
            ..quick.clone()
        };
        let engine = w.engine(Failpoints::new(), opts).await;
        let Run { outcome, .. } = run_once(&w, &engine).await;
        assert!(
            matches!(outcome, Outcome::Done),
            "{kind}: clean run with steps twice: {outcome:?}"
        );
        settle_and_check(&w, &engine, Expect::Done, &format!("{kind}: clean run")).await;
        report.scenarios += 1;
    }

    // 2. An error before and after each step's action; undos twice.
    for step in steps {
        for at in ["run", "ran"] {
            let name = format!("{kind}: error at flow.{kind}.{step}.{at}");
            let w = new_world().await;
            let fp = Failpoints::new();
            fp.arm(
                &format!("flow.{kind}.{step}.{at}"),
                Action::Error,
                1,
                Some(1),
            );
            let opts = EngineOptions {
                rerun_undos: true,
                ..quick.clone()
            };
            let engine = w.engine(fp, opts).await;
            let run = run_once(&w, &engine).await;
            assert!(
                matches!(run.outcome, Outcome::Failed(_)),
                "{name}: {:?}",
                run.outcome
            );
            assert_eq!(
                run.failed_step.as_deref(),
                Some(*step),
                "{name}: the flow failed at another step ({:?})",
                run.outcome
            );
            settle_and_check(&w, &engine, Expect::Failed, &name).await;
            assert_failed_at(&engine, run.id, step, &name).await;
            report.scenarios += 1;
        }
    }

    // 3. A crash after every durable write, then recovery by a fresh engine.
    report.crash_points += crash_sweep(kind, None, &new_world, &quick, &mut report.scenarios).await;

    // 4. The same while unwinding from a failure at each step.
    for step in steps {
        report.crash_points +=
            crash_sweep(kind, Some(step), &new_world, &quick, &mut report.scenarios).await;
    }
    report
}

async fn crash_sweep<E, W, Fut>(
    kind: &str,
    failing: Option<&str>,
    new_world: &impl Fn() -> Fut,
    quick: &EngineOptions,
    scenarios: &mut usize,
) -> usize
where
    E: Send + Sync + 'static,
    W: TestWorld<E>,
    Fut: Future<Output = W>,
{
    let mut points = 0;
    for n in 1.. {
        let name = format!("{kind}: crash at hit {n}, failing step {failing:?}");
        let w = new_world().await;
        let fp = Failpoints::new();
        if let Some(step) = failing {
            fp.arm(
                &format!("flow.{kind}.{step}.run"),
                Action::Error,
                1,
                Some(1),
            );
        }
        fp.arm("*", Action::Crash, n, Some(1));
        let engine = w.engine(fp.clone(), quick.clone()).await;
        let Run { outcome, id, .. } = run_once(&w, &engine).await;
        engine.wait_idle().await;
        if !fp.is_dead() {
            // The run ended before the n-th hit: every boundary has been crashed at.
            let expect = if failing.is_some() {
                Expect::Failed
            } else {
                Expect::Done
            };
            let name = format!("{name} (no crash)");
            settle_and_check(&w, &engine, expect, &name).await;
            if let Some(step) = failing {
                assert_failed_at(&engine, id, step, &name).await;
            }
            *scenarios += 1;
            break;
        }
        assert!(
            matches!(outcome, Outcome::Interrupted | Outcome::Failed(_)),
            "{name}: a crashed engine reported {outcome:?}"
        );
        // Restart: a fresh engine over the same world resumes what was left.
        let engine = w.engine(Failpoints::new(), quick.clone()).await;
        engine
            .resume_all()
            .await
            .unwrap_or_else(|e| panic!("{name}: resume: {e}"));
        settle_and_check(&w, &engine, Expect::Either, &name).await;
        if let Some(step) = failing {
            assert_failed_at(&engine, id, step, &name).await;
        }
        points += 1;
        *scenarios += 1;
        assert!(n < 10_000, "{name}: the crash sweep does not end");
    }
    points
}

/// What one run of the flow under test came to, as its engine saw it.
struct Run {
    outcome: Outcome,
    /// The step the flow failed at, if it failed at one.
    failed_step: Option<String>,
    /// The flow (`None` when it could not even be started).
    id: Option<FlowId>,
}

async fn run_once<E: Send + Sync + 'static, W: TestWorld<E>>(w: &W, engine: &Engine<E>) -> Run {
    match w.start(engine).await {
        Ok(handle) => Run {
            outcome: handle.wait().await,
            failed_step: handle.failed_step(),
            id: Some(handle.id),
        },
        Err(e) => Run {
            outcome: Outcome::Failed(crate::StepError::msg(e)),
            failed_step: None,
            id: None,
        },
    }
}

/// A flow of the test that is recorded failed failed at `step`. (A flow whose
/// first step failed before anything was stored has no record; one that a
/// crash stopped before the failure may have been resumed to the end.)
async fn assert_failed_at<E: Send + Sync + 'static>(
    engine: &Engine<E>,
    id: Option<FlowId>,
    step: &str,
    name: &str,
) {
    let Some(id) = id else { return };
    let mut conn = engine.store().read().await.expect("read connection");
    let rec = scoria_store::flows::flow_get(&mut conn, id)
        .await
        .expect("read the flow");
    if let Some(rec) = rec.filter(|r| r.state == FlowState::Failed) {
        assert_eq!(
            rec.failed_step.as_deref(),
            Some(step),
            "{name}: the flow is recorded failed at another step ({:?})",
            rec.last_error
        );
    }
}

async fn settle_and_check<E: Send + Sync + 'static, W: TestWorld<E>>(
    w: &W,
    engine: &Engine<E>,
    expect: Expect,
    name: &str,
) {
    engine.wait_idle().await;
    let mut conn = engine.store().read().await.expect("read connection");
    let active = scoria_store::flows::flow_list_active(&mut conn)
        .await
        .expect("list flows");
    assert!(active.is_empty(), "{name}: flows left active: {active:?}");
    let stuck = scoria_store::flows::flow_list_by_state(&mut conn, FlowState::Stuck)
        .await
        .expect("list flows");
    assert!(stuck.is_empty(), "{name}: flows stuck: {stuck:?}");
    drop(conn);
    if let Err(e) = w.check(engine, expect).await {
        panic!("{name}: invariant violated: {e}");
    }
}
