//! A supervised `qemu-storage-daemon` (QSD): start one in a directory of its
//! own, find and adopt one that already runs there, notice when it dies, stop it.
//!
//! QSD is qemu's block layer without a VM: it opens images and serves them (over
//! NBD, for Scoria's exports) and runs block jobs. Guests read and write through
//! it, never through Scoria, so **a daemon outlives the Scoria process that
//! started it**: a Scoria restart (an upgrade, a crash) must not cut a guest's
//! disk. It is started with `--daemonize`: qemu forks, the child starts a new
//! session (`setsid`) and forks again, and the process Scoria spawned exits
//! once the daemon's start-up is complete, with the daemon's start-up error on
//! stderr and a failure status if it failed. The daemon is then no child of
//! Scoria, in no session or process group of Scoria's, and nothing of Scoria's
//! ending reaches it. (That is why [`Daemon::start`] turns `kill_on_drop` off:
//! the process it spawns is only the launcher.)
//!
//! # One directory per daemon
//!
//! ```text
//!   <dir>/qmp.sock   its QMP monitor (a unix socket qemu listens on)
//!   <dir>/qsd.pid    its pid, written and locked by qemu
//! ```
//!
//! Nothing else records that a daemon exists: [`find`] reads the pidfile and
//! accepts the pid only if `/proc/<pid>/cmdline` is a `qemu-storage-daemon` whose
//! `--pidfile` is this one (a pid reused by another process is not ours), and
//! returns the daemon's command line, which says what it serves. A caller that
//! lost its state (a restart) finds the daemon again and [`Daemon::connect`]s to
//! its monitor; the daemon notices nothing.
//!
//! # Lifecycle
//!
//! ```text
//!                start (launcher exits 0)          connect (after a restart)
//!   absent ─────────────────────────────► running ◄──────────────────────── found
//!      ▲   launcher exits ≠ 0: Start error  │   │                      (pidfile + cmdline)
//!      │   (stderr says why)                │   │ killed, crashed
//!      │                                    │   ▼
//!      │            stop: quit, wait 5 s;   │  dead: QMP closed, pid gone
//!      │            SIGTERM, wait 3 s;      │   │  (stale pidfile/socket left)
//!      │            SIGKILL, wait 3 s       │   │
//!      └──────────── stopped ◄──────────────┘   └──► start again: stale files
//!                    (socket, pidfile removed)        are removed first
//! ```
//!
//! Death is seen two ways: the QMP connection closes ([`Qmp::closed`] resolves at
//! once) and the pid is gone (or a zombie, which counts as gone). Restarting is
//! the caller's decision (the exporter's, a layer above), made from what it
//! wants served: this module only reports.
//!
//! # Configuration is the command line
//!
//! A daemon is configured once, at start, by [`DaemonConfig`]: `--object`,
//! `--blockdev`, `--nbd-server` and `--export` options whose JSON values are
//! exactly the arguments of the QMP commands `object-add`, `blockdev-add`,
//! `nbd-server-start` and `block-export-add`. So a daemon either starts with
//! everything it was asked for or not at all (there is no half-configured
//! daemon to repair after a crash), and its command line, read back with
//! [`options_of`], is an exact record of what it serves. QMP is used for the
//! rest: checking it answers, queries, `quit`, and (later) block jobs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncReadExt;

use super::qmp::{Qmp, QmpError};

/// The `qemu-storage-daemon` program, looked up on `PATH`.
pub const QEMU_STORAGE_DAEMON: &str = "qemu-storage-daemon";

/// The QMP socket's name in a daemon's directory.
pub const QMP_SOCKET: &str = "qmp.sock";
/// The pidfile's name in a daemon's directory.
pub const PIDFILE: &str = "qsd.pid";

/// How long the launcher may take to report that start-up is complete.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting to a daemon's monitor and each command may take. A
/// daemon of Scoria's answers in milliseconds; one that does not within this
/// time cannot be supervised.
const QMP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a daemon may take to exit after `quit`, after SIGTERM, after SIGKILL.
const QUIT_GRACE: Duration = Duration::from_secs(5);
const TERM_GRACE: Duration = Duration::from_secs(3);
const KILL_GRACE: Duration = Duration::from_secs(3);

