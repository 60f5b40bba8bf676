//! Tests of the crate root: backing references and capability strings.

use super::*;

/// Which backing references an image may record, and what they name.
#[test]
fn backing_references() {
    let check = |reference: &str, format: Option<&str>, expected: Option<&str>| {
        let got = backing_name("top.qcow2", reference, format);
        match expected {
            Some(name) => assert_eq!(got.ok().as_deref(), Some(name), "{reference:?}"),
            None => assert!(
                matches!(got, Err(StorageError::BadImage { .. })),
                "{reference:?} {format:?}: {got:?}"
            ),
        }
    };
    check("base.qcow2", Some("qcow2"), Some("base.qcow2"));
    check("snap-1.raw", Some("raw"), Some("snap-1.raw"));
    check("base.qcow2", Some("raw"), None);
    check("base.qcow2", None, None);
    check("top.qcow2", Some("qcow2"), None);
    for foreign in [
        "/abs/base.qcow2",
        "../base.qcow2",
        "./base.qcow2",
        "sub/base.qcow2",
        ".base.qcow2.tmp",
        "nbd:localhost:10809",
        "json:{\"driver\":\"raw\"}",
        "base",
        "",
    ] {
        check(foreign, Some("qcow2"), None);
    }
}

#[test]
fn cinder_capability_strings() {
    let caps = Capabilities {
        thin_provisioning: true,
        layering: true,
        online_snapshot: false,
        online_extend: false,
        multiattach: false,
        export_protocols: vec![ExportProtocol::Local, ExportProtocol::Nbd],
        formats: vec![Format::Raw],
    };
    let pairs: Vec<(&str, String)> = caps.cinder();
    let expected = [
        ("vendor_name", "Scoria"),
        ("storage_protocol", "local"),
        ("thin_provisioning_support", "True"),
        ("multiattach", "False"),
    ];
    assert_eq!(pairs.len(), expected.len());
    for ((k, v), (ek, ev)) in pairs.iter().zip(expected) {
        assert_eq!((*k, v.as_str()), (ek, ev));
    }
}
