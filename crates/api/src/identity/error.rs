//! Keystone's error body, `{"error": {"code", "title", "message"}}`, and the
//! extractors of the Identity routes, which fail with it (the Block Storage
//! ones fail with Cinder's fault bodies). Which status an application error
//! gets is decided for both APIs in [`crate::fault::status_of`].

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use scoria_core::{Context, Error};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::State;
use crate::auth::{caller, header_str};
use crate::body::JsonBody;
use crate::fault::{self, ApiError};
use crate::query::Params;

/// An error response of the Identity API.
#[derive(Debug)]
pub struct IdError {
    pub status: StatusCode,
    pub message: String,
}

pub type IdResult<T> = Result<T, IdError>;

impl IdError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        IdError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            scoria_core::identity::UNAUTHORIZED,
        )
    }

    /// Keystone's title of a status.
    pub fn title(status: StatusCode) -> &'static str {
        match status.as_u16() {
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            409 => "Conflict",
            413 => "Request Entity Too Large",
            503 => "Service Unavailable",
            _ => "Internal Server Error",
        }
    }
}

impl From<Error> for IdError {
    fn from(e: Error) -> Self {
        IdError {
            status: fault::status_of(&e),
            message: e.to_string(),
        }
    }
}

impl From<ApiError> for IdError {
    fn from(e: ApiError) -> Self {
        IdError {
            status: e.status,
            message: e.message,
        }
    }
}

impl IntoResponse for IdError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "code": self.status.as_u16(),
            "title": Self::title(self.status),
            "message": self.message,
        }});
        (self.status, Json(body)).into_response()
    }
}

/// Every 401 of Identity points at Identity (`WWW-Authenticate`), as
/// Keystone's do.
pub async fn www_authenticate(
    axum::extract::State(state): axum::extract::State<State>,
    req: Request,
    next: Next,
) -> Response {
    let mut resp = next.run(req).await;
    if resp.status() == StatusCode::UNAUTHORIZED
        && let Ok(v) =
            HeaderValue::from_str(&format!("Keystone uri=\"{}/identity\"", state.public_url))
    {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

/// The authenticated caller (`X-Auth-Token`).
#[derive(Clone, Debug)]
pub struct IdAuth(pub Context);

impl FromRequestParts<State> for IdAuth {
    type Rejection = IdError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, IdError> {
        match caller(parts, state).await {
            Ok(ctx) => Ok(IdAuth(ctx)),
            Err(Error::Unauthorized(_)) => Err(IdError::unauthorized()),
            Err(e) => Err(e.into()),
        }
    }
}

/// `X-Subject-Token`: the token a request is about.
#[derive(Clone, Debug)]
pub struct SubjectToken(pub String);

impl<S: Send + Sync> FromRequestParts<S> for SubjectToken {
    type Rejection = IdError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, IdError> {
        header_str(parts, "x-subject-token")
            .map(|t| SubjectToken(t.to_owned()))
            .ok_or_else(|| IdError::bad_request("The X-Subject-Token header is required."))
    }
}

/// A JSON object body.
#[derive(Debug)]
pub struct IdJson(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for IdJson {
    type Rejection = IdError;

    async fn from_request(req: Request, state: &S) -> Result<Self, IdError> {
        // Keystone refuses another declared type as a validation error (400).
        if !crate::body::json_content_type(req.headers()) {
            return Err(IdError::bad_request(
                "Expecting to find application/json in Content-Type header - the server could not comply with the request since it is either malformed or otherwise incorrect. The client is assumed to be in error.",
            ));
        }
        JsonBody::from_request(req, state)
            .await
            .map(|b| IdJson(b.0))
            .map_err(IdError::from)
    }
}

/// The query string.
#[derive(Debug)]
pub struct IdQuery(pub Params);

impl<S: Send + Sync> FromRequestParts<S> for IdQuery {
    type Rejection = IdError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, IdError> {
        Params::from_request_parts(parts, state)
            .await
            .map(IdQuery)
            .map_err(IdError::from)
    }
}

impl IdQuery {
    /// A string filter (empty counts as absent).
    pub fn get(&self, key: &str) -> Option<String> {
        self.0.get(key).filter(|v| !v.is_empty()).map(str::to_owned)
    }

    /// A boolean filter (`enabled=true`).
    pub fn bool(&self, key: &str) -> IdResult<Option<bool>> {
        match self.0.get(key) {
            None | Some("") => Ok(None),
            Some(v) => crate::body::parse_bool(v).map(Some).ok_or_else(|| {
                IdError::bad_request(format!(
                    "Invalid value '{v}' for {key}: expected a boolean."
                ))
            }),
        }
    }

    /// A flag that is on when present (`?nocatalog`, `?effective`), unless
    /// its value says false.
    pub fn flag(&self, key: &str) -> bool {
        self.0
            .0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .is_some_and(|(_, v)| {
                !matches!(
                    v.to_ascii_lowercase().as_str(),
                    "0" | "false" | "no" | "off"
                )
            })
    }
}

/// Path parameters.
#[derive(Debug)]
pub struct IdPath<T>(pub T);

impl<T, S> FromRequestParts<S> for IdPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = IdError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, IdError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| IdPath(p.0))
            .map_err(|e| IdError::bad_request(e.body_text()))
    }
}
