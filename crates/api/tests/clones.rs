//! Volumes made from other volumes (`source_volid`): what a clone is, where it
//! is made, what it costs, and how its source is protected while it is read.

mod support;

use std::path::PathBuf;

use scoria_core::{BackendConfig, DriverConfig};
use scoria_storage::{Format, qemu};
use serde_json::{Value, json};
use support::{Reply, TestApp};

/// Guest data written into sources: (offset, length, byte).
const PATTERN: &[(u64, u64, u8)] = &[(0, 1 << 20, 0xab), (700 << 20, 4096, 0xcd)];

struct World {
    t: TestApp,
    admin: String,
    /// The admin's project, where the volumes of these tests live.
    p: String,
    /// A member of another project, and that project.
    stranger: String,
    other: String,
}

impl World {
    /// Three backends: `file` (qcow2, the most room: new volumes go there),
    /// `b` (raw, same zone, less room) and `c` (another zone).
    async fn new() -> World {
        let t = TestApp::with_config(|c| {
            let dir = c.data_dir.clone();
            let file = c.backends[0].clone();
            let backend = |name: &str, format, zone: &str, ratio| BackendConfig {
                name: name.into(),
                driver: DriverConfig::File {
                    path: dir.join(name),
                    fsync: false,
                },
                format,
                availability_zone: zone.into(),
                max_over_subscription_ratio: scoria_core::scheduler::OverSubscription::Fixed(ratio),
                ..file.clone()
            };
            c.backends.push(backend("b", Format::Raw, "nova", 1.0));
            c.backends.push(backend("c", Format::Qcow2, "other", 1.0));
            // These tests are about copies (their progress, the source held
            // while read); clones by overlay are the snapshot tests' subject.
            for b in &mut c.backends {
                b.clone_strategy = scoria_model::snapshot::CloneStrategy::Performance;
            }
        })
        .await;
        let (admin, p) = t.admin().await;
        let other = t.project(&admin, "other").await;
        t.user(&admin, "stranger", "pw-stranger", &other, "member")
            .await;
        let (stranger, _) = t.login("stranger", "pw-stranger", "other").await;
        World {
            t,
            admin,
            p,
            stranger,
            other,
        }
    }

    async fn create(&self, token: &str, fields: Value) -> Reply {
        self.t
            .call(
                "POST",
                &format!("/v3/{}/volumes", self.p),
                Some(token),
                Some(json!({ "volume": fields })),
            )
            .await
    }

    /// An available volume of `size` GiB holding [`PATTERN`].
    async fn source(&self, size: u64) -> String {
        let r = self.create(&self.admin, json!({"size": size})).await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        let id = r.body["volume"]["id"].as_str().expect("id").to_owned();
        self.t
            .wait_status(&self.admin, &self.p, &id, "available")
            .await;
        let (path, format) = self.image(&id).await;
        for &(offset, len, byte) in PATTERN {
            qemu::write_pattern(&path, format, offset, len, byte)
                .await
                .expect("write data");
        }
        id
    }

