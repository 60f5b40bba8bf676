//! Delete a group and, when asked, its volumes.
//!
//! ```text
//!  begin_delete ───────────────► delete_volumes ────────────► remove_group
//!   checks the rules, records     one volume_delete flow per   drops the group
//!   the members, moves the        member, started and waited   (only once no
//!   group to `deleting`           for; after a crash it waits  volume points
//!   undo: back to the prior       again for those still        at it): its
//!   status, or `error` once a     running and starts the rest  quota goes
//!   member is gone or failed      (idempotent)                 with it
//! ```
//!
//! A group is a database row, but deleting its volumes touches the backends,
//! and each volume already has a crash-safe delete: the volume delete flow.
//! So this flow drives one of those per member instead of repeating their
//! steps. The members are recorded when the group becomes `deleting`; from
//! then on nothing can join it (adding a volume or creating one in the group
//! needs it `available`). Each child flow resumes on its own after a crash;
//! `delete_volumes` runs again, waits for the children still running, starts
//! one for each member still there and judges the outcome from what exists:
//! every member gone, or the step fails. So after any crash the group ends
//! deleted, back in its prior status (nothing was touched), or `error` (some
//! members were deleted or failed to be): never `deleting` for good.
//!
//! Refused before anything changes (Cinder's rules): while another flow works
//! on the group, or a group is being made from it; a group with volumes unless
//! `delete_volumes`; without it, a group that is not `available` or `error`
//! (with it, any status: an admin may have reset it); a member that is
//! attached, busy, being copied, on a frozen backend, or in a status a group
//! delete does not delete from.

use scoria_flows::{Cx, Flow, FlowMeta, Step, StepError};
use scoria_model::group::GroupStatus;
use scoria_model::volume::{AttachStatus, VolumeStatus};
use scoria_model::{GroupId, VolumeId};
use scoria_store::{Conn, flows as flow_store, groups, volumes};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Env;
use crate::error::Error;
use crate::flows::volume_delete;

pub struct GroupDelete;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub group_id: GroupId,
    /// The group's project (checked again by the first step).
    pub project_id: String,
    pub delete_volumes: bool,
    /// The request that asked for the delete (named by the volume deletes).
    #[serde(default)]
    pub request_id: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Begun {
    prior_status: GroupStatus,
    /// The members when the group became `deleting`, with their status then.
    volumes: Vec<(VolumeId, VolumeStatus)>,
}

impl Flow for GroupDelete {
    const KIND: &'static str = "group_delete";
    type Params = Params;
    type Env = Env;

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::db("begin_delete", |cx, c| Box::pin(begin_delete(cx, c)))
                .undo_db(|cx, c| Box::pin(abort_delete(cx, c))),
            Step::external("delete_volumes", |cx| Box::pin(delete_volumes(cx))),
            Step::db("remove_group", |cx, c| Box::pin(remove_group(cx, c))),
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
    Error::InvalidState(format!("Invalid group: {msg}")).into()
}

