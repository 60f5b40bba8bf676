//! The file backend's exporter: each export is served by a `qemu-storage-daemon`
//! of its own (see [`crate::qemu::qsd`]), over NBD.
//!
//! # One daemon per export
//!
//! qemu's NBD server takes one set of TLS credentials (`tls-creds`, and one
//! `tls-authz`) for the whole server, and a daemon has one NBD server. If one
//! daemon served several exports, its `keys.psk` would hold every export's
//! identity, and a client holding attachment A's key could open attachment B's
//! export by name. Nothing in qemu binds an export to an identity:
//! `block-export-add` has no TLS option, and for PSK credentials qemu does not
//! consult `tls-authz` at all (it checks x509 distinguished names only). So
//! each export gets its own daemon, NBD server, listening socket and
//! `keys.psk` holding exactly one identity and key. The cost is a process per
//! export (7 MB resident, of which about 1.3 MB its own, the rest shared
//! libraries; 20 to 50 ms to start); the gain is that one export's key opens
//! nothing else, and one daemon's death or restart touches one export.
//!
//! # The run directory
//!
//! ```text
//!   <run>/                  0700, locked (.lock) by the one exporter using it
//!   <run>/<id>/             0700, one per export: the daemon's directory
//!       qmp.sock, qsd.pid   its monitor and pidfile (qsd)
//!       nbd.sock            its NBD socket, for Transport::Unix
//!       psk/keys.psk        0700 dir, 0600 file: "identity:hexkey", for TLS
//!       psk/dh-params.pem   a public Diffie-Hellman group (RFC 7919), for TLS
//! ```
//!
//! Everything the exporter knows is there or in the desired specs: the handles
//! it keeps in memory are a cache, rebuilt by finding each daemon again
//! (pidfile, `/proc/<pid>/cmdline`). What a running daemon serves is read back
//! from its command line (image, read-only, address, export name, TLS) and from
//! its `keys.psk`, and compared with the spec; only a difference replaces the
//! daemon, so adopting after a restart (or after an upgrade of Scoria that
//! writes options slightly differently) disturbs no client.
//!
//! # Images and their backing chains
//!
//! Formats are never probed. Each layer is opened as a `file` node under a
//! format node of the format its name says (`qcow2` or `raw`). A qcow2 image
//! may have a backing file; the exporter reads the chain from the headers
//! itself and gives qemu every layer explicitly (`"backing": <node>`, and
//! `"backing": null` at the base), so qemu never resolves a backing name or
//! guesses a backing format. Every backing name must be an image name of this
//! backend (a plain `name.qcow2|.raw` in the same directory: no path, no
//! protocol, no `json:`), a header's backing format must agree with the name,
//! and no layer may have an external data file: those are refused
//! ([`ExportError::BadImage`]), because they could make the daemon serve any
//! file of the host. Backing layers are always read-only. A writable export
//! passes the guest's discards down (`discard: unmap`), so freed blocks are
//! freed in the file.
//!
//! # The files of this module
//!
//! Here, the exporter: its run directory and lock, one export's lifecycle
//! (validate, adopt or replace its daemon, remove) and [`Exporter`]'s
//! operations. `chain.rs` reads and checks backing chains, `config.rs` turns a
//! spec into a daemon's command line and reads one back, `dir.rs` prepares an
//! export's directory (key file, DH group, stale socket), `live.rs` changes
//! what a running daemon serves (a new top layer for a snapshot, a bigger
//! image) without stopping it, `stream.rs` merges a layer of the served
//! chain into the one above it (block-stream), `fleece.rs` gives a backup a point-in-time
//! view of a served volume and manages the daemon's dirty bitmaps.
//!
//! # Never back down a chain
//!
//! After a live snapshot the daemon serves an overlay its command line does
//! not name; what it serves is read from QMP. A spec naming an image *below*
//! what a daemon serves (the daemon is ahead of the records) is refused
//! rather than served: replacing the daemon would drop everything written to
//! the newer layer since the switch. The records move first (the volume's
//! active image), the daemon after, so this happens only when something is
//! wrong, and then it is reported, not acted on.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

use super::{
    ConnectionInfo, ExportError, ExportProtocol, ExportSpec, ExportState, Exporter, NbdAddress,
    NbdConnection, ReconcileReport, Result, Tls, Transport, validate_id,
};
use crate::Format;
use crate::qemu::qsd::{self, Daemon};

mod chain;
mod config;
mod dir;
mod fleece;
mod live;
mod stream;

