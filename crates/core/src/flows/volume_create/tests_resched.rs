//! Rescheduling and placement records: two (or four) file backends, the
//! failpoint `volume_create.backend_create:<backend>` making one's creates
//! fail. The generic flow tests (every step failing, a crash at every
//! durable write, while running and while unwinding) run with backend `a`
//! failing: the volume ends on `b` with two attempts recorded, or is undone
//! with nothing leaked and no attempt left `placed`.

use scoria_failpoints::Failpoints;
use scoria_flows::testkit::{BoxFut, Expect};
use scoria_flows::{Engine, EngineOptions, Outcome};
use scoria_model::VolumeId;
use scoria_model::volume::VolumeStatus;
use scoria_store::placements::{self, Placement};

use super::{DEFAULT_MAX_ATTEMPTS, Params, VolumeCreate, backend_create_failpoint};
use crate::flows::testing::{self, Scenario, World, create_params, text};
use crate::{Config, DriverConfig, Env};

pub(super) fn backends(c: &mut Config, names: &[&str]) {
    let template = c.backends[0].clone();
    c.backends = names
        .iter()
        .map(|n| {
            let mut b = template.clone();
            b.name = (*n).to_owned();
            b.driver = DriverConfig::File {
                path: c.data_dir.join(format!("volumes-{n}")),
                fsync: false,
            };
            b
        })
        .collect();
}

pub(super) fn two(c: &mut Config) {
    backends(c, &["a", "b"]);
}

fn four(c: &mut Config) {
    backends(c, &["a", "b", "c", "d"]);
}

pub(super) fn failing(b: &str) -> String {
    format!("{}=error", backend_create_failpoint(b))
}

pub(super) async fn records(e: &Engine<Env>, id: VolumeId) -> Result<Vec<Placement>, String> {
    let mut c = e.store().read().await.map_err(text)?;
    placements::placement_list(&mut c, id).await.map_err(text)
}

/// A blank 1 GiB volume while backend `a` fails every create.
struct Rescheduled {
    volume: VolumeId,
}

impl Scenario for Rescheduled {
    type F = VolumeCreate;
    const NAME: &'static str = "volume_create (rescheduled)";

    fn prepare<'a>(&'a self, _: &'a World) -> BoxFut<'a, ()> {
        Box::pin(async {})
    }

    fn params(&self) -> Params {
        create_params(self.volume, 1)
    }

    fn check<'a>(
        &'a self,
        w: &'a World,
        e: &'a Engine<Env>,
        expect: Expect,
    ) -> BoxFut<'a, Result<(), String>> {
        Box::pin(async move {
            w.check_told(e, self.volume).await?;
            let v = w.volume(e, self.volume).await?;
            let rows = records(e, self.volume).await?;
            let outcomes: Vec<(Option<&str>, &str)> = rows
                .iter()
                .map(|r| (r.backend.as_deref(), r.outcome.as_str()))
                .collect();
            match v.as_ref().map(|v| v.status) {
                Some(VolumeStatus::Available) if expect != Expect::Failed => {
                    let v = v.as_ref().ok_or("no volume")?;
                    if v.backend.as_deref() != Some("b") {
                        return Err(format!("the volume is on {:?}, not b", v.backend));
                    }
                    let [first, second] = rows.as_slice() else {
                        return Err(format!("expected 2 attempts, got {outcomes:?}"));
                    };
                    if first.backend.as_deref() != Some("a")
                        || !first.outcome.starts_with("failed: ")
                        || second.backend.as_deref() != Some("b")
                        || second.outcome != placements::PLACED
                        || second.decision["chosen"] != "b"
                    {
                        return Err(format!("unexpected attempts {outcomes:?}"));
                    }
                    // The second decision excluded the backend tried.
                    let excluded = second.decision["candidates"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["backend"] == "a" && c["filter"] == "AlreadyTried");
                    if !excluded {
                        return Err(format!("a is not excluded: {}", second.decision));
                    }
                }
                None | Some(VolumeStatus::Error) if expect != Expect::Done => {
                    if rows.iter().any(|r| r.outcome == placements::PLACED) {
                        return Err(format!(
                            "a failed create left an attempt placed: {outcomes:?}"
                        ));
                    }
                }
                other => return Err(format!("expected {expect:?}, the volume is {other:?}")),
            }
            Ok(())
        })
    }
}

fn two_with_a_failing() -> World {
    World::with(two, &[&failing("a")])
}

#[tokio::test]
async fn a_create_rescheduled_off_a_failing_backend_passes_the_generic_flow_tests() {
    let report = testing::generic_in(two_with_a_failing, || Rescheduled {
        volume: VolumeId::new(),
    })
    .await;
    assert!(report.crash_points > 10, "{report:?}");
}

pub(super) async fn run(w: &World, params: Params) -> (Engine<Env>, Outcome) {
    let e = w.open(Failpoints::new(), EngineOptions::default()).await;
    let h = e.start::<VolumeCreate>(params).expect("start");
    let outcome = h.wait().await;
    e.wait_idle().await;
    (e, outcome)
}

