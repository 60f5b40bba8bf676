//! The exporter's live operations against real daemons: a snapshot taken
//! under a client that keeps writing, and an image grown while it is served.
//! (The fixture and the NBD clients are `tests.rs`'s.)

use std::path::Path;
use std::process::Output;

use super::tests::{
    Client, Fixture, MIB, SIZE, kill9, pid_of, psk, run, succeeded, tls, unix, wait_gone,
};
use super::*;
use crate::qemu;

/// A qcow2 overlay `name` on `base` in the backend, written as the file
/// driver writes one (unsafe mode: qemu-img does not open the base, which a
/// daemon holds).
async fn overlay(fx: &Fixture, name: &str, base: &str) {
    let out = run(
        qemu::QEMU_IMG,
        &[
            "create".into(),
            "-q".into(),
            "-f".into(),
            "qcow2".into(),
            "-u".into(),
            "-b".into(),
            base.into(),
            "-F".into(),
            crate::format_of_name(base).expect("name").as_str().into(),
            fx.backend.join(name).display().to_string(),
            SIZE.to_string(),
        ],
    )
    .await;
    assert!(succeeded(&out));
}

/// `qemu-io -c command` on an image file that a daemon may hold (`-U`).
async fn file_io(path: &Path, commands: &[&str]) -> Output {
    let format = crate::format_of_name(&path.file_name().expect("name").to_string_lossy())
        .expect("image name");
    let mut args = vec![
        "-r".into(),
        "-U".into(),
        "-f".into(),
        format.as_str().into(),
    ];
    for c in commands {
        args.extend(["-c".into(), (*c).to_owned()]);
    }
    args.push(path.display().to_string());
    run(qemu::QEMU_IO, &args).await
}

/// Whether the qemu-io output says every read found its pattern.
fn all_read(out: &Output) -> bool {
    let text = String::from_utf8_lossy(&out.stdout);
    succeeded(out) && !text.contains("Pattern verification failed") && !text.contains("failed")
}

/// The size a new NBD connection to the export reports.
async fn nbd_size(client: &Client) -> u64 {
    let out = client.info().await;
    assert!(succeeded(&out));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    info["virtual-size"].as_u64().expect("size")
}

#[tokio::test]
async fn a_live_snapshot_freezes_the_served_image_under_a_writing_client() {
    let fx = Fixture::new();
    let ex = fx.exporter().await;
    let base = fx.image("v0.qcow2").await;
    let key = psk("live");
    let spec = tls("live", "v0.qcow2", false, &key);
    let info = ex.ensure(&spec).await.expect("ensure");
    let pid = pid_of(&ex, "live").await.expect("a daemon");
    let keys = fx.client_keys("live", "live", &key);
    let client = Client::new(&info, Some((&keys, "live")));

    // One connection writes before, during and after the switch.
    let mut writer = client.writable_session().await;
    assert!(writer.writes(0xcd, MIB, MIB).await);
    overlay(&fx, "v1.qcow2", "v0.qcow2").await;
    let snapshot = {
        let ex = &ex;
        async move { ex.snapshot("live", "v1.qcow2").await }
    };
    // 64 KiB writes at 4 MiB onwards while the switch happens; each reports
    // whether it completed, and the snapshot when it returned.
    let writes = async {
        let mut done = Vec::new();
        for i in 0..48u64 {
            done.push((
                i,
                writer
                    .writes(0x11, 4 * MIB + i * (64 << 10), 64 << 10)
                    .await,
            ));
            tokio::task::yield_now().await;
        }
        done
    };
    let (switched, done) = tokio::join!(snapshot, writes);
    assert!(switched.expect("snapshot"), "a daemon served the export");
    assert!(
        done.iter().all(|(_, ok)| *ok),
        "every write completed: {done:?}"
    );
    // After the switch: new data over the same connection.
    assert!(writer.writes(0x22, MIB, MIB).await);
    assert!(writer.writes(0x33, 8 * MIB, MIB).await);
    assert!(writer.reads(0xab, 0, MIB).await);
    drop(writer);

    // The same daemon serves, now on the overlay; nothing was restarted.
    assert_eq!(pid_of(&ex, "live").await, Some(pid));
    let state = ex.list().await.expect("list");
    assert_eq!(state[0].image.as_deref(), Some("v1.qcow2"));
    // The frozen image is consistent and holds what was written before the
    // switch, not after.
    let check = run(
        qemu::QEMU_IMG,
        &[
            "check".into(),
            "-U".into(),
            "-f".into(),
            "qcow2".into(),
            base.display().to_string(),
        ],
    )
    .await;
    assert!(
        succeeded(&check),
        "qemu-img check of the frozen image is clean"
    );
    let frozen = file_io(
        &base,
        &["read -P 0xab 0 1M", "read -P 0xcd 1M 1M", "read -P 0 8M 1M"],
    )
    .await;
    assert!(
        all_read(&frozen),
        "{}",
        String::from_utf8_lossy(&frozen.stdout)
    );
    // Every 64 KiB write is whole in one of the two layers: either in the
    // frozen image, or (written after the switch) only in the overlay.
    let mut in_base = 0;
    for (i, _) in &done {
        let at = 4 * MIB + i * (64 << 10);
        let old = file_io(&base, &[&format!("read -P 0x11 {at} 64k")]).await;
        if all_read(&old) {
            in_base += 1;
        } else {
            let zero = file_io(&base, &[&format!("read -P 0 {at} 64k")]).await;
            assert!(all_read(&zero), "write {i} is half in the frozen image");
        }
    }
    eprintln!(
        "{in_base} of {} concurrent writes landed before the switch",
        done.len()
    );
    // The export reads everything, through a new connection.
    let all = client
        .io(
            true,
            &[
                "read -P 0xab 0 1M",
                "read -P 0x22 1M 1M",
                "read -P 0x11 4M 3M",
                "read -P 0x33 8M 1M",
            ],
        )
        .await;
    assert!(all_read(&all), "{}", String::from_utf8_lossy(&all.stdout));

    // Asking again changes nothing; the spec on the overlay is what runs.
    assert!(ex.snapshot("live", "v1.qcow2").await.expect("again"));
    let on_overlay = ExportSpec {
        image: "v1.qcow2".into(),
        ..spec.clone()
    };
    assert_eq!(ex.ensure(&on_overlay).await.expect("ensure"), info);
    assert_eq!(pid_of(&ex, "live").await, Some(pid));
    // Going back down the chain would lose the overlay's writes: refused, and
    // the daemon keeps serving.
    let back = ex.ensure(&spec).await;
    assert!(
        matches!(&back, Err(ExportError::InvalidSpec { detail, .. }) if detail.contains("newer layer")),
        "{back:?}"
    );
    assert_eq!(pid_of(&ex, "live").await, Some(pid));
    // An overlay that is not on the served image is refused.
    overlay(&fx, "stray.qcow2", "v0.qcow2").await;
    let stray = ex.snapshot("live", "stray.qcow2").await;
    assert!(
        matches!(stray, Err(ExportError::InvalidSpec { .. })),
        "{stray:?}"
    );

    // A restarted daemon serves the whole chain from its command line.
    kill9(pid);
    wait_gone(pid).await;
    ex.ensure(&on_overlay).await.expect("ensure");
    let again = client
        .io(true, &["read -P 0x22 1M 1M", "read -P 0x33 8M 1M"])
        .await;
    assert!(all_read(&again));
    // Nothing serves: nothing to switch.
    ex.remove("live").await.expect("remove");
    assert!(!ex.snapshot("live", "v1.qcow2").await.expect("no daemon"));
}