pub use fleece::{Fleece, LiveBitmap};

#[cfg(test)]
mod tests;

use chain::{Layer, read_chain};
use config::{EXPORT_ID, daemon_config, served_by_options, served_by_spec};
use dir::{prepare_dir, read_key_file};

/// The lock file that keeps two exporters off one run directory.
const LOCK_FILE: &str = ".lock";
/// The NBD socket's name in an export's directory.
const NBD_SOCKET: &str = "nbd.sock";
/// The directory of an export's `keys.psk`.
const PSK_DIR: &str = "psk";
/// The file qemu's `tls-creds-psk` reads in its `dir`.
const PSK_FILE: &str = "keys.psk";

/// The longest unix socket path (`sun_path` holds 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// What happened to one export in an `ensure`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Kept,
    Started,
    Restarted,
}

type Slot = Arc<tokio::sync::Mutex<Option<Daemon>>>;

/// Exports of the images of one backend directory, each by a daemon of its own.
#[derive(Debug)]
pub struct FileExporter {
    backend: PathBuf,
    run: PathBuf,
    /// Held (locked) for the exporter's life.
    _lock: std::fs::File,
    /// A handle per export whose daemon this exporter has reached, each behind a
    /// lock so that operations on one export run one at a time.
    slots: Mutex<HashMap<String, Slot>>,
}

fn io_err(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> ExportError {
    let op = op.into();
    move |source| ExportError::Io { op, source }
}

fn daemon_err(id: &str) -> impl FnOnce(qsd::DaemonError) -> ExportError {
    let id = id.to_owned();
    move |source| ExportError::Daemon { id, source }
}

fn is_not_found(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}

/// Create `path` as a directory of mode 0700, or make an existing one 0700.
fn private_dir(path: &Path) -> Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
                .map_err(io_err(format!("making {} private", path.display())))
        }
        Err(e) => Err(io_err(format!("creating {}", path.display()))(e)),
    }
}

impl FileExporter {
    /// An exporter of the images in `backend_dir`, keeping its daemons' files in
    /// `run_dir` (created, mode 0700). Starts nothing: the daemons already
    /// running there keep running until a [`Exporter::reconcile`] or
    /// [`Exporter::ensure`] adopts them (or a [`Exporter::remove`] stops them).
    /// Fails with [`ExportError::Busy`] while another exporter uses `run_dir`.
    pub async fn new(backend_dir: &Path, run_dir: &Path) -> Result<Self> {
        let backend_dir = backend_dir.to_owned();
        let run_dir = run_dir.to_owned();
        tokio::task::spawn_blocking(move || Self::open(&backend_dir, &run_dir))
            .await
            .map_err(|e| io_err("opening the exporter")(std::io::Error::other(e)))?
    }

