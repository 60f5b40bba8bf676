//! The group store's tests: group types with their specs and unique names,
//! conditional membership and deletion of groups, listing with filters, sorts
//! and pages.

use super::*;
use crate::volumes::{NewVolume, volume_create, volume_get, volume_set_status};
use crate::{testing, volume_types};

fn default_type() -> VolumeTypeId {
    volume_types::DEFAULT_TYPE_ID.parse().unwrap()
}

async fn new_type(tx: &mut Conn, name: &str, public: bool) -> GroupTypeId {
    let id = GroupTypeId::new();
    let specs = [("k".to_string(), "v".to_string())].into();
    group_type_create(tx, id, name, Some("d"), public, &specs)
        .await
        .unwrap();
    id
}

fn new_group(project: &str, ty: GroupTypeId, name: &str) -> NewGroup {
    NewGroup {
        id: GroupId::new(),
        project_id: project.into(),
        user_id: "u".into(),
        name: Some(name.into()),
        description: None,
        status: GroupStatus::Available,
        availability_zone: "nova".into(),
        group_type_id: ty,
        backend: Some("file".into()),
        source_group_id: None,
        last_flow_id: None,
        volume_type_ids: vec![default_type()],
    }
}

fn new_volume(project: &str) -> NewVolume {
    NewVolume {
        id: VolumeId::new(),
        project_id: project.into(),
        user_id: "u".into(),
        name: None,
        description: None,
        size: 1,
        status: VolumeStatus::Available,
        bootable: false,
        multiattach: false,
        availability_zone: "nova".into(),
        volume_type_id: default_type(),
        snapshot_id: None,
        source_volid: None,
        reservation_id: None,
        last_flow_id: None,
        metadata: BTreeMap::new(),
    }
}

#[tokio::test]
async fn group_types_with_specs_names_unique_delete_while_unused() {
    let (s, _d) = testing::store().await;
    let mut tx = s.begin().await.unwrap();
    let a = new_type(&mut tx, "a", true).await;
    let b = new_type(&mut tx, "b", false).await;
    let dup = group_type_create(
        &mut tx,
        GroupTypeId::new(),
        "a",
        None,
        true,
        &BTreeMap::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(dup, StoreError::Duplicate(_)), "{dup:?}");
    assert!(matches!(
        group_type_update(&mut tx, b, Some("a"), None, None).await,
        Err(StoreError::Duplicate(_))
    ));
    assert_eq!(
        group_type_get(&mut tx, a)
            .await
            .unwrap()
            .unwrap()
            .group_specs["k"],
        "v"
    );
    let names = |ts: Vec<GroupType>| ts.into_iter().map(|t| t.name).collect::<Vec<_>>();
    let by_name = [(SortKey::Name, SortDir::Asc)];
    assert_eq!(
        names(group_type_list(&mut tx, None, &by_name).await.unwrap()),
        ["a", "b"]
    );
    assert_eq!(
        names(
            group_type_list(&mut tx, Some(true), &by_name)
                .await
                .unwrap()
        ),
        ["a"]
    );
    assert_eq!(
        names(
            group_type_list(&mut tx, Some(false), &by_name)
                .await
                .unwrap()
        ),
        ["b"]
    );
    let desc = [(SortKey::Name, SortDir::Desc)];
    assert_eq!(
        names(group_type_list(&mut tx, None, &desc).await.unwrap()),
        ["b", "a"]
    );
    group_type_specs_merge(&mut tx, a, &[("k".to_string(), "w".to_string())].into())
        .await
        .unwrap();
    assert_eq!(group_type_specs_get(&mut tx, a).await.unwrap()["k"], "w");
    assert!(group_type_spec_delete(&mut tx, a, "k").await.unwrap());
    assert!(!group_type_spec_delete(&mut tx, a, "k").await.unwrap());
    // A type a group has stays.
    group_create(&mut tx, &new_group("p", a, "g"))
        .await
        .unwrap();
    assert_eq!(group_type_delete(&mut tx, a).await.unwrap(), Some(false));
    assert_eq!(group_type_delete(&mut tx, b).await.unwrap(), Some(true));
    assert_eq!(group_type_delete(&mut tx, b).await.unwrap(), None);
}

