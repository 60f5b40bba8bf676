//! Per-volume-type quotas (`volumes_<type>`, `gigabytes_<type>`,
//! `snapshots_<type>`) over HTTP, as scripts of requests: each step names the
//! caller, the request and the status, and may check values in the answer
//! (by JSON pointer), keys it must not have, or a fragment of the fault
//! message. `{a}`, `{b}` are the projects; other `{names}` are saved values.

mod support;

use std::collections::BTreeMap;

use serde_json::{Value, json};
use support::TestApp;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Admin,
    /// Member of project A.
    AMember,
    /// Member of project B.
    BMember,
}
use Who::{AMember, Admin, BMember};

enum Step {
    Call {
        who: Who,
        method: &'static str,
        path: &'static str,
        body: Option<Value>,
        status: u16,
        /// (JSON pointer, value) pairs the answer must hold.
        has: Vec<(String, Value)>,
        /// JSON pointers the answer must not have.
        lacks: Vec<String>,
        /// A fragment of the fault message.
        says: Option<&'static str>,
        /// (name, JSON pointer) of values to remember.
        save: Vec<(&'static str, &'static str)>,
    },
    /// Wait until the saved volume is `available`.
    Available(Who, &'static str),
}

fn call(
    who: Who,
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    status: u16,
) -> Step {
    Step::Call {
        who,
        method,
        path,
        body,
        status,
        has: vec![],
        lacks: vec![],
        says: None,
        save: vec![],
    }
}

impl Step {
    fn has(mut self, pointer: &str, value: Value) -> Step {
        if let Step::Call { has, .. } = &mut self {
            has.push((pointer.to_owned(), value));
        }
        self
    }

    fn lacks(mut self, pointer: &str) -> Step {
        if let Step::Call { lacks, .. } = &mut self {
            lacks.push(pointer.to_owned());
        }
        self
    }

    fn says(mut self, fragment: &'static str) -> Step {
        if let Step::Call { says, .. } = &mut self {
            *says = Some(fragment);
        }
        self
    }

    fn save(mut self, name: &'static str, pointer: &'static str) -> Step {
        if let Step::Call { save, .. } = &mut self {
            save.push((name, pointer));
        }
        self
    }
}

struct World {
    t: TestApp,
    tokens: BTreeMap<&'static str, (String, String)>,
    vars: BTreeMap<String, String>,
}

impl World {
    async fn new() -> World {
        let t = TestApp::new().await;
        let (admin, admin_p) = t.admin().await;
        let a = t.project(&admin, "project-a").await;
        let b = t.project(&admin, "project-b").await;
        t.user(&admin, "a-member", "pw-a", &a, "member").await;
        t.user(&admin, "b-member", "pw-b", &b, "member").await;
        let mut tokens = BTreeMap::new();
        tokens.insert("admin", (admin, admin_p));
        tokens.insert("a", t.login("a-member", "pw-a", "project-a").await);
        tokens.insert("b", t.login("b-member", "pw-b", "project-b").await);
        let vars = [("a".to_string(), a), ("b".to_string(), b)].into();
        World { t, tokens, vars }
    }

    fn token(&self, who: Who) -> (String, String) {
        let k = match who {
            Admin => "admin",
            AMember => "a",
            BMember => "b",
        };
        self.tokens[k].clone()
    }

    fn fill(&self, s: &str, project: &str) -> String {
        let mut s = s.replace("{p}", project);
        for (k, v) in &self.vars {
            s = s.replace(&format!("{{{k}}}"), v);
        }
        s
    }

