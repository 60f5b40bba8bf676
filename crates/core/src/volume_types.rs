//! Volume types: what the scheduler matches against backends, who may use
//! them, how their volumes are to be encrypted.
//!
//! Reading follows Cinder's rules: a project sees the public types and the
//! private ones shared with it (any other type is absent, 404); extra specs
//! are shown, but only the few user-visible keys
//! ([`USER_VISIBLE_EXTRA_SPECS`]) to callers without the `read_sensitive`
//! rule, because the others describe the deployment. Everything else
//! (create, update, delete, extra specs, access, encryption) is admin-only.
//!
//! Changes that would alter what existing volumes are (their extra specs,
//! their encryption) are refused while any volume has the type, as Cinder
//! does. Scoria does not encrypt data yet: a type may carry an encryption
//! spec, but volumes of such a type are refused at create (see `volumes`),
//! so that nobody believes their data is encrypted when it is not.

use std::collections::BTreeMap;

use scoria_model::{EncryptionId, VolumeTypeId};
use scoria_store::Conn;
use scoria_store::volume_types as store;
pub use scoria_store::volume_types::{Encryption, EncryptionChange, VolumeType};

use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result};
use crate::rules::types::{is_true_spec, may_use, type_not_found};
use crate::rules::validate::validate_specs;

/// Extra specs every reader may see (Cinder's list): they tell users what a
/// type offers, not how the deployment is built.
pub const USER_VISIBLE_EXTRA_SPECS: &[&str] = &[
    "RESKEY:availability_zones",
    "multiattach",
    "replication_enabled",
];

/// Longest type name, description, extra-spec key and value.
pub const MAX_LEN: usize = 255;

/// Encryption control locations Cinder knows.
pub const CONTROL_LOCATIONS: &[&str] = &["front-end", "back-end"];

/// Which types a list shows: Cinder's `is_public` query parameter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PublicFilter {
    /// Not given: public types and those shared with the caller's project.
    #[default]
    Default,
    /// `is_public=None`: every type (admins; others get the default).
    All,
    /// `is_public=true|false` (admins; others get the default).
    Only(bool),
}

/// A new type, as parsed from the API.
#[derive(Clone, Debug, Default)]
pub struct NewType {
    pub name: String,
    pub description: Option<String>,
    pub is_public: bool,
    pub extra_specs: BTreeMap<String, String>,
}

/// Changes to a type; `None` keeps a field.
#[derive(Clone, Debug, Default)]
pub struct TypeChange {
    pub name: Option<String>,
    pub description: Option<String>,
    pub is_public: Option<bool>,
}

/// A new encryption spec, as parsed from the API.
#[derive(Clone, Debug, Default)]
pub struct NewEncryption {
    pub provider: String,
    pub cipher: Option<String>,
    pub key_size: Option<i64>,
    pub control_location: String,
}

fn default_type_id() -> Result<VolumeTypeId> {
    store::DEFAULT_TYPE_ID
        .parse()
        .map_err(|e| Error::internal("default type id", e))
}

/// May the caller see every extra spec of a type?
pub fn reads_sensitive_specs(ctx: &Context) -> bool {
    ctx.authorize(Op::TypeExtraSpecsReadSensitive).is_ok()
}

/// May the caller see which QoS specs a type is associated with?
pub fn reads_qos_specs_id(ctx: &Context) -> bool {
    ctx.authorize(Op::TypeQosSpecsIdRead).is_ok()
}

/// The extra specs the caller may see.
fn visible_specs(ctx: &Context, specs: BTreeMap<String, String>) -> BTreeMap<String, String> {
    if reads_sensitive_specs(ctx) {
        specs
    } else {
        specs
            .into_iter()
            .filter(|(k, _)| USER_VISIBLE_EXTRA_SPECS.contains(&k.as_str()))
            .collect()
    }
}

fn for_caller(ctx: &Context, mut t: VolumeType) -> VolumeType {
    t.extra_specs = visible_specs(ctx, std::mem::take(&mut t.extra_specs));
    if !reads_qos_specs_id(ctx) {
        t.qos_specs_id = None;
    }
    t
}