    fn open(backend_dir: &Path, run_dir: &Path) -> Result<Self> {
        let backend = std::fs::canonicalize(backend_dir)
            .map_err(io_err(format!("opening {}", backend_dir.display())))?;
        if let Some(parent) = run_dir.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io_err(format!("creating {}", parent.display())))?;
        }
        private_dir(run_dir)?;
        let run = std::fs::canonicalize(run_dir)
            .map_err(io_err(format!("opening {}", run_dir.display())))?;
        for dir in [&backend, &run] {
            if dir.to_str().is_none() {
                return Err(ExportError::Io {
                    op: format!("using {}", dir.display()),
                    source: std::io::Error::other("the path is not UTF-8, which qemu needs"),
                });
            }
        }
        let lock_path = run.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err(format!("opening {}", lock_path.display())))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(ExportError::Busy(run)),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(io_err(format!("locking {}", lock_path.display()))(e));
            }
        }
        Ok(Self {
            backend,
            run,
            _lock: lock,
            slots: Mutex::new(HashMap::new()),
        })
    }

    /// The run directory (canonical).
    pub fn run_dir(&self) -> &Path {
        &self.run
    }

    /// Kill every daemon of `run_dir` at once, without waiting (test fixtures'
    /// `Drop`: no test leaves a daemon behind).
    pub fn kill_all_for_tests(run_dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(run_dir) {
            for entry in entries.flatten() {
                qsd::kill_for_tests(&entry.path());
            }
        }
    }

    /// Where export `id`'s NBD socket is, for [`Transport::Unix`].
    pub fn socket_path(&self, id: &str) -> PathBuf {
        self.export_dir(id).join(NBD_SOCKET)
    }

    fn export_dir(&self, id: &str) -> PathBuf {
        self.run.join(id)
    }

    fn slot(&self, id: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(slots.entry(id.to_owned()).or_default())
    }

    /// Forget `id`'s slot if nobody else holds it (called with it locked and
    /// empty, after a removal).
    fn forget_slot(&self, id: &str, slot: &Slot) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        // The map's reference and the caller's: no one else can be waiting.
        if Arc::strong_count(slot) == 2 {
            slots.remove(id);
        }
    }

    /// Check a spec as far as it can be without touching the image.
    fn validate(&self, spec: &ExportSpec) -> Result<()> {
        validate_id(&spec.id)?;
        let invalid = |detail: String| ExportError::InvalidSpec {
            id: spec.id.clone(),
            detail,
        };
        crate::format_of_name(&spec.image)
            .map_err(|_| invalid(format!("{:?} is not an image name", spec.image)))?;
        let dir = self.export_dir(&spec.id);
        for socket in [qsd::QMP_SOCKET, NBD_SOCKET] {
            let len = dir.join(socket).as_os_str().len();
            if len > MAX_SOCKET_PATH {
                return Err(invalid(format!(
                    "its socket path would be {len} bytes, more than the {MAX_SOCKET_PATH} a unix socket allows; use a shorter run directory or id"
                )));
            }
        }
        if let Transport::Tcp { port: 0, .. } = spec.transport {
            return Err(invalid(
                "a TCP export needs a port: clients must find it again after a restart".into(),
            ));
        }
        Ok(())
    }

    /// The connection info of `spec` (validated).
    fn connection_info(&self, spec: &ExportSpec) -> ConnectionInfo {
        let (address, tls_identity) = match &spec.transport {
            Transport::Unix => (
                NbdAddress::Unix {
                    path: self.export_dir(&spec.id).join(NBD_SOCKET),
                },
                None,
            ),
            Transport::Tcp { host, port, tls } => (
                NbdAddress::Tcp {
                    host: *host,
                    port: *port,
                },
                match tls {
                    Tls::Psk(psk) => Some(psk.identity().to_owned()),
                    Tls::Disabled => None,
                },
            ),
        };
        ConnectionInfo::Nbd(NbdConnection {
            address,
            export_name: spec.id.clone(),
            format: Format::Raw,
            read_only: spec.read_only,
            tls_identity,
        })
    }

    /// The layers of `image`'s chain, top first (see the module doc).
    async fn chain(&self, image: &str) -> Result<Vec<Layer>> {
        let backend = self.backend.clone();
        let image = image.to_owned();
        tokio::task::spawn_blocking(move || read_chain(&backend, &image))
            .await
            .map_err(|e| io_err("reading a backing chain")(std::io::Error::other(e)))?
    }

    /// The daemon serving `dir` now, if any: the cached handle if it is alive,
    /// else the daemon found in `dir`, connected to. A daemon whose monitor does
    /// not answer cannot be supervised: it is ended, and `None` returned.
    async fn current(&self, id: &str, cached: Option<Daemon>) -> Result<Option<Daemon>> {
        if let Some(daemon) = cached {
            if daemon.is_alive() {
                return Ok(Some(daemon));
            }
            tracing::warn!(export = %id, pid = daemon.pid(), "qemu-storage-daemon died");
        }
        let dir = self.export_dir(id);
        let Some(running) = qsd::find(&dir).await.map_err(daemon_err(id))? else {
            return Ok(None);
        };
        let pid = running.pid;
        match Daemon::connect(&dir, running).await {
            Ok(daemon) => Ok(Some(daemon)),
            Err(e) => {
                tracing::warn!(
                    export = %id,
                    pid,
                    error = %super::error_chain(&e),
                    "qemu-storage-daemon's monitor does not answer; ending it"
                );
                qsd::terminate(&dir, pid).await.map_err(daemon_err(id))?;
                Ok(None)
            }
        }
    }

    async fn ensure_one(&self, spec: &ExportSpec) -> Result<(ConnectionInfo, Outcome)> {
        self.validate(spec)?;
        if matches!(
            spec.transport,
            Transport::Tcp {
                tls: Tls::Disabled,
                ..
            }
        ) {
            tracing::warn!(
                export = %spec.id,
                "serving an export over TCP without TLS: anyone who reaches the port can read it"
            );
        }
        let layers = self.chain(&spec.image).await?;
        let dir = self.export_dir(&spec.id);
        let config = daemon_config(spec, &layers, &dir);
        let want = served_by_spec(spec, &layers, &dir);
        let key_line = match &spec.transport {
            Transport::Tcp {
                tls: Tls::Psk(psk), ..
            } => Some(psk.keys_file_line()),
            _ => None,
        };
        let info = self.connection_info(spec);

        let slot = self.slot(&spec.id);
        let mut slot = slot.lock().await;
        let existed = tokio::fs::try_exists(&dir)
            .await
            .map_err(io_err(format!("looking for {}", dir.display())))?;
        if let Some(daemon) = self.current(&spec.id, slot.take()).await? {
            let served = served_now(&daemon).await;
            let key = read_key_file(&dir).await?;
            if served.as_ref() == Some(&want) && key == key_line && serves(&daemon).await {
                *slot = Some(daemon);
                return Ok((info, Outcome::Kept));
            }
            if let Some(served) = &served
                && served.image != want.image
                && self.is_above(&served.image, &spec.image).await
            {
                let detail = format!(
                    "its daemon serves {}, a newer layer on {}: serving {} again would drop what was written since",
                    served.image.display(),
                    spec.image,
                    spec.image
                );
                *slot = Some(daemon);
                return Err(ExportError::InvalidSpec {
                    id: spec.id.clone(),
                    detail,
                });
            }
            tracing::info!(
                export = %spec.id,
                pid = daemon.pid(),
                "qemu-storage-daemon serves something other than the spec; replacing it"
            );
            daemon.stop().await.map_err(daemon_err(&spec.id))?;
        }

        prepare_dir(&dir, key_line.as_deref()).await?;
        let daemon = Daemon::start(&dir, &config)
            .await
            .map_err(daemon_err(&spec.id))?;
        tracing::info!(export = %spec.id, pid = daemon.pid(), image = %spec.image, "export served");
        *slot = Some(daemon);
        Ok((
            info,
            if existed {
                Outcome::Restarted
            } else {
                Outcome::Started
            },
        ))
    }

    /// Stop and remove export `id`; returns whether there was anything.
    async fn remove_one(&self, id: &str) -> Result<bool> {
        validate_id(id)?;
        let slot = self.slot(id);
        let mut guard = slot.lock().await;
        let dir = self.export_dir(id);
        let daemon = self.current(id, guard.take()).await?;
        let had_daemon = daemon.is_some();
        if let Some(daemon) = daemon {
            daemon.stop().await.map_err(daemon_err(id))?;
        }
        let had_files = match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => true,
            Err(e) if is_not_found(&e) => false,
            Err(e) => return Err(io_err(format!("removing {}", dir.display()))(e)),
        };
        if had_daemon || had_files {
            tracing::info!(export = %id, "export removed");
        }
        drop(guard);
        self.forget_slot(id, &slot);
        Ok(had_daemon || had_files)
    }

    /// The ids that have a directory in the run directory or a cached handle.
    async fn present_ids(&self) -> Result<Vec<String>> {
        let mut ids: HashSet<String> = self
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        let mut entries = tokio::fs::read_dir(&self.run)
            .await
            .map_err(io_err(format!("listing {}", self.run.display())))?;
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(io_err(format!("listing {}", self.run.display())))?
        {
            if let Some(name) = entry.file_name().to_str()
                && validate_id(name).is_ok()
            {
                ids.insert(name.to_owned());
            }
        }
        let mut ids: Vec<String> = ids.into_iter().collect();
        ids.sort();
        Ok(ids)
    }

    async fn state_of(&self, id: &str) -> Result<Option<ExportState>> {
        let slot = self.slot(id);
        let mut slot = slot.lock().await;
        let dir = self.export_dir(id);
        let daemon = self.current(id, slot.take()).await?;
        let exists = tokio::fs::try_exists(&dir)
            .await
            .map_err(io_err(format!("looking for {}", dir.display())))?;
        let Some(daemon) = daemon else {
            return Ok(exists.then(|| ExportState {
                id: id.to_owned(),
                pid: None,
                serving: false,
                image: None,
                connection: None,
            }));
        };
        let served = served_now(&daemon).await;
        let identity = match read_key_file(&dir).await? {
            Some(line) => line
                .split_once(':')
                .map(|(identity, _)| identity.to_owned()),
            None => None,
        };
        let state = ExportState {
            id: id.to_owned(),
            pid: Some(daemon.pid()),
            serving: serves(&daemon).await,
            image: served.as_ref().and_then(|s| {
                s.image
                    .strip_prefix(&self.backend)
                    .ok()
                    .map(|name| name.to_string_lossy().into_owned())
            }),
            connection: served.map(|s| {
                ConnectionInfo::Nbd(NbdConnection {
                    address: s.address,
                    export_name: s.export_name,
                    format: Format::Raw,
                    read_only: s.read_only,
                    tls_identity: if s.tls { identity } else { None },
                })
            }),
        };
        *slot = Some(daemon);
        Ok(Some(state))
    }
}

