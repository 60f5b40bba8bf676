//! Exports: serving a volume's bytes to a host, kept as desired state.
//!
//! An attachment (a later issue) says "this volume is served to that host with
//! these credentials". The application layer records that intent; an
//! [`Exporter`], one per backend, makes reality match it: [`Exporter::ensure`]
//! one export, [`Exporter::remove`] one, and [`Exporter::reconcile`] all of them
//! at once (add the missing, remove the extra, restart the dead) at start-up,
//! after a crash, and on a timer ([`supervise`]). Each call is idempotent and
//! converges from whatever state it finds, which is the crucible pattern: the
//! agent records intent, a worker reconciles it. Scoria is never in the I/O
//! path; it only arranges for something else to serve.
//!
//! The file backend's exporter, [`FileExporter`], runs one `qemu-storage-daemon`
//! per export (see [`file`] for why, and for the layout of its run directory); a
//! Ceph RBD backend will hand out RBD connection info instead, which is why
//! [`ConnectionInfo`] is an enum and [`Exporter::protocols`] says what a backend
//! offers.
//!
//! # Security
//!
//! NBD has no authentication of its own: whoever reaches the socket reads (and,
//! if writable, writes) the disk. So an export is reachable only
//!
//! - over a unix socket in a directory only Scoria's user can enter
//!   ([`Transport::Unix`], for clients on the same host), or
//! - over TCP with TLS and a pre-shared key of its own ([`Tls::Psk`]): the
//!   daemon knows that one identity and key, so a client holding another
//!   export's key cannot complete the handshake, let alone read.
//!
//! Plain TCP ([`Tls::Disabled`]) exists for an operator who turned TLS off on a
//! trusted network; it must be asked for by name and is logged as a warning
//! each time it is served. A key never appears in `Debug` output, in
//! [`ConnectionInfo`] (which carries only the identity) or on a command line
//! (it is in a file only the daemon's user can read).
//!
//! # What survives what
//!
//! ```text
//!   event                         daemon / guest I/O      what reconcile does
//!   Scoria restarts (or crashes)  keeps running           adopts it (same pid)
//!   a daemon dies (kill -9, OOM)  gone; client retries    starts it again with the
//!                                                         same socket/port, export
//!                                                         name and key
//!   the spec changes              replaced                stops it, starts the new
//!   the export is not desired     -                       stops it, removes its files
//!   the host reboots              gone                    starts every desired one
//! ```

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::Format;
use crate::qemu::qsd::DaemonError;

pub mod file;
#[cfg(test)]
mod fleece_tests;
#[cfg(test)]
mod live_tests;
#[cfg(test)]
mod tests;

pub use file::FileExporter;

/// The longest export id. Ids name directories and unix sockets, whose paths
/// are limited to 107 bytes.
pub const MAX_ID_LEN: usize = 64;

/// The longest PSK identity.
pub const MAX_IDENTITY_LEN: usize = 64;

/// What to serve, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSpec {
    /// Unique among the exports of an exporter, chosen by the caller (an
    /// attachment's id, say) and kept across restarts: it is the NBD export
    /// name and names the export's directory. 1 to [`MAX_ID_LEN`] bytes of
    /// `[A-Za-z0-9._-]`, not starting with `.` or `-`.
    pub id: String,
    /// The image's name on the backend; its extension names its format (see
    /// [`crate::format_of_name`]), which is never probed.
    pub image: String,
    /// Serve it read-only: clients cannot write, and the daemon opens the image
    /// read-only.
    pub read_only: bool,
    pub transport: Transport,
}

/// Where an export listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A unix socket in the export's private directory, for a client on the same
    /// host; its path is in the [`ConnectionInfo`].
    Unix,
    /// TCP on `host:port`. The port is chosen by the caller and kept with the
    /// intent, so that a restarted daemon listens where clients reconnect.
    Tcp { host: IpAddr, port: u16, tls: Tls },
}

/// Whether a TCP export requires TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tls {
    /// TLS with this pre-shared key; nothing else can connect.
    Psk(Psk),
    /// No TLS: anyone who reaches the port can read the volume. Only when the
    /// operator has turned TLS off.
    Disabled,
}

/// A TLS pre-shared key and the identity it belongs to. `Debug` shows the
/// identity only.
#[derive(Clone, PartialEq, Eq)]
pub struct Psk {
    identity: String,
    key_hex: String,
}

