//! The memory driver's own behaviour, beyond the conformance suite: the
//! test aids it offers (capacity, capabilities, planted images).
use super::*;

#[tokio::test]
async fn capacity_is_what_the_test_set() {
    let d = MemoryDriver::new(Failpoints::new());
    assert_eq!(d.capacity().await.expect("capacity"), DEFAULT_CAPACITY);
    let small = Capacity {
        total: 100 << 30,
        free: 10 << 30,
    };
    d.set_capacity(small);
    let spec = ImageSpec {
        name: "v.raw".into(),
        size: 50 << 30,
        format: Format::Raw,
    };
    d.create(&spec).await.expect("create");
    assert_eq!(d.capacity().await.expect("capacity"), small);
}

/// A backend set up without layering or without raw refuses what it cannot
/// do, before anything is made, so the application can fall back.
#[tokio::test]
async fn capabilities_are_followed() {
    let d = MemoryDriver::new(Failpoints::new());
    d.set_capabilities(Capabilities {
        layering: false,
        formats: vec![Format::Qcow2],
        ..default_capabilities()
    });
    assert!(!d.capabilities().layering);
    let base = ImageSpec {
        name: "base.qcow2".into(),
        size: 1 << 20,
        format: Format::Qcow2,
    };
    d.create(&base).await.expect("create");
    d.make_immutable("base.qcow2").await.expect("immutable");
    let overlay = ImageSpec {
        name: "ov.qcow2".into(),
        ..base.clone()
    };
    let err = d.create_overlay("base.qcow2", &overlay).await;
    assert!(matches!(err, Err(StorageError::Unsupported(_))), "{err:?}");
    let raw = ImageSpec {
        name: "v.raw".into(),
        size: 1 << 20,
        format: Format::Raw,
    };
    let err = d.create(&raw).await;
    assert!(matches!(err, Err(StorageError::Unsupported(_))), "{err:?}");
    let err = d.copy_from("base.qcow2", &raw, &|_| {}).await;
    assert!(matches!(err, Err(StorageError::Unsupported(_))), "{err:?}");
    assert_eq!(d.list().await.expect("list"), ["base.qcow2"]);
}

/// Reads go through the chain: an overlay's own sectors first, then its
/// base's, and zeroes beyond the end of the image the read reaches.
#[tokio::test]
async fn reads_go_through_the_chain() {
    let d = MemoryDriver::new(Failpoints::new());
    let spec = |name: &str, size| ImageSpec {
        name: name.into(),
        size,
        format: format_of_name(name).expect("name"),
    };
    d.create(&spec("base.raw", 2048)).await.expect("create");
    d.write_data("base.raw", 0, &[1; 2048]).expect("write");
    d.make_immutable("base.raw").await.expect("immutable");
    d.create_overlay("base.raw", &spec("ov.qcow2", 4096))
        .await
        .expect("overlay");
    d.write_data("ov.qcow2", 512, &[2; 512]).expect("write");
    let read = d.read_data("ov.qcow2", 0, 4096).expect("read");
    let expected: Vec<u8> = [[1u8; 512], [2; 512], [1; 512], [1; 512]]
        .concat()
        .into_iter()
        .chain([0; 2048])
        .collect();
    assert!(read == expected);
    // Unaligned or out-of-range accesses are refused, as immutable writes.
    for (offset, len) in [(1, 512), (0, 511), (4096, 512)] {
        let err = d.read_data("ov.qcow2", offset, len);
        assert!(
            matches!(err, Err(StorageError::InvalidSize { .. })),
            "{err:?}"
        );
    }
    let err = d.write_data("base.raw", 0, &[3; 512]);
    assert!(matches!(err, Err(StorageError::Immutable(_))), "{err:?}");
    assert_eq!(d.read_data("base.raw", 0, 512).expect("read"), [1; 512]);
}
