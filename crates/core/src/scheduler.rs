//! Placement: which backend gets a new volume.
//!
//! Cinder's filter scheduler, as a pipeline over plain data: the candidates are
//! *filtered* (volume service enabled and not frozen, availability zone,
//! capabilities against the volume type's extra specs, capacity with
//! thin-provisioning over-subscription and reserved space), then *weighed*
//! (free virtual capacity times a multiplier: positive spreads volumes,
//! negative stacks them) and the heaviest wins, ties broken by name so the
//! choice is deterministic. [`place`] is pure and unit-tested; [`gather`]
//! reads the figures it needs (statvfs of each backend, what the store says is
//! already provisioned there and which volume services an administrator
//! disabled or froze). The pool list of `scheduler-stats` shows the same
//! figures.

use std::collections::BTreeMap;

use crate::error::Result;

/// What the scheduler knows of one backend.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub name: String,
    pub availability_zone: String,
    pub total_gib: f64,
    pub free_gib: f64,
    /// Sum of the sizes of the volumes placed there.
    pub provisioned_gib: f64,
    pub max_over_subscription_ratio: f64,
    pub reserved_percentage: u8,
    /// Reported capabilities (`volume_backend_name`, …), matched against extra specs.
    pub capabilities: BTreeMap<String, String>,
    /// False when an administrator disabled or froze the backend's volume
    /// service.
    pub enabled: bool,
}

/// What is being placed.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub size_gib: i64,
    pub availability_zone: Option<String>,
    pub extra_specs: BTreeMap<String, String>,
}

/// Why no backend fits, backend by backend.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("No valid backend was found. {}", self.reasons.join("; "))]
pub struct NoValidBackend {
    pub reasons: Vec<String>,
}

/// Free space the scheduler may still promise on a backend, in GiB: thin
/// provisioning lets it promise `ratio` times the unreserved free space, minus
/// what is already provisioned beyond the real usage.
pub fn virtual_free_gib(c: &Candidate) -> f64 {
    let reserved = c.total_gib * f64::from(c.reserved_percentage) / 100.0;
    let ratio = c.max_over_subscription_ratio.max(1.0);
    let by_ratio = c.total_gib * ratio - c.provisioned_gib - reserved;
    let by_space = (c.free_gib - reserved) * ratio;
    by_ratio.min(by_space)
}

fn filter(req: &Request, c: &Candidate) -> Result<(), String> {
    if !c.enabled {
        return Err(format!(
            "{}: its volume service is disabled or frozen",
            c.name
        ));
    }
    if let Some(az) = &req.availability_zone
        && *az != c.availability_zone
    {
        return Err(format!(
            "{}: in zone {}, not {az}",
            c.name, c.availability_zone
        ));
    }
    capabilities_match(&req.extra_specs, &c.capabilities)
        .map_err(|why| format!("{}: {why}", c.name))?;
    let free = virtual_free_gib(c);
    if (req.size_gib as f64) > free {
        return Err(format!(
            "{}: {:.0} GiB can still be provisioned, {} GiB requested",
            c.name,
            free.max(0.0),
            req.size_gib
        ));
    }
    Ok(())
}

/// Do a type's extra specs accept a backend with these capabilities? The
/// capability filter alone (no zone, no capacity): a retype in place asks
/// exactly this of the volume's backend.
pub fn capabilities_match(
    extra_specs: &BTreeMap<String, String>,
    capabilities: &BTreeMap<String, String>,
) -> Result<(), String> {
    for (key, want) in extra_specs {
        // Only plain keys and the `capabilities:` scope are capabilities; scoped
        // keys of other consumers (`qos:`, `os-brick:`…) are not the scheduler's.
        let key = key.strip_prefix("capabilities:").unwrap_or(key);
        if key.contains(':') || !is_capability(key) {
            continue;
        }
        let have = capabilities.get(key).map(String::as_str).unwrap_or("");
        if !spec_matches(want, have) {
            return Err(format!("{key} is {have:?}, the type wants {want:?}"));
        }
    }
    Ok(())
}

/// Extra-spec keys the file backends report as capabilities.
fn is_capability(key: &str) -> bool {
    matches!(
        key,
        "volume_backend_name"
            | "storage_protocol"
            | "vendor_name"
            | "thin_provisioning_support"
            | "multiattach"
    )
}

/// Cinder's extra-spec operators: `<is> True`, `<in> x`, `<or> a <or> b`, plain
/// equality otherwise.
fn spec_matches(want: &str, have: &str) -> bool {
    let want = want.trim();
    if let Some(v) = want.strip_prefix("<is>") {
        return v.trim().eq_ignore_ascii_case(have.trim());
    }
    if let Some(v) = want.strip_prefix("<in>") {
        return have.contains(v.trim());
    }
    if want.starts_with("<or>") {
        return want
            .split("<or>")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .any(|s| s == have);
    }
    want == have
}

