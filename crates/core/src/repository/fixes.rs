//! Applying the fixes a check lists (`scoria fix`), offline: the caller
//! holds the data directory's lock, so no other flow runs meanwhile.
//!
//! [`apply`] checks again first and applies only fixes of that new check
//! (the repository may have changed since the check whose ids the operator
//! chose), and each fix re-tests its own precondition as it acts:
//!
//! - **clean** — an orphan file goes only while still no record names it
//!   and no file stands on it; a temporary only while no record of its
//!   image is `creating`; a staging file only while its flow is over; an
//!   unused image is marked `deleting` only while still unused (one
//!   conditional statement), then its file goes, then its record (the
//!   reaper's order: a crash between leaves it for the next check or the
//!   reaper). Chains go top first, in the order the check lists them.
//! - **mend** — leaks: `qemu-img check -r leaks`; corruptions: `qemu-img
//!   check -r all`; both checked clean afterwards. A missing file: the
//!   image recorded `broken` with the reason and each volume on it `error`
//!   (re-tested: the file is still missing). A file whose format, size or
//!   backing file disagrees, or that qemu cannot read: the image recorded
//!   `broken` with the reason — repairing it is the operator's.
//! - **merge** — each layer of the volume's chain that only the layer above
//!   reads (a deleted snapshot's) is merged into that layer by the
//!   `image_merge` flow (`qemu-img rebase`, offline: only a detached
//!   volume), then freed as an unused image, one at a time from the top.
//! - **optimize** — a chain whose every layer is a snapshot's: the volume is
//!   put on a flattened copy of its chain by the `volume_flatten` flow
//!   (offline: only a detached volume), and its old top layer freed.
//!
//! The fixes run in an application assembled without its API
//! ([`apply_data_dir`]): the flows a previous run left are finished or
//! undone first, and an interrupted merge resumes at the next `scoria fix`
//! or `scoria serve`.

use std::path::Path;
use std::sync::Arc;

use scoria_failpoints::Failpoints;
use scoria_flows::{Cx, EngineOptions, Flow, Outcome as FlowOutcome, StepError};
use scoria_model::image::{ImageHealth, ImageState};
use scoria_model::volume::VolumeStatus;
use scoria_model::{ImageId, VolumeId};
use scoria_storage::Format;
use scoria_storage::file::survey;
use scoria_storage::qemu::{self, repair::Repair};
use scoria_store::images::{self, ImageUser};
use scoria_store::{Store, StoreError, flows, volumes};

use super::flows::RepositoryFix;
use super::{CheckOptions, Fix, FixKind, Problem, Target, check, outside};
use crate::error::{Error, Result};
use crate::flows::image_merge::{self, ImageMerge};
use crate::flows::volume_flatten::{self, VolumeFlatten};
use crate::{App, Env};

/// The context fixes run in: the `repository_fix` flow's step.
type Fx = Cx<RepositoryFix>;

/// Which fixes to apply: those named, and every fix of the kinds given;
/// every fix when both are empty.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub kinds: Vec<FixKind>,
    pub ids: Vec<String>,
    /// No server runs: mends are applied (see `FixParams::offline`).
    pub offline: bool,
}

impl Selection {
    fn wants(&self, f: &Fix) -> bool {
        (self.kinds.is_empty() && self.ids.is_empty())
            || self.kinds.contains(&f.kind)
            || self.ids.contains(&f.id)
    }
}

/// What happened to one fix.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Applied {
    pub id: String,
    pub problem: Problem,
    /// `applied`, `skipped` (its precondition no longer holds) or `failed`.
    pub outcome: String,
    pub detail: String,
}

/// What [`apply`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    pub applied: Vec<Applied>,
    /// Ids asked for that the new check does not list.
    pub unknown: Vec<String>,
}

impl Outcome {
    /// Every chosen fix was applied and every id was known.
    pub fn all_applied(&self) -> bool {
        self.unknown.is_empty() && self.applied.iter().all(|a| a.outcome == "applied")
    }
}

