//! The application layer: what Scoria does, independent of how it is asked.
//!
//! One module per resource ([`volumes`], [`quotas`], [`identity`], …). Each
//! public operation takes the caller's [`Context`], authorizes it against the
//! policy table, validates the request, and either answers from the store or
//! starts a flow (one file per flow under [`flows`]) and waits for the step
//! after which the answer is known. Errors are the transport-agnostic
//! [`Error`]; the HTTP layer turns them into Cinder fault bodies.
//!
//! [`App`] owns the shared services: the store, the backends (storage
//! drivers), the flow engine, the configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use scoria_failpoints::Failpoints;
use scoria_flows::{Engine, EngineOptions};
use scoria_storage::{DynDriver, Format};
use scoria_store::Store;
pub use scoria_store::{Durability, StoreOptions};

pub mod attachments;
pub mod backends;
pub mod backups;
pub mod capacity;
pub mod context;
pub mod default_types;
pub mod error;
pub mod exports;
pub mod flows;
pub mod groups;
pub mod identity;
pub mod image_service;
pub mod invariants;
pub mod messages;
pub mod operations;
pub mod placement;
pub mod qos_specs;
pub mod quotas;
pub mod reaper;
pub mod registry;
pub mod repository;
pub mod rules;
pub mod scheduler;
pub mod services;
pub mod snapshots;
pub mod transfers;
pub mod volume_types;
pub mod volumes;

pub use context::{Context, Op};

/// Bytes in a GiB, as a float (capacity arithmetic).
pub(crate) const GIB_F: f64 = (1u64 << 30) as f64;
pub use error::{Error, Result};

/// How a backend stores its images.
#[derive(Clone, Debug)]
pub enum DriverConfig {
    /// Files in a directory (qcow2 or raw), made with qemu-img.
    File { path: PathBuf, fsync: bool },
    /// An in-memory map, for tests of logic only.
    Memory { capacity_gib: u64 },
}

/// One backend (Cinder's "volume backend" / storage pool).
#[derive(Clone, Debug)]
pub struct BackendConfig {
    pub name: String,
    pub driver: DriverConfig,
    /// Format of new volumes.
    pub format: Format,
    pub availability_zone: String,
    /// Thin provisioning: how many times the total space may be promised
    /// (a number, or `auto` as Cinder computes it).
    pub max_over_subscription_ratio: scheduler::OverSubscription,
    /// Whether the backend provisions thin (over-subscription applies) or
    /// thick (a volume needs its size free).
    pub thin_provisioning: bool,
    /// Free-form capabilities the backend reports to the scheduler besides
    /// the driver's (`tier = "ssd"`…); `volume_backend_name` here replaces
    /// the default, the backend's name.
    pub capabilities: BTreeMap<String, String>,
    /// Percent of the total space kept free.
    pub reserved_percentage: u8,
    /// How volumes are made from snapshots and other volumes, unless their
    /// type says otherwise (`scoria:clone_strategy`).
    pub clone_strategy: scoria_model::snapshot::CloneStrategy,
    /// Longest chain of images a volume may stand on before its image is
    /// marked `degraded`.
    pub max_chain_depth: usize,
    /// The image cache of this backend: how many images it keeps (0: no
    /// cache) and how many bytes of their data at most (0: no bound). Entries
    /// nothing stands on are evicted, least recently used first.
    pub image_cache_max_count: usize,
    pub image_cache_max_bytes: u64,
}

/// How many images a backend's image cache keeps unless configured.
pub const DEFAULT_IMAGE_CACHE_MAX_COUNT: usize = 50;

/// Everything the application layer needs to start.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the database lives (`scoria.db` inside it).
    pub data_dir: PathBuf,
    pub store: StoreOptions,
    pub backends: Vec<BackendConfig>,
    /// Lifetime of issued tokens.
    pub token_ttl: Duration,
    /// The public base URL of this server (for catalogs and links), e.g.
    /// `http://127.0.0.1:8776`.
    pub public_url: String,
    /// Region name in the catalog.
    pub region: String,
    /// Admin account created on first start.
    pub admin_user: String,
    pub admin_project: String,
    /// `None`: generate one on first start.
    pub admin_password: Option<String>,
    /// How expensive password hashes are: leave at `Default` outside tests.
    pub password_cost: PasswordCost,
    /// How often the backends' capacity is read for the scheduler (also
    /// after every flow that changed a backend's content).
    pub capacity_refresh: Duration,
    /// The name this process's flow engine owns flows under (see
    /// `scoria_flows`: one process per node id; the binary locks the data
    /// directory so that a second one cannot start on it).
    pub node_id: String,
    /// The image service (Glance subset): where its files live and its limits.
    pub image_service: ImageServiceConfig,
    /// How attachments' exports are served (see [`exports`]).
    pub exports: exports::ExportsConfig,
    /// Where backups live and how they are cut (see [`backups`]).
    pub backups: BackupConfig,
    /// Which filters and weighers place volumes (see [`scheduler`]).
    pub scheduler: scheduler::SchedulerConfig,
    /// The repository fixes applied on a schedule (see
    /// [`repository::autofix`]); off by default.
    pub autofix: repository::autofix::AutoFix,
}

