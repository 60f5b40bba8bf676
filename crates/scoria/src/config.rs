//! The configuration file (`--config scoria.toml`), every key documented in
//! `scoria.example.toml` at the repository root. Unknown keys are an error, so a
//! typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use scoria_core::scheduler::{Filter, OverSubscription, SchedulerConfig, Weigher};
use scoria_core::{BackendConfig, Config, DriverConfig};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Where the database, the default backend and the generated client files live.
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub identity: Identity,
    #[serde(default)]
    pub database: Database,
    #[serde(default, rename = "backend")]
    pub backends: Vec<Backend>,
    #[serde(default)]
    pub log: Log,
    #[serde(default)]
    pub image_service: ImageService,
    #[serde(default)]
    pub exports: Exports,
    #[serde(default)]
    pub backups: Backups,
    #[serde(default)]
    pub scheduler: Scheduler,
    #[serde(default)]
    pub repository: Repository,
}

/// The repository check's AutoFix: the kinds of fixes applied on a schedule.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repository {
    /// Kinds (`clean`, `optimize`, `merge`, `mend`); none: AutoFix is off.
    pub autofix: Option<Vec<String>>,
    /// Seconds between AutoFix rounds (default 3600).
    pub autofix_period_s: Option<u64>,
    /// A round after operations too (default false).
    pub autofix_after_operations: Option<bool>,
}

/// Which filters and weighers place volumes, and their multipliers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scheduler {
    /// Filter names (Cinder's); default all five.
    pub filters: Option<Vec<String>>,
    /// Weigher names (Cinder's); default `["CapacityWeigher"]`.
    pub weighers: Option<Vec<String>>,
    pub capacity_weight_multiplier: Option<f64>,
    pub allocated_capacity_weight_multiplier: Option<f64>,
    pub volume_number_multiplier: Option<f64>,
    /// Backends a create tries before it fails.
    pub max_attempts: Option<u32>,
}

/// `max_over_subscription_ratio`: a number or `"auto"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Ratio {
    Number(f64),
    Word(String),
}

/// The backup repository.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backups {
    /// Directory of the repository; relative to the data directory.
    pub path: Option<PathBuf>,
    pub fsync: Option<bool>,
    /// Bytes per chunk, in KiB (a multiple of 64, from 64 to 65536).
    pub chunk_size_kib: Option<u64>,
    /// `dir` (the default: the directory `path`) or `s3` (`[backups.s3]`).
    pub repository: Option<String>,
    pub s3: Option<BackupsS3>,
}

/// An S3-compatible bucket holding the backup repository.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupsS3 {
    /// `http://host[:port]`; requests are path-style.
    pub endpoint: Option<String>,
    /// `us-east-1` by default.
    pub region: Option<String>,
    pub bucket: Option<String>,
    /// Prepended to every key (empty by default).
    pub prefix: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    /// Local directory for temporaries (restore staging), relative to the
    /// data directory; `backups-tmp` by default.
    pub temp_path: Option<PathBuf>,
}

impl std::fmt::Debug for BackupsS3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupsS3")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("access_key", &self.access_key)
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field("temp_path", &self.temp_path)
            .finish()
    }
}

