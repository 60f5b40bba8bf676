//! Attachments: one row per use of a volume by an instance (Cinder's volume
//! attachments), with Cinder's spellings.
//!
//! ```text
//!   POST /attachments            PUT (connector)         os-complete
//!   (no connector) ──► reserved ──────────────► attaching ──────────► attached
//!                         │   POST with a connector ──┘                  │
//!                         │                                              │ DELETE
//!                         └──────────────── DELETE ───► detaching ◄──────┘
//!                                                          │
//!                                                        (gone)
//! ```
//!
//! An attachment in `attaching` or `attached` with an export recorded is the
//! intent that the volume is served to it; `detaching` is transitional (a
//! flow owns it) and its export is no longer wanted.

use crate::volume::string_enum;

string_enum!(
    /// The `status` (`attach_status`) of an attachment.
    AttachmentStatus {
        Reserved = "reserved",
        Attaching = "attaching",
        Attached = "attached",
        Detaching = "detaching",
        ErrorAttaching = "error_attaching",
        ErrorDetaching = "error_detaching",
    }
);

impl AttachmentStatus {
    /// Statuses in which an attachment's export (if it has one) is wanted.
    pub const EXPORTED: &'static [AttachmentStatus] =
        &[AttachmentStatus::Attaching, AttachmentStatus::Attached];

    /// True while a flow owns the attachment.
    pub fn is_transitional(self) -> bool {
        matches!(self, AttachmentStatus::Detaching)
    }
}

string_enum!(
    /// How an attachment may use the volume (`attach_mode`; `null` until the
    /// connector or the request says).
    AttachMode {
        ReadWrite = "rw",
        ReadOnly = "ro",
        Unset = "null",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for s in AttachmentStatus::ALL {
            assert_eq!(s.as_str().parse::<AttachmentStatus>().unwrap(), *s);
        }
        assert_eq!("ro".parse::<AttachMode>().unwrap(), AttachMode::ReadOnly);
        assert!("rx".parse::<AttachMode>().is_err());
        assert!(AttachmentStatus::Detaching.is_transitional());
        assert!(!AttachmentStatus::Reserved.is_transitional());
    }
}
