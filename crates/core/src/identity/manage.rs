//! Managing identities: domains and roles (read only), projects, users, role
//! grants on projects, role assignment reports.
//!
//! Admins manage everything; a user may read themselves, their projects and
//! change their own password. Every change that can alter what a token stands
//! for drops the token cache after it commits.
//!
//! Deleting a project that still owns volumes or groups (or has a volume operation in
//! flight) is refused with a conflict: Keystone would delete it and leave
//! Cinder's volumes orphaned, but Scoria knows both sides, and a volume
//! nobody can reach is worse than an error that says what to delete first.
//! The bootstrap admin user and project cannot be deleted either: they are
//! re-created at every start, and deleting them would only lock the operator
//! out until then.

use scoria_model::{DomainId, ProjectId, RoleId, UserId};
use scoria_store::Conn;
use scoria_store::identity::{self as store, AssignmentFilter, ProjectFilter, UserFilter};

use super::tokens::{effective_roles, expand_roles};
use super::{
    DEFAULT_DOMAIN_ID, Domain, MAX_DESCRIPTION_LEN, MAX_EMAIL_LEN, MAX_PROJECT_NAME_LEN,
    MAX_USER_NAME_LEN, Project, Role, User, authorize, commit, password, validate_len,
    validate_name,
};
use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result};

pub use scoria_store::identity::{Assignment, NameInDomain};

fn project_not_found(id: &str) -> Error {
    Error::NotFound(format!("Could not find project: {id}."))
}

pub(super) fn user_not_found(id: &str) -> Error {
    Error::NotFound(format!("Could not find user: {id}."))
}

pub(super) fn role_not_found(id: &str) -> Error {
    Error::NotFound(format!("Could not find role: {id}."))
}

fn domain_not_found(id: &str) -> Error {
    Error::NotFound(format!("Could not find domain: {id}."))
}

/// The domain new projects and users go to when none is given: the caller's
/// project's, else the default one (Keystone's rule).
async fn caller_domain(conn: &mut Conn, ctx: &Context) -> Result<DomainId> {
    if let Some(p) = &ctx.project_id
        && let Some(p) = store::project_get(conn, p.as_str()).await?
    {
        return Ok(p.domain_id);
    }
    Ok(DomainId::from(DEFAULT_DOMAIN_ID))
}

async fn existing_domain(conn: &mut Conn, id: &str) -> Result<Domain> {
    store::domain_get(conn, id).await?.ok_or_else(|| {
        Error::Invalid(format!(
            "Invalid input for field 'domain_id': domain {id} does not exist."
        ))
    })
}

// ---------------------------------------------------------------- domains

/// `GET /domains` (admins).
pub async fn domain_list(app: &App, ctx: &Context, name: Option<&str>) -> Result<Vec<Domain>> {
    authorize(ctx, Op::IdentityDomainList, false)?;
    let mut conn = app.store().read().await?;
    Ok(store::domain_list(&mut conn, name).await?)
}

/// `GET /domains/{id}`: admins, or members of a project in the domain.
pub async fn domain_get(app: &App, ctx: &Context, id: &str) -> Result<Domain> {
    let mut conn = app.store().read().await?;
    let own = caller_domain(&mut conn, ctx).await?;
    authorize(
        ctx,
        Op::IdentityDomainGet,
        ctx.project_id.is_some() && own.as_str() == id,
    )?;
    store::domain_get(&mut conn, id)
        .await?
        .ok_or_else(|| domain_not_found(id))
}

// ---------------------------------------------------------------- projects