/// The backup repository.
#[derive(Clone, Debug)]
pub struct BackupConfig {
    /// The repository directory (`<data_dir>/backups` by default), outside
    /// every backend; used when `repository` is [`BackupRepository::Dir`].
    pub path: PathBuf,
    /// Sync chunks and manifests before a backup is `available` (the
    /// directory; an object store's PUT is durable when it answers).
    pub fsync: bool,
    /// Bytes per chunk (4 MiB by default; a multiple of 64 KiB).
    pub chunk_size: u64,
    /// Where chunks and manifests are kept.
    pub repository: BackupRepository,
}

/// Which backup repository (see `scoria_storage::backup_repo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackupRepository {
    /// The directory at [`BackupConfig::path`].
    Dir,
    /// A bucket of an S3-compatible object store, with local temporaries
    /// (restore staging) in `temp_dir`.
    S3 {
        s3: scoria_storage::backup_repo::S3Config,
        temp_dir: PathBuf,
    },
}

impl BackupConfig {
    /// Open the repository this configuration names (also for the command
    /// line's `scoria backup verify`, with or without a running server: it
    /// only reads).
    pub async fn open(&self) -> Result<scoria_storage::backup_repo::DynRepo> {
        if !scoria_storage::backup_repo::valid_chunk_size(self.chunk_size) {
            return Err(Error::Invalid(format!(
                "backups.chunk_size {} is not a multiple of 64 KiB between 64 KiB and 64 MiB",
                self.chunk_size
            )));
        }
        Ok(match &self.repository {
            BackupRepository::Dir => Arc::new(
                scoria_storage::backup_repo::DirRepo::open(self.path.clone(), self.fsync)
                    .map_err(|e| Error::internal("the backup repository cannot open", e))?,
            ),
            BackupRepository::S3 { s3, temp_dir } => {
                // Blocking: the bucket is listed once, so bad settings fail here.
                let (s3, temp_dir) = (s3.clone(), temp_dir.clone());
                let repo = tokio::task::spawn_blocking(move || {
                    scoria_storage::backup_repo::S3Repo::open(s3, temp_dir)
                })
                .await
                .map_err(|e| Error::internal("the backup repository cannot open", e))?
                .map_err(|e| Error::internal("the backup repository cannot open", e))?;
                Arc::new(repo)
            }
        })
    }
}

/// The image service's store and limits.
#[derive(Clone, Debug)]
pub struct ImageServiceConfig {
    /// The directory of the image files (`<data_dir>/images` by default).
    pub path: PathBuf,
    /// Sync each upload (and the directory) before it is acknowledged.
    pub fsync: bool,
    /// The largest image, in bytes (Glance's `image_size_cap`): an upload
    /// past it is refused with 413.
    pub max_image_size: u64,
    /// The bytes each project may keep in the image store (Glance's
    /// `image_size_total`): an upload that would pass it is refused with 413.
    pub image_size_total: u64,
    /// What `qemu-img info` may spend on an image before a volume is made
    /// from it (Cinder's prlimit: 60 s of CPU, 1 GiB of address space).
    pub inspect_limits: scoria_storage::qemu::untrusted::Limits,
}

/// The cost of hashing passwords (Argon2id).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PasswordCost {
    /// The `argon2` crate's defaults (19 MiB, 2 passes): deployments.
    #[default]
    Default,
    /// Argon2's minimum (8 KiB, 1 pass): only for test suites that log in
    /// many times; never use it for real passwords.
    TestOnlyMinimal,
}

