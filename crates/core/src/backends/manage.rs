//! What administrators do to the backends while the server runs (a Scoria
//! extension: `/v3/{project}/scoria-backends`): list them with their state
//! and what is on them, add a file backend, deactivate and activate one,
//! remove one.
//!
//! - A deactivation is refused while anything on the backend is in use (a
//!   volume attached or with an operation running, an image being made or
//!   freed); a removal while anything at all is on it (volumes, snapshots'
//!   data, cached images, data waiting to be freed). The refusal names them,
//!   from the per-use records (`scoria_store::backends`), never a counter.
//! - Both decide and record inside one write transaction, and placement
//!   reads the recorded state inside its own: a volume placed on the backend
//!   and its removal cannot both happen.
//! - A removed backend's directory and whatever files are left in it stay
//!   where they are: Scoria only stops using it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::{App, BackendConfig, Context, DriverConfig, Op};

/// How many things a refusal names (and how many more there are).
const NAMED: usize = 20;

/// The settings of a backend added through the API (a file backend), as the
/// request gives them and as they are recorded.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    pub name: String,
    /// An absolute directory, outside every other backend's and the data
    /// directory's own areas; made if it is not there.
    pub path: PathBuf,
    #[serde(default = "default_format")]
    pub format: String,
    #[serde(default = "default_zone")]
    pub availability_zone: String,
    #[serde(default = "yes")]
    pub fsync: bool,
    #[serde(default = "yes")]
    pub thin_provisioning: bool,
    #[serde(default)]
    pub reserved_percentage: u8,
    #[serde(default = "default_ratio")]
    pub max_over_subscription_ratio: f64,
    #[serde(default = "default_depth")]
    pub max_chain_depth: usize,
    #[serde(default = "default_strategy")]
    pub clone_strategy: String,
    #[serde(default)]
    pub capabilities: std::collections::BTreeMap<String, String>,
}

fn default_format() -> String {
    "qcow2".into()
}
fn default_zone() -> String {
    "nova".into()
}
fn yes() -> bool {
    true
}
fn default_ratio() -> f64 {
    crate::scheduler::DEFAULT_MAX_OVER_SUBSCRIPTION_RATIO
}
fn default_depth() -> usize {
    scoria_model::snapshot::DEFAULT_MAX_CHAIN_DEPTH
}
fn default_strategy() -> String {
    "space".into()
}

impl BackendSpec {
    /// Check what can be checked without the file system.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return bad("A backend's name is 1 to 64 letters, digits, '.', '_' or '-'.".into());
        }
        if !self.path.is_absolute() {
            return bad(format!(
                "Invalid input for field/attribute path: {} is not an absolute path.",
                self.path.display()
            ));
        }
        if self
            .path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return bad("Invalid input for field/attribute path: '..' is not allowed.".into());
        }
        if !["qcow2", "raw"].contains(&self.format.as_str()) {
            return bad(format!(
                "Invalid input for field/attribute format: {:?} is not qcow2 or raw.",
                self.format
            ));
        }
        if self.reserved_percentage > 100 {
            return bad(
                "Invalid input for field/attribute reserved_percentage: at most 100.".into(),
            );
        }
        if self.max_over_subscription_ratio.is_nan() || self.max_over_subscription_ratio < 1.0 {
            return bad(
                "Invalid input for field/attribute max_over_subscription_ratio: at least 1.".into(),
            );
        }
        if self.max_chain_depth < 2 {
            return bad("Invalid input for field/attribute max_chain_depth: at least 2.".into());
        }
        if self
            .clone_strategy
            .parse::<scoria_model::snapshot::CloneStrategy>()
            .is_err()
        {
            return bad(format!(
                "Invalid input for field/attribute clone_strategy: {:?} is not space or performance.",
                self.clone_strategy
            ));
        }
        if self.availability_zone.is_empty() {
            return bad("Invalid input for field/attribute availability_zone: empty.".into());
        }
        Ok(())
    }

    /// The backend configuration these settings make (validated first).
    pub fn config(&self) -> BackendConfig {
        BackendConfig {
            name: self.name.clone(),
            driver: DriverConfig::File {
                path: self.path.clone(),
                fsync: self.fsync,
            },
            format: if self.format == "raw" {
                scoria_storage::Format::Raw
            } else {
                scoria_storage::Format::Qcow2
            },
            availability_zone: self.availability_zone.clone(),
            max_over_subscription_ratio: crate::scheduler::OverSubscription::Fixed(
                self.max_over_subscription_ratio,
            ),
            thin_provisioning: self.thin_provisioning,
            capabilities: self.capabilities.clone(),
            reserved_percentage: self.reserved_percentage,
            clone_strategy: self
                .clone_strategy
                .parse()
                .unwrap_or(scoria_model::snapshot::CloneStrategy::Space),
            max_chain_depth: self.max_chain_depth,
            image_cache_max_count: crate::DEFAULT_IMAGE_CACHE_MAX_COUNT,
            image_cache_max_bytes: 0,
        }
    }
}

