//! A small S3 client: path-style URLs, SigV4-signed PUT, GET, HEAD and
//! DELETE of one object, and ListObjectsV2 with continuation tokens, over
//! the blocking `ureq` agent (its connection pool keeps one connection per
//! thread warm).
//!
//! Ours rather than an SDK's because the repository needs those five calls
//! and nothing else, blocking (the repository is called on blocking
//! threads), and an SDK would bring its own async runtime and a large
//! dependency tree. Every failure names the bucket, the key, and the HTTP
//! status with S3's error code and message, or the transport's error; a
//! refused signature says which settings to check. The secret key is used to
//! sign and never printed: [`S3Config`]'s `Debug` leaves it out.

use std::io::Read;
use std::time::Duration;

use super::sigv4;
use super::xml::{self, Object};
use crate::{Result, StorageError};

/// Where the repository's objects are, and the credentials to reach them.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// `http://host[:port][/path]` of an S3-compatible server (path-style
    /// requests: `<endpoint>/<bucket>/<key>`).
    pub endpoint: String,
    pub region: String,
    /// An existing bucket.
    pub bucket: String,
    /// Prepended to every key (`scoria/` → `scoria/chunks/…`); may be empty.
    pub prefix: String,
    pub access_key: String,
    pub secret_key: String,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

/// The largest body read back (a 64 MiB chunk that did not compress, or the
/// manifest of a very large volume, fit).
const MAX_BODY: u64 = 256 << 20;

/// Requests are retried this many times on a transport error or a 5xx
/// (every request is idempotent).
const ATTEMPTS: u32 = 3;

pub struct S3Client {
    agent: ureq::Agent,
    /// `http://authority[/path]`, no trailing slash.
    base: String,
    /// The `Host` header, as signed.
    host: String,
    /// The encoded path before the bucket (`/path`, or empty).
    base_path: String,
    /// The normalized prefix: empty, or ending in `/`.
    prefix: String,
    config: S3Config,
}

impl std::fmt::Debug for S3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Client")
            .field("config", &self.config)
            .finish()
    }
}

/// An answer with a 2xx status.
struct Answer {
    body: Vec<u8>,
}

/// Why a request failed.
enum Failure {
    Status { status: u16, detail: String },
    Other(String),
}

