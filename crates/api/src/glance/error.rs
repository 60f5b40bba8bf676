//! Glance's error bodies, and the extractors of the image routes, which fail
//! with them.
//!
//! Glance answers errors the way WebOb renders an HTTP exception, chosen by
//! the request's `Accept` (text/html preferred on a tie, as WebOb orders its
//! offers):
//! - `application/json` (what tempest sends):
//!   `{"message": "<explanation><br /><br />\n\n\n", "code": "404 Not Found", "title": "Not Found"}`;
//! - `text/html` (also no `Accept`, or `*/*`): a small page with the status as
//!   title and heading and the explanation in the body;
//! - anything else: `text/plain`, the status line, a blank line, the
//!   explanation.
//!
//! openstacksdk reads `message` from JSON and the text of an HTML page;
//! tempest only needs a content type it knows. The status of an application
//! error is decided for every API in [`crate::fault::status_of`]; a 401 is
//! the token middleware's (the same as Block Storage's, [`crate::auth`]).

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use scoria_core::{Context, Error};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::State;
use crate::auth::{Unauthorized, caller};
use crate::fault::{self, ApiError};
use crate::query::Params;

/// An error response of the image API.
#[derive(Clone, Debug)]
pub struct GlanceError {
    pub status: StatusCode,
    pub message: String,
    /// Extra headers (`Accept-Patch` on a 415 of a PATCH).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

pub type GResult<T> = Result<T, GlanceError>;

impl GlanceError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        GlanceError {
            status,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "The request media type is not supported by this server.",
        )
    }
}

impl From<Error> for GlanceError {
    fn from(e: Error) -> Self {
        GlanceError::new(fault::status_of(&e), e.to_string())
    }
}

impl From<ApiError> for GlanceError {
    fn from(e: ApiError) -> Self {
        GlanceError::new(e.status, e.message)
    }
}

/// The error as a response extension; [`negotiate`] renders it for the
/// request's `Accept`.
#[derive(Clone, Debug)]
struct Pending(GlanceError);

impl IntoResponse for GlanceError {
    fn into_response(self) -> Response {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = self.status;
        for (k, v) in &self.headers {
            r.headers_mut().insert(k.clone(), v.clone());
        }
        r.extensions_mut().insert(Pending(self));
        r
    }
}

/// How an error body is rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Html,
    Json,
    Plain,
}

/// WebOb's choice among `text/html` and `application/json` for an `Accept`
/// header (`None`: no header, which accepts anything).
pub fn format_for(accept: Option<&str>) -> Format {
    let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
        return Format::Html;
    };
    // The quality each offer gets: the most specific range that names it.
    let mut html: Option<(u8, f32)> = None;
    let mut json: Option<(u8, f32)> = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let range = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|v| v.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let offer = |slot: &mut Option<(u8, f32)>, full: &str, kind: &str| {
            let specificity = if range == full {
                3
            } else if range == format!("{kind}/*") {
                2
            } else if range == "*/*" {
                1
            } else {
                return;
            };
            if slot.is_none_or(|(s, _)| specificity > s) {
                *slot = Some((specificity, q));
            }
        };
        offer(&mut html, "text/html", "text");
        offer(&mut json, "application/json", "application");
    }
    let q = |slot: Option<(u8, f32)>| slot.map_or(0.0, |(_, q)| q);
    let (h, j) = (q(html), q(json));
    if h <= 0.0 && j <= 0.0 {
        Format::Plain
    } else if h >= j {
        Format::Html
    } else {
        Format::Json
    }
}

