//! Query strings. Clients send odd ones (`openstack` sends `limit=None`), so
//! values are parsed leniently where Cinder is lenient and strictly, with a
//! 400, where a wrong value would change the answer.
//!
//! Lists share Cinder's sorting and paging parameters, parsed here once:
//! [`sort`] (`sort=k1:dir,k2` or the older `sort_key`/`sort_dir`) against
//! the sort keys a list takes ([`SortKeys`], one per resource), and
//! [`Paging`] (`limit`, `marker`) with the `next` link of a full page.

use std::fmt::Display;
use std::str::FromStr;

use axum::extract::{FromRequestParts, RawQuery};
use axum::http::request::Parts;
use scoria_core::volumes::SortDir;
use serde_json::{Value, json};

use crate::fault::{ApiError, ApiResult};

/// Cinder's maximum page size (`osapi_max_limit`).
pub const MAX_LIMIT: i64 = 1000;

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

/// The sort keys a list takes, by Cinder's names, and the key a lone
/// `sort_dir` sorts on.
pub struct SortKeys<K: 'static> {
    pub parse: fn(&str) -> Option<K>,
    pub default: K,
}

/// Cinder's sort parameters: `sort=k1:dir,k2` (a key without a direction
/// sorts descending) or `sort_key=k1,k2&sort_dir=d1,d2`, not both. Keys and
/// directions are trimmed, as Cinder strips them. Empty when the query asks
/// for no order.
pub fn sort<K: Copy>(q: &Params, keys: &SortKeys<K>) -> ApiResult<Vec<(K, SortDir)>> {
    let key = |k: &str| {
        let k = k.trim();
        (keys.parse)(k).ok_or_else(|| {
            ApiError::bad_request(format!("Invalid input received: Invalid sort key {k}."))
        })
    };
    let mut out = Vec::new();
    if let Some(sort) = q.get("sort") {
        if q.get("sort_key").is_some() || q.get("sort_dir").is_some() {
            return Err(ApiError::bad_request(
                "The 'sort_key' and 'sort_dir' parameters are deprecated and cannot be used with the 'sort' parameter.",
            ));
        }
        for item in sort.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, d) = item.split_once(':').unwrap_or((item, "desc"));
            out.push((key(k)?, sort_dir(d)?));
        }
    } else if let Some(k) = q.get("sort_key") {
        let dirs: Vec<&str> = q
            .get("sort_dir")
            .map(|d| d.split(',').collect())
            .unwrap_or_default();
        for (i, k) in k.split(',').enumerate() {
            out.push((key(k)?, sort_dir(dirs.get(i).copied().unwrap_or("desc"))?));
        }
    } else if let Some(d) = q.get("sort_dir") {
        out.push((keys.default, sort_dir(d)?));
    }
    Ok(out)
}

fn sort_dir(d: &str) -> ApiResult<SortDir> {
    match d.trim().to_ascii_lowercase().as_str() {
        "asc" => Ok(SortDir::Asc),
        "desc" => Ok(SortDir::Desc),
        other => Err(ApiError::bad_request(format!(
            "Invalid sort direction '{other}': expected asc or desc."
        ))),
    }
}

/// Where a page starts and how long it is: `limit` (at most [`MAX_LIMIT`])
/// and `marker`, the id of the last item of the page before.
#[derive(Clone, Debug)]
pub struct Paging<M> {
    /// The limit the query asked for, if any.
    pub limit: Option<i64>,
    pub marker: Option<M>,
}

impl<M: FromStr> Paging<M> {
    /// `limit` must be a non-negative integer (a larger one is cut to
    /// [`MAX_LIMIT`]); a `marker` that is not an id names nothing, and Cinder
    /// answers that the same way as an unknown one.
    pub fn parse(q: &Params) -> ApiResult<Self> {
        let limit = limit(q)?;
        let marker = match q.get("marker") {
            None | Some("") => None,
            Some(m) => Some(m.parse::<M>().map_err(|_| {
                ApiError::bad_request(format!("Invalid input received: marker [{m}] not found"))
            })?),
        };
        Ok(Paging { limit, marker })
    }
}

/// The `limit` a query asks for: a non-negative integer, cut to
/// [`MAX_LIMIT`].
pub fn limit(q: &Params) -> ApiResult<Option<i64>> {
    Ok(q.uint("limit")?.map(|l| l.min(MAX_LIMIT)))
}

impl<M> Paging<M> {
    /// How many items a page holds: the limit asked for, or [`MAX_LIMIT`].
    pub fn size(&self) -> i64 {
        self.limit.unwrap_or(MAX_LIMIT)
    }
}

/// The `next` link of a full page of `size` items ending with `last`: the
/// same request at `url`, with `limit` and `marker` (and the `dropped` keys)
/// replaced so that it reads on after `last`.
pub fn next_link(q: &Params, url: &str, dropped: &[&str], size: i64, last: impl Display) -> Value {
    let mut pairs: Vec<(String, String)> =
        q.0.iter()
            .filter(|(k, _)| k != "marker" && k != "limit" && !dropped.contains(&k.as_str()))
            .cloned()
            .collect();
    pairs.push(("limit".into(), size.to_string()));
    pairs.push(("marker".into(), last.to_string()));
    let qs = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    json!([{"rel": "next", "href": format!("{url}?{qs}")}])
}