impl Config {
    /// Defaults for a data directory: one qcow2 file backend inside it.
    pub fn with_data_dir(data_dir: PathBuf) -> Config {
        let images = data_dir.join("images");
        let backups = data_dir.join("backups");
        let exports = exports::ExportsConfig::with_data_dir(&data_dir);
        Config {
            exports,
            backends: vec![BackendConfig {
                name: "file".into(),
                driver: DriverConfig::File {
                    path: data_dir.join("volumes"),
                    fsync: true,
                },
                format: Format::Qcow2,
                availability_zone: "nova".into(),
                max_over_subscription_ratio: scheduler::OverSubscription::Fixed(
                    scheduler::DEFAULT_MAX_OVER_SUBSCRIPTION_RATIO,
                ),
                thin_provisioning: true,
                capabilities: BTreeMap::new(),
                reserved_percentage: 0,
                clone_strategy: scoria_model::snapshot::CloneStrategy::Space,
                max_chain_depth: scoria_model::snapshot::DEFAULT_MAX_CHAIN_DEPTH,
                image_cache_max_count: DEFAULT_IMAGE_CACHE_MAX_COUNT,
                image_cache_max_bytes: 0,
            }],
            data_dir,
            store: StoreOptions::default(),
            token_ttl: Duration::from_secs(3600),
            public_url: "http://127.0.0.1:8776".into(),
            region: "RegionOne".into(),
            admin_user: "admin".into(),
            admin_project: "admin".into(),
            admin_password: None,
            password_cost: PasswordCost::Default,
            capacity_refresh: Duration::from_secs(10),
            node_id: "local".into(),
            scheduler: scheduler::SchedulerConfig::default(),
            autofix: repository::autofix::AutoFix::default(),
            backups: BackupConfig {
                path: backups,
                fsync: true,
                chunk_size: scoria_storage::backup_repo::DEFAULT_CHUNK_SIZE,
                repository: BackupRepository::Dir,
            },
            image_service: ImageServiceConfig {
                path: images,
                fsync: true,
                max_image_size: 1 << 40,
                image_size_total: 1000 << 30,
                inspect_limits: Default::default(),
            },
        }
    }
}

/// A backend in service: its configuration, its driver, what it can do,
/// and its last capacity reading (see [`capacity`]).
#[derive(Debug)]
pub struct Backend {
    pub config: BackendConfig,
    pub driver: DynDriver,
    /// What the scheduler matches volume types' extra specs against:
    /// Cinder's capability names, as the driver reports them
    /// (`Capabilities::cinder`), `volume_backend_name` (the backend's name
    /// unless configured) and the configured free-form capabilities.
    pub capabilities: BTreeMap<String, String>,
    capacity: std::sync::RwLock<Option<capacity::Reading>>,
    /// Why its storage cannot be reached, while it cannot (see [`backends`]).
    down: std::sync::RwLock<Option<String>>,
}

impl Backend {
    pub fn new(config: BackendConfig, driver: DynDriver) -> Backend {
        let mut capabilities: BTreeMap<String, String> = driver
            .capabilities()
            .cinder()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        capabilities.insert("volume_backend_name".into(), config.name.clone());
        if !config.thin_provisioning {
            capabilities.insert("thin_provisioning_support".into(), "False".into());
        }
        capabilities.extend(config.capabilities.clone());
        Backend {
            config,
            driver,
            capabilities,
            capacity: std::sync::RwLock::new(None),
            down: std::sync::RwLock::new(None),
        }
    }
}

/// What flows' steps use: the store, the backends, the image service's
/// store, the failpoints.
#[derive(Debug)]
pub struct Env {
    pub store: Store,
    pub backends: registry::Registry<Backend>,
    /// Where the image service keeps its files (see [`image_service`]).
    pub image_store: scoria_storage::image_store::DynImageStore,
    /// The limits of `qemu-img info` on uploaded images.
    pub inspect_limits: scoria_storage::qemu::untrusted::Limits,
    pub fp: Arc<Failpoints>,
    /// The exporters of the backends that can export (file backends), by
    /// backend name.
    pub exports: registry::Registry<exports::BackendExports>,
    pub exports_config: exports::ExportsConfig,
    /// The backup repository and its chunk size.
    pub backup_repo: scoria_storage::backup_repo::DynRepo,
    pub backup_chunk_size: u64,
    /// How placements are made (the configuration's `[scheduler]`).
    pub scheduler: scheduler::SchedulerConfig,
    /// Where a migration stages a flattened copy of a volume's data between
    /// two backends (`<data_dir>/staging`); each file is removed by its flow.
    pub staging_dir: PathBuf,
    /// Held by an administrator's change of the backends (add, deactivate,
    /// remove): one at a time.
    pub backend_changes: tokio::sync::Mutex<()>,
}

impl Env {
    pub fn backend(&self, name: &str) -> Result<Arc<Backend>> {
        self.backends.get(name).ok_or_else(|| Error::Internal {
            message: format!("backend {name} is not configured"),
            source: None,
        })
    }

    /// Availability zones offered by the backends.
    pub fn availability_zones(&self) -> Vec<String> {
        let mut zones: Vec<String> = self
            .backends
            .values()
            .iter()
            .map(|b| b.config.availability_zone.clone())
            .collect();
        zones.sort();
        zones.dedup();
        zones
    }
}

