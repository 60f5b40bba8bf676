//! The quota ledger against a reference model.
//!
//! Random sequences of reserve / commit / roll back / delete / change limit /
//! crash (an uncommitted transaction dropped, or the store reopened) run
//! against the real store and against a few lines of plain arithmetic. After
//! every step the derived usage must equal the model's, and every reserve must
//! be accepted or refused exactly when the model says.

use std::collections::BTreeMap;

use proptest::prelude::*;
use scoria_model::quota::QuotaResource::{Gigabytes, Volumes};
use scoria_model::volume::VolumeStatus;
use scoria_model::{FlowId, VolumeId};
use scoria_store::{Store, StoreError, StoreOptions, quotas, volumes};

#[derive(Clone, Debug)]
enum Op {
    /// A create flow reserves a volume of `gb` GiB in project `p`.
    Reserve { p: usize, gb: i64 },
    /// The i-th pending flow commits: its entry appears, its reservation goes.
    Commit { i: usize },
    /// The i-th pending flow rolls back.
    Rollback { i: usize },
    /// The i-th existing volume is deleted.
    Delete { i: usize },
    /// Limits of project `p` change.
    Limit { p: usize, volumes: i64, gb: i64 },
    /// A transaction reserves, then the process dies before it commits.
    CrashMidTransaction { p: usize, gb: i64 },
    /// The process dies and the store is reopened.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 1..5i64).prop_map(|(p, gb)| Op::Reserve { p, gb }),
        3 => (0..8usize).prop_map(|i| Op::Commit { i }),
        1 => (0..8usize).prop_map(|i| Op::Rollback { i }),
        2 => (0..8usize).prop_map(|i| Op::Delete { i }),
        1 => (0..2usize, -1..6i64, -1..15i64).prop_map(|(p, volumes, gb)| Op::Limit { p, volumes, gb }),
        1 => (0..2usize, 1..5i64).prop_map(|(p, gb)| Op::CrashMidTransaction { p, gb }),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Default, Debug)]
struct Model {
    limits: BTreeMap<usize, (i64, i64)>,
    volumes: Vec<(usize, VolumeId, i64)>,
    pending: Vec<(usize, FlowId, i64)>,
}

impl Model {
    fn fits(&self, p: usize, gb: i64) -> bool {
        let (lv, lg) = self.limits.get(&p).copied().unwrap_or((10, 1000));
        let used_v = self.volumes.iter().filter(|v| v.0 == p).count() as i64
            + self.pending.iter().filter(|f| f.0 == p).count() as i64;
        let used_g = self
            .volumes
            .iter()
            .filter(|v| v.0 == p)
            .map(|v| v.2)
            .sum::<i64>()
            + self
                .pending
                .iter()
                .filter(|f| f.0 == p)
                .map(|f| f.2)
                .sum::<i64>();
        (lv < 0 || used_v < lv) && (lg < 0 || used_g + gb <= lg)
    }
}

const PROJECTS: [&str; 2] = ["p0", "p1"];

fn new_volume(
    p: usize,
    id: VolumeId,
    gb: i64,
    reservation: scoria_model::ReservationId,
) -> volumes::NewVolume {
    volumes::NewVolume {
        id,
        project_id: PROJECTS[p].into(),
        user_id: "u".into(),
        name: None,
        description: None,
        size: gb,
        status: VolumeStatus::Creating,
        bootable: false,
        multiattach: false,
        availability_zone: "nova".into(),
        volume_type_id: scoria_store::volume_types::DEFAULT_TYPE_ID.parse().unwrap(),
        snapshot_id: None,
        source_volid: None,
        reservation_id: Some(reservation),
        last_flow_id: None,
        metadata: Default::default(),
    }
}

async fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut store = Store::open(&path, &StoreOptions::default()).await.unwrap();
    let mut m = Model::default();
    // The reservation id of each pending flow (what its entry will point at).
    let mut reservation_of: BTreeMap<FlowId, scoria_model::ReservationId> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Reserve { p, gb } => {
                let flow = FlowId::new();
                let mut tx = store.begin().await.unwrap();
                let r = quotas::quota_reserve(
                    &mut tx,
                    flow,
                    PROJECTS[p],
                    &[(Volumes, 1), (Gigabytes, gb)],
                    Some(gb),
                )
                .await;
                let expect = m.fits(p, gb);
                match r {
                    Ok(ids) => {
                        assert!(expect, "store accepted a reserve the model refuses: {m:?}");
                        tx.commit().await.unwrap();
                        reservation_of.insert(flow, ids[0]);
                        m.pending.push((p, flow, gb));
                    }
                    Err(StoreError::OverQuota(_)) => {
                        assert!(!expect, "store refused a reserve that fits: {m:?}")
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            Op::Commit { i } => {
                if m.pending.is_empty() {
                    continue;
                }
                let (p, flow, gb) = m.pending.remove(i % m.pending.len());
                let id = VolumeId::new();
                let mut tx = store.begin().await.unwrap();
                volumes::volume_create(&mut tx, &new_volume(p, id, gb, reservation_of[&flow]))
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                // A separate transaction commits the quota, as the create flow does.
                let mut tx = store.begin().await.unwrap();
                quotas::reservation_release_flow(&mut tx, flow)
                    .await
                    .unwrap();
                assert!(volumes::volume_commit_quota(&mut tx, id).await.unwrap());
                tx.commit().await.unwrap();
                m.volumes.push((p, id, gb));
            }
            Op::Rollback { i } => {
                if m.pending.is_empty() {
                    continue;
                }
                let (_, flow, _) = m.pending.remove(i % m.pending.len());
                let mut tx = store.begin().await.unwrap();
                assert!(
                    quotas::reservation_release_flow(&mut tx, flow)
                        .await
                        .unwrap()
                        > 0
                );
                tx.commit().await.unwrap();
            }
            Op::Delete { i } => {
                if m.volumes.is_empty() {
                    continue;
                }
                let (_, id, _) = m.volumes.remove(i % m.volumes.len());
                let mut tx = store.begin().await.unwrap();
                assert!(volumes::volume_purge(&mut tx, id).await.unwrap());
                tx.commit().await.unwrap();
            }
            Op::Limit {
                p,
                volumes: lv,
                gb: lg,
            } => {
                let mut tx = store.begin().await.unwrap();
                quotas::quota_limit_set(&mut tx, PROJECTS[p], &[(Volumes, lv), (Gigabytes, lg)])
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                m.limits.insert(p, (lv, lg));
            }
            Op::CrashMidTransaction { p, gb } => {
                let mut tx = store.begin().await.unwrap();
                let _ = quotas::quota_reserve(
                    &mut tx,
                    FlowId::new(),
                    PROJECTS[p],
                    &[(Volumes, 1), (Gigabytes, gb)],
                    Some(gb),
                )
                .await;
                drop(tx);
            }
            Op::Reopen => {
                store.close().await;
                store = Store::open(&path, &StoreOptions::default()).await.unwrap();
            }
        }
        // After every step, the derived usage is exactly the model's.
        let mut c = store.read().await.unwrap();
        for (p, name) in PROJECTS.iter().enumerate() {
            let u = quotas::quota_usage(&mut c, name).await.unwrap();
            let vols: Vec<_> = m.volumes.iter().filter(|v| v.0 == p).collect();
            let pend: Vec<_> = m.pending.iter().filter(|f| f.0 == p).collect();
            assert_eq!(
                u[&Volumes].in_use,
                vols.len() as i64,
                "volumes in use, {name}"
            );
            assert_eq!(
                u[&Volumes].reserved,
                pend.len() as i64,
                "volumes reserved, {name}"
            );
            assert_eq!(
                u[&Gigabytes].in_use,
                vols.iter().map(|v| v.2).sum::<i64>(),
                "gigabytes in use, {name}"
            );
            assert_eq!(
                u[&Gigabytes].reserved,
                pend.iter().map(|f| f.2).sum::<i64>(),
                "gigabytes reserved, {name}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_ledger_matches_the_model(ops in prop::collection::vec(op(), 1..60)) {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run(ops));
    }
}
