//! The check's rules that the end-to-end test (`crates/scoria/tests/
//! repository_check.rs`) does not reach, on records written directly and
//! real qcow2 files: a temporary a create still owns, a raw file recorded
//! qcow2, a backing file that disagrees with the record, a foreign chain
//! whose base is gone, a backend whose directory is gone, a memory
//! backend, an unknown backend, what `quick` leaves out, and the memo of
//! clean checks (an unchanged file is not `qemu-img check`ed again).

use std::path::Path;

use futures::StreamExt as _;
use scoria_model::image::{ImageFormat, ImageState};
use scoria_model::volume::VolumeStatus;
use scoria_model::{ImageId, VolumeId, VolumeTypeId};
use scoria_storage::{Format, qemu};
use scoria_store::images::{self, NewImage};
use scoria_store::volumes::{self, NewVolume};
use scoria_store::{Store, StoreOptions};

use super::*;
use crate::Config;

struct World {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    store: Store,
    config: Config,
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().to_path_buf();
        let store = Store::open(&data.join("scoria.db"), &StoreOptions::default())
            .await
            .expect("store");
        let config = Config::with_data_dir(data.clone());
        std::fs::create_dir_all(data.join("volumes")).expect("backend");
        World {
            _dir: dir,
            data,
            store,
            config,
        }
    }

    fn backend(&self) -> &Path {
        match &self.config.backends[0].driver {
            DriverConfig::File { path, .. } => path,
            DriverConfig::Memory { .. } => unreachable!(),
        }
    }

    /// A record (and a volume standing on it, so that it is used).
    async fn image(&self, format: ImageFormat, base: Option<ImageId>, state: ImageState) -> Image {
        let id = ImageId::new();
        let name = crate::rules::images::name_for(id, crate::rules::images::storage_format(format));
        let mut tx = self.store.begin().await.expect("begin");
        images::image_create(
            &mut tx,
            &NewImage {
                id,
                backend: "file".into(),
                name: name.clone(),
                format,
                virtual_size: 1 << 20,
                base_id: base,
                mutable: true,
                state,
            },
        )
        .await
        .expect("image");
        let volume = VolumeId::new();
        volumes::volume_create(
            &mut tx,
            &NewVolume {
                id: volume,
                project_id: "p".into(),
                user_id: "u".into(),
                name: None,
                description: None,
                size: 1,
                status: VolumeStatus::Available,
                bootable: false,
                multiattach: false,
                availability_zone: "nova".into(),
                volume_type_id: "7a3d2a5e-1b4c-4f0e-9d8a-0c5e6f7a8b90"
                    .parse::<VolumeTypeId>()
                    .expect("type id"),
                snapshot_id: None,
                source_volid: None,
                reservation_id: None,
                last_flow_id: None,
                metadata: Default::default(),
            },
        )
        .await
        .expect("volume");
        volumes::volume_set_image(&mut tx, volume, Some(id))
            .await
            .expect("set image");
        tx.commit().await.expect("commit");
        Image { id, name }
    }

    async fn check(&self, options: CheckOptions) -> Report {
        check(
            &self.store,
            &self.data.join("staging"),
            &self.config.backends,
            None,
            options,
        )
        .await
        .expect("check")
    }
}

struct Image {
    id: ImageId,
    name: String,
}

