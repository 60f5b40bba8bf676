//! `GET /resource_filters` publishes the filter table the lists enforce, and
//! lists page with `offset` as Cinder does.

mod support;

use serde_json::{Value, json};
use support::TestApp;

const V33: &[(&str, &str)] = &[("OpenStack-API-Version", "volume 3.33")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_published_filters_are_the_enforced_ones() {
    let t = TestApp::new().await;
    let support::Personas {
        a,
        member: (member, _),
        ..
    } = t.personas().await;
    let get = |path: String, headers: &'static [(&'static str, &'static str)]| {
        let member = member.clone();
        let t = &t;
        async move { t.raw("GET", &path, Some(&member), headers, None).await }
    };

    // Below 3.33 the route does not exist.
    let r = get(format!("/v3/{a}/resource_filters"), &[]).await;
    assert_eq!(r.status, 404, "{}", r.body);

    let r = get(format!("/v3/{a}/resource_filters"), V33).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let table = r.body["resource_filters"].as_array().expect("list").clone();
    let resources: Vec<&str> = table
        .iter()
        .map(|row| row["resource"].as_str().expect("resource"))
        .collect();
    assert_eq!(
        resources,
        ["volume", "snapshot", "backup", "group", "message"]
    );
    assert_eq!(
        table[0],
        json!({"resource": "volume", "filters": ["name", "status", "metadata", "bootable",
            "availability_zone", "group_id"]})
    );

    // `resource` narrows it; a resource with no row gives an empty list.
    let r = get(format!("/v3/{a}/resource_filters?resource=snapshot"), V33).await;
    assert_eq!(
        r.body,
        json!({"resource_filters": [{"resource": "snapshot",
            "filters": ["name", "status", "volume_id", "metadata"]}]})
    );
    let r = get(format!("/v3/{a}/resource_filters?resource=backup"), V33).await;
    assert_eq!(
        r.body,
        json!({"resource_filters": [{"resource": "backup",
            "filters": ["name", "status", "volume_id"]}]})
    );
    let r = get(format!("/v3/{a}/resource_filters?resource=attachment"), V33).await;
    assert_eq!(r.body, json!({"resource_filters": []}));

    // Every published filter is accepted by its list, and a key that is in
    // no row is refused by each (3.33 on).
    let lists = [
        ("volume", "volumes", "volume 3.33"),
        ("snapshot", "snapshots", "volume 3.33"),
        ("backup", "backups", "volume 3.33"),
        ("group", "groups", "volume 3.33"),
        ("message", "messages", "volume 3.33"),
    ];
    for row in &table {
        let resource = row["resource"].as_str().unwrap();
        let (_, path, version) = lists
            .iter()
            .find(|(r, ..)| *r == resource)
            .expect("a list for every published resource");
        for f in row["filters"].as_array().unwrap() {
            let f = f.as_str().unwrap();
            let value = match f {
                "metadata" => "{}",
                "bootable" => "true",
                "group_id" | "volume_id" | "resource_uuid" => {
                    "3f1c2b9e-8d4a-4e6f-9b7c-1a2b3c4d5e6f"
                }
                _ => "x",
            };
            let r = t
                .raw(
                    "GET",
                    &format!("/v3/{a}/{path}?{f}={value}"),
                    Some(&member),
                    &[("OpenStack-API-Version", version)],
                    None,
                )
                .await;
            assert_eq!(r.status, 200, "{path}?{f}: {}", r.body);
        }
        let r = t
            .raw(
                "GET",
                &format!("/v3/{a}/{path}?size=1"),
                Some(&member),
                &[("OpenStack-API-Version", version)],
                None,
            )
            .await;
        assert_eq!(
            (r.status, &r.body),
            (
                400,
                &json!({"badRequest": {"code": 400, "message":
                "Invalid input received: Invalid filters size are found in query options."}})
            ),
            "{path}"
        );
    }
    // Before 3.33 an unknown filter is ignored, as Cinder ignores it.
    let r = get(format!("/v3/{a}/volumes?size=1"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

fn ids(body: &Value, key: &str) -> Vec<String> {
    body[key]
        .as_array()
        .expect("list")
        .iter()
        .map(|v| v["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_lists_honour_offset() {
    let t = TestApp::new().await;
    let support::Personas {
        a,
        member: (member, _),
        ..
    } = t.personas().await;
    for _ in 0..3 {
        t.volume(&member, &a).await;
    }
    let all = t
        .call(
            "GET",
            &format!("/v3/{a}/volumes?sort=created_at:asc"),
            Some(&member),
            None,
        )
        .await;
    let all = ids(&all.body, "volumes");
    assert_eq!(all.len(), 3);
    let r = t
        .call(
            "GET",
            &format!("/v3/{a}/volumes?sort=created_at:asc&offset=1&limit=1"),
            Some(&member),
            None,
        )
        .await;
    assert_eq!(ids(&r.body, "volumes"), all[1..2]);
    // The next page's link reads on from the marker, without the offset.
    let next = r.body["volumes_links"][0]["href"].as_str().expect("link");
    assert!(
        next.contains(&format!("marker={}", all[1])) && !next.contains("offset"),
        "{next}"
    );
    let r = t
        .call(
            "GET",
            &format!("/v3/{a}/volumes/detail?offset=2"),
            Some(&member),
            None,
        )
        .await;
    assert_eq!(ids(&r.body, "volumes").len(), 1);
    let r = t
        .call(
            "GET",
            &format!("/v3/{a}/volumes?offset=-1"),
            Some(&member),
            None,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lists_sort_and_page_like_volumes() {
    let t = TestApp::new().await;
    let (admin, own) = t.admin().await;
    for n in ["t-b", "t-c", "t-a"] {
        let r = t
            .call(
                "POST",
                &format!("/v3/{own}/types"),
                Some(&admin),
                Some(json!({"volume_type": {"name": n}})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let r = t
            .call(
                "POST",
                &format!("/v3/{own}/qos-specs"),
                Some(&admin),
                Some(json!({"qos_specs": {"name": format!("q{n}")}})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let names = |body: &Value, key: &str| -> Vec<String> {
        body[key]
            .as_array()
            .expect("list")
            .iter()
            .map(|v| v["name"].as_str().expect("name").to_owned())
            .collect()
    };
    let get = |path: String| {
        let t = &t;
        let admin = admin.clone();
        async move { t.call("GET", &path, Some(&admin), None).await }
    };
    // Types, by name ascending (__DEFAULT__ sorts first), a page at a time.
    let r = get(format!("/v3/{own}/types?sort=name:asc")).await;
    let all = names(&r.body, "volume_types");
    assert_eq!(all, ["__DEFAULT__", "t-a", "t-b", "t-c"]);
    let ids: Vec<String> = r.body["volume_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect();
    let r = get(format!(
        "/v3/{own}/types?sort=name:asc&marker={}&limit=2",
        ids[1]
    ))
    .await;
    assert_eq!(names(&r.body, "volume_types"), ["t-b", "t-c"]);
    let r = get(format!(
        "/v3/{own}/types?sort_key=name&sort_dir=desc&offset=1&limit=1"
    ))
    .await;
    assert_eq!(names(&r.body, "volume_types"), ["t-b"]);
    // QoS specs likewise.
    let r = get(format!("/v3/{own}/qos-specs?sort=name:desc&limit=2")).await;
    assert_eq!(names(&r.body, "qos_specs"), ["qt-c", "qt-b"]);
}