#[derive(Clone, Debug, Default)]
pub struct ProjectCreate {
    pub name: String,
    pub domain_id: Option<String>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

#[derive(Clone, Debug, Default)]
pub struct ProjectChange {
    pub name: Option<String>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

#[derive(Clone, Debug, Default)]
pub struct ProjectQuery {
    pub name: Option<String>,
    pub domain_id: Option<String>,
    pub enabled: Option<bool>,
}

pub async fn project_create(app: &App, ctx: &Context, req: ProjectCreate) -> Result<Project> {
    authorize(ctx, Op::IdentityProjectCreate, false)?;
    validate_name("project", &req.name, MAX_PROJECT_NAME_LEN)?;
    if let Some(d) = &req.description {
        validate_len("description", d, MAX_DESCRIPTION_LEN)?;
    }
    let mut tx = app.store().begin().await?;
    let domain_id = match &req.domain_id {
        Some(d) => existing_domain(&mut tx, d).await?.id,
        None => caller_domain(&mut tx, ctx).await?,
    };
    super::names::refuse_taken_project(&mut tx, &domain_id, &req.name, None).await?;
    let p = store::new_project(
        &req.name,
        domain_id,
        req.description.as_deref().unwrap_or_default(),
        req.enabled.unwrap_or(true),
    );
    store::project_create(&mut tx, &p).await?;
    commit(tx).await?;
    tracing::info!(project = %p.id, name = %p.name, "created a project");
    Ok(p)
}

pub async fn project_list(app: &App, ctx: &Context, q: ProjectQuery) -> Result<Vec<Project>> {
    authorize(ctx, Op::IdentityProjectList, false)?;
    let mut conn = app.store().read().await?;
    Ok(store::project_list(
        &mut conn,
        &ProjectFilter {
            name: q.name,
            domain_id: q.domain_id.map(DomainId::from),
            enabled: q.enabled,
        },
    )
    .await?)
}

/// `GET /projects/{id}`: admins, or a caller scoped to it.
pub async fn project_get(app: &App, ctx: &Context, id: &str) -> Result<Project> {
    let own = ctx.project_id.as_ref().is_some_and(|p| p.as_str() == id);
    authorize(ctx, Op::IdentityProjectGet, own)?;
    let mut conn = app.store().read().await?;
    store::project_get(&mut conn, id)
        .await?
        .ok_or_else(|| project_not_found(id))
}

pub async fn project_update(
    app: &App,
    ctx: &Context,
    id: &str,
    change: ProjectChange,
) -> Result<Project> {
    authorize(ctx, Op::IdentityProjectUpdate, false)?;
    if let Some(n) = &change.name {
        validate_name("project", n, MAX_PROJECT_NAME_LEN)?;
    }
    if let Some(d) = &change.description {
        validate_len("description", d, MAX_DESCRIPTION_LEN)?;
    }
    let pid = ProjectId::from(id);
    let mut tx = app.store().begin().await?;
    let before = store::project_get(&mut tx, id)
        .await?
        .ok_or_else(|| project_not_found(id))?;
    if change.enabled == Some(false) && is_bootstrap_project(app, &before) {
        return Err(Error::Conflict(
            "The bootstrap admin project cannot be disabled.".into(),
        ));
    }
    if let Some(n) = &change.name {
        super::names::refuse_taken_project(&mut tx, &before.domain_id, n, Some(id)).await?;
    }
    let update = store::ProjectUpdate {
        name: change.name,
        description: change.description,
        enabled: change.enabled,
    };
    store::project_update(&mut tx, &pid, &update).await?;
    let after = store::project_get(&mut tx, id)
        .await?
        .ok_or_else(|| project_not_found(id))?;
    commit(tx).await?;
    app.identity.invalidate();
    Ok(after)
}

fn is_bootstrap_project(app: &App, p: &Project) -> bool {
    p.domain_id.as_str() == DEFAULT_DOMAIN_ID && p.name == app.config.admin_project
}

fn is_bootstrap_user(app: &App, u: &User) -> bool {
    u.domain_id.as_str() == DEFAULT_DOMAIN_ID && u.name == app.config.admin_user
}

/// Delete a project with its role assignments, tokens and quota overrides;
/// refused while it owns volumes or groups.
pub async fn project_delete(app: &App, ctx: &Context, id: &str) -> Result<()> {
    authorize(ctx, Op::IdentityProjectDelete, false)?;
    let pid = ProjectId::from(id);
    let mut tx = app.store().begin().await?;
    let p = store::project_get(&mut tx, id)
        .await?
        .ok_or_else(|| project_not_found(id))?;
    if is_bootstrap_project(app, &p) {
        return Err(Error::Conflict(
            "The bootstrap admin project cannot be deleted.".into(),
        ));
    }
    let owned = store::project_resource_count(&mut tx, &pid).await?;
    if owned > 0 {
        return Err(Error::Conflict(format!(
            "Project {id} still owns {owned} volume(s), group(s) or volume operation(s) in progress; \
             delete its volumes and groups first."
        )));
    }
    store::project_delete(&mut tx, &pid).await?;
    scoria_store::quotas::quota_limit_delete(&mut tx, id).await?;
    commit(tx).await?;
    app.identity.invalidate();
    tracing::info!(project = %id, "deleted a project");
    Ok(())
}

// ---------------------------------------------------------------- users

#[derive(Clone, Default)]
pub struct UserCreate {
    pub name: String,
    pub domain_id: Option<String>,
    pub password: Option<String>,
    pub enabled: Option<bool>,
    pub default_project_id: Option<String>,
    pub email: Option<String>,
    pub description: Option<String>,
}

/// Changes to a user; for the nullable fields `Some(None)` clears.
#[derive(Clone, Default)]
pub struct UserChange {
    pub name: Option<String>,
    pub password: Option<String>,
    pub enabled: Option<bool>,
    pub default_project_id: Option<Option<String>>,
    pub email: Option<Option<String>>,
    pub description: Option<Option<String>>,
}

#[derive(Clone, Debug, Default)]
pub struct UserQuery {
    pub name: Option<String>,
    pub domain_id: Option<String>,
    pub enabled: Option<bool>,
}

async fn existing_project(conn: &mut Conn, id: &str) -> Result<ProjectId> {
    store::project_get(conn, id)
        .await?
        .map(|p| p.id)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "Invalid input for field 'default_project_id': project {id} does not exist."
            ))
        })
}

