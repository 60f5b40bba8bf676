//! Exports from desired state: the attachment records are the intent, and
//! this module makes each storage host's `qemu-storage-daemon`s match it.
//!
//! ```text
//!   attachments (store)            reconciler task (one per process)
//!   status attaching|attached  ──► every `reconcile_period`, and after any
//!   with an export planned         flow ends: every backend's lock, read the
//!                                  rows once, per backend
//!                                  Exporter::reconcile(specs)
//! ```
//!
//! The attach and detach flows also `ensure` and `remove` their own export
//! directly (so that `POST /attachments` answers with an export that serves
//! already), under the same per-backend lock the reconciler holds while it
//! reads the rows and converges: a reconcile that read the rows before an
//! attach committed its plan cannot remove that attach's fresh export, and
//! one that starts after it sees the plan. Daemons are not children of
//! Scoria: they keep serving while it restarts, and a daemon that died is
//! started again by the next reconcile with the same address, export name
//! and key (all chosen once, in the attachment's row).
//!
//! The file exporter of a backend is shared by every [`Env`] of this process
//! on the same run directory (tests open several on one data directory), and
//! locked against other processes by the exporter itself.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use scoria_model::attachment::{AttachMode, AttachmentStatus};
use scoria_model::{AttachmentId, VolumeId};
use scoria_storage::backup_repo::engine::{BITMAP_PREFIX, bitmap_name};
use scoria_storage::export::file::Fleece;
use scoria_storage::export::{ExportSpec, Exporter, FileExporter, Psk, Tls, Transport};
use scoria_store::attachments::{self as store, Attachment, ExportPlan};

use crate::Env;
use scoria_flows::StepError;

use crate::error::{Error, Result, storage_error};

/// Transport names as stored in `attachments.export_transport`.
pub const TCP_PSK: &str = "tcp-psk";
pub const TCP_PLAIN: &str = "tcp";
pub const UNIX: &str = "unix";

/// How exports are served (the `[exports]` section of the config).
#[derive(Clone, Debug)]
pub struct ExportsConfig {
    /// The address TCP exports listen on and that `connection_info` names.
    pub host: IpAddr,
    /// The ports TCP exports are given (inclusive), each kept by its
    /// attachment.
    pub port_min: u16,
    pub port_max: u16,
    /// TLS with a pre-shared key per attachment on TCP exports. Turning it
    /// off serves plain NBD, which anyone who reaches the port can read: it
    /// is logged as a warning at each export.
    pub tls: bool,
    /// Serve exports on unix sockets on this host instead of TCP (for
    /// consumers on the same host; no TLS needed, the socket's directory is
    /// private to Scoria's user).
    pub unix: bool,
    /// How often the reconciler checks every export (a dead daemon is
    /// restarted within this).
    pub reconcile_period: Duration,
    /// Where the exporters keep their daemons' directories (one
    /// subdirectory per backend).
    pub run_dir: PathBuf,
}

impl ExportsConfig {
    pub fn with_data_dir(data_dir: &Path) -> ExportsConfig {
        ExportsConfig {
            host: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            port_min: 20000,
            port_max: 29999,
            tls: true,
            unix: false,
            reconcile_period: Duration::from_secs(5),
            run_dir: data_dir.join("run").join("exports"),
        }
    }
}

/// One backend's exporter and the lock that orders its convergences.
#[derive(Debug)]
pub struct BackendExports {
    pub exporter: Arc<FileExporter>,
    lock: tokio::sync::Mutex<()>,
}

type Registry = Mutex<HashMap<PathBuf, Weak<BackendExports>>>;

fn registry() -> &'static Registry {
    static REGISTRY: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// The exporter of the backend directory `backend` with its daemons in
/// `run`: the one this process already has for `run`, or a new one.
pub async fn open(backend: &Path, run: &Path) -> Result<Arc<BackendExports>> {
    std::fs::create_dir_all(run)
        .map_err(|e| Error::internal(format!("cannot create {}", run.display()), e))?;
    let key = std::fs::canonicalize(run)
        .map_err(|e| Error::internal(format!("cannot open {}", run.display()), e))?;
    if let Some(found) = registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .and_then(Weak::upgrade)
    {
        return Ok(found);
    }
    let exporter = FileExporter::new(backend, run)
        .await
        .map_err(|e| Error::internal("the exporter cannot start", e))?;
    let made = Arc::new(BackendExports {
        exporter: Arc::new(exporter),
        lock: tokio::sync::Mutex::new(()),
    });
    let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = reg.get(&key).and_then(Weak::upgrade) {
        // Opened concurrently: ours is dropped (its lock released).
        return Ok(found);
    }
    reg.insert(key, Arc::downgrade(&made));
    Ok(made)
}

