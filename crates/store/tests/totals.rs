//! The totals migration 0021's triggers maintain, against the records.
//!
//! Random sequences of raw inserts, deletes and updates of every column a total
//! depends on (project, volume type, size, reservation, backend), on volumes,
//! snapshots, backups and groups, some inside transactions that are rolled
//! back: after every step the maintained totals must equal the totals derived
//! by scanning the records. Raw SQL on purpose: the triggers must hold for any
//! writer, not only for the store's functions.

use proptest::prelude::*;
use scoria_store::{Store, StoreOptions, quotas, volume_types};

#[derive(Clone, Debug)]
enum Op {
    Insert {
        table: usize,
        id: usize,
        project: usize,
        size: i64,
        reserved: bool,
        backend: Option<usize>,
    },
    Delete {
        table: usize,
        id: usize,
    },
    SetProject {
        table: usize,
        id: usize,
        project: usize,
    },
    SetSize {
        table: usize,
        id: usize,
        size: i64,
    },
    Commit {
        table: usize,
        id: usize,
    },
    SetType {
        table: usize,
        id: usize,
        other: bool,
    },
    SetBackend {
        id: usize,
        backend: Option<usize>,
    },
    /// Any of the above, then the transaction is dropped.
    RolledBack(Box<Op>),
}

const TABLES: [&str; 4] = ["volumes", "snapshots", "backups", "volume_groups"];

fn leaf() -> impl Strategy<Value = Op> {
    let t = 0..4usize;
    let id = 0..6usize;
    prop_oneof![
        4 => (t.clone(), id.clone(), 0..3usize, 1..50i64, any::<bool>(), prop::option::of(0..2usize))
            .prop_map(|(table, id, project, size, reserved, backend)| Op::Insert {
                table, id, project, size, reserved, backend
            }),
        2 => (t.clone(), id.clone()).prop_map(|(table, id)| Op::Delete { table, id }),
        1 => (t.clone(), id.clone(), 0..3usize)
            .prop_map(|(table, id, project)| Op::SetProject { table, id, project }),
        2 => (t.clone(), id.clone(), 1..50i64).prop_map(|(table, id, size)| Op::SetSize { table, id, size }),
        2 => (t.clone(), id.clone()).prop_map(|(table, id)| Op::Commit { table, id }),
        1 => (0..2usize, id.clone(), any::<bool>())
            .prop_map(|(table, id, other)| Op::SetType { table, id, other }),
        2 => (id, prop::option::of(0..2usize)).prop_map(|(id, backend)| Op::SetBackend { id, backend }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![6 => leaf(), 1 => leaf().prop_map(|o| Op::RolledBack(Box::new(o)))]
}

fn insert_sql(table: &str) -> &'static str {
    match table {
        "volumes" => {
            "INSERT OR IGNORE INTO volumes (id, project_id, user_id, size, status, attach_status,
                 bootable, multiattach, availability_zone, volume_type_id, reservation_id,
                 backend, created_at)
             VALUES ($1, $2, 'u', $3, 'available', 'detached', 0, 0, 'nova', $5, $4, $6, 'now')"
        }
        "snapshots" => {
            "INSERT OR IGNORE INTO snapshots (id, project_id, user_id, volume_id, volume_type_id,
                 size, status, reservation_id, created_at)
             VALUES ($1, $2, 'u', 'v', $5, $3, 'available', $4, 'now')"
        }
        "backups" => {
            "INSERT OR IGNORE INTO backups (id, project_id, user_id, volume_id, size, status,
                 reservation_id, data_timestamp, created_at)
             VALUES ($1, $2, 'u', 'v', $3, 'available', $4, 'now', 'now')"
        }
        _ => {
            "INSERT OR IGNORE INTO volume_groups (id, project_id, user_id, status,
                 availability_zone, group_type_id, created_at)
             VALUES ($1, $2, 'u', 'available', 'nova',
                 'g', 'now')"
        }
    }
}

