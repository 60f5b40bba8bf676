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
