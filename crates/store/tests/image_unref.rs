//! The reaper's candidates (migration 0022's `image_unref`), against the rows.
//!
//! Random sequences of raw inserts, deletes and updates of every row that
//! refers to an image (overlays' `base_id`, volumes', snapshots' and cache
//! entries' and unmanaged snapshots' `image_id`), of images' states, and prunes, some inside
//! transactions that are rolled back: after every step every image nothing
//! uses is a candidate (so the reaper's routine pass sees it), and after a
//! prune the candidates are exactly the images nothing uses (prune removes
//! what is used or gone, and never an unused one). Raw SQL on purpose: the
//! triggers must hold for any writer, not only for the store's functions.

use std::collections::BTreeSet;

use proptest::prelude::*;
use scoria_store::{Conn, Store, StoreOptions, images, volume_types};

/// The tables whose rows refer to an image by `image_id`.
const USERS: [&str; 4] = ["volumes", "snapshots", "image_cache", "unmanaged_snapshots"];

/// The users whose `image_id` is NOT NULL.
fn image_required(table: &str) -> bool {
    matches!(table, "image_cache" | "unmanaged_snapshots")
}
const STATES: [&str; 3] = ["creating", "ready", "deleting"];
const IMAGES: usize = 6;
const ROWS: usize = 4;

#[derive(Clone, Debug)]
enum Op {
    /// A new image, layered on `base` when that exists.
    NewImage {
        id: usize,
        base: Option<usize>,
        state: usize,
    },
    /// Removed only when nothing refers to it (the foreign keys say so).
    DeleteImage {
        id: usize,
    },
    SetBase {
        id: usize,
        base: Option<usize>,
    },
    SetState {
        id: usize,
        state: usize,
    },
    /// A row of `USERS[table]` referring to `image` (NULL for the cache,
    /// whose column is NOT NULL, means no insert).
    NewUser {
        table: usize,
        id: usize,
        image: Option<usize>,
    },
    DeleteUser {
        table: usize,
        id: usize,
    },
    SetUserImage {
        table: usize,
        id: usize,
        image: Option<usize>,
    },
    Prune,
    /// Any of the above, then the transaction is dropped.
    RolledBack(Box<Op>),
}

