//! Immutability, overlays, chains, foreign references and copies of layered
//! images, on both drivers.

use super::{Env, Foreign, GIB, KIB, Kind, MIB, assert_err, both, spec};
use crate::StorageError;

both!(
    immutability,
    overlays_read_through_and_write_only_on_top,
    overlay_rules,
    foreign_references_are_refused,
    broken_chains_are_refused,
    layered_copies_are_independent,
    merging_a_base_keeps_what_the_overlay_reads,
);

/// An immutable image can be read, copied and deleted, never extended or
/// written; making it immutable again is success.
async fn immutability(kind: Kind) {
    let env = Env::new(kind).await;
    let d = &env.d;
    for name in ["v.qcow2", "v.raw"] {
        d.create(&spec(name, MIB)).await.expect("create");
        d.write(name, 0, 64 * KIB, 0x5a).await.expect("write");
        assert!(
            !d.info(name)
                .await
                .expect("info")
                .expect("present")
                .immutable
        );
        d.make_immutable(name).await.expect("make immutable");
        d.make_immutable(name).await.expect("again");
        let info = d.info(name).await.expect("info").expect("present");
        assert!(info.immutable, "{name}: {info:?}");
        let before = d.fingerprint(name).await;

        assert_err!(d.extend(name, 2 * MIB).await, StorageError::Immutable(_));
        assert_err!(d.extend(name, MIB).await, StorageError::Immutable(_));
        assert_err!(d.write(name, 0, 512, 1).await, StorageError::Immutable(_));
        assert!(d.fingerprint(name).await == before, "{name} changed");
        assert!(d.reads_as(name, 0, 64 * KIB, 0x5a).await.expect("read"));

        // Until something is layered on it, a freeze can be undone: the image
        // is written and extended again, then frozen again.
        d.make_mutable(name).await.expect("make mutable");
        d.make_mutable(name).await.expect("again");
        assert!(
            !d.info(name)
                .await
                .expect("info")
                .expect("present")
                .immutable
        );
        d.extend(name, 2 * MIB).await.expect("extend once mutable");
        d.write(name, MIB, 512, 0x33)
            .await
            .expect("write once mutable");
        assert!(d.reads_as(name, 0, 64 * KIB, 0x5a).await.expect("read"));
        d.make_immutable(name).await.expect("make immutable again");
        let before = d.fingerprint(name).await;

        // A copy is a new, mutable image with the same data.
        let copy = format!("copy-of-{name}");
        d.copy_from(name, &spec(&copy, 2 * MIB), &|_| {})
            .await
            .expect("copy");
        let info = d.info(&copy).await.expect("info").expect("present");
        assert!(!info.immutable && info.backing.is_none(), "{info:?}");
        assert!(d.same_data(name, &copy).await.expect("compare"));
        d.extend(&copy, 4 * MIB).await.expect("extend the copy");
        d.write(&copy, 0, 512, 1).await.expect("write the copy");
        assert!(d.fingerprint(name).await == before, "{name} changed");

        d.delete(name).await.expect("delete");
        d.delete(&copy).await.expect("delete");
        assert_eq!(d.info(name).await.expect("info"), None);
    }
    assert_err!(
        d.make_immutable("gone.raw").await,
        StorageError::NotFound(_)
    );
    assert_err!(
        d.make_immutable("../x.raw").await,
        StorageError::InvalidName(_)
    );
    assert_err!(d.make_mutable("gone.raw").await, StorageError::NotFound(_));
    assert_err!(
        d.make_mutable("../x.raw").await,
        StorageError::InvalidName(_)
    );
}

