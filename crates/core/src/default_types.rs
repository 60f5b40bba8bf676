//! Per-project default volume types (Cinder's `default-types`, 3.62; admins
//! only): the type a volume created in a project without one gets (read in
//! `rules::types::resolve`). The target must be an existing project and the
//! type one that exists; a type that is some project's default cannot be
//! deleted until it is unset (`volume_types::delete`).

use scoria_store::default_types as store;
pub use scoria_store::default_types::DefaultType;
use scoria_store::identity::project_get;
use scoria_store::volume_types as type_store;

use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result};

fn not_found(project: &str) -> Error {
    Error::NotFound(format!(
        "Default type for project {project} could not be found."
    ))
}

/// Set (or replace) `project`'s default type to `wanted` (a type's id or
/// name).
pub async fn set(app: &App, ctx: &Context, project: &str, wanted: &str) -> Result<DefaultType> {
    ctx.authorize(Op::DefaultTypeSet)?;
    let mut tx = app.store().begin().await?;
    if project_get(&mut tx, project).await?.is_none() {
        return Err(Error::Invalid(format!(
            "Invalid input received: project {project} does not exist."
        )));
    }
    let mut t = match wanted.parse() {
        Ok(id) => type_store::volume_type_get(&mut tx, id).await?,
        Err(_) => None,
    };
    if t.is_none() {
        t = type_store::volume_type_get_by_name(&mut tx, wanted).await?;
    }
    let t =
        t.ok_or_else(|| Error::NotFound(format!("Volume type {wanted} could not be found.")))?;
    store::default_type_set(&mut tx, project, t.id).await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(DefaultType {
        project_id: project.to_owned(),
        volume_type_id: t.id,
    })
}

/// `project`'s default type (404 when it has none).
pub async fn get(app: &App, ctx: &Context, project: &str) -> Result<DefaultType> {
    ctx.authorize(Op::DefaultTypeGet)?;
    let mut conn = app.store().read().await?;
    store::default_type_get(&mut conn, project)
        .await?
        .ok_or_else(|| not_found(project))
}

/// Every project's default type.
pub async fn list(app: &App, ctx: &Context) -> Result<Vec<DefaultType>> {
    ctx.authorize(Op::DefaultTypeList)?;
    let mut conn = app.store().read().await?;
    Ok(store::default_type_list(&mut conn).await?)
}

/// Unset `project`'s default type (404 when it has none).
pub async fn unset(app: &App, ctx: &Context, project: &str) -> Result<()> {
    ctx.authorize(Op::DefaultTypeUnset)?;
    let mut tx = app.store().begin().await?;
    if !store::default_type_unset(&mut tx, project).await? {
        return Err(not_found(project));
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}
