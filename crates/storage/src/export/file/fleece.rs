//! A point-in-time view of an exported volume for a backup, inside its
//! daemon (image fleecing), and its daemon-side dirty bitmaps.
//!
//! An attached volume is written by its export's `qemu-storage-daemon`, so
//! only that daemon can give a backup one moment of it without stopping the
//! guest. [`FileExporter::fleece`] does, in the daemon:
//!
//! ```text
//!   blockdev-add     fleecing node: a temporary qcow2 in the export's private
//!                    directory, backing = the exported (active) node
//!   transaction {    one instant, between two guest requests:
//!     block-dirty-bitmap-add    scoria-backup-<new>, persistent, enabled:
//!                               tracks every write from this instant on
//!     block-dirty-bitmap-add    scoria-fleece-<new>, temporary, disabled
//!     block-dirty-bitmap-merge  the parent's bitmap into it: the frozen set
//!                               of changes since the parent backup
//!     blockdev-backup           sync none, active → fleecing node: before a
//!                               guest write lands, the old data is copied
//!                               into the fleecing node (copy-before-write)
//!   }
//!   block-export-add  the fleecing node, read-only, NBD, offering the
//!                     temporary bitmap (qemu finds it through the backing
//!                     chain)
//! ```
//!
//! Reading the fleecing node gives the copied old data where the guest wrote
//! since, and the active node's (unchanged) data elsewhere: the volume as it
//! was at the transaction. No layer is added to the volume's chain and the
//! guest keeps writing at full speed (each first write to a cluster costs one
//! copy). [`FileExporter::unfleece`] takes it all down again: the export, the
//! job, the node, the temporary bitmap, the file. Both converge from whatever
//! they find (a Scoria crash leaves the daemon running with any prefix of
//! this done), so a caller asks again after any failure.
//!
//! qemu's NBD server is one per daemon (`nbd-server-start` refuses a second),
//! so the fleecing export is on the attachment's server: its unix socket, or
//! its TCP port with its TLS pre-shared key, which the reader presents from
//! the export's own `keys.psk`. A guest holding that key could open the
//! fleecing export too, read-only: its own volume's data of a moment ago,
//! nothing it could not read already.
//!
//! A read-only export's daemon opened the image read-only: it can neither
//! add a persistent bitmap nor host a copy-before-write job, and is refused
//! here ([`ExportError::InvalidSpec`]); the caller decides (core refuses an
//! in-use backup of a volume with no writable attachment).
//!
//! Persistent bitmaps added in a daemon are in memory and flagged `in-use` in
//! the file until the daemon closes the image (a detach, a clean stop): a
//! daemon killed with -9 leaves them in-use, which every reader treats as
//! untrustworthy (the next incremental reads everything).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use super::config::{path_str, served_by_options};
use super::dir::read_key_file;
use super::live::{exported_node, live_top, nodes, qmp_err};
use super::{FileExporter, PSK_DIR, PSK_FILE};
use crate::export::{ExportError, Result, validate_id};
use crate::qemu::nbd::{NbdSource, NbdTls};
use crate::qemu::qmp::QmpError;
use crate::qemu::qsd::{self, Daemon, DaemonError};

/// How long a cancelled job or removed export may take to go.
const GONE_WITHIN: Duration = Duration::from_secs(10);

/// A fleecing export ready to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fleece {
    pub source: NbdSource,
    /// The temporary bitmap the export offers (the changes since the parent
    /// backup), when the parent's bitmap was usable in the daemon.
    pub changes: Option<String>,
    /// Why there is none although a parent was named.
    pub no_changes: Option<String>,
}

/// A dirty bitmap of the exported node, as the daemon reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveBitmap {
    pub name: String,
    pub persistent: bool,
    /// Loaded from a file a writer did not close: not to be trusted.
    pub inconsistent: bool,
}

/// The names one backup's fleecing uses inside a daemon. Node names are at
/// most 31 bytes in qemu, so they carry the backup id's first 12 hex digits
/// (one backup of a volume runs at a time; the rest tells leftovers apart).
struct Names {
    node: String,
    file_node: String,
    job: String,
    export: String,
    bitmap: String,
}

fn names(backup_id: &str) -> Names {
    let short: String = backup_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(12)
        .collect();
    Names {
        node: format!("fleece-{short}"),
        file_node: format!("fleecefile-{short}"),
        job: format!("fleece-{short}"),
        export: format!("backup-{backup_id}"),
        bitmap: format!("scoria-fleece-{backup_id}"),
    }
}