/// Why a daemon could not be started, found, reached or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{op} failed")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the path {0} is not UTF-8, which qemu's options need")]
    NotUtf8(PathBuf),
    /// The daemon refused its configuration or could not serve it; `stderr` is
    /// qemu's message (for example `Failed to bind socket: Address already in
    /// use`).
    #[error("qemu-storage-daemon failed to start: {stderr}")]
    Start { stderr: String },
    #[error("qemu-storage-daemon did not finish starting within {0:?}")]
    StartTimeout(Duration),
    #[error("a qemu-storage-daemon (pid {pid}) already runs in {dir}")]
    AlreadyRunning { dir: PathBuf, pid: u32 },
    #[error("qemu-storage-daemon (pid {pid}) is still there after SIGKILL")]
    Stuck { pid: u32 },
    #[error("talking to qemu-storage-daemon over QMP failed")]
    Qmp(#[from] QmpError),
}

pub type Result<T, E = DaemonError> = std::result::Result<T, E>;

fn io(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let op = op.into();
    move |source| DaemonError::Io { op, source }
}

/// The kinds of configuration option, each the command-line twin of a QMP
/// command taking the same JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionKind {
    /// `--object`, as `object-add` (`qom-type`, `id`, properties).
    Object,
    /// `--blockdev`, as `blockdev-add`.
    Blockdev,
    /// `--nbd-server`, as `nbd-server-start` (with a `SocketAddress`).
    NbdServer,
    /// `--export`, as `block-export-add`.
    Export,
}

impl OptionKind {
    fn flag(self) -> &'static str {
        match self {
            Self::Object => "--object",
            Self::Blockdev => "--blockdev",
            Self::NbdServer => "--nbd-server",
            Self::Export => "--export",
        }
    }

    fn from_flag(flag: &str) -> Option<Self> {
        [Self::Object, Self::Blockdev, Self::NbdServer, Self::Export]
            .into_iter()
            .find(|k| k.flag() == flag)
    }
}

/// What a daemon serves: options applied in order, so that an option may only
/// refer to ids defined by earlier ones (a format node to its file node, an
/// export to its node, the NBD server to its TLS credentials).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DaemonConfig {
    options: Vec<(OptionKind, Value)>,
}

impl DaemonConfig {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add an option.
    pub fn option(mut self, kind: OptionKind, value: Value) -> Self {
        self.options.push((kind, value));
        self
    }

    /// The options, in order.
    pub fn options(&self) -> &[(OptionKind, Value)] {
        &self.options
    }
}

/// The configuration options in a daemon's command line (`args` without the
/// program name): the inverse of what [`Daemon::start`] writes. Options this
/// module does not write (the monitor's) are skipped.
pub fn options_of(args: &[String]) -> Vec<(OptionKind, Value)> {
    args.windows(2)
        .filter_map(|pair| {
            let kind = OptionKind::from_flag(&pair[0])?;
            let value = serde_json::from_str::<Value>(&pair[1]).ok()?;
            value.is_object().then_some((kind, value))
        })
        .collect()
}

fn utf8(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| DaemonError::NotUtf8(path.to_owned()))
}

/// The command line (without the program name) of a daemon in `dir` with
/// `config`. `dir` must be absolute: the daemon's working directory is `/`.
fn command_line(dir: &Path, config: &DaemonConfig) -> Result<Vec<String>> {
    let pidfile = dir.join(PIDFILE);
    let socket = dir.join(QMP_SOCKET);
    // A comma inside a QemuOpts value (the chardev option is not JSON) is
    // written doubled.
    let socket = utf8(&socket)?.replace(',', ",,");
    let mut args = vec![
        "--daemonize".to_owned(),
        "--pidfile".to_owned(),
        utf8(&pidfile)?.to_owned(),
        "--chardev".to_owned(),
        format!("socket,id=monitor0,path={socket},server=on,wait=off"),
        "--monitor".to_owned(),
        "chardev=monitor0".to_owned(),
    ];
    for (kind, value) in &config.options {
        args.push(kind.flag().to_owned());
        args.push(value.to_string());
    }
    Ok(args)
}

