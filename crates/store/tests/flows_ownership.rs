//! Flow ownership in the store: who may claim a flow, and that a claim fences
//! off every write under the generation before it.

use std::time::Duration;

use scoria_model::FlowId;
use scoria_model::flow::FlowState;
use scoria_store::flows::{self, ClaimRule, NewFlow};
use scoria_store::{Store, StoreOptions};
use serde_json::json;

/// A lease that ended long ago.
const PAST: &str = "2000-01-01T00:00:00.000000";

async fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("scoria.db"), &StoreOptions::default())
        .await
        .expect("open store")
}

/// A running flow owned by `owner` until `until`.
async fn flow(s: &Store, owner: &str, until: &str) -> FlowId {
    let id = FlowId::new();
    let params = json!({});
    let mut tx = s.begin().await.expect("begin");
    flows::flow_create(
        &mut tx,
        &NewFlow {
            id,
            kind: "k",
            resource_type: None,
            resource_id: Some("r"),
            project_id: None,
            params: &params,
            steps_total: 2,
            first_step: "a",
            definition_version: 1,
            step_names: &["a", "b"],
            owner,
            lease_until: until,
        },
    )
    .await
    .expect("create");
    tx.commit().await.expect("commit");
    id
}

fn live() -> String {
    flows::lease_until(Duration::from_secs(60))
}

fn ids(v: &[flows::FlowRecord]) -> Vec<FlowId> {
    v.iter().map(|f| f.id).collect()
}

#[tokio::test]
async fn a_node_claims_its_own_unowned_and_expired_flows_but_not_live_ones() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let own = flow(&s, "a", &live()).await;
    let own_expired = flow(&s, "a", PAST).await;
    let other_live = flow(&s, "b", &live()).await;
    let other_expired = flow(&s, "b", PAST).await;
    let finished = flow(&s, "b", PAST).await;
    let unowned = flow(&s, "b", &live()).await;
    let mut tx = s.begin().await.unwrap();
    flows::flow_set_state(&mut tx, finished, FlowState::Done, None, None)
        .await
        .unwrap();
    // A flow stored before migration 0008: no owner, lease, version or names.
    sqlx::query(
        "UPDATE flows SET owner = NULL, lease_expires_at = NULL, generation = 0,
                definition_version = NULL, step_names = NULL
         WHERE id = $1",
    )
    .bind(unowned.to_string())
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let now = scoria_store::now();
    let mut r = s.read().await.unwrap();
    let legacy = flows::flow_get(&mut r, unowned).await.unwrap().unwrap();
    assert_eq!(
        (
            legacy.owner,
            legacy.definition_version,
            legacy.step_names,
            legacy.generation
        ),
        (None, None, None, 0)
    );
    let at_restart = flows::flow_list_claimable(&mut r, "a", &now, ClaimRule::Restart)
        .await
        .unwrap();
    let mut want = vec![own, own_expired, other_expired, unowned];
    let mut got = ids(&at_restart);
    want.sort();
    got.sort();
    assert_eq!(got, want, "at start-up: own, expired, unowned");
    let mut running = ids(
        &flows::flow_list_claimable(&mut r, "a", &now, ClaimRule::Expired)
            .await
            .unwrap(),
    );
    let mut want = vec![own_expired, other_expired, unowned];
    running.sort();
    want.sort();
    assert_eq!(running, want, "while running: expired and unowned only");
    drop(r);

    let until = live();
    let mut tx = s.begin().await.unwrap();
    for (id, rule) in [
        (other_live, ClaimRule::Restart),
        (own, ClaimRule::Expired),
        (finished, ClaimRule::Restart),
    ] {
        assert!(
            flows::flow_claim(&mut tx, id, "a", &now, &until, rule)
                .await
                .unwrap()
                .is_none(),
            "{id} is not claimable under {rule:?}"
        );
    }
    let claimed = flows::flow_claim(&mut tx, own, "a", &now, &until, ClaimRule::Restart)
        .await
        .unwrap()
        .expect("own flow at restart");
    assert_eq!(
        (claimed.owner.as_deref(), claimed.generation),
        (Some("a"), 2)
    );
    assert_eq!(claimed.lease_expires_at.as_deref(), Some(until.as_str()));
    let claimed = flows::flow_claim(&mut tx, unowned, "a", &now, &until, ClaimRule::Expired)
        .await
        .unwrap()
        .expect("unowned flow");
    assert_eq!(
        (claimed.owner.as_deref(), claimed.generation),
        (Some("a"), 1)
    );
    let claimed = flows::flow_claim(
        &mut tx,
        other_expired,
        "a",
        &now,
        &until,
        ClaimRule::Expired,
    )
    .await
    .unwrap()
    .expect("expired flow of another node");
    assert_eq!(
        (claimed.owner.as_deref(), claimed.generation),
        (Some("a"), 2)
    );
    // Claimed, its lease is live again: nobody else takes it.
    assert!(
        flows::flow_claim(
            &mut tx,
            other_expired,
            "b",
            &now,
            &until,
            ClaimRule::Restart
        )
        .await
        .unwrap()
        .is_none()
    );
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_claim_fences_off_the_previous_generation() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let id = flow(&s, "a", PAST).await;
    let until = live();
    let mut tx = s.begin().await.unwrap();
    assert!(
        flows::flow_hold(&mut tx, id, "a", 1, &until).await.unwrap(),
        "an expired lease not yet claimed is still held"
    );
    // Another node whose clock runs ahead sees the lease as expired.
    let later = flows::lease_until(Duration::from_secs(3600));
    let b = flows::flow_claim(&mut tx, id, "b", &later, &until, ClaimRule::Expired)
        .await
        .unwrap()
        .expect("claimed by b");
    assert_eq!(b.generation, 2);
    assert!(!flows::flow_hold(&mut tx, id, "a", 1, &until).await.unwrap());
    assert!(
        !flows::flow_hold(&mut tx, id, "b", 1, &until).await.unwrap(),
        "the owner under an old generation is refused too"
    );
    assert!(flows::flow_hold(&mut tx, id, "b", 2, &until).await.unwrap());
    assert!(
        flows::flow_renew_leases(&mut tx, "a", &[id], &until)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        flows::flow_renew_leases(&mut tx, "b", &[id, FlowId::new()], &until)
            .await
            .unwrap(),
        vec![(id, 2)]
    );
    assert!(!flows::flow_release(&mut tx, id, "a", 1).await.unwrap());
    flows::flow_advance(&mut tx, id, 2, None, FlowState::Done, None, None)
        .await
        .unwrap();
    assert!(
        !flows::flow_hold(&mut tx, id, "b", 2, &until).await.unwrap(),
        "a finished flow is held by nobody"
    );
    assert!(
        flows::flow_renew_leases(&mut tx, "b", &[id], &until)
            .await
            .unwrap()
            .is_empty()
    );
    tx.commit().await.unwrap();
    let mut r = s.read().await.unwrap();
    let f = flows::flow_get(&mut r, id).await.unwrap().unwrap();
    assert_eq!((f.owner.as_deref(), f.lease_expires_at), (Some("b"), None));
}