/// What a client needs to reach an attachment's export.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub attachment_id: AttachmentId,
    pub volume_id: scoria_model::VolumeId,
    /// The NBD export name.
    pub export_name: String,
    pub read_only: bool,
    pub address: Address,
    /// The pre-shared key (identity, hex key) when TLS is required. Secret.
    pub psk: Option<(String, String)>,
}

impl std::fmt::Debug for ConnectionInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionInfo")
            .field("attachment_id", &self.attachment_id)
            .field("export_name", &self.export_name)
            .field("address", &self.address)
            .field("psk_identity", &self.psk.as_ref().map(|p| &p.0))
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    Tcp { host: String, port: u16 },
    Unix { path: PathBuf },
}

impl ConnectionInfo {
    /// The export's NBD URI (`nbds://` when TLS is required).
    pub fn uri(&self) -> String {
        match &self.address {
            Address::Tcp { host, port } => {
                let scheme = if self.psk.is_some() { "nbds" } else { "nbd" };
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                format!("{scheme}://{host}:{port}/{}", self.export_name)
            }
            Address::Unix { path } => {
                format!("nbd+unix:///{}?socket={}", self.export_name, path.display())
            }
        }
    }
}

/// The connection info of an attachment whose export is planned.
pub fn connection_info(env: &Env, a: &Attachment, backend: Option<&str>) -> Option<ConnectionInfo> {
    let plan = a.export.as_ref()?;
    let address = if plan.transport == UNIX {
        let exports = backend.and_then(|b| env.exports.get(b))?;
        Address::Unix {
            path: exports.exporter.socket_path(&a.id.to_string()),
        }
    } else {
        Address::Tcp {
            host: plan.host.clone()?,
            port: plan.port?,
        }
    };
    Some(ConnectionInfo {
        attachment_id: a.id,
        volume_id: a.volume_id,
        export_name: a.id.to_string(),
        read_only: a.attach_mode == AttachMode::ReadOnly,
        address,
        psk: match (&plan.psk_identity, &plan.psk_key) {
            (Some(i), Some(k)) if plan.transport == TCP_PSK => Some((i.clone(), k.clone())),
            _ => None,
        },
    })
}

/// Plan an export for attachment `id`: its transport, and for TCP a port no
/// other attachment has (and nothing listens on now) and a fresh key.
pub(crate) async fn plan(
    env: &Env,
    c: &mut scoria_store::Conn,
    id: AttachmentId,
) -> Result<ExportPlan> {
    let cfg = &env.exports_config;
    if cfg.unix {
        return Ok(ExportPlan {
            transport: UNIX.into(),
            host: None,
            port: None,
            psk_identity: None,
            psk_key: None,
        });
    }
    let host = cfg.host.to_string();
    let used: std::collections::HashSet<u16> = store::attachment_ports_in_use(c)
        .await?
        .into_iter()
        .filter(|(h, _)| *h == host)
        .map(|(_, p)| p)
        .collect();
    let span = u32::from(cfg.port_max.saturating_sub(cfg.port_min)) + 1;
    let start: u32 = rand::random::<u32>() % span;
    let mut port = None;
    for i in 0..span {
        let candidate = cfg.port_min + ((start + i) % span) as u16;
        if used.contains(&candidate) {
            continue;
        }
        if std::net::TcpListener::bind((cfg.host, candidate)).is_ok() {
            port = Some(candidate);
            break;
        }
    }
    let port = port.ok_or_else(|| {
        Error::Unavailable(format!(
            "No port is free for an export in {}..={}.",
            cfg.port_min, cfg.port_max
        ))
    })?;
    let (transport, identity, key) = if cfg.tls {
        let psk = Psk::generate(format!("scoria-{id}"))
            .map_err(|e| Error::internal("cannot make an export key", e))?;
        (
            TCP_PSK,
            Some(psk.identity().to_owned()),
            Some(psk.key_hex().to_owned()),
        )
    } else {
        (TCP_PLAIN, None, None)
    };
    Ok(ExportPlan {
        transport: transport.into(),
        host: Some(host),
        port: Some(port),
        psk_identity: identity,
        psk_key: key,
    })
}