/// A daemon process found running in a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Running {
    pub pid: u32,
    /// Its command line without the program name.
    pub args: Vec<String>,
}

/// The daemon running in `dir`, if one does: the pidfile names a live process
/// that is a `qemu-storage-daemon` with this pidfile. When the pidfile is missing
/// or stale, the process table is searched for such a daemon too: one whose
/// pidfile was deleted under it (by a temporary-file cleaner, or an operator)
/// still holds its image and its socket, and must be found rather than started
/// a second time. `None` when no daemon of `dir` runs.
pub async fn find(dir: &Path) -> Result<Option<Running>> {
    let pidfile = dir.join(PIDFILE);
    match tokio::fs::read_to_string(&pidfile).await {
        // qemu writes the pidfile under a lock before it is visible; anything but
        // a pid is not from a daemon of ours.
        Ok(text) => {
            if let Ok(pid) = text.trim().parse::<u32>()
                && let Some(running) = running_in(dir, pid)
            {
                return Ok(Some(running));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(format!("reading {}", pidfile.display()))(e)),
    }
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || search_processes(&dir))
        .await
        .map_err(|e| io("searching the process table")(std::io::Error::other(e)))
}

/// The daemon of `dir` among all processes, if any.
fn search_processes(dir: &Path) -> Option<Running> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .find_map(|pid| running_in(dir, pid))
}

/// `pid` if it is alive and is the daemon of `dir`.
fn running_in(dir: &Path, pid: u32) -> Option<Running> {
    if !is_running(pid) {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut argv = cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned());
    let program = argv.next()?;
    let args: Vec<String> = argv.collect();
    let pidfile = dir.join(PIDFILE);
    let pidfile = pidfile.to_str()?;
    let is_qsd = Path::new(&program).file_name() == Some(QEMU_STORAGE_DAEMON.as_ref());
    let has_pidfile = args
        .windows(2)
        .any(|w| w[0] == "--pidfile" && w[1] == pidfile);
    (is_qsd && has_pidfile).then_some(Running { pid, args })
}