fn validate_user_fields(
    name: Option<&str>,
    email: Option<&str>,
    description: Option<&str>,
    password: Option<&str>,
) -> Result<()> {
    if let Some(n) = name {
        validate_name("user", n, MAX_USER_NAME_LEN)?;
    }
    if let Some(e) = email {
        validate_len("email", e, MAX_EMAIL_LEN)?;
    }
    if let Some(d) = description {
        validate_len("description", d, MAX_DESCRIPTION_LEN)?;
    }
    if let Some(p) = password {
        password::validate(p)?;
    }
    Ok(())
}

pub async fn user_create(app: &App, ctx: &Context, req: UserCreate) -> Result<User> {
    authorize(ctx, Op::IdentityUserCreate, false)?;
    validate_user_fields(
        Some(&req.name),
        req.email.as_deref(),
        req.description.as_deref(),
        req.password.as_deref(),
    )?;
    let password_hash = match req.password {
        Some(p) => Some(app.identity.hasher.hash(p).await?),
        None => None,
    };
    let mut tx = app.store().begin().await?;
    let domain_id = match &req.domain_id {
        Some(d) => existing_domain(&mut tx, d).await?.id,
        None => caller_domain(&mut tx, ctx).await?,
    };
    let default_project_id = match &req.default_project_id {
        Some(p) => Some(existing_project(&mut tx, p).await?),
        None => None,
    };
    super::names::refuse_taken_user(&mut tx, &domain_id, &req.name, None).await?;
    let u = User {
        id: UserId::new(),
        name: req.name,
        domain_id,
        password_hash,
        enabled: req.enabled.unwrap_or(true),
        default_project_id,
        email: req.email,
        description: req.description,
        created_at: scoria_store::now(),
    };
    store::user_create(&mut tx, &u).await?;
    commit(tx).await?;
    tracing::info!(user = %u.id, name = %u.name, "created a user");
    Ok(u)
}

pub async fn user_list(app: &App, ctx: &Context, q: UserQuery) -> Result<Vec<User>> {
    authorize(ctx, Op::IdentityUserList, false)?;
    let mut conn = app.store().read().await?;
    Ok(store::user_list(
        &mut conn,
        &UserFilter {
            name: q.name,
            domain_id: q.domain_id.map(DomainId::from),
            enabled: q.enabled,
        },
    )
    .await?)
}