impl std::fmt::Debug for Psk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Psk")
            .field("identity", &self.identity)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Psk {
    /// The shortest and longest keys accepted, in bytes.
    pub const MIN_KEY_BYTES: usize = 16;
    pub const MAX_KEY_BYTES: usize = 64;
    /// The size of a [`Psk::generate`]d key, in bytes.
    pub const KEY_BYTES: usize = 32;

    /// A key given as hex (upper or lower case), for `identity`: 1 to
    /// [`MAX_IDENTITY_LEN`] bytes of `[A-Za-z0-9._-]` (a `keys.psk` line is
    /// `identity:hexkey`).
    pub fn new(identity: impl Into<String>, key_hex: impl Into<String>) -> Result<Self> {
        let identity = identity.into();
        let key_hex = key_hex.into().to_ascii_lowercase();
        let invalid = ExportError::InvalidKey;
        if identity.is_empty()
            || identity.len() > MAX_IDENTITY_LEN
            || !identity.bytes().all(is_name_byte)
        {
            return Err(invalid(format!(
                "a PSK identity is 1 to {MAX_IDENTITY_LEN} bytes of [A-Za-z0-9._-], not {identity:?}"
            )));
        }
        let bytes = key_hex.len() / 2;
        if !key_hex.len().is_multiple_of(2)
            || !(Self::MIN_KEY_BYTES..=Self::MAX_KEY_BYTES).contains(&bytes)
            || !key_hex.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(invalid(format!(
                "a PSK key is {} to {} bytes written as hex",
                Self::MIN_KEY_BYTES,
                Self::MAX_KEY_BYTES
            )));
        }
        Ok(Self { identity, key_hex })
    }

    /// A fresh random key of [`Psk::KEY_BYTES`] bytes for `identity`, from the
    /// kernel's random source.
    pub fn generate(identity: impl Into<String>) -> Result<Self> {
        use std::io::Read;
        let mut key = [0u8; Self::KEY_BYTES];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut key))
            .map_err(|source| ExportError::Io {
                op: "reading /dev/urandom".into(),
                source,
            })?;
        let key_hex = key.iter().map(|b| format!("{b:02x}")).collect::<String>();
        Self::new(identity, key_hex)
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The key as lower-case hex. Secret: for the client's key file only.
    pub fn key_hex(&self) -> &str {
        &self.key_hex
    }

    /// The line of a `keys.psk` file (qemu's and gnutls's format) holding this
    /// key, with its newline.
    pub fn keys_file_line(&self) -> String {
        format!("{}:{}\n", self.identity, self.key_hex)
    }
}

/// The kinds of connection an exporter hands out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExportProtocol {
    /// NBD, over a unix socket or TCP (with TLS-PSK, or without when asked).
    Nbd,
}

/// What a client needs to reach an export (Cinder's `connection_info`; its JSON
/// shape is the API layer's business).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionInfo {
    Nbd(NbdConnection),
}

impl ConnectionInfo {
    /// Cinder's `driver_volume_type`.
    pub fn driver_volume_type(&self) -> &'static str {
        match self {
            Self::Nbd(_) => "nbd",
        }
    }
}

/// How to reach an NBD export. Holds no secret: a TLS client also needs the key,
/// which the caller of [`Exporter::ensure`] already has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NbdConnection {
    pub address: NbdAddress,
    /// The name to ask the server for.
    pub export_name: String,
    /// The format of the bytes the export serves, which is what the client
    /// must open it as: always raw, since the daemon decodes the image's format.
    pub format: Format,
    pub read_only: bool,
    /// The identity to present with the export's key, when TLS is required.
    pub tls_identity: Option<String>,
}

/// Where an NBD server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NbdAddress {
    Unix { path: PathBuf },
    Tcp { host: IpAddr, port: u16 },
}

impl NbdConnection {
    /// The NBD URI of the export, as the NBD project's URI specification writes
    /// it: `nbd+unix:///name?socket=/path`, `nbd://host:port/name`, or
    /// `nbds://host:port/name` when TLS is required.
    pub fn uri(&self) -> String {
        let name = percent_encode(&self.export_name);
        match &self.address {
            NbdAddress::Unix { path } => format!(
                "nbd+unix:///{name}?socket={}",
                percent_encode(&path.to_string_lossy())
            ),
            NbdAddress::Tcp { host, port } => {
                let scheme = if self.tls_identity.is_some() {
                    "nbds"
                } else {
                    "nbd"
                };
                let host = match host {
                    IpAddr::V4(v4) => v4.to_string(),
                    IpAddr::V6(v6) => format!("[{v6}]"),
                };
                format!("{scheme}://{host}:{port}/{name}")
            }
        }
    }
}

/// `%XX` for every byte but unreserved ones and `/`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What an exporter actually serves now, as found (not as remembered).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportState {
    pub id: String,
    /// The serving process, if one runs.
    pub pid: Option<u32>,
    /// The export answers clients now. False for an export whose daemon died
    /// (its files are still there): a reconcile restarts or removes it.
    pub serving: bool,
    /// The image served, when known.
    pub image: Option<String>,
    /// How to reach it, when known.
    pub connection: Option<ConnectionInfo>,
}

/// What a [`Exporter::reconcile`] did, by export id.
#[derive(Debug, Default)]
pub struct ReconcileReport {
    /// Already served as desired (including daemons adopted after a restart).
    pub kept: Vec<String>,
    /// Served for the first time.
    pub started: Vec<String>,
    /// Served again: the daemon had died or did not answer, or served something
    /// other than the spec.
    pub restarted: Vec<String>,
    /// Not desired, and stopped.
    pub removed: Vec<String>,
    /// Could not be converged; the others were.
    pub failed: Vec<(String, ExportError)>,
}

impl ReconcileReport {
    /// Nothing failed.
    pub fn is_success(&self) -> bool {
        self.failed.is_empty()
    }

