//! One test suite, run against both drivers: the memory driver is only useful if
//! it behaves like the file driver.
//!
//! Each test is a function of a [`Kind`]; the `both!` macro makes a test per
//! driver, named `<test>::memory` and `<test>::file`.

use std::sync::Arc;

use scoria_failpoints::Failpoints;

use crate::file::{FileDriver, FileOptions};
use crate::memory::MemoryDriver;
use crate::{Driver, Format, ImageSpec, StorageError};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Memory,
    File,
}

/// A driver of `kind` with its own failpoints and, for files, its own directory
/// (kept alive by the returned guard).
async fn driver(kind: Kind) -> (Option<tempfile::TempDir>, Arc<Failpoints>, Arc<dyn Driver>) {
    let fp = Failpoints::new();
    match kind {
        Kind::Memory => (None, fp.clone(), Arc::new(MemoryDriver::new(fp))),
        Kind::File => {
            let dir = tempfile::tempdir().expect("temp dir");
            let d = FileDriver::new(
                dir.path().join("backend"),
                fp.clone(),
                FileOptions::default(),
            )
            .await
            .expect("file driver");
            (Some(dir), fp, Arc::new(d))
        }
    }
}

fn spec(name: &str, size: u64) -> ImageSpec {
    let format = crate::format_of_name(name).expect("valid name");
    ImageSpec {
        name: name.into(),
        size,
        format,
    }
}

async fn size_of(d: &dyn Driver, name: &str) -> Option<u64> {
    d.info(name).await.expect("info").map(|i| i.virtual_size)
}

macro_rules! both {
    ($($test:ident),* $(,)?) => {
        $(
            mod $test {
                #[tokio::test]
                async fn memory() {
                    super::$test(super::Kind::Memory).await
                }
                #[tokio::test]
                async fn file() {
                    super::$test(super::Kind::File).await
                }
            }
        )*
    };
}

both!(lifecycle, idempotency, invalid_input, copies);
#[cfg(feature = "failpoints")]
both!(
    error_after_create_leaves_a_durable_image,
    crash_before_create_leaves_nothing,
    crash_anywhere_then_rerun
);

async fn lifecycle(kind: Kind) {
    let (_dir, _fp, d) = driver(kind).await;
    for name in ["volume-1.qcow2", "volume-2.raw"] {
        d.create(&spec(name, GIB)).await.expect("create");
        let info = d.info(name).await.expect("info").expect("present");
        assert_eq!((info.name.as_str(), info.virtual_size), (name, GIB));
        assert_eq!(info.format, crate::format_of_name(name).expect("name"));
        assert!(!info.refers_to_other_files());
        d.extend(name, 2 * GIB).await.expect("extend");
        assert_eq!(size_of(&*d, name).await, Some(2 * GIB));
    }
    assert_eq!(
        d.list().await.expect("list"),
        ["volume-1.qcow2", "volume-2.raw"]
    );
    for name in ["volume-1.qcow2", "volume-2.raw"] {
        d.delete(name).await.expect("delete");
        assert_eq!(size_of(&*d, name).await, None);
    }
    assert!(d.list().await.expect("list").is_empty());
}

async fn idempotency(kind: Kind) {
    let (_dir, _fp, d) = driver(kind).await;
    for name in ["v.qcow2", "v.raw"] {
        // Create twice: the second finds the same shape and succeeds.
        d.create(&spec(name, GIB)).await.expect("create");
        d.create(&spec(name, GIB)).await.expect("create again");
        // A different size is a mismatch, and changes nothing.
        let err = d.create(&spec(name, 2 * GIB)).await;
        assert!(
            matches!(err, Err(StorageError::Mismatch { .. })),
            "{name}: {err:?}"
        );
        assert_eq!(size_of(&*d, name).await, Some(GIB));

        // Extend twice; extending to a size the image has (or exceeds) does nothing.
        d.extend(name, 2 * GIB).await.expect("extend");
        d.extend(name, 2 * GIB).await.expect("extend again");
        d.extend(name, MIB).await.expect("no shrink");
        assert_eq!(size_of(&*d, name).await, Some(2 * GIB));

        // Delete twice.
        d.delete(name).await.expect("delete");
        d.delete(name).await.expect("delete again");
        assert_eq!(size_of(&*d, name).await, None);
        let err = d.extend(name, 4 * GIB).await;
        assert!(
            matches!(err, Err(StorageError::NotFound(_))),
            "{name}: {err:?}"
        );
    }
    // A name is one image: the extension makes v.raw and v.qcow2 distinct.
    d.create(&spec("w.raw", MIB)).await.expect("create");
    d.create(&spec("w.qcow2", 2 * MIB)).await.expect("create");
    assert_eq!(size_of(&*d, "w.raw").await, Some(MIB));
    assert_eq!(size_of(&*d, "w.qcow2").await, Some(2 * MIB));
}