fn reason(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The body and content type of an error in a format.
pub fn render(e: &GlanceError, format: Format) -> (&'static str, String) {
    let status_line = format!("{} {}", e.status.as_u16(), reason(e.status));
    match format {
        Format::Json => (
            "application/json",
            json!({
                "message": format!("{}<br /><br />\n\n\n", e.message),
                "code": status_line,
                "title": reason(e.status),
            })
            .to_string(),
        ),
        Format::Html => (
            "text/html; charset=UTF-8",
            format!(
                "<html>\n <head>\n  <title>{status_line}</title>\n </head>\n <body>\n  <h1>{status_line}</h1>\n  {}<br /><br />\n\n\n\n </body>\n</html>",
                escape_html(&e.message)
            ),
        ),
        Format::Plain => (
            "text/plain; charset=UTF-8",
            format!("{status_line}\n\n{}\n\n   ", e.message.replace('\n', " ")),
        ),
    }
}

/// Render every error of the image routes for the request's `Accept`.
pub async fn negotiate(req: Request, next: Next) -> Response {
    let format = format_for(
        req.headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    );
    let resp = next.run(req).await;
    let Some(Pending(e)) = resp.extensions().get::<Pending>().cloned() else {
        return resp;
    };
    let (parts, _) = resp.into_parts();
    let (content_type, body) = render(&e, format);
    let mut r = Response::from_parts(parts, Body::from(body));
    r.extensions_mut().remove::<Pending>();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// The authenticated caller (`X-Auth-Token`); a 401 is the token
/// middleware's, as for Block Storage.
#[derive(Clone, Debug)]
pub struct GAuth(pub Context);

impl FromRequestParts<State> for GAuth {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, Response> {
        match caller(parts, state).await {
            Ok(ctx) => Ok(GAuth(ctx)),
            Err(Error::Unauthorized(_)) => Err(Unauthorized(&state.public_url).into_response()),
            Err(e) => Err(GlanceError::from(e).into_response()),
        }
    }
}

/// The query string.
#[derive(Debug)]
pub struct GQuery(pub Params);

impl<S: Send + Sync> FromRequestParts<S> for GQuery {
    type Rejection = GlanceError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, GlanceError> {
        Params::from_request_parts(parts, state)
            .await
            .map(GQuery)
            .map_err(GlanceError::from)
    }
}

/// Path parameters.
#[derive(Debug)]
pub struct GPath<T>(pub T);

impl<T, S> FromRequestParts<S> for GPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = GlanceError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, GlanceError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| GPath(p.0))
            .map_err(|e| GlanceError::bad_request(e.body_text()))
    }
}

/// The media type of a request (without parameters), lower case.
pub fn media_type(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|v| !v.is_empty())
}

/// A JSON body (any JSON value; the handler checks its shape), of a request
/// whose content type is JSON (or that names none). Glance's 400s for
/// malformed ones.
#[derive(Debug)]
pub struct GBody {
    pub media_type: Option<String>,
    pub value: serde_json::Value,
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for GBody {
    type Rejection = GlanceError;

    async fn from_request(req: Request, _: &S) -> Result<Self, GlanceError> {
        let (parts, body) = req.into_parts();
        let media_type = media_type(&parts);
        let bytes = axum::body::to_bytes(body, crate::body::MAX_BODY + 1)
            .await
            .map_err(|_| {
                GlanceError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request is too large.")
            })?;
        if bytes.len() > crate::body::MAX_BODY {
            return Err(GlanceError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request is too large.",
            ));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(GlanceError::bad_request("Body expected in request."));
        }
        let value = serde_json::from_slice(&bytes).map_err(|e| {
            GlanceError::bad_request(format!("Malformed JSON in request body: {e}."))
        })?;
        Ok(GBody { media_type, value })
    }
}

impl GBody {
    /// Refuse a media type other than JSON (a missing one is taken as JSON).
    pub fn expect_json(&self) -> GResult<()> {
        match self.media_type.as_deref() {
            None | Some("application/json") => Ok(()),
            Some(_) => Err(GlanceError::unsupported_media_type()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_choose_webobs_format() {
        for (accept, want) in [
            (None, Format::Html),
            (Some(""), Format::Html),
            (Some("*/*"), Format::Html),
            (Some("application/json"), Format::Json),
            (Some("application/json, text/html;q=0.5"), Format::Json),
            (Some("text/html, application/json"), Format::Html),
            (Some("application/*"), Format::Json),
            (Some("text/plain"), Format::Plain),
            (Some("application/octet-stream"), Format::Plain),
            (Some("*/*;q=0.1, application/json"), Format::Json),
        ] {
            assert_eq!(format_for(accept), want, "{accept:?}");
        }
    }

    #[test]
    fn bodies_are_webobs() {
        let e = GlanceError::not_found("No image found with ID x");
        let (ct, body) = render(&e, Format::Json);
        assert_eq!(ct, "application/json");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v,
            json!({"message": "No image found with ID x<br /><br />\n\n\n", "code": "404 Not Found", "title": "Not Found"})
        );
        let (ct, body) = render(&e, Format::Html);
        assert!(ct.starts_with("text/html"));
        assert!(body.contains("<title>404 Not Found</title>"), "{body}");
        assert!(body.contains("No image found with ID x<br />"), "{body}");
        let (ct, body) = render(&GlanceError::forbidden("a <b>"), Format::Plain);
        assert!(ct.starts_with("text/plain"));
        assert!(body.starts_with("403 Forbidden\n\na <b>"), "{body}");
        let (_, html) = render(&GlanceError::forbidden("a <b>"), Format::Html);
        assert!(html.contains("a &lt;b&gt;"), "{html}");
    }
}
