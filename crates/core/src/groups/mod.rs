//! Generic volume groups and group types (Cinder v3, microversions 3.11 on).
//!
//! **Group types** (in `types.rs`) are admin-managed names with group specs, like volume
//! types for groups. Every project lists and reads the public ones; the
//! private ones and the specs are for admins (Cinder has no group type access
//! API). A type that groups have cannot be deleted.
//!
//! **Groups** gather a project's volumes. A group names its group type and
//! the volume types it accepts, and sits on one backend, chosen when it is
//! made among those that suit every one of its volume types (and its group
//! specs): every volume of the group lives there, as in Cinder, so that a
//! backend could one day snapshot the group consistently.
//!
//! Why some operations are flows and others are not:
//! - *create* changes only the database: placement is a read, then the quota
//!   check and the insert are one write transaction (so concurrent creates
//!   never overshoot the `groups` quota, whose usage is derived from the rows).
//!   The group is `available` at once; when no backend suits it the request is
//!   refused (400) rather than leaving a group in `error`, because the answer
//!   is known before anything is written.
//! - *update* (name, description, adding and removing volumes) is one
//!   transaction of conditional updates: a volume is added only while it is
//!   `available` or `in-use` and in no group, and only while the group is
//!   `available` (held in the same transaction, so a delete cannot start under
//!   it). Scoria therefore never shows `updating`.
//! - *delete* has effects outside the database when the group has volumes: it
//!   is the `group_delete` flow, which marks the group `deleting`, runs one
//!   volume delete flow per volume and waits for them, then removes the group.
//!   After a crash the flow resumes and waits for the volume deletes again
//!   (they resume on their own), so the group ends gone, back as it was, or
//!   `error` — never `deleting` for good.
//! - *create-from-src* (3.14) makes a group and a clone of each volume of the
//!   source group: the `group_create_from_src` flow, which starts one volume
//!   clone flow per source volume and waits for them (its module doc draws
//!   it). The API answers once every clone exists with its quota committed;
//!   the group turns `available` when every copy is made, `error` if one
//!   failed. A group snapshot as the source is a 404 (no group snapshots).
//!
//! A volume of a group cannot be deleted on its own (delete the group with
//! `delete-volumes`, or remove the volume from the group first), cannot be
//! offered for transfer (it would leave its group's project), and can only be
//! retyped to a type of its group: Cinder's rules, which keep every member in
//! its group's project, on its group's backend and of one of its group's types.

use std::collections::BTreeSet;

use scoria_model::group::{ADDABLE_VOLUME, GroupStatus, REMOVABLE_VOLUME};
use scoria_model::quota::{QuotaKey, QuotaResource};
use scoria_model::volume::{MAX_DESCRIPTION_LEN, MAX_NAME_LEN};
use scoria_model::{GroupId, VolumeId};
use scoria_store::groups::{self as store, GroupQuery, NewGroup};
pub use scoria_store::groups::{Group, GroupType, SortDir, SortKey};
use scoria_store::{flows as flow_store, quotas, volumes as volume_store};

use crate::App;
use crate::context::{Context, Op};
use crate::error::{Error, Result, from_outcome};
use crate::flows::{group_create_from_src, group_delete};
use crate::rules::groups::{group_not_found, visible};

mod types;

pub use crate::volume_types::PublicFilter;
use types::resolve_type;
pub use types::{
    GroupTypeChange, NewGroupType, reads_specs, spec_delete, spec_get, specs_get, specs_set,
    type_create, type_delete, type_get, type_list, type_update,
};

/// Longest group type name, description, spec key and value.
pub const MAX_LEN: usize = 255;

/// A new group, as parsed from the API.
#[derive(Clone, Debug, Default)]
pub struct CreateRequest {
    pub name: Option<String>,
    pub description: Option<String>,
    /// Id or name.
    pub group_type: String,
    /// Ids or names, at least one.
    pub volume_types: Vec<String>,
    pub availability_zone: Option<String>,
}

/// Filters and paging of a group list, as parsed from the API.
#[derive(Clone, Debug, Default)]
pub struct ListRequest {
    /// Admins only: every project (or `project_id` when given).
    pub all_projects: bool,
    pub project_id: Option<String>,
    pub name: Option<String>,
    pub status: Option<String>,
    pub sort: Vec<(SortKey, SortDir)>,
    pub marker: Option<GroupId>,
    pub offset: Option<i64>,
    pub limit: Option<i64>,
}

/// A group made from a source (`POST /groups/action`, `create-from-src`).
#[derive(Clone, Debug, Default)]
pub struct FromSourceRequest {
    pub name: Option<String>,
    pub description: Option<String>,
    pub source_group: Option<GroupId>,
    pub group_snapshot: Option<String>,
}

