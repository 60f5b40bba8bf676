//! Volume views: Cinder's volume bodies, field by field, at each
//! microversion. They are kept apart from the handlers because every answer
//! that shows a volume (create, show, list, update) builds them, and strict
//! clients (tempest) check them against Cinder's exact schemas.

use scoria_core::volumes::VolumeView;
use scoria_model::VolumeId;
use scoria_model::flow::Progress;
use scoria_model::image::ImageHealth;
use serde_json::{Map, Value, json};

use crate::microversion::Version;

/// The full view of a volume (`detail`). `admin` adds the admin-only
/// attributes (host, project, migration status): Cinder shows them in show and
/// list views, not in the answers to create and update. With `progress`, the
/// view also carries Scoria's status keys ([`scoria_status`]). They are asked
/// for with `?with_progress=true`, because strict clients (tempest) validate
/// volume views against Cinder's exact schemas and refuse unknown keys.
pub fn detail(
    view: &VolumeView,
    admin: bool,
    read: bool,
    v: Version,
    links: &(String, String),
    progress: bool,
) -> Value {
    let vol = &view.volume;
    let mut o = json!({
        "id": vol.id.to_string(),
        "status": vol.status.as_str(),
        "size": vol.size,
        "availability_zone": vol.availability_zone,
        "created_at": vol.created_at,
        "updated_at": vol.updated_at,
        "name": vol.name,
        "description": vol.description,
        "volume_type": view.volume_type_name,
        "snapshot_id": vol.snapshot_id,
        "source_volid": vol.source_volid,
        "metadata": vol.metadata,
        "links": link_list(links, &vol.id),
        "user_id": vol.user_id,
        "bootable": if vol.bootable { "true" } else { "false" },
        "encrypted": false,
        "replication_status": null,
        "consistencygroup_id": null,
        "multiattach": vol.multiattach,
        "attachments": view.attachments.iter().map(|a| json!({
            "id": vol.id.to_string(),
            "attachment_id": a.id.to_string(),
            "volume_id": vol.id.to_string(),
            "server_id": a.instance_uuid,
            "host_name": a.host_name,
            "device": a.mountpoint,
            "attached_at": a.attached_at,
        })).collect::<Vec<_>>(),
    });
    let m = o.as_object_mut().expect("object");
    // The `os-vol-*` attributes are Cinder's extension attributes: they
    // extend the show and detail views only (`read`), never the answers of
    // create and update (tempest's schemas refuse them there). Whoever may see
    // a volume may read its project (`volume_extension:volume_tenant_attribute`
    // is admin-or-owner): after a transfer the new owner reads it to confirm
    // the move. Host and migration attributes are for admins.
    if read {
        m.insert("os-vol-tenant-attr:tenant_id".into(), json!(vol.project_id));
    }
    // Cinder's `volume_image_metadata` extension: in show and detail views of
    // volumes made from an image.
    if read && !view.image_metadata.is_empty() {
        m.insert("volume_image_metadata".into(), json!(view.image_metadata));
    }
    if read && admin {
        m.insert(
            "os-vol-host-attr:host".into(),
            json!(vol.backend.as_deref().map(scoria_core::services::pool_name)),
        );
        m.insert(
            "os-vol-mig-status-attr:migstat".into(),
            json!(vol.migration_status),
        );
        m.insert("os-vol-mig-status-attr:name_id".into(), Value::Null);
    }
    if admin {
        m.insert("migration_status".into(), json!(vol.migration_status));
    }
    if let Some(ro) = vol.read_only {
        // Cinder shows the read-only flag, once set, as admin metadata inside
        // `metadata` ("True"/"False"), with the attach mode it implies.
        if let Some(md) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            md.insert("readonly".into(), json!(if ro { "True" } else { "False" }));
            md.insert("attached_mode".into(), json!(if ro { "ro" } else { "rw" }));
        }
    }
    if v.at_least(13) {
        m.insert(
            "group_id".into(),
            json!(vol.group_id.map(|g| g.to_string())),
        );
    }
    if v.at_least(21) && admin {
        m.insert("provider_id".into(), Value::Null);
    }
    if v.at_least(48) {
        m.insert("shared_targets".into(), json!(false));
        m.insert("service_uuid".into(), Value::Null);
    }
    if v.at_least(61) && admin {
        m.insert("cluster_name".into(), Value::Null);
    }
    if v.at_least(63) {
        m.insert(
            "volume_type_id".into(),
            json!(vol.volume_type_id.to_string()),
        );
    }
    if v.at_least(64) {
        m.insert("encryption_key_id".into(), Value::Null);
    }
    if v.at_least(65) {
        m.insert("consumes_quota".into(), json!(true));
    }
    if progress {
        let image = view.image.as_ref().map(|i| ImageBrief {
            health: i.health,
            reason: i.reason.as_deref(),
            chain_depth: i.depth,
        });
        scoria_status(m, view.progress.as_ref(), image);
    }
    o
}

/// What `scoria:image` shows of an image.
pub struct ImageBrief<'a> {
    pub health: ImageHealth,
    pub reason: Option<&'a str>,
    /// How many images the chain under the volume holds, its own included.
    pub chain_depth: i64,
}

/// Scoria's opt-in status keys of a volume or snapshot view:
/// `scoria:progress`, the state of the last operation on it (stage `i/N`,
/// step, percent, last error), and `scoria:image`, the health of the image it
/// reads (`optimized`, `degraded`, `broken`, with the reason) and the depth of
/// the chain of images under it. Each is left out while there is nothing to
/// show (no operation yet, no image yet).
pub fn scoria_status(
    m: &mut Map<String, Value>,
    progress: Option<&Progress>,
    image: Option<ImageBrief<'_>>,
) {
    if let Some(p) = progress {
        m.insert(
            "scoria:progress".into(),
            json!({
                "operation": p.operation,
                "state": p.state.as_str(),
                "stage": p.stage_label(),
                "step": p.step,
                "percent": p.percent,
                "last_error": p.last_error,
            }),
        );
    }
    if let Some(i) = image {
        m.insert(
            "scoria:image".into(),
            json!({
                "health": i.health.as_str(),
                "reason": i.reason,
                "chain_depth": i.chain_depth,
            }),
        );
    }
}

fn link_list(links: &(String, String), id: &VolumeId) -> Value {
    json!([
        {"rel": "self", "href": format!("{}/volumes/{id}", links.0)},
        {"rel": "bookmark", "href": format!("{}/volumes/{id}", links.1)},
    ])
}

pub fn summary(view: &VolumeView, links: &(String, String)) -> Value {
    json!({
        "id": view.volume.id.to_string(),
        "name": view.volume.name,
        "links": link_list(links, &view.volume.id),
    })
}
