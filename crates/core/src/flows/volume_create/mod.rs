//! Create a volume: blank, from another volume (a clone, Cinder's
//! `source_volid`) or from a snapshot (`snapshot_id`); `source.rs` says how
//! each is made (the space and performance strategies).
//!
//! ```text
//!  reserve_quota ─► create_entry ─► commit_quota ─► schedule ─► create_on_backend ─► mark_available
//!   undo: release    undo: purge the entry, or      (attempt 1:  undo: delete the
//!   the reservation  mark it `error` once its       placement    current attempt's
//!                    quota was committed (and       row, image   data (idempotent)
//!                    record a placement failure)    record)
//!
//!  create_on_backend, a loop over attempts (placement.rs), each step durable:
//!    make the data where the current attempt (latest placement row) says
//!      ok ─────────────────────────────────────────────────────► done
//!      the backend failed (not the source's fault, not pinned):
//!        remove what was made ─► one fenced transaction: attempt n `failed: why`,
//!        its image record dropped, attempt n+1 placed on the best backend not
//!        tried (or: n = max_attempts / none fits ─► the step fails, listing them)
//! ```
//!
//! Every attempt is a row of `placements` with the scheduler's decision
//! (`placement.rs`; admins read them with `GET .../volumes/{id}/placement`).
//! A resumed flow reads its attempt and the backends tried from those rows,
//! so a crash anywhere in the loop resumes it or undoes the attempt the
//! store names. The failpoint `volume_create.backend_create:<backend>` fails
//! the creates on one backend as that backend would.
//!
//! A clone differs in three steps. `create_entry` holds the source: in the same
//! transaction it checks that the source is `available` or `in-use` and records
//! it as the new volume's `source_volid`. From then until the new volume leaves
//! `creating` (available or error, and the flow always gets there: it runs on
//! or unwinds after any crash), the source is being read, and every flow that
//! would change it (delete, even forced; extend; a transfer offer; an admin's
//! reset to an unreadable status) finds that out in its own first transaction
//! ([`scoria_store::volumes::volume_clones_in_progress`]) and is refused (400).
//! Nothing is locked across steps, so nothing can deadlock; a clone whose flow
//! is `stuck` keeps holding its source until an admin force-deletes the clone.
//! `schedule` places the clone on its source's backend only (the filters still
//! apply: a full or disabled backend fails it like any create), and
//! `create_on_backend` makes its data from the source's image: an overlay, or
//! a copy (`Driver::copy_from`) reporting its percent as the flow's progress.
//! A volume made from a snapshot is held and placed the same way.
//!
//! `schedule` also records the volume's image (`images`: backend, name,
//! format, virtual size; state `creating`) and points the volume at it, in
//! the same transaction; `create_on_backend` makes the image's data under
//! that name; `mark_available` marks the image `ready` with the volume. An
//! undo removes the data first (`create_on_backend`'s undo), then the record
//! (`schedule`'s), so a record never outlives a failed create and no file is
//! left without one. Flows persisted before images were recorded resume
//! here too: their volumes' images were recorded by the migration, with the
//! volume's id as the image's, and every step reads the image from the
//! volume's row rather than from an older step's output.
//!
//! The API answers (202, status `creating`) once `commit_quota` is done: from
//! then on the volume is the user's, and a later failure leaves it in `error`
//! with the reason in its progress and a user message for its project (see
//! `crate::messages`), holding its quota until it is deleted (as Cinder does).
//! A failure before that point leaves nothing behind and is the API's error
//! (413 for quota).

use std::collections::BTreeMap;

use scoria_flows::{Cx, Flow, FlowMeta, Step, StepError};
use scoria_model::image::ImageState;
use scoria_model::quota;
use scoria_model::volume::{GIB, VolumeStatus};
use scoria_model::{GroupId, ImageId, SnapshotId, VolumeId, VolumeTypeId};
use scoria_storage::Format;
use scoria_store::{Conn, images, quotas, volumes};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Env;
use crate::error::Error;
use crate::messages;
use crate::rules::affinity::Hints;

pub struct VolumeCreate;