/// The export spec of an attachment serving `image`.
fn spec_of(a: &Attachment, image: &str) -> Result<Option<ExportSpec>> {
    let Some(plan) = &a.export else {
        return Ok(None);
    };
    let transport = match plan.transport.as_str() {
        UNIX => Transport::Unix,
        t @ (TCP_PSK | TCP_PLAIN) => {
            let host = plan
                .host
                .as_deref()
                .and_then(|h| h.parse::<IpAddr>().ok())
                .ok_or_else(|| Error::Internal {
                    message: format!("attachment {} has no export host", a.id),
                    source: None,
                })?;
            let port = plan.port.ok_or_else(|| Error::Internal {
                message: format!("attachment {} has no export port", a.id),
                source: None,
            })?;
            let tls = if t == TCP_PSK {
                let (Some(i), Some(k)) = (&plan.psk_identity, &plan.psk_key) else {
                    return Err(Error::Internal {
                        message: format!("attachment {} has no export key", a.id),
                        source: None,
                    });
                };
                Tls::Psk(
                    Psk::new(i.clone(), k.clone())
                        .map_err(|e| Error::internal("an export key is invalid", e))?,
                )
            } else {
                Tls::Disabled
            };
            Transport::Tcp { host, port, tls }
        }
        other => {
            return Err(Error::Internal {
                message: format!("attachment {} has an unknown transport {other}", a.id),
                source: None,
            });
        }
    };
    Ok(Some(ExportSpec {
        id: a.id.to_string(),
        image: image.to_owned(),
        read_only: a.attach_mode == AttachMode::ReadOnly,
        transport,
    }))
}

fn export_error(what: &str, e: scoria_storage::export::ExportError) -> Error {
    Error::internal(format!("The storage host failed to {what} the export."), e)
}

/// Serve attachment `id` now, as its row says (no-op when it has no export
/// or is not in an exported status). Idempotent.
pub(crate) async fn ensure(env: &Env, id: AttachmentId) -> Result<()> {
    let (a, backend, image) = {
        let mut c = env.store.read().await?;
        let Some(a) = store::attachment_get(&mut c, id).await? else {
            return Ok(());
        };
        let v = scoria_store::volumes::volume_get(&mut c, a.volume_id).await?;
        let image = match v.as_ref().and_then(|v| v.image_id) {
            Some(i) => scoria_store::images::image_get(&mut c, i).await?,
            None => None,
        };
        (
            a,
            image.as_ref().map(|i| i.backend.clone()),
            image.map(|i| i.name),
        )
    };
    let (Some(backend), Some(image)) = (backend, image) else {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {} has no data to export.",
            a.volume_id
        )));
    };
    let Some(spec) = spec_of(&a, &image)? else {
        return Ok(());
    };
    let exports = env.exports.get(&backend).ok_or_else(|| {
        Error::Invalid(format!(
            "Invalid volume: the backend of volume {} cannot export volumes.",
            a.volume_id
        ))
    })?;
    let _order = exports.lock.lock().await;
    exports
        .exporter
        .ensure(&spec)
        .await
        .map_err(|e| export_error("start", e))?;
    Ok(())
}

/// Stop serving attachment `id` on every backend. Idempotent.
pub(crate) async fn remove(env: &Env, id: AttachmentId) -> Result<()> {
    for exports in env.exports.values() {
        let _order = exports.lock.lock().await;
        exports
            .exporter
            .remove(&id.to_string())
            .await
            .map_err(|e| export_error("remove", e))?;
    }
    Ok(())
}

/// The attachments of `volume` whose export is desired (the reconciler's
/// rule: attaching or attached, with an export planned).
async fn exported_of(env: &Env, volume: VolumeId) -> Result<Vec<Attachment>> {
    let mut c = env.store.read().await?;
    Ok(store::attachment_list_for_volume(&mut c, volume)
        .await?
        .into_iter()
        .filter(|a| {
            a.export.is_some()
                && matches!(
                    a.status,
                    AttachmentStatus::Attaching | AttachmentStatus::Attached
                )
        })
        .collect())
}

