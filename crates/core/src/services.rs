//! Volume services, hosts, pools and backend capabilities: what Cinder's
//! operator APIs (`os-services`, `os-hosts`, `scheduler-stats`,
//! `capabilities`) show, for one Scoria process.
//!
//! Cinder runs a scheduler and one volume service per backend, each a process
//! that reports in; Scoria is one process that does both, so it shows the same
//! shape: a `cinder-scheduler` service on host [`HOST`] and a `cinder-volume`
//! service per backend on host `scoria@<backend>`, whose one pool is
//! `scoria@<backend>#<backend>` (the `os-vol-host-attr:host` of its volumes).
//! Every service is up while the process answers, so its last report is now.
//!
//! What an administrator changes is kept in the store. A disabled volume
//! service gets no new volumes (the scheduler filters it out, and it leaves
//! the pool list, as in Cinder); a disabled scheduler means no volume can be
//! created at all. A frozen backend (Cinder's freeze, which the `openstack
//! volume host set --disable` command uses) also gets no new volumes, and its
//! volumes cannot be deleted or extended until it is thawed.

use scoria_store::{Conn, services as store, volumes as volume_store};

use crate::context::{Context, Op};
use crate::error::{Error, Result};
pub use crate::rules::hosts::{HOST, SCHEDULER_BINARY, VOLUME_BINARY, backend_host, pool_name};
use crate::scheduler::Candidate;
use crate::{App, Env};

/// The zone Cinder shows for services that are not volume services.
pub const SCHEDULER_ZONE: &str = "nova";
/// What backends report as `vendor_name` and `driver_version` (matched by
/// volume types' extra specs too); each backend's `storage_protocol` is its
/// driver's (`Backend::capabilities`).
pub const VENDOR_NAME: &str = scoria_storage::VENDOR_NAME;
pub const DRIVER_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Cinder's limit on a disabled reason.
pub const MAX_REASON_LEN: usize = 255;

/// Does a host filter match a service host? Cinder's rule: a filter with a
/// pool (`#`) matches exactly, one with a backend (`@`) also matches that
/// backend's pools, a bare host also matches its backends and pools.
pub fn host_matches(filter: &str, host: &str) -> bool {
    if host == filter {
        return true;
    }
    if filter.contains('#') {
        return false;
    }
    let below = |sep: char| {
        host.strip_prefix(filter)
            .is_some_and(|rest| rest.starts_with(sep))
    };
    if filter.contains('@') {
        below('#')
    } else {
        below('@') || below('#')
    }
}

/// One service, as `os-services` and `os-hosts` show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub binary: &'static str,
    pub host: String,
    pub zone: String,
    /// The backend a volume service serves (`None` for the scheduler).
    pub backend: Option<String>,
    pub disabled: bool,
    pub disabled_reason: Option<String>,
    /// Only volume services are ever frozen.
    pub frozen: bool,
    /// When the service last reported in: it is this process, so now.
    pub updated_at: String,
    /// A volume service whose backend's storage cannot be reached (see
    /// `crate::backends`): Cinder's `state: down`.
    pub down: bool,
}

/// Every service of this process: the scheduler, then one volume service per
/// backend (by name), with their recorded state.
async fn all(env: &Env, conn: &mut Conn) -> Result<Vec<Service>> {
    let states = store::service_list(conn).await?;
    let now = scoria_store::now();
    let make = |binary: &'static str, host: String, zone: String, backend: Option<String>| {
        let st = states.iter().find(|s| s.host == host && s.binary == binary);
        Service {
            binary,
            zone,
            down: backend
                .as_ref()
                .and_then(|b| env.backends.get(b))
                .is_some_and(|b| b.down().is_some()),
            backend,
            disabled: st.is_some_and(|s| s.disabled),
            disabled_reason: st.and_then(|s| s.disabled_reason.clone()),
            frozen: st.is_some_and(|s| s.frozen),
            updated_at: now.clone(),
            host,
        }
    };
    let mut out = vec![make(
        SCHEDULER_BINARY,
        HOST.to_owned(),
        SCHEDULER_ZONE.to_owned(),
        None,
    )];
    for (name, b) in env.backends.all() {
        out.push(make(
            VOLUME_BINARY,
            backend_host(&name),
            b.config.availability_zone.clone(),
            Some(name.clone()),
        ));
    }
    Ok(out)
}

