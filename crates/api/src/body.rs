//! Request bodies: JSON only, bounded, validated field by field with messages
//! a person can act on. Every failure is a 400 (or 413 when too large) with
//! Cinder's fault body, before anything changes.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde_json::{Map, Value};

use crate::fault::ApiError;

/// Largest body accepted (Cinder's default `max_request_body_size`: 112 KiB).
pub const MAX_BODY: usize = 112 * 1024;

/// A JSON object body.
#[derive(Debug)]
pub struct JsonBody(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !json_content_type(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported Content-Type",
            ));
        }
        let bytes = match axum::body::to_bytes(req.into_body(), MAX_BODY + 1).await {
            Ok(b) => b,
            Err(e) if too_large(&e) => {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Request is too large.",
                ));
            }
            // The client stopped sending (the body-read timeout) or the
            // connection broke: nothing to parse.
            Err(e) => {
                tracing::debug!(error = %e, "request body could not be read");
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "The request body was not received in time.",
                ));
            }
        };
        let _ = state;
        parse(&bytes).map(JsonBody)
    }
}

/// Did reading a body stop at the size limit (rather than a timeout or a
/// broken connection)?
fn too_large(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Is the body's declared type one Cinder reads (`application/json` or
/// `application/vnd.openstack.volume+json`, parameters aside)? A body
/// without a `Content-Type` is read as JSON, as Cinder reads it.
pub fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(v) = headers.get(axum::http::header::CONTENT_TYPE) else {
        return true;
    };
    let Ok(v) = v.to_str() else { return false };
    let essence = v.split(';').next().unwrap_or("").trim();
    ["application/json", "application/vnd.openstack.volume+json"]
        .iter()
        .any(|t| essence.eq_ignore_ascii_case(t))
}

/// Parse a body that must be a JSON object.
pub fn parse(bytes: &Bytes) -> Result<Map<String, Value>, ApiError> {
    if bytes.len() > MAX_BODY {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request is too large.",
        ));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "The request body is empty; a JSON object is required.",
        ));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request(
            "Malformed request body: a JSON object is required.",
        )),
        Err(e) => Err(ApiError::bad_request(format!(
            "Malformed request body: {e}."
        ))),
    }
}

/// The object under `key` (`{"volume": {...}}`).
pub fn object<'a>(
    body: &'a Map<String, Value>,
    key: &str,
) -> Result<&'a Map<String, Value>, ApiError> {
    match body.get(key) {
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(ApiError::bad_request(format!(
            "Invalid input for field/attribute {key}: must be an object."
        ))),
        None => Err(ApiError::bad_request(format!(
            "Missing required element '{key}' in request body."
        ))),
    }
}

/// Refuse keys outside `allowed` (Cinder's `additionalProperties: false`).
pub fn only(map: &Map<String, Value>, what: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "Invalid input for {what}: additional property '{k}' is not allowed."
        )));
    }
    Ok(())
}

/// An optional string (`null` counts as absent).
pub fn opt_str(map: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(ApiError::bad_request(format!(
            "Invalid input for field/attribute {key}. Value: {v}. {v} is not of type 'string'."
        ))),
    }
}

/// A field that may be absent (`None`), `null` (`Some(None)`) or a string.
pub fn nullable_str(
    map: &Map<String, Value>,
    key: &str,
) -> Result<Option<Option<String>>, ApiError> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(v) => Err(ApiError::bad_request(format!(
            "Invalid input for field/attribute {key}. Value: {v}. {v} is not of type 'string'."
        ))),
    }
}

/// An integer, also accepted as a string of digits (as Cinder does for sizes).
pub fn int(map: &Map<String, Value>, key: &str) -> Result<Option<i64>, ApiError> {
    let bad = |v: &Value| {
        ApiError::bad_request(format!(
            "Invalid input for field/attribute {key}. Value: {v}. {v} is not a valid integer."
        ))
    };
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| bad(v)),
        Some(v @ Value::String(s)) => s.trim().parse::<i64>().map(Some).map_err(|_| bad(v)),
        Some(v) => Err(bad(v)),
    }
}

/// A boolean, also accepted as Cinder's strings (`"true"`, `"False"`, `"1"`,
/// `"yes"`, `"off"`…).
pub fn boolean(map: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => {
            let s = match v {
                Value::String(s) => s.to_ascii_lowercase(),
                Value::Number(n) => n.to_string(),
                _ => String::new(),
            };
            parse_bool(&s).map(Some).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "Invalid input for field/attribute {key}. Value: {v}. {v} is not a valid boolean."
                ))
            })
        }
    }
}

/// Cinder's accepted spellings of booleans.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "t" | "1" | "yes" | "y" | "on" => Some(true),
        "false" | "f" | "0" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

/// A `{"key": "value"}` object of strings (volume metadata).
pub fn metadata(v: &Value, key: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let Value::Object(m) = v else {
        return Err(ApiError::bad_request(format!(
            "Invalid input for field/attribute {key}: must be an object."
        )));
    };
    string_values(m, key)
}

/// A `{"key": "value"}` object of strings (extra specs, group specs), with
/// the messages of Cinder's schema for them; `null` and other non-strings
/// are refused.
pub fn string_map(v: &Value, what: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let Value::Object(m) = v else {
        return Err(ApiError::bad_request(format!(
            "Invalid input for field/attribute {what}. Value: {v}. {v} is not of type 'object'"
        )));
    };
    string_values(m, what)
}

/// Every value of the object `m`, which must be a string; `what` names
/// the object in the message.
pub fn string_values(
    m: &Map<String, Value>,
    what: &str,
) -> Result<BTreeMap<String, String>, ApiError> {
    m.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            other => Err(ApiError::bad_request(format!(
                "Invalid input for field/attribute {what}. Value of {k}: {other} is not of type 'string'."
            ))),
        })
        .collect()
}

/// Optional metadata under `key`.
pub fn opt_metadata(
    map: &Map<String, Value>,
    key: &str,
) -> Result<Option<BTreeMap<String, String>>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => metadata(v, key).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn parses_and_refuses() {
        assert!(parse(&Bytes::from_static(b"{\"a\": 1}")).is_ok());
        for bad in [&b""[..], b"  ", b"[1]", b"\"x\"", b"{", b"nul"] {
            assert_eq!(
                parse(&Bytes::copy_from_slice(bad)).unwrap_err().status,
                400,
                "{bad:?}"
            );
        }
        let big = vec![b' '; MAX_BODY + 1];
        assert_eq!(parse(&Bytes::from(big)).unwrap_err().status, 413);
    }

    #[test]
    fn field_types() {
        let b = m(
            json!({"s": "x", "n": 3, "ns": "4", "f": 1.5, "b": "True", "bb": "maybe", "nul": null, "meta": {"k": 1}}),
        );
        assert_eq!(opt_str(&b, "s").unwrap().as_deref(), Some("x"));
        assert!(opt_str(&b, "n").is_err());
        assert_eq!(opt_str(&b, "nul").unwrap(), None);
        assert_eq!(nullable_str(&b, "nul").unwrap(), Some(None));
        assert_eq!(int(&b, "n").unwrap(), Some(3));
        assert_eq!(int(&b, "ns").unwrap(), Some(4));
        assert!(int(&b, "f").is_err());
        assert!(int(&b, "s").is_err());
        assert_eq!(boolean(&b, "b").unwrap(), Some(true));
        assert!(boolean(&b, "bb").is_err());
        assert!(opt_metadata(&b, "meta").is_err());
        assert!(only(&b, "volume", &["s"]).is_err());
    }
}