async fn begin_delete(cx: &Cx<GroupDelete>, c: &mut Conn) -> Result<Value, StepError> {
    let p = &cx.params;
    let id = p.group_id;
    let g = groups::group_get(c, id)
        .await?
        .filter(|g| g.project_id == p.project_id)
        .ok_or_else(|| crate::rules::groups::group_not_found(id))?;
    if let Some(f) = flow_store::flow_list_unsettled_for(c, &id.to_string())
        .await?
        .into_iter()
        .find(|f| f.id != cx.flow_id && f.state.is_active())
    {
        return Err(invalid_group(format!(
            "Group {id} has an operation in progress ({}).",
            f.kind
        )));
    }
    if !p.delete_volumes && !GroupStatus::DELETABLE.contains(&g.status) {
        return Err(invalid_group(format!(
            "Group status must be available or error, but current status is: {}",
            g.status
        )));
    }
    if let Some(copy) = groups::group_being_made_from(c, id).await? {
        return Err(invalid_group(format!(
            "Group {copy} is being made from group {id}; delete it when that is done."
        )));
    }
    let members = groups::group_volume_ids(c, id).await?;
    if !members.is_empty() && !p.delete_volumes {
        return Err(invalid_group(format!(
            "Group {id} still contains volumes. The delete-volumes flag is required to delete it."
        )));
    }
    let mut recorded = Vec::with_capacity(members.len());
    for vid in &members {
        let Some(v) = volumes::volume_get(c, *vid).await? else {
            continue;
        };
        recorded.push((v.id, v.status));
        if v.attach_status != AttachStatus::Detached {
            return Err(invalid_group(format!(
                "Volume {vid} in group {id} is attached. Need to detach first."
            )));
        }
        if !crate::rules::groups::deletable_member(v.status) {
            return Err(invalid_group(format!(
                "Volume {vid} in group {id} is {}; a group delete deletes volumes that are available, error, error_restoring, error_extending or error_deleting.",
                v.status
            )));
        }
        if let Some(f) = flow_store::flow_list_unsettled_for(c, &vid.to_string())
            .await?
            .into_iter()
            .find(|f| f.state.is_active())
        {
            return Err(invalid_group(format!(
                "Volume {vid} in group {id} has an operation in progress ({}).",
                f.kind
            )));
        }
        if let Some(clone) = volumes::volume_clones_in_progress(c, *vid).await?.first() {
            return Err(invalid_group(format!(
                "Volume {vid} in group {id} is being copied to volume {clone}."
            )));
        }
        if !scoria_store::snapshots::snapshot_list_for_volume(c, *vid)
            .await?
            .is_empty()
        {
            return Err(invalid_group(format!(
                "Volume {vid} in group {id} still has dependent snapshots."
            )));
        }
        crate::rules::hosts::assert_not_frozen(c, v.backend.as_deref()).await?;
    }
    let flow = cx.flow_id.to_string();
    if !groups::group_set_status(c, id, &[g.status], GroupStatus::Deleting, Some(&flow)).await? {
        return Err(invalid_group(format!("Group {id} changed status.")));
    }
    let begun = Begun {
        prior_status: g.status,
        volumes: recorded,
    };
    serde_json::to_value(begun).map_err(|e| StepError::msg(e.to_string()))
}

/// Undo of `begin_delete`: when every member is still there in the status
/// it had, nothing was touched and the group gets its prior status back;
/// otherwise it is `error`, for its owner to look at (its remaining members
/// say what happened to them: `error_deleting` tells why, in a user message).
async fn abort_delete(cx: &Cx<GroupDelete>, c: &mut Conn) -> Result<(), StepError> {
    let begun: Begun = cx.output("begin_delete")?;
    let mut touched = false;
    for (vid, status) in &begun.volumes {
        let now = volumes::volume_get(c, *vid).await?.map(|v| v.status);
        touched |= now != Some(*status);
    }
    let to = if touched {
        GroupStatus::Error
    } else {
        begun.prior_status
    };
    groups::group_set_status(c, cx.params.group_id, &[GroupStatus::Deleting], to, None).await?;
    Ok(())
}

/// Delete every member through its own volume delete flow and wait for them
/// all (see the module doc: idempotent, judged from what exists).
async fn delete_volumes(cx: &Cx<GroupDelete>) -> Result<Value, StepError> {
    let begun: Begun = cx.output("begin_delete")?;
    let id = cx.params.group_id;
    let mut started = Vec::new();
    for (vid, _) in &begun.volumes {
        // A delete started by an earlier run (resumed after a crash) ends first.
        cx.wait_settled(&vid.to_string()).await?;
        let exists = {
            let mut c = cx.env.store.read().await.map_err(Error::from)?;
            volumes::volume_get(&mut c, *vid).await?.is_some()
        };
        if exists {
            started.push(
                cx.start_flow::<volume_delete::VolumeDelete>(volume_delete::Params {
                    volume_id: *vid,
                    project_id: Some(cx.params.project_id.clone()),
                    force: false,
                    request_id: cx.params.request_id.clone(),
                    group_id: Some(id),
                    cascade: false,
                    unmanage: false,
                })?,
            );
        }
    }
    let mut first_error = None;
    for h in &started {
        if let Err(e) = cx.wait_flow(h).await {
            if e.is_interrupted() {
                return Err(e);
            }
            first_error.get_or_insert(e);
        }
    }
    let left: Vec<VolumeId> = {
        let mut c = cx.env.store.read().await.map_err(Error::from)?;
        groups::group_volume_ids(&mut c, id).await?
    };
    if !left.is_empty() {
        let why = first_error.map(|e| format!(": {e}")).unwrap_or_default();
        return Err(invalid_group(format!(
            "{} volume(s) of group {id} could not be deleted{why}",
            left.len()
        )));
    }
    Ok(json!({ "deleted": begun.volumes.len() }))
}

