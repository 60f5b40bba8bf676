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

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};

use super::{
    ConnectionInfo, ExportError, ExportProtocol, ExportSpec, ExportState, Exporter, NbdAddress,
    NbdConnection, ReconcileReport, Result, Tls, Transport, validate_id,
};
use crate::Format;
use crate::qemu::qsd::{self, Daemon, DaemonConfig, OptionKind};

/// The lock file that keeps two exporters off one run directory.
const LOCK_FILE: &str = ".lock";
/// The NBD socket's name in an export's directory.
const NBD_SOCKET: &str = "nbd.sock";
/// The directory of an export's `keys.psk`.
const PSK_DIR: &str = "psk";
/// The file qemu's `tls-creds-psk` reads in its `dir`.
const PSK_FILE: &str = "keys.psk";
/// The Diffie-Hellman group qemu's TLS server offers, in the file it looks for
/// next to `keys.psk`: RFC 7919's `ffdhe2048`, a public standard group, as
/// PKCS#3 PEM. Without this file qemu generates fresh 2048-bit parameters each
/// time a daemon starts, which costs 0.15 to 2 s of CPU; the published group is
/// as strong and is what RFC 7919 asks servers to use. (PSK sessions mostly
/// negotiate ECDHE-PSK and need no DH group at all.)
const DH_PARAMS_FILE: &str = "dh-params.pem";
const FFDHE2048_PEM: &str = "\
-----BEGIN DH PARAMETERS-----\n\
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz\n\
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a\n\
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7\n\
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi\n\
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD\n\
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==\n\
-----END DH PARAMETERS-----\n";

/// The longest unix socket path (`sun_path` holds 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;
/// The most layers a backing chain may have.
const MAX_CHAIN: usize = 64;

/// Ids inside a daemon. Each daemon serves one export, so fixed names do.
const TLS_ID: &str = "tls0";
const EXPORT_ID: &str = "export0";

/// What happened to one export in an `ensure`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Kept,
    Started,
    Restarted,
}

/// One layer of a backing chain.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Layer {
    path: PathBuf,
    format: Format,
}

/// What a daemon serves, as far as a client can tell: compared between a spec
/// and a running daemon's command line.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Served {
    /// The top image's path.
    image: PathBuf,
    read_only: bool,
    export_name: String,
    address: NbdAddress,
    tls: bool,
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
            let served = served_by_options(&qsd::options_of(daemon.args()));
            let key = read_key_file(&dir).await?;
            if served.as_ref() == Some(&want) && key == key_line && serves(&daemon).await {
                *slot = Some(daemon);
                return Ok((info, Outcome::Kept));
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
        let served = served_by_options(&qsd::options_of(daemon.args()));
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

/// The content of an export's `keys.psk`, if it has one.
async fn read_key_file(dir: &Path) -> Result<Option<String>> {
    let path = dir.join(PSK_DIR).join(PSK_FILE);
    match tokio::fs::read_to_string(&path).await {
        Ok(text) => Ok(Some(text)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(io_err(format!("reading {}", path.display()))(e)),
    }
}

/// Make an export's directory ready for a new daemon: private, with exactly the
/// key it needs (written whole under a temporary name and renamed, so that a
/// TLS handshake never reads half a file), and no stale NBD socket.
async fn prepare_dir(dir: &Path, key_line: Option<&str>) -> Result<()> {
    let dir = dir.to_owned();
    let key_line = key_line.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        private_dir(&dir)?;
        let psk_dir = dir.join(PSK_DIR);
        match key_line {
            Some(line) => {
                private_dir(&psk_dir)?;
                let temp = psk_dir.join(format!(".{PSK_FILE}.tmp"));
                let target = psk_dir.join(PSK_FILE);
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .write(true)
                    .mode(0o600)
                    .open(&temp)
                    .map_err(io_err(format!("creating {}", temp.display())))?;
                file.write_all(line.as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(io_err(format!("writing {}", temp.display())))?;
                std::fs::rename(&temp, &target)
                    .map_err(io_err(format!("renaming {}", temp.display())))?;
                let dh = psk_dir.join(DH_PARAMS_FILE);
                std::fs::write(&dh, FFDHE2048_PEM)
                    .map_err(io_err(format!("writing {}", dh.display())))?;
            }
            None => match std::fs::remove_dir_all(&psk_dir) {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(io_err(format!("removing {}", psk_dir.display()))(e)),
            },
        }
        let socket = dir.join(NBD_SOCKET);
        match std::fs::remove_file(&socket) {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(io_err(format!("removing {}", socket.display()))(e)),
        }
    })
    .await
    .map_err(|e| io_err("preparing an export directory")(std::io::Error::other(e)))?
}

/// Read the backing chain of `image` in `backend`, top first, refusing anything
/// that would make qemu read a file outside the backend (see the module doc).
fn read_chain(backend: &Path, image: &str) -> Result<Vec<Layer>> {
    let bad = |name: &str, detail: String| ExportError::BadImage {
        name: name.to_owned(),
        detail,
    };
    let mut layers = Vec::new();
    let mut seen = HashSet::new();
    let mut name = image.to_owned();
    loop {
        let format = crate::format_of_name(&name).map_err(|_| {
            bad(
                image,
                format!("its backing file {name:?} is not an image name of this backend"),
            )
        })?;
        if !seen.insert(name.clone()) {
            return Err(bad(image, format!("its backing chain loops at {name}")));
        }
        if layers.len() == MAX_CHAIN {
            return Err(bad(
                image,
                format!("its backing chain has more than {MAX_CHAIN} layers"),
            ));
        }
        let path = backend.join(&name);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Err(bad(&name, "not a regular file".into())),
            Err(e) if is_not_found(&e) && layers.is_empty() => {
                return Err(ExportError::ImageNotFound(name));
            }
            Err(e) if is_not_found(&e) => {
                return Err(bad(image, format!("its backing file {name} is missing")));
            }
            Err(e) => return Err(io_err(format!("reading {}", path.display()))(e)),
        }
        let backing = match format {
            Format::Raw => None,
            Format::Qcow2 => {
                let header = crate::qcow2::read_header(&path).map_err(|e| match e {
                    crate::qcow2::HeaderError::Io(source) => ExportError::Io {
                        op: format!("reading the header of {}", path.display()),
                        source,
                    },
                    crate::qcow2::HeaderError::Invalid(detail) => bad(&name, detail),
                })?;
                if header.data_file.is_some() {
                    return Err(bad(&name, "it has an external data file".into()));
                }
                if let (Some(backing), Some(backing_format)) =
                    (&header.backing_file, &header.backing_format)
                    && crate::format_of_name(backing)
                        .is_ok_and(|f| f.as_str() != backing_format.as_str())
                {
                    return Err(bad(
                        &name,
                        format!("its header says backing file {backing} is {backing_format}"),
                    ));
                }
                header.backing_file
            }
        };
        layers.push(Layer { path, format });
        match backing {
            Some(next) => name = next,
            None => return Ok(layers),
        }
    }
}

