//! Malformed and hostile requests: each gets a 4xx with Cinder's fault body,
//! none gets a 5xx, and none changes anything.

mod support;

#[path = "bad_input/gaps.rs"]
mod gaps;

use serde_json::{Value, json};
use support::TestApp;

struct Case {
    what: &'static str,
    method: &'static str,
    /// `{p}` project, `{v}` the fixture volume, `{u}` a random UUID, `{w}` a
    /// volume offered for transfer as `{t}`, `{s}` a snapshot of the volume
    /// `{sv}`.
    path: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: Option<Vec<u8>>,
    status: u16,
}

fn j(v: Value) -> Option<Vec<u8>> {
    Some(serde_json::to_vec(&v).expect("json"))
}

fn vol(fields: Value) -> Option<Vec<u8>> {
    j(json!({ "volume": fields }))
}

fn cases() -> Vec<Case> {
    let long = "x".repeat(256);
    let c = |what, method, path, body: Option<Vec<u8>>, status| Case {
        what,
        method,
        path,
        headers: vec![],
        body,
        status,
    };
    let mut v = vec![
        // Create: body shape.
        c(
            "not JSON",
            "POST",
            "/v3/{p}/volumes",
            Some(b"size=1".to_vec()),
            400,
        ),
        c(
            "truncated JSON",
            "POST",
            "/v3/{p}/volumes",
            Some(b"{\"volume\": {\"size\": 1".to_vec()),
            400,
        ),
        c(
            "empty body",
            "POST",
            "/v3/{p}/volumes",
            Some(Vec::new()),
            400,
        ),
        c(
            "JSON array",
            "POST",
            "/v3/{p}/volumes",
            j(json!([1, 2])),
            400,
        ),
        c(
            "no volume key",
            "POST",
            "/v3/{p}/volumes",
            j(json!({"size": 1})),
            400,
        ),
        c(
            "volume not an object",
            "POST",
            "/v3/{p}/volumes",
            j(json!({"volume": "big"})),
            400,
        ),
        c(
            "no size",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"name": "x"})),
            400,
        ),
        // Create: sizes.
        c(
            "size zero",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"size": 0})),
            400,
        ),
        c(
            "size negative",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"size": -5})),
            400,
        ),
        c(
            "size fractional",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"size": 1.5})),
            400,
        ),
        c(
            "size text",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"size": "one"})),
            400,
        ),
        c(
            "size boolean",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"size": true})),
            400,
        ),
        c(
            "size absurd",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"size": 1_000_000_000_000_i64})),
            400,
        ),
        c(
            "size beyond i64",
            "POST",
            "/v3/{p}/volumes",
            Some(b"{\"volume\": {\"size\": 99999999999999999999999}}".to_vec()),
            400,
        ),
        // Create: text and metadata limits, wrong types.
        c(
            "name too long",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"size": 1, "name": long.clone()})),
            400,
        ),
        c(
            "description too long",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"size": 1, "description": long.clone()})),
            400,
        ),
        c(
            "name not a string",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"size": 1, "name": 7})),
            400,
        ),
        c(
            "metadata not an object",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"size": 1, "metadata": ["a"]})),
            400,
        ),
        c(
            "metadata value not a string",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"size": 1, "metadata": {"a": 1}})),
            400,
        ),
        c(
            "metadata key too long",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"size": 1, "metadata": {long.clone(): "v"}})),
            400,
        ),
        c(
            "metadata value too long",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"size": 1, "metadata": {"k": long.clone()}})),
            400,
        ),
        c(
            "metadata key empty",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"size": 1, "metadata": {"": "v"}})),
            400,
        ),
        c(
            "unknown volume type",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"size": 1, "volume_type": "gold"})),
            404,
        ),
        c(
            "unknown volume type id",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"size": 1, "volume_type": "{u}"})),
            404,
        ),
        c(
            "unknown zone",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"size": 1, "availability_zone": "mars"})),
            400,
        ),
        c(
            "multiattach not boolean",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"size": 1, "multiattach": "perhaps"})),
            400,
        ),
        c(
            "from an unknown snapshot",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"size": 1, "snapshot_id": "{u}"})),
            404,
        ),
        c(
            "from an unknown volume",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"size": 1, "source_volid": "{u}"})),
            404,
        ),
        // Clones.
        c(
            "from a volume id that is not a UUID",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"size": 1, "source_volid": "volume-1"})),
            400,
        ),
        c(
            "from a volume id that is not a string",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"source_volid": 7})),
            400,
        ),
        c(
            "from a volume, size zero",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"size": 0, "source_volid": "{v}"})),
            400,
        ),
        c(
            "from a volume, size negative",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"size": -1, "source_volid": "{v}"})),
            400,
        ),
        c(
            "from a volume, into an unknown zone",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"source_volid": "{v}", "availability_zone": "mars"})),
            400,
        ),
        c(
            "from a volume, of an unknown type",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"source_volid": "{v}", "volume_type": "gold"})),
            404,
        ),
        c(
            "from a volume awaiting a transfer",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"source_volid": "{w}"})),
            400,
        ),
        c(
            "from a volume and an image",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"source_volid": "{v}", "imageRef": "{u}"})),
            400,
        ),
        // An image id that names no image: Cinder's ImageNotFound (404).
        c(
            "from an image that does not exist",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"size": 1, "imageRef": "{u}"})),
            404,
        ),
        // Ids.
        c(
            "volume id not a UUID",
            "GET",
            "/v3/{p}/volumes/not-a-uuid",
            None,
            404,
        ),
        c(
            "volume id None",
            "POST",
            "/v3/{p}/volumes/None/action",
            j(json!({"os-extend": {"new_size": 2}})),
            404,
        ),
        c("unknown volume", "GET", "/v3/{p}/volumes/{u}", None, 404),
        c(
            "unknown volume delete",
            "DELETE",
            "/v3/{p}/volumes/{u}",
            None,
            404,
        ),
        c(
            "unknown volume metadata",
            "GET",
            "/v3/{p}/volumes/{u}/metadata",
            None,
            404,
        ),
        c(
            "unknown metadata key",
            "GET",
            "/v3/{p}/volumes/{v}/metadata/nope",
            None,
            404,
        ),
        c(
            "delete unknown metadata key",
            "DELETE",
            "/v3/{p}/volumes/{v}/metadata/nope",
            None,
            404,
        ),
        // Lists.
        c(
            "negative limit",
            "GET",
            "/v3/{p}/volumes?limit=-1",
            None,
            400,
        ),
        c(
            "limit not a number",
            "GET",
            "/v3/{p}/volumes/detail?limit=ten",
            None,
            400,
        ),
        c(
            "marker not a UUID",
            "GET",
            "/v3/{p}/volumes?marker=zzz",
            None,
            400,
        ),
        c(
            "marker unknown",
            "GET",
            "/v3/{p}/volumes?marker={u}",
            None,
            400,
        ),
        c(
            "bad sort key",
            "GET",
            "/v3/{p}/volumes?sort_key=password",
            None,
            400,
        ),
        c(
            "bad sort direction",
            "GET",
            "/v3/{p}/volumes?sort_dir=sideways",
            None,
            400,
        ),
        c(
            "bad sort spec",
            "GET",
            "/v3/{p}/volumes?sort=name:up",
            None,
            400,
        ),
        c(
            "bad bootable filter",
            "GET",
            "/v3/{p}/volumes?bootable=perhaps",
            None,
            400,
        ),
        c(
            "bad metadata filter",
            "GET",
            "/v3/{p}/volumes?metadata=notjson",
            None,
            400,
        ),
        // Update.
        c(
            "update unknown field",
            "PUT",
            "/v3/{p}/volumes/{v}",
            vol(json!({"size": 5})),
            400,
        ),
        c(
            "update name too long",
            "PUT",
            "/v3/{p}/volumes/{v}",
            vol(json!({"name": long.clone()})),
            400,
        ),
        c(
            "update not JSON",
            "PUT",
            "/v3/{p}/volumes/{v}",
            Some(b"<volume/>".to_vec()),
            400,
        ),
        // Actions.
        c(
            "empty action",
            "POST",
            "/v3/{p}/volumes/{v}/action",
            j(json!({})),
            400,
        ),
        c(
            "two actions",
            "POST",
            "/v3/{p}/volumes/{v}/action",
            j(json!({"os-extend": {"new_size": 2}, "os-set_bootable": {"bootable": true}})),
            400,
        ),
        c(
            "unknown action",
            "POST",
            "/v3/{p}/volumes/{v}/action",
            j(json!({"os-explode": {}})),
            400,
        ),
        c(
            "extend without size",
            "POST",
            "/v3/{p}/volumes/{v}/action",
            j(json!({"os-extend": {}})),
            400,
        ),
        c(
            "extend size text",
            "POST",
            "/v3/{p}/volumes/{v}/action",
            j(json!({"os-extend": {"new_size": "big"}})),
            400,
        ),
        c(
            "extend not larger",
            "POST",
            "/v3/{p}/volumes/{v}/action",
            j(json!({"os-extend": {"new_size": 1}})),
            400,
        ),
        c(
            "extend absurd",
            "POST",
            "/v3/{p}/volumes/{v}/action",
            j(json!({"os-extend": {"new_size": 1_000_000_000_i64}})),
            400,
        ),
        c(
            "bootable not boolean",
            "POST",
            "/v3/{p}/volumes/{v}/action",
            j(json!({"os-set_bootable": {"bootable": "maybe"}})),
            400,
        ),
        c(
            "readonly missing",
            "POST",
            "/v3/{p}/volumes/{v}/action",
            j(json!({"os-update_readonly_flag": {}})),
            400,
        ),
        c(
            "action args not an object",
            "POST",
            "/v3/{p}/volumes/{v}/action",
            j(json!({"os-extend": 3})),
            400,
        ),
        // Metadata.
        c(
            "metadata body missing key",
            "POST",
            "/v3/{p}/volumes/{v}/metadata",
            j(json!({"meta": {"a": "b"}})),
            400,
        ),
        c(
            "metadata item key mismatch",
            "PUT",
            "/v3/{p}/volumes/{v}/metadata/a",
            j(json!({"meta": {"b": "c"}})),
            400,
        ),
        c(
            "metadata item too many",
            "PUT",
            "/v3/{p}/volumes/{v}/metadata/a",
            j(json!({"meta": {"a": "1", "b": "2"}})),
            400,
        ),
        c(
            "metadata replace not strings",
            "PUT",
            "/v3/{p}/volumes/{v}/metadata",
            j(json!({"metadata": {"a": [1]}})),
            400,
        ),
        // Routing and versions.
        c("unknown route", "GET", "/v3/{p}/volcanoes", None, 404),
        c(
            "wrong method",
            "PATCH",
            "/v3/{p}/volumes/{v}",
            vol(json!({"name": "x"})),
            404,
        ),
        c("collection delete", "DELETE", "/v3/{p}/volumes", None, 404),
        c(
            "collection update",
            "PUT",
            "/v3/{p}/volumes",
            vol(json!({})),
            404,
        ),
        c("empty id", "GET", "/v3/{p}/volumes/", None, 404),
    ];
    let big = {
        let mut b = b"{\"volume\": {\"size\": 1, \"description\": \"".to_vec();
        b.extend(std::iter::repeat_n(b'x', 200 * 1024));
        b.extend(b"\"}}");
        b
    };
    v.push(c(
        "oversized body",
        "POST",
        "/v3/{p}/volumes",
        Some(big),
        413,
    ));
    v.push(Case {
        what: "microversion too high",
        method: "GET",
        path: "/v3/{p}/volumes",
        headers: vec![("OpenStack-API-Version", "volume 3.999")],
        body: None,
        status: 406,
    });
    v.push(Case {
        what: "microversion garbage",
        method: "GET",
        path: "/v3/{p}/volumes",
        headers: vec![("OpenStack-API-Version", "volume three")],
        body: None,
        status: 400,
    });
    v
}

