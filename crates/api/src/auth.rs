//! The caller of a request, from its `X-Auth-Token`.
//!
//! A missing, unknown, expired or revoked token is 401 with Keystone
//! middleware's body and a `WWW-Authenticate` header pointing at Identity.

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use scoria_core::Context;
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
        let token = parts
            .headers
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Unauthorized(&state.public_url).into_response())?;
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        match scoria_core::identity::validate_token(&state.app, token, &request_id).await {
            Ok(ctx) => {
                tracing::debug!(user = %ctx.user_id, project = ?ctx.project_id, "authenticated");
                Ok(Auth(ctx))
            }
            Err(scoria_core::Error::Unauthorized(_)) => {
                Err(Unauthorized(&state.public_url).into_response())
            }
            // The token could not be checked (the database failed): not the
            // client's fault, so not a 401.
            Err(e) => Err(crate::fault::ApiError::from(e).into_response()),
        }
    }
}
