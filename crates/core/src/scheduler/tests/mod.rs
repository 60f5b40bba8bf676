//! The scheduler's tests: the pipeline and its record here; operators in
//! `specs.rs`; capacity arithmetic in `capacity.rs`; weighers in `weighers.rs`.

use std::collections::BTreeSet;

use super::*;

mod capacity;
mod specs;
mod weighers;

/// A thin backend with ratio 1, no reserve, reporting its name.
pub(super) fn cand(name: &str, az: &str, total: f64, free: f64, prov: f64) -> Candidate {
    Candidate {
        name: name.into(),
        availability_zone: az.into(),
        total_gib: total,
        free_gib: free,
        provisioned_gib: prov,
        allocated_gib: prov,
        volume_count: 0,
        thin: true,
        max_over_subscription_ratio: 1.0,
        reserved_percentage: 0,
        capabilities: [("volume_backend_name".to_string(), name.to_string())].into(),
        enabled: true,
    }
}

fn cfg() -> SchedulerConfig {
    SchedulerConfig::default()
}

fn check(req: Request, cands: &[Candidate], multiplier: f64, expect: Result<&str, &str>) {
    let cfg = SchedulerConfig {
        capacity_weight_multiplier: multiplier,
        ..cfg()
    };
    let got = place(&cfg, &req, cands);
    match (got, expect) {
        (Ok(n), Ok(e)) => assert_eq!(n, e),
        (Err(r), Err(fragment)) => assert!(r.to_string().contains(fragment), "{r}"),
        (got, expect) => panic!("got {got:?}, expected {expect:?}"),
    }
}

fn sized(size: i64, az: Option<&str>) -> Request {
    Request {
        size_gib: size,
        availability_zone: az.map(Into::into),
        ..Default::default()
    }
}

#[test]
fn filters_then_weighs() {
    let a = cand("a", "nova", 100.0, 80.0, 20.0);
    let b = cand("b", "nova", 100.0, 50.0, 50.0);
    let c = cand("c", "other", 1000.0, 1000.0, 0.0);
    // Spread: most free space wins; the zone filter removes c.
    check(
        sized(1, Some("nova")),
        &[a.clone(), b.clone(), c.clone()],
        1.0,
        Ok("a"),
    );
    // Stack: least free space wins.
    check(
        sized(1, Some("nova")),
        &[a.clone(), b.clone()],
        -1.0,
        Ok("b"),
    );
    // Without a zone, c's space wins.
    check(
        sized(1, None),
        &[a.clone(), b.clone(), c.clone()],
        1.0,
        Ok("c"),
    );
    // Too big for every backend in the zone.
    check(
        sized(81, Some("nova")),
        &[a.clone(), b.clone()],
        1.0,
        Err("No valid backend was found"),
    );
    check(
        sized(1, Some("mars")),
        std::slice::from_ref(&a),
        1.0,
        Err("not mars"),
    );
    check(sized(1, None), &[], 1.0, Err("no backend is configured"));
    // A disabled backend gets nothing, whatever its space.
    let mut off = c.clone();
    off.enabled = false;
    check(sized(1, None), &[a.clone(), off.clone()], 1.0, Ok("a"));
    check(
        sized(1, None),
        &[off],
        1.0,
        Err("volume service is disabled"),
    );
    // Ties are broken by name.
    check(
        sized(1, None),
        &[
            cand("z", "nova", 10.0, 10.0, 0.0),
            cand("y", "nova", 10.0, 10.0, 0.0),
        ],
        1.0,
        Ok("y"),
    );
}

