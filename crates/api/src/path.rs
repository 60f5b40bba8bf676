//! Path parameters of the Block Storage routes, and the base of the links
//! built from them.
//!
//! Every route is served both under `/v3/{project_id}` and, from
//! microversion 3.67, under `/v3` alone, so a handler cannot take a fixed
//! tuple of segments: it takes them as a map ([`PathParams`]) and reads each
//! by name ([`seg`]). Links name the project of the path, or the caller's
//! when the path has none ([`links_base`]).

use std::collections::BTreeMap;

use axum::extract::Path;
use scoria_core::Context;

use crate::State;

/// The path's segments by name.
pub type PathParams = Path<BTreeMap<String, String>>;

/// The segment `name` of the path (empty when the route has none).
pub fn seg<'a>(p: &'a BTreeMap<String, String>, name: &str) -> &'a str {
    p.get(name).map(String::as_str).unwrap_or("")
}

/// The bases of `self` and `bookmark` links for the request's project:
/// `{public_url}/v3/{project}` and `{public_url}/{project}`.
pub fn links_base(state: &State, ctx: &Context, p: &BTreeMap<String, String>) -> (String, String) {
    let project = p
        .get("project_id")
        .cloned()
        .or_else(|| ctx.project_id.as_ref().map(|p| p.0.clone()))
        .unwrap_or_default();
    (
        format!("{}/v3/{project}", state.public_url),
        format!("{}/{project}", state.public_url),
    )
}
