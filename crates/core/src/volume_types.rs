//! Volume types: what the scheduler matches against backends. For now the
//! default type (and any type an admin created directly in the store) can be
//! listed and shown.

use scoria_model::VolumeTypeId;
use scoria_store::volume_types as store;
pub use scoria_store::volume_types::VolumeType;

use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result};

/// Types visible to the caller (admins see private ones too).
pub async fn list(app: &App, ctx: &Context) -> Result<Vec<VolumeType>> {
    ctx.authorize(Op::TypeList)?;
    let project = if ctx.is_admin() {
        None
    } else {
        Some(ctx.project()?.0.clone())
    };
    let mut conn = app.store().read().await?;
    Ok(store::volume_type_list(&mut conn, project.as_deref()).await?)
}

/// One type by id (`default` names the default type).
pub async fn get(app: &App, ctx: &Context, id: &str) -> Result<VolumeType> {
    ctx.authorize(Op::TypeGet)?;
    let not_found = || Error::NotFound(format!("Volume type {id} could not be found."));
    let parsed: VolumeTypeId = if id == "default" {
        store::DEFAULT_TYPE_ID
            .parse()
            .map_err(|e| Error::internal("default type id", e))?
    } else {
        id.parse().map_err(|_| not_found())?
    };
    let mut conn = app.store().read().await?;
    let t = store::volume_type_get(&mut conn, parsed)
        .await?
        .ok_or_else(not_found)?;
    let shared = match &ctx.project_id {
        Some(p) if !t.is_public => store::volume_type_list(&mut conn, Some(p.as_str()))
            .await?
            .iter()
            .any(|v| v.id == t.id),
        _ => false,
    };
    if t.is_public || ctx.is_admin() || shared {
        Ok(t)
    } else {
        Err(not_found())
    }
}
