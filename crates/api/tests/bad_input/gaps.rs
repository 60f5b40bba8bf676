//! Bad input that Scoria used to accept (issue 15): each row is Cinder's 4xx,
//! and the snapshot taken around all rows shows that none changed anything.
//! `{o}` is a project that is not the caller's; the other placeholders are
//! the main table's.

use serde_json::json;

use super::{Case, j, vol};

pub fn cases() -> Vec<Case> {
    let c = |what, method, path, body: Option<Vec<u8>>, status| Case {
        what,
        method,
        path,
        headers: vec![],
        body,
        status,
    };
    let with = |mut case: Case, headers: Vec<(&'static str, &'static str)>| {
        case.headers = headers;
        case
    };
    let v = |version: &'static str| vec![("OpenStack-API-Version", version)];
    vec![
        // The URL's project must be the token's (400 "Malformed request url").
        c(
            "create in another project's URL",
            "POST",
            "/v3/{o}/volumes",
            vol(json!({"size": 1})),
            400,
        ),
        c(
            "list in another project's URL",
            "GET",
            "/v3/{o}/volumes",
            None,
            400,
        ),
        c(
            "list under an id that is no project",
            "GET",
            "/v3/{u}/volumes",
            None,
            400,
        ),
        c(
            "list under a name that is no project",
            "GET",
            "/v3/not-a-project/volumes/detail",
            None,
            400,
        ),
        c(
            "delete through another project's URL",
            "DELETE",
            "/v3/{o}/volumes/{v}",
            None,
            400,
        ),
        c(
            "quota update through another project's URL",
            "PUT",
            "/v3/{o}/os-quota-sets/{p}",
            j(json!({"quota_set": {"volumes": 1}})),
            400,
        ),
        // Content type, path bytes.
        with(
            c(
                "create with a text/plain body",
                "POST",
                "/v3/{p}/volumes",
                vol(json!({"size": 1})),
                415,
            ),
            vec![("content-type", "text/plain")],
        ),
        with(
            c(
                "metadata with a form body type",
                "POST",
                "/v3/{p}/volumes/{v}/metadata",
                j(json!({"metadata": {"a": "b"}})),
                415,
            ),
            vec![("content-type", "application/x-www-form-urlencoded")],
        ),
        c(
            "volume id not UTF-8",
            "GET",
            "/v3/{p}/volumes/%FF%FE",
            None,
            404,
        ),
        c(
            "volume id not UTF-8 (update)",
            "PUT",
            "/v3/{p}/volumes/%C3%28",
            j(json!({"volume": {"name": "n"}})),
            404,
        ),
        c("project id not UTF-8", "GET", "/v3/%FF/volumes", None, 400),
        c(
            "project id not UTF-8 (route without an id)",
            "GET",
            "/v3/%FF/extensions",
            None,
            400,
        ),
        // Values Cinder's schemas refuse.
        c(
            "reset to an unknown migration status",
            "POST",
            "/v3/{p}/volumes/{v}/action",
            j(json!({"os-reset_status": {"migration_status": "sideways"}})),
            400,
        ),
        with(
            c(
                "group delete with null",
                "POST",
                "/v3/{p}/groups/{g}/action",
                j(json!({"delete": null})),
                400,
            ),
            v("volume 3.13"),
        ),
        c(
            "quota above 2147483647",
            "PUT",
            "/v3/{p}/os-quota-sets/{p}",
            j(json!({"quota_set": {"volumes": 2147483648i64}})),
            400,
        ),
        c(
            "class quota above 2147483647",
            "PUT",
            "/v3/{p}/os-quota-class-sets/default",
            j(json!({"quota_class_set": {"gigabytes": 9999999999i64}})),
            400,
        ),
        c(
            "volume list with a negative offset",
            "GET",
            "/v3/{p}/volumes?offset=-1",
            None,
            400,
        ),
        c(
            "volume list with a word for an offset",
            "GET",
            "/v3/{p}/volumes/detail?offset=two",
            None,
            400,
        ),
        // Paging and sorting of the short lists (item 9).
        c(
            "types: limit not a number",
            "GET",
            "/v3/{p}/types?limit=abc",
            None,
            400,
        ),
        c(
            "types: unknown sort key",
            "GET",
            "/v3/{p}/types?sort=bogus:sideways",
            None,
            400,
        ),
        c(
            "types: unknown sort direction",
            "GET",
            "/v3/{p}/types?sort=name:sideways",
            None,
            400,
        ),
        c(
            "types: marker not an id",
            "GET",
            "/v3/{p}/types?marker=not-a-uuid",
            None,
            400,
        ),
        c(
            "types: marker names no type",
            "GET",
            "/v3/{p}/types?marker={u}",
            None,
            400,
        ),
        c(
            "types: negative offset",
            "GET",
            "/v3/{p}/types?offset=-3",
            None,
            400,
        ),
        with(
            c(
                "group types: limit not a number",
                "GET",
                "/v3/{p}/group_types?limit=abc",
                None,
                400,
            ),
            v("volume 3.11"),
        ),
        with(
            c(
                "group types: marker not an id",
                "GET",
                "/v3/{p}/group_types?marker=not-a-uuid",
                None,
                400,
            ),
            v("volume 3.11"),
        ),
        with(
            c(
                "group types: unknown sort key",
                "GET",
                "/v3/{p}/group_types?sort=bogus",
                None,
                400,
            ),
            v("volume 3.11"),
        ),
        c(
            "QoS specs: limit not a number",
            "GET",
            "/v3/{p}/qos-specs?limit=abc",
            None,
            400,
        ),
        c(
            "QoS specs: unknown sort key",
            "GET",
            "/v3/{p}/qos-specs?sort=bogus:asc",
            None,
            400,
        ),
        c(
            "QoS specs: marker names nothing",
            "GET",
            "/v3/{p}/qos-specs?marker={u}",
            None,
            400,
        ),
        c(
            "transfers: limit not a number",
            "GET",
            "/v3/{p}/os-volume-transfer?limit=abc",
            None,
            400,
        ),
        c(
            "transfers: unknown sort key",
            "GET",
            "/v3/{p}/volume-transfers/detail?sort=size",
            None,
            400,
        ),
        c(
            "transfers: marker not an id",
            "GET",
            "/v3/{p}/os-volume-transfer/detail?marker=not-a-uuid",
            None,
            400,
        ),
        c(
            "transfers: negative offset",
            "GET",
            "/v3/{p}/os-volume-transfer?offset=-1",
            None,
            400,
        ),
    ]
}