/// Transfers: malformed offers and accepts, and what a volume awaiting a
/// transfer refuses.
fn transfer_cases() -> Vec<Case> {
    let c = |what, method, path, body: Option<Vec<u8>>, status| Case {
        what,
        method,
        path,
        headers: vec![],
        body,
        status,
    };
    let offer = |fields: Value| j(json!({ "transfer": fields }));
    let accept = |fields: Value| j(json!({ "accept": fields }));
    let mut v = vec![
        c(
            "offer: not JSON",
            "POST",
            "/v3/{p}/os-volume-transfer",
            Some(b"volume_id={v}".to_vec()),
            400,
        ),
        c(
            "offer: no transfer key",
            "POST",
            "/v3/{p}/os-volume-transfer",
            j(json!({"volume_id": "{v}"})),
            400,
        ),
        c(
            "offer: transfer not an object",
            "POST",
            "/v3/{p}/os-volume-transfer",
            j(json!({"transfer": "{v}"})),
            400,
        ),
        c(
            "offer: another top-level key",
            "POST",
            "/v3/{p}/os-volume-transfer",
            j(json!({"transfer": {"volume_id": "{v}"}, "extra": 1})),
            400,
        ),
        c(
            "offer: no volume_id",
            "POST",
            "/v3/{p}/os-volume-transfer",
            offer(json!({"name": "t"})),
            400,
        ),
        c(
            "offer: volume_id a number",
            "POST",
            "/v3/{p}/os-volume-transfer",
            offer(json!({"volume_id": 7})),
            400,
        ),
        c(
            "offer: volume_id not a uuid",
            "POST",
            "/v3/{p}/os-volume-transfer",
            offer(json!({"volume_id": "not-a-volume"})),
            400,
        ),
        c(
            "offer: unknown volume",
            "POST",
            "/v3/{p}/os-volume-transfer",
            offer(json!({"volume_id": "{u}"})),
            404,
        ),
        c(
            "offer: name too long",
            "POST",
            "/v3/{p}/os-volume-transfer",
            offer(json!({"volume_id": "{v}", "name": "x".repeat(256)})),
            400,
        ),
        c(
            "offer: name blank",
            "POST",
            "/v3/{p}/os-volume-transfer",
            offer(json!({"volume_id": "{v}", "name": "   "})),
            400,
        ),
        c(
            "offer: name a number",
            "POST",
            "/v3/{p}/os-volume-transfer",
            offer(json!({"volume_id": "{v}", "name": 5})),
            400,
        ),
        c(
            "offer: unknown property",
            "POST",
            "/v3/{p}/os-volume-transfer",
            offer(json!({"volume_id": "{v}", "auth_key": "mine"})),
            400,
        ),
        c(
            "offer: no_snapshots before 3.55",
            "POST",
            "/v3/{p}/os-volume-transfer",
            offer(json!({"volume_id": "{v}", "no_snapshots": true})),
            400,
        ),
        c(
            "offer: volume already offered",
            "POST",
            "/v3/{p}/os-volume-transfer",
            offer(json!({"volume_id": "{w}"})),
            400,
        ),
        c(
            "accept: wrong key",
            "POST",
            "/v3/{p}/os-volume-transfer/{x}/accept",
            accept(json!({"auth_key": "0123456789abcdef"})),
            400,
        ),
        c(
            "accept: numeric wrong key",
            "POST",
            "/v3/{p}/os-volume-transfer/{x}/accept",
            accept(json!({"auth_key": 1234})),
            400,
        ),
        c(
            "accept: no accept key",
            "POST",
            "/v3/{p}/os-volume-transfer/{x}/accept",
            j(json!({"auth_key": "x"})),
            400,
        ),
        c(
            "accept: accept not an object",
            "POST",
            "/v3/{p}/os-volume-transfer/{x}/accept",
            j(json!({"accept": "x"})),
            400,
        ),
        c(
            "accept: no auth_key",
            "POST",
            "/v3/{p}/os-volume-transfer/{x}/accept",
            accept(json!({})),
            400,
        ),
        c(
            "accept: auth_key a boolean",
            "POST",
            "/v3/{p}/os-volume-transfer/{x}/accept",
            accept(json!({"auth_key": true})),
            400,
        ),
        c(
            "accept: unknown property",
            "POST",
            "/v3/{p}/os-volume-transfer/{x}/accept",
            accept(json!({"auth_key": "x", "project_id": "{p}"})),
            400,
        ),
        c(
            "accept: empty body",
            "POST",
            "/v3/{p}/os-volume-transfer/{x}/accept",
            Some(Vec::new()),
            400,
        ),
        c(
            "accept: unknown transfer",
            "POST",
            "/v3/{p}/os-volume-transfer/{u}/accept",
            accept(json!({"auth_key": "x"})),
            404,
        ),
        c(
            "accept: malformed transfer id",
            "POST",
            "/v3/{p}/volume-transfers/nope/accept",
            accept(json!({"auth_key": "x"})),
            404,
        ),
        c(
            "show unknown transfer",
            "GET",
            "/v3/{p}/os-volume-transfer/{u}",
            None,
            404,
        ),
        c(
            "show malformed transfer id",
            "GET",
            "/v3/{p}/volume-transfers/None",
            None,
            404,
        ),
        c(
            "delete unknown transfer",
            "DELETE",
            "/v3/{p}/os-volume-transfer/{u}",
            None,
            404,
        ),
        c(
            "list with a bad limit",
            "GET",
            "/v3/{p}/os-volume-transfer?limit=-1",
            None,
            400,
        ),
        c(
            "list with a malformed marker",
            "GET",
            "/v3/{p}/os-volume-transfer/detail?marker=zzz",
            None,
            400,
        ),
        c(
            "list with an unknown marker",
            "GET",
            "/v3/{p}/os-volume-transfer?marker={u}",
            None,
            400,
        ),
        c(
            "delete a volume awaiting transfer",
            "DELETE",
            "/v3/{p}/volumes/{w}",
            None,
            400,
        ),
        c(
            "extend a volume awaiting transfer",
            "POST",
            "/v3/{p}/volumes/{w}/action",
            j(json!({"os-extend": {"new_size": 2}})),
            400,
        ),
        c(
            "reserve a volume awaiting transfer",
            "POST",
            "/v3/{p}/volumes/{w}/action",
            j(json!({"os-reserve": {}})),
            400,
        ),
        c(
            "reset a volume to awaiting-transfer without an offer",
            "POST",
            "/v3/{p}/volumes/{v}/action",
            j(json!({"os-reset_status": {"status": "awaiting-transfer"}})),
            400,
        ),
    ];
    v.push(Case {
        what: "offer: no_snapshots not a boolean",
        method: "POST",
        path: "/v3/{p}/volume-transfers",
        headers: vec![("OpenStack-API-Version", "volume 3.55")],
        body: offer(json!({"volume_id": "{v}", "no_snapshots": "maybe"})),
        status: 400,
    });
    v
}

fn admin_cases() -> Vec<Case> {
    let c = |what, method, path, body: Option<Vec<u8>>, status| Case {
        what,
        method,
        path,
        headers: vec![],
        body,
        status,
    };
    vec![
        c(
            "quota not a number",
            "PUT",
            "/v3/{p}/os-quota-sets/{p}",
            j(json!({"quota_set": {"volumes": "many"}})),
            400,
        ),
        c(
            "quota unknown resource",
            "PUT",
            "/v3/{p}/os-quota-sets/{p}",
            j(json!({"quota_set": {"volcanoes": 1}})),
            400,
        ),
        c(
            "quota below -1",
            "PUT",
            "/v3/{p}/os-quota-sets/{p}",
            j(json!({"quota_set": {"volumes": -2}})),
            400,
        ),
        c(
            "quota below usage",
            "PUT",
            "/v3/{p}/os-quota-sets/{p}",
            j(json!({"quota_set": {"volumes": 0}})),
            400,
        ),
        c(
            "quota body not an object",
            "PUT",
            "/v3/{p}/os-quota-sets/{p}",
            j(json!({"quota_set": 5})),
            400,
        ),
        c(
            "quota class bad value",
            "PUT",
            "/v3/{p}/os-quota-class-sets/default",
            j(json!({"quota_class_set": {"volumes": 1.5}})),
            400,
        ),
        // Per-volume-type quota keys: the fixture volume is of `__DEFAULT__`.
        c(
            "quota key of no type",
            "PUT",
            "/v3/{p}/os-quota-sets/{p}",
            j(json!({"quota_set": {"volumes_nope": 1}})),
            400,
        ),
        c(
            "quota key of no type spoils the whole set",
            "PUT",
            "/v3/{p}/os-quota-sets/{p}",
            j(json!({"quota_set": {"volumes": 20, "gigabytes_nope": 1}})),
            400,
        ),
        c(
            "quota key with an empty type",
            "PUT",
            "/v3/{p}/os-quota-sets/{p}",
            j(json!({"quota_set": {"volumes_": 1}})),
            400,
        ),
        c(
            "quota per type for a resource without types",
            "PUT",
            "/v3/{p}/os-quota-sets/{p}",
            j(json!({"quota_set": {"backups___DEFAULT__": 1}})),
            400,
        ),
        c(
            "quota per type not a number",
            "PUT",
            "/v3/{p}/os-quota-sets/{p}",
            j(json!({"quota_set": {"gigabytes___DEFAULT__": "lots"}})),
            400,
        ),
        c(
            "quota per type below -1",
            "PUT",
            "/v3/{p}/os-quota-sets/{p}",
            j(json!({"quota_set": {"snapshots___DEFAULT__": -5}})),
            400,
        ),
        c(
            "quota per type below usage",
            "PUT",
            "/v3/{p}/os-quota-sets/{p}",
            j(json!({"quota_set": {"volumes___DEFAULT__": 0}})),
            400,
        ),
        c(
            "quota class key of no type",
            "PUT",
            "/v3/{p}/os-quota-class-sets/default",
            j(json!({"quota_class_set": {"snapshots_nope": 1}})),
            400,
        ),
        c(
            "reset to unknown status",
            "POST",
            "/v3/{p}/volumes/{v}/action",
            j(json!({"os-reset_status": {"status": "melted"}})),
            400,
        ),
        c(
            "reset nothing",
            "POST",
            "/v3/{p}/volumes/{v}/action",
            j(json!({"os-reset_status": {}})),
            400,
        ),
        c(
            "reset unknown attach status",
            "POST",
            "/v3/{p}/volumes/{v}/action",
            j(json!({"os-reset_status": {"attach_status": "glued"}})),
            400,
        ),
    ]
    .into_iter()
    .chain(service_cases())
    .collect()
}

