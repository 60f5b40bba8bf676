//! Quota sets, quota classes and absolute limits, as the API shows them.
//!
//! Limits are stored; usage never is (see `scoria_store::quotas`). Lowering a
//! limit below what a project already uses and reserves is refused, as Cinder
//! does, so that "over quota" always means the same thing.

use std::collections::BTreeMap;

use scoria_model::quota::{QuotaResource, Usage};
use scoria_store::quotas as store;

use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result};

/// One resource of a quota set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaLine {
    pub limit: i64,
    pub usage: Usage,
}

/// The quota set of a project.
#[derive(Clone, Debug)]
pub struct QuotaSet {
    pub project_id: String,
    pub lines: BTreeMap<QuotaResource, QuotaLine>,
}

fn may_see(ctx: &Context, project: &str) -> Result<()> {
    if ctx.project_id.as_ref().is_some_and(|p| p.0 == project) {
        ctx.authorize(Op::QuotaShowOwn)
    } else {
        ctx.authorize(Op::QuotaShowAny)
    }
}

/// A project's limits and usage.
pub async fn show(app: &App, ctx: &Context, project: &str) -> Result<QuotaSet> {
    may_see(ctx, project)?;
    let mut conn = app.store().read().await?;
    let limits = store::quota_limits(&mut conn, project).await?;
    let usage = store::quota_usage(&mut conn, project).await?;
    Ok(QuotaSet {
        project_id: project.to_owned(),
        lines: limits
            .into_iter()
            .map(|(r, limit)| {
                (
                    r,
                    QuotaLine {
                        limit,
                        usage: usage.get(&r).copied().unwrap_or_default(),
                    },
                )
            })
            .collect(),
    })
}

/// The defaults (the `default` class) as they apply to a project.
pub async fn defaults(
    app: &App,
    ctx: &Context,
    project: &str,
) -> Result<BTreeMap<QuotaResource, i64>> {
    may_see(ctx, project)?;
    let mut conn = app.store().read().await?;
    Ok(store::quota_class_get(&mut conn, store::DEFAULT_CLASS).await?)
}

/// Check values of an update: integers ≥ -1.
fn validate(changes: &[(QuotaResource, i64)]) -> Result<()> {
    for (r, v) in changes {
        if *v < -1 {
            return Err(Error::Invalid(format!(
                "Invalid input received: Quota limit {v} for {r} must be -1 or greater."
            )));
        }
    }
    Ok(())
}

/// Admin: override some of a project's limits. A limit below what the project
/// uses and reserves is refused and nothing changes.
pub async fn update(
    app: &App,
    ctx: &Context,
    project: &str,
    changes: &[(QuotaResource, i64)],
) -> Result<QuotaSet> {
    ctx.authorize(Op::QuotaUpdate)?;
    validate(changes)?;
    {
        let mut tx = app.store().begin().await?;
        let usage = store::quota_usage(&mut tx, project).await?;
        for (r, v) in changes {
            let u = usage.get(r).copied().unwrap_or_default();
            if *v >= 0 && *v < u.in_use + u.reserved {
                return Err(Error::Invalid(format!(
                    "Invalid input received: Quota limit {v} for {r} is smaller than what is already used and reserved ({}).",
                    u.in_use + u.reserved
                )));
            }
        }
        store::quota_limit_set(&mut tx, project, changes).await?;
        tx.commit().await.map_err(scoria_store::StoreError::from)?;
    }
    show(app, ctx, project).await
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
pub async fn class_show(
    app: &App,
    ctx: &Context,
    class: &str,
) -> Result<BTreeMap<QuotaResource, i64>> {
    ctx.authorize(Op::QuotaClassShow)?;
    let mut conn = app.store().read().await?;
    let mut limits = store::quota_class_get(&mut conn, store::DEFAULT_CLASS).await?;
    if class != store::DEFAULT_CLASS {
        limits.extend(store::quota_class_get(&mut conn, class).await?);
    }
    Ok(limits)
}

/// Admin: change the limits of a quota class.
pub async fn class_update(
    app: &App,
    ctx: &Context,
    class: &str,
    changes: &[(QuotaResource, i64)],
) -> Result<BTreeMap<QuotaResource, i64>> {
    ctx.authorize(Op::QuotaClassUpdate)?;
    validate(changes)?;
    let mut tx = app.store().begin().await?;
    store::quota_class_set(&mut tx, class, changes).await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    class_show(app, ctx, class).await
}

/// The caller's own limits and usage (`GET /limits`).
pub async fn limits(app: &App, ctx: &Context) -> Result<QuotaSet> {
    ctx.authorize(Op::LimitsGet)?;
    let project = ctx.project()?.0.clone();
    let mut conn = app.store().read().await?;
    let limits = store::quota_limits(&mut conn, &project).await?;
    let usage = store::quota_usage(&mut conn, &project).await?;
    Ok(QuotaSet {
        project_id: project,
        lines: limits
            .into_iter()
            .map(|(r, limit)| {
                (
                    r,
                    QuotaLine {
                        limit,
                        usage: usage.get(&r).copied().unwrap_or_default(),
                    },
                )
            })
            .collect(),
    })
}
