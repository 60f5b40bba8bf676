//! Merging one layer of a served chain into the layer above it while the
//! export serves: qemu's `block-stream` job in the export's daemon, the live
//! twin of [`crate::Driver::merge_base`] (the repository check's `merge` of
//! an attached volume's chain).
//!
//! ```text
//!   blockdev-reopen  the upper layer and its file read-write, if the daemon
//!                    opened them read-only (the layers of its command line
//!                    under the top; qemu keeps an explicit read-only file
//!                    node so)
//!   block-stream     job "merge": copy into the upper layer what the merged
//!                    layer holds and it does not, then make it stand on the
//!                    merged layer's base, its header naming that base by
//!                    its bare name (`backing-file`), as the driver does
//!   job-dismiss      once the job concluded (auto-dismiss is off, so a run
//!                    that lost the answer still finds the job's outcome)
//!   blockdev-reopen  the upper layer read-only again, if it was
//!   blockdev-del     the merged layer's nodes, which nothing reads any more:
//!                    its file is closed, so deleting it frees its space
//! ```
//!
//! Guests keep their connection and notice nothing: the upper layer reads the
//! same on either base throughout (the job copies before it switches). Each
//! run converges from what it finds: a job already running is waited for, an
//! upper layer already on the new base only gets the cleanup.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::FileExporter;
use super::config::path_str;
use super::live::{file_of, nodes, qmp_err};
use crate::export::{ExportError, Result, validate_id};
use crate::qemu::qsd::Daemon;

/// The job's id inside a daemon (one export per daemon, so one merge).
const JOB_ID: &str = "merge";

/// How often a running job is asked how far it got.
const POLL: Duration = Duration::from_millis(25);

fn invalid(id: &str, detail: impl Into<String>) -> ExportError {
    ExportError::InvalidSpec {
        id: id.to_owned(),
        detail: detail.into(),
    }
}

impl FileExporter {
    /// Merge the image `base` into `name`, the layer above it in the chain
    /// export `id` serves, while it serves (see the module doc): afterwards
    /// `name` stands on `base`'s own base (or on nothing) and reads exactly
    /// as before; `base` is only read, and closed in the daemon. Returns
    /// `false` when no daemon serves `id`: the caller merges offline, with
    /// nothing able to start a daemon meanwhile. Idempotent: `name` already
    /// on `base`'s base is success. `progress` gets the job's percent.
    pub async fn merge_live(
        &self,
        id: &str,
        name: &str,
        base: &str,
        progress: crate::Progress<'_>,
    ) -> Result<bool> {
        validate_id(id)?;
        // What `base` stands on, from its header: what `name` stands on after.
        let under = self.chain(base).await?;
        let to = under.get(1).map(|l| l.path.clone());
        let slot = self.slot(id);
        let mut guard = slot.lock().await;
        let Some(daemon) = self.current(id, guard.take()).await? else {
            return Ok(false);
        };
        let paths = Paths {
            upper: self.backend.join(name),
            merged: under[0].path.clone(),
            to,
        };
        let done = merge_in(&daemon, id, &paths, progress).await;
        *guard = Some(daemon);
        done.map(|()| true)
    }
}

struct Paths {
    upper: PathBuf,
    merged: PathBuf,
    to: Option<PathBuf>,
}

/// A node of `nodes` of a format driver (`qcow2`, `raw`) whose file is `path`.
fn format_node<'a>(nodes: &'a [Value], path: &Path) -> Option<&'a Value> {
    nodes.iter().find(|n| {
        (n["drv"] == "qcow2" || n["drv"] == "raw") && file_of(&n["file"]).as_deref() == Some(path)
    })
}

/// The protocol node (`file`) of `nodes` that opens `path`.
fn file_node<'a>(nodes: &'a [Value], path: &Path) -> Option<&'a Value> {
    nodes
        .iter()
        .find(|n| n["drv"] == "file" && file_of(&n["file"]).as_deref() == Some(path))
}

fn name_of(node: &Value) -> String {
    node["node-name"].as_str().unwrap_or_default().to_owned()
}

