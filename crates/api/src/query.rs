//! Query strings. Clients send odd ones (`openstack` sends `limit=None`), so
//! values are parsed leniently where Cinder is lenient and strictly, with a
//! 400, where a wrong value would change the answer.

use axum::extract::{FromRequestParts, RawQuery};
use axum::http::request::Parts;

use crate::fault::ApiError;

/// The query's pairs, in order, percent-decoded.
#[derive(Clone, Debug, Default)]
pub struct Params(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let RawQuery(raw) = RawQuery::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::bad_request("Malformed query string."))?;
        let raw = raw.unwrap_or_default();
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&raw)
            .map_err(|_| ApiError::bad_request("Malformed query string."))?;
        Ok(Params(pairs))
    }
}

impl Params {
    /// The last value of `key`, treating Python's `None` as absent.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| *v != "None")
    }

    /// A boolean flag (`?usage=true`); absent is false.
    pub fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(false),
            Some(v) => crate::body::parse_bool(v).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "Invalid value '{v}' for {key}: expected a boolean."
                ))
            }),
        }
    }

    /// A non-negative integer.
    pub fn uint(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if n >= 0 => Ok(Some(n)),
                _ => Err(ApiError::bad_request(format!(
                    "Invalid input received: {key} must be a non-negative integer, not '{v}'."
                ))),
            },
        }
    }
}