async fn apply(c: &mut scoria_store::Conn, op: &Op, types: &[String; 2]) {
    let id = |i: usize| format!("r{i}");
    let project = |p: usize| format!("p{p}");
    match op {
        Op::Insert {
            table,
            id: i,
            project: p,
            size,
            reserved,
            backend,
        } => {
            sqlx::query(insert_sql(TABLES[*table]))
                .bind(id(*i))
                .bind(project(*p))
                .bind(size)
                .bind(reserved.then_some("res"))
                .bind(&types[0])
                .bind(backend.map(|b| format!("b{b}")))
                .execute(&mut *c)
                .await
                .unwrap();
        }
        Op::Delete { table, id: i } => {
            sqlx::query(&format!("DELETE FROM {} WHERE id = $1", TABLES[*table]))
                .bind(id(*i))
                .execute(&mut *c)
                .await
                .unwrap();
        }
        Op::SetProject {
            table,
            id: i,
            project: p,
        } => {
            sqlx::query(&format!(
                "UPDATE {} SET project_id = $2 WHERE id = $1",
                TABLES[*table]
            ))
            .bind(id(*i))
            .bind(project(*p))
            .execute(&mut *c)
            .await
            .unwrap();
        }
        Op::SetSize { table, id: i, size } => {
            if *table < 3 {
                sqlx::query(&format!(
                    "UPDATE {} SET size = $2, status = 'available' WHERE id = $1",
                    TABLES[*table]
                ))
                .bind(id(*i))
                .bind(size)
                .execute(&mut *c)
                .await
                .unwrap();
            }
        }
        Op::Commit { table, id: i } => {
            if *table < 3 {
                sqlx::query(&format!(
                    "UPDATE {} SET reservation_id = NULL WHERE id = $1",
                    TABLES[*table]
                ))
                .bind(id(*i))
                .execute(&mut *c)
                .await
                .unwrap();
            }
        }
        Op::SetType {
            table,
            id: i,
            other,
        } => {
            sqlx::query(&format!(
                "UPDATE {} SET volume_type_id = $2 WHERE id = $1",
                TABLES[*table]
            ))
            .bind(id(*i))
            .bind(&types[usize::from(*other)])
            .execute(&mut *c)
            .await
            .unwrap();
        }
        Op::SetBackend { id: i, backend } => {
            sqlx::query("UPDATE volumes SET backend = $2 WHERE id = $1")
                .bind(id(*i))
                .bind(backend.map(|b| format!("b{b}")))
                .execute(&mut *c)
                .await
                .unwrap();
        }
        Op::RolledBack(_) => unreachable!(),
    }
}

async fn seed_group_type(c: &mut scoria_store::Conn) {
    sqlx::query(
        "INSERT INTO group_types (id, name, is_public, created_at) VALUES ('g', 'g', 1, 'now')",
    )
    .execute(c)
    .await
    .unwrap();
}

async fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db"), &StoreOptions::default())
        .await
        .unwrap();
    let other = scoria_model::VolumeTypeId::new();
    {
        let mut tx = store.begin().await.unwrap();
        volume_types::volume_type_create(&mut tx, other, "other", None, true, &Default::default())
            .await
            .unwrap();
        seed_group_type(&mut tx).await;
        tx.commit().await.unwrap();
    }
    let types = [volume_types::DEFAULT_TYPE_ID.to_string(), other.to_string()];
    for op in &ops {
        let mut tx = store.begin().await.unwrap();
        match op {
            Op::RolledBack(inner) => {
                apply(&mut tx, inner, &types).await;
                drop(tx);
            }
            _ => {
                apply(&mut tx, op, &types).await;
                tx.commit().await.unwrap();
            }
        }
        let mut c = store.read().await.unwrap();
        assert_eq!(
            quotas::maintained_totals(&mut c).await.unwrap(),
            quotas::derived_totals(&mut c).await.unwrap(),
            "after {op:?} in {ops:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn maintained_totals_equal_the_records(ops in prop::collection::vec(op(), 1..80)) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(run(ops));
    }
}

/// A database made before migration 0021 gets totals that match its records
/// (the migration's backfill), and the triggers keep them from there.
#[tokio::test]
async fn the_migration_backfills_what_exists() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = Store::open_before(&path, &StoreOptions::default(), 21)
        .await
        .unwrap();
    {
        let mut tx = store.begin().await.unwrap();
        seed_group_type(&mut tx).await;
        let types = [
            volume_types::DEFAULT_TYPE_ID.to_string(),
            volume_types::DEFAULT_TYPE_ID.to_string(),
        ];
        for (i, reserved, backend) in [(0, false, Some(0)), (1, true, Some(1)), (2, false, None)] {
            for table in 0..4 {
                let op = Op::Insert {
                    table,
                    id: i,
                    project: i % 2,
                    size: 10 + i as i64,
                    reserved,
                    backend,
                };
                apply(&mut tx, &op, &types).await;
            }
        }
        tx.commit().await.unwrap();
    }
    store.close().await;
    let store = Store::open(&path, &StoreOptions::default()).await.unwrap();
    let mut c = store.read().await.unwrap();
    let kept = quotas::maintained_totals(&mut c).await.unwrap();
    assert_eq!(kept, quotas::derived_totals(&mut c).await.unwrap());
    // Two committed volumes in p0 (r0, r2: 10 + 12 GiB), two placed volumes.
    let vols = kept.get(&("p0".into(), "volumes".into(), types_default()));
    assert_eq!(vols, Some(&(2, 22)));
    assert_eq!(
        kept.get(&("@b1".into(), "placed".into(), String::new())),
        Some(&(1, 11))
    );
    // The scheduler's per-backend figures: (volumes, GiB).
    let by_backend = scoria_store::volumes::volume_totals_by_backend(&mut c)
        .await
        .unwrap();
    assert_eq!(by_backend.get("b1"), Some(&(1, 11)));
    let gib = scoria_store::volumes::volume_provisioned_by_backend(&mut c)
        .await
        .unwrap();
    assert_eq!(
        gib,
        by_backend
            .iter()
            .map(|(b, (_, g))| (b.clone(), *g))
            .collect()
    );
}

fn types_default() -> String {
    volume_types::DEFAULT_TYPE_ID.to_string()
}