#[tokio::test]
async fn membership_is_conditional_and_a_group_goes_only_empty() {
    let (s, _d) = testing::store().await;
    let mut tx = s.begin().await.unwrap();
    let ty = new_type(&mut tx, "t", true).await;
    let g = new_group("p", ty, "g");
    let other = new_group("p", ty, "other");
    group_create(&mut tx, &g).await.unwrap();
    group_create(&mut tx, &other).await.unwrap();
    assert!(matches!(
        group_create(&mut tx, &g).await,
        Err(StoreError::Duplicate(_))
    ));
    let got = group_get(&mut tx, g.id).await.unwrap().unwrap();
    assert_eq!(got.volume_type_ids, [default_type()]);
    let v = new_volume("p");
    volume_create(&mut tx, &v).await.unwrap();
    use VolumeStatus::*;
    let addable = [Available, InUse];
    assert!(
        group_add_volume(&mut tx, g.id, v.id, &addable)
            .await
            .unwrap()
    );
    // Never in two groups.
    assert!(
        !group_add_volume(&mut tx, other.id, v.id, &addable)
            .await
            .unwrap()
    );
    assert_eq!(
        volume_get(&mut tx, v.id).await.unwrap().unwrap().group_id,
        Some(g.id)
    );
    assert_eq!(group_volume_ids(&mut tx, g.id).await.unwrap(), [v.id]);
    // A group with volumes cannot go.
    assert!(
        group_set_status(
            &mut tx,
            g.id,
            &[GroupStatus::Available],
            GroupStatus::Deleting,
            None
        )
        .await
        .unwrap()
    );
    assert!(!group_delete(&mut tx, g.id).await.unwrap());
    assert!(!group_purge(&mut tx, g.id).await.unwrap());
    // Removal checks the status and the membership.
    assert!(
        volume_set_status(&mut tx, v.id, &[], Deleting)
            .await
            .unwrap()
    );
    assert!(
        !group_remove_volume(&mut tx, g.id, v.id, &addable)
            .await
            .unwrap()
    );
    assert!(
        volume_set_status(&mut tx, v.id, &[], Available)
            .await
            .unwrap()
    );
    assert!(
        !group_remove_volume(&mut tx, other.id, v.id, &addable)
            .await
            .unwrap()
    );
    assert!(
        group_remove_volume(&mut tx, g.id, v.id, &addable)
            .await
            .unwrap()
    );
    assert!(group_delete(&mut tx, g.id).await.unwrap());
    assert!(group_get(&mut tx, g.id).await.unwrap().is_none());
    // Holding checks the status.
    assert!(
        group_hold(&mut tx, other.id, &[GroupStatus::Available])
            .await
            .unwrap()
    );
    assert!(
        !group_hold(&mut tx, other.id, &[GroupStatus::Error])
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn list_filters_sorts_and_pages() {
    let (s, _d) = testing::store().await;
    let mut tx = s.begin().await.unwrap();
    let ty = new_type(&mut tx, "t", true).await;
    for (p, n) in [("p", "c"), ("p", "a"), ("q", "x"), ("p", "b")] {
        group_create(&mut tx, &new_group(p, ty, n)).await.unwrap();
    }
    let names = |gs: Vec<Group>| gs.into_iter().map(|g| g.name.unwrap()).collect::<Vec<_>>();
    let q = |marker, offset, limit| GroupQuery {
        project_id: Some("p".into()),
        sort: vec![(SortKey::Name, SortDir::Asc)],
        marker,
        offset,
        limit,
        ..Default::default()
    };
    let all = group_list(&mut tx, &q(None, None, None)).await.unwrap();
    let a = all[0].id;
    assert_eq!(names(all), ["a", "b", "c"]);
    assert_eq!(
        names(
            group_list(&mut tx, &q(Some(a), None, Some(1)))
                .await
                .unwrap()
        ),
        ["b"]
    );
    assert_eq!(
        names(group_list(&mut tx, &q(None, Some(2), None)).await.unwrap()),
        ["c"]
    );
    assert!(matches!(
        group_list(&mut tx, &q(Some(GroupId::new()), None, None)).await,
        Err(StoreError::MarkerNotFound(_))
    ));
    let everyone = GroupQuery::default();
    assert_eq!(group_list(&mut tx, &everyone).await.unwrap().len(), 4);
    let named = GroupQuery {
        name: Some("x".into()),
        ..Default::default()
    };
    assert_eq!(names(group_list(&mut tx, &named).await.unwrap()), ["x"]);
}
