//! The world the generic flow tests run the real flows in: a store and a real
//! file backend (qemu-img, qcow2) in a temporary directory.

use std::sync::Arc;

use scoria_failpoints::Failpoints;
use scoria_flows::testkit::{self, BoxFut, Expect, Report, TestWorld};
use scoria_flows::{Engine, EngineOptions, Flow, FlowHandle, Outcome};
use scoria_model::volume::VolumeStatus;
use scoria_model::{GroupId, VolumeId, VolumeTypeId};
use scoria_store::{messages, volumes};

use super::{group_delete, volume_create, volume_delete, volume_extend};
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
    }
}

impl World {
    pub async fn new(kind: &'static str, scenario: &'static str, prepare: Prepare) -> World {
        let w = World {
            kind,
            scenario,
            dir: tempfile::tempdir().expect("tempdir"),
            volume: VolumeId::new(),
            group: GroupId::new(),
            members: Vec::new(),
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