/// How attached volumes are served (NBD exports by qemu-storage-daemon).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exports {
    /// The address exports listen on and `connection_info` names.
    pub host: Option<std::net::IpAddr>,
    /// The ports TCP exports get, inclusive.
    pub port_min: Option<u16>,
    pub port_max: Option<u16>,
    /// TLS-PSK on TCP exports; `false` serves plain NBD (a warning each time).
    pub tls: Option<bool>,
    /// Serve on unix sockets instead (consumers on this host).
    pub unix: Option<bool>,
    /// How often every export is checked and a dead daemon restarted.
    pub reconcile_period_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageService {
    /// Directory of the image files; relative to the data directory.
    pub path: Option<PathBuf>,
    pub fsync: Option<bool>,
    /// The largest image, in MiB (Glance's `image_size_cap`).
    pub image_size_cap_mib: Option<u64>,
    /// Each project's total of image data, in MiB (Glance's `image_size_total`).
    pub image_size_total_mib: Option<u64>,
    /// Limits of `qemu-img info` on an image before a volume is made of it.
    pub inspect_cpu_seconds: Option<u64>,
    pub inspect_memory_mib: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub listen: Option<SocketAddr>,
    pub node_id: Option<String>,
    pub public_url: Option<String>,
    pub region: Option<String>,
    /// Seconds to wait for a request's head (also a kept-alive connection's
    /// idle wait for its next request).
    pub header_read_timeout_seconds: Option<u64>,
    /// Seconds to wait for the next bytes of a request body.
    pub body_read_timeout_seconds: Option<u64>,
    /// Connections served at once.
    pub max_connections: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub admin_user: Option<String>,
    pub admin_project: Option<String>,
    pub admin_password: Option<String>,
    pub token_ttl_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// `full` (default) or `normal`.
    pub durability: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    pub name: String,
    /// `file` (default) or `memory` (tests only).
    pub driver: Option<String>,
    pub path: Option<PathBuf>,
    pub format: Option<String>,
    pub availability_zone: Option<String>,
    pub max_over_subscription_ratio: Option<Ratio>,
    pub reserved_percentage: Option<u8>,
    /// Thin (default) or thick provisioning.
    pub thin_provisioning: Option<bool>,
    /// Free-form capabilities matched against volume types' extra specs.
    #[serde(default)]
    pub capabilities: std::collections::BTreeMap<String, String>,
    pub fsync: Option<bool>,
    pub capacity_gib: Option<u64>,
    pub clone_strategy: Option<String>,
    pub image_cache_max_count: Option<usize>,
    pub image_cache_max_gib: Option<u64>,
    pub max_chain_depth: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// A `tracing` filter such as `info` or `scoria=debug,info`.
    pub filter: Option<String>,
}

