//! The `scoria` binary.
//!
//! `scoria serve` runs everything in one process: the HTTP API (Block Storage,
//! Identity), the flow engine and the backends, on an embedded SQLite database
//! in the data directory. On first start it creates the admin account and
//! writes `clouds.yaml` and `admin-openrc` next to the database.
//!
//! `scoria backup verify ID` checks a backup's data in the backup repository
//! the configuration names (every chunk present and the bytes its hash
//! says), with or without a running server: it only reads.
//!
//! `scoria check` checks the backends against the records (the repository
//! check: exit 0 when it finds nothing to fix, 1 when it lists fixes, 2 on
//! an error), with or without a running server; `scoria fix` applies fixes
//! while no server runs (see `repository.rs`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use scoria_core::App;
use scoria_failpoints::Failpoints;

mod config;
mod repository;

/// mimalloc rather than glibc's malloc: rendering a page of 1000 volumes
/// allocates and frees tens of thousands of small strings and maps, which
/// glibc spent a third of the request on (`malloc_consolidate`, `_int_free`
/// in a profile), and glibc keeps the 19 MiB working memories of password
/// hashes in the heap after they are freed, where mimalloc returns them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Make mimalloc give freed memory back to the system at once and commit
/// arena memory only as it is used: an idle `scoria serve` holds 28 MiB
/// instead of 49 (measured), and the working memory of a password check is
/// returned when the check ends, with no measurable cost on a page of 1000
/// volumes. (By default mimalloc purges only lazily, on later allocations,
/// so an idle process never shrank.) Called first thing in `main`.
fn tune_allocator() {
    // Indices in mimalloc's `mi_option_e`, the same in its v2 and v3 (the
    // crate names only some of them).
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: setting an option is a plain store into mimalloc's option
    // table; both options are read on each later purge or arena commit.
    unsafe {
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 0);
    }
}

#[derive(Parser)]
#[command(
    name = "scoria",
    version,
    about = "Block storage for KVM clouds, with the OpenStack Block Storage v3 API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run Scoria: API, flows and backends in this process.
    Serve {
        /// A TOML configuration file (see scoria.example.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory (database, default backend, client files).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Listen address, e.g. 127.0.0.1:8776 (port 0 picks a free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Check the backends against the records and list the fixes (exit 0:
    /// none, 1: fixes listed, 2: the check failed). Only reads.
    Check {
        /// A TOML configuration file (see scoria.example.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory (database, default backend).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Check only this backend.
        #[arg(long)]
        backend: Option<String>,
        /// Print the report (fixes, foreign files, broken images) as JSON.
        #[arg(long)]
        json: bool,
        /// Headers only: no `qemu-img check` unless qemu marked an image
        /// corrupt or dirty (leaks go unseen).
        #[arg(long, conflicts_with = "full")]
        quick: bool,
        /// `qemu-img check` on every qcow2 image, even those whose file
        /// has not changed since the server's last clean check of it.
        #[arg(long)]
        full: bool,
    },
    /// Apply fixes a check lists, each after checking its precondition
    /// again; the server must be stopped. With no id and no kind: every fix
    /// that can be applied.
    Fix {
        /// A TOML configuration file (see scoria.example.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory (database, default backend).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Apply every fix of this kind (clean, optimize, merge, mend);
        /// repeatable.
        #[arg(long = "kind")]
        kinds: Vec<scoria_core::repository::FixKind>,
        /// Print what was done as JSON.
        #[arg(long)]
        json: bool,
        /// The fixes to apply, by the ids `scoria check` printed.
        ids: Vec<String>,
    },
    /// Backups in the backup repository.
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
}