fn problems(r: &Report) -> Vec<(Problem, String)> {
    r.fixes
        .iter()
        .map(|f| {
            (
                f.problem,
                f.target
                    .path()
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn records_against_files() {
    let w = World::new().await;
    let dir = w.backend().to_owned();
    // A healthy qcow2 image, and one whose temporary a create still owns.
    let ok = w.image(ImageFormat::Qcow2, None, ImageState::Ready).await;
    qemu::create(&dir.join(&ok.name), Format::Qcow2, 1 << 20)
        .await
        .expect("ok");
    let creating = w
        .image(ImageFormat::Qcow2, None, ImageState::Creating)
        .await;
    std::fs::write(dir.join(format!(".{}.tmp", creating.name)), b"half").expect("temp");
    // A record that says qcow2 over a raw file.
    let raw = w.image(ImageFormat::Qcow2, None, ImageState::Ready).await;
    std::fs::write(dir.join(&raw.name), vec![0u8; 1 << 20]).expect("raw");
    // An overlay whose file names another backing file than its record.
    let top = w
        .image(ImageFormat::Qcow2, Some(ok.id), ImageState::Ready)
        .await;
    qemu::create(&dir.join("other.qcow2"), Format::Qcow2, 1 << 20)
        .await
        .expect("other");
    qemu::create_overlay(&dir.join(&top.name), 1 << 20, "other.qcow2", Format::Qcow2)
        .await
        .expect("top");
    std::fs::write(dir.join("foreign.raw"), b"").expect("foreign");
    // A foreign overlay whose base is gone.
    qemu::create(&dir.join("vanished.qcow2"), Format::Qcow2, 1 << 20)
        .await
        .expect("base");
    qemu::create_overlay(
        &dir.join("leaves.qcow2"),
        1 << 20,
        "vanished.qcow2",
        Format::Qcow2,
    )
    .await
    .expect("leaves");
    std::fs::remove_file(dir.join("vanished.qcow2")).expect("vanish");

    let r = w.check(CheckOptions::default()).await;
    let mut got = problems(&r);
    got.sort();
    let mut want = vec![
        (Problem::FormatMismatch, raw.name.clone()),
        (Problem::BackingMismatch, top.name.clone()),
    ];
    want.sort();
    assert_eq!(got, want, "{r:#?}");
    let mend = &r.fixes[0];
    assert!(mend.in_use[0].starts_with("volume "), "{mend:?}");
    let foreign: Vec<(&str, Option<&str>)> = r
        .foreign
        .iter()
        .map(|f| (f.file.as_str(), f.problem.as_deref()))
        .collect();
    assert_eq!(
        foreign,
        [
            ("foreign.raw", None),
            (
                "leaves.qcow2",
                Some("its backing file vanished.qcow2 is missing")
            ),
            ("other.qcow2", None),
        ]
    );
    let other = r
        .foreign
        .iter()
        .find(|f| f.file == "other.qcow2")
        .expect("other");
    assert_eq!(
        (other.references, &other.referenced_by[..]),
        (1, &[top.name.clone()][..])
    );
    assert_eq!(r.backends[0].state, "checked");
}

/// Leak a cluster of the qcow2 file at `path`: one past the end, counted
/// once.
fn leak_a_cluster(path: &Path) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, 48).expect("table");
    let table = u64::from_be_bytes(b);
    f.read_exact_at(&mut b, table).expect("block");
    let block = u64::from_be_bytes(b);
    let cluster = f.metadata().expect("len").len().div_ceil(65536);
    f.set_len((cluster + 1) * 65536).expect("grow");
    f.write_all_at(&1u16.to_be_bytes(), block + 2 * cluster)
        .expect("refcount");
}

/// Write a file's first byte again, unchanged: its times change, its data
/// does not.
fn rewrite_first_byte(path: &Path) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, 0).expect("read");
    f.write_all_at(&b, 0).expect("write");
}

impl World {
    /// A check whose `qemu-img check`s are recorded, as the server's flows
    /// do: (qemu-img checked, unchanged) of the one backend, and the report.
    async fn check_recorded(&self, options: CheckOptions) -> (usize, usize, Report) {
        let r = self.check(options).await;
        record_seen(&self.store, &r).await.expect("record");
        let b = &r.backends[0];
        (b.qemu_checked, b.unchanged, r)
    }
}

#[tokio::test]
async fn an_unchanged_image_is_not_qemu_img_checked_again_unless_the_check_is_full() {
    let w = World::new().await;
    let dir = w.backend().to_owned();
    let mut paths = Vec::new();
    for _ in 0..3 {
        let image = w.image(ImageFormat::Qcow2, None, ImageState::Ready).await;
        let path = dir.join(&image.name);
        qemu::create(&path, Format::Qcow2, 1 << 20)
            .await
            .expect("create");
        paths.push((image, path));
    }
    let (checked, unchanged, r) = w.check_recorded(CheckOptions::default()).await;
    assert_eq!((checked, unchanged, r.fixes.len()), (3, 0, 0));
    let (checked, unchanged, _) = w.check_recorded(CheckOptions::default()).await;
    assert_eq!((checked, unchanged), (0, 3), "nothing changed");
    // A write (even of the same byte) makes it a candidate again.
    rewrite_first_byte(&paths[0].1);
    let (checked, unchanged, r) = w.check_recorded(CheckOptions::default()).await;
    assert_eq!((checked, unchanged, r.fixes.len()), (1, 2, 0));
    // A leak is found on the next check, and again on each one after it
    // (a finding is never remembered as clean).
    leak_a_cluster(&paths[1].1);
    for _ in 0..2 {
        let (checked, unchanged, r) = w.check_recorded(CheckOptions::default()).await;
        assert_eq!((checked, unchanged), (1, 2));
        assert_eq!(problems(&r), [(Problem::Leaks, paths[1].0.name.clone())]);
    }
    // Full: every image, whatever the memo says.
    let (checked, unchanged, _) = w
        .check_recorded(CheckOptions {
            full: true,
            ..Default::default()
        })
        .await;
    assert_eq!((checked, unchanged), (3, 0));
    // After it, the leaky image (not remembered) is the only candidate.
    let (checked, _, _) = w.check_recorded(CheckOptions::default()).await;
    assert_eq!(checked, 1, "only the leaky one");
}

