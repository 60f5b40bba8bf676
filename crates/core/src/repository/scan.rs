//! The rules of the check, one backend at a time (see the module doc of
//! [`super`]): the records and their users from the store, the directory
//! from `scoria_storage::file::survey`, `qemu-img check` on qcow2 images
//! unless the check is quick, and from those the fixes and the foreign
//! files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use futures::StreamExt;

use scoria_model::image::{ImageFormat, ImageHealth, ImageState};
use scoria_model::volume::VolumeStatus;
use scoria_model::{ImageId, VolumeId};
use scoria_storage::file::survey::{self, Entry, Naming};
use scoria_storage::inspect::DiskFormat;
use scoria_storage::qemu;
use scoria_store::images::{self, Image, ImageUser};
use scoria_store::{Store, attachments, flows, volumes};

use super::{
    BackendReport, Broken, CheckOptions, Effect, Fix, FixKind, Problem, Report, Target, fix_id,
};
use crate::BackendConfig;
use crate::error::Result;
use crate::rules::images::storage_format;

/// The kind of fix each problem calls for.
pub(super) fn kind_of(problem: Problem) -> FixKind {
    match problem {
        Problem::OrphanFile | Problem::Temporary | Problem::StagingFile | Problem::UnusedImage => {
            FixKind::Clean
        }
        // Merge or optimize, as the chain says (see `deep_chains`).
        Problem::DeepChain => FixKind::Merge,
        Problem::RawImage => FixKind::Optimize,
        _ => FixKind::Mend,
    }
}

/// What the store says about one backend.
struct Records {
    images: Vec<Image>,
    by_id: BTreeMap<ImageId, usize>,
    users: BTreeMap<ImageId, Vec<ImageUser>>,
    /// Attachments of each volume, by id (any status).
    attachments: BTreeMap<VolumeId, Vec<String>>,
    /// Images in the chain of a volume an operation is working on, with
    /// that operation: its flow owns them until it settles (an extend grows
    /// the file before the record, a merge rebases it first), so they are
    /// not judged now.
    busy: BTreeMap<ImageId, String>,
    /// Images in the chains of attached volumes, with those volumes: open in
    /// their exports' daemons (which outlive Scoria), so what a guest writes
    /// is not judged mid-write, and a layer is merged only through the one
    /// daemon that holds it.
    held: BTreeMap<ImageId, Vec<VolumeId>>,
}

impl Records {
    fn get(&self, id: ImageId) -> Option<&Image> {
        self.by_id.get(&id).map(|&i| &self.images[i])
    }

    fn users(&self, id: ImageId) -> &[ImageUser] {
        self.users.get(&id).map_or(&[], Vec::as_slice)
    }

    /// Who uses `id`, in words.
    fn in_use(&self, id: ImageId) -> Vec<String> {
        self.users(id)
            .iter()
            .map(|u| match u {
                ImageUser::Volume(v) => match self.attachments.get(v) {
                    Some(a) if !a.is_empty() => {
                        format!("volume {v} (attachments {})", a.join(", "))
                    }
                    _ => u.to_string(),
                },
                _ => u.to_string(),
            })
            .collect()
    }
}

