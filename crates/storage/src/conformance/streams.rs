//! Imports from and exports to files outside the backend, on both drivers.

use std::path::Path;

use super::{Env, Kind, MIB, assert_err, both, spec};
use crate::{Format, StorageError, qemu};

both!(
    import_export_round_trip,
    exports_flatten_chains,
    import_refusals,
    export_refusals,
    untrusted_imports,
);

/// The data runs written into every outside source: (offset, length, byte).
const RUNS: &[(u64, u64, u8)] = &[
    (0, MIB, 0x71),
    (3 * MIB, 512, 0x72),
    (4 * MIB - 512, 512, 0x73),
];

/// An outside image of `format` and 4 MiB holding [`RUNS`], made with qemu-img.
async fn source(path: &Path, format: Format) {
    qemu::create(path, format, 4 * MIB).await.expect("create");
    for &(offset, len, byte) in RUNS {
        qemu::write_pattern(path, format, offset, len, byte)
            .await
            .expect("write");
    }
}

async fn outside_reads(path: &Path, format: Format, runs: &[(u64, u64, u8)]) {
    for &(offset, len, byte) in runs {
        assert!(
            qemu::read_pattern(path, format, offset, len, byte)
                .await
                .expect("read"),
            "{}: {len} bytes at {offset} are not {byte:#x}",
            path.display()
        );
    }
}

/// An outside file imported (into either format) reads as the file; exported
/// again (to either format) it compares equal to the original with
/// `qemu-img compare`. Re-runs are success, other shapes `Mismatch`; the
/// results are sparse and no temporary is left on either side.
async fn import_export_round_trip(kind: Kind) {
    let env = Env::new(kind).await;
    let d = &env.d;
    for source_format in [Format::Qcow2, Format::Raw] {
        let src = env.outside(&format!("src.{source_format}"));
        source(&src, source_format).await;
        for image in ["imported.qcow2", "imported.raw"] {
            let seen = std::sync::Mutex::new(Vec::new());
            let progress = |p: u8| seen.lock().expect("lock").push(p);
            d.import_from(&spec(image, 8 * MIB), &src, source_format, &progress)
                .await
                .unwrap_or_else(|e| panic!("{source_format} → {image}: {e:?}"));
            let seen = std::mem::take(&mut *seen.lock().expect("lock"));
            assert_eq!(seen.last(), Some(&100), "{image}: {seen:?}");
            let info = d.info(image).await.expect("info").expect("present");
            assert_eq!(
                (info.virtual_size, info.backing.as_deref()),
                (8 * MIB, None)
            );
            // About 1 MiB of data: sparse, not 8 MiB.
            assert!(
                info.actual_size < 4 * MIB,
                "{image} is not sparse: {info:?}"
            );
            for &(offset, len, byte) in RUNS {
                assert!(d.reads_as(image, offset, len, byte).await.expect("read"));
            }
            assert!(d.reads_as(image, 4 * MIB, 4 * MIB, 0).await.expect("read"));
            d.import_from(&spec(image, 8 * MIB), &src, source_format, &|_| {})
                .await
                .expect("re-run");
            assert_err!(
                d.import_from(&spec(image, 16 * MIB), &src, source_format, &|_| {})
                    .await,
                StorageError::Mismatch { .. }
            );

            for dest_format in [Format::Qcow2, Format::Raw] {
                let dest = env.outside(&format!("out.{dest_format}"));
                d.export_to(image, &dest, dest_format, &|_| {})
                    .await
                    .expect("export");
                d.export_to(image, &dest, dest_format, &|_| {})
                    .await
                    .expect("re-run");
                assert!(
                    qemu::compare(&src, source_format, &dest, dest_format)
                        .await
                        .expect("compare"),
                    "{source_format} → {image} → {dest_format} differ"
                );
                let info = qemu::info(&dest, dest_format).await.expect("info");
                assert_eq!(info.virtual_size, 8 * MIB);
                assert!(!info.refers_to_other_files());
                assert!(info.actual_size < 4 * MIB, "not sparse: {info:?}");
                std::fs::remove_file(&dest).expect("remove");
            }
            d.delete(image).await.expect("delete");
        }
        std::fs::remove_file(&src).expect("remove");
    }
    assert_eq!(env.files(), (Vec::new(), Vec::new()));
}

