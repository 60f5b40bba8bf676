//! The world the generic flow tests run the real flows in: a store and a real
//! file backend (qemu-img, qcow2) in a temporary directory.
//!
//! Scenarios (the flow under test, or a named variant of it):
//! - `volume_create`, `volume_delete`, `volume_extend`: one volume;
//! - `force_delete_offered`: a forced delete of a volume offered for transfer;
//! - `volume_clone`: a 2 GiB clone of a 1 GiB volume holding known data. Once
//!   done, the clone reads exactly as the source did; whatever happened, the
//!   source is byte for byte what it was and can be deleted.
//!
//! Every check also requires that no temporary file is left on the backend.

use std::sync::Arc;

use scoria_failpoints::Failpoints;
use scoria_flows::testkit::{self, BoxFut, Expect, Report, TestWorld};
use scoria_flows::{Engine, EngineOptions, Flow, FlowHandle, Outcome};
use scoria_model::volume::VolumeStatus;
use scoria_model::{GroupId, VolumeId, VolumeTypeId};
use scoria_storage::{Format, qemu};
use scoria_store::{messages, volumes};

use super::{group_create_from_src, group_delete, volume_create, volume_delete, volume_extend};
use crate::{App, Config, DriverConfig, Env, invariants, transfers};

/// What exists before the flow under test starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prepare {
    Nothing,
    /// One available 1 GiB volume.
    AvailableVolume,
    /// One 1 GiB volume offered for transfer (`awaiting-transfer`).
    OfferedVolume,
    /// An available group with two available 1 GiB volumes in it.
    GroupWithVolumes,
    /// An available group without volumes.
    EmptyGroup,
    /// One available 1 GiB volume with known data (the source of a clone),
    /// and a copy of its image outside the backend for reference.
    VolumeWithData,
}

pub struct World {
    /// The flow under test.
    kind: &'static str,
    /// What the world starts and expects: the flow's kind, or a named variant
    /// of it (`force_delete_offered`).
    scenario: &'static str,
    dir: tempfile::TempDir,
    volume: VolumeId,
    /// The group of the group scenarios, and its volumes.
    group: GroupId,
    members: Vec<VolumeId>,
    /// The group `group_create_from_src` makes from `group`.
    copy: GroupId,
    /// The volume a clone is made from (prepared by `VolumeWithData`).
    source: VolumeId,
}

pub const PROJECT: &str = "0123456789abcdef0123456789abcdef";

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::with_data_dir(dir.to_path_buf());
    c.store.durability = scoria_store::Durability::Normal;
    if let DriverConfig::File { fsync, .. } = &mut c.backends[0].driver {
        *fsync = false;
    }
    c
}

pub fn create_params(volume: VolumeId, size: i64) -> volume_create::Params {
    volume_create::Params {
        volume_id: volume,
        project_id: PROJECT.into(),
        user_id: "fedcba9876543210fedcba9876543210".into(),
        name: Some("v".into()),
        description: None,
        size,
        availability_zone: None,
        default_zone: "nova".into(),
        bootable: false,
        multiattach: false,
        volume_type_id: scoria_store::volume_types::DEFAULT_TYPE_ID
            .parse::<VolumeTypeId>()
            .expect("type id"),
        metadata: [("k".to_string(), "v".to_string())].into(),
        request_id: Some("req-test".into()),
        group_id: None,
        source_volid: None,
    }
}

/// Where a world keeps the reference copy of its clone source's image.
const REFERENCE: &str = "reference.qcow2";

/// Guest data written into a clone's source: (offset, length, byte).
const PATTERN: &[(u64, u64, u8)] = &[
    (0, 1 << 20, 0xab),
    (512 << 20, 64 << 10, 0xcd),
    ((1 << 30) - 512, 512, 0x5a),
];

