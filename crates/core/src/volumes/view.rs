//! Volumes as the API shows them: the record, its type's name, its image
//! metadata and attachments, and on request the progress of the last flow
//! that worked on it and its image's health (each read in one query for a
//! page).

use std::collections::BTreeMap;

use scoria_model::VolumeTypeId;
use scoria_store::volumes::Volume;
use scoria_store::{Conn, flows as flow_store, volume_types};

use super::VolumeView;
use crate::error::Result;

pub(super) async fn views(
    env: &crate::Env,
    conn: &mut Conn,
    vols: Vec<Volume>,
    with_status: bool,
) -> Result<Vec<VolumeView>> {
    // A page costs the same few queries whatever its length: type names,
    // image metadata and attachments for the whole page at once; the last
    // flow's progress and the image's health only when the caller shows them
    // (`with_progress`), since reading them costs more than the rest.
    let (mut flows, mut statuses) = (BTreeMap::new(), BTreeMap::new());
    if with_status {
        let flow_ids: Vec<String> = vols.iter().filter_map(|v| v.last_flow_id.clone()).collect();
        flows = flow_store::flow_get_many(conn, &flow_ids).await?;
        let images: Vec<_> = vols.iter().filter_map(|v| v.image_id).collect();
        statuses = scoria_store::images::image_status_many(conn, &images).await?;
    }
    let from_images: Vec<_> = vols
        .iter()
        .filter(|v| v.glance_image_id.is_some())
        .map(|v| v.id)
        .collect();
    let mut image_metadata =
        scoria_store::volume_images::volume_image_metadata_get_many(conn, &from_images).await?;
    // Read with the rows as a rule; looked up only for volumes read without.
    let mut types: Vec<VolumeTypeId> = vols
        .iter()
        .filter(|v| v.volume_type_name.is_none())
        .map(|v| v.volume_type_id)
        .collect();
    types.sort_unstable();
    types.dedup();
    let type_names = if types.is_empty() {
        BTreeMap::new()
    } else {
        volume_types::volume_type_names(conn, &types).await?
    };
    let attached: Vec<_> = vols
        .iter()
        .filter(|v| v.attach_status != scoria_model::volume::AttachStatus::Detached)
        .map(|v| v.id)
        .collect();
    let mut attachments = if attached.is_empty() {
        BTreeMap::new()
    } else {
        scoria_store::attachments::attachment_list_attached_for(conn, &attached).await?
    };
    // A backend that is down (see `crate::backends`): its resting volumes
    // show `error`, and their image why; the records stay as they are.
    let down: BTreeMap<String, String> = env
        .backends
        .all()
        .into_iter()
        .filter_map(|(name, b)| b.down().map(|why| (name, why)))
        .collect();
    let mut out = Vec::with_capacity(vols.len());
    for mut v in vols {
        let down = v.backend.as_ref().and_then(|b| down.get(b).map(|w| (b, w)));
        let volume_type_name = v
            .volume_type_name
            .clone()
            .or_else(|| type_names.get(&v.volume_type_id).cloned())
            .unwrap_or_else(|| v.volume_type_id.to_string());
        let progress = v
            .last_flow_id
            .as_ref()
            .and_then(|id| flows.get(id))
            .map(crate::rules::progress::of_flow);
        let mut image = v.image_id.and_then(|i| statuses.remove(&i));
        if let Some((backend, why)) = down
            && matches!(
                v.status,
                scoria_model::volume::VolumeStatus::Available
                    | scoria_model::volume::VolumeStatus::InUse
            )
        {
            v.status = scoria_model::volume::VolumeStatus::Error;
            if let Some(i) = &mut image {
                i.health = scoria_model::image::ImageHealth::Broken;
                i.reason = Some(format!("backend {backend} is down: {why}"));
            }
        }
        let image_metadata = image_metadata.remove(&v.id.to_string()).unwrap_or_default();
        let attachments = attachments.remove(&v.id).unwrap_or_default();
        out.push(VolumeView {
            image_metadata,
            volume: v,
            volume_type_name,
            progress,
            image,
            attachments,
        });
    }
    Ok(out)
}
