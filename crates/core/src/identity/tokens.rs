//! Tokens: issue (password or token method, project-scoped or unscoped),
//! resolve, show, revoke; the service catalog.
//!
//! ```text
//!   POST /auth/tokens ──► issued ──(DELETE /auth/tokens, password change,
//!                           │       user disabled by an admin)──► revoked
//!                           └──(expires_at passes)──► expired ──(purge)──► gone
//! ```
//! A token is 32 random bytes (base64url, 43 characters); the store keeps
//! the hex SHA-256 of it. Besides its own state, a token stops working when
//! its user, its project or their domain is disabled or deleted, or when the
//! user no longer holds any role on the project.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rand::RngCore;
use scoria_model::{DomainId, ProjectId, UserId};
use scoria_store::Conn;
use scoria_store::identity::{self as store, AssignmentFilter, TokenRecord};
use sha2::{Digest as _, Sha256};

use super::cache::Digest;
use super::system::system_roles;
use super::{Domain, Project, Role, UNAUTHORIZED, User, authorize, commit};
use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result};

/// Longer strings are not tokens of ours; refused before hashing.
pub const MAX_TOKEN_LEN: usize = 1024;
/// How often expired tokens are deleted (piggy-backed on issuing one).
const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// A user or project with the name of its domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Named<Id> {
    pub id: Id,
    pub name: String,
    pub domain_id: DomainId,
    pub domain_name: String,
}

/// Everything a token stands for, as of when it was resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    pub user: Named<UserId>,
    /// `None`: unscoped or system-scoped.
    pub project: Option<Named<ProjectId>>,
    /// Scoped to the system (`"system": {"all": true}`).
    pub system: bool,
    /// Effective roles on the project or the system (implied ones included):
    /// the direct ones by name, then those they imply. Empty when unscoped.
    pub roles: Vec<Role>,
    pub methods: Vec<String>,
    /// This token's audit id, then that of the token it was made from.
    pub audit_ids: Vec<String>,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl TokenInfo {
    /// The caller this token stands for.
    pub fn context(&self, request_id: &str) -> Context {
        Context {
            request_id: request_id.to_owned(),
            user_id: self.user.id.clone(),
            user_name: self.user.name.clone(),
            project_id: self.project.as_ref().map(|p| p.id.clone()),
            project_name: self.project.as_ref().map(|p| p.name.clone()),
            roles: self.roles.iter().map(|r| r.name.clone()).collect(),
            system: self.system,
        }
    }
}

/// A domain named in a request, by id or by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DomainRef {
    Id(String),
    Name(String),
}

/// A user named in a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserRef {
    Id(String),
    Name { name: String, domain: DomainRef },
}

/// A project named in a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProjectRef {
    Id(String),
    Name { name: String, domain: DomainRef },
}

/// How the caller proves who they are.
#[derive(Clone, PartialEq, Eq)]
pub enum AuthMethod {
    Password {
        user: UserRef,
        password: String,
    },
    /// An existing token, to get another one (typically re-scoped).
    Token {
        token: String,
    },
}

impl std::fmt::Debug for AuthMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthMethod::Password { user, .. } => f
                .debug_struct("Password")
                .field("user", user)
                .finish_non_exhaustive(),
            AuthMethod::Token { .. } => f.debug_struct("Token").finish_non_exhaustive(),
        }
    }
}

/// What the new token should be scoped to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScopeRequest {
    /// No scope given: the user's default project when they have a role
    /// there, else unscoped (Keystone's rule). Token method: unscoped.
    Default,
    /// `"scope": "unscoped"`.
    Unscoped,
    Project(ProjectRef),
    /// Not supported: no domain roles exist.
    Domain(DomainRef),
    /// `"system": {"all": true}`: needs a role on the system.
    System,
}

#[derive(Clone, Debug)]
pub struct AuthRequest {
    pub method: AuthMethod,
    pub scope: ScopeRequest,
}