impl World {
    pub async fn new(kind: &'static str, scenario: &'static str, prepare: Prepare) -> World {
        let w = World {
            kind,
            scenario,
            dir: tempfile::tempdir().expect("tempdir"),
            volume: VolumeId::new(),
            group: GroupId::new(),
            members: Vec::new(),
            copy: GroupId::new(),
            source: VolumeId::new(),
        };
        let mut w = w;
        if matches!(prepare, Prepare::GroupWithVolumes | Prepare::EmptyGroup) {
            let n = if prepare == Prepare::GroupWithVolumes {
                2
            } else {
                0
            };
            w.members = (0..n).map(|_| VolumeId::new()).collect();
            w.prepare_group().await;
        }
        if prepare == Prepare::VolumeWithData {
            let e = w.open(Failpoints::new(), EngineOptions::default()).await;
            let h = e
                .start::<volume_create::VolumeCreate>(create_params(w.source, 1))
                .expect("start");
            assert!(
                matches!(h.wait().await, Outcome::Done),
                "preparing the source failed"
            );
            e.wait_idle().await;
            let image = w.image_of(w.source);
            for &(offset, len, byte) in PATTERN {
                qemu::write_pattern(&image, Format::Qcow2, offset, len, byte)
                    .await
                    .expect("write the source's data");
            }
            std::fs::copy(&image, w.dir.path().join(REFERENCE)).expect("keep a reference");
        }
        if matches!(prepare, Prepare::AvailableVolume | Prepare::OfferedVolume) {
            let e = w.open(Failpoints::new(), EngineOptions::default()).await;
            let h = e
                .start::<volume_create::VolumeCreate>(create_params(w.volume, 1))
                .expect("start");
            assert!(
                matches!(h.wait().await, Outcome::Done),
                "preparing a volume failed"
            );
            e.wait_idle().await;
            if prepare == Prepare::OfferedVolume {
                let mut tx = e.store().begin().await.expect("begin");
                let v = volumes::volume_get(&mut tx, w.volume)
                    .await
                    .expect("read")
                    .expect("the volume");
                transfers::offer(&mut tx, &v, "fedcba9876543210fedcba9876543210", None, false)
                    .await
                    .expect("offer the volume");
                tx.commit().await.expect("commit");
            }
        }
        w
    }

    /// The image of a volume of this world (named as the schedule step names it).
    fn image_of(&self, volume: VolumeId) -> std::path::PathBuf {
        self.dir
            .path()
            .join("volumes")
            .join(format!("volume-{volume}.qcow2"))
    }

    /// Temporary files left on the backend.
    fn temporaries(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.path().join("volumes"))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The clone scenario's promises about data: a clone that is `available`
    /// reads as the source did; the source is byte for byte what it was, and
    /// a delete of it (on a fresh engine: the one under test may still have a
    /// crash armed) goes through.
    async fn check_clone_data(&self, clone_available: bool) -> Result<(), String> {
        let reference = self.dir.path().join(REFERENCE);
        if clone_available {
            let same = qemu::compare(
                &reference,
                Format::Qcow2,
                &self.image_of(self.volume),
                Format::Qcow2,
            )
            .await
            .map_err(|e| e.to_string())?;
            if !same {
                return Err("the clone does not read as its source".into());
            }
        }
        let source = std::fs::read(self.image_of(self.source)).map_err(|e| e.to_string())?;
        let kept = std::fs::read(&reference).map_err(|e| e.to_string())?;
        if source != kept {
            return Err("the source's image changed".into());
        }
        let e = self.open(Failpoints::new(), EngineOptions::default()).await;
        let h = e
            .start::<volume_delete::VolumeDelete>(volume_delete::Params {
                volume_id: self.source,
                project_id: Some(PROJECT.into()),
                force: false,
                request_id: Some("req-test".into()),
                group_id: None,
            })
            .map_err(|e| e.to_string())?;
        match h.wait().await {
            Outcome::Done => {}
            other => return Err(format!("deleting the source afterwards: {other:?}")),
        }
        e.wait_idle().await;
        if self.image_of(self.source).exists() {
            return Err("the source's image outlived its delete".into());
        }
        Ok(())
    }

    async fn open(&self, fp: Arc<Failpoints>, options: EngineOptions) -> Engine<Env> {
        App::assemble(config(self.dir.path()), fp, options)
            .await
            .expect("assemble")
            .engine
    }
}

