//! Create a group from a source group: a new group with a clone of each of the
//! source's volumes (Cinder's `create-from-src` with `source_group_id`).
//!
//! ```text
//!  create_group ───────────► start_clones ────────────► wait_clones ──► mark_available
//!   checks the source and     one volume create flow     waits for every   `creating` →
//!   the quota, records the    (a clone) per source       clone; all must   `available`
//!   plan (a new volume id     volume, each waited for    be `available`
//!   per source volume) and    until its entry and quota
//!   makes the group           are committed
//!   `creating`
//!   undo: drop the group      undo: when it failed
//!   when it has no volume     itself (before the API
//!   and the API was not       answered), delete the
//!   answered yet; else        clones it made (volume
//!   `error`                   delete flows)
//! ```
//!
//! The new group has the source's group type, volume types, zone and backend:
//! a clone is made on its source's backend, which is the source group's.
//! Each clone is an ordinary clone (`volume_create` with `source_volid`), so
//! its source is held while it is read and a crash in the middle of a copy is
//! resumed or undone by the clone's own flow; this flow only starts them and
//! waits. Its steps are idempotent the same way as `group_delete`'s: the ids
//! of the clones are chosen by the first step, so a step run again after a
//! crash waits for the clones still running, starts the missing ones and
//! judges the outcome from what exists.
//!
//! The API answers (202) once `start_clones` is done: the group and every
//! clone exist and their quota is committed. A failure before then (the
//! source changed, a quota exceeded) leaves nothing behind and is the API's
//! error (400, 413). A failure after it (a copy that failed) leaves the group
//! `error` with its clones as their flows left them (a failed clone is `error`
//! and its project was told why): the user deletes the group with its
//! volumes. After any crash the group ends `available`, `error`, or gone
//! (when the API had not answered) — never `creating` for good.

use std::collections::BTreeMap;

use scoria_flows::{Cx, Flow, FlowMeta, Step, StepError};
use scoria_model::group::GroupStatus;
use scoria_model::quota::{self, QuotaKey, QuotaResource};
use scoria_model::volume::VolumeStatus;
use scoria_model::{GroupId, VolumeId, VolumeTypeId};
use scoria_store::{Conn, groups, quotas, volumes};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Env;
use crate::error::Error;
use crate::flows::{volume_create, volume_delete};

pub struct GroupCreateFromSrc;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    /// The new group.
    pub group_id: GroupId,
    pub source_group_id: GroupId,
    pub project_id: String,
    pub user_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    /// The request that asked for the group (named by a failure message).
    #[serde(default)]
    pub request_id: Option<String>,
}

/// One clone to make: its id, chosen once, and its source.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Planned {
    volume: VolumeId,
    source: VolumeId,
    size: i64,
    volume_type_id: VolumeTypeId,
    multiattach: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Plan {
    zone: String,
    clones: Vec<Planned>,
}

impl Flow for GroupCreateFromSrc {
    const KIND: &'static str = "group_create_from_src";
    type Params = Params;
    type Env = Env;

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::db("create_group", |cx, c| Box::pin(create_group(cx, c)))
                .undo_db(|cx, c| Box::pin(undo_group(cx, c))),
            Step::external("start_clones", |cx| Box::pin(start_clones(cx)))
                .undo_external(|cx| Box::pin(delete_clones(cx))),
            Step::external("wait_clones", |cx| Box::pin(wait_clones(cx))),
            Step::db("mark_available", |cx, c| Box::pin(mark_available(cx, c))),
        ]
    }

    fn meta(p: &Params) -> FlowMeta {
        FlowMeta {
            resource_type: Some("group"),
            resource_id: Some(p.group_id.to_string()),
            project_id: Some(p.project_id.clone()),
        }
    }
}

fn invalid_group(msg: String) -> StepError {
    Error::Invalid(format!("Invalid group: {msg}")).into()
}

/// The steps before the API's answer: a failure there leaves nothing behind.
fn failed_before_answer(cx: &Cx<GroupCreateFromSrc>) -> bool {
    cx.failure()
        .is_some_and(|f| f.step == "create_group" || f.step == "start_clones")
}