/// The `repository_fix` flow on the data directory of `config`, run to its
/// end (the caller holds the data directory's lock). The application is
/// assembled without its API: flows a previous run left unfinished are
/// finished or undone first, as `scoria serve` would at start.
pub async fn apply_data_dir(
    config: &crate::Config,
    fp: Arc<Failpoints>,
    selection: &Selection,
) -> Result<Outcome> {
    let options = EngineOptions {
        node_id: config.node_id.clone(),
        ..EngineOptions::default()
    };
    let app = App::assemble(config.clone(), fp, options).await?;
    let outcome = async {
        app.engine.resume_all().await?;
        app.engine.wait_idle().await;
        let h = app.engine.start::<RepositoryFix>(super::flows::FixParams {
            kinds: selection.kinds.clone(),
            ids: selection.ids.clone(),
            offline: selection.offline,
        })?;
        match h.wait().await {
            FlowOutcome::Done => super::flows::fix_outcome(app.store(), h.id).await,
            FlowOutcome::Failed(e) => Err(Error::InvalidState(e.to_string())),
            other => Err(Error::InvalidState(format!(
                "the fixes did not end: {other:?}"
            ))),
        }
    }
    .await;
    app.shutdown(std::time::Duration::from_secs(10)).await;
    outcome
}

/// Check again, then apply the chosen fixes of that check in its order
/// (the `repository_fix` flow's step: merges and flattens run as its
/// children).
pub(super) async fn apply(cx: &Fx, selection: &Selection) -> Result<Outcome> {
    let store = &cx.env.store;
    let backends: Vec<crate::BackendConfig> = cx
        .env
        .backends
        .values()
        .iter()
        .map(|b| b.config.clone())
        .collect();
    let report = check(
        store,
        &cx.env.staging_dir,
        &backends,
        None,
        CheckOptions::default(),
    )
    .await?;
    super::record_seen(store, &report).await?;
    let mut outcome = Outcome {
        unknown: selection
            .ids
            .iter()
            .filter(|id| !report.fixes.iter().any(|f| &f.id == *id))
            .cloned()
            .collect(),
        ..Outcome::default()
    };
    for f in report.fixes.iter().filter(|f| selection.wants(f)) {
        let online_mend = f.kind == FixKind::Mend && !selection.offline;
        let done = if online_mend {
            Ok(Done::Skipped(
                "mends are applied by scoria fix with the server stopped: they need the image to themselves".into(),
            ))
        } else {
            apply_one(cx, f).await
        };
        let (outcome_word, detail) = match done {
            Ok(Done::Applied(d)) => ("applied", d),
            Ok(Done::Skipped(d)) => ("skipped", d),
            Err(e) => ("failed", e.chain()),
        };
        tracing::info!(id = %f.id, problem = f.problem.as_str(), outcome = outcome_word, %detail, "fix");
        outcome.applied.push(Applied {
            id: f.id.clone(),
            problem: f.problem,
            outcome: outcome_word.to_owned(),
            detail,
        });
    }
    Ok(outcome)
}

enum Done {
    Applied(String),
    Skipped(String),
}

fn parent_and_name(path: &Path) -> Result<(&Path, String)> {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => Ok((dir, name.to_string_lossy().into_owned())),
        _ => Err(Error::Invalid(format!("{} is not a file", path.display()))),
    }
}

fn storage(what: &str) -> impl FnOnce(scoria_storage::StorageError) -> Error + '_ {
    move |e| Error::internal(what.to_owned(), e)
}

async fn commit(tx: scoria_store::Tx) -> Result<()> {
    tx.commit().await.map_err(StoreError::from)?;
    Ok(())
}

