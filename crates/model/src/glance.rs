//! The image service's vocabulary (Glance images, not volumes' images: see
//! [`crate::image`]): statuses, visibilities, member statuses, formats, with
//! Glance's spellings.
//!
//! ```text
//!   create ──► queued ──upload starts──► saving ──stream complete──► active
//!                ▲                         │                        │    ▲
//!                └── upload fails, is ─────┘             deactivate │    │ reactivate
//!                    interrupted or the                              ▼    │
//!                    process dies                                 deactivated
//! ```
//!
//! `killed`, `deleted`, `pending_delete`, `uploading` and `importing` are
//! Glance statuses Scoria never sets (a failed upload goes back to `queued`,
//! a deleted image is gone, there is no interoperable import); they are
//! listed so that filters and schemas name them.

use crate::volume::string_enum;

string_enum!(
    /// The `status` of a Glance image.
    GlanceImageStatus {
        Queued = "queued",
        Saving = "saving",
        Active = "active",
        Killed = "killed",
        Deleted = "deleted",
        Uploading = "uploading",
        Importing = "importing",
        PendingDelete = "pending_delete",
        Deactivated = "deactivated",
    }
);

impl GlanceImageStatus {
    /// The statuses in which an image has its data in the image store.
    pub fn has_data(self) -> bool {
        matches!(
            self,
            GlanceImageStatus::Active | GlanceImageStatus::Deactivated
        )
    }
}

string_enum!(
    /// Who may see an image besides its owner (and admins): nobody
    /// (`private`), the projects it is shared with (`shared`, its members),
    /// every project but not in default lists (`community`), every project
    /// (`public`, set only by admins).
    Visibility {
        Private = "private",
        Shared = "shared",
        Community = "community",
        Public = "public",
    }
);

string_enum!(
    /// What a project made of an image shared with it.
    MemberStatus {
        Pending = "pending",
        Accepted = "accepted",
        Rejected = "rejected",
    }
);

string_enum!(
    /// The disk formats the image service accepts.
    DiskFormat {
        Raw = "raw",
        Qcow2 = "qcow2",
        Vmdk = "vmdk",
        Vdi = "vdi",
        Vhdx = "vhdx",
        Vhd = "vhd",
        Iso = "iso",
    }
);

string_enum!(
    /// The container formats the image service accepts.
    ContainerFormat {
        Bare = "bare",
    }
);

/// The hash algorithm of `os_hash_value` (Glance's default).
pub const HASH_ALGO: &str = "sha512";

/// Glance's default limits: tags and custom properties per image, and the
/// length of a name, a tag, a property key or value.
pub const MAX_TAGS: usize = 128;
pub const MAX_PROPERTIES: usize = 128;
pub const MAX_NAME_LEN: usize = 255;
pub const MAX_TAG_LEN: usize = 255;
pub const MAX_PROPERTY_KEY_LEN: usize = 255;
pub const MAX_PROPERTY_VALUE_LEN: usize = 65535;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip_and_data_is_where_it_should_be() {
        for s in GlanceImageStatus::ALL {
            assert_eq!(s.as_str().parse::<GlanceImageStatus>().unwrap(), *s);
        }
        let with_data: Vec<_> = GlanceImageStatus::ALL
            .iter()
            .filter(|s| s.has_data())
            .collect();
        assert_eq!(
            with_data,
            [&GlanceImageStatus::Active, &GlanceImageStatus::Deactivated]
        );
        assert!("ami".parse::<DiskFormat>().is_err());
        assert_eq!("vhdx".parse::<DiskFormat>().unwrap(), DiskFormat::Vhdx);
    }
}
