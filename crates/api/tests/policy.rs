//! Every route, walked with every kind of caller: no token, an expired token, a
//! member of another project, a reader, a member and an admin of the project.
//! The expected status of each pair is written down; a route added to the
//! router without a row here fails `every_route_has_a_row`.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::TestApp;

/// Expected statuses for [no token, expired, other project's member, reader, member, admin].
type Expect = [u16; 6];

struct Row {
    method: &'static str,
    /// `{p}`: the caller's project (the target project for quota routes);
    /// `{v}`: a fresh available volume of project A; `{x}`: a fresh transfer
    /// of such a volume, offered by A's member (`{k}` in the body: its key);
    /// `{s}`: a fresh available snapshot of such a volume, taken by A's
    /// member, with the metadata `fixture=1`; `{sc}`: the same, reset to
    /// `creating` by the admin (as while Nova takes it).
    path: &'static str,
    body: Option<Value>,
    expect: Expect,
    /// Expected statuses for [reader, member, admin] when every fixture the
    /// row names (`{v}`, `{s}`, `{t}`, …, in the path or the body) is an id
    /// that exists nowhere: Cinder looks project resources up before it
    /// checks policy (404 whoever asks), and checks the admin-only
    /// resources' policy (types, QoS specs, group types) first. `None`
    /// for rows that name no fixture.
    missing: Option<[u16; 3]>,
}