#[derive(Subcommand)]
enum BackupCommand {
    /// Check every chunk of a backup without restoring it; exits 1 when one
    /// is missing or corrupt, naming each.
    Verify {
        /// The backup's id.
        id: String,
        /// A TOML configuration file (see scoria.example.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory (the repository is `<data_dir>/backups` unless the
        /// configuration says otherwise).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> Result<()> {
    tune_allocator();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            data_dir,
            listen,
        } => {
            let file = match &config {
                Some(p) => config::File::load(p)?,
                None => config::File::default(),
            };
            let resolved = config::resolve(file, data_dir, listen)?;
            init_logging(&resolved.log_filter);
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?
                .block_on(serve(resolved))
        }
        Command::Check {
            config,
            data_dir,
            backend,
            json,
            quick,
            full,
        } => exit_with(offline(config, data_dir, |r| async move {
            repository::check(
                &r,
                backend.as_deref(),
                json,
                scoria_core::repository::CheckOptions { quick, full },
            )
            .await
        })),
        Command::Fix {
            config,
            data_dir,
            kinds,
            json,
            ids,
        } => exit_with(offline(config, data_dir, |r| async move {
            repository::fix(&r, &kinds, &ids, json).await
        })),
        Command::Backup {
            command:
                BackupCommand::Verify {
                    id,
                    config,
                    data_dir,
                    json,
                },
        } => {
            let file = match &config {
                Some(p) => config::File::load(p)?,
                None => config::File::default(),
            };
            let resolved = config::resolve(file, data_dir, None)?;
            let ok = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?
                .block_on(verify_backup(&resolved.core.backups, &id, json))?;
            if !ok {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

/// Run an offline command on the resolved configuration, in a runtime of
/// its own.
fn offline<F, Fut>(config: Option<PathBuf>, data_dir: Option<PathBuf>, f: F) -> Result<bool>
where
    F: FnOnce(config::Resolved) -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let file = match &config {
        Some(p) => config::File::load(p)?,
        None => config::File::default(),
    };
    let resolved = config::resolve(file, data_dir, None)?;
    init_logging(&resolved.log_filter);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(f(resolved))
}

/// Exit 0 for `Ok(true)`, 1 for `Ok(false)`, 2 for an error (printed).
fn exit_with(r: Result<bool>) -> ! {
    match r {
        Ok(true) => std::process::exit(0),
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2)
        }
    }
}

/// `scoria backup verify`: prints what it checked; `false` when a chunk is
/// bad.
async fn verify_backup(backups: &scoria_core::BackupConfig, id: &str, json: bool) -> Result<bool> {
    let id: scoria_model::BackupId = id
        .parse()
        .map_err(|_| anyhow::anyhow!("{id} is not a backup id"))?;
    let repo = backups.open().await?;
    let v = scoria_core::backups::admin::verify_in(&repo, id).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "backup {}: {} chunks, {} bytes checked, {} bad",
            v.backup_id,
            v.chunks,
            v.bytes,
            v.bad.len()
        );
        for b in &v.bad {
            println!("  chunk {} ({}): {}", b.index, b.hash, b.problem);
        }
    }
    Ok(v.bad.is_empty())
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
}

/// The failpoints `SCORIA_FAILPOINTS` arms (crash tests), none when unset.
pub(crate) fn failpoints_from_env() -> Result<std::sync::Arc<Failpoints>> {
    let fp = Failpoints::new();
    if let Ok(spec) = std::env::var("SCORIA_FAILPOINTS") {
        if !Failpoints::compiled_in() {
            anyhow::bail!("SCORIA_FAILPOINTS is set but this binary was built without failpoints");
        }
        fp.arm_spec(&spec)
            .map_err(anyhow::Error::msg)
            .context("SCORIA_FAILPOINTS")?;
        tracing::warn!(%spec, "failpoints armed");
    }
    Ok(fp)
}