/// Check one file backend into `report`.
pub(super) async fn backend(
    store: &Store,
    config: &BackendConfig,
    dir: &Path,
    options: CheckOptions,
    progress: &(dyn Fn(usize, usize) + Send + Sync),
    report: &mut Report,
) -> Result<()> {
    let name = config.name.as_str();
    // The directory first, then the records: a flow records an image before
    // it makes the file and removes the file before the record, so every
    // file the survey saw that a record named is named by the records read
    // after it (a running server cannot make a false orphan).
    let Some(entries) = survey::survey(dir)
        .await
        .map_err(|e| super::storage_err(format!("reading backend {name}"), e))?
    else {
        // Down: every record would look missing. Nothing is proposed.
        report.backends.push(BackendReport {
            name: name.to_owned(),
            state: "down",
            images: 0,
            files: 0,
            qemu_checked: 0,
            unchanged: 0,
            skipped: Vec::new(),
        });
        return Ok(());
    };
    let records = {
        let mut conn = store.read().await?;
        let images = images::image_list_on_backend(&mut conn, name).await?;
        let users = images::image_users_on_backend(&mut conn, name).await?;
        let mut by_volume: BTreeMap<VolumeId, Vec<String>> = BTreeMap::new();
        for a in attachments::attachment_list_all(&mut conn).await? {
            by_volume
                .entry(a.volume_id)
                .or_default()
                .push(a.id.to_string());
        }
        let by_id: BTreeMap<ImageId, usize> =
            images.iter().enumerate().map(|(i, m)| (m.id, i)).collect();
        let mut busy = BTreeMap::new();
        for f in flows::flow_list_active(&mut conn).await? {
            if f.resource_type.as_deref() != Some("volume") {
                continue;
            }
            let Some(v) = f.resource_id.as_deref().and_then(|v| v.parse().ok()) else {
                continue;
            };
            let Some(v) = volumes::volume_get(&mut conn, v).await? else {
                continue;
            };
            mark_chain(
                &mut busy,
                &images,
                &by_id,
                v.image_id,
                &format!(
                    "an operation on volume {} ({}) is in progress",
                    v.id, f.kind
                ),
            );
        }
        let mut held: BTreeMap<ImageId, Vec<VolumeId>> = BTreeMap::new();
        for v in by_volume.keys() {
            if let Some(v) = volumes::volume_get(&mut conn, *v).await? {
                let mut next = v.image_id;
                while let Some(id) = next {
                    let Some(&at) = by_id.get(&id) else { break };
                    let holders = held.entry(id).or_default();
                    if holders.contains(&v.id) {
                        break;
                    }
                    holders.push(v.id);
                    next = images[at].base_id;
                }
            }
        }
        Records {
            images,
            by_id,
            users,
            attachments: by_volume,
            busy,
            held,
        }
    };
    let mut skipped = Vec::new();
    let files: BTreeMap<&str, &Entry> = entries.iter().map(|e| (e.file_name.as_str(), e)).collect();
    let fix = |problem: Problem, target: Target, reason: String, effect: Effect, in_use| Fix {
        id: fix_id(kind_of(problem), problem, name, &target),
        kind: kind_of(problem),
        problem,
        backend: name.to_owned(),
        target,
        reason,
        effect,
        in_use,
    };

    // Records nothing refers to, chains top first.
    let garbage = unused_chains(&records);
    for &id in &garbage {
        let Some(image) = records.get(id) else {
            continue;
        };
        let entry = files.get(image.name.as_str());
        let reason = match records.users(id) {
            [] if image.state == ImageState::Deleting => {
                "no row refers to it any more and its removal was interrupted (the reaper finishes it)"
                    .to_owned()
            }
            [] => "no row refers to it any more: the data of a deleted snapshot or volume that nothing depends on".to_owned(),
            _ => "only images that are themselves unused stand on it".to_owned(),
        };
        report.fixes.push(fix(
            Problem::UnusedImage,
            Target::Image {
                image_id: id,
                path: dir.join(&image.name),
            },
            reason,
            Effect {
                bytes_freed: entry.map_or(0, |e| e.allocated),
                layers_removed: 0,
            },
            records.in_use(id),
        ));
    }

    // Each record against its file, then `qemu-img check` on the qcow2
    // images whose file agrees (a few at a time: a process each).
    let mut findings: Vec<(&Image, Problem, String)> = Vec::new();
    let mut to_check: Vec<(usize, std::path::PathBuf, scoria_storage::Format)> = Vec::new();
    let memo = if options.full || options.quick {
        Default::default()
    } else {
        let mut conn = store.read().await?;
        scoria_store::image_checks::image_check_memo(&mut conn, name).await?
    };
    let mut unchanged = 0usize;
    for (at, image) in records.images.iter().enumerate() {
        if garbage.contains(&image.id) || image.state != ImageState::Ready {
            // Creating: its flow's (it may have no file yet). Deleting and
            // still used: the reaper's, once its users go.
            continue;
        }
        if let Some(by) = records.busy.get(&image.id) {
            skipped.push(format!(
                "{}: an operation on {by} is in progress",
                image.name
            ));
            continue;
        }
        if let Some(v) = records.held.get(&image.id) {
            skipped.push(format!(
                "{}: volume {} is attached: its export's daemon holds it",
                image.name, v[0]
            ));
            continue;
        }
        match files.get(image.name.as_str()) {
            None => findings.push((image, Problem::MissingFile, "its file is missing".into())),
            Some(e) => match record_against_file(image, e, &records) {
                Err((problem, reason)) => findings.push((image, problem, reason)),
                Ok(()) if image.format == ImageFormat::Qcow2 => {
                    let marked = e.head.as_ref().is_some_and(|h| h.marked_corrupt || h.dirty);
                    let same = memo.get(&image.id) == Some(&e.fingerprint);
                    if marked || options.full || !(options.quick || same) {
                        to_check.push((at, e.path.clone(), storage_format(image.format)));
                    } else if same {
                        unchanged += 1;
                    }
                }
                Ok(()) => {}
            },
        }
    }
    let parallel = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8));
    let (total, done) = (to_check.len(), std::sync::atomic::AtomicUsize::new(0));
    progress(0, total);
    let checked: Vec<_> = futures::stream::iter(to_check)
        // Owned arguments: a future borrowing from here would make the
        // future of a handler awaiting the check (`GET /manageable_volumes`)
        // one rustc cannot prove `Send`.
        .map(|(i, path, format)| async move { (i, qemu_check(path, format).await) })
        .buffered(parallel)
        .inspect(|_| {
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            progress(n, total);
        })
        .collect()
        .await;
    let qemu_checked = checked.len();
    for (at, result) in checked {
        let image = &records.images[at];
        match result {
            Ok(Some((problem, reason))) => {
                report.seen.push((image.id, None));
                findings.push((image, problem, reason))
            }
            Ok(None) => {
                let fingerprint = files
                    .get(image.name.as_str())
                    .map(|e| e.fingerprint.clone());
                report.seen.push((image.id, fingerprint));
            }
            Err(busy) => skipped.push(format!("{}: {busy}", image.name)),
        }
    }
    let found: BTreeSet<ImageId> = findings.iter().map(|(i, _, _)| i.id).collect();
    for (image, problem, reason) in findings {
        if matches!(
            problem,
            Problem::MissingFile
                | Problem::SizeMismatch
                | Problem::FormatMismatch
                | Problem::BackingMismatch
                | Problem::Unreadable
        ) && mended(store, image, problem, &reason, &records).await?
        {
            report.broken.push(Broken {
                backend: name.to_owned(),
                image_id: image.id,
                reason,
            });
            continue;
        }
        let effect = match problem {
            Problem::Leaks => Effect {
                bytes_freed: leaked_bytes(&reason, files.get(image.name.as_str()).copied()),
                layers_removed: 0,
            },
            _ => Effect::default(),
        };
        let target = Target::Image {
            image_id: image.id,
            path: dir.join(&image.name),
        };
        report.fixes.push(fix(
            problem,
            target,
            reason,
            effect,
            records.in_use(image.id),
        ));
    }

    // Chains deeper than the backend allows.
    for f in deep_chains(&records, config.max_chain_depth, &garbage) {
        let (kind, removed, reason) = f.1;
        let image = records.get(f.0).expect("a listed image");
        let mut fx = fix(
            Problem::DeepChain,
            Target::Image {
                image_id: image.id,
                path: dir.join(&image.name),
            },
            reason,
            Effect {
                bytes_freed: 0,
                layers_removed: removed,
            },
            records.in_use(image.id),
        );
        fx.kind = kind;
        fx.id = fix_id(kind, Problem::DeepChain, name, &fx.target);
        report.fixes.push(fx);
    }

    // Writable raw images where the backend's volumes are qcow2.
    for image in &records.images {
        let Some(why) = crate::rules::images::raw_reason(image, config.format) else {
            continue;
        };
        let volume = records.users(image.id).iter().find_map(|u| match u {
            ImageUser::Volume(v) => Some(*v),
            _ => None,
        });
        if volume.is_none()
            || garbage.contains(&image.id)
            || found.contains(&image.id)
            || image.state != ImageState::Ready
            || image.health == ImageHealth::Broken
            || records.busy.contains_key(&image.id)
        {
            continue;
        }
        let attached = volume
            .and_then(|v| records.attachments.get(&v))
            .is_some_and(|a| !a.is_empty());
        let reason = if attached {
            format!(
                "{why}; the volume is attached, and a conversion is not done online: it waits until the volume is detached"
            )
        } else {
            why.to_owned()
        };
        report.fixes.push(fix(
            Problem::RawImage,
            Target::Image {
                image_id: image.id,
                path: dir.join(&image.name),
            },
            reason,
            Effect::default(),
            records.in_use(image.id),
        ));
    }

    // Files no record names.
    let recorded: BTreeMap<&str, &Image> = records
        .images
        .iter()
        .map(|i| (i.name.as_str(), i))
        .collect();
    let mut referenced: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for e in &entries {
        if let Some(b) = e.head.as_ref().and_then(|h| h.backing_file.as_deref()) {
            referenced.entry(b).or_default().push(e.file_name.clone());
        }
    }
    for e in &entries {
        if recorded.contains_key(e.file_name.as_str()) {
            continue;
        }
        let refs = referenced.get(e.file_name.as_str());
        match &e.naming {
            Naming::Temporary { image } => {
                if recorded
                    .get(image.as_str())
                    .is_some_and(|i| i.state == ImageState::Creating)
                {
                    // A create in progress (or to be resumed) owns it.
                    continue;
                }
                report.fixes.push(fix(
                    Problem::Temporary,
                    Target::File {
                        path: e.path.clone(),
                    },
                    format!("the temporary of an interrupted create or copy of {image}"),
                    Effect {
                        bytes_freed: e.allocated,
                        layers_removed: 0,
                    },
                    Vec::new(),
                ));
            }
            Naming::Image { .. }
                if crate::rules::images::is_scoria_name(&e.file_name)
                    && refs.is_none()
                    && e.regular =>
            {
                report.fixes.push(fix(
                    Problem::OrphanFile,
                    Target::File {
                        path: e.path.clone(),
                    },
                    "an image file of Scoria's that no record names and no file stands on".into(),
                    Effect {
                        bytes_freed: e.allocated,
                        layers_removed: 0,
                    },
                    Vec::new(),
                ));
            }
            _ => report
                .foreign
                .push(super::outside::foreign(name, e, &files, &referenced)),
        }
    }
    report.backends.push(BackendReport {
        name: name.to_owned(),
        state: "checked",
        images: records.images.len(),
        files: entries.len(),
        qemu_checked,
        unchanged,
        skipped,
    });
    Ok(())
}

