//! Volume types as a caller may use them: public types, types shared with the
//! caller's project, every type for admins. Any other type is absent (404).

use scoria_model::VolumeTypeId;
use scoria_store::Conn;
use scoria_store::volume_types::{self as store, VolumeType};

use crate::context::Context;
use crate::error::{Error, Result};

/// Find a volume type by id or name, as the caller may use it (a type that is
/// not public nor shared with the caller's project is absent). An id-like
/// name is looked up as an id first, then as a name, as Cinder does. The
/// default type (`wanted` is `None`) is always usable: the caller's
/// project's default type when an admin set one (`default-types`, 3.62),
/// else the installation's `__DEFAULT__`.
pub(crate) async fn resolve(
    conn: &mut Conn,
    ctx: &Context,
    wanted: Option<&str>,
) -> Result<store::VolumeType> {
    let Some(w) = wanted else {
        if let Some(p) = &ctx.project_id
            && let Some(d) = scoria_store::default_types::default_type_get(conn, &p.0).await?
            && let Some(t) = store::volume_type_get(conn, d.volume_type_id).await?
        {
            return Ok(t);
        }
        return store::volume_type_get(
            conn,
            store::DEFAULT_TYPE_ID
                .parse()
                .map_err(|e| Error::internal("default type id", e))?,
        )
        .await?
        .ok_or_else(|| Error::NotFound("The default volume type could not be found.".into()));
    };
    let mut t = match w.parse::<VolumeTypeId>() {
        Ok(id) => store::volume_type_get(conn, id).await?,
        Err(_) => None,
    };
    if t.is_none() {
        t = store::volume_type_get_by_name(conn, w).await?;
    }
    match t {
        Some(t) if may_use(conn, ctx, &t).await? => Ok(t),
        _ if w.parse::<VolumeTypeId>().is_ok() => Err(type_not_found(w)),
        _ => Err(Error::NotFound(format!(
            "Volume type with name {w} could not be found."
        ))),
    }
}

pub(crate) fn type_not_found(id: impl std::fmt::Display) -> Error {
    Error::NotFound(format!("Volume type {id} could not be found."))
}

/// May the caller use (see) this type? Public types, types shared with the
/// caller's project, and every type for admins.
pub(crate) async fn may_use(conn: &mut Conn, ctx: &Context, t: &VolumeType) -> Result<bool> {
    if t.is_public || ctx.is_admin() {
        return Ok(true);
    }
    match &ctx.project_id {
        Some(p) => Ok(store::volume_type_access_has(conn, t.id, &p.0).await?),
        None => Ok(false),
    }
}

/// Is the spec value Cinder's spelling of true (`<is> True`)?
pub fn is_true_spec(v: Option<&String>) -> bool {
    v.is_some_and(|v| {
        v.trim()
            .strip_prefix("<is>")
            .is_some_and(|r| r.trim().eq_ignore_ascii_case("true"))
    })
}