/// `os-services`, `os-hosts`, pools, capabilities and messages.
fn service_cases() -> Vec<Case> {
    let c = |what, method, path, body: Option<Vec<u8>>, status| Case {
        what,
        method,
        path,
        headers: vec![],
        body,
        status,
    };
    let at = |what, method, path, version, status| Case {
        what,
        method,
        path,
        headers: vec![("OpenStack-API-Version", version)],
        body: None,
        status,
    };
    let svc = |action: &str| -> &'static str {
        match action {
            "enable" => "/v3/{p}/os-services/enable",
            "disable" => "/v3/{p}/os-services/disable",
            "reason" => "/v3/{p}/os-services/disable-log-reason",
            "freeze" => "/v3/{p}/os-services/freeze",
            "thaw" => "/v3/{p}/os-services/thaw",
            _ => "/v3/{p}/os-services/explode",
        }
    };
    let volume_service = |extra: Value| {
        let mut b = json!({"host": "scoria@file", "binary": "cinder-volume"});
        for (k, v) in extra.as_object().expect("object") {
            b[k] = v.clone();
        }
        j(b)
    };
    vec![
        c(
            "service on an unknown host",
            "PUT",
            svc("enable"),
            j(json!({"host": "invalid_host", "binary": "cinder-volume"})),
            404,
        ),
        c(
            "unknown service on a host",
            "PUT",
            svc("disable"),
            j(json!({"host": "scoria", "binary": "invalid_binary"})),
            404,
        ),
        c(
            "service without host",
            "PUT",
            svc("disable"),
            j(json!({"binary": "cinder-volume"})),
            400,
        ),
        c(
            "service without binary",
            "PUT",
            svc("disable"),
            j(json!({"host": "scoria@file"})),
            400,
        ),
        c(
            "service host not a string",
            "PUT",
            svc("disable"),
            j(json!({"host": 5, "binary": "cinder-volume"})),
            400,
        ),
        c(
            "service extra key",
            "PUT",
            svc("disable"),
            volume_service(json!({"colour": "red"})),
            400,
        ),
        c(
            "service in a cluster",
            "PUT",
            svc("disable"),
            volume_service(json!({"cluster": "c1"})),
            400,
        ),
        c(
            "service body not JSON",
            "PUT",
            svc("enable"),
            Some(b"host=scoria".to_vec()),
            400,
        ),
        c(
            "disabled reason null",
            "PUT",
            svc("reason"),
            volume_service(json!({"disabled_reason": null})),
            400,
        ),
        c(
            "disabled reason missing",
            "PUT",
            svc("reason"),
            volume_service(json!({})),
            400,
        ),
        c(
            "disabled reason blank",
            "PUT",
            svc("reason"),
            volume_service(json!({"disabled_reason": "   "})),
            400,
        ),
        c(
            "disabled reason too long",
            "PUT",
            svc("reason"),
            volume_service(json!({"disabled_reason": "x".repeat(256)})),
            400,
        ),
        c(
            "disabled reason not a string",
            "PUT",
            svc("reason"),
            volume_service(json!({"disabled_reason": 5})),
            400,
        ),
        c(
            "freeze an unknown host",
            "PUT",
            svc("freeze"),
            j(json!({"host": "invalid_host"})),
            400,
        ),
        c(
            "thaw an unknown host",
            "PUT",
            svc("thaw"),
            j(json!({"host": "invalid_host"})),
            400,
        ),
        c(
            "thaw a backend that is not frozen",
            "PUT",
            svc("thaw"),
            j(json!({"host": "scoria@file"})),
            400,
        ),
        c(
            "freeze a host with no volume service",
            "PUT",
            svc("freeze"),
            j(json!({"host": "scoria@nope"})),
            400,
        ),
        c("thaw without host", "PUT", svc("thaw"), j(json!({})), 400),
        c(
            "unknown service action",
            "PUT",
            svc("explode"),
            j(json!({"host": "scoria"})),
            400,
        ),
        c("unknown host", "GET", "/v3/{p}/os-hosts/nowhere", None, 404),
        c(
            "host of no backend",
            "GET",
            "/v3/{p}/os-hosts/scoria@nope",
            None,
            404,
        ),
        c(
            "capabilities of an unknown host",
            "GET",
            "/v3/{p}/capabilities/nowhere",
            None,
            404,
        ),
        c(
            "capabilities of an unknown pool",
            "GET",
            "/v3/{p}/capabilities/scoria@file%23other",
            None,
            404,
        ),
        c(
            "pools detail not a boolean",
            "GET",
            "/v3/{p}/scheduler-stats/get_pools?detail=maybe",
            None,
            400,
        ),
        at(
            "messages before 3.3",
            "GET",
            "/v3/{p}/messages",
            "volume 3.2",
            404,
        ),
        at(
            "message id not a uuid",
            "GET",
            "/v3/{p}/messages/xyz",
            "volume 3.3",
            404,
        ),
        at(
            "unknown message",
            "GET",
            "/v3/{p}/messages/{u}",
            "volume 3.3",
            404,
        ),
        at(
            "delete an unknown message",
            "DELETE",
            "/v3/{p}/messages/{u}",
            "volume 3.3",
            404,
        ),
        at(
            "messages bad sort key",
            "GET",
            "/v3/{p}/messages?sort=colour:asc",
            "volume 3.5",
            400,
        ),
        at(
            "messages bad sort direction",
            "GET",
            "/v3/{p}/messages?sort=created_at:up",
            "volume 3.5",
            400,
        ),
        at(
            "messages marker not an id",
            "GET",
            "/v3/{p}/messages?marker=nope",
            "volume 3.5",
            400,
        ),
        at(
            "messages unknown marker",
            "GET",
            "/v3/{p}/messages?marker={u}",
            "volume 3.5",
            400,
        ),
        at(
            "messages unknown filter",
            "GET",
            "/v3/{p}/messages?colour=red",
            "volume 3.33",
            400,
        ),
        at(
            "messages negative limit",
            "GET",
            "/v3/{p}/messages?limit=-1",
            "volume 3.5",
            400,
        ),
    ]
}