impl S3Client {
    pub fn new(config: S3Config) -> Result<Self> {
        let invalid = |why: String| StorageError::InvalidName(format!("backups.s3: {why}"));
        let rest = config.endpoint.strip_prefix("http://").ok_or_else(|| {
            invalid(format!(
                "endpoint {:?} must be http://host[:port] (https is not built in: this build's HTTP client has no TLS)",
                config.endpoint
            ))
        })?;
        let rest = rest.trim_end_matches('/');
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains(['@', '?', '#']) {
            return Err(invalid(format!(
                "endpoint {:?} has no host",
                config.endpoint
            )));
        }
        if config.bucket.is_empty()
            || !config
                .bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            return Err(invalid(format!(
                "bucket {:?} is not a bucket name",
                config.bucket
            )));
        }
        if config.region.is_empty() || config.access_key.is_empty() || config.secret_key.is_empty()
        {
            return Err(invalid(
                "region, access_key and secret_key are required".into(),
            ));
        }
        let host = authority
            .strip_suffix(":80")
            .unwrap_or(authority)
            .to_owned();
        let prefix = config.prefix.trim_matches('/');
        // A URL path normalizes `.`, `..` and `//`: such a prefix would name
        // other keys than it says.
        if !prefix.is_empty()
            && prefix
                .split('/')
                .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(invalid(format!(
                "prefix {:?} has an empty, . or .. segment",
                config.prefix
            )));
        }
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout_read(Duration::from_secs(120))
            .timeout_write(Duration::from_secs(120))
            .redirects(0)
            .build();
        Ok(Self {
            agent,
            base: format!("http://{authority}"),
            host,
            base_path: sigv4::uri_encode(path, true),
            prefix,
            config,
        })
    }

    pub fn bucket(&self) -> &str {
        &self.config.bucket
    }

    /// The full key of `key` (relative to the prefix).
    pub fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Store `body` as `key` (relative to the prefix); S3 makes it visible
    /// whole or not at all.
    pub fn put(&self, key: &str, body: &[u8]) -> Result<()> {
        let full = self.full_key(key);
        self.request("PUT", Some(&full), &[], body)
            .map(|_| ())
            .map_err(|f| self.error("PUT", &full, f))
    }

    /// `key`'s bytes, or `None` when there is no such object.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let full = self.full_key(key);
        match self.request("GET", Some(&full), &[], &[]) {
            Ok(a) => Ok(Some(a.body)),
            Err(Failure::Status { status: 404, .. }) => Ok(None),
            Err(f) => Err(self.error("GET", &full, f)),
        }
    }

    /// Whether `key` exists.
    pub fn head(&self, key: &str) -> Result<bool> {
        let full = self.full_key(key);
        match self.request("HEAD", Some(&full), &[], &[]) {
            Ok(_) => Ok(true),
            Err(Failure::Status { status: 404, .. }) => Ok(false),
            Err(f) => Err(self.error("HEAD", &full, f)),
        }
    }

    /// Remove `key`; absent is success.
    pub fn delete(&self, key: &str) -> Result<()> {
        let full = self.full_key(key);
        match self.request("DELETE", Some(&full), &[], &[]) {
            Ok(_) | Err(Failure::Status { status: 404, .. }) => Ok(()),
            Err(f) => Err(self.error("DELETE", &full, f)),
        }
    }

    /// Every object whose key starts with `prefix` (relative to the
    /// repository's prefix), every page; keys returned relative too.
    pub fn list(&self, prefix: &str) -> Result<Vec<Object>> {
        self.list_pages(prefix, None)
    }

    /// [`list`](Self::list) with at most `page` keys a request (tests use
    /// small pages to cross continuation tokens).
    pub fn list_pages(&self, prefix: &str, page: Option<u32>) -> Result<Vec<Object>> {
        let full = self.full_key(prefix);
        let mut token: Option<String> = None;
        let mut all = Vec::new();
        loop {
            let listing = self.list_page(&full, page, token.as_deref())?;
            for o in listing.objects {
                if let Some(rel) = o.key.strip_prefix(&self.prefix) {
                    all.push(Object {
                        key: rel.to_owned(),
                        size: o.size,
                    });
                }
            }
            match listing.next {
                Some(next) if Some(&next) != token.as_ref() => token = Some(next),
                Some(_) => {
                    return Err(self.error(
                        "ListObjectsV2",
                        &full,
                        Failure::Other("the server repeated its continuation token".into()),
                    ));
                }
                None => return Ok(all),
            }
        }
    }

    /// One listing request (at most one key): the bucket is there and the
    /// credentials are good, whatever it holds.
    pub fn check(&self) -> Result<()> {
        self.list_page(&self.full_key("manifests/"), Some(1), None)
            .map(|_| ())
    }

    /// One ListObjectsV2 page of keys starting with `full` (a full key).
    fn list_page(
        &self,
        full: &str,
        page: Option<u32>,
        token: Option<&str>,
    ) -> Result<xml::Listing> {
        let page = page.map(|p| p.to_string());
        let mut query = vec![("list-type", "2"), ("prefix", full)];
        if let Some(p) = &page {
            query.push(("max-keys", p));
        }
        if let Some(t) = token {
            query.push(("continuation-token", t));
        }
        let answer = self
            .request("GET", None, &query, &[])
            .map_err(|f| self.error("ListObjectsV2", full, f))?;
        let text = String::from_utf8_lossy(&answer.body);
        xml::parse_listing(&text).map_err(|why| {
            self.error(
                "ListObjectsV2",
                full,
                Failure::Other(format!("unreadable listing: {why}")),
            )
        })
    }

    /// Create the bucket; one that exists is success. For tests and setup:
    /// Scoria itself expects an existing bucket and never creates one.
    pub fn create_bucket(&self) -> Result<()> {
        match self.request("PUT", None, &[], &[]) {
            Ok(_) => Ok(()),
            Err(Failure::Status { status: 409, .. }) => Ok(()),
            Err(f) => Err(self.error("CreateBucket", "", f)),
        }
    }

    fn error(&self, op: &str, key: &str, f: Failure) -> StorageError {
        let detail = match f {
            Failure::Status { status, detail } => format!("HTTP {status} {detail}"),
            Failure::Other(d) => d,
        };
        StorageError::ObjectStore {
            op: op.to_owned(),
            bucket: self.config.bucket.clone(),
            key: key.to_owned(),
            detail,
        }
    }

    /// One signed request on the bucket (`key` `None`) or an object, retried
    /// on transport errors and 5xx.
    fn request(
        &self,
        method: &str,
        key: Option<&str>,
        query: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Answer, Failure> {
        let mut path = format!("{}/{}", self.base_path, self.config.bucket);
        if let Some(k) = key {
            path.push('/');
            path.push_str(&sigv4::uri_encode(k, true));
        }
        let qs = sigv4::canonical_query(query);
        let url = if qs.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?{qs}", self.base)
        };
        let payload = sigv4::sha256_hex(body);
        let mut last = Failure::Other("no attempt".into());
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(200 << attempt));
            }
            let date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
            let headers = [
                ("host", self.host.as_str()),
                ("x-amz-content-sha256", payload.as_str()),
                ("x-amz-date", date.as_str()),
            ];
            let auth = sigv4::authorization(
                &self.config.access_key,
                &self.config.secret_key,
                &self.config.region,
                &date,
                &sigv4::Request {
                    method,
                    path: &path,
                    query,
                    headers: &headers,
                    payload_sha256: &payload,
                },
            );
            let mut req = self.agent.request(method, &url);
            for (k, v) in headers {
                req = req.set(k, v);
            }
            req = req.set("authorization", &auth);
            tracing::trace!(method, bucket = %self.config.bucket, key = key.unwrap_or(""), "S3 request");
            let sent = if method == "PUT" {
                req.send_bytes(body)
            } else {
                req.call()
            };
            match sent {
                Ok(resp) => {
                    return read_body(resp)
                        .map(|body| Answer { body })
                        .map_err(Failure::Other);
                }
                Err(ureq::Error::Status(status, resp)) => {
                    let text = read_body(resp).unwrap_or_default();
                    last = Failure::Status {
                        status,
                        detail: describe(status, &text),
                    };
                    if status < 500 {
                        return Err(last);
                    }
                }
                Err(ureq::Error::Transport(t)) => {
                    last = Failure::Other(format!("{} ({t})", self.base))
                }
            }
        }
        Err(last)
    }
}

fn read_body(resp: ureq::Response) -> Result<Vec<u8>, String> {
    // Sized up front from the announced length (capped): no regrowth.
    let len: usize = resp
        .header("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = Vec::with_capacity(len.min(MAX_BODY as usize + 1));
    resp.into_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut body)
        .map_err(|e| format!("reading the answer: {e}"))?;
    if body.len() as u64 > MAX_BODY {
        return Err(format!("the answer is over {MAX_BODY} bytes"));
    }
    Ok(body)
}

/// An error answer: S3's code and message, and what to check when the
/// server refused the credentials.
fn describe(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut d = match xml::parse_error(&text) {
        Some((code, message)) if message.is_empty() => code,
        Some((code, message)) => format!("{code}: {message}"),
        None if text.trim().is_empty() => "(no body)".to_owned(),
        None => text.chars().take(200).collect(),
    };
    if d.starts_with("SignatureDoesNotMatch")
        || d.starts_with("InvalidAccessKeyId")
        || status == 403
    {
        d.push_str(
            " (the server refused the request's credentials: check backups.s3 access_key and secret_key)",
        );
    }
    d
}