impl TestWorld<Env> for World {
    fn engine(&self, fp: Arc<Failpoints>, options: EngineOptions) -> BoxFut<'_, Engine<Env>> {
        Box::pin(self.open(fp, options))
    }

    fn start<'a>(&'a self, engine: &'a Engine<Env>) -> BoxFut<'a, Result<FlowHandle, String>> {
        Box::pin(async move {
            let r = match self.scenario {
                "force_delete_offered" => {
                    engine.start::<volume_delete::VolumeDelete>(volume_delete::Params {
                        volume_id: self.volume,
                        project_id: None,
                        force: true,
                        request_id: Some("req-test".into()),
                        group_id: None,
                    })
                }
                "volume_create" => {
                    engine.start::<volume_create::VolumeCreate>(create_params(self.volume, 1))
                }
                "group_delete" | "group_delete_empty" => {
                    engine.start::<group_delete::GroupDelete>(group_delete::Params {
                        group_id: self.group,
                        project_id: PROJECT.into(),
                        delete_volumes: true,
                        request_id: Some("req-test".into()),
                    })
                }
                "group_create_from_src" => engine
                    .start::<group_create_from_src::GroupCreateFromSrc>(
                        group_create_from_src::Params {
                            group_id: self.copy,
                            source_group_id: self.group,
                            project_id: PROJECT.into(),
                            user_id: "fedcba9876543210fedcba9876543210".into(),
                            name: Some("copy".into()),
                            description: None,
                            request_id: Some("req-test".into()),
                        },
                    ),
                "volume_clone" => {
                    engine.start::<volume_create::VolumeCreate>(volume_create::Params {
                        source_volid: Some(self.source),
                        ..create_params(self.volume, 2)
                    })
                }
                "volume_delete" => {
                    engine.start::<volume_delete::VolumeDelete>(volume_delete::Params {
                        volume_id: self.volume,
                        project_id: Some(PROJECT.into()),
                        force: false,
                        request_id: Some("req-test".into()),
                        group_id: None,
                    })
                }
                "volume_extend" => {
                    engine.start::<volume_extend::VolumeExtend>(volume_extend::Params {
                        volume_id: self.volume,
                        project_id: Some(PROJECT.into()),
                        new_size: 2,
                        request_id: Some("req-test".into()),
                    })
                }
                other => panic!("no test world for {other}"),
            };
            r.map_err(|e| e.to_string())
        })
    }

    fn check<'a>(
        &'a self,
        engine: &'a Engine<Env>,
        expect: Expect,
    ) -> BoxFut<'a, Result<(), String>> {
        Box::pin(async move {
            let bad = invariants::check(engine.env())
                .await
                .map_err(|e| e.chain())?;
            if !bad.is_empty() {
                return Err(bad.join("; "));
            }
            if self.scenario == "group_create_from_src" {
                return self.check_copy(engine, expect).await;
            }
            if self.scenario.starts_with("group_") {
                return self.check_group(engine, expect).await;
            }
            let mut c = engine.store().read().await.map_err(|e| e.to_string())?;
            let v = volumes::volume_get(&mut c, self.volume)
                .await
                .map_err(|e| e.to_string())?;
            let state = v.as_ref().map(|v| (v.status, v.size));
            use VolumeStatus::*;
            let ok = match (self.scenario, expect) {
                (_, Expect::Either) => true,
                ("volume_create", Expect::Done) => state == Some((Available, 1)),
                ("volume_create", Expect::Failed) => matches!(state, None | Some((Error, 1))),
                ("volume_clone", Expect::Done) => state == Some((Available, 2)),
                ("volume_clone", Expect::Failed) => matches!(state, None | Some((Error, 2))),
                ("volume_delete" | "force_delete_offered", Expect::Done) => state.is_none(),
                // Failing before the first step leaves the offer standing
                // (the invariants check that its transfer still exists); an
                // undo of the first step leaves the volume `available`, the
                // offer void.
                ("force_delete_offered", Expect::Failed) => matches!(
                    state,
                    Some((AwaitingTransfer | Available | ErrorDeleting, 1))
                ),
                ("volume_delete", Expect::Failed) => {
                    matches!(state, Some((Available | ErrorDeleting, 1)))
                }
                ("volume_extend", Expect::Done) => state == Some((Available, 2)),
                ("volume_extend", Expect::Failed) => {
                    matches!(state, Some((Available | ErrorExtending, 1)))
                }
                _ => false,
            };
            // A failure that leaves the volume in an error status is told to
            // its project exactly once; nothing else leaves a message.
            let told = messages::message_list(
                &mut c,
                &messages::MessageQuery {
                    filters: vec![(
                        messages::MessageField::ResourceUuid,
                        self.volume.to_string(),
                    )],
                    now: scoria_store::now(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| e.to_string())?
            .len();
            let want = usize::from(matches!(
                state,
                Some((Error | ErrorDeleting | ErrorExtending, _))
            ));
            if told != want {
                return Err(format!(
                    "{}: volume is {state:?} and {told} messages tell of it, expected {want}",
                    self.kind
                ));
            }
            let left = self.temporaries();
            if !left.is_empty() {
                return Err(format!("{}: temporaries left: {left:?}", self.kind));
            }
            if ok && self.scenario == "volume_clone" {
                let source = volumes::volume_get(&mut c, self.source)
                    .await
                    .map_err(|e| e.to_string())?
                    .map(|v| (v.status, v.size));
                if source != Some((Available, 1)) {
                    return Err(format!("the clone's source is {source:?}"));
                }
                drop(c);
                self.check_clone_data(matches!(state, Some((Available, _))))
                    .await?;
            }
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "{} ({}) expected {expect:?}, volume is {state:?}",
                    self.kind, self.scenario
                ))
            }
        })
    }
}