/// After a snapshot moved `volume` onto `overlay` (a new top layer on the
/// image its exports serve), move each of its exports onto it too, without
/// interrupting their clients: until then they still write the frozen image.
/// An export that cannot be switched live is served again from the new
/// chain (its client reconnects), and as a last resort stopped (the
/// reconciler serves it again): in every case, once this returns, nothing
/// writes the frozen image any more. Holds the backend's lock, so the
/// reconciler neither reads the rows nor converges in between.
pub(crate) async fn snapshot_live(
    env: &Env,
    volume: VolumeId,
    backend: &str,
    overlay: &str,
) -> Result<()> {
    let Some(exports) = env.exports.get(backend) else {
        return Ok(());
    };
    let _order = exports.lock.lock().await;
    for a in exported_of(env, volume).await? {
        let Some(spec) = spec_of(&a, overlay)? else {
            continue;
        };
        let e = match exports.exporter.snapshot(&spec.id, overlay).await {
            Ok(_) => continue,
            Err(e) => e,
        };
        tracing::warn!(attachment = %a.id, error = %scoria_storage::export::error_chain(&e), "an export could not take its new layer live; serving it again");
        let e = match exports.exporter.ensure(&spec).await {
            Ok(_) => continue,
            Err(e) => e,
        };
        tracing::warn!(attachment = %a.id, error = %scoria_storage::export::error_chain(&e), "an export could not be served again on its new layer; stopping it");
        exports
            .exporter
            .remove(&spec.id)
            .await
            .map_err(|e| export_error("stop", e))?;
    }
    Ok(())
}

/// Grow `image` (the active image of `volume`, on `backend`) to `size`
/// bytes, through the daemons that serve it when it is exported (their
/// clients reconnect and see the new size), else with the driver. Holds
/// the backend's lock, so no export starts or stops in between.
pub(crate) async fn extend(
    env: &Env,
    volume: VolumeId,
    backend: &str,
    image: &str,
    size: u64,
) -> Result<(), StepError> {
    let driver = &env.backend(backend)?.driver;
    let grow = || async {
        driver
            .extend(image, size)
            .await
            .map_err(|e| storage_error("extend the volume", e))
    };
    let Some(exports) = env.exports.get(backend) else {
        return grow().await;
    };
    let _order = exports.lock.lock().await;
    let mut offline = Vec::new();
    for a in exported_of(env, volume).await? {
        let Some(spec) = spec_of(&a, image)? else {
            continue;
        };
        let live = exports
            .exporter
            .resize(&spec.id, size)
            .await
            .map_err(|e| export_error("grow", e))?;
        if !live {
            offline.push(spec);
        }
    }
    // Already that big when a daemon grew it: nothing to do.
    grow().await?;
    for spec in offline {
        exports
            .exporter
            .ensure(&spec)
            .await
            .map_err(|e| export_error("start", e))?;
    }
    Ok(())
}

/// The one export of `volume` a live change of its chain goes through, if
/// it is exported: a volume exported more than once is refused (one
/// daemon's job would change files another daemon holds open).
async fn sole_export(env: &Env, volume: VolumeId, top: &str) -> Result<Option<ExportSpec>> {
    let mut specs = Vec::new();
    for a in exported_of(env, volume).await? {
        specs.extend(spec_of(&a, top)?);
    }
    if specs.len() > 1 {
        return Err(Error::InvalidState(format!(
            "Volume {volume} is exported {} times: its chain is changed only offline or through its one export.",
            specs.len()
        )));
    }
    Ok(specs.pop())
}