/// A new token: the secret (shown once, in `X-Subject-Token`) and what it
/// stands for.
#[derive(Clone)]
pub struct Issued {
    pub token: String,
    pub info: Arc<TokenInfo>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// A refusal to authenticate: one message for every reason; the reason goes
/// to the log.
fn denied(reason: &str) -> Error {
    tracing::info!(reason, "authentication refused");
    Error::Unauthorized(UNAUTHORIZED.into())
}

fn digest(token: &str) -> Digest {
    Sha256::digest(token.as_bytes()).into()
}

/// URL-safe base64 without padding.
fn base64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn random_b64(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64url(&bytes)
}

/// Prefix of every token id. Without it one token in 32 would begin with `-`,
/// and command lines (`openstack token revoke -Xy…`) would read it as an
/// option; Keystone's Fernet tokens likewise always begin with letters.
const TOKEN_PREFIX: &str = "sc";

/// A new token id: the prefix, then 256 random bits.
fn new_token_id() -> String {
    format!("{TOKEN_PREFIX}{}", random_b64(32))
}

/// The token for `token`, from the cache or the store; `Unauthorized` when
/// it is not valid.
pub(crate) async fn resolve(app: &App, token: &str) -> Result<Arc<TokenInfo>> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(denied("malformed token"));
    }
    let key = digest(token);
    if let Some(info) = app.identity.cache.get(&key) {
        return Ok(info);
    }
    let generation = app.identity.cache.generation();
    let mut conn = app.store().read().await?;
    let info = Arc::new(load(&mut conn, &hex::encode(key)).await?);
    drop(conn);
    app.identity.cache.put(key, info.clone(), generation);
    Ok(info)
}

async fn load(conn: &mut Conn, hash: &str) -> Result<TokenInfo> {
    let t = store::token_get(conn, hash)
        .await?
        .ok_or_else(|| denied("unknown token"))?;
    if t.revoked {
        return Err(denied("revoked token"));
    }
    if t.expires_at <= Utc::now() {
        return Err(denied("expired token"));
    }
    let (user, domain) = active_user(conn, t.user_id.as_str()).await?;
    let (project, roles) = match &t.project_id {
        Some(p) => {
            let (project, roles) = project_access(conn, &user.id, p.as_str()).await?;
            (Some(project), roles)
        }
        None if t.system => (None, system_access(conn, &user.id).await?),
        None => (None, vec![]),
    };
    let mut audit_ids = vec![t.audit_id];
    audit_ids.extend(t.parent_audit_id);
    Ok(TokenInfo {
        user: named_user(&user, &domain),
        project,
        system: t.system,
        roles,
        methods: t.methods,
        audit_ids,
        issued_at: t.issued_at,
        expires_at: t.expires_at,
    })
}

fn named_user(u: &User, d: &Domain) -> Named<UserId> {
    Named {
        id: u.id.clone(),
        name: u.name.clone(),
        domain_id: d.id.clone(),
        domain_name: d.name.clone(),
    }
}

/// An enabled user of an enabled domain, or `Unauthorized`.
async fn active_user(conn: &mut Conn, id: &str) -> Result<(User, Domain)> {
    let user = store::user_get(conn, id)
        .await?
        .ok_or_else(|| denied("user gone"))?;
    if !user.enabled {
        return Err(denied("user disabled"));
    }
    let domain = store::domain_get(conn, user.domain_id.as_str())
        .await?
        .filter(|d| d.enabled)
        .ok_or_else(|| denied("user's domain disabled"))?;
    Ok((user, domain))
}