#[tokio::test]
async fn a_served_image_grows_and_a_new_connection_sees_the_size() {
    let fx = Fixture::new();
    let ex = fx.exporter().await;
    let path = fx.image("g.qcow2").await;
    let key = psk("grow");
    let spec = tls("grow", "g.qcow2", false, &key);
    let info = ex.ensure(&spec).await.expect("ensure");
    let pid = pid_of(&ex, "grow").await.expect("a daemon");
    let keys = fx.client_keys("grow", "grow", &key);
    let client = Client::new(&info, Some((&keys, "grow")));
    assert_eq!(nbd_size(&client).await, SIZE);
    // A client that reconnects by itself, connected before the resize.
    let mut session = client.clone().reconnecting(5).session().await;
    assert!(session.reads(0xab, 0, MIB).await);

    assert!(ex.resize("grow", 2 * SIZE).await.expect("resize"));
    assert_eq!(nbd_size(&client).await, 2 * SIZE);
    assert_eq!(pid_of(&ex, "grow").await, Some(pid), "the same daemon");
    let grown = client
        .io(
            false,
            &[
                "read -P 0xab 0 1M",
                "write -P 0x44 24M 1M",
                "read -P 0x44 24M 1M",
            ],
        )
        .await;
    assert!(
        all_read(&grown),
        "{}",
        String::from_utf8_lossy(&grown.stdout)
    );
    // The old connection came back (it still sees the old size).
    assert!(session.reads(0xab, 0, 64 << 10).await);
    drop(session);
    // Again: nothing to do, the export stays.
    assert!(ex.resize("grow", 2 * SIZE).await.expect("again"));
    assert!(ex.resize("grow", SIZE).await.expect("smaller is done"));
    assert_eq!(nbd_size(&client).await, 2 * SIZE);
    ex.remove("grow").await.expect("remove");
    let file = qemu::info(&path, Format::Qcow2).await.expect("info");
    assert_eq!(file.virtual_size, 2 * SIZE);

    // A read-only export cannot grow its image: its daemon stops, and the
    // caller grows the image offline.
    fx.image("ro.qcow2").await;
    ex.ensure(&unix("ro", "ro.qcow2", true))
        .await
        .expect("ensure");
    assert!(!ex.resize("ro", 2 * SIZE).await.expect("read-only"));
    assert_eq!(pid_of(&ex, "ro").await, None);
    assert!(!ex.resize("nothing", SIZE).await.expect("no daemon"));
    ex.reconcile(&[]).await.expect("reconcile");
    assert!(fx.daemon_pids().is_empty());
}