/// Pick the backend for `req` among `candidates`. `multiplier > 0` prefers the
/// most free space (spread), `< 0` the least (stack).
pub fn place(
    req: &Request,
    candidates: &[Candidate],
    multiplier: f64,
) -> Result<String, NoValidBackend> {
    let mut reasons = Vec::new();
    let mut best: Option<(f64, &Candidate)> = None;
    for c in candidates {
        match filter(req, c) {
            Err(r) => reasons.push(r),
            Ok(()) => {
                let w = virtual_free_gib(c) * multiplier;
                let better = match best {
                    None => true,
                    Some((bw, bc)) => w > bw || (w == bw && c.name < bc.name),
                };
                if better {
                    best = Some((w, c));
                }
            }
        }
    }
    match best {
        Some((_, c)) => Ok(c.name.clone()),
        None => {
            if candidates.is_empty() {
                reasons.push("no backend is configured".into());
            }
            Err(NoValidBackend { reasons })
        }
    }
}

/// Pick the backend of a new group: one on which each request (one per
/// volume type of the group, of size 0, with the group type's specs added to
/// the type's) would be placed, then the heaviest as for a volume. Cinder's
/// group scheduler does the same: every volume of a group lands on the
/// group's backend, so that backend must suit every type.
pub fn place_group(
    reqs: &[Request],
    candidates: &[Candidate],
    multiplier: f64,
) -> Result<String, NoValidBackend> {
    let mut reasons = Vec::new();
    let mut fit = Vec::new();
    'candidates: for c in candidates {
        for r in reqs {
            if let Err(why) = filter(r, c) {
                reasons.push(why);
                continue 'candidates;
            }
        }
        fit.push(c.clone());
    }
    if fit.is_empty() {
        if candidates.is_empty() {
            reasons.push("no backend is configured".into());
        }
        return Err(NoValidBackend { reasons });
    }
    place(&reqs.first().cloned().unwrap_or_default(), &fit, multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(name: &str, az: &str, total: f64, free: f64, prov: f64) -> Candidate {
        Candidate {
            name: name.into(),
            availability_zone: az.into(),
            total_gib: total,
            free_gib: free,
            provisioned_gib: prov,
            max_over_subscription_ratio: 1.0,
            reserved_percentage: 0,
            capabilities: [("volume_backend_name".to_string(), name.to_string())].into(),
            enabled: true,
        }
    }

    fn check(req: Request, cands: &[Candidate], multiplier: f64, expect: Result<&str, &str>) {
        let got = place(&req, cands, multiplier);
        match (got, expect) {
            (Ok(n), Ok(e)) => assert_eq!(n, e),
            (Err(r), Err(fragment)) => assert!(r.to_string().contains(fragment), "{r}"),
            (got, expect) => panic!("got {got:?}, expected {expect:?}"),
        }
    }

    #[test]
    fn filters_then_weighs() {
        let a = cand("a", "nova", 100.0, 80.0, 20.0);
        let b = cand("b", "nova", 100.0, 50.0, 50.0);
        let c = cand("c", "other", 1000.0, 1000.0, 0.0);
        let req = |size, az: Option<&str>| Request {
            size_gib: size,
            availability_zone: az.map(Into::into),
            extra_specs: Default::default(),
        };
        // Spread: most free space wins; the zone filter removes c.
        check(
            req(1, Some("nova")),
            &[a.clone(), b.clone(), c.clone()],
            1.0,
            Ok("a"),
        );
        // Stack: least free space wins.
        check(req(1, Some("nova")), &[a.clone(), b.clone()], -1.0, Ok("b"));
        // Without a zone, c's space wins.
        check(
            req(1, None),
            &[a.clone(), b.clone(), c.clone()],
            1.0,
            Ok("c"),
        );
        // Too big for every backend in the zone.
        check(
            req(81, Some("nova")),
            &[a.clone(), b.clone()],
            1.0,
            Err("No valid backend was found"),
        );
        // Unknown zone.
        check(
            req(1, Some("mars")),
            std::slice::from_ref(&a),
            1.0,
            Err("not mars"),
        );
        // Nothing configured.
        check(req(1, None), &[], 1.0, Err("no backend is configured"));
        // A disabled backend gets nothing, whatever its space.
        let mut off = c.clone();
        off.enabled = false;
        check(req(1, None), &[a.clone(), off.clone()], 1.0, Ok("a"));
        check(req(1, None), &[off], 1.0, Err("volume service is disabled"));
        // Ties are broken by name.
        check(
            req(1, None),
            &[
                cand("z", "nova", 10.0, 10.0, 0.0),
                cand("y", "nova", 10.0, 10.0, 0.0),
            ],
            1.0,
            Ok("y"),
        );
    }

    #[test]
    fn a_group_goes_where_every_type_fits() {
        let a = cand("a", "nova", 100.0, 90.0, 0.0);
        let b = cand("b", "nova", 100.0, 10.0, 0.0);
        let c = cand("c", "other", 100.0, 100.0, 0.0);
        let req = |backend: Option<&str>, az: Option<&str>| Request {
            size_gib: 0,
            availability_zone: az.map(Into::into),
            extra_specs: backend
                .map(|b| [("volume_backend_name".to_string(), b.to_string())].into())
                .unwrap_or_default(),
        };
        let all = [a.clone(), b.clone(), c.clone()];
        let check = |reqs: &[Request], expect: Result<&str, &str>| match (
            place_group(reqs, &all, 1.0),
            expect,
        ) {
            (Ok(n), Ok(e)) => assert_eq!(n, e),
            (Err(r), Err(fragment)) => assert!(r.to_string().contains(fragment), "{r}"),
            (got, expect) => panic!("got {got:?}, expected {expect:?}"),
        };
        // Most free space among those that suit every type.
        check(&[req(None, Some("nova"))], Ok("a"));
        check(
            &[req(None, Some("nova")), req(Some("b"), Some("nova"))],
            Ok("b"),
        );
        check(&[req(None, None)], Ok("c"));
        // Two types no one backend suits.
        check(
            &[req(Some("a"), None), req(Some("b"), None)],
            Err("No valid backend was found"),
        );
        assert!(place_group(&[req(None, None)], &[], 1.0).is_err());
    }

    #[test]
    fn thin_provisioning_promises_ratio_times_free_space() {
        let mut t = cand("t", "nova", 100.0, 100.0, 0.0);
        t.max_over_subscription_ratio = 20.0;
        assert_eq!(virtual_free_gib(&t), 2000.0);
        t.provisioned_gib = 1990.0;
        assert_eq!(virtual_free_gib(&t), 10.0);
        t.reserved_percentage = 10;
        t.provisioned_gib = 0.0;
        // 10 GiB reserved: 90 GiB free times 20, and the ratio bound 2000 - 10.
        assert_eq!(virtual_free_gib(&t), 1800.0);
    }

    #[test]
    fn what_backends_report_is_matched_by_capability_specs() {
        // What the file backend reports (`crate::Backend::capabilities`).
        let caps: BTreeMap<String, String> = [
            ("volume_backend_name", "file"),
            ("storage_protocol", "nbd"),
            ("vendor_name", "Scoria"),
            ("thin_provisioning_support", "True"),
            ("multiattach", "True"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let check = |specs: &[(&str, &str)], ok: bool| {
            let specs = specs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(capabilities_match(&specs, &caps).is_ok(), ok, "{specs:?}");
        };
        check(&[], true);
        check(
            &[("storage_protocol", "nbd"), ("vendor_name", "Scoria")],
            true,
        );
        check(&[("storage_protocol", "iSCSI")], false);
        check(&[("vendor_name", "Open Source")], false);
        check(
            &[
                ("volume_backend_name", "file"),
                ("multiattach", "<is> True"),
            ],
            true,
        );
        check(&[("capabilities:volume_backend_name", "ceph")], false);
        // Keys that are not capabilities (or belong to other consumers) pass.
        check(&[("spec1", "val1"), ("qos:read_iops_sec", "100")], true);
    }

    #[test]
    fn extra_specs_must_match_capabilities() {
        let a = cand("a", "nova", 100.0, 100.0, 0.0);
        let b = cand("b", "nova", 100.0, 10.0, 0.0);
        let req = |k: &str, v: &str| Request {
            size_gib: 1,
            availability_zone: None,
            extra_specs: [(k.to_string(), v.to_string())].into(),
        };
        check(
            req("volume_backend_name", "b"),
            &[a.clone(), b.clone()],
            1.0,
            Ok("b"),
        );
        check(
            req("capabilities:volume_backend_name", "<or> x <or> b"),
            &[a.clone(), b.clone()],
            1.0,
            Ok("b"),
        );
        check(
            req("volume_backend_name", "nope"),
            std::slice::from_ref(&a),
            1.0,
            Err("the type wants"),
        );
        // Keys that are not capabilities do not filter.
        check(
            req("qos:read_iops", "100"),
            std::slice::from_ref(&a),
            1.0,
            Ok("a"),
        );
        check(
            req("multiattach", "<is> False"),
            &[a],
            1.0,
            Err("the type wants"),
        );
    }
}