/// An enabled project of an enabled domain on which the user holds a role,
/// with the user's effective roles there; `Unauthorized` otherwise.
async fn project_access(
    conn: &mut Conn,
    user: &UserId,
    project_id: &str,
) -> Result<(Named<ProjectId>, Vec<Role>)> {
    let project = store::project_get(conn, project_id)
        .await?
        .filter(|p| p.enabled)
        .ok_or_else(|| denied("project unknown or disabled"))?;
    let domain = store::domain_get(conn, project.domain_id.as_str())
        .await?
        .filter(|d| d.enabled)
        .ok_or_else(|| denied("project's domain disabled"))?;
    let roles = effective_roles(conn, user, &project.id).await?;
    if roles.is_empty() {
        return Err(denied("no role on the project"));
    }
    Ok((
        Named {
            id: project.id,
            name: project.name,
            domain_id: domain.id,
            domain_name: domain.name,
        },
        roles,
    ))
}

/// The user's effective roles on the system; `Unauthorized` when none.
async fn system_access(conn: &mut Conn, user: &UserId) -> Result<Vec<Role>> {
    let roles = system_roles(conn, user).await?;
    if roles.is_empty() {
        return Err(denied("no role on the system"));
    }
    Ok(roles)
}

/// A user's roles on a project, implied ones included.
pub(crate) async fn effective_roles(
    conn: &mut Conn,
    user: &UserId,
    project: &ProjectId,
) -> Result<Vec<Role>> {
    let direct: Vec<Role> = store::role_assignment_list(
        conn,
        &AssignmentFilter {
            user_id: Some(user.clone()),
            project_id: Some(project.clone()),
            role_id: None,
        },
    )
    .await?
    .into_iter()
    .map(|a| a.role)
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

/// The roles `direct` grant, following the inference rules: each role once,
/// the direct ones first (in their order), then implied ones in the order
/// found, each with the role that implied it.
pub fn expand_roles(direct: Vec<Role>, rules: &[(Role, Role)]) -> Vec<(Role, Option<Role>)> {
    let mut out: Vec<(Role, Option<Role>)> = Vec::new();
    for r in direct {
        if !out.iter().any(|(o, _)| o.id == r.id) {
            out.push((r, None));
        }
    }
    let mut i = 0;
    while i < out.len() {
        let prior = out[i].0.clone();
        for (p, implied) in rules {
            if p.id == prior.id && !out.iter().any(|(o, _)| o.id == implied.id) {
                out.push((implied.clone(), Some(prior.clone())));
            }
        }
        i += 1;
    }
    out
}

pub(crate) async fn find_domain(conn: &mut Conn, d: &DomainRef) -> Result<Option<Domain>> {
    Ok(match d {
        DomainRef::Id(id) => store::domain_get(conn, id).await?,
        DomainRef::Name(name) => store::domain_get_by_name(conn, name).await?,
    })
}

/// The user a password proves, or `Unauthorized`. The password is checked
/// even when the user does not exist (against a dummy hash), so that both
/// answers take as long.
async fn check_password(app: &App, who: &UserRef, password: String) -> Result<User> {
    if password.len() > super::password::MAX_PASSWORD_LEN {
        return Err(denied("password too long"));
    }
    let found = {
        let mut conn = app.store().read().await?;
        match who {
            UserRef::Id(id) => store::user_get(&mut conn, id).await?,
            UserRef::Name { name, domain } => match find_domain(&mut conn, domain).await? {
                Some(d) => store::user_get_by_name(&mut conn, d.id.as_str(), name).await?,
                None => None,
            },
        }
    };
    let hash = found.as_ref().and_then(|u| u.password_hash.clone());
    let ok = app.identity.hasher.verify(password, hash).await?;
    match found {
        None => Err(denied("unknown user")),
        Some(_) if !ok => Err(denied("wrong password")),
        Some(u) => Ok(u),
    }
}

/// Authenticate and issue a token.
pub async fn authenticate(app: &App, req: AuthRequest) -> Result<Issued> {
    // Read before anything is read from the store (see the cache's doc).
    let generation = app.identity.cache.generation();
    let now = Utc::now();
    let ttl = chrono::Duration::from_std(app.config.token_ttl)
        .map_err(|e| Error::internal("the token lifetime is out of range", e))?;
    let (user_id, methods, expires_at, parent_audit_id, token_method) = match req.method {
        AuthMethod::Password { user, password } => {
            let u = check_password(app, &user, password).await?;
            (u.id, vec!["password".to_string()], now + ttl, None, false)
        }
        AuthMethod::Token { token } => {
            let from = resolve(app, &token).await?;
            let mut methods = vec!["token".to_string()];
            methods.extend(from.methods.iter().filter(|m| *m != "token").cloned());
            (
                from.user.id.clone(),
                methods,
                from.expires_at,
                from.audit_ids.first().cloned(),
                true,
            )
        }
    };

    let mut conn = app.store().read().await?;
    let (user, domain) = active_user(&mut conn, user_id.as_str()).await?;
    let system = matches!(req.scope, ScopeRequest::System);
    let system_roles = if system {
        system_access(&mut conn, &user.id).await?
    } else {
        vec![]
    };
    let scoped = match &req.scope {
        ScopeRequest::System => None,
        ScopeRequest::Unscoped => None,
        ScopeRequest::Default if token_method => None,
        ScopeRequest::Default => match &user.default_project_id {
            // Keystone falls back to an unscoped token when the default
            // project cannot be used.
            Some(p) => match project_access(&mut conn, &user.id, p.as_str()).await {
                Ok(access) => Some(access),
                Err(Error::Unauthorized(_)) => None,
                Err(e) => return Err(e),
            },
            None => None,
        },
        ScopeRequest::Project(p) => {
            let id = match p {
                ProjectRef::Id(id) => id.clone(),
                ProjectRef::Name { name, domain } => {
                    let d = find_domain(&mut conn, domain)
                        .await?
                        .ok_or_else(|| denied("scope domain unknown"))?;
                    store::project_get_by_name(&mut conn, d.id.as_str(), name)
                        .await?
                        .ok_or_else(|| denied("scope project unknown"))?
                        .id
                        .0
                }
            };
            Some(project_access(&mut conn, &user.id, &id).await?)
        }
        ScopeRequest::Domain(_) => {
            tracing::info!(user = %user.id, scope = ?req.scope, "refused an unsupported scope");
            return Err(Error::Unauthorized(
                "Scoria issues project-scoped, system-scoped and unscoped tokens only; \
                 the domain scope is not supported."
                    .into(),
            ));
        }
    };
    drop(conn);

    let token = new_token_id();
    let key = digest(&token);
    let record = TokenRecord {
        hash: hex::encode(key),
        user_id: user.id.clone(),
        project_id: scoped.as_ref().map(|(p, _)| p.id.clone()),
        audit_id: random_b64(16),
        parent_audit_id,
        methods,
        issued_at: now,
        expires_at,
        revoked: false,
        system,
    };
    let mut tx = app.store().begin().await?;
    if app.identity.purge_due(PURGE_EVERY) {
        let n = store::token_delete_expired(&mut tx, now).await?;
        if n > 0 {
            tracing::info!(count = n, "deleted expired tokens");
        }
    }
    store::token_insert(&mut tx, &record).await?;
    commit(tx).await?;

    let mut audit_ids = vec![record.audit_id];
    audit_ids.extend(record.parent_audit_id);
    let (project, roles) = match scoped {
        Some((p, r)) => (Some(p), r),
        None => (None, system_roles),
    };
    let info = Arc::new(TokenInfo {
        user: named_user(&user, &domain),
        project,
        system,
        roles,
        methods: record.methods,
        audit_ids,
        issued_at: record.issued_at,
        expires_at: record.expires_at,
    });
    tracing::info!(user = %user.id, project = ?info.project.as_ref().map(|p| &p.id), system, "issued a token");
    app.identity.cache.put(key, info.clone(), generation);
    Ok(Issued { token, info })
}

/// The token `subject` as its owner or an admin may see it; `NotFound` when
/// it is not valid (Keystone answers 404 for a bad subject token).
async fn subject(app: &App, ctx: &Context, op: Op, subject: &str) -> Result<Arc<TokenInfo>> {
    let info = resolve(app, subject).await.map_err(|e| match e {
        Error::Unauthorized(_) => Error::NotFound("Could not find token.".into()),
        other => other,
    })?;
    authorize(ctx, op, info.user.id == ctx.user_id)?;
    Ok(info)
}

/// `GET /auth/tokens`: what a token stands for.
pub async fn token_show(app: &App, ctx: &Context, token: &str) -> Result<Arc<TokenInfo>> {
    subject(app, ctx, Op::IdentityTokenValidate, token).await
}

/// `HEAD /auth/tokens`: whether a token is valid.
pub async fn token_check(app: &App, ctx: &Context, token: &str) -> Result<()> {
    subject(app, ctx, Op::IdentityTokenCheck, token)
        .await
        .map(|_| ())
}

/// `DELETE /auth/tokens`: revoke a token.
pub async fn token_revoke(app: &App, ctx: &Context, token: &str) -> Result<()> {
    subject(app, ctx, Op::IdentityTokenRevoke, token).await?;
    let mut tx = app.store().begin().await?;
    store::token_revoke(&mut tx, &hex::encode(digest(token))).await?;
    commit(tx).await?;
    app.identity.invalidate();
    tracing::info!(user = %ctx.user_id, "revoked a token");
    Ok(())
}

/// `GET /auth/projects`: the enabled projects the caller holds a role on.
pub async fn auth_projects(app: &App, ctx: &Context) -> Result<Vec<Project>> {
    authorize(ctx, Op::IdentityAuthProjects, true)?;
    let mut conn = app.store().read().await?;
    let mut list = store::project_list_for_user(&mut conn, &ctx.user_id).await?;
    list.retain(|p| p.enabled);
    Ok(list)
}

/// `GET /auth/catalog`: the catalog of the caller's project.
pub async fn auth_catalog(app: &App, ctx: &Context) -> Result<Vec<CatalogService>> {
    authorize(ctx, Op::IdentityAuthCatalog, true)?;
    if ctx.system {
        return Ok(system_catalog(app));
    }
    let project = ctx.project_id.as_ref().ok_or_else(|| {
        Error::Forbidden("A project-scoped token is required to produce a service catalog.".into())
    })?;
    Ok(catalog(app, project))
}

/// One service of the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogService {
    pub id: String,
    pub service_type: &'static str,
    pub name: &'static str,
    pub endpoints: Vec<CatalogEndpoint>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogEndpoint {
    pub id: String,
    pub interface: &'static str,
    pub region: String,
    pub url: String,
}

/// Where a service lives under the public URL.
enum ServiceUrl {
    /// `{public_url}/v3/{project_id}`.
    BlockStorage,
    /// `{public_url}/identity/v3`.
    Identity,
    /// `{public_url}/image` (clients discover `v2` from its version document).
    Image,
}

/// The services of the catalog: (type, name, where). Block Storage is listed
/// under both of its types: tempest looks for `volumev3`, the SDK and the CLI
/// for `block-storage`.
const SERVICES: &[(&str, &str, ServiceUrl)] = &[
    ("volumev3", "cinderv3", ServiceUrl::BlockStorage),
    ("block-storage", "cinder", ServiceUrl::BlockStorage),
    ("identity", "keystone", ServiceUrl::Identity),
    ("image", "glance", ServiceUrl::Image),
];
const INTERFACES: &[&str] = &["public", "internal", "admin"];

/// A stable 32-hex id for a catalog entry.
fn stable_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..16])
}

