//! The file exporter against real `qemu-storage-daemon`s, with `qemu-img` and
//! `qemu-io` as NBD clients. Each test has its own temporary backend and run
//! directory and picks free ports by binding 127.0.0.1:0; its fixture kills any
//! daemon left in its run directory, and each test checks that none is left.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::*;
use crate::qemu::{self, qsd};

pub(super) const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub(super) const SIZE: u64 = 16 << 20;
pub(super) const MIB: u64 = 1 << 20;

pub(super) struct Fixture {
    pub(super) tmp: tempfile::TempDir,
    pub(super) backend: PathBuf,
    pub(super) run: PathBuf,
}

impl Fixture {
    pub(super) fn new() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = std::fs::canonicalize(tmp.path()).expect("canonical");
        let backend = root.join("backend");
        std::fs::create_dir(&backend).expect("backend dir");
        Self {
            tmp,
            backend,
            run: root.join("run"),
        }
    }

    pub(super) async fn exporter(&self) -> FileExporter {
        FileExporter::new(&self.backend, &self.run)
            .await
            .expect("exporter")
    }

    /// A 16 MiB image named `name` in the backend whose first MiB is 0xab.
    pub(super) async fn image(&self, name: &str) -> PathBuf {
        let path = self.backend.join(name);
        let format = crate::format_of_name(name).expect("image name");
        qemu::create(&path, format, SIZE).await.expect("create");
        qemu::write_pattern(&path, format, 0, MIB, 0xab)
            .await
            .expect("write");
        path
    }

    /// A client's TLS directory holding `psk` as `identity`.
    pub(super) fn client_keys(&self, label: &str, identity: &str, psk: &Psk) -> PathBuf {
        let dir = self.tmp.path().join(format!("client-{label}"));
        std::fs::create_dir(&dir).expect("client dir");
        std::fs::write(
            dir.join("keys.psk"),
            format!("{identity}:{}\n", psk.key_hex()),
        )
        .expect("client keys");
        dir
    }

    /// Every `qemu-storage-daemon` whose command line names this run directory.
    pub(super) fn daemon_pids(&self) -> Vec<u32> {
        let run = self.run.to_string_lossy().into_owned();
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline);
            if cmdline.starts_with(qsd::QEMU_STORAGE_DAEMON)
                && cmdline.contains(&run)
                && qsd::is_running(pid)
            {
                pids.push(pid);
            }
        }
        pids.sort();
        pids
    }

    /// The names in the run directory.
    fn run_entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.run)
            .expect("run dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(&self.run) {
            for entry in entries.flatten() {
                qsd::kill_for_tests(&entry.path());
            }
        }
    }
}