fn leaf() -> impl Strategy<Value = Op> {
    let img = 0..IMAGES;
    let base = prop::option::of(0..IMAGES);
    let t = 0..USERS.len();
    let row = 0..ROWS;
    prop_oneof![
        4 => (img.clone(), base.clone(), 0..3usize)
            .prop_map(|(id, base, state)| Op::NewImage { id, base, state }),
        2 => img.clone().prop_map(|id| Op::DeleteImage { id }),
        2 => (img.clone(), base.clone()).prop_map(|(id, base)| Op::SetBase { id, base }),
        1 => (img.clone(), 0..3usize).prop_map(|(id, state)| Op::SetState { id, state }),
        4 => (t.clone(), row.clone(), base.clone())
            .prop_map(|(table, id, image)| Op::NewUser { table, id, image }),
        3 => (t.clone(), row.clone()).prop_map(|(table, id)| Op::DeleteUser { table, id }),
        3 => (t, row, base).prop_map(|(table, id, image)| Op::SetUserImage { table, id, image }),
        2 => Just(Op::Prune),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![6 => leaf(), 1 => leaf().prop_map(|o| Op::RolledBack(Box::new(o)))]
}

/// Image `i`'s id (a uuid, as the store's readers parse ids).
fn image(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

/// `$2` if it names an image (or is NULL): the guard that keeps raw writes
/// within the foreign keys.
const EXISTING: &str = "($2 IS NULL OR EXISTS (SELECT 1 FROM images WHERE id = $2))";

fn insert_user_sql(table: &str) -> String {
    let (columns, values) = match table {
        "volumes" => (
            "id, project_id, user_id, size, status, attach_status, bootable, multiattach,
             availability_zone, volume_type_id, created_at, image_id",
            "$1, 'p', 'u', 1, 'available', 'detached', 0, 0, 'nova', $3, 'now', $2",
        ),
        "snapshots" => (
            "id, project_id, user_id, volume_id, volume_type_id, size, status, created_at,
             image_id",
            "$1, 'p', 'u', 'v', $3, 1, 'available', 'now', $2",
        ),
        // Named after the volume row of the same number, whose delete
        // takes it along (migration 0025's trigger).
        "unmanaged_snapshots" => (
            "backend, name, image_id, volume_id, size, taken_at, created_at",
            "'b', $1, $2, $1, 1, 'now', 'now'",
        ),
        _ => (
            "glance_image_id, backend, created_at, last_used_at, image_id",
            "$1, 'b', 'now', 'now', $2",
        ),
    };
    let null_ok = if image_required(table) {
        "$2 IS NOT NULL"
    } else {
        "1"
    };
    format!(
        "INSERT OR IGNORE INTO {table} ({columns}) SELECT {values} WHERE {EXISTING} AND {null_ok}"
    )
}

fn key(table: &str) -> &'static str {
    match table {
        "image_cache" => "glance_image_id",
        "unmanaged_snapshots" => "name",
        _ => "id",
    }
}

async fn apply(c: &mut Conn, op: &Op) {
    let row = |i: usize| format!("r{i}");
    match op {
        Op::NewImage { id, base, state } => {
            sqlx::query(&format!(
                "INSERT OR IGNORE INTO images (id, backend, name, format, virtual_size, base_id,
                     mutable, state, health, created_at)
                 SELECT $1, 'b', $1, 'raw', 1, $2, 0, $3, 'optimized', 'now' WHERE {EXISTING}"
            ))
            .bind(image(*id))
            .bind(base.map(image))
            .bind(STATES[*state])
            .execute(&mut *c)
            .await
            .unwrap();
        }
        Op::DeleteImage { id } => {
            sqlx::query(
                "DELETE FROM images WHERE id = $1
                   AND NOT EXISTS (SELECT 1 FROM images o WHERE o.base_id = $1)
                   AND NOT EXISTS (SELECT 1 FROM volumes v WHERE v.image_id = $1)
                   AND NOT EXISTS (SELECT 1 FROM snapshots s WHERE s.image_id = $1)
                   AND NOT EXISTS (SELECT 1 FROM image_cache k WHERE k.image_id = $1)
                   AND NOT EXISTS (SELECT 1 FROM unmanaged_snapshots m WHERE m.image_id = $1)",
            )
            .bind(image(*id))
            .execute(&mut *c)
            .await
            .unwrap();
        }
        Op::SetBase { id, base } => {
            sqlx::query(&format!(
                "UPDATE images SET base_id = $2 WHERE id = $1 AND {EXISTING}"
            ))
            .bind(image(*id))
            .bind(base.map(image))
            .execute(&mut *c)
            .await
            .unwrap();
        }
        Op::SetState { id, state } => {
            sqlx::query("UPDATE images SET state = $2 WHERE id = $1")
                .bind(image(*id))
                .bind(STATES[*state])
                .execute(&mut *c)
                .await
                .unwrap();
        }
        Op::NewUser {
            table,
            id,
            image: i,
        } => {
            sqlx::query(&insert_user_sql(USERS[*table]))
                .bind(row(*id))
                .bind(i.map(image))
                .bind(volume_types::DEFAULT_TYPE_ID.to_string())
                .execute(&mut *c)
                .await
                .unwrap();
        }
        Op::DeleteUser { table, id } => {
            let t = USERS[*table];
            sqlx::query(&format!("DELETE FROM {t} WHERE {} = $1", key(t)))
                .bind(row(*id))
                .execute(&mut *c)
                .await
                .unwrap();
        }
        Op::SetUserImage {
            table,
            id,
            image: i,
        } => {
            let t = USERS[*table];
            // The cache's and the unmanaged snapshots' column is NOT NULL: a
            // NULL there is no change.
            let null_ok = if image_required(t) {
                "$2 IS NOT NULL"
            } else {
                "1"
            };
            sqlx::query(&format!(
                "UPDATE {t} SET image_id = $2 WHERE {} = $1 AND {EXISTING} AND {null_ok}",
                key(t)
            ))
            .bind(row(*id))
            .bind(i.map(image))
            .execute(&mut *c)
            .await
            .unwrap();
        }
        Op::Prune => {
            images::image_unref_prune(c).await.unwrap();
        }
        Op::RolledBack(_) => unreachable!(),
    }
}

