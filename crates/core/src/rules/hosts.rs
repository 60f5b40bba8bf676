//! The hosts of this process's services, and what administrators set on
//! them: a disabled or frozen volume service takes no new volumes, a frozen
//! backend's volumes cannot be changed, a disabled scheduler places nothing.
//! The `services` module shows them through Cinder's operator APIs; flows
//! and the scheduler's gathering ask them here.

use std::collections::BTreeSet;

use scoria_store::{Conn, services as store};

use crate::error::{Error, Result};

/// The host every service of this process runs on.
pub const HOST: &str = "scoria";

pub const SCHEDULER_BINARY: &str = "cinder-scheduler";

pub const VOLUME_BINARY: &str = "cinder-volume";

/// The host of a backend's volume service (`scoria@<backend>`).
pub fn backend_host(backend: &str) -> String {
    format!("{HOST}@{backend}")
}

/// The name of a backend's one pool (`scoria@<backend>#<backend>`).
pub fn pool_name(backend: &str) -> String {
    format!("{HOST}@{backend}#{backend}")
}

/// The backend a host name names (`scoria@<backend>`, or its one pool
/// `scoria@<backend>#<backend>`), if it is one of ours.
pub fn backend_of_host<'a>(env: &crate::Env, host: &'a str) -> Option<&'a str> {
    let rest = host.strip_prefix(HOST)?.strip_prefix('@')?;
    let (backend, pool) = match rest.split_once('#') {
        Some((b, p)) => (b, Some(p)),
        None => (rest, None),
    };
    (env.backends.contains_key(backend) && pool.is_none_or(|p| p == backend)).then_some(backend)
}

/// Hosts of the volume services that take no new volumes: disabled or
/// frozen by an administrator.
pub(crate) async fn unschedulable_volume_hosts(conn: &mut Conn) -> Result<BTreeSet<String>> {
    Ok(placement_flags(conn).await?.unschedulable)
}

/// What an administrator changed that placement obeys, in one read.
pub(crate) struct PlacementFlags {
    /// The scheduler is disabled: no volume is placed.
    pub scheduler_disabled: bool,
    /// Hosts of the volume services that take no new volumes.
    pub unschedulable: BTreeSet<String>,
}

pub(crate) async fn placement_flags(conn: &mut Conn) -> Result<PlacementFlags> {
    let mut flags = PlacementFlags {
        scheduler_disabled: false,
        unschedulable: BTreeSet::new(),
    };
    for s in store::service_list(conn).await? {
        if s.binary == SCHEDULER_BINARY && s.host == HOST && s.disabled {
            flags.scheduler_disabled = true;
        } else if s.binary == VOLUME_BINARY && (s.disabled || s.frozen) {
            flags.unschedulable.insert(s.host);
        }
    }
    Ok(flags)
}

/// Refuse to change a volume on a frozen backend (Cinder's wording).
pub(crate) async fn assert_not_frozen(conn: &mut Conn, backend: Option<&str>) -> Result<()> {
    let Some(backend) = backend else {
        return Ok(());
    };
    let frozen = store::service_get(conn, &backend_host(backend), VOLUME_BINARY)
        .await?
        .is_some_and(|s| s.frozen);
    if frozen {
        return Err(Error::Invalid(
            "Invalid input received: Modification operations are not allowed on frozen storage backends.".into(),
        ));
    }
    Ok(())
}

/// Whether the scheduler may place volumes (an administrator can disable it).
pub(crate) async fn scheduler_enabled(conn: &mut Conn) -> Result<bool> {
    Ok(!store::service_get(conn, HOST, SCHEDULER_BINARY)
        .await?
        .is_some_and(|s| s.disabled))
}