/// Load a type by id for management (no visibility rule: callers are admins).
async fn find(conn: &mut Conn, id: &str) -> Result<VolumeType> {
    let parsed: VolumeTypeId = id.parse().map_err(|_| type_not_found(id))?;
    store::volume_type_get(conn, parsed)
        .await?
        .ok_or_else(|| type_not_found(id))
}

/// Load a type by id as the caller may see it. `default` names the default
/// type, which everyone may see (volumes get it when they name no type).
async fn find_visible(conn: &mut Conn, ctx: &Context, id: &str) -> Result<VolumeType> {
    if id == "default" {
        // The type a volume created now without one would get.
        return crate::rules::types::resolve(conn, ctx, None).await;
    }
    let t = find(conn, id).await?;
    if may_use(conn, ctx, &t).await? {
        Ok(t)
    } else {
        Err(type_not_found(id))
    }
}

fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::Invalid(
            "Invalid input for field/attribute name. Value: . '' should be non-empty".into(),
        ));
    }
    if name.trim().is_empty() {
        return Err(Error::Invalid("Volume type name can not be empty.".into()));
    }
    crate::rules::validate::validate_text("name", name, MAX_LEN)
}

fn validate_description(d: &str) -> Result<()> {
    crate::rules::validate::validate_text("description", d, MAX_LEN)?;
    if d.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "Invalid input for field/attribute description: control characters are not allowed."
                .into(),
        ));
    }
    Ok(())
}

