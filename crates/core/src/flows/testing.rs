//! The world the generic flow tests run the real flows in: a store and a real
//! file backend (qemu-img, qcow2) in a temporary directory.

use std::sync::Arc;

use scoria_failpoints::Failpoints;
use scoria_flows::testkit::{self, BoxFut, Expect, Report, TestWorld};
use scoria_flows::{Engine, EngineOptions, Flow, FlowHandle, Outcome};
use scoria_model::volume::VolumeStatus;
use scoria_model::{VolumeId, VolumeTypeId};
use scoria_store::{messages, volumes};

use super::{volume_create, volume_delete, volume_extend};
use crate::{App, Config, DriverConfig, Env, invariants, transfers};

/// What exists before the flow under test starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prepare {
    Nothing,
    /// One available 1 GiB volume.
    AvailableVolume,
    /// One 1 GiB volume offered for transfer (`awaiting-transfer`).
    OfferedVolume,
}

pub struct World {
    /// The flow under test.
    kind: &'static str,
    /// What the world starts and expects: the flow's kind, or a named variant
    /// of it (`force_delete_offered`).
    scenario: &'static str,
    dir: tempfile::TempDir,
    volume: VolumeId,
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
    }
}

impl World {
    pub async fn new(kind: &'static str, scenario: &'static str, prepare: Prepare) -> World {
        let w = World {
            kind,
            scenario,
            dir: tempfile::tempdir().expect("tempdir"),
            volume: VolumeId::new(),
        };
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
                    })
                }
                "volume_create" => {
                    engine.start::<volume_create::VolumeCreate>(create_params(self.volume, 1))
                }
                "volume_delete" => {
                    engine.start::<volume_delete::VolumeDelete>(volume_delete::Params {
                        volume_id: self.volume,
                        project_id: Some(PROJECT.into()),
                        force: false,
                        request_id: Some("req-test".into()),
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
        other => panic!("unknown flow {other}"),
    };
    testkit::run_all(kind, &steps, || World::new(kind, scenario, prepare)).await
}
