//! Quota sets, quota classes and absolute limits, as the API shows them.
//!
//! Limits are stored; usage never is (see `scoria_store::quotas`). Lowering a
//! limit below what a project already uses and reserves is refused, as Cinder
//! does, so that "over quota" always means the same thing.
//!
//! # Per-type keys
//!
//! Besides the project-wide resources, every volume type `T` has the keys
//! `volumes_T`, `gigabytes_T` and `snapshots_T` (unlimited unless set). The
//! store keys them by the type's id, the API by its name ([`NamedKey`]); this
//! module translates, in the transaction that reads or writes the limits, so
//! a name always means the type that has it at that instant. A key naming no
//! type is refused like any unknown key (400).
//!
//! Which types a quota set shows: an admin sees the keys of every type, as
//! Cinder shows them; a project's own members see the types their project may
//! use (public, or shared with it) and any other type their project holds
//! volumes of or has a limit for. Cinder shows every type to everyone; Scoria
//! does not show a private type's name to projects it is not shared with, as
//! it does not show it in their type list.

use std::collections::{BTreeMap, BTreeSet};

use scoria_model::VolumeTypeId;
use scoria_model::quota::{NamedKey, QuotaKey, Usage};
use scoria_store::Conn;
use scoria_store::quotas as store;
use scoria_store::volume_types;

use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result};

/// One key of a quota set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaLine {
    pub limit: i64,
    pub usage: Usage,
}

/// The quota set of a project, keyed as the API names keys.
#[derive(Clone, Debug)]
pub struct QuotaSet {
    pub project_id: String,
    pub lines: BTreeMap<NamedKey, QuotaLine>,
}

fn may_see(ctx: &Context, project: &str) -> Result<()> {
    if ctx.project_id.as_ref().is_some_and(|p| p.0 == project) {
        ctx.authorize(Op::QuotaShowOwn)
    } else {
        ctx.authorize(Op::QuotaShowAny)
    }
}

/// The types whose keys `ctx` sees for `project` (module doc), by id, with
/// their names. `used` holds the types the project has volumes, reservations
/// or limits of.
async fn shown_types(
    conn: &mut Conn,
    ctx: &Context,
    project: Option<&str>,
    used: &BTreeSet<VolumeTypeId>,
) -> Result<BTreeMap<VolumeTypeId, String>> {
    let listed = if ctx.is_admin() || project.is_none() {
        volume_types::volume_type_list(conn, None, None).await?
    } else {
        volume_types::volume_type_list(conn, Some(true), project).await?
    };
    let mut out: BTreeMap<VolumeTypeId, String> =
        listed.into_iter().map(|t| (t.id, t.name)).collect();
    for t in used {
        if !out.contains_key(t)
            && let Some(vt) = volume_types::volume_type_get(conn, *t).await?
        {
            out.insert(vt.id, vt.name);
        }
    }
    Ok(out)
}

/// The per-type keys' types among `keys`.
fn types_of<'a>(keys: impl Iterator<Item = &'a QuotaKey>) -> BTreeSet<VolumeTypeId> {
    keys.filter_map(|k| match k {
        QuotaKey::PerType(_, t) => Some(*t),
        QuotaKey::Global(_) => None,
    })
    .collect()
}

/// Every key to show: the project-wide ones `limits` holds, and the three
/// keys of each of `types`, with their API names.
fn shown_keys(
    limits: &BTreeMap<QuotaKey, i64>,
    types: &BTreeMap<VolumeTypeId, String>,
) -> Vec<(QuotaKey, NamedKey)> {
    let global = limits
        .keys()
        .filter_map(|k| match k {
            QuotaKey::Global(r) => Some((*k, NamedKey::Global(*r))),
            QuotaKey::PerType(..) => None,
        })
        .collect::<Vec<_>>();
    let typed = types.iter().flat_map(|(id, name)| {
        QuotaKey::of_type(*id)
            .into_iter()
            .map(move |k| (k, k.named(name)))
    });
    global.into_iter().chain(typed).collect()
}

fn limit_of(limits: &BTreeMap<QuotaKey, i64>, k: QuotaKey) -> i64 {
    limits.get(&k).copied().unwrap_or(k.default_limit())
}

/// A project's limits and usage, read in one go.
async fn quota_set(conn: &mut Conn, ctx: &Context, project: &str) -> Result<QuotaSet> {
    let limits = store::quota_limits(conn, project).await?;
    let usage = store::quota_usage(conn, project).await?;
    let overrides = store::quota_limit_overrides(conn, project).await?;
    let used: BTreeSet<VolumeTypeId> = types_of(
        usage
            .iter()
            .filter(|(_, u)| **u != Usage::default())
            .map(|(k, _)| k)
            .chain(overrides.keys()),
    );
    let types = shown_types(conn, ctx, Some(project), &used).await?;
    Ok(QuotaSet {
        project_id: project.to_owned(),
        lines: shown_keys(&limits, &types)
            .into_iter()
            .map(|(k, name)| {
                let line = QuotaLine {
                    limit: limit_of(&limits, k),
                    usage: usage.get(&k).copied().unwrap_or_default(),
                };
                (name, line)
            })
            .collect(),
    })
}

