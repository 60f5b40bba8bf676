//! Placement records and rescheduling of the create flow.
//!
//! Every attempt to place a volume is a row of `placements` (migration 0024):
//! the backend chosen, the outcome (`placed`, `failed: <why>`,
//! `no_valid_backend`), the scheduler's account of the choice (the
//! *decision*, JSON) and the flow's plan for the data there. `schedule`
//! writes attempt 1 in its transaction; a placement failure there rolls that
//! transaction back, so the undo of `create_entry` records it (the decision
//! evaluated again at that moment).
//!
//! `create_on_backend` is a loop over attempts: it makes the data where the
//! current attempt (the latest row with a plan) says; when the backend fails
//! (a [`backend_failure`], not a refusal of the volume's source), it removes
//! what it made, then in one fenced transaction ([`scoria_flows::Cx::begin_held`])
//! marks the attempt failed, drops the attempt's image record and places the
//! volume again excluding every backend tried, as attempt n+1 — up to
//! [`max_attempts`]. Since the attempt and the backends tried are rows, a
//! crash anywhere resumes the loop at the attempt the store names, and an
//! undo removes what the current attempt placed. A volume pinned to a
//! backend (its source's, its group's) has only that one: it is not
//! rescheduled, and its record says so.
//!
//! The decision is the scheduler's own record ([`scheduler::Decision`]) as
//! JSON, with the backends a pin or an earlier attempt ruled out added by
//! [`decision_of`].

use scoria_flows::{Cx, StepError};
use scoria_model::volume::VolumeStatus;
use scoria_model::{GroupId, SnapshotId, VolumeId};
use scoria_store::placements::{self as records, NewPlacement};
use scoria_store::{Conn, images, snapshots, volumes};
use serde_json::{Value, json};

use super::{Placement, VolumeCreate};
use crate::Env;
use crate::error::Error;
use crate::scheduler::{self, Candidate, NoValidBackend, Request};

/// How many backends a create tries before it gives up, unless configured.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// How many backends a create tries (the first placement included).
pub fn max_attempts(env: &Env) -> u32 {
    env.scheduler.max_attempts.max(1)
}

/// Why a volume may go to one backend only.
#[derive(Clone, Debug)]
pub(crate) struct Pin {
    pub backend: String,
    /// `"its source's backend"`, `"its group's backend"`.
    pub why: &'static str,
}

/// What the scheduler decided and why, as the record keeps it.
pub(crate) struct Decided {
    pub decision: Value,
    pub chosen: Result<String, NoValidBackend>,
}

/// Decide where a volume of `req` goes: every backend is a candidate, less
/// those a pin rules out and those `tried` (backend, why it failed), which
/// the record lists as removed by `Pin` or `AlreadyTried`. Reads only.
pub(crate) async fn decide(
    env: &Env,
    c: &mut Conn,
    req: &Request,
    pin: Option<&Pin>,
    tried: &[(String, String)],
) -> Result<Decided, StepError> {
    let flags = crate::rules::hosts::placement_flags(c).await?;
    if flags.scheduler_disabled {
        let e = NoValidBackend {
            reasons: vec!["the scheduler service is disabled".into()],
        };
        return Ok(Decided {
            decision: decision_of(req, None, &[], pin, &Err(e.clone())),
            chosen: Err(e),
        });
    }
    let all = crate::capacity::gather_with(env, c, &flags.unschedulable).await?;
    let mut left: Vec<Candidate> = Vec::new();
    let mut ruled_out = Vec::new();
    for cand in all {
        if let Some(p) = pin
            && cand.name != p.backend
        {
            ruled_out.push((cand.name, "Pin", format!("the volume must be on {}", p.why)));
        } else if let Some((_, why)) = tried.iter().find(|(b, _)| *b == cand.name) {
            ruled_out.push((cand.name, "AlreadyTried", format!("already tried: {why}")));
        } else {
            left.push(cand);
        }
    }
    let decision = scheduler::decide(&env.scheduler, req, &left);
    let chosen = match pin {
        Some(p) if left.is_empty() && !tried.iter().any(|(b, _)| *b == p.backend) => {
            Err(NoValidBackend {
                reasons: vec![format!("{}: {} is not configured", p.backend, p.why)],
            })
        }
        _ if left.is_empty() && !tried.is_empty() => Err(NoValidBackend {
            reasons: vec!["every backend that could take the volume was tried".into()],
        }),
        _ => decision.clone().into_result(),
    };
    let decision = decision_of(req, Some(&decision), &ruled_out, pin, &chosen);
    Ok(Decided { decision, chosen })
}