async fn serve(mut r: config::Resolved) -> Result<()> {
    let fp = failpoints_from_env()?;
    let listener = tokio::net::TcpListener::bind(r.listen)
        .await
        .with_context(|| format!("binding {}", r.listen))?;
    let addr = listener.local_addr().context("listener address")?;
    if r.listen.port() == 0 {
        // Port 0 picked a free port: links and the catalog must name the real one.
        r.core.public_url = r
            .core
            .public_url
            .replace(&r.listen.to_string(), &addr.to_string());
    }
    let data_dir = r.core.data_dir.clone();
    // One process per data directory (and so per node id): a second one would
    // resume the first one's flows under its feet. The lock goes with the
    // process, however it ends.
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let lock_path = data_dir.join("scoria.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    if let Err(e) = lock.try_lock() {
        anyhow::bail!(
            "another scoria serve runs on {} ({e}); stop it first",
            data_dir.display()
        );
    }
    let app = App::open(r.core, fp)
        .await
        .map_err(|e| anyhow::anyhow!(e.chain()))
        .context("starting Scoria")?;
    let public_url = app.config.public_url.clone();
    let info = app.bootstrap_info();
    write_client_files(&data_dir, &app, info.password.as_deref())?;

    println!("Scoria is serving on {public_url}");
    println!("  Block Storage v3: {public_url}/v3    Identity v3: {public_url}/identity/v3");
    println!("  Data directory:   {}", data_dir.display());
    if let (Some(p), true) = (&info.password, info.generated) {
        println!("  Admin password (generated, also in clouds.yaml): {p}");
    }
    println!("Log in with the stock client:");
    println!(
        "  export OS_CLIENT_CONFIG_FILE={}/clouds.yaml OS_CLOUD=scoria",
        data_dir.display()
    );
    println!("  openstack volume create --size 1 v1 && openstack volume list");
    // Tests read this line to find a port picked with --listen 127.0.0.1:0.
    println!("listening on {addr}");

    let shutdown = async {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term => {},
        }
        tracing::info!("shutting down: finishing requests, pausing flows at a step boundary");
    };
    scoria_api::serve(app.clone(), listener, r.http, shutdown)
        .await
        .context("serving HTTP")?;
    app.shutdown(Duration::from_secs(30)).await;
    tracing::info!("stopped");
    Ok(())
}

/// Write `clouds.yaml` and `admin-openrc` for the admin account. Only when the
/// password is known to this run (first start, or set by configuration); the
/// files of an earlier start are left alone otherwise.
fn write_client_files(data_dir: &Path, app: &App, password: Option<&str>) -> Result<()> {
    let Some(password) = password else {
        return Ok(());
    };
    let c = &app.config;
    let auth_url = format!("{}/identity/v3", c.public_url);
    let clouds = format!(
        "# Written by scoria serve. Use with: export OS_CLIENT_CONFIG_FILE={dir}/clouds.yaml OS_CLOUD=scoria\n\
         clouds:\n  scoria:\n    auth:\n      auth_url: {auth_url}\n      username: {user}\n      password: \"{password}\"\n      \
         project_name: {project}\n      user_domain_name: Default\n      project_domain_name: Default\n    \
         region_name: {region}\n    interface: public\n    identity_api_version: 3\n    volume_api_version: 3\n",
        dir = data_dir.display(),
        user = c.admin_user,
        project = c.admin_project,
        region = c.region,
    );
    let openrc = format!(
        "# Written by scoria serve. Use with: . {dir}/admin-openrc\n\
         export OS_AUTH_URL={auth_url}\nexport OS_USERNAME={user}\nexport OS_PASSWORD='{password}'\n\
         export OS_PROJECT_NAME={project}\nexport OS_USER_DOMAIN_NAME=Default\nexport OS_PROJECT_DOMAIN_NAME=Default\n\
         export OS_REGION_NAME={region}\nexport OS_IDENTITY_API_VERSION=3\nexport OS_VOLUME_API_VERSION=3\n",
        dir = data_dir.display(),
        user = c.admin_user,
        project = c.admin_project,
        region = c.region,
    );
    for (name, text) in [("clouds.yaml", clouds), ("admin-openrc", openrc)] {
        let path = data_dir.join(name);
        write_private(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Write a file only its owner can read (it holds a password).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