/// The services, optionally only those on `host` (Cinder's host matching,
/// see [`host_matches`]) and of `binary`.
pub async fn list(
    app: &App,
    ctx: &Context,
    host: Option<&str>,
    binary: Option<&str>,
) -> Result<Vec<Service>> {
    ctx.authorize(Op::ServiceList)?;
    let mut conn = app.store().read().await?;
    Ok(all(&app.env, &mut conn)
        .await?
        .into_iter()
        .filter(|s| host.is_none_or(|h| host_matches(h, &s.host)))
        .filter(|s| binary.is_none_or(|b| b == s.binary))
        .collect())
}

/// What `PUT /os-services/{enable,disable,disable-log-reason}` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Enable; the recorded reason is cleared.
    Enable,
    /// Disable; a reason recorded earlier is kept.
    Disable,
    /// Disable and record why.
    DisableWithReason(String),
}

/// Enable or disable the service `binary` on exactly `host`.
pub async fn update(
    app: &App,
    ctx: &Context,
    host: &str,
    binary: &str,
    change: Change,
) -> Result<Service> {
    ctx.authorize(Op::ServiceUpdate)?;
    if let Change::DisableWithReason(r) = &change {
        let r = r.trim();
        if r.is_empty() || r.chars().count() > MAX_REASON_LEN {
            return Err(Error::Invalid(format!(
                "Invalid input received: Disabled reason must be 1 to {MAX_REASON_LEN} characters, not only spaces."
            )));
        }
    }
    let mut tx = app.store().begin().await?;
    let Some(svc) = all(&app.env, &mut tx)
        .await?
        .into_iter()
        .find(|s| s.host == host && s.binary == binary)
    else {
        return Err(Error::NotFound(format!(
            "Service {binary} could not be found on host {host}."
        )));
    };
    let (disabled, reason) = match &change {
        Change::Enable => (false, Some(None)),
        Change::Disable => (true, None),
        Change::DisableWithReason(r) => (true, Some(Some(r.trim()))),
    };
    store::service_set_disabled(&mut tx, &svc.host, svc.binary, disabled, reason).await?;
    let updated = all(&app.env, &mut tx)
        .await?
        .into_iter()
        .find(|s| s.host == svc.host && s.binary == svc.binary)
        .ok_or_else(|| Error::NotFound(format!("Service {binary} could not be found.")))?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    tracing::info!(host, binary, disabled, "service state changed");
    Ok(updated)
}

/// Freeze (`true`) or thaw the volume services `host` matches. As in Cinder,
/// a host with no volume service is invalid input, and so is a request that
/// changes nothing (freezing what is frozen, thawing what is not).
pub async fn freeze(app: &App, ctx: &Context, host: &str, freeze: bool) -> Result<()> {
    ctx.authorize(if freeze {
        Op::ServiceFreeze
    } else {
        Op::ServiceThaw
    })?;
    let mut tx = app.store().begin().await?;
    let matching: Vec<Service> = all(&app.env, &mut tx)
        .await?
        .into_iter()
        .filter(|s| s.binary == VOLUME_BINARY && host_matches(host, &s.host))
        .collect();
    if matching.is_empty() {
        return Err(Error::Invalid(format!("No service found with host={host}")));
    }
    let mut changed = 0;
    for s in &matching {
        if store::service_set_frozen(&mut tx, &s.host, s.binary, freeze).await? {
            changed += 1;
        }
    }
    if changed == 0 {
        let hosts: Vec<&str> = matching.iter().map(|s| s.host.as_str()).collect();
        return Err(Error::Invalid(format!(
            "Invalid input received: No service could be changed: {} {} already.",
            hosts.join(", "),
            if freeze { "is frozen" } else { "is not frozen" }
        )));
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    tracing::info!(host, freeze, "volume services frozen or thawed");
    Ok(())
}

// ---------------------------------------------------------------------------
// Hosts

/// Every service as `os-hosts` lists it, optionally only those in `zone`.
pub async fn hosts(app: &App, ctx: &Context, zone: Option<&str>) -> Result<Vec<Service>> {
    ctx.authorize(Op::HostList)?;
    let mut conn = app.store().read().await?;
    Ok(all(&app.env, &mut conn)
        .await?
        .into_iter()
        .filter(|s| zone.is_none_or(|z| z == s.zone))
        .collect())
}

/// What one project (or `(total)`) has on a volume host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostUsage {
    /// A project id, or `(total)` for the first row.
    pub project: String,
    pub volume_count: i64,
    pub total_volume_gb: i64,
    pub snapshot_count: i64,
    pub total_snapshot_gb: i64,
}