    /// Nothing needed doing.
    pub fn is_quiet(&self) -> bool {
        self.is_success()
            && self.started.is_empty()
            && self.restarted.is_empty()
            && self.removed.is_empty()
    }
}

/// Why an export operation failed. Messages are for operators.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("invalid export {id:?}: {detail}")]
    InvalidSpec { id: String, detail: String },
    #[error("invalid TLS pre-shared key: {0}")]
    InvalidKey(String),
    #[error("image {0} not found")]
    ImageNotFound(String),
    /// The image (or a layer of its backing chain) cannot be served safely.
    #[error("image {name} cannot be exported: {detail}")]
    BadImage { name: String, detail: String },
    #[error("{op} failed")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("export {id}: its qemu-storage-daemon failed")]
    Daemon {
        id: String,
        #[source]
        source: DaemonError,
    },
    /// Another exporter (another Scoria process) owns the run directory.
    #[error("the run directory {0} is in use by another exporter")]
    Busy(PathBuf),
}

pub type Result<T, E = ExportError> = std::result::Result<T, E>;

/// A backend's exports. Every method converges from whatever it finds and can be
/// called again after any failure or crash.
#[async_trait::async_trait]
pub trait Exporter: Send + Sync + std::fmt::Debug {
    /// The kinds of connection this exporter hands out.
    fn protocols(&self) -> &[ExportProtocol];

    /// Serve `spec`. Idempotent: an export already served as specified is left
    /// alone (its clients notice nothing), one served differently is replaced,
    /// a dead one is started again; the same spec always gives the same
    /// [`ConnectionInfo`].
    async fn ensure(&self, spec: &ExportSpec) -> Result<ConnectionInfo>;

    /// Stop serving export `id` and remove what it left; an absent export is
    /// success. Connected clients are cut off.
    async fn remove(&self, id: &str) -> Result<()>;

    /// Put `overlay` on top of what export `id` serves while it serves, so
    /// that the image it served stops changing (a snapshot): `overlay` is a
    /// new, empty qcow2 image of the backend whose backing file is the image
    /// served now. Clients keep their connection and notice nothing. Returns
    /// `false` when nothing serves `id` now (there is nothing to switch: the
    /// next [`Exporter::ensure`] of a spec naming `overlay` serves its chain).
    /// Idempotent.
    async fn snapshot(&self, id: &str, overlay: &str) -> Result<bool>;

    /// Grow the image export `id` serves to `size` bytes while it is served.
    /// Clients are disconnected and see the new size when they reconnect
    /// (NBD gives the size at connection). Returns `false` when this cannot
    /// be done live (nothing serves `id`, or it is served read-only, in which
    /// case it is stopped): the caller grows the image offline and ensures
    /// the export again. Idempotent.
    async fn resize(&self, id: &str, size: u64) -> Result<bool>;

    /// The exports that exist now, sorted by id, as found.
    async fn list(&self) -> Result<Vec<ExportState>>;

    /// Make what is served exactly `desired`: remove the exports not in it, then
    /// ensure each of it. One export's failure does not stop the others; it is
    /// in the report. An invalid desired set (an invalid spec, two specs with
    /// one id or one TCP address) is an error and changes nothing.
    async fn reconcile(&self, desired: &[ExportSpec]) -> Result<ReconcileReport>;
}

pub type DynExporter = Arc<dyn Exporter>;

/// Reconcile `exporter` to the latest `desired` set whenever it changes and at
/// least every `period` (which is how a dead daemon is noticed and restarted),
/// until the sender of `desired` is dropped. Daemons are not stopped on return:
/// they outlive Scoria.
pub async fn supervise(
    exporter: DynExporter,
    mut desired: tokio::sync::watch::Receiver<Vec<ExportSpec>>,
    period: Duration,
) {
    loop {
        let specs = desired.borrow_and_update().clone();
        match exporter.reconcile(&specs).await {
            Ok(report) => log_report(&report),
            Err(e) => tracing::warn!(error = %error_chain(&e), "reconciling exports failed"),
        }
        tokio::select! {
            changed = desired.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep(period) => {}
        }
    }
}

fn log_report(report: &ReconcileReport) {
    if !report.is_quiet() {
        tracing::info!(
            started = ?report.started,
            restarted = ?report.restarted,
            removed = ?report.removed,
            kept = report.kept.len(),
            "exports reconciled"
        );
    }
    for (id, e) in &report.failed {
        tracing::warn!(export = %id, error = %error_chain(e), "an export could not be reconciled");
    }
}

/// An error and its sources, for the log.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Whether `b` may appear in an export id or a PSK identity.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._-".contains(&b)
}

/// Check an export id (see [`ExportSpec::id`]).
pub fn validate_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > MAX_ID_LEN
        || id.starts_with(['.', '-'])
        || !id.bytes().all(is_name_byte)
    {
        return Err(ExportError::InvalidSpec {
            id: id.to_owned(),
            detail: format!(
                "an export id is 1 to {MAX_ID_LEN} bytes of [A-Za-z0-9._-], not starting with . or -"
            ),
        });
    }
    Ok(())
}