/// Check the source (the caller checked it too; things may have changed) and
/// the quota of the group and of every clone, choose the clones' ids and make
/// the group, all in one transaction.
async fn create_group(cx: &Cx<GroupCreateFromSrc>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    let src = groups::group_get(c, p.source_group_id)
        .await?
        .filter(|g| g.project_id == p.project_id)
        .ok_or_else(|| crate::rules::groups::group_not_found(p.source_group_id))?;
    check_source(c, &src).await?;
    let mut clones = Vec::new();
    for vid in groups::group_volume_ids(c, src.id).await? {
        let Some(v) = volumes::volume_get(c, vid).await? else {
            continue;
        };
        clones.push(Planned {
            volume: VolumeId::new(),
            source: v.id,
            size: v.size,
            volume_type_id: v.volume_type_id,
            multiattach: v.multiattach,
        });
    }
    // The group and every clone must fit now (each clone reserves its own
    // quota when it starts; a create racing this one may still win).
    let mut deltas: BTreeMap<QuotaKey, i64> = BTreeMap::new();
    deltas.insert(QuotaResource::Groups.into(), 1);
    for cl in &clones {
        for (k, d) in quota::volume_deltas(cl.volume_type_id, cl.size) {
            *deltas.entry(k).or_default() += d;
        }
    }
    let deltas: Vec<(QuotaKey, i64)> = deltas.into_iter().collect();
    let largest = clones.iter().map(|cl| cl.size).max();
    quotas::quota_check(c, &p.project_id, &deltas, largest)
        .await
        .map_err(Error::from)?;
    groups::group_create(
        c,
        &groups::NewGroup {
            id: p.group_id,
            project_id: p.project_id.clone(),
            user_id: p.user_id.clone(),
            name: p.name.clone(),
            description: p.description.clone(),
            status: GroupStatus::Creating,
            availability_zone: src.availability_zone.clone(),
            group_type_id: src.group_type_id,
            backend: src.backend.clone(),
            source_group_id: Some(src.id),
            last_flow_id: Some(cx.flow_id.to_string()),
            volume_type_ids: src.volume_type_ids.clone(),
        },
    )
    .await?;
    serde_json::to_value(Plan {
        zone: src.availability_zone,
        clones,
    })
    .map_err(|e| StepError::msg(e.to_string()))
}

/// What a source group must be: `available`, with volumes, each readable.
pub(crate) async fn check_source(c: &mut Conn, src: &groups::Group) -> Result<(), Error> {
    if src.status != GroupStatus::Available {
        return Err(Error::InvalidState(format!(
            "Invalid group: Source group {} status must be available, but current status is: {}.",
            src.id, src.status
        )));
    }
    let members = groups::group_volume_ids(c, src.id).await?;
    if members.is_empty() {
        return Err(Error::Invalid(
            "Invalid group: Source Group is empty. No group will be created.".into(),
        ));
    }
    for vid in members {
        if let Some(v) = volumes::volume_get(c, vid).await?
            && !VolumeStatus::READABLE.contains(&v.status)
        {
            return Err(Error::InvalidState(format!(
                "Invalid volume: Volume {vid} of source group {} is {}; its volumes must be available or in-use to be copied.",
                src.id, v.status
            )));
        }
    }
    Ok(())
}

/// Undo of `create_group`: before the API answered, the group goes if no
/// volume is left in it; after, or when clones could not be deleted, it
/// stays, as `error`.
async fn undo_group(cx: &Cx<GroupCreateFromSrc>, c: &mut Conn) -> Result<(), StepError> {
    let id = cx.params.group_id;
    if failed_before_answer(cx) && groups::group_purge(c, id).await? {
        return Ok(());
    }
    groups::group_set_status(c, id, &[GroupStatus::Creating], GroupStatus::Error, None).await?;
    Ok(())
}

