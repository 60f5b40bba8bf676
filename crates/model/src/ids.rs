//! Typed ids. A `VolumeId` cannot be passed where a `SnapshotId` is expected, and
//! every id has one textual form (the one the API shows and the store keeps).

use std::fmt;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub uuid::Uuid);

        impl $name {
            /// A fresh random id.
            pub fn new() -> Self {
                Self(uuid::Uuid::new_v4())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Hyphenated lower case, as Cinder shows ids.
                self.0.hyphenated().fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                uuid::Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// A volume.
    VolumeId
);
uuid_id!(
    /// A snapshot.
    SnapshotId
);
uuid_id!(
    /// A volume type.
    VolumeTypeId
);
uuid_id!(
    /// A backup.
    BackupId
);
uuid_id!(
    /// A user message (what a user should learn of a failed operation).
    MessageId
);
uuid_id!(
    /// A set of QoS specs.
    QosSpecsId
);
uuid_id!(
    /// The encryption spec of a volume type.
    EncryptionId
);
uuid_id!(
    /// A persisted flow (one run of a multi-step operation).
    FlowId
);
uuid_id!(
    /// A quota reservation held by an in-flight flow.
    ReservationId
);
uuid_id!(
    /// An offer to transfer a volume to another project.
    TransferId
);
uuid_id!(
    /// An attachment of a volume to an instance (Cinder's volume attachment):
    /// the record of one use, and the intent that an export serves it.
    AttachmentId
);
uuid_id!(
    /// A generic volume group (Cinder's `group`).
    GroupId
);
uuid_id!(
    /// A group type.
    GroupTypeId
);
uuid_id!(
    /// An image: the bytes of a volume (or, later, of a snapshot) on a
    /// backend, in VDSM's sense (not the image service's).
    ImageId
);

uuid_id!(
    /// An image of the image service (a Glance image): a file users upload
    /// and download, not a volume's bytes (see [`ImageId`]).
    GlanceImageId
);

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// A fresh random id: 32 lower-case hex digits, as Keystone makes them.
            pub fn new() -> Self {
                Self(uuid::Uuid::new_v4().simple().to_string())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
    };
}

hex_id!(
    /// An Identity project (Keystone's tenant). Keystone ids are opaque strings.
    ProjectId
);
hex_id!(
    /// An Identity user.
    UserId
);
hex_id!(
    /// An Identity role.
    RoleId
);
hex_id!(
    /// An Identity domain (`default` for the default domain).
    DomainId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_ids_round_trip_through_text_and_json() {
        let id = VolumeId::new();
        let text = id.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(text.parse::<VolumeId>().unwrap(), id);
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{text}\""));
        assert!("not-a-uuid".parse::<VolumeId>().is_err());
    }

    #[test]
    fn hex_ids_look_like_keystone_ids() {
        let p = ProjectId::new();
        assert_eq!(p.as_str().len(), 32);
        assert!(p.as_str().chars().all(|c| c.is_ascii_hexdigit()));
    }
}
