//! Extra specs against capabilities: Cinder's `CapabilitiesFilter` and the
//! operator language of its extra specs.
//!
//! A key is a capability when it has no scope or the `capabilities:` scope;
//! keys of other consumers (`qos:`, `scoria:`, `os-brick:`, `provisioning:`,
//! `RESKEY:`…) are skipped. A capability that some backend reports but this
//! one does not fails the match, as in Cinder (its filter returns false when
//! the capability is missing): a type that asks for `tier = ssd` must not
//! land on a backend that says nothing of its tier. A key that *no* backend
//! reports is not a capability of this deployment and is skipped: there
//! Scoria departs from Cinder (which would find no backend), because clients
//! and tests put arbitrary keys (`spec1 = val1`) in types they create volumes
//! of.
//!
//! Values are matched by their first word, when it is an operator:
//!
//! | spec            | matches when the capability…                          |
//! |-----------------|-------------------------------------------------------|
//! | `= 10`          | is a number at least 10                               |
//! | `== 10`, `!= 10`, `>= 10`, `<= 10` | compares so as a number (not a number: no match) |
//! | `s== x`, `s!= x`, `s< x`, `s<= x`, `s> x`, `s>= x` | compares so as a string |
//! | `<in> x`        | contains `x`                                          |
//! | `<all-in> x y`  | as a list (`[x, y, z]`, `x,y`, `x y`), holds every word |
//! | `<is> True`     | reads as the same boolean (`true`, `1`, `yes`, `on`…) |
//! | `<or> a <or> b` | is one of the words                                   |
//! | anything else   | equals the whole value                                |
//!
//! Operators that take a value compare against its first word only.

use std::collections::{BTreeMap, BTreeSet};

/// Do a type's extra specs accept a backend with these capabilities? The
/// capability filter alone (no zone, no capacity): a retype in place asks
/// exactly this of the volume's backend. `Err` says which capability differs.
/// `known`: the capability names some backend reports ([`known_keys`]);
/// other keys are skipped.
pub fn capabilities_match(
    extra_specs: &BTreeMap<String, String>,
    capabilities: &BTreeMap<String, String>,
    known: &BTreeSet<&str>,
) -> Result<(), String> {
    for (key, want) in extra_specs {
        let Some(key) = capability_key(key) else {
            continue;
        };
        if !known.contains(key) {
            continue;
        }
        match capabilities.get(key) {
            None => return Err(format!("it does not report {key}, the type wants {want:?}")),
            Some(have) if !matches(have, want) => {
                return Err(format!("{key} is {have:?}, the type wants {want:?}"));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The capability names reported by any of these backends.
pub fn known_keys<'a>(
    backends: impl IntoIterator<Item = &'a BTreeMap<String, String>>,
) -> BTreeSet<&'a str> {
    backends
        .into_iter()
        .flat_map(|caps| caps.keys().map(String::as_str))
        .collect()
}

/// The capability an extra-spec key names, `None` for another consumer's key.
pub fn capability_key(key: &str) -> Option<&str> {
    let key = key.strip_prefix("capabilities:").unwrap_or(key);
    (!key.contains(':')).then_some(key)
}

/// Does the capability value `have` satisfy the spec `want`?
pub fn matches(have: &str, want: &str) -> bool {
    let mut words = want.split_whitespace();
    let Some(op) = words.next() else {
        return have == want;
    };
    let first = words.clone().next();
    let num = |f: fn(f64, f64) -> bool| match (first, have.trim().parse::<f64>()) {
        (Some(w), Ok(h)) => w.parse::<f64>().is_ok_and(|w| f(h, w)),
        _ => false,
    };
    let text = |f: fn(&str, &str) -> bool| first.is_some_and(|w| f(have, w));
    match op {
        "=" | ">=" => num(|h, w| h >= w),
        "==" => num(|h, w| h == w),
        "!=" => num(|h, w| h != w),
        "<=" => num(|h, w| h <= w),
        "s==" => text(|h, w| h == w),
        "s!=" => text(|h, w| h != w),
        "s<" => text(|h, w| h < w),
        "s<=" => text(|h, w| h <= w),
        "s>" => text(|h, w| h > w),
        "s>=" => text(|h, w| h >= w),
        "<in>" => text(|h, w| h.contains(w)),
        "<is>" => first.is_some_and(|w| truthy(have) == truthy(w)),
        "<all-in>" => {
            let items = list_items(have);
            let mut wanted = words.peekable();
            wanted.peek().is_some() && wanted.all(|w| items.contains(&w))
        }
        "<or>" => want
            .split_whitespace()
            .enumerate()
            // Every other word is a value: `<or> a <or> b`.
            .any(|(i, w)| i % 2 == 1 && w == have),
        _ => have == want,
    }
}

/// A boolean as oslo's `bool_from_string` reads it: anything not true is false.
fn truthy(s: &str) -> bool {
    matches!(
        s.trim().to_ascii_lowercase().as_str(),
        "1" | "t" | "true" | "on" | "y" | "yes"
    )
}

/// The items of a list-like capability: `[a, b]`, `a,b` or `a b`, quotes
/// dropped.
fn list_items(s: &str) -> Vec<&str> {
    s.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(|c: char| c == ',' || c.is_whitespace())
        .map(|w| w.trim_matches(|c| c == '\'' || c == '"'))
        .filter(|w| !w.is_empty())
        .collect()
}
