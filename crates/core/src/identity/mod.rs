//! The built-in Identity service: the subset of Keystone v3 that clients of
//! Block Storage need.
//!
//! - **Who**: one `Default` domain (others can exist in the store), projects,
//!   users with Argon2id password hashes, the three roles `admin` ⊃ `member` ⊃
//!   `reader` (inference rules in the store), role assignments of a user on a
//!   project. No groups, no system or domain scope, no project hierarchy.
//! - **Tokens** ([`tokens`]): opaque random strings (32 random bytes, hex).
//!   Only their SHA-256 is stored, with the user, the project (none for an
//!   unscoped token), the audit id and the expiry. A token is valid while its
//!   row is not revoked nor expired, its user, project and their domains are
//!   enabled, and (scoped) its user still holds a role on its project: roles
//!   are read at validation, never frozen into the token.
//! - **Validation is on every request**, so resolved tokens are cached in
//!   memory for a few seconds ([`cache`]); every identity change in this
//!   process drops the cache, so revocations, role changes and disabled users
//!   take effect at once here, and within the cache's lifetime on other nodes.
//! - **Management** ([`manage`]): projects, users, grants, role assignments,
//!   domains and roles (read only), with Keystone's default policies reduced
//!   to "admin, or the owner of the thing".
//! - **Bootstrap** ([`bootstrap`]): every start makes sure the default domain,
//!   the admin project and the admin user (role `admin` on that project)
//!   exist, as `keystone-manage bootstrap` does.
//!
//! Authentication failures are all `Unauthorized` with one message, whatever
//! went wrong (unknown user, wrong password, disabled user), so that callers
//! cannot probe which users exist; the reason goes to the log.

use std::sync::{Arc, Mutex};

use scoria_model::{DomainId, ProjectId, RoleId, UserId};
use scoria_store::identity as store;
pub use scoria_store::identity::{
    ADMIN_ROLE_ID, DEFAULT_DOMAIN_ID, DEFAULT_DOMAIN_NAME, Domain, MEMBER_ROLE_ID, Project,
    READER_ROLE_ID, Role, User,
};

use crate::context::{Context, Op};
use crate::error::{Error, Result};
use crate::{App, Config};

pub mod cache;
pub mod manage;
pub mod names;
pub mod password;
pub mod system;
pub mod tokens;

#[cfg(test)]
mod tests;

pub use manage::*;
pub use system::*;
pub use tokens::*;

/// The one message of every failed authentication (Keystone's).
pub const UNAUTHORIZED: &str = "The request you have made requires authentication.";

/// What the identity service keeps in memory: the token cache, the password
/// hasher, the outcome of the last bootstrap.
#[derive(Debug)]
pub struct IdentityState {
    pub(crate) cache: cache::TokenCache,
    pub(crate) hasher: Arc<password::Hasher>,
    bootstrap: Mutex<Option<Bootstrap>>,
    last_purge: Mutex<Option<std::time::Instant>>,
}

impl IdentityState {
    pub fn new(config: &Config) -> Self {
        let hasher = match config.password_cost {
            crate::PasswordCost::Default => password::Hasher::default(),
            crate::PasswordCost::TestOnlyMinimal => password::Hasher::cheap(),
        };
        IdentityState {
            cache: cache::TokenCache::new(cache::DEFAULT_TTL, cache::DEFAULT_CAPACITY),
            hasher: Arc::new(hasher),
            bootstrap: Mutex::new(None),
            last_purge: Mutex::new(None),
        }
    }

    /// Forget every cached token: call after any committed identity change.
    pub(crate) fn invalidate(&self) {
        self.cache.invalidate();
    }

