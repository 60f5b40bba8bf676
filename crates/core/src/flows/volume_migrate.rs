//! Move a volume's data to another backend: the admin's `os-migrate_volume`,
//! and `os-retype` with `migration_policy=on-demand` when the volume's
//! backend does not suit the new type.
//!
//! ```text
//!  begin_migrate ──────► record_target ─────► copy_data ──────────► switch
//!   `available` →         image record on      the source's chain,   ONE transaction:
//!   `available` (or       the destination,     flattened, into the   backend, image, zone
//!   `maintenance` with    state `creating`     target (export to a   (and type) of the
//!   lock_volume,          undo: remove the     staging file, import; volume; status back;
//!   `retyping` for a      record               or import the source  migration `success`;
//!   retype); migration                         file when it is one   target `ready`
//!   `migrating`                                self-contained file)
//!   undo: status back,                         undo: delete the
//!   migration `error`                          target's data
//! ```
//!
//! The volume keeps its id: no second volume row is made (Cinder makes a
//! temporary volume and swaps ids at the end; here the volume just points at
//! another image). The source's images are never written and stay readable
//! throughout; once `switch` committed, the old active image has no user (a
//! trigger of migration 0022 records it as the reaper's candidate) and the
//! reaper frees it, and what stood under it when nothing else uses that.
//!
//! Only detached (`available`) volumes without snapshots, outside groups,
//! move: live
//! migration of an attached volume is not built, and a snapshot is an image
//! on the source backend that would have to move with it (Cinder refuses
//! both the same way). While a migration runs (`migration_status`
//! `migrating`) the volume cannot be deleted, attached, extended,
//! snapshotted, retyped or migrated again (400, each action's guard). A clone
//! started from the volume meanwhile reads the source image; `switch` then
//! fails (the migration is undone, migration status `error`) rather than
//! leave the clone's source without a user.
//!
//! A retype carries the new type and multiattach flag: they change in the
//! `switch` commit, with the project's per-type quota checked in the same
//! transaction (413 there undoes the migration), so a client waiting for the
//! type to change sees the new host and migration status `success` at once.

use scoria_flows::{Cx, Flow, FlowMeta, Step, StepError};
use scoria_model::image::ImageState;
use scoria_model::quota::{QuotaKey, TypedResource};
use scoria_model::volume::{AttachStatus, GIB, VolumeStatus};
use scoria_model::{ImageId, VolumeId, VolumeTypeId};
use scoria_storage::{Format, ImageSpec};
use scoria_store::{Conn, images, volumes};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Env;
use crate::error::Error;
use crate::flows::storage_error;

pub struct VolumeMigrate;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub volume_id: VolumeId,
    /// The backend the data moves to.
    pub destination: String,
    /// A retype's new type and the multiattach flag it implies; `None` for
    /// a migration that keeps the type.
    #[serde(default)]
    pub new_type: Option<(VolumeTypeId, bool)>,
    /// Cinder's `lock_volume`: the volume is `maintenance` while it moves.
    #[serde(default)]
    pub lock_volume: bool,
    /// The request that asked for the migration.
    #[serde(default)]
    pub request_id: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Begun {
    project_id: String,
    /// GiB.
    size: i64,
    /// The status it had and has again.
    status: VolumeStatus,
    /// Its status while it moves.
    during: VolumeStatus,
    source_backend: String,
    source_image: ImageId,
    source_name: String,
    /// The destination's zone, recorded on the volume by `switch`.
    zone: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Target {
    image_id: ImageId,
    name: String,
    format: Format,
}

impl Flow for VolumeMigrate {
    const KIND: &'static str = "volume_migrate";
    type Params = Params;
    type Env = Env;

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::db("begin_migrate", |cx, c| Box::pin(begin_migrate(cx, c)))
                .undo_db(|cx, c| Box::pin(abort_migrate(cx, c))),
            Step::db("record_target", |cx, c| Box::pin(record_target(cx, c)))
                .undo_db(|cx, c| Box::pin(unrecord_target(cx, c))),
            Step::external("copy_data", |cx| Box::pin(copy_data(cx)))
                .undo_external(|cx| Box::pin(uncopy_data(cx))),
            Step::db("switch", |cx, c| Box::pin(switch(cx, c))),
        ]
    }

    fn meta(p: &Params) -> FlowMeta {
        FlowMeta {
            resource_type: Some("volume"),
            resource_id: Some(p.volume_id.to_string()),
            project_id: None,
        }
    }
}

/// Cinder's refusal of an attached volume, in Scoria's words.
pub(crate) fn live_migration_refused(id: VolumeId) -> Error {
    Error::InvalidState(format!(
        "Invalid volume: Volume {id} is attached; live migration of attached volumes is not built in Scoria: detach it first."
    ))
}