#[tokio::test]
async fn quick_checks_leave_qemu_img_out_and_backends_can_be_down_or_unknown() {
    let mut w = World::new().await;
    let dir = w.backend().to_owned();
    let leaky = w.image(ImageFormat::Qcow2, None, ImageState::Ready).await;
    let path = dir.join(&leaky.name);
    qemu::create(&path, Format::Qcow2, 1 << 20)
        .await
        .expect("create");
    leak_a_cluster(&path);
    let full = w.check(CheckOptions::default()).await;
    assert_eq!(problems(&full), [(Problem::Leaks, leaky.name.clone())]);
    let quick = w
        .check(CheckOptions {
            quick: true,
            ..Default::default()
        })
        .await;
    assert!(quick.fixes.is_empty(), "{quick:#?}");

    // Unknown backend: an error. Memory: not checked. Directory gone: down,
    // and nothing proposed although every record's file is missing.
    let unknown = check(
        &w.store,
        &w.data,
        &w.config.backends,
        Some("nope"),
        CheckOptions::default(),
    )
    .await;
    assert!(
        matches!(unknown, Err(crate::Error::NotFound(_))),
        "{unknown:?}"
    );
    std::fs::remove_dir_all(&dir).expect("gone");
    let mut memory = w.config.backends[0].clone();
    memory.name = "mem".into();
    memory.driver = DriverConfig::Memory { capacity_gib: 1 };
    w.config.backends.push(memory);
    let r = w.check(CheckOptions::default()).await;
    let states: Vec<(&str, &str)> = r
        .backends
        .iter()
        .map(|b| (b.name.as_str(), b.state))
        .collect();
    assert_eq!(states, [("file", "down"), ("mem", "not_checked")]);
    assert!(r.fixes.is_empty(), "{r:#?}");
}

/// The check of a backend of many images (`SCORIA_BENCH_IMAGES`, 10,000 by
/// default), printed: quick (headers only), full (`qemu-img check` on each,
/// as the first check after an upgrade does), the usual check once nothing
/// changed, and once 1% of the files changed. The baseline, in the same
/// run: `qemu-img check -U` run directly on 1,000 of the files, as many at
/// a time as the check runs. CI runs it (`.ci/run`):
/// `cargo nextest run -p scoria-core --run-ignored only -E 'test(bench_check)' --no-capture`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark"]
async fn bench_check_of_many_images() {
    let n: usize = std::env::var("SCORIA_BENCH_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let w = World::new().await;
    let dir = w.backend().to_owned();
    let proto = dir.join("proto");
    qemu::create(&proto, Format::Qcow2, 1 << 20)
        .await
        .expect("proto");
    let started = std::time::Instant::now();
    let mut paths = Vec::with_capacity(n);
    for _ in 0..n {
        let image = w.image(ImageFormat::Qcow2, None, ImageState::Ready).await;
        let path = dir.join(&image.name);
        std::fs::copy(&proto, &path).expect("copy");
        paths.push(path);
    }
    std::fs::remove_file(&proto).expect("proto");
    println!(
        "bench_check: {n} recorded qcow2 images made in {:.1?}",
        started.elapsed()
    );

    let parallel = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8));
    let sample = n.min(1000);
    let started = std::time::Instant::now();
    futures::stream::iter(paths.iter().take(sample).cloned())
        .map(|p| async move {
            qemu::check_shared(&p, Format::Qcow2)
                .await
                .expect("qemu-img check")
        })
        .buffer_unordered(parallel)
        .collect::<Vec<_>>()
        .await;
    let per_image = started.elapsed() / sample as u32;
    println!(
        "bench_check: baseline, qemu-img check -U directly ({parallel} at a time): {per_image:.1?} an image, {:.1?} for {n}",
        per_image * n as u32
    );

    let mut figures = Vec::new();
    for (what, options) in [
        (
            "quick (headers only)",
            CheckOptions {
                quick: true,
                full: false,
            },
        ),
        (
            "full (qemu-img check on each)",
            CheckOptions {
                quick: false,
                full: true,
            },
        ),
        ("usual, nothing changed", CheckOptions::default()),
    ] {
        let started = std::time::Instant::now();
        let (checked, unchanged, r) = w.check_recorded(options).await;
        let took = started.elapsed();
        assert!(r.fixes.is_empty(), "{:?}", r.fixes.first());
        println!(
            "bench_check: {what}: {took:.2?} ({checked} qemu-img checked, {unchanged} unchanged)"
        );
        figures.push(took);
    }
    for p in paths.iter().step_by(100) {
        rewrite_first_byte(p);
    }
    let started = std::time::Instant::now();
    let (checked, unchanged, r) = w.check_recorded(CheckOptions::default()).await;
    let took = started.elapsed();
    assert!(r.fixes.is_empty());
    assert_eq!(checked, n.div_ceil(100));
    println!(
        "bench_check: usual, 1% changed: {took:.2?} ({checked} qemu-img checked, {unchanged} unchanged)"
    );
    println!(
        "bench_check: the usual check with nothing changed takes {:.3} of the full one ({:.1}x faster); quick {:.3}",
        figures[2].as_secs_f64() / figures[1].as_secs_f64(),
        figures[1].as_secs_f64() / figures[2].as_secs_f64(),
        figures[0].as_secs_f64() / figures[1].as_secs_f64(),
    );
}
