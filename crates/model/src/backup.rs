//! Backup statuses, with Cinder's spellings.
//!
//! ```text
//!   (none) ──create flow──► creating ──► available ──delete──► deleting ──► (gone)
//!                              │           │   ▲                  │
//!                              ▼           ▼   │                  ▼
//!                            error      restoring (a restore)  error_deleting
//! ```
//!
//! A restore that fails leaves the backup `available` (its data is what it
//! was) with the failure in `fail_reason`, and the target volume
//! `error_restoring`.

use crate::volume::string_enum;

string_enum!(
    /// The `status` of a backup.
    BackupStatus {
        Creating = "creating",
        Available = "available",
        Deleting = "deleting",
        Restoring = "restoring",
        Error = "error",
        ErrorDeleting = "error_deleting",
    }
);

impl BackupStatus {
    /// Statuses a backup may be deleted from (Cinder's: available or error).
    pub const DELETABLE: [BackupStatus; 2] = [BackupStatus::Available, BackupStatus::Error];
}