/// Cinder's refusal of a group's volume: a group's volumes live on its
/// backend.
pub(crate) fn group_refused(id: VolumeId, group: scoria_model::GroupId) -> Error {
    Error::InvalidState(format!(
        "Invalid volume: Volume {id} must not be part of a group (it is in group {group}, whose volumes all live on its backend)."
    ))
}

async fn begin_migrate(cx: &Cx<VolumeMigrate>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    let v = volumes::volume_get(c, p.volume_id)
        .await?
        .ok_or_else(|| Error::volume_not_found(p.volume_id))?;
    crate::rules::volumes::assert_not_migrating(&v)?;
    if v.status == VolumeStatus::InUse || v.attach_status != AttachStatus::Detached {
        return Err(live_migration_refused(v.id).into());
    }
    if v.status != VolumeStatus::Available {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {} status must be available, but current status is: {}.",
            v.id, v.status
        ))
        .into());
    }
    if let Some(g) = v.group_id {
        return Err(group_refused(v.id, g).into());
    }
    if !scoria_store::snapshots::snapshot_list_for_volume(c, v.id)
        .await?
        .is_empty()
    {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {} must not have snapshots.",
            v.id
        ))
        .into());
    }
    crate::rules::volumes::assert_not_held_by_copies(c, v.id, "migrated").await?;
    let Some(source_backend) = v.backend.clone() else {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {} has no backend.",
            v.id
        ))
        .into());
    };
    if source_backend == p.destination {
        return Err(Error::Invalid(
            "Invalid host: Destination host must be different than the current host.".into(),
        )
        .into());
    }
    let dest = cx.env.backend(&p.destination).map_err(|_| {
        Error::Invalid(format!(
            "Invalid host: No available service named scoria@{}.",
            p.destination
        ))
    })?;
    crate::rules::hosts::assert_not_frozen(c, Some(&source_backend)).await?;
    crate::rules::hosts::assert_not_frozen(c, Some(&p.destination)).await?;
    let Some(image) = crate::rules::images::active_image(c, &v).await? else {
        return Err(
            Error::InvalidState(format!("Invalid volume: Volume {} has no data.", v.id)).into(),
        );
    };
    let during = if p.new_type.is_some() {
        VolumeStatus::Retyping
    } else if p.lock_volume {
        VolumeStatus::Maintenance
    } else {
        v.status
    };
    let flow = cx.flow_id.to_string();
    if !volumes::volume_begin_migration(c, v.id, v.status, during, image.id, &flow).await? {
        return Err(Error::InvalidState(format!(
            "Invalid volume: volume {} changed status.",
            v.id
        ))
        .into());
    }
    let begun = Begun {
        project_id: v.project_id,
        size: v.size,
        status: v.status,
        during,
        source_backend,
        source_image: image.id,
        source_name: image.name,
        zone: dest.config.availability_zone.clone(),
    };
    serde_json::to_value(begun).map_err(|e| StepError::msg(e.to_string()))
}

/// Undo of `begin_migrate`: the status it had, migration status `error`
/// (Cinder's end of a failed migration); the data never moved.
async fn abort_migrate(cx: &Cx<VolumeMigrate>, c: &mut Conn) -> Result<(), StepError> {
    let begun: Begun = cx.output("begin_migrate")?;
    volumes::volume_fail_migration(c, cx.params.volume_id, begun.during, begun.status).await?;
    Ok(())
}

async fn record_target(cx: &Cx<VolumeMigrate>, c: &mut Conn) -> Result<Value, StepError> {
    let begun: Begun = cx.output("begin_migrate")?;
    let dest = cx.env.backend(&cx.params.destination)?;
    // A flattened copy is self-contained: the destination's own format.
    let format = dest.config.format;
    let image_id = ImageId::new();
    let name = crate::rules::images::name_for(image_id, format);
    images::image_create(
        c,
        &images::NewImage {
            id: image_id,
            backend: cx.params.destination.clone(),
            name: name.clone(),
            format: crate::rules::images::model_format(format),
            virtual_size: begun.size * GIB as i64,
            base_id: None,
            mutable: true,
            state: ImageState::Creating,
        },
    )
    .await?;
    let target = Target {
        image_id,
        name,
        format,
    };
    serde_json::to_value(target).map_err(|e| StepError::msg(e.to_string()))
}

async fn unrecord_target(cx: &Cx<VolumeMigrate>, c: &mut Conn) -> Result<(), StepError> {
    let target: Target = cx.output("record_target")?;
    images::image_delete(c, target.image_id).await?;
    Ok(())
}

