//! The file driver's own tests: what only files show (modes, sparseness, byte
//! identity with qemu-img, leftovers, locks); the behaviour both drivers share is in
//! `crate::conformance`.

use std::os::unix::fs::MetadataExt;

use super::create::rename_noreplace;
use super::*;
use crate::qcow2;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

async fn driver(options: FileOptions) -> (tempfile::TempDir, FileDriver) {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = dir.path().join("backend");
    let driver = FileDriver::new(&backend, Failpoints::new(), options)
        .await
        .expect("driver");
    (dir, driver)
}

fn spec(name: &str, size: u64) -> ImageSpec {
    let format = format_of_name(name).expect("valid name");
    ImageSpec {
        name: name.into(),
        size,
        format,
    }
}

/// After create and after extend, qemu-img agrees with the native info and
/// finds the image clean.
async fn check_with_qemu(d: &FileDriver, name: &str, size: u64) {
    let native = d.info(name).await.expect("info").expect("present");
    let by_qemu = d
        .qemu_info(name)
        .await
        .expect("qemu info")
        .expect("present");
    assert_eq!(native.virtual_size, size, "{name}");
    assert_eq!(by_qemu.virtual_size, size, "{name}");
    assert_eq!(
        (native.format, by_qemu.format),
        (by_qemu.format, format_of_name(name).expect("name"))
    );
    assert!(!by_qemu.refers_to_other_files());
    let report = d.check(name).await.expect("check");
    assert!(report.is_clean(), "{name}: {report:?}");
}

#[tokio::test]
async fn images_are_clean_for_qemu_after_create_and_extend() {
    for options in [
        FileOptions::default(),
        FileOptions {
            fsync: false,
            native_qcow2: false,
        },
    ] {
        let (_tmp, d) = driver(options).await;
        for name in ["v.qcow2", "v.raw"] {
            d.create(&spec(name, GIB)).await.expect("create");
            check_with_qemu(&d, name, GIB).await;
            d.extend(name, 3 * GIB + 512).await.expect("extend");
            check_with_qemu(&d, name, 3 * GIB + 512).await;
        }
    }
}

#[tokio::test]
async fn native_and_qemu_img_creates_are_the_same_file() {
    let (_a, native) = driver(FileOptions::default()).await;
    let (_b, by_qemu) = driver(FileOptions {
        native_qcow2: false,
        ..FileOptions::default()
    })
    .await;
    for d in [&native, &by_qemu] {
        d.create(&spec("v.qcow2", 10 * GIB)).await.expect("create");
    }
    let read = |d: &FileDriver| std::fs::read(d.dir().join("v.qcow2")).expect("read");
    assert!(read(&native) == read(&by_qemu));
}

#[tokio::test]
async fn raw_images_are_sparse_and_private() {
    let (_tmp, d) = driver(FileOptions::default()).await;
    d.create(&spec("v.raw", GIB)).await.expect("create");
    let info = d.info("v.raw").await.expect("info").expect("present");
    assert_eq!((info.virtual_size, info.actual_size), (GIB, 0));
    let meta = std::fs::metadata(d.dir().join("v.raw")).expect("metadata");
    assert_eq!(meta.mode() & 0o777, 0o600);
}

#[tokio::test]
async fn leftover_temporaries_are_invisible_and_cleaned() {
    let (_tmp, d) = driver(FileOptions::default()).await;
    // A crash while writing leaves half an image under the temporary name.
    for leftover in [".a.qcow2.tmp", ".b.raw.tmp", ".c.qcow2.tmp"] {
        std::fs::write(d.dir().join(leftover), b"QFI\xfb half").expect("write leftover");
    }
    // Files that are not ours are ignored too.
    std::fs::write(d.dir().join("notes.txt"), b"hello").expect("write");
    std::fs::create_dir(d.dir().join("sub.qcow2")).expect("mkdir");
    assert_eq!(d.list().await.expect("list"), Vec::<String>::new());
    assert_eq!(
        d.temporaries().await.expect("temporaries"),
        [".a.qcow2.tmp", ".b.raw.tmp", ".c.qcow2.tmp"]
    );

    // The next create of a name replaces its leftover; delete removes one.
    d.create(&spec("a.qcow2", MIB)).await.expect("create");
    d.delete("b.raw").await.expect("delete");
    assert_eq!(
        d.temporaries().await.expect("temporaries"),
        [".c.qcow2.tmp"]
    );
    assert_eq!(d.list().await.expect("list"), ["a.qcow2"]);
    check_with_qemu(&d, "a.qcow2", MIB).await;

    // The repository check removes the rest, and only temporaries.
    d.remove_temporary(".c.qcow2.tmp").await.expect("remove");
    d.remove_temporary(".c.qcow2.tmp")
        .await
        .expect("remove again");
    for not_a_temporary in ["a.qcow2", "notes.txt", "../x.qcow2.tmp", ".x.tmp"] {
        let err = d.remove_temporary(not_a_temporary).await;
        assert!(
            matches!(err, Err(StorageError::InvalidName(_))),
            "{not_a_temporary}: {err:?}"
        );
    }
    assert!(d.temporaries().await.expect("temporaries").is_empty());
    assert!(d.dir().join("notes.txt").exists());
}