async fn invalid_input(kind: Kind) {
    let (_dir, _fp, d) = driver(kind).await;
    let long = format!("{}.raw", "a".repeat(crate::MAX_NAME_LEN - 4));
    d.create(&spec(&long, MIB)).await.expect("longest name");
    let too_long = format!("{}.raw", "a".repeat(crate::MAX_NAME_LEN - 3));
    for bad in [
        "",
        "volume",
        "volume.vmdk",
        ".qcow2",
        ".hidden.qcow2",
        ".v.qcow2.tmp",
        "a/b.qcow2",
        "../b.raw",
        "/etc/passwd.raw",
        "v .raw",
        "v\0.raw",
        "vé.raw",
        "v.qcow2/",
        too_long.as_str(),
    ] {
        let spec = ImageSpec {
            name: bad.into(),
            size: MIB,
            format: Format::Raw,
        };
        let invalid = |r: crate::Result<()>| matches!(r, Err(StorageError::InvalidName(_)));
        assert!(invalid(d.create(&spec).await), "create {bad:?}");
        assert!(invalid(d.delete(bad).await), "delete {bad:?}");
        assert!(invalid(d.extend(bad, GIB).await), "extend {bad:?}");
        assert!(invalid(d.info(bad).await.map(drop)), "info {bad:?}");
        assert!(
            invalid(d.copy_from(bad, &self::spec("c.raw", MIB), &|_| {}).await),
            "copy from {bad:?}"
        );
        assert!(
            invalid(d.copy_from(&long, &spec, &|_| {}).await),
            "copy to {bad:?}"
        );
    }
    // The format must agree with the extension.
    let wrong = ImageSpec {
        name: "v.raw".into(),
        size: MIB,
        format: Format::Qcow2,
    };
    let err = d.create(&wrong).await;
    assert!(matches!(err, Err(StorageError::InvalidName(_))), "{err:?}");
    // Sizes are whole sectors; qcow2 has a maximum.
    for (name, size) in [("v.raw", 1), ("v.qcow2", MIB + 1), ("v.qcow2", 1 << 52)] {
        let err = d.create(&spec(name, size)).await;
        assert!(
            matches!(err, Err(StorageError::InvalidSize { .. })),
            "{name} {size}: {err:?}"
        );
    }
    d.create(&spec("v.raw", MIB)).await.expect("create");
    let err = d.extend("v.raw", GIB + 7).await;
    assert!(
        matches!(err, Err(StorageError::InvalidSize { .. })),
        "{err:?}"
    );
    assert_eq!(d.list().await.expect("list"), [long.as_str(), "v.raw"]);
}

/// Copies of an image: to the same or a larger size, into either format; a
/// re-run is success, a different shape is a mismatch; errors copy nothing.
async fn copies(kind: Kind) {
    let (_dir, _fp, d) = driver(kind).await;
    d.create(&spec("src.qcow2", GIB)).await.expect("create");
    d.create(&spec("src.raw", MIB)).await.expect("create");
    let seen = std::sync::Mutex::new(Vec::new());
    let progress = |p: u8| seen.lock().expect("lock").push(p);
    for (source, copy, size) in [
        ("src.qcow2", "same.qcow2", GIB),
        ("src.qcow2", "big.raw", 2 * GIB),
        ("src.raw", "big.qcow2", 3 * MIB),
    ] {
        seen.lock().expect("lock").clear();
        d.copy_from(source, &spec(copy, size), &progress)
            .await
            .unwrap_or_else(|e| panic!("{source} → {copy}: {e:?}"));
        assert_eq!(size_of(&*d, copy).await, Some(size), "{copy}");
        let seen = std::mem::take(&mut *seen.lock().expect("lock"));
        assert_eq!(seen.last(), Some(&100), "{copy}: progress {seen:?}");
        assert!(seen.is_sorted(), "{copy}: progress {seen:?}");
        // A re-run finds the copy and succeeds; another size is a mismatch.
        d.copy_from(source, &spec(copy, size), &|_| {})
            .await
            .expect("copy again");
        let err = d.copy_from(source, &spec(copy, size + MIB), &|_| {}).await;
        assert!(
            matches!(err, Err(StorageError::Mismatch { .. })),
            "{copy}: {err:?}"
        );
    }
    // The sources are unchanged.
    assert_eq!(size_of(&*d, "src.qcow2").await, Some(GIB));
    assert_eq!(size_of(&*d, "src.raw").await, Some(MIB));

    // Errors leave nothing behind.
    let err = d
        .copy_from("gone.qcow2", &spec("c1.qcow2", GIB), &|_| {})
        .await;
    assert!(matches!(err, Err(StorageError::NotFound(_))), "{err:?}");
    let err = d
        .copy_from("src.qcow2", &spec("c2.raw", MIB), &|_| {})
        .await;
    assert!(
        matches!(err, Err(StorageError::InvalidSize { .. })),
        "{err:?}"
    );
    let err = d.copy_from("src.raw", &spec("src.raw", MIB), &|_| {}).await;
    assert!(matches!(err, Err(StorageError::InvalidName(_))), "{err:?}");
    assert_eq!(
        d.list().await.expect("list"),
        ["big.qcow2", "big.raw", "same.qcow2", "src.qcow2", "src.raw"]
    );
}

