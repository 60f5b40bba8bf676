//! The operator APIs (`os-services`, `os-hosts`, `scheduler-stats`,
//! `capabilities`) and user messages, through HTTP, with the keys tempest's
//! schemas allow and require.

mod support;

use std::collections::BTreeSet;

use serde_json::{Value, json};
use support::TestApp;

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// (binary, host) of each listed service.
fn listed(body: &Value) -> Vec<(String, String)> {
    body["services"]
        .as_array()
        .expect("services")
        .iter()
        .map(|s| {
            (
                s["binary"].as_str().unwrap_or("").to_owned(),
                s["host"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

struct World {
    t: TestApp,
    admin: String,
    project: String,
}

impl World {
    async fn new() -> World {
        let t = TestApp::new().await;
        let (admin, project) = t.admin().await;
        World { t, admin, project }
    }

    async fn get(&self, path: &str, version: &str) -> support::Reply {
        self.t
            .raw(
                "GET",
                &format!("/v3/{}{path}", self.project),
                Some(&self.admin),
                &[("OpenStack-API-Version", version)],
                None,
            )
            .await
    }

    async fn put(&self, path: &str, body: Value) -> support::Reply {
        self.t
            .call(
                "PUT",
                &format!("/v3/{}{path}", self.project),
                Some(&self.admin),
                Some(body),
            )
            .await
    }

    async fn create(&self, token: &str, project: &str) -> (u16, String, String) {
        let r = self
            .t
            .call(
                "POST",
                &format!("/v3/{project}/volumes"),
                Some(token),
                Some(json!({"volume": {"size": 1}})),
            )
            .await;
        let request_id = r
            .headers
            .get("x-openstack-request-id")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let id = r.body["volume"]["id"].as_str().unwrap_or("").to_owned();
        (r.status, id, request_id)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_list_filter_and_show_cinders_keys() {
    let w = World::new().await;
    let all = w.get("/os-services", "volume 3.0").await;
    assert_eq!(all.status, 200, "{:?}", all.body);
    assert_eq!(
        listed(&all.body),
        vec![
            ("cinder-scheduler".to_owned(), "scoria".to_owned()),
            ("cinder-volume".to_owned(), "scoria@file".to_owned()),
        ]
    );
    let base = [
        "binary",
        "host",
        "zone",
        "status",
        "state",
        "updated_at",
        "disabled_reason",
    ];
    let volume_extra = ["replication_status", "active_backend_id", "frozen"];
    // (microversion, extra keys of every service, extra keys of volume services)
    let table: &[(&str, &[&str], &[&str])] = &[
        ("volume 3.0", &[], &volume_extra),
        ("volume 3.7", &["cluster"], &volume_extra),
        (
            "volume 3.49",
            &["cluster"],
            &[
                "replication_status",
                "active_backend_id",
                "frozen",
                "backend_state",
            ],
        ),
    ];
    for (version, every, volume) in table {
        let r = w.get("/os-services", version).await;
        for s in r.body["services"].as_array().expect("services") {
            let mut want = set(&base);
            want.extend(every.iter().map(|k| k.to_string()));
            if s["binary"] == "cinder-volume" {
                want.extend(volume.iter().map(|k| k.to_string()));
            }
            assert_eq!(keys(s), want, "{version}: {s}");
            assert_eq!(s["state"], "up");
            assert_eq!(s["status"], "enabled");
            assert_eq!(s["zone"], "nova");
        }
    }
    // Filters, with Cinder's host matching (a bare host matches its backends).
    let filters: &[(&str, &[&str])] = &[
        ("?host=scoria", &["cinder-scheduler", "cinder-volume"]),
        ("?host=scoria@file", &["cinder-volume"]),
        ("?binary=cinder-scheduler", &["cinder-scheduler"]),
        ("?host=scoria&binary=cinder-volume", &["cinder-volume"]),
        ("?host=invalid_host", &[]),
        ("?binary=invalid_binary", &[]),
    ];
    for (q, want) in filters {
        let r = w.get(&format!("/os-services{q}"), "volume 3.0").await;
        let got: Vec<String> = listed(&r.body).into_iter().map(|(b, _)| b).collect();
        assert_eq!(got, *want, "{q}");
    }
    // A volume's host attribute names its volume service.
    let (status, v, _) = w.create(&w.admin, &w.project).await;
    assert_eq!(status, 202);
    w.t.wait_status(&w.admin, &w.project, &v, "available").await;
    let vol = w.get(&format!("/volumes/{v}"), "volume 3.0").await;
    let host = vol.body["volume"]["os-vol-host-attr:host"]
        .as_str()
        .expect("host attr");
    assert_eq!(host, "scoria@file#file");
    let backend = host.split('#').next().unwrap();
    let r = w
        .get(
            &format!("/os-services?host={backend}&binary=cinder-volume"),
            "volume 3.0",
        )
        .await;
    assert_eq!(listed(&r.body).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_volume_service_gets_no_volumes_until_enabled() {
    let w = World::new().await;
    let r = w
        .put(
            "/os-services/disable-log-reason",
            json!({"host": "scoria@file", "binary": "cinder-volume", "disabled_reason": " maintenance "}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body,
        json!({"host": "scoria@file", "binary": "cinder-volume", "service": "",
               "status": "disabled", "disabled": true, "disabled_reason": "maintenance"})
    );
    let svc = w
        .get("/os-services?binary=cinder-volume", "volume 3.0")
        .await;
    assert_eq!(svc.body["services"][0]["status"], "disabled");
    assert_eq!(svc.body["services"][0]["disabled_reason"], "maintenance");
    let hosts = w.get("/os-hosts", "volume 3.0").await;
    assert!(
        hosts.body["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["host_name"] == "scoria@file" && h["service-state"] == "disabled")
    );
    // Cinder hides a disabled volume host's usage and pools.
    assert_eq!(
        w.get("/os-hosts/scoria@file", "volume 3.0").await.status,
        404
    );
    let pools = w.get("/scheduler-stats/get_pools", "volume 3.0").await;
    assert_eq!(pools.body, json!({"pools": []}));

    // A create is accepted, fails to schedule, and says so.
    let (status, v, _) = w.create(&w.admin, &w.project).await;
    assert_eq!(status, 202);
    w.t.wait_status(&w.admin, &w.project, &v, "error").await;

    // A plain disable keeps the reason; enable clears it.
    let r = w
        .put(
            "/os-services/disable",
            json!({"host": "scoria@file", "service": "cinder-volume"}),
        )
        .await;
    assert_eq!(
        r.body,
        json!({"host": "scoria@file", "binary": "", "service": "cinder-volume",
               "status": "disabled", "disabled": true})
    );
    let svc = w
        .get("/os-services?binary=cinder-volume", "volume 3.0")
        .await;
    assert_eq!(svc.body["services"][0]["disabled_reason"], "maintenance");
    let r = w
        .put(
            "/os-services/enable",
            json!({"host": "scoria@file", "binary": "cinder-volume"}),
        )
        .await;
    assert_eq!(
        r.body,
        json!({"host": "scoria@file", "binary": "cinder-volume", "service": "",
               "status": "enabled", "disabled": false, "disabled_reason": null})
    );
    let (status, v, _) = w.create(&w.admin, &w.project).await;
    assert_eq!(status, 202);
    w.t.wait_status(&w.admin, &w.project, &v, "available").await;

    // A disabled scheduler refuses creates outright.
    let sched = json!({"host": "scoria", "binary": "cinder-scheduler"});
    assert_eq!(
        w.put("/os-services/disable", sched.clone()).await.status,
        200
    );
    let (status, _, _) = w.create(&w.admin, &w.project).await;
    assert_eq!(status, 503);
    assert_eq!(w.put("/os-services/enable", sched).await.status, 200);
    let (status, _, _) = w.create(&w.admin, &w.project).await;
    assert_eq!(status, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_backend_takes_no_volumes_and_keeps_its_own() {
    let w = World::new().await;
    let v = w.t.volume(&w.admin, &w.project).await;
    let host = json!({"host": "scoria@file"});
    let freeze = w.put("/os-services/freeze", host.clone()).await;
    assert_eq!((freeze.status, &freeze.body), (200, &Value::Null));
    let svc = w
        .get("/os-services?binary=cinder-volume", "volume 3.0")
        .await;
    assert_eq!(svc.body["services"][0]["frozen"], true);
    assert_eq!(svc.body["services"][0]["status"], "enabled");
    // Freezing twice changes nothing and says so.
    assert_eq!(w.put("/os-services/freeze", host.clone()).await.status, 400);
    let pools = w.get("/scheduler-stats/get_pools", "volume 3.0").await;
    assert_eq!(pools.body, json!({"pools": []}));
    // No new volume lands there; the volumes there cannot change.
    let (status, failed, _) = w.create(&w.admin, &w.project).await;
    assert_eq!(status, 202);
    w.t.wait_status(&w.admin, &w.project, &failed, "error")
        .await;
    let extend =
        w.t.call(
            "POST",
            &format!("/v3/{}/volumes/{v}/action", w.project),
            Some(&w.admin),
            Some(json!({"os-extend": {"new_size": 2}})),
        )
        .await;
    assert_eq!(extend.status, 400, "{:?}", extend.body);
    let delete = |id: String| {
        let w = &w;
        async move {
            w.t.call(
                "DELETE",
                &format!("/v3/{}/volumes/{id}", w.project),
                Some(&w.admin),
                None,
            )
            .await
        }
    };
    // The failed volume was never placed: it can go.
    assert_eq!(delete(failed).await.status, 202);
    assert_eq!(delete(v.clone()).await.status, 400);
    w.t.wait_status(&w.admin, &w.project, &v, "available").await;
    // A bare host thaws its backends.
    let thaw = w.put("/os-services/thaw", json!({"host": "scoria"})).await;
    assert_eq!((thaw.status, &thaw.body), (200, &Value::Null));
    assert_eq!(w.put("/os-services/thaw", host).await.status, 400);
    assert_eq!(delete(v).await.status, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_pools_and_capabilities() {
    let w = World::new().await;
    let other = w.t.project(&w.admin, "other").await;
    w.t.user(&w.admin, "o-member", "pw-o-member", &other, "member")
        .await;
    let (member, _) = w.t.login("o-member", "pw-o-member", "other").await;
    w.t.volume(&w.admin, &w.project).await;
    w.t.volume(&member, &other).await;
    w.t.volume(&member, &other).await;

    let hosts = w.get("/os-hosts", "volume 3.0").await;
    assert_eq!(hosts.status, 200);
    let list = hosts.body["hosts"].as_array().expect("hosts");
    assert!(list.len() >= 2);
    for h in list {
        assert_eq!(
            keys(h),
            set(&[
                "service-status",
                "service",
                "zone",
                "service-state",
                "host_name",
                "last-update"
            ])
        );
        assert_eq!(h["service-status"], "available");
    }
    let zone = w.get("/os-hosts?zone=elsewhere", "volume 3.0").await;
    assert_eq!(zone.body, json!({"hosts": []}));

    let show = w.get("/os-hosts/scoria@file", "volume 3.0").await;
    assert_eq!(show.status, 200, "{:?}", show.body);
    let row = |project: &str, count: &str, gb: &str| {
        json!({"resource": {"host": "scoria@file", "project": project,
            "volume_count": count, "total_volume_gb": gb,
            "snapshot_count": "0", "total_snapshot_gb": "0"}})
    };
    let mut want = vec![row("(total)", "3", "3")];
    let mut per = vec![row(&w.project, "1", "1"), row(&other, "2", "2")];
    per.sort_by_key(|r| r["resource"]["project"].as_str().unwrap_or("").to_owned());
    want.extend(per);
    assert_eq!(show.body, json!({"host": want}));

    let pools = w.get("/scheduler-stats/get_pools", "volume 3.0").await;
    assert_eq!(pools.body, json!({"pools": [{"name": "scoria@file#file"}]}));
    let named = w
        .get(
            "/scheduler-stats/get_pools?name=scoria@file%23other",
            "volume 3.0",
        )
        .await;
    assert_eq!(named.body, json!({"pools": []}));
    let detail = w
        .get("/scheduler-stats/get_pools?detail=True", "volume 3.0")
        .await;
    let pool = &detail.body["pools"][0];
    assert_eq!(keys(pool), set(&["name", "capabilities"]));
    let caps = &pool["capabilities"];
    assert_eq!(caps["vendor_name"], "Scoria");
    assert_eq!(caps["storage_protocol"], "nbd");
    assert_eq!(caps["volume_backend_name"], "file");
    assert_eq!(caps["allocated_capacity_gb"], 3.0);
    assert_eq!(caps["thin_provisioning_support"], true);
    assert!(caps["total_capacity_gb"].as_f64().unwrap() > 0.0);
    assert!(caps["reserved_percentage"].is_u64());

    // Capabilities by backend host or by pool name; the stats agree with the
    // pool's.
    for host in ["scoria@file", "scoria@file%23file", "scoria"] {
        let c = w.get(&format!("/capabilities/{host}"), "volume 3.0").await;
        assert_eq!(c.status, 200, "{host}: {:?}", c.body);
        assert_eq!(
            keys(&c.body),
            set(&[
                "pool_name",
                "volume_backend_name",
                "namespace",
                "visibility",
                "driver_version",
                "vendor_name",
                "properties",
                "storage_protocol",
                "replication_targets",
                "display_name",
                "description"
            ])
        );
        assert_eq!(
            c.body["namespace"],
            "OS::Storage::Capabilities::scoria@file"
        );
        for k in ["vendor_name", "volume_backend_name", "storage_protocol"] {
            assert_eq!(c.body[k], caps[k], "{k}");
        }
        for (_, p) in c.body["properties"].as_object().expect("properties") {
            assert_eq!(keys(p), set(&["title", "description", "type"]));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_create_leaves_one_message_for_its_project() {
    let w = World::new().await;
    let t = &w.t;
    let a = t.project(&w.admin, "msg-a").await;
    let b = t.project(&w.admin, "msg-b").await;
    t.user(&w.admin, "ma-member", "pw-ma-member", &a, "member")
        .await;
    t.user(&w.admin, "ma-reader", "pw-ma-reader", &a, "reader")
        .await;
    t.user(&w.admin, "mb-member", "pw-mb-member", &b, "member")
        .await;
    let (a_member, _) = t.login("ma-member", "pw-ma-member", "msg-a").await;
    let (a_reader, _) = t.login("ma-reader", "pw-ma-reader", "msg-a").await;
    let (b_member, _) = t.login("mb-member", "pw-mb-member", "msg-b").await;

    let volume_service = json!({"host": "scoria@file", "binary": "cinder-volume"});
    assert_eq!(
        w.put("/os-services/disable", volume_service.clone())
            .await
            .status,
        200
    );
    let (status, v, request_id) = w.create(&a_member, &a).await;
    assert_eq!(status, 202);
    t.wait_status(&a_member, &a, &v, "error").await;
    assert_eq!(
        w.put("/os-services/enable", volume_service).await.status,
        200
    );

    let call = |method: &'static str, path: String, token: String, version: &'static str| async move {
        t.raw(
            method,
            &path,
            Some(&token),
            &[("OpenStack-API-Version", version)],
            None,
        )
        .await
    };
    // Before 3.3 there are no messages.
    let r = call(
        "GET",
        format!("/v3/{a}/messages"),
        a_member.clone(),
        "volume 3.2",
    )
    .await;
    assert_eq!(r.status, 404);
    let r = call(
        "GET",
        format!("/v3/{a}/messages"),
        a_member.clone(),
        "volume 3.3",
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(keys(&r.body), set(&["messages"]));
    let list = r.body["messages"].as_array().expect("messages");
    assert_eq!(list.len(), 1, "{list:?}");
    let m = &list[0];
    assert_eq!(
        keys(m),
        set(&[
            "id",
            "event_id",
            "user_message",
            "message_level",
            "created_at",
            "guaranteed_until",
            "request_id",
            "links",
            "resource_type",
            "resource_uuid"
        ])
    );
    assert_eq!(m["resource_uuid"], v.as_str());
    assert_eq!(m["resource_type"], "VOLUME");
    assert_eq!(m["event_id"], "VOLUME_VOLUME_001_003");
    // Cinder's words, then the scheduler's summary (no backend named).
    let said = m["user_message"].as_str().unwrap_or_default();
    assert!(
        said.starts_with(
            "schedule allocate volume:Could not find any available weighted backend. No backend"
        ),
        "{said}"
    );
    assert!(!said.contains("scoria@"), "{said}");
    assert_eq!(m["message_level"], "ERROR");
    assert_eq!(m["request_id"], request_id.as_str());
    let created = chrono::NaiveDateTime::parse_from_str(
        m["created_at"].as_str().unwrap(),
        "%Y-%m-%dT%H:%M:%S%.f",
    )
    .unwrap();
    let until = chrono::NaiveDateTime::parse_from_str(
        m["guaranteed_until"].as_str().unwrap(),
        "%Y-%m-%dT%H:%M:%S%.f",
    )
    .unwrap();
    assert_eq!(until - created, chrono::Duration::days(30));
    let id = m["id"].as_str().unwrap().to_owned();

    // Who sees it: (token, list length, show status).
    let admin = w.admin.clone();
    let who: [(&str, &str, String, usize, u16); 4] = [
        ("member", &a, a_member.clone(), 1, 200),
        ("reader", &a, a_reader.clone(), 1, 200),
        ("other project", &b, b_member.clone(), 0, 404),
        ("admin", &w.project, admin.clone(), 1, 200),
    ];
    for (name, project, token, n, show) in who {
        let r = call(
            "GET",
            format!("/v3/{project}/messages"),
            token.clone(),
            "volume 3.3",
        )
        .await;
        let mine = r.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["id"] == id.as_str())
            .count();
        assert_eq!(mine, n, "{name} lists");
        let r = call(
            "GET",
            format!("/v3/{project}/messages/{id}"),
            token,
            "volume 3.3",
        )
        .await;
        assert_eq!(r.status, show, "{name} shows");
        if show == 200 {
            assert_eq!(keys(&r.body), set(&["message"]));
            assert_eq!(r.body["message"]["id"], id.as_str());
        }
    }

    // Filters and paging from 3.5; unknown filters refused from 3.33.
    let filters: &[(&str, &str, Result<usize, u16>)] = &[
        ("?event_id=VOLUME_VOLUME_001_003", "volume 3.5", Ok(1)),
        ("?event_id=VOLUME_VOLUME_007_010", "volume 3.5", Ok(0)),
        ("?event_id=VOLUME_VOLUME_007_010", "volume 3.3", Ok(1)),
        (
            "?resource_type=VOLUME&message_level=ERROR",
            "volume 3.5",
            Ok(1),
        ),
        ("?limit=1&sort=created_at:asc", "volume 3.5", Ok(1)),
        ("?offset=1", "volume 3.5", Ok(0)),
        ("?colour=red", "volume 3.32", Ok(1)),
        ("?colour=red", "volume 3.33", Err(400)),
    ];
    for (q, version, want) in filters {
        let r = call(
            "GET",
            format!("/v3/{a}/messages{q}"),
            a_member.clone(),
            version,
        )
        .await;
        match want {
            Ok(n) => {
                assert_eq!(r.status, 200, "{q} {version}: {:?}", r.body);
                assert_eq!(
                    r.body["messages"].as_array().unwrap().len(),
                    *n,
                    "{q} {version}"
                );
            }
            Err(code) => assert_eq!(r.status, *code, "{q} {version}"),
        }
    }

    // Deleting: not by a reader, not by another project; the owner can.
    let del = |token: String, project: String| {
        call(
            "DELETE",
            format!("/v3/{project}/messages/{id}"),
            token,
            "volume 3.3",
        )
    };
    assert_eq!(del(a_reader.clone(), a.clone()).await.status, 403);
    assert_eq!(del(b_member.clone(), b.clone()).await.status, 404);
    let r = del(a_member.clone(), a.clone()).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.body, Value::Null);
    let r = call(
        "GET",
        format!("/v3/{a}/messages/{id}"),
        a_member.clone(),
        "volume 3.3",
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(del(a_member, a).await.status, 404);
}