    async fn show(&self, id: &str) -> Value {
        let r = self
            .t
            .call(
                "GET",
                &format!("/v3/{}/volumes/{id}", self.p),
                Some(&self.admin),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["volume"].clone()
    }

    /// The image of a volume and its format, as its image record says.
    async fn image(&self, id: &str) -> (PathBuf, Format) {
        let v = self.show(id).await;
        let host = v["os-vol-host-attr:host"].as_str().expect("placed");
        let backend = host.rsplit('#').next().expect("pool");
        let dir = match backend {
            "file" => "volumes",
            other => other,
        };
        let mut conn = self.t.app.store().read().await.expect("read");
        let vol = scoria_store::volumes::volume_get(&mut conn, id.parse().expect("id"))
            .await
            .expect("read volume")
            .expect("the volume");
        let image = scoria_store::images::image_get(&mut conn, vol.image_id.expect("placed"))
            .await
            .expect("read image")
            .expect("the image");
        let format = image.format.as_str().parse::<Format>().expect("format");
        (self.t.dir.path().join(dir).join(image.name), format)
    }

    async fn action(&self, token: &str, id: &str, body: Value) -> Reply {
        self.t
            .call(
                "POST",
                &format!("/v3/{}/volumes/{id}/action", self.p),
                Some(token),
                Some(body),
            )
            .await
    }

    #[cfg(feature = "failpoints")]
    async fn delete(&self, id: &str) -> Reply {
        self.t
            .call(
                "DELETE",
                &format!("/v3/{}/volumes/{id}", self.p),
                Some(&self.admin),
                None,
            )
            .await
    }

    #[cfg(feature = "failpoints")]
    async fn gone(&self, id: &str) {
        for _ in 0..2000 {
            let r = self
                .t
                .call(
                    "GET",
                    &format!("/v3/{}/volumes/{id}", self.p),
                    Some(&self.admin),
                    None,
                )
                .await;
            if r.status == 404 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        panic!("volume {id} was never deleted");
    }

    async fn usage(&self) -> (i64, i64) {
        let r = self
            .t
            .call(
                "GET",
                &format!("/v3/{p}/os-quota-sets/{p}?usage=true", p = self.p),
                Some(&self.admin),
                None,
            )
            .await;
        let q = &r.body["quota_set"];
        (
            q["volumes"]["in_use"].as_i64().expect("volumes"),
            q["gigabytes"]["in_use"].as_i64().expect("gigabytes"),
        )
    }

    /// A public volume type with these extra specs; returns its name.
    async fn volume_type(&self, name: &str, specs: &[(&str, &str)]) -> String {
        let mut tx = self.t.app.store().begin().await.expect("begin");
        scoria_store::volume_types::volume_type_create(
            &mut tx,
            scoria_model::VolumeTypeId::new(),
            name,
            None,
            true,
            &specs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .await
        .expect("create type");
        tx.commit().await.expect("commit");
        name.to_owned()
    }

    /// Does the clone read as its source?
    async fn same_data(&self, source: &str, clone: &str) -> bool {
        let (a, fa) = self.image(source).await;
        let (b, fb) = self.image(clone).await;
        qemu::compare(&a, fa, &b, fb).await.expect("compare")
    }
}

/// What a create from a source should give.
enum Want {
    /// 202, then `available` with this size, on the source's host, with the
    /// source's data (and this type, when given).
    Clone {
        size: i64,
        volume_type: &'static str,
    },
    /// This status, and a message containing this.
    Refused(u16, &'static str),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_copies_its_source_by_cinders_rules() {
    let w = World::new().await;
    let src = w.source(1).await;
    let big = w.source(2).await;
    let fits = w.volume_type("nbd", &[("storage_protocol", "nbd")]).await;
    let misfit = w
        .volume_type("elsewhere", &[("volume_backend_name", "nowhere")])
        .await;
    // In error: not a source.
    let broken = w.source(1).await;
    let r = w
        .action(
            &w.admin,
            &broken,
            json!({"os-reset_status": {"status": "error"}}),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let random = "3f1c2b9e-8d4a-4e6f-9b7c-1a2b3c4d5e6f";

    let cases: Vec<(&str, &str, Value, Want)> = vec![
        (
            "the source's size by default",
            &w.admin,
            json!({"source_volid": src}),
            Want::Clone {
                size: 1,
                volume_type: "__DEFAULT__",
            },
        ),
        (
            "bigger than the source",
            &w.admin,
            json!({"source_volid": src, "size": 3, "name": "big", "metadata": {"k": "v"}}),
            Want::Clone {
                size: 3,
                volume_type: "__DEFAULT__",
            },
        ),
        (
            "the source's own zone and type",
            &w.admin,
            json!({"source_volid": big, "availability_zone": "nova", "volume_type": "__DEFAULT__"}),
            Want::Clone {
                size: 2,
                volume_type: "__DEFAULT__",
            },
        ),
        (
            "another type the source's backend satisfies",
            &w.admin,
            json!({"source_volid": src, "volume_type": fits}),
            Want::Clone {
                size: 1,
                volume_type: "nbd",
            },
        ),
        (
            "smaller than the source",
            &w.admin,
            json!({"source_volid": big, "size": 1}),
            Want::Refused(400, "must not be smaller than the source volume size 2GB"),
        ),
        (
            "another zone",
            &w.admin,
            json!({"source_volid": src, "availability_zone": "other"}),
            Want::Refused(400, "same availability zone as the source volume"),
        ),
        (
            "a type the source's backend cannot give",
            &w.admin,
            json!({"source_volid": src, "volume_type": misfit}),
            Want::Refused(400, "does not fit the source volume's backend"),
        ),
        (
            "a source in error",
            &w.admin,
            json!({"source_volid": broken}),
            Want::Refused(400, "not one of available, in-use"),
        ),
        (
            "an unknown source",
            &w.admin,
            json!({"source_volid": random, "size": 1}),
            Want::Refused(404, "could not be found"),
        ),
        (
            "another project's source",
            &w.stranger,
            json!({"source_volid": src}),
            Want::Refused(404, "could not be found"),
        ),
        (
            "a source that is not a UUID",
            &w.admin,
            json!({"source_volid": "volume-1"}),
            Want::Refused(400, "is not a 'uuid'"),
        ),
        (
            "an unknown zone",
            &w.admin,
            json!({"source_volid": src, "availability_zone": "mars"}),
            Want::Refused(400, "is invalid"),
        ),
        (
            "a zero size",
            &w.admin,
            json!({"source_volid": src, "size": 0}),
            Want::Refused(400, "greater than 0"),
        ),
    ];
    let mut failures = Vec::new();
    for (what, token, fields, want) in cases {
        let before = w.usage().await;
        let project = if token == w.stranger { &w.other } else { &w.p };
        let r =
            w.t.call(
                "POST",
                &format!("/v3/{project}/volumes"),
                Some(token),
                Some(json!({ "volume": fields })),
            )
            .await;
        let source = fields["source_volid"].as_str().unwrap_or_default();
        match want {
            Want::Refused(status, fragment) => {
                let message = r
                    .body
                    .as_object()
                    .and_then(|o| o.values().next())
                    .and_then(|f| f["message"].as_str())
                    .unwrap_or_default();
                if r.status != status || !message.contains(fragment) {
                    failures.push(format!(
                        "{what}: got {} {}, expected {status} with {fragment:?}",
                        r.status, r.body
                    ));
                }
                if w.usage().await != before {
                    failures.push(format!("{what}: a refused clone changed the usage"));
                }
            }
            Want::Clone { size, volume_type } => {
                if r.status != 202 {
                    failures.push(format!("{what}: got {} {}", r.status, r.body));
                    continue;
                }
                let v = &r.body["volume"];
                let id = v["id"].as_str().expect("id").to_owned();
                if v["source_volid"] != source || v["status"] != "creating" {
                    failures.push(format!("{what}: answered {v}"));
                }
                w.t.wait_status(&w.admin, &w.p, &id, "available").await;
                let v = w.show(&id).await;
                let s = w.show(source).await;
                let got = (
                    v["size"].as_i64(),
                    v["source_volid"].as_str(),
                    v["volume_type"].as_str(),
                    v["availability_zone"].as_str(),
                    v["bootable"].as_str(),
                    &v["os-vol-host-attr:host"],
                );
                let expected = (
                    Some(size),
                    Some(source),
                    Some(volume_type),
                    Some("nova"),
                    Some("false"),
                    &s["os-vol-host-attr:host"],
                );
                if got != expected {
                    failures.push(format!("{what}: got {got:?}, expected {expected:?}"));
                }
                if !w.same_data(source, &id).await {
                    failures.push(format!("{what}: the clone does not read as its source"));
                }
                let after = w.usage().await;
                if after != (before.0 + 1, before.1 + size) {
                    failures.push(format!("{what}: usage went from {before:?} to {after:?}"));
                }
                // The source is as it was.
                if s["status"] != "available" {
                    failures.push(format!("{what}: the source is {}", s["status"]));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_is_made_where_its_source_is_and_takes_its_bootable_flag() {
    let w = World::new().await;
    // With `file` disabled the source goes to `b` (raw); enabled again, `file`
    // is where new volumes go, having the most room.
    let service = |action: &str| {
        (
            format!("/v3/{}/os-services/{action}", w.p),
            json!({"host": "scoria@file", "binary": "cinder-volume"}),
        )
    };
    let (path, body) = service("disable");
    let r = w.t.call("PUT", &path, Some(&w.admin), Some(body)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let src = w.source(1).await;
    let (path, body) = service("enable");
    let r = w.t.call("PUT", &path, Some(&w.admin), Some(body)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(w.show(&src).await["os-vol-host-attr:host"], "scoria@b#b");
    let r = w
        .action(
            &w.admin,
            &src,
            json!({"os-set_bootable": {"bootable": true}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    let blank = w.create(&w.admin, json!({"size": 1})).await;
    let blank = blank.body["volume"]["id"].as_str().expect("id").to_owned();
    w.t.wait_status(&w.admin, &w.p, &blank, "available").await;
    assert_eq!(
        w.show(&blank).await["os-vol-host-attr:host"],
        "scoria@file#file"
    );

    let r = w
        .create(&w.admin, json!({"source_volid": src, "size": 2}))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["volume"]["bootable"], "true");
    let clone = r.body["volume"]["id"].as_str().expect("id").to_owned();
    w.t.wait_status(&w.admin, &w.p, &clone, "available").await;
    let v = w.show(&clone).await;
    assert_eq!(v["os-vol-host-attr:host"], "scoria@b#b", "{v}");
    assert_eq!(v["bootable"], "true", "{v}");
    assert!(w.same_data(&src, &clone).await);
    let (image, _) = w.image(&clone).await;
    let meta = std::fs::metadata(&image).expect("raw image");
    assert_eq!(meta.len(), 2 << 30);

    // With the source's backend disabled, a clone cannot be made at all: it
    // fails like any create that finds no backend.
    let r =
        w.t.call(
            "PUT",
            &format!("/v3/{}/os-services/disable", w.p),
            Some(&w.admin),
            Some(json!({"host": "scoria@b", "binary": "cinder-volume"})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = w.create(&w.admin, json!({"source_volid": src})).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let failed = r.body["volume"]["id"].as_str().expect("id").to_owned();
    w.t.wait_status(&w.admin, &w.p, &failed, "error").await;

    // Quota counts clones as any volume.
    let (volumes, _) = w.usage().await;
    let r =
        w.t.call(
            "PUT",
            &format!("/v3/{p}/os-quota-sets/{p}", p = w.p),
            Some(&w.admin),
            Some(json!({"quota_set": {"volumes": volumes}})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = w.create(&w.admin, json!({"source_volid": src})).await;
    assert_eq!(r.status, 413, "{:?}", r.body);
}

/// Arm failpoints in the running app (admin only).
#[cfg(feature = "failpoints")]
async fn arm(w: &World, spec: Value) {
    let r =
        w.t.call("PUT", "/debug/failpoints", Some(&w.admin), Some(spec))
            .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
}

/// A clone whose flow is stuck (its copy failed, and so does the removal of
/// the partial copy) stays `creating` and keeps its source: nothing may delete,
/// extend, transfer or reset the source away from a readable status. Once an
/// admin force-deletes the clone, the source is free.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_is_held_while_a_clone_of_it_is_made() {
    let w = World::new().await;
    let src = w.source(1).await;
    arm(
        &w,
        json!({"spec": "flow.volume_create.create_on_backend.run=error;flow.volume_create.create_on_backend.undo=error"}),
    )
    .await;
    let r = w.create(&w.admin, json!({"source_volid": src})).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let clone = r.body["volume"]["id"].as_str().expect("id").to_owned();
    w.t.app.engine.wait_idle().await;
    arm(&w, json!({"clear": true})).await;
    assert_eq!(w.show(&clone).await["status"], "creating");

    let p = w.p.clone();
    let refused: Vec<(&str, &str, String, Option<Value>)> = vec![
        ("delete", "DELETE", format!("/v3/{p}/volumes/{src}"), None),
        (
            "forced delete",
            "DELETE",
            format!("/v3/{p}/volumes/{src}?force=true"),
            None,
        ),
        (
            "os-force_delete",
            "POST",
            format!("/v3/{p}/volumes/{src}/action"),
            Some(json!({"os-force_delete": {}})),
        ),
        (
            "extend",
            "POST",
            format!("/v3/{p}/volumes/{src}/action"),
            Some(json!({"os-extend": {"new_size": 2}})),
        ),
        (
            "transfer",
            "POST",
            format!("/v3/{p}/os-volume-transfer"),
            Some(json!({"transfer": {"volume_id": src}})),
        ),
        (
            "reset to error",
            "POST",
            format!("/v3/{p}/volumes/{src}/action"),
            Some(json!({"os-reset_status": {"status": "error"}})),
        ),
    ];
    for (what, method, path, body) in refused {
        let r = w.t.call(method, &path, Some(&w.admin), body).await;
        assert_eq!(r.status, 400, "{what}: {:?}", r.body);
        let message = r.body["badRequest"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("being copied") && message.contains(&clone),
            "{what}: {message}"
        );
        let s = w.show(&src).await;
        assert_eq!(s["status"], "available", "{what}: {s}");
        assert_eq!(s["size"], 1, "{what}: {s}");
    }
    // Readable statuses may still be set, and other clones may read too.
    let r = w
        .action(
            &w.admin,
            &src,
            json!({"os-reset_status": {"status": "available"}}),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let r = w.create(&w.admin, json!({"source_volid": src})).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let second = r.body["volume"]["id"].as_str().expect("id").to_owned();
    w.t.wait_status(&w.admin, &w.p, &second, "available").await;
    assert!(w.same_data(&src, &second).await);

    // Forcing the stuck clone away frees the source.
    let r = w
        .action(&w.admin, &clone, json!({"os-force_delete": {}}))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    w.gone(&clone).await;
    let r = w.delete(&src).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    w.gone(&src).await;
    // The second clone does not depend on its source.
    assert_eq!(w.show(&second).await["status"], "available");
    w.t.app.engine.wait_idle().await;
    let bad = scoria_core::invariants::check(&w.t.app.env)
        .await
        .expect("check");
    assert!(bad.is_empty(), "{bad:?}");
}

/// While the copy runs, `?with_progress=true` shows its step and percent, and
/// the source cannot be deleted; once the clone is made it can.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_in_progress_shows_its_percent() {
    let w = World::new().await;
    let src = w.source(1).await;
    // The copy is complete when this point is reached; it waits there 2 s
    // before it is renamed into place, which is when this test looks.
    arm(&w, json!({"spec": "storage.copy.temp=sleep(2000)"})).await;
    let r = w.create(&w.admin, json!({"source_volid": src})).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let clone = r.body["volume"]["id"].as_str().expect("id").to_owned();
    let progress = loop {
        let r =
            w.t.call(
                "GET",
                &format!("/v3/{}/volumes/{clone}?with_progress=true", w.p),
                Some(&w.admin),
                None,
            )
            .await;
        let v = &r.body["volume"];
        assert_eq!(
            v["status"], "creating",
            "the copy ended before it was seen: {v}"
        );
        let progress = v["scoria:progress"].clone();
        if progress["percent"] == 100 {
            break progress;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    assert_eq!(progress["step"], "create_on_backend", "{progress}");
    assert_eq!(progress["state"], "running", "{progress}");
    let r = w.delete(&src).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    w.t.wait_status(&w.admin, &w.p, &clone, "available").await;
    arm(&w, json!({"clear": true})).await;
    assert!(w.same_data(&src, &clone).await);
    let r = w.delete(&src).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    w.gone(&src).await;
}