/// Merge the layer `base` into `name`, the layer above it in the chain of
/// `volume` (whose active image is `top`) on `backend`: by a block-stream
/// job in the daemon that serves the volume when it is exported (its guest
/// keeps its connection and notices nothing), else with the driver. Holds
/// the backend's lock, so no export starts or stops in between.
pub(crate) async fn merge(
    env: &Env,
    volume: VolumeId,
    backend: &str,
    top: &str,
    (name, base): (&str, &str),
    progress: scoria_storage::Progress<'_>,
) -> Result<(), StepError> {
    let driver = &env.backend(backend)?.driver;
    let offline = || async {
        driver
            .merge_base(name, base)
            .await
            .map_err(|e| storage_error("merge the layer into the one above it", e))
    };
    let Some(exports) = env.exports.get(backend) else {
        return offline().await;
    };
    let _order = exports.lock.lock().await;
    if let Some(spec) = sole_export(env, volume, top).await? {
        let live = exports
            .exporter
            .merge_live(&spec.id, name, base, progress)
            .await
            .map_err(|e| export_error("merge a layer of", e))?;
        if live {
            return Ok(());
        }
    }
    offline().await
}

/// Undo [`merge`]: `name` back on `base`, offline. An exported volume's
/// export is stopped for it and served again (its client reconnects), unless
/// `name` still stands on `base` (the merge never ran or its job failed).
pub(crate) async fn unmerge(
    env: &Env,
    volume: VolumeId,
    backend: &str,
    top: &str,
    (name, base): (&str, &str),
) -> Result<(), StepError> {
    let driver = &env.backend(backend)?.driver;
    let offline = || async {
        driver
            .unmerge_base(name, base)
            .await
            .map_err(|e| storage_error("put the layer above back on the merged layer", e))
    };
    let on_base = driver
        .chain(name)
        .await
        .map_err(|e| storage_error("read the chain of the layer above", e))?
        .get(1)
        .is_some_and(|i| i.name == base);
    let Some(exports) = env.exports.get(backend).filter(|_| !on_base) else {
        return offline().await;
    };
    let _order = exports.lock.lock().await;
    let Some(spec) = sole_export(env, volume, top).await? else {
        return offline().await;
    };
    exports
        .exporter
        .remove(&spec.id)
        .await
        .map_err(|e| export_error("stop", e))?;
    offline().await?;
    exports
        .exporter
        .ensure(&spec)
        .await
        .map_err(|e| export_error("start", e))?;
    Ok(())
}

/// Start backup `backup`'s fleecing export in the daemon of `attachment`
/// (on `backend`), after removing the daemon's backup bitmaps not in `keep`
/// (names): the point-in-time view an in-use backup reads (see
/// `scoria_storage::export::file`'s fleece). The export is ensured first (a
/// daemon that died is started again). Holds the backend's lock while it
/// changes the daemon, so the reconciler does not restart it mid-way.
/// Idempotent.
pub(crate) async fn fleece(
    env: &Env,
    backend: &str,
    attachment: AttachmentId,
    backup: &str,
    parent_bitmap: Option<&str>,
    keep: &[String],
) -> Result<Fleece, StepError> {
    let exports = env.exports.get(backend).ok_or_else(|| {
        Error::Invalid(format!(
            "Invalid volume: the backend {backend} cannot export volumes, so it cannot back up in-use ones."
        ))
    })?;
    ensure(env, attachment).await?;
    let _order = exports.lock.lock().await;
    let id = attachment.to_string();
    let retire = |name: &str| name.starts_with(BITMAP_PREFIX) && !keep.iter().any(|k| k == name);
    exports
        .exporter
        .remove_bitmaps_live(&id, &retire)
        .await
        .map_err(|e| export_error("retire the bitmaps of", e))?;
    exports
        .exporter
        .fleece(&id, backup, &bitmap_name(backup), parent_bitmap)
        .await
        .map_err(|e| export_error("make a point-in-time view of", e))?
        .ok_or_else(|| {
            Error::Unavailable(format!(
                "No daemon serves attachment {attachment}, so its volume cannot be backed up in use now."
            ))
            .into()
        })
}