/// A backend as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct BackendView {
    pub name: String,
    /// `active`, `deactivated` or `down`.
    pub state: String,
    /// Why it is deactivated (the administrator's words) or down.
    pub reason: Option<String>,
    /// `configuration` (the file's) or `api` (added through the API).
    pub origin: String,
    pub driver: String,
    pub path: Option<String>,
    pub format: String,
    pub availability_zone: String,
    pub total_capacity_gb: Option<f64>,
    pub free_capacity_gb: Option<f64>,
    /// How many volumes are on it.
    pub volumes: usize,
}

async fn view(app: &App, name: &str) -> Result<BackendView> {
    let b = app.env.backends.get(name).ok_or_else(|| not_found(name))?;
    b.probe();
    let mut c = app.store().read().await?;
    let row = scoria_store::backends::backend_get(&mut c, name).await?;
    let volumes = scoria_store::volumes::volume_totals_by_backend(&mut c)
        .await?
        .get(name)
        .map_or(0, |t| t.0.max(0) as usize);
    let (state, reason) = match (b.down(), &row) {
        (Some(why), _) => ("down".to_owned(), Some(why)),
        (None, Some(r)) if r.state == "deactivated" => ("deactivated".into(), r.reason.clone()),
        _ => ("active".into(), None),
    };
    let reading = b.capacity_reading();
    let (driver, path) = match &b.config.driver {
        DriverConfig::File { path, .. } => ("file", Some(path.display().to_string())),
        DriverConfig::Memory { .. } => ("memory", None),
    };
    Ok(BackendView {
        name: name.to_owned(),
        state,
        reason,
        origin: if row.as_ref().is_some_and(|r| r.spec.is_some()) {
            "api".into()
        } else {
            "configuration".into()
        },
        driver: driver.into(),
        path,
        format: b.config.format.as_str().into(),
        availability_zone: b.config.availability_zone.clone(),
        total_capacity_gb: reading.map(|r| r.capacity.total as f64 / crate::GIB_F),
        free_capacity_gb: reading.map(|r| r.capacity.free as f64 / crate::GIB_F),
        volumes,
    })
}

fn not_found(name: &str) -> Error {
    Error::NotFound(format!("Backend {name} could not be found."))
}