/// An overlay reads its base's data, and zeroes beyond the base's end; what is
/// written to it stays in it, the base is unchanged byte for byte. Overlays
/// stack: a chain of three reads through all of them.
async fn overlays_read_through_and_write_only_on_top(kind: Kind) {
    let env = Env::new(kind).await;
    let d = &env.d;
    for base in ["base.qcow2", "base.raw"] {
        d.create(&spec(base, 4 * MIB)).await.expect("create");
        d.write(base, 0, MIB, 0x11).await.expect("write");
        d.write(base, 3 * MIB, MIB, 0x22).await.expect("write");
        d.make_immutable(base).await.expect("immutable");
        let before = d.fingerprint(base).await;

        d.create_overlay(base, &spec("ov.qcow2", 8 * MIB))
            .await
            .expect("overlay");
        let info = d.info("ov.qcow2").await.expect("info").expect("present");
        assert_eq!(info.backing.as_deref(), Some(base));
        assert_eq!((info.virtual_size, info.immutable), (8 * MIB, false));
        let reads = async |name: &str, runs: &[(u64, u64, u8)]| {
            for &(offset, len, byte) in runs {
                assert!(
                    d.reads_as(name, offset, len, byte).await.expect("read"),
                    "{name} on {base}: {len} bytes at {offset} are not {byte:#x}"
                );
            }
        };
        reads(
            "ov.qcow2",
            &[
                (0, MIB, 0x11),
                (MIB, 2 * MIB, 0),
                (3 * MIB, MIB, 0x22),
                (4 * MIB, 4 * MIB, 0),
            ],
        )
        .await;

        // Writes land in the overlay, over the base's data and beyond its end.
        d.write("ov.qcow2", 512 * KIB, MIB, 0x33)
            .await
            .expect("write");
        d.write("ov.qcow2", 6 * MIB, MIB, 0x44)
            .await
            .expect("write");
        reads(
            "ov.qcow2",
            &[
                (0, 512 * KIB, 0x11),
                (512 * KIB, MIB, 0x33),
                (3 * MIB, MIB, 0x22),
                (6 * MIB, MIB, 0x44),
            ],
        )
        .await;
        reads(base, &[(0, MIB, 0x11), (MIB, 2 * MIB, 0)]).await;
        assert!(d.fingerprint(base).await == before, "{base} changed");

        // A mutable overlay grows like any image; the base does not.
        d.extend("ov.qcow2", 12 * MIB).await.expect("extend");
        reads("ov.qcow2", &[(6 * MIB, MIB, 0x44), (7 * MIB, 5 * MIB, 0)]).await;
        assert!(d.fingerprint(base).await == before, "{base} changed");

        // A second layer on the first, once the first is immutable.
        d.make_immutable("ov.qcow2").await.expect("immutable");
        let middle = d.fingerprint("ov.qcow2").await;
        d.create_overlay("ov.qcow2", &spec("top.qcow2", 16 * MIB))
            .await
            .expect("overlay on overlay");
        d.write("top.qcow2", 7 * MIB, 512, 0x55)
            .await
            .expect("write");
        reads(
            "top.qcow2",
            &[
                (0, 512 * KIB, 0x11),
                (512 * KIB, MIB, 0x33),
                (3 * MIB, MIB, 0x22),
                (6 * MIB, MIB, 0x44),
                (7 * MIB, 512, 0x55),
                (8 * MIB, 8 * MIB, 0),
            ],
        )
        .await;
        let chain: Vec<String> = d
            .chain("top.qcow2")
            .await
            .expect("chain")
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert_eq!(chain, ["top.qcow2", "ov.qcow2", base]);
        assert_eq!(d.chain(base).await.expect("chain").len(), 1);
        assert!(d.fingerprint("ov.qcow2").await == middle);
        assert!(d.fingerprint(base).await == before, "{base} changed");
        for name in ["top.qcow2", "ov.qcow2", base] {
            d.delete(name).await.expect("delete");
        }
    }
    assert!(d.list().await.expect("list").is_empty());
}

