//! Every failpoint, on both drivers: a crash there, or an error there, in a
//! sequence that uses every operation, then a re-run of the step that failed,
//! as the flow engine would. The sequence must finish with the right data and
//! leave nothing behind, not even a temporary file on either side.

use std::sync::Arc;

use scoria_failpoints::Action;

use super::{Env, GIB, Kind, MIB, both, size_of, spec};
use crate::{Format, StorageError};

both!(
    error_after_create_leaves_a_durable_image,
    crash_before_create_leaves_nothing,
    crash_anywhere_then_rerun,
    error_after_anything_then_rerun,
);

/// `storage.create.after` fails once: the image is nonetheless there, and a re-run
/// of the create succeeds without writing it again.
async fn error_after_create_leaves_a_durable_image(kind: Kind) {
    let env = Env::new(kind).await;
    let (fp, d) = (&env.fp, env.driver());
    for name in ["v.qcow2", "v.raw"] {
        fp.arm("storage.create.after", Action::Error, 1, Some(1));
        let err = d.create(&spec(name, GIB)).await;
        assert!(matches!(err, Err(StorageError::Failpoint(_))), "{err:?}");
        assert_eq!(size_of(d, name).await, Some(GIB));
        d.create(&spec(name, GIB)).await.expect("re-run");
        assert_eq!(size_of(d, name).await, Some(GIB));
    }
    fp.arm("storage.copy.after", Action::Error, 1, Some(1));
    let err = d.copy_from("v.qcow2", &spec("c.raw", GIB), &|_| {}).await;
    assert!(matches!(err, Err(StorageError::Failpoint(_))), "{err:?}");
    assert_eq!(size_of(d, "c.raw").await, Some(GIB));
    d.copy_from("v.qcow2", &spec("c.raw", GIB), &|_| {})
        .await
        .expect("re-run");
    d.delete("c.raw").await.expect("delete");

    fp.arm("storage.delete.after", Action::Error, 1, Some(1));
    assert!(d.delete("v.raw").await.is_err());
    assert_eq!(size_of(d, "v.raw").await, None);
    d.delete("v.raw").await.expect("re-run");

    fp.arm("storage.extend.after", Action::Error, 1, Some(1));
    assert!(d.extend("v.qcow2", 2 * GIB).await.is_err());
    assert_eq!(size_of(d, "v.qcow2").await, Some(2 * GIB));
    d.extend("v.qcow2", 2 * GIB).await.expect("re-run");
}

/// A crash before anything is written leaves nothing behind.
async fn crash_before_create_leaves_nothing(kind: Kind) {
    let env = Env::new(kind).await;
    let (fp, d) = (&env.fp, env.driver());
    fp.arm("storage.create.before", Action::Crash, 1, None);
    let err = d.create(&spec("v.qcow2", GIB)).await.expect_err("crashed");
    assert!(err.is_crash(), "{err:?}");
    // A dead instance writes nothing more.
    let err = d.delete("v.qcow2").await.expect_err("still dead");
    assert!(err.is_crash(), "{err:?}");
    fp.clear();
    assert_eq!(size_of(d, "v.qcow2").await, None);
    assert!(d.list().await.expect("list").is_empty());
}

/// For every failpoint: crash there, "restart" (clear the failpoints), resume
/// with the step that crashed.
async fn crash_anywhere_then_rerun(kind: Kind) {
    for &point in crate::FAILPOINTS {
        for variant in &VARIANTS {
            run(kind, point, Action::Crash, variant).await;
        }
    }
}

/// For every failpoint that follows a durable change: fail there once, then
/// retry the step; the retry finds the change made and succeeds.
async fn error_after_anything_then_rerun(kind: Kind) {
    for &point in crate::FAILPOINTS.iter().filter(|p| p.ends_with(".after")) {
        for variant in &VARIANTS {
            run(kind, point, Action::Error, variant).await;
        }
    }
}

/// The names of one run of the sequence: a base, the copy of an overlay on it
/// (in the other format), the format of the export, the re-imported image.
struct Variant {
    base: &'static str,
    copy: &'static str,
    export: Format,
    imported: &'static str,
}

const VARIANTS: [Variant; 2] = [
    Variant {
        base: "base.qcow2",
        copy: "copy.raw",
        export: Format::Raw,
        imported: "imported.qcow2",
    },
    Variant {
        base: "base.raw",
        copy: "copy.qcow2",
        export: Format::Qcow2,
        imported: "imported.raw",
    },
];

const OVERLAY: &str = "ov.qcow2";
const TOP: &str = "top.qcow2";
const STEPS: usize = 22;

