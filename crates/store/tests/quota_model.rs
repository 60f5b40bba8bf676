//! The quota ledger against a reference model.
//!
//! Random sequences of reserve / commit / roll back / delete / extend /
//! transfer / retype / rename
//! a type / change a limit (project-wide, per type, or a per-type default) /
//! crash (an uncommitted transaction dropped, or the store reopened) run
//! against the real store and against a few lines of plain arithmetic, with
//! two projects and two volume types. After every step the totals the store's
//! triggers maintain must equal the records' sums, the usage read from them
//! must equal the model's, overall and per type, and every reserve or retype must be
//! accepted or refused exactly when the model says, naming the key the model
//! names.

use std::collections::BTreeMap;

use proptest::prelude::*;
use scoria_model::quota::{self, QuotaKey, QuotaResource, TypedResource};
use scoria_model::volume::VolumeStatus;
use scoria_model::{FlowId, ReservationId, VolumeId, VolumeTypeId};
use scoria_store::{Store, StoreError, StoreOptions, quotas, volume_types, volumes};

const V: QuotaKey = QuotaKey::Global(QuotaResource::Volumes);
const G: QuotaKey = QuotaKey::Global(QuotaResource::Gigabytes);

#[derive(Clone, Debug)]
enum Op {
    /// A create flow reserves a volume of type `t` and `gb` GiB in project `p`.
    Reserve { p: usize, t: usize, gb: i64 },
    /// The i-th pending flow commits: its entry appears, its reservation goes.
    Commit { i: usize },
    /// The i-th pending flow rolls back.
    Rollback { i: usize },
    /// The i-th existing volume is deleted.
    Delete { i: usize },
    /// The i-th existing volume takes the other type (check and move in one
    /// transaction).
    Retype { i: usize },
    /// The i-th existing volume grows by `by` GiB (an extend flow's last step).
    Extend { i: usize, by: i64 },
    /// The i-th existing volume is given to the other project (a transfer).
    Transfer { i: usize },
    /// Type `t` gets a new name.
    Rename { t: usize },
    /// Project-wide limits of project `p` change.
    Limit { p: usize, volumes: i64, gb: i64 },
    /// Project `p`'s limits for type `t` change.
    TypeLimit {
        p: usize,
        t: usize,
        volumes: i64,
        gb: i64,
    },
    /// The default limit of volumes of type `t` changes.
    DefaultTypeLimit { t: usize, volumes: i64 },
    /// A transaction reserves, then the process dies before it commits.
    CrashMidTransaction { p: usize, t: usize, gb: i64 },
    /// The process dies and the store is reopened.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..2usize, 0..2usize, 1..5i64).prop_map(|(p, t, gb)| Op::Reserve { p, t, gb }),
        3 => (0..8usize).prop_map(|i| Op::Commit { i }),
        1 => (0..8usize).prop_map(|i| Op::Rollback { i }),
        2 => (0..8usize).prop_map(|i| Op::Delete { i }),
        2 => (0..8usize).prop_map(|i| Op::Retype { i }),
        1 => (0..8usize, 1..3i64).prop_map(|(i, by)| Op::Extend { i, by }),
        1 => (0..8usize).prop_map(|i| Op::Transfer { i }),
        1 => (0..2usize).prop_map(|t| Op::Rename { t }),
        1 => (0..2usize, -1..6i64, -1..15i64).prop_map(|(p, volumes, gb)| Op::Limit { p, volumes, gb }),
        2 => (0..2usize, 0..2usize, -1..4i64, -1..10i64)
            .prop_map(|(p, t, volumes, gb)| Op::TypeLimit { p, t, volumes, gb }),
        1 => (0..2usize, -1..4i64).prop_map(|(t, volumes)| Op::DefaultTypeLimit { t, volumes }),
        1 => (0..2usize, 0..2usize, 1..5i64).prop_map(|(p, t, gb)| Op::CrashMidTransaction { p, t, gb }),
        1 => Just(Op::Reopen),
    ]
}

/// A volume or a pending create: (project, type, GiB).
type Unit = (usize, usize, i64);

