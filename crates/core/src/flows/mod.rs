//! The concrete flows, one file each: parameters, steps with their undo, tests.
//!
//! Every flow follows Cinder's shapes (validate → reserve quota → create the entry
//! → commit quota → place → act on the backend → mark the result) and passes the
//! generic flow tests of `scoria_flows::testkit` on the real file backend.

use scoria_flows::Engine;

use crate::Env;

pub mod attachment_attach;
pub mod attachment_detach;
pub mod backup_create;
pub mod backup_delete;
pub mod backup_import;
pub mod backup_restore;
pub mod group_create_from_src;
pub mod group_delete;
pub mod image_merge;
pub mod snapshot_create;
pub mod snapshot_delete;
pub mod snapshot_manage;
pub mod volume_create;
pub mod volume_delete;
pub mod volume_extend;
pub mod volume_flatten;
pub mod volume_migrate;
pub mod volume_revert;
pub mod volume_upload;

/// Make every flow kind resumable.
pub fn register(engine: &Engine<Env>) {
    engine.register::<volume_create::VolumeCreate>();
    engine.register::<volume_delete::VolumeDelete>();
    engine.register::<volume_extend::VolumeExtend>();
    engine.register::<volume_migrate::VolumeMigrate>();
    engine.register::<volume_revert::VolumeRevert>();
    engine.register::<volume_upload::VolumeUpload>();
    engine.register::<group_delete::GroupDelete>();
    engine.register::<group_create_from_src::GroupCreateFromSrc>();
    engine.register::<snapshot_create::SnapshotCreate>();
    engine.register::<snapshot_delete::SnapshotDelete>();
    engine.register::<snapshot_manage::SnapshotManage>();
    engine.register::<image_merge::ImageMerge>();
    engine.register::<volume_flatten::VolumeFlatten>();
    engine.register::<crate::repository::flows::RepositoryCheck>();
    engine.register::<crate::repository::flows::RepositoryFix>();
    engine.register::<attachment_attach::AttachmentAttach>();
    engine.register::<attachment_detach::AttachmentDetach>();
    engine.register::<backup_create::BackupCreate>();
    engine.register::<backup_delete::BackupDelete>();
    engine.register::<backup_restore::BackupRestore>();
    engine.register::<backup_import::BackupImport>();
}

pub(crate) use crate::error::storage_error;

#[cfg(all(test, feature = "failpoints"))]
pub(crate) mod testing;