fn rows() -> Vec<Row> {
    let r = |method, path, body: Option<Value>, expect, missing| Row {
        method,
        path,
        body,
        expect,
        missing,
    };
    let vol = || Some(json!({"volume": {"size": 1}}));
    vec![
        r(
            "GET",
            "/v3/{p}/volumes",
            None,
            [401, 401, 200, 200, 200, 200],
            None,
        ),
        r(
            "POST",
            "/v3/{p}/volumes",
            vol(),
            [401, 401, 202, 403, 202, 202],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/volumes/detail",
            None,
            [401, 401, 200, 200, 200, 200],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/volumes/summary",
            None,
            [401, 401, 200, 200, 200, 200],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/volumes/{v}",
            None,
            [401, 401, 404, 200, 200, 200],
            Some([404, 404, 404]),
        ),
        r(
            "PUT",
            "/v3/{p}/volumes/{v}",
            Some(json!({"volume": {"name": "n"}})),
            [401, 401, 404, 403, 200, 200],
            Some([404, 404, 404]),
        ),
        r(
            "DELETE",
            "/v3/{p}/volumes/{v}",
            None,
            [401, 401, 404, 403, 202, 202],
            Some([404, 404, 404]),
        ),
        r(
            "POST",
            "/v3/{p}/volumes/{v}/action",
            Some(json!({"os-extend": {"new_size": 2}})),
            [401, 401, 404, 403, 202, 202],
            Some([404, 404, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/volumes/{v}/metadata",
            None,
            [401, 401, 404, 200, 200, 200],
            Some([404, 404, 404]),
        ),
        r(
            "POST",
            "/v3/{p}/volumes/{v}/metadata",
            Some(json!({"metadata": {"a": "b"}})),
            [401, 401, 404, 403, 200, 200],
            Some([404, 404, 404]),
        ),
        r(
            "PUT",
            "/v3/{p}/volumes/{v}/metadata",
            Some(json!({"metadata": {"a": "b"}})),
            [401, 401, 404, 403, 200, 200],
            Some([404, 404, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/volumes/{v}/metadata/fixture",
            None,
            [401, 401, 404, 200, 200, 200],
            Some([404, 404, 404]),
        ),
        r(
            "PUT",
            "/v3/{p}/volumes/{v}/metadata/fixture",
            Some(json!({"meta": {"fixture": "x"}})),
            [401, 401, 404, 403, 200, 200],
            Some([404, 404, 404]),
        ),
        r(
            "DELETE",
            "/v3/{p}/volumes/{v}/metadata/fixture",
            None,
            [401, 401, 404, 403, 200, 200],
            Some([404, 404, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/os-quota-sets/{a}",
            None,
            [401, 401, 403, 200, 200, 200],
            None,
        ),
        r(
            "PUT",
            "/v3/{p}/os-quota-sets/{a}",
            Some(json!({"quota_set": {"volumes": 5000}})),
            [401, 401, 403, 403, 403, 200],
            None,
        ),
        r(
            "DELETE",
            "/v3/{p}/os-quota-sets/{a}",
            None,
            [401, 401, 403, 403, 403, 200],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/os-quota-sets/{a}/defaults",
            None,
            [401, 401, 403, 200, 200, 200],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/os-quota-class-sets/default",
            None,
            [401, 401, 403, 403, 403, 200],
            None,
        ),
        r(
            "PUT",
            "/v3/{p}/os-quota-class-sets/default",
            Some(json!({"quota_class_set": {"groups": 10}})),
            [401, 401, 403, 403, 403, 200],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/limits",
            None,
            [401, 401, 200, 200, 200, 200],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/extensions",
            None,
            [401, 401, 200, 200, 200, 200],
            None,
        ),
        // Per-project default types (3.62): admins only; `{a}` is the target.
        r(
            "GET",
            "/v3/{p}/default-types",
            None,
            [401, 401, 403, 403, 403, 200],
            None,
        ),
        r(
            "PUT",
            "/v3/{p}/default-types/{a}",
            Some(json!({"default_type": {"volume_type": "__DEFAULT__"}})),
            [401, 401, 403, 403, 403, 200],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/default-types/{a}",
            None,
            [401, 401, 403, 403, 403, 200],
            None,
        ),
        r(
            "DELETE",
            "/v3/{p}/default-types/{a}",
            None,
            [401, 401, 403, 403, 403, 204],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/resource_filters",
            None,
            [401, 401, 200, 200, 200, 200],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/os-availability-zone",
            None,
            [401, 401, 200, 200, 200, 200],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/types",
            None,
            [401, 401, 200, 200, 200, 200],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/types/default",
            None,
            [401, 401, 200, 200, 200, 200],
            None,
        ),
        // Volume types, extra specs, access, encryption, retype, QoS specs.
        // `{t}`: a fresh public type (specs volume_backend_name=file,
        // multiattach=<is> True); `{pt}`: a fresh private type; `{et}`: a
        // fresh type with an encryption spec; `{q}`: fresh QoS specs.
        r(
            "POST",
            "/v3/{p}/types",
            Some(json!({"volume_type": {"name": "policy-type"}})),
            [401, 401, 403, 403, 403, 200],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/types/{t}",
            None,
            [401, 401, 200, 200, 200, 200],
            Some([404, 404, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/types/{pt}",
            None,
            [401, 401, 404, 404, 404, 200],
            Some([404, 404, 404]),
        ),
        r(
            "PUT",
            "/v3/{p}/types/{t}",
            Some(json!({"volume_type": {"description": "d"}})),
            [401, 401, 403, 403, 403, 200],
            Some([403, 403, 404]),
        ),
        r(
            "DELETE",
            "/v3/{p}/types/{t}",
            None,
            [401, 401, 403, 403, 403, 202],
            Some([403, 403, 404]),
        ),
        r(
            "POST",
            "/v3/{p}/types/{pt}/action",
            Some(json!({"addProjectAccess": {"project": "{a}"}})),
            [401, 401, 403, 403, 403, 202],
            Some([403, 403, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/types/{pt}/os-volume-type-access",
            None,
            [401, 401, 403, 403, 403, 200],
            Some([403, 403, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/types/{t}/extra_specs",
            None,
            [401, 401, 200, 200, 200, 200],
            Some([404, 404, 404]),
        ),
        r(
            "POST",
            "/v3/{p}/types/{t}/extra_specs",
            Some(json!({"extra_specs": {"k": "v"}})),
            [401, 401, 403, 403, 403, 200],
            Some([403, 403, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/types/{t}/extra_specs/multiattach",
            None,
            [401, 401, 200, 200, 200, 200],
            Some([404, 404, 404]),
        ),
        // Keys that describe the deployment are admins' only.
        r(
            "GET",
            "/v3/{p}/types/{t}/extra_specs/volume_backend_name",
            None,
            [401, 401, 404, 404, 404, 200],
            Some([404, 404, 404]),
        ),
        r(
            "PUT",
            "/v3/{p}/types/{t}/extra_specs/multiattach",
            Some(json!({"multiattach": "<is> False"})),
            [401, 401, 403, 403, 403, 200],
            Some([403, 403, 404]),
        ),
        r(
            "DELETE",
            "/v3/{p}/types/{t}/extra_specs/multiattach",
            None,
            [401, 401, 403, 403, 403, 202],
            Some([403, 403, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/types/{et}/encryption",
            None,
            [401, 401, 403, 403, 403, 200],
            Some([403, 403, 404]),
        ),
        r(
            "POST",
            "/v3/{p}/types/{t}/encryption",
            Some(json!({"encryption": {"provider": "luks", "control_location": "front-end"}})),
            [401, 401, 403, 403, 403, 200],
            Some([403, 403, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/types/{et}/encryption/cipher",
            None,
            [401, 401, 403, 403, 403, 200],
            Some([403, 403, 404]),
        ),
        r(
            "PUT",
            "/v3/{p}/types/{et}/encryption/provider",
            Some(json!({"encryption": {"key_size": 128}})),
            [401, 401, 403, 403, 403, 200],
            Some([403, 403, 404]),
        ),
        r(
            "DELETE",
            "/v3/{p}/types/{et}/encryption/provider",
            None,
            [401, 401, 403, 403, 403, 202],
            Some([403, 403, 404]),
        ),
        r(
            "POST",
            "/v3/{p}/volumes/{v}/action",
            Some(json!({"os-retype": {"new_type": "{t}"}})),
            [401, 401, 404, 403, 202, 202],
            Some([404, 404, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/qos-specs",
            None,
            [401, 401, 403, 403, 403, 200],
            None,
        ),
        r(
            "POST",
            "/v3/{p}/qos-specs",
            Some(json!({"qos_specs": {"name": "policy-qos"}})),
            [401, 401, 403, 403, 403, 200],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/qos-specs/{q}",
            None,
            [401, 401, 403, 403, 403, 200],
            Some([403, 403, 404]),
        ),
        r(
            "PUT",
            "/v3/{p}/qos-specs/{q}",
            Some(json!({"qos_specs": {"k": "v"}})),
            [401, 401, 403, 403, 403, 200],
            Some([403, 403, 404]),
        ),
        r(
            "DELETE",
            "/v3/{p}/qos-specs/{q}",
            None,
            [401, 401, 403, 403, 403, 202],
            Some([403, 403, 404]),
        ),
        r(
            "PUT",
            "/v3/{p}/qos-specs/{q}/delete_keys",
            Some(json!({"keys": ["read_iops_sec"]})),
            [401, 401, 403, 403, 403, 202],
            Some([403, 403, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/qos-specs/{q}/associate?vol_type_id={t}",
            None,
            [401, 401, 403, 403, 403, 202],
            Some([403, 403, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/qos-specs/{q}/disassociate?vol_type_id={t}",
            None,
            [401, 401, 403, 403, 403, 202],
            Some([403, 403, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/qos-specs/{q}/disassociate_all",
            None,
            [401, 401, 403, 403, 403, 202],
            Some([403, 403, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/qos-specs/{q}/associations",
            None,
            [401, 401, 403, 403, 403, 200],
            Some([403, 403, 404]),
        ),
        // Volume transfers, under both names. Accepting needs the id and the
        // key, not membership of the offering project: that is the point.
        r(
            "POST",
            "/v3/{p}/os-volume-transfer",
            Some(json!({"transfer": {"volume_id": "{v}"}})),
            [401, 401, 404, 403, 202, 202],
            Some([404, 404, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/os-volume-transfer",
            None,
            [401, 401, 200, 200, 200, 200],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/os-volume-transfer/detail",
            None,
            [401, 401, 200, 200, 200, 200],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/os-volume-transfer/{x}",
            None,
            [401, 401, 404, 200, 200, 200],
            Some([404, 404, 404]),
        ),
        r(
            "DELETE",
            "/v3/{p}/os-volume-transfer/{x}",
            None,
            [401, 401, 404, 403, 202, 202],
            Some([404, 404, 404]),
        ),
        r(
            "POST",
            "/v3/{p}/os-volume-transfer/{x}/accept",
            Some(json!({"accept": {"auth_key": "{k}"}})),
            [401, 401, 202, 403, 202, 202],
            Some([403, 404, 404]),
        ),
        r(
            "POST",
            "/v3/{p}/volume-transfers",
            Some(json!({"transfer": {"volume_id": "{v}"}})),
            [401, 401, 404, 403, 202, 202],
            Some([404, 404, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/volume-transfers",
            None,
            [401, 401, 200, 200, 200, 200],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/volume-transfers/detail",
            None,
            [401, 401, 200, 200, 200, 200],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/volume-transfers/{x}",
            None,
            [401, 401, 404, 200, 200, 200],
            Some([404, 404, 404]),
        ),
        r(
            "DELETE",
            "/v3/{p}/volume-transfers/{x}",
            None,
            [401, 401, 404, 403, 202, 202],
            Some([404, 404, 404]),
        ),
        r(
            "POST",
            "/v3/{p}/volume-transfers/{x}/accept",
            Some(json!({"accept": {"auth_key": "{k}"}})),
            [401, 401, 202, 403, 202, 202],
            Some([403, 404, 404]),
        ),
        // Backups.
        r(
            "GET",
            "/v3/{p}/backups",
            None,
            [401, 401, 200, 200, 200, 200],
            None,
        ),
        r(
            "POST",
            "/v3/{p}/backups",
            Some(json!({"backup": {"volume_id": "{v}"}})),
            [401, 401, 404, 403, 202, 202],
            Some([404, 404, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/backups/detail",
            None,
            [401, 401, 200, 200, 200, 200],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/backups/{bk}",
            None,
            [401, 401, 404, 200, 200, 200],
            Some([404, 404, 404]),
        ),
        r(
            "DELETE",
            "/v3/{p}/backups/{bk}",
            None,
            [401, 401, 404, 403, 202, 202],
            Some([404, 404, 404]),
        ),
        r(
            "POST",
            "/v3/{p}/backups/{bk}/restore",
            Some(json!({"restore": {}})),
            [401, 401, 404, 403, 202, 202],
            Some([404, 404, 404]),
        ),
        // Update exists from 3.9: at the default version the route answers
        // 404 (Cinder's "not supported"), after authentication.
        r(
            "PUT",
            "/v3/{p}/backups/{bk}",
            Some(json!({"backup": {"name": "n"}})),
            [401, 401, 404, 404, 404, 404],
            Some([404, 404, 404]),
        ),
        r(
            "POST",
            "/v3/{p}/backups/{bk}/action",
            Some(json!({"os-reset_status": {"status": "error"}})),
            [401, 401, 404, 403, 403, 202],
            Some([404, 404, 404]),
        ),
        r(
            "POST",
            "/v3/{p}/backups/{bk}/action",
            Some(json!({"scoria-verify": {}})),
            [401, 401, 404, 403, 403, 200],
            Some([404, 404, 404]),
        ),
        r(
            "POST",
            "/v3/{p}/backups/{bk}/action",
            Some(json!({"os-force_delete": {}})),
            [401, 401, 404, 403, 403, 202],
            Some([404, 404, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/backups/{bk}/export_record",
            None,
            [401, 401, 404, 403, 403, 200],
            Some([404, 404, 404]),
        ),
        // No resource named: the policy answers; an admin's record that is
        // not Scoria's is a 400.
        r(
            "POST",
            "/v3/{p}/backups/import_record",
            Some(json!({"backup-record": {"backup_service": "other", "backup_url": "e30="}})),
            [401, 401, 403, 403, 403, 400],
            None,
        ),
        // Snapshots and their metadata.
        r(
            "GET",
            "/v3/{p}/snapshots",
            None,
            [401, 401, 200, 200, 200, 200],
            None,
        ),
        r(
            "POST",
            "/v3/{p}/snapshots",
            Some(json!({"snapshot": {"volume_id": "{v}"}})),
            [401, 401, 404, 403, 202, 202],
            Some([404, 404, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/snapshots/detail",
            None,
            [401, 401, 200, 200, 200, 200],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/snapshots/{s}",
            None,
            [401, 401, 404, 200, 200, 200],
            Some([404, 404, 404]),
        ),
        r(
            "PUT",
            "/v3/{p}/snapshots/{s}",
            Some(json!({"snapshot": {"name": "n"}})),
            [401, 401, 404, 403, 200, 200],
            Some([404, 404, 404]),
        ),
        r(
            "DELETE",
            "/v3/{p}/snapshots/{s}",
            None,
            [401, 401, 404, 403, 202, 202],
            Some([404, 404, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/snapshots/{s}/metadata",
            None,
            [401, 401, 404, 200, 200, 200],
            Some([404, 404, 404]),
        ),
        r(
            "POST",
            "/v3/{p}/snapshots/{s}/metadata",
            Some(json!({"metadata": {"a": "b"}})),
            [401, 401, 404, 403, 200, 200],
            Some([404, 404, 404]),
        ),
        r(
            "PUT",
            "/v3/{p}/snapshots/{s}/metadata",
            Some(json!({"metadata": {"a": "b"}})),
            [401, 401, 404, 403, 200, 200],
            Some([404, 404, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/snapshots/{s}/metadata/fixture",
            None,
            [401, 401, 404, 200, 200, 200],
            Some([404, 404, 404]),
        ),
        r(
            "PUT",
            "/v3/{p}/snapshots/{s}/metadata/fixture",
            Some(json!({"meta": {"fixture": "x"}})),
            [401, 401, 404, 403, 200, 200],
            Some([404, 404, 404]),
        ),
        r(
            "DELETE",
            "/v3/{p}/snapshots/{s}/metadata/fixture",
            None,
            [401, 401, 404, 403, 200, 200],
            Some([404, 404, 404]),
        ),
        // Nova's status update is a member's; the admin's actions are looked
        // up first (another project's snapshot is a 404), then refused by
        // policy.
        r(
            "POST",
            "/v3/{p}/snapshots/{sc}/action",
            Some(json!({"os-update_snapshot_status": {"status": "available", "progress": "90%"}})),
            [401, 401, 404, 403, 202, 202],
            Some([404, 404, 404]),
        ),
        r(
            "POST",
            "/v3/{p}/snapshots/{s}/action",
            Some(json!({"os-reset_status": {"status": "error"}})),
            [401, 401, 404, 403, 403, 202],
            Some([404, 404, 404]),
        ),
        r(
            "POST",
            "/v3/{p}/snapshots/{s}/action",
            Some(json!({"os-force_delete": {}})),
            [401, 401, 404, 403, 403, 202],
            Some([404, 404, 404]),
        ),
        r(
            "POST",
            "/v3/{p}/snapshots/{s}/action",
            Some(json!({"os-unmanage": null})),
            [401, 401, 404, 403, 403, 202],
            Some([404, 404, 404]),
        ),
        // A volume and its snapshots: revert (3.40), delete with them, and
        // the admin's tree of its images.
        r(
            "POST",
            "/v3/{p}/volumes/{v}/action",
            Some(json!({"revert": {"snapshot_id": "{s}"}})),
            [401, 401, 404, 403, 202, 202],
            Some([404, 404, 404]),
        ),
        r(
            "DELETE",
            "/v3/{p}/volumes/{v}?cascade=true",
            None,
            [401, 401, 404, 403, 202, 202],
            Some([404, 404, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/scoria-volumes/{v}/tree",
            None,
            [401, 401, 404, 403, 403, 200],
            Some([404, 404, 404]),
        ),
        // Admin-only actions: the volume is looked up first (another
        // project's is a 404, Cinder's order), then refused by policy.
        r(
            "POST",
            "/v3/{p}/volumes/{v}/action",
            Some(json!({"os-reset_status": {"status": "error"}})),
            [401, 401, 404, 403, 403, 202],
            Some([404, 404, 404]),
        ),
        // Migration (admins): an unknown host is refused once authorized;
        // completion answers the volume itself.
        r(
            "POST",
            "/v3/{p}/volumes/{v}/action",
            Some(json!({"os-migrate_volume": {"host": "scoria@nowhere"}})),
            [401, 401, 404, 403, 403, 400],
            Some([404, 404, 404]),
        ),
        r(
            "POST",
            "/v3/{p}/volumes/{v}/action",
            Some(json!({"os-migrate_volume_completion": {"new_volume": "{v}"}})),
            [401, 401, 404, 403, 403, 200],
            Some([404, 404, 404]),
        ),
        r(
            "POST",
            "/v3/{p}/volumes/{v}/action",
            Some(json!({"os-force_delete": {}})),
            [401, 401, 404, 403, 403, 202],
            Some([404, 404, 404]),
        ),
        // Attachments (3.44 here). `{at}`: a fresh attachment (reserved, no
        // connector) of a fresh volume `{v}`, made by A's member.
        r(
            "POST",
            "/v3/{p}/attachments",
            Some(json!({"attachment": {"volume_uuid": "{v}"}})),
            [401, 401, 404, 403, 200, 200],
            Some([404, 404, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/attachments",
            None,
            [401, 401, 200, 200, 200, 200],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/attachments/detail",
            None,
            [401, 401, 200, 200, 200, 200],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/attachments/{at}",
            None,
            [401, 401, 404, 200, 200, 200],
            Some([404, 404, 404]),
        ),
        r(
            "PUT",
            "/v3/{p}/attachments/{at}",
            Some(json!({"attachment": {"connector": {"host": "policy-host"}}})),
            [401, 401, 404, 403, 200, 200],
            Some([404, 404, 404]),
        ),
        r(
            "DELETE",
            "/v3/{p}/attachments/{at}",
            None,
            [401, 401, 404, 403, 200, 200],
            Some([404, 404, 404]),
        ),
        r(
            "POST",
            "/v3/{p}/attachments/{at}/action",
            Some(json!({"os-complete": null})),
            [401, 401, 404, 403, 400, 400],
            Some([404, 404, 404]),
        ),
        // Operator APIs: admin only.
        r(
            "GET",
            "/v3/{p}/os-services",
            None,
            [401, 401, 403, 403, 403, 200],
            None,
        ),
        r(
            "PUT",
            "/v3/{p}/os-services/enable",
            Some(json!({"host": "scoria", "binary": "cinder-scheduler"})),
            [401, 401, 403, 403, 403, 200],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/os-hosts",
            None,
            [401, 401, 403, 403, 403, 200],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/os-hosts/scoria@file",
            None,
            [401, 401, 403, 403, 403, 200],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/scheduler-stats/get_pools",
            None,
            [401, 401, 403, 403, 403, 200],
            None,
        ),
        // Manage (admins): the file named is not there, a 400 once
        // authorized; unmanage of the fresh volume hands its data back.
        r(
            "POST",
            "/v3/{p}/os-volume-manage",
            Some(json!({"volume": {"host": "scoria@file", "ref": {"source-name": "volume-none"}}})),
            [401, 401, 403, 403, 403, 400],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/manageable_volumes?host=scoria@file",
            None,
            [401, 401, 403, 403, 403, 200],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/manageable_volumes/detail?host=scoria@file",
            None,
            [401, 401, 403, 403, 403, 200],
            None,
        ),
        // Snapshot manage (admins): nothing of that name was unmanaged, a
        // 400 once authorized.
        r(
            "POST",
            "/v3/{p}/os-snapshot-manage",
            Some(
                json!({"snapshot": {"volume_id": "{v}", "ref": {"source-name": "snapshot-none"}}}),
            ),
            [401, 401, 403, 403, 403, 400],
            Some([403, 403, 404]),
        ),
        r(
            "POST",
            "/v3/{p}/manageable_snapshots",
            Some(
                json!({"snapshot": {"volume_id": "{v}", "ref": {"source-name": "snapshot-none"}}}),
            ),
            [401, 401, 403, 403, 403, 400],
            Some([403, 403, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/manageable_snapshots?host=scoria@file",
            None,
            [401, 401, 403, 403, 403, 200],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/manageable_snapshots/detail?host=scoria@file",
            None,
            [401, 401, 403, 403, 403, 200],
            None,
        ),
        r(
            "POST",
            "/v3/{p}/manageable_volumes",
            Some(json!({"volume": {"host": "scoria@file", "ref": {"source-name": "volume-none"}}})),
            [401, 401, 403, 403, 403, 400],
            None,
        ),
        r(
            "POST",
            "/v3/{p}/volumes/{v}/action",
            Some(json!({"os-unmanage": {}})),
            [401, 401, 404, 403, 403, 202],
            Some([404, 404, 404]),
        ),
        r(
            "POST",
            "/v3/{p}/scheduler-stats/placement",
            Some(json!({"volume": {"size": 1}})),
            [401, 401, 403, 403, 403, 200],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/volumes/{v}/placement",
            None,
            [401, 401, 403, 403, 403, 200],
            Some([403, 403, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/capabilities/scoria@file",
            None,
            [401, 401, 403, 403, 403, 200],
            None,
        ),
        // User messages (3.3): `{m}` is a fresh message of project A.
        r(
            "GET",
            "/v3/{p}/messages",
            None,
            [401, 401, 200, 200, 200, 200],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/messages/{m}",
            None,
            [401, 401, 404, 200, 200, 200],
            Some([404, 404, 404]),
        ),
        r(
            "DELETE",
            "/v3/{p}/messages/{m}",
            None,
            [401, 401, 404, 403, 204, 204],
            Some([404, 404, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/scoria-operations",
            None,
            [401, 401, 403, 403, 403, 200],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/scoria-operations?state=stuck",
            None,
            [401, 401, 403, 403, 403, 200],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/scoria-operations/{u}",
            None,
            [401, 401, 403, 403, 403, 404],
            None,
        ),
        // Backends as managed repositories (admins; system readers list):
        // an add with a relative path is refused after the policy, unknown
        // backends are 404s.
        r(
            "GET",
            "/v3/{p}/scoria-backends",
            None,
            [401, 401, 403, 403, 403, 200],
            None,
        ),
        r(
            "POST",
            "/v3/{p}/scoria-backends",
            Some(json!({"backend": {"name": "new", "path": "relative"}})),
            [401, 401, 403, 403, 403, 400],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/scoria-backends/{u}",
            None,
            [401, 401, 403, 403, 403, 404],
            None,
        ),
        r(
            "POST",
            "/v3/{p}/scoria-backends/{u}/action",
            Some(json!({"deactivate": {}})),
            [401, 401, 403, 403, 403, 404],
            None,
        ),
        r(
            "DELETE",
            "/v3/{p}/scoria-backends/{u}",
            None,
            [401, 401, 403, 403, 403, 404],
            None,
        ),
        // The repository check and fixes (admins): a check of the one file
        // backend, a fix run naming no fix of it; unknown runs are 404s.
        r(
            "POST",
            "/v3/{p}/scoria-repository/checks",
            Some(json!({"check": {"quick": true}})),
            [401, 401, 403, 403, 403, 202],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/scoria-repository/checks/{u}",
            None,
            [401, 401, 403, 403, 403, 404],
            None,
        ),
        r(
            "POST",
            "/v3/{p}/scoria-repository/fixes",
            Some(json!({"fix": {"ids": ["clean-000000000000"]}})),
            [401, 401, 403, 403, 403, 202],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/scoria-repository/fixes/{u}",
            None,
            [401, 401, 403, 403, 403, 404],
            None,
        ),
        // Group types (3.11) and groups (3.13; reset_status 3.20). `{gt}`: a
        // fresh public group type with the spec k=v; `{g}`: a fresh group of
        // project A (default volume type).
        r(
            "GET",
            "/v3/{p}/group_types",
            None,
            [401, 401, 200, 200, 200, 200],
            None,
        ),
        r(
            "POST",
            "/v3/{p}/group_types",
            Some(json!({"group_type": {"name": "policy-group-type"}})),
            [401, 401, 403, 403, 403, 202],
            None,
        ),
        r(
            "GET",
            "/v3/{p}/group_types/{gt}",
            None,
            [401, 401, 200, 200, 200, 200],
            Some([404, 404, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/group_types/default",
            None,
            [401, 401, 404, 404, 404, 404],
            None,
        ),
        r(
            "PUT",
            "/v3/{p}/group_types/{gt}",
            Some(json!({"group_type": {"description": "d"}})),
            [401, 401, 403, 403, 403, 200],
            Some([403, 403, 404]),
        ),
        r(
            "DELETE",
            "/v3/{p}/group_types/{gt}",
            None,
            [401, 401, 403, 403, 403, 202],
            Some([403, 403, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/group_types/{gt}/group_specs",
            None,
            [401, 401, 403, 403, 403, 200],
            Some([403, 403, 404]),
        ),
        r(
            "POST",
            "/v3/{p}/group_types/{gt}/group_specs",
            Some(json!({"group_specs": {"k2": "v"}})),
            [401, 401, 403, 403, 403, 202],
            Some([403, 403, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/group_types/{gt}/group_specs/k",
            None,
            [401, 401, 403, 403, 403, 200],
            Some([403, 403, 404]),
        ),
        r(
            "PUT",
            "/v3/{p}/group_types/{gt}/group_specs/k",
            Some(json!({"k": "w"})),
            [401, 401, 403, 403, 403, 200],
            Some([403, 403, 404]),
        ),
        r(
            "DELETE",
            "/v3/{p}/group_types/{gt}/group_specs/k",
            None,
            [401, 401, 403, 403, 403, 202],
            Some([403, 403, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/groups",
            None,
            [401, 401, 200, 200, 200, 200],
            None,
        ),
        r(
            "POST",
            "/v3/{p}/groups",
            Some(json!({"group": {"group_type": "{gt}", "volume_types": ["__DEFAULT__"]}})),
            [401, 401, 202, 403, 202, 202],
            Some([403, 404, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/groups/detail",
            None,
            [401, 401, 200, 200, 200, 200],
            None,
        ),
        r(
            "POST",
            "/v3/{p}/groups/action",
            Some(json!({"create-from-src": {"source_group_id": "{g}"}})),
            [401, 401, 404, 403, 400, 400],
            Some([403, 404, 404]),
        ),
        r(
            "GET",
            "/v3/{p}/groups/{g}",
            None,
            [401, 401, 404, 200, 200, 200],
            Some([404, 404, 404]),
        ),
        r(
            "PUT",
            "/v3/{p}/groups/{g}",
            Some(json!({"group": {"name": "n"}})),
            [401, 401, 404, 403, 202, 202],
            Some([404, 404, 404]),
        ),
        r(
            "POST",
            "/v3/{p}/groups/{g}/action",
            Some(json!({"delete": {"delete-volumes": true}})),
            [401, 401, 404, 403, 202, 202],
            Some([404, 404, 404]),
        ),
        r(
            "POST",
            "/v3/{p}/groups/{g}/action",
            Some(json!({"reset_status": {"status": "error"}})),
            [401, 401, 404, 403, 403, 202],
            Some([404, 404, 404]),
        ),
        // Public documents.
        r("GET", "/", None, [300, 300, 300, 300, 300, 300], None),
        r("GET", "/v3/", None, [200, 200, 200, 200, 200, 200], None),
    ]
}

/// Route templates as the router table names them.
fn template(path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    path.trim_start_matches("/v3/{p}")
        .replace("{v}", "{id}")
        .replace("{sc}", "{id}")
        .replace("{s}", "{id}")
        .replace("{bk}", "{id}")
        .replace("?cascade=true", "")
        .replace("{x}", "{id}")
        .replace("{at}", "{id}")
        .replace("{t}", "{id}")
        .replace("{pt}", "{id}")
        .replace("{et}", "{id}")
        .replace("{q}", "{id}")
        .replace("/extra_specs/multiattach", "/extra_specs/{key}")
        .replace("/extra_specs/volume_backend_name", "/extra_specs/{key}")
        .replace("/encryption/cipher", "/encryption/{key}")
        .replace("/encryption/provider", "/encryption/{key}")
        .replace("{a}", "{target}")
        .replace("/metadata/fixture", "/metadata/{key}")
        .replace(
            "os-quota-class-sets/default",
            "os-quota-class-sets/{target}",
        )
        .replace("/types/default", "/types/{id}")
        .replace("/os-services/enable", "/os-services/{action}")
        .replace("/os-hosts/scoria@file", "/os-hosts/{host}")
        .replace("/capabilities/scoria@file", "/capabilities/{host}")
        .replace("/messages/{m}", "/messages/{id}")
        .replace("?state=stuck", "")
        .replace("scoria-operations/{u}", "scoria-operations/{id}")
        .replace("checks/{u}", "checks/{id}")
        .replace("fixes/{u}", "fixes/{id}")
        .replace("scoria-backends/{u}", "scoria-backends/{name}")
        .replace("{gt}", "{id}")
        .replace("{g}", "{id}")
        .replace("/group_specs/k", "/group_specs/{key}")
        .replace("/group_types/default", "/group_types/{id}")
}

/// A fresh user message in project `a`: a volume created while the only
/// volume service is disabled fails to schedule.
async fn message(t: &TestApp, admin: &str, member: &str, a: &str) -> String {
    let service = |action: &'static str| async move {
        t.call(
            "PUT",
            &format!("/v3/{a}/os-services/{action}"),
            Some(admin),
            Some(json!({"host": "scoria@file", "binary": "cinder-volume"})),
        )
        .await
    };
    assert_eq!(service("disable").await.status, 200);
    let r = t
        .call(
            "POST",
            &format!("/v3/{a}/volumes"),
            Some(member),
            Some(json!({"volume": {"size": 1}})),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let v = r.body["volume"]["id"].as_str().expect("id").to_owned();
    t.wait_status(member, a, &v, "error").await;
    assert_eq!(service("enable").await.status, 200);
    let r = t
        .raw(
            "GET",
            &format!("/v3/{a}/messages?resource_uuid={v}"),
            Some(member),
            &[("OpenStack-API-Version", "volume 3.5")],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["messages"][0]["id"]
        .as_str()
        .expect("a message")
        .to_owned()
}

#[test]
fn every_route_has_a_row() {
    let covered: Vec<(String, String)> = rows()
        .iter()
        .map(|r| (r.method.to_lowercase(), template(r.path)))
        .collect();
    support::assert_every_route_covered("route", scoria_api::routes::BLOCK_STORAGE, &covered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_with_every_caller() {
    let t = TestApp::new().await;
    // An expired token (once the sleep below has passed).
    let expired = t.short_lived_admin_token().await;
    let support::Personas {
        a,
        b,
        admin: (admin, _),
        member: (a_member, _),
        reader: (a_reader, _),
        other: (b_member, _),
    } = t.personas().await;
    t.user(&admin, "a-admin", "pw-a-admin", &a, "admin").await;
    // A's admin makes the fixtures (the URL's project is the token's).
    let (a_admin, _) = t.login("a-admin", "pw-a-admin", "project-a").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let callers: [(Option<&str>, &str); 6] = [
        (None, &a),
        (Some(&expired), &a),
        (Some(&b_member), &b),
        (Some(&a_reader), &a),
        (Some(&a_member), &a),
        (Some(&a_admin), &a),
    ];
    let names = [
        "no token",
        "expired token",
        "other project's member",
        "reader",
        "member",
        "admin",
    ];
    let mut failures = Vec::new();
    for row in rows() {
        for (i, (token, project)) in callers.iter().enumerate() {
            let mut path = row
                .path
                .replace("{p}", project)
                .replace("{a}", &a)
                .replace("{u}", "3f1c2b9e-8d4a-4e6f-9b7c-1a2b3c4d5e6f");
            let mut body = row.body.as_ref().map(|b| b.to_string());
            // Fresh type and QoS fixtures, made by A's admin, for rows that
            // name them.
            for (placeholder, fixture) in [
                ("{t}", Fixture::PublicType),
                ("{pt}", Fixture::PrivateType),
                ("{et}", Fixture::EncryptedType),
                ("{q}", Fixture::Qos),
                ("{gt}", Fixture::GroupType),
            ] {
                let in_body = body.as_ref().is_some_and(|b| b.contains(placeholder));
                if path.contains(placeholder) || in_body {
                    let id = make(&t, &a_admin, &a, fixture).await;
                    path = path.replace(placeholder, &id);
                    body = body.map(|b| b.replace(placeholder, &id));
                }
            }
            body = body.map(|b| b.replace("{a}", &a));
            let needs_snapshot = path.contains("{s}")
                || path.contains("{sc}")
                || body.as_ref().is_some_and(|b| b.contains("{s}"));
            let needs_backup = path.contains("{bk}");
            let needs_volume = path.contains("{v}")
                || needs_backup
                || path.contains("{x}")
                || path.contains("{at}")
                || needs_snapshot
                || body.as_ref().is_some_and(|b| b.contains("{v}"));
            if needs_volume || path.contains("{m}") {
                // Quota rows may have lowered A's limits; the fixtures need room.
                let r = t
                    .call(
                        "PUT",
                        &format!("/v3/{a}/os-quota-sets/{a}"),
                        Some(&a_admin),
                        Some(
                            json!({"quota_set": {"volumes": -1, "gigabytes": -1, "snapshots": -1, "backups": -1, "backup_gigabytes": -1}}),
                        ),
                    )
                    .await;
                assert_eq!(r.status, 200, "{:?}", r.body);
            }
            let needs_group =
                path.contains("{g}") || body.as_ref().is_some_and(|b| b.contains("{g}"));
            if needs_group {
                let g = group(&t, &a_admin, &a_member, &a).await;
                path = path.replace("{g}", &g);
                body = body.map(|b| b.replace("{g}", &g));
            }
            if path.contains("{m}") {
                let m = message(&t, &a_admin, &a_member, &a).await;
                path = path.replace("{m}", &m);
            }
            if needs_volume {
                let v = t.volume(&a_member, &a).await;
                let r = t
                    .call(
                        "PUT",
                        &format!("/v3/{a}/volumes/{v}/metadata/fixture"),
                        Some(&a_member),
                        Some(json!({"meta": {"fixture": "1"}})),
                    )
                    .await;
                assert_eq!(r.status, 200, "{:?}", r.body);
                if needs_snapshot {
                    let s = snapshot(&t, &a_member, &a, &v).await;
                    if path.contains("{sc}") {
                        let r = t
                            .call(
                                "POST",
                                &format!("/v3/{a}/snapshots/{s}/action"),
                                Some(&a_admin),
                                Some(json!({"os-reset_status": {"status": "creating"}})),
                            )
                            .await;
                        assert_eq!(r.status, 202, "{:?}", r.body);
                        path = path.replace("{sc}", &s);
                    }
                    path = path.replace("{s}", &s);
                    body = body.map(|b| b.replace("{s}", &s));
                }
                if needs_backup {
                    let b = backup(&t, &a_member, &a, &v).await;
                    path = path.replace("{bk}", &b);
                }
                path = path.replace("{v}", &v);
                body = body.map(|b| b.replace("{v}", &v));
                if path.contains("{at}") {
                    let r = t
                        .raw(
                            "POST",
                            &format!("/v3/{a}/attachments"),
                            Some(&a_member),
                            &[("OpenStack-API-Version", "volume 3.44")],
                            Some(
                                json!({"attachment": {"volume_uuid": v}})
                                    .to_string()
                                    .into_bytes(),
                            ),
                        )
                        .await;
                    assert_eq!(r.status, 200, "{:?}", r.body);
                    let id = r.body["attachment"]["id"].as_str().expect("id");
                    path = path.replace("{at}", id);
                }
                if path.contains("{x}") {
                    let r = t
                        .call(
                            "POST",
                            &format!("/v3/{a}/os-volume-transfer"),
                            Some(&a_member),
                            Some(json!({"transfer": {"volume_id": v}})),
                        )
                        .await;
                    assert_eq!(r.status, 202, "{:?}", r.body);
                    let id = r.body["transfer"]["id"].as_str().expect("id");
                    let key = r.body["transfer"]["auth_key"].as_str().expect("key");
                    path = path.replace("{x}", id);
                    body = body.map(|b| b.replace("{k}", key));
                }
            }
            let headers = headers_for(&path, body.as_deref());
            let body = body.map(String::into_bytes);
            let r = t.raw(row.method, &path, *token, headers, body).await;
            if r.status != row.expect[i] {
                failures.push(format!(
                    "{} {} as {}: got {}, expected {} ({})",
                    row.method, row.path, names[i], r.status, row.expect[i], r.body
                ));
            }
            if r.status >= 400 && r.status != 401 && row.path.starts_with("/v3/{p}") {
                // Every refusal carries Cinder's fault body.
                let ok = r.body.as_object().is_some_and(|o| {
                    o.len() == 1
                        && o.values()
                            .all(|f| f["code"] == r.status && f["message"].is_string())
                });
                if !ok {
                    failures.push(format!(
                        "{} {} as {}: not a fault body: {}",
                        row.method, row.path, names[i], r.body
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Fixture placeholders a row may name, in its path or its body.
const FIXTURES: &[&str] = &[
    "{v}", "{bk}", "{sc}", "{s}", "{x}", "{t}", "{pt}", "{et}", "{q}", "{gt}", "{g}", "{m}", "{at}",
];

/// The headers a row's request is sent with (routes that exist from a
/// microversion on).
fn headers_for(path: &str, body: Option<&str>) -> &'static [(&'static str, &'static str)] {
    if path.contains("/default-types") {
        &[("OpenStack-API-Version", "volume 3.62")]
    } else if path.contains("/manageable_volumes") || path.contains("/manageable_snapshots") {
        &[("OpenStack-API-Version", "volume 3.8")]
    } else if path.ends_with("/resource_filters") {
        &[("OpenStack-API-Version", "volume 3.33")]
    } else if path.ends_with("/summary") {
        &[("OpenStack-API-Version", "volume 3.12")]
    } else if path.contains("/messages") {
        &[("OpenStack-API-Version", "volume 3.3")]
    } else if path.contains("/attachments") {
        &[("OpenStack-API-Version", "volume 3.44")]
    } else if path.contains("/group_types") || path.contains("/groups") {
        &[("OpenStack-API-Version", "volume 3.20")]
    } else if body.is_some_and(|b| b.contains("\"revert\"")) {
        &[("OpenStack-API-Version", "volume 3.40")]
    } else {
        &[]
    }
}

/// Cinder's precedence: every row again, (1) with each fixture an id that
/// exists nowhere, as A's reader, member and admin (`Row::missing`), and
/// (2) with a URL project that is not the caller's — B's member on A's URL,
/// the cloud admin on A's URL, A's admin on B's URL —, which is 400
/// "Malformed request url" before anything else, whatever the route (the
/// target of an admin's quota route is a later segment, and stays open).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_ids_and_foreign_url_projects() {
    let t = TestApp::new().await;
    let support::Personas {
        a,
        b,
        admin: (admin, _),
        member: (a_member, _),
        reader: (a_reader, _),
        other: (b_member, _),
    } = t.personas().await;
    t.user(&admin, "a-admin", "pw-a-admin", &a, "admin").await;
    let (a_admin, _) = t.login("a-admin", "pw-a-admin", "project-a").await;
    let cloud_project = {
        let r = t
            .call("GET", "/identity/v3/auth/projects", Some(&admin), None)
            .await;
        r.body["projects"][0]["id"].as_str().expect("id").to_owned()
    };
    let nowhere = "5d7e2a51-0c7b-4b8e-9f3a-6c1d2e3f4a5b";
    let mut failures = Vec::new();
    let mut walked = 0;
    for row in rows() {
        let names_fixture = |s: &str| FIXTURES.iter().any(|f| s.contains(f));
        let in_body = row
            .body
            .as_ref()
            .is_some_and(|b| names_fixture(&b.to_string()));
        assert_eq!(
            row.missing.is_some(),
            names_fixture(row.path) || in_body,
            "{} {}: `missing` is given exactly for rows that name a fixture",
            row.method,
            row.path
        );
        let fill = |s: &str, project: &str| {
            let mut s = s
                .replace("{p}", project)
                .replace("{a}", &a)
                .replace("{u}", nowhere)
                .replace("{k}", "0123456789abcdef");
            for f in FIXTURES {
                s = s.replace(f, nowhere);
            }
            s
        };
        let body_for = |project: &str| {
            row.body
                .as_ref()
                .map(|b| fill(&b.to_string(), project).into_bytes())
        };
        let headers = headers_for(
            row.path,
            row.body.as_ref().map(|b| b.to_string()).as_deref(),
        );
        if let Some(missing) = row.missing {
            walked += 1;
            for (i, token) in [&a_reader, &a_member, &a_admin].iter().enumerate() {
                let path = fill(row.path, &a);
                let r = t
                    .raw(row.method, &path, Some(token), headers, body_for(&a))
                    .await;
                if r.status != missing[i] {
                    failures.push(format!(
                        "{} {} (missing ids) as {}: got {}, expected {} ({})",
                        row.method,
                        row.path,
                        ["reader", "member", "admin"][i],
                        r.status,
                        missing[i],
                        r.body
                    ));
                }
            }
        }
        if !row.path.starts_with("/v3/{p}") {
            continue;
        }
        for (who, token, url_project) in [
            ("B's member on A's URL", &b_member, &a),
            ("the cloud admin on A's URL", &admin, &a),
            ("A's admin on B's URL", &a_admin, &b),
        ] {
            let path = fill(row.path, url_project);
            let r = t
                .raw(
                    row.method,
                    &path,
                    Some(token),
                    headers,
                    body_for(url_project),
                )
                .await;
            if (r.status, &r.body)
                != (
                    400,
                    &json!({"badRequest": {"code": 400, "message": "Malformed request url"}}),
                )
            {
                failures.push(format!(
                    "{} {} as {who}: got {} {}",
                    row.method, row.path, r.status, r.body
                ));
            }
        }
    }
    // The project an admin's quota route acts on is its target, not the URL's.
    let r = t
        .call(
            "GET",
            &format!("/v3/{cloud_project}/os-quota-sets/{a}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(walked > 60, "only {walked} rows name a fixture");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A fresh available snapshot of volume `v` of project `a`, taken by its
/// member, with the metadata `fixture=1`.
async fn snapshot(t: &TestApp, member: &str, a: &str, v: &str) -> String {
    let r = t
        .call(
            "POST",
            &format!("/v3/{a}/snapshots"),
            Some(member),
            Some(json!({"snapshot": {"volume_id": v, "metadata": {"fixture": "1"}}})),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let id = r.body["snapshot"]["id"].as_str().expect("id").to_owned();
    for _ in 0..2000 {
        let r = t
            .call(
                "GET",
                &format!("/v3/{a}/snapshots/{id}"),
                Some(member),
                None,
            )
            .await;
        if r.body["snapshot"]["status"] == "available" {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("snapshot {id} never became available");
}

/// A fresh available full backup of the volume `v`, made by A's member.
async fn backup(t: &TestApp, member: &str, a: &str, v: &str) -> String {
    let r = t
        .call(
            "POST",
            &format!("/v3/{a}/backups"),
            Some(member),
            Some(json!({"backup": {"volume_id": v}})),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let id = r.body["backup"]["id"].as_str().expect("id").to_owned();
    for _ in 0..2000 {
        let r = t
            .call("GET", &format!("/v3/{a}/backups/{id}"), Some(member), None)
            .await;
        if r.body["backup"]["status"] == "available" {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("backup {id} never became available");
}

#[derive(Clone, Copy)]
enum Fixture {
    PublicType,
    PrivateType,
    EncryptedType,
    Qos,
    GroupType,
}

/// A fresh group of project `a`, made by its member, of a fresh group type;
/// project A's `groups` quota is lifted first (rows make many).
async fn group(t: &TestApp, admin: &str, member: &str, a: &str) -> String {
    let r = t
        .call(
            "PUT",
            &format!("/v3/{a}/os-quota-sets/{a}"),
            Some(admin),
            Some(json!({"quota_set": {"groups": -1}})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let gt = make(t, admin, a, Fixture::GroupType).await;
    let body = json!({"group": {"group_type": gt, "volume_types": ["__DEFAULT__"]}});
    let r = t
        .raw(
            "POST",
            &format!("/v3/{a}/groups"),
            Some(member),
            &[("OpenStack-API-Version", "volume 3.13")],
            Some(body.to_string().into_bytes()),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    r.body["group"]["id"].as_str().expect("id").to_owned()
}

/// Make a fresh fixture (as the admin); returns its id.
async fn make(t: &TestApp, admin: &str, project: &str, f: Fixture) -> String {
    let n = uuid::Uuid::new_v4().simple().to_string();
    let (path, body) = match f {
        Fixture::PublicType => (
            "types",
            json!({"volume_type": {"name": format!("t-{n}"),
                "extra_specs": {"volume_backend_name": "file", "multiattach": "<is> True"}}}),
        ),
        Fixture::PrivateType => (
            "types",
            json!({"volume_type": {"name": format!("t-{n}"), "os-volume-type-access:is_public": false}}),
        ),
        Fixture::EncryptedType => ("types", json!({"volume_type": {"name": format!("t-{n}")}})),
        Fixture::Qos => (
            "qos-specs",
            json!({"qos_specs": {"name": format!("q-{n}"), "read_iops_sec": "100"}}),
        ),
        Fixture::GroupType => {
            let r = t
                .raw(
                    "POST",
                    &format!("/v3/{project}/group_types"),
                    Some(admin),
                    &[("OpenStack-API-Version", "volume 3.11")],
                    Some(
                        json!({"group_type": {"name": format!("gt-{n}"), "group_specs": {"k": "v"}}})
                            .to_string()
                            .into_bytes(),
                    ),
                )
                .await;
            assert_eq!(r.status, 202, "{:?}", r.body);
            return r.body["group_type"]["id"].as_str().expect("id").to_owned();
        }
    };
    let r = t
        .call(
            "POST",
            &format!("/v3/{project}/{path}"),
            Some(admin),
            Some(body),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let key = if path == "types" {
        "volume_type"
    } else {
        "qos_specs"
    };
    let id = r.body[key]["id"].as_str().expect("id").to_owned();
    if let Fixture::EncryptedType = f {
        let r = t
            .call(
                "POST",
                &format!("/v3/{project}/types/{id}/encryption"),
                Some(admin),
                Some(
                    json!({"encryption": {"provider": "luks", "cipher": "aes-xts-plain64",
                    "key_size": 256, "control_location": "front-end"}}),
                ),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    id
}