async fn remove_group(cx: &Cx<GroupDelete>, c: &mut Conn) -> Result<Value, StepError> {
    let id = cx.params.group_id;
    if !groups::group_delete(c, id).await? {
        return Err(invalid_group(format!(
            "Group {id} is no longer being deleted, or still has volumes."
        )));
    }
    Ok(json!(true))
}

#[cfg(all(test, feature = "failpoints"))]
mod tests {
    use scoria_flows::Engine;
    use scoria_flows::testkit::{BoxFut, Expect};
    use scoria_model::group::GroupStatus;
    use scoria_model::volume::VolumeStatus;
    use scoria_model::{GroupId, VolumeId};

    use super::{GroupDelete, Params};
    use crate::Env;
    use crate::flows::testing::{self, PROJECT, Scenario, World, text};

    /// An available group with `members` (two 1 GiB volumes, or none),
    /// deleted with its volumes.
    struct Delete {
        group: GroupId,
        members: Vec<VolumeId>,
    }

    impl Delete {
        fn new(n: usize) -> Delete {
            Delete {
                group: GroupId::new(),
                members: (0..n).map(|_| VolumeId::new()).collect(),
            }
        }
    }

    impl Scenario for Delete {
        type F = GroupDelete;
        const NAME: &'static str = "group_delete";

        fn prepare<'a>(&'a self, w: &'a World) -> BoxFut<'a, ()> {
            Box::pin(w.create_group(self.group, &self.members))
        }

        fn params(&self) -> Params {
            Params {
                group_id: self.group,
                project_id: PROJECT.into(),
                delete_volumes: true,
                request_id: Some("req-test".into()),
            }
        }

        /// Done, the group and its volumes are gone; failed, the group is
        /// back (`available`, every volume as it was) or `error` (something
        /// was touched); a crash ends in one of those. A volume left in
        /// `error_deleting` was told to its project once.
        fn check<'a>(
            &'a self,
            w: &'a World,
            e: &'a Engine<Env>,
            expect: Expect,
        ) -> BoxFut<'a, Result<(), String>> {
            Box::pin(async move {
                let g = {
                    let mut c = e.store().read().await.map_err(text)?;
                    scoria_store::groups::group_get(&mut c, self.group)
                        .await
                        .map_err(text)?
                        .map(|g| g.status)
                };
                let mut left = Vec::new();
                for id in &self.members {
                    let status = w.volume(e, *id).await?.map(|v| v.status);
                    let told = w.messages_about(e, id).await?;
                    let want = match status {
                        Some(s) if s.is_error() => told == 1,
                        Some(_) => told == 0,
                        None => told <= 1,
                    };
                    if !want {
                        return Err(format!(
                            "volume {id} is {status:?} and {told} messages tell of it"
                        ));
                    }
                    left.extend(status);
                }
                let untouched = left.len() == self.members.len()
                    && left.iter().all(|s| *s == VolumeStatus::Available);
                let ok = match (g, expect) {
                    (None, Expect::Done | Expect::Either) => left.is_empty(),
                    (Some(GroupStatus::Available), Expect::Failed | Expect::Either) => untouched,
                    (Some(GroupStatus::Error), Expect::Failed | Expect::Either) => true,
                    _ => false,
                };
                if ok {
                    Ok(())
                } else {
                    Err(format!(
                        "expected {expect:?}: group is {g:?}, volumes {left:?}"
                    ))
                }
            })
        }
    }

    #[tokio::test]
    async fn passes_the_generic_flow_tests_on_the_file_backend() {
        let report = testing::generic(|| Delete::new(2)).await;
        println!("group_delete: {report:?}");
        assert!(report.crash_points >= 10, "{report:?}");
    }

    #[tokio::test]
    async fn an_empty_group_passes_the_generic_flow_tests() {
        let report = testing::generic(|| Delete::new(0)).await;
        println!("group_delete (empty group): {report:?}");
        assert!(report.crash_points >= 3, "{report:?}");
    }
}
