//! Volumes as the API shows them: the record, its type's name, and the
//! progress of the last flow that worked on it (read in one query for a page).

use std::collections::BTreeMap;

use scoria_model::VolumeTypeId;
use scoria_store::volumes::Volume;
use scoria_store::{Conn, flows as flow_store, volume_types};

use super::VolumeView;
use crate::error::Result;

pub(super) async fn views(conn: &mut Conn, vols: Vec<Volume>) -> Result<Vec<VolumeView>> {
    let flow_ids: Vec<String> = vols.iter().filter_map(|v| v.last_flow_id.clone()).collect();
    let flows = flow_store::flow_get_many(conn, &flow_ids).await?;
    let images: Vec<_> = vols.iter().filter_map(|v| v.image_id).collect();
    let statuses = scoria_store::images::image_status_many(conn, &images).await?;
    let from_images: Vec<_> = vols
        .iter()
        .filter(|v| v.glance_image_id.is_some())
        .map(|v| v.id)
        .collect();
    let mut image_metadata =
        scoria_store::volume_images::volume_image_metadata_get_many(conn, &from_images).await?;
    let mut type_names: BTreeMap<VolumeTypeId, String> = BTreeMap::new();
    let mut out = Vec::with_capacity(vols.len());
    for v in vols {
        let type_name = match type_names.get(&v.volume_type_id) {
            Some(n) => n.clone(),
            None => {
                let n = volume_types::volume_type_get(conn, v.volume_type_id)
                    .await?
                    .map(|t| t.name)
                    .unwrap_or_else(|| v.volume_type_id.to_string());
                type_names.insert(v.volume_type_id, n.clone());
                n
            }
        };
        let progress = v
            .last_flow_id
            .as_ref()
            .and_then(|id| flows.get(id))
            .map(crate::rules::progress::of_flow);
        let image = v.image_id.and_then(|i| statuses.get(&i).cloned());
        let image_metadata = image_metadata.remove(&v.id.to_string()).unwrap_or_default();
        let attachments = if v.attach_status == scoria_model::volume::AttachStatus::Detached {
            Vec::new()
        } else {
            scoria_store::attachments::attachment_list_for_volume(conn, v.id)
                .await?
                .into_iter()
                .filter(|a| a.status == scoria_model::attachment::AttachmentStatus::Attached)
                .collect()
        };
        out.push(VolumeView {
            image_metadata,
            volume: v,
            volume_type_name: type_name,
            progress,
            image,
            attachments,
        });
    }
    Ok(out)
}