#[derive(Default, Debug)]
struct Model {
    /// Project-wide (volumes, gigabytes) per project.
    limits: BTreeMap<usize, (i64, i64)>,
    /// (volumes, gigabytes) per (project, type), when the project sets them.
    type_limits: BTreeMap<(usize, usize), (i64, i64)>,
    /// The default limit of volumes per type.
    type_defaults: BTreeMap<usize, i64>,
    volumes: Vec<(VolumeId, Unit)>,
    pending: Vec<(FlowId, Unit)>,
}

/// The model's own reading of which key a request exceeds, in the order the
/// rule checks them. `None` when it fits.
fn first_over(checks: &[(&'static str, i64, i64, i64)]) -> Option<&'static str> {
    checks
        .iter()
        .find(|(_, limit, used, delta)| *limit >= 0 && used + delta > *limit)
        .map(|c| c.0)
}

impl Model {
    fn units(&self, p: usize) -> impl Iterator<Item = (bool, usize, i64)> + '_ {
        let existing = self.volumes.iter().map(|(_, u)| (true, *u));
        let pending = self.pending.iter().map(|(_, u)| (false, *u));
        existing
            .chain(pending)
            .filter(move |(_, u)| u.0 == p)
            .map(|(committed, u)| (committed, u.1, u.2))
    }

    /// (volumes, gigabytes) used, overall or for type `t`.
    fn used(&self, p: usize, t: Option<usize>) -> (i64, i64) {
        self.units(p)
            .filter(|u| t.is_none_or(|t| u.1 == t))
            .fold((0, 0), |(n, g), u| (n + 1, g + u.2))
    }

    fn type_limit(&self, p: usize, t: usize) -> (i64, i64) {
        self.type_limits
            .get(&(p, t))
            .copied()
            .unwrap_or((self.type_defaults.get(&t).copied().unwrap_or(-1), -1))
    }

    /// Which key a new volume of type `t` and `gb` GiB exceeds.
    fn create_over(&self, p: usize, t: usize, gb: i64) -> Option<&'static str> {
        let (lv, lg) = self.limits.get(&p).copied().unwrap_or((10, 1000));
        let (tv, tg) = self.type_limit(p, t);
        let (uv, ug) = self.used(p, None);
        let (utv, utg) = self.used(p, Some(t));
        first_over(&[
            ("volumes", lv, uv, 1),
            ("gigabytes", lg, ug, gb),
            ("volumes_t", tv, utv, 1),
            ("gigabytes_t", tg, utg, gb),
        ])
    }

    /// Which key moving a volume of `gb` GiB to type `t` exceeds.
    fn retype_over(&self, p: usize, t: usize, gb: i64) -> Option<&'static str> {
        let (tv, tg) = self.type_limit(p, t);
        let (utv, utg) = self.used(p, Some(t));
        first_over(&[("volumes_t", tv, utv, 1), ("gigabytes_t", tg, utg, gb)])
    }
}

/// How the model names a store's key.
fn model_name(k: QuotaKey) -> &'static str {
    match k {
        QuotaKey::Global(QuotaResource::Volumes) => "volumes",
        QuotaKey::Global(QuotaResource::Gigabytes) => "gigabytes",
        QuotaKey::PerType(TypedResource::Volumes, _) => "volumes_t",
        QuotaKey::PerType(TypedResource::Gigabytes, _) => "gigabytes_t",
        other => panic!("unexpected key {other:?}"),
    }
}

const PROJECTS: [&str; 2] = ["p0", "p1"];

