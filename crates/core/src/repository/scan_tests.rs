//! Unit tests of the check's naming and fix ids.

use super::*;

#[test]
fn scoria_names_are_told_from_foreign_ones() {
    let id = ImageId::new();
    assert!(crate::rules::images::is_scoria_name(&format!(
        "image-{id}.qcow2"
    )));
    assert!(crate::rules::images::is_scoria_name(&format!(
        "image-{id}.raw"
    )));
    for other in ["image-x.qcow2", "disk.qcow2", &format!("image-{id}.vmdk")] {
        assert!(!crate::rules::images::is_scoria_name(other), "{other}");
    }
    let flow = scoria_model::FlowId::new();
    let name = format!("migrate-{flow}.qcow2");
    let staging_flow = crate::repository::outside::staging_flow;
    assert_eq!(staging_flow(&name), Some(flow.to_string().as_str()));
    assert_eq!(staging_flow("migrate-x.qcow2"), None);
}

#[test]
fn fix_ids_are_stable_and_distinct() {
    let t = Target::File {
        path: "/a/b/x.qcow2".into(),
    };
    let moved = Target::File {
        path: "/elsewhere/x.qcow2".into(),
    };
    let a = fix_id(FixKind::Clean, Problem::OrphanFile, "file", &t);
    assert_eq!(
        a,
        fix_id(FixKind::Clean, Problem::OrphanFile, "file", &moved)
    );
    assert!(
        a.starts_with("clean-") && a.len() == "clean-".len() + 12,
        "{a}"
    );
    assert_ne!(a, fix_id(FixKind::Clean, Problem::Temporary, "file", &t));
    assert_ne!(a, fix_id(FixKind::Clean, Problem::OrphanFile, "other", &t));
}
