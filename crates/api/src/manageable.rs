//! What Cinder's two manageable lists (`/manageable_volumes` and
//! `/manageable_snapshots`, 3.8 on, admins) share: the microversion gate,
//! the `host` (Scoria has no clusters), the sort keys and the `marker`.

use scoria_core::{Context, Op};
use serde_json::{Value, json};

use crate::fault::{ApiError, ApiResult};
use crate::microversion::Version;
use crate::query::{self, Params, SortKeys};
use scoria_core::volumes::SortDir;

/// Microversion from which the manageable lists, and the manage through
/// them, exist.
const MANAGEABLE: u32 = 8;

/// Cinder's `cluster` has no meaning here.
pub const NO_CLUSTERS: &str =
    "Invalid input received: Scoria has no clusters; name the backend as host (scoria@<backend>).";

/// Before 3.8, the routes are not there.
pub fn since_3_8(v: Version) -> ApiResult<()> {
    if v.at_least(MANAGEABLE) {
        Ok(())
    } else {
        Err(ApiError::not_found("The resource could not be found."))
    }
}

/// What a list checks first (the microversion, then `op`'s policy), then
/// its `host`.
pub fn list_host<'q>(v: Version, ctx: &Context, op: Op, q: &'q Params) -> ApiResult<&'q str> {
    since_3_8(v)?;
    ctx.authorize(op)?;
    host(q)
}

/// The fields every entry of both lists has, and those of the detail.
pub struct Entry<'a> {
    pub name: &'a str,
    pub size: i64,
    pub safe: bool,
    pub reason_not_safe: Option<&'a str>,
    pub extra_info: String,
}

impl Entry<'_> {
    pub fn to_json(&self, detail: bool) -> Value {
        let mut o = json!({
            "reference": {"source-name": self.name},
            "size": self.size,
            "safe_to_manage": self.safe,
        });
        if detail {
            o["reason_not_safe"] = json!(self.reason_not_safe);
            // A file or a kept snapshot Scoria made is never listed.
            o["cinder_id"] = Value::Null;
            o["extra_info"] = json!(self.extra_info);
        }
        o
    }
}

/// A list's `host` (required), refusing a `cluster`.
fn host(q: &Params) -> ApiResult<&str> {
    if q.get("cluster").is_some() {
        return Err(ApiError::bad_request(NO_CLUSTERS));
    }
    q.get("host").filter(|h| !h.is_empty()).ok_or_else(|| {
        ApiError::bad_request("Invalid input received: host is required: scoria@<backend>.")
    })
}

/// What the lists sort on (Cinder takes these two).
#[derive(Clone, Copy)]
enum SortKey {
    Reference,
    Size,
}

const SORT_KEYS: SortKeys<SortKey> = SortKeys {
    parse: |k| match k {
        "reference" => Some(SortKey::Reference),
        "size" => Some(SortKey::Size),
        _ => None,
    },
    default: SortKey::Reference,
};

/// A page's `marker`: the reference of the last entry of the page before,
/// as Cinder takes it (`{"source-name": "<name>"}`), or the bare name.
#[derive(PartialEq)]
struct Marker(String);

impl std::str::FromStr for Marker {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(o)) => match o.get("source-name") {
                Some(Value::String(n)) if o.len() == 1 => Ok(Marker(n.clone())),
                _ => Err(()),
            },
            _ => Ok(Marker(s.to_owned())),
        }
    }
}

/// Sort a list as Cinder does (by reference, descending, unless `sort`
/// says otherwise), then page it (`limit`, `offset`, `marker`).
pub fn sort_and_page<T>(
    q: &Params,
    mut list: Vec<T>,
    name: impl Fn(&T) -> &str,
    size: impl Fn(&T) -> i64,
) -> ApiResult<Vec<T>> {
    let mut sort = query::sort(q, &SORT_KEYS)?;
    if sort.is_empty() {
        sort.push((SortKey::Reference, SortDir::Desc));
    }
    query::sort_in_memory(&mut list, &sort, |m, k| match k {
        SortKey::Reference => name(m).to_owned(),
        SortKey::Size => format!("{:020}", size(m)),
    });
    query::page_in_memory(q, list, |m| Marker(name(m).to_owned()))
}
