//! The filters, named as Cinder names them, each a pure check of one
//! candidate against the request that says why it fails.
//!
//! The capacity arithmetic is Cinder's (`CapacityFilter` and
//! `calculate_virtual_free_capacity`): the reserved space is
//! `floor(total × reserved_percentage / 100)`; a thin request on a thin
//! backend passes when the provisioned space plus the request stays within
//! `total × ratio` *and* the request fits in the unreserved free space times
//! the ratio; anything else (a thick backend, or a type with
//! `provisioning:type = thick`) needs the unreserved free space itself.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{Candidate, Request, specs};

/// A filter of the pipeline (configuration: `[scheduler] filters`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Filter {
    AvailabilityZoneFilter,
    CapacityFilter,
    CapabilitiesFilter,
    SameBackendFilter,
    DifferentBackendFilter,
}

/// The name of the always-on check that the backend's volume service is
/// enabled and not frozen (not configurable, as Cinder's service check).
pub const SERVICE_ENABLED: &str = "ServiceEnabled";

impl Filter {
    /// Every filter, in the order they run.
    pub const ALL: [Filter; 5] = [
        Filter::AvailabilityZoneFilter,
        Filter::CapacityFilter,
        Filter::CapabilitiesFilter,
        Filter::SameBackendFilter,
        Filter::DifferentBackendFilter,
    ];

    /// Cinder's name of the filter.
    pub fn name(self) -> &'static str {
        match self {
            Filter::AvailabilityZoneFilter => "AvailabilityZoneFilter",
            Filter::CapacityFilter => "CapacityFilter",
            Filter::CapabilitiesFilter => "CapabilitiesFilter",
            Filter::SameBackendFilter => "SameBackendFilter",
            Filter::DifferentBackendFilter => "DifferentBackendFilter",
        }
    }

    /// Why `c` cannot take `req`, or `Ok` when this filter lets it through
    /// (every capability name `c` reports counts as known).
    pub fn check(self, req: &Request, c: &Candidate) -> Result<(), String> {
        self.check_known(req, c, &specs::known_keys([&c.capabilities]))
    }

    /// As [`Filter::check`], `known` being the capability names some
    /// candidate reports (see [`specs`]).
    pub fn check_known(
        self,
        req: &Request,
        c: &Candidate,
        known: &BTreeSet<&str>,
    ) -> Result<(), String> {
        match self {
            Filter::AvailabilityZoneFilter => match &req.availability_zone {
                Some(az) if *az != c.availability_zone => {
                    Err(format!("in zone {}, not {az}", c.availability_zone))
                }
                _ => Ok(()),
            },
            Filter::CapacityFilter => capacity(req, c),
            Filter::CapabilitiesFilter => {
                specs::capabilities_match(&req.extra_specs, &c.capabilities, known)
            }
            Filter::SameBackendFilter => match &req.same_backend {
                Some(set) if !set.contains(&c.name) => {
                    Err("not the backend of the volumes named in same_host".into())
                }
                _ => Ok(()),
            },
            Filter::DifferentBackendFilter => match &req.different_backend {
                Some(set) if set.contains(&c.name) => {
                    Err("holds a volume named in different_host".into())
                }
                _ => Ok(()),
            },
        }
    }
}

impl std::str::FromStr for Filter {
    type Err = String;

    fn from_str(s: &str) -> Result<Filter, String> {
        Filter::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Filter::ALL.iter().map(|f| f.name()).collect();
                format!("unknown filter {s:?} (known: {})", names.join(", "))
            })
    }
}

/// The always-on service check.
pub fn service_enabled(c: &Candidate) -> Result<(), String> {
    if c.enabled {
        Ok(())
    } else {
        Err(
            "its volume service is disabled or frozen, or the backend is deactivated or down"
                .into(),
        )
    }
}

/// The space Cinder keeps free on `c`: `floor(total × reserved%)`, in GiB.
pub fn reserved_gib(c: &Candidate) -> f64 {
    (c.total_gib * f64::from(c.reserved_percentage) / 100.0).floor()
}

/// Whether `req` is placed thin on `c`: the backend provisions thin and the
/// type does not ask for thick (`provisioning:type = thick`).
pub fn is_thin(req: &Request, c: &Candidate) -> bool {
    c.thin
        && req
            .extra_specs
            .get("provisioning:type")
            .is_none_or(|t| t.trim() != "thick")
}

/// Cinder's `CapacityFilter`.
fn capacity(req: &Request, c: &Candidate) -> Result<(), String> {
    let size = req.size_gib as f64;
    if c.total_gib <= 0.0 {
        return Err("its total capacity is 0".into());
    }
    let free = c.free_gib - reserved_gib(c);
    let ratio = c.max_over_subscription_ratio;
    if is_thin(req, c) {
        if ratio < 1.0 {
            return Err(format!(
                "its max_over_subscription_ratio {ratio} is below 1"
            ));
        }
        let provisioned_ratio = (c.provisioned_gib + size) / c.total_gib;
        if provisioned_ratio > ratio {
            return Err(format!(
                "{} GiB can still be provisioned ({:.0} of {:.0} GiB are; ratio {ratio})",
                fmt_gib((c.total_gib * ratio - c.provisioned_gib).max(0.0)),
                c.provisioned_gib,
                c.total_gib,
            ));
        }
        let adjusted = free * ratio;
        if adjusted < size {
            return Err(format!(
                "{} GiB can still be provisioned ({} GiB free beyond the reserve, ratio {ratio})",
                fmt_gib(adjusted.max(0.0)),
                fmt_gib(free.max(0.0)),
            ));
        }
        return Ok(());
    }
    if free < size {
        return Err(format!(
            "{} GiB free beyond the reserve (thick)",
            fmt_gib(free.max(0.0))
        ));
    }
    Ok(())
}

/// GiB for messages: whole numbers without decimals, others with one.
pub(super) fn fmt_gib(v: f64) -> String {
    if (v - v.round()).abs() < 0.05 {
        format!("{:.0}", v.round())
    } else {
        format!("{v:.1}")
    }
}

/// Cinder's `calculate_max_over_subscription_ratio` for `"auto"`: on a thin
/// backend that holds something, `1 + provisioned / (used + 1)`; 20 when it
/// holds nothing; 1 on a thick backend.
pub fn auto_ratio(thin: bool, total_gib: f64, free_gib: f64, provisioned_gib: f64) -> f64 {
    if !thin {
        return 1.0;
    }
    if provisioned_gib == 0.0 {
        return super::DEFAULT_MAX_OVER_SUBSCRIPTION_RATIO;
    }
    let used = total_gib - free_gib;
    1.0 + provisioned_gib / (used + 1.0)
}
