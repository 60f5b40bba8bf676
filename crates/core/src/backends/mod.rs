//! Backends as managed repositories (VDSM's storage domains): bringing one
//! into service, at start or while the server runs, and what its state is.
//!
//! A backend is one of the configuration file's, or one an administrator
//! added through the API ([`manage`]); what they changed is recorded
//! (`scoria_store::backends`), so it holds across restarts: an added
//! backend comes back, a removed one stays out even if the file still names
//! it. Its state is:
//!
//! - `active`: placement may put new volumes on it;
//! - `deactivated`: an administrator closed it to new volumes; what is on
//!   it stays readable and usable;
//! - `down`: its storage cannot be reached (a file backend's directory is
//!   gone: a lost mount). Found by the capacity refresher (and at each
//!   listing), never recorded: it ends by itself when the directory comes
//!   back. While down, placement skips it and its volumes show `error` with
//!   the reason (their records are unchanged, so nothing is left to undo).

pub mod manage;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use scoria_failpoints::Failpoints;
use scoria_storage::DynDriver;

use crate::error::{Error, Result};
use crate::{Backend, BackendConfig, DriverConfig, exports};

/// Bring a backend up: its directory, its driver, its exporter (file
/// backends), its first capacity reading.
pub(crate) async fn open(
    b: &BackendConfig,
    fp: &Arc<Failpoints>,
    exports_config: &exports::ExportsConfig,
) -> Result<(Arc<Backend>, Option<Arc<exports::BackendExports>>)> {
    let mut exporter = None;
    if let DriverConfig::File { path, .. } = &b.driver {
        std::fs::create_dir_all(path)
            .map_err(|e| Error::internal(format!("cannot create {}", path.display()), e))?;
        exporter = Some(exports::open(path, &exports_config.run_dir.join(&b.name)).await?);
    }
    let driver: DynDriver = match &b.driver {
        DriverConfig::File { path, fsync } => Arc::new(
            scoria_storage::file::FileDriver::new(
                path.clone(),
                fp.clone(),
                scoria_storage::file::FileOptions {
                    fsync: *fsync,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| Error::internal(format!("backend {} cannot start", b.name), e))?,
        ),
        DriverConfig::Memory { capacity_gib } => {
            Arc::new(scoria_storage::memory::MemoryDriver::with_capacity(
                fp.clone(),
                scoria_storage::Capacity {
                    total: capacity_gib * scoria_model::volume::GIB,
                    free: capacity_gib * scoria_model::volume::GIB,
                },
            ))
        }
    };
    let backend = Backend::new(b.clone(), driver);
    backend.refresh_capacity().await?;
    Ok((Arc::new(backend), exporter))
}

/// The backends to bring up at start: the configuration's, less those an
/// administrator removed, plus those they added (as recorded).
pub(crate) async fn at_start(
    store: &scoria_store::Store,
    configured: &[BackendConfig],
) -> Result<Vec<BackendConfig>> {
    let rows = {
        let mut c = store.read().await?;
        scoria_store::backends::backend_list(&mut c).await?
    };
    let recorded: BTreeMap<&str, &scoria_store::backends::BackendRow> =
        rows.iter().map(|r| (r.name.as_str(), r)).collect();
    let mut out = Vec::new();
    for b in configured {
        match recorded.get(b.name.as_str()) {
            Some(r) if r.state == "removed" => {
                tracing::warn!(
                    backend = %b.name,
                    "an administrator removed this backend: it stays out of service (remove it from the configuration file, or add it again through the API)"
                );
            }
            // Added again through the API after a removal: its recorded
            // settings, not the file's.
            Some(r) if r.spec.is_some() => {}
            _ => out.push(b.clone()),
        }
    }
    for r in &rows {
        let Some(spec) = &r.spec else { continue };
        if r.state == "removed" {
            continue;
        }
        let spec: manage::BackendSpec = serde_json::from_str(spec).map_err(|e| {
            Error::internal(format!("the recorded settings of backend {}", r.name), e)
        })?;
        out.push(spec.config());
    }
    Ok(out)
}

impl Backend {
    /// Why the backend is down, if it is (see the module doc).
    pub fn down(&self) -> Option<String> {
        self.down.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Look at the backend's storage now: a file backend whose directory is
    /// not there is down. Returns whether it is up.
    pub(crate) fn probe(&self) -> bool {
        let why = match &self.config.driver {
            DriverConfig::File { path, .. } => missing(path),
            DriverConfig::Memory { .. } => None,
        };
        self.set_down(why)
    }

    /// Record the outcome of a look at the storage; returns whether it is up.
    pub(crate) fn set_down(&self, why: Option<String>) -> bool {
        let mut down = self.down.write().unwrap_or_else(|e| e.into_inner());
        match (&*down, &why) {
            (None, Some(w)) => {
                tracing::error!(backend = %self.config.name, reason = %w, "backend down")
            }
            (Some(_), None) => tracing::info!(backend = %self.config.name, "backend up again"),
            _ => {}
        }
        let up = why.is_none();
        *down = why;
        up
    }
}

fn missing(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => None,
        Ok(_) => Some(format!("{} is not a directory", path.display())),
        Err(e) => Some(format!(
            "its directory {} cannot be read: {e}",
            path.display()
        )),
    }
}
