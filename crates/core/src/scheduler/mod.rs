//! Placement: which backend gets a new volume, and why.
//!
//! Cinder's filter scheduler, as a pipeline over plain data. The candidates
//! (one per backend, gathered from the capacity snapshot and the store) go
//! through the always-on service check (volume service enabled and not frozen) and the
//! configured [`Filter`]s (zone, capacity with thin-provisioning
//! over-subscription and reserved space, capabilities against the type's
//! extra specs in Cinder's operator language, same/different backend
//! affinity); those left are weighed by the configured [`Weigher`]s
//! (normalized as Cinder does, times their multipliers, summed) and the
//! heaviest wins, ties broken by name so that the choice is deterministic.
//!
//! [`decide`] returns a [`Decision`]: every candidate with the filter that
//! removed it and why, or its weights; [`Decision::message`] says in words
//! why nothing fits. Everything here is pure: no store, no driver, no clock.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub mod filters;
pub mod specs;
pub mod weighers;

#[cfg(test)]
mod tests;

pub use filters::{Filter, SERVICE_ENABLED};
pub use specs::{capabilities_match, known_keys};
pub use weighers::{Weigher, Weight};

/// The ratio Cinder uses for `"auto"` on a backend that holds nothing.
pub const DEFAULT_MAX_OVER_SUBSCRIPTION_RATIO: f64 = 20.0;

/// How the scheduler is configured (`[scheduler]`).
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerConfig {
    /// The filters that run, in order (the service check always runs first).
    pub filters: Vec<Filter>,
    /// The weighers whose weights are summed.
    pub weighers: Vec<Weigher>,
    pub capacity_weight_multiplier: f64,
    pub allocated_capacity_weight_multiplier: f64,
    pub volume_number_multiplier: f64,
    /// How many backends a create tries before it fails (read by the
    /// rescheduling of creates).
    pub max_attempts: u32,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            filters: Filter::ALL.to_vec(),
            weighers: vec![Weigher::CapacityWeigher],
            capacity_weight_multiplier: 1.0,
            allocated_capacity_weight_multiplier: -1.0,
            volume_number_multiplier: -1.0,
            max_attempts: 3,
        }
    }
}

/// A backend's `max_over_subscription_ratio`: a number, or Cinder's `auto`
/// (computed from what is provisioned and used, see [`filters::auto_ratio`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum OverSubscription {
    Fixed(f64),
    Auto,
}

impl OverSubscription {
    /// The ratio to use now for a backend with these figures.
    pub fn ratio(self, thin: bool, total_gib: f64, free_gib: f64, provisioned_gib: f64) -> f64 {
        match self {
            OverSubscription::Fixed(r) => r,
            OverSubscription::Auto => {
                filters::auto_ratio(thin, total_gib, free_gib, provisioned_gib)
            }
        }
    }
}

/// What the scheduler knows of one backend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub name: String,
    pub availability_zone: String,
    pub total_gib: f64,
    pub free_gib: f64,
    /// Sum of the sizes of the volumes placed there.
    pub provisioned_gib: f64,
    /// GiB allocated to volumes on the backend (the allocated-capacity
    /// weigher's figure; here the same as `provisioned_gib`).
    pub allocated_gib: f64,
    /// Number of volumes on the backend.
    pub volume_count: u64,
    /// Whether the backend provisions thin (over-subscription applies).
    pub thin: bool,
    /// The ratio in force (an `auto` ratio already computed).
    pub max_over_subscription_ratio: f64,
    pub reserved_percentage: u8,
    /// Reported capabilities (the driver's, the configured ones,
    /// `volume_backend_name`), matched against extra specs.
    pub capabilities: BTreeMap<String, String>,
    /// False when an administrator disabled or froze the backend's volume
    /// service.
    pub enabled: bool,
}

/// What is being placed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub size_gib: i64,
    pub availability_zone: Option<String>,
    pub extra_specs: BTreeMap<String, String>,
    /// `same_host` hint resolved: the backends of the named volumes.
    #[serde(default)]
    pub same_backend: Option<BTreeSet<String>>,
    /// `different_host` hint resolved: the backends of the named volumes.
    #[serde(default)]
    pub different_backend: Option<BTreeSet<String>>,
}

/// Free virtual capacity of `c` as the capacity weigher sees it for a thin
/// request (`total × ratio − provisioned − reserved`; real free space minus
/// the reserve on a thick backend), in GiB.
pub fn virtual_free_gib(c: &Candidate) -> f64 {
    weighers::free_for(&Request::default(), c)
}

/// What happened to one candidate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub backend: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Removed by a filter, or weighed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Removed { filter: String, reason: String },
    Weighed { weights: Vec<Weight>, total: f64 },
}

/// The record of one placement: what was asked, what became of every
/// candidate, and which won.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub request: Request,
    pub candidates: Vec<Verdict>,
    pub chosen: Option<String>,
}

/// Why no backend fits; its text starts with "No valid backend was found".
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("No valid backend was found: {}", self.reasons.join("; "))]
pub struct NoValidBackend {
    pub reasons: Vec<String>,
}

/// At most this many backends are named per filter in a message.
const NAMED_PER_FILTER: usize = 8;

impl Decision {
    /// The chosen backend, or why there is none.
    pub fn into_result(self) -> Result<String, NoValidBackend> {
        match self.chosen {
            Some(c) => Ok(c),
            None => Err(NoValidBackend {
                reasons: vec![self.explain()],
            }),
        }
    }