impl File {
    pub fn load(path: &Path) -> Result<File> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// The listen address when neither the file nor the command line gives one.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8776";

/// Everything `serve` needs, resolved.
pub struct Resolved {
    pub core: Config,
    pub listen: SocketAddr,
    pub http: scoria_api::HttpLimits,
    pub log_filter: String,
}

/// Combine the file, the command line and the environment.
pub fn resolve(
    file: File,
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
) -> Result<Resolved> {
    let data_dir = data_dir
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from("scoria-data"));
    let data_dir = if data_dir.is_absolute() {
        data_dir
    } else {
        std::env::current_dir()
            .context("current directory")?
            .join(data_dir)
    };
    let listen = match listen.or(file.server.listen) {
        Some(l) => l,
        None => DEFAULT_LISTEN.parse().context("default listen address")?,
    };
    let mut core = Config::with_data_dir(data_dir.clone());
    core.public_url = file
        .server
        .public_url
        .unwrap_or_else(|| format!("http://{listen}"));
    if let Some(r) = file.server.region {
        core.region = r;
    }
    if let Some(n) = file.server.node_id {
        if n.is_empty()
            || n.len() > 64
            || !n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            bail!("server.node_id must be 1 to 64 letters, digits, '.', '_' or '-'");
        }
        core.node_id = n;
    }
    if let Some(u) = file.identity.admin_user {
        core.admin_user = u;
    }
    if let Some(p) = file.identity.admin_project {
        core.admin_project = p;
    }
    core.admin_password = std::env::var("SCORIA_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty())
        .or(file.identity.admin_password);
    if let Some(ttl) = file.identity.token_ttl_seconds {
        if ttl == 0 {
            bail!("identity.token_ttl_seconds must be positive");
        }
        core.token_ttl = Duration::from_secs(ttl);
    }
    if let Some(d) = file.database.durability {
        core.store.durability = d
            .parse()
            .map_err(anyhow::Error::msg)
            .context("database.durability")?;
    }
    if !file.backends.is_empty() {
        core.backends = file
            .backends
            .into_iter()
            .map(|b| backend(b, &data_dir))
            .collect::<Result<_>>()?;
        let mut names: Vec<&str> = core.backends.iter().map(|b| b.name.as_str()).collect();
        names.sort();
        if names.windows(2).any(|w| w[0] == w[1]) {
            bail!("two backends have the same name");
        }
    }
    core.scheduler = scheduler(file.scheduler)?;
    if let Some(kinds) = file.repository.autofix {
        core.autofix.kinds = kinds
            .iter()
            .map(|k| k.parse())
            .collect::<std::result::Result<_, String>>()
            .map_err(anyhow::Error::msg)
            .context("repository.autofix")?;
    }
    if let Some(s) = file.repository.autofix_period_s {
        if s == 0 {
            bail!("repository.autofix_period_s must be positive");
        }
        core.autofix.period = Duration::from_secs(s);
    }
    if let Some(a) = file.repository.autofix_after_operations {
        core.autofix.after_operations = a;
    }
    let backups = file.backups;
    if let Some(p) = backups.path {
        core.backups.path = if p.is_absolute() { p } else { data_dir.join(p) };
    }
    if let Some(f) = backups.fsync {
        core.backups.fsync = f;
    }
    if let Some(kib) = backups.chunk_size_kib {
        let bytes = kib.saturating_mul(1024);
        if !scoria_core::backups::valid_chunk_size(bytes) {
            bail!("backups.chunk_size_kib must be a multiple of 64 from 64 to 65536");
        }
        core.backups.chunk_size = bytes;
    }
    core.backups.repository = match (backups.repository.as_deref(), backups.s3) {
        (None | Some("dir"), None) => scoria_core::BackupRepository::Dir,
        (None | Some("dir"), Some(_)) => {
            bail!("[backups.s3] is set but backups.repository is not \"s3\"")
        }
        (Some("s3"), Some(s3)) => backups_s3(s3, &data_dir)?,
        (Some("s3"), None) => bail!("backups.repository = \"s3\" needs a [backups.s3] section"),
        (Some(other), _) => bail!("backups.repository must be \"dir\" or \"s3\", not {other:?}"),
    };
    let images = file.image_service;
    if let Some(p) = images.path {
        core.image_service.path = if p.is_absolute() { p } else { data_dir.join(p) };
    }
    if let Some(f) = images.fsync {
        core.image_service.fsync = f;
    }
    for (key, value, slot) in [
        (
            "image_size_cap_mib",
            images.image_size_cap_mib,
            &mut core.image_service.max_image_size,
        ),
        (
            "image_size_total_mib",
            images.image_size_total_mib,
            &mut core.image_service.image_size_total,
        ),
    ] {
        if let Some(mib) = value {
            *slot = mib
                .checked_mul(1 << 20)
                .with_context(|| format!("image_service.{key} is too large"))?;
        }
    }
    if let Some(cpu) = images.inspect_cpu_seconds {
        if cpu == 0 {
            bail!("image_service.inspect_cpu_seconds must be positive");
        }
        core.image_service.inspect_limits.cpu_seconds = cpu;
    }
    if let Some(mib) = images.inspect_memory_mib {
        if mib < 64 {
            bail!(
                "image_service.inspect_memory_mib must be at least 64 (qemu-img itself needs that)"
            );
        }
        core.image_service.inspect_limits.address_space = mib << 20;
    }
    let mut http = scoria_api::HttpLimits::default();
    let secs = |what: &str, v: u64| {
        if v == 0 {
            bail!("server.{what} must be at least 1");
        }
        Ok(Duration::from_secs(v))
    };
    if let Some(s) = file.server.header_read_timeout_seconds {
        http.header_read_timeout = secs("header_read_timeout_seconds", s)?;
    }
    if let Some(s) = file.server.body_read_timeout_seconds {
        http.body_read_timeout = secs("body_read_timeout_seconds", s)?;
    }
    if let Some(n) = file.server.max_connections {
        if n == 0 {
            bail!("server.max_connections must be at least 1");
        }
        http.max_connections = n;
    }
    let exports = file.exports;
    if let Some(h) = exports.host {
        core.exports.host = h;
    }
    if let Some(p) = exports.port_min {
        core.exports.port_min = p;
    }
    if let Some(p) = exports.port_max {
        core.exports.port_max = p;
    }
    if core.exports.port_min == 0 || core.exports.port_min > core.exports.port_max {
        bail!("exports.port_min must be at least 1 and at most exports.port_max");
    }
    if let Some(t) = exports.tls {
        core.exports.tls = t;
        if !t {
            tracing::warn!(
                "exports.tls = false: TCP exports are plain NBD, readable by anyone who reaches their port"
            );
        }
    }
    if let Some(u) = exports.unix {
        core.exports.unix = u;
    }
    if let Some(ms) = exports.reconcile_period_ms {
        if ms == 0 {
            bail!("exports.reconcile_period_ms must be positive");
        }
        core.exports.reconcile_period = std::time::Duration::from_millis(ms);
    }
    Ok(Resolved {
        core,
        listen,
        http,
        log_filter: file.log.filter.unwrap_or_else(|| "info".into()),
    })
}