#[cfg(feature = "failpoints")]
use scoria_failpoints::Action;

/// `storage.create.after` fails once: the image is nonetheless there, and a re-run
/// of the create succeeds without writing it again.
#[cfg(feature = "failpoints")]
async fn error_after_create_leaves_a_durable_image(kind: Kind) {
    let (_dir, fp, d) = driver(kind).await;
    for name in ["v.qcow2", "v.raw"] {
        fp.arm("storage.create.after", Action::Error, 1, Some(1));
        let err = d.create(&spec(name, GIB)).await;
        assert!(matches!(err, Err(StorageError::Failpoint(_))), "{err:?}");
        assert_eq!(size_of(&*d, name).await, Some(GIB));
        d.create(&spec(name, GIB)).await.expect("re-run");
        assert_eq!(size_of(&*d, name).await, Some(GIB));
    }
    fp.arm("storage.copy.after", Action::Error, 1, Some(1));
    let err = d.copy_from("v.qcow2", &spec("c.raw", GIB), &|_| {}).await;
    assert!(matches!(err, Err(StorageError::Failpoint(_))), "{err:?}");
    assert_eq!(size_of(&*d, "c.raw").await, Some(GIB));
    d.copy_from("v.qcow2", &spec("c.raw", GIB), &|_| {})
        .await
        .expect("re-run");
    d.delete("c.raw").await.expect("delete");

    fp.arm("storage.delete.after", Action::Error, 1, Some(1));
    assert!(d.delete("v.raw").await.is_err());
    assert_eq!(size_of(&*d, "v.raw").await, None);
    d.delete("v.raw").await.expect("re-run");

    fp.arm("storage.extend.after", Action::Error, 1, Some(1));
    assert!(d.extend("v.qcow2", 2 * GIB).await.is_err());
    assert_eq!(size_of(&*d, "v.qcow2").await, Some(2 * GIB));
    d.extend("v.qcow2", 2 * GIB).await.expect("re-run");
}

/// A crash before anything is written leaves nothing behind.
#[cfg(feature = "failpoints")]
async fn crash_before_create_leaves_nothing(kind: Kind) {
    let (_dir, fp, d) = driver(kind).await;
    fp.arm("storage.create.before", Action::Crash, 1, None);
    let err = d.create(&spec("v.qcow2", GIB)).await.expect_err("crashed");
    assert!(err.is_crash(), "{err:?}");
    // A dead instance writes nothing more.
    let err = d.delete("v.qcow2").await.expect_err("still dead");
    assert!(err.is_crash(), "{err:?}");
    fp.clear();
    assert_eq!(size_of(&*d, "v.qcow2").await, None);
    assert!(d.list().await.expect("list").is_empty());
}

/// For every failpoint: crash there in a create, copy, extend, delete sequence,
/// then "restart" (clear the failpoints) and resume with the step that crashed,
/// as the flow engine would. The sequence must finish and leave nothing behind,
/// not even a temporary file.
#[cfg(feature = "failpoints")]
async fn crash_anywhere_then_rerun(kind: Kind) {
    const STEPS: usize = 5;
    for &point in crate::FAILPOINTS {
        for (name, copy) in [("v.qcow2", "c.raw"), ("v.raw", "c.qcow2")] {
            let (dir, fp, d) = driver(kind).await;
            let step = |i: usize| {
                let d = Arc::clone(&d);
                async move {
                    match i {
                        0 => d.create(&spec(name, GIB)).await,
                        1 => d.copy_from(name, &spec(copy, 2 * GIB), &|_| {}).await,
                        2 => d.extend(name, 2 * GIB).await,
                        3 => d.delete(name).await,
                        _ => d.delete(copy).await,
                    }
                }
            };
            fp.arm(point, Action::Crash, 1, None);
            let mut crashed = None;
            for i in 0..STEPS {
                if let Err(e) = step(i).await {
                    assert!(e.is_crash(), "{point}: {e:?}");
                    crashed = Some(i);
                    break;
                }
            }
            let crashed = crashed.unwrap_or_else(|| panic!("{point} was never reached"));
            fp.clear();
            // What the crash left is a complete image or nothing, never a torn one.
            if let Some(size) = size_of(&*d, name).await {
                assert!(size == GIB || size == 2 * GIB, "{point}: size {size}");
            }
            if let Some(size) = size_of(&*d, copy).await {
                assert_eq!(size, 2 * GIB, "{point}: copy");
            }
            for i in crashed..STEPS {
                step(i)
                    .await
                    .unwrap_or_else(|e| panic!("{point}: step {i} re-run: {e:?}"));
            }
            assert!(d.list().await.expect("list").is_empty(), "{point}");
            if let Some(dir) = dir {
                let left: Vec<_> = std::fs::read_dir(dir.path().join("backend"))
                    .expect("read dir")
                    .map(|e| e.expect("entry").file_name())
                    .collect();
                assert!(left.is_empty(), "{point}: {left:?}");
            }
        }
    }
}