/// Everything needed to create the volume, validated by the caller.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub volume_id: VolumeId,
    pub project_id: String,
    pub user_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    /// GiB.
    pub size: i64,
    /// Requested zone; `None` lets the scheduler choose.
    pub availability_zone: Option<String>,
    /// The zone recorded on the entry until placement decides.
    pub default_zone: String,
    pub bootable: bool,
    pub multiattach: bool,
    pub volume_type_id: VolumeTypeId,
    pub metadata: BTreeMap<String, String>,
    /// The request that asked for the volume (named by a failure message).
    #[serde(default)]
    pub request_id: Option<String>,
    /// The volume to copy; `None` for a blank volume. The caller checked what
    /// it could (visibility, size, zone, type); `create_entry` checks the
    /// source's status again, atomically, and the clone takes its `bootable`
    /// flag from there.
    #[serde(default)]
    pub source_volid: Option<VolumeId>,
    /// The snapshot to make the volume from; `create_entry` holds it (it must
    /// still be `available`).
    #[serde(default)]
    pub snapshot_id: Option<SnapshotId>,
    /// The image service's image to make the volume from; `create_entry`
    /// holds it (it must still be `active`) and records its metadata.
    #[serde(default)]
    pub glance_image_id: Option<scoria_model::GlanceImageId>,
    /// The image's virtual size (bytes) as the caller's checks found it
    /// (`scoria_storage::vet::check`); a cache fill sizes its copy by it
    /// instead of inspecting the file once more (the import checks again).
    #[serde(default)]
    pub glance_image_virtual_size: Option<u64>,
    /// The group the volume is made in: `create_entry` records the membership
    /// (the group must still accept it) and `schedule` places the volume on
    /// the group's backend.
    #[serde(default)]
    pub group_id: Option<GroupId>,
    /// The backup to make the volume from: `from_backup.rs`.
    #[serde(default)]
    pub backup: Option<from_backup::FromBackup>,
    /// The file to make the volume from (a manage): `from_file.rs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manage: Option<from_file::FromFile>,
    /// The `same_host`/`different_host` scheduler hints, with the volumes the
    /// caller could see (`rules::affinity`).
    #[serde(default, skip_serializing_if = "Hints::is_empty")]
    pub hints: Hints,
}

/// Where the schedule step put the volume.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Placement {
    pub backend: String,
    /// The image's name on the backend.
    pub location: String,
    pub format: Format,
    /// For a clone: the name of the source's image on the same backend.
    #[serde(default)]
    pub source: Option<String>,
    /// The image recorded for the volume (absent in flows persisted before
    /// images were recorded: the migration gave those the volume's id).
    #[serde(default)]
    pub image_id: Option<ImageId>,
    /// How the data is made from a source (absent in older flows, which
    /// copied `source`).
    #[serde(default)]
    data: source::DataPlan,
    /// The attempt (1 for the first placement; 0 in flows persisted before
    /// placements were recorded).
    #[serde(default)]
    pub attempt: i64,
    /// The scheduler's account of the choice (`placement.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Value>,
    /// Why the volume may be on this backend only (its source's, its
    /// group's): it is then not rescheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<String>,
}

mod from_backup;
mod from_file;
pub(crate) mod placement;
mod source;

pub use from_backup::FromBackup;
pub use from_file::FromFile;
pub use placement::{DEFAULT_MAX_ATTEMPTS, backend_create_failpoint, max_attempts};

pub(crate) use source::snapshot_not_readable;

impl Flow for VolumeCreate {
    const KIND: &'static str = "volume_create";
    type Params = Params;
    type Env = Env;

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::db("reserve_quota", |cx, c| Box::pin(reserve_quota(cx, c)))
                .undo_db(|cx, c| Box::pin(release_quota(cx, c))),
            Step::db("create_entry", |cx, c| Box::pin(create_entry(cx, c)))
                .undo_db(|cx, c| Box::pin(remove_entry(cx, c))),
            Step::db("commit_quota", |cx, c| Box::pin(commit_quota(cx, c))),
            Step::db("schedule", |cx, c| Box::pin(schedule(cx, c)))
                .undo_db(|cx, c| Box::pin(unplace(cx, c))),
            Step::external("create_on_backend", |cx| Box::pin(create_on_backend(cx)))
                .undo_external(|cx| Box::pin(delete_on_backend(cx))),
            Step::db("mark_available", |cx, c| Box::pin(mark_available(cx, c))),
        ]
    }

    fn meta(p: &Params) -> FlowMeta {
        FlowMeta {
            resource_type: Some("volume"),
            resource_id: Some(p.volume_id.to_string()),
            project_id: Some(p.project_id.clone()),
        }
    }
}

/// `reserve_quota`, `create_entry` and `commit_quota` are consecutive
/// database steps, so they always run in one transaction: a reservation
/// would be written and deleted inside it, and nobody else could ever see
/// it. The check alone is enough. It runs in the same transaction as the
/// insert that makes the volume count (the triggers of migration 0021), so
/// nothing can come between them. Flows recorded before this change
/// reserved, and their undo releases the reservation.
async fn reserve_quota(cx: &Cx<VolumeCreate>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    // One volume and its gigabytes, overall and for its type, in one check.
    let deltas = quota::volume_deltas(p.volume_type_id, p.size);
    quotas::quota_check(c, &p.project_id, &deltas, Some(p.size))
        .await
        .map_err(Error::from)?;
    Ok(json!({ "reservation": null }))
}