/// `GET /users/{id}`: admins, or the user themselves.
pub async fn user_get(app: &App, ctx: &Context, id: &str) -> Result<User> {
    authorize(ctx, Op::IdentityUserGet, ctx.user_id.as_str() == id)?;
    let mut conn = app.store().read().await?;
    store::user_get(&mut conn, id)
        .await?
        .ok_or_else(|| user_not_found(id))
}

/// Change a user. A new password, or disabling, revokes their tokens.
pub async fn user_update(app: &App, ctx: &Context, id: &str, change: UserChange) -> Result<User> {
    authorize(ctx, Op::IdentityUserUpdate, false)?;
    validate_user_fields(
        change.name.as_deref(),
        change.email.as_ref().and_then(|e| e.as_deref()),
        change.description.as_ref().and_then(|d| d.as_deref()),
        change.password.as_deref(),
    )?;
    let password_hash = match change.password {
        Some(p) => Some(app.identity.hasher.hash(p).await?),
        None => None,
    };
    let uid = UserId::from(id);
    let mut tx = app.store().begin().await?;
    let before = store::user_get(&mut tx, id)
        .await?
        .ok_or_else(|| user_not_found(id))?;
    if change.enabled == Some(false) && is_bootstrap_user(app, &before) {
        return Err(Error::Conflict(
            "The bootstrap admin user cannot be disabled.".into(),
        ));
    }
    if let Some(n) = &change.name {
        super::names::refuse_taken_user(&mut tx, &before.domain_id, n, Some(id)).await?;
    }
    let default_project_id = match change.default_project_id {
        Some(Some(p)) => Some(Some(existing_project(&mut tx, &p).await?)),
        Some(None) => Some(None),
        None => None,
    };
    let revoke = password_hash.is_some() || change.enabled == Some(false);
    let update = store::UserUpdate {
        name: change.name,
        enabled: change.enabled,
        default_project_id,
        email: change.email,
        description: change.description,
        password_hash,
    };
    store::user_update(&mut tx, &uid, &update).await?;
    if revoke {
        store::token_revoke_user(&mut tx, &uid).await?;
    }
    let after = store::user_get(&mut tx, id)
        .await?
        .ok_or_else(|| user_not_found(id))?;
    commit(tx).await?;
    app.identity.invalidate();
    Ok(after)
}

pub async fn user_delete(app: &App, ctx: &Context, id: &str) -> Result<()> {
    authorize(ctx, Op::IdentityUserDelete, false)?;
    let mut tx = app.store().begin().await?;
    let u = store::user_get(&mut tx, id)
        .await?
        .ok_or_else(|| user_not_found(id))?;
    if is_bootstrap_user(app, &u) {
        return Err(Error::Conflict(
            "The bootstrap admin user cannot be deleted.".into(),
        ));
    }
    store::user_delete(&mut tx, &u.id).await?;
    commit(tx).await?;
    app.identity.invalidate();
    tracing::info!(user = %id, "deleted a user");
    Ok(())
}

/// `POST /users/{id}/password`: a user changes their own password, proving
/// the current one. Every token of theirs is revoked.
pub async fn user_change_password(
    app: &App,
    ctx: &Context,
    id: &str,
    original: String,
    new: String,
) -> Result<()> {
    authorize(
        ctx,
        Op::IdentityUserChangePassword,
        ctx.user_id.as_str() == id,
    )?;
    password::validate(&new)?;
    let user = {
        let mut conn = app.store().read().await?;
        store::user_get(&mut conn, id)
            .await?
            .ok_or_else(|| user_not_found(id))?
    };
    if !app
        .identity
        .hasher
        .verify(original, user.password_hash.clone())
        .await?
    {
        tracing::info!(user = %id, "refused a password change: wrong original password");
        return Err(Error::Unauthorized(super::UNAUTHORIZED.into()));
    }
    let hash = app.identity.hasher.hash(new).await?;
    let mut tx = app.store().begin().await?;
    let update = store::UserUpdate {
        password_hash: Some(hash),
        ..Default::default()
    };
    if !store::user_update(&mut tx, &user.id, &update).await? {
        return Err(user_not_found(id));
    }
    store::token_revoke_user(&mut tx, &user.id).await?;
    commit(tx).await?;
    app.identity.invalidate();
    tracing::info!(user = %id, "changed own password");
    Ok(())
}