#[test]
fn each_filter_removes_what_it_should() {
    let a = cand("a", "az1", 100.0, 100.0, 0.0);
    let mut tiered = cand("t", "az1", 100.0, 100.0, 0.0);
    tiered.capabilities.insert("tier".into(), "ssd".into());
    let set = |names: &[&str]| Some(names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>());
    // (filter, request, candidate, passes)
    let table: Vec<(Filter, Request, &Candidate, bool)> = vec![
        (
            Filter::AvailabilityZoneFilter,
            sized(1, Some("az1")),
            &a,
            true,
        ),
        (
            Filter::AvailabilityZoneFilter,
            sized(1, Some("az2")),
            &a,
            false,
        ),
        (Filter::AvailabilityZoneFilter, sized(1, None), &a, true),
        (Filter::CapacityFilter, sized(100, None), &a, true),
        (Filter::CapacityFilter, sized(101, None), &a, false),
        (
            Filter::CapabilitiesFilter,
            Request {
                extra_specs: [("tier".to_string(), "ssd".to_string())].into(),
                ..sized(1, None)
            },
            &tiered,
            true,
        ),
        (
            Filter::CapabilitiesFilter,
            Request {
                extra_specs: [("tier".to_string(), "ssd".to_string())].into(),
                ..sized(1, None)
            },
            &a,
            false,
        ),
        (Filter::SameBackendFilter, sized(1, None), &a, true),
        (
            Filter::SameBackendFilter,
            Request {
                same_backend: set(&["a", "x"]),
                ..sized(1, None)
            },
            &a,
            true,
        ),
        (
            Filter::SameBackendFilter,
            Request {
                same_backend: set(&["t"]),
                ..sized(1, None)
            },
            &a,
            false,
        ),
        (
            Filter::SameBackendFilter,
            Request {
                same_backend: set(&[]),
                ..sized(1, None)
            },
            &a,
            false,
        ),
        (Filter::DifferentBackendFilter, sized(1, None), &a, true),
        (
            Filter::DifferentBackendFilter,
            Request {
                different_backend: set(&["a"]),
                ..sized(1, None)
            },
            &a,
            false,
        ),
        (
            Filter::DifferentBackendFilter,
            Request {
                different_backend: set(&["t"]),
                ..sized(1, None)
            },
            &a,
            true,
        ),
    ];
    let known = known_keys([&a.capabilities, &tiered.capabilities]);
    for (f, req, c, passes) in table {
        let got = f.check_known(&req, c, &known);
        assert_eq!(
            got.is_ok(),
            passes,
            "{} {req:?} on {}: {got:?}",
            f.name(),
            c.name
        );
    }
    // Names parse back; an unknown one is refused with the known ones.
    for f in Filter::ALL {
        assert_eq!(f.name().parse::<Filter>(), Ok(f));
    }
    let err = "JsonFilter".parse::<Filter>().unwrap_err();
    assert!(err.contains("CapacityFilter"), "{err}");
}

#[test]
fn only_configured_filters_run() {
    let a = cand("a", "az1", 100.0, 100.0, 0.0);
    let big = sized(1000, Some("az2"));
    let all = cfg();
    assert!(place(&all, &big, std::slice::from_ref(&a)).is_err());
    let none = SchedulerConfig {
        filters: vec![],
        ..cfg()
    };
    assert_eq!(place(&none, &big, std::slice::from_ref(&a)).unwrap(), "a");
    let zone_only = SchedulerConfig {
        filters: vec![Filter::AvailabilityZoneFilter],
        ..cfg()
    };
    let d = decide(&zone_only, &big, std::slice::from_ref(&a));
    assert_eq!(
        d.candidates[0].outcome,
        Outcome::Removed {
            filter: "AvailabilityZoneFilter".into(),
            reason: "in zone az1, not az2".into()
        }
    );
    // The service check runs whatever the configuration.
    let mut off = a.clone();
    off.enabled = false;
    let d = decide(&none, &big, &[off]);
    assert!(matches!(
        &d.candidates[0].outcome,
        Outcome::Removed { filter, .. } if filter == SERVICE_ENABLED
    ));
}

