//! The capacity filter's over-subscription arithmetic (the cases of Cinder's
//! capacity filter tests, same figures) and the `auto` ratio.

use super::cand;
use crate::scheduler::filters::auto_ratio;
use crate::scheduler::{Filter, Request};

struct Case {
    what: &'static str,
    size: i64,
    total: f64,
    free: f64,
    provisioned: f64,
    ratio: f64,
    reserved: u8,
    thin: bool,
    /// `provisioning:type = thick` in the type.
    thick_type: bool,
    passes: bool,
}

#[test]
fn over_subscription_examples() {
    let cases = [
        Case {
            what: "thin passes",
            size: 100,
            total: 500.0,
            free: 200.0,
            provisioned: 500.0,
            ratio: 2.0,
            reserved: 5,
            thin: true,
            thick_type: false,
            passes: true,
        },
        Case {
            what: "thin passes at exactly the ratio",
            size: 3000,
            total: 500.0,
            free: 200.0,
            provisioned: 7000.0,
            ratio: 20.0,
            reserved: 5,
            thin: true,
            thick_type: false,
            passes: true,
        },
        Case {
            what: "thick passes on free space minus the reserve",
            size: 100,
            total: 500.0,
            free: 200.0,
            provisioned: 500.0,
            ratio: 2.0,
            reserved: 5,
            thin: false,
            thick_type: false,
            passes: true,
        },
        Case {
            what: "a ratio below 1 filters a thin backend out",
            size: 100,
            total: 500.0,
            free: 200.0,
            provisioned: 400.0,
            ratio: 0.8,
            reserved: 0,
            thin: true,
            thick_type: false,
            passes: false,
        },
        Case {
            what: "ratio 1, provisioned plus request within the total",
            size: 100,
            total: 500.0,
            free: 200.0,
            provisioned: 400.0,
            ratio: 1.0,
            reserved: 0,
            thin: true,
            thick_type: false,
            passes: true,
        },
        Case {
            what: "ratio 1, provisioned plus request beyond the total",
            size: 150,
            total: 500.0,
            free: 200.0,
            provisioned: 400.0,
            ratio: 1.0,
            reserved: 0,
            thin: true,
            thick_type: false,
            passes: false,
        },
        Case {
            what: "provisioned ratio 1.6 exceeds 1.5",
            size: 100,
            total: 500.0,
            free: 200.0,
            provisioned: 700.0,
            ratio: 1.5,
            reserved: 5,
            thin: true,
            thick_type: false,
            passes: false,
        },
        Case {
            what: "provisioned ratio 22 exceeds 20",
            size: 2000,
            total: 500.0,
            free: 30.0,
            provisioned: 9000.0,
            ratio: 20.0,
            reserved: 0,
            thin: true,
            thick_type: false,
            passes: false,
        },
        Case {
            what: "the reserve counts: 2.2 exceeds 2",
            size: 100,
            total: 500.0,
            free: 100.0,
            provisioned: 1000.0,
            ratio: 2.0,
            reserved: 5,
            thin: true,
            thick_type: false,
            passes: false,
        },
        Case {
            what: "thick: 75 GiB beyond the reserve, 100 asked",
            size: 100,
            total: 500.0,
            free: 100.0,
            provisioned: 0.0,
            ratio: 2.0,
            reserved: 5,
            thin: false,
            thick_type: false,
            passes: false,
        },
        Case {
            what: "a thick type on a thin backend needs real free space",
            size: 100,
            total: 500.0,
            free: 100.0,
            provisioned: 400.0,
            ratio: 2.0,
            reserved: 5,
            thin: true,
            thick_type: true,
            passes: false,
        },
        Case {
            what: "the same request thin: (100 - 25) × 2 = 150 >= 100",
            size: 100,
            total: 500.0,
            free: 100.0,
            provisioned: 400.0,
            ratio: 2.0,
            reserved: 5,
            thin: true,
            thick_type: false,
            passes: true,
        },
        Case {
            what: "adjusted free virtual space (80 - 25) × 2 = 110 >= 100",
            size: 100,
            total: 500.0,
            free: 80.0,
            provisioned: 600.0,
            ratio: 2.0,
            reserved: 5,
            thin: true,
            thick_type: false,
            passes: true,
        },
        Case {
            what: "nothing free: the ratio multiplies zero",
            size: 100,
            total: 500.0,
            free: 0.0,
            provisioned: 800.0,
            ratio: 2.0,
            reserved: 0,
            thin: true,
            thick_type: false,
            passes: false,
        },
        Case {
            what: "a backend of total 0",
            size: 1,
            total: 0.0,
            free: 0.0,
            provisioned: 0.0,
            ratio: 20.0,
            reserved: 0,
            thin: true,
            thick_type: false,
            passes: false,
        },
    ];
    for k in cases {
        let mut c = cand("p", "nova", k.total, k.free, k.provisioned);
        c.max_over_subscription_ratio = k.ratio;
        c.reserved_percentage = k.reserved;
        c.thin = k.thin;
        let mut req = Request {
            size_gib: k.size,
            ..Default::default()
        };
        if k.thick_type {
            req.extra_specs
                .insert("provisioning:type".into(), "thick".into());
        }
        let got = Filter::CapacityFilter.check(&req, &c);
        assert_eq!(got.is_ok(), k.passes, "{}: {got:?}", k.what);
    }
}

#[test]
fn auto_ratio_as_cinder_computes_it() {
    // (thin, total, free, provisioned, ratio)
    let table = [
        (false, 100.0, 50.0, 500.0, 1.0),
        (true, 100.0, 100.0, 0.0, 20.0),
        (true, 100.0, 100.0, 50.0, 51.0),
        (true, 100.0, 59.0, 200.0, 1.0 + 200.0 / 42.0),
    ];
    for (thin, total, free, prov, want) in table {
        let got = auto_ratio(thin, total, free, prov);
        assert!(
            (got - want).abs() < 1e-9,
            "{thin} {total} {free} {prov}: {got}"
        );
    }
    let auto = crate::scheduler::OverSubscription::Auto;
    assert_eq!(auto.ratio(true, 100.0, 100.0, 0.0), 20.0);
    let fixed = crate::scheduler::OverSubscription::Fixed(3.0);
    assert_eq!(fixed.ratio(true, 100.0, 100.0, 50.0), 3.0);
}

#[test]
fn capacity_messages_say_what_is_left() {
    let mut c = cand("a", "nova", 100.0, 90.0, 80.0);
    c.max_over_subscription_ratio = 2.0;
    let req = Request {
        size_gib: 500,
        ..Default::default()
    };
    let why = Filter::CapacityFilter.check(&req, &c).unwrap_err();
    assert!(why.starts_with("120 GiB can still be provisioned"), "{why}");
    c.thin = false;
    let why = Filter::CapacityFilter.check(&req, &c).unwrap_err();
    assert!(why.starts_with("90 GiB free beyond the reserve"), "{why}");
}