/// Malformed requests to the volume type, extra spec, access, encryption,
/// retype and QoS routes. `{t}`: a private fixture type with extra specs and
/// an encryption spec; `{q}`: fixture QoS specs associated with it.
fn type_cases() -> Vec<Case> {
    let long = "x".repeat(256);
    let c = |what, method, path, body: Option<Vec<u8>>, status| Case {
        what,
        method,
        path,
        headers: vec![],
        body,
        status,
    };
    let vt = |fields: Value| j(json!({ "volume_type": fields }));
    vec![
        c(
            "type create not JSON",
            "POST",
            "/v3/{p}/types",
            Some(b"name=x".to_vec()),
            400,
        ),
        c(
            "type create no volume_type",
            "POST",
            "/v3/{p}/types",
            j(json!({"name": "x"})),
            400,
        ),
        c(
            "type create extra top key",
            "POST",
            "/v3/{p}/types",
            j(json!({"volume_type": {"name": "x"}, "x": 1})),
            400,
        ),
        c(
            "type create no name",
            "POST",
            "/v3/{p}/types",
            vt(json!({"description": "d"})),
            400,
        ),
        c(
            "type create empty name",
            "POST",
            "/v3/{p}/types",
            vt(json!({"name": ""})),
            400,
        ),
        c(
            "type create blank name",
            "POST",
            "/v3/{p}/types",
            vt(json!({"name": "  "})),
            400,
        ),
        c(
            "type create name too long",
            "POST",
            "/v3/{p}/types",
            vt(json!({"name": long.clone()})),
            400,
        ),
        c(
            "type create name not a string",
            "POST",
            "/v3/{p}/types",
            vt(json!({"name": 5})),
            400,
        ),
        c(
            "type create description too long",
            "POST",
            "/v3/{p}/types",
            vt(json!({"name": "x", "description": long.clone()})),
            400,
        ),
        c(
            "type create unknown field",
            "POST",
            "/v3/{p}/types",
            vt(json!({"name": "x", "qos": "y"})),
            400,
        ),
        c(
            "type create specs not an object",
            "POST",
            "/v3/{p}/types",
            vt(json!({"name": "x", "extra_specs": "k=v"})),
            400,
        ),
        c(
            "type create spec value number",
            "POST",
            "/v3/{p}/types",
            vt(json!({"name": "x", "extra_specs": {"k": 1}})),
            400,
        ),
        c(
            "type create spec value too long",
            "POST",
            "/v3/{p}/types",
            vt(json!({"name": "x", "extra_specs": {"k": long.clone()}})),
            400,
        ),
        c(
            "type create spec key too long",
            "POST",
            "/v3/{p}/types",
            vt(json!({"name": "x", "extra_specs": {long.clone(): "v"}})),
            400,
        ),
        c(
            "type create spec key bad chars",
            "POST",
            "/v3/{p}/types",
            vt(json!({"name": "x", "extra_specs": {"a=b": "v"}})),
            400,
        ),
        c(
            "type create is_public not boolean",
            "POST",
            "/v3/{p}/types",
            vt(json!({"name": "x", "os-volume-type-access:is_public": "perhaps"})),
            400,
        ),
        c(
            "type create duplicate name",
            "POST",
            "/v3/{p}/types",
            vt(json!({"name": "fixture-type"})),
            409,
        ),
        c(
            "type update nothing",
            "PUT",
            "/v3/{p}/types/{t}",
            vt(json!({})),
            400,
        ),
        c(
            "type update blank name",
            "PUT",
            "/v3/{p}/types/{t}",
            vt(json!({"name": " "})),
            400,
        ),
        c(
            "type update unknown field",
            "PUT",
            "/v3/{p}/types/{t}",
            vt(json!({"extra_specs": {}})),
            400,
        ),
        c(
            "type update is_public not boolean",
            "PUT",
            "/v3/{p}/types/{t}",
            vt(json!({"is_public": [true]})),
            400,
        ),
        c(
            "type update taken name",
            "PUT",
            "/v3/{p}/types/{t}",
            vt(json!({"name": "__DEFAULT__"})),
            409,
        ),
        c(
            "type update unknown",
            "PUT",
            "/v3/{p}/types/{u}",
            vt(json!({"name": "y"})),
            404,
        ),
        c(
            "type delete unknown",
            "DELETE",
            "/v3/{p}/types/{u}",
            None,
            404,
        ),
        c(
            "type delete not a uuid",
            "DELETE",
            "/v3/{p}/types/gold",
            None,
            404,
        ),
        c(
            "type delete default",
            "DELETE",
            "/v3/{p}/types/7a3d2a5e-1b4c-4f0e-9d8a-0c5e6f7a8b90",
            None,
            400,
        ),
        c(
            "type list bad is_public",
            "GET",
            "/v3/{p}/types?is_public=perhaps",
            None,
            400,
        ),
        c(
            "specs create null",
            "POST",
            "/v3/{p}/types/{t}/extra_specs",
            j(json!({"extra_specs": null})),
            400,
        ),
        c(
            "specs create list",
            "POST",
            "/v3/{p}/types/{t}/extra_specs",
            j(json!({"extra_specs": ["invalid"]})),
            400,
        ),
        c(
            "specs create no key",
            "POST",
            "/v3/{p}/types/{t}/extra_specs",
            j(json!({"specs": {"k": "v"}})),
            400,
        ),
        c(
            "specs create key with space",
            "POST",
            "/v3/{p}/types/{t}/extra_specs",
            j(json!({"extra_specs": {"a b": "v"}})),
            400,
        ),
        c(
            "specs create value bool",
            "POST",
            "/v3/{p}/types/{t}/extra_specs",
            j(json!({"extra_specs": {"k": true}})),
            400,
        ),
        c(
            "specs create unknown type",
            "POST",
            "/v3/{p}/types/{u}/extra_specs",
            j(json!({"extra_specs": {"k": "v"}})),
            404,
        ),
        c(
            "spec update null body",
            "PUT",
            "/v3/{p}/types/{t}/extra_specs/spec1",
            Some(b"null".to_vec()),
            400,
        ),
        c(
            "spec update empty",
            "PUT",
            "/v3/{p}/types/{t}/extra_specs/spec1",
            j(json!({})),
            400,
        ),
        c(
            "spec update two keys",
            "PUT",
            "/v3/{p}/types/{t}/extra_specs/spec1",
            j(json!({"spec1": "a", "spec2": "b"})),
            400,
        ),
        c(
            "spec update key mismatch",
            "PUT",
            "/v3/{p}/types/{t}/extra_specs/spec1",
            j(json!({"spec2": "a"})),
            400,
        ),
        c(
            "spec update value number",
            "PUT",
            "/v3/{p}/types/{t}/extra_specs/spec1",
            j(json!({"spec1": 2})),
            400,
        ),
        c(
            "spec delete absent",
            "DELETE",
            "/v3/{p}/types/{t}/extra_specs/absent",
            None,
            404,
        ),
        c(
            "access action unknown",
            "POST",
            "/v3/{p}/types/{t}/action",
            j(json!({"grant": {"project": "x"}})),
            400,
        ),
        c(
            "access action two actions",
            "POST",
            "/v3/{p}/types/{t}/action",
            j(
                json!({"addProjectAccess": {"project": "x"}, "removeProjectAccess": {"project": "x"}}),
            ),
            400,
        ),
        c(
            "access add no project",
            "POST",
            "/v3/{p}/types/{t}/action",
            j(json!({"addProjectAccess": {}})),
            400,
        ),
        c(
            "access add project too long",
            "POST",
            "/v3/{p}/types/{t}/action",
            j(json!({"addProjectAccess": {"project": long.clone()}})),
            400,
        ),
        c(
            "access add twice",
            "POST",
            "/v3/{p}/types/{t}/action",
            j(json!({"addProjectAccess": {"project": "{p}"}})),
            409,
        ),
        c(
            "access remove absent",
            "POST",
            "/v3/{p}/types/{t}/action",
            j(json!({"removeProjectAccess": {"project": "nobody"}})),
            404,
        ),
        c(
            "access list public type",
            "GET",
            "/v3/{p}/types/7a3d2a5e-1b4c-4f0e-9d8a-0c5e6f7a8b90/os-volume-type-access",
            None,
            404,
        ),
        c(
            "encryption create twice",
            "POST",
            "/v3/{p}/types/{t}/encryption",
            j(json!({"encryption": {"provider": "luks", "control_location": "front-end"}})),
            400,
        ),
        c(
            "encryption create no provider",
            "POST",
            "/v3/{p}/types/{t}/encryption",
            j(json!({"encryption": {"control_location": "front-end"}})),
            400,
        ),
        c(
            "encryption bad control location",
            "PUT",
            "/v3/{p}/types/{t}/encryption/provider",
            j(json!({"encryption": {"control_location": "middle"}})),
            400,
        ),
        c(
            "encryption key size negative",
            "PUT",
            "/v3/{p}/types/{t}/encryption/provider",
            j(json!({"encryption": {"key_size": -256}})),
            400,
        ),
        c(
            "encryption key size text",
            "PUT",
            "/v3/{p}/types/{t}/encryption/provider",
            j(json!({"encryption": {"key_size": "big"}})),
            400,
        ),
        c(
            "encryption unknown field",
            "PUT",
            "/v3/{p}/types/{t}/encryption/provider",
            j(json!({"encryption": {"salt": "x"}})),
            400,
        ),
        c(
            "encryption provider not a string",
            "PUT",
            "/v3/{p}/types/{t}/encryption/provider",
            j(json!({"encryption": {"provider": 1}})),
            400,
        ),
        c(
            "encryption cipher too long",
            "PUT",
            "/v3/{p}/types/{t}/encryption/provider",
            j(json!({"encryption": {"cipher": long.clone()}})),
            400,
        ),
        c(
            "encryption item absent",
            "GET",
            "/v3/{p}/types/{t}/encryption/salt",
            None,
            404,
        ),
        c(
            "encrypted volume",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"size": 1, "volume_type": "fixture-type"})),
            400,
        ),
        c(
            "retype no new_type",
            "POST",
            "/v3/{p}/volumes/{v}/action",
            j(json!({"os-retype": {}})),
            400,
        ),
        c(
            "retype unknown type",
            "POST",
            "/v3/{p}/volumes/{v}/action",
            j(json!({"os-retype": {"new_type": "{u}"}})),
            404,
        ),
        c(
            "retype same type",
            "POST",
            "/v3/{p}/volumes/{v}/action",
            j(json!({"os-retype": {"new_type": "__DEFAULT__"}})),
            400,
        ),
        c(
            "retype to encrypted",
            "POST",
            "/v3/{p}/volumes/{v}/action",
            j(json!({"os-retype": {"new_type": "fixture-type"}})),
            400,
        ),
        c(
            "retype bad policy",
            "POST",
            "/v3/{p}/volumes/{v}/action",
            j(json!({"os-retype": {"new_type": "fixture-type", "migration_policy": "always"}})),
            400,
        ),
        c(
            "retype unknown field",
            "POST",
            "/v3/{p}/volumes/{v}/action",
            j(json!({"os-retype": {"new_type": "fixture-type", "force": true}})),
            400,
        ),
        c(
            "qos create no name",
            "POST",
            "/v3/{p}/qos-specs",
            j(json!({"qos_specs": {"consumer": "both"}})),
            400,
        ),
        c(
            "qos create blank name",
            "POST",
            "/v3/{p}/qos-specs",
            j(json!({"qos_specs": {"name": " "}})),
            400,
        ),
        c(
            "qos create name too long",
            "POST",
            "/v3/{p}/qos-specs",
            j(json!({"qos_specs": {"name": long.clone()}})),
            400,
        ),
        c(
            "qos create bad consumer",
            "POST",
            "/v3/{p}/qos-specs",
            j(json!({"qos_specs": {"name": "n", "consumer": "nobody"}})),
            400,
        ),
        c(
            "qos create value number",
            "POST",
            "/v3/{p}/qos-specs",
            j(json!({"qos_specs": {"name": "n", "iops": 1}})),
            400,
        ),
        c(
            "qos create not an object",
            "POST",
            "/v3/{p}/qos-specs",
            j(json!({"qos_specs": ["n"]})),
            400,
        ),
        c(
            "qos create duplicate",
            "POST",
            "/v3/{p}/qos-specs",
            j(json!({"qos_specs": {"name": "fixture-qos"}})),
            409,
        ),
        c(
            "qos update value null",
            "PUT",
            "/v3/{p}/qos-specs/{q}",
            j(json!({"qos_specs": {"k": null}})),
            400,
        ),
        c(
            "qos update bad consumer",
            "PUT",
            "/v3/{p}/qos-specs/{q}",
            j(json!({"qos_specs": {"consumer": "x"}})),
            400,
        ),
        c(
            "qos update unknown",
            "PUT",
            "/v3/{p}/qos-specs/{u}",
            j(json!({"qos_specs": {"k": "v"}})),
            404,
        ),
        c(
            "qos unset absent key",
            "PUT",
            "/v3/{p}/qos-specs/{q}/delete_keys",
            j(json!({"keys": ["read_iops_sec", "absent"]})),
            404,
        ),
        c(
            "qos unset not a list",
            "PUT",
            "/v3/{p}/qos-specs/{q}/delete_keys",
            j(json!({"keys": "read_iops_sec"})),
            400,
        ),
        c(
            "qos unset empty key",
            "PUT",
            "/v3/{p}/qos-specs/{q}/delete_keys",
            j(json!({"keys": [""]})),
            400,
        ),
        c(
            "qos delete in use",
            "DELETE",
            "/v3/{p}/qos-specs/{q}",
            None,
            400,
        ),
        c(
            "qos delete bad force",
            "DELETE",
            "/v3/{p}/qos-specs/{q}?force=perhaps",
            None,
            400,
        ),
        c(
            "qos show unknown",
            "GET",
            "/v3/{p}/qos-specs/{u}",
            None,
            404,
        ),
        c(
            "qos associate no type",
            "GET",
            "/v3/{p}/qos-specs/{q}/associate",
            None,
            400,
        ),
        c(
            "qos associate unknown type",
            "GET",
            "/v3/{p}/qos-specs/{q}/associate?vol_type_id={u}",
            None,
            404,
        ),
        c(
            "qos disassociate unknown qos",
            "GET",
            "/v3/{p}/qos-specs/{u}/disassociate?vol_type_id={t}",
            None,
            404,
        ),
        c(
            "qos associations unknown",
            "GET",
            "/v3/{p}/qos-specs/{u}/associations",
            None,
            404,
        ),
    ]
}