/// The staging file of this flow's copy, when one is needed.
fn staging_file(cx: &Cx<VolumeMigrate>, format: Format) -> std::path::PathBuf {
    cx.env
        .staging_dir
        .join(format!("migrate-{}.{}", cx.flow_id, format.extension()))
}

async fn remove_staging(path: &std::path::Path) -> Result<(), StepError> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StepError::msg(format!(
            "remove the staging file {}: {e}",
            path.display()
        ))),
    }
}

async fn copy_data(cx: &Cx<VolumeMigrate>) -> Result<Value, StepError> {
    let begun: Begun = cx.output("begin_migrate")?;
    let target: Target = cx.output("record_target")?;
    let src = cx.env.backend(&begun.source_backend)?;
    let dst = cx.env.backend(&cx.params.destination)?;
    let spec = ImageSpec {
        name: target.name.clone(),
        size: begun.size as u64 * GIB,
        format: target.format,
    };
    let progress = |percent: u8| cx.report_percent(percent);
    let chain = src
        .driver
        .chain(&begun.source_name)
        .await
        .map_err(|e| storage_error("read the volume's chain", e))?;
    // One self-contained local file: imported as it is, no staging copy.
    let direct = if chain.len() == 1 {
        src.driver.local_file(&begun.source_name).await.ok()
    } else {
        None
    };
    match direct {
        Some(file) => dst
            .driver
            .import_from(&spec, &file.path, file.format, &progress)
            .await
            .map_err(|e| storage_error("copy the volume's data to the destination", e))?,
        None => {
            tokio::fs::create_dir_all(&cx.env.staging_dir)
                .await
                .map_err(|e| StepError::msg(format!("make the staging directory: {e}")))?;
            let staged = staging_file(cx, target.format);
            src.driver
                .export_to(&begun.source_name, &staged, target.format, &|p| {
                    cx.report_percent(p / 2)
                })
                .await
                .map_err(|e| storage_error("flatten the volume's data into a staging file", e))?;
            dst.driver
                .import_from(&spec, &staged, target.format, &|p| {
                    cx.report_percent(50 + p / 2)
                })
                .await
                .map_err(|e| storage_error("copy the volume's data to the destination", e))?;
            remove_staging(&staged).await?;
        }
    }
    crate::capacity::refresh(&cx.env, &cx.params.destination).await;
    Ok(Value::Null)
}

/// Undo of `copy_data`: the target's data and the staging file go (both
/// already gone is success); the source was only read.
async fn uncopy_data(cx: &Cx<VolumeMigrate>) -> Result<(), StepError> {
    let Some(target) = cx.output_opt::<Target>("record_target") else {
        return Ok(());
    };
    remove_staging(&staging_file(cx, target.format)).await?;
    cx.env
        .backend(&cx.params.destination)?
        .driver
        .delete(&target.name)
        .await
        .map_err(|e| storage_error("remove the partial copy on the destination", e))?;
    crate::capacity::refresh(&cx.env, &cx.params.destination).await;
    Ok(())
}

async fn switch(cx: &Cx<VolumeMigrate>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    let begun: Begun = cx.output("begin_migrate")?;
    let target: Target = cx.output("record_target")?;
    let clones = volumes::volume_clones_in_progress(c, p.volume_id).await?;
    if !clones.is_empty() {
        return Err(Error::InvalidState(format!(
            "Invalid volume: Volume {} is being copied to create volume {}; its migration is abandoned.",
            p.volume_id, clones[0]
        ))
        .into());
    }
    if let Some((new_type, _)) = p.new_type {
        // Usage per type follows the volume's type: it enters the new
        // type's usage in this commit (as a retype in place does).
        scoria_store::quotas::quota_check(
            c,
            &begun.project_id,
            &[
                (QuotaKey::PerType(TypedResource::Volumes, new_type), 1),
                (
                    QuotaKey::PerType(TypedResource::Gigabytes, new_type),
                    begun.size,
                ),
            ],
            None,
        )
        .await
        .map_err(Error::from)?;
    }
    let switched = volumes::volume_switch_migration(
        c,
        p.volume_id,
        &volumes::Switch {
            during: begun.during,
            status: begun.status,
            from_image: begun.source_image,
            to_image: target.image_id,
            backend: &p.destination,
            availability_zone: &begun.zone,
            new_type: p.new_type,
        },
    )
    .await?;
    if !switched {
        return Err(Error::InvalidState(format!(
            "Volume {} changed while its data was being moved.",
            p.volume_id
        ))
        .into());
    }
    images::image_set_state(
        c,
        target.image_id,
        &[ImageState::Creating],
        ImageState::Ready,
    )
    .await?;
    Ok(Value::Null)
}

#[cfg(all(test, feature = "failpoints"))]
mod tests;
