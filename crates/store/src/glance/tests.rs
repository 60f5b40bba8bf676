//! The image service's rows: lifecycle, listing, members.

use super::*;
use crate::testing;
use scoria_model::glance::MemberStatus;

fn image(owner: &str, name: &str, visibility: Visibility) -> GlanceImage {
    let mut i = GlanceImage::new(GlanceImageId::new(), owner);
    i.name = Some(name.into());
    i.visibility = visibility;
    i.tags = ["t1".to_string()].into();
    i.properties = [("os".to_string(), name.to_string())].into();
    i
}

fn data(size: i64) -> UploadedData {
    UploadedData {
        size,
        checksum: "c".into(),
        os_hash_algo: "sha512".into(),
        os_hash_value: "h".into(),
    }
}

#[tokio::test]
async fn an_upload_moves_through_its_statuses_once() {
    let (s, _d) = testing::store().await;
    let mut tx = s.begin().await.unwrap();
    let i = image("p", "a", Visibility::Private);
    glance_image_create(&mut tx, &i).await.unwrap();
    assert!(matches!(
        glance_image_create(&mut tx, &i).await,
        Err(StoreError::Duplicate(_))
    ));
    assert!(glance_image_begin_upload(&mut tx, i.id, 10).await.unwrap());
    assert!(
        !glance_image_begin_upload(&mut tx, i.id, 10).await.unwrap(),
        "one upload at a time"
    );
    assert_eq!(glance_image_usage(&mut tx, "p", None).await.unwrap(), 10);
    assert_eq!(
        glance_image_usage(&mut tx, "p", Some(i.id)).await.unwrap(),
        0
    );
    assert!(glance_image_reserve(&mut tx, i.id, 30).await.unwrap());
    assert!(glance_image_reserve(&mut tx, i.id, 20).await.unwrap());
    assert_eq!(
        glance_image_usage(&mut tx, "p", None).await.unwrap(),
        30,
        "never shrinks"
    );
    assert!(
        !glance_image_delete(&mut tx, i.id).await.unwrap(),
        "an upload owns it"
    );
    assert!(glance_image_abort_upload(&mut tx, i.id).await.unwrap());
    assert_eq!(glance_image_usage(&mut tx, "p", None).await.unwrap(), 0);
    assert!(glance_image_begin_upload(&mut tx, i.id, 5).await.unwrap());
    assert!(
        glance_image_finish_upload(&mut tx, i.id, &data(25))
            .await
            .unwrap()
    );
    assert!(
        !glance_image_finish_upload(&mut tx, i.id, &data(25))
            .await
            .unwrap()
    );
    let got = glance_image_get(&mut tx, i.id).await.unwrap().unwrap();
    assert_eq!(
        (got.status, got.size, got.upload_reserved),
        (GlanceImageStatus::Active, Some(25), 0)
    );
    assert_eq!(got.tags, i.tags);
    assert_eq!(got.properties, i.properties);
    assert_eq!(glance_image_usage(&mut tx, "p", None).await.unwrap(), 25);
    assert!(
        glance_image_set_status(
            &mut tx,
            i.id,
            GlanceImageStatus::Active,
            GlanceImageStatus::Deactivated
        )
        .await
        .unwrap()
    );
    assert_eq!(
        glance_image_usage(&mut tx, "p", None).await.unwrap(),
        25,
        "deactivated data counts"
    );
    assert!(glance_image_delete(&mut tx, i.id).await.unwrap());
    assert!(glance_image_get(&mut tx, i.id).await.unwrap().is_none());
}

#[tokio::test]
async fn start_up_puts_interrupted_uploads_back_to_queued() {
    let (s, _d) = testing::store().await;
    let mut tx = s.begin().await.unwrap();
    let (a, b) = (
        image("p", "a", Visibility::Private),
        image("p", "b", Visibility::Private),
    );
    glance_image_create(&mut tx, &a).await.unwrap();
    glance_image_create(&mut tx, &b).await.unwrap();
    glance_image_begin_upload(&mut tx, a.id, 100).await.unwrap();
    assert_eq!(
        glance_image_abort_all_uploads(&mut tx).await.unwrap(),
        [a.id]
    );
    let got = glance_image_get(&mut tx, a.id).await.unwrap().unwrap();
    assert_eq!(
        (got.status, got.upload_reserved),
        (GlanceImageStatus::Queued, 0)
    );
}