#[tokio::test]
async fn foreign_and_broken_files_are_reported_not_trusted() {
    let (_tmp, d) = driver(FileOptions::default()).await;
    // A raw file named as qcow2 is no qcow2 image, whatever the guest wrote.
    std::fs::write(d.dir().join("fake.qcow2"), vec![0u8; 4096]).expect("write");
    let err = d.info("fake.qcow2").await;
    assert!(matches!(err, Err(StorageError::BadImage { .. })), "{err:?}");
    let err = d.create(&spec("fake.qcow2", 4096)).await;
    assert!(matches!(err, Err(StorageError::Mismatch { .. })), "{err:?}");
    let err = d.extend("fake.qcow2", GIB).await;
    assert!(matches!(err, Err(StorageError::BadImage { .. })), "{err:?}");
    d.delete("fake.qcow2").await.expect("delete");

    // A qcow2 header in a raw image is data: the raw image stays raw.
    let bytes = qcow2::blank_layout(GIB).expect("layout").to_bytes();
    let mut raw = bytes.clone();
    raw.resize(MIB as usize, 0);
    std::fs::write(d.dir().join("guest.raw"), &raw).expect("write");
    let info = d.info("guest.raw").await.expect("info").expect("present");
    assert_eq!((info.format, info.virtual_size), (Format::Raw, MIB));

    // A directory under an image's name is not an image.
    std::fs::create_dir(d.dir().join("dir.raw")).expect("mkdir");
    let err = d.info("dir.raw").await;
    assert!(matches!(err, Err(StorageError::BadImage { .. })), "{err:?}");
}

/// An overlay that names its base by absolute path (as `qemu-img create -b
/// /abs/path` makes it) is not one of ours, even when the path is inside the
/// backend: `info` refuses it, `qemu_info` reports it, `create` over it is a
/// mismatch.
#[tokio::test]
async fn an_overlay_by_absolute_path_is_refused() {
    let (_tmp, d) = driver(FileOptions::default()).await;
    d.create(&spec("base.qcow2", MIB)).await.expect("create");
    let base = d.dir().join("base.qcow2");
    let overlay = d.dir().join("overlay.qcow2");
    let (base, overlay) = (
        base.to_str().expect("utf-8"),
        overlay.to_str().expect("utf-8"),
    );
    qemu::qemu_img_for_tests(&[
        "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, overlay,
    ])
    .await
    .expect("create overlay");
    let err = d.info("overlay.qcow2").await;
    assert!(matches!(err, Err(StorageError::BadImage { .. })), "{err:?}");
    let info = d
        .qemu_info("overlay.qcow2")
        .await
        .expect("qemu info")
        .expect("present");
    assert_eq!(info.backing_file.as_deref(), Some(base));
    assert_eq!(info.backing, None);
    let err = d.create(&spec("overlay.qcow2", MIB)).await;
    assert!(matches!(err, Err(StorageError::Mismatch { .. })), "{err:?}");
}