/// The images nothing refers to (any state), and the candidates.
async fn unused_and_candidates(c: &mut Conn) -> (BTreeSet<String>, BTreeSet<String>) {
    let unused: Vec<String> = sqlx::query_scalar(
        "SELECT i.id FROM images i
         WHERE NOT EXISTS (SELECT 1 FROM images o WHERE o.base_id = i.id)
           AND NOT EXISTS (SELECT 1 FROM volumes v WHERE v.image_id = i.id)
           AND NOT EXISTS (SELECT 1 FROM snapshots s WHERE s.image_id = i.id)
           AND NOT EXISTS (SELECT 1 FROM image_cache k WHERE k.image_id = i.id)
           AND NOT EXISTS (SELECT 1 FROM unmanaged_snapshots m WHERE m.image_id = i.id)",
    )
    .fetch_all(&mut *c)
    .await
    .unwrap();
    let candidates: Vec<String> = sqlx::query_scalar("SELECT image_id FROM image_unref")
        .fetch_all(&mut *c)
        .await
        .unwrap();
    (
        unused.into_iter().collect(),
        candidates.into_iter().collect(),
    )
}

async fn open() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db"), &StoreOptions::default())
        .await
        .unwrap();
    (store, dir)
}

async fn run(ops: Vec<Op>) {
    let (store, _dir) = open().await;
    for op in &ops {
        let mut tx = store.begin().await.unwrap();
        match op {
            Op::RolledBack(inner) => {
                apply(&mut tx, inner).await;
                drop(tx);
            }
            _ => {
                apply(&mut tx, op).await;
                tx.commit().await.unwrap();
            }
        }
        let mut c = store.read().await.unwrap();
        let (unused, candidates) = unused_and_candidates(&mut c).await;
        let missing: Vec<_> = unused.difference(&candidates).collect();
        assert!(
            missing.is_empty(),
            "unused but not candidates: {missing:?} after {op:?} in {ops:?}"
        );
        if matches!(op, Op::Prune) {
            assert_eq!(candidates, unused, "after a prune, in {ops:?}");
        }
        // The routine pass's list is the full scan's.
        assert_eq!(
            images::image_list_unused_candidates(&mut c).await.unwrap(),
            images::image_list_unused(&mut c).await.unwrap(),
            "after {op:?} in {ops:?}"
        );
        assert!(
            images::image_list_unused_not_candidates(&mut c)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_unused_image_is_a_candidate(ops in prop::collection::vec(op(), 1..80)) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(run(ops));
    }
}

/// A prune decides on what is committed when it runs, not on what the reaper
/// read before: an image whose last user goes between the reaper's look and
/// its prune stays a candidate (and the next look finds it).
#[tokio::test]
async fn a_prune_keeps_an_image_whose_last_user_went_after_the_look() {
    let (store, _dir) = open().await;
    let mut tx = store.begin().await.unwrap();
    for o in [
        Op::NewImage {
            id: 0,
            base: None,
            state: 1,
        },
        Op::NewUser {
            table: 0,
            id: 0,
            image: Some(0),
        },
    ] {
        apply(&mut tx, &o).await;
    }
    tx.commit().await.unwrap();
    // The reaper looks: i0 is a candidate (new) but used, so not garbage.
    let mut c = store.read().await.unwrap();
    assert!(
        images::image_list_unused_candidates(&mut c)
            .await
            .unwrap()
            .is_empty()
    );
    drop(c);
    // Its last user goes; then the reaper prunes.
    let mut tx = store.begin().await.unwrap();
    apply(&mut tx, &Op::DeleteUser { table: 0, id: 0 }).await;
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    assert_eq!(images::image_unref_prune(&mut tx).await.unwrap(), 0);
    tx.commit().await.unwrap();
    let mut c = store.read().await.unwrap();
    let found = images::image_list_unused_candidates(&mut c).await.unwrap();
    assert_eq!(
        found.iter().map(|i| i.id.to_string()).collect::<Vec<_>>(),
        [image(0)]
    );
}

/// A database made before migration 0022 gets as candidates every image
/// nothing uses (the migration's backfill), whatever its state; used images
/// are not.
#[tokio::test]
async fn the_migration_backfills_what_is_unused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = Store::open_before(&path, &StoreOptions::default(), 22)
        .await
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    let ops = [
        // 0: unused, ready. 1: a volume's. 2 under 3: 3 unused, 2 its base.
        // 4: unused, creating. 5: unused, deleting. 6: a snapshot's. 7: cached.
        (0, None, 1),
        (1, None, 1),
        (2, None, 1),
        (3, Some(2), 1),
        (4, None, 0),
        (5, None, 2),
        (6, None, 1),
        (7, None, 1),
    ];
    for (id, base, state) in ops {
        apply(&mut tx, &Op::NewImage { id, base, state }).await;
    }
    for (table, image) in [(0, 1), (1, 6), (2, 7)] {
        let op = Op::NewUser {
            table,
            id: 0,
            image: Some(image),
        };
        apply(&mut tx, &op).await;
    }
    tx.commit().await.unwrap();
    store.close().await;
    let store = Store::open(&path, &StoreOptions::default()).await.unwrap();
    let mut c = store.read().await.unwrap();
    let (unused, candidates) = unused_and_candidates(&mut c).await;
    assert_eq!(candidates, unused);
    assert_eq!(
        candidates,
        [0, 3, 4, 5].into_iter().map(image).collect::<BTreeSet<_>>()
    );
}