#[tokio::test]
async fn a_create_on_a_healthy_backend_records_one_attempt_with_its_decision() {
    let w = World::with(two, &[]);
    let id = VolumeId::new();
    let (e, outcome) = run(&w, create_params(id, 1)).await;
    assert!(matches!(outcome, Outcome::Done), "{outcome:?}");
    let rows = records(&e, id).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].attempt, 1);
    assert_eq!(rows[0].outcome, "placed");
    let d = &rows[0].decision;
    assert_eq!(d["chosen"], "a", "{d}");
    // Both weighed (equal space: the tie goes to the first name).
    let weighed = d["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["outcome"] == "weighed")
        .count();
    assert_eq!(weighed, 2, "{d}");
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .starts_with("Backend a was chosen"),
        "{d}"
    );
}

#[tokio::test]
async fn every_backend_failing_ends_in_error_after_max_attempts_listing_them() {
    let specs: Vec<String> = ["a", "b", "c", "d"].iter().map(|b| failing(b)).collect();
    let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
    let w = World::with(four, &specs);
    let id = VolumeId::new();
    let (e, outcome) = run(&w, create_params(id, 1)).await;
    let Outcome::Failed(err) = outcome else {
        panic!("{outcome:?}")
    };
    let msg = err.to_string();
    let v = w.volume(&e, id).await.unwrap().unwrap();
    assert_eq!(v.status, VolumeStatus::Error);
    let rows = records(&e, id).await.unwrap();
    assert_eq!(rows.len(), DEFAULT_MAX_ATTEMPTS as usize);
    let tried: Vec<_> = rows.iter().map(|r| r.backend.clone().unwrap()).collect();
    assert_eq!(tried, ["a", "b", "c"], "d is never tried");
    assert!(rows.iter().all(|r| r.outcome.starts_with("failed: ")));
    for b in [
        "attempt 1 on a",
        "attempt 2 on b",
        "attempt 3 on c",
        "the most allowed",
    ] {
        assert!(msg.contains(b), "{msg}");
    }
    let told = w.user_messages(&e, id).await.unwrap();
    assert_eq!(told.len(), 1);
    assert!(told[0].contains("Tried 3 time(s): a (failed: "), "{told:?}");
    w.check_common(&e).await.unwrap();
}

#[tokio::test]
async fn when_no_other_backend_fits_the_last_attempt_says_so() {
    let specs = [failing("a"), failing("b")];
    let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
    let w = World::with(two, &specs);
    let id = VolumeId::new();
    let (e, outcome) = run(&w, create_params(id, 1)).await;
    assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
    let rows = records(&e, id).await.unwrap();
    let got: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.backend.clone(),
                r.outcome.starts_with("failed: ") || r.outcome == "no_valid_backend",
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (Some("a".into()), true),
            (Some("b".into()), true),
            (None, true)
        ]
    );
    assert_eq!(rows[2].outcome, "no_valid_backend");
    assert_eq!(rows[2].decision["chosen"], serde_json::Value::Null);
    w.check_common(&e).await.unwrap();
}

#[tokio::test]
async fn no_valid_backend_at_schedule_is_recorded_and_told() {
    let w = World::with(two, &[]);
    let id = VolumeId::new();
    let mut params = create_params(id, 1);
    params.availability_zone = Some("mars".into());
    let (e, outcome) = run(&w, params).await;
    assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
    let v = w.volume(&e, id).await.unwrap().unwrap();
    assert_eq!(v.status, VolumeStatus::Error);
    let rows = records(&e, id).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].outcome, "no_valid_backend");
    assert_eq!(rows[0].backend, None);
    let reasons = rows[0].decision["candidates"].to_string();
    assert!(reasons.contains("not mars"), "{reasons}");
    let told = w.user_messages(&e, id).await.unwrap();
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(
        told[0],
        "schedule allocate volume:Could not find any available weighted backend. No backend in zone mars fits the request."
    );
    w.check_common(&e).await.unwrap();
}

#[tokio::test]
async fn a_clone_pinned_to_a_failing_backend_is_not_rescheduled() {
    let w = World::with(two, &[]);
    let source = VolumeId::new();
    let e = w.plain().await;
    w.create_volume(&e, source, 1).await;
    let on = w
        .volume(&e, source)
        .await
        .unwrap()
        .unwrap()
        .backend
        .unwrap();
    drop(e);
    // Fail creates on the source's backend from now on.
    let fp = Failpoints::new();
    fp.arm_spec(&failing(&on)).unwrap();
    let e = w.open(fp, EngineOptions::default()).await;
    let id = VolumeId::new();
    let mut params = create_params(id, 1);
    params.source_volid = Some(source);
    let outcome = e.start::<VolumeCreate>(params).expect("start").wait().await;
    e.wait_idle().await;
    assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
    let rows = records(&e, id).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].backend.as_deref(), Some(on.as_str()));
    assert!(
        rows[0]
            .outcome
            .contains("not rescheduled: the volume must be on its source's backend"),
        "{}",
        rows[0].outcome
    );
    assert!(
        rows[0].decision["pinned"]["why"]
            .as_str()
            .unwrap()
            .contains("cannot be rescheduled")
    );
    w.check_common(&e).await.unwrap();
}
