//! Changing what a running export serves without stopping its daemon.
//!
//! - **Snapshot** ([`FileExporter::snapshot_live`]): a new, empty qcow2
//!   overlay of the served image is opened in the daemon with no backing
//!   (`blockdev-add`) and put on top of the exported node
//!   (`blockdev-snapshot`). qemu drains the node's I/O, flushes it, makes it
//!   the overlay's backing and moves the export's block backend onto the
//!   overlay, all between two requests: the client keeps its connection and
//!   sees nothing; from then on the old top no longer changes, which is what
//!   makes it a snapshot.
//! - **Resize** ([`FileExporter::resize_live`]): qemu's NBD export does not
//!   share the `resize` permission, and NBD tells a client the size only when
//!   it connects. So the export is taken down (`block-export-del`, mode
//!   `hard`: its clients are disconnected), its node grown (`block_resize`),
//!   and the export added again with the same name and the same server,
//!   address and key. A client reconnects (qemu's NBD client with
//!   `reconnect-delay` does so by itself) and a new connection sees the new
//!   size.
//!
//! After a snapshot the daemon no longer serves what its command line says:
//! [`live_top`] reads the exported node's file from QMP, and the exporter
//! uses it whenever it compares a running daemon with a spec. Each operation
//! converges from whatever it finds (the overlay already on top, a node added
//! by an interrupted run, an export removed by an interrupted resize), so a
//! caller that crashed simply asks again.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use super::chain::Layer;
use super::config::{EXPORT_ID, path_str, served_by_options};
use super::{FileExporter, daemon_err};
use crate::Format;
use crate::export::{ExportError, Result, validate_id};
use crate::qemu::qmp::QmpError;
use crate::qemu::qsd::{self, Daemon, DaemonError};

/// How long a removed export may take to let go of its clients.
const EXPORT_GONE_WITHIN: Duration = Duration::from_secs(10);

/// The node an export serves, as its daemon reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Top {
    pub(super) node: String,
    /// The node's image file.
    pub(super) path: PathBuf,
    /// Bytes.
    pub(super) virtual_size: u64,
}

/// The daemon's named block nodes (`query-named-block-nodes`, flat).
pub(super) async fn nodes(daemon: &Daemon) -> Result<Vec<Value>, QmpError> {
    let nodes = daemon
        .qmp()
        .execute("query-named-block-nodes", json!({"flat": true}))
        .await?;
    Ok(nodes.as_array().cloned().unwrap_or_default())
}

/// The node export `EXPORT_ID` serves, if the export exists.
pub(super) async fn exported_node(daemon: &Daemon) -> Result<Option<String>, QmpError> {
    let exports = daemon
        .qmp()
        .execute("query-block-exports", Value::Null)
        .await?;
    Ok(exports.as_array().and_then(|exports| {
        exports
            .iter()
            .find(|e| e["id"] == EXPORT_ID)
            .and_then(|e| e["node-name"].as_str())
            .map(str::to_owned)
    }))
}

/// The image file a node's `file` (or `backing_file`) names. qemu writes a
/// node whose options differ from what its file alone implies (a qcow2 node
/// given its backing by `blockdev-snapshot`, say) as `json:{…}`, whose
/// `file.filename` is the file.
pub(super) fn file_of(name: &Value) -> Option<PathBuf> {
    let name = name.as_str()?;
    match name.strip_prefix("json:") {
        Some(json) => {
            let options: Value = serde_json::from_str(json).ok()?;
            options["file"]["filename"].as_str().map(PathBuf::from)
        }
        None => Some(PathBuf::from(name)),
    }
}

/// What a format node (qcow2 or raw) of `nodes` is: its file and size.
fn top_of(nodes: &[Value], node: &str) -> Option<Top> {
    let info = nodes.iter().find(|n| n["node-name"] == node)?;
    Some(Top {
        node: node.to_owned(),
        path: file_of(&info["file"])?,
        virtual_size: info["image"]["virtual-size"].as_u64()?,
    })
}

