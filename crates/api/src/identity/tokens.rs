//! `/v3/auth/…`: issue, show, check and revoke tokens; the caller's projects
//! and catalog.

use axum::Json;
use axum::extract::{OriginalUri, State as AxState};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use scoria_core::identity::{
    self, AuthMethod, AuthRequest, DomainRef, ProjectRef, ScopeRequest, TokenInfo, UserRef,
};
use serde_json::{Map, Value, json};

use super::error::{IdAuth, IdError, IdJson, IdQuery, IdResult, SubjectToken};
use super::{base, self_link, views};
use crate::State;

fn field_error(field: &str, why: &str) -> IdError {
    IdError::bad_request(format!("Invalid input for field '{field}': {why}"))
}

fn object<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    parent: &str,
) -> IdResult<&'a Map<String, Value>> {
    match m.get(key) {
        Some(Value::Object(o)) => Ok(o),
        Some(_) => Err(field_error(parent, &format!("'{key}' must be an object."))),
        None => Err(field_error(
            parent,
            &format!("'{key}' is a required property."),
        )),
    }
}

fn opt_string(m: &Map<String, Value>, key: &str, parent: &str) -> IdResult<Option<String>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(field_error(parent, &format!("'{key}' must be a string."))),
    }
}

/// `{"id": …}` or `{"name": …}` of a domain.
fn domain_ref(m: &Map<String, Value>, parent: &str) -> IdResult<DomainRef> {
    if let Some(id) = opt_string(m, "id", parent)? {
        return Ok(DomainRef::Id(id));
    }
    match opt_string(m, "name", parent)? {
        Some(name) => Ok(DomainRef::Name(name)),
        None => Err(field_error(parent, "a domain needs an 'id' or a 'name'.")),
    }
}

/// An entity named by id, or by name within a domain.
fn named_ref(m: &Map<String, Value>, what: &str) -> IdResult<Result<String, (String, DomainRef)>> {
    if let Some(id) = opt_string(m, "id", what)? {
        return Ok(Ok(id));
    }
    let Some(name) = opt_string(m, "name", what)? else {
        return Err(field_error(
            what,
            &format!("a {what} needs an 'id' or a 'name'."),
        ));
    };
    let domain = match m.get("domain") {
        Some(Value::Object(d)) => domain_ref(d, "domain")?,
        _ => {
            return Err(field_error(
                what,
                &format!("a {what} named by name needs its 'domain'."),
            ));
        }
    };
    Ok(Err((name, domain)))
}

/// Parse the body of `POST /auth/tokens`.
pub fn parse_auth(body: &Map<String, Value>) -> IdResult<AuthRequest> {
    let auth = object(body, "auth", "auth")?;
    let ident = object(auth, "identity", "auth")?;
    let methods: Vec<&str> = match ident.get("methods") {
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|m| {
                m.as_str()
                    .ok_or_else(|| field_error("methods", "must be strings."))
            })
            .collect::<IdResult<_>>()?,
        Some(_) => return Err(field_error("methods", "must be a non-empty array.")),
        None => return Err(field_error("identity", "'methods' is a required property.")),
    };
    let method = match methods.as_slice() {
        ["password"] => {
            let user = object(object(ident, "password", "identity")?, "user", "password")?;
            let who = match named_ref(user, "user")? {
                Ok(id) => UserRef::Id(id),
                Err((name, domain)) => UserRef::Name { name, domain },
            };
            AuthMethod::Password {
                user: who,
                // A missing password fails like a wrong one.
                password: opt_string(user, "password", "user")?.unwrap_or_default(),
            }
        }
        ["token"] => {
            let t = object(ident, "token", "identity")?;
            AuthMethod::Token {
                token: opt_string(t, "id", "token")?
                    .ok_or_else(|| field_error("token", "'id' is a required property."))?,
            }
        }
        _ => {
            return Err(IdError::new(
                StatusCode::UNAUTHORIZED,
                "Attempted to authenticate with an unsupported method.",
            ));
        }
    };
    let scope = match auth.get("scope") {
        None | Some(Value::Null) => ScopeRequest::Default,
        Some(Value::String(s)) if s == "unscoped" => ScopeRequest::Unscoped,
        Some(Value::Object(s)) => {
            if s.len() != 1 {
                return Err(field_error(
                    "scope",
                    "specify exactly one of 'project', 'domain' or 'system'.",
                ));
            }
            if let Some(p) = s.get("project") {
                let p = p
                    .as_object()
                    .ok_or_else(|| field_error("scope", "'project' must be an object."))?;
                ScopeRequest::Project(match named_ref(p, "project")? {
                    Ok(id) => ProjectRef::Id(id),
                    Err((name, domain)) => ProjectRef::Name { name, domain },
                })
            } else if let Some(d) = s.get("domain") {
                let d = d
                    .as_object()
                    .ok_or_else(|| field_error("scope", "'domain' must be an object."))?;
                ScopeRequest::Domain(domain_ref(d, "domain")?)
            } else if let Some(sys) = s.get("system") {
                // Keystone's only system is `{"all": true}`.
                if sys != &serde_json::json!({"all": true}) {
                    return Err(field_error("scope", "'system' must be {\"all\": true}."));
                }
                ScopeRequest::System
            } else {
                // OS-TRUST:trust, …: nothing Scoria can grant.
                return Err(IdError::new(
                    StatusCode::UNAUTHORIZED,
                    "Scoria issues project-scoped, system-scoped and unscoped tokens only.",
                ));
            }
        }
        Some(_) => return Err(field_error("scope", "must be an object or \"unscoped\".")),
    };
    Ok(AuthRequest { method, scope })
}

