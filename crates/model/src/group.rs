//! Generic volume groups: their statuses and which operation may start from
//! which, with Cinder's spellings.
//!
//! ```text
//!   POST /groups (one transaction; refused when no backend suits every type)
//!   (none) ─────────────────────────────► available
//!                                             │
//!   create-from-src flow                      │
//!   (none) ──► creating ──► available | error │
//!          └─► (gone: failed before the API   │
//!               answered)                     ▼
//!                  delete flow: available|error ──► deleting ──► (gone)
//!                                                      │
//!                                                      └─► error (a volume could
//!                                                          not be deleted) or
//!                                                          back (nothing touched)
//! ```
//!
//! A group is *transitional* while a flow owns it (`creating`, `deleting`):
//! after a restart the flow is resumed or undone, so no group stays
//! transitional. Adding and removing volumes changes the database only, in one
//! transaction, so Scoria never shows `updating` (an admin may still set it).

use crate::volume::{VolumeStatus, string_enum};

string_enum!(
    /// The `status` of a group.
    GroupStatus {
        Creating = "creating",
        Available = "available",
        Updating = "updating",
        InUse = "in-use",
        Deleting = "deleting",
        Error = "error",
        ErrorDeleting = "error_deleting",
    }
);

impl GroupStatus {
    /// Statuses from which a group without `delete-volumes` may be deleted
    /// (with it, any status: Cinder's rule, for groups an admin reset).
    pub const DELETABLE: &'static [GroupStatus] = &[GroupStatus::Available, GroupStatus::Error];

    /// True while a flow owns the group.
    pub fn is_transitional(self) -> bool {
        matches!(
            self,
            GroupStatus::Creating | GroupStatus::Deleting | GroupStatus::Updating
        )
    }
}

/// Statuses a volume may be added to a group from (Cinder's).
pub const ADDABLE_VOLUME: &[VolumeStatus] = &[VolumeStatus::Available, VolumeStatus::InUse];

/// Statuses a volume may be removed from a group from (Cinder's).
pub const REMOVABLE_VOLUME: &[VolumeStatus] = &[
    VolumeStatus::Available,
    VolumeStatus::InUse,
    VolumeStatus::Error,
    VolumeStatus::ErrorDeleting,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_with_cinder_spelling() {
        for s in GroupStatus::ALL {
            assert_eq!(s.as_str().parse::<GroupStatus>().unwrap(), *s);
        }
        assert_eq!(GroupStatus::InUse.as_str(), "in-use");
        assert!("deleted".parse::<GroupStatus>().is_err());
    }

    #[test]
    fn resting_statuses_are_the_deletable_ones() {
        for s in GroupStatus::DELETABLE {
            assert!(!s.is_transitional(), "{s}");
        }
        for s in ADDABLE_VOLUME {
            assert!(REMOVABLE_VOLUME.contains(s), "{s}");
            assert!(!s.is_transitional(), "{s}");
        }
    }
}
