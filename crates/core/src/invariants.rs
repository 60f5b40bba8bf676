//! The promises Scoria keeps once its flows have settled, as a check.
//!
//! Used by the generic flow tests, the crash test and (later) `scoria check`:
//! - no flow is running, unwinding or stuck, and no reservation is left;
//! - no volume is in a transitional status, and every volume's quota is
//!   committed (usage, derived from the volumes, is exactly what exists);
//! - every `available` (or `awaiting-transfer`) volume has exactly one image,
//!   at its recorded location, of its format and of exactly its size;
//! - a volume is `awaiting-transfer` exactly when one transfer of it exists,
//!   offered by the volume's own project;
//! - no image on any backend lacks a volume (no orphan);
//! - no group is in a transitional status; every group accepts at least one
//!   volume type, and an `available` one has a backend;
//! - every volume's group exists, in the volume's project, accepts the
//!   volume's type and sits on the volume's backend.
//!
//! Volumes left in an error status by a failed operation may lack their image
//! (that is what the error says) and may have one of another size.

use std::collections::{BTreeMap, BTreeSet};

use scoria_model::flow::FlowState;
use scoria_model::volume::{GIB, VolumeStatus};
use scoria_store::{flows, groups, quotas, transfers, volumes};

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
    let offers = transfers::transfer_list(&mut conn, &transfers::TransferQuery::default()).await?;
    let all_groups = groups::group_list_all(&mut conn).await?;
    drop(conn);
    check_groups(&all_groups, &vols, &mut bad);

    let by_id: BTreeMap<_, _> = vols.iter().map(|v| (v.id, v)).collect();
    let offered: BTreeSet<_> = offers.iter().map(|t| t.volume_id).collect();
    for t in &offers {
        match by_id.get(&t.volume_id) {
            None => bad.push(format!(
                "transfer {} offers missing volume {}",
                t.id, t.volume_id
            )),
            Some(v) if v.status != VolumeStatus::AwaitingTransfer => bad.push(format!(
                "transfer {} offers volume {}, which is {}",
                t.id, v.id, v.status
            )),
            Some(v) if v.project_id != t.source_project_id => bad.push(format!(
                "transfer {} was offered by project {} but volume {} belongs to {}",
                t.id, t.source_project_id, v.id, v.project_id
            )),
            Some(_) => {}
        }
    }
    for v in &vols {
        if v.status == VolumeStatus::AwaitingTransfer && !offered.contains(&v.id) {
            bad.push(format!(
                "volume {} awaits a transfer that does not exist",
                v.id
            ));
        }
    }

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
        if !matches!(
            v.status,
            VolumeStatus::Available | VolumeStatus::AwaitingTransfer
        ) {
            continue;
        }
        let (Some(backend), Some(location)) = (&v.backend, &v.location) else {
            bad.push(format!("{} volume {} has no placement", v.status, v.id));
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
            Ok(None) => bad.push(format!(
                "{} volume {} has no image {location}",
                v.status, v.id
            )),
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

/// The group promises (see the module doc).
fn check_groups(all: &[groups::Group], vols: &[volumes::Volume], bad: &mut Vec<String>) {
    use scoria_model::group::GroupStatus;
    let by_id: BTreeMap<_, _> = all.iter().map(|g| (g.id, g)).collect();
    for g in all {
        if g.status.is_transitional() {
            bad.push(format!("group {} is {}", g.id, g.status));
        }
        if g.volume_type_ids.is_empty() {
            bad.push(format!("group {} accepts no volume type", g.id));
        }
        if g.status == GroupStatus::Available && g.backend.is_none() {
            bad.push(format!("available group {} has no backend", g.id));
        }
    }
    for v in vols {
        let Some(gid) = v.group_id else { continue };
        let Some(g) = by_id.get(&gid) else {
            bad.push(format!("volume {} is in missing group {gid}", v.id));
            continue;
        };
        if g.project_id != v.project_id {
            bad.push(format!(
                "volume {} of project {} is in group {gid} of project {}",
                v.id, v.project_id, g.project_id
            ));
        }
        if !g.volume_type_ids.contains(&v.volume_type_id) {
            bad.push(format!(
                "volume {} is of type {}, which its group {gid} does not accept",
                v.id, v.volume_type_id
            ));
        }
        if v.backend.is_some() && v.backend != g.backend {
            bad.push(format!(
                "volume {} is on backend {:?}, its group {gid} on {:?}",
                v.id, v.backend, g.backend
            ));
        }
    }
}