fn path_str(path: &Path) -> &str {
    // Both directories were checked to be UTF-8 when the exporter was made, and
    // ids and image names are ASCII.
    path.to_str().unwrap_or_default()
}

/// The daemon configuration serving `spec` from `layers` (top first) in `dir`.
fn daemon_config(spec: &ExportSpec, layers: &[Layer], dir: &Path) -> DaemonConfig {
    let mut config = DaemonConfig::new();
    let tls = matches!(
        spec.transport,
        Transport::Tcp {
            tls: Tls::Psk(_),
            ..
        }
    );
    if tls {
        config = config.option(
            OptionKind::Object,
            json!({
                "qom-type": "tls-creds-psk",
                "id": TLS_ID,
                "endpoint": "server",
                "dir": path_str(&dir.join(PSK_DIR)),
            }),
        );
    }
    // Base first: a node can only refer to nodes defined before it.
    for (depth, layer) in layers.iter().enumerate().rev() {
        let read_only = depth > 0 || spec.read_only;
        let discard = if read_only { "ignore" } else { "unmap" };
        config = config.option(
            OptionKind::Blockdev,
            json!({
                "driver": "file",
                "node-name": format!("file{depth}"),
                "filename": path_str(&layer.path),
                "read-only": read_only,
                "discard": discard,
            }),
        );
        let mut node = json!({
            "driver": layer.format.as_str(),
            "node-name": format!("layer{depth}"),
            "file": format!("file{depth}"),
            "read-only": read_only,
            "discard": discard,
        });
        if layer.format == Format::Qcow2 {
            node["backing"] = if depth + 1 < layers.len() {
                json!(format!("layer{}", depth + 1))
            } else {
                Value::Null
            };
        }
        config = config.option(OptionKind::Blockdev, node);
    }
    let addr = match &spec.transport {
        Transport::Unix => json!({"type": "unix", "path": path_str(&dir.join(NBD_SOCKET))}),
        Transport::Tcp { host, port, .. } => {
            json!({"type": "inet", "host": host.to_string(), "port": port.to_string()})
        }
    };
    let mut server = json!({ "addr": addr });
    if tls {
        server["tls-creds"] = json!(TLS_ID);
    }
    config = config.option(OptionKind::NbdServer, server);
    config.option(
        OptionKind::Export,
        json!({
            "type": "nbd",
            "id": EXPORT_ID,
            "node-name": "layer0",
            "name": spec.id,
            "writable": !spec.read_only,
        }),
    )
}

/// What `spec` asks to be served.
fn served_by_spec(spec: &ExportSpec, layers: &[Layer], dir: &Path) -> Served {
    let (address, tls) = match &spec.transport {
        Transport::Unix => (
            NbdAddress::Unix {
                path: dir.join(NBD_SOCKET),
            },
            false,
        ),
        Transport::Tcp { host, port, tls } => (
            NbdAddress::Tcp {
                host: *host,
                port: *port,
            },
            matches!(tls, Tls::Psk(_)),
        ),
    };
    Served {
        image: layers.first().map(|l| l.path.clone()).unwrap_or_default(),
        read_only: spec.read_only,
        export_name: spec.id.clone(),
        address,
        tls,
    }
}