/// Start the clones that do not exist yet and wait until each has its entry
/// and quota committed (or failed).
async fn start_clones(cx: &Cx<GroupCreateFromSrc>) -> Result<Value, StepError> {
    let plan: Plan = cx.output("create_group")?;
    let p = &cx.params;
    for cl in &plan.clones {
        let id = cl.volume.to_string();
        // A create started by an earlier run and unwinding ends first.
        if exists(cx, cl.volume).await? {
            continue;
        }
        cx.wait_settled(&id).await?;
        if exists(cx, cl.volume).await? {
            continue;
        }
        let h = cx.start_flow::<volume_create::VolumeCreate>(volume_create::Params {
            volume_id: cl.volume,
            project_id: p.project_id.clone(),
            user_id: p.user_id.clone(),
            name: None,
            description: None,
            size: cl.size,
            availability_zone: Some(plan.zone.clone()),
            default_zone: plan.zone.clone(),
            bootable: false,
            multiattach: cl.multiattach,
            volume_type_id: cl.volume_type_id,
            metadata: BTreeMap::new(),
            request_id: p.request_id.clone(),
            source_volid: Some(cl.source),
            snapshot_id: None,
            glance_image_id: None,
            glance_image_virtual_size: None,
            backup: None,
            hints: Default::default(),
            manage: None,
            group_id: Some(p.group_id),
        })?;
        match h.wait_step("commit_quota").await {
            Ok(()) => {}
            Err(scoria_flows::Outcome::Failed(e)) => return Err(e),
            Err(scoria_flows::Outcome::Interrupted) => return Err(StepError::interrupted()),
            Err(other) => return Err(StepError::msg(format!("{other:?}"))),
        }
    }
    Ok(json!({ "clones": plan.clones.len() }))
}

async fn exists(cx: &Cx<GroupCreateFromSrc>, id: VolumeId) -> Result<bool, StepError> {
    let mut c = cx.env.store.read().await.map_err(Error::from)?;
    Ok(volumes::volume_get(&mut c, id).await?.is_some())
}

/// Undo of `start_clones`, when it failed itself (before the API answered):
/// delete the clones it made, each through its own volume delete flow, once
/// its create has ended. After the answer the clones stay (see the module
/// doc). A clone that cannot be deleted stays, and the group with it.
async fn delete_clones(cx: &Cx<GroupCreateFromSrc>) -> Result<(), StepError> {
    if !failed_before_answer(cx) {
        return Ok(());
    }
    let Some(plan) = cx.output_opt::<Plan>("create_group") else {
        return Ok(());
    };
    let mut started = Vec::new();
    for cl in &plan.clones {
        cx.wait_settled(&cl.volume.to_string()).await?;
        if exists(cx, cl.volume).await? {
            started.push(
                cx.start_flow::<volume_delete::VolumeDelete>(volume_delete::Params {
                    volume_id: cl.volume,
                    project_id: Some(cx.params.project_id.clone()),
                    force: false,
                    request_id: cx.params.request_id.clone(),
                    group_id: Some(cx.params.group_id),
                    cascade: false,
                    unmanage: false,
                })?,
            );
        }
    }
    for h in &started {
        if let Err(e) = cx.wait_flow(h).await
            && e.is_interrupted()
        {
            return Err(e);
        }
    }
    Ok(())
}

/// Wait for every clone to be made; all must be `available`.
async fn wait_clones(cx: &Cx<GroupCreateFromSrc>) -> Result<Value, StepError> {
    let plan: Plan = cx.output("create_group")?;
    let mut failed = Vec::new();
    for cl in &plan.clones {
        cx.wait_settled(&cl.volume.to_string()).await?;
        let mut c = cx.env.store.read().await.map_err(Error::from)?;
        let status = volumes::volume_get(&mut c, cl.volume)
            .await?
            .map(|v| v.status);
        if status != Some(VolumeStatus::Available) {
            failed.push(cl.volume);
        }
    }
    if !failed.is_empty() {
        return Err(invalid_group(format!(
            "{} volume(s) of group {} could not be copied: {failed:?}",
            failed.len(),
            cx.params.group_id
        )));
    }
    Ok(Value::Null)
}

async fn mark_available(cx: &Cx<GroupCreateFromSrc>, c: &mut Conn) -> Result<Value, StepError> {
    let id = cx.params.group_id;
    if !groups::group_set_status(
        c,
        id,
        &[GroupStatus::Creating],
        GroupStatus::Available,
        None,
    )
    .await?
    {
        return Err(invalid_group(format!(
            "Group {id} is no longer being created."
        )));
    }
    Ok(Value::Null)
}