#[tokio::test]
async fn lists_show_what_each_project_may_see_and_page_with_a_marker() {
    let (s, _d) = testing::store().await;
    let mut tx = s.begin().await.unwrap();
    let own = image("p", "own", Visibility::Private);
    let public = image("q", "public", Visibility::Public);
    let private = image("q", "private", Visibility::Private);
    let community = image("q", "community", Visibility::Community);
    let shared = image("q", "shared", Visibility::Shared);
    let pending = image("q", "pending", Visibility::Shared);
    for i in [&own, &public, &private, &community, &shared, &pending] {
        glance_image_create(&mut tx, i).await.unwrap();
    }
    glance_member_create(&mut tx, shared.id, "p").await.unwrap();
    glance_member_create(&mut tx, pending.id, "p")
        .await
        .unwrap();
    assert!(
        glance_member_set_status(&mut tx, shared.id, "p", MemberStatus::Accepted)
            .await
            .unwrap()
    );
    let names = |v: Vec<GlanceImage>| {
        let mut n: Vec<String> = v.into_iter().map(|i| i.name.unwrap()).collect();
        n.sort();
        n
    };
    let q = |visibility, member_status| GlanceImageQuery {
        viewer: Some("p".into()),
        visibility,
        member_status,
        ..GlanceImageQuery::default()
    };
    use VisibilityFilter::*;
    let accepted = Some(MemberStatus::Accepted);
    assert_eq!(
        names(
            glance_image_list(&mut tx, &q(Default, accepted))
                .await
                .unwrap()
        ),
        ["own", "public", "shared"]
    );
    assert_eq!(
        names(glance_image_list(&mut tx, &q(Default, None)).await.unwrap()),
        ["own", "pending", "public", "shared"]
    );
    assert_eq!(
        names(glance_image_list(&mut tx, &q(All, accepted)).await.unwrap()),
        ["community", "own", "public", "shared"]
    );
    assert_eq!(
        names(
            glance_image_list(&mut tx, &q(Only(Visibility::Private), accepted))
                .await
                .unwrap()
        ),
        ["own"]
    );
    assert_eq!(
        names(
            glance_image_list(&mut tx, &q(Only(Visibility::Community), accepted))
                .await
                .unwrap()
        ),
        ["community"]
    );
    let admin = GlanceImageQuery::default();
    assert_eq!(glance_image_list(&mut tx, &admin).await.unwrap().len(), 6);
    // Another project's private image is no marker.
    let mut bad = q(Default, accepted);
    bad.marker = Some(private.id);
    assert!(matches!(
        glance_image_list(&mut tx, &bad).await,
        Err(StoreError::MarkerNotFound(_))
    ));
    // Paging by name, two at a time, loses and repeats nothing.
    let mut seen = Vec::new();
    let mut marker = None;
    loop {
        let mut page_q = GlanceImageQuery {
            sort: vec![(SortKey::Name, SortDir::Asc)],
            limit: Some(2),
            marker,
            ..GlanceImageQuery::default()
        };
        page_q.viewer = None;
        let page = glance_image_list(&mut tx, &page_q).await.unwrap();
        if page.is_empty() {
            break;
        }
        marker = page.last().map(|i| i.id);
        seen.extend(page.into_iter().map(|i| i.name.unwrap()));
    }
    assert_eq!(
        seen,
        ["community", "own", "pending", "private", "public", "shared"]
    );
    // Tags and properties filter.
    let mut tagged = q(Default, accepted);
    tagged.tags = vec!["t1".into()];
    tagged.properties = vec![("os".into(), "own".into())];
    assert_eq!(
        names(glance_image_list(&mut tx, &tagged).await.unwrap()),
        ["own"]
    );
}

#[tokio::test]
async fn saving_rewrites_attributes_properties_and_tags_only_in_the_status_read() {
    let (s, _d) = testing::store().await;
    let mut tx = s.begin().await.unwrap();
    let mut i = image("p", "a", Visibility::Private);
    glance_image_create(&mut tx, &i).await.unwrap();
    i.name = Some("b".into());
    i.tags = ["x".to_string(), "y".to_string()].into();
    i.properties = [("k".to_string(), "v".to_string())].into();
    assert!(
        !glance_image_save(&mut tx, &i, GlanceImageStatus::Active)
            .await
            .unwrap()
    );
    assert!(
        glance_image_save(&mut tx, &i, GlanceImageStatus::Queued)
            .await
            .unwrap()
    );
    let got = glance_image_get(&mut tx, i.id).await.unwrap().unwrap();
    assert_eq!(
        (got.name, got.tags, got.properties),
        (i.name, i.tags, i.properties)
    );
    assert!(glance_image_tag_add(&mut tx, i.id, "z").await.unwrap());
    assert!(!glance_image_tag_add(&mut tx, i.id, "z").await.unwrap());
    assert!(glance_image_tag_delete(&mut tx, i.id, "x").await.unwrap());
    assert!(!glance_image_tag_delete(&mut tx, i.id, "x").await.unwrap());
    let got = glance_image_get(&mut tx, i.id).await.unwrap().unwrap();
    assert_eq!(got.tags, ["y".to_string(), "z".to_string()].into());
    assert!(glance_member_create(&mut tx, i.id, "q").await.is_ok());
    assert!(matches!(
        glance_member_create(&mut tx, i.id, "q").await,
        Err(StoreError::Duplicate(_))
    ));
    assert_eq!(glance_member_list(&mut tx, i.id).await.unwrap().len(), 1);
    assert!(glance_member_delete(&mut tx, i.id, "q").await.unwrap());
    assert!(!glance_member_delete(&mut tx, i.id, "q").await.unwrap());
}