async fn merge_in(
    daemon: &Daemon,
    id: &str,
    paths: &Paths,
    progress: crate::Progress<'_>,
) -> Result<()> {
    let qmp = daemon.qmp();
    let err = || qmp_err(id);
    let all = nodes(daemon).await.map_err(err())?;
    let upper = format_node(&all, &paths.upper).ok_or_else(|| {
        invalid(
            id,
            format!("its daemon does not hold {}", paths.upper.display()),
        )
    })?;
    let upper_name = name_of(upper);
    // A layer whose file node the daemon opened read-only (its command
    // line's, under the top: qemu keeps an explicit read-only file node so)
    // is reopened read-write for the job and read-only after it. A layer
    // that was the top before a live snapshot kept its file read-write:
    // the job itself reopens its format node (and back after), and
    // reopening it here, a node added with its file inline, would leave
    // qemu 10.0's job paused and the export's I/O hanging.
    let was_ro = file_node(&all, &paths.upper).is_some_and(|f| f["ro"] == true);
    let standing = file_of(&upper["backing_file"]);
    let running = jobs(daemon, id).await?.is_some();
    if !running && standing.as_deref() == Some(paths.merged.as_path()) {
        if was_ro {
            reopen(daemon, id, &all, &paths.upper, Some(&paths.merged), false).await?;
        }
        let mut args = json!({
            "job-id": JOB_ID,
            "device": upper_name,
            "auto-dismiss": false,
        });
        if let Some(to) = &paths.to {
            let node = format_node(&all, to)
                .ok_or_else(|| invalid(id, format!("its daemon does not hold {}", to.display())))?;
            args["base-node"] = json!(name_of(node));
            args["backing-file"] = json!(bare(to));
        }
        qmp.execute("block-stream", args).await.map_err(err())?;
    } else if !running && standing != paths.to {
        return Err(invalid(
            id,
            format!(
                "{} stands on {}, neither {} nor its base",
                paths.upper.display(),
                standing.map_or("nothing".into(), |p| p.display().to_string()),
                paths.merged.display()
            ),
        ));
    }
    let outcome = wait(daemon, id, progress).await;
    // Read-only again, whatever the job's outcome (a failed job leaves the
    // layer on the merged one). A run that crashed between the reopens
    // finds the layer read-write and leaves it so: harmless, as above.
    if was_ro {
        let all = nodes(daemon).await.map_err(err())?;
        if let Some(upper) = format_node(&all, &paths.upper) {
            let backing = file_of(&upper["backing_file"]);
            reopen(daemon, id, &all, &paths.upper, backing.as_deref(), true).await?;
        }
    }
    outcome?;
    // The merged layer's nodes, now outside the chain: the format node, then
    // its file node if that is still there (one given inline went with it).
    for of in [format_node, file_node] {
        let all = nodes(daemon).await.map_err(err())?;
        if let Some(node) = of(&all, &paths.merged) {
            qmp.execute("blockdev-del", json!({"node-name": name_of(node)}))
                .await
                .map_err(err())?;
        }
    }
    tracing::info!(export = %id, layer = %paths.merged.display(), into = %paths.upper.display(), "layer merged live into the one above it");
    Ok(())
}

/// The bare file name of an image of the backend.
fn bare(path: &Path) -> &str {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
}

/// Reopen the format node of `path` and its file node read-write or
/// read-only, on the backing node of `backing` (or none), every other option
/// as the exporter opens layers.
async fn reopen(
    daemon: &Daemon,
    id: &str,
    all: &[Value],
    path: &Path,
    backing: Option<&Path>,
    read_only: bool,
) -> Result<()> {
    let format = format_node(all, path)
        .ok_or_else(|| invalid(id, format!("its daemon does not hold {}", path.display())))?;
    let file = file_node(all, path)
        .ok_or_else(|| invalid(id, format!("its daemon does not hold {}", path.display())))?;
    let backing = match backing {
        Some(b) => json!(name_of(format_node(all, b).ok_or_else(|| {
            invalid(id, format!("its daemon does not hold {}", b.display()))
        })?)),
        None => Value::Null,
    };
    daemon
        .qmp()
        .execute(
            "blockdev-reopen",
            json!({"options": [
                {
                    "driver": format["drv"],
                    "node-name": name_of(format),
                    "file": name_of(file),
                    "backing": backing,
                    "read-only": read_only,
                    "discard": "ignore",
                },
                {
                    "driver": "file",
                    "node-name": name_of(file),
                    "filename": path_str(path),
                    "read-only": read_only,
                    "discard": "ignore",
                },
            ]}),
        )
        .await
        .map_err(qmp_err(id))?;
    Ok(())
}

/// The daemon's merge job as `query-jobs` reports it, if there is one.
async fn jobs(daemon: &Daemon, id: &str) -> Result<Option<Value>> {
    let jobs = daemon
        .qmp()
        .execute("query-jobs", Value::Null)
        .await
        .map_err(qmp_err(id))?;
    Ok(jobs
        .as_array()
        .and_then(|j| j.iter().find(|j| j["id"] == JOB_ID).cloned()))
}

/// Wait for the merge job to conclude and dismiss it: its error, if it
/// failed. No job is success (none was started, or a run before this one
/// dismissed it).
async fn wait(daemon: &Daemon, id: &str, progress: crate::Progress<'_>) -> Result<()> {
    loop {
        let Some(job) = jobs(daemon, id).await? else {
            return Ok(());
        };
        if job["status"] == "concluded" {
            daemon
                .qmp()
                .execute("job-dismiss", json!({"id": JOB_ID}))
                .await
                .map_err(qmp_err(id))?;
            return match job["error"].as_str() {
                Some(e) => Err(invalid(id, format!("its merge job failed: {e}"))),
                None => {
                    progress(100);
                    Ok(())
                }
            };
        }
        let (done, total) = (
            job["current-progress"].as_u64().unwrap_or(0),
            job["total-progress"].as_u64().unwrap_or(0),
        );
        if let Some(percent) = (done.min(total) * 100).checked_div(total) {
            progress(u8::try_from(percent).unwrap_or(100));
        }
        tokio::time::sleep(POLL).await;
    }
}