/// The `[scheduler]` section; an unknown filter or weigher is an error.
fn scheduler(s: Scheduler) -> Result<SchedulerConfig> {
    let mut cfg = SchedulerConfig::default();
    if let Some(names) = s.filters {
        cfg.filters = names
            .iter()
            .map(|n| n.parse::<Filter>().map_err(anyhow::Error::msg))
            .collect::<Result<_>>()
            .context("scheduler.filters")?;
    }
    if let Some(names) = s.weighers {
        cfg.weighers = names
            .iter()
            .map(|n| n.parse::<Weigher>().map_err(anyhow::Error::msg))
            .collect::<Result<_>>()
            .context("scheduler.weighers")?;
    }
    for (key, value, slot) in [
        (
            "capacity_weight_multiplier",
            s.capacity_weight_multiplier,
            &mut cfg.capacity_weight_multiplier,
        ),
        (
            "allocated_capacity_weight_multiplier",
            s.allocated_capacity_weight_multiplier,
            &mut cfg.allocated_capacity_weight_multiplier,
        ),
        (
            "volume_number_multiplier",
            s.volume_number_multiplier,
            &mut cfg.volume_number_multiplier,
        ),
    ] {
        if let Some(v) = value {
            if !v.is_finite() {
                bail!("scheduler.{key} must be a finite number");
            }
            *slot = v;
        }
    }
    if let Some(n) = s.max_attempts {
        if n == 0 {
            bail!("scheduler.max_attempts must be at least 1");
        }
        cfg.max_attempts = n;
    }
    Ok(cfg)
}