/// A port nothing listens on now.
pub(super) fn free_port() -> u16 {
    std::net::TcpListener::bind((LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

pub(super) fn psk(identity: &str) -> Psk {
    Psk::generate(identity).expect("psk")
}

pub(super) fn unix(id: &str, image: &str, read_only: bool) -> ExportSpec {
    ExportSpec {
        id: id.into(),
        image: image.into(),
        read_only,
        transport: Transport::Unix,
    }
}

pub(super) fn tls(id: &str, image: &str, read_only: bool, psk: &Psk) -> ExportSpec {
    ExportSpec {
        id: id.into(),
        image: image.into(),
        read_only,
        transport: Transport::Tcp {
            host: LOCALHOST,
            port: free_port(),
            tls: Tls::Psk(psk.clone()),
        },
    }
}

pub(super) fn nbd(info: &ConnectionInfo) -> &NbdConnection {
    let ConnectionInfo::Nbd(nbd) = info;
    nbd
}

pub(super) async fn run(program: &str, args: &[String]) -> Output {
    let child = qemu::command(program)
        .args(args)
        .stdin(Stdio::null())
        .output();
    tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .expect("the client finishes")
        .expect("the client runs")
}

pub(super) fn succeeded(out: &Output) -> bool {
    if !out.status.success() {
        eprintln!(
            "client failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status.success()
}

/// An NBD client of one export, as qemu options.
#[derive(Clone)]
pub(super) struct Client {
    object: Option<String>,
    opts: String,
}

impl Client {
    /// A client of `info`, with TLS credentials `(dir, identity)` if given.
    pub(super) fn new(info: &ConnectionInfo, creds: Option<(&Path, &str)>) -> Self {
        let nbd = nbd(info);
        let mut opts = format!("driver=raw,file.driver=nbd,file.export={}", nbd.export_name);
        match &nbd.address {
            NbdAddress::Unix { path } => opts.push_str(&format!(
                ",file.server.type=unix,file.server.path={}",
                path.display()
            )),
            NbdAddress::Tcp { host, port } => opts.push_str(&format!(
                ",file.server.type=inet,file.server.host={host},file.server.port={port}"
            )),
        }
        let object = creds.map(|(dir, identity)| {
            opts.push_str(",file.tls-creds=tls0");
            format!(
                "tls-creds-psk,id=tls0,endpoint=client,dir={},username={identity}",
                dir.display()
            )
        });
        Self { object, opts }
    }

    /// The same client, reconnecting for up to `seconds` when the server goes
    /// away (as a VM's NBD client is configured).
    pub(super) fn reconnecting(mut self, seconds: u32) -> Self {
        self.opts
            .push_str(&format!(",file.reconnect-delay={seconds}"));
        self
    }

    fn object_args(&self) -> Vec<String> {
        match &self.object {
            Some(object) => vec!["--object".into(), object.clone()],
            None => Vec::new(),
        }
    }

    /// `qemu-img compare` of the export with the local image at `local` (which
    /// the daemon holds open: `-U` shares it).
    pub(super) async fn compare(&self, local: &Path) -> Output {
        let format = crate::format_of_name(&local.file_name().expect("name").to_string_lossy())
            .expect("image name");
        let mut args = vec!["compare".into(), "-U".into()];
        args.extend(self.object_args());
        args.extend([
            "--image-opts".into(),
            format!(
                "driver={format},file.driver=file,file.filename={}",
                local.display()
            ),
            self.opts.clone(),
        ]);
        run(qemu::QEMU_IMG, &args).await
    }

    /// `qemu-img info --output=json` of the export.
    pub(super) async fn info(&self) -> Output {
        let mut args = vec!["info".into(), "--output=json".into()];
        args.extend(self.object_args());
        args.extend(["--image-opts".into(), self.opts.clone()]);
        run(qemu::QEMU_IMG, &args).await
    }

    /// `qemu-io -c command` on the export, opened read-only or read-write.
    pub(super) async fn io(&self, read_only: bool, commands: &[&str]) -> Output {
        let mut args: Vec<String> = Vec::new();
        if read_only {
            args.push("-r".into());
        }
        args.extend(self.object_args());
        args.extend(["--image-opts".into(), self.opts.clone()]);
        for c in commands {
            args.extend(["-c".into(), (*c).to_owned()]);
        }
        run(qemu::QEMU_IO, &args).await
    }

    /// A `qemu-io` process holding a read-only connection open, taking commands
    /// on its stdin.
    pub(super) async fn session(&self) -> Session {
        self.session_with(true).await
    }

    /// A `qemu-io` process holding a read-write connection open.
    pub(super) async fn writable_session(&self) -> Session {
        self.session_with(false).await
    }

    async fn session_with(&self, read_only: bool) -> Session {
        let mut args = Vec::new();
        if read_only {
            args.push("-r".to_owned());
        }
        args.extend(self.object_args());
        args.extend(["--image-opts".into(), self.opts.clone()]);
        let mut child = qemu::command(qemu::QEMU_IO)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu-io");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Session {
            _child: child,
            stdin,
            stdout,
        }
    }
}

/// A running interactive `qemu-io`; killed on drop.
pub(super) struct Session {
    _child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: BufReader<tokio::process::ChildStdout>,
}

impl Session {
    /// Read `len` bytes at `offset` over the open connection and check they are
    /// all `pattern`.
    pub(super) async fn reads(&mut self, pattern: u8, offset: u64, len: u64) -> bool {
        self.runs(&format!("read -P {pattern} {offset} {len}\n"))
            .await
    }

    /// Write `len` bytes of `pattern` at `offset` over the open connection.
    pub(super) async fn writes(&mut self, pattern: u8, offset: u64, len: u64) -> bool {
        self.runs(&format!("write -P {pattern} {offset} {len}\n"))
            .await
    }

    /// Run one read or write command; whether it completed (and, for a read,
    /// found its pattern).
    async fn runs(&mut self, command: &str) -> bool {
        if self.stdin.write_all(command.as_bytes()).await.is_err() {
            return false;
        }
        let mut mismatch = false;
        loop {
            let mut line = String::new();
            let read =
                tokio::time::timeout(Duration::from_secs(10), self.stdout.read_line(&mut line))
                    .await;
            match read {
                Ok(Ok(n)) if n > 0 => {}
                // The process ended, or the read hangs: the connection is broken.
                _ => return false,
            }
            mismatch |= line.contains("Pattern verification failed");
            if line.contains("read failed") || line.contains("write failed") {
                return false;
            }
            if line.contains("bytes at offset") {
                return !mismatch;
            }
        }
    }
}

/// `qemu-io` on the image file itself (after its export is gone).
pub(super) async fn local_io(path: &Path, commands: &[&str]) -> Output {
    let format = crate::format_of_name(&path.file_name().expect("name").to_string_lossy())
        .expect("image name");
    let mut args = vec!["-r".into(), "-f".into(), format.as_str().into()];
    for c in commands {
        args.extend(["-c".into(), (*c).to_owned()]);
    }
    args.push(path.display().to_string());
    run(qemu::QEMU_IO, &args).await
}

pub(super) async fn pid_of(exporter: &FileExporter, id: &str) -> Option<u32> {
    let states = exporter.list().await.expect("list");
    states.iter().find(|s| s.id == id).and_then(|s| s.pid)
}

pub(super) async fn wait_gone(pid: u32) {
    for _ in 0..500 {
        if !qsd::is_running(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("pid {pid} still runs");
}

pub(super) fn kill9(pid: u32) {
    // SAFETY: a signal to a daemon this test started.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
}

#[tokio::test]
async fn unix_and_tls_exports_serve_the_image_and_writes_land_in_the_file() {
    let fx = Fixture::new();
    let ex = fx.exporter().await;
    let v1 = fx.image("v1.qcow2").await;

    // Over a unix socket.
    let info = ex
        .ensure(&unix("v1-unix", "v1.qcow2", true))
        .await
        .expect("ensure");
    assert_eq!(info.driver_volume_type(), "nbd");
    let conn = nbd(&info);
    assert_eq!(
        (conn.format, conn.read_only, conn.tls_identity.as_deref()),
        (Format::Raw, true, None)
    );
    assert!(
        conn.uri().starts_with("nbd+unix:///v1-unix?socket=/"),
        "{}",
        conn.uri()
    );
    assert!(succeeded(&Client::new(&info, None).compare(&v1).await));

    // Over TCP with TLS-PSK, the same image at the same time (two readers).
    let key = psk("client-1");
    let info = ex
        .ensure(&tls("v1-tls", "v1.qcow2", true, &key))
        .await
        .expect("ensure");
    let conn = nbd(&info);
    assert_eq!(conn.tls_identity.as_deref(), Some("client-1"));
    assert!(
        conn.uri().starts_with("nbds://127.0.0.1:"),
        "{}",
        conn.uri()
    );
    let keys = fx.client_keys("1", "client-1", &key);
    let client = Client::new(&info, Some((&keys, "client-1")));
    assert!(succeeded(&client.compare(&v1).await));

    // A write through a read-write export lands in the file.
    let v2 = fx.image("v2.qcow2").await;
    let key = psk("client-2");
    let info = ex
        .ensure(&tls("v2", "v2.qcow2", false, &key))
        .await
        .expect("ensure");
    assert!(!nbd(&info).read_only);
    let keys = fx.client_keys("2", "client-2", &key);
    let client = Client::new(&info, Some((&keys, "client-2")));
    assert!(succeeded(
        &client.io(false, &["write -P 0xcd 1M 64k"]).await
    ));
    ex.remove("v2").await.expect("remove");
    assert!(succeeded(
        &local_io(
            &v2,
            &[
                "read -P 0xcd 1M 64k",
                "read -P 0xab 0 1M",
                "read -P 0 2M 1M"
            ]
        )
        .await
    ));

    ex.reconcile(&[]).await.expect("reconcile");
    assert_eq!(fx.daemon_pids(), Vec::<u32>::new());
}

#[tokio::test]
async fn only_an_exports_own_key_opens_it() {
    let fx = Fixture::new();
    let ex = fx.exporter().await;
    let a_image = fx.image("a.qcow2").await;
    fx.image("b.qcow2").await;
    let (key_a, key_b) = (psk("ida"), psk("idb"));
    let a = tls("a", "a.qcow2", true, &key_a);
    let info_a = ex.ensure(&a).await.expect("ensure a");
    let info_b = ex
        .ensure(&tls("b", "b.qcow2", true, &key_b))
        .await
        .expect("ensure b");

    // No TLS at all: the server insists on it.
    let out = Client::new(&info_a, None).io(true, &["read 0 4k"]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("TLS"),
        "{out:?}"
    );
    // B's identity and key, at A's port.
    let keys_b = fx.client_keys("b", "idb", &key_b);
    assert!(
        !Client::new(&info_a, Some((&keys_b, "idb")))
            .io(true, &["read 0 4k"])
            .await
            .status
            .success()
    );
    // A's identity with B's key.
    let forged = fx.client_keys("forged", "ida", &key_b);
    assert!(
        !Client::new(&info_a, Some((&forged, "ida")))
            .io(true, &["read 0 4k"])
            .await
            .status
            .success()
    );
    // A's own key opens A, and B's opens B.
    let keys_a = fx.client_keys("a", "ida", &key_a);
    assert!(succeeded(
        &Client::new(&info_a, Some((&keys_a, "ida")))
            .compare(&a_image)
            .await
    ));
    assert!(succeeded(
        &Client::new(&info_b, Some((&keys_b, "idb")))
            .io(true, &["read -P 0xab 0 1M"])
            .await
    ));

    // A's key file holds A's key only, where only Scoria's user can read it.
    let dir = ex.run_dir().join("a");
    let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(ex.run_dir()), 0o700);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("psk")), 0o700);
    assert_eq!(mode(&dir.join("psk/keys.psk")), 0o600);
    assert_eq!(
        std::fs::read_to_string(dir.join("psk/keys.psk")).expect("keys"),
        key_a.keys_file_line()
    );
    let mut psk_files: Vec<String> = std::fs::read_dir(dir.join("psk"))
        .expect("psk dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    psk_files.sort();
    assert_eq!(psk_files, ["dh-params.pem", "keys.psk"]);
    // The key is in no command line, no connection info and no Debug output.
    let pid = pid_of(&ex, "a").await.expect("pid");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    assert!(!String::from_utf8_lossy(&cmdline).contains(key_a.key_hex()));
    assert!(!format!("{a:?} {info_a:?}").contains(key_a.key_hex()));

    ex.reconcile(&[]).await.expect("reconcile");
    assert_eq!(fx.daemon_pids(), Vec::<u32>::new());
}

#[tokio::test]
async fn a_read_only_export_refuses_writes() {
    let fx = Fixture::new();
    let ex = fx.exporter().await;
    let image = fx.image("ro.qcow2").await;
    let info = ex
        .ensure(&unix("ro", "ro.qcow2", true))
        .await
        .expect("ensure");
    let client = Client::new(&info, None);
    // Opening it for writing is refused, so no write happens.
    let out = client.io(false, &["write -P 0xcd 0 64k"]).await;
    assert!(!out.status.success(), "{out:?}");
    assert!(succeeded(&client.io(true, &["read -P 0xab 0 1M"]).await));
    ex.remove("ro").await.expect("remove");
    assert!(succeeded(&local_io(&image, &["read -P 0xab 0 1M"]).await));
    assert_eq!(fx.daemon_pids(), Vec::<u32>::new());
}

#[tokio::test]
async fn ensure_twice_is_one_daemon_and_remove_twice_is_fine() {
    let fx = Fixture::new();
    let ex = fx.exporter().await;
    fx.image("v.qcow2").await;
    let spec = tls("v", "v.qcow2", false, &psk("v-client"));
    let first = ex.ensure(&spec).await.expect("ensure");
    let pids = fx.daemon_pids();
    assert_eq!(pids.len(), 1);
    let second = ex.ensure(&spec).await.expect("ensure again");
    assert_eq!(first, second);
    assert_eq!(fx.daemon_pids(), pids);

    // What is served, as found.
    let states = ex.list().await.expect("list");
    assert_eq!(
        states,
        [ExportState {
            id: "v".into(),
            pid: Some(pids[0]),
            serving: true,
            image: Some("v.qcow2".into()),
            connection: Some(first.clone()),
        }]
    );

    ex.remove("v").await.expect("remove");
    wait_gone(pids[0]).await;
    ex.remove("v").await.expect("remove again");
    assert_eq!(ex.list().await.expect("list"), []);
    assert_eq!(fx.run_entries(), [".lock"]);
    let invalid = ex.remove("../v").await;
    assert!(
        matches!(invalid, Err(ExportError::InvalidSpec { .. })),
        "{invalid:?}"
    );
    assert_eq!(fx.daemon_pids(), Vec::<u32>::new());
}

#[tokio::test]
async fn a_killed_daemon_comes_back_with_the_same_connection_and_data() {
    let fx = Fixture::new();
    let ex = fx.exporter().await;
    let image = fx.image("k.qcow2").await;
    let key = psk("k-client");
    let spec = tls("k", "k.qcow2", true, &key);
    let info = ex.ensure(&spec).await.expect("ensure");
    let keys = fx.client_keys("k", "k-client", &key);
    let client = Client::new(&info, Some((&keys, "k-client")));
    assert!(succeeded(&client.compare(&image).await));

    // A client that reconnects, as a VM's does, connected before the crash.
    let mut session = Client::new(&info, Some((&keys, "k-client")))
        .reconnecting(30)
        .session()
        .await;
    assert!(session.reads(0xab, 0, MIB).await);
    // And one that does not, for contrast.
    let mut fragile = client.session().await;
    assert!(fragile.reads(0xab, 0, MIB).await);

    let pid = pid_of(&ex, "k").await.expect("pid");
    kill9(pid);
    wait_gone(pid).await;
    // Found dead: its files are there, nothing serves.
    let states = ex.list().await.expect("list");
    assert_eq!(
        states
            .iter()
            .map(|s| (s.id.as_str(), s.pid, s.serving))
            .collect::<Vec<_>>(),
        [("k", None, false)]
    );

    let report = ex
        .reconcile(std::slice::from_ref(&spec))
        .await
        .expect("reconcile");
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.restarted, ["k"]);
    let new_pid = pid_of(&ex, "k").await.expect("pid");
    assert_ne!(new_pid, pid);
    assert_eq!(ex.ensure(&spec).await.expect("ensure"), info);
    // The same client (port, export name, key) reads the same data, and the
    // one connected before the crash carries on.
    assert!(succeeded(&client.compare(&image).await));
    assert!(session.reads(0xab, 0, MIB).await);
    assert!(session.reads(0, 2 * MIB, MIB).await);
    assert!(!fragile.reads(0xab, 0, MIB).await);
    drop((session, fragile));

    ex.reconcile(&[]).await.expect("reconcile");
    assert_eq!(fx.daemon_pids(), Vec::<u32>::new());
}

#[tokio::test]
async fn a_new_exporter_adopts_running_daemons_without_interrupting_clients() {
    let fx = Fixture::new();
    let ex = fx.exporter().await;
    fx.image("u.qcow2").await;
    let t_image = fx.image("t.qcow2").await;
    let key = psk("t-client");
    let specs = [unix("u", "u.qcow2", true), tls("t", "t.qcow2", false, &key)];
    let report = ex.reconcile(&specs).await.expect("reconcile");
    assert_eq!(report.started, ["u", "t"]);
    let info = ex.ensure(&specs[1]).await.expect("ensure");
    let keys = fx.client_keys("t", "t-client", &key);
    let client = Client::new(&info, Some((&keys, "t-client")));
    let mut session = client.session().await;
    assert!(session.reads(0xab, 0, MIB).await);
    let pids = fx.daemon_pids();
    assert_eq!(pids.len(), 2);

    // One exporter per run directory.
    let busy = FileExporter::new(&fx.backend, &fx.run).await;
    assert!(matches!(busy, Err(ExportError::Busy(_))), "{busy:?}");

    // Scoria restarts: the exporter goes, the daemons stay, a new one adopts them.
    drop(ex);
    assert_eq!(fx.daemon_pids(), pids);
    let ex = fx.exporter().await;
    let report = ex.reconcile(&specs).await.expect("reconcile");
    assert!(report.is_quiet(), "{report:?}");
    assert_eq!(report.kept, ["u", "t"]);
    assert_eq!(fx.daemon_pids(), pids);
    // The client's connection, opened before, still reads.
    assert!(session.reads(0xab, 0, 64 << 10).await);
    assert!(session.reads(0, 2 * MIB, MIB).await);
    assert!(succeeded(&client.compare(&t_image).await));
    drop(session);

    ex.reconcile(&[]).await.expect("reconcile");
    assert_eq!(fx.daemon_pids(), Vec::<u32>::new());
}

#[tokio::test]
async fn reconcile_converges_and_an_empty_set_leaves_nothing() {
    let fx = Fixture::new();
    let ex = fx.exporter().await;
    for name in ["a.qcow2", "b.raw", "c.qcow2"] {
        fx.image(name).await;
    }
    let a = unix("a", "a.qcow2", false);
    let b = tls("b", "b.raw", true, &psk("b-client"));
    let c = ExportSpec {
        id: "c".into(),
        image: "c.qcow2".into(),
        read_only: true,
        transport: Transport::Tcp {
            host: LOCALHOST,
            port: free_port(),
            tls: Tls::Disabled,
        },
    };
    let report = ex
        .reconcile(&[a.clone(), b.clone(), c.clone()])
        .await
        .expect("reconcile");
    assert_eq!(report.started, ["a", "b", "c"]);
    assert!(report.is_success(), "{report:?}");
    // A plain TCP export is readable without credentials (the operator asked).
    let info_c = ex.ensure(&c).await.expect("ensure");
    assert!(nbd(&info_c).uri().starts_with("nbd://127.0.0.1:"));
    assert!(succeeded(
        &Client::new(&info_c, None)
            .io(true, &["read -P 0xab 0 1M"])
            .await
    ));
    let pid_c = pid_of(&ex, "c").await.expect("pid");

    let report = ex
        .reconcile(&[a.clone(), b.clone(), c.clone()])
        .await
        .expect("reconcile");
    assert!(report.is_quiet(), "{report:?}");
    assert_eq!(report.kept, ["a", "b", "c"]);

    // c is no longer wanted; b changes (now writable).
    let b_rw = ExportSpec {
        read_only: false,
        ..b.clone()
    };
    let report = ex
        .reconcile(&[a.clone(), b_rw.clone()])
        .await
        .expect("reconcile");
    assert_eq!(
        (report.kept, report.restarted, report.removed),
        (
            vec!["a".to_owned()],
            vec!["b".to_owned()],
            vec!["c".to_owned()]
        )
    );
    assert!(!qsd::is_running(pid_c));
    let states = ex.list().await.expect("list");
    assert_eq!(
        states
            .iter()
            .map(|s| (s.id.as_str(), s.serving))
            .collect::<Vec<_>>(),
        [("a", true), ("b", true)]
    );
    let ConnectionInfo::Nbd(b_conn) = states[1].connection.clone().expect("connection");
    assert!(!b_conn.read_only);

    // A new key for b: the daemon is replaced, the old key opens nothing, the
    // new one opens the same address and export.
    let old_key = match &b_rw.transport {
        Transport::Tcp {
            tls: Tls::Psk(key), ..
        } => key.clone(),
        other => panic!("{other:?}"),
    };
    let new_key = psk("b-client");
    let b_rotated = ExportSpec {
        transport: match &b_rw.transport {
            Transport::Tcp { host, port, .. } => Transport::Tcp {
                host: *host,
                port: *port,
                tls: Tls::Psk(new_key.clone()),
            },
            other => panic!("{other:?}"),
        },
        ..b_rw.clone()
    };
    let report = ex
        .reconcile(&[a.clone(), b_rotated.clone()])
        .await
        .expect("reconcile");
    assert_eq!(
        (report.kept, report.restarted),
        (vec!["a".to_owned()], vec!["b".to_owned()])
    );
    let info_b = ex.ensure(&b_rotated).await.expect("ensure");
    let old_keys = fx.client_keys("old", "b-client", &old_key);
    let new_keys = fx.client_keys("new", "b-client", &new_key);
    assert!(
        !Client::new(&info_b, Some((&old_keys, "b-client")))
            .io(true, &["read 0 4k"])
            .await
            .status
            .success()
    );
    assert!(succeeded(
        &Client::new(&info_b, Some((&new_keys, "b-client")))
            .io(true, &["read -P 0xab 0 1M"])
            .await
    ));
    let b_rw = b_rotated;

    // An invalid desired set changes nothing.
    let dup = ex.reconcile(&[a.clone(), a.clone()]).await;
    assert!(
        matches!(dup, Err(ExportError::InvalidSpec { .. })),
        "{dup:?}"
    );
    let same_port = ExportSpec {
        id: "b2".into(),
        ..b_rw.clone()
    };
    let dup = ex.reconcile(&[b_rw.clone(), same_port]).await;
    assert!(
        matches!(dup, Err(ExportError::InvalidSpec { .. })),
        "{dup:?}"
    );
    assert_eq!(ex.list().await.expect("list").len(), 2);

    let pids = fx.daemon_pids();
    assert_eq!(pids.len(), 2);
    let report = ex.reconcile(&[]).await.expect("reconcile");
    assert_eq!(report.removed, ["a", "b"]);
    for pid in pids {
        assert!(!qsd::is_running(pid));
    }
    assert_eq!(fx.daemon_pids(), Vec::<u32>::new());
    // No socket, pidfile or key directory left.
    assert_eq!(fx.run_entries(), [".lock"]);
}

#[tokio::test]
async fn backing_chains_open_inside_the_backend_only() {
    let fx = Fixture::new();
    let ex = fx.exporter().await;
    fx.image("base.qcow2").await;
    let b = |name: &str| fx.backend.join(name).display().to_string();
    let img = async |args: &[&str]| qemu::qemu_img_for_tests(args).await.expect("qemu-img");

    // An overlay naming its base relatively, in the same directory.
    img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        &b("overlay.qcow2"),
    ])
    .await;
    qemu::write_pattern(
        &fx.backend.join("overlay.qcow2"),
        Format::Qcow2,
        MIB,
        64 << 10,
        0xcd,
    )
    .await
    .expect("write");
    let info = ex
        .ensure(&unix("ov", "overlay.qcow2", true))
        .await
        .expect("ensure overlay");
    let client = Client::new(&info, None);
    assert!(succeeded(
        &client
            .io(
                true,
                &[
                    "read -P 0xab 0 1M",
                    "read -P 0xcd 1M 64k",
                    "read -P 0 2M 1M"
                ]
            )
            .await
    ));
    assert!(succeeded(
        &client.compare(&fx.backend.join("overlay.qcow2")).await
    ));

    // A raw image.
    let raw = fx.image("plain.raw").await;
    let info = ex
        .ensure(&unix("raw", "plain.raw", false))
        .await
        .expect("ensure raw");
    assert!(succeeded(&Client::new(&info, None).compare(&raw).await));

    // Chains that leave the backend, or that qemu would have to guess, are refused.
    let outside = fx.tmp.path().join("outside.raw");
    qemu::create(&outside, Format::Raw, SIZE)
        .await
        .expect("outside");
    let outside = outside.display().to_string();
    img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        &outside,
        "-F",
        "raw",
        &b("abs.qcow2"),
    ])
    .await;
    img(&[
        "create",
        "-q",
        "-u",
        "-f",
        "qcow2",
        "-b",
        "../outside.raw",
        "-F",
        "raw",
        &b("up.qcow2"),
        "16M",
    ])
    .await;
    img(&[
        "create",
        "-q",
        "-u",
        "-f",
        "qcow2",
        "-b",
        "base.qcow2",
        "-F",
        "raw",
        &b("liar.qcow2"),
        "16M",
    ])
    .await;
    img(&[
        "create",
        "-q",
        "-u",
        "-f",
        "qcow2",
        "-b",
        "gone.qcow2",
        "-F",
        "qcow2",
        &b("orphan.qcow2"),
        "16M",
    ])
    .await;
    let data = fx.tmp.path().join("data.raw").display().to_string();
    img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        &format!("data_file={data}"),
        &b("ext.qcow2"),
        "16M",
    ])
    .await;
    std::os::unix::fs::symlink(&outside, fx.backend.join("link.raw")).expect("symlink");
    for name in [
        "abs.qcow2",
        "up.qcow2",
        "liar.qcow2",
        "orphan.qcow2",
        "ext.qcow2",
        "link.raw",
    ] {
        let err = ex.ensure(&unix("bad", name, true)).await;
        assert!(
            matches!(err, Err(ExportError::BadImage { .. })),
            "{name}: {err:?}"
        );
    }
    let err = ex.ensure(&unix("bad", "missing.qcow2", true)).await;
    assert!(matches!(err, Err(ExportError::ImageNotFound(_))), "{err:?}");
    // Nothing was started for them.
    assert_eq!(fx.run_entries(), [".lock", "ov", "raw"]);

    ex.reconcile(&[]).await.expect("reconcile");
    assert_eq!(fx.daemon_pids(), Vec::<u32>::new());
}

