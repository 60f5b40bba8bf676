//! Group types and their group specs (3.11 on): admin-managed names, like
//! volume types for groups. Every project lists and reads the public ones;
//! the private ones and the specs are for admins (Cinder has no group type
//! access API). A type that groups have cannot be deleted.

use std::collections::BTreeMap;

use scoria_model::GroupTypeId;
use scoria_store::Conn;
use scoria_store::groups::{self as store, GroupType, SortDir, SortKey};

use super::{MAX_LEN, PublicFilter};
use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result};

/// A new group type, as parsed from the API.
#[derive(Clone, Debug, Default)]
pub struct NewGroupType {
    pub name: String,
    pub description: Option<String>,
    pub is_public: bool,
    pub group_specs: BTreeMap<String, String>,
}

/// Changes to a group type; `None` keeps a field.
#[derive(Clone, Debug, Default)]
pub struct GroupTypeChange {
    pub name: Option<String>,
    pub description: Option<String>,
    pub is_public: Option<bool>,
}

fn type_not_found(id: impl std::fmt::Display) -> Error {
    Error::NotFound(format!("Group type {id} could not be found."))
}

/// May the caller read group specs (in views and through the specs routes)?
pub fn reads_specs(ctx: &Context) -> bool {
    ctx.authorize(Op::GroupTypeSpecsRead).is_ok()
}

fn for_caller(ctx: &Context, mut t: GroupType) -> GroupType {
    if !reads_specs(ctx) {
        t.group_specs.clear();
    }
    t
}

/// Load a group type by id (no visibility rule: for admins).
async fn find_type(conn: &mut Conn, id: &str) -> Result<GroupType> {
    let parsed: GroupTypeId = id.parse().map_err(|_| type_not_found(id))?;
    store::group_type_get(conn, parsed)
        .await?
        .ok_or_else(|| type_not_found(id))
}

/// Load a group type by id as the caller may see it: public types, every
/// type for admins.
async fn find_type_visible(conn: &mut Conn, ctx: &Context, id: &str) -> Result<GroupType> {
    let t = find_type(conn, id).await?;
    if t.is_public || ctx.is_admin() {
        Ok(t)
    } else {
        Err(type_not_found(id))
    }
}

/// A group type named by id or name, as the caller may see it.
pub(super) async fn resolve_type(
    conn: &mut Conn,
    ctx: &Context,
    wanted: &str,
) -> Result<GroupType> {
    let mut t = match wanted.parse::<GroupTypeId>() {
        Ok(id) => store::group_type_get(conn, id).await?,
        Err(_) => None,
    };
    if t.is_none() {
        t = store::group_type_get_by_name(conn, wanted).await?;
    }
    match t {
        Some(t) if t.is_public || ctx.is_admin() => Ok(t),
        _ if wanted.parse::<GroupTypeId>().is_ok() => Err(type_not_found(wanted)),
        _ => Err(Error::NotFound(format!(
            "Group type with name {wanted} could not be found."
        ))),
    }
}

fn validate_type_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::Invalid(
            "Invalid input for field/attribute name: the group type name can not be empty.".into(),
        ));
    }
    crate::rules::validate::validate_text("name", name, MAX_LEN)
}

/// Check group specs as Cinder's schema does: keys of 1–255 characters among
/// letters, digits and `-_:.`, values of at most 255 characters.
fn validate_specs(specs: &BTreeMap<String, String>) -> Result<()> {
    crate::rules::validate::validate_specs("group_specs", specs, false)
}

/// Group types: public ones for everyone; admins may ask for all or only the
/// private ones.
pub async fn type_list(
    app: &App,
    ctx: &Context,
    filter: PublicFilter,
    sort: &[(SortKey, SortDir)],
) -> Result<Vec<GroupType>> {
    ctx.authorize(Op::GroupTypeList)?;
    let is_public = match (ctx.is_admin(), filter) {
        (false, _) | (true, PublicFilter::Default) => Some(true),
        (true, PublicFilter::All) => None,
        (true, PublicFilter::Only(b)) => Some(b),
    };
    let mut conn = app.store().read().await?;
    let types = store::group_type_list(&mut conn, is_public, sort).await?;
    Ok(types.into_iter().map(|t| for_caller(ctx, t)).collect())
}

/// One group type. `default` names the default group type, which Scoria does
/// not configure (Cinder's `default_group_type` is unset by default): 404.
pub async fn type_get(app: &App, ctx: &Context, id: &str) -> Result<GroupType> {
    ctx.authorize(Op::GroupTypeGet)?;
    if id == "default" {
        return Err(Error::NotFound(
            "Default group type can not be found.".into(),
        ));
    }
    let mut conn = app.store().read().await?;
    Ok(for_caller(
        ctx,
        find_type_visible(&mut conn, ctx, id).await?,
    ))
}

