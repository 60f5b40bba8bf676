//! The promises Scoria keeps once its flows have settled, as a check.
//!
//! Used by the generic flow tests, the crash test and (later) `scoria check`:
//! - no flow is running, unwinding or stuck, and no reservation is left;
//! - no volume is in a transitional status, and every volume's quota is
//!   committed (usage, derived from the volumes, is exactly what exists);
//! - every `available` volume has exactly one image, at its recorded location,
//!   of its format and of exactly its size;
//! - no image on any backend lacks a volume (no orphan).
//!
//! Volumes left in an error status by a failed operation may lack their image
//! (that is what the error says) and may have one of another size.

use std::collections::BTreeSet;

use scoria_model::flow::FlowState;
use scoria_model::volume::{GIB, VolumeStatus};
use scoria_store::{flows, quotas, volumes};

use crate::Env;
use crate::error::Result;

/// Check everything; returns one line per violation (empty: all good).
pub async fn check(env: &Env) -> Result<Vec<String>> {
    let mut bad = Vec::new();
    let mut conn = env.store.read().await?;
    for state in [FlowState::Running, FlowState::Unwinding, FlowState::Stuck] {
        for f in flows::flow_list_by_state(&mut conn, state).await? {
            bad.push(format!("flow {} ({}) is {}", f.id, f.kind, f.state));
        }
    }
    for (flow, project, resource, delta) in quotas::reservation_list(&mut conn).await? {
        bad.push(format!(
            "reservation of {delta} {resource} for project {project} by flow {flow} is left"
        ));
    }
    let vols = volumes::volume_list_all(&mut conn).await?;
    drop(conn);

    let mut owned: BTreeSet<(String, String)> = BTreeSet::new();
    for v in &vols {
        // `attaching` without a flow is a client's hold (`os-reserve`), released
        // by `os-unreserve`; every other transitional status belongs to a flow.
        if v.status.is_transitional() && v.status != VolumeStatus::Attaching {
            bad.push(format!("volume {} is {}", v.id, v.status));
        }
        if v.reservation_id.is_some() {
            bad.push(format!("volume {} still points at a reservation", v.id));
        }
        if let (Some(b), Some(l)) = (&v.backend, &v.location) {
            owned.insert((b.clone(), l.clone()));
        }
        if v.status != VolumeStatus::Available {
            continue;
        }
        let (Some(backend), Some(location)) = (&v.backend, &v.location) else {
            bad.push(format!("available volume {} has no placement", v.id));
            continue;
        };
        let Some(b) = env.backends.get(backend) else {
            bad.push(format!("volume {} is on unknown backend {backend}", v.id));
            continue;
        };
        match b.driver.info(location).await {
            Ok(Some(info)) => {
                if info.virtual_size != v.size as u64 * GIB {
                    bad.push(format!(
                        "volume {} is {} GiB but its image is {} bytes",
                        v.id, v.size, info.virtual_size
                    ));
                }
                if v.format.as_deref() != Some(info.format.as_str()) {
                    bad.push(format!(
                        "volume {} is recorded {:?} but its image is {}",
                        v.id,
                        v.format,
                        info.format.as_str()
                    ));
                }
            }
            Ok(None) => bad.push(format!("available volume {} has no image {location}", v.id)),
            Err(e) => bad.push(format!(
                "volume {}: cannot read image {location}: {e}",
                v.id
            )),
        }
    }
    for (name, b) in &env.backends {
        match b.driver.list().await {
            Ok(images) => {
                for image in images {
                    if !owned.contains(&(name.clone(), image.clone())) {
                        bad.push(format!(
                            "image {image} on backend {name} belongs to no volume"
                        ));
                    }
                }
            }
            Err(e) => bad.push(format!("backend {name} cannot list its images: {e}")),
        }
    }
    Ok(bad)
}