/// The top of the chain the daemon holds: the format node no other format
/// node has as its backing file. Used when the export is gone (a resize was
/// interrupted between removing and adding it).
fn chain_top(nodes: &[Value]) -> Option<Top> {
    let format = |n: &&Value| n["drv"] == "qcow2" || n["drv"] == "raw";
    let backings: Vec<PathBuf> = nodes
        .iter()
        .filter(format)
        .filter_map(|n| file_of(&n["backing_file"]))
        .collect();
    let mut tops = nodes
        .iter()
        .filter(format)
        .filter(|n| file_of(&n["file"]).is_some_and(|f| !backings.contains(&f)));
    let top = tops.next()?;
    if tops.next().is_some() {
        return None;
    }
    top_of(nodes, top["node-name"].as_str()?)
}

/// The node the export serves now and its file, from QMP. `None` if the
/// daemon has no export.
pub(super) async fn live_top(daemon: &Daemon) -> Result<Option<Top>, QmpError> {
    let Some(node) = exported_node(daemon).await? else {
        return Ok(None);
    };
    Ok(top_of(&nodes(daemon).await?, &node))
}

/// A node name of the form `{prefix}{n}` that `nodes` does not use.
fn free_name(nodes: &[Value], prefix: &str) -> String {
    (0..)
        .map(|n| format!("{prefix}{n}"))
        .find(|name| nodes.iter().all(|n| n["node-name"] != name.as_str()))
        .unwrap_or_else(|| prefix.to_owned())
}

pub(super) fn qmp_err(id: &str) -> impl FnOnce(QmpError) -> ExportError {
    let id = id.to_owned();
    move |e| ExportError::Daemon {
        id,
        source: DaemonError::Qmp(e),
    }
}

impl FileExporter {
    /// Put `overlay` — a qcow2 image of this backend whose backing file is the
    /// image export `id` serves now — on top of the export while it serves
    /// (see the module doc). Returns `false` when no daemon serves `id`: there
    /// is nothing to switch, and the next ensure of a spec naming `overlay`
    /// serves its whole chain. Idempotent: an export already on `overlay` is
    /// success.
    pub(super) async fn snapshot_live(&self, id: &str, overlay: &str) -> Result<bool> {
        validate_id(id)?;
        if crate::format_of_name(overlay).ok() != Some(Format::Qcow2) {
            return Err(ExportError::InvalidSpec {
                id: id.to_owned(),
                detail: format!("the new top {overlay:?} is not a qcow2 image name"),
            });
        }
        let layers = self.chain(overlay).await?;
        let slot = self.slot(id);
        let mut guard = slot.lock().await;
        let Some(daemon) = self.current(id, guard.take()).await? else {
            return Ok(false);
        };
        let done = snapshot_in(&daemon, id, overlay, &layers).await;
        *guard = Some(daemon);
        done.map(|()| true)
    }

    /// Grow the image export `id` serves (its top layer) to `size` bytes while
    /// it is served (see the module doc). Returns `false` when no daemon can
    /// do it: none runs, or the export is read-only (its daemon opened the
    /// image read-only, so it is stopped here). The caller then grows the
    /// image offline and serves it again. Idempotent: an image already that
    /// big only gets its export back if an interrupted run left it without.
    pub(super) async fn resize_live(&self, id: &str, size: u64) -> Result<bool> {
        validate_id(id)?;
        let slot = self.slot(id);
        let mut guard = slot.lock().await;
        let Some(daemon) = self.current(id, guard.take()).await? else {
            return Ok(false);
        };
        let Some(served) = served_by_options(&qsd::options_of(daemon.args())) else {
            return Err(ExportError::InvalidSpec {
                id: id.to_owned(),
                detail: "its daemon does not describe an export".into(),
            });
        };
        if served.read_only {
            daemon.stop().await.map_err(daemon_err(id))?;
            return Ok(false);
        }
        let done = resize_in(&daemon, id, &served.export_name, size).await;
        *guard = Some(daemon);
        done.map(|()| true)
    }
}