fn backend(b: Backend, data_dir: &Path) -> Result<BackendConfig> {
    if b.name.is_empty()
        || !b
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("backend name {:?} must be letters, digits, - or _", b.name);
    }
    let driver = match b.driver.as_deref().unwrap_or("file") {
        "file" => {
            let path = b
                .path
                .clone()
                .unwrap_or_else(|| data_dir.join("volumes").join(&b.name));
            let path = if path.is_absolute() {
                path
            } else {
                data_dir.join(path)
            };
            DriverConfig::File {
                path,
                fsync: b.fsync.unwrap_or(true),
            }
        }
        "memory" => DriverConfig::Memory {
            capacity_gib: b.capacity_gib.unwrap_or(1024),
        },
        other => bail!(
            "backend {}: unknown driver {other:?} (file, memory)",
            b.name
        ),
    };
    let ratio = match b.max_over_subscription_ratio {
        None => {
            OverSubscription::Fixed(scoria_core::scheduler::DEFAULT_MAX_OVER_SUBSCRIPTION_RATIO)
        }
        Some(Ratio::Word(w)) if w == "auto" => OverSubscription::Auto,
        Some(Ratio::Number(r)) if r >= 1.0 && r.is_finite() => OverSubscription::Fixed(r),
        Some(_) => bail!(
            "backend {}: max_over_subscription_ratio must be a number at least 1.0 or \"auto\"",
            b.name
        ),
    };
    for (k, v) in &b.capabilities {
        if k.is_empty() || k.contains(':') || k.chars().any(char::is_whitespace) {
            bail!(
                "backend {}: capability name {k:?} must be non-empty, without ':' or spaces",
                b.name
            );
        }
        if v.len() > 255 {
            bail!(
                "backend {}: capability {k} is longer than 255 characters",
                b.name
            );
        }
    }
    let reserved = b.reserved_percentage.unwrap_or(0);
    if reserved > 100 {
        bail!("backend {}: reserved_percentage must be 0..=100", b.name);
    }
    let name = b.name.clone();
    Ok(BackendConfig {
        name: b.name,
        driver,
        format: b
            .format
            .as_deref()
            .unwrap_or("qcow2")
            .parse()
            .map_err(anyhow::Error::msg)?,
        availability_zone: b.availability_zone.unwrap_or_else(|| "nova".into()),
        max_over_subscription_ratio: ratio,
        thin_provisioning: b.thin_provisioning.unwrap_or(true),
        capabilities: b.capabilities,
        reserved_percentage: reserved,
        clone_strategy: b
            .clone_strategy
            .as_deref()
            .unwrap_or("space")
            .parse()
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("backend {}: clone_strategy (space, performance)", name))?,
        image_cache_max_count: b
            .image_cache_max_count
            .unwrap_or(scoria_core::DEFAULT_IMAGE_CACHE_MAX_COUNT),
        image_cache_max_bytes: b.image_cache_max_gib.unwrap_or(0) << 30,
        max_chain_depth: match b.max_chain_depth {
            Some(0) => bail!("backend {name}: max_chain_depth must be at least 1"),
            Some(d) => d,
            None => scoria_model::snapshot::DEFAULT_MAX_CHAIN_DEPTH,
        },
    })
}