impl FileExporter {
    /// Whether the image at `served` has `image` (a name of this backend) in
    /// its backing chain below it.
    async fn is_above(&self, served: &Path, image: &str) -> bool {
        let Some(name) = served
            .strip_prefix(&self.backend)
            .ok()
            .and_then(|n| n.to_str())
        else {
            return false;
        };
        self.chain(name).await.is_ok_and(|layers| {
            layers
                .iter()
                .skip(1)
                .any(|l| l.path == self.backend.join(image))
        })
    }
}

/// What a running daemon serves: its command line, with the image it serves
/// now as QMP reports it (a live snapshot put a newer layer on top of the one
/// the command line names).
async fn served_now(daemon: &Daemon) -> Option<config::Served> {
    let mut served = served_by_options(&qsd::options_of(daemon.args()))?;
    match live::live_top(daemon).await {
        Ok(Some(top)) => served.image = top.path,
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(pid = daemon.pid(), error = %super::error_chain(&e), "reading what a daemon serves failed");
        }
    }
    Some(served)
}

/// Whether the daemon's export is up (present and not shutting down).
async fn serves(daemon: &Daemon) -> bool {
    match daemon
        .qmp()
        .execute("query-block-exports", Value::Null)
        .await
    {
        Ok(exports) => exports.as_array().is_some_and(|exports| {
            exports
                .iter()
                .any(|e| e["id"] == EXPORT_ID && e["shutting-down"] == false)
        }),
        Err(e) => {
            tracing::warn!(pid = daemon.pid(), error = %super::error_chain(&e), "query-block-exports failed");
            false
        }
    }
}