/// Take down backup `backup`'s fleecing export in the daemon of
/// `attachment`, and with `forget` also its new bitmap (in the daemon, or in
/// the image file when no daemon runs: none can start meanwhile, this holds
/// the backend's lock). Idempotent.
pub(crate) async fn unfleece(
    env: &Env,
    backend: &str,
    attachment: AttachmentId,
    backup: &str,
    forget: bool,
) -> Result<(), StepError> {
    let Some(exports) = env.exports.get(backend) else {
        return Ok(());
    };
    let _order = exports.lock.lock().await;
    let id = attachment.to_string();
    exports
        .exporter
        .unfleece(&id, backup)
        .await
        .map_err(|e| export_error("end the point-in-time view of", e))?;
    if !forget {
        return Ok(());
    }
    let name = bitmap_name(backup);
    let live = exports
        .exporter
        .remove_bitmaps_live(&id, &|b| b == name)
        .await
        .map_err(|e| export_error("remove the backup's bitmap from", e))?;
    if live {
        return Ok(());
    }
    let image = {
        let mut c = env.store.read().await?;
        let a = store::attachment_get(&mut c, attachment).await?;
        let v = match a {
            Some(a) => scoria_store::volumes::volume_get(&mut c, a.volume_id).await?,
            None => None,
        };
        match v.and_then(|v| v.image_id) {
            Some(i) => scoria_store::images::image_get(&mut c, i).await?,
            None => None,
        }
    };
    let Some(image) = image else {
        return Ok(());
    };
    match env
        .backend(&image.backend)?
        .driver
        .local_file(&image.name)
        .await
    {
        Ok(file) => scoria_storage::backup_repo::engine::forget_bitmap(&file, backup)
            .await
            .map_err(|e| storage_error("remove the backup's dirty bitmap", e)),
        Err(scoria_storage::StorageError::NotFound(_)) => Ok(()),
        Err(e) => Err(storage_error("find the volume's image", e)),
    }
}

/// Converge every backend's exports to the attachment rows once.
///
/// Every backend's lock is taken first (in name order; everyone else holds
/// one at a time, so this cannot deadlock), then the rows are read once: for
/// each backend that read is made under its lock, as the attach and detach
/// flows need. One read a pass, not one per backend: a pass runs whenever a
/// flow ends, and with three backends the per-backend reads cost about 7% of
/// the server's CPU per volume create (docs/placement.md). Each lock is let
/// go as soon as its backend has converged.
pub async fn reconcile(env: &Env) -> Result<()> {
    let all = env.exports.all();
    let mut held = Vec::with_capacity(all.len());
    for (name, exports) in &all {
        held.push((name, exports, exports.lock.lock().await));
    }
    let rows = {
        let mut c = env.store.read().await?;
        store::attachment_list_exported(&mut c).await?
    };
    let mut by_backend: HashMap<String, Vec<ExportSpec>> = HashMap::new();
    for (a, backend, image) in rows {
        let (Some(backend), Some(image)) = (backend, image) else {
            continue;
        };
        if !env.exports.contains_key(&backend) {
            continue;
        }
        match spec_of(&a, &image) {
            Ok(Some(spec)) => by_backend.entry(backend).or_default().push(spec),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(attachment = %a.id, error = %e.chain(), "an export cannot be served")
            }
        }
    }
    for (name, exports, order) in held {
        let specs = by_backend.remove(name.as_str()).unwrap_or_default();
        let report = exports
            .exporter
            .reconcile(&specs)
            .await
            .map_err(|e| export_error("reconcile", e))?;
        if !report.started.is_empty() || !report.restarted.is_empty() || !report.removed.is_empty()
        {
            tracing::info!(
                backend = %name,
                started = ?report.started,
                restarted = ?report.restarted,
                removed = ?report.removed,
                kept = report.kept.len(),
                "exports reconciled"
            );
        }
        for (id, e) in &report.failed {
            tracing::warn!(backend = %name, export = %id, error = %e, "an export could not be reconciled");
        }
        drop(order);
    }
    Ok(())
}

/// Reconcile now, then every `period` and whenever a flow ended.
pub(crate) fn spawn_reconciler(
    env: Arc<Env>,
    mut ended: tokio::sync::watch::Receiver<u64>,
    period: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(e) = reconcile(&env).await {
                tracing::warn!(error = %e.chain(), "reconciling exports failed");
            }
            tokio::select! {
                changed = ended.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    ended.borrow_and_update();
                }
                () = tokio::time::sleep(period) => {}
            }
        }
    })
}

/// Kill every export daemon under `run_dir` (the `[exports]` run directory)
/// at once, without waiting: for test fixtures' `Drop`, so that no test
/// leaves a daemon behind. Daemons outlive Scoria by design; a test's must
/// not.
pub fn kill_all_for_tests(run_dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(run_dir) {
        for backend in entries.flatten() {
            FileExporter::kill_all_for_tests(&backend.path());
        }
    }
}