/// Group types, group specs and groups (3.11–3.20). `{gt}`: the fixture
/// group type (spec k=v), named `fixture-group-type`; `{g}`: the fixture
/// group (empty, of `{gt}` and the default volume type).
fn group_cases() -> Vec<Case> {
    let long = "x".repeat(256);
    let at = |version: &'static str| vec![("OpenStack-API-Version", version)];
    let c = |what, method, path, body: Option<Vec<u8>>, status| Case {
        what,
        method,
        path,
        headers: at("volume 3.20"),
        body,
        status,
    };
    let gt = |fields: Value| j(json!({ "group_type": fields }));
    let grp = |fields: Value| j(json!({ "group": fields }));
    let ok_group = || json!({"group_type": "{gt}", "volume_types": ["__DEFAULT__"]});
    let with = |extra: Value| {
        let mut g = ok_group();
        for (k, v) in extra.as_object().into_iter().flatten() {
            g[k] = v.clone();
        }
        grp(g)
    };
    vec![
        // Group types.
        Case {
            headers: at("volume 3.10"),
            ..c(
                "group types below 3.11",
                "GET",
                "/v3/{p}/group_types",
                None,
                404,
            )
        },
        Case {
            headers: at("volume 3.0"),
            ..c(
                "group type create below 3.11",
                "POST",
                "/v3/{p}/group_types",
                gt(json!({"name": "x"})),
                404,
            )
        },
        c(
            "group type create not JSON",
            "POST",
            "/v3/{p}/group_types",
            Some(b"name=x".to_vec()),
            400,
        ),
        c(
            "group type create no group_type",
            "POST",
            "/v3/{p}/group_types",
            j(json!({"name": "x"})),
            400,
        ),
        c(
            "group type create extra top key",
            "POST",
            "/v3/{p}/group_types",
            j(json!({"group_type": {"name": "x"}, "x": 1})),
            400,
        ),
        c(
            "group type create no name",
            "POST",
            "/v3/{p}/group_types",
            gt(json!({"description": "d"})),
            400,
        ),
        c(
            "group type create blank name",
            "POST",
            "/v3/{p}/group_types",
            gt(json!({"name": "  "})),
            400,
        ),
        c(
            "group type create name too long",
            "POST",
            "/v3/{p}/group_types",
            gt(json!({"name": long})),
            400,
        ),
        c(
            "group type create name not text",
            "POST",
            "/v3/{p}/group_types",
            gt(json!({"name": 5})),
            400,
        ),
        c(
            "group type create description too long",
            "POST",
            "/v3/{p}/group_types",
            gt(json!({"name": "x", "description": long})),
            400,
        ),
        c(
            "group type create is_public not boolean",
            "POST",
            "/v3/{p}/group_types",
            gt(json!({"name": "x", "is_public": "maybe"})),
            400,
        ),
        c(
            "group type create specs not object",
            "POST",
            "/v3/{p}/group_types",
            gt(json!({"name": "x", "group_specs": "k=v"})),
            400,
        ),
        c(
            "group type create spec value not text",
            "POST",
            "/v3/{p}/group_types",
            gt(json!({"name": "x", "group_specs": {"k": 1}})),
            400,
        ),
        c(
            "group type create spec key with space",
            "POST",
            "/v3/{p}/group_types",
            gt(json!({"name": "x", "group_specs": {"a b": "v"}})),
            400,
        ),
        c(
            "group type create duplicate name",
            "POST",
            "/v3/{p}/group_types",
            gt(json!({"name": "fixture-group-type"})),
            409,
        ),
        c(
            "group type update nothing",
            "PUT",
            "/v3/{p}/group_types/{gt}",
            gt(json!({})),
            400,
        ),
        c(
            "group type update not object",
            "PUT",
            "/v3/{p}/group_types/{gt}",
            j(json!({"group_type": "x"})),
            400,
        ),
        c(
            "group type update unknown key",
            "PUT",
            "/v3/{p}/group_types/{gt}",
            gt(json!({"color": "red"})),
            400,
        ),
        c(
            "group type update blank name",
            "PUT",
            "/v3/{p}/group_types/{gt}",
            gt(json!({"name": " "})),
            400,
        ),
        c(
            "group type update name too long",
            "PUT",
            "/v3/{p}/group_types/{gt}",
            gt(json!({"name": long})),
            400,
        ),
        c(
            "group type update unknown",
            "PUT",
            "/v3/{p}/group_types/{u}",
            gt(json!({"name": "n"})),
            404,
        ),
        c(
            "group type show unknown",
            "GET",
            "/v3/{p}/group_types/{u}",
            None,
            404,
        ),
        c(
            "group type show default",
            "GET",
            "/v3/{p}/group_types/default",
            None,
            404,
        ),
        c(
            "group type delete unknown",
            "DELETE",
            "/v3/{p}/group_types/{u}",
            None,
            404,
        ),
        c(
            "group type delete in use",
            "DELETE",
            "/v3/{p}/group_types/{gt}",
            None,
            400,
        ),
        c(
            "group types list bad sort",
            "GET",
            "/v3/{p}/group_types?sort=color",
            None,
            400,
        ),
        c(
            "group types list bad is_public",
            "GET",
            "/v3/{p}/group_types?is_public=maybe",
            None,
            400,
        ),
        // Group specs.
        c(
            "group specs not object",
            "POST",
            "/v3/{p}/group_types/{gt}/group_specs",
            j(json!({"group_specs": ["k"]})),
            400,
        ),
        c(
            "group specs missing",
            "POST",
            "/v3/{p}/group_types/{gt}/group_specs",
            j(json!({"specs": {}})),
            400,
        ),
        c(
            "group specs value null",
            "POST",
            "/v3/{p}/group_types/{gt}/group_specs",
            j(json!({"group_specs": {"k": null}})),
            400,
        ),
        c(
            "group specs key too long",
            "POST",
            "/v3/{p}/group_types/{gt}/group_specs",
            j(json!({"group_specs": {long.clone(): "v"}})),
            400,
        ),
        c(
            "group specs value too long",
            "POST",
            "/v3/{p}/group_types/{gt}/group_specs",
            j(json!({"group_specs": {"k": long}})),
            400,
        ),
        c(
            "group specs unknown type",
            "POST",
            "/v3/{p}/group_types/{u}/group_specs",
            j(json!({"group_specs": {"k": "v"}})),
            404,
        ),
        c(
            "group spec update mismatch",
            "PUT",
            "/v3/{p}/group_types/{gt}/group_specs/k",
            j(json!({"other": "v"})),
            400,
        ),
        c(
            "group spec update too many",
            "PUT",
            "/v3/{p}/group_types/{gt}/group_specs/k",
            j(json!({"k": "v", "other": "v"})),
            400,
        ),
        c(
            "group spec update empty",
            "PUT",
            "/v3/{p}/group_types/{gt}/group_specs/k",
            j(json!({})),
            400,
        ),
        c(
            "group spec update value not text",
            "PUT",
            "/v3/{p}/group_types/{gt}/group_specs/k",
            j(json!({"k": 1})),
            400,
        ),
        c(
            "group spec show missing",
            "GET",
            "/v3/{p}/group_types/{gt}/group_specs/nope",
            None,
            404,
        ),
        c(
            "group spec delete missing",
            "DELETE",
            "/v3/{p}/group_types/{gt}/group_specs/nope",
            None,
            404,
        ),
        // Groups: create.
        Case {
            headers: at("volume 3.12"),
            ..c(
                "group create below 3.13",
                "POST",
                "/v3/{p}/groups",
                grp(ok_group()),
                404,
            )
        },
        c(
            "group create not JSON",
            "POST",
            "/v3/{p}/groups",
            Some(b"group".to_vec()),
            400,
        ),
        c(
            "group create no group",
            "POST",
            "/v3/{p}/groups",
            j(ok_group()),
            400,
        ),
        c(
            "group create extra key",
            "POST",
            "/v3/{p}/groups",
            with(json!({"size": 1})),
            400,
        ),
        c(
            "group create no group_type",
            "POST",
            "/v3/{p}/groups",
            grp(json!({"volume_types": ["__DEFAULT__"]})),
            400,
        ),
        c(
            "group create no volume_types",
            "POST",
            "/v3/{p}/groups",
            grp(json!({"group_type": "{gt}"})),
            400,
        ),
        c(
            "group create volume_types empty",
            "POST",
            "/v3/{p}/groups",
            with(json!({"volume_types": []})),
            400,
        ),
        c(
            "group create volume_types not list",
            "POST",
            "/v3/{p}/groups",
            with(json!({"volume_types": "__DEFAULT__"})),
            400,
        ),
        c(
            "group create volume type not text",
            "POST",
            "/v3/{p}/groups",
            with(json!({"volume_types": [1]})),
            400,
        ),
        c(
            "group create volume types repeated",
            "POST",
            "/v3/{p}/groups",
            with(json!({"volume_types": ["__DEFAULT__", "__DEFAULT__"]})),
            400,
        ),
        c(
            "group create unknown group type",
            "POST",
            "/v3/{p}/groups",
            with(json!({"group_type": "{u}"})),
            404,
        ),
        c(
            "group create unknown volume type",
            "POST",
            "/v3/{p}/groups",
            with(json!({"volume_types": ["{u}"]})),
            404,
        ),
        c(
            "group create unknown zone",
            "POST",
            "/v3/{p}/groups",
            with(json!({"availability_zone": "mars"})),
            400,
        ),
        c(
            "group create name too long",
            "POST",
            "/v3/{p}/groups",
            with(json!({"name": long})),
            400,
        ),
        c(
            "group create description too long",
            "POST",
            "/v3/{p}/groups",
            with(json!({"description": long})),
            400,
        ),
        c(
            "group create name not text",
            "POST",
            "/v3/{p}/groups",
            with(json!({"name": ["g"]})),
            400,
        ),
        // Groups: read.
        c("group show unknown", "GET", "/v3/{p}/groups/{u}", None, 404),
        c(
            "group show not an id",
            "GET",
            "/v3/{p}/groups/nope",
            None,
            404,
        ),
        c(
            "groups list negative limit",
            "GET",
            "/v3/{p}/groups?limit=-1",
            None,
            400,
        ),
        c(
            "groups list bad sort key",
            "GET",
            "/v3/{p}/groups?sort=size",
            None,
            400,
        ),
        c(
            "groups list bad sort direction",
            "GET",
            "/v3/{p}/groups?sort=name:up",
            None,
            400,
        ),
        c(
            "groups list bad marker",
            "GET",
            "/v3/{p}/groups?marker=nope",
            None,
            400,
        ),
        c(
            "groups list unknown marker",
            "GET",
            "/v3/{p}/groups?marker={u}",
            None,
            400,
        ),
        Case {
            headers: at("volume 3.33"),
            ..c(
                "groups list unknown filter",
                "GET",
                "/v3/{p}/groups/detail?color=red",
                None,
                400,
            )
        },
        Case {
            headers: at("volume 3.25"),
            ..c(
                "groups list bad list_volume",
                "GET",
                "/v3/{p}/groups/detail?list_volume=maybe",
                None,
                400,
            )
        },
        // Groups: update.
        c(
            "group update empty",
            "PUT",
            "/v3/{p}/groups/{g}",
            grp(json!({})),
            400,
        ),
        c(
            "group update not object",
            "PUT",
            "/v3/{p}/groups/{g}",
            j(json!({"group": 1})),
            400,
        ),
        c(
            "group update unknown key",
            "PUT",
            "/v3/{p}/groups/{g}",
            grp(json!({"size": 2})),
            400,
        ),
        c(
            "group update add not text",
            "PUT",
            "/v3/{p}/groups/{g}",
            grp(json!({"add_volumes": ["{v}"]})),
            400,
        ),
        c(
            "group update add too long",
            "PUT",
            "/v3/{p}/groups/{g}",
            grp(json!({"add_volumes": long})),
            400,
        ),
        c(
            "group update add unknown volume",
            "PUT",
            "/v3/{p}/groups/{g}",
            grp(json!({"add_volumes": "{u}"})),
            400,
        ),
        c(
            "group update add not an id",
            "PUT",
            "/v3/{p}/groups/{g}",
            grp(json!({"add_volumes": "nope"})),
            400,
        ),
        c(
            "group update remove non-member",
            "PUT",
            "/v3/{p}/groups/{g}",
            grp(json!({"remove_volumes": "{v}"})),
            400,
        ),
        c(
            "group update add and remove",
            "PUT",
            "/v3/{p}/groups/{g}",
            grp(json!({"add_volumes": "{v}", "remove_volumes": "{v}"})),
            400,
        ),
        c(
            "group update name too long",
            "PUT",
            "/v3/{p}/groups/{g}",
            grp(json!({"name": long})),
            400,
        ),
        c(
            "group update unknown group",
            "PUT",
            "/v3/{p}/groups/{u}",
            grp(json!({"name": "n"})),
            404,
        ),
        // Groups: actions.
        c(
            "group action not JSON",
            "POST",
            "/v3/{p}/groups/{g}/action",
            Some(b"delete".to_vec()),
            400,
        ),
        c(
            "group action two actions",
            "POST",
            "/v3/{p}/groups/{g}/action",
            j(json!({"delete": {}, "reset_status": {"status": "error"}})),
            400,
        ),
        c(
            "group action unknown",
            "POST",
            "/v3/{p}/groups/{g}/action",
            j(json!({"explode": {}})),
            400,
        ),
        c(
            "group delete args not object",
            "POST",
            "/v3/{p}/groups/{g}/action",
            j(json!({"delete": true})),
            400,
        ),
        c(
            "group delete bad flag",
            "POST",
            "/v3/{p}/groups/{g}/action",
            j(json!({"delete": {"delete-volumes": "maybe"}})),
            400,
        ),
        c(
            "group delete extra key",
            "POST",
            "/v3/{p}/groups/{g}/action",
            j(json!({"delete": {"delete-volumes": true, "force": true}})),
            400,
        ),
        c(
            "group delete unknown group",
            "POST",
            "/v3/{p}/groups/{u}/action",
            j(json!({"delete": {}})),
            404,
        ),
        c(
            "group reset bogus status",
            "POST",
            "/v3/{p}/groups/{g}/action",
            j(json!({"reset_status": {"status": "bogus"}})),
            400,
        ),
        c(
            "group reset no status",
            "POST",
            "/v3/{p}/groups/{g}/action",
            j(json!({"reset_status": {}})),
            400,
        ),
        Case {
            headers: at("volume 3.19"),
            ..c(
                "group reset below 3.20",
                "POST",
                "/v3/{p}/groups/{g}/action",
                j(json!({"reset_status": {"status": "error"}})),
                404,
            )
        },
        // Groups: create from a source.
        Case {
            headers: at("volume 3.13"),
            ..c(
                "group from source below 3.14",
                "POST",
                "/v3/{p}/groups/action",
                j(json!({"create-from-src": {"source_group_id": "{g}"}})),
                404,
            )
        },
        c(
            "group from source no source",
            "POST",
            "/v3/{p}/groups/action",
            j(json!({"create-from-src": {"name": "x"}})),
            400,
        ),
        c(
            "group from source two sources",
            "POST",
            "/v3/{p}/groups/action",
            j(json!({"create-from-src": {"source_group_id": "{g}", "group_snapshot_id": "{u}"}})),
            400,
        ),
        c(
            "group from source not an id",
            "POST",
            "/v3/{p}/groups/action",
            j(json!({"create-from-src": {"source_group_id": "nope"}})),
            400,
        ),
        c(
            "group from source unknown",
            "POST",
            "/v3/{p}/groups/action",
            j(json!({"create-from-src": {"source_group_id": "{u}"}})),
            404,
        ),
        c(
            "group from source extra key",
            "POST",
            "/v3/{p}/groups/action",
            j(json!({"create-from-src": {"source_group_id": "{g}", "size": 1}})),
            400,
        ),
        c(
            "group from source name too long",
            "POST",
            "/v3/{p}/groups/action",
            j(json!({"create-from-src": {"source_group_id": "{g}", "name": long}})),
            400,
        ),
        // Volumes and groups.
        c(
            "volume in a group: group not an id",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"size": 1, "group_id": "nope"})),
            400,
        ),
        c(
            "volume in an unknown group",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"size": 1, "group_id": "{u}"})),
            404,
        ),
        c(
            "volume in a group of other types",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"size": 1, "volume_type": "{t}", "group_id": "{g}"})),
            400,
        ),
        c(
            "volume in a consistency group",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"size": 1, "consistencygroup_id": "{u}"})),
            400,
        ),
        c(
            "volumes by a group that is not an id",
            "GET",
            "/v3/{p}/volumes?group_id=nope",
            None,
            400,
        ),
    ]
}

