//! Path parameters of the Block Storage routes, and the base of the links
//! built from them.
//!
//! Every route is served both under `/v3/{project_id}` and, from
//! microversion 3.67, under `/v3` alone, so a handler cannot take a fixed
//! tuple of segments: it takes them as a map ([`PathParams`]) and reads each
//! by name ([`seg`]). Links name the project of the path, or the caller's
//! when the path has none ([`links_base`]).
//!
//! A segment that is not UTF-8 answers with Cinder's fault body, never
//! axum's plain text: 400 "Malformed request url" when it is the project (as
//! for any project that is not the token's, which the caller's check
//! refuses), 404 for an id (it names nothing).

use std::collections::BTreeMap;
use std::ops::Deref;

use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use scoria_core::Context;

use crate::State;
use crate::fault::ApiError;

/// The path's segments by name.
#[derive(Clone, Debug, Default)]
pub struct PathParams(pub BTreeMap<String, String>);

impl Deref for PathParams {
    type Target = BTreeMap<String, String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// Cinder's answer to a URL whose project is not the caller's.
pub fn malformed_url() -> ApiError {
    ApiError::bad_request("Malformed request url")
}

impl<S: Send + Sync> FromRequestParts<S> for PathParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<BTreeMap<String, String>>::from_request_parts(parts, state).await {
            Ok(Path(p)) => Ok(PathParams(p)),
            Err(PathRejection::FailedToDeserializePathParams(e)) if matches!(e.kind(), ErrorKind::InvalidUtf8InPathParam { key } if key == "project_id") => {
                Err(malformed_url())
            }
            Err(_) => Err(ApiError::not_found("The resource could not be found.")),
        }
    }
}

/// The segment `name` of the path (empty when the route has none).
pub fn seg<'a>(p: &'a BTreeMap<String, String>, name: &str) -> &'a str {
    p.get(name).map(String::as_str).unwrap_or("")
}

/// The bases of `self` and `bookmark` links for the request's project:
/// `{public_url}/v3/{project}` and `{public_url}/{project}`.
pub fn links_base(state: &State, ctx: &Context, p: &BTreeMap<String, String>) -> (String, String) {
    let project = p
        .get("project_id")
        .cloned()
        .or_else(|| ctx.project_id.as_ref().map(|p| p.0.clone()))
        .unwrap_or_default();
    (
        format!("{}/v3/{project}", state.public_url),
        format!("{}/{project}", state.public_url),
    )
}