#[tokio::test]
async fn a_daemon_that_cannot_serve_is_a_clear_failure() {
    let fx = Fixture::new();
    let ex = fx.exporter().await;
    fx.image("p.qcow2").await;
    fx.image("q.qcow2").await;
    // The port is taken by someone else.
    let taken = std::net::TcpListener::bind((LOCALHOST, 0)).expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let spec = ExportSpec {
        transport: Transport::Tcp {
            host: LOCALHOST,
            port,
            tls: Tls::Psk(psk("p-client")),
        },
        ..unix("p", "p.qcow2", true)
    };
    let report = ex
        .reconcile(&[spec.clone(), unix("q", "q.qcow2", true)])
        .await
        .expect("reconcile");
    // The other export is served regardless.
    assert_eq!(report.started, ["q"]);
    assert_eq!(report.failed.len(), 1);
    let (id, err) = &report.failed[0];
    assert_eq!(id, "p");
    let chain = error_chain(err);
    assert!(chain.contains("Address already in use"), "{chain}");
    drop(taken);
    let report = ex
        .reconcile(&[spec, unix("q", "q.qcow2", true)])
        .await
        .expect("reconcile");
    assert_eq!(
        (report.restarted, report.kept),
        (vec!["p".to_owned()], vec!["q".to_owned()])
    );

    ex.reconcile(&[]).await.expect("reconcile");
    assert_eq!(fx.daemon_pids(), Vec::<u32>::new());
}

