//! What the scheduler reads about each backend: its capacity, what is already
//! provisioned on it, and whether an administrator let it take new volumes.

use scoria_store::Conn;

use crate::error::{Error, Result};
use crate::rules::hosts;
use crate::scheduler::{Candidate, backend_capabilities};
use crate::{Env, GIB_F};

/// Read the figures of every backend: capacity from its driver, provisioned
/// space and whether its volume service is enabled from the store (through
/// `conn`, inside the caller's transaction so that concurrent placements see
/// each other).
pub async fn gather(env: &Env, conn: &mut Conn) -> Result<Vec<Candidate>> {
    let mut out = Vec::with_capacity(env.backends.len());
    let provisioned_all = scoria_store::volumes::volume_provisioned_by_backend(conn).await?;
    let unschedulable = hosts::unschedulable_volume_hosts(conn).await?;
    for (name, b) in &env.backends {
        let cap = b.driver.capacity().await.map_err(|e| {
            Error::internal(format!("backend {name} cannot report its capacity"), e)
        })?;
        let provisioned = provisioned_all.get(name).copied().unwrap_or(0);
        let capabilities = backend_capabilities(name);
        out.push(Candidate {
            name: name.clone(),
            availability_zone: b.config.availability_zone.clone(),
            total_gib: cap.total as f64 / GIB_F,
            free_gib: cap.free as f64 / GIB_F,
            provisioned_gib: provisioned as f64,
            max_over_subscription_ratio: b.config.max_over_subscription_ratio,
            reserved_percentage: b.config.reserved_percentage,
            capabilities,
            enabled: !unschedulable.contains(&hosts::backend_host(name)),
        });
    }
    Ok(out)
}