/// An overlay records its base by bare name and pinned format, so the whole
/// backend directory can move: qemu still finds the base next to the overlay.
/// The base is mode 0400 and qemu reads it as a backing file; the overlay is
/// 0600. The overlay is the file `qemu-img create -F -b` would write, and
/// costs no more on a 100 GiB base than on a 1 MiB one (it reads no data).
#[tokio::test]
async fn overlays_are_relative_and_survive_a_move() {
    let (tmp, d) = driver(FileOptions::default()).await;
    d.create(&spec("base.raw", 100 * GIB))
        .await
        .expect("create");
    qemu::write_pattern(&d.dir().join("base.raw"), Format::Raw, 0, MIB, 0x42)
        .await
        .expect("write");
    d.make_immutable("base.raw").await.expect("immutable");
    let mode = |name: &str, dir: &Path| {
        std::fs::metadata(dir.join(name)).expect("metadata").mode() & 0o777
    };
    assert_eq!(mode("base.raw", d.dir()), 0o400);
    d.create_overlay("base.raw", &spec("ov.qcow2", 100 * GIB))
        .await
        .expect("overlay");
    assert_eq!(mode("ov.qcow2", d.dir()), 0o600);
    let header = qcow2::read_header(&d.dir().join("ov.qcow2")).expect("header");
    assert_eq!(header.backing_file.as_deref(), Some("base.raw"));
    assert_eq!(header.backing_format.as_deref(), Some("raw"));
    assert!(d.check("ov.qcow2").await.expect("check").is_clean());
    let by_qemu = tmp.path().join("by-qemu.qcow2");
    // qemu-img opens the base it is given: a blank one of the same name will do.
    qemu::create(&tmp.path().join("base.raw"), Format::Raw, 100 * GIB)
        .await
        .expect("base for qemu-img");
    qemu::create_overlay(&by_qemu, 100 * GIB, "base.raw", Format::Raw)
        .await
        .expect("qemu-img create -b");
    assert!(
        std::fs::read(&by_qemu).expect("read")
            == std::fs::read(d.dir().join("ov.qcow2")).expect("read")
    );

    // Move the backend directory and open it again.
    let moved = tmp.path().join("moved");
    std::fs::rename(d.dir(), &moved).expect("move");
    let d = FileDriver::new(&moved, Failpoints::new(), FileOptions::default())
        .await
        .expect("driver");
    let chain = d.chain("ov.qcow2").await.expect("chain");
    assert_eq!(chain.len(), 2);
    assert!(chain[1].immutable);
    let ov = moved.join("ov.qcow2");
    assert!(
        qemu::read_pattern(&ov, Format::Qcow2, 0, MIB, 0x42)
            .await
            .expect("read through the moved chain")
    );
    // A copy of the moved chain is whole.
    d.copy_from("ov.qcow2", &spec("flat.qcow2", 100 * GIB), &|_| {})
        .await
        .expect("copy");
    assert!(
        qemu::read_pattern(&moved.join("flat.qcow2"), Format::Qcow2, 0, MIB, 0x42)
            .await
            .expect("read")
    );
}

/// The qemu-img fallback makes the same overlays, through the same checks.
#[tokio::test]
async fn overlays_by_qemu_img_are_the_same() {
    let (_a, native) = driver(FileOptions::default()).await;
    let (_b, by_qemu) = driver(FileOptions {
        native_qcow2: false,
        ..FileOptions::default()
    })
    .await;
    for d in [&native, &by_qemu] {
        d.create(&spec("base.qcow2", GIB)).await.expect("create");
        let err = d.create_overlay("base.qcow2", &spec("ov.qcow2", GIB)).await;
        assert!(matches!(err, Err(StorageError::MutableBase(_))), "{err:?}");
        d.make_immutable("base.qcow2").await.expect("immutable");
        d.create_overlay("base.qcow2", &spec("ov.qcow2", 2 * GIB))
            .await
            .expect("overlay");
        d.create_overlay("base.qcow2", &spec("ov.qcow2", 2 * GIB))
            .await
            .expect("again");
        assert!(d.temporaries().await.expect("temporaries").is_empty());
    }
    let read = |d: &FileDriver| std::fs::read(d.dir().join("ov.qcow2")).expect("read");
    assert!(read(&native) == read(&by_qemu));
}

#[tokio::test]
async fn the_directory_is_created_and_must_be_absolute() {
    let (tmp, d) = driver(FileOptions::default()).await;
    assert!(d.dir().is_dir());
    assert!(d.dir().starts_with(tmp.path()));
    let err = FileDriver::new("relative/dir", Failpoints::new(), FileOptions::default()).await;
    assert!(matches!(err, Err(StorageError::InvalidName(_))), "{err:?}");
    let capacity = d.capacity().await.expect("capacity");
    assert!(
        capacity.total > 0 && capacity.free <= capacity.total,
        "{capacity:?}"
    );
}

