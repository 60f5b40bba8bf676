//! The weighers, named as Cinder names them, and Cinder's normalization: each
//! weigher's raw values are scaled to [0, 1] over the candidates left after
//! filtering (min → 0, max → 1; all equal → 0), multiplied by the weigher's
//! multiplier and summed. A positive multiplier prefers the largest raw value,
//! a negative one the smallest.

use serde::{Deserialize, Serialize};

use super::filters::{is_thin, reserved_gib};
use super::{Candidate, Request, SchedulerConfig};

/// A weigher (configuration: `[scheduler] weighers`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Weigher {
    /// Free capacity: virtual for a thin placement
    /// (`total × ratio − provisioned − reserved`), real for a thick one
    /// (`free − reserved`). Multiplier `capacity_weight_multiplier` (1.0:
    /// spread).
    CapacityWeigher,
    /// GiB allocated on the backend. Multiplier
    /// `allocated_capacity_weight_multiplier` (−1.0: the least allocated).
    AllocatedCapacityWeigher,
    /// Number of volumes on the backend. Multiplier `volume_number_multiplier`
    /// (−1.0: the fewest volumes).
    VolumeNumberWeigher,
}

impl Weigher {
    /// Every weigher.
    pub const ALL: [Weigher; 3] = [
        Weigher::CapacityWeigher,
        Weigher::AllocatedCapacityWeigher,
        Weigher::VolumeNumberWeigher,
    ];

    /// Cinder's name of the weigher.
    pub fn name(self) -> &'static str {
        match self {
            Weigher::CapacityWeigher => "CapacityWeigher",
            Weigher::AllocatedCapacityWeigher => "AllocatedCapacityWeigher",
            Weigher::VolumeNumberWeigher => "VolumeNumberWeigher",
        }
    }

    /// The weigher's raw value for `c`.
    pub fn raw(self, req: &Request, c: &Candidate) -> f64 {
        match self {
            Weigher::CapacityWeigher => free_for(req, c),
            Weigher::AllocatedCapacityWeigher => c.allocated_gib,
            Weigher::VolumeNumberWeigher => c.volume_count as f64,
        }
    }

    /// The configured multiplier.
    pub fn multiplier(self, cfg: &SchedulerConfig) -> f64 {
        match self {
            Weigher::CapacityWeigher => cfg.capacity_weight_multiplier,
            Weigher::AllocatedCapacityWeigher => cfg.allocated_capacity_weight_multiplier,
            Weigher::VolumeNumberWeigher => cfg.volume_number_multiplier,
        }
    }
}

impl std::str::FromStr for Weigher {
    type Err = String;

    fn from_str(s: &str) -> Result<Weigher, String> {
        Weigher::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Weigher::ALL.iter().map(|w| w.name()).collect();
                format!("unknown weigher {s:?} (known: {})", names.join(", "))
            })
    }
}

/// What the capacity weigher counts as free on `c` for `req`, in GiB.
pub fn free_for(req: &Request, c: &Candidate) -> f64 {
    if is_thin(req, c) {
        c.total_gib * c.max_over_subscription_ratio - c.provisioned_gib - reserved_gib(c)
    } else {
        c.free_gib - reserved_gib(c)
    }
}

/// One weigher's contribution to a candidate's weight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Weight {
    pub weigher: String,
    pub raw: f64,
    /// `raw` scaled to [0, 1] over the candidates weighed.
    pub normalized: f64,
    /// `normalized × multiplier`.
    pub weighted: f64,
}

/// Min-max normalization as Cinder's weight handler does it.
pub fn normalize(raw: &[f64]) -> Vec<f64> {
    let (min, max) = raw
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if raw.is_empty() || min == max {
        return vec![0.0; raw.len()];
    }
    raw.iter().map(|v| (v - min) / (max - min)).collect()
}

/// Weigh `cands` (all past the filters): each one's weights, one per
/// configured weigher, and their sum.
pub fn weigh(
    cfg: &SchedulerConfig,
    req: &Request,
    cands: &[&Candidate],
) -> Vec<(Vec<Weight>, f64)> {
    let mut out: Vec<(Vec<Weight>, f64)> = cands
        .iter()
        .map(|_| (Vec::with_capacity(cfg.weighers.len()), 0.0))
        .collect();
    for &w in &cfg.weighers {
        let raw: Vec<f64> = cands.iter().map(|c| w.raw(req, c)).collect();
        let m = w.multiplier(cfg);
        for ((slot, r), n) in out.iter_mut().zip(&raw).zip(normalize(&raw)) {
            slot.0.push(Weight {
                weigher: w.name().to_owned(),
                raw: *r,
                normalized: n,
                weighted: n * m,
            });
            slot.1 += n * m;
        }
    }
    out
}