/// The token view, with the catalog unless `?nocatalog`.
fn token_body(state: &State, info: &TokenInfo, q: &IdQuery) -> Value {
    let catalog = match (&info.project, q.flag("nocatalog")) {
        (_, true) => None,
        (Some(p), false) => Some(identity::catalog(&state.app, &p.id)),
        (None, false) if info.system => Some(identity::system_catalog(&state.app)),
        (None, false) => None,
    };
    views::token(info, catalog.as_deref())
}

fn with_subject(mut resp: Response, token: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(token) {
        resp.headers_mut().insert("x-subject-token", v);
    }
    resp
}

/// `POST /v3/auth/tokens`.
pub async fn issue(
    AxState(state): AxState<State>,
    q: IdQuery,
    IdJson(body): IdJson,
) -> IdResult<Response> {
    let req = parse_auth(&body)?;
    let issued = identity::authenticate(&state.app, req).await?;
    let resp = (
        StatusCode::CREATED,
        Json(token_body(&state, &issued.info, &q)),
    )
        .into_response();
    Ok(with_subject(resp, &issued.token))
}

/// `GET /v3/auth/tokens`: the subject token, 404 when it is not valid.
pub async fn show(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    SubjectToken(subject): SubjectToken,
    q: IdQuery,
) -> IdResult<Response> {
    let info = identity::token_show(&state.app, &ctx, &subject).await?;
    let resp = Json(token_body(&state, &info, &q)).into_response();
    Ok(with_subject(resp, &subject))
}

/// `HEAD /v3/auth/tokens`: 200 when the subject token is valid.
pub async fn check(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    SubjectToken(subject): SubjectToken,
) -> IdResult<Response> {
    identity::token_check(&state.app, &ctx, &subject).await?;
    Ok(with_subject(StatusCode::OK.into_response(), &subject))
}

