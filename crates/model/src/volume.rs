//! Volume statuses and the rules that say which operation may start from which.
//!
//! The names are Cinder's, because clients compare them as strings.
//!
//! ```text
//!                 create flow
//!   (none) ──► creating ──► available ◄──────────────┐
//!                 │            │  │  │               │
//!                 ▼            │  │  └─► extending ──┤ (resize done)
//!               error ◄────────┘  │          │       │
//!                 │     (failed)  │          ▼       │
//!                 │               │   error_extending│
//!                 ▼               ▼                  │
//!             deleting ◄──── (delete) ───────────────┘
//!              │     │
//!              ▼     ▼
//!           (gone)  error_deleting
//! ```
//!
//! A volume is *transitional* while a flow owns it (`creating`, `deleting`,
//! `extending`, …): no other operation starts on it until the flow ends, and after
//! a restart the flow is resumed or undone, so no volume stays transitional.
//!
//! `awaiting-transfer` is not transitional: no flow owns it. An `available`
//! volume enters it when its project offers it for transfer and leaves it when
//! the offer is accepted (`available` in the new project) or withdrawn
//! (`available`), or by an admin's forced delete (`deleting`, the offer void).
//! It is neither deletable nor extendable.

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::volume::UnknownValue;
            fn from_str(s: &str) -> Result<Self, $crate::volume::UnknownValue> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err($crate::volume::UnknownValue { kind: stringify!($name), value: other.to_owned() }),
                }
            }
        }
    };
}
pub(crate) use string_enum;

/// A string that names no value of an enumeration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {kind}")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
}

string_enum!(
    /// The `status` of a volume, with Cinder's spelling.
    VolumeStatus {
        Creating = "creating",
        Available = "available",
        Reserved = "reserved",
        Attaching = "attaching",
        Detaching = "detaching",
        InUse = "in-use",
        Maintenance = "maintenance",
        Deleting = "deleting",
        AwaitingTransfer = "awaiting-transfer",
        Error = "error",
        ErrorDeleting = "error_deleting",
        BackingUp = "backing-up",
        RestoringBackup = "restoring-backup",
        ErrorBackingUp = "error_backing-up",
        ErrorRestoring = "error_restoring",
        ErrorExtending = "error_extending",
        Downloading = "downloading",
        Uploading = "uploading",
        Retyping = "retyping",
        Extending = "extending",
        Reverting = "reverting",
    }
);

string_enum!(
    /// Whether a volume is attached (`attach_status`).
    AttachStatus {
        Detached = "detached",
        Attaching = "attaching",
        Attached = "attached",
        Detaching = "detaching",
        ErrorAttaching = "error_attaching",
        ErrorDetaching = "error_detaching",
    }
);

impl VolumeStatus {
    /// Statuses from which a normal (non-forced) delete may start, as Cinder allows.
    pub const DELETABLE: &'static [VolumeStatus] = &[
        VolumeStatus::Available,
        VolumeStatus::Error,
        VolumeStatus::ErrorRestoring,
        VolumeStatus::ErrorExtending,
    ];

    /// Statuses from which an extend may start.
    pub const EXTENDABLE: &'static [VolumeStatus] = &[VolumeStatus::Available];

    /// Statuses a volume can be cloned from (Cinder's): its data is complete
    /// and stays so while it is read.
    pub const READABLE: &'static [VolumeStatus] = &[VolumeStatus::Available, VolumeStatus::InUse];

    /// Statuses an admin may set with `os-reset_status`.
    pub const RESETTABLE: &'static [VolumeStatus] = VolumeStatus::ALL;

    /// True while a flow owns the volume: another operation must wait.
    pub fn is_transitional(self) -> bool {
        matches!(
            self,
            VolumeStatus::Creating
                | VolumeStatus::Deleting
                | VolumeStatus::Extending
                | VolumeStatus::Attaching
                | VolumeStatus::Detaching
                | VolumeStatus::BackingUp
                | VolumeStatus::RestoringBackup
                | VolumeStatus::Downloading
                | VolumeStatus::Uploading
                | VolumeStatus::Retyping
                | VolumeStatus::Reverting
        )
    }

    /// Statuses that mean an operation failed and left the volume for a person.
    pub fn is_error(self) -> bool {
        matches!(
            self,
            VolumeStatus::Error
                | VolumeStatus::ErrorDeleting
                | VolumeStatus::ErrorBackingUp
                | VolumeStatus::ErrorRestoring
                | VolumeStatus::ErrorExtending
        )
    }
}

/// Largest volume Scoria accepts, in GiB (1 PiB). Larger requests are refused as
/// invalid before quota is even consulted: no backend here could hold them and a
/// qcow2 header cannot describe much more.
pub const MAX_VOLUME_GIB: i64 = 1024 * 1024;

/// Cinder's limits on user-supplied text.
pub const MAX_NAME_LEN: usize = 255;
pub const MAX_DESCRIPTION_LEN: usize = 255;
pub const MAX_METADATA_KEY_LEN: usize = 255;
pub const MAX_METADATA_VALUE_LEN: usize = 255;

/// Bytes in a GiB, the unit of Cinder's `size`.
pub const GIB: u64 = 1 << 30;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_with_cinder_spelling() {
        for s in VolumeStatus::ALL {
            assert_eq!(s.as_str().parse::<VolumeStatus>().unwrap(), *s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(VolumeStatus::InUse.as_str(), "in-use");
        assert_eq!(VolumeStatus::ErrorBackingUp.as_str(), "error_backing-up");
        assert!("bogus".parse::<VolumeStatus>().is_err());
    }

    #[test]
    fn awaiting_transfer_is_a_resting_status_that_only_force_leaves() {
        let s = VolumeStatus::AwaitingTransfer;
        assert_eq!(s.as_str(), "awaiting-transfer");
        assert!(!s.is_transitional(), "no flow owns an offered volume");
        assert!(!s.is_error());
        assert!(!VolumeStatus::DELETABLE.contains(&s));
        assert!(!VolumeStatus::EXTENDABLE.contains(&s));
    }

    #[test]
    fn no_deletable_or_extendable_status_is_transitional() {
        for s in VolumeStatus::DELETABLE
            .iter()
            .chain(VolumeStatus::EXTENDABLE)
        {
            assert!(!s.is_transitional(), "{s}");
        }
    }
}
