//! The caller of a request, from its `X-Auth-Token`.
//!
//! A missing, unknown, expired or revoked token is 401 with Keystone
//! middleware's body and a `WWW-Authenticate` header pointing at Identity.
//! Identity's routes find their caller the same way ([`caller`]) and answer
//! with Keystone's own 401.
//!
//! On a Block Storage route under `/v3/{project_id}`, the URL's project must
//! be the token's (Cinder's WSGI layer: 400 "Malformed request url"
//! otherwise, admins included; an unscoped token has no project and uses the
//! routes without one, 3.67). A project an admin acts *on* is a later segment
//! (`os-quota-sets/{target}`), not this one. A **system-scoped** token has no
//! project either: on `/v3/{project_id}/…` the URL's project (which must
//! exist) is its target, and the policy table decides what it may do there
//! (`scoria_core::context`: reads for a system reader, also the operator
//! routes for a system admin, never creating or changing a project's
//! resources).

use axum::Json;
use axum::extract::{FromRequestParts, MatchedPath, OriginalUri};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use scoria_core::{Context, Error};
use serde_json::json;

use crate::State;
use crate::request_id::RequestId;

/// The authenticated caller.
#[derive(Clone, Debug)]
pub struct Auth(pub Context);

/// The 401 every unauthenticated request gets; it names where to get a token
/// (the public Identity URL), as Keystone's middleware does.
#[derive(Debug)]
pub struct Unauthorized<'a>(pub &'a str);

impl IntoResponse for Unauthorized<'_> {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": 401, "title": "Unauthorized",
            "message": "The request you have made requires authentication."}});
        let mut r = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("Keystone uri=\"{}/identity\"", self.0)) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        r
    }
}

impl FromRequestParts<State> for Auth {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, Self::Rejection> {
        match caller(parts, state).await {
            Ok(ctx) if ctx.system => system_target(parts, state, ctx).await.map(Auth),
            Ok(ctx) => {
                url_project_is_callers(parts, &ctx).map_err(IntoResponse::into_response)?;
                Ok(Auth(ctx))
            }
            Err(Error::Unauthorized(_)) => Err(Unauthorized(&state.public_url).into_response()),
            // The token could not be checked (the database failed): not the
            // client's fault, so not a 401.
            Err(e) => Err(crate::fault::ApiError::from(e).into_response()),
        }
    }
}

/// The caller that the request's `X-Auth-Token` names, for both APIs (each
/// answers `Error::Unauthorized` with its own 401). A request without a
/// token is refused as one with an unknown token is.
pub async fn caller(parts: &Parts, state: &State) -> Result<Context, Error> {
    let token = header_str(parts, "x-auth-token")
        .ok_or_else(|| Error::Unauthorized("The request carries no token.".into()))?;
    let request_id = parts
        .extensions
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let ctx = scoria_core::identity::validate_token(&state.app, token, &request_id).await?;
    tracing::debug!(user = %ctx.user_id, project = ?ctx.project_id, "authenticated");
    Ok(ctx)
}

/// The URL's project of a `/v3/{project_id}/…` request: `None` on other
/// routes, `Some(None)` when the segment is not UTF-8.
fn url_project(parts: &Parts) -> Option<Option<String>> {
    let under_project = parts
        .extensions
        .get::<MatchedPath>()
        .is_some_and(|m| m.as_str().starts_with("/v3/{project_id}"));
    if !under_project {
        return None;
    }
    // The project is the segment after `/v3/` of the path as sent (a nested
    // router sees the rest only).
    let path = parts
        .extensions
        .get::<OriginalUri>()
        .map_or_else(|| parts.uri.path(), |u| u.0.path());
    Some(percent_decode(path.split('/').nth(2).unwrap_or("")))
}

/// Refuse a `/v3/{project_id}/…` request whose project is not the caller's.
fn url_project_is_callers(parts: &Parts, ctx: &Context) -> Result<(), crate::fault::ApiError> {
    match (url_project(parts), &ctx.project_id) {
        (None, _) => Ok(()),
        (Some(Some(u)), Some(p)) if u == p.0 => Ok(()),
        _ => Err(crate::path::malformed_url()),
    }
}

/// A system-scoped caller: on a `/v3/{project_id}/…` route the URL's project
/// is the target the policy table sees (`scoria_core::context`); one that does
/// not exist is 400 "Malformed request url", as for a project caller.
async fn system_target(parts: &Parts, state: &State, ctx: Context) -> Result<Context, Response> {
    let malformed = || crate::path::malformed_url().into_response();
    match url_project(parts) {
        None => Ok(ctx),
        Some(None) => Err(malformed()),
        Some(Some(project)) => {
            match scoria_core::identity::system_target(&state.app, &ctx, &project).await {
                Ok(ctx) => Ok(ctx),
                Err(Error::NotFound(_)) => Err(malformed()),
                Err(e) => Err(crate::fault::ApiError::from(e).into_response()),
            }
        }
    }
}

/// A percent-encoded path segment, decoded; None when it is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied(), b.get(i + 2).copied()) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h)? * 16 + hex(l)?) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A header's value, trimmed, when it is there and not empty.
pub fn header_str<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}
