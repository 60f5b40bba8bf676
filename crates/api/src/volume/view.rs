//! Volume views: Cinder's volume bodies, field by field, at each
//! microversion. They are kept apart from the handlers because every answer
//! that shows a volume (create, show, list, update) builds them, and strict
//! clients (tempest) check them against Cinder's exact schemas.

use scoria_core::volumes::VolumeView;
use scoria_model::flow::Progress;
use scoria_model::image::ImageHealth;
use serde::ser::{SerializeMap as _, SerializeSeq as _};
use serde::{Serialize, Serializer};
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
    serde_json::to_value(Detail {
        view,
        admin,
        read,
        v,
        links,
        progress,
    })
    .unwrap_or(Value::Null)
}

/// [`detail`] as a value that serializes itself: a page of 1000 volumes is
/// written straight into the response body, without building a JSON tree of
/// 40,000 entries first (which cost more than reading the page).
pub struct Detail<'a> {
    pub view: &'a VolumeView,
    pub admin: bool,
    pub read: bool,
    pub v: Version,
    pub links: &'a (String, String),
    pub progress: bool,
}

impl Serialize for Detail<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (view, v, admin, read) = (self.view, self.v, self.admin, self.read);
        let vol = &view.volume;
        let id = vol.id.to_string();
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("id", &id)?;
        m.serialize_entry("status", vol.status.as_str())?;
        m.serialize_entry("size", &vol.size)?;
        m.serialize_entry("availability_zone", &vol.availability_zone)?;
        m.serialize_entry("created_at", &vol.created_at)?;
        m.serialize_entry("updated_at", &vol.updated_at)?;
        m.serialize_entry("name", &vol.name)?;
        m.serialize_entry("description", &vol.description)?;
        m.serialize_entry("volume_type", &view.volume_type_name)?;
        m.serialize_entry("snapshot_id", &vol.snapshot_id)?;
        m.serialize_entry("source_volid", &vol.source_volid)?;
        // Cinder shows the read-only flag, once set, as admin metadata inside
        // `metadata` ("True"/"False"), with the attach mode it implies.
        m.serialize_entry(
            "metadata",
            &Metadata {
                user: &vol.metadata,
                read_only: vol.read_only,
            },
        )?;
        m.serialize_entry("links", &Links(self.links, &id))?;
        m.serialize_entry("user_id", &vol.user_id)?;
        m.serialize_entry("bootable", if vol.bootable { "true" } else { "false" })?;
        m.serialize_entry("encrypted", &false)?;
        m.serialize_entry("replication_status", &())?;
        m.serialize_entry("consistencygroup_id", &())?;
        m.serialize_entry("multiattach", &vol.multiattach)?;
        m.serialize_entry("attachments", &Attachments(view))?;
        // The `os-vol-*` attributes are Cinder's extension attributes: they
        // extend the show and detail views only (`read`), never the answers
        // of create and update (tempest's schemas refuse them there). Whoever
        // may see a volume may read its project
        // (`volume_extension:volume_tenant_attribute` is admin-or-owner):
        // after a transfer the new owner reads it to confirm the move. Host
        // and migration attributes are for admins.
        if read {
            m.serialize_entry("os-vol-tenant-attr:tenant_id", &vol.project_id)?;
        }
        // Cinder's `volume_image_metadata` extension: in show and detail views
        // of volumes made from an image.
        if read && !view.image_metadata.is_empty() {
            m.serialize_entry("volume_image_metadata", &view.image_metadata)?;
        }
        if read && admin {
            m.serialize_entry(
                "os-vol-host-attr:host",
                &vol.backend.as_deref().map(scoria_core::services::pool_name),
            )?;
            m.serialize_entry("os-vol-mig-status-attr:migstat", &vol.migration_status)?;
            m.serialize_entry("os-vol-mig-status-attr:name_id", &())?;
        }
        if admin {
            m.serialize_entry("migration_status", &vol.migration_status)?;
        }
        if v.at_least(13) {
            m.serialize_entry("group_id", &vol.group_id.map(|g| g.to_string()))?;
        }
        if v.at_least(21) && admin {
            m.serialize_entry("provider_id", &())?;
        }
        if v.at_least(48) {
            m.serialize_entry("shared_targets", &false)?;
            m.serialize_entry("service_uuid", &())?;
        }
        if v.at_least(61) && admin {
            m.serialize_entry("cluster_name", &())?;
        }
        if v.at_least(63) {
            m.serialize_entry("volume_type_id", &vol.volume_type_id.to_string())?;
        }
        if v.at_least(64) {
            m.serialize_entry("encryption_key_id", &())?;
        }
        if v.at_least(65) {
            m.serialize_entry("consumes_quota", &true)?;
        }
        if self.progress {
            let image = view.image.as_ref().map(|i| ImageBrief {
                health: i.health,
                reason: i.reason.as_deref(),
                chain_depth: i.depth,
            });
            let mut keys = Map::new();
            scoria_status(&mut keys, view.progress.as_ref(), image);
            for (k, val) in &keys {
                m.serialize_entry(k, val)?;
            }
        }
        m.end()
    }
}

/// A volume's metadata as Cinder shows it: the user's keys, plus `readonly`
/// and `attached_mode` once the read-only flag was set.
struct Metadata<'a> {
    user: &'a std::collections::BTreeMap<String, String>,
    read_only: Option<bool>,
}

impl Serialize for Metadata<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for (k, val) in self.user {
            if self.read_only.is_some() && (k == "readonly" || k == "attached_mode") {
                continue;
            }
            m.serialize_entry(k, val)?;
        }
        if let Some(ro) = self.read_only {
            m.serialize_entry("readonly", if ro { "True" } else { "False" })?;
            m.serialize_entry("attached_mode", if ro { "ro" } else { "rw" })?;
        }
        m.end()
    }
}

/// Cinder's attachment summaries inside a volume view.
struct Attachments<'a>(&'a VolumeView);

impl Serialize for Attachments<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let vol = self.0.volume.id.to_string();
        let mut l = s.serialize_seq(Some(self.0.attachments.len()))?;
        for a in &self.0.attachments {
            l.serialize_element(&json!({
                "id": vol,
                "attachment_id": a.id.to_string(),
                "volume_id": vol,
                "server_id": a.instance_uuid,
                "host_name": a.host_name,
                "device": a.mountpoint,
                "attached_at": a.attached_at,
            }))?;
        }
        l.end()
    }
}

/// The `self` and `bookmark` links of a volume.
struct Links<'a>(&'a (String, String), &'a str);

impl Serialize for Links<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Link<'b> {
            rel: &'b str,
            href: String,
        }
        let (base, id) = (self.0, self.1);
        [
            Link {
                rel: "self",
                href: format!("{}/volumes/{id}", base.0),
            },
            Link {
                rel: "bookmark",
                href: format!("{}/volumes/{id}", base.1),
            },
        ]
        .serialize(s)
    }
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

pub fn summary(view: &VolumeView, links: &(String, String)) -> Value {
    let id = view.volume.id.to_string();
    json!({
        "id": id,
        "name": view.volume.name,
        "links": Links(links, &id),
    })
}
