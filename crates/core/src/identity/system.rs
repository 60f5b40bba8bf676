//! Keystone's system scope: roles given to users on the system (the whole
//! installation), the tokens scoped to it, and the project a system-scoped
//! caller targets on a Block Storage route.
//!
//! `PUT/HEAD/DELETE /system/users/{u}/roles/{r}` and
//! `GET /system/users/{u}/roles` manage the grants (admins; system readers
//! may read them); `GET /role_assignments?scope.system=all` reports them. A
//! token scoped to the system (`"scope": {"system": {"all": true}}`) needs at
//! least one such role and carries them, implied ones included. What it may
//! do is the policy table's business (`context.rs`): the operator routes,
//! reading any project, never creating or changing a project's resources.

use scoria_model::{ProjectId, RoleId, UserId};
use scoria_store::Conn;
use scoria_store::identity::{self as store, SystemGrant};

use super::manage::{role_not_found, user_not_found};
use super::tokens::expand_roles;
use super::{Role, authorize, commit};
use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result};

/// A user's roles on the system, implied ones included (empty: none).
pub(crate) async fn system_roles(conn: &mut Conn, user: &UserId) -> Result<Vec<Role>> {
    let direct: Vec<Role> = store::system_grant_list(conn, Some(user), None)
        .await?
        .into_iter()
        .map(|g| g.role)
        .collect();
    if direct.is_empty() {
        return Ok(direct);
    }
    let rules = store::role_inference_list(conn).await?;
    Ok(expand_roles(direct, &rules)
        .into_iter()
        .map(|(r, _)| r)
        .collect())
}

/// The user and role of a system grant, each checked to exist (404).
async fn grant_target(conn: &mut Conn, user: &str, role: &str) -> Result<(UserId, RoleId)> {
    let u = store::user_get(conn, user)
        .await?
        .ok_or_else(|| user_not_found(user))?;
    let r = store::role_get(conn, role)
        .await?
        .ok_or_else(|| role_not_found(role))?;
    Ok((u.id, r.id))
}

fn grant_not_found(role: &str, user: &str) -> Error {
    Error::NotFound(format!(
        "Could not find role assignment with role: {role}, user or group: {user}, \
         project, domain, or system: system."
    ))
}

/// `PUT /system/users/{u}/roles/{r}`: idempotent.
pub async fn system_grant_create(app: &App, ctx: &Context, user: &str, role: &str) -> Result<()> {
    authorize(ctx, Op::IdentitySystemGrantCreate, false)?;
    let mut tx = app.store().begin().await?;
    let (u, r) = grant_target(&mut tx, user, role).await?;
    if store::system_grant_add(&mut tx, &u, &r).await? {
        tracing::info!(user = %u, role = %r, by = %ctx.user_id, "granted a system role");
    }
    commit(tx).await?;
    app.identity.invalidate();
    Ok(())
}

/// `HEAD /system/users/{u}/roles/{r}`: `NotFound` unless granted.
pub async fn system_grant_check(app: &App, ctx: &Context, user: &str, role: &str) -> Result<()> {
    authorize(ctx, Op::IdentitySystemGrantCheck, false)?;
    let mut conn = app.store().read().await?;
    let (u, r) = grant_target(&mut conn, user, role).await?;
    if store::system_grant_list(&mut conn, Some(&u), Some(&r))
        .await?
        .is_empty()
    {
        return Err(grant_not_found(role, user));
    }
    Ok(())
}

/// `DELETE /system/users/{u}/roles/{r}`.
pub async fn system_grant_revoke(app: &App, ctx: &Context, user: &str, role: &str) -> Result<()> {
    authorize(ctx, Op::IdentitySystemGrantRevoke, false)?;
    let mut tx = app.store().begin().await?;
    let (u, r) = grant_target(&mut tx, user, role).await?;
    if !store::system_grant_remove(&mut tx, &u, &r).await? {
        return Err(grant_not_found(role, user));
    }
    commit(tx).await?;
    app.identity.invalidate();
    tracing::info!(user = %u, role = %r, by = %ctx.user_id, "revoked a system role");
    Ok(())
}

/// `GET /system/users/{u}/roles`: the roles granted directly on the system.
pub async fn system_grant_list(app: &App, ctx: &Context, user: &str) -> Result<Vec<Role>> {
    authorize(ctx, Op::IdentitySystemGrantList, false)?;
    let mut conn = app.store().read().await?;
    let u = store::user_get(&mut conn, user)
        .await?
        .ok_or_else(|| user_not_found(user))?;
    Ok(store::system_grant_list(&mut conn, Some(&u.id), None)
        .await?
        .into_iter()
        .map(|g| g.role)
        .collect())
}

/// One system row of `GET /role_assignments`; `prior_role` is set for a role
/// held through an inference rule (effective reports only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemAssignment {
    pub grant: SystemGrant,
    pub prior_role: Option<Role>,
}

/// The system rows of `GET /role_assignments` (`user.id`, `role.id`,
/// `effective`), after the caller was authorized by the project report.
pub async fn system_assignment_list(
    app: &App,
    ctx: &Context,
    user_id: Option<&str>,
    role_id: Option<&str>,
    effective: bool,
) -> Result<Vec<SystemAssignment>> {
    authorize(ctx, Op::IdentityAssignmentList, false)?;
    let mut conn = app.store().read().await?;
    let user = user_id.map(UserId::from);
    let role = role_id.map(RoleId::from);
    let direct = store::system_grant_list(
        &mut conn,
        user.as_ref(),
        if effective { None } else { role.as_ref() },
    )
    .await?;
    if !effective {
        return Ok(direct
            .into_iter()
            .map(|grant| SystemAssignment {
                grant,
                prior_role: None,
            })
            .collect());
    }
    let rules = store::role_inference_list(&mut conn).await?;
    let mut users: Vec<(SystemGrant, Vec<Role>)> = Vec::new();
    for g in direct {
        match users.iter_mut().find(|(t, _)| t.user_id == g.user_id) {
            Some((_, roles)) => roles.push(g.role),
            None => {
                let role = g.role.clone();
                users.push((g, vec![role]));
            }
        }
    }
    let mut out = Vec::new();
    for (template, roles) in users {
        for (role, prior_role) in expand_roles(roles, &rules) {
            out.push(SystemAssignment {
                grant: SystemGrant {
                    role,
                    ..template.clone()
                },
                prior_role,
            });
        }
    }
    if let Some(r) = &role {
        out.retain(|e| &e.grant.role.id == r);
    }
    Ok(out)
}

/// The caller of a `/v3/{project_id}/…` route with a system-scoped token:
/// the URL's project becomes the target the policy table sees (see
/// `context.rs`). `NotFound` when no such project exists.
pub async fn system_target(app: &App, ctx: &Context, project: &str) -> Result<Context> {
    let mut conn = app.store().read().await?;
    let p = store::project_get(&mut conn, project)
        .await?
        .ok_or_else(|| Error::NotFound(format!("Could not find project: {project}.")))?;
    Ok(Context {
        project_id: Some(ProjectId(p.id.0)),
        project_name: Some(p.name),
        ..ctx.clone()
    })
}
