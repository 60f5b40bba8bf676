//! Weighers: raw values, Cinder's normalization, multipliers of both signs,
//! sums over several weighers.

use super::{cand, sized};
use crate::scheduler::weighers::{normalize, weigh};
use crate::scheduler::{Candidate, Outcome, Request, SchedulerConfig, Weigher, decide, place};

#[test]
fn normalization_is_min_max_over_the_candidates() {
    let table: &[(&[f64], &[f64])] = &[
        (&[], &[]),
        (&[7.0], &[0.0]),
        (&[5.0, 5.0, 5.0], &[0.0, 0.0, 0.0]),
        (&[10.0, 20.0, 30.0], &[0.0, 0.5, 1.0]),
        (&[30.0, 10.0], &[1.0, 0.0]),
        (&[-10.0, 0.0, 10.0], &[0.0, 0.5, 1.0]),
    ];
    for &(raw, want) in table {
        assert_eq!(normalize(raw), want, "{raw:?}");
    }
}

#[test]
fn raw_values() {
    let mut c = cand("a", "nova", 100.0, 80.0, 50.0);
    c.max_over_subscription_ratio = 2.0;
    c.reserved_percentage = 10;
    c.allocated_gib = 42.0;
    c.volume_count = 7;
    let thin = Request::default();
    let thick = Request {
        extra_specs: [("provisioning:type".to_string(), "thick".to_string())].into(),
        ..Default::default()
    };
    // Thin: 100 × 2 − 50 − 10; thick: 80 − 10.
    assert_eq!(Weigher::CapacityWeigher.raw(&thin, &c), 140.0);
    assert_eq!(Weigher::CapacityWeigher.raw(&thick, &c), 70.0);
    assert_eq!(Weigher::AllocatedCapacityWeigher.raw(&thin, &c), 42.0);
    assert_eq!(Weigher::VolumeNumberWeigher.raw(&thin, &c), 7.0);
    c.thin = false;
    assert_eq!(Weigher::CapacityWeigher.raw(&thin, &c), 70.0);
    for w in Weigher::ALL {
        assert_eq!(w.name().parse::<Weigher>(), Ok(w));
    }
    assert!("GoodnessWeigher".parse::<Weigher>().is_err());
}

/// Three backends: `roomy` (most free, many volumes, much allocated), `mid`
/// and `full`.
fn three() -> Vec<Candidate> {
    let mut roomy = cand("roomy", "nova", 100.0, 100.0, 0.0);
    roomy.free_gib = 100.0;
    roomy.allocated_gib = 90.0;
    roomy.volume_count = 10;
    let mut mid = cand("mid", "nova", 100.0, 100.0, 40.0);
    mid.allocated_gib = 0.0;
    mid.volume_count = 0;
    let mut full = cand("full", "nova", 100.0, 100.0, 100.0);
    full.allocated_gib = 50.0;
    full.volume_count = 5;
    vec![roomy, mid, full]
}

#[test]
fn each_weigher_with_either_sign() {
    let only = |w: Weigher, m: f64| {
        let mut cfg = SchedulerConfig {
            weighers: vec![w],
            ..SchedulerConfig::default()
        };
        match w {
            Weigher::CapacityWeigher => cfg.capacity_weight_multiplier = m,
            Weigher::AllocatedCapacityWeigher => cfg.allocated_capacity_weight_multiplier = m,
            Weigher::VolumeNumberWeigher => cfg.volume_number_multiplier = m,
        }
        cfg
    };
    // Size 0: every backend passes the capacity filter.
    let req = sized(0, None);
    let table = [
        (Weigher::CapacityWeigher, 1.0, "roomy"),
        (Weigher::CapacityWeigher, -1.0, "full"),
        (Weigher::AllocatedCapacityWeigher, -1.0, "mid"),
        (Weigher::AllocatedCapacityWeigher, 1.0, "roomy"),
        (Weigher::VolumeNumberWeigher, -1.0, "mid"),
        (Weigher::VolumeNumberWeigher, 1.0, "roomy"),
        // A zero multiplier makes every weight 0: the first by name.
        (Weigher::CapacityWeigher, 0.0, "full"),
    ];
    for (w, m, want) in table {
        assert_eq!(
            place(&only(w, m), &req, &three()).unwrap(),
            want,
            "{} × {m}",
            w.name()
        );
    }
    // The defaults: allocated and volume number stack on the emptiest.
    let d = SchedulerConfig::default();
    assert_eq!(
        (
            d.capacity_weight_multiplier,
            d.allocated_capacity_weight_multiplier,
            d.volume_number_multiplier
        ),
        (1.0, -1.0, -1.0)
    );
}

#[test]
fn weights_are_summed_after_normalization() {
    let cfg = SchedulerConfig {
        weighers: vec![Weigher::CapacityWeigher, Weigher::VolumeNumberWeigher],
        ..SchedulerConfig::default()
    };
    let req = sized(0, None);
    let cands = three();
    let refs: Vec<&Candidate> = cands.iter().collect();
    let got = weigh(&cfg, &req, &refs);
    // Capacity raw 100, 60, 0 → 1, 0.6, 0; volumes 10, 0, 5 → 1, 0, 0.5 (× −1).
    let totals: Vec<f64> = got.iter().map(|(_, t)| *t).collect();
    let want = [0.0, 0.6, -0.5];
    for (t, w) in totals.iter().zip(want) {
        assert!((t - w).abs() < 1e-12, "{totals:?}");
    }
    assert_eq!(got[2].0[1].raw, 5.0);
    assert_eq!(got[2].0[1].normalized, 0.5);
    assert_eq!(got[2].0[1].weighted, -0.5);
    let d = decide(&cfg, &req, &cands);
    assert_eq!(d.chosen.as_deref(), Some("mid"));
    let Outcome::Weighed { weights, .. } = &d.candidates[0].outcome else {
        panic!()
    };
    let names: Vec<&str> = weights.iter().map(|w| w.weigher.as_str()).collect();
    assert_eq!(names, ["CapacityWeigher", "VolumeNumberWeigher"]);
    // Normalization is over the candidates left after filtering: with the
    // roomy one filtered out, mid's capacity is the maximum.
    let az = crate::scheduler::Request {
        availability_zone: Some("nova".into()),
        ..req
    };
    let mut two = three();
    two[0].availability_zone = "elsewhere".into();
    let d = decide(&cfg, &az, &two);
    let Outcome::Weighed { weights, .. } = &d.candidates[1].outcome else {
        panic!("{:?}", d.candidates[1])
    };
    assert_eq!(weights[0].normalized, 1.0);
}