async fn snapshot_in(daemon: &Daemon, id: &str, overlay: &str, layers: &[Layer]) -> Result<()> {
    let qmp = daemon.qmp();
    let err = || qmp_err(id);
    let overlay_path = &layers[0].path;
    let top = live_top(daemon)
        .await
        .map_err(err())?
        .ok_or_else(|| ExportError::InvalidSpec {
            id: id.to_owned(),
            detail: "its daemon serves no export to put a new layer under".into(),
        })?;
    if &top.path == overlay_path {
        return Ok(());
    }
    if layers.get(1).map(|l| &l.path) != Some(&top.path) {
        return Err(ExportError::InvalidSpec {
            id: id.to_owned(),
            detail: format!(
                "{overlay} is not layered on {}, the image the export serves",
                top.path.display()
            ),
        });
    }
    let nodes = nodes(daemon).await.map_err(err())?;
    let read_only = served_by_options(&qsd::options_of(daemon.args())).is_none_or(|s| s.read_only);
    // A run interrupted after adding the node finds it.
    let node = match nodes
        .iter()
        .find(|n| n["drv"] == "qcow2" && file_of(&n["file"]).as_ref() == Some(overlay_path))
    {
        Some(n) => n["node-name"].as_str().unwrap_or_default().to_owned(),
        None => {
            let node = free_name(&nodes, "snap");
            let discard = if read_only { "ignore" } else { "unmap" };
            qmp.execute(
                "blockdev-add",
                json!({
                    "driver": "qcow2",
                    "node-name": node,
                    "file": {
                        "driver": "file",
                        "node-name": free_name(&nodes, "snapfile"),
                        "filename": path_str(overlay_path),
                        "read-only": read_only,
                        "discard": discard,
                    },
                    "backing": null,
                    "read-only": read_only,
                    "discard": discard,
                }),
            )
            .await
            .map_err(err())?;
            node
        }
    };
    qmp.execute(
        "blockdev-snapshot",
        json!({"node": top.node, "overlay": node}),
    )
    .await
    .map_err(err())?;
    match live_top(daemon).await.map_err(err())? {
        Some(now) if &now.path == overlay_path => {
            tracing::info!(export = %id, from = %top.path.display(), to = %overlay, "export switched to a new top layer");
            Ok(())
        }
        other => Err(ExportError::InvalidSpec {
            id: id.to_owned(),
            detail: format!(
                "after the switch the export serves {:?}, not {overlay}",
                other.map(|t| t.path)
            ),
        }),
    }
}

async fn resize_in(daemon: &Daemon, id: &str, name: &str, size: u64) -> Result<()> {
    let qmp = daemon.qmp();
    let err = || qmp_err(id);
    let exported = exported_node(daemon).await.map_err(err())?;
    let nodes = nodes(daemon).await.map_err(err())?;
    let top = match &exported {
        Some(node) => top_of(&nodes, node),
        None => chain_top(&nodes),
    }
    .ok_or_else(|| ExportError::InvalidSpec {
        id: id.to_owned(),
        detail: "its daemon's block nodes do not form one chain".into(),
    })?;
    if top.virtual_size < size {
        if exported.is_some() {
            qmp.execute("block-export-del", json!({"id": EXPORT_ID, "mode": "hard"}))
                .await
                .map_err(err())?;
            wait_export_gone(daemon, id).await?;
        }
        qmp.execute("block_resize", json!({"node-name": top.node, "size": size}))
            .await
            .map_err(err())?;
        tracing::info!(export = %id, image = %top.path.display(), size, "exported image grown");
    } else if exported.is_some() {
        return Ok(());
    }
    qmp.execute(
        "block-export-add",
        json!({
            "type": "nbd",
            "id": EXPORT_ID,
            "node-name": top.node,
            "name": name,
            "writable": true,
        }),
    )
    .await
    .map_err(err())?;
    Ok(())
}

/// Wait until the daemon has let go of its removed export (its clients were
/// disconnected; the id is free again once they are gone).
async fn wait_export_gone(daemon: &Daemon, id: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + EXPORT_GONE_WITHIN;
    loop {
        if exported_node(daemon).await.map_err(qmp_err(id))?.is_none() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ExportError::Daemon {
                id: id.to_owned(),
                source: DaemonError::Qmp(QmpError::Timeout {
                    what: "the removal of the export".into(),
                    after: EXPORT_GONE_WITHIN,
                }),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