#[tokio::test]
async fn a_released_flow_is_claimable_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let id = flow(&s, "a", &live()).await;
    let now = scoria_store::now();
    let mut tx = s.begin().await.unwrap();
    assert!(
        flows::flow_claim(&mut tx, id, "b", &now, &live(), ClaimRule::Expired)
            .await
            .unwrap()
            .is_none()
    );
    assert!(flows::flow_release(&mut tx, id, "a", 1).await.unwrap());
    let b = flows::flow_claim(&mut tx, id, "b", &now, &live(), ClaimRule::Expired)
        .await
        .unwrap()
        .expect("released, then claimed");
    assert_eq!((b.owner.as_deref(), b.generation), (Some("b"), 2));
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn two_nodes_claiming_one_expired_flow_get_it_once() {
    let dir = tempfile::tempdir().unwrap();
    // Two stores on one database: two processes.
    let (s1, s2) = (open(&dir).await, open(&dir).await);
    for _ in 0..20 {
        let id = flow(&s1, "dead", PAST).await;
        let claim = |s: Store, node: &'static str| async move {
            let mut tx = s.begin().await.expect("begin");
            let now = scoria_store::now();
            let got = flows::flow_claim(&mut tx, id, node, &now, &live(), ClaimRule::Expired)
                .await
                .expect("claim");
            tx.commit().await.expect("commit");
            got.map(|f| (node, f.generation))
        };
        let (a, b) = tokio::join!(
            tokio::spawn(claim(s1.clone(), "a")),
            tokio::spawn(claim(s2.clone(), "b"))
        );
        let won: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
        assert_eq!(won.len(), 1, "{won:?}");
        assert_eq!(won[0].1, 2);
    }
}