/// Whether `pid` is a live process. A zombie is not: it has exited, and only its
/// parent's reaping is left (init's, for a daemon, since it is no child of
/// Scoria's).
pub fn is_running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) S …`: the state follows the last parenthesis, since comm may
    // contain anything.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

/// Send `signal` to `pid` if it still is the daemon of `dir` (not a process that
/// reused its pid). Returns whether it was sent.
fn signal_daemon(dir: &Path, pid: u32, signal: libc::c_int) -> bool {
    if running_in(dir, pid).is_none() {
        return false;
    }
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill has no memory effects; the pid was just checked to be the
    // daemon of `dir`.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// Wait up to `grace` for `pid` to end; returns whether it did.
async fn exited_within(pid: u32, grace: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        if !is_running(pid) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// End the daemon `pid` of `dir` with signals: SIGTERM (qemu exits cleanly,
/// closing its images), then SIGKILL. For a daemon whose monitor does not
/// answer; [`Daemon::stop`] asks nicely first. Removes the socket and pidfile.
pub async fn terminate(dir: &Path, pid: u32) -> Result<()> {
    for (signal, grace) in [(libc::SIGTERM, TERM_GRACE), (libc::SIGKILL, KILL_GRACE)] {
        if !signal_daemon(dir, pid, signal) || exited_within(pid, grace).await {
            return remove_files(dir).await;
        }
        tracing::warn!(pid, signal, dir = %dir.display(), "qemu-storage-daemon still runs after a signal");
    }
    Err(DaemonError::Stuck { pid })
}

async fn remove_if_exists(path: &Path) -> Result<()> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(format!("removing {}", path.display()))(e)),
    }
}

/// Remove what a dead daemon leaves behind (qemu removes both when it exits
/// cleanly, neither when it is killed).
async fn remove_files(dir: &Path) -> Result<()> {
    remove_if_exists(&dir.join(QMP_SOCKET)).await?;
    remove_if_exists(&dir.join(PIDFILE)).await
}

/// A running daemon and a QMP connection to it.
#[derive(Debug)]
pub struct Daemon {
    dir: PathBuf,
    pid: u32,
    args: Vec<String>,
    qmp: Qmp,
}

impl Daemon {
    /// Start a daemon in `dir` (absolute, existing, private to the caller) that
    /// serves `config`, and connect to its monitor. Fails with
    /// [`DaemonError::AlreadyRunning`] if one already runs there, and with
    /// [`DaemonError::Start`] (qemu's message) if qemu refuses the
    /// configuration. Stale files of a dead daemon are removed first.
    pub async fn start(dir: &Path, config: &DaemonConfig) -> Result<Self> {
        if let Some(running) = find(dir).await? {
            return Err(DaemonError::AlreadyRunning {
                dir: dir.to_owned(),
                pid: running.pid,
            });
        }
        remove_files(dir).await?;
        let args = command_line(dir, config)?;
        tracing::debug!(dir = %dir.display(), ?args, "starting qemu-storage-daemon");
        let mut launcher = super::command(QEMU_STORAGE_DAEMON)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // The daemon must outlive Scoria (see the module doc); what is
            // spawned here is only the launcher, which exits once the daemon's
            // start-up is complete. Tokio reaps it if this future is dropped.
            .kill_on_drop(false)
            .spawn()
            .map_err(io(format!("starting {QEMU_STORAGE_DAEMON}")))?;
        let mut stderr = launcher
            .stderr
            .take()
            .ok_or_else(|| io("starting qemu-storage-daemon")(std::io::Error::other("no pipe")))?;
        let mut message = Vec::new();
        // The pipe reaches its end when the launcher has exited and the daemon
        // has pointed its stderr at /dev/null, at the end of its start-up.
        let launched = async {
            stderr.read_to_end(&mut message).await?;
            launcher.wait().await
        };
        let status = match tokio::time::timeout(START_TIMEOUT, launched).await {
            Ok(status) => status.map_err(io("waiting for qemu-storage-daemon to start"))?,
            Err(_) => {
                // Whatever got started must not linger, half started.
                let _ = launcher.start_kill();
                if let Some(running) = find(dir).await? {
                    terminate(dir, running.pid).await?;
                }
                return Err(DaemonError::StartTimeout(START_TIMEOUT));
            }
        };
        let stderr = String::from_utf8_lossy(&message).trim().to_owned();
        if !status.success() {
            let stderr = if stderr.is_empty() {
                format!("exit status {status}")
            } else {
                stderr
            };
            return Err(DaemonError::Start { stderr });
        }
        if !stderr.is_empty() {
            tracing::warn!(dir = %dir.display(), %stderr, "qemu-storage-daemon started with warnings");
        }
        let Some(running) = find(dir).await? else {
            return Err(DaemonError::Start {
                stderr: format!("it reported success but {PIDFILE} names no running daemon"),
            });
        };
        match Qmp::connect_with_timeout(&dir.join(QMP_SOCKET), QMP_TIMEOUT).await {
            Ok(qmp) => Ok(Self {
                dir: dir.to_owned(),
                pid: running.pid,
                args,
                qmp,
            }),
            Err(e) => {
                terminate(dir, running.pid).await?;
                Err(e.into())
            }
        }
    }

    /// Connect to the monitor of `running`, a daemon [`find`] found in `dir`:
    /// adopt it without disturbing what it serves.
    pub async fn connect(dir: &Path, running: Running) -> Result<Self> {
        let qmp = Qmp::connect_with_timeout(&dir.join(QMP_SOCKET), QMP_TIMEOUT).await?;
        Ok(Self {
            dir: dir.to_owned(),
            pid: running.pid,
            args: running.args,
            qmp,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its command line without the program name; see [`options_of`].
    pub fn args(&self) -> &[String] {
        &self.args
    }

    pub fn qmp(&self) -> &Qmp {
        &self.qmp
    }

    /// False once its monitor connection closed or its process is gone.
    pub fn is_alive(&self) -> bool {
        !self.qmp.is_closed() && is_running(self.pid)
    }

    /// Stop it: `quit` over QMP (qemu closes its images cleanly and removes its
    /// socket and pidfile), then SIGTERM and SIGKILL if it lingers. Connected
    /// NBD clients are cut off.
    pub async fn stop(self) -> Result<()> {
        match self.qmp.execute("quit", Value::Null).await {
            // The daemon may close the connection before its reply is read.
            Ok(_) | Err(QmpError::Closed) => {}
            Err(e) => tracing::warn!(
                pid = self.pid,
                error = %e,
                "qemu-storage-daemon did not take quit; signalling it"
            ),
        }
        if exited_within(self.pid, QUIT_GRACE).await {
            return remove_files(&self.dir).await;
        }
        terminate(&self.dir, self.pid).await
    }
}

/// Kill the daemon of `dir`, if any, at once and without waiting: for test
/// fixtures' `Drop`, so that no test leaves a daemon behind.
pub fn kill_for_tests(dir: &Path) {
    if let Some(running) = search_processes(dir) {
        signal_daemon(dir, running.pid, libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A temporary daemon directory whose daemon is killed on drop.
    struct Fixture {
        tmp: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            let tmp = tempfile::tempdir().expect("temp dir");
            Self { tmp }
        }

        fn dir(&self) -> PathBuf {
            self.tmp.path().join("d")
        }

        async fn image(&self) -> PathBuf {
            let path = self.tmp.path().join("img.raw");
            crate::qemu::create(&path, crate::Format::Raw, 1 << 20)
                .await
                .expect("create image");
            path
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            kill_for_tests(&self.dir());
        }
    }

    fn config(image: &Path) -> DaemonConfig {
        DaemonConfig::new()
            .option(
                OptionKind::Blockdev,
                json!({"driver": "file", "node-name": "file0",
                       "filename": image.to_str().expect("utf-8"), "read-only": true}),
            )
            .option(
                OptionKind::Blockdev,
                json!({"driver": "raw", "node-name": "fmt0", "file": "file0", "read-only": true}),
            )
    }

    /// `(ppid, session id)` of `pid`, from `/proc/<pid>/stat`.
    fn parent_and_session(pid: u32) -> (u32, u32) {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .expect("comm")
            .1
            .split_whitespace()
            .collect();
        // After comm: state, ppid, pgrp, session.
        (
            fields[1].parse().expect("ppid"),
            fields[3].parse().expect("session"),
        )
    }

    #[tokio::test]
    async fn a_daemon_starts_detached_is_found_adopted_and_stopped() {
        let fx = Fixture::new();
        let dir = fx.dir();
        std::fs::create_dir(&dir).expect("dir");
        let image = fx.image().await;
        let daemon = Daemon::start(&dir, &config(&image)).await.expect("start");
        let pid = daemon.pid();
        assert!(daemon.is_alive());

        // Detached: not Scoria's child, not in its session.
        let (ppid, session) = parent_and_session(pid);
        let (_, own_session) = parent_and_session(std::process::id());
        assert_ne!(ppid, std::process::id());
        assert_ne!(session, own_session);

        // Configured from the command line, with the formats given.
        let nodes = daemon
            .qmp()
            .execute("query-named-block-nodes", json!({"flat": true}))
            .await
            .expect("query");
        let mut drivers: Vec<(String, String, bool)> = nodes
            .as_array()
            .expect("list")
            .iter()
            .map(|n| {
                (
                    n["node-name"].as_str().unwrap_or_default().to_owned(),
                    n["drv"].as_str().unwrap_or_default().to_owned(),
                    n["ro"].as_bool().unwrap_or_default(),
                )
            })
            .collect();
        drivers.sort();
        assert_eq!(
            drivers,
            [
                ("file0".to_owned(), "file".to_owned(), true),
                ("fmt0".to_owned(), "raw".to_owned(), true)
            ]
        );
        assert_eq!(options_of(daemon.args()), config(&image).options());

        // A second start in the same directory is refused.
        let again = Daemon::start(&dir, &config(&image)).await;
        assert!(
            matches!(again, Err(DaemonError::AlreadyRunning { pid: p, .. }) if p == pid),
            "{again:?}"
        );

        // Dropping the handle leaves the daemon running; it is found and adopted,
        // even when its pidfile was deleted under it.
        drop(daemon);
        let running = find(&dir).await.expect("find").expect("running");
        assert_eq!(running.pid, pid);
        std::fs::remove_file(dir.join(PIDFILE)).expect("remove pidfile");
        assert_eq!(find(&dir).await.expect("find"), Some(running.clone()));
        assert_eq!(options_of(&running.args), config(&image).options());
        let daemon = Daemon::connect(&dir, running).await.expect("connect");
        assert_eq!(daemon.pid(), pid);
        daemon
            .qmp()
            .execute("query-block-exports", Value::Null)
            .await
            .expect("adopted daemon answers");

        daemon.stop().await.expect("stop");
        assert!(!is_running(pid));
        assert_eq!(find(&dir).await.expect("find"), None);
        assert!(!dir.join(QMP_SOCKET).exists() && !dir.join(PIDFILE).exists());
    }

    #[tokio::test]
    async fn death_is_noticed_and_stale_files_do_not_count() {
        let fx = Fixture::new();
        let dir = fx.dir();
        std::fs::create_dir(&dir).expect("dir");
        let image = fx.image().await;
        let daemon = Daemon::start(&dir, &config(&image)).await.expect("start");
        let pid = daemon.pid();

        // SAFETY: a signal to the daemon just started.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        tokio::time::timeout(Duration::from_secs(5), daemon.qmp().closed())
            .await
            .expect("the monitor connection closes");
        assert!(exited_within(pid, Duration::from_secs(5)).await);
        assert!(!daemon.is_alive());
        // The pidfile is stale; it names no daemon.
        assert!(dir.join(PIDFILE).exists());
        assert_eq!(find(&dir).await.expect("find"), None);
        let gone = daemon
            .qmp()
            .execute("query-block-exports", Value::Null)
            .await;
        assert!(matches!(gone, Err(QmpError::Closed)), "{gone:?}");

        // A pidfile naming another process (pid reuse) is not ours either.
        std::fs::write(dir.join(PIDFILE), format!("{}\n", std::process::id())).expect("write");
        assert_eq!(find(&dir).await.expect("find"), None);

        // Starting again clears what the dead daemon left.
        let daemon = Daemon::start(&dir, &config(&image)).await.expect("restart");
        assert_ne!(daemon.pid(), pid);
        daemon.stop().await.expect("stop");
    }

    #[tokio::test]
    async fn a_refused_configuration_is_a_start_error_with_qemus_message() {
        let fx = Fixture::new();
        let dir = fx.dir();
        std::fs::create_dir(&dir).expect("dir");
        let missing = fx.tmp.path().join("missing.raw");
        let err = Daemon::start(&dir, &config(&missing)).await;
        match err {
            Err(DaemonError::Start { stderr }) => {
                assert!(stderr.contains("No such file or directory"), "{stderr}");
            }
            other => panic!("expected a start error, got {other:?}"),
        }
        assert_eq!(find(&dir).await.expect("find"), None);
    }

    #[tokio::test]
    async fn terminate_ends_a_daemon_without_its_monitor() {
        let fx = Fixture::new();
        let dir = fx.dir();
        std::fs::create_dir(&dir).expect("dir");
        let image = fx.image().await;
        let daemon = Daemon::start(&dir, &config(&image)).await.expect("start");
        let pid = daemon.pid();
        drop(daemon);
        terminate(&dir, pid).await.expect("terminate");
        assert!(!is_running(pid));
        assert!(!dir.join(PIDFILE).exists() && !dir.join(QMP_SOCKET).exists());
        // Terminating what is gone is fine.
        terminate(&dir, pid).await.expect("terminate again");
    }

    #[test]
    fn the_command_line_reads_back() {
        let config = DaemonConfig::new()
            .option(
                OptionKind::Object,
                json!({"qom-type": "tls-creds-psk", "id": "t"}),
            )
            .option(OptionKind::Export, json!({"type": "nbd", "id": "e"}));
        let args = command_line(Path::new("/run/a,b"), &config).expect("args");
        assert_eq!(
            args[..7],
            [
                "--daemonize",
                "--pidfile",
                "/run/a,b/qsd.pid",
                "--chardev",
                "socket,id=monitor0,path=/run/a,,b/qmp.sock,server=on,wait=off",
                "--monitor",
                "chardev=monitor0"
            ]
        );
        assert_eq!(options_of(&args), config.options());
    }
}