/// What `create_overlay` refuses, and that a refusal makes nothing; its
/// idempotency, and that nothing else can be made under an overlay's name.
async fn overlay_rules(kind: Kind) {
    let env = Env::new(kind).await;
    let d = &env.d;
    let ov = spec("ov.qcow2", 8 * MIB);
    d.create(&spec("base.qcow2", 4 * MIB))
        .await
        .expect("create");
    assert_err!(
        d.create_overlay("base.qcow2", &ov).await,
        StorageError::MutableBase(_)
    );
    assert_err!(
        d.create_overlay("gone.qcow2", &ov).await,
        StorageError::NotFound(_)
    );
    assert_eq!(d.list().await.expect("list"), ["base.qcow2"]);

    d.make_immutable("base.qcow2").await.expect("immutable");
    assert_err!(
        d.create_overlay("base.qcow2", &spec("small.qcow2", 2 * MIB))
            .await,
        StorageError::InvalidSize { .. }
    );
    assert_err!(
        d.create_overlay("base.qcow2", &spec("ov.raw", 8 * MIB))
            .await,
        StorageError::Unsupported(_)
    );
    assert_err!(
        d.create_overlay("base.qcow2", &spec("base.qcow2", 8 * MIB))
            .await,
        StorageError::InvalidName(_)
    );
    assert_err!(
        d.create_overlay("../base.qcow2", &ov).await,
        StorageError::InvalidName(_)
    );
    assert_eq!(d.list().await.expect("list"), ["base.qcow2"]);

    // Larger than the base is fine; a re-run is success.
    d.create_overlay("base.qcow2", &ov).await.expect("overlay");
    d.create_overlay("base.qcow2", &ov).await.expect("again");
    assert_err!(
        d.create_overlay("base.qcow2", &spec("ov.qcow2", 16 * MIB))
            .await,
        StorageError::Mismatch { .. }
    );
    d.create(&spec("other.qcow2", 4 * MIB))
        .await
        .expect("create");
    d.make_immutable("other.qcow2").await.expect("immutable");
    assert_err!(
        d.create_overlay("other.qcow2", &ov).await,
        StorageError::Mismatch { .. }
    );
    // An overlay is not a blank image or a copy, and the other way round.
    assert_err!(d.create(&ov).await, StorageError::Mismatch { .. });
    assert_err!(
        d.copy_from("base.qcow2", &ov, &|_| {}).await,
        StorageError::Mismatch { .. }
    );
    d.create(&spec("plain.qcow2", 8 * MIB))
        .await
        .expect("create");
    assert_err!(
        d.create_overlay("base.qcow2", &spec("plain.qcow2", 8 * MIB))
            .await,
        StorageError::Mismatch { .. }
    );
    // An overlay on a raw base is fine too.
    d.create(&spec("r.raw", MIB)).await.expect("create");
    d.make_immutable("r.raw").await.expect("immutable");
    d.create_overlay("r.raw", &spec("on-raw.qcow2", GIB))
        .await
        .expect("overlay on raw");
    assert_eq!(
        d.list().await.expect("list"),
        [
            "base.qcow2",
            "on-raw.qcow2",
            "other.qcow2",
            "ov.qcow2",
            "plain.qcow2",
            "r.raw"
        ]
    );
    if kind == Kind::File {
        let (backend, _) = env.files();
        assert!(backend.iter().all(|f| !f.ends_with(".tmp")), "{backend:?}");
    }
}

/// Images that name a file outside the backend (by path, by protocol, as a
/// hidden file), that leave their base's format to be probed or contradict
/// it, or that keep their data elsewhere are refused by everything that would
/// open them; they can only be deleted.
async fn foreign_references_are_refused(kind: Kind) {
    let env = Env::new(kind).await;
    let d = &env.d;
    d.create(&spec("base.qcow2", MIB)).await.expect("create");
    d.make_immutable("base.qcow2").await.expect("immutable");
    let elsewhere = env.outside("elsewhere.qcow2");
    let data_file = env.outside("data.raw");
    let json = r#"json:{"driver":"raw","file":{"driver":"file","filename":"/etc/passwd"}}"#;
    let planted = [
        (
            "abs.qcow2",
            Foreign::Backing("/some/other/abs/path.qcow2", Some("qcow2")),
        ),
        (
            "abs-real.qcow2",
            Foreign::Backing(elsewhere.to_str().expect("utf-8"), Some("qcow2")),
        ),
        ("up.qcow2", Foreign::Backing("../x.qcow2", Some("qcow2"))),
        ("json.qcow2", Foreign::Backing(json, Some("raw"))),
        (
            "nbd.qcow2",
            Foreign::Backing("nbd:localhost:10809", Some("raw")),
        ),
        (
            "hidden.qcow2",
            Foreign::Backing(".base.qcow2.tmp", Some("qcow2")),
        ),
        ("self.qcow2", Foreign::Backing("self.qcow2", Some("qcow2"))),
        ("unpinned.qcow2", Foreign::Backing("base.qcow2", None)),
        (
            "wrong-format.qcow2",
            Foreign::Backing("base.qcow2", Some("raw")),
        ),
        (
            "data.qcow2",
            Foreign::DataFile(data_file.to_str().expect("utf-8")),
        ),
    ];
    for (name, foreign) in planted {
        d.plant(name, foreign).await;
        let bad = |what: &str, r: crate::Result<()>| {
            assert!(
                matches!(r, Err(StorageError::BadImage { .. })),
                "{what} of {name} ({foreign:?}): {r:?}"
            );
        };
        bad("info", d.info(name).await.map(drop));
        bad("chain", d.chain(name).await.map(drop));
        bad(
            "copy",
            d.copy_from(name, &spec("copy.qcow2", GIB), &|_| {}).await,
        );
        bad("make_immutable", d.make_immutable(name).await);
        bad(
            "overlay",
            d.create_overlay(name, &spec("ov.qcow2", GIB)).await,
        );
        bad("extend", d.extend(name, GIB).await);
        let dest = env.outside("out.raw");
        bad(
            "export",
            d.export_to(name, &dest, crate::Format::Raw, &|_| {}).await,
        );
        assert_err!(
            d.create(&spec(name, MIB)).await,
            StorageError::Mismatch { .. }
        );
        assert_err!(
            d.create_overlay("base.qcow2", &spec(name, MIB)).await,
            StorageError::Mismatch { .. }
        );
        d.delete(name).await.expect("delete");
    }
    assert_eq!(d.list().await.expect("list"), ["base.qcow2"]);
    let (_, outside) = env.files();
    // qemu-img made the data file; nothing else was written outside.
    let expected: &[&str] = match kind {
        Kind::File => &["data.raw"],
        Kind::Memory => &[],
    };
    assert_eq!(outside, expected);
}

