//! The promises Scoria keeps once its flows have settled, as a check.
//!
//! Used by the generic flow tests, the crash test and (later) `scoria check`:
//! - no flow is running, unwinding or stuck, and no reservation is left;
//! - no volume is in a transitional status, and every volume's quota is
//!   committed (usage, derived from the volumes, is exactly what exists);
//! - every maintained total (quota usage per project, kind and type;
//!   provisioned capacity per backend) equals the same total derived by
//!   scanning the records;
//! - every `available`, `awaiting-transfer` or `in-use` volume has an active
//!   image, `ready`, on the volume's backend, recorded at exactly its size;
//! - every image record has its data (a file of the recorded format and
//!   size), unless an error says why not (the image is being deleted and its
//!   volume is `error_deleting`, or its volume is in another error status);
//!   no image is left `creating` or `deleting` without such a reason; every
//!   image is used (by a volume, or as the base of another), and every base
//!   is immutable and recorded;
//! - every image nothing uses (`ready` or `deleting`) is a candidate of the
//!   reaper's routine pass (`image_unref`, kept by triggers), which would
//!   otherwise never free it (only the full scan on the timer would). Unlike
//!   the rule above this holds at any moment, settled or not, and names the
//!   cause: a reference dropped without its trigger;
//! - every file on a backend has an image record (no orphan), once the reaper
//!   freed what nothing uses (the reaper, `reaper.rs`);
//! - every image cache entry's image is `ready` and immutable (an entry is a
//!   use of its image, as a snapshot is);
//! - no snapshot is in a transitional status or holds a reservation; every
//!   snapshot's volume exists in its project; an `available` snapshot has an
//!   image, immutable, `ready`, recorded at its size;
//! - a volume is `awaiting-transfer` exactly when one transfer of it exists,
//!   offered by the volume's own project;
//! - no group is in a transitional status; every group accepts at least one
//!   volume type, and an `available` one has a backend;
//! - every volume's group exists, in the volume's project, accepts the
//!   volume's type and sits on the volume's backend;
//! - the image service's rows and files agree: no image is `saving` (no
//!   upload is running once things settled) or holds quota; every `active`
//!   or `deactivated` image has its file in the image store, of its recorded
//!   size, whose md5 and sha512 are the recorded ones; every other image has
//!   no file, and no file lacks an image.
//!
//! - attachments: none is `detaching` (a flow's status); each one's volume
//!   exists in its project; a volume is `in-use` (or `detaching`) and
//!   `attached` exactly while one of its attachments is `attached`, and
//!   `available` and `detached` when it has none; the exports served are
//!   exactly those of the attachments that want one, each serving.
//!
//! Volumes left in an error status by a failed operation may lack their
//! image's data (that is what the error says) and may have data of another
//! size than recorded.

use std::collections::{BTreeMap, BTreeSet};

use scoria_model::ImageId;
use scoria_model::flow::FlowState;
use scoria_model::image::ImageState;
use scoria_model::snapshot::SnapshotStatus;
use scoria_model::volume::{GIB, VolumeStatus};
use scoria_store::{flows, groups, images, quotas, snapshots, transfers, volumes};

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
    let (kept, derived) = (
        quotas::maintained_totals(&mut conn).await?,
        quotas::derived_totals(&mut conn).await?,
    );
    for key in kept.keys().chain(derived.keys()).collect::<BTreeSet<_>>() {
        let (k, d) = (kept.get(key), derived.get(key));
        if k != d {
            bad.push(format!(
                "total {key:?} is {k:?} but the records sum to {d:?} ((n, gb); None: zero)"
            ));
        }
    }
    let vols = volumes::volume_list_all(&mut conn).await?;
    let offers = transfers::transfer_list(&mut conn, &transfers::TransferQuery::default()).await?;
    let all_groups = groups::group_list_all(&mut conn).await?;
    let all_images = images::image_list_all(&mut conn).await?;
    let all_snapshots = snapshots::snapshot_list_all(&mut conn).await?;
    let cache = scoria_store::volume_images::cache_list_all(&mut conn).await?;
    let atts = scoria_store::attachments::attachment_list_all(&mut conn).await?;
    for i in images::image_list_unused_not_candidates(&mut conn).await? {
        bad.push(format!(
            "image {} ({}) is unused but not a candidate: the reaper's routine pass would never free it",
            i.id, i.name
        ));
    }
    drop(conn);
    for e in &cache {
        if !e.ready {
            bad.push(format!(
                "the cache entry of image {} on {} is not ready",
                e.glance_image_id, e.backend
            ));
        }
    }
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

    for v in &vols {
        // `attaching` without a flow is a client's hold (`os-reserve`), released
        // by `os-unreserve`; every other transitional status belongs to a flow.
        if v.status.is_transitional() && v.status != VolumeStatus::Attaching {
            bad.push(format!("volume {} is {}", v.id, v.status));
        }
        if v.reservation_id.is_some() {
            bad.push(format!("volume {} still points at a reservation", v.id));
        }
    }
    check_attachments(env, &atts, &vols, &mut bad).await;
    check_snapshots(&all_snapshots, &all_images, &vols, &mut bad);
    let cached: BTreeSet<ImageId> = cache.iter().map(|e| e.image_id).collect();
    check_images(env, &all_images, &vols, &all_snapshots, &cached, &mut bad).await;
    check_image_service(env, &mut bad).await?;
    Ok(bad)
}