/// Whether a record's file says what the record does (format, size,
/// backing file): the first disagreement found.
fn record_against_file(
    image: &Image,
    e: &Entry,
    records: &Records,
) -> std::result::Result<(), (Problem, String)> {
    if !e.regular {
        return Err((Problem::Unreadable, "its file is not a regular file".into()));
    }
    let Some(head) = &e.head else {
        return Err((Problem::Unreadable, "its file cannot be read".into()));
    };
    if image.format == ImageFormat::Qcow2 {
        // A raw image may hold anything, a qcow2 header included; a qcow2
        // one must be qcow2.
        if head.detected != DiskFormat::Qcow2 {
            return Err((
                Problem::FormatMismatch,
                format!(
                    "its record says qcow2, its file is {}",
                    head.detected.glance_name()
                ),
            ));
        }
        if let Some(p) = &head.problem {
            return Err((Problem::Unreadable, format!("its qcow2 header: {p}")));
        }
    }
    if head.virtual_size != image.virtual_size as u64 {
        return Err((
            Problem::SizeMismatch,
            format!(
                "its file's virtual size is {} bytes, its record says {}",
                head.virtual_size, image.virtual_size
            ),
        ));
    }
    if image.format == ImageFormat::Qcow2 {
        let expected = image
            .base_id
            .and_then(|b| records.get(b))
            .map(|b| b.name.as_str());
        if head.data_file {
            return Err((
                Problem::BackingMismatch,
                "its file keeps its data in an external data file".into(),
            ));
        }
        if head.backing_file.as_deref() != expected {
            return Err((
                Problem::BackingMismatch,
                format!(
                    "its file's backing file is {}, its record says {}",
                    head.backing_file.as_deref().unwrap_or("none"),
                    expected.unwrap_or("none")
                ),
            ));
        }
    }
    Ok(())
}