async fn apply_one(cx: &Fx, f: &Fix) -> Result<Done> {
    let store = &cx.env.store;
    let path = f.target.path();
    let (dir, file_name) = parent_and_name(path)?;
    match f.problem {
        Problem::OrphanFile => {
            let mut conn = store.read().await?;
            let named = images::image_list_on_backend(&mut conn, &f.backend)
                .await?
                .into_iter()
                .any(|i| i.name == file_name);
            drop(conn);
            if named {
                return Ok(Done::Skipped("a record names it now".into()));
            }
            let entries = survey::survey(dir)
                .await
                .map_err(storage("reading the backend"))?
                .unwrap_or_default();
            if entries.iter().any(|e| {
                e.head
                    .as_ref()
                    .is_some_and(|h| h.backing_file.as_deref() == Some(file_name.as_str()))
            }) {
                return Ok(Done::Skipped("a file stands on it now".into()));
            }
            remove(dir, &file_name).await
        }
        Problem::Temporary => {
            let image = file_name
                .strip_prefix('.')
                .and_then(|n| n.strip_suffix(".tmp"))
                .unwrap_or_default();
            let mut conn = store.read().await?;
            let creating = images::image_list_on_backend(&mut conn, &f.backend)
                .await?
                .into_iter()
                .any(|i| i.name == image && i.state == ImageState::Creating);
            drop(conn);
            if creating {
                return Ok(Done::Skipped(format!("a flow is creating {image}")));
            }
            remove(dir, &file_name).await
        }
        Problem::StagingFile => {
            let flow = outside::staging_flow(&file_name)
                .unwrap_or_default()
                .to_owned();
            let mut conn = store.read().await?;
            let active = flows::flow_list_active(&mut conn)
                .await?
                .iter()
                .any(|r| r.id.to_string() == flow);
            drop(conn);
            if active {
                return Ok(Done::Skipped(format!("flow {flow} runs again")));
            }
            remove(dir, &file_name).await
        }
        Problem::UnusedImage => {
            let Target::Image { image_id, .. } = f.target else {
                return Err(Error::Invalid(
                    "an unused image fix without an image".into(),
                ));
            };
            free_image(store, dir, image_id, &file_name).await
        }
        Problem::Leaks | Problem::Corruption => {
            let what = if f.problem == Problem::Leaks {
                Repair::Leaks
            } else {
                Repair::All
            };
            let r = qemu::repair::repair(path, Format::Qcow2, what)
                .await
                .map_err(storage("qemu-img check -r"))?;
            if !r.is_clean() {
                return Err(Error::Invalid(format!(
                    "after the repair {} leaks and {} corruptions remain",
                    r.leaks, r.corruptions
                )));
            }
            Ok(Done::Applied(format!(
                "{} leaked clusters and {} corruptions repaired",
                r.leaks_fixed, r.corruptions_fixed
            )))
        }
        Problem::MissingFile
        | Problem::SizeMismatch
        | Problem::FormatMismatch
        | Problem::BackingMismatch
        | Problem::Unreadable => {
            let Target::Image { image_id, .. } = f.target else {
                return Err(Error::Invalid("a mend without an image".into()));
            };
            let missing = f.problem == Problem::MissingFile;
            if missing && tokio::fs::try_exists(path).await.unwrap_or(true) {
                return Ok(Done::Skipped("its file is there now".into()));
            }
            let mut tx = store.begin().await?;
            images::image_set_health(&mut tx, image_id, ImageHealth::Broken, Some(&f.reason))
                .await?;
            let mut errored = Vec::new();
            if missing {
                for u in images::image_users(&mut tx, image_id).await? {
                    if let ImageUser::Volume(v) = u
                        && volumes::volume_set_status(&mut tx, v, &[], VolumeStatus::Error).await?
                    {
                        errored.push(v.to_string());
                    }
                }
            }
            commit(tx).await?;
            Ok(Done::Applied(if errored.is_empty() {
                format!("image {image_id} recorded broken: {}", f.reason)
            } else {
                format!(
                    "image {image_id} recorded broken and volumes {} in error: {}",
                    errored.join(", "),
                    f.reason
                )
            }))
        }
        Problem::DeepChain if f.kind == FixKind::Merge => merge(cx, f, dir).await,
        Problem::DeepChain | Problem::RawImage => flatten(cx, f, dir).await,
    }
}