    /// True at most once every `every`: time to delete expired tokens.
    pub(crate) fn purge_due(&self, every: std::time::Duration) -> bool {
        let mut last = self.last_purge.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        match *last {
            Some(t) if now.duration_since(t) < every => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }
}

/// The admin account as the last [`bootstrap`] left it. (`Default`: no
/// bootstrap ran, e.g. an [`App::assemble`]d app; the ids are empty.)
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Bootstrap {
    pub user_id: UserId,
    pub user_name: String,
    pub project_id: ProjectId,
    pub project_name: String,
    /// Name of the domain of both (`Default`).
    pub domain_name: String,
    /// True when this bootstrap created the admin user.
    pub created: bool,
    /// The admin's password when this bootstrap set it: generated (first
    /// creation without a configured password) or the configured one (at
    /// creation, or because the stored hash did not match it). `None`: the
    /// password was left as it was.
    pub password: Option<String>,
    /// True when `password` was generated here (nobody else knows it: write
    /// it where the operator will find it).
    pub generated: bool,
    /// Where clients authenticate: `{public_url}/identity/v3`.
    pub auth_url: String,
}

impl std::fmt::Debug for Bootstrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bootstrap")
            .field("user_id", &self.user_id)
            .field("user_name", &self.user_name)
            .field("project_id", &self.project_id)
            .field("project_name", &self.project_name)
            .field("created", &self.created)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("generated", &self.generated)
            .field("auth_url", &self.auth_url)
            .finish()
    }
}

/// The Identity endpoint clients authenticate against (`OS_AUTH_URL`).
pub fn auth_url(config: &Config) -> String {
    format!("{}/identity/v3", config.public_url.trim_end_matches('/'))
}

/// Make sure the default domain, the admin project and the admin user with
/// role `admin` on it exist; idempotent, run at every start.
///
/// The password: `config.admin_password` when set (and written over the
/// stored hash if that does not match it, which also re-enables the user, as
/// `keystone-manage bootstrap` does); otherwise a generated one when the user
/// is created, and untouched afterwards. The result is also kept for
/// [`App::bootstrap_info`].
pub async fn bootstrap(app: &App) -> Result<Bootstrap> {
    let config = &app.config;
    let hasher = &app.identity.hasher;
    let domain_id = DomainId::from(DEFAULT_DOMAIN_ID);
    validate_name("user", &config.admin_user, MAX_USER_NAME_LEN)?;
    validate_name("project", &config.admin_project, MAX_PROJECT_NAME_LEN)?;
    if let Some(pw) = &config.admin_password {
        password::validate(pw)?;
    }

    // Everything happens under the write lock, so that nodes starting
    // together agree; hashing a password there is slow but happens once.
    let mut tx = app.store().begin().await?;
    store::domain_ensure(
        &mut tx,
        &Domain {
            id: domain_id.clone(),
            name: DEFAULT_DOMAIN_NAME.into(),
            description: "The default domain".into(),
            enabled: true,
        },
    )
    .await?;
    let project = match store::project_get_by_name(
        &mut tx,
        DEFAULT_DOMAIN_ID,
        &config.admin_project,
    )
    .await?
    {
        Some(p) => p,
        None => {
            let p = store::new_project(
                &config.admin_project,
                domain_id.clone(),
                "Bootstrap project for initializing the cloud.",
                true,
            );
            store::project_create(&mut tx, &p).await?;
            tracing::info!(project = %p.id, name = %p.name, "created the admin project");
            p
        }
    };
    let existing = store::user_get_by_name(&mut tx, DEFAULT_DOMAIN_ID, &config.admin_user).await?;
    let (user, created, password, generated) = match existing {
        None => {
            let (pw, generated) = match &config.admin_password {
                Some(pw) => (pw.clone(), false),
                None => (password::generate(), true),
            };
            let user = User {
                id: UserId::new(),
                name: config.admin_user.clone(),
                domain_id: domain_id.clone(),
                password_hash: Some(hasher.hash(pw.clone()).await?),
                enabled: true,
                default_project_id: Some(project.id.clone()),
                email: None,
                description: Some("Bootstrap administrator".into()),
                created_at: scoria_store::now(),
            };
            store::user_create(&mut tx, &user).await?;
            tracing::info!(user = %user.id, name = %user.name, "created the admin user");
            (user, true, Some(pw), generated)
        }
        Some(u) => match &config.admin_password {
            Some(pw)
                if !hasher
                    .verify(pw.clone(), u.password_hash.clone())
                    .await
                    .unwrap_or(false) =>
            {
                let update = store::UserUpdate {
                    password_hash: Some(hasher.hash(pw.clone()).await?),
                    enabled: Some(true),
                    ..Default::default()
                };
                store::user_update(&mut tx, &u.id, &update).await?;
                store::token_revoke_user(&mut tx, &u.id).await?;
                tracing::info!(user = %u.id, "applied the configured admin password");
                (u, false, Some(pw.clone()), false)
            }
            _ => (u, false, None, false),
        },
    };
    store::role_assignment_add(&mut tx, &user.id, &project.id, &RoleId::from(ADMIN_ROLE_ID))
        .await?;
    // As `keystone-manage bootstrap`: the admin is also admin of the system.
    store::system_grant_add(&mut tx, &user.id, &RoleId::from(ADMIN_ROLE_ID)).await?;
    commit(tx).await?;
    app.identity.invalidate();

    let outcome = Bootstrap {
        user_id: user.id,
        user_name: user.name,
        project_id: project.id,
        project_name: project.name,
        domain_name: DEFAULT_DOMAIN_NAME.into(),
        created,
        password,
        generated,
        auth_url: auth_url(config),
    };
    *app.identity
        .bootstrap
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(outcome.clone());
    Ok(outcome)
}