/// Step `i` of the sequence: create, write, make immutable, undo that and
/// make it immutable again (a snapshot that failed, then one that did not),
/// layer, write the overlay, freeze it, layer on it, merge it into that top
/// layer and undo the merge (the repository check's merge), drop the top,
/// copy (flatten) the overlay, extend the copy, export it, import the
/// export, check the data, delete everything.
async fn step(env: &Env, v: &Variant, i: usize) -> crate::Result<()> {
    let d = &env.d;
    let out = env.outside(&format!("out.{}", v.export));
    match i {
        0 => d.create(&spec(v.base, 4 * MIB)).await,
        1 => d.write(v.base, 0, MIB, 0x11).await,
        2 => d.make_immutable(v.base).await,
        3 => d.make_mutable(v.base).await,
        4 => d.make_immutable(v.base).await,
        5 => d.create_overlay(v.base, &spec(OVERLAY, 8 * MIB)).await,
        6 => d.write(OVERLAY, 6 * MIB, MIB, 0x22).await,
        7 => d.make_immutable(OVERLAY).await,
        8 => d.create_overlay(OVERLAY, &spec(TOP, 8 * MIB)).await,
        9 => d.merge_base(TOP, OVERLAY).await,
        10 => d.unmerge_base(TOP, OVERLAY).await,
        11 => {
            for (offset, len, byte) in [(0, MIB, 0x11), (MIB, 5 * MIB, 0), (6 * MIB, MIB, 0x22)] {
                assert!(
                    d.reads_as(TOP, offset, len, byte).await.expect("read"),
                    "{TOP}: {len} bytes at {offset}"
                );
            }
            Ok(())
        }
        // A step of its own: a crash in the delete runs it again, and a
        // re-run must not read what it deleted.
        12 => d.delete(TOP).await,
        13 => d.copy_from(OVERLAY, &spec(v.copy, 8 * MIB), &|_| {}).await,
        14 => d.extend(v.copy, 16 * MIB).await,
        15 => d.export_to(v.copy, &out, v.export, &|_| {}).await,
        16 => {
            d.import_from(&spec(v.imported, 16 * MIB), &out, v.export, &|_| {})
                .await
        }
        17 => {
            for image in [OVERLAY, v.copy, v.imported] {
                for (offset, len, byte) in [(0, MIB, 0x11), (MIB, 5 * MIB, 0), (6 * MIB, MIB, 0x22)]
                {
                    assert!(
                        d.reads_as(image, offset, len, byte).await.expect("read"),
                        "{image}: {len} bytes at {offset}"
                    );
                }
            }
            assert!(d.same_data(v.copy, v.imported).await.expect("compare"));
            Ok(())
        }
        18 => d.delete(v.imported).await,
        19 => d.delete(v.copy).await,
        20 => d.delete(OVERLAY).await,
        _ => d.delete(v.base).await,
    }
}

/// Arm `point` with `action` once, run the sequence to the failure, check what
/// is there, clear the failpoints and run the rest from the failed step.
async fn run(kind: Kind, point: &str, action: Action, v: &Variant) {
    let env = Env::new(kind).await;
    env.fp.arm(point, action, 1, Some(1));
    let mut failed = None;
    for i in 0..STEPS {
        if let Err(e) = step(&env, v, i).await {
            assert!(matches!(e, StorageError::Failpoint(_)), "{point}: {e:?}");
            assert_eq!(e.is_crash(), action == Action::Crash, "{point}: {e:?}");
            failed = Some(i);
            break;
        }
    }
    let failed = failed.unwrap_or_else(|| panic!("{point} was never reached"));
    env.fp.clear();
    // What the failure left is a complete image or nothing, never a torn one.
    let d = Arc::clone(&env.d);
    for (name, sizes) in [
        (v.base, &[4 * MIB][..]),
        (OVERLAY, &[8 * MIB]),
        (TOP, &[8 * MIB]),
        (v.copy, &[8 * MIB, 16 * MIB]),
        (v.imported, &[16 * MIB]),
    ] {
        if let Some(info) = d
            .info(name)
            .await
            .unwrap_or_else(|e| panic!("{point}: {name}: {e:?}"))
        {
            assert!(sizes.contains(&info.virtual_size), "{point}: {info:?}");
        }
    }
    for i in failed..STEPS {
        step(&env, v, i)
            .await
            .unwrap_or_else(|e| panic!("{point}: step {i} re-run: {e:?}"));
    }
    assert!(d.list().await.expect("list").is_empty(), "{point}");
    let out = format!("out.{}", v.export);
    assert_eq!(env.files(), (Vec::new(), vec![out]), "{point}");
}
