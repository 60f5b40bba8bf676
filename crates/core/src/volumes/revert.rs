//! Revert a volume to one of its snapshots (the `revert` action, 3.40): the
//! `volume_revert` flow, constant time. Cinder reverts only to the latest
//! snapshot; Scoria to any of them (its module doc draws why that is free).

use scoria_model::{SnapshotId, VolumeId};

use crate::App;
use crate::context::{Context, Op};
use crate::error::{Result, from_outcome};
use crate::flows::volume_revert;
use crate::rules::volumes::visible;

/// Start the revert; returns once the volume is `reverting` (the flow's first
/// step): bad states are refused synchronously, and change nothing.
pub async fn revert(app: &App, ctx: &Context, id: VolumeId, snapshot: SnapshotId) -> Result<()> {
    crate::rules::volumes::authorize_on(app.store(), ctx, id, Op::VolumeRevert).await?;
    {
        let mut conn = app.store().read().await?;
        visible(&mut conn, ctx, id).await?;
        crate::rules::snapshots::visible(&mut conn, ctx, snapshot).await?;
    }
    let params = volume_revert::Params {
        volume_id: id,
        snapshot_id: snapshot,
        project_id: if ctx.is_admin() {
            None
        } else {
            Some(ctx.project()?.0.clone())
        },
        request_id: Some(ctx.request_id.clone()),
    };
    let handle = app.engine.start::<volume_revert::VolumeRevert>(params)?;
    handle.wait_step("begin_revert").await.map_err(from_outcome)
}