/// The files the daemon `pid` has open, by name.
fn open_files(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
        .collect()
}

/// The backing file a qcow2 image's header names.
fn backing_of(fx: &Fixture, name: &str) -> Option<String> {
    crate::qcow2::read_header(&fx.backend.join(name))
        .expect("header")
        .backing_file
}

#[tokio::test]
async fn layers_merge_live_under_a_writing_client_and_their_files_are_closed() {
    let fx = Fixture::new();
    let ex = fx.exporter().await;
    // i1 ← i2 ← i3 ← v, each layer with a MiB of its own.
    let i1 = fx.image("i1.qcow2").await;
    for (layer, base, pattern) in [("i2", "i1", 2u8), ("i3", "i2", 3)] {
        overlay(&fx, &format!("{layer}.qcow2"), &format!("{base}.qcow2")).await;
        let path = fx.backend.join(format!("{layer}.qcow2"));
        let at = u64::from(pattern - 1) * MIB;
        qemu::write_pattern(&path, crate::Format::Qcow2, at, MIB, pattern)
            .await
            .expect("write");
    }
    overlay(&fx, "v.qcow2", "i3.qcow2").await;
    let info = ex
        .ensure(&unix("m", "v.qcow2", false))
        .await
        .expect("ensure");
    let pid = pid_of(&ex, "m").await.expect("a daemon");
    let client = Client::new(&info, None);
    let mut guest = client.writable_session().await;
    assert!(guest.writes(4, 3 * MIB, MIB).await);
    let reads_all = |fresh: u8| {
        [
            (0xab, 0),
            (2, MIB),
            (3, 2 * MIB),
            (4, 3 * MIB),
            (fresh, 4 * MIB),
        ]
    };
    let last = std::sync::atomic::AtomicU8::new(0);
    let progress = |p: u8| last.store(p, std::sync::atomic::Ordering::Relaxed);

    // An intermediate layer: i2 into i3, which then stands on i1.
    assert!(
        ex.merge_live("m", "i3.qcow2", "i2.qcow2", &progress)
            .await
            .expect("merge")
    );
    assert_eq!(last.load(std::sync::atomic::Ordering::Relaxed), 100);
    assert_eq!(backing_of(&fx, "i3.qcow2").as_deref(), Some("i1.qcow2"));
    assert!(!open_files(pid).contains(&"i2.qcow2".to_owned()));
    assert!(guest.writes(5, 4 * MIB, MIB).await);
    for (pattern, at) in reads_all(5) {
        assert!(guest.reads(pattern, at, MIB).await, "{pattern} at {at}");
    }
    // A re-run finds it done; the upper layer is read-only again, so the
    // file can be opened elsewhere.
    assert!(
        ex.merge_live("m", "i3.qcow2", "i2.qcow2", &progress)
            .await
            .expect("again")
    );
    let check = run(
        qemu::QEMU_IMG,
        &[
            "check".into(),
            "-U".into(),
            "-f".into(),
            "qcow2".into(),
            fx.backend.join("i3.qcow2").display().to_string(),
        ],
    )
    .await;
    assert!(succeeded(&check), "the merged-into layer is consistent");

    // The layer under the served top, then the base: the top stands alone.
    assert!(
        ex.merge_live("m", "v.qcow2", "i3.qcow2", &progress)
            .await
            .expect("merge under the top")
    );
    assert_eq!(backing_of(&fx, "v.qcow2").as_deref(), Some("i1.qcow2"));
    assert!(
        ex.merge_live("m", "v.qcow2", "i1.qcow2", &progress)
            .await
            .expect("merge the base")
    );
    assert_eq!(backing_of(&fx, "v.qcow2"), None);
    assert_eq!(
        open_files(pid)
            .iter()
            .filter(|f| f.ends_with(".qcow2"))
            .count(),
        1
    );
    assert!(guest.writes(6, 4 * MIB, MIB).await);
    for (pattern, at) in reads_all(6) {
        assert!(guest.reads(pattern, at, MIB).await, "{pattern} at {at}");
    }
    drop(guest);
    assert_eq!(
        pid_of(&ex, "m").await,
        Some(pid),
        "the same daemon throughout"
    );
    // The base itself was only read.
    assert!(all_read(
        &file_io(&i1, &["read -P 0xab 0 1M", "read -P 0 1M 1M"]).await
    ));
    // A daemon started again reads the chain from the headers: the same data.
    kill9(pid);
    wait_gone(pid).await;
    ex.ensure(&unix("m", "v.qcow2", false))
        .await
        .expect("again");
    let out = client
        .io(
            true,
            &reads_all(6)
                .map(|(p, at)| format!("read -P {p} {at} 1M"))
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
        .await;
    assert!(all_read(&out), "{}", String::from_utf8_lossy(&out.stdout));
    // Nothing serving: the caller merges offline.
    ex.remove("m").await.expect("remove");
    assert!(
        !ex.merge_live("m", "v.qcow2", "i1.qcow2", &progress)
            .await
            .expect("no daemon")
    );
}