#[tokio::test]
async fn supervise_restarts_a_dead_daemon() {
    let fx = Fixture::new();
    let ex = Arc::new(fx.exporter().await);
    fx.image("s.qcow2").await;
    let (tx, rx) = tokio::sync::watch::channel(vec![unix("s", "s.qcow2", true)]);
    let supervisor = tokio::spawn(supervise(
        Arc::clone(&ex) as DynExporter,
        rx,
        Duration::from_millis(100),
    ));

    let serving_pid = async || {
        for _ in 0..300 {
            let states = ex.list().await.expect("list");
            if let Some(ExportState {
                pid: Some(pid),
                serving: true,
                ..
            }) = states.first()
            {
                return *pid;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("never served");
    };
    let pid = serving_pid().await;
    kill9(pid);
    wait_gone(pid).await;
    let mut again = serving_pid().await;
    for _ in 0..300 {
        if again != pid {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        again = serving_pid().await;
    }
    assert_ne!(again, pid);

    // A new desired set is applied without waiting for the period.
    tx.send(Vec::new()).expect("send");
    for _ in 0..300 {
        if fx.daemon_pids().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fx.daemon_pids(), Vec::<u32>::new());
    drop(tx);
    tokio::time::timeout(Duration::from_secs(10), supervisor)
        .await
        .expect("supervise returns when the sender goes")
        .expect("no panic");
}

#[tokio::test]
async fn invalid_specs_are_refused_before_anything_starts() {
    let fx = Fixture::new();
    let ex = fx.exporter().await;
    fx.image("v.qcow2").await;
    let refused = async |spec: ExportSpec| {
        let err = ex.ensure(&spec).await;
        assert!(
            matches!(err, Err(ExportError::InvalidSpec { .. })),
            "{spec:?}: {err:?}"
        );
    };
    for id in [
        "",
        ".hidden",
        "-x",
        "a/b",
        "a b",
        "é",
        &"x".repeat(MAX_ID_LEN + 1),
    ] {
        refused(unix(id, "v.qcow2", true)).await;
    }
    for image in ["v.vmdk", "../v.qcow2", "/etc/passwd", "v"] {
        refused(unix("v", image, true)).await;
    }
    refused(ExportSpec {
        transport: Transport::Tcp {
            host: LOCALHOST,
            port: 0,
            tls: Tls::Disabled,
        },
        ..unix("v", "v.qcow2", true)
    })
    .await;
    assert_eq!(fx.run_entries(), [".lock"]);

    // A run directory so deep that a socket path would not fit.
    let deep = fx.tmp.path().join("d".repeat(60)).join("run");
    let deep = FileExporter::new(&fx.backend, &deep)
        .await
        .expect("exporter");
    let err = deep
        .ensure(&unix(&"x".repeat(MAX_ID_LEN), "v.qcow2", true))
        .await;
    assert!(
        matches!(&err, Err(ExportError::InvalidSpec { detail, .. }) if detail.contains("socket")),
        "{err:?}"
    );
}

#[test]
fn keys_are_checked_and_never_shown() {
    let hex32 = "00112233445566778899aabbccddeeff";
    assert!(Psk::new("ok.id-1_", hex32).is_ok());
    assert_eq!(
        Psk::new("id", hex32.to_uppercase())
            .expect("upper")
            .key_hex(),
        hex32
    );
    for (identity, key) in [
        ("", hex32),
        ("a:b", hex32),
        ("a\nb", hex32),
        ("id", "0011"),
        ("id", &hex32[1..]),
        ("id", &format!("{}zz", &hex32[2..])),
        ("id", &"00".repeat(Psk::MAX_KEY_BYTES + 1)),
    ] {
        assert!(Psk::new(identity, key).is_err(), "{identity:?} {key:?}");
    }
    let generated = Psk::generate("g").expect("generate");
    assert_eq!(generated.key_hex().len(), 2 * Psk::KEY_BYTES);
    assert_ne!(generated, Psk::generate("g").expect("generate"));
    assert_eq!(
        generated.keys_file_line(),
        format!("g:{}\n", generated.key_hex())
    );
    let shown = format!("{generated:?}");
    assert!(
        shown.contains("\"g\"") && !shown.contains(generated.key_hex()),
        "{shown}"
    );
}

#[test]
fn nbd_uris() {
    let conn = |address, tls_identity: Option<&str>| NbdConnection {
        address,
        export_name: "att-1".into(),
        format: Format::Raw,
        read_only: false,
        tls_identity: tls_identity.map(str::to_owned),
    };
    let check = |c: NbdConnection, expected: &str| assert_eq!(c.uri(), expected);
    check(
        conn(
            NbdAddress::Unix {
                path: "/run/s c/att-1/nbd.sock".into(),
            },
            None,
        ),
        "nbd+unix:///att-1?socket=/run/s%20c/att-1/nbd.sock",
    );
    check(
        conn(
            NbdAddress::Tcp {
                host: LOCALHOST,
                port: 10809,
            },
            None,
        ),
        "nbd://127.0.0.1:10809/att-1",
    );
    check(
        conn(
            NbdAddress::Tcp {
                host: "::1".parse().expect("ip"),
                port: 10809,
            },
            Some("id"),
        ),
        "nbds://[::1]:10809/att-1",
    );
}