/// Run the generic tests for `kind`.
pub async fn generic(kind: &'static str, prepare: Prepare) -> Report {
    generic_as(kind, kind, prepare).await
}

/// Run the generic tests for `kind` in the world's variant `scenario`.
pub async fn generic_as(kind: &'static str, scenario: &'static str, prepare: Prepare) -> Report {
    fn names<F: Flow>() -> Vec<&'static str> {
        F::steps().iter().map(|s| s.name).collect()
    }
    let steps = match kind {
        "volume_create" => names::<volume_create::VolumeCreate>(),
        "volume_delete" => names::<volume_delete::VolumeDelete>(),
        "volume_extend" => names::<volume_extend::VolumeExtend>(),
        "group_delete" => names::<group_delete::GroupDelete>(),
        "group_create_from_src" => names::<group_create_from_src::GroupCreateFromSrc>(),
        other => panic!("unknown flow {other}"),
    };
    testkit::run_all(kind, &steps, || World::new(kind, scenario, prepare)).await
}

impl World {
    /// A group type, an available group on the file backend accepting the
    /// default type, and `self.members` made in it by the create flow.
    async fn prepare_group(&self) {
        use scoria_model::group::GroupStatus;
        use scoria_store::groups;
        let e = self.open(Failpoints::new(), EngineOptions::default()).await;
        let mut tx = e.store().begin().await.expect("begin");
        let ty = scoria_model::GroupTypeId::new();
        groups::group_type_create(&mut tx, ty, "gt", None, true, &Default::default())
            .await
            .expect("group type");
        groups::group_create(
            &mut tx,
            &groups::NewGroup {
                id: self.group,
                project_id: PROJECT.into(),
                user_id: "fedcba9876543210fedcba9876543210".into(),
                name: Some("g".into()),
                description: None,
                status: GroupStatus::Available,
                availability_zone: "nova".into(),
                group_type_id: ty,
                backend: Some("file".into()),
                source_group_id: None,
                last_flow_id: None,
                volume_type_ids: vec![
                    scoria_store::volume_types::DEFAULT_TYPE_ID
                        .parse()
                        .expect("type id"),
                ],
            },
        )
        .await
        .expect("group");
        tx.commit().await.expect("commit");
        for id in &self.members {
            let h = e
                .start::<volume_create::VolumeCreate>(volume_create::Params {
                    group_id: Some(self.group),
                    ..create_params(*id, 1)
                })
                .expect("start");
            assert!(
                matches!(h.wait().await, Outcome::Done),
                "preparing a group volume failed"
            );
        }
        e.wait_idle().await;
    }