#[tokio::test]
async fn concurrent_creates_of_one_name_make_one_image() {
    let (_tmp, d) = driver(FileOptions {
        fsync: false,
        ..FileOptions::default()
    })
    .await;
    let d = Arc::new(d);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let d = Arc::clone(&d);
            tokio::spawn(async move { d.create(&spec("v.qcow2", GIB)).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("join").expect("create");
    }
    assert_eq!(d.list().await.expect("list"), ["v.qcow2"]);
    assert!(d.temporaries().await.expect("temporaries").is_empty());
    check_with_qemu(&d, "v.qcow2", GIB).await;
}

/// A copy reads the same as its source (qemu-img compare), at its own size
/// and format; it stays sparse, private and clean, and the source is not
/// changed. Both the native and the qemu-img blank paths are covered.
#[tokio::test]
async fn copies_carry_the_data_and_stay_sparse() {
    for native_qcow2 in [true, false] {
        let (_tmp, d) = driver(FileOptions {
            fsync: true,
            native_qcow2,
        })
        .await;
        for source in ["src.qcow2", "src.raw"] {
            let source_format = format_of_name(source).expect("name");
            d.create(&spec(source, GIB)).await.expect("create");
            let path = d.dir().join(source);
            // 4 MiB of 0xab at the start, 1 MiB of 0xcd in the middle, and
            // a last sector: the rest reads as zeroes.
            for (offset, len, pattern) in [
                (0, 4 * MIB, 0xab),
                (512 * MIB, MIB, 0xcd),
                (GIB - 512, 512, 0x5a),
            ] {
                qemu::write_pattern(&path, source_format, offset, len, pattern)
                    .await
                    .expect("write pattern");
            }
            let before = std::fs::read(&path).expect("read source");
            for (copy, size) in [("copy.qcow2", GIB), ("copy.raw", 2 * GIB + 512)] {
                d.copy_from(source, &spec(copy, size), &|_| {})
                    .await
                    .unwrap_or_else(|e| panic!("{source} → {copy}: {e:?}"));
                check_with_qemu(&d, copy, size).await;
                let copy_path = d.dir().join(copy);
                let copy_format = format_of_name(copy).expect("name");
                assert!(
                    qemu::compare(&path, source_format, &copy_path, copy_format)
                        .await
                        .expect("compare"),
                    "{source} → {copy} differ"
                );
                let info = d.info(copy).await.expect("info").expect("present");
                assert!(
                    info.actual_size < 16 * MIB,
                    "{source} → {copy} is not sparse: {info:?}"
                );
                let meta = std::fs::metadata(&copy_path).expect("metadata");
                assert_eq!(meta.mode() & 0o777, 0o600, "{copy}");
                d.delete(copy).await.expect("delete");
            }
            // A copy that differs is told apart.
            d.create(&spec("blank.qcow2", GIB)).await.expect("create");
            let blank = d.dir().join("blank.qcow2");
            assert!(
                !qemu::compare(&path, source_format, &blank, Format::Qcow2)
                    .await
                    .expect("compare")
            );
            d.delete("blank.qcow2").await.expect("delete");
            assert!(
                std::fs::read(&path).expect("read source") == before,
                "{source} changed"
            );
            d.delete(source).await.expect("delete");
            assert!(d.temporaries().await.expect("temporaries").is_empty());
        }
    }
}

#[tokio::test]
async fn a_leftover_of_an_interrupted_copy_is_replaced() {
    let (_tmp, d) = driver(FileOptions::default()).await;
    d.create(&spec("src.raw", MIB)).await.expect("create");
    qemu::write_pattern(&d.dir().join("src.raw"), Format::Raw, 0, MIB, 7)
        .await
        .expect("write");
    std::fs::write(d.dir().join(".c.qcow2.tmp"), b"QFI\xfb half").expect("leftover");
    d.copy_from("src.raw", &spec("c.qcow2", 2 * MIB), &|_| {})
        .await
        .expect("copy");
    assert!(d.temporaries().await.expect("temporaries").is_empty());
    assert!(
        qemu::compare(
            &d.dir().join("src.raw"),
            Format::Raw,
            &d.dir().join("c.qcow2"),
            Format::Qcow2
        )
        .await
        .expect("compare")
    );
    // A copy that fails in qemu-img leaves no temporary either.
    std::fs::write(d.dir().join("broken.qcow2"), b"QFI\xfb").expect("write");
    let err = d
        .copy_from("broken.qcow2", &spec("d.qcow2", MIB), &|_| {})
        .await;
    assert!(err.is_err(), "{err:?}");
    assert!(d.temporaries().await.expect("temporaries").is_empty());
    assert_eq!(
        d.list().await.expect("list"),
        ["broken.qcow2", "c.qcow2", "src.raw"]
    );
}

#[tokio::test]
async fn a_long_call_on_one_name_holds_up_no_other_name() {
    let (_tmp, d) = driver(FileOptions::default()).await;
    let held = d.lock("a.qcow2").await;
    // Every other name goes on (with a lock shared by several names, one of
    // these would wait for ever).
    for i in 0..200 {
        drop(d.lock(&format!("v{i}.raw")).await);
    }
    drop(held);
    // Entries go once nobody holds or waits.
    assert!(d.locks.map().is_empty());
}

#[test]
fn rename_never_replaces() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::write(&a, b"a").expect("write");
    std::fs::write(&b, b"b").expect("write");
    let err = rename_noreplace(&a, &b).expect_err("must not replace");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read(&b).expect("read"), b"b");
    std::fs::remove_file(&b).expect("remove");
    rename_noreplace(&a, &b).expect("rename");
    assert_eq!(std::fs::read(&b).expect("read"), b"a");
    assert!(!a.exists());
}
