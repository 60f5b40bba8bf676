//! Snapshot statuses, and the strategy that says how a volume is made from
//! another image.
//!
//! A snapshot is an immutable image of a volume at one moment (VDSM's model:
//! there are no special templates, any number of volumes can be made from a
//! snapshot). Its statuses are Cinder's, because clients compare them:
//!
//! ```text
//!   (none) ──create flow──► creating ──► available ──delete flow──► deleting ──► (gone)
//!                              │            │  ▲                        │
//!                              ▼            │  └─ restoring (a revert)  ▼
//!                            error          │                     error_deleting
//!                              │            └──► deleting …
//!                              └──► deleting …
//! ```
//!
//! A snapshot that volumes still depend on leaves the API when it is deleted;
//! its image stays, used by those volumes' overlays, until the last of them is
//! gone (the image records count the uses, not the snapshot).

use crate::volume::string_enum;

string_enum!(
    /// The `status` of a snapshot, with Cinder's spelling.
    SnapshotStatus {
        Creating = "creating",
        Available = "available",
        BackingUp = "backing-up",
        Deleting = "deleting",
        Error = "error",
        ErrorDeleting = "error_deleting",
        Unmanaging = "unmanaging",
        Restoring = "restoring",
    }
);

impl SnapshotStatus {
    /// Statuses from which a delete may start (Cinder's).
    pub const DELETABLE: &'static [SnapshotStatus] = &[
        SnapshotStatus::Available,
        SnapshotStatus::Error,
        SnapshotStatus::ErrorDeleting,
    ];

    /// Statuses an admin may set with `os-reset_status` (Cinder's list).
    pub const RESETTABLE: &'static [SnapshotStatus] = &[
        SnapshotStatus::Available,
        SnapshotStatus::Error,
        SnapshotStatus::Creating,
        SnapshotStatus::Deleting,
        SnapshotStatus::ErrorDeleting,
    ];

    /// True while a flow owns the snapshot.
    pub fn is_transitional(self) -> bool {
        matches!(
            self,
            SnapshotStatus::Creating
                | SnapshotStatus::Deleting
                | SnapshotStatus::BackingUp
                | SnapshotStatus::Unmanaging
                | SnapshotStatus::Restoring
        )
    }

    /// Statuses that mean an operation failed.
    pub fn is_error(self) -> bool {
        matches!(self, SnapshotStatus::Error | SnapshotStatus::ErrorDeleting)
    }
}

string_enum!(
    /// How a volume is made from a snapshot or from another volume (VDSM's
    /// strategy option): `space`, a thin copy-on-write overlay on the frozen
    /// source (constant time, shares the source's data), or `performance`, a
    /// full independent copy (`qemu-img convert`: takes time, shares nothing).
    CloneStrategy {
        Space = "space",
        Performance = "performance",
    }
);

/// The volume type extra spec that chooses the strategy for volumes of the
/// type (a backend's `clone_strategy` is the default).
pub const CLONE_STRATEGY_SPEC: &str = "scoria:clone_strategy";

/// Longest chain of images a volume may stand on before its image is marked
/// `degraded` (the repository check then offers to merge it), unless the
/// backend configures another depth.
pub const DEFAULT_MAX_CHAIN_DEPTH: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sets_are_consistent() {
        for s in SnapshotStatus::ALL {
            assert_eq!(s.as_str().parse::<SnapshotStatus>(), Ok(*s));
        }
        for s in SnapshotStatus::DELETABLE {
            assert!(!s.is_transitional(), "{s}");
        }
        assert_eq!("space".parse::<CloneStrategy>(), Ok(CloneStrategy::Space));
        assert!("fast".parse::<CloneStrategy>().is_err());
    }
}