/// With 100,000 used images and a few that just lost their user, the routine
/// pass's look (candidates, then a prune) finds what the full scan finds.
/// Prints both costs (not asserted: machines differ).
#[tokio::test]
async fn candidates_find_what_the_full_scan_finds_among_many_images() {
    const N: i64 = 100_000;
    let (store, _dir) = open().await;
    let mut tx = store.begin().await.unwrap();
    sqlx::query(
        "WITH RECURSIVE n (k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM n WHERE k + 1 < $1)
         INSERT INTO images (id, backend, name, format, virtual_size, mutable, state, health,
                             created_at)
         SELECT printf('00000000-0000-4000-8000-%012d', k), 'b', 'n' || k, 'raw', 1, 1,
                'ready', 'optimized', 'now' FROM n",
    )
    .bind(N)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO volumes (id, project_id, user_id, size, status, attach_status, bootable,
                              multiattach, availability_zone, volume_type_id, created_at,
                              image_id)
         SELECT printf('10000000-0000-4000-8000-%012d', substr(id, 25) + 0), 'p', 'u', 1,
                'available', 'detached', 0, 0, 'nova', $1, 'now', id FROM images",
    )
    .bind(volume_types::DEFAULT_TYPE_ID.to_string())
    .execute(&mut *tx)
    .await
    .unwrap();
    // The new images were all candidates; a prune leaves none (all are used).
    assert_eq!(images::image_unref_prune(&mut tx).await.unwrap(), N as u64);
    // Ten volumes go.
    sqlx::query("DELETE FROM volumes WHERE (substr(id, 25) + 0) % 10000 = 0")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut c = store.read().await.unwrap();
    let t = std::time::Instant::now();
    let full = images::image_list_unused(&mut c).await.unwrap();
    let full_took = t.elapsed();
    let t = std::time::Instant::now();
    let candidates = images::image_list_unused_candidates(&mut c).await.unwrap();
    let candidates_took = t.elapsed();
    drop(c);
    let t = std::time::Instant::now();
    let mut tx = store.begin().await.unwrap();
    images::image_unref_prune(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    let prune_took = t.elapsed();
    assert_eq!(full.len(), 10);
    assert_eq!(candidates, full);
    println!(
        "{N} images, 10 unused: full scan {full_took:?}, candidates {candidates_took:?}, \
         prune {prune_took:?}"
    );
}