/// Limits of a class as shown to `ctx` (for `project`, when they are its
/// defaults).
async fn class_limits(
    conn: &mut Conn,
    ctx: &Context,
    class: &str,
    project: Option<&str>,
) -> Result<BTreeMap<NamedKey, i64>> {
    let mut limits = store::quota_class_get(conn, store::DEFAULT_CLASS).await?;
    if class != store::DEFAULT_CLASS {
        limits.extend(store::quota_class_get(conn, class).await?);
    }
    let types = shown_types(conn, ctx, project, &BTreeSet::new()).await?;
    Ok(shown_keys(&limits, &types)
        .into_iter()
        .map(|(k, name)| (name, limit_of(&limits, k)))
        .collect())
}

/// A project's limits and usage.
pub async fn show(app: &App, ctx: &Context, project: &str) -> Result<QuotaSet> {
    may_see(ctx, project)?;
    let mut conn = app.store().read().await?;
    quota_set(&mut conn, ctx, project).await
}

/// The defaults (the `default` class) as they apply to a project.
pub async fn defaults(app: &App, ctx: &Context, project: &str) -> Result<BTreeMap<NamedKey, i64>> {
    may_see(ctx, project)?;
    let mut conn = app.store().read().await?;
    class_limits(&mut conn, ctx, store::DEFAULT_CLASS, Some(project)).await
}

/// Check values of an update (integers ≥ -1) and find the types that per-type
/// keys name, in the caller's transaction.
async fn resolve(conn: &mut Conn, changes: &[(NamedKey, i64)]) -> Result<Vec<(QuotaKey, i64)>> {
    let mut out = Vec::with_capacity(changes.len());
    for (key, v) in changes {
        if *v < -1 {
            return Err(Error::Invalid(format!(
                "Invalid input received: Quota limit {v} for {key} must be -1 or greater."
            )));
        }
        // Cinder's `validate_integer` bound: limits are 32-bit in its schema.
        if *v > i64::from(i32::MAX) {
            return Err(Error::Invalid(format!(
                "Invalid input received: {key} must be <= {}.",
                i32::MAX
            )));
        }
        let k = match key {
            NamedKey::Global(r) => QuotaKey::Global(*r),
            NamedKey::PerType(r, name) => {
                match volume_types::volume_type_get_by_name(conn, name).await? {
                    Some(t) => QuotaKey::PerType(*r, t.id),
                    None => {
                        return Err(Error::Invalid(format!("Bad key(s) in quota set: {key}")));
                    }
                }
            }
        };
        out.push((k, *v));
    }
    Ok(out)
}

/// Admin: override some of a project's limits. A limit below what the project
/// uses and reserves is refused and nothing changes.
pub async fn update(
    app: &App,
    ctx: &Context,
    project: &str,
    changes: &[(NamedKey, i64)],
) -> Result<QuotaSet> {
    ctx.authorize(Op::QuotaUpdate)?;
    let mut tx = app.store().begin().await?;
    let keyed = resolve(&mut tx, changes).await?;
    let usage = store::quota_usage(&mut tx, project).await?;
    for ((k, v), (name, _)) in keyed.iter().zip(changes) {
        let u = usage.get(k).copied().unwrap_or_default();
        if *v >= 0 && *v < u.in_use + u.reserved {
            return Err(Error::Invalid(format!(
                "Invalid input received: Quota limit {v} for {name} is smaller than what is already used and reserved ({}).",
                u.in_use + u.reserved
            )));
        }
    }
    store::quota_limit_set(&mut tx, project, &keyed).await?;
    let set = quota_set(&mut tx, ctx, project).await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(set)
}

/// Admin: drop a project's overrides (back to the defaults).
pub async fn delete(app: &App, ctx: &Context, project: &str) -> Result<()> {
    ctx.authorize(Op::QuotaDelete)?;
    let mut tx = app.store().begin().await?;
    store::quota_limit_delete(&mut tx, project).await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// Admin: the limits of a quota class (`default` holds the defaults; other
/// classes show the defaults for what they do not set).
pub async fn class_show(app: &App, ctx: &Context, class: &str) -> Result<BTreeMap<NamedKey, i64>> {
    ctx.authorize(Op::QuotaClassShow)?;
    let mut conn = app.store().read().await?;
    class_limits(&mut conn, ctx, class, None).await
}

/// Admin: change the limits of a quota class.
pub async fn class_update(
    app: &App,
    ctx: &Context,
    class: &str,
    changes: &[(NamedKey, i64)],
) -> Result<BTreeMap<NamedKey, i64>> {
    ctx.authorize(Op::QuotaClassUpdate)?;
    let mut tx = app.store().begin().await?;
    let keyed = resolve(&mut tx, changes).await?;
    store::quota_class_set(&mut tx, class, &keyed).await?;
    let limits = class_limits(&mut tx, ctx, class, None).await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(limits)
}

/// The caller's own limits and usage (`GET /limits`).
pub async fn limits(app: &App, ctx: &Context) -> Result<QuotaSet> {
    ctx.authorize(Op::LimitsGet)?;
    let project = ctx.project()?.0.clone();
    let mut conn = app.store().read().await?;
    quota_set(&mut conn, ctx, &project).await
}