/// Create a group type (admins).
pub async fn type_create(app: &App, ctx: &Context, req: NewGroupType) -> Result<GroupType> {
    ctx.authorize(Op::GroupTypeManage)?;
    validate_type_name(&req.name)?;
    if let Some(d) = &req.description {
        crate::rules::validate::validate_text("description", d, MAX_LEN)?;
    }
    validate_specs(&req.group_specs)?;
    let id = GroupTypeId::new();
    let mut tx = app.store().begin().await?;
    store::group_type_create(
        &mut tx,
        id,
        &req.name,
        req.description.as_deref(),
        req.is_public,
        &req.group_specs,
    )
    .await?;
    let t = store::group_type_get(&mut tx, id)
        .await?
        .ok_or_else(|| type_not_found(id))?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(for_caller(ctx, t))
}

/// Rename a group type, change its description or visibility (admins).
pub async fn type_update(
    app: &App,
    ctx: &Context,
    id: &str,
    change: GroupTypeChange,
) -> Result<GroupType> {
    ctx.authorize(Op::GroupTypeManage)?;
    if change.name.is_none() && change.description.is_none() && change.is_public.is_none() {
        return Err(Error::Invalid(
            "Specify group type name, description or a combination thereof.".into(),
        ));
    }
    if let Some(n) = &change.name {
        validate_type_name(n)?;
    }
    if let Some(d) = &change.description {
        crate::rules::validate::validate_text("description", d, MAX_LEN)?;
    }
    let mut tx = app.store().begin().await?;
    let t = find_type(&mut tx, id).await?;
    store::group_type_update(
        &mut tx,
        t.id,
        change.name.as_deref(),
        change.description.as_deref(),
        change.is_public,
    )
    .await?;
    let t = store::group_type_get(&mut tx, t.id)
        .await?
        .ok_or_else(|| type_not_found(id))?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(for_caller(ctx, t))
}

/// Delete a group type no group has (admins).
pub async fn type_delete(app: &App, ctx: &Context, id: &str) -> Result<()> {
    ctx.authorize(Op::GroupTypeManage)?;
    let mut tx = app.store().begin().await?;
    let t = find_type(&mut tx, id).await?;
    match store::group_type_delete(&mut tx, t.id).await? {
        Some(true) => {}
        Some(false) => {
            return Err(Error::InvalidState(
                "Target group type is still in use.".into(),
            ));
        }
        None => return Err(type_not_found(id)),
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

fn no_such_spec(id: &str, key: &str) -> Error {
    Error::NotFound(format!("Group Type {id} has no extra spec with key {key}."))
}

/// The group specs of a type (admins).
pub async fn specs_get(app: &App, ctx: &Context, id: &str) -> Result<BTreeMap<String, String>> {
    ctx.authorize(Op::GroupTypeSpecs)?;
    let mut conn = app.store().read().await?;
    Ok(find_type(&mut conn, id).await?.group_specs)
}

/// One group spec (admins; 404 when absent).
pub async fn spec_get(app: &App, ctx: &Context, id: &str, key: &str) -> Result<String> {
    ctx.authorize(Op::GroupTypeSpecs)?;
    let mut conn = app.store().read().await?;
    find_type(&mut conn, id)
        .await?
        .group_specs
        .remove(key)
        .ok_or_else(|| no_such_spec(id, key))
}

/// Add or overwrite group specs (admins); returns the ones given. Specs are
/// read only when a group is placed, so changing them changes no group.
pub async fn specs_set(
    app: &App,
    ctx: &Context,
    id: &str,
    specs: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    ctx.authorize(Op::GroupTypeSpecs)?;
    validate_specs(&specs)?;
    let mut tx = app.store().begin().await?;
    let t = find_type(&mut tx, id).await?;
    store::group_type_specs_merge(&mut tx, t.id, &specs).await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(specs)
}

/// Remove one group spec (admins).
pub async fn spec_delete(app: &App, ctx: &Context, id: &str, key: &str) -> Result<()> {
    ctx.authorize(Op::GroupTypeSpecs)?;
    let mut tx = app.store().begin().await?;
    let t = find_type(&mut tx, id).await?;
    if !store::group_type_spec_delete(&mut tx, t.id, key).await? {
        return Err(no_such_spec(id, key));
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}