/// Cinder refuses types that are both cacheable and multiattach.
fn check_cacheable(specs: &BTreeMap<String, String>) -> Result<()> {
    if is_true_spec(specs.get("multiattach")) && is_true_spec(specs.get("cacheable")) {
        return Err(Error::Invalid(
            "cacheable cannot be set with multiattach.".into(),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Types

/// Types by Cinder's list rule: everyone gets the public types and those
/// shared with their project; admins may ask for every type
/// ([`PublicFilter::All`]) or only public or private ones.
pub async fn list(app: &App, ctx: &Context, filter: PublicFilter) -> Result<Vec<VolumeType>> {
    ctx.authorize(Op::TypeList)?;
    let project = ctx.project_id.as_ref().map(|p| p.0.clone());
    let filter = if ctx.is_admin() {
        filter
    } else {
        PublicFilter::Default
    };
    let is_public = match filter {
        PublicFilter::Default => Some(true),
        PublicFilter::All => None,
        PublicFilter::Only(b) => Some(b),
    };
    let mut conn = app.store().read().await?;
    let types = store::volume_type_list(&mut conn, is_public, project.as_deref()).await?;
    Ok(types.into_iter().map(|t| for_caller(ctx, t)).collect())
}

/// One type by id (`default` names the default type), if the caller may see it.
pub async fn get(app: &App, ctx: &Context, id: &str) -> Result<VolumeType> {
    ctx.authorize(Op::TypeGet)?;
    let mut conn = app.store().read().await?;
    Ok(for_caller(ctx, find_visible(&mut conn, ctx, id).await?))
}

/// Create a type (admins).
pub async fn create(app: &App, ctx: &Context, req: NewType) -> Result<VolumeType> {
    ctx.authorize(Op::TypeManage)?;
    validate_name(&req.name)?;
    if let Some(d) = &req.description {
        validate_description(d)?;
    }
    validate_specs("extra_specs", &req.extra_specs, true)?;
    check_cacheable(&req.extra_specs)?;
    let id = VolumeTypeId::new();
    let mut tx = app.store().begin().await?;
    store::volume_type_create(
        &mut tx,
        id,
        &req.name,
        req.description.as_deref(),
        req.is_public,
        &req.extra_specs,
    )
    .await?;
    let t = store::volume_type_get(&mut tx, id)
        .await?
        .ok_or_else(|| type_not_found(id))?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(for_caller(ctx, t))
}

/// Rename a type, change its description or its visibility (admins).
pub async fn update(app: &App, ctx: &Context, id: &str, change: TypeChange) -> Result<VolumeType> {
    ctx.authorize(Op::TypeManage)?;
    if change.name.is_none() && change.description.is_none() && change.is_public.is_none() {
        return Err(Error::Invalid(
            "Specify volume type name, description, is_public or a combination thereof.".into(),
        ));
    }
    if let Some(n) = &change.name {
        if n.trim().is_empty() {
            return Err(Error::Invalid("Volume type name can not be empty.".into()));
        }
        validate_name(n)?;
    }
    if let Some(d) = &change.description {
        validate_description(d)?;
    }
    let mut tx = app.store().begin().await?;
    let t = find(&mut tx, id).await?;
    store::volume_type_update(
        &mut tx,
        t.id,
        change.name.as_deref(),
        change.description.as_deref(),
        change.is_public,
    )
    .await?;
    let t = store::volume_type_get(&mut tx, t.id)
        .await?
        .ok_or_else(|| type_not_found(id))?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(for_caller(ctx, t))
}

/// Delete a type no volume uses (admins). The default type stays.
pub async fn delete(app: &App, ctx: &Context, id: &str) -> Result<()> {
    ctx.authorize(Op::TypeManage)?;
    let mut tx = app.store().begin().await?;
    let t = find(&mut tx, id).await?;
    if t.id == default_type_id()? {
        return Err(Error::Invalid(format!(
            "The Default Volume Type with id {id} cannot be deleted."
        )));
    }
    let projects = scoria_store::default_types::default_type_projects(&mut tx, t.id).await?;
    if !projects.is_empty() {
        return Err(Error::Invalid(format!(
            "Volume type {id} is the default volume type of project(s) {} and cannot be deleted; unset it first (default-types).",
            projects.join(", ")
        )));
    }
    match store::volume_type_delete(&mut tx, t.id).await? {
        Some(true) => {}
        Some(false) => {
            return Err(Error::InvalidState(
                "Target volume type is still in use.".into(),
            ));
        }
        None => return Err(type_not_found(id)),
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Extra specs

fn no_such_spec(id: &str, key: &str) -> Error {
    Error::NotFound(format!(
        "Volume Type {id} has no extra specs with key {key}."
    ))
}

async fn refuse_if_in_use(conn: &mut Conn, t: &VolumeType) -> Result<()> {
    if store::volume_type_in_use(conn, t.id).await? {
        return Err(Error::InvalidState(
            "Volume Type is currently in use.".into(),
        ));
    }
    Ok(())
}

/// The extra specs of a type the caller may see (sensitive ones for admins).
pub async fn extra_specs_get(
    app: &App,
    ctx: &Context,
    id: &str,
) -> Result<BTreeMap<String, String>> {
    ctx.authorize(Op::TypeExtraSpecsList)?;
    let mut conn = app.store().read().await?;
    let t = find_visible(&mut conn, ctx, id).await?;
    Ok(visible_specs(ctx, t.extra_specs))
}

/// One extra spec (404 when absent or hidden from the caller).
pub async fn extra_spec_get(app: &App, ctx: &Context, id: &str, key: &str) -> Result<String> {
    ctx.authorize(Op::TypeExtraSpecsGet)?;
    let mut conn = app.store().read().await?;
    let t = find_visible(&mut conn, ctx, id).await?;
    visible_specs(ctx, t.extra_specs)
        .remove(key)
        .ok_or_else(|| no_such_spec(id, key))
}

/// Add or overwrite extra specs (admins; not while volumes have the type).
/// `single` is the key of `PUT …/extra_specs/{key}` (update policy).
pub async fn extra_specs_set(
    app: &App,
    ctx: &Context,
    id: &str,
    specs: BTreeMap<String, String>,
    single: Option<&str>,
) -> Result<BTreeMap<String, String>> {
    ctx.authorize(if single.is_some() {
        Op::TypeExtraSpecsUpdate
    } else {
        Op::TypeExtraSpecsCreate
    })?;
    validate_specs("extra_specs", &specs, false)?;
    let mut tx = app.store().begin().await?;
    let t = find(&mut tx, id).await?;
    refuse_if_in_use(&mut tx, &t).await?;
    let mut merged = t.extra_specs.clone();
    merged.extend(specs.clone());
    check_cacheable(&merged)?;
    store::volume_type_extra_specs_merge(&mut tx, t.id, &specs).await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(specs)
}

/// Remove one extra spec (admins; not while volumes have the type).
pub async fn extra_spec_delete(app: &App, ctx: &Context, id: &str, key: &str) -> Result<()> {
    ctx.authorize(Op::TypeExtraSpecsDelete)?;
    let mut tx = app.store().begin().await?;
    let t = find(&mut tx, id).await?;
    refuse_if_in_use(&mut tx, &t).await?;
    if !store::volume_type_extra_spec_delete(&mut tx, t.id, key).await? {
        return Err(no_such_spec(id, key));
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Project access

fn validate_project(project: &str) -> Result<()> {
    if project.is_empty() || project.chars().count() > MAX_LEN {
        return Err(Error::Invalid(format!(
            "Invalid input for field/attribute project: must be 1 to {MAX_LEN} characters."
        )));
    }
    Ok(())
}

fn refuse_public(t: &VolumeType) -> Result<()> {
    if t.is_public {
        return Err(Error::Invalid(
            "Invalid volume type: Type access modification is not applicable to public volume type."
                .into(),
        ));
    }
    Ok(())
}

/// The projects a private type is shared with (admins; 404 for public types,
/// as Cinder answers).
pub async fn access_list(app: &App, ctx: &Context, id: &str) -> Result<Vec<String>> {
    ctx.authorize(Op::TypeAccessList)?;
    let mut conn = app.store().read().await?;
    let t = find(&mut conn, id).await?;
    if t.is_public {
        return Err(Error::NotFound(
            "Access list not available for public volume types.".into(),
        ));
    }
    Ok(store::volume_type_access_list(&mut conn, t.id).await?)
}

/// Share a private type with a project (admins).
pub async fn access_add(app: &App, ctx: &Context, id: &str, project: &str) -> Result<()> {
    ctx.authorize(Op::TypeAccessAdd)?;
    validate_project(project)?;
    let mut tx = app.store().begin().await?;
    let t = find(&mut tx, id).await?;
    refuse_public(&t)?;
    if !store::volume_type_access_add(&mut tx, t.id, project).await? {
        return Err(Error::Conflict(format!(
            "Volume type access for {id} / {project} combination already exists."
        )));
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// Stop sharing a private type with a project (admins).
pub async fn access_remove(app: &App, ctx: &Context, id: &str, project: &str) -> Result<()> {
    ctx.authorize(Op::TypeAccessRemove)?;
    validate_project(project)?;
    let mut tx = app.store().begin().await?;
    let t = find(&mut tx, id).await?;
    refuse_public(&t)?;
    if !store::volume_type_access_remove(&mut tx, t.id, project).await? {
        return Err(Error::NotFound(format!(
            "Volume type access not found for {id} / {project} combination."
        )));
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Encryption specs

fn no_encryption(id: &str) -> Error {
    Error::NotFound(format!(
        "Volume type encryption for type {id} does not exist."
    ))
}

fn validate_encryption(
    provider: Option<&str>,
    cipher: Option<&str>,
    key_size: Option<i64>,
    control_location: Option<&str>,
) -> Result<()> {
    for (field, v) in [("provider", provider), ("cipher", cipher)] {
        if let Some(v) = v {
            crate::rules::validate::validate_text(field, v, MAX_LEN)?;
        }
    }
    if key_size.is_some_and(|k| !(0..=i64::from(i32::MAX)).contains(&k)) {
        return Err(Error::Invalid(format!(
            "Invalid input for field/attribute key_size: must be an integer from 0 to {}.",
            i32::MAX
        )));
    }
    if let Some(c) = control_location
        && !CONTROL_LOCATIONS.contains(&c)
    {
        return Err(Error::Invalid(format!(
            "Invalid input received: Valid control location are: {}",
            CONTROL_LOCATIONS.join(", ")
        )));
    }
    Ok(())
}

async fn refuse_encryption_change_in_use(
    conn: &mut Conn,
    t: &VolumeType,
    verb: &str,
) -> Result<()> {
    if store::volume_type_in_use(conn, t.id).await? {
        return Err(Error::InvalidState(format!(
            "Cannot {verb} encryption specs. Volume type in use."
        )));
    }
    Ok(())
}

/// The encryption spec of a type, if it has one (admins).
pub async fn encryption_get(app: &App, ctx: &Context, id: &str) -> Result<Option<Encryption>> {
    ctx.authorize(Op::TypeEncryptionGet)?;
    let mut conn = app.store().read().await?;
    let t = find(&mut conn, id).await?;
    Ok(store::volume_type_encryption_get(&mut conn, t.id).await?)
}

/// Give a type an encryption spec (admins; not while volumes have the type).
pub async fn encryption_create(
    app: &App,
    ctx: &Context,
    id: &str,
    req: NewEncryption,
) -> Result<Encryption> {
    ctx.authorize(Op::TypeEncryptionCreate)?;
    validate_encryption(
        Some(&req.provider),
        req.cipher.as_deref(),
        req.key_size,
        Some(&req.control_location),
    )?;
    let mut tx = app.store().begin().await?;
    let t = find(&mut tx, id).await?;
    refuse_encryption_change_in_use(&mut tx, &t, "create").await?;
    let e = Encryption {
        volume_type_id: t.id,
        encryption_id: EncryptionId::new(),
        provider: req.provider,
        cipher: req.cipher,
        key_size: req.key_size,
        control_location: req.control_location,
        created_at: scoria_store::now(),
        updated_at: None,
    };
    if !store::volume_type_encryption_create(&mut tx, &e).await? {
        return Err(Error::Invalid(format!(
            "Volume type encryption for type {id} already exists."
        )));
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(e)
}

/// Change a type's encryption spec (admins; not while volumes have the type).
pub async fn encryption_update(
    app: &App,
    ctx: &Context,
    id: &str,
    change: EncryptionChange,
) -> Result<()> {
    ctx.authorize(Op::TypeEncryptionUpdate)?;
    validate_encryption(
        change.provider.as_deref(),
        change.cipher.as_ref().and_then(|c| c.as_deref()),
        change.key_size.flatten(),
        change.control_location.as_deref(),
    )?;
    let mut tx = app.store().begin().await?;
    let t = find(&mut tx, id).await?;
    refuse_encryption_change_in_use(&mut tx, &t, "update").await?;
    if !store::volume_type_encryption_update(&mut tx, t.id, &change).await? {
        return Err(no_encryption(id));
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// Remove a type's encryption spec (admins; not while volumes have the type).
pub async fn encryption_delete(app: &App, ctx: &Context, id: &str) -> Result<()> {
    ctx.authorize(Op::TypeEncryptionDelete)?;
    let mut tx = app.store().begin().await?;
    let t = find(&mut tx, id).await?;
    refuse_encryption_change_in_use(&mut tx, &t, "delete").await?;
    if !store::volume_type_encryption_delete(&mut tx, t.id).await? {
        return Err(no_encryption(id));
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_spec_keys_and_values() {
        let check = |k: &str, v: &str, spaces: bool, ok: bool| {
            let specs = [(k.to_string(), v.to_string())].into();
            assert_eq!(
                validate_specs("extra_specs", &specs, spaces).is_ok(),
                ok,
                "{k:?}={v:?} spaces={spaces}"
            );
        };
        check("volume_backend_name", "file", false, true);
        check("capabilities:storage_protocol", "<in> nbd", false, true);
        check("a-b.c_d", "", false, true);
        check("with space", "v", false, false);
        check("with space", "v", true, true);
        check("a/b", "v", true, true);
        check("", "v", true, false);
        check("ключ", "v", true, false);
        check(&"k".repeat(255), "v", false, true);
        check(&"k".repeat(256), "v", false, false);
        check("k", &"v".repeat(255), false, true);
        check("k", &"v".repeat(256), false, false);
    }

    #[test]
    fn true_specs_and_cacheable() {
        for (v, want) in [
            ("<is> True", true),
            ("<is>true", true),
            (" <is>  TRUE ", true),
            ("<is> False", false),
            ("True", false),
        ] {
            assert_eq!(is_true_spec(Some(&v.to_string())), want, "{v:?}");
        }
        let both: BTreeMap<String, String> = [
            ("multiattach".to_string(), "<is> True".to_string()),
            ("cacheable".to_string(), "<is> True".to_string()),
        ]
        .into();
        assert!(check_cacheable(&both).is_err());
    }
}