/// The record of one decision: the scheduler's (the request, every
/// candidate with its verdict: removed by a filter with the reason, or
/// weighed with its weights; the chosen backend), the backends a pin or an
/// earlier attempt ruled out before the filters ran, and a message.
pub(crate) fn decision_of(
    req: &Request,
    decision: Option<&scheduler::Decision>,
    ruled_out: &[(String, &'static str, String)],
    pin: Option<&Pin>,
    chosen: &Result<String, NoValidBackend>,
) -> Value {
    let mut record = match decision {
        Some(d) => serde_json::to_value(d).unwrap_or(Value::Null),
        None => json!({"request": req, "candidates": [], "chosen": null}),
    };
    if let Some(list) = record.get_mut("candidates").and_then(Value::as_array_mut) {
        for (backend, filter, reason) in ruled_out {
            list.push(json!({
                "backend": backend,
                "outcome": "removed",
                "filter": filter,
                "reason": reason,
            }));
        }
    }
    record["chosen"] = json!(chosen.as_ref().ok());
    record["pinned"] = json!(pin.map(|p| json!({
        "backend": p.backend,
        "why": format!("the volume must be on {}; it cannot be rescheduled", p.why),
    })));
    record["message"] = json!(match chosen {
        Ok(b) => decision
            .map(|d| d.message())
            .unwrap_or_else(|| format!("Backend {b} was chosen.")),
        Err(e) => e.to_string(),
    });
    record
}

/// The pin of a new volume: its group's backend, or its source's.
pub(crate) async fn pin_of(
    c: &mut Conn,
    group: Option<GroupId>,
    source_backend: Option<&str>,
) -> Result<Option<Pin>, StepError> {
    if let Some(backend) = crate::rules::groups::backend_of(c, group).await? {
        return Ok(Some(Pin {
            backend,
            why: "its group's backend",
        }));
    }
    Ok(source_backend.map(|b| Pin {
        backend: b.to_owned(),
        why: "its source's backend",
    }))
}

/// The backend of the image a volume is made from (a volume or a
/// snapshot), if any. Reads only.
async fn source_backend(
    c: &mut Conn,
    source: Option<VolumeId>,
    snapshot: Option<SnapshotId>,
) -> Result<Option<String>, StepError> {
    let image = if let Some(v) = source {
        volumes::volume_get(c, v).await?.and_then(|v| v.image_id)
    } else if let Some(s) = snapshot {
        snapshots::snapshot_get(c, s)
            .await?
            .and_then(|s| s.image_id)
    } else {
        None
    };
    Ok(match image {
        Some(i) => images::image_get(c, i).await?.map(|i| i.backend),
        None => None,
    })
}

/// The request the scheduler gets for the flow's volume.
pub(crate) async fn request_of(cx: &Cx<VolumeCreate>, c: &mut Conn) -> Result<Request, StepError> {
    let p = &cx.params;
    let mut req = Request {
        size_gib: p.size,
        availability_zone: p.availability_zone.clone(),
        extra_specs: scoria_store::volume_types::volume_type_extra_specs_get(c, p.volume_type_id)
            .await?,
        ..Default::default()
    };
    crate::rules::affinity::apply(c, &p.hints, &mut req)
        .await
        .map_err(|e| StepError::msg(e.to_string()))?;
    Ok(req)
}

/// Record an attempt that placed the volume (in the placing transaction).
pub(crate) async fn record_placed(
    cx: &Cx<VolumeCreate>,
    c: &mut Conn,
    place: &Placement,
) -> Result<(), StepError> {
    let plan = serde_json::to_value(place).map_err(|e| StepError::msg(e.to_string()))?;
    records::placement_record(
        c,
        &NewPlacement {
            volume_id: cx.params.volume_id,
            attempt: place.attempt,
            backend: Some(&place.backend),
            outcome: records::PLACED,
            decision: place.decision.as_ref().unwrap_or(&Value::Null),
            plan: Some(&plan),
        },
    )
    .await?;
    Ok(())
}

/// In the undo of `create_entry`, when `schedule` found no backend: record
/// attempt 1 as `no_valid_backend`, with the decision evaluated again now
/// (the failing step's own transaction was rolled back).
pub(crate) async fn record_unplaced(cx: &Cx<VolumeCreate>, c: &mut Conn) -> Result<(), StepError> {
    let p = &cx.params;
    let source = source_backend(c, p.source_volid, p.snapshot_id)
        .await?
        .or_else(|| p.manage.as_ref().map(|f| f.backend.clone()));
    // A group gone or without a backend: the decision is recorded unpinned.
    let pin = pin_of(c, p.group_id, source.as_deref())
        .await
        .unwrap_or_default();
    let req = request_of(cx, c).await?;
    let d = decide(&cx.env, c, &req, pin.as_ref(), &[]).await?;
    records::placement_record(
        c,
        &NewPlacement {
            volume_id: p.volume_id,
            attempt: 1,
            backend: None,
            outcome: records::NO_VALID_BACKEND,
            decision: &d.decision,
            plan: None,
        },
    )
    .await?;
    Ok(())
}

/// The attempt the flow is at: the latest recorded placement, or (a flow
/// persisted before placements were recorded) `schedule`'s output.
pub(crate) async fn current(cx: &Cx<VolumeCreate>, c: &mut Conn) -> Result<Placement, StepError> {
    if let Some(row) = records::placement_current(c, cx.params.volume_id).await?
        && let Some(plan) = row.plan
    {
        return serde_json::from_value(plan)
            .map_err(|e| StepError::msg(format!("a placement record is not as expected: {e}")));
    }
    cx.output("schedule")
}

/// [`current`] on a read connection.
pub(crate) async fn current_read(cx: &Cx<VolumeCreate>) -> Result<Placement, StepError> {
    let mut conn = cx.env.store.read().await?;
    current(cx, &mut conn).await
}

/// The failpoint that makes creates on `backend` fail as the backend would
/// (`volume_create.backend_create:<backend>`).
pub fn backend_create_failpoint(backend: &str) -> String {
    format!("volume_create.backend_create:{backend}")
}

/// Is this failure of making a volume's data the backend's (another backend
/// may succeed), rather than the volume's own (its source's image refused,
/// too large) or a crash?
pub(crate) fn backend_failure(e: &StepError) -> bool {
    use scoria_storage::StorageError as S;
    let Some(Error::Internal {
        source: Some(src), ..
    }) = e.downcast_ref::<Error>()
    else {
        return false;
    };
    match src.downcast_ref::<S>() {
        Some(
            S::NoSpace
            | S::Io { .. }
            | S::Qemu { .. }
            | S::QemuOutput { .. }
            | S::Unsupported(_)
            | S::ObjectStore { .. },
        ) => true,
        Some(S::Failpoint(f)) => !f.is_crash(),
        // A missing or mis-shaped image, a refused or bad one: the
        // volume's data, which no other backend would make better.
        _ => false,
    }
}

/// After making the data of attempt `place` failed with `err` (the backend's
/// failure) and what was made is removed: in one fenced transaction, mark
/// the attempt failed and either place the volume on the next best backend
/// not tried yet (`Ok`: the loop goes on) or give up (`Err`: the error
/// listing the attempts).
pub(crate) async fn reschedule(
    cx: &Cx<VolumeCreate>,
    place: &Placement,
    err: &StepError,
) -> Result<(), StepError> {
    let id = cx.params.volume_id;
    let why = err.chain();
    cx.failpoints().hit("volume_create.rescheduling")?;
    let (mut tx, term) = cx.begin_held().await?;
    let c: &mut Conn = &mut tx;
    let attempt = place.attempt.max(1);
    let note = place
        .pinned
        .as_ref()
        .map(|p| format!("{why} (not rescheduled: the volume must be on {p})"));
    records::placement_mark_failed(c, id, attempt, note.as_deref().unwrap_or(&why)).await?;
    let rows = records::placement_list(c, id).await?;
    let tried: Vec<(String, String)> = rows
        .iter()
        .filter_map(|r| Some((r.backend.clone()?, r.outcome.clone())))
        .collect();
    let summary = |extra: &str| {
        let attempts: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "attempt {} on {}: {}",
                    r.attempt,
                    r.backend.as_deref().unwrap_or("no backend"),
                    r.outcome
                )
            })
            .collect();
        StepError::new(Error::Internal {
            message: format!(
                "The volume could not be created ({}){extra}.",
                attempts.join("; ")
            ),
            source: None,
        })
    };
    if place.pinned.is_some() {
        cx.commit_held(tx, term).await?;
        return Err(err.clone());
    }
    if attempt >= i64::from(max_attempts(&cx.env)) {
        cx.commit_held(tx, term).await?;
        return Err(summary(&format!(
            "; {attempt} attempt(s), the most allowed"
        )));
    }
    let req = request_of(cx, c).await?;
    let d = decide(&cx.env, c, &req, None, &tried).await?;
    let backend = match d.chosen {
        Ok(b) => b,
        Err(_) => {
            records::placement_record(
                c,
                &NewPlacement {
                    volume_id: id,
                    attempt: attempt + 1,
                    backend: None,
                    outcome: records::NO_VALID_BACKEND,
                    decision: &d.decision,
                    plan: None,
                },
            )
            .await?;
            cx.commit_held(tx, term).await?;
            return Err(summary("; no other backend fits"));
        }
    };
    // The failed attempt's records go; the volume gets the next one's.
    unplace_current(cx, c, place).await?;
    volumes::volume_set_status(
        c,
        id,
        &[VolumeStatus::Downloading, VolumeStatus::RestoringBackup],
        VolumeStatus::Creating,
    )
    .await?;
    super::place_on(
        cx,
        c,
        &backend,
        super::source::DataPlan::default(),
        attempt + 1,
        d.decision,
        None,
    )
    .await?;
    cx.commit_held(tx, term).await?;
    cx.failpoints().hit("volume_create.rescheduled")?;
    tracing::info!(volume = %id, from = %place.backend, to = %backend, attempt = attempt + 1, "volume rescheduled");
    Ok(())
}

/// Drop the records of the placement `place` (its data is gone): the
/// volume's image and what the plan recorded for its source.
pub(crate) async fn unplace_current(
    cx: &Cx<VolumeCreate>,
    c: &mut Conn,
    place: &Placement,
) -> Result<(), StepError> {
    let id = cx.params.volume_id;
    if let Some(v) = volumes::volume_get(c, id).await?
        && let Some(image) = v.image_id
    {
        volumes::volume_set_image(c, id, None).await?;
        images::image_delete(c, image).await?;
    }
    super::source::unplan(c, Some(place)).await
}

/// The attempts of a volume, one line for a user message (`""` with at
/// most one attempt).
pub(crate) async fn attempts_note(c: &mut Conn, volume: VolumeId) -> Result<String, StepError> {
    let rows = records::placement_list(c, volume).await?;
    if rows.len() < 2 {
        return Ok(String::new());
    }
    let tried: Vec<String> = rows
        .iter()
        .map(|r| match &r.backend {
            Some(b) => format!("{b} ({})", r.outcome),
            None => "no other backend fitted".to_owned(),
        })
        .collect();
    Ok(format!(
        " Tried {} time(s): {}.",
        rows.len(),
        tried.join(", ")
    ))
}