/// The attachments' promises (see the module doc).
async fn check_attachments(
    env: &Env,
    atts: &[scoria_store::attachments::Attachment],
    vols: &[volumes::Volume],
    bad: &mut Vec<String>,
) {
    use scoria_model::attachment::AttachmentStatus;
    use scoria_model::volume::AttachStatus;
    use scoria_storage::export::Exporter;
    let by_id: BTreeMap<_, _> = vols.iter().map(|v| (v.id, v)).collect();
    for a in atts {
        if a.status.is_transitional() {
            bad.push(format!("attachment {} is {}", a.id, a.status));
        }
        match by_id.get(&a.volume_id) {
            None => bad.push(format!(
                "attachment {}'s volume {} does not exist",
                a.id, a.volume_id
            )),
            Some(v) if v.project_id != a.project_id => bad.push(format!(
                "attachment {} is in project {}, its volume {} in {}",
                a.id, a.project_id, v.id, v.project_id
            )),
            Some(_) => {}
        }
    }
    for v in vols {
        let mine: Vec<_> = atts.iter().filter(|a| a.volume_id == v.id).collect();
        let attached = mine.iter().any(|a| a.status == AttachmentStatus::Attached);
        // A failed extend of an attached volume leaves it `error_extending`
        // (as Cinder), still attached; an in-use backup holds it `backing-up`.
        if attached
            && (!matches!(
                v.status,
                VolumeStatus::InUse
                    | VolumeStatus::Detaching
                    | VolumeStatus::ErrorExtending
                    | VolumeStatus::BackingUp
            ) || v.attach_status != AttachStatus::Attached)
        {
            bad.push(format!(
                "volume {} has an attached attachment but is {}/{}",
                v.id, v.status, v.attach_status
            ));
        }
        if mine.is_empty()
            && (matches!(v.status, VolumeStatus::InUse | VolumeStatus::Reserved)
                || v.attach_status != AttachStatus::Detached)
        {
            bad.push(format!(
                "volume {} has no attachment but is {}/{}",
                v.id, v.status, v.attach_status
            ));
        }
    }
    let wanted: BTreeSet<String> = atts
        .iter()
        .filter(|a| a.export.is_some() && AttachmentStatus::EXPORTED.contains(&a.status))
        .map(|a| a.id.to_string())
        .collect();
    let mut served = BTreeSet::new();
    for (name, exports) in env.exports.all() {
        let states = match exports.exporter.list().await {
            Ok(s) => s,
            Err(e) => {
                bad.push(format!(
                    "the exports of backend {name} cannot be listed: {e}"
                ));
                continue;
            }
        };
        for s in states {
            if !s.serving {
                bad.push(format!("export {} on backend {name} does not serve", s.id));
            }
            served.insert(s.id);
        }
    }
    for id in wanted.difference(&served) {
        bad.push(format!(
            "attachment {id} wants an export that is not served"
        ));
    }
    for id in served.difference(&wanted) {
        bad.push(format!(
            "export {id} is served without an attachment that wants it"
        ));
    }
}