/// A change to a group (`PUT /groups/{id}`); `None` keeps a text (an empty
/// string clears it).
#[derive(Clone, Debug, Default)]
pub struct UpdateRequest {
    pub name: Option<String>,
    pub description: Option<String>,
    /// Volume ids, as given (Cinder's comma-separated lists, split).
    pub add_volumes: Vec<String>,
    pub remove_volumes: Vec<String>,
}

// ---------------------------------------------------------------------------
// Errors and lookups

/// Parse a group id from a URL segment: anything that is not a UUID names no
/// group (404).
pub fn parse_id(s: &str) -> Result<GroupId> {
    s.parse::<GroupId>().map_err(|_| group_not_found(s))
}

/// May the caller see which project a group belongs to (3.58 views)?
pub fn reads_project(ctx: &Context) -> bool {
    ctx.authorize(Op::GroupProjectAttribute).is_ok()
}

// ---------------------------------------------------------------------------
// Groups

fn validate_text(name: &Option<String>, description: &Option<String>) -> Result<()> {
    if let Some(n) = name {
        crate::rules::validate::validate_text("name", n, MAX_NAME_LEN)?;
    }
    if let Some(d) = description {
        crate::rules::validate::validate_text("description", d, MAX_DESCRIPTION_LEN)?;
    }
    Ok(())
}

/// Create a group: `available` on the backend that suits all its volume
/// types, counted against the project's `groups` quota (413 when over).
pub async fn create(app: &App, ctx: &Context, req: CreateRequest) -> Result<Group> {
    ctx.authorize(Op::GroupCreate)?;
    let project = ctx.project()?.clone();
    validate_text(&req.name, &req.description)?;
    if req.volume_types.is_empty() {
        return Err(Error::Invalid(format!(
            "volume_types must be provided to create group {}.",
            req.name.as_deref().unwrap_or("")
        )));
    }
    let zones = app.env.availability_zones();
    if let Some(az) = &req.availability_zone
        && !zones.contains(az)
    {
        return Err(Error::Invalid(format!(
            "Invalid input received: Availability zone '{az}' is invalid."
        )));
    }
    let (group_type, types, candidates) = {
        let mut conn = app.store().read().await?;
        if !crate::rules::hosts::scheduler_enabled(&mut conn).await? {
            return Err(Error::Unavailable(
                "The scheduler service is disabled: no group can be created until an administrator enables it.".into(),
            ));
        }
        let group_type = resolve_type(&mut conn, ctx, &req.group_type).await?;
        let mut types = Vec::new();
        let mut seen = BTreeSet::new();
        for wanted in &req.volume_types {
            let t = crate::rules::types::resolve(&mut conn, ctx, Some(wanted)).await?;
            if seen.insert(t.id) {
                types.push(t);
            }
        }
        let candidates = crate::capacity::gather(&app.env, &mut conn).await?;
        (group_type, types, candidates)
    };
    // Every volume of the group will be placed on the group's backend, so it
    // must suit every type (and the group type's specs).
    let requests: Vec<crate::scheduler::Request> = types
        .iter()
        .map(|t| {
            let mut specs = group_type.group_specs.clone();
            specs.extend(t.extra_specs.clone());
            crate::scheduler::Request {
                size_gib: 0,
                availability_zone: req.availability_zone.clone(),
                extra_specs: specs,
                ..Default::default()
            }
        })
        .collect();
    let backend = crate::scheduler::place_group(&app.env.scheduler, &requests, &candidates)
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let zone = app.env.backend(&backend)?.config.availability_zone.clone();
    let id = GroupId::new();
    let mut tx = app.store().begin().await?;
    quotas::quota_check(
        &mut tx,
        &project.0,
        &[(QuotaKey::Global(QuotaResource::Groups), 1)],
        None,
    )
    .await?;
    store::group_create(
        &mut tx,
        &NewGroup {
            id,
            project_id: project.0.clone(),
            user_id: ctx.user_id.0.clone(),
            name: req.name,
            description: req.description,
            status: GroupStatus::Available,
            availability_zone: req.availability_zone.unwrap_or(zone),
            group_type_id: group_type.id,
            backend: Some(backend),
            source_group_id: None,
            last_flow_id: None,
            volume_type_ids: types.iter().map(|t| t.id).collect(),
        },
    )
    .await?;
    let g = store::group_get(&mut tx, id)
        .await?
        .ok_or_else(|| group_not_found(id))?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(g)
}

/// One group.
pub async fn get(app: &App, ctx: &Context, id: GroupId) -> Result<Group> {
    crate::rules::groups::authorize_on(app.store(), ctx, id, Op::GroupGet).await?;
    let mut conn = app.store().read().await?;
    visible(&mut conn, ctx, id).await
}