/// `DELETE /v3/auth/tokens`: revoke the subject token.
pub async fn revoke(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    SubjectToken(subject): SubjectToken,
) -> IdResult<StatusCode> {
    identity::token_revoke(&state.app, &ctx, &subject).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v3/auth/projects`.
pub async fn projects(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    uri: OriginalUri,
) -> IdResult<Json<Value>> {
    let b = base(&state);
    let list = identity::auth_projects(&state.app, &ctx).await?;
    Ok(Json(views::list(
        "projects",
        list.iter().map(|p| views::project(&b, p)).collect(),
        self_link(&state, &uri),
    )))
}

/// `GET /v3/auth/catalog`.
pub async fn catalog(
    AxState(state): AxState<State>,
    IdAuth(ctx): IdAuth,
    uri: OriginalUri,
) -> IdResult<Json<Value>> {
    let services = identity::auth_catalog(&state.app, &ctx).await?;
    Ok(Json(json!({
        "catalog": views::catalog(&services),
        "links": {"self": self_link(&state, &uri), "previous": null, "next": null},
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (body, expected: Ok(debug of the request) or Err(status))
    fn check(body: Value, expect: Result<&str, u16>) {
        let m = body.as_object().unwrap().clone();
        match (parse_auth(&m), expect) {
            (Ok(r), Ok(want)) => assert_eq!(format!("{:?} {:?}", r.method, r.scope), want),
            (Err(e), Err(code)) => assert_eq!(e.status.as_u16(), code, "{}", e.message),
            (got, want) => panic!("{body}: expected {want:?}, got {got:?}"),
        }
    }

    #[test]
    fn auth_bodies() {
        let pw = |user: Value| json!({"identity": {"methods": ["password"], "password": {"user": user}}});
        let with_scope = |mut a: Value, scope: Value| {
            a["scope"] = scope;
            json!({ "auth": a })
        };
        let alice = json!({"name": "alice", "domain": {"name": "Default"}, "password": "pw"});
        check(
            json!({"auth": pw(alice.clone())}),
            Ok(r#"Password { user: Name { name: "alice", domain: Name("Default") }, .. } Default"#),
        );
        check(
            json!({"auth": pw(json!({"id": "u1", "password": "pw"}))}),
            Ok(r#"Password { user: Id("u1"), .. } Default"#),
        );
        check(
            with_scope(pw(alice.clone()), json!({"project": {"id": "p1"}})),
            Ok(
                r#"Password { user: Name { name: "alice", domain: Name("Default") }, .. } Project(Id("p1"))"#,
            ),
        );
        check(
            with_scope(
                pw(alice.clone()),
                json!({"project": {"name": "p", "domain": {"id": "default"}}}),
            ),
            Ok(
                r#"Password { user: Name { name: "alice", domain: Name("Default") }, .. } Project(Name { name: "p", domain: Id("default") })"#,
            ),
        );
        check(
            with_scope(pw(alice.clone()), json!("unscoped")),
            Ok(
                r#"Password { user: Name { name: "alice", domain: Name("Default") }, .. } Unscoped"#,
            ),
        );
        check(
            with_scope(pw(alice.clone()), json!({"system": {"all": true}})),
            Ok(r#"Password { user: Name { name: "alice", domain: Name("Default") }, .. } System"#),
        );
        check(
            json!({"auth": {"identity": {"methods": ["token"], "token": {"id": "t"}}}}),
            Ok("Token { .. } Default"),
        );
        // A system other than `all`, or a scope Scoria cannot grant.
        check(
            with_scope(pw(alice.clone()), json!({"system": {"all": false}})),
            Err(400),
        );
        check(
            with_scope(pw(alice.clone()), json!({"system": "all"})),
            Err(400),
        );
        check(
            with_scope(pw(alice.clone()), json!({"OS-TRUST:trust": {"id": "t"}})),
            Err(401),
        );
        // Malformed: 400; unsupported methods: 401.
        check(json!({}), Err(400));
        check(json!({"auth": {}}), Err(400));
        check(json!({"auth": {"identity": {"methods": []}}}), Err(400));
        check(
            json!({"auth": {"identity": {"methods": ["password"]}}}),
            Err(400),
        );
        check(
            json!({"auth": pw(json!({"name": "alice", "password": "pw"}))}),
            Err(400),
        );
        check(json!({"auth": pw(json!({"password": "pw"}))}), Err(400));
        check(json!({"auth": pw(json!({"id": 7}))}), Err(400));
        check(
            with_scope(pw(alice.clone()), json!({"project": {"name": "p"}})),
            Err(400),
        );
        check(
            with_scope(
                pw(alice.clone()),
                json!({"project": {"id": "p"}, "domain": {"id": "d"}}),
            ),
            Err(400),
        );
        check(with_scope(pw(alice.clone()), json!(3)), Err(400));
        check(
            json!({"auth": {"identity": {"methods": ["totp"], "totp": {}}}}),
            Err(401),
        );
        check(
            json!({"auth": {"identity": {"methods": ["password", "totp"]}}}),
            Err(401),
        );
    }
}