fn backups_s3(s3: BackupsS3, data_dir: &Path) -> Result<scoria_core::BackupRepository> {
    let required = |v: Option<String>, key: &str| match v {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(anyhow::anyhow!("backups.s3.{key} is required")),
    };
    let config = scoria_core::backups::S3Config {
        endpoint: required(s3.endpoint, "endpoint")?,
        region: s3.region.unwrap_or_else(|| "us-east-1".into()),
        bucket: required(s3.bucket, "bucket")?,
        prefix: s3.prefix.unwrap_or_default(),
        access_key: required(s3.access_key, "access_key")?,
        secret_key: required(s3.secret_key, "secret_key")?,
    };
    // The settings' own checks (endpoint form, bucket name), before start.
    scoria_core::backups::S3Client::new(config.clone()).context("backups.s3")?;
    let temp = s3.temp_path.unwrap_or_else(|| "backups-tmp".into());
    Ok(scoria_core::BackupRepository::S3 {
        s3: config,
        temp_dir: if temp.is_absolute() {
            temp
        } else {
            data_dir.join(temp)
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_parses_and_resolves() {
        let text = include_str!("../../../scoria.example.toml");
        let f: File = toml::from_str(text).expect("example parses");
        let r = resolve(f, None, None).expect("example resolves");
        assert_eq!(r.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(r.core.backends.len(), 1);
        assert_eq!(r.core.image_service.max_image_size, 1 << 40);
        assert_eq!(r.core.image_service.image_size_total, 1000 << 30);
        assert!(r.core.image_service.path.ends_with("images"));
        assert!(r.core.backups.path.ends_with("backups"));
        assert_eq!(r.core.backups.chunk_size, 4 << 20);
        assert!(r.core.backups.fsync);
        assert_eq!(
            r.core.backups.repository,
            scoria_core::BackupRepository::Dir
        );
    }

    #[test]
    fn scheduler_and_backend_placement_settings() {
        // Defaults.
        let r = resolve(File::default(), None, None).unwrap();
        assert_eq!(r.core.scheduler, SchedulerConfig::default());
        assert_eq!(r.core.scheduler.filters.len(), 5);
        assert_eq!(r.core.scheduler.weighers, vec![Weigher::CapacityWeigher]);
        assert_eq!(r.core.scheduler.max_attempts, 3);
        assert_eq!(r.core.scheduler.allocated_capacity_weight_multiplier, -1.0);
        let text = "[scheduler]\nfilters = [\"CapacityFilter\", \"AvailabilityZoneFilter\"]\n\
                    weighers = [\"CapacityWeigher\", \"VolumeNumberWeigher\"]\n\
                    capacity_weight_multiplier = -2\nvolume_number_multiplier = 0.5\n\
                    allocated_capacity_weight_multiplier = 3.0\nmax_attempts = 5\n\
                    [[backend]]\nname = \"a\"\nmax_over_subscription_ratio = \"auto\"\n\
                    thin_provisioning = false\ncapabilities = { tier = \"ssd\", volume_backend_name = \"fast\" }\n\
                    [[backend]]\nname = \"b\"\nmax_over_subscription_ratio = 3\n";
        let r = resolve(toml::from_str(text).unwrap(), None, None).unwrap();
        let s = &r.core.scheduler;
        assert_eq!(
            s.filters,
            vec![Filter::CapacityFilter, Filter::AvailabilityZoneFilter]
        );
        assert_eq!(
            s.weighers,
            vec![Weigher::CapacityWeigher, Weigher::VolumeNumberWeigher]
        );
        assert_eq!(
            (
                s.capacity_weight_multiplier,
                s.volume_number_multiplier,
                s.allocated_capacity_weight_multiplier,
                s.max_attempts
            ),
            (-2.0, 0.5, 3.0, 5)
        );
        let (a, b) = (&r.core.backends[0], &r.core.backends[1]);
        assert_eq!(a.max_over_subscription_ratio, OverSubscription::Auto);
        assert!(!a.thin_provisioning);
        assert_eq!(a.capabilities.get("tier").map(String::as_str), Some("ssd"));
        assert_eq!(b.max_over_subscription_ratio, OverSubscription::Fixed(3.0));
        assert!(b.thin_provisioning);
        assert!(b.capabilities.is_empty());
    }

    #[test]
    fn autofix_kinds_and_period() {
        let r = resolve(File::default(), None, None).unwrap();
        assert!(r.core.autofix.kinds.is_empty(), "off by default");
        assert!(!r.core.autofix.after_operations, "schedule only by default");
        let text = "[repository]\nautofix = [\"clean\", \"merge\"]\nautofix_period_s = 60\nautofix_after_operations = true\n";
        let r = resolve(toml::from_str(text).unwrap(), None, None).unwrap();
        assert_eq!(
            r.core.autofix.kinds,
            [
                scoria_core::repository::FixKind::Clean,
                scoria_core::repository::FixKind::Merge
            ]
        );
        assert_eq!(r.core.autofix.period, Duration::from_secs(60));
        assert!(r.core.autofix.after_operations);
        for bad in [
            "[repository]\nautofix = [\"polish\"]\n",
            "[repository]\nautofix_period_s = 0\n",
        ] {
            let Err(err) = resolve(toml::from_str(bad).unwrap(), None, None) else {
                panic!("{bad} was accepted");
            };
            assert!(format!("{err:#}").contains("repository."), "{err:#}");
        }
    }

    #[test]
    fn an_s3_repository() {
        let text = "data_dir = \"/srv/scoria\"\n[backups]\nrepository = \"s3\"\n[backups.s3]\n\
                    endpoint = \"http://127.0.0.1:9000\"\nbucket = \"b\"\nprefix = \"p/\"\n\
                    access_key = \"ak\"\nsecret_key = \"sk-secret\"\n";
        let f: File = toml::from_str(text).unwrap();
        assert!(
            !format!("{f:?}").contains("sk-secret"),
            "the secret is not printed"
        );
        let r = resolve(f, None, None).unwrap();
        let scoria_core::BackupRepository::S3 { s3, temp_dir } = &r.core.backups.repository else {
            panic!("{:?}", r.core.backups.repository);
        };
        assert_eq!(
            (
                s3.endpoint.as_str(),
                s3.region.as_str(),
                s3.bucket.as_str(),
                s3.prefix.as_str()
            ),
            ("http://127.0.0.1:9000", "us-east-1", "b", "p/")
        );
        assert_eq!(
            (s3.access_key.as_str(), s3.secret_key.as_str()),
            ("ak", "sk-secret")
        );
        assert_eq!(temp_dir, &PathBuf::from("/srv/scoria/backups-tmp"));
        assert!(!format!("{:?}", r.core.backups).contains("sk-secret"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        for bad in [
            "nonsense = 1",
            "[server]\nlisten = \"not an address\"",
            "[server]\nport = 1",
            "[backups]\nchunk_size_kib = 100",
            "[backups]\nchunk_size_kib = 0",
            "[backups]\nchunk = 1",
            "[backups]\nrepository = \"tape\"",
            "[backups]\nrepository = \"s3\"",
            "[backups.s3]\nbucket = \"b\"",
            "[backups]\nrepository = \"s3\"\n[backups.s3]\nbucket = \"b\"\naccess_key = \"a\"\nsecret_key = \"s\"",
            "[backups]\nrepository = \"s3\"\n[backups.s3]\nendpoint = \"https://s3.example\"\nbucket = \"b\"\naccess_key = \"a\"\nsecret_key = \"s\"",
            "[backups]\nrepository = \"s3\"\n[backups.s3]\nendpoint = \"http://127.0.0.1:9000\"\nbucket = \"b\"\naccess_key = \"a\"\nsecret_key = \"s\"\nsecret = \"x\"",
            "[[backend]]\nname = \"a\"\ndriver = \"ceph\"",
            "[[backend]]\nname = \"a\"\nformat = \"vmdk\"",
            "[[backend]]\nname = \"a\"\n[[backend]]\nname = \"a\"",
            "[[backend]]\nname = \"a b\"",
            "[database]\ndurability = \"sometimes\"",
            "[[backend]]\nname = \"a\"\nmax_over_subscription_ratio = 0.5",
            "[[backend]]\nname = \"a\"\nmax_over_subscription_ratio = \"lots\"",
            "[[backend]]\nname = \"a\"\nthin_provisioning = \"yes\"",
            "[[backend]]\nname = \"a\"\ncapabilities = { tier = 1 }",
            "[[backend]]\nname = \"a\"\ncapabilities = { \"a:b\" = \"x\" }",
            "[scheduler]\nfilters = [\"JsonFilter\"]",
            "[scheduler]\nweighers = [\"GoodnessWeigher\"]",
            "[scheduler]\nmax_attempts = 0",
            "[scheduler]\nmax_attempts = -1",
            "[scheduler]\nmultiplier = 1.0",
            "[scheduler]\ncapacity_weight_multiplier = \"high\"",
            "[scheduler]\ncapacity_weight_multiplier = nan",
            "[image_service]\nquota = 1",
            "[image_service]\nimage_size_total_mib = 18446744073709551615",
        ] {
            let parsed: Result<File, _> = toml::from_str(bad);
            let failed = match parsed {
                Err(_) => true,
                Ok(f) => resolve(f, None, None).is_err(),
            };
            assert!(failed, "{bad:?} was accepted");
        }
    }
}