    /// Run the steps in order; collect every mismatch, then fail with all.
    async fn run(&mut self, steps: Vec<Step>) {
        let mut failures = Vec::new();
        for (i, step) in steps.into_iter().enumerate() {
            let (who, method, path, body, status, has, lacks, says, save) = match step {
                Step::Available(who, var) => {
                    let (token, project) = self.token(who);
                    let id = self.vars[var].clone();
                    self.t.wait_status(&token, &project, &id, "available").await;
                    continue;
                }
                Step::Call {
                    who,
                    method,
                    path,
                    body,
                    status,
                    has,
                    lacks,
                    says,
                    save,
                } => (who, method, path, body, status, has, lacks, says, save),
            };
            let (token, project) = self.token(who);
            let path = self.fill(path, &project);
            let body = body.map(|b| self.fill(&b.to_string(), &project).into_bytes());
            let r = self.t.raw(method, &path, Some(&token), &[], body).await;
            let what = format!("step {i}: {method} {path} as {who:?}");
            if r.status != status {
                failures.push(format!(
                    "{what}: got {}, expected {status}: {}",
                    r.status, r.body
                ));
                continue;
            }
            if let Some(fragment) = says {
                let message = r
                    .body
                    .as_object()
                    .and_then(|o| o.values().next())
                    .and_then(|f| f["message"].as_str())
                    .unwrap_or_default();
                if !message.contains(fragment) {
                    failures.push(format!("{what}: message {message:?} lacks {fragment:?}"));
                }
            }
            for (pointer, want) in has {
                let pointer = self.fill(&pointer, &project);
                let got = r.body.pointer(&pointer);
                if got != Some(&want) {
                    failures.push(format!("{what}: {pointer} is {got:?}, expected {want}"));
                }
            }
            for pointer in lacks {
                let pointer = self.fill(&pointer, &project);
                if let Some(got) = r.body.pointer(&pointer) {
                    failures.push(format!("{what}: has {pointer} = {got}"));
                }
            }
            for (name, pointer) in save {
                match r.body.pointer(pointer).and_then(Value::as_str) {
                    Some(v) => {
                        self.vars.insert(name.to_owned(), v.to_owned());
                    }
                    None => failures.push(format!("{what}: nothing at {pointer}")),
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

fn new_type(name: &str) -> Option<Value> {
    Some(json!({"volume_type": {"name": name}}))
}

fn quota(set: Value) -> Option<Value> {
    Some(json!({ "quota_set": set }))
}

fn volume(name: &str, size: i64, volume_type: &str) -> Option<Value> {
    Some(json!({"volume": {"name": name, "size": size, "volume_type": volume_type}}))
}

fn action(a: Value) -> Option<Value> {
    Some(a)
}

/// `{limit, in_use, reserved, allocated}` of a `?usage=true` line.
fn usage(limit: i64, in_use: i64) -> Value {
    json!({"limit": limit, "in_use": in_use, "reserved": 0, "allocated": 0})
}

const A_QUOTA: &str = "/v3/{p}/os-quota-sets/{a}";
const A_USAGE: &str = "/v3/{p}/os-quota-sets/{a}?usage=true";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_limit_binds_its_type_follows_renames_and_goes_with_the_type() {
    let mut w = World::new().await;
    w.run(vec![
        call(Admin, "POST", "/v3/{p}/types", new_type("gold"), 200).save("gold", "/volume_type/id"),
        call(Admin, "POST", "/v3/{p}/types", new_type("silver"), 200),
        // Every type has its three keys, unlimited until set.
        call(Admin, "GET", A_QUOTA, None, 200)
            .has("/quota_set/volumes_gold", json!(-1))
            .has("/quota_set/gigabytes_gold", json!(-1))
            .has("/quota_set/snapshots_gold", json!(-1))
            .has("/quota_set/volumes___DEFAULT__", json!(-1))
            .has("/quota_set/volumes", json!(10)),
        call(Admin, "PUT", A_QUOTA, quota(json!({"volumes_gold": 1})), 200)
            .has("/quota_set/volumes_gold", json!(1))
            .has("/quota_set/gigabytes_gold", json!(-1))
            .has("/quota_set/volumes_silver", json!(-1))
            .lacks("/quota_set/id"),
        call(AMember, "POST", "/v3/{p}/volumes", volume("g1", 1, "gold"), 202).save("g1", "/volume/id"),
        Step::Available(AMember, "g1"),
        call(AMember, "POST", "/v3/{p}/volumes", volume("g2", 1, "gold"), 413)
            .says("VolumeLimitExceeded: Maximum number of volumes allowed (1) exceeded for quota 'volumes_gold'"),
        // Another type still fits.
        call(AMember, "POST", "/v3/{p}/volumes", volume("s1", 1, "silver"), 202).save("s1", "/volume/id"),
        Step::Available(AMember, "s1"),
        // The project's member sees its own usage per type.
        call(AMember, "GET", A_USAGE, None, 200)
            .has("/quota_set/volumes", usage(10, 2))
            .has("/quota_set/gigabytes", usage(1000, 2))
            .has("/quota_set/volumes_gold", usage(1, 1))
            .has("/quota_set/gigabytes_gold", usage(-1, 1))
            .has("/quota_set/volumes_silver", usage(-1, 1))
            .has("/quota_set/snapshots_silver", usage(-1, 0))
            .has("/quota_set/volumes___DEFAULT__", usage(-1, 0)),
        // Keys of types that do not exist, and limits below usage, are refused.
        call(Admin, "PUT", A_QUOTA, quota(json!({"volumes_nope": 1})), 400).says("Bad key(s) in quota set: volumes_nope"),
        call(Admin, "PUT", A_QUOTA, quota(json!({"backups_gold": 1})), 400).says("Bad key(s) in quota set"),
        call(Admin, "PUT", A_QUOTA, quota(json!({"volumes_gold": 0})), 400).says("smaller than what is already used"),
        call(Admin, "PUT", A_QUOTA, quota(json!({"volumes_gold": "x"})), 400),
        // Extending reserves the type's gigabytes too.
        call(Admin, "PUT", A_QUOTA, quota(json!({"gigabytes_gold": 2})), 200),
        call(AMember, "POST", "/v3/{p}/volumes/{g1}/action", action(json!({"os-extend": {"new_size": 3}})), 413)
            .says("the gigabytes_gold quota"),
        call(AMember, "POST", "/v3/{p}/volumes/{g1}/action", action(json!({"os-extend": {"new_size": 2}})), 202),
        Step::Available(AMember, "g1"),
        call(AMember, "GET", A_USAGE, None, 200)
            .has("/quota_set/gigabytes_gold", usage(2, 2))
            .has("/quota_set/gigabytes", usage(1000, 3)),
        // A retype checks the new type's limits; usage moves with the type.
        call(AMember, "POST", "/v3/{p}/volumes/{s1}/action", action(json!({"os-retype": {"new_type": "gold"}})), 413)
            .says("'volumes_gold'"),
        call(Admin, "PUT", A_QUOTA, quota(json!({"volumes_gold": 2})), 200),
        call(AMember, "POST", "/v3/{p}/volumes/{s1}/action", action(json!({"os-retype": {"new_type": "gold"}})), 413)
            .says("the gigabytes_gold quota"),
        call(Admin, "PUT", A_QUOTA, quota(json!({"gigabytes_gold": 3})), 200),
        call(AMember, "POST", "/v3/{p}/volumes/{s1}/action", action(json!({"os-retype": {"new_type": "gold"}})), 202),
        call(AMember, "GET", A_USAGE, None, 200)
            .has("/quota_set/volumes_gold", usage(2, 2))
            .has("/quota_set/gigabytes_gold", usage(3, 3))
            .has("/quota_set/volumes_silver", usage(-1, 0))
            .has("/quota_set/gigabytes_silver", usage(-1, 0))
            .has("/quota_set/volumes", usage(10, 2)),
        // Renaming the type renames its keys; limits and usage follow.
        call(Admin, "PUT", "/v3/{p}/types/{gold}", Some(json!({"volume_type": {"name": "platinum"}})), 200),
        call(Admin, "GET", A_USAGE, None, 200)
            .has("/quota_set/volumes_platinum", usage(2, 2))
            .has("/quota_set/gigabytes_platinum", usage(3, 3))
            .lacks("/quota_set/volumes_gold"),
        call(Admin, "PUT", A_QUOTA, quota(json!({"volumes_gold": 5})), 400).says("volumes_gold"),
        call(AMember, "POST", "/v3/{p}/volumes", volume("p3", 1, "platinum"), 413).says("'volumes_platinum'"),
        // Deleting a type deletes its limits: a new type of the name starts unlimited.
        call(Admin, "POST", "/v3/{p}/types", new_type("temp"), 200).save("temp", "/volume_type/id"),
        call(Admin, "PUT", A_QUOTA, quota(json!({"volumes_temp": 4})), 200),
        call(Admin, "PUT", "/v3/{p}/os-quota-class-sets/default", Some(json!({"quota_class_set": {"gigabytes_temp": 7}})), 200)
            .has("/quota_class_set/gigabytes_temp", json!(7)),
        call(Admin, "GET", A_QUOTA, None, 200)
            .has("/quota_set/volumes_temp", json!(4))
            .has("/quota_set/gigabytes_temp", json!(7)),
        call(Admin, "DELETE", "/v3/{p}/types/{temp}", None, 202),
        call(Admin, "GET", A_QUOTA, None, 200).lacks("/quota_set/volumes_temp"),
        call(Admin, "GET", "/v3/{p}/os-quota-class-sets/default", None, 200).lacks("/quota_class_set/gigabytes_temp"),
        call(Admin, "POST", "/v3/{p}/types", new_type("temp"), 200),
        call(Admin, "GET", A_QUOTA, None, 200)
            .has("/quota_set/volumes_temp", json!(-1))
            .has("/quota_set/gigabytes_temp", json!(-1)),
        // Deleting the project's quota set drops its per-type limits too.
        call(Admin, "DELETE", A_QUOTA, None, 200),
        call(Admin, "GET", A_QUOTA, None, 200).has("/quota_set/volumes_platinum", json!(-1)),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_checks_the_recipients_type_limits() {
    let mut w = World::new().await;
    w.run(vec![
        call(Admin, "POST", "/v3/{p}/types", new_type("gold"), 200),
        call(
            AMember,
            "POST",
            "/v3/{p}/volumes",
            volume("g", 2, "gold"),
            202,
        )
        .save("v", "/volume/id"),
        Step::Available(AMember, "v"),
        call(
            Admin,
            "PUT",
            "/v3/{p}/os-quota-sets/{b}",
            quota(json!({"gigabytes_gold": 1})),
            200,
        ),
        call(
            AMember,
            "POST",
            "/v3/{p}/volume-transfers",
            Some(json!({"transfer": {"volume_id": "{v}"}})),
            202,
        )
        .save("t", "/transfer/id")
        .save("k", "/transfer/auth_key"),
        call(
            BMember,
            "POST",
            "/v3/{p}/volume-transfers/{t}/accept",
            Some(json!({"accept": {"auth_key": "{k}"}})),
            413,
        )
        .says("the gigabytes_gold quota"),
        call(
            Admin,
            "PUT",
            "/v3/{p}/os-quota-sets/{b}",
            quota(json!({"gigabytes_gold": 2, "volumes_gold": 0})),
            200,
        ),
        call(
            BMember,
            "POST",
            "/v3/{p}/volume-transfers/{t}/accept",
            Some(json!({"accept": {"auth_key": "{k}"}})),
            413,
        )
        .says("'volumes_gold'"),
        call(
            Admin,
            "PUT",
            "/v3/{p}/os-quota-sets/{b}",
            quota(json!({"volumes_gold": 1})),
            200,
        ),
        call(
            BMember,
            "POST",
            "/v3/{p}/volume-transfers/{t}/accept",
            Some(json!({"accept": {"auth_key": "{k}"}})),
            202,
        ),
        call(
            BMember,
            "GET",
            "/v3/{p}/os-quota-sets/{b}?usage=true",
            None,
            200,
        )
        .has("/quota_set/volumes_gold", usage(1, 1))
        .has("/quota_set/gigabytes_gold", usage(2, 2)),
        call(AMember, "GET", A_USAGE, None, 200)
            .has("/quota_set/volumes_gold", usage(-1, 0))
            .has("/quota_set/gigabytes_gold", usage(-1, 0)),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defaults_classes_and_which_types_a_project_sees() {
    let mut w = World::new().await;
    let class = "/v3/{p}/os-quota-class-sets/default";
    w.run(vec![
        call(Admin, "POST", "/v3/{p}/types", new_type("gold"), 200),
        call(Admin, "POST", "/v3/{p}/types", Some(json!({"volume_type": {"name": "hidden", "os-volume-type-access:is_public": false}})), 200)
            .save("hidden", "/volume_type/id"),
        // The default class: settable per type, read back by every project's defaults.
        call(Admin, "PUT", class, Some(json!({"quota_class_set": {"volumes_gold": 3, "snapshots_gold": 4, "volumes": 11}})), 200)
            .has("/quota_class_set/volumes_gold", json!(3))
            .has("/quota_class_set/snapshots_gold", json!(4))
            .has("/quota_class_set/gigabytes_gold", json!(-1))
            .has("/quota_class_set/volumes", json!(11)),
        call(Admin, "PUT", class, Some(json!({"quota_class_set": {"gigabytes_nope": 3}})), 400).says("gigabytes_nope"),
        call(Admin, "GET", class, None, 200)
            .has("/quota_class_set/id", json!("default"))
            .has("/quota_class_set/volumes_gold", json!(3))
            .has("/quota_class_set/volumes_hidden", json!(-1)),
        call(Admin, "GET", "/v3/{p}/os-quota-sets/{b}/defaults", None, 200)
            .has("/quota_set/volumes_gold", json!(3))
            .has("/quota_set/volumes_hidden", json!(-1)),
        call(BMember, "GET", "/v3/{p}/os-quota-sets/{b}/defaults", None, 200)
            .has("/quota_set/volumes_gold", json!(3))
            .lacks("/quota_set/volumes_hidden"),
        call(BMember, "GET", "/v3/{p}/os-quota-sets/{b}", None, 200)
            .has("/quota_set/volumes_gold", json!(3))
            .has("/quota_set/volumes", json!(11))
            .lacks("/quota_set/volumes_hidden"),
        // The class default binds.
        call(BMember, "POST", "/v3/{p}/volumes", volume("1", 1, "gold"), 202),
        call(BMember, "POST", "/v3/{p}/volumes", volume("2", 1, "gold"), 202),
        call(BMember, "POST", "/v3/{p}/volumes", volume("3", 1, "gold"), 202),
        call(BMember, "POST", "/v3/{p}/volumes", volume("4", 1, "gold"), 413).says("'volumes_gold'"),
        // A private type's keys show to the projects it is shared with, and
        // to a project that has a limit of it.
        call(Admin, "POST", "/v3/{p}/types/{hidden}/action", Some(json!({"addProjectAccess": {"project": "{a}"}})), 202),
        call(AMember, "GET", A_QUOTA, None, 200).has("/quota_set/volumes_hidden", json!(-1)),
        call(BMember, "GET", "/v3/{p}/os-quota-sets/{b}", None, 200).lacks("/quota_set/volumes_hidden"),
        call(Admin, "PUT", "/v3/{p}/os-quota-sets/{b}", quota(json!({"volumes_hidden": 2})), 200)
            .has("/quota_set/volumes_hidden", json!(2)),
        call(BMember, "GET", "/v3/{p}/os-quota-sets/{b}", None, 200).has("/quota_set/volumes_hidden", json!(2)),
        // Members may not change limits, per type or not.
        call(AMember, "PUT", A_QUOTA, quota(json!({"volumes_gold": 9})), 403),
        call(AMember, "PUT", class, Some(json!({"quota_class_set": {"volumes_gold": 9}})), 403),
    ])
    .await;
}