/// Sort a list held in memory (the lists an administrator keeps short:
/// types, QoS specs, transfers) by `sort`, each key's value read by `value`
/// (values compare as strings: names, ids and RFC 3339 times all do); the
/// order given is kept for ties and when `sort` is empty.
pub fn sort_in_memory<T, K: Copy>(
    items: &mut [T],
    sort: &[(K, SortDir)],
    value: impl Fn(&T, K) -> String,
) {
    items.sort_by(|a, b| {
        for (k, d) in sort {
            let o = value(a, *k).cmp(&value(b, *k));
            let o = if *d == SortDir::Desc { o.reverse() } else { o };
            if o.is_ne() {
                return o;
            }
        }
        std::cmp::Ordering::Equal
    });
}

/// One page of a sorted list held in memory: after the `marker` (an id that
/// must be in the list: 400 otherwise, as the lists paged in the store
/// answer), then `offset` skipped, then at most `limit` (or [`MAX_LIMIT`])
/// items. `limit`, `offset` and a marker that is not an id are checked as
/// [`Paging::parse`] checks them.
pub fn page_in_memory<T, M: FromStr + PartialEq>(
    q: &Params,
    items: Vec<T>,
    id: impl Fn(&T) -> M,
) -> ApiResult<Vec<T>> {
    let page = Paging::<M>::parse(q)?;
    let offset = q.uint("offset")?.unwrap_or(0) as usize;
    let start = match &page.marker {
        None => 0,
        Some(m) => match items.iter().position(|t| id(t) == *m) {
            Some(i) => i + 1,
            None => {
                return Err(ApiError::bad_request(format!(
                    "Marker {} could not be found.",
                    q.get("marker").unwrap_or("")
                )));
            }
        },
    };
    Ok(items
        .into_iter()
        .skip(start)
        .skip(offset)
        .take(page.size() as usize)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(raw: &str) -> Params {
        Params(serde_urlencoded::from_str(raw).unwrap())
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Key {
        Name,
        Created,
    }

    const KEYS: SortKeys<Key> = SortKeys {
        parse: |k| match k {
            "name" => Some(Key::Name),
            "created_at" => Some(Key::Created),
            _ => None,
        },
        default: Key::Created,
    };

    #[test]
    fn sorts_as_cinder_does() {
        use SortDir::{Asc, Desc};
        let ok: &[(&str, &[(Key, SortDir)])] = &[
            ("", &[]),
            ("sort=name", &[(Key::Name, Desc)]),
            (
                "sort=name:asc,created_at",
                &[(Key::Name, Asc), (Key::Created, Desc)],
            ),
            ("sort=+name+:+ASC+,", &[(Key::Name, Asc)]),
            (
                "sort_key=name,created_at&sort_dir=asc",
                &[(Key::Name, Asc), (Key::Created, Desc)],
            ),
            ("sort_dir=asc", &[(Key::Created, Asc)]),
            ("sort=None", &[]),
        ];
        for (raw, want) in ok {
            assert_eq!(sort(&q(raw), &KEYS).unwrap(), *want, "{raw}");
        }
        let bad = [
            (
                "sort=size",
                "Invalid input received: Invalid sort key size.",
            ),
            (
                "sort_key=+size+",
                "Invalid input received: Invalid sort key size.",
            ),
            (
                "sort=name:up",
                "Invalid sort direction 'up': expected asc or desc.",
            ),
            (
                "sort_dir=UP",
                "Invalid sort direction 'up': expected asc or desc.",
            ),
            (
                "sort=name&sort_dir=asc",
                "The 'sort_key' and 'sort_dir' parameters are deprecated and cannot be used with the 'sort' parameter.",
            ),
        ];
        for (raw, message) in bad {
            let e = sort(&q(raw), &KEYS).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.message.as_str()),
                (400, message),
                "{raw}"
            );
        }
    }

    #[test]
    fn pages_and_links() {
        let p = Paging::<u32>::parse(&q("limit=5000&marker=7")).unwrap();
        assert_eq!(
            (p.limit, p.marker, p.size()),
            (Some(MAX_LIMIT), Some(7), MAX_LIMIT)
        );
        let p = Paging::<u32>::parse(&q("limit=None&marker=")).unwrap();
        assert_eq!((p.limit, p.marker, p.size()), (None, None, MAX_LIMIT));
        for (raw, message) in [
            (
                "limit=-1",
                "Invalid input received: limit must be a non-negative integer, not '-1'.",
            ),
            ("marker=x", "Invalid input received: marker [x] not found"),
        ] {
            let e = Paging::<u32>::parse(&q(raw)).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.message.as_str()),
                (400, message),
                "{raw}"
            );
        }
        let mut items = vec![(3, "b"), (1, "a"), (2, "b")];
        sort_in_memory(&mut items, &[(0, SortDir::Desc)], |t, _| t.1.to_owned());
        assert_eq!(items, [(3, "b"), (2, "b"), (1, "a")]);
        let page = |raw| page_in_memory(&q(raw), vec![1u32, 2, 3, 4], |i| *i);
        assert_eq!(page("marker=2&limit=1").unwrap(), [3]);
        assert_eq!(page("offset=1&limit=2").unwrap(), [2, 3]);
        assert_eq!(page("marker=1&offset=1").unwrap(), [3, 4]);
        for raw in ["marker=9", "marker=x", "limit=abc", "offset=-1"] {
            assert_eq!(page(raw).unwrap_err().status.as_u16(), 400, "{raw}");
        }
        let link = next_link(
            &q("name=a+b&limit=2&marker=1&offset=3"),
            "http://x/v",
            &["offset"],
            2,
            9,
        );
        assert_eq!(
            link,
            json!([{"rel": "next", "href": "http://x/v?name=a+b&limit=2&marker=9"}])
        );
    }
}
