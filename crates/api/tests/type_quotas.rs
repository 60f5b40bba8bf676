//! Per-volume-type quotas (`volumes_<type>`, `gigabytes_<type>`,
//! `snapshots_<type>`) over HTTP, as scripts of requests: each step names the
//! caller, the request and the status, and may check values in the answer
//! (by JSON pointer), keys it must not have, or a fragment of the fault
//! message. `{a}`, `{b}` are the projects; other `{names}` are saved values.

mod support;

use serde_json::{Value, json};
use support::steps::Who::{Admin, Member, Other};
use support::steps::{Step, World, call};

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
        call(Member, "POST", "/v3/{p}/volumes", volume("g1", 1, "gold"), 202).save("g1", "/volume/id"),
        Step::Volume(Member, "g1", "available"),
        call(Member, "POST", "/v3/{p}/volumes", volume("g2", 1, "gold"), 413)
            .says("VolumeLimitExceeded: Maximum number of volumes allowed (1) exceeded for quota 'volumes_gold'"),
        // Another type still fits.
        call(Member, "POST", "/v3/{p}/volumes", volume("s1", 1, "silver"), 202).save("s1", "/volume/id"),
        Step::Volume(Member, "s1", "available"),
        // The project's member sees its own usage per type.
        call(Member, "GET", A_USAGE, None, 200)
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
        call(Member, "POST", "/v3/{p}/volumes/{g1}/action", action(json!({"os-extend": {"new_size": 3}})), 413)
            .says("the gigabytes_gold quota"),
        call(Member, "POST", "/v3/{p}/volumes/{g1}/action", action(json!({"os-extend": {"new_size": 2}})), 202),
        Step::Volume(Member, "g1", "available"),
        call(Member, "GET", A_USAGE, None, 200)
            .has("/quota_set/gigabytes_gold", usage(2, 2))
            .has("/quota_set/gigabytes", usage(1000, 3)),
        // A retype checks the new type's limits; usage moves with the type.
        call(Member, "POST", "/v3/{p}/volumes/{s1}/action", action(json!({"os-retype": {"new_type": "gold"}})), 413)
            .says("'volumes_gold'"),
        call(Admin, "PUT", A_QUOTA, quota(json!({"volumes_gold": 2})), 200),
        call(Member, "POST", "/v3/{p}/volumes/{s1}/action", action(json!({"os-retype": {"new_type": "gold"}})), 413)
            .says("the gigabytes_gold quota"),
        call(Admin, "PUT", A_QUOTA, quota(json!({"gigabytes_gold": 3})), 200),
        call(Member, "POST", "/v3/{p}/volumes/{s1}/action", action(json!({"os-retype": {"new_type": "gold"}})), 202),
        call(Member, "GET", A_USAGE, None, 200)
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
        call(Member, "POST", "/v3/{p}/volumes", volume("p3", 1, "platinum"), 413).says("'volumes_platinum'"),
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
            Member,
            "POST",
            "/v3/{p}/volumes",
            volume("g", 2, "gold"),
            202,
        )
        .save("v", "/volume/id"),
        Step::Volume(Member, "v", "available"),
        call(
            Admin,
            "PUT",
            "/v3/{p}/os-quota-sets/{b}",
            quota(json!({"gigabytes_gold": 1})),
            200,
        ),
        call(
            Member,
            "POST",
            "/v3/{p}/volume-transfers",
            Some(json!({"transfer": {"volume_id": "{v}"}})),
            202,
        )
        .save("t", "/transfer/id")
        .save("k", "/transfer/auth_key"),
        call(
            Other,
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
            Other,
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
            Other,
            "POST",
            "/v3/{p}/volume-transfers/{t}/accept",
            Some(json!({"accept": {"auth_key": "{k}"}})),
            202,
        ),
        call(
            Other,
            "GET",
            "/v3/{p}/os-quota-sets/{b}?usage=true",
            None,
            200,
        )
        .has("/quota_set/volumes_gold", usage(1, 1))
        .has("/quota_set/gigabytes_gold", usage(2, 2)),
        call(Member, "GET", A_USAGE, None, 200)
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
        call(Other, "GET", "/v3/{p}/os-quota-sets/{b}/defaults", None, 200)
            .has("/quota_set/volumes_gold", json!(3))
            .lacks("/quota_set/volumes_hidden"),
        call(Other, "GET", "/v3/{p}/os-quota-sets/{b}", None, 200)
            .has("/quota_set/volumes_gold", json!(3))
            .has("/quota_set/volumes", json!(11))
            .lacks("/quota_set/volumes_hidden"),
        // The class default binds.
        call(Other, "POST", "/v3/{p}/volumes", volume("1", 1, "gold"), 202),
        call(Other, "POST", "/v3/{p}/volumes", volume("2", 1, "gold"), 202),
        call(Other, "POST", "/v3/{p}/volumes", volume("3", 1, "gold"), 202),
        call(Other, "POST", "/v3/{p}/volumes", volume("4", 1, "gold"), 413).says("'volumes_gold'"),
        // A private type's keys show to the projects it is shared with, and
        // to a project that has a limit of it.
        call(Admin, "POST", "/v3/{p}/types/{hidden}/action", Some(json!({"addProjectAccess": {"project": "{a}"}})), 202),
        call(Member, "GET", A_QUOTA, None, 200).has("/quota_set/volumes_hidden", json!(-1)),
        call(Other, "GET", "/v3/{p}/os-quota-sets/{b}", None, 200).lacks("/quota_set/volumes_hidden"),
        call(Admin, "PUT", "/v3/{p}/os-quota-sets/{b}", quota(json!({"volumes_hidden": 2})), 200)
            .has("/quota_set/volumes_hidden", json!(2)),
        call(Other, "GET", "/v3/{p}/os-quota-sets/{b}", None, 200).has("/quota_set/volumes_hidden", json!(2)),
        // Members may not change limits, per type or not.
        call(Member, "PUT", A_QUOTA, quota(json!({"volumes_gold": 9})), 403),
        call(Member, "PUT", class, Some(json!({"quota_class_set": {"volumes_gold": 9}})), 403),
    ])
    .await;
}
