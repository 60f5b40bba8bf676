//! Cinder's fault bodies: `{"badRequest": {"message": "…", "code": 400}}`.
//!
//! The one place where an application error gets a status code
//! ([`status_of`], which Identity's Keystone bodies use too). Internal errors
//! are logged with their whole source chain and shown to the client only as
//! their message.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use scoria_core::Error;
use serde_json::json;

/// An error response of the Block Storage API.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// Cinder's name for the fault of a status.
    pub fn fault_name(status: StatusCode) -> &'static str {
        match status.as_u16() {
            400 => "badRequest",
            401 => "unauthorized",
            403 => "forbidden",
            404 => "itemNotFound",
            405 => "badMethod",
            409 => "conflictingRequest",
            413 => "overLimit",
            415 => "badMediaType",
            501 => "notImplemented",
            503 => "serviceUnavailable",
            _ => "computeFault",
        }
    }
}

/// The status of an application error, for both APIs: Block Storage and
/// Identity each render it in their own body, but they must agree on what
/// the error is. Internal errors are logged here with their whole source
/// chain, because this is where they are handled.
pub fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::Invalid(_) | Error::InvalidState(_) => StatusCode::BAD_REQUEST,
        Error::Conflict(_) => StatusCode::CONFLICT,
        Error::OverQuota(_) | Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Error::Forbidden(_) => StatusCode::FORBIDDEN,
        Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::Internal { .. } => {
            tracing::error!(error = %e.chain(), "internal error");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError {
            status: status_of(&e),
            message: e.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let name = Self::fault_name(self.status);
        let mut inner = json!({ "code": self.status.as_u16(), "message": self.message });
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            inner["retryAfter"] = json!("0");
        }
        let mut resp = (self.status, Json(json!({ name: inner }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Keystone uri=\"/identity\""),
            );
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use scoria_model::quota::{QuotaExceeded, QuotaResource};

    async fn body(e: ApiError) -> (u16, serde_json::Value) {
        let r = e.into_response();
        let status = r.status().as_u16();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// Errors of each kind, their status and Cinder's fault name.
    fn errors() -> Vec<(Error, u16, &'static str)> {
        vec![
            (Error::volume_not_found("x"), 404, "itemNotFound"),
            (Error::Invalid("bad".into()), 400, "badRequest"),
            (Error::InvalidState("busy".into()), 400, "badRequest"),
            (Error::Conflict("dup".into()), 409, "conflictingRequest"),
            (Error::Forbidden("no".into()), 403, "forbidden"),
            (Error::Unauthorized("who".into()), 401, "unauthorized"),
            (
                Error::Unavailable("later".into()),
                503,
                "serviceUnavailable",
            ),
            (
                Error::Internal {
                    message: "boom".into(),
                    source: None,
                },
                500,
                "computeFault",
            ),
        ]
    }

    #[tokio::test]
    async fn errors_become_cinder_fault_bodies() {
        for (e, code, name) in errors() {
            let msg = e.to_string();
            let (status, v) = body(e.into()).await;
            assert_eq!(status, code);
            assert_eq!(v[name]["code"], code);
            assert_eq!(v[name]["message"], msg.as_str());
        }
        let q = QuotaExceeded {
            key: QuotaResource::Volumes.into(),
            type_name: None,
            limit: 1,
            in_use: 1,
            reserved: 0,
            requested: 1,
        };
        let (status, v) = body(Error::OverQuota(q).into()).await;
        assert_eq!(status, 413);
        assert_eq!(v["overLimit"]["retryAfter"], "0");
        assert!(
            v["overLimit"]["message"]
                .as_str()
                .unwrap()
                .contains("volumes")
        );
    }

    #[test]
    fn identity_gives_each_error_the_same_status() {
        for (e, code, _) in errors() {
            let message = e.to_string();
            let id = crate::identity::error::IdError::from(e);
            assert_eq!((id.status.as_u16(), id.message), (code, message));
        }
    }
}