/// Every backend in service, by name.
pub async fn list(app: &App, ctx: &Context) -> Result<Vec<BackendView>> {
    ctx.authorize(Op::BackendList)?;
    let mut out = Vec::new();
    for (name, _) in app.env.backends.all() {
        match view(app, &name).await {
            Ok(v) => out.push(v),
            // Removed meanwhile.
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

pub async fn get(app: &App, ctx: &Context, name: &str) -> Result<BackendView> {
    ctx.authorize(Op::BackendList)?;
    view(app, name).await
}

/// Whether one of the two directories is inside the other (or they are
/// the same).
fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Add a file backend and bring it into service.
pub async fn add(app: &App, ctx: &Context, spec: BackendSpec) -> Result<BackendView> {
    ctx.authorize(Op::BackendAdd)?;
    spec.validate()?;
    let _one = app.env.backend_changes.lock().await;
    if app.env.backends.contains_key(&spec.name) {
        return Err(Error::Conflict(format!(
            "Backend {} already exists.",
            spec.name
        )));
    }
    let data = &app.config.data_dir;
    // The data directory itself holds the database and the other areas; a
    // backend may live in a directory of its own inside it.
    let mut taken: Vec<(String, PathBuf)> = vec![
        (
            "the image service's store".into(),
            app.config.image_service.path.clone(),
        ),
        (
            "the backup repository".into(),
            app.config.backups.path.clone(),
        ),
        ("the staging directory".into(), app.env.staging_dir.clone()),
        (
            "the exports' run directory".into(),
            app.config.exports.run_dir.clone(),
        ),
    ];
    for b in app.env.backends.values() {
        if let DriverConfig::File { path, .. } = &b.config.driver {
            taken.push((format!("backend {}", b.config.name), path.clone()));
        }
    }
    if &spec.path == data || data.starts_with(&spec.path) {
        return Err(Error::Invalid(format!(
            "Invalid input for field/attribute path: {} holds the data directory.",
            spec.path.display()
        )));
    }
    if let Some((what, p)) = taken.iter().find(|(_, p)| overlaps(p, &spec.path)) {
        return Err(Error::Invalid(format!(
            "Invalid input for field/attribute path: {} overlaps {what} ({}).",
            spec.path.display(),
            p.display()
        )));
    }
    let recorded =
        serde_json::to_string(&spec).map_err(|e| Error::internal("the backend's settings", e))?;
    let config = spec.config();
    let (backend, exporter) = super::open(&config, &app.env.fp, &app.config.exports)
        .await
        .map_err(|e| {
            Error::Invalid(format!(
                "Backend {} cannot be brought up: {}",
                spec.name,
                e.chain()
            ))
        })?;
    {
        let mut tx = app.store().begin().await?;
        scoria_store::backends::backend_put(&mut tx, &spec.name, Some(&recorded), "active", None)
            .await?;
        tx.commit().await.map_err(scoria_store::StoreError::from)?;
    }
    if let Some(e) = exporter {
        app.env.exports.insert(spec.name.clone(), e);
    }
    app.env.backends.insert(spec.name.clone(), backend);
    tracing::info!(backend = %spec.name, path = %spec.path.display(), "backend added");
    view(app, &spec.name).await
}

fn in_use(name: &str, doing: &str, (named, total): (Vec<String>, usize)) -> Error {
    let more = if total > named.len() {
        format!(", and {} more", total - named.len())
    } else {
        String::new()
    };
    Error::Invalid(format!(
        "Backend {name} cannot be {doing}: it is in use by {}{more}.",
        named.join(", ")
    ))
}

/// Close a backend to new volumes (`active` false, with the administrator's
/// reason) or open it again.
pub async fn set_active(
    app: &App,
    ctx: &Context,
    name: &str,
    active: bool,
    reason: Option<&str>,
) -> Result<BackendView> {
    ctx.authorize(Op::BackendUpdate)?;
    let _one = app.env.backend_changes.lock().await;
    if !app.env.backends.contains_key(name) {
        return Err(not_found(name));
    }
    let mut tx = app.store().begin().await?;
    if !active {
        let busy = scoria_store::backends::backend_busy(&mut tx, name, NAMED).await?;
        if busy.1 > 0 {
            return Err(in_use(name, "deactivated", busy));
        }
    }
    let state = if active { "active" } else { "deactivated" };
    scoria_store::backends::backend_put(&mut tx, name, None, state, reason.filter(|_| !active))
        .await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    tracing::info!(backend = %name, state, "backend state changed");
    view(app, name).await
}

/// Take an empty backend out of service.
pub async fn remove(app: &App, ctx: &Context, name: &str) -> Result<()> {
    ctx.authorize(Op::BackendRemove)?;
    let _one = app.env.backend_changes.lock().await;
    if !app.env.backends.contains_key(name) {
        return Err(not_found(name));
    }
    if app.env.backends.len() == 1 {
        return Err(Error::Invalid(format!(
            "Backend {name} cannot be removed: it is the only one."
        )));
    }
    let mut tx = app.store().begin().await?;
    let contents = scoria_store::backends::backend_contents(&mut tx, name, NAMED).await?;
    if contents.1 > 0 {
        return Err(in_use(name, "removed", contents));
    }
    scoria_store::backends::backend_put(&mut tx, name, None, "removed", None).await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    app.env.backends.remove(name);
    app.env.exports.remove(name);
    tracing::info!(backend = %name, "backend removed");
    Ok(())
}