async fn release_quota(cx: &Cx<VolumeCreate>, c: &mut Conn) -> Result<(), StepError> {
    quotas::reservation_release_flow(c, cx.flow_id).await?;
    Ok(())
}

async fn create_entry(cx: &Cx<VolumeCreate>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    let reservation_id = reservation(cx)?;
    // The type was checked by the caller; check again in this transaction, so
    // that a type deleted or given an encryption spec meanwhile is refused
    // instead of being used (both are refused while a volume has the type).
    crate::rules::volumes::refuse_missing_or_encrypted(c, p.volume_type_id).await?;
    let (held, image) = source::hold(cx, c).await?;
    from_backup::hold(cx, c).await?;
    volumes::volume_create(
        c,
        &volumes::NewVolume {
            id: p.volume_id,
            project_id: p.project_id.clone(),
            user_id: p.user_id.clone(),
            name: p.name.clone(),
            description: p.description.clone(),
            size: p.size,
            status: VolumeStatus::Creating,
            bootable: held.bootable,
            multiattach: p.multiattach,
            availability_zone: p
                .availability_zone
                .clone()
                .unwrap_or_else(|| p.default_zone.clone()),
            volume_type_id: p.volume_type_id,
            snapshot_id: p.snapshot_id.map(|s| s.to_string()),
            source_volid: p.source_volid.map(|s| s.to_string()),
            reservation_id,
            last_flow_id: Some(cx.flow_id.to_string()),
            metadata: p.metadata.clone(),
        },
    )
    .await?;
    source::record(cx, c, image.as_ref()).await?;
    if let Some(g) = p.group_id {
        crate::rules::groups::join_on_create(c, g, p.volume_id, &p.project_id, p.volume_type_id)
            .await?;
    }
    serde_json::to_value(held).map_err(|e| StepError::msg(e.to_string()))
}

/// Undo of `create_entry`: before the quota was committed nobody was told of the
/// volume, so it goes; after, it stays as `error` (the user knows its id) and
/// the project gets a message saying why, in the same transaction. A backup
/// held is let go; the volume a restore made for itself goes in any case
/// (`from_backup.rs`).
async fn remove_entry(cx: &Cx<VolumeCreate>, c: &mut Conn) -> Result<(), StepError> {
    let id = cx.params.volume_id;
    let failure = cx
        .failure()
        .map(|f| f.message.clone())
        .unwrap_or_else(|| "the volume could not be created".into());
    from_backup::release(cx, c, Some(&failure)).await?;
    let remove = cx
        .params
        .backup
        .as_ref()
        .is_some_and(|b| b.remove_on_failure);
    if cx.output_opt::<Value>("commit_quota").is_some() {
        if remove {
            volumes::volume_purge(c, id).await?;
        }
        let marked = !remove && volumes::volume_set_status(c, id, &[], VolumeStatus::Error).await?;
        if remove || marked {
            let (action, detail) = match cx.failure() {
                Some(f) if f.step == "schedule" && f.message.starts_with(NO_VALID_BACKEND) => (
                    messages::SCHEDULE_ALLOCATE_VOLUME,
                    messages::NO_BACKEND_AVAILABLE,
                ),
                Some(f) if f.step == "schedule" => {
                    (messages::SCHEDULE_ALLOCATE_VOLUME, messages::UNKNOWN_ERROR)
                }
                Some(f) if f.step == "create_on_backend" => (
                    messages::CREATE_VOLUME_FROM_BACKEND,
                    messages::DRIVER_FAILED_CREATE,
                ),
                _ => (messages::UNKNOWN_ACTION, messages::UNKNOWN_ERROR),
            };
            let note = if marked {
                if cx.failure().is_some_and(|f| {
                    f.step == "schedule" && f.message.starts_with(NO_VALID_BACKEND)
                }) {
                    placement::record_unplaced(cx, c).await?;
                }
                let why = match cx.failure() {
                    Some(f) if f.step == "schedule" => unplaced_reason(&f.message),
                    _ => String::new(),
                };
                why + &placement::attempts_note(c, id).await?
            } else {
                String::new()
            };
            messages::record_volume_failure_noted(
                c,
                &cx.params.project_id,
                id,
                &messages::request_id_or(&cx.params.request_id, cx.flow_id),
                action,
                detail,
                &note,
            )
            .await?;
        }
    } else {
        volumes::volume_purge(c, id).await?;
    }
    Ok(())
}

