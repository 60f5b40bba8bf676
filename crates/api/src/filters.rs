//! The filters each list takes: one table, [`RESOURCES`], read both by the
//! list parsers (an unknown filter is refused from microversion 3.33 on, as
//! Cinder refuses it) and by `GET /v3/{project_id}/resource_filters` (3.33),
//! which publishes it — so what Scoria says it accepts and what it accepts
//! cannot disagree.
//!
//! A list's query also carries keys that are not filters (paging, sorting,
//! `all_tenants`…): those are the row's `params`, accepted and never
//! published. `aliases` are older spellings of a published filter
//! (`display_name` for `name`), accepted and not published either.

use axum::Json;
use axum::extract::Extension;
use serde_json::{Value, json};

use crate::auth::Auth;
use crate::fault::{ApiError, ApiResult};
use crate::microversion::{Version, not_supported};
use crate::query::Params;

/// Microversion from which unknown filters are refused and the table is
/// published.
pub const STRICT: u32 = 33;

/// One list's filters.
pub struct Filters {
    /// Cinder's resource name (`volume`, `snapshot`, …).
    pub resource: &'static str,
    /// The filters, as published.
    pub filters: &'static [&'static str],
    /// Older spellings of filters, accepted, not published.
    pub aliases: &'static [&'static str],
    /// Query keys that are not filters.
    pub params: &'static [&'static str],
}

/// Paging and sorting keys every list takes.
const PAGING: &[&str] = &["limit", "marker", "offset", "sort", "sort_key", "sort_dir"];

pub const VOLUME: Filters = Filters {
    resource: "volume",
    filters: &[
        "name",
        "status",
        "metadata",
        "bootable",
        "availability_zone",
        "group_id",
    ],
    aliases: &["display_name"],
    params: &[
        "limit",
        "marker",
        "offset",
        "sort",
        "sort_key",
        "sort_dir",
        "all_tenants",
        "all_projects",
        "project_id",
        "with_count",
        "with_progress",
    ],
};

pub const SNAPSHOT: Filters = Filters {
    resource: "snapshot",
    filters: &["name", "status", "volume_id", "metadata"],
    aliases: &["display_name"],
    params: VOLUME.params,
};

pub const BACKUP: Filters = Filters {
    resource: "backup",
    filters: &["name", "status", "volume_id"],
    aliases: &["display_name"],
    params: VOLUME.params,
};

pub const GROUP: Filters = Filters {
    resource: "group",
    filters: &["name", "status"],
    aliases: &[],
    params: &[
        "limit",
        "marker",
        "offset",
        "sort",
        "sort_key",
        "sort_dir",
        "all_tenants",
        "all_projects",
        "project_id",
        "list_volume",
    ],
};

pub const MESSAGE: Filters = Filters {
    resource: "message",
    filters: &[
        "resource_uuid",
        "resource_type",
        "event_id",
        "request_id",
        "message_level",
    ],
    aliases: &[],
    params: PAGING,
};

/// Every list whose filters are checked, in the order they are published.
pub const RESOURCES: &[&Filters] = &[&VOLUME, &SNAPSHOT, &BACKUP, &GROUP, &MESSAGE];

impl Filters {
    /// Refuse (400, Cinder's message) a query key that is neither a filter,
    /// an alias nor a parameter of this list, from [`STRICT`] on.
    pub fn check(&self, q: &Params, v: Version) -> ApiResult<()> {
        if !v.at_least(STRICT) {
            return Ok(());
        }
        let known = |k: &str| {
            self.filters.contains(&k) || self.aliases.contains(&k) || self.params.contains(&k)
        };
        match q.0.iter().find(|(k, _)| !known(k)) {
            Some((k, _)) => Err(ApiError::bad_request(format!(
                "Invalid input received: Invalid filters {k} are found in query options."
            ))),
            None => Ok(()),
        }
    }
}

/// `GET /v3/{project_id}/resource_filters[?resource=volume]` (3.33): the
/// table, or the one row `resource` names (none when it names no list).
pub async fn list(
    Auth(_ctx): Auth,
    Extension(v): Extension<Version>,
    q: Params,
) -> ApiResult<Json<Value>> {
    if !v.at_least(STRICT) {
        return Err(not_supported(v));
    }
    let only = q.get("resource").filter(|r| !r.is_empty());
    let rows: Vec<Value> = RESOURCES
        .iter()
        .filter(|f| only.is_none_or(|r| r == f.resource))
        .map(|f| json!({"resource": f.resource, "filters": f.filters}))
        .collect();
    Ok(Json(json!({"resource_filters": rows})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(raw: &str) -> Params {
        Params(serde_urlencoded::from_str(raw).unwrap())
    }

    #[test]
    fn what_is_published_is_what_is_accepted() {
        for f in RESOURCES {
            for k in f.filters.iter().chain(f.aliases).chain(f.params) {
                assert!(
                    f.check(&q(&format!("{k}=x")), Version(STRICT)).is_ok(),
                    "{k}"
                );
            }
            let e = f.check(&q("size=1"), Version(STRICT)).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.message.as_str()),
                (
                    400,
                    "Invalid input received: Invalid filters size are found in query options."
                ),
                "{}",
                f.resource
            );
            // Before 3.33 an unknown key is ignored, as Cinder ignores it.
            assert!(f.check(&q("size=1"), Version(STRICT - 1)).is_ok());
        }
    }
}
