//! QoS specs (admins only): named limits with a consumer, associated with
//! volume types (a type has at most one).
//!
//! Scoria stores and shows them, with Cinder's rules for names, consumers and
//! associations; it does not enforce them on I/O yet (the README says so).
//! A spec associated with types is deleted only with `force`, which first
//! removes the associations.

use std::collections::BTreeMap;

use scoria_model::{QosSpecsId, VolumeTypeId};
use scoria_store::qos_specs as store;
pub use scoria_store::qos_specs::QosSpecs;
use scoria_store::{Conn, volume_types};

use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result};
use crate::rules::types::type_not_found;
use crate::rules::validate::validate_specs;
use crate::volume_types::MAX_LEN;

/// Who applies the limits.
pub const CONSUMERS: &[&str] = &["front-end", "back-end", "both"];
/// The consumer when none is given.
pub const DEFAULT_CONSUMER: &str = "back-end";

fn not_found(id: impl std::fmt::Display) -> Error {
    Error::NotFound(format!("No such QoS spec {id}."))
}

fn validate_consumer(c: &str) -> Result<()> {
    if !CONSUMERS.contains(&c) {
        return Err(Error::Invalid(format!(
            "Invalid input received: Valid consumer of QoS specs are: {}",
            CONSUMERS.join(", ")
        )));
    }
    Ok(())
}

async fn find(conn: &mut Conn, id: &str) -> Result<QosSpecs> {
    let parsed: QosSpecsId = id.parse().map_err(|_| not_found(id))?;
    store::qos_specs_get(conn, parsed)
        .await?
        .ok_or_else(|| not_found(id))
}

/// Every QoS spec.
pub async fn list(app: &App, ctx: &Context) -> Result<Vec<QosSpecs>> {
    ctx.authorize(Op::QosSpecsList)?;
    let mut conn = app.store().read().await?;
    Ok(store::qos_specs_list(&mut conn).await?)
}

/// One QoS spec.
pub async fn get(app: &App, ctx: &Context, id: &str) -> Result<QosSpecs> {
    ctx.authorize(Op::QosSpecsGet)?;
    let mut conn = app.store().read().await?;
    find(&mut conn, id).await
}

/// Create a QoS spec. The name is trimmed; the consumer defaults to
/// `back-end`; every other key is a spec.
pub async fn create(
    app: &App,
    ctx: &Context,
    name: &str,
    consumer: Option<&str>,
    specs: BTreeMap<String, String>,
) -> Result<QosSpecs> {
    ctx.authorize(Op::QosSpecsCreate)?;
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::Invalid("The 'name' can not be empty.".into()));
    }
    crate::rules::validate::validate_text("name", name, MAX_LEN)?;
    let consumer = consumer.unwrap_or(DEFAULT_CONSUMER);
    validate_consumer(consumer)?;
    validate_specs("qos_specs", &specs, true)?;
    let id = QosSpecsId::new();
    let mut tx = app.store().begin().await?;
    store::qos_specs_create(&mut tx, id, name, consumer, &specs).await?;
    let q = store::qos_specs_get(&mut tx, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(q)
}

/// Add or overwrite specs (and change the consumer when `consumer` is given).
pub async fn update(
    app: &App,
    ctx: &Context,
    id: &str,
    consumer: Option<&str>,
    specs: &BTreeMap<String, String>,
) -> Result<()> {
    ctx.authorize(Op::QosSpecsUpdate)?;
    if let Some(c) = consumer {
        validate_consumer(c)?;
    }
    validate_specs("qos_specs", specs, true)?;
    let mut tx = app.store().begin().await?;
    let q = find(&mut tx, id).await?;
    store::qos_specs_update(&mut tx, q.id, consumer, specs).await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// Remove keys; all of them must exist (else 404 and nothing changes).
pub async fn delete_keys(app: &App, ctx: &Context, id: &str, keys: &[String]) -> Result<()> {
    ctx.authorize(Op::QosSpecsDelete)?;
    let mut tx = app.store().begin().await?;
    let q = find(&mut tx, id).await?;
    if let Some(k) = keys.iter().find(|k| !q.specs.contains_key(*k)) {
        return Err(Error::NotFound(format!(
            "QoS spec {id} has no spec with key {k}."
        )));
    }
    store::qos_specs_delete_keys(&mut tx, q.id, keys).await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// Delete a QoS spec; one still associated with types only with `force`.
pub async fn delete(app: &App, ctx: &Context, id: &str, force: bool) -> Result<()> {
    ctx.authorize(Op::QosSpecsDelete)?;
    let mut tx = app.store().begin().await?;
    let q = find(&mut tx, id).await?;
    if force {
        store::qos_specs_disassociate_all(&mut tx, q.id).await?;
    }
    if !store::qos_specs_delete(&mut tx, q.id).await? {
        return Err(Error::InvalidState(format!(
            "QoS Specs {id} is still associated with entities."
        )));
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// The types associated with a QoS spec: (id, name).
pub async fn associations(
    app: &App,
    ctx: &Context,
    id: &str,
) -> Result<Vec<(VolumeTypeId, String)>> {
    ctx.authorize(Op::QosSpecsList)?;
    let mut conn = app.store().read().await?;
    let q = find(&mut conn, id).await?;
    Ok(store::qos_specs_associations(&mut conn, q.id).await?)
}

async fn find_type(conn: &mut Conn, type_id: Option<&str>) -> Result<VolumeTypeId> {
    let raw = type_id
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::Invalid("Volume Type id must not be None.".into()))?;
    let parsed: VolumeTypeId = raw.parse().map_err(|_| type_not_found(raw))?;
    volume_types::volume_type_get(conn, parsed)
        .await?
        .map(|t| t.id)
        .ok_or_else(|| type_not_found(raw))
}

/// Associate a type with the QoS spec (a type has at most one).
pub async fn associate(app: &App, ctx: &Context, id: &str, type_id: Option<&str>) -> Result<()> {
    ctx.authorize(Op::QosSpecsUpdate)?;
    let mut tx = app.store().begin().await?;
    let q = find(&mut tx, id).await?;
    let t = find_type(&mut tx, type_id).await?;
    if !store::qos_specs_associate(&mut tx, q.id, t).await? {
        let other = volume_types::volume_type_get(&mut tx, t)
            .await?
            .and_then(|t| t.qos_specs_id)
            .map(|o| o.to_string())
            .unwrap_or_default();
        return Err(Error::Invalid(format!(
            "Invalid volume type: Type {t} is already associated with another qos specs: {other}"
        )));
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// Remove the association of one type (none is fine).
pub async fn disassociate(app: &App, ctx: &Context, id: &str, type_id: Option<&str>) -> Result<()> {
    ctx.authorize(Op::QosSpecsUpdate)?;
    let mut tx = app.store().begin().await?;
    let q = find(&mut tx, id).await?;
    let t = find_type(&mut tx, type_id).await?;
    store::qos_specs_disassociate(&mut tx, q.id, t).await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// Remove every association of the QoS spec.
pub async fn disassociate_all(app: &App, ctx: &Context, id: &str) -> Result<()> {
    ctx.authorize(Op::QosSpecsUpdate)?;
    let mut tx = app.store().begin().await?;
    let q = find(&mut tx, id).await?;
    store::qos_specs_disassociate_all(&mut tx, q.id).await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}