/// Snapshots: malformed creates, changes, lists, metadata and actions, and
/// the volume requests that name snapshots. `{s}`: the fixture snapshot (with
/// the metadata `k=v`) of the volume `{sv}`.
fn snapshot_cases() -> Vec<Case> {
    let long = "x".repeat(256);
    let c = |what, method, path, body: Option<Vec<u8>>, status| Case {
        what,
        method,
        path,
        headers: vec![],
        body,
        status,
    };
    let at = |what, method, path, version, body: Option<Vec<u8>>, status| Case {
        what,
        method,
        path,
        headers: vec![("OpenStack-API-Version", version)],
        body,
        status,
    };
    let snap = |fields: Value| j(json!({ "snapshot": fields }));
    let act = |body: Value| j(body);
    vec![
        // Create: body shape.
        c(
            "snapshot: not JSON",
            "POST",
            "/v3/{p}/snapshots",
            Some(b"volume_id=1".to_vec()),
            400,
        ),
        c(
            "snapshot: empty body",
            "POST",
            "/v3/{p}/snapshots",
            Some(Vec::new()),
            400,
        ),
        c(
            "snapshot: JSON array",
            "POST",
            "/v3/{p}/snapshots",
            j(json!([1])),
            400,
        ),
        c(
            "snapshot: no snapshot key",
            "POST",
            "/v3/{p}/snapshots",
            j(json!({"volume_id": "{sv}"})),
            400,
        ),
        c(
            "snapshot: not an object",
            "POST",
            "/v3/{p}/snapshots",
            j(json!({"snapshot": "please"})),
            400,
        ),
        c(
            "snapshot: a key beside snapshot",
            "POST",
            "/v3/{p}/snapshots",
            j(json!({"snapshot": {"volume_id": "{sv}"}, "volume": {}})),
            400,
        ),
        c(
            "snapshot: unknown field",
            "POST",
            "/v3/{p}/snapshots",
            snap(json!({"volume_id": "{sv}", "size": 1})),
            400,
        ),
        // Create: the volume.
        c(
            "snapshot: no volume_id",
            "POST",
            "/v3/{p}/snapshots",
            snap(json!({"name": "n"})),
            400,
        ),
        c(
            "snapshot: volume_id null",
            "POST",
            "/v3/{p}/snapshots",
            snap(json!({"volume_id": null})),
            404,
        ),
        c(
            "snapshot: volume_id a number",
            "POST",
            "/v3/{p}/snapshots",
            snap(json!({"volume_id": 5})),
            400,
        ),
        c(
            "snapshot: volume_id not a UUID",
            "POST",
            "/v3/{p}/snapshots",
            snap(json!({"volume_id": "vol-1"})),
            400,
        ),
        c(
            "snapshot: unknown volume",
            "POST",
            "/v3/{p}/snapshots",
            snap(json!({"volume_id": "{u}"})),
            404,
        ),
        // Create: fields.
        c(
            "snapshot: name not a string",
            "POST",
            "/v3/{p}/snapshots",
            snap(json!({"volume_id": "{sv}", "name": 1})),
            400,
        ),
        c(
            "snapshot: name too long",
            "POST",
            "/v3/{p}/snapshots",
            snap(json!({"volume_id": "{sv}", "name": long.clone()})),
            400,
        ),
        c(
            "snapshot: description too long",
            "POST",
            "/v3/{p}/snapshots",
            snap(json!({"volume_id": "{sv}", "display_description": "d".repeat(256)})),
            400,
        ),
        c(
            "snapshot: metadata not an object",
            "POST",
            "/v3/{p}/snapshots",
            snap(json!({"volume_id": "{sv}", "metadata": ["a"]})),
            400,
        ),
        c(
            "snapshot: metadata value not a string",
            "POST",
            "/v3/{p}/snapshots",
            snap(json!({"volume_id": "{sv}", "metadata": {"a": 1}})),
            400,
        ),
        c(
            "snapshot: metadata key too long",
            "POST",
            "/v3/{p}/snapshots",
            snap(json!({"volume_id": "{sv}", "metadata": {long.clone(): "v"}})),
            400,
        ),
        c(
            "snapshot: metadata value too long",
            "POST",
            "/v3/{p}/snapshots",
            snap(json!({"volume_id": "{sv}", "metadata": {"k": long.clone()}})),
            400,
        ),
        c(
            "snapshot: metadata key empty",
            "POST",
            "/v3/{p}/snapshots",
            snap(json!({"volume_id": "{sv}", "metadata": {"": "v"}})),
            400,
        ),
        c(
            "snapshot: force not a boolean",
            "POST",
            "/v3/{p}/snapshots",
            snap(json!({"volume_id": "{sv}", "force": "maybe"})),
            400,
        ),
        c(
            "snapshot: force a list",
            "POST",
            "/v3/{p}/snapshots",
            snap(json!({"volume_id": "{sv}", "force": [true]})),
            400,
        ),
        at(
            "snapshot: force false from 3.66",
            "POST",
            "/v3/{p}/snapshots",
            "volume 3.66",
            snap(json!({"volume_id": "{sv}", "force": false})),
            400,
        ),
        // Show, update, delete.
        c(
            "snapshot: show unknown",
            "GET",
            "/v3/{p}/snapshots/{u}",
            None,
            404,
        ),
        c(
            "snapshot: show not a UUID",
            "GET",
            "/v3/{p}/snapshots/snap-1",
            None,
            404,
        ),
        c(
            "snapshot: with_progress not a boolean",
            "GET",
            "/v3/{p}/snapshots/{s}?with_progress=maybe",
            None,
            400,
        ),
        c(
            "snapshot: update unknown",
            "PUT",
            "/v3/{p}/snapshots/{u}",
            snap(json!({"name": "n"})),
            404,
        ),
        c(
            "snapshot: update not JSON",
            "PUT",
            "/v3/{p}/snapshots/{s}",
            Some(b"name=n".to_vec()),
            400,
        ),
        c(
            "snapshot: update nothing",
            "PUT",
            "/v3/{p}/snapshots/{s}",
            snap(json!({})),
            400,
        ),
        c(
            "snapshot: update unknown field",
            "PUT",
            "/v3/{p}/snapshots/{s}",
            snap(json!({"status": "error"})),
            400,
        ),
        c(
            "snapshot: update name not a string",
            "PUT",
            "/v3/{p}/snapshots/{s}",
            snap(json!({"name": ["n"]})),
            400,
        ),
        c(
            "snapshot: update name too long",
            "PUT",
            "/v3/{p}/snapshots/{s}",
            snap(json!({"display_name": long.clone()})),
            400,
        ),
        c(
            "snapshot: update no snapshot key",
            "PUT",
            "/v3/{p}/snapshots/{s}",
            j(json!({"name": "n"})),
            400,
        ),
        c(
            "snapshot: delete unknown",
            "DELETE",
            "/v3/{p}/snapshots/{u}",
            None,
            404,
        ),
        c(
            "snapshot: delete not a UUID",
            "DELETE",
            "/v3/{p}/snapshots/snap-1",
            None,
            404,
        ),
        // Lists.
        c(
            "snapshots: negative limit",
            "GET",
            "/v3/{p}/snapshots?limit=-1",
            None,
            400,
        ),
        c(
            "snapshots: limit not a number",
            "GET",
            "/v3/{p}/snapshots/detail?limit=invalid",
            None,
            400,
        ),
        c(
            "snapshots: negative offset",
            "GET",
            "/v3/{p}/snapshots?offset=-1",
            None,
            400,
        ),
        c(
            "snapshots: unknown marker",
            "GET",
            "/v3/{p}/snapshots?marker={u}",
            None,
            404,
        ),
        c(
            "snapshots: marker not a UUID",
            "GET",
            "/v3/{p}/snapshots/detail?marker=zzz",
            None,
            404,
        ),
        c(
            "snapshots: unknown sort key",
            "GET",
            "/v3/{p}/snapshots?sort_key=invalid",
            None,
            400,
        ),
        c(
            "snapshots: bad sort direction",
            "GET",
            "/v3/{p}/snapshots?sort=name:up",
            None,
            400,
        ),
        c(
            "snapshots: sort with sort_key",
            "GET",
            "/v3/{p}/snapshots?sort=name&sort_key=id",
            None,
            400,
        ),
        c(
            "snapshots: all_tenants not a boolean",
            "GET",
            "/v3/{p}/snapshots?all_tenants=maybe",
            None,
            400,
        ),
        at(
            "snapshots: with_count not a boolean",
            "GET",
            "/v3/{p}/snapshots?with_count=maybe",
            "volume 3.45",
            None,
            400,
        ),
        at(
            "snapshots: unknown filter",
            "GET",
            "/v3/{p}/snapshots/detail?colour=red",
            "volume 3.33",
            None,
            400,
        ),
        at(
            "snapshots: metadata filter not JSON",
            "GET",
            "/v3/{p}/snapshots?metadata=notjson",
            "volume 3.22",
            None,
            400,
        ),
        // Metadata.
        c(
            "snapshot metadata: unknown snapshot",
            "GET",
            "/v3/{p}/snapshots/{u}/metadata",
            None,
            404,
        ),
        c(
            "snapshot metadata: merge into unknown snapshot",
            "POST",
            "/v3/{p}/snapshots/{u}/metadata",
            j(json!({"metadata": {"a": "1"}})),
            404,
        ),
        c(
            "snapshot metadata: not JSON",
            "POST",
            "/v3/{p}/snapshots/{s}/metadata",
            Some(b"a=1".to_vec()),
            400,
        ),
        c(
            "snapshot metadata: no metadata key",
            "POST",
            "/v3/{p}/snapshots/{s}/metadata",
            j(json!({"meta": {"a": "1"}})),
            400,
        ),
        c(
            "snapshot metadata: not an object",
            "POST",
            "/v3/{p}/snapshots/{s}/metadata",
            j(json!({"metadata": "a"})),
            400,
        ),
        c(
            "snapshot metadata: value not a string",
            "PUT",
            "/v3/{p}/snapshots/{s}/metadata",
            j(json!({"metadata": {"a": 1}})),
            400,
        ),
        c(
            "snapshot metadata: key too long",
            "POST",
            "/v3/{p}/snapshots/{s}/metadata",
            j(json!({"metadata": {long.clone(): "v"}})),
            400,
        ),
        c(
            "snapshot metadata: value too long",
            "PUT",
            "/v3/{p}/snapshots/{s}/metadata",
            j(json!({"metadata": {"k": long.clone()}})),
            400,
        ),
        c(
            "snapshot metadata: unknown key",
            "GET",
            "/v3/{p}/snapshots/{s}/metadata/nope",
            None,
            404,
        ),
        c(
            "snapshot metadata: item key mismatch",
            "PUT",
            "/v3/{p}/snapshots/{s}/metadata/k",
            j(json!({"meta": {"other": "v"}})),
            400,
        ),
        c(
            "snapshot metadata: item too many",
            "PUT",
            "/v3/{p}/snapshots/{s}/metadata/k",
            j(json!({"meta": {"k": "v", "l": "w"}})),
            400,
        ),
        c(
            "snapshot metadata: item without meta",
            "PUT",
            "/v3/{p}/snapshots/{s}/metadata/k",
            j(json!({"k": "v"})),
            400,
        ),
        c(
            "snapshot metadata: item of unknown snapshot",
            "PUT",
            "/v3/{p}/snapshots/{u}/metadata/k",
            j(json!({"meta": {"k": "v"}})),
            404,
        ),
        c(
            "snapshot metadata: delete unknown key",
            "DELETE",
            "/v3/{p}/snapshots/{s}/metadata/nope",
            None,
            404,
        ),
        // Actions.
        c(
            "snapshot action: not JSON",
            "POST",
            "/v3/{p}/snapshots/{s}/action",
            Some(b"os-force_delete".to_vec()),
            400,
        ),
        c(
            "snapshot action: none",
            "POST",
            "/v3/{p}/snapshots/{s}/action",
            act(json!({})),
            400,
        ),
        c(
            "snapshot action: two",
            "POST",
            "/v3/{p}/snapshots/{s}/action",
            act(json!({"os-force_delete": {}, "os-reset_status": {"status": "error"}})),
            400,
        ),
        c(
            "snapshot action: unknown",
            "POST",
            "/v3/{p}/snapshots/{s}/action",
            act(json!({"os-explode": {}})),
            400,
        ),
        c(
            "snapshot action: arguments not an object",
            "POST",
            "/v3/{p}/snapshots/{s}/action",
            act(json!({"os-reset_status": "error"})),
            400,
        ),
        c(
            "snapshot reset: no status",
            "POST",
            "/v3/{p}/snapshots/{s}/action",
            act(json!({"os-reset_status": {}})),
            400,
        ),
        c(
            "snapshot reset: unknown status",
            "POST",
            "/v3/{p}/snapshots/{s}/action",
            act(json!({"os-reset_status": {"status": "bogus"}})),
            400,
        ),
        c(
            "snapshot reset: a status Cinder does not reset to",
            "POST",
            "/v3/{p}/snapshots/{s}/action",
            act(json!({"os-reset_status": {"status": "restoring"}})),
            400,
        ),
        c(
            "snapshot reset: status not a string",
            "POST",
            "/v3/{p}/snapshots/{s}/action",
            act(json!({"os-reset_status": {"status": 1}})),
            400,
        ),
        c(
            "snapshot reset: unknown argument",
            "POST",
            "/v3/{p}/snapshots/{s}/action",
            act(json!({"os-reset_status": {"status": "error", "force": true}})),
            400,
        ),
        c(
            "snapshot reset: unknown snapshot",
            "POST",
            "/v3/{p}/snapshots/{u}/action",
            act(json!({"os-reset_status": {"status": "error"}})),
            404,
        ),
        c(
            "snapshot status update: not from available",
            "POST",
            "/v3/{p}/snapshots/{s}/action",
            act(json!({"os-update_snapshot_status": {"status": "error"}})),
            400,
        ),
        c(
            "snapshot status update: bad progress",
            "POST",
            "/v3/{p}/snapshots/{s}/action",
            act(json!({"os-update_snapshot_status": {"status": "error", "progress": "101%"}})),
            400,
        ),
        c(
            "snapshot status update: no status",
            "POST",
            "/v3/{p}/snapshots/{s}/action",
            act(json!({"os-update_snapshot_status": {"progress": "10%"}})),
            400,
        ),
        c(
            "snapshot force delete: unknown snapshot",
            "POST",
            "/v3/{p}/snapshots/{u}/action",
            act(json!({"os-force_delete": {}})),
            404,
        ),
        // Volumes and their snapshots.
        c(
            "volume: from a snapshot id that is not a UUID",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"snapshot_id": "snap-1"})),
            400,
        ),
        c(
            "volume: from a snapshot and a volume",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"snapshot_id": "{s}", "source_volid": "{sv}"})),
            400,
        ),
        c(
            "volume: smaller than its snapshot",
            "POST",
            "/v3/{p}/volumes",
            vol(json!({"snapshot_id": "{s}", "size": 0})),
            400,
        ),
        c(
            "volume: delete with snapshots",
            "DELETE",
            "/v3/{p}/volumes/{sv}",
            None,
            400,
        ),
        c(
            "volume: cascade not a boolean",
            "DELETE",
            "/v3/{p}/volumes/{sv}?cascade=maybe",
            None,
            400,
        ),
        at(
            "revert: below 3.40",
            "POST",
            "/v3/{p}/volumes/{sv}/action",
            "volume 3.39",
            act(json!({"revert": {"snapshot_id": "{s}"}})),
            404,
        ),
        at(
            "revert: no snapshot_id",
            "POST",
            "/v3/{p}/volumes/{sv}/action",
            "volume 3.40",
            act(json!({"revert": {}})),
            400,
        ),
        at(
            "revert: snapshot_id not a UUID",
            "POST",
            "/v3/{p}/volumes/{sv}/action",
            "volume 3.40",
            act(json!({"revert": {"snapshot_id": "snap-1"}})),
            400,
        ),
        at(
            "revert: unknown snapshot",
            "POST",
            "/v3/{p}/volumes/{sv}/action",
            "volume 3.40",
            act(json!({"revert": {"snapshot_id": "{u}"}})),
            404,
        ),
        at(
            "revert: another volume's snapshot",
            "POST",
            "/v3/{p}/volumes/{v}/action",
            "volume 3.40",
            act(json!({"revert": {"snapshot_id": "{s}"}})),
            400,
        ),
        at(
            "revert: unknown argument",
            "POST",
            "/v3/{p}/volumes/{sv}/action",
            "volume 3.40",
            act(json!({"revert": {"snapshot_id": "{s}", "force": true}})),
            400,
        ),
        c(
            "tree: unknown volume",
            "GET",
            "/v3/{p}/scoria-volumes/{u}/tree",
            None,
            404,
        ),
        c(
            "tree: not a UUID",
            "GET",
            "/v3/{p}/scoria-volumes/vol-1/tree",
            None,
            404,
        ),
    ]
}

