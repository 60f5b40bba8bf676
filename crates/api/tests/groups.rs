//! Group types, group specs and generic volume groups over HTTP, as scripts
//! of requests: each step names the caller, the microversion, the request,
//! the status and (when it matters) the whole body, with ids put back as
//! `{names}` and times redacted. Bodies are compared exactly, because strict
//! clients (tempest) refuse any key Cinder does not send.

mod support;

use std::collections::BTreeMap;

use serde_json::{Value, json};
use support::steps::Who::{Admin, Member, Other, Reader};
use support::steps::{Step, Who, World};

/// The microversion most steps use: groups and `reset_status` exist.
const V: &str = "3.20";

/// A request at [`V`].
fn call(who: Who, method: &'static str, path: &str, body: Option<Value>, status: u16) -> Step {
    support::steps::call(who, method, path, body, status).at(V)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_types_and_their_specs() {
    let mut w = World::new().await;
    let long = "x".repeat(256);
    w.run(vec![
        // The routes exist from 3.11 on.
        call(Admin, "GET", "/v3/{p}/group_types", None, 404).at("3.10").says("not supported"),
        call(Admin, "POST", "/v3/{p}/group_types", Some(json!({"group_type": {"name": "x"}})), 404)
            .at("3.0"),
        // Create (202): admins see the group specs.
        call(Admin, "POST", "/v3/{p}/group_types", Some(json!({"group_type": {
            "name": "gt-b", "description": "first", "is_public": true,
            "group_specs": {"consistent_group_snapshot_enabled": "<is> False"}}})), 202)
            .at("3.11")
            .save("b", "/group_type/id")
            .is(json!({"group_type": {"id": "{b}", "name": "gt-b", "description": "first",
                "is_public": true, "group_specs": {"consistent_group_snapshot_enabled": "<is> False"}}})),
        call(Admin, "POST", "/v3/{p}/group_types", Some(json!({"group_type": {
            "name": "gt-a", "is_public": "false"}})), 202)
            .save("a_type", "/group_type/id")
            .is(json!({"group_type": {"id": "{a_type}", "name": "gt-a", "description": null,
                "is_public": false, "group_specs": {}}})),
        call(Admin, "POST", "/v3/{p}/group_types", Some(json!({"group_type": {"name": "gt-b"}})), 409)
            .says("already exists"),
        call(Admin, "POST", "/v3/{p}/group_types", Some(json!({"group_type": {"name": ""}})), 400),
        call(Admin, "POST", "/v3/{p}/group_types", Some(json!({"group_type": {"name": "  "}})), 400),
        call(Admin, "POST", "/v3/{p}/group_types", Some(json!({"group_type": {"name": long}})), 400),
        call(Admin, "POST", "/v3/{p}/group_types", Some(json!({"group_type": {}})), 400),
        call(Admin, "POST", "/v3/{p}/group_types", Some(json!({"group_type": {"name": "x", "color": 1}})), 400),
        call(Admin, "POST", "/v3/{p}/group_types", Some(json!({"group_type": {"name": "x", "is_public": "maybe"}})), 400),
        call(Admin, "POST", "/v3/{p}/group_types", Some(json!({"group_type": {"name": "x", "group_specs": {"k": 1}}})), 400),
        call(Admin, "POST", "/v3/{p}/group_types", Some(json!({"group_type": {"name": "x", "group_specs": {"bad key": "v"}}})), 400),
        call(Member, "POST", "/v3/{p}/group_types", Some(json!({"group_type": {"name": "mine"}})), 403),
        // Readers see public types, without their specs; a private one is
        // absent for them. There is no default group type.
        call(Reader, "GET", "/v3/{p}/group_types", None, 200)
            .is(json!({"group_types": [{"id": "{b}", "name": "gt-b", "description": "first", "is_public": true}]})),
        call(Reader, "GET", "/v3/{p}/group_types/{b}", None, 200)
            .is(json!({"group_type": {"id": "{b}", "name": "gt-b", "description": "first", "is_public": true}})),
        call(Reader, "GET", "/v3/{p}/group_types/{a_type}", None, 404),
        call(Reader, "GET", "/v3/{p}/group_types/default", None, 404).says("Default group type"),
        call(Admin, "GET", "/v3/{p}/group_types/{nothing}", None, 404),
        call(Admin, "GET", "/v3/{p}/group_types/not-a-uuid", None, 404),
        // Admins filter by visibility and sort.
        call(Admin, "GET", "/v3/{p}/group_types?is_public=false", None, 200)
            .save("first_private", "/group_types/0/id"),
        call(Admin, "GET", "/v3/{p}/group_types?is_public=None&sort=name:asc", None, 200)
            .save("first_by_name", "/group_types/0/name"),
        call(Admin, "GET", "/v3/{p}/group_types?is_public=None&sort=name:desc", None, 200)
            .save("last_by_name", "/group_types/0/name"),
        call(Admin, "GET", "/v3/{p}/group_types?sort=color:asc", None, 400),
        call(Admin, "GET", "/v3/{p}/group_types?is_public=sometimes", None, 400),
        // Update (200).
        call(Admin, "PUT", "/v3/{p}/group_types/{b}", Some(json!({"group_type": {
            "name": "gt-b2", "description": "updated"}})), 200)
            .is(json!({"group_type": {"id": "{b}", "name": "gt-b2", "description": "updated",
                "is_public": true, "group_specs": {"consistent_group_snapshot_enabled": "<is> False"}}})),
        call(Admin, "PUT", "/v3/{p}/group_types/{b}", Some(json!({"group_type": {}})), 400),
        call(Admin, "PUT", "/v3/{p}/group_types/{b}", Some(json!({"group_type": {"name": "gt-a"}})), 409),
        call(Admin, "PUT", "/v3/{p}/group_types/{nothing}", Some(json!({"group_type": {"name": "n"}})), 404),
        call(Member, "PUT", "/v3/{p}/group_types/{b}", Some(json!({"group_type": {"name": "n"}})), 403),
        // Group specs, tempest's sequence.
        call(Admin, "POST", "/v3/{p}/group_types/{a_type}/group_specs",
            Some(json!({"group_specs": {"key1": "value1", "key2": "value2"}})), 202)
            .is(json!({"group_specs": {"key1": "value1", "key2": "value2"}})),
        call(Admin, "POST", "/v3/{p}/group_types/{a_type}/group_specs",
            Some(json!({"group_specs": {"key2": "value2-updated", "key3": "value3"}})), 202)
            .is(json!({"group_specs": {"key2": "value2-updated", "key3": "value3"}})),
        call(Admin, "GET", "/v3/{p}/group_types/{a_type}/group_specs/key2", None, 200)
            .is(json!({"key2": "value2-updated"})),
        call(Admin, "PUT", "/v3/{p}/group_types/{a_type}/group_specs/key3",
            Some(json!({"key3": "value3-updated"})), 200)
            .is(json!({"key3": "value3-updated"})),
        call(Admin, "PUT", "/v3/{p}/group_types/{a_type}/group_specs/key3",
            Some(json!({"key4": "v"})), 400).says("mismatch"),
        call(Admin, "PUT", "/v3/{p}/group_types/{a_type}/group_specs/key3",
            Some(json!({"key3": "v", "key4": "v"})), 400).says("too many"),
        call(Admin, "GET", "/v3/{p}/group_types/{a_type}/group_specs", None, 200)
            .is(json!({"group_specs": {"key1": "value1", "key2": "value2-updated", "key3": "value3-updated"}})),
        call(Admin, "DELETE", "/v3/{p}/group_types/{a_type}/group_specs/key1", None, 202),
        call(Admin, "GET", "/v3/{p}/group_types/{a_type}/group_specs/key1", None, 404)
            .says("has no extra spec with key key1"),
        call(Admin, "DELETE", "/v3/{p}/group_types/{a_type}/group_specs/key1", None, 404),
        call(Admin, "POST", "/v3/{p}/group_types/{nothing}/group_specs",
            Some(json!({"group_specs": {"k": "v"}})), 404),
        call(Admin, "POST", "/v3/{p}/group_types/{a_type}/group_specs", Some(json!({"specs": {}})), 400),
        call(Reader, "GET", "/v3/{p}/group_types/{b}/group_specs", None, 403),
        call(Member, "POST", "/v3/{p}/group_types/{b}/group_specs",
            Some(json!({"group_specs": {"k": "v"}})), 403),
        // Delete (202).
        call(Admin, "DELETE", "/v3/{p}/group_types/{a_type}", None, 202),
        call(Admin, "DELETE", "/v3/{p}/group_types/{a_type}", None, 404),
        call(Member, "DELETE", "/v3/{p}/group_types/{b}", None, 403),
    ])
    .await;
    assert_eq!(w.vars["first_private"], w.vars["a_type"]);
    assert_eq!(w.vars["first_by_name"], "gt-a");
    assert_eq!(w.vars["last_by_name"], "gt-b");
}

/// The detail view of group `{g}` (named `name`) at 3.14–3.24, for the
/// fixtures of [`groups_volumes_and_their_rules`].
fn group_view(name: &str, status: &str) -> Value {
    json!({"group": {"id": "{g}", "status": status, "availability_zone": "nova",
        "created_at": "<time>", "name": name, "description": null, "group_type": "{gt}",
        "volume_types": ["{vt}"], "group_snapshot_id": null, "source_group_id": null}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_volumes_and_their_rules() {
    let mut w = World::new().await;
    w.run(vec![
        // Fixtures: a volume type, another one, a group type.
        call(Admin, "POST", "/v3/{p}/types", Some(json!({"volume_type": {"name": "vt"}})), 200)
            .save("vt", "/volume_type/id"),
        call(Admin, "POST", "/v3/{p}/types", Some(json!({"volume_type": {"name": "vt2"}})), 200)
            .save("vt2", "/volume_type/id"),
        call(Admin, "POST", "/v3/{p}/group_types", Some(json!({"group_type": {"name": "gt"}})), 202)
            .save("gt", "/group_type/id"),
        // The routes exist from 3.13 on.
        call(Member, "POST", "/v3/{p}/groups",
            Some(json!({"group": {"group_type": "{gt}", "volume_types": ["{vt}"]}})), 404).at("3.12"),
        call(Member, "GET", "/v3/{p}/groups", None, 404).at("3.12"),
        // Create (202): id and name only. Types by id or name.
        call(Member, "POST", "/v3/{p}/groups",
            Some(json!({"group": {"group_type": "{gt}", "volume_types": ["vt"], "name": "g1"}})), 202)
            .at("3.13")
            .save("g", "/group/id")
            .is(json!({"group": {"id": "{g}", "name": "g1"}})),
        call(Member, "POST", "/v3/{p}/groups",
            Some(json!({"group": {"group_type": "gt", "volume_types": ["{vt}"], "name": "g2",
                "description": "second", "availability_zone": "nova"}})), 202)
            .save("g2", "/group/id"),
        call(Reader, "POST", "/v3/{p}/groups",
            Some(json!({"group": {"group_type": "{gt}", "volume_types": ["{vt}"]}})), 403),
        call(Member, "POST", "/v3/{p}/groups",
            Some(json!({"group": {"group_type": "{nothing}", "volume_types": ["{vt}"]}})), 404),
        call(Member, "POST", "/v3/{p}/groups",
            Some(json!({"group": {"group_type": "{gt}", "volume_types": ["{nothing}"]}})), 404),
        call(Member, "POST", "/v3/{p}/groups",
            Some(json!({"group": {"group_type": "{gt}", "volume_types": []}})), 400),
        call(Member, "POST", "/v3/{p}/groups",
            Some(json!({"group": {"group_type": "{gt}", "volume_types": ["{vt}", "{vt}"]}})), 400),
        call(Member, "POST", "/v3/{p}/groups",
            Some(json!({"group": {"group_type": "{gt}"}})), 400),
        call(Member, "POST", "/v3/{p}/groups",
            Some(json!({"group": {"volume_types": ["{vt}"]}})), 400),
        call(Member, "POST", "/v3/{p}/groups",
            Some(json!({"group": {"group_type": "{gt}", "volume_types": ["{vt}"], "availability_zone": "mars"}})), 400)
            .says("mars"),
        call(Member, "POST", "/v3/{p}/groups",
            Some(json!({"group": {"group_type": "{gt}", "volume_types": ["{vt}"], "size": 1}})), 400),
        // Show: the 3.13 detail, then 3.14's source fields, 3.25's volumes,
        // 3.38's replication status, 3.58's project (admins).
        call(Member, "GET", "/v3/{p}/groups/{g}", None, 200).at("3.13")
            .is(json!({"group": {"id": "{g}", "status": "available", "availability_zone": "nova",
                "created_at": "<time>", "name": "g1", "description": null, "group_type": "{gt}",
                "volume_types": ["{vt}"]}})),
        call(Reader, "GET", "/v3/{p}/groups/{g}", None, 200).at("3.14")
            .is(group_view("g1", "available")),
        call(Member, "GET", "/v3/{p}/groups/{g}?list_volume=true", None, 200).at("3.25")
            .is(json!({"group": {"id": "{g}", "status": "available", "availability_zone": "nova",
                "created_at": "<time>", "name": "g1", "description": null, "group_type": "{gt}",
                "volume_types": ["{vt}"], "group_snapshot_id": null, "source_group_id": null,
                "volumes": []}})),
        call(Member, "GET", "/v3/{p}/groups/{g}", None, 200).at("3.38")
            .is(json!({"group": {"id": "{g}", "status": "available", "availability_zone": "nova",
                "created_at": "<time>", "name": "g1", "description": null, "group_type": "{gt}",
                "volume_types": ["{vt}"], "group_snapshot_id": null, "source_group_id": null,
                "replication_status": "disabled"}})),
        call(Admin, "GET", "/v3/{p}/groups/{g}", None, 200).at("3.58")
            .save("project_shown", "/group/project_id"),
        call(Other, "GET", "/v3/{p}/groups/{g}", None, 404).says("could not be found"),
        call(Member, "GET", "/v3/{p}/groups/{nothing}", None, 404),
        call(Member, "GET", "/v3/{p}/groups/not-a-uuid", None, 404),
        // Lists.
        call(Member, "GET", "/v3/{p}/groups?sort=name:asc", None, 200)
            .is(json!({"groups": [{"id": "{g}", "name": "g1"}, {"id": "{g2}", "name": "g2"}]})),
        call(Member, "GET", "/v3/{p}/groups/detail?name=g2", None, 200)
            .save("listed", "/groups/0/description"),
        call(Other, "GET", "/v3/{p}/groups", None, 200).is(json!({"groups": []})),
        call(Admin, "GET", "/v3/{p}/groups?all_tenants=1&sort=name:asc&limit=1", None, 200)
            .save("first", "/groups/0/name")
            .save("next", "/group_links/0/rel"),
        call(Member, "GET", "/v3/{p}/groups?color=red", None, 400).at("3.33"),
        call(Member, "GET", "/v3/{p}/groups?marker={nothing}", None, 400),
        // Volumes in the group (3.13): of a type the group accepts.
        call(Member, "POST", "/v3/{p}/volumes",
            Some(json!({"volume": {"size": 1, "volume_type": "{vt}", "group_id": "{g}"}})), 202)
            .at("3.13")
            .save("v1", "/volume/id"),
        Step::Volume(Member, "v1", "available"),
        call(Member, "POST", "/v3/{p}/volumes",
            Some(json!({"volume": {"size": 1, "volume_type": "{vt}", "group_id": "{g}"}})), 202)
            .save("v2", "/volume/id"),
        Step::Volume(Member, "v2", "available"),
        call(Member, "GET", "/v3/{p}/volumes/{v1}", None, 200).at("3.13")
            .has("/volume/group_id", json!("{g}")),
        call(Member, "GET", "/v3/{p}/volumes/{v1}", None, 200).at("3.12")
            .lacks("/volume/group_id"),
        call(Member, "GET", "/v3/{p}/volumes/detail?group_id={g}", None, 200).at("3.13")
            .save("listed_v", "/volumes/1/id"),
        call(Member, "POST", "/v3/{p}/volumes",
            Some(json!({"volume": {"size": 1, "volume_type": "{vt2}", "group_id": "{g}"}})), 400)
            .says("not among the volume types"),
        call(Member, "POST", "/v3/{p}/volumes",
            Some(json!({"volume": {"size": 1, "group_id": "{g}"}})), 400),
        call(Member, "POST", "/v3/{p}/volumes",
            Some(json!({"volume": {"size": 1, "volume_type": "{vt}", "group_id": "{nothing}"}})), 404),
        call(Member, "POST", "/v3/{p}/volumes",
            Some(json!({"volume": {"size": 1, "volume_type": "{vt}", "group_id": "nope"}})), 400),
        call(Other, "POST", "/v3/{p}/volumes",
            Some(json!({"volume": {"size": 1, "volume_type": "{vt}", "group_id": "{g}"}})), 404),
        call(Member, "POST", "/v3/{p}/volumes",
            Some(json!({"volume": {"size": 1, "volume_type": "{vt}", "group_id": "{g}",
                "availability_zone": "elsewhere"}})), 400),
        // A member cannot be deleted alone, offered for transfer or retyped
        // out of the group's types.
        call(Member, "DELETE", "/v3/{p}/volumes/{v1}", None, 400).says("belongs to group"),
        call(Admin, "POST", "/v3/{p}/volumes/{v1}/action", Some(json!({"os-force_delete": {}})), 400)
            .says("belongs to group"),
        call(Member, "POST", "/v3/{p}/os-volume-transfer",
            Some(json!({"transfer": {"volume_id": "{v1}"}})), 400).says("belongs to group"),
        call(Member, "POST", "/v3/{p}/volumes/{v1}/action",
            Some(json!({"os-retype": {"new_type": "vt2"}})), 400).says("does not accept"),
        // A type a group lists, and a group type a group has, stay.
        call(Admin, "DELETE", "/v3/{p}/types/{vt}", None, 400).says("in use"),
        call(Admin, "DELETE", "/v3/{p}/group_types/{gt}", None, 400).says("in use"),
        // Update (202, no body): remove a volume and rename, then add it back.
        call(Member, "PUT", "/v3/{p}/groups/{g}",
            Some(json!({"group": {"name": "new_group", "description": "desc", "remove_volumes": "{v2}"}})), 202)
            .at("3.13"),
        call(Member, "GET", "/v3/{p}/volumes/{v2}", None, 200).at("3.13")
            .has("/volume/group_id", Value::Null),
        call(Member, "GET", "/v3/{p}/groups/{g}", None, 200).at("3.14")
            .is(json!({"group": {"id": "{g}", "status": "available", "availability_zone": "nova",
                "created_at": "<time>", "name": "new_group", "description": "desc", "group_type": "{gt}",
                "volume_types": ["{vt}"], "group_snapshot_id": null, "source_group_id": null}})),
        call(Member, "PUT", "/v3/{p}/groups/{g}", Some(json!({"group": {"add_volumes": "{v2},"}})), 202),
        call(Member, "GET", "/v3/{p}/volumes/{v2}", None, 200).at("3.13")
            .has("/volume/group_id", json!("{g}")),
        call(Member, "GET", "/v3/{p}/groups/{g}?list_volume=true", None, 200).at("3.25")
            .has("/group/volumes/1", json!("{v2}")),
        call(Member, "PUT", "/v3/{p}/groups/{g}", Some(json!({"group": {}})), 400).says("can not be all empty"),
        call(Member, "PUT", "/v3/{p}/groups/{g}", Some(json!({"group": {"name": "new_group"}})), 400)
            .says("no valid name"),
        call(Member, "PUT", "/v3/{p}/groups/{g}",
            Some(json!({"group": {"add_volumes": "{v1}", "remove_volumes": "{v1}"}})), 400)
            .says("both add and remove"),
        call(Member, "PUT", "/v3/{p}/groups/{g}", Some(json!({"group": {"add_volumes": "{nothing}"}})), 400)
            .says("cannot be found"),
        call(Member, "PUT", "/v3/{p}/groups/{g}", Some(json!({"group": {"remove_volumes": "{nothing}"}})), 400)
            .says("not in the group"),
        call(Member, "PUT", "/v3/{p}/groups/{g2}", Some(json!({"group": {"add_volumes": "{v1}"}})), 400)
            .says("already in group"),
        call(Member, "PUT", "/v3/{p}/groups/{g}", Some(json!({"group": {"color": "red"}})), 400),
        call(Reader, "PUT", "/v3/{p}/groups/{g}", Some(json!({"group": {"name": "n"}})), 403),
        call(Other, "PUT", "/v3/{p}/groups/{g}", Some(json!({"group": {"name": "n"}})), 404),
        // A volume of another type cannot join.
        call(Member, "POST", "/v3/{p}/volumes", Some(json!({"volume": {"size": 1, "volume_type": "{vt2}"}})), 202)
            .save("v3", "/volume/id"),
        Step::Volume(Member, "v3", "available"),
        call(Member, "PUT", "/v3/{p}/groups/{g}", Some(json!({"group": {"add_volumes": "{v3}"}})), 400)
            .says("not supported by the group"),
        // Reset status (3.20, admins).
        call(Admin, "POST", "/v3/{p}/groups/{g2}/action", Some(json!({"reset_status": {"status": "error"}})), 404)
            .at("3.19"),
        call(Member, "POST", "/v3/{p}/groups/{g2}/action", Some(json!({"reset_status": {"status": "error"}})), 403),
        call(Admin, "POST", "/v3/{p}/groups/{g2}/action", Some(json!({"reset_status": {"status": "bogus"}})), 400),
        call(Admin, "POST", "/v3/{p}/groups/{g2}/action", Some(json!({"reset_status": {}})), 400),
        call(Admin, "POST", "/v3/{p}/groups/{g2}/action", Some(json!({"reset_status": {"status": "creating"}})), 202),
        Step::Group("g2", "creating"),
        // A group that is not available takes no volume.
        call(Member, "POST", "/v3/{p}/volumes",
            Some(json!({"volume": {"size": 1, "volume_type": "{vt}", "group_id": "{g2}"}})), 400)
            .says("must be available"),
        call(Member, "POST", "/v3/{p}/groups/{g2}/action", Some(json!({"delete": {"delete-volumes": false}})), 400)
            .says("available or error"),
        call(Admin, "POST", "/v3/{p}/groups/{g2}/action", Some(json!({"reset_status": {"status": "available"}})), 202),
        // Delete: refused while the group has volumes and delete-volumes is
        // false; with it, the volumes go through their own deletes first.
        call(Member, "POST", "/v3/{p}/groups/{g}/action", Some(json!({"delete": {"delete-volumes": false}})), 400)
            .says("still contains volumes"),
        call(Member, "POST", "/v3/{p}/groups/{g}/action", Some(json!({"delete": {}})), 400),
        call(Member, "POST", "/v3/{p}/groups/{g}/action", Some(json!({"delete": {"delete-volumes": "maybe"}})), 400),
        call(Member, "POST", "/v3/{p}/groups/{g}/action", Some(json!({"explode": {}})), 400),
        call(Reader, "POST", "/v3/{p}/groups/{g}/action", Some(json!({"delete": {"delete-volumes": true}})), 403),
        call(Other, "POST", "/v3/{p}/groups/{g}/action", Some(json!({"delete": {"delete-volumes": true}})), 404),
        call(Member, "POST", "/v3/{p}/groups/{g}/action", Some(json!({"delete": {"delete-volumes": true}})), 202)
            .at("3.13"),
        Step::Group("g", "gone"),
        call(Member, "GET", "/v3/{p}/volumes/{v1}", None, 404),
        call(Member, "GET", "/v3/{p}/volumes/{v2}", None, 404),
        call(Member, "POST", "/v3/{p}/groups/{g2}/action", Some(json!({"delete": {"delete-volumes": false}})), 202),
        Step::Group("g2", "gone"),
        call(Member, "GET", "/v3/{p}/groups/detail", None, 200).is(json!({"groups": []})),
        // Nothing uses the types any more.
        call(Admin, "DELETE", "/v3/{p}/group_types/{gt}", None, 202),
    ])
    .await;
    assert_eq!(w.vars["project_shown"], w.vars["a"]);
    assert_eq!(w.vars["listed"], "second");
    assert_eq!(w.vars["next"], "next");
    assert!([w.vars["v1"].as_str(), w.vars["v2"].as_str()].contains(&w.vars["listed_v"].as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_made_from_another_holds_a_clone_of_each_volume() {
    let mut w = World::new().await;
    w.run(vec![
        call(Admin, "POST", "/v3/{p}/group_types", Some(json!({"group_type": {"name": "gt"}})), 202)
            .save("gt", "/group_type/id"),
        call(Member, "POST", "/v3/{p}/groups",
            Some(json!({"group": {"group_type": "{gt}", "volume_types": ["{default}"], "name": "src"}})), 202)
            .save("g", "/group/id"),
        // An empty source makes nothing.
        call(Member, "POST", "/v3/{p}/groups/action",
            Some(json!({"create-from-src": {"source_group_id": "{g}"}})), 400)
            .at("3.14").says("Source Group is empty"),
        call(Member, "POST", "/v3/{p}/volumes",
            Some(json!({"volume": {"size": 1, "group_id": "{g}", "name": "a"}})), 202)
            .save("v1", "/volume/id"),
        call(Member, "POST", "/v3/{p}/volumes",
            Some(json!({"volume": {"size": 2, "group_id": "{g}", "name": "b"}})), 202)
            .save("v2", "/volume/id"),
        Step::Volume(Member, "v1", "available"),
        Step::Volume(Member, "v2", "available"),
        // Below 3.14 the action does not exist.
        call(Member, "POST", "/v3/{p}/groups/action",
            Some(json!({"create-from-src": {"source_group_id": "{g}"}})), 404).at("3.13"),
        // 202: the new group's id and name; it turns available once copied.
        call(Member, "POST", "/v3/{p}/groups/action",
            Some(json!({"create-from-src": {"source_group_id": "{g}", "name": "copy",
                "description": "a copy"}})), 202)
            .at("3.14")
            .save("copy", "/group/id")
            .is(json!({"group": {"id": "{copy}", "name": "copy"}})),
        Step::Group("copy", "available"),
        call(Member, "GET", "/v3/{p}/groups/{copy}?list_volume=true", None, 200).at("3.25")
            .save("c1", "/group/volumes/0")
            .save("c2", "/group/volumes/1")
            .has("/group/source_group_id", json!("{g}"))
            .has("/group/group_type", json!("{gt}"))
            .has("/group/volume_types", json!(["{default}"]))
            .has("/group/description", json!("a copy"))
            .has("/group/status", json!("available")),
        // The clones are in the copy, each from one of the source volumes;
        // the sources are untouched.
        call(Member, "GET", "/v3/{p}/volumes/{c1}", None, 200).at("3.13")
            .has("/volume/group_id", json!("{copy}"))
            .has("/volume/status", json!("available"))
            .save("c1_from", "/volume/source_volid"),
        call(Member, "GET", "/v3/{p}/volumes/{c2}", None, 200).at("3.13")
            .has("/volume/group_id", json!("{copy}"))
            .save("c2_from", "/volume/source_volid"),
        call(Member, "GET", "/v3/{p}/volumes/{v1}", None, 200).at("3.13")
            .has("/volume/group_id", json!("{g}"))
            .has("/volume/status", json!("available")),
        call(Member, "GET", "/v3/{p}/groups/{g}?list_volume=true", None, 200).at("3.25")
            .has("/group/status", json!("available")),
        // Refusals: unknown or invisible sources, a group snapshot (none
        // exist), a source that is not available.
        call(Member, "POST", "/v3/{p}/groups/action",
            Some(json!({"create-from-src": {"source_group_id": "{nothing}"}})), 404),
        call(Other, "POST", "/v3/{p}/groups/action",
            Some(json!({"create-from-src": {"source_group_id": "{g}"}})), 404),
        call(Admin, "POST", "/v3/{p}/groups/action",
            Some(json!({"create-from-src": {"source_group_id": "{g}"}})), 404),
        call(Member, "POST", "/v3/{p}/groups/action",
            Some(json!({"create-from-src": {"group_snapshot_id": "{nothing}"}})), 404),
        call(Member, "POST", "/v3/{p}/groups/action",
            Some(json!({"create-from-src": {"name": "x"}})), 400),
        call(Member, "POST", "/v3/{p}/groups/action",
            Some(json!({"create-from-src": {"source_group_id": "{g}", "group_snapshot_id": "{nothing}"}})), 400),
        call(Member, "POST", "/v3/{p}/groups/action",
            Some(json!({"create-from-src": {"source_group_id": "nope"}})), 400),
        call(Reader, "POST", "/v3/{p}/groups/action",
            Some(json!({"create-from-src": {"source_group_id": "{g}"}})), 403),
        call(Admin, "POST", "/v3/{p}/groups/{g}/action", Some(json!({"reset_status": {"status": "error"}})), 202),
        call(Member, "POST", "/v3/{p}/groups/action",
            Some(json!({"create-from-src": {"source_group_id": "{g}"}})), 400)
            .says("must be available"),
        call(Admin, "POST", "/v3/{p}/groups/{g}/action", Some(json!({"reset_status": {"status": "available"}})), 202),
        // Over quota: nothing is left behind (the group count stays 2).
        call(Admin, "PUT", "/v3/{p}/os-quota-sets/{a}", Some(json!({"quota_set": {"gigabytes": 7}})), 200).at("3.0"),
        call(Member, "POST", "/v3/{p}/groups/action",
            Some(json!({"create-from-src": {"source_group_id": "{g}"}})), 413)
            .says("gigabytes"),
        call(Member, "GET", "/v3/{p}/groups", None, 200)
            .lacks("/groups/2")
            .has("/groups/1/id", json!("{g}")),
        call(Admin, "PUT", "/v3/{p}/os-quota-sets/{a}", Some(json!({"quota_set": {"groups": 2, "gigabytes": 1000}})), 200).at("3.0"),
        call(Member, "POST", "/v3/{p}/groups/action",
            Some(json!({"create-from-src": {"source_group_id": "{g}"}})), 413)
            .says("groups"),
        // Both groups go with their volumes; the source cannot go while it
        // is being copied, but nothing copies it now.
        call(Member, "POST", "/v3/{p}/groups/{copy}/action", Some(json!({"delete": {"delete-volumes": true}})), 202),
        call(Member, "POST", "/v3/{p}/groups/{g}/action", Some(json!({"delete": {"delete-volumes": true}})), 202),
        Step::Group("copy", "gone"),
        Step::Group("g", "gone"),
        call(Member, "GET", "/v3/{p}/volumes", None, 200).is(json!({"volumes": []})),
        // A project that owns a group cannot be deleted (it would orphan it).
        call(Other, "POST", "/v3/{p}/groups",
            Some(json!({"group": {"group_type": "{gt}", "volume_types": ["{default}"]}})), 202)
            .save("gb", "/group/id"),
        call(Admin, "DELETE", "/identity/v3/projects/{b}", None, 409).says("group"),
        call(Other, "POST", "/v3/{p}/groups/{gb}/action", Some(json!({"delete": {}})), 202),
        Step::Group("gb", "gone"),
    ])
    .await;
    let mut from = [w.vars["c1_from"].clone(), w.vars["c2_from"].clone()];
    from.sort();
    let mut sources = [w.vars["v1"].clone(), w.vars["v2"].clone()];
    sources.sort();
    assert_eq!(from, sources);
}

/// The `groups` quota: usage is the number of groups, checked and changed in
/// one transaction, so concurrent creates never overshoot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_quota_is_exact_under_concurrent_creates() {
    let w = World::new().await;
    let (admin, admin_p) = w.token(Admin);
    let (member, a) = w.token(Member);
    let r =
        w.t.raw(
            "POST",
            &format!("/v3/{admin_p}/group_types"),
            Some(&admin),
            &[("OpenStack-API-Version", "volume 3.11")],
            Some(br#"{"group_type": {"name": "gt"}}"#.to_vec()),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let gt = r.body["group_type"]["id"].as_str().expect("id").to_owned();
    let r =
        w.t.call(
            "PUT",
            &format!("/v3/{admin_p}/os-quota-sets/{a}"),
            Some(&admin),
            Some(json!({"quota_set": {"groups": 7}})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let body =
        serde_json::to_vec(&json!({"group": {"group_type": gt, "volume_types": ["__DEFAULT__"]}}))
            .expect("json");
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let router = w.t.router.clone();
        let (member, a, body) = (member.clone(), a.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            use tower::ServiceExt;
            let req = axum::http::Request::builder()
                .method("POST")
                .uri(format!("/v3/{a}/groups"))
                .header("x-auth-token", member)
                .header("OpenStack-API-Version", "volume 3.13")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body))
                .expect("request");
            router
                .oneshot(req)
                .await
                .expect("infallible")
                .status()
                .as_u16()
        }));
    }
    let mut statuses = BTreeMap::new();
    for t in tasks {
        *statuses.entry(t.await.expect("task")).or_insert(0) += 1;
    }
    assert_eq!(
        statuses,
        BTreeMap::from([(202, 7), (413, 43)]),
        "{statuses:?}"
    );
    let r =
        w.t.call(
            "GET",
            &format!("/v3/{a}/os-quota-sets/{a}?usage=true"),
            Some(&member),
            None,
        )
        .await;
    assert_eq!(r.body["quota_set"]["groups"]["in_use"], 7, "{:?}", r.body);
    // Over quota: Cinder's 413 body names the resource.
    let r =
        w.t.raw(
            "POST",
            &format!("/v3/{a}/groups"),
            Some(&member),
            &[("OpenStack-API-Version", "volume 3.13")],
            Some(body),
        )
        .await;
    assert_eq!(r.status, 413);
    assert!(
        r.body["overLimit"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("groups")),
        "{:?}",
        r.body
    );
}