#[test]
fn the_decision_records_and_explains() {
    let mut a = cand("a", "az2", 100.0, 90.0, 80.0);
    a.max_over_subscription_ratio = 2.0;
    let b = cand("b", "az1", 1000.0, 1000.0, 0.0);
    let req = sized(500, Some("az2"));
    let d = decide(&cfg(), &req, &[a.clone(), b.clone()]);
    assert_eq!(d.chosen, None);
    let msg = d.message();
    assert!(
        msg.starts_with(
            "No valid backend was found: no backend in zone az2 has 500 GiB free (a: 120 GiB can still be provisioned"
        ),
        "{msg}"
    );
    assert!(msg.ends_with("; b: in zone az1, not az2)"), "{msg}");
    assert_eq!(
        d.clone().into_result().unwrap_err().to_string(),
        msg,
        "the error says the same"
    );
    // A JSON round trip keeps everything.
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["candidates"][1]["backend"], "b");
    assert_eq!(json["candidates"][1]["outcome"], "removed");
    assert_eq!(json["candidates"][1]["filter"], "AvailabilityZoneFilter");
    assert_eq!(json["request"]["size_gib"], 500);
    let back: Decision = serde_json::from_value(json).unwrap();
    assert_eq!(back, d);

    // A success: the winner is named, the weighed carry their weights.
    let small = sized(10, None);
    let d = decide(&cfg(), &small, &[a, b]);
    assert_eq!(d.chosen.as_deref(), Some("b"));
    assert_eq!(d.message(), "Backend b was chosen.");
    let Outcome::Weighed { weights, total } = &d.candidates[1].outcome else {
        panic!("{:?}", d.candidates[1]);
    };
    assert_eq!(weights.len(), 1);
    assert_eq!(weights[0].weigher, "CapacityWeigher");
    assert_eq!(
        (weights[0].raw, weights[0].normalized, *total),
        (1000.0, 1.0, 1.0)
    );
    let back: Decision = serde_json::from_value(serde_json::to_value(&d).unwrap()).unwrap();
    assert_eq!(back, d);

    // Other filters' words; a type's specs.
    let typed = Request {
        extra_specs: [("tier".to_string(), "ssd".to_string())].into(),
        ..sized(1, None)
    };
    let mut ssd = cand("s", "nova", 10.0, 10.0, 0.0);
    ssd.capabilities.insert("tier".into(), "ssd".into());
    ssd.enabled = false;
    let msg = decide(&cfg(), &typed, &[cand("c", "nova", 10.0, 10.0, 0.0), ssd]).message();
    assert_eq!(
        msg,
        "No valid backend was found: no backend fits the request (c: it does not report tier, the type wants \"ssd\"; s: its volume service is disabled or frozen, or the backend is deactivated or down)"
    );
    // Many removed by one filter: a few named, the rest counted.
    let many: Vec<Candidate> = (0..20)
        .map(|i| cand(&format!("n{i:02}"), "nova", 10.0, 10.0, 0.0))
        .collect();
    let msg = decide(&cfg(), &sized(11, None), &many).message();
    assert!(msg.contains("n07: "), "{msg}");
    assert!(!msg.contains("n08: "), "{msg}");
    assert!(msg.contains("12 more removed by CapacityFilter"), "{msg}");
}

#[test]
fn a_group_goes_where_every_type_fits() {
    let a = cand("a", "nova", 100.0, 90.0, 10.0);
    let b = cand("b", "nova", 100.0, 10.0, 90.0);
    let c = cand("c", "other", 100.0, 100.0, 0.0);
    let req = |backend: Option<&str>, az: Option<&str>| Request {
        size_gib: 0,
        availability_zone: az.map(Into::into),
        extra_specs: backend
            .map(|b| [("volume_backend_name".to_string(), b.to_string())].into())
            .unwrap_or_default(),
        ..Default::default()
    };
    let all = [a.clone(), b.clone(), c.clone()];
    let check = |reqs: &[Request], expect: Result<&str, &str>| match (
        place_group(&cfg(), reqs, &all),
        expect,
    ) {
        (Ok(n), Ok(e)) => assert_eq!(n, e),
        (Err(r), Err(fragment)) => assert!(r.to_string().contains(fragment), "{r}"),
        (got, expect) => panic!("got {got:?}, expected {expect:?}"),
    };
    check(&[req(None, Some("nova"))], Ok("a"));
    check(
        &[req(None, Some("nova")), req(Some("b"), Some("nova"))],
        Ok("b"),
    );
    check(&[req(None, None)], Ok("c"));
    check(
        &[req(Some("a"), None), req(Some("b"), None)],
        Err("No valid backend was found"),
    );
    assert!(place_group(&cfg(), &[req(None, None)], &[]).is_err());
}

#[test]
fn a_configured_backend_name_is_matched() {
    let mut fast1 = cand("fast1", "nova", 100.0, 100.0, 0.0);
    let mut fast2 = cand("fast2", "nova", 100.0, 50.0, 50.0);
    for c in [&mut fast1, &mut fast2] {
        c.capabilities
            .insert("volume_backend_name".into(), "fast".into());
    }
    let slow = cand("slow", "nova", 1000.0, 1000.0, 0.0);
    let req = Request {
        extra_specs: [("volume_backend_name".to_string(), "fast".to_string())].into(),
        ..sized(1, None)
    };
    // Both "fast" backends are candidates; the roomier wins.
    assert_eq!(place(&cfg(), &req, &[fast2, slow, fast1]).unwrap(), "fast1");
}

#[test]
fn virtual_free_is_the_capacity_weighers_figure() {
    let mut t = cand("t", "nova", 100.0, 100.0, 0.0);
    t.max_over_subscription_ratio = 20.0;
    assert_eq!(virtual_free_gib(&t), 2000.0);
    t.provisioned_gib = 1990.0;
    assert_eq!(virtual_free_gib(&t), 10.0);
    t.reserved_percentage = 10;
    t.provisioned_gib = 0.0;
    // floor(100 × 10%) = 10 GiB reserved.
    assert_eq!(virtual_free_gib(&t), 1990.0);
    t.thin = false;
    assert_eq!(virtual_free_gib(&t), 90.0);
}