/// The type and QoS fixtures: a private type with extra specs, shared with
/// the project, with an encryption spec, associated with QoS specs.
async fn type_fixtures(t: &TestApp, token: &str, project: &str) -> (String, String) {
    let ok = |r: &support::Reply, want: u16| assert_eq!(r.status, want, "{:?}", r.body);
    let r = t
        .call(
            "POST",
            &format!("/v3/{project}/types"),
            Some(token),
            Some(json!({"volume_type": {"name": "fixture-type", "os-volume-type-access:is_public": false,
                "extra_specs": {"spec1": "v1", "multiattach": "<is> True"}}})),
        )
        .await;
    ok(&r, 200);
    let ty = r.body["volume_type"]["id"].as_str().expect("id").to_owned();
    let r = t
        .call(
            "POST",
            &format!("/v3/{project}/types/{ty}/action"),
            Some(token),
            Some(json!({"addProjectAccess": {"project": project}})),
        )
        .await;
    ok(&r, 202);
    let r = t
        .call(
            "POST",
            &format!("/v3/{project}/types/{ty}/encryption"),
            Some(token),
            Some(json!({"encryption": {"provider": "luks", "key_size": 256, "control_location": "front-end"}})),
        )
        .await;
    ok(&r, 200);
    let r = t
        .call(
            "POST",
            &format!("/v3/{project}/qos-specs"),
            Some(token),
            Some(json!({"qos_specs": {"name": "fixture-qos", "read_iops_sec": "100"}})),
        )
        .await;
    ok(&r, 200);
    let q = r.body["qos_specs"]["id"].as_str().expect("id").to_owned();
    let r = t
        .call(
            "GET",
            &format!("/v3/{project}/qos-specs/{q}/associate?vol_type_id={ty}"),
            Some(token),
            None,
        )
        .await;
    ok(&r, 202);
    (ty, q)
}