#[async_trait::async_trait]
impl Exporter for FileExporter {
    fn protocols(&self) -> &[ExportProtocol] {
        &[ExportProtocol::Nbd]
    }

    async fn ensure(&self, spec: &ExportSpec) -> Result<ConnectionInfo> {
        self.ensure_one(spec).await.map(|(info, _)| info)
    }

    async fn remove(&self, id: &str) -> Result<()> {
        self.remove_one(id).await.map(drop)
    }

    async fn snapshot(&self, id: &str, overlay: &str) -> Result<bool> {
        self.snapshot_live(id, overlay).await
    }

    async fn resize(&self, id: &str, size: u64) -> Result<bool> {
        self.resize_live(id, size).await
    }

    async fn list(&self) -> Result<Vec<ExportState>> {
        let mut states = Vec::new();
        for id in self.present_ids().await? {
            if let Some(state) = self.state_of(&id).await? {
                states.push(state);
            }
        }
        Ok(states)
    }

    async fn reconcile(&self, desired: &[ExportSpec]) -> Result<ReconcileReport> {
        let mut ids = HashSet::new();
        let mut addresses = HashSet::new();
        for spec in desired {
            self.validate(spec)?;
            let duplicate = |what: &str| ExportError::InvalidSpec {
                id: spec.id.clone(),
                detail: format!("another desired export has the same {what}"),
            };
            if !ids.insert(spec.id.as_str()) {
                return Err(duplicate("id"));
            }
            if let Transport::Tcp { host, port, .. } = &spec.transport
                && !addresses.insert((*host, *port))
            {
                return Err(duplicate("TCP address"));
            }
        }

        let mut report = ReconcileReport::default();
        // Removals first: they free ports and image locks a desired export may
        // need.
        for id in self.present_ids().await? {
            if ids.contains(id.as_str()) {
                continue;
            }
            match self.remove_one(&id).await {
                Ok(true) => report.removed.push(id),
                Ok(false) => {}
                Err(e) => report.failed.push((id, e)),
            }
        }
        for spec in desired {
            match self.ensure_one(spec).await {
                Ok((_, Outcome::Kept)) => report.kept.push(spec.id.clone()),
                Ok((_, Outcome::Started)) => report.started.push(spec.id.clone()),
                Ok((_, Outcome::Restarted)) => report.restarted.push(spec.id.clone()),
                Err(e) => report.failed.push((spec.id.clone(), e)),
            }
        }
        Ok(report)
    }
}