impl App {
    /// The outcome of the bootstrap run by [`App::open`]: who the admin is
    /// and, when it was set at this start, their password (write
    /// `clouds.yaml` when `password` is `Some`).
    pub fn bootstrap_info(&self) -> Bootstrap {
        self.identity
            .bootstrap
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default()
    }
}

/// The caller behind a token (`X-Auth-Token`), or `Unauthorized`.
///
/// Called on every request: a cache hit costs a SHA-256 and a map look-up;
/// a miss reads the token, its user, project and roles.
pub async fn validate_token(app: &App, token: &str, request_id: &str) -> Result<Context> {
    let info = tokens::resolve(app, token).await?;
    Ok(info.context(request_id))
}

/// Commit a write transaction.
pub(crate) async fn commit(tx: scoria_store::Tx) -> Result<()> {
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// Check the policy table, with Keystone's wording for a refusal.
pub(crate) fn authorize(ctx: &Context, op: Op, is_owner: bool) -> Result<()> {
    ctx.authorize_owned(op, is_owner).map_err(|e| match e {
        Error::Forbidden(_) => Error::Forbidden(format!(
            "You are not authorized to perform the requested action: {}.",
            op.name()
        )),
        other => other,
    })
}

/// Longest names Keystone accepts.
pub const MAX_PROJECT_NAME_LEN: usize = 64;
pub const MAX_USER_NAME_LEN: usize = 255;
/// Longest descriptions and e-mail addresses Scoria keeps.
pub const MAX_DESCRIPTION_LEN: usize = 65535;
pub const MAX_EMAIL_LEN: usize = 255;

pub(crate) fn validate_name(what: &str, name: &str, max: usize) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::Invalid(format!(
            "Invalid input for field 'name': the {what} name must not be blank."
        )));
    }
    if name.chars().count() > max {
        return Err(Error::Invalid(format!(
            "Invalid input for field 'name': the {what} name is longer than {max} characters."
        )));
    }
    names::refuse_invisible(what, name)
}

pub(crate) fn validate_len(field: &str, value: &str, max: usize) -> Result<()> {
    if value.chars().count() > max {
        return Err(Error::Invalid(format!(
            "Invalid input for field '{field}': longer than {max} characters."
        )));
    }
    Ok(())
}