/// The group fixtures: a public group type with the spec k=v, and an empty
/// group of it (default volume type).
async fn group_fixtures(t: &TestApp, token: &str, project: &str) -> (String, String) {
    let r = t
        .raw(
            "POST",
            &format!("/v3/{project}/group_types"),
            Some(token),
            &[("OpenStack-API-Version", "volume 3.11")],
            j(json!({"group_type": {"name": "fixture-group-type", "group_specs": {"k": "v"}}})),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let gt = r.body["group_type"]["id"].as_str().expect("id").to_owned();
    let r = t
        .raw(
            "POST",
            &format!("/v3/{project}/groups"),
            Some(token),
            &[("OpenStack-API-Version", "volume 3.13")],
            j(json!({"group": {"group_type": gt, "volume_types": ["__DEFAULT__"], "name": "fixture"}})),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let g = r.body["group"]["id"].as_str().expect("id").to_owned();
    (gt, g)
}

/// An available snapshot of `volume`, with the metadata `k=v`.
async fn snapshot_fixture(t: &TestApp, token: &str, project: &str, volume: &str) -> String {
    let r = t
        .call(
            "POST",
            &format!("/v3/{project}/snapshots"),
            Some(token),
            Some(json!({"snapshot": {"volume_id": volume, "name": "fixture", "metadata": {"k": "v"}}})),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let id = r.body["snapshot"]["id"].as_str().expect("id").to_owned();
    for _ in 0..2000 {
        let r = t
            .call(
                "GET",
                &format!("/v3/{project}/snapshots/{id}"),
                Some(token),
                None,
            )
            .await;
        if r.body["snapshot"]["status"] == "available" {
            return id;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    panic!("snapshot {id} never became available");
}

/// Everything a bad request could have changed.
async fn snapshot(t: &TestApp, token: &str, project: &str, ty: &str) -> Value {
    let mut types = Vec::new();
    for path in [
        "types?is_public=None".to_string(),
        format!("types/{ty}/encryption"),
        format!("types/{ty}/os-volume-type-access"),
        "qos-specs".to_string(),
    ] {
        let r = t
            .call("GET", &format!("/v3/{project}/{path}"), Some(token), None)
            .await;
        types.push(r.body);
    }
    let vols = t
        .call(
            "GET",
            &format!("/v3/{project}/volumes/detail"),
            Some(token),
            None,
        )
        .await;
    let quota = t
        .call(
            "GET",
            &format!("/v3/{project}/os-quota-sets/{project}?usage=true"),
            Some(token),
            None,
        )
        .await;
    let classes = t
        .call(
            "GET",
            &format!("/v3/{project}/os-quota-class-sets/default"),
            Some(token),
            None,
        )
        .await;
    let transfers = t
        .call(
            "GET",
            &format!("/v3/{project}/os-volume-transfer/detail"),
            Some(token),
            None,
        )
        .await;
    let services = t
        .call(
            "GET",
            &format!("/v3/{project}/os-services"),
            Some(token),
            None,
        )
        .await;
    let mut services = services.body["services"].clone();
    for svc in services.as_array_mut().into_iter().flatten() {
        // The time of the services' last report is now, at every read.
        svc.as_object_mut().map(|o| o.remove("updated_at"));
    }
    let messages = t
        .raw(
            "GET",
            &format!("/v3/{project}/messages"),
            Some(token),
            &[("OpenStack-API-Version", "volume 3.3")],
            None,
        )
        .await;
    let mut vols = vols.body["volumes"].clone();
    for v in vols.as_array_mut().into_iter().flatten() {
        // The progress of the fixture's own creation is part of the state; the
        // update time is not changed by refused requests either.
        v.as_object_mut().map(|o| o.remove("links"));
    }
    let mut groups = Vec::new();
    for path in [
        "group_types?is_public=None".to_string(),
        "groups/detail?all_tenants=1&list_volume=true".to_string(),
    ] {
        let r = t
            .raw(
                "GET",
                &format!("/v3/{project}/{path}"),
                Some(token),
                &[("OpenStack-API-Version", "volume 3.25")],
                None,
            )
            .await;
        groups.push(r.body);
    }
    let snapshots = t
        .raw(
            "GET",
            &format!("/v3/{project}/snapshots/detail?with_progress=true"),
            Some(token),
            &[("OpenStack-API-Version", "volume 3.65")],
            None,
        )
        .await;
    json!({"volumes": vols, "quota": quota.body, "classes": classes.body, "transfers": transfers.body,
           "services": services, "messages": messages.body, "types": types, "groups": groups,
           "snapshots": snapshots.body})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_cleanly_and_changes_nothing() {
    let t = TestApp::new().await;
    let (admin, project) = t.admin().await;
    let v = t.volume(&admin, &project).await;
    // A second volume, offered for transfer.
    let w = t.volume(&admin, &project).await;
    let r = t
        .call(
            "POST",
            &format!("/v3/{project}/os-volume-transfer"),
            Some(&admin),
            Some(json!({"transfer": {"volume_id": w, "name": "fixture"}})),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let transfer = r.body["transfer"]["id"].as_str().expect("id").to_owned();
    let (ty, q) = type_fixtures(&t, &admin, &project).await;
    let (gt, g) = group_fixtures(&t, &admin, &project).await;
    // A volume with a snapshot (metadata k=v).
    let sv = t.volume(&admin, &project).await;
    let snap = snapshot_fixture(&t, &admin, &project, &sv).await;
    // A project that is not the caller's.
    let other = t.project(&admin, "not-the-callers").await;
    let before = snapshot(&t, &admin, &project, &ty).await;
    let random = uuid_like();
    let mut failures = Vec::new();
    for (case, token) in cases()
        .into_iter()
        .map(|c| (c, admin.as_str()))
        .chain(admin_cases().into_iter().map(|c| (c, admin.as_str())))
        .chain(transfer_cases().into_iter().map(|c| (c, admin.as_str())))
        .chain(type_cases().into_iter().map(|c| (c, admin.as_str())))
        .chain(group_cases().into_iter().map(|c| (c, admin.as_str())))
        .chain(snapshot_cases().into_iter().map(|c| (c, admin.as_str())))
        .chain(gaps::cases().into_iter().map(|c| (c, admin.as_str())))
        .chain(std::iter::once((
            Case {
                what: "forged token",
                method: "GET",
                path: "/v3/{p}/volumes",
                headers: vec![],
                body: None,
                status: 401,
            },
            "gAAAAABforgedtoken",
        )))
    {
        let path = case
            .path
            .replace("{p}", &project)
            .replace("{o}", &other)
            .replace("{sv}", &sv)
            .replace("{s}", &snap)
            .replace("{v}", &v)
            .replace("{w}", &w)
            .replace("{x}", &transfer)
            .replace("{u}", &random)
            .replace("{gt}", &gt)
            .replace("{g}", &g)
            .replace("{t}", &ty)
            .replace("{q}", &q);
        let body = case.body.map(|b| {
            String::from_utf8_lossy(&b)
                .replace("{u}", &random)
                .replace("{sv}", &sv)
                .replace("{s}", &snap)
                .replace("{v}", &v)
                .replace("{w}", &w)
                .replace("{p}", &project)
                .replace("{gt}", &gt)
                .replace("{g}", &g)
                .replace("{t}", &ty)
                .into_bytes()
        });
        let r = t
            .raw(case.method, &path, Some(token), &case.headers, body)
            .await;
        if r.status >= 500 {
            failures.push(format!(
                "{}: server error {} {}",
                case.what, r.status, r.body
            ));
        } else if r.status != case.status {
            failures.push(format!(
                "{}: got {}, expected {} ({})",
                case.what, r.status, case.status, r.body
            ));
        } else if r.status != 401 {
            let ok = r.body.as_object().is_some_and(|o| {
                o.len() == 1
                    && o.values().all(|f| {
                        f["code"] == r.status
                            && f["message"].as_str().is_some_and(|m| !m.is_empty())
                    })
            });
            if !ok {
                failures.push(format!(
                    "{}: not a Cinder fault body: {}",
                    case.what, r.body
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    t.app.engine.wait_idle().await;
    let after = snapshot(&t, &admin, &project, &ty).await;
    assert_eq!(before, after, "a refused request changed something");
}

fn uuid_like() -> String {
    // A well-formed id that names nothing.
    "3f1c2b9e-8d4a-4e6f-9b7c-1a2b3c4d5e6f".into()
}