/// A legal reference to a missing base, and a loop, are found by `chain` and
/// refused by what reads the image; `info` of the top alone is fine.
async fn broken_chains_are_refused(kind: Kind) {
    let env = Env::new(kind).await;
    let d = &env.d;
    d.plant("mid.qcow2", Foreign::Backing("gone.qcow2", Some("qcow2")))
        .await;
    let info = d.info("mid.qcow2").await.expect("info").expect("present");
    assert_eq!(info.backing.as_deref(), Some("gone.qcow2"));
    assert_err!(d.chain("mid.qcow2").await, StorageError::BadImage { .. });
    assert_err!(
        d.copy_from("mid.qcow2", &spec("c.qcow2", GIB), &|_| {})
            .await,
        StorageError::BadImage { .. }
    );
    d.plant("a.qcow2", Foreign::Backing("b.qcow2", Some("qcow2")))
        .await;
    d.plant("b.qcow2", Foreign::Backing("a.qcow2", Some("qcow2")))
        .await;
    assert_err!(d.chain("a.qcow2").await, StorageError::BadImage { .. });
    assert_err!(
        d.export_to(
            "a.qcow2",
            &env.outside("a.raw"),
            crate::Format::Raw,
            &|_| {}
        )
        .await,
        StorageError::BadImage { .. }
    );
    assert_err!(d.chain("none.qcow2").await, StorageError::NotFound(_));
    assert_eq!(
        d.list().await.expect("list"),
        ["a.qcow2", "b.qcow2", "mid.qcow2"]
    );
}

/// A copy of a layered image holds the whole chain's data, has no base, and
/// is independent: writing it changes nothing below, and it outlives the
/// chain it was copied from.
async fn layered_copies_are_independent(kind: Kind) {
    let env = Env::new(kind).await;
    let d = &env.d;
    d.create(&spec("base.raw", 4 * MIB)).await.expect("create");
    d.write("base.raw", 0, 2 * MIB, 0x61).await.expect("write");
    d.make_immutable("base.raw").await.expect("immutable");
    d.create_overlay("base.raw", &spec("ov.qcow2", 8 * MIB))
        .await
        .expect("overlay");
    d.write("ov.qcow2", MIB, 2 * MIB, 0x62)
        .await
        .expect("write");
    d.write("ov.qcow2", 7 * MIB, MIB, 0x63)
        .await
        .expect("write");
    let overlay_before = d.fingerprint("ov.qcow2").await;
    for (copy, size) in [("flat.qcow2", 8 * MIB), ("flat.raw", 16 * MIB)] {
        d.copy_from("ov.qcow2", &spec(copy, size), &|_| {})
            .await
            .expect("copy");
        let chain = d.chain(copy).await.expect("chain");
        assert_eq!(chain.len(), 1, "{chain:?}");
        assert_eq!(chain[0].backing, None);
        assert!(d.same_data("ov.qcow2", copy).await.expect("compare"));
        d.write(copy, 0, MIB, 0x64).await.expect("write the copy");
        assert!(!d.same_data("ov.qcow2", copy).await.expect("compare"));
        assert!(d.fingerprint("ov.qcow2").await == overlay_before);
    }
    d.delete("ov.qcow2").await.expect("delete");
    d.delete("base.raw").await.expect("delete");
    for copy in ["flat.qcow2", "flat.raw"] {
        for (offset, len, byte) in [
            (0, MIB, 0x64),
            (MIB, 2 * MIB, 0x62),
            (3 * MIB, 4 * MIB, 0),
            (7 * MIB, MIB, 0x63),
        ] {
            assert!(
                d.reads_as(copy, offset, len, byte).await.expect("read"),
                "{copy}: {len} bytes at {offset}"
            );
        }
    }
}