/// Mark the chain from `top` down as `busy` for `why` (the first reason
/// found stays).
fn mark_chain(
    busy: &mut BTreeMap<ImageId, String>,
    images: &[Image],
    by_id: &BTreeMap<ImageId, usize>,
    top: Option<ImageId>,
    why: &str,
) {
    let mut next = top;
    while let Some(id) = next {
        let Some(&at) = by_id.get(&id) else { break };
        if busy.contains_key(&id) {
            break;
        }
        busy.insert(id, why.to_owned());
        next = images[at].base_id;
    }
}

/// `qemu-img check -U` of a recorded qcow2 image (no lock: a check never
/// makes a running operation fail): the problem it shows, if any; `Err`
/// when qemu cannot open it because another holds it.
async fn qemu_check(
    path: std::path::PathBuf,
    format: scoria_storage::Format,
) -> std::result::Result<Option<(Problem, String)>, String> {
    match qemu::check_shared(&path, format).await {
        Ok(r) if r.corruptions > 0 => Ok(Some((
            Problem::Corruption,
            format!(
                "qemu-img check finds {} corruptions{}",
                r.corruptions,
                if r.leaks > 0 {
                    format!(" and {} leaked clusters", r.leaks)
                } else {
                    String::new()
                }
            ),
        ))),
        Ok(r) if r.leaks > 0 => Ok(Some((
            Problem::Leaks,
            format!("qemu-img check finds {} leaked clusters", r.leaks),
        ))),
        Ok(r) if r.check_errors > 0 => Ok(Some((
            Problem::Unreadable,
            format!(
                "qemu-img check could not finish ({} errors)",
                r.check_errors
            ),
        ))),
        Ok(_) => Ok(None),
        Err(err) => {
            let text = err.to_string();
            if text.contains("lock") {
                Err("a running qemu holds it; not checked".into())
            } else {
                Ok(Some((
                    Problem::Unreadable,
                    format!("qemu-img cannot open it: {text}"),
                )))
            }
        }
    }
}