/// The running application. Cheap to clone.
#[derive(Clone)]
pub struct App {
    pub config: Arc<Config>,
    pub env: Arc<Env>,
    pub engine: Engine<Env>,
    /// Identity's in-memory state: token cache, password hasher, bootstrap
    /// outcome ([`App::bootstrap_info`]).
    pub identity: Arc<identity::IdentityState>,
    /// Background tasks (the capacity refresher, the reaper): started by
    /// [`App::open`], stopped by [`App::shutdown`].
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Open the store (migrating it), bring up the backends, register the flows,
    /// bootstrap the admin account (see [`App::bootstrap_info`]) and resume
    /// every flow a previous run left unfinished.
    pub async fn open(config: Config, fp: Arc<Failpoints>) -> Result<App> {
        Self::open_with(config, fp, EngineOptions::default()).await
    }

    /// As [`App::open`], with engine options (tests).
    pub async fn open_with(
        config: Config,
        fp: Arc<Failpoints>,
        mut options: EngineOptions,
    ) -> Result<App> {
        options.node_id = config.node_id.clone();
        let app = Self::assemble(config, fp, options).await?;
        app.tasks.lock().unwrap_or_else(|e| e.into_inner()).extend([
            capacity::spawn_refresher(app.env.clone(), app.config.capacity_refresh),
            reaper::spawn(
                app.env.clone(),
                app.engine.ended(),
                app.config.capacity_refresh,
            ),
            exports::spawn_reconciler(
                app.env.clone(),
                app.engine.ended(),
                app.config.exports.reconcile_period,
            ),
        ]);
        if !app.config.autofix.kinds.is_empty() {
            let autofix =
                repository::autofix::spawn(app.engine.clone(), app.config.autofix.clone());
            app.tasks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(autofix);
        }
        identity::bootstrap(&app).await?;
        image_service::recover(&app.env).await?;
        let resumed = app.engine.resume_all().await?;
        if !resumed.is_empty() {
            tracing::info!(count = resumed.len(), "resumed unfinished flows");
        }
        Ok(app)
    }

    /// Open the store and the backends and register the flows, without
    /// bootstrapping identity or resuming anything (the generic flow tests
    /// resume by hand).
    pub async fn assemble(
        config: Config,
        fp: Arc<Failpoints>,
        options: EngineOptions,
    ) -> Result<App> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            Error::internal(
                format!("cannot create data directory {}", config.data_dir.display()),
                e,
            )
        })?;
        let store = Store::open(&config.data_dir.join("scoria.db"), &config.store).await?;
        let mut backends = BTreeMap::new();
        let mut exporters = BTreeMap::new();
        for b in backends::at_start(&store, &config.backends).await? {
            let (backend, exporter) = backends::open(&b, &fp, &config.exports).await?;
            if let Some(e) = exporter {
                exporters.insert(b.name.clone(), e);
            }
            backends.insert(b.name.clone(), backend);
        }
        let image_store = Arc::new(
            scoria_storage::image_store::FileImageStore::new(
                config.image_service.path.clone(),
                config.image_service.fsync,
                fp.clone(),
            )
            .await
            .map_err(|e| Error::internal("the image store cannot start", e))?,
        );
        let backup_repo = config.backups.open().await?;
        // Before any flow resumes: the chunks of backups interrupted before
        // their manifest (and restores' temporaries) go now; a resumed backup
        // writes what it needs again.
        let repo = backup_repo.clone();
        match tokio::task::spawn_blocking(move || repo.collect()).await {
            Ok(Ok(c)) if c.chunks + c.temporaries > 0 => {
                tracing::info!(
                    chunks = c.chunks,
                    bytes = c.bytes,
                    temporaries = c.temporaries,
                    "backup repository collected"
                );
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the backup repository could not be collected")
            }
            Err(e) => tracing::warn!(error = %e, "the backup repository collection did not run"),
        }
        let env = Arc::new(Env {
            store: store.clone(),
            backends: registry::Registry::new(backends),
            image_store,
            inspect_limits: config.image_service.inspect_limits,
            fp: fp.clone(),
            exports: registry::Registry::new(exporters),
            exports_config: config.exports.clone(),
            backup_repo,
            backup_chunk_size: config.backups.chunk_size,
            scheduler: config.scheduler.clone(),
            staging_dir: config.data_dir.join("staging"),
            backend_changes: tokio::sync::Mutex::new(()),
        });
        let engine = Engine::new(store, env.clone(), fp, options);
        flows::register(&engine);
        Ok(App {
            identity: Arc::new(identity::IdentityState::new(&config)),
            config: Arc::new(config),
            env,
            engine,
            tasks: Arc::default(),
        })
    }

    pub fn store(&self) -> &Store {
        &self.env.store
    }

    /// Stop at the next step boundary; unfinished flows resume at next start.
    pub async fn shutdown(&self, grace: Duration) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
        self.engine.shutdown(grace).await;
        self.env.store.close().await;
    }
}