    /// In words: the chosen backend, or why nothing fits ("No valid backend
    /// was found: …", by filter, each removed backend with its reason).
    pub fn message(&self) -> String {
        match &self.chosen {
            Some(c) => format!("Backend {c} was chosen."),
            None => format!("No valid backend was found: {}", self.explain()),
        }
    }

    fn explain(&self) -> String {
        if self.candidates.is_empty() {
            return "no backend is configured".into();
        }
        let zone = self
            .request
            .availability_zone
            .as_ref()
            .map(|z| format!(" in zone {z}"))
            .unwrap_or_default();
        let removed_by = |f: &'static str| {
            self.candidates
                .iter()
                .filter_map(move |v| match &v.outcome {
                    Outcome::Removed { filter, reason } if filter == f => {
                        Some((&v.backend, reason))
                    }
                    _ => None,
                })
        };
        let head = if removed_by(Filter::CapacityFilter.name()).next().is_some() {
            format!("no backend{zone} has {} GiB free", self.request.size_gib)
        } else {
            format!("no backend{zone} fits the request")
        };
        // Capacity first (the usual reason), then the others in pipeline order.
        let order = [
            Filter::CapacityFilter.name(),
            Filter::CapabilitiesFilter.name(),
            Filter::SameBackendFilter.name(),
            Filter::DifferentBackendFilter.name(),
            Filter::AvailabilityZoneFilter.name(),
            SERVICE_ENABLED,
        ];
        let mut parts = Vec::new();
        for f in order {
            let all: Vec<_> = removed_by(f).collect();
            parts.extend(
                all.iter()
                    .take(NAMED_PER_FILTER)
                    .map(|(b, r)| format!("{b}: {r}")),
            );
            if all.len() > NAMED_PER_FILTER {
                parts.push(format!(
                    "{} more removed by {f}",
                    all.len() - NAMED_PER_FILTER
                ));
            }
        }
        format!("{head} ({})", parts.join("; "))
    }
}

/// Place `req` among `candidates`: the full record.
pub fn decide(cfg: &SchedulerConfig, req: &Request, candidates: &[Candidate]) -> Decision {
    decide_all(cfg, std::slice::from_ref(req), candidates)
}

/// Place requests that must all land on one backend (a group's volume types):
/// a candidate stays only if every request passes the filters on it; those
/// left are weighed for the first request.
pub fn decide_all(cfg: &SchedulerConfig, reqs: &[Request], candidates: &[Candidate]) -> Decision {
    let first = reqs.first().cloned().unwrap_or_default();
    let mut verdicts: Vec<Option<Verdict>> = Vec::with_capacity(candidates.len());
    let mut passed: Vec<&Candidate> = Vec::with_capacity(candidates.len());
    let mut passed_at: Vec<usize> = Vec::with_capacity(candidates.len());
    let known = specs::known_keys(candidates.iter().map(|c| &c.capabilities));
    for (i, c) in candidates.iter().enumerate() {
        match first_failure(cfg, reqs, c, &known) {
            Some((filter, reason)) => verdicts.push(Some(Verdict {
                backend: c.name.clone(),
                outcome: Outcome::Removed {
                    filter: filter.to_owned(),
                    reason,
                },
            })),
            None => {
                verdicts.push(None);
                passed.push(c);
                passed_at.push(i);
            }
        }
    }
    let weights = weighers::weigh(cfg, &first, &passed);
    let mut best: Option<(f64, &str)> = None;
    for ((c, i), (w, total)) in passed.iter().zip(passed_at).zip(weights) {
        let better = match best {
            None => true,
            Some((bw, bn)) => total > bw || (total == bw && c.name.as_str() < bn),
        };
        if better {
            best = Some((total, c.name.as_str()));
        }
        verdicts[i] = Some(Verdict {
            backend: c.name.clone(),
            outcome: Outcome::Weighed { weights: w, total },
        });
    }
    Decision {
        request: first,
        chosen: best.map(|(_, n)| n.to_owned()),
        candidates: verdicts.into_iter().flatten().collect(),
    }
}

fn first_failure(
    cfg: &SchedulerConfig,
    reqs: &[Request],
    c: &Candidate,
    known: &BTreeSet<&str>,
) -> Option<(&'static str, String)> {
    if let Err(why) = filters::service_enabled(c) {
        return Some((SERVICE_ENABLED, why));
    }
    for r in reqs {
        for f in &cfg.filters {
            if let Err(why) = f.check_known(r, c, known) {
                return Some((f.name(), why));
            }
        }
    }
    None
}

/// The backend for `req`, or why there is none ([`decide`] without the record).
pub fn place(
    cfg: &SchedulerConfig,
    req: &Request,
    candidates: &[Candidate],
) -> Result<String, NoValidBackend> {
    decide(cfg, req, candidates).into_result()
}

/// Pick the backend of a new group: one on which each request (one per
/// volume type of the group, of size 0, with the group type's specs added to
/// the type's) would be placed, then the heaviest as for a volume. Cinder's
/// group scheduler does the same: every volume of a group lands on the
/// group's backend, so that backend must suit every type.
pub fn place_group(
    cfg: &SchedulerConfig,
    reqs: &[Request],
    candidates: &[Candidate],
) -> Result<String, NoValidBackend> {
    decide_all(cfg, reqs, candidates).into_result()
}