/// The bytes leaked clusters hold, from the count in `reason`.
fn leaked_bytes(reason: &str, e: Option<&Entry>) -> u64 {
    let count: u64 = reason
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or(0);
    let cluster = e
        .and_then(|e| e.head.as_ref())
        .and_then(|h| h.cluster_size)
        .unwrap_or(64 << 10);
    count * cluster
}

/// Whether the mend of `reason` is already in place: the image recorded
/// broken for it, and (a missing file) every volume on it in `error`.
async fn mended(
    store: &Store,
    image: &Image,
    problem: Problem,
    reason: &str,
    records: &Records,
) -> Result<bool> {
    if image.health != ImageHealth::Broken || image.health_reason.as_deref() != Some(reason) {
        return Ok(false);
    }
    if problem != Problem::MissingFile {
        return Ok(true);
    }
    let mut conn = store.read().await?;
    for u in records.users(image.id) {
        if let ImageUser::Volume(v) = u
            && volumes::volume_get(&mut conn, *v)
                .await?
                .is_some_and(|v| v.status != VolumeStatus::Error)
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Images no row refers to, or only images that are themselves unused:
/// `ready` or `deleting` ones (a `creating` one is its flow's), top first.
fn unused_chains(records: &Records) -> Vec<ImageId> {
    let mut order = Vec::new();
    let mut set = BTreeSet::new();
    loop {
        let before = order.len();
        for image in &records.images {
            if set.contains(&image.id) || image.state == ImageState::Creating {
                continue;
            }
            let unused = records
                .users(image.id)
                .iter()
                .all(|u| matches!(u, ImageUser::Overlay(o) if set.contains(o)));
            if unused {
                set.insert(image.id);
                order.push(image.id);
            }
        }
        if order.len() == before {
            return order;
        }
    }
}

/// Volumes' active images whose chain is deeper than `max`: each with its
/// fix kind, the layers a fix would remove and why.
fn deep_chains(
    records: &Records,
    max: usize,
    garbage: &[ImageId],
) -> Vec<(ImageId, (FixKind, u32, String))> {
    let mut out = Vec::new();
    for image in &records.images {
        let active = records
            .users(image.id)
            .iter()
            .any(|u| matches!(u, ImageUser::Volume(_)));
        if !active
            || garbage.contains(&image.id)
            || image.state != ImageState::Ready
            || records.busy.contains_key(&image.id)
        {
            continue;
        }
        let mut chain = vec![image];
        while let Some(base) = chain
            .last()
            .and_then(|i| i.base_id)
            .and_then(|b| records.get(b))
        {
            if chain.len() > 10_000 || chain.iter().any(|i| i.id == base.id) {
                break;
            }
            chain.push(base);
        }
        let depth = chain.len();
        if depth <= max {
            continue;
        }
        let volume = records.users(image.id).iter().find_map(|u| match u {
            ImageUser::Volume(v) => Some(*v),
            _ => None,
        });
        // Attached: the merge is a block job in its export's daemon, which
        // must be the only one (a volume attached more than once is
        // refused).
        let attached = volume
            .and_then(|v| records.attachments.get(&v))
            .map_or(0, Vec::len);
        // Layers only the next layer up reads (no snapshot, no volume, no
        // cache, one overlay): a deleted snapshot's data, mergeable. The
        // layer above must not be open in another volume's daemon (a
        // clone's export reading through it): it would change under that
        // daemon, and qemu's lock refuses it.
        let mergeable = chain
            .windows(2)
            .filter(|w| {
                matches!(records.users(w[1].id), [ImageUser::Overlay(o)] if *o == w[0].id)
                    && records
                        .held
                        .get(&w[0].id)
                        .is_none_or(|by| by.iter().all(|v| Some(*v) == volume))
            })
            .count() as u32;
        let (kind, removed, how) = if mergeable > 0 {
            (
                FixKind::Merge,
                mergeable,
                if mergeable == 1 {
                    "merging the one layer only this chain reads (a deleted snapshot's) removes it"
                        .to_owned()
                } else {
                    format!(
                        "merging the {mergeable} layers only this chain reads (deleted snapshots') removes them"
                    )
                },
            )
        } else {
            (
                FixKind::Optimize,
                (depth - 1) as u32,
                "every layer is a snapshot's: flattening the volume onto an image of its own removes them from its chain".to_owned(),
            )
        };
        let how = match (kind, attached) {
            (_, 0) => how,
            (FixKind::Merge, _) => {
                format!("{how}, online: by a block-stream job in its export's daemon")
            }
            (_, 1) => format!(
                "{how}; the volume is attached, and a flatten is not done online: it waits until the volume is detached"
            ),
            _ => format!(
                "{how}; the volume is attached {attached} times, and its chain is changed only offline: it waits until the volume is detached"
            ),
        };
        out.push((
            image.id,
            (
                kind,
                removed,
                format!(
                    "its chain has {depth} layers, more than the backend's max_chain_depth ({max}); {how}"
                ),
            ),
        ));
    }
    out
}

#[cfg(test)]
#[path = "scan_tests.rs"]
mod tests;