/// Merging a base into its overlay leaves the overlay reading exactly as
/// before, on the base's base (then on nothing), frozen if it was; the merged
/// base is unchanged. The undo puts it back on the base, reading the same. A
/// re-run of either is success; an overlay that does not stand on
/// the named base is `Mismatch`.
async fn merging_a_base_keeps_what_the_overlay_reads(kind: Kind) {
    let env = Env::new(kind).await;
    let d = &env.d;
    for bottom in ["bottom.qcow2", "bottom.raw"] {
        d.create(&spec(bottom, 4 * MIB)).await.expect("create");
        d.write(bottom, 0, 2 * MIB, 0x11).await.expect("write");
        d.make_immutable(bottom).await.expect("immutable");
        d.create_overlay(bottom, &spec("mid.qcow2", 4 * MIB))
            .await
            .expect("overlay");
        d.write("mid.qcow2", MIB, 2 * MIB, 0x22)
            .await
            .expect("write");
        d.make_immutable("mid.qcow2").await.expect("immutable");
        d.create_overlay("mid.qcow2", &spec("top.qcow2", 8 * MIB))
            .await
            .expect("overlay");
        d.write("top.qcow2", 1536 * KIB, MIB, 0x33)
            .await
            .expect("write");
        d.make_immutable("top.qcow2").await.expect("immutable");
        let runs = [
            (0, MIB, 0x11),
            (MIB, 512 * KIB, 0x22),
            (1536 * KIB, MIB, 0x33),
            (2560 * KIB, 512 * KIB, 0x22),
            (3 * MIB, 5 * MIB, 0),
        ];
        let reads = async |what: &str| {
            for &(offset, len, byte) in &runs {
                assert!(
                    d.reads_as("top.qcow2", offset, len, byte)
                        .await
                        .expect("read"),
                    "{what} ({bottom}): {len} bytes at {offset} are not {byte:#x}"
                );
            }
        };
        reads("before").await;
        let mid = d.fingerprint("mid.qcow2").await;

        assert_err!(
            d.merge_base("top.qcow2", bottom).await,
            StorageError::Mismatch { .. }
        );
        d.merge_base("top.qcow2", "mid.qcow2").await.expect("merge");
        let info = d.info("top.qcow2").await.expect("info").expect("present");
        assert_eq!(info.backing.as_deref(), Some(bottom));
        assert!(info.immutable, "{info:?}");
        reads("after merging mid").await;
        assert!(d.fingerprint("mid.qcow2").await == mid, "mid changed");
        d.merge_base("top.qcow2", "mid.qcow2")
            .await
            .expect("a re-run");
        reads("after a re-run").await;

        // Undone, it stands on the merged layer again, still reading the same;
        // undone again, nothing changes; merged again, as before.
        d.unmerge_base("top.qcow2", "mid.qcow2")
            .await
            .expect("unmerge");
        let info = d.info("top.qcow2").await.expect("info").expect("present");
        assert_eq!(info.backing.as_deref(), Some("mid.qcow2"));
        reads("after the undo").await;
        d.unmerge_base("top.qcow2", "mid.qcow2")
            .await
            .expect("an undo again");
        assert_err!(
            d.unmerge_base("top.qcow2", bottom).await,
            StorageError::Mismatch { .. }
        );
        d.merge_base("top.qcow2", "mid.qcow2")
            .await
            .expect("merge again");
        reads("merged again").await;

        // The bottom stands on nothing: the overlay then stands alone.
        d.delete("mid.qcow2")
            .await
            .expect("delete the merged layer");
        d.merge_base("top.qcow2", bottom).await.expect("merge");
        let info = d.info("top.qcow2").await.expect("info").expect("present");
        assert_eq!(info.backing, None);
        reads("standing alone").await;
        assert_err!(
            d.merge_base("gone.qcow2", bottom).await,
            StorageError::NotFound(_)
        );
        for name in ["top.qcow2", bottom] {
            d.delete(name).await.expect("delete");
        }
    }
}
