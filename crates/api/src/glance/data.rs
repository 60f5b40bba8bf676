//! `/v2/images/{id}/file`: upload (the request body, streamed through the
//! application layer into the image store, never held whole) and download
//! (the file streamed back, whole or one byte range).

use axum::body::Body;
use axum::extract::{Request, State as AxState};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::stream;
use scoria_core::image_service;
use tokio::io::AsyncReadExt;

use super::error::{GAuth, GPath, GResult, GlanceError, media_type};
use super::images::image_id;
use crate::State;

/// How much of a file a download reads at a time.
const CHUNK: usize = 64 * 1024;

pub async fn upload(
    AxState(state): AxState<State>,
    GAuth(ctx): GAuth,
    GPath(id): GPath<String>,
    req: Request,
) -> GResult<StatusCode> {
    let id = image_id(&id)?;
    let (parts, body) = req.into_parts();
    if media_type(&parts).as_deref() != Some("application/octet-stream") {
        return Err(GlanceError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type {} is not supported: the image data must be sent as application/octet-stream.",
                parts
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("(none)")
            ),
        ));
    }
    let announced = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    image_service::upload(&state.app, &ctx, id, announced, body.into_data_stream()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `Range: bytes=a-b`, `bytes=a-` or `bytes=-n` (one range), as
/// `(start, end)` or `(start, None)`; a suffix range needs the size.
fn range(header: Option<&str>, size: Option<i64>) -> GResult<Option<(u64, Option<u64>)>> {
    let Some(h) = header else { return Ok(None) };
    let bad = || {
        GlanceError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!("Requested range not satisfiable: {h}"),
        )
    };
    let spec = h.trim().strip_prefix("bytes=").ok_or_else(bad)?;
    if spec.contains(',') {
        return Err(bad());
    }
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| bad())?;
        let size = size.unwrap_or(0).max(0) as u64;
        if n == 0 {
            return Err(bad());
        }
        return Ok(Some((size.saturating_sub(n), None)));
    }
    let start: u64 = a.parse().map_err(|_| bad())?;
    let end = if b.is_empty() {
        None
    } else {
        Some(b.parse::<u64>().map_err(|_| bad())?)
    };
    if end.is_some_and(|e| e < start) {
        return Err(bad());
    }
    Ok(Some((start, end)))
}

pub async fn download(
    AxState(state): AxState<State>,
    GAuth(ctx): GAuth,
    GPath(id): GPath<String>,
    req: Request,
) -> GResult<Response> {
    let id = image_id(&id)?;
    let range_header = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // A suffix range needs the size: read the image first (cheap).
    let size = match &range_header {
        Some(_) => image_service::get(&state.app, &ctx, id).await?.size,
        None => None,
    };
    let wanted = range(range_header.as_deref(), size)?;
    let d = image_service::download(&state.app, &ctx, id, wanted)
        .await
        .map_err(|e| match e {
            scoria_core::Error::Invalid(m) if wanted.is_some() => {
                GlanceError::new(StatusCode::RANGE_NOT_SATISFIABLE, m)
            }
            e => e.into(),
        })?;
    let Some(reader) = d.data else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    // The file as a stream of chunks: at most one chunk in memory at a time.
    let body = stream::unfold((reader, vec![0u8; CHUNK]), |(mut r, mut buf)| async move {
        match r.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => Some((Ok(bytes::Bytes::copy_from_slice(&buf[..n])), (r, buf))),
            Err(e) => Some((Err(e), (r, buf))),
        }
    });
    let total = d.image.size.unwrap_or(0);
    let mut r = Response::new(Body::from_stream(body));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(d.len));
    if let Some(c) = d
        .image
        .checksum
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        h.insert("content-md5", c);
    }
    if wanted.is_some() {
        *r.status_mut() = StatusCode::PARTIAL_CONTENT;
        let last = (d.offset + d.len).saturating_sub(1);
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{last}/{total}", d.offset)) {
            r.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(range(None, None).unwrap(), None);
        assert_eq!(range(Some("bytes=0-9"), None).unwrap(), Some((0, Some(9))));
        assert_eq!(range(Some("bytes=5-"), None).unwrap(), Some((5, None)));
        assert_eq!(range(Some("bytes=-4"), Some(10)).unwrap(), Some((6, None)));
        for bad in [
            "items=0-1",
            "bytes=3-1",
            "bytes=a-b",
            "bytes=0-1,4-5",
            "bytes=-0",
        ] {
            assert_eq!(range(Some(bad), Some(10)).unwrap_err().status, 416, "{bad}");
        }
    }
}