/// The image service's promises (see the module doc).
async fn check_image_service(env: &Env, bad: &mut Vec<String>) -> Result<()> {
    use tokio::io::AsyncReadExt;

    let mut conn = env.store.read().await?;
    let all = scoria_store::glance::glance_image_list_all(&mut conn).await?;
    drop(conn);
    let storage = |e| crate::Error::internal("the image store cannot be read", e);
    let files: BTreeSet<String> = env
        .image_store
        .list()
        .await
        .map_err(storage)?
        .into_iter()
        .collect();
    let mut named = BTreeSet::new();
    for i in &all {
        let name = i.id.to_string();
        if i.status == scoria_model::glance::GlanceImageStatus::Saving || i.upload_reserved != 0 {
            bad.push(format!(
                "glance image {} is {} holding {} bytes of quota",
                i.id, i.status, i.upload_reserved
            ));
        }
        if !i.status.has_data() {
            if files.contains(&name) {
                bad.push(format!(
                    "glance image {} is {} but has a file",
                    i.id, i.status
                ));
            }
            continue;
        }
        named.insert(name.clone());
        if !files.contains(&name) {
            bad.push(format!(
                "glance image {} is {} without its file",
                i.id, i.status
            ));
            continue;
        }
        let mut reader = env
            .image_store
            .open(&name, 0, None)
            .await
            .map_err(storage)?;
        let mut hasher = scoria_digest::ImageHasher::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = reader
                .read(&mut buf)
                .await
                .map_err(|e| crate::Error::internal(format!("reading glance image {}", i.id), e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let digest = hasher.finish();
        let size = digest.len;
        if i.size != Some(size as i64) {
            bad.push(format!(
                "glance image {} records {:?} bytes, its file has {size}",
                i.id, i.size
            ));
        }
        if i.checksum.as_deref() != Some(digest.md5.as_str())
            || i.os_hash_value.as_deref() != Some(digest.sha512.as_str())
        {
            bad.push(format!(
                "glance image {}: its file's checksums are not the recorded ones",
                i.id
            ));
        }
    }
    for f in files.difference(&named) {
        if all.iter().all(|i| i.id.to_string() != *f) {
            bad.push(format!("image store file {f} has no glance image"));
        }
    }
    Ok(())
}

/// The snapshot promises (see the module doc).
fn check_snapshots(
    all: &[snapshots::Snapshot],
    imgs: &[images::Image],
    vols: &[volumes::Volume],
    bad: &mut Vec<String>,
) {
    let volumes: BTreeMap<_, _> = vols.iter().map(|v| (v.id, v)).collect();
    let by_id: BTreeMap<_, _> = imgs.iter().map(|i| (i.id, i)).collect();
    for s in all {
        if s.status.is_transitional() {
            bad.push(format!("snapshot {} is {}", s.id, s.status));
        }
        if s.reservation_id.is_some() {
            bad.push(format!("snapshot {} still points at a reservation", s.id));
        }
        match volumes.get(&s.volume_id) {
            None => bad.push(format!(
                "snapshot {} is of missing volume {}",
                s.id, s.volume_id
            )),
            Some(v) if v.project_id != s.project_id => bad.push(format!(
                "snapshot {} of project {} is of volume {} of project {}",
                s.id, s.project_id, v.id, v.project_id
            )),
            Some(_) => {}
        }
        if s.status != SnapshotStatus::Available {
            continue;
        }
        let Some(image) = s.image_id else {
            bad.push(format!("available snapshot {} has no image", s.id));
            continue;
        };
        match by_id.get(&image) {
            None => bad.push(format!("snapshot {} has missing image {image}", s.id)),
            Some(i) => {
                if i.mutable {
                    bad.push(format!(
                        "snapshot {}'s image {image} can still change",
                        s.id
                    ));
                }
                if i.state != ImageState::Ready {
                    bad.push(format!("snapshot {}'s image {image} is {}", s.id, i.state));
                }
                if i.virtual_size != s.size * GIB as i64 {
                    bad.push(format!(
                        "snapshot {} is {} GiB but its image {image} is recorded {} bytes",
                        s.id, s.size, i.virtual_size
                    ));
                }
            }
        }
    }
}

/// The image promises (see the module doc).
async fn check_images(
    env: &Env,
    all: &[images::Image],
    vols: &[volumes::Volume],
    snaps: &[snapshots::Snapshot],
    cached: &BTreeSet<ImageId>,
    bad: &mut Vec<String>,
) {
    let mut captured: BTreeSet<ImageId> = snaps.iter().filter_map(|s| s.image_id).collect();
    captured.extend(cached);
    let by_id: BTreeMap<_, _> = all.iter().map(|i| (i.id, i)).collect();
    let mut user_of: BTreeMap<ImageId, &volumes::Volume> = BTreeMap::new();
    for v in vols {
        let Some(id) = v.image_id else {
            if matches!(
                v.status,
                VolumeStatus::Available | VolumeStatus::AwaitingTransfer | VolumeStatus::InUse
            ) {
                bad.push(format!("{} volume {} has no image", v.status, v.id));
            }
            continue;
        };
        user_of.insert(id, v);
        let Some(i) = by_id.get(&id) else {
            bad.push(format!("volume {} has missing image {id}", v.id));
            continue;
        };
        if v.backend.as_deref() != Some(i.backend.as_str()) {
            bad.push(format!(
                "volume {} is on backend {:?}, its image {id} on {}",
                v.id, v.backend, i.backend
            ));
        }
        if matches!(
            v.status,
            VolumeStatus::Available | VolumeStatus::AwaitingTransfer | VolumeStatus::InUse
        ) {
            if i.state != ImageState::Ready {
                bad.push(format!(
                    "{} volume {}'s image {id} is {}",
                    v.status, v.id, i.state
                ));
            }
            if i.virtual_size != v.size * GIB as i64 {
                bad.push(format!(
                    "volume {} is {} GiB but its image {id} is recorded {} bytes",
                    v.id, v.size, i.virtual_size
                ));
            }
        }
    }
    let bases: BTreeSet<ImageId> = all.iter().filter_map(|i| i.base_id).collect();
    let mut owned: BTreeSet<(String, String)> = BTreeSet::new();
    for i in all {
        owned.insert((i.backend.clone(), i.name.clone()));
        let volume = user_of.get(&i.id);
        if i.state == ImageState::Creating {
            bad.push(format!("image {} is still being created", i.id));
        }
        if let Some(base) = i.base_id {
            match by_id.get(&base) {
                None => bad.push(format!("image {} is layered on missing image {base}", i.id)),
                Some(b) if b.mutable => bad.push(format!(
                    "image {} is layered on image {base}, which can still change",
                    i.id
                )),
                Some(_) => {}
            }
        }
        if volume.is_none() && !bases.contains(&i.id) && !captured.contains(&i.id) {
            bad.push(format!("image {} ({}) is used by nothing", i.id, i.name));
        }
        // Data may be missing only where an error says so: an image being
        // deleted (its volume is `error_deleting`), or the image of a volume
        // a failed operation left in an error status.
        let in_error = volume.is_some_and(|v| v.status.is_error());
        if i.state == ImageState::Deleting
            && volume.is_none_or(|v| v.status != VolumeStatus::ErrorDeleting)
        {
            bad.push(format!("image {} is left deleting", i.id));
        }
        let may_lack_data = i.state == ImageState::Deleting || in_error;
        let Some(b) = env.backends.get(&i.backend) else {
            bad.push(format!(
                "image {} is on unknown backend {}",
                i.id, i.backend
            ));
            continue;
        };
        match b.driver.info(&i.name).await {
            Ok(Some(info)) => {
                if info.virtual_size != i.virtual_size as u64 && !in_error {
                    bad.push(format!(
                        "image {} is recorded {} bytes but its data is {}",
                        i.id, i.virtual_size, info.virtual_size
                    ));
                }
                if info.format.as_str() != i.format.as_str() {
                    bad.push(format!(
                        "image {} is recorded {} but its data is {}",
                        i.id,
                        i.format,
                        info.format.as_str()
                    ));
                }
            }
            Ok(None) if may_lack_data => {}
            Ok(None) => bad.push(format!(
                "image {} has no data ({} on {})",
                i.id, i.name, i.backend
            )),
            Err(e) => bad.push(format!("image {}: cannot read {}: {e}", i.id, i.name)),
        }
    }
    for (name, b) in env.backends.all() {
        match b.driver.list().await {
            Ok(files) => {
                for file in files {
                    // Foreign files (an administrator's, or handed back by
                    // an unmanage) are no one's to record.
                    if crate::rules::images::is_scoria_name(&file)
                        && !owned.contains(&(name.clone(), file.clone()))
                    {
                        bad.push(format!("image {file} on backend {name} has no record"));
                    }
                }
            }
            Err(e) => bad.push(format!("backend {name} cannot list its images: {e}")),
        }
    }
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