/// The service catalog as seen from a project: every endpoint in every
/// interface points at this server, with the project substituted.
pub fn catalog(app: &App, project: &ProjectId) -> Vec<CatalogService> {
    build_catalog(app, project.as_str())
}

/// The catalog of a system-scoped token: Block Storage at `{public_url}/v3`,
/// its routes without a project (clients find `volumev3` there).
pub fn system_catalog(app: &App) -> Vec<CatalogService> {
    build_catalog(app, "")
}

/// `GET /services` and `GET /endpoints`: the catalog as registered, Block
/// Storage URLs templated with `%(project_id)s` as Keystone stores them.
pub fn catalog_template(app: &App, ctx: &Context, op: Op) -> Result<Vec<CatalogService>> {
    authorize(ctx, op, false)?;
    Ok(build_catalog(app, "%(project_id)s"))
}

fn build_catalog(app: &App, project: &str) -> Vec<CatalogService> {
    let base = app.config.public_url.trim_end_matches('/');
    SERVICES
        .iter()
        .map(|(service_type, name, at)| {
            let url = match at {
                ServiceUrl::BlockStorage if project.is_empty() => format!("{base}/v3"),
                ServiceUrl::BlockStorage => format!("{base}/v3/{project}"),
                ServiceUrl::Identity => format!("{base}/identity/v3"),
                ServiceUrl::Image => format!("{base}/image"),
            };
            CatalogService {
                id: stable_id(&["service", service_type]),
                service_type,
                name,
                endpoints: INTERFACES
                    .iter()
                    .map(|interface| CatalogEndpoint {
                        id: stable_id(&["endpoint", service_type, interface]),
                        interface,
                        region: app.config.region.clone(),
                        url: url.clone(),
                    })
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use scoria_model::RoleId;

    fn role(name: &str) -> Role {
        Role {
            id: RoleId::from(name),
            name: name.into(),
        }
    }

    #[test]
    fn base64url_matches_known_vectors() {
        // (input, expected): RFC 4648 test vectors, unpadded, URL alphabet.
        let cases: &[(&[u8], &str)] = &[
            (b"", ""),
            (b"f", "Zg"),
            (b"fo", "Zm8"),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg"),
            (b"fooba", "Zm9vYmE"),
            (b"foobar", "Zm9vYmFy"),
            (&[0xfb, 0xff], "-_8"),
        ];
        for (input, want) in cases {
            assert_eq!(base64url(input), *want);
        }
        assert_eq!(random_b64(32).len(), 43);
        assert_eq!(random_b64(16).len(), 22);
    }

    #[test]
    fn token_ids_never_look_like_options() {
        for _ in 0..2000 {
            let id = new_token_id();
            assert_eq!(id.len(), 45);
            assert!(id.starts_with(|c: char| c.is_ascii_alphabetic()), "{id}");
        }
    }

    #[test]
    fn implied_roles_follow_the_chain() {
        let rules = vec![
            (role("admin"), role("member")),
            (role("member"), role("reader")),
        ];
        let check = |direct: &[&str], want: &[(&str, Option<&str>)]| {
            let got: Vec<(String, Option<String>)> =
                expand_roles(direct.iter().map(|r| role(r)).collect(), &rules)
                    .into_iter()
                    .map(|(r, p)| (r.name, p.map(|p| p.name)))
                    .collect();
            let want: Vec<(String, Option<String>)> = want
                .iter()
                .map(|(r, p)| (r.to_string(), p.map(str::to_string)))
                .collect();
            assert_eq!(got, want, "{direct:?}");
        };
        check(&[], &[]);
        check(&["reader"], &[("reader", None)]);
        check(&["member"], &[("member", None), ("reader", Some("member"))]);
        check(
            &["admin"],
            &[
                ("admin", None),
                ("member", Some("admin")),
                ("reader", Some("member")),
            ],
        );
        check(
            &["admin", "reader"],
            &[("admin", None), ("reader", None), ("member", Some("admin"))],
        );
    }
}