/// The reaper's three steps on one image: marked `deleting` only while
/// still unused (one conditional statement), its file removed, its record
/// removed. A crash between leaves it for the next check or the reaper.
async fn free_image(store: &Store, dir: &Path, image_id: ImageId, file_name: &str) -> Result<Done> {
    let mut tx = store.begin().await?;
    let marked = images::image_mark_garbage(&mut tx, image_id).await?;
    commit(tx).await?;
    if !marked {
        return Ok(Done::Skipped("something uses it now".into()));
    }
    survey::remove_file(dir, file_name)
        .await
        .map_err(storage("removing the image's file"))?;
    let mut tx = store.begin().await?;
    let gone = images::image_delete(&mut tx, image_id).await?;
    commit(tx).await?;
    Ok(if gone {
        Done::Applied(format!("image {image_id} and its file removed"))
    } else {
        Done::Skipped("its file is gone; something uses its record now".into())
    })
}

/// A `deep_chain` merge: each layer of the volume's chain that only the next
/// layer up reads is merged into it (the `image_merge` flow), then freed,
/// one at a time from the top (freeing one can make the one under it read
/// only by the layer above).
async fn merge(cx: &Fx, f: &Fix, dir: &Path) -> Result<Done> {
    let Target::Image { image_id, .. } = f.target else {
        return Err(Error::Invalid("a merge without an image".into()));
    };
    let mut merged = Vec::new();
    loop {
        let Some(volume) = volume_reading(cx, image_id).await? else {
            return Ok(Done::Skipped("no volume reads the image now".into()));
        };
        let mut conn = cx.env.store.read().await?;
        let volume_now = images::image_users(&mut conn, image_id)
            .await?
            .into_iter()
            .find_map(|u| match u {
                ImageUser::Volume(v) => Some(v),
                _ => None,
            });
        if volume_now != Some(volume) {
            return Ok(Done::Skipped("no volume reads the image now".into()));
        }
        if let Some(why) = attached_more_than_once(&mut conn, volume).await? {
            return Ok(Done::Skipped(why));
        }
        let chain = images::image_chain(&mut conn, image_id).await?;
        let held = attached_chains(&mut conn, volume).await?;
        let mut next = None;
        for pair in chain.windows(2) {
            if images::image_users(&mut conn, pair[1].id).await? == [ImageUser::Overlay(pair[0].id)]
                && !held.contains(&pair[0].id)
            {
                next = Some(pair[1].clone());
                break;
            }
        }
        drop(conn);
        let Some(layer) = next else { break };
        run::<ImageMerge>(
            cx,
            image_merge::Params {
                volume_id: volume,
                layer_id: layer.id,
            },
        )
        .await?;
        if let Done::Skipped(why) = free_image(&cx.env.store, dir, layer.id, &layer.name).await? {
            return Err(Error::InvalidState(format!(
                "image {} was merged but not freed: {why}",
                layer.id
            )));
        }
        merged.push(layer.id.to_string());
    }
    Ok(if merged.is_empty() {
        Done::Skipped("no layer of the chain is read only by the layer above it now".into())
    } else {
        Done::Applied(format!(
            "merged into the layers above them and freed: {}",
            merged.join(", ")
        ))
    })
}

/// Why `volume`'s chain waits for a detach: attached more than once (a
/// merge goes through its one export's daemon).
async fn attached_more_than_once(
    conn: &mut scoria_store::Conn,
    volume: VolumeId,
) -> Result<Option<String>> {
    let n = scoria_store::attachments::attachment_list_for_volume(&mut *conn, volume)
        .await?
        .len();
    Ok((n > 1).then(|| {
        format!("volume {volume} is attached {n} times: its chain is changed only offline")
    }))
}

