//! Applying the fixes a check lists (`scoria fix`), offline: the caller
//! holds the data directory's lock, so no flow runs meanwhile.
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
//! - **merge** and **optimize** are not built yet: reported `not_built`.

use std::path::Path;

use scoria_model::image::{ImageHealth, ImageState};
use scoria_model::volume::VolumeStatus;
use scoria_storage::Format;
use scoria_storage::file::survey;
use scoria_storage::qemu::{self, repair::Repair};
use scoria_store::images::{self, ImageUser};
use scoria_store::{Store, StoreError, flows, volumes};

use super::{CheckOptions, Fix, FixKind, Problem, Target, check, scan};
use crate::BackendConfig;
use crate::error::{Error, Result};

/// Which fixes to apply: those named, and every fix of the kinds given;
/// every fix when both are empty.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub kinds: Vec<FixKind>,
    pub ids: Vec<String>,
}

impl Selection {
    fn wants(&self, f: &Fix) -> bool {
        (self.kinds.is_empty() && self.ids.is_empty())
            || self.kinds.contains(&f.kind)
            || self.ids.contains(&f.id)
    }
}

/// What happened to one fix.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Applied {
    pub id: String,
    pub problem: Problem,
    /// `applied`, `skipped` (its precondition no longer holds), `failed` or
    /// `not_built`.
    pub outcome: &'static str,
    pub detail: String,
}

/// What [`apply`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
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

/// [`apply`] on the data directory of `config` (the store opened for
/// writing: the caller holds the data directory's lock).
pub async fn apply_data_dir(config: &crate::Config, selection: &Selection) -> Result<Outcome> {
    let store = Store::open(&config.data_dir.join("scoria.db"), &config.store).await?;
    let outcome = apply(&store, &config.data_dir, &config.backends, selection).await;
    store.close().await;
    outcome
}

/// Check again, then apply the chosen fixes of that check in its order.
pub async fn apply(
    store: &Store,
    data_dir: &Path,
    backends: &[BackendConfig],
    selection: &Selection,
) -> Result<Outcome> {
    let report = check(store, data_dir, backends, None, CheckOptions::default()).await?;
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
        let (outcome_word, detail) = match apply_one(store, f).await {
            Ok(Done::Applied(d)) => ("applied", d),
            Ok(Done::Skipped(d)) => ("skipped", d),
            Ok(Done::NotBuilt) => (
                "not_built",
                "merging and flattening chains is not built yet".to_owned(),
            ),
            Err(e) => ("failed", e.chain()),
        };
        tracing::info!(id = %f.id, problem = f.problem.as_str(), outcome = outcome_word, %detail, "fix");
        outcome.applied.push(Applied {
            id: f.id.clone(),
            problem: f.problem,
            outcome: outcome_word,
            detail,
        });
    }
    Ok(outcome)
}

enum Done {
    Applied(String),
    Skipped(String),
    NotBuilt,
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

async fn apply_one(store: &Store, f: &Fix) -> Result<Done> {
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
            let flow = scan::staging_flow(&file_name)
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
            let mut tx = store.begin().await?;
            let marked = images::image_mark_garbage(&mut tx, image_id).await?;
            commit(tx).await?;
            if !marked {
                return Ok(Done::Skipped("something uses it now".into()));
            }
            survey::remove_file(dir, &file_name)
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
        Problem::DeepChain => Ok(Done::NotBuilt),
    }
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
