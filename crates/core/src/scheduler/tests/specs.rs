//! Extra-spec operators, table-driven after Cinder's extra_specs_ops cases,
//! and the capability rule (scopes, missing capabilities).

use std::collections::BTreeMap;

use crate::scheduler::specs::{capabilities_match, known_keys, matches};

#[test]
fn every_operator() {
    // (capability value, spec, matches)
    let table: &[(&str, &str, bool)] = &[
        // Plain value: string equality.
        ("1", "1", true),
        ("1", "2", false),
        ("ssd", "ssd", true),
        ("ssd", "SSD", false),
        // `=`: numeric at least.
        ("123", "= 123", true),
        ("124", "= 123", true),
        ("34", "= 234", false),
        ("34", "=", false),
        ("abc", "= 1", false),
        ("12.5", "= 12", true),
        // Numeric comparisons; not a number: no match.
        ("123", "== 123", true),
        ("123.0", "== 123", true),
        ("124", "== 123", false),
        ("124", "!= 123", true),
        ("123", "!= 123", false),
        ("1000", ">= 234", true),
        ("200", ">= 234", false),
        ("200", "<= 234", true),
        ("300", "<= 234", false),
        ("abc", "== abc", false),
        ("abc", "!= 1", false),
        ("1", ">= abc", false),
        // String comparisons.
        ("123", "s== 123", true),
        ("1234", "s== 123", false),
        ("1234", "s!= 123", true),
        ("123", "s!= 123", false),
        ("1000", "s>= 234", false),
        ("1000", "s<= 234", true),
        ("1000", "s< 234", true),
        ("234", "s< 234", false),
        ("2345", "s> 234", true),
        ("234", "s> 234", false),
        ("234", "s>= 234", true),
        ("abc", "s< abd", true),
        // `<in>`: substring.
        ("12311321", "<in> 11", true),
        ("12311321", "<in> 12311321", true),
        ("12311321", "<in> 12311321 <in>", true),
        ("12310321", "<in> 11", false),
        ("12310321", "<in> 11 <in>", false),
        ("Scoria", "<in> cor", true),
        // `<is>`: booleans, case-insensitive; anything not true is false.
        ("True", "<is> True", true),
        ("true", "<is> TRUE", true),
        ("False", "<is> False", true),
        ("True", "<is> False", false),
        ("False", "<is> True", false),
        ("yes", "<is> True", true),
        ("nonsense", "<is> False", true),
        ("True", "<is>", false),
        // `<or>`.
        ("12", "<or> 11 <or> 12", true),
        ("13", "<or> 11 <or> 12", false),
        ("13", "<or> 11 <or> 12 <or>", false),
        ("11", "<or> 11", true),
        ("<or>", "<or> 11 <or> 12", false),
        // `<all-in>`: every word in a list-like capability.
        ("[aes, xts, gcm]", "<all-in> aes gcm", true),
        ("['aes', 'xts']", "<all-in> aes gcm", false),
        ("aes,xts", "<all-in> xts", true),
        ("aes xts", "<all-in> aes xts", true),
        ("aes-gcm", "<all-in> aes", false),
        ("aes", "<all-in>", false),
    ];
    for &(have, want, expect) in table {
        assert_eq!(matches(have, want), expect, "{have:?} against {want:?}");
    }
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn scopes_and_missing_capabilities() {
    // What the file backend reports, plus a configured capability.
    let caps = map(&[
        ("volume_backend_name", "file"),
        ("storage_protocol", "nbd"),
        ("vendor_name", "Scoria"),
        ("thin_provisioning_support", "True"),
        ("multiattach", "True"),
        ("tier", "ssd"),
        ("iops", "5000"),
    ]);
    // (specs, accepted, fragment of the reason)
    type Specs<'a> = &'a [(&'a str, &'a str)];
    let table: &[(Specs, bool, &str)] = &[
        (&[], true, ""),
        (
            &[("storage_protocol", "nbd"), ("vendor_name", "Scoria")],
            true,
            "",
        ),
        (
            &[("storage_protocol", "iSCSI")],
            false,
            "storage_protocol is \"nbd\"",
        ),
        (&[("vendor_name", "Open Source")], false, "the type wants"),
        (
            &[
                ("volume_backend_name", "file"),
                ("multiattach", "<is> True"),
            ],
            true,
            "",
        ),
        (
            &[("capabilities:volume_backend_name", "ceph")],
            false,
            "ceph",
        ),
        (&[("capabilities:tier", "<or> hdd <or> ssd")], true, ""),
        (&[("tier", "hdd")], false, "tier is \"ssd\""),
        (&[("iops", ">= 3000")], true, ""),
        (&[("capabilities:iops", "= 6000")], false, "iops"),
        // Other consumers' scopes are skipped.
        (
            &[
                ("qos:read_iops_sec", "100"),
                ("scoria:clone_strategy", "space"),
                ("os-brick:something", "x"),
                ("provisioning:type", "thick"),
                ("RESKEY:availability_zones", "az9"),
            ],
            true,
            "",
        ),
        // A capability another backend reports and this one does not fails,
        // as in Cinder.
        (&[("rack", "r1")], false, "does not report rack"),
        (
            &[("capabilities:replication_enabled", "<is> True")],
            false,
            "does not report",
        ),
        // A key no backend reports is not a capability here: skipped.
        (&[("spec1", "val1")], true, ""),
        (&[("capabilities:spec2", "val2")], true, ""),
    ];
    let other = map(&[("rack", "r1"), ("replication_enabled", "True")]);
    let known = known_keys([&caps, &other]);
    for &(specs, ok, fragment) in table {
        let got = capabilities_match(&map(specs), &caps, &known);
        assert_eq!(got.is_ok(), ok, "{specs:?}: {got:?}");
        if let Err(why) = got {
            assert!(why.contains(fragment), "{specs:?}: {why}");
        }
    }
}
