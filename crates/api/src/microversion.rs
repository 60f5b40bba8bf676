//! Block Storage microversions.
//!
//! A client asks for `OpenStack-API-Version: volume 3.45` (or the legacy
//! `OpenStack-Volume-microversion` / `X-OpenStack-Volume-API-Version: 3.45`,
//! or `latest`); without a header it gets 3.0. The negotiated version is a
//! request extension for handlers and is echoed on the response with
//! `Vary: OpenStack-API-Version`. A version outside [`MIN`, `MAX`] is 406, a
//! malformed one 400.
//!
//! [`MAX`] is the highest version whose changes to the resources Scoria serves
//! are implemented; the list is in `docs/conformance.md`.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::fault::ApiError;

/// A `3.x` microversion (the major is always 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32);

pub const MIN: Version = Version(0);
pub const MAX: Version = Version(71);

impl Version {
    /// True when the request's version is at least `3.minor`.
    pub fn at_least(self, minor: u32) -> bool {
        self.0 >= minor
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "3.{}", self.0)
    }
}

/// An extractor for routes that exist only from microversion `3.M` on: below
/// it the route does not exist (404, Cinder's `VersionNotFoundForAPIMethod`),
/// whatever the body. Put it after `Auth` (a request without a token is a 401
/// first, as in Cinder) and before the body.
pub struct AtLeast<const M: u32>(pub Version);

impl<S: Send + Sync, const M: u32> axum::extract::FromRequestParts<S> for AtLeast<M> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ApiError> {
        let v = parts.extensions.get::<Version>().copied().unwrap_or(MIN);
        if v.at_least(M) {
            Ok(AtLeast(v))
        } else {
            Err(not_supported(v))
        }
    }
}

/// The answer to a request for something that does not exist at its
/// microversion `v` (Cinder's `VersionNotFoundForAPIMethod`).
pub fn not_supported(v: Version) -> ApiError {
    ApiError::not_found(format!("API version {v} is not supported on this method."))
}

/// The version a request asks for.
pub fn requested(headers: &HeaderMap) -> Result<Version, ApiError> {
    let raw = headers
        .get_all("openstack-api-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|item| {
            let mut parts = item.split_whitespace();
            match (parts.next(), parts.next()) {
                (Some(service), Some(v)) if service.eq_ignore_ascii_case("volume") => {
                    Some(v.to_owned())
                }
                _ => None,
            }
        })
        .or_else(|| {
            [
                "openstack-volume-microversion",
                "x-openstack-volume-api-version",
            ]
            .iter()
            .find_map(|h| {
                headers
                    .get(*h)
                    .and_then(|v| v.to_str().ok())
                    .map(|s| s.trim().to_owned())
            })
        });
    let Some(raw) = raw else { return Ok(MIN) };
    if raw.eq_ignore_ascii_case("latest") {
        return Ok(MAX);
    }
    let bad = || {
        ApiError::bad_request(format!(
            "Version {raw} is not a valid microversion: expected 3.x or latest."
        ))
    };
    let (major, minor) = raw.split_once('.').ok_or_else(bad)?;
    let major: u32 = major.parse().map_err(|_| bad())?;
    let minor: u32 = minor.parse().map_err(|_| bad())?;
    if major != 3 || Version(minor) < MIN || Version(minor) > MAX {
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "Version {raw} is not supported by the API. Minimum is {MIN} and maximum is {MAX}."
            ),
        ));
    }
    Ok(Version(minor))
}

fn stamp(resp: &mut Response, v: &str) {
    if let Ok(h) = HeaderValue::from_str(&format!("volume {v}")) {
        resp.headers_mut().insert("openstack-api-version", h);
    }
    resp.headers_mut()
        .insert("vary", HeaderValue::from_static("OpenStack-API-Version"));
}

/// Middleware for the Block Storage routes.
pub async fn layer(mut req: Request, next: Next) -> Response {
    match requested(req.headers()) {
        Ok(v) => {
            req.extensions_mut().insert(v);
            let mut resp = next.run(req).await;
            stamp(&mut resp, &v.to_string());
            resp
        }
        Err(e) => {
            let echo = req
                .headers()
                .get("openstack-api-version")
                .and_then(|h| h.to_str().ok())
                .and_then(|s| s.split_whitespace().nth(1))
                .unwrap_or("3.0")
                .to_owned();
            let mut resp = e.into_response();
            stamp(&mut resp, &echo);
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(headers: &[(&str, &str)], expect: Result<u32, u16>) {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        match (requested(&h), expect) {
            (Ok(v), Ok(m)) => assert_eq!(v.0, m, "{headers:?}"),
            (Err(e), Err(code)) => assert_eq!(e.status.as_u16(), code, "{headers:?}"),
            (got, want) => panic!("{headers:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn negotiation() {
        check(&[], Ok(0));
        check(&[("OpenStack-API-Version", "volume 3.45")], Ok(45));
        check(&[("OpenStack-API-Version", "volume latest")], Ok(MAX.0));
        check(
            &[("OpenStack-API-Version", "compute 2.1, volume 3.12")],
            Ok(12),
        );
        check(&[("OpenStack-API-Version", "compute 2.1")], Ok(0));
        check(&[("X-OpenStack-Volume-API-Version", "3.9")], Ok(9));
        check(&[("OpenStack-API-Version", "volume 3.999")], Err(406));
        check(&[("OpenStack-API-Version", "volume 2.0")], Err(406));
        check(&[("OpenStack-API-Version", "volume banana")], Err(400));
        check(&[("OpenStack-API-Version", "volume 3.x")], Err(400));
    }
}
