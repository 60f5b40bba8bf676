//! Placement, as admins read it: the record of every attempt to place a
//! volume's create (`placements`, written by the create flow: see
//! `flows/volume_create/placement.rs`), and a dry run that says where a new
//! volume would go and why without creating anything.

use scoria_model::VolumeId;
use scoria_store::placements::{self, Placement};
use serde_json::Value;

use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result};
use crate::flows::volume_create::placement as create;
use crate::scheduler::Request;

/// Every placement attempt of a volume, in order (any project's volume: the
/// caller is an admin). Unknown volume: not found.
pub async fn volume_placements(app: &App, ctx: &Context, id: &str) -> Result<Vec<Placement>> {
    ctx.authorize(Op::VolumePlacementGet)?;
    let id: VolumeId = crate::rules::volumes::parse_id(id)?;
    let mut conn = app.store().read().await?;
    if scoria_store::volumes::volume_get(&mut conn, id)
        .await?
        .is_none()
    {
        return Err(Error::volume_not_found(id));
    }
    Ok(placements::placement_list(&mut conn, id).await?)
}

/// What a dry run asks about: a volume as a create would describe it.
#[derive(Clone, Debug, Default)]
pub struct DryRunRequest {
    /// GiB.
    pub size: i64,
    /// A type's id or name; `None`: the default type.
    pub volume_type: Option<String>,
    pub availability_zone: Option<String>,
    /// `same_host`/`different_host`, as on a create.
    pub hints: crate::rules::affinity::Hints,
}

/// Where the volume would go, and the scheduler's account of why.
#[derive(Clone, Debug)]
pub struct DryRun {
    pub backend: Option<String>,
    pub decision: Value,
}

/// Place a volume without creating it: the same decision a create's
/// `schedule` step would make now (no pin: a blank volume). Reads only.
pub async fn dry_run(app: &App, ctx: &Context, req: &DryRunRequest) -> Result<DryRun> {
    ctx.authorize(Op::PlacementDryRun)?;
    crate::rules::validate::volume_size(req.size)?;
    let mut conn = app.store().read().await?;
    let ty = crate::rules::types::resolve(&mut conn, ctx, req.volume_type.as_deref()).await?;
    let mut request = Request {
        size_gib: req.size,
        availability_zone: req.availability_zone.clone(),
        extra_specs: scoria_store::volume_types::volume_type_extra_specs_get(&mut conn, ty.id)
            .await?,
        ..Default::default()
    };
    let hints = crate::rules::affinity::visible(&mut conn, ctx, req.hints.clone()).await?;
    crate::rules::affinity::apply(&mut conn, &hints, &mut request).await?;
    let d = create::decide(&app.env, &mut conn, &request, None, &[])
        .await
        .map_err(|e| Error::Internal {
            message: "The placement could not be decided.".into(),
            source: Some(Box::new(std::io::Error::other(e.chain()))),
        })?;
    Ok(DryRun {
        backend: d.chosen.ok(),
        decision: d.decision,
    })
}
