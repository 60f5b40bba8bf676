//! The caller of a request, from its `X-Auth-Token`.
//!
//! A missing, unknown, expired or revoked token is 401 with Keystone
//! middleware's body and a `WWW-Authenticate` header pointing at Identity.
//! Identity's routes find their caller the same way ([`caller`]) and answer
//! with Keystone's own 401.

use axum::Json;
use axum::extract::FromRequestParts;
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
            Ok(ctx) => Ok(Auth(ctx)),
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

/// A header's value, trimmed, when it is there and not empty.
pub fn header_str<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}