/// `GET /users/{id}/projects`: admins, or the user themselves.
pub async fn user_projects(app: &App, ctx: &Context, id: &str) -> Result<Vec<Project>> {
    authorize(ctx, Op::IdentityUserProjects, ctx.user_id.as_str() == id)?;
    let mut conn = app.store().read().await?;
    let user = store::user_get(&mut conn, id)
        .await?
        .ok_or_else(|| user_not_found(id))?;
    Ok(store::project_list_for_user(&mut conn, &user.id).await?)
}

// ---------------------------------------------------------------- roles

pub async fn role_list(app: &App, ctx: &Context, name: Option<&str>) -> Result<Vec<Role>> {
    authorize(ctx, Op::IdentityRoleList, false)?;
    let mut conn = app.store().read().await?;
    Ok(store::role_list(&mut conn, name).await?)
}

pub async fn role_get(app: &App, ctx: &Context, id: &str) -> Result<Role> {
    authorize(ctx, Op::IdentityRoleGet, false)?;
    let mut conn = app.store().read().await?;
    store::role_get(&mut conn, id)
        .await?
        .ok_or_else(|| role_not_found(id))
}

/// `GET /role_inferences`: each role with the roles it directly implies.
pub async fn role_inferences(app: &App, ctx: &Context) -> Result<Vec<(Role, Vec<Role>)>> {
    authorize(ctx, Op::IdentityRoleInferenceList, false)?;
    let mut conn = app.store().read().await?;
    let mut out: Vec<(Role, Vec<Role>)> = Vec::new();
    for (prior, implied) in store::role_inference_list(&mut conn).await? {
        match out.iter_mut().find(|(p, _)| p.id == prior.id) {
            Some((_, list)) => list.push(implied),
            None => out.push((prior, vec![implied])),
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- grants

/// The project, user and role of a grant, each checked to exist (404).
async fn grant_target(
    conn: &mut Conn,
    project: &str,
    user: &str,
    role: &str,
) -> Result<(ProjectId, UserId, RoleId)> {
    let p = store::project_get(conn, project)
        .await?
        .ok_or_else(|| project_not_found(project))?;
    let u = store::user_get(conn, user)
        .await?
        .ok_or_else(|| user_not_found(user))?;
    let r = store::role_get(conn, role)
        .await?
        .ok_or_else(|| role_not_found(role))?;
    Ok((p.id, u.id, r.id))
}

/// `PUT /projects/{p}/users/{u}/roles/{r}`: idempotent.
pub async fn grant_create(
    app: &App,
    ctx: &Context,
    project: &str,
    user: &str,
    role: &str,
) -> Result<()> {
    authorize(ctx, Op::IdentityGrantCreate, false)?;
    let mut tx = app.store().begin().await?;
    let (p, u, r) = grant_target(&mut tx, project, user, role).await?;
    store::role_assignment_add(&mut tx, &u, &p, &r).await?;
    commit(tx).await?;
    app.identity.invalidate();
    Ok(())
}

/// `HEAD /projects/{p}/users/{u}/roles/{r}`: `NotFound` unless granted.
pub async fn grant_check(
    app: &App,
    ctx: &Context,
    project: &str,
    user: &str,
    role: &str,
) -> Result<()> {
    authorize(ctx, Op::IdentityGrantCheck, false)?;
    let mut conn = app.store().read().await?;
    let (p, u, r) = grant_target(&mut conn, project, user, role).await?;
    let found = store::role_assignment_list(
        &mut conn,
        &AssignmentFilter {
            user_id: Some(u),
            project_id: Some(p),
            role_id: Some(r),
        },
    )
    .await?;
    if found.is_empty() {
        return Err(grant_not_found(role, user, project));
    }
    Ok(())
}

fn grant_not_found(role: &str, user: &str, project: &str) -> Error {
    Error::NotFound(format!(
        "Could not find role assignment with role: {role}, user or group: {user}, \
         project, domain, or system: {project}."
    ))
}

/// `DELETE /projects/{p}/users/{u}/roles/{r}`.
pub async fn grant_revoke(
    app: &App,
    ctx: &Context,
    project: &str,
    user: &str,
    role: &str,
) -> Result<()> {
    authorize(ctx, Op::IdentityGrantRevoke, false)?;
    let mut tx = app.store().begin().await?;
    let (p, u, r) = grant_target(&mut tx, project, user, role).await?;
    if !store::role_assignment_remove(&mut tx, &u, &p, &r).await? {
        return Err(grant_not_found(role, user, project));
    }
    commit(tx).await?;
    app.identity.invalidate();
    Ok(())
}

/// `GET /projects/{p}/users/{u}/roles`: the roles granted directly.
pub async fn grant_list(app: &App, ctx: &Context, project: &str, user: &str) -> Result<Vec<Role>> {
    authorize(ctx, Op::IdentityGrantList, false)?;
    let mut conn = app.store().read().await?;
    let p = store::project_get(&mut conn, project)
        .await?
        .ok_or_else(|| project_not_found(project))?;
    let u = store::user_get(&mut conn, user)
        .await?
        .ok_or_else(|| user_not_found(user))?;
    Ok(store::role_assignment_list(
        &mut conn,
        &AssignmentFilter {
            user_id: Some(u.id),
            project_id: Some(p.id),
            role_id: None,
        },
    )
    .await?
    .into_iter()
    .map(|a| a.role)
    .collect())
}

/// Filters of `GET /role_assignments`.
#[derive(Clone, Debug, Default)]
pub struct AssignmentQuery {
    pub user_id: Option<String>,
    pub project_id: Option<String>,
    pub role_id: Option<String>,
    /// Expand implied roles (the only indirection Scoria has: no groups, no
    /// inheritance).
    pub effective: bool,
}

/// One row of a role assignment report; `prior_role` is set for a role held
/// through an inference rule (effective reports only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssignmentEntry {
    pub assignment: Assignment,
    pub prior_role: Option<Role>,
}

/// `GET /role_assignments`.
pub async fn assignment_list(
    app: &App,
    ctx: &Context,
    q: AssignmentQuery,
) -> Result<Vec<AssignmentEntry>> {
    authorize(ctx, Op::IdentityAssignmentList, false)?;
    let mut conn = app.store().read().await?;
    let direct = store::role_assignment_list(
        &mut conn,
        &AssignmentFilter {
            user_id: q.user_id.map(UserId::from),
            project_id: q.project_id.map(ProjectId::from),
            // With `effective`, a role may be held through another one: filter
            // after expanding.
            role_id: if q.effective {
                None
            } else {
                q.role_id.clone().map(RoleId::from)
            },
        },
    )
    .await?;
    let mut out: Vec<AssignmentEntry> = Vec::new();
    if q.effective {
        let rules = store::role_inference_list(&mut conn).await?;
        // Group the direct roles of each (user, project), then expand.
        let mut groups: Vec<(Assignment, Vec<Role>)> = Vec::new();
        for a in direct {
            match groups
                .iter_mut()
                .find(|(g, _)| g.user_id == a.user_id && g.project_id == a.project_id)
            {
                Some((_, roles)) => roles.push(a.role),
                None => {
                    let role = a.role.clone();
                    groups.push((a, vec![role]));
                }
            }
        }
        for (template, roles) in groups {
            for (role, prior_role) in expand_roles(roles, &rules) {
                out.push(AssignmentEntry {
                    assignment: Assignment {
                        role,
                        ..template.clone()
                    },
                    prior_role,
                });
            }
        }
        if let Some(r) = &q.role_id {
            out.retain(|e| e.assignment.role.id.as_str() == r);
        }
    } else {
        out = direct
            .into_iter()
            .map(|assignment| AssignmentEntry {
                assignment,
                prior_role: None,
            })
            .collect();
    }
    Ok(out)
}

/// The caller's effective roles on a project (a helper for other modules
/// and tests).
pub async fn roles_of(app: &App, user: &UserId, project: &ProjectId) -> Result<Vec<Role>> {
    let mut conn = app.store().read().await?;
    effective_roles(&mut conn, user, project).await
}