/// An export of an overlay holds the whole chain's data and refers to no
/// file; imported back it reads the same as the overlay.
async fn exports_flatten_chains(kind: Kind) {
    let env = Env::new(kind).await;
    let d = &env.d;
    d.create(&spec("base.qcow2", 4 * MIB))
        .await
        .expect("create");
    d.write("base.qcow2", 0, 2 * MIB, 0x81)
        .await
        .expect("write");
    d.make_immutable("base.qcow2").await.expect("immutable");
    d.create_overlay("base.qcow2", &spec("ov.qcow2", 8 * MIB))
        .await
        .expect("overlay");
    d.write("ov.qcow2", MIB, MIB, 0x82).await.expect("write");
    d.write("ov.qcow2", 6 * MIB, MIB, 0x83)
        .await
        .expect("write");
    for format in [Format::Qcow2, Format::Raw] {
        let dest = env.outside(&format!("ov.{format}"));
        d.export_to("ov.qcow2", &dest, format, &|_| {})
            .await
            .expect("export");
        let info = qemu::info(&dest, format).await.expect("info");
        assert!(!info.refers_to_other_files(), "{info:?}");
        outside_reads(
            &dest,
            format,
            &[
                (0, MIB, 0x81),
                (MIB, MIB, 0x82),
                (2 * MIB, 4 * MIB, 0),
                (6 * MIB, MIB, 0x83),
            ],
        )
        .await;
        let back = format!("back.{format}");
        d.import_from(&spec(&back, 8 * MIB), &dest, format, &|_| {})
            .await
            .expect("import");
        assert!(d.same_data("ov.qcow2", &back).await.expect("compare"));
    }
}

/// Outside files that refer to other files are refused; so are relative,
/// absent and too large sources. Nothing is made.
async fn import_refusals(kind: Kind) {
    let env = Env::new(kind).await;
    let d = &env.d;
    let target = spec("v.qcow2", 8 * MIB);
    let base = env.outside("base.qcow2");
    source(&base, Format::Qcow2).await;
    let layered = env.outside("layered.qcow2");
    let data = env.outside("data.raw");
    let with_data = env.outside("with-data.qcow2");
    let s = |p: &Path| p.to_str().expect("utf-8").to_owned();
    qemu::qemu_img_for_tests(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        "qcow2",
        "-b",
        &s(&base),
        &s(&layered),
        "4M",
    ])
    .await
    .expect("create layered");
    let option = format!("data_file={}", s(&data));
    qemu::qemu_img_for_tests(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        &option,
        &s(&with_data),
        "4M",
    ])
    .await
    .expect("create with a data file");
    for refers in [&layered, &with_data] {
        assert_err!(
            d.import_from(&target, refers, Format::Qcow2, &|_| {}).await,
            StorageError::BadImage { .. }
        );
    }
    assert_err!(
        d.import_from(&target, Path::new("base.qcow2"), Format::Qcow2, &|_| {})
            .await,
        StorageError::InvalidName(_)
    );
    assert_err!(
        d.import_from(&target, &env.outside("gone.qcow2"), Format::Qcow2, &|_| {})
            .await,
        StorageError::NotFound(_)
    );
    assert_err!(
        d.import_from(&spec("v.qcow2", 2 * MIB), &base, Format::Qcow2, &|_| {})
            .await,
        StorageError::InvalidSize { .. }
    );
    // A qcow2 file given as raw is raw: its bytes, never probed, never followed.
    d.import_from(&spec("as-raw.raw", 8 * MIB), &layered, Format::Raw, &|_| {})
        .await
        .expect("import as raw");
    assert_eq!(d.chain("as-raw.raw").await.expect("chain").len(), 1);
    assert!(!d.reads_as("as-raw.raw", 0, MIB, 0x71).await.expect("read"));
    assert_eq!(d.list().await.expect("list"), ["as-raw.raw"]);
    assert!(env.files().0.iter().all(|f| !f.ends_with(".tmp")));
}

