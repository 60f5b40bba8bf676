//! What the scheduler reads about each backend: its capacity, what is already
//! provisioned on it, and whether an administrator let it take new volumes.
//!
//! Capacity comes from the drivers (a `statvfs` for the file backend, a
//! network call for RBD later), and placement runs inside the write
//! transaction of a create's `schedule` step, which holds SQLite's only write
//! lock. So the drivers are never asked from there: each backend keeps its
//! last reading ([`Backend::capacity_reading`]), refreshed outside any
//! transaction — at start, by a background task every
//! [`crate::Config::capacity_refresh`], and by each flow that changed what a
//! backend holds, once its data step is done ([`Backend::refresh_capacity`]).
//! [`gather`] reads only that snapshot and the store.
//!
//! The snapshot may be a few seconds old. That is safe: thin provisioning
//! decides on *provisioned* space (read from the store in the same
//! transaction, so concurrent placements see each other) against the total,
//! and the free space only bounds it; Cinder's scheduler works from reports
//! up to a minute old.

use std::time::{Duration, Instant};

use scoria_storage::Capacity;
use scoria_store::Conn;

use crate::error::{Error, Result};
use crate::rules::hosts;
use crate::scheduler::Candidate;
use crate::{Backend, Env, GIB_F};

/// A backend's capacity as its driver last reported it.
#[derive(Clone, Copy, Debug)]
pub struct Reading {
    pub capacity: Capacity,
    pub at: Instant,
}

impl Backend {
    /// Ask the driver for the backend's capacity now and keep the answer for
    /// the scheduler. Never call it inside a write transaction.
    pub async fn refresh_capacity(&self) -> Result<Capacity> {
        if !self.probe() {
            return Err(Error::Invalid(format!(
                "backend {} is down: {}",
                self.config.name,
                self.down().unwrap_or_default()
            )));
        }
        let capacity = self.driver.capacity().await.map_err(|e| {
            Error::internal(
                format!("backend {} cannot report its capacity", self.config.name),
                e,
            )
        })?;
        let reading = Reading {
            capacity,
            at: Instant::now(),
        };
        *self.capacity.write().unwrap_or_else(|e| e.into_inner()) = Some(reading);
        Ok(capacity)
    }

    /// The last reading, if there was one.
    pub fn capacity_reading(&self) -> Option<Reading> {
        *self.capacity.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl Env {
    /// Refresh every backend's reading; a backend that cannot report keeps its
    /// last one (logged).
    pub async fn refresh_capacities(&self) {
        for b in self.backends.values() {
            if let Err(e) = b.refresh_capacity().await {
                tracing::warn!(backend = %b.config.name, error = %e.chain(), "capacity not refreshed");
            }
        }
    }
}

/// After something changed what `backend` holds: read its capacity again for
/// the scheduler (outside any transaction). A failure only costs freshness, so
/// it is logged, not returned.
pub async fn refresh(env: &Env, backend: &str) {
    if let Some(b) = env.backends.get(backend)
        && let Err(e) = b.refresh_capacity().await
    {
        tracing::warn!(backend, error = %e.chain(), "capacity not refreshed");
    }
}

/// Refresh every backend's capacity every `every`, until the returned task is
/// aborted (the application does at shutdown).
pub fn spawn_refresher(env: std::sync::Arc<Env>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            env.refresh_capacities().await;
        }
    })
}

/// Read the figures of every backend: its last capacity reading, and from
/// the store (through `conn`, inside the caller's transaction so that
/// concurrent placements see each other) the space provisioned on it and
/// whether its volume service is enabled. No driver is asked: see the module
/// doc. A backend that never reported is left out, with the reason.
pub async fn gather(env: &Env, conn: &mut Conn) -> Result<Vec<Candidate>> {
    let unschedulable = hosts::unschedulable_volume_hosts(conn).await?;
    gather_with(env, conn, &unschedulable).await
}