fn new_volume(
    p: usize,
    id: VolumeId,
    t: VolumeTypeId,
    gb: i64,
    reservation: ReservationId,
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
        volume_type_id: t,
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
    let types = [VolumeTypeId::new(), VolumeTypeId::new()];
    {
        let mut tx = store.begin().await.unwrap();
        for (i, t) in types.iter().enumerate() {
            volume_types::volume_type_create(
                &mut tx,
                *t,
                &format!("type{i}"),
                None,
                true,
                &BTreeMap::new(),
            )
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
    }
    let mut renames = 0;
    let mut m = Model::default();
    // The reservation id of each pending flow (what its entry will point at).
    let mut reservation_of: BTreeMap<FlowId, ReservationId> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Reserve { p, t, gb } => {
                let flow = FlowId::new();
                let mut tx = store.begin().await.unwrap();
                let r = quotas::quota_reserve(
                    &mut tx,
                    flow,
                    PROJECTS[p],
                    &quota::volume_deltas(types[t], gb),
                    Some(gb),
                )
                .await;
                let expect = m.create_over(p, t, gb);
                match r {
                    Ok(ids) => {
                        assert_eq!(
                            expect, None,
                            "store accepted a reserve the model refuses: {m:?}"
                        );
                        tx.commit().await.unwrap();
                        reservation_of.insert(flow, ids[0]);
                        m.pending.push((flow, (p, t, gb)));
                    }
                    Err(StoreError::OverQuota(e)) => {
                        assert_eq!(Some(model_name(e.key)), expect, "{m:?}");
                        if let QuotaKey::PerType(_, ty) = e.key {
                            assert_eq!(ty, types[t]);
                        }
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            Op::Commit { i } => {
                if m.pending.is_empty() {
                    continue;
                }
                let (flow, (p, t, gb)) = m.pending.remove(i % m.pending.len());
                let id = VolumeId::new();
                let mut tx = store.begin().await.unwrap();
                volumes::volume_create(
                    &mut tx,
                    &new_volume(p, id, types[t], gb, reservation_of[&flow]),
                )
                .await
                .unwrap();
                // Even `available`, while the entry points at its reservation it
                // cannot change type: its quota is still counted by the
                // reservation, under the type it was reserved for.
                volumes::volume_set_status(&mut tx, id, &[], VolumeStatus::Available)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                let mut tx = store.begin().await.unwrap();
                assert!(
                    !volumes::volume_retype(&mut tx, id, types[t], types[1 - t], false)
                        .await
                        .unwrap()
                );
                drop(tx);
                // A separate transaction commits the quota, as the create flow does.
                let mut tx = store.begin().await.unwrap();
                quotas::reservation_release_flow(&mut tx, flow)
                    .await
                    .unwrap();
                assert!(volumes::volume_commit_quota(&mut tx, id).await.unwrap());
                tx.commit().await.unwrap();
                m.volumes.push((id, (p, t, gb)));
            }
            Op::Rollback { i } => {
                if m.pending.is_empty() {
                    continue;
                }
                let (flow, _) = m.pending.remove(i % m.pending.len());
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
                let (id, _) = m.volumes.remove(i % m.volumes.len());
                let mut tx = store.begin().await.unwrap();
                assert!(volumes::volume_purge(&mut tx, id).await.unwrap());
                tx.commit().await.unwrap();
            }
            Op::Extend { i, by } => {
                if m.volumes.is_empty() {
                    continue;
                }
                let i = i % m.volumes.len();
                let (id, (_, _, gb)) = m.volumes[i];
                let mut tx = store.begin().await.unwrap();
                assert!(
                    volumes::volume_set_status(&mut tx, id, &[], VolumeStatus::Extending)
                        .await
                        .unwrap()
                );
                assert!(
                    volumes::volume_finish_extend(&mut tx, id, gb + by)
                        .await
                        .unwrap()
                );
                tx.commit().await.unwrap();
                m.volumes[i].1.2 = gb + by;
            }
            Op::Transfer { i } => {
                if m.volumes.is_empty() {
                    continue;
                }
                let i = i % m.volumes.len();
                let (id, (p, _, _)) = m.volumes[i];
                let mut tx = store.begin().await.unwrap();
                assert!(
                    volumes::volume_set_status(&mut tx, id, &[], VolumeStatus::AwaitingTransfer)
                        .await
                        .unwrap()
                );
                assert!(
                    volumes::volume_accept_transfer(&mut tx, id, PROJECTS[1 - p], "u2")
                        .await
                        .unwrap()
                );
                tx.commit().await.unwrap();
                m.volumes[i].1.0 = 1 - p;
            }
            Op::Retype { i } => {
                if m.volumes.is_empty() {
                    continue;
                }
                let i = i % m.volumes.len();
                let (id, (p, t, gb)) = m.volumes[i];
                let to = 1 - t;
                let mut tx = store.begin().await.unwrap();
                let r = quotas::quota_check(
                    &mut tx,
                    PROJECTS[p],
                    &[
                        (QuotaKey::PerType(TypedResource::Volumes, types[to]), 1),
                        (QuotaKey::PerType(TypedResource::Gigabytes, types[to]), gb),
                    ],
                    None,
                )
                .await;
                let expect = m.retype_over(p, to, gb);
                match r {
                    Ok(()) => {
                        assert_eq!(
                            expect, None,
                            "store accepted a retype the model refuses: {m:?}"
                        );
                        assert!(
                            volumes::volume_retype(&mut tx, id, types[t], types[to], false)
                                .await
                                .unwrap()
                        );
                        tx.commit().await.unwrap();
                        m.volumes[i].1.1 = to;
                    }
                    Err(StoreError::OverQuota(e)) => {
                        assert_eq!(Some(model_name(e.key)), expect, "{m:?}")
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            Op::Rename { t } => {
                renames += 1;
                let mut tx = store.begin().await.unwrap();
                assert!(
                    volume_types::volume_type_update(
                        &mut tx,
                        types[t],
                        Some(&format!("renamed{renames}")),
                        None,
                        None
                    )
                    .await
                    .unwrap()
                );
                tx.commit().await.unwrap();
            }
            Op::Limit {
                p,
                volumes: lv,
                gb: lg,
            } => {
                let mut tx = store.begin().await.unwrap();
                quotas::quota_limit_set(&mut tx, PROJECTS[p], &[(V, lv), (G, lg)])
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                m.limits.insert(p, (lv, lg));
            }
            Op::TypeLimit {
                p,
                t,
                volumes: lv,
                gb: lg,
            } => {
                let mut tx = store.begin().await.unwrap();
                quotas::quota_limit_set(
                    &mut tx,
                    PROJECTS[p],
                    &[
                        (QuotaKey::PerType(TypedResource::Volumes, types[t]), lv),
                        (QuotaKey::PerType(TypedResource::Gigabytes, types[t]), lg),
                    ],
                )
                .await
                .unwrap();
                tx.commit().await.unwrap();
                m.type_limits.insert((p, t), (lv, lg));
            }
            Op::DefaultTypeLimit { t, volumes: lv } => {
                let mut tx = store.begin().await.unwrap();
                quotas::quota_class_set(
                    &mut tx,
                    quotas::DEFAULT_CLASS,
                    &[(QuotaKey::PerType(TypedResource::Volumes, types[t]), lv)],
                )
                .await
                .unwrap();
                tx.commit().await.unwrap();
                m.type_defaults.insert(t, lv);
                // A project's own per-type limits set both keys, so they
                // shadow the default.
            }
            Op::CrashMidTransaction { p, t, gb } => {
                let mut tx = store.begin().await.unwrap();
                let _ = quotas::quota_reserve(
                    &mut tx,
                    FlowId::new(),
                    PROJECTS[p],
                    &quota::volume_deltas(types[t], gb),
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
        // After every step, the totals the triggers keep are what the
        // records sum to, and the usage read from them is exactly the model's.
        let mut c = store.read().await.unwrap();
        assert_eq!(
            quotas::maintained_totals(&mut c).await.unwrap(),
            quotas::derived_totals(&mut c).await.unwrap(),
            "{m:?}"
        );
        for (p, name) in PROJECTS.iter().enumerate() {
            let u = quotas::quota_usage(&mut c, name).await.unwrap();
            let got = |k: QuotaKey| {
                let x = u.get(&k).copied().unwrap_or_default();
                (x.in_use, x.reserved)
            };
            let want = |t: Option<usize>| {
                let committed = m.units(p).filter(|u| u.0 && t.is_none_or(|t| u.1 == t));
                let pending = m.units(p).filter(|u| !u.0 && t.is_none_or(|t| u.1 == t));
                let (cv, cg) = committed.fold((0, 0), |(n, g), u| (n + 1, g + u.2));
                let (pv, pg) = pending.fold((0, 0), |(n, g), u| (n + 1, g + u.2));
                ((cv, pv), (cg, pg))
            };
            let (wv, wg) = want(None);
            assert_eq!((got(V), got(G)), (wv, wg), "overall usage of {name}: {m:?}");
            for (t, ty) in types.iter().enumerate() {
                let (wv, wg) = want(Some(t));
                assert_eq!(
                    (
                        got(QuotaKey::PerType(TypedResource::Volumes, *ty)),
                        got(QuotaKey::PerType(TypedResource::Gigabytes, *ty))
                    ),
                    (wv, wg),
                    "usage of type {t} in {name}: {m:?}"
                );
            }
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