#[cfg(all(test, feature = "failpoints"))]
mod tests {
    use scoria_flows::Engine;
    use scoria_flows::testkit::{BoxFut, Expect};
    use scoria_model::group::GroupStatus;
    use scoria_model::volume::VolumeStatus;
    use scoria_model::{GroupId, VolumeId};
    use scoria_store::groups;

    use super::{GroupCreateFromSrc, Params};
    use crate::Env;
    use crate::flows::testing::{self, PROJECT, Scenario, USER, World, text};

    /// A copy of an available group holding two 1 GiB volumes.
    struct Copy {
        source: GroupId,
        members: Vec<VolumeId>,
        copy: GroupId,
    }

    impl Scenario for Copy {
        type F = GroupCreateFromSrc;
        const NAME: &'static str = "group_create_from_src";

        fn prepare<'a>(&'a self, w: &'a World) -> BoxFut<'a, ()> {
            Box::pin(w.create_group(self.source, &self.members))
        }

        fn params(&self) -> Params {
            Params {
                group_id: self.copy,
                source_group_id: self.source,
                project_id: PROJECT.into(),
                user_id: USER.into(),
                name: Some("copy".into()),
                description: None,
                request_id: Some("req-test".into()),
            }
        }

        /// Done, the copy is `available` with one `available` clone per
        /// source volume, of its size; otherwise it is gone (the failure came
        /// before the answer) or `error`. Whatever happened, the source group
        /// and its volumes are as they were, and a clone in `error` was told
        /// to its project once.
        fn check<'a>(
            &'a self,
            w: &'a World,
            e: &'a Engine<Env>,
            expect: Expect,
        ) -> BoxFut<'a, Result<(), String>> {
            Box::pin(async move {
                let mut c = e.store().read().await.map_err(text)?;
                let src = groups::group_get(&mut c, self.source)
                    .await
                    .map_err(text)?
                    .ok_or("the source group is gone")?;
                let src_members = groups::group_volume_ids(&mut c, self.source)
                    .await
                    .map_err(text)?;
                if src.status != GroupStatus::Available || src_members.len() != self.members.len() {
                    return Err(format!("the source group changed: {src:?}"));
                }
                let copy = groups::group_get(&mut c, self.copy).await.map_err(text)?;
                let clones = groups::group_volume_ids(&mut c, self.copy)
                    .await
                    .map_err(text)?;
                drop(c);
                for id in &self.members {
                    let v = w.volume(e, *id).await?.map(|v| (v.status, v.size));
                    if v != Some((VolumeStatus::Available, 1)) {
                        return Err(format!("source volume {id} is {v:?}"));
                    }
                }
                let mut states = Vec::new();
                for id in &clones {
                    let v = w.volume(e, *id).await?.ok_or("a member vanished")?;
                    w.check_told(e, *id).await?;
                    states.push((v.status, v.size, v.source_volid.clone()));
                }
                let complete = states.len() == self.members.len()
                    && states.iter().all(|(s, size, from)| {
                        *s == VolumeStatus::Available
                            && *size == 1
                            && from
                                .as_ref()
                                .is_some_and(|f| self.members.iter().any(|m| m.to_string() == *f))
                    });
                let status = copy.as_ref().map(|g| g.status);
                let ok = match (status, expect) {
                    (Some(GroupStatus::Available), Expect::Done | Expect::Either) => complete,
                    (None, Expect::Failed | Expect::Either) => clones.is_empty(),
                    (Some(GroupStatus::Error), Expect::Failed | Expect::Either) => true,
                    _ => false,
                };
                if ok {
                    Ok(())
                } else {
                    Err(format!(
                        "expected {expect:?}: copy is {status:?}, clones {states:?}"
                    ))
                }
            })
        }
    }

    #[tokio::test]
    async fn passes_the_generic_flow_tests_on_the_file_backend() {
        let report = testing::generic(|| Copy {
            source: GroupId::new(),
            members: vec![VolumeId::new(), VolumeId::new()],
            copy: GroupId::new(),
        })
        .await;
        println!("group_create_from_src: {report:?}");
        assert!(report.crash_points >= 10, "{report:?}");
    }
}