/// The images volumes other than `except` read while attached: open in
/// their exports' daemons, so not to be rebased (they would change under
/// those daemons; qemu's lock refuses it).
async fn attached_chains(
    conn: &mut scoria_store::Conn,
    except: VolumeId,
) -> Result<std::collections::BTreeSet<ImageId>> {
    let mut held = std::collections::BTreeSet::new();
    for a in scoria_store::attachments::attachment_list_all(&mut *conn).await? {
        if a.volume_id == except {
            continue;
        }
        let Some(v) = volumes::volume_get(&mut *conn, a.volume_id).await? else {
            continue;
        };
        if let Some(top) = v.image_id {
            held.extend(
                images::image_chain(&mut *conn, top)
                    .await?
                    .iter()
                    .map(|i| i.id),
            );
        }
    }
    Ok(held)
}

/// Run a child flow to its end: an error unless it succeeded.
async fn run<F: Flow<Env = Env>>(cx: &Fx, params: F::Params) -> Result<()> {
    let h = cx.start_flow::<F>(params).map_err(step_error)?;
    cx.wait_flow(&h).await.map_err(step_error)
}

fn step_error(e: StepError) -> Error {
    Error::InvalidState(e.chain())
}

/// The volume whose active image `image` is, once no flow works on it any
/// more (a merge or a flatten an earlier run of the step started).
async fn volume_reading(cx: &Fx, image: ImageId) -> Result<Option<VolumeId>> {
    let users = {
        let mut conn = cx.env.store.read().await?;
        images::image_users(&mut conn, image).await?
    };
    let Some(volume) = users.iter().find_map(|u| match u {
        ImageUser::Volume(v) => Some(*v),
        _ => None,
    }) else {
        return Ok(None);
    };
    cx.wait_settled(&volume.to_string())
        .await
        .map_err(step_error)?;
    Ok(Some(volume))
}

/// A `deep_chain` or `raw_image` optimize: the volume put on a flattened
/// qcow2 copy of its chain (the `volume_flatten` flow; a raw image is a
/// chain of one), then its old top layer freed.
async fn flatten(cx: &Fx, f: &Fix, dir: &Path) -> Result<Done> {
    let Target::Image { image_id, .. } = f.target else {
        return Err(Error::Invalid("an optimize without an image".into()));
    };
    let Some(volume) = volume_reading(cx, image_id).await? else {
        return Ok(Done::Skipped("no volume reads the image now".into()));
    };
    let old = {
        let mut conn = cx.env.store.read().await?;
        images::image_get(&mut conn, image_id).await?
    };
    let Some(old) = old else {
        return Ok(Done::Skipped("the image is gone".into()));
    };
    if f.problem == Problem::RawImage {
        let wants = cx.env.backend(&f.backend)?.config.format;
        if crate::rules::images::raw_reason(&old, wants).is_none() {
            return Ok(Done::Skipped(
                "the image is no longer a writable raw image where the backend wants qcow2".into(),
            ));
        }
    }
    let attached = {
        let mut conn = cx.env.store.read().await?;
        scoria_store::attachments::attachment_list_for_volume(&mut conn, volume)
            .await?
            .len()
    };
    if attached > 0 {
        return Ok(Done::Skipped(format!(
            "volume {volume} is attached: a flatten is not done online"
        )));
    }
    run::<VolumeFlatten>(cx, volume_flatten::Params { volume_id: volume }).await?;
    let freed = free_image(&cx.env.store, dir, old.id, &old.name).await?;
    let onto = if f.problem == Problem::RawImage {
        "a qcow2 copy of its raw image"
    } else {
        "a flattened copy of its chain"
    };
    Ok(Done::Applied(match freed {
        Done::Applied(_) => format!(
            "volume {volume} put on {onto}; its old top layer {} freed",
            old.id
        ),
        _ => format!("volume {volume} put on {onto}"),
    }))
}

async fn remove(dir: &Path, file_name: &str) -> Result<Done> {
    let removed = survey::remove_file(dir, file_name)
        .await
        .map_err(storage("removing the file"))?;
    Ok(if removed {
        Done::Applied(format!("{file_name} removed"))
    } else {
        Done::Skipped(format!("{file_name} was already gone"))
    })
}