/// [`gather`], with the unschedulable hosts already read.
pub(crate) async fn gather_with(
    env: &Env,
    conn: &mut Conn,
    unschedulable: &std::collections::BTreeSet<String>,
) -> Result<Vec<Candidate>> {
    let mut out = Vec::with_capacity(env.backends.len());
    let totals = scoria_store::volumes::volume_totals_by_backend(conn).await?;
    // Deactivated or removed by an administrator (read here, inside the
    // placement's transaction: see `backends::manage`).
    let closed = scoria_store::backends::backend_closed(conn).await?;
    for (name, b) in env.backends.all() {
        let Some(reading) = b.capacity_reading() else {
            tracing::warn!(backend = %name, "no capacity reading yet; not a candidate");
            continue;
        };
        let cap = reading.capacity;
        let (count, provisioned) = totals.get(&name).copied().unwrap_or((0, 0));
        let capabilities = b.capabilities.clone();
        let (total_gib, free_gib) = (cap.total as f64 / GIB_F, cap.free as f64 / GIB_F);
        let thin = b.config.thin_provisioning;
        out.push(Candidate {
            name: name.clone(),
            availability_zone: b.config.availability_zone.clone(),
            total_gib,
            free_gib,
            provisioned_gib: provisioned as f64,
            allocated_gib: provisioned as f64,
            volume_count: count.max(0) as u64,
            thin,
            max_over_subscription_ratio: b.config.max_over_subscription_ratio.ratio(
                thin,
                total_gib,
                free_gib,
                provisioned as f64,
            ),
            reserved_percentage: b.config.reserved_percentage,
            capabilities,
            enabled: !unschedulable.contains(&hosts::backend_host(&name))
                && !closed.contains(&name)
                && b.down().is_none(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use scoria_failpoints::Failpoints;
    use scoria_storage::memory::MemoryDriver;
    use scoria_storage::{Capabilities, Capacity, Driver, DynDriver, ExportProtocol, Format};

    use super::*;
    use crate::scheduler::{self, Request};
    use crate::{BackendConfig, DriverConfig};

    fn backend(name: &str, driver: DynDriver) -> Backend {
        Backend::new(
            BackendConfig {
                name: name.into(),
                driver: DriverConfig::Memory { capacity_gib: 100 },
                format: Format::Qcow2,
                availability_zone: "nova".into(),
                max_over_subscription_ratio: scheduler::OverSubscription::Fixed(1.0),
                // Thick: placement weighs the real free space.
                thin_provisioning: false,
                capabilities: Default::default(),
                reserved_percentage: 0,
                clone_strategy: scoria_model::snapshot::CloneStrategy::Space,
                max_chain_depth: 16,
                image_cache_max_count: crate::DEFAULT_IMAGE_CACHE_MAX_COUNT,
                image_cache_max_bytes: 0,
            },
            driver,
        )
    }

    /// What a driver says it can do is what the scheduler matches extra specs
    /// against, and what it reports as free is what placement weighs — read
    /// from the snapshot, not from the driver at placement time.
    #[tokio::test]
    async fn the_scheduler_reads_what_drivers_report() {
        let gib = scoria_model::volume::GIB;
        let plain = MemoryDriver::with_capacity(
            Failpoints::new(),
            Capacity {
                total: 100 * gib,
                free: 100 * gib,
            },
        );
        let nbd = MemoryDriver::with_capacity(
            Failpoints::new(),
            Capacity {
                total: 100 * gib,
                free: 10 * gib,
            },
        );
        nbd.set_capabilities(Capabilities {
            multiattach: true,
            export_protocols: vec![ExportProtocol::Nbd],
            ..nbd.capabilities()
        });
        let nbd: Arc<MemoryDriver> = Arc::new(nbd);
        let dir = tempfile::tempdir().expect("tempdir");
        let env = Env {
            store: scoria_store::Store::open(&dir.path().join("db"), &Default::default())
                .await
                .expect("store"),
            backends: [
                (
                    "plain".to_string(),
                    Arc::new(backend("plain", Arc::new(plain))),
                ),
                ("nbd".to_string(), Arc::new(backend("nbd", nbd.clone()))),
            ]
            .into(),
            image_store: Arc::new(
                scoria_storage::image_store::FileImageStore::new(
                    dir.path().join("images"),
                    false,
                    Failpoints::new(),
                )
                .await
                .expect("image store"),
            ),
            inspect_limits: Default::default(),
            fp: Failpoints::new(),
            exports: Default::default(),
            exports_config: crate::exports::ExportsConfig::with_data_dir(dir.path()),
            backup_repo: std::sync::Arc::new(
                scoria_storage::backup_repo::DirRepo::open(dir.path().join("backups"), false)
                    .unwrap(),
            ),
            backup_chunk_size: scoria_storage::backup_repo::DEFAULT_CHUNK_SIZE,
            scheduler: Default::default(),
            staging_dir: dir.path().join("staging"),
            backend_changes: tokio::sync::Mutex::new(()),
        };
        let nbd_backend = env.backend("nbd").expect("backend");
        assert_eq!(
            nbd_backend
                .capabilities
                .get("storage_protocol")
                .map(String::as_str),
            Some("nbd")
        );
        assert_eq!(
            nbd_backend
                .capabilities
                .get("volume_backend_name")
                .map(String::as_str),
            Some("nbd")
        );
        assert_eq!(
            env.backend("plain")
                .expect("backend")
                .capabilities
                .get("multiattach")
                .map(String::as_str),
            Some("False")
        );

        // No reading yet: no candidate.
        let mut conn = env.store.read().await.expect("read");
        assert!(gather(&env, &mut conn).await.expect("gather").is_empty());
        env.refresh_capacities().await;
        let candidates = gather(&env, &mut conn).await.expect("gather");
        let cfg = scheduler::SchedulerConfig::default();
        let want_nbd = Request {
            size_gib: 1,
            extra_specs: [("multiattach".to_string(), "<is> True".to_string())].into(),
            ..Default::default()
        };
        assert_eq!(
            scheduler::place(&cfg, &want_nbd, &candidates).expect("placed"),
            "nbd"
        );
        // Any backend: the one with more free space wins (spread).
        let any = Request {
            size_gib: 1,
            ..Default::default()
        };
        assert_eq!(
            scheduler::place(&cfg, &any, &candidates).expect("placed"),
            "plain"
        );

        // A full backend is seen full only once read again.
        nbd.set_capacity(Capacity {
            total: 100 * gib,
            free: 0,
        });
        let stale = gather(&env, &mut conn).await.expect("gather");
        assert_eq!(
            scheduler::place(&cfg, &want_nbd, &stale).expect("placed"),
            "nbd"
        );
        nbd_backend.refresh_capacity().await.expect("refresh");
        let fresh = gather(&env, &mut conn).await.expect("gather");
        let err = scheduler::place(&cfg, &want_nbd, &fresh).expect_err("full");
        assert!(err.to_string().contains("nbd:"), "{err}");
    }
}