/// What the user is told of a placement failure: the scheduler's summary
/// ("no backend in zone az2 has 500 GiB free"), without the backend-by-backend
/// detail that names the backends (admins read it in the placement record).
fn unplaced_reason(message: &str) -> String {
    let Some(rest) = message.strip_prefix(NO_VALID_BACKEND) else {
        return String::new();
    };
    let rest = rest.trim_start_matches([':', '.', ' ']);
    let head = rest.split(" (").next().unwrap_or(rest).trim();
    if head.is_empty() {
        String::new()
    } else {
        format!(" {}{}.", head[..1].to_uppercase(), &head[1..])
    }
}

/// The reservation `reserve_quota` recorded: none since it only checks.
fn reservation(cx: &Cx<VolumeCreate>) -> Result<Option<scoria_model::ReservationId>, StepError> {
    let out: Value = cx.output("reserve_quota")?;
    match &out["reservation"] {
        Value::Null => Ok(None),
        v => v
            .as_str()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| StepError::msg("reserve_quota recorded an unreadable reservation")),
    }
}

/// The volume counts from here on. With no reservation (see
/// `reserve_quota`) it has counted since its insert, earlier in this
/// transaction.
async fn commit_quota(cx: &Cx<VolumeCreate>, c: &mut Conn) -> Result<Value, StepError> {
    if reservation(cx)?.is_some() {
        quotas::reservation_release_flow(c, cx.flow_id).await?;
        if !volumes::volume_commit_quota(c, cx.params.volume_id).await? {
            return Err(Error::volume_not_found(cx.params.volume_id).into());
        }
    }
    Ok(json!(true))
}

/// How a placement failure's message starts ([`crate::scheduler::NoValidBackend`]).
const NO_VALID_BACKEND: &str = "No valid backend was found";

async fn schedule(cx: &Cx<VolumeCreate>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    // A volume made from another volume or a snapshot is made where its
    // source is (held since `create_entry`); a group's volumes all live on
    // the group's backend.
    let held: source::Held = cx.output_opt("create_entry").unwrap_or_default();
    let data = source::plan(cx, c, &held).await?;
    let source = data.backend.as_deref().or(from_file::backend(cx));
    let pin = placement::pin_of(c, p.group_id, source).await?;
    let request = placement::request_of(cx, c).await?;
    let decided = placement::decide(&cx.env, c, &request, pin.as_ref(), &[]).await?;
    let backend = decided
        .chosen
        .map_err(|e| StepError::new(Error::Unavailable(e.to_string())))?;
    let place = place_on(
        cx,
        c,
        &backend,
        data,
        1,
        decided.decision,
        pin.map(|p| format!("{} {}", p.why, p.backend)),
    )
    .await?;
    serde_json::to_value(place).map_err(|e| StepError::msg(e.to_string()))
}

/// Place the volume on `backend` as attempt `attempt`: its image recorded
/// (`creating`), the volume pointed at it, the attempt's row written, all in
/// the caller's transaction (`schedule`'s, or a reschedule's).
async fn place_on(
    cx: &Cx<VolumeCreate>,
    c: &mut Conn,
    backend: &str,
    mut data: source::DataPlan,
    attempt: i64,
    decision: Value,
    pinned: Option<String>,
) -> Result<Placement, StepError> {
    let p = &cx.params;
    let b = cx.env.backend(backend)?;
    // A volume from the image service's image: from the backend's cache, or
    // filling it, or straight from the image's file.
    source::plan_image(cx, c, &b, &mut data).await?;
    // An overlay is qcow2 whatever the backend's format for blank volumes.
    let format = if data.base.is_some() {
        Format::Qcow2
    } else {
        from_file::format(cx).unwrap_or(b.config.format)
    };
    let image_id = ImageId::new();
    let location = crate::rules::images::name_for(image_id, format);
    images::image_create(
        c,
        &images::NewImage {
            id: image_id,
            backend: backend.to_owned(),
            name: location.clone(),
            format: crate::rules::images::model_format(format),
            virtual_size: p.size * GIB as i64,
            base_id: data.base.as_ref().map(|(id, _)| *id),
            mutable: true,
            state: ImageState::Creating,
        },
    )
    .await?;
    if !volumes::volume_place(
        c,
        p.volume_id,
        backend,
        image_id,
        &b.config.availability_zone,
    )
    .await?
    {
        return Err(Error::InvalidState(format!(
            "Volume {} is no longer being created.",
            p.volume_id
        ))
        .into());
    }
    // Cinder's status while an image's (a backup's) data is copied in.
    let filling = if data.image.is_some() {
        Some(VolumeStatus::Downloading)
    } else if p.backup.is_some() {
        Some(VolumeStatus::RestoringBackup)
    } else {
        None
    };
    if let Some(status) = filling {
        volumes::volume_set_status(c, p.volume_id, &[VolumeStatus::Creating], status).await?;
    }
    let place = Placement {
        backend: backend.to_owned(),
        location,
        format,
        source: None,
        image_id: Some(image_id),
        data,
        attempt,
        decision: Some(decision),
        pinned,
    };
    placement::record_placed(cx, c, &place).await?;
    Ok(place)
}

