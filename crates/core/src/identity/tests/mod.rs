//! Identity against a real store: bootstrap, authentication, validation,
//! revocation, management, and what the token cache saves.

use std::time::{Duration, Instant};

use scoria_failpoints::Failpoints;

use super::*;
use crate::{Config, DriverConfig, Error, PasswordCost};

mod manage;

struct World {
    app: App,
    dir: tempfile::TempDir,
}

fn config(dir: &std::path::Path, tweak: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config::with_data_dir(dir.to_path_buf());
    c.store.durability = scoria_store::Durability::Normal;
    c.backends[0].driver = DriverConfig::Memory { capacity_gib: 100 };
    c.password_cost = PasswordCost::TestOnlyMinimal;
    c.admin_password = Some("admin-secret".into());
    tweak(&mut c);
    c
}

impl World {
    async fn new() -> World {
        Self::with(|_| {}).await
    }

    async fn with(tweak: impl FnOnce(&mut Config)) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = App::open(config(dir.path(), tweak), Failpoints::new())
            .await
            .expect("open");
        World { app, dir }
    }

    async fn reopen(self, tweak: impl FnOnce(&mut Config)) -> World {
        self.app.shutdown(Duration::from_secs(5)).await;
        let app = App::open(config(self.dir.path(), tweak), Failpoints::new())
            .await
            .expect("reopen");
        World { app, dir: self.dir }
    }

    async fn login(&self, user: &str, password: &str, project: Option<&str>) -> Result<Issued> {
        authenticate(
            &self.app,
            AuthRequest {
                method: password_method(user, password),
                scope: match project {
                    Some(p) => ScopeRequest::Project(ProjectRef::Name {
                        name: p.into(),
                        domain: DomainRef::Id("default".into()),
                    }),
                    None => ScopeRequest::Unscoped,
                },
            },
        )
        .await
    }

    async fn ctx(&self, token: &str) -> Result<Context> {
        validate_token(&self.app, token, "req-test").await
    }

    async fn admin(&self) -> Context {
        let t = self
            .login("admin", "admin-secret", Some("admin"))
            .await
            .expect("admin login");
        self.ctx(&t.token).await.expect("admin token")
    }

    /// A project, and users with a role on it each (`None`: no role).
    async fn populate(
        &self,
        project: &str,
        users: &[(&str, Option<&str>)],
    ) -> (Project, Vec<User>) {
        let admin = self.admin().await;
        let p = project_create(
            &self.app,
            &admin,
            ProjectCreate {
                name: project.into(),
                ..Default::default()
            },
        )
        .await
        .expect("project");
        let mut out = vec![];
        for (name, role) in users {
            let u = user_create(
                &self.app,
                &admin,
                UserCreate {
                    name: (*name).into(),
                    password: Some(format!("{name}-pw")),
                    ..Default::default()
                },
            )
            .await
            .expect("user");
            if let Some(role) = role {
                let r = role_list(&self.app, &admin, Some(role))
                    .await
                    .expect("role");
                grant_create(
                    &self.app,
                    &admin,
                    p.id.as_str(),
                    u.id.as_str(),
                    r[0].id.as_str(),
                )
                .await
                .expect("grant");
            }
            out.push(u);
        }
        (p, out)
    }
}

fn password_method(user: &str, password: &str) -> AuthMethod {
    AuthMethod::Password {
        user: UserRef::Name {
            name: user.into(),
            domain: DomainRef::Name("Default".into()),
        },
        password: password.into(),
    }
}

fn role_names(info: &TokenInfo) -> Vec<&str> {
    info.roles.iter().map(|r| r.name.as_str()).collect()
}