/// The ids of a group's volumes (`list_volume`, 3.25).
pub async fn volume_ids(app: &App, ctx: &Context, id: GroupId) -> Result<Vec<VolumeId>> {
    crate::rules::groups::authorize_on(app.store(), ctx, id, Op::GroupGet).await?;
    let mut conn = app.store().read().await?;
    visible(&mut conn, ctx, id).await?;
    Ok(store::group_volume_ids(&mut conn, id).await?)
}

/// A page of groups: the caller's project's, or (admins asking for all
/// projects) every project's or the one named.
pub async fn list(app: &App, ctx: &Context, req: ListRequest) -> Result<Vec<Group>> {
    ctx.authorize(Op::GroupList)?;
    let project_id = if req.all_projects && ctx.is_admin() {
        req.project_id
    } else {
        Some(ctx.project()?.0.clone())
    };
    let q = GroupQuery {
        project_id,
        name: req.name,
        status: req.status,
        sort: req.sort,
        marker: req.marker,
        offset: req.offset,
        limit: req.limit,
    };
    let mut conn = app.store().read().await?;
    Ok(store::group_list(&mut conn, &q).await?)
}

fn invalid_volume(msg: String) -> Error {
    Error::Invalid(format!("Invalid volume: {msg}"))
}

/// Change a group's name or description, add volumes to it and remove volumes
/// from it, in one transaction (see the module doc). The group must be
/// `available`. A name or description equal to the current one is no change;
/// a request that changes nothing is refused, as Cinder refuses it.
pub async fn update(app: &App, ctx: &Context, id: GroupId, req: UpdateRequest) -> Result<()> {
    crate::rules::groups::authorize_on(app.store(), ctx, id, Op::GroupUpdate).await?;
    let UpdateRequest {
        name,
        description,
        add_volumes,
        remove_volumes,
    } = req;
    if name.is_none()
        && description.is_none()
        && add_volumes.is_empty()
        && remove_volumes.is_empty()
    {
        return Err(Error::Invalid(
            "Name, description, add_volumes, and remove_volumes can not be all empty in the request body.".into(),
        ));
    }
    validate_text(&name, &description)?;
    let both: Vec<&String> = add_volumes
        .iter()
        .filter(|v| remove_volumes.contains(v))
        .collect();
    if !both.is_empty() {
        return Err(invalid_volume(format!(
            "UUIDs {both:?} are in both add and remove volume list."
        )));
    }
    let mut tx = app.store().begin().await?;
    let g = visible(&mut tx, ctx, id).await?;
    if !store::group_hold(&mut tx, id, &[GroupStatus::Available]).await? {
        return Err(Error::InvalidState(format!(
            "Invalid group: Group status must be available, but current status is: {}.",
            g.status
        )));
    }
    let name = name.filter(|n| Some(n) != g.name.as_ref());
    let description = description.filter(|d| Some(d) != g.description.as_ref());
    let mut changed = name.is_some() || description.is_some();
    for raw in &remove_volumes {
        let not_in = || {
            invalid_volume(format!(
                "Cannot remove volume {raw} from group {id} because it is not in the group."
            ))
        };
        let vid: VolumeId = raw.parse().map_err(|_| not_in())?;
        let v = volume_store::volume_get(&mut tx, vid)
            .await?
            .filter(|v| v.group_id == Some(id))
            .ok_or_else(not_in)?;
        if !store::group_remove_volume(&mut tx, id, vid, REMOVABLE_VOLUME).await? {
            return Err(invalid_volume(format!(
                "Cannot remove volume {vid} from group {id} because volume is in an invalid state: {}. Valid states are: {}.",
                v.status,
                REMOVABLE_VOLUME
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        changed = true;
    }
    for raw in &add_volumes {
        let cannot = |why: String| {
            invalid_volume(format!(
                "Cannot add volume {raw} to group {id} because {why}."
            ))
        };
        let vid: VolumeId = raw
            .parse()
            .map_err(|_| cannot("volume cannot be found".into()))?;
        // The caller's view: another project's volume cannot be found.
        let v = match crate::rules::volumes::visible(&mut tx, ctx, vid).await {
            Ok(v) => v,
            Err(Error::NotFound(_)) => return Err(cannot("volume cannot be found".into())),
            Err(e) => return Err(e),
        };
        if v.group_id == Some(id) {
            // Already in this group: nothing to do, as Cinder.
            continue;
        }
        if let Some(other) = v.group_id {
            return Err(cannot(format!("it is already in group {other}")));
        }
        if v.project_id != g.project_id {
            return Err(cannot("they belong to different projects".into()));
        }
        if !g.volume_type_ids.contains(&v.volume_type_id) {
            return Err(cannot(format!(
                "volume type {} is not supported by the group",
                v.volume_type_id
            )));
        }
        if v.backend.is_some() && v.backend != g.backend {
            return Err(cannot(format!(
                "it is on backend {}, not on the group's backend {}",
                v.backend.as_deref().unwrap_or(""),
                g.backend.as_deref().unwrap_or("")
            )));
        }
        if !store::group_add_volume(&mut tx, id, vid, ADDABLE_VOLUME).await? {
            return Err(cannot(format!(
                "volume is in an invalid state: {}. Valid states are: {}",
                v.status,
                ADDABLE_VOLUME
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        changed = true;
    }
    if !changed {
        return Err(Error::Invalid(format!(
            "Invalid group: Cannot update group {id} because no valid name, description, add_volumes, or remove_volumes were provided."
        )));
    }
    if name.is_some() || description.is_some() {
        store::group_update_text(
            &mut tx,
            id,
            name.as_deref().map(Some),
            description.as_deref().map(Some),
        )
        .await?;
    }
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// Delete a group and, with `delete_volumes`, its volumes: starts the
/// `group_delete` flow and returns once the group is `deleting` (a group with
/// volumes and no `delete-volumes` is refused, 400).
pub async fn delete(app: &App, ctx: &Context, id: GroupId, delete_volumes: bool) -> Result<()> {
    crate::rules::groups::authorize_on(app.store(), ctx, id, Op::GroupDelete).await?;
    let project = {
        let mut conn = app.store().read().await?;
        visible(&mut conn, ctx, id).await?.project_id
    };
    let params = group_delete::Params {
        group_id: id,
        project_id: project,
        delete_volumes,
        request_id: Some(ctx.request_id.clone()),
    };
    let handle = app.engine.start::<group_delete::GroupDelete>(params)?;
    handle.wait_step("begin_delete").await.map_err(from_outcome)
}

/// Admin: set a group's status by hand (any of Cinder's group statuses).
/// Refused while a flow works on the group: the flow owns its status until
/// it ends (and it always ends).
pub async fn reset_status(
    app: &App,
    ctx: &Context,
    id: GroupId,
    status: GroupStatus,
) -> Result<()> {
    crate::rules::groups::authorize_on(app.store(), ctx, id, Op::GroupResetStatus).await?;
    let mut tx = app.store().begin().await?;
    visible(&mut tx, ctx, id).await?;
    let busy = flow_store::flow_list_unsettled_for(&mut tx, &id.to_string())
        .await?
        .into_iter()
        .find(|f| f.state.is_active());
    if let Some(f) = busy {
        return Err(Error::InvalidState(format!(
            "Invalid group: Group {id} has an operation in progress ({}); its status is set when it ends.",
            f.kind
        )));
    }
    store::group_set_status(&mut tx, id, &[], status, None).await?;
    tx.commit().await.map_err(scoria_store::StoreError::from)?;
    Ok(())
}

/// Create a group from a source group (3.14): a new group of the same kind
/// with a clone of each of the source's volumes (the `group_create_from_src`
/// flow). Returns once the group and its clones exist (`creating`) and their
/// quota is committed; the copies go on. A group snapshot as the source is a
/// 404: Scoria has no group snapshots.
pub async fn create_from_source(app: &App, ctx: &Context, req: FromSourceRequest) -> Result<Group> {
    ctx.authorize(Op::GroupCreate)?;
    let project = ctx.project()?.clone();
    validate_text(&req.name, &req.description)?;
    if let Some(s) = &req.group_snapshot {
        return Err(Error::NotFound(format!(
            "GroupSnapshot {s} could not be found."
        )));
    }
    let Some(source) = req.source_group else {
        return Err(Error::Invalid(
            "Either 'group_snapshot_id' or 'source_group_id' must be provided to create a group from a source.".into(),
        ));
    };
    {
        let mut conn = app.store().read().await?;
        let src = visible(&mut conn, ctx, source).await?;
        if src.project_id != project.0 {
            // An admin sees other projects' groups, but a group is made in
            // the caller's project, and a clone of another project's volume
            // is not made (as for single clones).
            return Err(group_not_found(source));
        }
        crate::flows::group_create_from_src::check_source(&mut conn, &src).await?;
    }
    let id = GroupId::new();
    let params = group_create_from_src::Params {
        group_id: id,
        source_group_id: source,
        project_id: project.0.clone(),
        user_id: ctx.user_id.0.clone(),
        name: req.name,
        description: req.description,
        request_id: Some(ctx.request_id.clone()),
    };
    let handle = app
        .engine
        .start::<group_create_from_src::GroupCreateFromSrc>(params)?;
    handle
        .wait_step("start_clones")
        .await
        .map_err(from_outcome)?;
    let mut conn = app.store().read().await?;
    store::group_get(&mut conn, id)
        .await?
        .ok_or_else(|| group_not_found(id))
}
