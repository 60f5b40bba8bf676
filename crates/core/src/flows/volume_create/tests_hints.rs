//! The `same_host`/`different_host` hints (`rules::affinity`) on two file
//! backends: a hinted volume goes where the hint says even where the
//! volume-number weigher would spread it elsewhere; contradictory or
//! unsatisfiable hints end in `error` with the filters' reasons recorded; a
//! hint pins rescheduling too.

use scoria_model::VolumeId;
use scoria_model::volume::VolumeStatus;
use scoria_store::placements;

use super::tests_resched::{failing, records, run, two};
use crate::flows::testing::{World, create_params};
use crate::rules::affinity::Hints;

fn hinted(id: VolumeId, same: &[VolumeId], different: &[VolumeId]) -> super::Params {
    let mut p = create_params(id, 1);
    p.hints = Hints {
        same_host: (!same.is_empty()).then(|| same.to_vec()),
        different_host: (!different.is_empty()).then(|| different.to_vec()),
    };
    p
}

async fn backend_of(w: &World, e: &scoria_flows::Engine<crate::Env>, id: VolumeId) -> String {
    let v = w.volume(e, id).await.unwrap().unwrap();
    assert_eq!(v.status, VolumeStatus::Available, "{id}");
    v.backend.unwrap()
}

#[tokio::test]
async fn hints_put_volumes_with_or_away_from_others() {
    let w = World::with(two, &[]);
    let e = w.plain().await;
    let first = VolumeId::new();
    w.create_volume(&e, first, 1).await;
    let on = backend_of(&w, &e, first).await;
    let other = if on == "a" { "b" } else { "a" };
    // Unhinted, the volume-number weigher spreads: the next goes elsewhere.
    let spread = VolumeId::new();
    w.create_volume(&e, spread, 1).await;
    assert_eq!(backend_of(&w, &e, spread).await, other);
    drop(e);

    // same_host wins over the spreading (both backends now hold one volume
    // each; with a third volume on `on`, spreading would pick `other`).
    let same = VolumeId::new();
    let (e, _) = run(&w, hinted(same, &[first], &[])).await;
    assert_eq!(backend_of(&w, &e, same).await, on);
    drop(e);
    let again = VolumeId::new();
    let (e, _) = run(&w, hinted(again, &[first, same], &[])).await;
    assert_eq!(backend_of(&w, &e, again).await, on);
    let rows = records(&e, again).await.unwrap();
    let removed = rows[0].decision["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["backend"] == other)
        .cloned()
        .unwrap();
    assert_eq!(removed["filter"], "SameBackendFilter", "{removed}");
    drop(e);

    // different_host naming volumes on both backends leaves none.
    let nowhere = VolumeId::new();
    let (e, outcome) = run(&w, hinted(nowhere, &[], &[first, spread])).await;
    assert!(
        matches!(outcome, scoria_flows::Outcome::Failed(_)),
        "{outcome:?}"
    );
    let v = w.volume(&e, nowhere).await.unwrap().unwrap();
    assert_eq!(v.status, VolumeStatus::Error);
    let rows = records(&e, nowhere).await.unwrap();
    assert_eq!(rows[0].outcome, "no_valid_backend");
    let why = rows[0].decision["candidates"].to_string();
    assert!(
        why.contains("holds a volume named in different_host"),
        "{why}"
    );
    let told = w.user_messages(&e, nowhere).await.unwrap();
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0].contains("No backend fits the request"), "{told:?}");
    drop(e);

    // different_host alone: the other backend.
    let away = VolumeId::new();
    let (e, _) = run(&w, hinted(away, &[], &[first])).await;
    assert_eq!(backend_of(&w, &e, away).await, other);
    drop(e);

    // same_host naming a volume that does not exist matches no backend;
    // different_host naming one restricts nothing.
    let ghost = VolumeId::new();
    let lost = VolumeId::new();
    let (e, _) = run(&w, hinted(lost, &[ghost], &[])).await;
    let v = w.volume(&e, lost).await.unwrap().unwrap();
    assert_eq!(v.status, VolumeStatus::Error);
    drop(e);
    let free = VolumeId::new();
    let (e, _) = run(&w, hinted(free, &[], &[ghost])).await;
    backend_of(&w, &e, free).await;
    w.check_common(&e).await.unwrap();
}

#[tokio::test]
async fn a_same_host_volume_is_not_rescheduled_off_its_hinted_backend() {
    let w = World::with(two, &[]);
    let e = w.plain().await;
    let first = VolumeId::new();
    w.create_volume(&e, first, 1).await;
    let on = backend_of(&w, &e, first).await;
    drop(e);
    let fp = scoria_failpoints::Failpoints::new();
    fp.arm_spec(&failing(&on)).unwrap();
    let e = w.open(fp, scoria_flows::EngineOptions::default()).await;
    let id = VolumeId::new();
    let outcome = e
        .start::<super::VolumeCreate>(hinted(id, &[first], &[]))
        .expect("start")
        .wait()
        .await;
    e.wait_idle().await;
    assert!(
        matches!(outcome, scoria_flows::Outcome::Failed(_)),
        "{outcome:?}"
    );
    let rows = records(&e, id).await.unwrap();
    let got: Vec<_> = rows
        .iter()
        .map(|r| (r.backend.clone(), r.outcome.clone()))
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0.as_deref(), Some(on.as_str()));
    assert!(got[0].1.starts_with("failed: "), "{got:?}");
    assert_eq!(got[1], (None, "no_valid_backend".to_owned()));
    assert!(rows.iter().all(|r| r.outcome != placements::PLACED));
    w.check_common(&e).await.unwrap();
}