/// Undo of `schedule`, after the data is gone (`create_on_backend`'s undo
/// runs first): the volume no longer points at its image and the record
/// goes. The image is the one the volume's row names, which is also right
/// for flows persisted before images were recorded.
async fn unplace(cx: &Cx<VolumeCreate>, c: &mut Conn) -> Result<(), StepError> {
    let id = cx.params.volume_id;
    if volumes::volume_get(c, id).await?.is_none() {
        return Ok(());
    }
    let place = placement::current(cx, c).await.ok();
    if let (Some(place), Some(f)) = (&place, cx.failure()) {
        // The attempt that was being made failed with the flow.
        scoria_store::placements::placement_mark_failed(c, id, place.attempt, &f.message).await?;
    }
    match &place {
        Some(place) => placement::unplace_current(cx, c, place).await,
        None => {
            if let Some(image) = volumes::volume_get(c, id).await?.and_then(|v| v.image_id) {
                volumes::volume_set_image(c, id, None).await?;
                images::image_delete(c, image).await?;
            }
            Ok(())
        }
    }
}

/// Make the data where the current attempt says; when the backend fails,
/// remove what was made and reschedule (`placement.rs`), until it is made or
/// the attempts run out.
async fn create_on_backend(cx: &Cx<VolumeCreate>) -> Result<Value, StepError> {
    loop {
        let place = placement::current_read(cx).await?;
        let made = match make_on(cx, &place).await {
            Ok(made) => made,
            // A flow placed before attempts were recorded (attempt 0) is not
            // rescheduled: the backends it tried are not known.
            Err(e) if place.attempt > 0 && placement::backend_failure(&e) => {
                tracing::warn!(backend = %place.backend, error = %e.chain(), "the backend failed to create a volume");
                source::unmake(cx, &place).await?;
                crate::capacity::refresh(&cx.env, &place.backend).await;
                placement::reschedule(cx, &place, &e).await?;
                continue;
            }
            Err(e) => return Err(e),
        };
        from_backup::restore(cx, &place).await?;
        crate::capacity::refresh(&cx.env, &place.backend).await;
        return serde_json::to_value(made).map_err(|e| StepError::msg(e.to_string()));
    }
}

/// One attempt's data (`volume_create.backend_create:<backend>` fails it as
/// the backend would).
async fn make_on(cx: &Cx<VolumeCreate>, place: &Placement) -> Result<source::Made, StepError> {
    cx.failpoints()
        .hit(&placement::backend_create_failpoint(&place.backend))
        .map_err(|f| {
            crate::error::storage_error("create the volume", scoria_storage::StorageError::from(f))
        })?;
    source::make(cx, place).await
}

async fn delete_on_backend(cx: &Cx<VolumeCreate>) -> Result<(), StepError> {
    let Ok(place) = placement::current_read(cx).await else {
        return Ok(());
    };
    source::unmake(cx, &place).await
}

async fn mark_available(cx: &Cx<VolumeCreate>, c: &mut Conn) -> Result<Value, StepError> {
    // The volume's image turns `ready` with the volume, at the end.
    if let Ok(place) = placement::current(cx, c).await {
        source::finish(cx, c, &place).await?;
    }
    from_backup::release(cx, c, None).await?;
    if !volumes::volume_mark_available(c, cx.params.volume_id).await? {
        return Err(Error::InvalidState(format!(
            "Volume {} is no longer being created.",
            cx.params.volume_id
        ))
        .into());
    }
    Ok(Value::Null)
}

#[cfg(all(test, feature = "failpoints"))]
mod tests;
#[cfg(all(test, feature = "failpoints"))]
mod tests_backup;
#[cfg(all(test, feature = "failpoints"))]
mod tests_hints;
#[cfg(all(test, feature = "failpoints"))]
mod tests_manage;
#[cfg(all(test, feature = "failpoints"))]
mod tests_resched;