fn invalid(id: &str, detail: impl Into<String>) -> ExportError {
    ExportError::InvalidSpec {
        id: id.to_owned(),
        detail: detail.into(),
    }
}

/// The dirty bitmaps of node `node`.
fn bitmaps_of(nodes: &[Value], node: &str) -> Vec<LiveBitmap> {
    nodes
        .iter()
        .find(|n| n["node-name"] == node)
        .and_then(|n| n["dirty-bitmaps"].as_array())
        .map(|all| {
            all.iter()
                .filter_map(|b| {
                    Some(LiveBitmap {
                        name: b["name"].as_str()?.to_owned(),
                        persistent: b["persistent"].as_bool().unwrap_or(false),
                        inconsistent: b["inconsistent"].as_bool().unwrap_or(false),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn has_job(daemon: &Daemon, job: &str) -> Result<bool, QmpError> {
    let jobs = daemon
        .qmp()
        .execute("query-block-jobs", Value::Null)
        .await?;
    Ok(jobs
        .as_array()
        .is_some_and(|jobs| jobs.iter().any(|j| j["device"] == job)))
}

async fn has_export(daemon: &Daemon, export: &str) -> Result<bool, QmpError> {
    let exports = daemon
        .qmp()
        .execute("query-block-exports", Value::Null)
        .await?;
    Ok(exports
        .as_array()
        .is_some_and(|all| all.iter().any(|e| e["id"] == export)))
}

/// Wait until `gone` says so, or fail after [`GONE_WITHIN`].
async fn wait_until<F, Fut>(id: &str, what: &str, mut gone: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, QmpError>>,
{
    let deadline = tokio::time::Instant::now() + GONE_WITHIN;
    loop {
        if gone().await.map_err(qmp_err(id))? {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ExportError::Daemon {
                id: id.to_owned(),
                source: DaemonError::Qmp(QmpError::Timeout {
                    what: what.to_owned(),
                    after: GONE_WITHIN,
                }),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl FileExporter {
    fn fleece_file(&self, id: &str, backup_id: &str) -> PathBuf {
        self.export_dir(id)
            .join(format!("fleece-{backup_id}.qcow2"))
    }

    /// Start (or find) the fleecing export of backup `backup_id` in export
    /// `id`'s daemon (see the module doc): `new_bitmap` is added to the
    /// exported node, and when `parent_bitmap` is there and consistent the
    /// export offers the changes it recorded. `None` when no daemon serves
    /// `id`. Idempotent: a fleecing export already there is returned as it is.
    pub async fn fleece(
        &self,
        id: &str,
        backup_id: &str,
        new_bitmap: &str,
        parent_bitmap: Option<&str>,
    ) -> Result<Option<Fleece>> {
        validate_id(id)?;
        let slot = self.slot(id);
        let mut guard = slot.lock().await;
        let Some(daemon) = self.current(id, guard.take()).await? else {
            return Ok(None);
        };
        let done = self
            .fleece_in(&daemon, id, backup_id, new_bitmap, parent_bitmap)
            .await;
        *guard = Some(daemon);
        done.map(Some)
    }

    async fn fleece_in(
        &self,
        daemon: &Daemon,
        id: &str,
        backup_id: &str,
        new_bitmap: &str,
        parent_bitmap: Option<&str>,
    ) -> Result<Fleece> {
        let qmp = daemon.qmp();
        let err = || qmp_err(id);
        let n = names(backup_id);
        let served = served_by_options(&qsd::options_of(daemon.args()))
            .ok_or_else(|| invalid(id, "its daemon does not describe an export"))?;
        if served.read_only {
            return Err(invalid(
                id,
                "the export is read-only: its daemon opened the image read-only and cannot track or copy writes",
            ));
        }
        let tls = if served.tls {
            let dir = self.export_dir(id);
            let line = read_key_file(&dir)
                .await?
                .ok_or_else(|| invalid(id, "its TLS key file is missing"))?;
            let identity = line
                .split_once(':')
                .map(|(i, _)| i.to_owned())
                .ok_or_else(|| invalid(id, format!("its {PSK_FILE} is malformed")))?;
            Some(NbdTls {
                dir: dir.join(PSK_DIR),
                identity,
            })
        } else {
            None
        };
        let source = NbdSource {
            address: served.address.clone(),
            export: n.export.clone(),
            tls,
        };
        let top = live_top(daemon)
            .await
            .map_err(err())?
            .ok_or_else(|| invalid(id, "its daemon serves no export to back up"))?;
        let all = nodes(daemon).await.map_err(err())?;
        let bitmaps = bitmaps_of(&all, &top.node);
        let find = |name: &str| bitmaps.iter().find(|b| b.name == name);
        let no_changes = parent_bitmap.and_then(|p| match find(p) {
            None => Some(format!(
                "the dirty bitmap {p} is not in the volume's active image (a snapshot, revert or restore since)"
            )),
            Some(b) if b.inconsistent => Some(format!(
                "the dirty bitmap {p} is inconsistent: the daemon that wrote the volume was killed before it closed the image, so the bitmap was left in-use"
            )),
            Some(_) => None,
        });
        let changes = match (parent_bitmap, &no_changes) {
            (Some(_), None) => Some(n.bitmap.clone()),
            _ => None,
        };
        if has_export(daemon, &n.export).await.map_err(err())? {
            let offered = find(&n.bitmap).is_some();
            return Ok(Fleece {
                source,
                changes: changes.filter(|_| offered),
                no_changes: no_changes.or_else(|| {
                    (parent_bitmap.is_some() && !offered)
                        .then(|| "the fleecing export offers no dirty bitmap".to_owned())
                }),
            });
        }
        if !has_job(daemon, &n.job).await.map_err(err())? {
            // A new instant: whatever an interrupted run left goes first.
            if all.iter().any(|x| x["node-name"] == n.node.as_str()) {
                qmp.execute("blockdev-del", json!({"node-name": n.node}))
                    .await
                    .map_err(err())?;
            }
            if find(&n.bitmap).is_some() {
                qmp.execute(
                    "block-dirty-bitmap-remove",
                    json!({"node": top.node, "name": n.bitmap}),
                )
                .await
                .map_err(err())?;
            }
            if find(new_bitmap).is_some_and(|b| b.inconsistent) {
                qmp.execute(
                    "block-dirty-bitmap-remove",
                    json!({"node": top.node, "name": new_bitmap}),
                )
                .await
                .map_err(err())?;
            }
            let file = self.fleece_file(id, backup_id);
            match tokio::fs::remove_file(&file).await {
                Ok(()) => {}
                Err(e) if super::is_not_found(&e) => {}
                Err(e) => return Err(super::io_err(format!("removing {}", file.display()))(e)),
            }
            crate::qemu::img::create(&file, crate::Format::Qcow2, top.virtual_size)
                .await
                .map_err(|e| invalid(id, format!("its fleecing image cannot be made: {e}")))?;
            qmp.execute(
                "blockdev-add",
                json!({
                    "driver": "qcow2",
                    "node-name": n.node,
                    "file": {
                        "driver": "file",
                        "node-name": n.file_node,
                        "filename": path_str(&file),
                    },
                    "backing": top.node,
                    "discard": "unmap",
                }),
            )
            .await
            .map_err(err())?;
            let mut actions = Vec::new();
            if find(new_bitmap).is_none_or(|b| b.inconsistent) {
                actions.push(json!({"type": "block-dirty-bitmap-add", "data": {
                    "node": top.node, "name": new_bitmap, "persistent": true}}));
            }
            if let (Some(parent), Some(temp)) = (parent_bitmap, &changes) {
                actions.push(json!({"type": "block-dirty-bitmap-add", "data": {
                    "node": top.node, "name": temp, "persistent": false, "disabled": true}}));
                actions.push(json!({"type": "block-dirty-bitmap-merge", "data": {
                    "node": top.node, "target": temp, "bitmaps": [parent]}}));
            }
            actions.push(json!({"type": "blockdev-backup", "data": {
                "job-id": n.job, "device": top.node, "target": n.node, "sync": "none"}}));
            qmp.execute("transaction", json!({ "actions": actions }))
                .await
                .map_err(err())?;
        }
        let mut export = json!({
            "type": "nbd",
            "id": n.export,
            "node-name": n.node,
            "name": n.export,
            "writable": false,
        });
        if let Some(temp) = &changes {
            export["bitmaps"] = json!([temp]);
        }
        qmp.execute("block-export-add", export)
            .await
            .map_err(err())?;
        tracing::info!(export = %id, backup = %backup_id, node = %top.node, "fleecing export started");
        Ok(Fleece {
            source,
            changes,
            no_changes,
        })
    }

    /// Take down backup `backup_id`'s fleecing in export `id`'s daemon: its
    /// export, job, node, temporary bitmap and file. Idempotent; a daemon
    /// that is gone took its part with it.
    pub async fn unfleece(&self, id: &str, backup_id: &str) -> Result<()> {
        validate_id(id)?;
        let slot = self.slot(id);
        let mut guard = slot.lock().await;
        if let Some(daemon) = self.current(id, guard.take()).await? {
            let done = unfleece_in(&daemon, id, backup_id).await;
            *guard = Some(daemon);
            done?;
        }
        let file = self.fleece_file(id, backup_id);
        match tokio::fs::remove_file(&file).await {
            Ok(()) => Ok(()),
            Err(e) if super::is_not_found(&e) => Ok(()),
            Err(e) => Err(super::io_err(format!("removing {}", file.display()))(e)),
        }
    }

    /// The dirty bitmaps of the node export `id` serves; `None` when no
    /// daemon serves it.
    pub async fn live_bitmaps(&self, id: &str) -> Result<Option<Vec<LiveBitmap>>> {
        validate_id(id)?;
        let slot = self.slot(id);
        let mut guard = slot.lock().await;
        let Some(daemon) = self.current(id, guard.take()).await? else {
            return Ok(None);
        };
        let found = async {
            let Some(node) = exported_node(&daemon).await? else {
                return Ok(Vec::new());
            };
            Ok(bitmaps_of(&nodes(&daemon).await?, &node))
        }
        .await
        .map_err(qmp_err(id));
        *guard = Some(daemon);
        found.map(Some)
    }

    /// Remove the persistent bitmaps of export `id`'s node that `drop`
    /// selects (`block-dirty-bitmap-remove`, which also removes them from
    /// the image file). Returns `false` when no daemon serves `id` (the
    /// caller removes them from the file). Idempotent.
    pub async fn remove_bitmaps_live(
        &self,
        id: &str,
        drop: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<bool> {
        validate_id(id)?;
        let slot = self.slot(id);
        let mut guard = slot.lock().await;
        let Some(daemon) = self.current(id, guard.take()).await? else {
            return Ok(false);
        };
        let done = async {
            let Some(node) = exported_node(&daemon).await? else {
                return Ok(false);
            };
            for b in bitmaps_of(&nodes(&daemon).await?, &node) {
                if b.persistent && drop(&b.name) {
                    daemon
                        .qmp()
                        .execute(
                            "block-dirty-bitmap-remove",
                            json!({"node": node, "name": b.name}),
                        )
                        .await?;
                    tracing::info!(export = %id, bitmap = %b.name, "dirty bitmap removed");
                }
            }
            Ok(true)
        }
        .await
        .map_err(qmp_err(id));
        *guard = Some(daemon);
        done
    }
}

async fn unfleece_in(daemon: &Daemon, id: &str, backup_id: &str) -> Result<()> {
    let qmp = daemon.qmp();
    let err = || qmp_err(id);
    let n = names(backup_id);
    if has_export(daemon, &n.export).await.map_err(err())? {
        qmp.execute("block-export-del", json!({"id": n.export, "mode": "hard"}))
            .await
            .map_err(err())?;
        wait_until(id, "the removal of the fleecing export", || async {
            Ok(!has_export(daemon, &n.export).await?)
        })
        .await?;
    }
    if has_job(daemon, &n.job).await.map_err(err())? {
        qmp.execute("block-job-cancel", json!({"device": n.job, "force": true}))
            .await
            .map_err(err())?;
        wait_until(id, "the end of the fleecing job", || async {
            Ok(!has_job(daemon, &n.job).await?)
        })
        .await?;
    }
    let all = nodes(daemon).await.map_err(err())?;
    if all.iter().any(|x| x["node-name"] == n.node.as_str()) {
        qmp.execute("blockdev-del", json!({"node-name": n.node}))
            .await
            .map_err(err())?;
    }
    if let Some(node) = exported_node(daemon).await.map_err(err())?
        && bitmaps_of(&all, &node).iter().any(|b| b.name == n.bitmap)
    {
        qmp.execute(
            "block-dirty-bitmap-remove",
            json!({"node": node, "name": n.bitmap}),
        )
        .await
        .map_err(err())?;
    }
    tracing::info!(export = %id, backup = %backup_id, "fleecing export removed");
    Ok(())
}
