//! Exports on two file backends (in process, with real export daemons): one
//! reconcile pass, which reads the attachment rows once under every
//! backend's lock, serves each attachment again on its own volume's backend
//! and on no other.

mod support;

use std::collections::BTreeMap;

use scoria_storage::export::Exporter as _;
use serde_json::json;
use support::TestApp;

const V: &str = "volume 3.54";
const INSTANCE: &str = "8b6d1a2e-3c4f-4e5a-9b8c-7d6e5f4a3b2c";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_reconcile_serves_each_attachment_on_its_own_backend() {
    let t = TestApp::with_config(|c| {
        let mut b = c.backends[0].clone();
        b.name = "other".into();
        b.driver = scoria_core::DriverConfig::File {
            path: c.data_dir.join("volumes-b"),
            fsync: false,
        };
        c.backends.push(b);
        // Only the passes this test runs (and those flows' ends wake).
        c.exports.reconcile_period = std::time::Duration::from_secs(3600);
    })
    .await;
    let p = t.personas().await;
    let (member, project) = (p.member.0.clone(), p.a.clone());
    let (admin, admin_project) = p.admin.clone();

    // Two equal backends: the first volume goes to `file` (ties go by
    // name), the second to `other` (less provisioned there).
    let mut attachment_on: BTreeMap<String, String> = BTreeMap::new();
    for _ in 0..2 {
        let vol = t.volume(&member, &project).await;
        let r = t
            .raw(
                "POST",
                &format!("/v3/{project}/attachments"),
                Some(&member),
                &[("OpenStack-API-Version", V)],
                Some(
                    serde_json::to_vec(&json!({"attachment": {
                        "volume_uuid": vol, "instance_uuid": INSTANCE,
                        "connector": {"host": "h1", "mode": "rw"}}}))
                    .expect("json"),
                ),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let id = r.body["attachment"]["id"].as_str().expect("id").to_owned();
        let v = t
            .call(
                "GET",
                &format!("/v3/{admin_project}/volumes/{vol}"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(v.status, 200, "{}", v.body);
        let host = v.body["volume"]["os-vol-host-attr:host"]
            .as_str()
            .expect("host");
        let backend = host
            .rsplit_once('#')
            .map(|(_, pool)| pool.to_owned())
            .expect("host#pool");
        attachment_on.insert(backend, id);
    }
    assert_eq!(
        attachment_on.keys().map(String::as_str).collect::<Vec<_>>(),
        ["file", "other"],
        "one volume on each backend: {attachment_on:?}"
    );

    let env = &t.app.env;
    let served = |backend: &str| {
        let exporter = env.exports.get(backend).expect("exporter").exporter.clone();
        async move {
            let mut ids: Vec<(String, bool)> = exporter
                .list()
                .await
                .expect("list")
                .into_iter()
                .map(|s| (s.id, s.serving))
                .collect();
            ids.sort();
            ids
        }
    };
    for (backend, id) in &attachment_on {
        assert_eq!(served(backend).await, [(id.clone(), true)], "{backend}");
        // The background reconciler, woken by the attach flows' ends, may
        // serve it again once after a remove: remove until it stays removed.
        let mut removed = false;
        for _ in 0..50 {
            env.exports
                .get(backend)
                .expect("exporter")
                .exporter
                .remove(id)
                .await
                .expect("remove");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            if served(backend).await.is_empty() {
                removed = true;
                break;
            }
        }
        assert!(removed, "{backend} after remove");
    }

    scoria_core::exports::reconcile(env)
        .await
        .expect("reconcile");
    for (backend, id) in &attachment_on {
        assert_eq!(
            served(backend).await,
            [(id.clone(), true)],
            "{backend} serves its own attachment, and only it"
        );
    }
}