/// Exports go to a new absolute path outside the backend; a different file
/// already there is a mismatch and stays as it was.
async fn export_refusals(kind: Kind) {
    let env = Env::new(kind).await;
    let d = &env.d;
    d.create(&spec("v.raw", 4 * MIB)).await.expect("create");
    assert_err!(
        d.export_to("v.raw", Path::new("out.raw"), Format::Raw, &|_| {})
            .await,
        StorageError::InvalidName(_)
    );
    assert_err!(
        d.export_to("gone.raw", &env.outside("out.raw"), Format::Raw, &|_| {})
            .await,
        StorageError::NotFound(_)
    );
    let other = env.outside("other.raw");
    std::fs::write(&other, vec![7u8; 4096]).expect("write");
    assert_err!(
        d.export_to("v.raw", &other, Format::Raw, &|_| {}).await,
        StorageError::Mismatch { .. }
    );
    assert_eq!(std::fs::read(&other).expect("read"), vec![7u8; 4096]);
    if kind == Kind::File {
        // Never into the backend itself, under any name.
        let inside = env.tmp.path().join("backend").join("copy.raw");
        assert_err!(
            d.export_to("v.raw", &inside, Format::Raw, &|_| {}).await,
            StorageError::InvalidName(_)
        );
        assert_eq!(d.list().await.expect("list"), ["v.raw"]);
    }
    assert_eq!(env.files().1, ["other.raw"]);
}

/// Uploaded files go through the inspector and limited qemu-img before their
/// data is read: honest ones (qcow2, VMDK, raw) are imported and read as
/// their source; hostile ones are `Refused` (or `InvalidSize`) and leave no
/// image and no temporary behind.
async fn untrusted_imports(kind: Kind) {
    use crate::inspect::DiskFormat;
    use crate::qemu::untrusted::Limits;
    let env = Env::new(kind).await;
    let d = &env.d;
    let qcow2 = env.outside("up.qcow2");
    source(&qcow2, Format::Qcow2).await;
    let vmdk = env.outside("up.vmdk");
    qemu::img::qemu_img_for_tests(&[
        "convert",
        "-q",
        "-f",
        "qcow2",
        "-O",
        "vmdk",
        "-o",
        "subformat=streamOptimized",
        qcow2.to_str().expect("utf-8"),
        vmdk.to_str().expect("utf-8"),
    ])
    .await
    .expect("convert to vmdk");
    let raw = env.outside("up.raw");
    source(&raw, Format::Raw).await;
    for (file, format, image) in [
        (&qcow2, DiskFormat::Qcow2, "from-qcow2.qcow2"),
        (&vmdk, DiskFormat::Vmdk, "from-vmdk.raw"),
        (&raw, DiskFormat::Raw, "from-raw.qcow2"),
    ] {
        let seen = d
            .import_untrusted(
                &spec(image, 8 * MIB),
                file,
                format,
                Limits::default(),
                &|_| {},
            )
            .await
            .unwrap_or_else(|e| panic!("{format} → {image}: {e:?}"));
        assert_eq!(seen.virtual_size, Some(4 * MIB), "{image}");
        for &(offset, len, byte) in RUNS {
            assert!(
                d.reads_as(image, offset, len, byte).await.expect("read"),
                "{image}"
            );
        }
    }

    let backing = env.outside("backing.qcow2");
    qemu::img::qemu_img_for_tests(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-u",
        "-b",
        "/etc/passwd",
        "-F",
        "raw",
        backing.to_str().expect("utf-8"),
        "1M",
    ])
    .await
    .expect("create");
    let before = d.list().await.expect("list");
    for (file, format, why) in [
        (&backing, DiskFormat::Qcow2, "a backing file"),
        (&qcow2, DiskFormat::Raw, "qcow2 declared raw"),
        (&raw, DiskFormat::Qcow2, "raw declared qcow2"),
    ] {
        let err = d
            .import_untrusted(
                &spec("hostile.qcow2", 8 * MIB),
                file,
                format,
                Limits::default(),
                &|_| {},
            )
            .await;
        assert!(
            matches!(err, Err(StorageError::Refused { .. })),
            "{why}: {err:?}"
        );
    }
    // A virtual size beyond the volume is refused before any data moves.
    assert_err!(
        d.import_untrusted(
            &spec("small.qcow2", MIB),
            &qcow2,
            DiskFormat::Qcow2,
            Limits::default(),
            &|_| {}
        )
        .await,
        StorageError::InvalidSize { .. }
    );
    assert_eq!(d.list().await.expect("list"), before);
    assert!(
        env.files().0.iter().all(|f| !f.starts_with('.')),
        "{:?}",
        env.files()
    );
}
