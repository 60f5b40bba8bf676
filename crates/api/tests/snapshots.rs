//! Snapshots over HTTP: their lifecycle as scripts of requests (each step
//! names the caller, the request and the status, and what it expects of the
//! answer), then what they hold: the data a volume made from a snapshot
//! reads, a revert to any snapshot, and the copies each strategy makes.
//! `{a}`, `{b}` are the projects; other `{names}` are saved values.

mod support;

use std::path::PathBuf;

use scoria_storage::{Format, qemu};
use serde_json::{Value, json};
use support::steps::Who::{Admin, Member, Other, Reader};
use support::steps::{Step, World, call};

fn volume(name: &str, size: i64) -> Option<Value> {
    Some(json!({"volume": {"name": name, "size": size}}))
}

fn snapshot(fields: Value) -> Option<Value> {
    Some(json!({ "snapshot": fields }))
}

fn quota(set: Value) -> Option<Value> {
    Some(json!({ "quota_set": set }))
}

/// `{limit, in_use, reserved, allocated}` of a `?usage=true` line.
fn usage(limit: i64, in_use: i64) -> Value {
    json!({"limit": limit, "in_use": in_use, "reserved": 0, "allocated": 0})
}

/// The keys of a snapshot at 3.0 in show and the detailed list, redacted as
/// the step runner redacts times.
fn shown(id: &str, name: &str, description: Value, metadata: Value) -> Value {
    json!({
        "id": format!("{{{id}}}"),
        "created_at": "<time>",
        "updated_at": "<time>",
        "name": name,
        "description": description,
        "volume_id": "{v}",
        "status": "available",
        "size": 1,
        "metadata": metadata,
        "os-extended-snapshot-attributes:project_id": "{a}",
        "os-extended-snapshot-attributes:progress": "100%",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_is_taken_listed_changed_and_deleted_as_in_cinder() {
    let mut w = World::new().await;
    w.run(vec![
        call(Member, "POST", "/v3/{p}/volumes", volume("origin", 1), 202).save("v", "/volume/id"),
        Step::Volume(Member, "v", "available"),
        // Create: Cinder's keys, without the extension attributes.
        call(Member, "POST", "/v3/{p}/snapshots",
            snapshot(json!({"volume_id": "{v}", "name": "s1", "description": "first", "metadata": {"k": "v"}})), 202)
            .save("s1", "/snapshot/id")
            // `creating`, or already `available`: a snapshot takes
            // milliseconds, and the answer reads the row after the flow
            // committed its quota.
            .has_one_of("/snapshot/status", &[json!("creating"), json!("available")])
            .has("/snapshot/volume_id", json!("{v}"))
            .has("/snapshot/size", json!(1))
            .has("/snapshot/metadata", json!({"k": "v"}))
            .lacks("/snapshot/os-extended-snapshot-attributes:project_id")
            .lacks("/snapshot/user_id")
            .lacks("/snapshot/group_snapshot_id"),
        Step::Snapshot(Member, "s1", "available"),
        call(Reader, "GET", "/v3/{p}/snapshots/{s1}", None, 200)
            .is(json!({"snapshot": shown("s1", "s1", json!("first"), json!({"k": "v"}))})),
        // Later microversions add their keys.
        call(Member, "GET", "/v3/{p}/snapshots/{s1}", None, 200).at("3.14")
            .has("/snapshot/group_snapshot_id", Value::Null)
            .lacks("/snapshot/user_id")
            .lacks("/snapshot/consumes_quota"),
        call(Member, "GET", "/v3/{p}/snapshots/{s1}", None, 200).at("3.65")
            .has("/snapshot/group_snapshot_id", Value::Null)
            .has("/snapshot/consumes_quota", json!(true))
            .save("user", "/snapshot/user_id"),
        // The older names of the fields, and `force` on an available volume.
        call(Member, "POST", "/v3/{p}/snapshots",
            snapshot(json!({"volume_id": "{v}", "display_name": "s2", "display_description": "second", "force": "true"})), 202)
            .save("s2", "/snapshot/id")
            .has("/snapshot/name", json!("s2"))
            .has("/snapshot/description", json!("second")),
        Step::Snapshot(Member, "s2", "available"),
        call(Member, "POST", "/v3/{p}/snapshots", snapshot(json!({"volume_id": "{v}", "name": "s3"})), 202)
            .at("3.66")
            .save("s3", "/snapshot/id")
            .has("/snapshot/consumes_quota", json!(true)),
        Step::Snapshot(Member, "s3", "available"),
        // From 3.66 `force` is only accepted as true.
        call(Member, "POST", "/v3/{p}/snapshots", snapshot(json!({"volume_id": "{v}", "force": false})), 400)
            .at("3.66")
            .says("the 'force' flag is invalid"),
        // Lists: the summary has no extension attributes, the detail has them.
        call(Reader, "GET", "/v3/{p}/snapshots?sort=name:asc", None, 200)
            .has("/snapshots/0/name", json!("s1"))
            .has("/snapshots/1/name", json!("s2"))
            .has("/snapshots/2/name", json!("s3"))
            .has("/snapshots/0/metadata", json!({"k": "v"}))
            .lacks("/snapshots/0/os-extended-snapshot-attributes:progress")
            .lacks("/snapshots/3")
            .lacks("/snapshots_links"),
        call(Reader, "GET", "/v3/{p}/snapshots/detail?sort_key=display_name&sort_dir=desc", None, 200)
            .has("/snapshots/0/name", json!("s3"))
            .has("/snapshots/2/os-extended-snapshot-attributes:progress", json!("100%"))
            .has("/snapshots/2/os-extended-snapshot-attributes:project_id", json!("{a}")),
        // Filters.
        call(Reader, "GET", "/v3/{p}/snapshots?name=s2", None, 200)
            .has("/snapshots/0/id", json!("{s2}"))
            .lacks("/snapshots/1"),
        call(Reader, "GET", "/v3/{p}/snapshots?status=available&volume_id={v}&sort=name:asc", None, 200)
            .has("/snapshots/2/id", json!("{s3}")),
        call(Reader, "GET", "/v3/{p}/snapshots?status=error", None, 200).is(json!({"snapshots": []})),
        call(Reader, "GET", "/v3/{p}/snapshots?volume_id={nothing}", None, 200).is(json!({"snapshots": []})),
        // Metadata filters from 3.22 (before, the filter is not one).
        call(Reader, "GET", "/v3/{p}/snapshots?metadata=%7B%22k%22%3A%22v%22%7D", None, 200).at("3.22")
            .has("/snapshots/0/id", json!("{s1}"))
            .lacks("/snapshots/1"),
        call(Reader, "GET", "/v3/{p}/snapshots?metadata=%7B%22k%22%3A%22v%22%7D", None, 200)
            .has("/snapshots/2/status", json!("available")),
        // From 3.33, a filter Cinder does not know is refused.
        call(Reader, "GET", "/v3/{p}/snapshots?colour=red", None, 400).at("3.33")
            .says("Invalid filters colour"),
        // Paging: limit, marker, offset, and the count from 3.45.
        call(Reader, "GET", "/v3/{p}/snapshots?sort=name:asc&limit=1", None, 200)
            .has("/snapshots/0/name", json!("s1"))
            .lacks("/snapshots/1")
            .has("/snapshots_links/0/rel", json!("next")),
        call(Reader, "GET", "/v3/{p}/snapshots?sort=name:asc&marker={s1}", None, 200)
            .has("/snapshots/0/name", json!("s2"))
            .has("/snapshots/1/name", json!("s3"))
            .lacks("/snapshots/2"),
        call(Reader, "GET", "/v3/{p}/snapshots?sort=name:asc&offset=1&limit=1", None, 200)
            .has("/snapshots/0/name", json!("s2"))
            .lacks("/snapshots/1"),
        call(Reader, "GET", "/v3/{p}/snapshots?limit=0", None, 200).is(json!({"snapshots": []})),
        call(Reader, "GET", "/v3/{p}/snapshots?name=s2&with_count=true", None, 200).at("3.45")
            .has("/count", json!(1)),
        call(Reader, "GET", "/v3/{p}/snapshots?with_count=true", None, 200).lacks("/count"),
        call(Reader, "GET", "/v3/{p}/snapshots?marker={nothing}", None, 404),
        call(Reader, "GET", "/v3/{p}/snapshots?limit=many", None, 400),
        call(Reader, "GET", "/v3/{p}/snapshots?sort_key=colour", None, 400),
        // Another project sees nothing of A's, not even by id.
        call(Other, "GET", "/v3/{p}/snapshots", None, 200).is(json!({"snapshots": []})),
        call(Other, "GET", "/v3/{p}/snapshots/{s1}", None, 404).says("could not be found"),
        call(Other, "PUT", "/v3/{p}/snapshots/{s1}", snapshot(json!({"name": "mine"})), 404),
        call(Other, "DELETE", "/v3/{p}/snapshots/{s1}", None, 404),
        call(Other, "GET", "/v3/{p}/snapshots/{s1}/metadata", None, 404),
        call(Other, "POST", "/v3/{p}/snapshots", snapshot(json!({"volume_id": "{v}"})), 404),
        // An admin lists every project's with all_tenants, and only then.
        call(Admin, "GET", "/v3/{p}/snapshots", None, 200).is(json!({"snapshots": []})),
        call(Admin, "GET", "/v3/{p}/snapshots?all_tenants=1&project_id={a}&sort=name:asc", None, 200)
            .has("/snapshots/0/id", json!("{s1}"))
            .has("/snapshots/2/id", json!("{s3}")),
        call(Admin, "GET", "/v3/{p}/snapshots/{s1}", None, 200),
        // A reader reads, and changes nothing.
        call(Reader, "POST", "/v3/{p}/snapshots", snapshot(json!({"volume_id": "{v}"})), 403),
        call(Reader, "PUT", "/v3/{p}/snapshots/{s1}", snapshot(json!({"name": "r"})), 403),
        call(Reader, "DELETE", "/v3/{p}/snapshots/{s1}", None, 403),
        call(Reader, "POST", "/v3/{p}/snapshots/{s1}/metadata", Some(json!({"metadata": {"r": "1"}})), 403),
        // Update: name and description, in either spelling; null clears.
        call(Member, "PUT", "/v3/{p}/snapshots/{s1}", snapshot(json!({"name": "s1b", "description": null})), 200)
            .has("/snapshot/name", json!("s1b"))
            .has("/snapshot/description", Value::Null)
            .lacks("/snapshot/os-extended-snapshot-attributes:progress"),
        call(Member, "PUT", "/v3/{p}/snapshots/{s1}", snapshot(json!({"display_description": "again"})), 200)
            .has("/snapshot/name", json!("s1b"))
            .has("/snapshot/description", json!("again")),
        call(Member, "PUT", "/v3/{p}/snapshots/{s1}", snapshot(json!({})), 400),
        call(Member, "PUT", "/v3/{p}/snapshots/{s1}", snapshot(json!({"size": 2})), 400),
        // Metadata: show, merge, replace, one key.
        call(Reader, "GET", "/v3/{p}/snapshots/{s1}/metadata", None, 200).is(json!({"metadata": {"k": "v"}})),
        call(Member, "POST", "/v3/{p}/snapshots/{s1}/metadata", Some(json!({"metadata": {"a": "1"}})), 200)
            .is(json!({"metadata": {"k": "v", "a": "1"}})),
        call(Member, "PUT", "/v3/{p}/snapshots/{s1}/metadata", Some(json!({"metadata": {"b": "2"}})), 200)
            .is(json!({"metadata": {"b": "2"}})),
        call(Reader, "GET", "/v3/{p}/snapshots/{s1}/metadata/b", None, 200).is(json!({"meta": {"b": "2"}})),
        call(Member, "PUT", "/v3/{p}/snapshots/{s1}/metadata/b", Some(json!({"meta": {"b": "3"}})), 200)
            .is(json!({"meta": {"b": "3"}})),
        call(Member, "PUT", "/v3/{p}/snapshots/{s1}/metadata/b", Some(json!({"meta": {"c": "3"}})), 400)
            .says("mismatch"),
        call(Reader, "GET", "/v3/{p}/snapshots/{s1}/metadata/nope", None, 404),
        call(Member, "DELETE", "/v3/{p}/snapshots/{s1}/metadata/b", None, 200),
        call(Member, "DELETE", "/v3/{p}/snapshots/{s1}/metadata/b", None, 404),
        call(Reader, "GET", "/v3/{p}/snapshots/{s1}", None, 200).has("/snapshot/metadata", json!({})),
        // Scoria's status, asked for: the last operation and the image.
        call(Member, "GET", "/v3/{p}/snapshots/{s1}?with_progress=true", None, 200)
            .has("/snapshot/scoria:progress/operation", json!("snapshot_create"))
            .has("/snapshot/scoria:progress/state", json!("done"))
            .has("/snapshot/scoria:image/health", json!("optimized"))
            .has("/snapshot/scoria:image/chain_depth", json!(1)),
        call(Member, "GET", "/v3/{p}/snapshots/detail?with_progress=true&name=s3", None, 200)
            .has("/snapshots/0/scoria:image/chain_depth", json!(3)),
        call(Member, "GET", "/v3/{p}/snapshots/{s1}", None, 200).lacks("/snapshot/scoria:image"),
        // Three snapshots: the volume stands on its overlay and three frozen
        // images.
        call(Member, "GET", "/v3/{p}/volumes/{v}?with_progress=true", None, 200)
            .has("/volume/scoria:image/health", json!("optimized"))
            .has("/volume/scoria:image/chain_depth", json!(4)),
        call(Member, "GET", "/v3/{p}/volumes/{v}", None, 200).lacks("/volume/scoria:image"),
        // The admin's tree: the volume's chain, top first, and why each image
        // is kept.
        call(Admin, "GET", "/v3/{p}/scoria-volumes/{v}/tree", None, 200)
            .has("/tree/volume_id", json!("{v}"))
            .has("/tree/chain/0/mutable", json!(true))
            .has("/tree/chain/0/snapshots", json!([]))
            .has("/tree/chain/1/mutable", json!(false))
            .has("/tree/chain/1/snapshots", json!(["{s3}"]))
            .has("/tree/chain/2/snapshots", json!(["{s2}"]))
            .has("/tree/chain/3/snapshots", json!(["{s1}"]))
            .has("/tree/chain/3/health", json!("optimized"))
            .has("/tree/chain/3/dependents", json!([]))
            .lacks("/tree/chain/4"),
        call(Member, "GET", "/v3/{p}/scoria-volumes/{v}/tree", None, 403),
        // Delete.
        call(Member, "DELETE", "/v3/{p}/snapshots/{s3}", None, 202),
        Step::Snapshot(Member, "s3", "gone"),
        call(Member, "GET", "/v3/{p}/snapshots/{s3}", None, 404).says("could not be found"),
        call(Member, "DELETE", "/v3/{p}/snapshots/{s3}", None, 404),
        call(Member, "GET", "/v3/{p}/snapshots?sort=name:asc", None, 200)
            .has("/snapshots/1/id", json!("{s2}"))
            .lacks("/snapshots/2"),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_admin_actions_and_a_cascading_delete() {
    let mut w = World::new().await;
    let a_quota = "/v3/{p}/os-quota-sets/{a}";
    w.run(vec![
        call(Member, "POST", "/v3/{p}/volumes", volume("origin", 1), 202).save("v", "/volume/id"),
        Step::Volume(Member, "v", "available"),
        // Snapshots count against `snapshots` and, as in Cinder, `gigabytes`.
        call(Admin, "PUT", a_quota, quota(json!({"snapshots": 1})), 200),
        call(
            Member,
            "POST",
            "/v3/{p}/snapshots",
            snapshot(json!({"volume_id": "{v}", "name": "s1"})),
            202,
        )
        .save("s1", "/snapshot/id"),
        Step::Snapshot(Member, "s1", "available"),
        call(
            Member,
            "POST",
            "/v3/{p}/snapshots",
            snapshot(json!({"volume_id": "{v}"})),
            413,
        )
        .says("SnapshotLimitExceeded: Maximum number of snapshots allowed (1) exceeded"),
        call(
            Member,
            "GET",
            "/v3/{p}/os-quota-sets/{a}?usage=true",
            None,
            200,
        )
        .has("/quota_set/snapshots", usage(1, 1))
        .has("/quota_set/gigabytes", usage(1000, 2))
        .has("/quota_set/volumes", usage(10, 1))
        .has("/quota_set/snapshots___DEFAULT__", usage(-1, 1))
        .has("/quota_set/gigabytes___DEFAULT__", usage(-1, 2)),
        call(Member, "GET", "/v3/{p}/limits", None, 200)
            .has("/limits/absolute/totalSnapshotsUsed", json!(1))
            .has("/limits/absolute/maxTotalSnapshots", json!(1))
            .has("/limits/absolute/totalGigabytesUsed", json!(2))
            .has("/limits/absolute/totalVolumesUsed", json!(1)),
        call(
            Admin,
            "PUT",
            a_quota,
            quota(json!({"snapshots": -1, "gigabytes": 2})),
            200,
        ),
        call(
            Member,
            "POST",
            "/v3/{p}/snapshots",
            snapshot(json!({"volume_id": "{v}"})),
            413,
        )
        .says("gigabytes"),
        call(
            Admin,
            "PUT",
            a_quota,
            quota(json!({"gigabytes": -1, "snapshots___DEFAULT__": 1})),
            200,
        ),
        call(
            Member,
            "POST",
            "/v3/{p}/snapshots",
            snapshot(json!({"volume_id": "{v}"})),
            413,
        )
        .says("snapshots___DEFAULT__"),
        call(
            Admin,
            "PUT",
            a_quota,
            quota(json!({"snapshots___DEFAULT__": -1})),
            200,
        ),
        // An admin's reset, refused to others and for statuses Cinder has not.
        call(
            Member,
            "POST",
            "/v3/{p}/snapshots/{s1}/action",
            Some(json!({"os-reset_status": {"status": "error"}})),
            403,
        ),
        call(
            Admin,
            "POST",
            "/v3/{p}/snapshots/{s1}/action",
            Some(json!({"os-reset_status": {"status": "bogus"}})),
            400,
        ),
        call(
            Admin,
            "POST",
            "/v3/{p}/snapshots/{s1}/action",
            Some(json!({"os-reset_status": {}})),
            400,
        ),
        call(
            Admin,
            "POST",
            "/v3/{p}/snapshots/{s1}/action",
            Some(json!({"os-reset_status": {"status": "error"}})),
            202,
        ),
        call(Member, "GET", "/v3/{p}/snapshots/{s1}", None, 200)
            .has("/snapshot/status", json!("error")),
        // Nova's status update: Cinder's transitions, with its progress.
        call(
            Admin,
            "POST",
            "/v3/{p}/snapshots/{s1}/action",
            Some(json!({"os-reset_status": {"status": "creating"}})),
            202,
        ),
        call(
            Member,
            "POST",
            "/v3/{p}/snapshots/{s1}/action",
            Some(json!({"os-update_snapshot_status": {"status": "error", "progress": "eighty"}})),
            400,
        )
        .says("progress must be an integer percentage"),
        call(
            Member,
            "POST",
            "/v3/{p}/snapshots/{s1}/action",
            Some(json!({"os-update_snapshot_status": {"status": "error", "progress": "80%"}})),
            202,
        ),
        call(Member, "GET", "/v3/{p}/snapshots/{s1}", None, 200)
            .has("/snapshot/status", json!("error"))
            .has(
                "/snapshot/os-extended-snapshot-attributes:progress",
                json!("80%"),
            ),
        call(
            Member,
            "POST",
            "/v3/{p}/snapshots/{s1}/action",
            Some(json!({"os-update_snapshot_status": {"status": "available"}})),
            400,
        )
        .says("not allowed"),
        call(
            Member,
            "POST",
            "/v3/{p}/snapshots/{s1}/action",
            Some(json!({"os-unknown": {}})),
            400,
        )
        .says("There is no such action"),
        // An admin deletes by force from any status; a member cannot.
        call(
            Member,
            "POST",
            "/v3/{p}/snapshots/{s1}/action",
            Some(json!({"os-force_delete": {}})),
            403,
        ),
        call(
            Admin,
            "POST",
            "/v3/{p}/snapshots/{s1}/action",
            Some(json!({"os-reset_status": {"status": "deleting"}})),
            202,
        ),
        call(
            Admin,
            "POST",
            "/v3/{p}/snapshots/{s1}/action",
            Some(json!({"os-force_delete": {}})),
            202,
        ),
        Step::Snapshot(Member, "s1", "gone"),
        // A volume with snapshots is not deleted, unless with them.
        call(
            Member,
            "POST",
            "/v3/{p}/snapshots",
            snapshot(json!({"volume_id": "{v}", "name": "s2"})),
            202,
        )
        .save("s2", "/snapshot/id"),
        Step::Snapshot(Member, "s2", "available"),
        call(
            Member,
            "POST",
            "/v3/{p}/snapshots",
            snapshot(json!({"volume_id": "{v}", "name": "s3"})),
            202,
        )
        .save("s3", "/snapshot/id"),
        Step::Snapshot(Member, "s3", "available"),
        call(Member, "DELETE", "/v3/{p}/volumes/{v}", None, 400).says("dependent snapshots"),
        call(Member, "GET", "/v3/{p}/volumes/{v}", None, 200)
            .has("/volume/status", json!("available")),
        call(
            Member,
            "DELETE",
            "/v3/{p}/volumes/{v}?cascade=true",
            None,
            202,
        ),
        Step::Volume(Member, "v", "gone"),
        Step::Snapshot(Member, "s2", "gone"),
        Step::Snapshot(Member, "s3", "gone"),
        call(Member, "GET", "/v3/{p}/snapshots", None, 200).is(json!({"snapshots": []})),
        call(
            Member,
            "GET",
            "/v3/{p}/os-quota-sets/{a}?usage=true",
            None,
            200,
        )
        .has("/quota_set/snapshots", usage(-1, 0))
        .has("/quota_set/gigabytes", usage(-1, 0)),
    ])
    .await;
}

/// Guest data written into volumes: (offset, length, byte).
const OLD: &[(u64, u64, u8)] = &[(0, 1 << 20, 0xab), (700 << 20, 4096, 0xcd)];
/// What overwrites it later.
const NEW: &[(u64, u64, u8)] = &[(0, 1 << 20, 0x11), (700 << 20, 4096, 0x22)];

/// Data checks need the images' files: the admin's requests, and the store's
/// image records to find them.
struct Data {
    w: World,
}

impl Data {
    async fn new() -> Data {
        Data {
            w: World::new().await,
        }
    }

    fn admin(&self) -> (String, String) {
        self.w.token(Admin)
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>, version: &str) -> Value {
        let (token, p) = self.admin();
        let r = self
            .w
            .t
            .raw(
                method,
                &format!("/v3/{p}{path}"),
                Some(&token),
                &[("OpenStack-API-Version", &format!("volume {version}"))],
                body.map(|b| b.to_string().into_bytes()),
            )
            .await;
        assert!(r.status < 300, "{method} {path}: {} {}", r.status, r.body);
        r.body
    }

    /// An available volume made from `fields`.
    async fn volume(&self, fields: Value) -> String {
        let r = self
            .call("POST", "/volumes", Some(json!({ "volume": fields })), "3.0")
            .await;
        let id = r["volume"]["id"].as_str().expect("id").to_owned();
        let (token, p) = self.admin();
        self.w.t.wait_status(&token, &p, &id, "available").await;
        id
    }

    async fn snapshot(&self, volume: &str) -> String {
        let body = json!({"snapshot": {"volume_id": volume}});
        let r = self.call("POST", "/snapshots", Some(body), "3.0").await;
        let id = r["snapshot"]["id"].as_str().expect("id").to_owned();
        for _ in 0..2000 {
            let s = self
                .call("GET", &format!("/snapshots/{id}"), None, "3.0")
                .await;
            if s["snapshot"]["status"] == "available" {
                return id;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        panic!("snapshot {id} never became available");
    }

    /// The file and format of an image record.
    async fn file(&self, image: scoria_model::ImageId) -> (PathBuf, Format) {
        let mut conn = self.w.t.app.store().read().await.expect("read");
        let image = scoria_store::images::image_get(&mut conn, image)
            .await
            .expect("read image")
            .expect("the image");
        let dir = match image.backend.as_str() {
            "file" => "volumes".to_owned(),
            other => other.to_owned(),
        };
        let format = image.format.as_str().parse::<Format>().expect("format");
        (self.w.t.dir.path().join(dir).join(image.name), format)
    }

    /// The active image of a volume, as its record says.
    async fn volume_file(&self, id: &str) -> (PathBuf, Format) {
        let image = {
            let mut conn = self.w.t.app.store().read().await.expect("read");
            scoria_store::volumes::volume_get(&mut conn, id.parse().expect("id"))
                .await
                .expect("read volume")
                .expect("the volume")
                .image_id
                .expect("placed")
        };
        self.file(image).await
    }

    /// The frozen image a snapshot captured.
    async fn snapshot_file(&self, id: &str) -> (PathBuf, Format) {
        let image = {
            let mut conn = self.w.t.app.store().read().await.expect("read");
            scoria_store::snapshots::snapshot_get(&mut conn, id.parse().expect("id"))
                .await
                .expect("read snapshot")
                .expect("the snapshot")
                .image_id
                .expect("taken")
        };
        self.file(image).await
    }

    async fn write(&self, volume: &str, data: &[(u64, u64, u8)]) {
        let (path, format) = self.volume_file(volume).await;
        for &(offset, len, byte) in data {
            qemu::write_pattern(&path, format, offset, len, byte)
                .await
                .expect("write data");
        }
    }

    async fn reads(&self, volume: &str, data: &[(u64, u64, u8)]) -> bool {
        let (path, format) = self.volume_file(volume).await;
        for &(offset, len, byte) in data {
            if !qemu::read_pattern(&path, format, offset, len, byte)
                .await
                .expect("read data")
            {
                return false;
            }
        }
        true
    }

    /// A public volume type whose volumes are made by `strategy`.
    async fn type_with_strategy(&self, strategy: &str) -> String {
        let name = format!("by-{strategy}");
        self.call(
            "POST",
            "/types",
            Some(json!({"volume_type": {"name": name,
                "extra_specs": {"scoria:clone_strategy": strategy}}})),
            "3.0",
        )
        .await;
        name
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_from_a_snapshot_reads_the_data_of_then_and_outlives_the_snapshot() {
    let d = Data::new().await;
    let v = d.volume(json!({"size": 1})).await;
    d.write(&v, OLD).await;
    let s = d.snapshot(&v).await;
    d.write(&v, NEW).await;
    assert!(
        d.reads(&v, NEW).await,
        "the volume reads what was written last"
    );
    assert!(
        !d.reads(&v, OLD).await,
        "and no longer what was there before"
    );
    // Larger than the snapshot: the old data, then zeroes.
    let from = d.volume(json!({"snapshot_id": s, "size": 2})).await;
    let shown = d
        .call("GET", &format!("/volumes/{from}"), None, "3.0")
        .await;
    assert_eq!(
        (&shown["volume"]["snapshot_id"], &shown["volume"]["size"]),
        (&json!(s), &json!(2))
    );
    assert!(
        d.reads(&from, OLD).await,
        "the new volume reads the snapshot's data"
    );
    assert!(
        d.reads(&from, &[(1 << 30, 1 << 20, 0)]).await,
        "beyond the snapshot's end it reads zeroes"
    );
    // The snapshot goes while the volume made from it stays; the volume's
    // data stays with it.
    d.call("DELETE", &format!("/snapshots/{s}"), None, "3.0")
        .await;
    let (token, p) = d.admin();
    for _ in 0..2000 {
        let r =
            d.w.t
                .call("GET", &format!("/v3/{p}/snapshots/{s}"), Some(&token), None)
                .await;
        if r.status == 404 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    d.w.t.app.engine.wait_idle().await;
    let after = d
        .call("GET", &format!("/volumes/{from}"), None, "3.0")
        .await;
    assert_eq!(after["volume"]["status"], "available", "{after}");
    assert!(d.reads(&from, OLD).await, "the data outlives the snapshot");
    assert!(d.reads(&v, NEW).await, "and the source keeps its own");
    // Smaller than the snapshot: refused.
    let s2 = d.snapshot(&from).await;
    let (token, p) = d.admin();
    let r =
        d.w.t
            .call(
                "POST",
                &format!("/v3/{p}/volumes"),
                Some(&token),
                Some(json!({"volume": {"snapshot_id": s2, "size": 1}})),
            )
            .await;
    assert_eq!(r.status, 400, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_reverts_to_the_first_of_three_snapshots() {
    let d = Data::new().await;
    let v = d.volume(json!({"size": 1})).await;
    let generations: [&[(u64, u64, u8)]; 3] =
        [OLD, NEW, &[(0, 1 << 20, 0x33), (700 << 20, 4096, 0x44)]];
    let mut snaps = Vec::new();
    for data in generations {
        d.write(&v, data).await;
        snaps.push(d.snapshot(&v).await);
    }
    d.write(&v, &[(0, 1 << 20, 0x55)]).await;
    let (token, p) = d.admin();
    let revert = |version: &'static str, snapshot: String| {
        let (token, p) = (token.clone(), p.clone());
        let t = &d.w.t;
        let v = v.clone();
        async move {
            t.raw(
                "POST",
                &format!("/v3/{p}/volumes/{v}/action"),
                Some(&token),
                &[("OpenStack-API-Version", &format!("volume {version}"))],
                Some(
                    json!({"revert": {"snapshot_id": snapshot}})
                        .to_string()
                        .into_bytes(),
                ),
            )
            .await
        }
    };
    // Below 3.40 the action does not exist.
    let r = revert("3.39", snaps[0].clone()).await;
    assert_eq!(r.status, 404, "{}", r.body);
    // Another volume's snapshot is not this volume's past.
    let other = d.volume(json!({"size": 1})).await;
    let theirs = d.snapshot(&other).await;
    let r = revert("3.40", theirs).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = revert("3.40", snaps[0].clone()).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body, Value::Null, "a 202 without a body");
    d.w.t.wait_status(&token, &p, &v, "available").await;
    assert!(
        d.reads(&v, OLD).await,
        "the volume reads as at the first snapshot"
    );
    // The later snapshots are still there and still read as they did.
    for (s, data) in snaps.iter().zip(generations) {
        let shown = d.call("GET", &format!("/snapshots/{s}"), None, "3.0").await;
        assert_eq!(shown["snapshot"]["status"], "available", "{shown}");
        let from = d.volume(json!({"snapshot_id": s})).await;
        assert!(d.reads(&from, data).await, "snapshot {s} keeps its data");
    }
    // Writing after the revert changes the volume only.
    d.write(&v, NEW).await;
    let from_first = d.volume(json!({"snapshot_id": snaps[0]})).await;
    assert!(d.reads(&from_first, OLD).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_strategy_copies_its_source_exactly() {
    let d = Data::new().await;
    let v = d.volume(json!({"size": 1})).await;
    d.write(&v, OLD).await;
    let s = d.snapshot(&v).await;
    d.write(&v, NEW).await;
    for strategy in ["space", "performance"] {
        let ty = d.type_with_strategy(strategy).await;
        // From the snapshot: the copy reads as the snapshot's image.
        let from = d.volume(json!({"snapshot_id": s, "volume_type": ty})).await;
        let (a, fa) = d.volume_file(&from).await;
        let (b, fb) = d.snapshot_file(&s).await;
        assert!(
            qemu::compare(&a, fa, &b, fb).await.expect("compare"),
            "{strategy}: the volume from the snapshot differs from it"
        );
        // A clone of the volume: reads as the volume does now.
        let clone = d
            .volume(json!({"source_volid": v, "volume_type": ty}))
            .await;
        let (a, fa) = d.volume_file(&clone).await;
        let (b, fb) = d.volume_file(&v).await;
        assert!(
            qemu::compare(&a, fa, &b, fb).await.expect("compare"),
            "{strategy}: the clone differs from its source"
        );
        let tree = d
            .call("GET", &format!("/scoria-volumes/{from}/tree"), None, "3.0")
            .await;
        let depth = tree["tree"]["chain"].as_array().map_or(0, Vec::len);
        // An overlay stands on the snapshot's image; a copy stands alone.
        let want = if strategy == "space" { 2 } else { 1 };
        assert_eq!(depth, want, "{strategy}: {tree}");
    }
}