    /// After a group delete: done, the group and its volumes are gone;
    /// failed, the group is back (`available`, every volume as it was) or
    /// `error` (something was touched); a crash ends in one of those. A
    /// volume left in `error_deleting` was told to its project once.
    async fn check_group(&self, engine: &Engine<Env>, expect: Expect) -> Result<(), String> {
        use scoria_model::group::GroupStatus;
        let mut c = engine.store().read().await.map_err(|e| e.to_string())?;
        let g = scoria_store::groups::group_get(&mut c, self.group)
            .await
            .map_err(|e| e.to_string())?
            .map(|g| g.status);
        let mut left = Vec::new();
        for id in &self.members {
            let v = volumes::volume_get(&mut c, *id)
                .await
                .map_err(|e| e.to_string())?;
            let told = messages::message_list(
                &mut c,
                &messages::MessageQuery {
                    filters: vec![(messages::MessageField::ResourceUuid, id.to_string())],
                    now: scoria_store::now(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| e.to_string())?
            .len();
            let status = v.map(|v| v.status);
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
            if let Some(s) = status {
                left.push(s);
            }
        }
        let untouched =
            left.len() == self.members.len() && left.iter().all(|s| *s == VolumeStatus::Available);
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
                "{} expected {expect:?}: group is {g:?}, volumes {left:?}",
                self.scenario
            ))
        }
    }
}

impl World {
    /// After a group is made from `self.group`: done, the copy is
    /// `available` with one `available` clone per source volume, of its
    /// size; otherwise it is gone (the failure came before the answer) or
    /// `error`. Whatever happened, the source group and its volumes are as
    /// they were, a clone in `error` was told to its project once, and no
    /// temporary file is left.
    async fn check_copy(&self, engine: &Engine<Env>, expect: Expect) -> Result<(), String> {
        use scoria_model::group::GroupStatus;
        use scoria_store::groups;
        let mut c = engine.store().read().await.map_err(|e| e.to_string())?;
        let src = groups::group_get(&mut c, self.group)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the source group is gone")?;
        if src.status != GroupStatus::Available
            || groups::group_volume_ids(&mut c, self.group)
                .await
                .map_err(|e| e.to_string())?
                .len()
                != self.members.len()
        {
            return Err(format!("the source group changed: {src:?}"));
        }
        for id in &self.members {
            let v = volumes::volume_get(&mut c, *id)
                .await
                .map_err(|e| e.to_string())?
                .map(|v| (v.status, v.size));
            if v != Some((VolumeStatus::Available, 1)) {
                return Err(format!("source volume {id} is {v:?}"));
            }
        }
        let copy = groups::group_get(&mut c, self.copy)
            .await
            .map_err(|e| e.to_string())?;
        let clones = groups::group_volume_ids(&mut c, self.copy)
            .await
            .map_err(|e| e.to_string())?;
        let mut states = Vec::new();
        for id in &clones {
            let v = volumes::volume_get(&mut c, *id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("a member vanished")?;
            let told = messages::message_list(
                &mut c,
                &messages::MessageQuery {
                    filters: vec![(messages::MessageField::ResourceUuid, id.to_string())],
                    now: scoria_store::now(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| e.to_string())?
            .len();
            if told != usize::from(v.status.is_error()) {
                return Err(format!(
                    "clone {id} is {} and {told} messages tell of it",
                    v.status
                ));
            }
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
        let left = self.temporaries();
        if !left.is_empty() {
            return Err(format!("temporaries left: {left:?}"));
        }
        if ok {
            Ok(())
        } else {
            Err(format!(
                "group_create_from_src expected {expect:?}: copy is {status:?}, clones {states:?}"
            ))
        }
    }
}
