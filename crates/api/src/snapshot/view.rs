//! Snapshot views: Cinder's snapshot bodies, field by field, at each
//! microversion. Strict clients (tempest) check them against Cinder's exact
//! schemas, which refuse unknown keys, so each answer shows exactly what
//! Cinder's shows there:
//!
//! - [`summary`] (`GET /snapshots`): id, times, name, description, volume,
//!   status, size, metadata;
//! - [`detail`] (create, update, show, `GET /snapshots/detail`): the summary,
//!   plus `group_snapshot_id` from 3.14, `user_id` from 3.41 and
//!   `consumes_quota` from 3.65; in show and the detailed list only (`read`),
//!   Cinder's extension attributes `os-extended-snapshot-attributes:project_id`
//!   and `…:progress`.
//!
//! With `status` (`?with_progress=true`), a view also carries Scoria's
//! `scoria:progress` and `scoria:image` (see [`scoria_status`]).

use scoria_core::snapshots::SnapshotView;
use serde_json::{Value, json};

use crate::microversion::Version;
use crate::volume::view::{ImageBrief, scoria_status};

/// Microversion from which views name a snapshot's group snapshot.
const WITH_GROUP_SNAPSHOT: u32 = 14;
/// Microversion from which views name the user who took a snapshot.
const WITH_USER: u32 = 41;
/// Microversion from which views say whether a snapshot counts against quota.
const WITH_QUOTA_FLAG: u32 = 65;

/// The fields every snapshot view has.
pub fn summary(view: &SnapshotView, status: bool) -> Value {
    let s = &view.snapshot;
    let mut o = json!({
        "id": s.id.to_string(),
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        "name": s.name,
        "description": s.description,
        "volume_id": s.volume_id.to_string(),
        "status": s.status.as_str(),
        "size": s.size,
        "metadata": s.metadata,
    });
    if status {
        let m = o.as_object_mut().expect("object");
        let image = view.image.as_ref().map(|i| ImageBrief {
            health: i.health,
            reason: i.reason.as_deref(),
            chain_depth: i.depth,
        });
        scoria_status(m, view.progress.as_ref(), image);
    }
    o
}

/// The detailed view of a snapshot; `read` for show and the detailed list,
/// which add Cinder's extension attributes.
pub fn detail(view: &SnapshotView, v: Version, read: bool, status: bool) -> Value {
    let s = &view.snapshot;
    let mut o = summary(view, status);
    let m = o.as_object_mut().expect("object");
    if v.at_least(WITH_GROUP_SNAPSHOT) {
        m.insert("group_snapshot_id".into(), json!(s.group_snapshot_id));
    }
    if v.at_least(WITH_USER) {
        m.insert("user_id".into(), json!(s.user_id));
    }
    if v.at_least(WITH_QUOTA_FLAG) {
        // Every Scoria snapshot counts against its project's quota (Cinder's
        // temporary snapshots of migrations, which do not, do not exist here).
        m.insert("consumes_quota".into(), json!(true));
    }
    if read {
        m.insert(
            "os-extended-snapshot-attributes:project_id".into(),
            json!(s.project_id),
        );
        m.insert(
            "os-extended-snapshot-attributes:progress".into(),
            json!(view.percent()),
        );
    }
    o
}