/// What a daemon with these options serves, read from its NBD export, the node
/// it exports, that node's file and the NBD server. `None` if they do not
/// describe one NBD export of a file.
fn served_by_options(options: &[(OptionKind, Value)]) -> Option<Served> {
    let of_kind = |kind: OptionKind| {
        options
            .iter()
            .filter(move |(k, _)| *k == kind)
            .map(|(_, v)| v)
    };
    let node =
        |name: &str| of_kind(OptionKind::Blockdev).find(|v| v["node-name"].as_str() == Some(name));
    let export = of_kind(OptionKind::Export).find(|v| v["type"] == "nbd")?;
    let top = node(export["node-name"].as_str()?)?;
    let file = node(top["file"].as_str()?)?;
    if file["driver"] != "file" {
        return None;
    }
    let server = of_kind(OptionKind::NbdServer).next()?;
    let addr = &server["addr"];
    let address = match addr["type"].as_str()? {
        "unix" => NbdAddress::Unix {
            path: PathBuf::from(addr["path"].as_str()?),
        },
        "inet" => NbdAddress::Tcp {
            host: addr["host"].as_str()?.parse().ok()?,
            port: addr["port"].as_str()?.parse().ok()?,
        },
        _ => return None,
    };
    Some(Served {
        image: PathBuf::from(file["filename"].as_str()?),
        read_only: !export["writable"].as_bool().unwrap_or(false),
        export_name: export["name"].as_str()?.to_owned(),
        address,
        tls: server.get("tls-creds").is_some_and(|c| !c.is_null()),
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::Psk;

    fn spec(transport: Transport, read_only: bool) -> ExportSpec {
        ExportSpec {
            id: "att-1".into(),
            image: "top.qcow2".into(),
            read_only,
            transport,
        }
    }

    fn chain() -> Vec<Layer> {
        vec![
            Layer {
                path: "/b/top.qcow2".into(),
                format: Format::Qcow2,
            },
            Layer {
                path: "/b/base.raw".into(),
                format: Format::Raw,
            },
        ]
    }

    #[test]
    fn a_daemon_configuration_reads_back_as_its_spec() {
        let dir = Path::new("/run/att-1");
        let psk = Psk::new("att-1", "00112233445566778899aabbccddeeff").expect("psk");
        let check = |spec: ExportSpec| {
            let config = daemon_config(&spec, &chain(), dir);
            assert_eq!(
                served_by_options(config.options()),
                Some(served_by_spec(&spec, &chain(), dir)),
                "{spec:?}"
            );
        };
        check(spec(Transport::Unix, true));
        check(spec(Transport::Unix, false));
        let tcp = |tls| Transport::Tcp {
            host: "127.0.0.1".parse().expect("ip"),
            port: 10809,
            tls,
        };
        check(spec(tcp(Tls::Psk(psk.clone())), false));
        check(spec(tcp(Tls::Disabled), true));
        check(spec(
            Transport::Tcp {
                host: "::1".parse().expect("ip"),
                port: 1,
                tls: Tls::Disabled,
            },
            true,
        ));
    }

    #[test]
    fn the_chain_is_given_to_qemu_layer_by_layer() {
        let dir = Path::new("/run/att-1");
        let config = daemon_config(&spec(Transport::Unix, false), &chain(), dir);
        let blockdevs: Vec<&Value> = config
            .options()
            .iter()
            .filter(|(k, _)| *k == OptionKind::Blockdev)
            .map(|(_, v)| v)
            .collect();
        assert_eq!(
            blockdevs,
            [
                &json!({"driver": "file", "node-name": "file1", "filename": "/b/base.raw",
                        "read-only": true, "discard": "ignore"}),
                &json!({"driver": "raw", "node-name": "layer1", "file": "file1",
                        "read-only": true, "discard": "ignore"}),
                &json!({"driver": "file", "node-name": "file0", "filename": "/b/top.qcow2",
                        "read-only": false, "discard": "unmap"}),
                &json!({"driver": "qcow2", "node-name": "layer0", "file": "file0",
                        "read-only": false, "discard": "unmap", "backing": "layer1"}),
            ]
        );
        // A qcow2 base says so: no backing, whatever its header holds.
        let config = daemon_config(&spec(Transport::Unix, true), &chain()[..1], dir);
        let top = config
            .options()
            .iter()
            .find(|(k, v)| *k == OptionKind::Blockdev && v["node-name"] == "layer0")
            .map(|(_, v)| v)
            .expect("top");
        assert_eq!(top["backing"], Value::Null);
        assert!(top.get("backing").is_some());
        // Without TLS there is no credentials object and the server needs none.
        assert!(
            config
                .options()
                .iter()
                .all(|(k, v)| *k != OptionKind::Object && v.get("tls-creds").is_none())
        );
    }

    #[test]
    fn other_daemons_do_not_read_as_exports() {
        assert_eq!(served_by_options(&[]), None);
        let only_nodes = [(
            OptionKind::Blockdev,
            json!({"driver": "file", "node-name": "f", "filename": "/x"}),
        )];
        assert_eq!(served_by_options(&only_nodes), None);
    }
}