/// The usage of an enabled volume host (`scoria@<backend>`), total first,
/// then per project. A host with no enabled volume service is not found, as
/// in Cinder.
pub async fn host_usage(app: &App, ctx: &Context, host: &str) -> Result<Vec<HostUsage>> {
    ctx.authorize(Op::HostList)?;
    let mut conn = app.store().read().await?;
    let backend = all(&app.env, &mut conn)
        .await?
        .into_iter()
        .find(|s| s.binary == VOLUME_BINARY && !s.disabled && host_matches(host, &s.host))
        .and_then(|s| s.backend)
        .ok_or_else(|| Error::NotFound(format!("Host {host} could not be found.")))?;
    let per_project = volume_store::volume_usage_on_backend(&mut conn, &backend).await?;
    let mut out = vec![HostUsage {
        project: "(total)".into(),
        volume_count: per_project.iter().map(|p| p.1).sum(),
        total_volume_gb: per_project.iter().map(|p| p.2).sum(),
        snapshot_count: 0,
        total_snapshot_gb: 0,
    }];
    out.extend(per_project.into_iter().map(|(project, n, gb)| HostUsage {
        project,
        volume_count: n,
        total_volume_gb: gb,
        snapshot_count: 0,
        total_snapshot_gb: 0,
    }));
    Ok(out)
}

// ---------------------------------------------------------------------------
// Pools and capabilities

/// One pool (one per backend) with the figures the scheduler places by.
#[derive(Clone, Debug)]
pub struct Pool {
    /// `scoria@<backend>#<backend>`.
    pub name: String,
    pub candidate: Candidate,
    /// When the figures were read (now).
    pub timestamp: String,
}

/// The pools of the enabled volume services (`name`: only that pool), with
/// the scheduler's own figures ([`crate::capacity::gather`]).
pub async fn pools(app: &App, ctx: &Context, name: Option<&str>) -> Result<Vec<Pool>> {
    ctx.authorize(Op::PoolList)?;
    let mut conn = app.store().read().await?;
    let candidates = crate::capacity::gather(&app.env, &mut conn).await?;
    let timestamp = scoria_store::now();
    Ok(candidates
        .into_iter()
        .filter(|c| c.enabled)
        .map(|c| Pool {
            name: pool_name(&c.name),
            candidate: c,
            timestamp: timestamp.clone(),
        })
        .filter(|p| name.is_none_or(|n| n == p.name))
        .collect())
}

/// The backend whose capabilities `GET /capabilities/{host}` asks for: the
/// first volume service `host` matches (a pool name is accepted too).
pub async fn capabilities(
    app: &App,
    ctx: &Context,
    host: &str,
) -> Result<(String, std::collections::BTreeMap<String, String>)> {
    ctx.authorize(Op::CapabilitiesGet)?;
    let wanted = match host.split_once('#') {
        // A pool of a backend names the backend (each has one pool).
        Some((backend_host, pool)) if backend_host.ends_with(&format!("@{pool}")) => backend_host,
        _ => host,
    };
    app.env
        .backends
        .all()
        .into_iter()
        .find(|(b, _)| host_matches(wanted, &backend_host(b)))
        .map(|(name, b)| (name, b.capabilities.clone()))
        .ok_or_else(|| Error::NotFound(format!("Can't find service: {host}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_filters_match_as_cinders_do() {
        // (filter, host, matches)
        let table = [
            ("scoria", "scoria", true),
            ("scoria", "scoria@file", true),
            ("scoria", "scoria@file#file", true),
            ("scoria", "scoriax@file", false),
            ("scoria@file", "scoria@file", true),
            ("scoria@file", "scoria@file#file", true),
            ("scoria@file", "scoria@files", false),
            ("scoria@file", "scoria", false),
            ("scoria@file#file", "scoria@file#file", true),
            ("scoria@file#file", "scoria@file", false),
            ("invalid_host", "scoria@file", false),
            ("", "scoria", false),
        ];
        for (filter, host, want) in table {
            assert_eq!(host_matches(filter, host), want, "{filter} vs {host}");
        }
    }
}