#[tokio::test]
async fn bootstrap_is_idempotent_and_applies_the_configured_password() {
    // First start without a password: one is generated and works.
    let w = World::with(|c| c.admin_password = None).await;
    let first = w.app.bootstrap_info();
    assert!(first.created && first.generated);
    let generated = first.password.clone().expect("generated password");
    assert!(generated.len() >= 24 && generated.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(first.auth_url, "http://127.0.0.1:8776/identity/v3");
    let t = w.login("admin", &generated, Some("admin")).await.unwrap();
    assert_eq!(role_names(&t.info), ["admin", "member", "reader"]);

    // Again, in process and after a restart: nothing changes.
    let again = bootstrap(&w.app).await.unwrap();
    assert_eq!(
        (
            &again.user_id,
            &again.project_id,
            again.created,
            &again.password
        ),
        (&first.user_id, &first.project_id, false, &None)
    );
    let w = w.reopen(|c| c.admin_password = None).await;
    let info = w.app.bootstrap_info();
    assert_eq!(
        (info.user_id.clone(), info.created, info.password),
        (first.user_id.clone(), false, None)
    );
    assert!(w.login("admin", &generated, Some("admin")).await.is_ok());

    // A configured password replaces the stored one, once; old tokens die.
    let w = w
        .reopen(|c| c.admin_password = Some("configured".into()))
        .await;
    let info = w.app.bootstrap_info();
    assert_eq!(info.user_id, first.user_id);
    assert_eq!((info.created, info.generated), (false, false));
    assert_eq!(info.password.as_deref(), Some("configured"));
    assert!(matches!(
        w.login("admin", &generated, Some("admin")).await,
        Err(Error::Unauthorized(_))
    ));
    assert!(
        w.ctx(&t.token).await.is_err(),
        "tokens of the old password are revoked"
    );
    assert!(w.login("admin", "configured", Some("admin")).await.is_ok());
    let w = w
        .reopen(|c| c.admin_password = Some("configured".into()))
        .await;
    assert_eq!(w.app.bootstrap_info().password, None);

    // Exactly one admin user, project and assignment.
    let admin = w
        .ctx(
            &w.login("admin", "configured", Some("admin"))
                .await
                .unwrap()
                .token,
        )
        .await
        .unwrap();
    let users = user_list(&w.app, &admin, UserQuery::default())
        .await
        .unwrap();
    assert_eq!(users.len(), 1);
    let projects = project_list(&w.app, &admin, ProjectQuery::default())
        .await
        .unwrap();
    assert_eq!(projects.len(), 1);
    let grants = assignment_list(&w.app, &admin, AssignmentQuery::default())
        .await
        .unwrap();
    assert_eq!(grants.len(), 1);
}

/// How a login should end: scoped to a project with these roles, unscoped,
/// or refused with this error kind.
#[derive(Debug)]
enum Expect {
    Scoped(&'static str, &'static [&'static str]),
    Unscoped,
    /// A system-scoped token with these roles.
    System(&'static [&'static str]),
    Unauthorized,
}

#[tokio::test]
async fn authentication_table() {
    let w = World::new().await;
    let (p, users) = w
        .populate(
            "p",
            &[
                ("alice", Some("member")),
                ("bob", None),
                ("carol", Some("reader")),
            ],
        )
        .await;
    let admin = w.admin().await;
    let (alice, bob, carol) = (&users[0], &users[1], &users[2]);
    // carol's default project is p; bob's is p too, but he has no role there.
    for u in [carol, bob] {
        user_update(
            &w.app,
            &admin,
            u.id.as_str(),
            UserChange {
                default_project_id: Some(Some(p.id.to_string())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    let dom = |s: &str| DomainRef::Name(s.into());
    let by_name = |n: &str| UserRef::Name {
        name: n.into(),
        domain: dom("Default"),
    };
    let pw = |user: UserRef, password: &str| AuthMethod::Password {
        user,
        password: password.into(),
    };
    let proj_name = |n: &str, d: DomainRef| {
        ScopeRequest::Project(ProjectRef::Name {
            name: n.into(),
            domain: d,
        })
    };
    let cases: Vec<(&str, AuthMethod, ScopeRequest, Expect)> = vec![
        (
            "name + domain name, project by id",
            pw(by_name("alice"), "alice-pw"),
            ScopeRequest::Project(ProjectRef::Id(p.id.to_string())),
            Expect::Scoped("p", &["member", "reader"]),
        ),
        (
            "user id, project by name + domain id",
            pw(UserRef::Id(alice.id.to_string()), "alice-pw"),
            proj_name("p", DomainRef::Id("default".into())),
            Expect::Scoped("p", &["member", "reader"]),
        ),
        (
            "user by name + domain id",
            pw(
                UserRef::Name {
                    name: "alice".into(),
                    domain: DomainRef::Id("default".into()),
                },
                "alice-pw",
            ),
            ScopeRequest::Unscoped,
            Expect::Unscoped,
        ),
        (
            "no scope, no default project",
            pw(by_name("alice"), "alice-pw"),
            ScopeRequest::Default,
            Expect::Unscoped,
        ),
        (
            "no scope: the default project",
            pw(by_name("carol"), "carol-pw"),
            ScopeRequest::Default,
            Expect::Scoped("p", &["reader"]),
        ),
        (
            "explicitly unscoped despite a default project",
            pw(by_name("carol"), "carol-pw"),
            ScopeRequest::Unscoped,
            Expect::Unscoped,
        ),
        (
            "default project without a role there: unscoped",
            pw(by_name("bob"), "bob-pw"),
            ScopeRequest::Default,
            Expect::Unscoped,
        ),
        (
            "no role on the project",
            pw(by_name("bob"), "bob-pw"),
            proj_name("p", dom("Default")),
            Expect::Unauthorized,
        ),
        (
            "wrong password",
            pw(by_name("alice"), "nope"),
            ScopeRequest::Unscoped,
            Expect::Unauthorized,
        ),
        (
            "unknown user",
            pw(by_name("mallory"), "x"),
            ScopeRequest::Unscoped,
            Expect::Unauthorized,
        ),
        (
            "unknown user id",
            pw(UserRef::Id("0".repeat(32)), "x"),
            ScopeRequest::Unscoped,
            Expect::Unauthorized,
        ),
        (
            "unknown domain",
            pw(
                UserRef::Name {
                    name: "alice".into(),
                    domain: dom("Nowhere"),
                },
                "alice-pw",
            ),
            ScopeRequest::Unscoped,
            Expect::Unauthorized,
        ),
        (
            "unknown project",
            pw(by_name("alice"), "alice-pw"),
            proj_name("nope", dom("Default")),
            Expect::Unauthorized,
        ),
        (
            "system scope: the bootstrap admin is admin of the system",
            pw(by_name("admin"), "admin-secret"),
            ScopeRequest::System,
            Expect::System(&["admin", "member", "reader"]),
        ),
        (
            "system scope without a role on the system",
            pw(by_name("alice"), "alice-pw"),
            ScopeRequest::System,
            Expect::Unauthorized,
        ),
        (
            "domain scope",
            pw(by_name("admin"), "admin-secret"),
            ScopeRequest::Domain(DomainRef::Id("default".into())),
            Expect::Unauthorized,
        ),
        (
            "admin: implied roles listed",
            pw(by_name("admin"), "admin-secret"),
            proj_name("admin", dom("Default")),
            Expect::Scoped("admin", &["admin", "member", "reader"]),
        ),
    ];
    for (what, method, scope, expect) in cases {
        let got = authenticate(&w.app, AuthRequest { method, scope }).await;
        match (&expect, &got) {
            (Expect::Scoped(project, roles), Ok(t)) => {
                assert_eq!(
                    t.info.project.as_ref().map(|p| p.name.as_str()),
                    Some(*project),
                    "{what}"
                );
                assert_eq!(role_names(&t.info), *roles, "{what}");
                assert_eq!(t.info.methods, ["password"], "{what}");
                let ctx = w.ctx(&t.token).await.unwrap();
                assert_eq!(ctx.roles.len(), roles.len(), "{what}");
            }
            (Expect::Unscoped, Ok(t)) => {
                assert!(
                    t.info.project.is_none() && t.info.roles.is_empty(),
                    "{what}"
                );
                let ctx = w.ctx(&t.token).await.unwrap();
                assert!(ctx.project_id.is_none(), "{what}");
            }
            (Expect::System(roles), Ok(t)) => {
                assert!(t.info.system && t.info.project.is_none(), "{what}");
                assert_eq!(role_names(&t.info), *roles, "{what}");
                let ctx = w.ctx(&t.token).await.unwrap();
                assert!(ctx.system && ctx.project_id.is_none(), "{what}");
                assert!(ctx.is_admin(), "{what}");
            }
            (Expect::Unauthorized, Err(Error::Unauthorized(_))) => {}
            _ => panic!("{what}: expected {expect:?}, got {got:?}"),
        }
    }
    // Refusals of a password all read the same.
    let mut msgs = vec![];
    for (u, p) in [("alice", "nope"), ("mallory", "x")] {
        msgs.push(w.login(u, p, None).await.unwrap_err().to_string());
    }
    assert_eq!(msgs[0], msgs[1]);
}

#[tokio::test]
async fn token_method_rescopes_and_keeps_the_expiry() {
    let w = World::new().await;
    w.populate("p", &[("alice", Some("member"))]).await;
    let unscoped = w.login("alice", "alice-pw", None).await.unwrap();
    let scoped = authenticate(
        &w.app,
        AuthRequest {
            method: AuthMethod::Token {
                token: unscoped.token.clone(),
            },
            scope: ScopeRequest::Project(ProjectRef::Name {
                name: "p".into(),
                domain: DomainRef::Name("Default".into()),
            }),
        },
    )
    .await
    .unwrap();
    assert_eq!(scoped.info.methods, ["token", "password"]);
    assert_eq!(scoped.info.expires_at, unscoped.info.expires_at);
    assert_eq!(scoped.info.audit_ids[1], unscoped.info.audit_ids[0]);
    assert_eq!(role_names(&scoped.info), ["member", "reader"]);
    // A bad token gets nothing.
    let bad = authenticate(
        &w.app,
        AuthRequest {
            method: AuthMethod::Token {
                token: "forged".into(),
            },
            scope: ScopeRequest::Unscoped,
        },
    )
    .await;
    assert!(matches!(bad, Err(Error::Unauthorized(_))));
}

#[tokio::test]
async fn tokens_die_when_revoked_expired_or_their_grounds_change() {
    let w = World::new().await;
    let (p, users) = w.populate("p", &[("alice", Some("member"))]).await;
    let alice = &users[0];
    let admin = w.admin().await;
    let login = || w.login("alice", "alice-pw", Some("p"));

    // Forged and malformed tokens.
    for bad in ["", "forged", &"x".repeat(5000)] {
        assert!(
            matches!(w.ctx(bad).await, Err(Error::Unauthorized(_))),
            "{bad:.8}"
        );
    }

    // Revoked by its owner (show, check, revoke, then gone).
    let t = login().await.unwrap();
    let ctx = w.ctx(&t.token).await.unwrap();
    assert_eq!(
        token_show(&w.app, &ctx, &t.token).await.unwrap().user.name,
        "alice"
    );
    token_check(&w.app, &ctx, &t.token).await.unwrap();
    token_revoke(&w.app, &ctx, &t.token).await.unwrap();
    assert!(matches!(w.ctx(&t.token).await, Err(Error::Unauthorized(_))));
    assert!(matches!(
        token_show(&w.app, &admin, &t.token).await,
        Err(Error::NotFound(_))
    ));

    // Another user's token: admins may look, others may not.
    let t = login().await.unwrap();
    w.populate("q", &[("bob", Some("member"))]).await;
    let bob = w
        .ctx(&w.login("bob", "bob-pw", Some("q")).await.unwrap().token)
        .await
        .unwrap();
    assert!(matches!(
        token_show(&w.app, &bob, &t.token).await,
        Err(Error::Forbidden(_))
    ));
    assert!(token_show(&w.app, &admin, &t.token).await.is_ok());

    // Losing the role, the user being disabled, the project being disabled.
    let (pid, uid) = (p.id.to_string(), alice.id.to_string());
    for what in ["role taken", "user disabled", "project disabled"] {
        let t = login().await.unwrap();
        assert!(w.ctx(&t.token).await.is_ok(), "{what}: valid (and cached)");
        toggle(&w.app, &admin, what, &pid, &uid, true).await;
        assert!(
            matches!(w.ctx(&t.token).await, Err(Error::Unauthorized(_))),
            "{what}"
        );
        assert!(login().await.is_err(), "{what}: cannot log in");
        toggle(&w.app, &admin, what, &pid, &uid, false).await;
        assert!(login().await.is_ok(), "{what}: mended");
    }

    // Expired: a tiny lifetime.
    let w = World::with(|c| c.token_ttl = Duration::from_millis(200)).await;
    let t = w
        .login("admin", "admin-secret", Some("admin"))
        .await
        .unwrap();
    assert!(w.ctx(&t.token).await.is_ok());
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(matches!(w.ctx(&t.token).await, Err(Error::Unauthorized(_))));
}

/// Break (or mend) what a token of `uid` on `pid` stands on.
async fn toggle(app: &App, admin: &Context, what: &str, pid: &str, uid: &str, broken: bool) {
    match what {
        "role taken" if broken => grant_revoke(app, admin, pid, uid, MEMBER_ROLE_ID).await,
        "role taken" => grant_create(app, admin, pid, uid, MEMBER_ROLE_ID).await,
        "user disabled" => {
            let c = UserChange {
                enabled: Some(!broken),
                ..Default::default()
            };
            user_update(app, admin, uid, c).await.map(|_| ())
        }
        "project disabled" => {
            let c = ProjectChange {
                enabled: Some(!broken),
                ..Default::default()
            };
            project_update(app, admin, pid, c).await.map(|_| ())
        }
        other => panic!("unknown change {other}"),
    }
    .unwrap();
}

#[tokio::test]
async fn password_changes_revoke_tokens() {
    let w = World::new().await;
    let (_, users) = w.populate("p", &[("alice", Some("member"))]).await;
    let id = users[0].id.to_string();
    let t = w.login("alice", "alice-pw", Some("p")).await.unwrap();
    let ctx = w.ctx(&t.token).await.unwrap();
    // Only with the right original password, only for oneself.
    let admin = w.admin().await;
    let cases: Vec<(&Context, &str, Result<(), &str>)> = vec![
        (&admin, "alice-pw", Err("Forbidden")),
        (&ctx, "wrong", Err("Unauthorized")),
        (&ctx, "alice-pw", Ok(())),
    ];
    for (who, original, want) in cases {
        let got = user_change_password(&w.app, who, &id, original.into(), "new-pw".into()).await;
        match (want, got) {
            (Ok(()), Ok(())) => {}
            (Err("Forbidden"), Err(Error::Forbidden(_))) => {}
            (Err("Unauthorized"), Err(Error::Unauthorized(_))) => {}
            (want, got) => panic!("{original}: expected {want:?}, got {got:?}"),
        }
    }
    assert!(w.ctx(&t.token).await.is_err(), "old tokens are revoked");
    assert!(w.login("alice", "alice-pw", Some("p")).await.is_err());
    let t = w.login("alice", "new-pw", Some("p")).await.unwrap();
    // An admin sets a password: tokens revoked too.
    user_update(
        &w.app,
        &admin,
        &id,
        UserChange {
            password: Some("third".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(w.ctx(&t.token).await.is_err());
    assert!(w.login("alice", "third", Some("p")).await.is_ok());
}

impl World {
    /// True when the caller's project is gone (no login to it works).
    async fn ctx_is_gone(&self, ctx: &Context) -> bool {
        let name = ctx.project_name.clone().unwrap_or_default();
        self.login(
            &ctx.user_name,
            &format!("{}-pw", ctx.user_name),
            Some(&name),
        )
        .await
        .is_err()
    }
}

/// What a validation costs with and without the cache. Prints the numbers
/// (`cargo nextest run -p scoria-core validate_cost --no-capture`).
#[tokio::test]
async fn validate_cost() {
    let w = World::new().await;
    let t = w
        .login("admin", "admin-secret", Some("admin"))
        .await
        .unwrap();
    let n = 2000u32;
    let started = Instant::now();
    for _ in 0..n {
        w.ctx(&t.token).await.unwrap();
    }
    let cached = started.elapsed() / n;
    let started = Instant::now();
    for _ in 0..n / 10 {
        w.app.identity.invalidate();
        w.ctx(&t.token).await.unwrap();
    }
    let uncached = started.elapsed() / (n / 10);
    eprintln!("validate_token: cached {cached:?}, uncached {uncached:?} per call");
    assert!(
        cached < uncached,
        "the cache pays: {cached:?} vs {uncached:?}"
    );
}
