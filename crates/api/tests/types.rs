//! Volume types, extra specs, type access, encryption specs, retype and QoS
//! specs over HTTP, as scripts of requests: each step names the caller, the
//! request, the status and (when it matters) the whole body, with ids put
//! back as `{names}` and times redacted. Bodies are compared exactly, because
//! strict clients (tempest) refuse any key Cinder does not send.

mod support;

use serde_json::{Value, json};
use support::steps::Who::{Admin, Member, Other, Reader};
use support::steps::{Step, World, call};

fn default_type_view() -> Value {
    json!({"id": "{default}", "name": "__DEFAULT__", "description": "Default Volume Type",
           "is_public": true, "os-volume-type-access:is_public": true, "extra_specs": {},
           "qos_specs_id": null})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn types_crud_views_and_visibility() {
    let mut w = World::new().await;
    let long = "x".repeat(256);
    w.run(vec![
        // Create: Cinder's create view (no qos_specs_id).
        call(Admin, "POST", "/v3/{p}/types", Some(json!({"volume_type": {
            "name": "gold", "description": "fast", "extra_specs": {"volume_backend_name": "file", "multiattach": "<is> True"}}})), 200)
            .save("gold", "/volume_type/id")
            .is(json!({"volume_type": {"id": "{gold}", "name": "gold", "description": "fast",
                "is_public": true, "os-volume-type-access:is_public": true,
                "extra_specs": {"volume_backend_name": "file", "multiattach": "<is> True"}}})),
        call(Admin, "POST", "/v3/{p}/types", Some(json!({"volume_type": {
            "name": "secret", "os-volume-type-access:is_public": false}})), 200)
            .save("secret", "/volume_type/id")
            .is(json!({"volume_type": {"id": "{secret}", "name": "secret", "description": null,
                "is_public": false, "os-volume-type-access:is_public": false, "extra_specs": {}}})),
        call(Admin, "POST", "/v3/{p}/types", Some(json!({"volume_type": {"name": "gold"}})), 409)
            .says("already exists"),
        call(Admin, "POST", "/v3/{p}/types", Some(json!({"volume_type": {"name": ""}})), 400)
            .says("should be non-empty"),
        call(Admin, "POST", "/v3/{p}/types", Some(json!({"volume_type": {"name": "   "}})), 400),
        call(Admin, "POST", "/v3/{p}/types", Some(json!({"volume_type": {"name": long}})), 400),
        call(Admin, "POST", "/v3/{p}/types", Some(json!({"volume_type": {}})), 400),
        call(Admin, "POST", "/v3/{p}/types", Some(json!({"volume_type": {"name": "x", "color": "red"}})), 400),
        call(Admin, "POST", "/v3/{p}/types", Some(json!({"volume_type": {"name": "x", "extra_specs": {"k": 1}}})), 400),
        call(Admin, "POST", "/v3/{p}/types", Some(json!({"volume_type": {"name": "x", "extra_specs": {"k": null}}})), 400),
        call(Admin, "POST", "/v3/{p}/types", Some(json!({"volume_type": {"name": "x", "os-volume-type-access:is_public": "maybe"}})), 400),
        call(Admin, "POST", "/v3/{p}/types", Some(json!({"volume_type": {"name": "x",
            "extra_specs": {"multiattach": "<is> True", "cacheable": "<is> True"}}})), 400)
            .says("cacheable"),
        call(Member, "POST", "/v3/{p}/types", Some(json!({"volume_type": {"name": "mine"}})), 403),
        // Show: admins see qos_specs_id and every spec; readers only the
        // user-visible specs and no qos_specs_id.
        call(Admin, "GET", "/v3/{p}/types/{gold}", None, 200)
            .is(json!({"volume_type": {"id": "{gold}", "name": "gold", "description": "fast",
                "is_public": true, "os-volume-type-access:is_public": true, "qos_specs_id": null,
                "extra_specs": {"volume_backend_name": "file", "multiattach": "<is> True"}}})),
        call(Reader, "GET", "/v3/{p}/types/{gold}", None, 200)
            .is(json!({"volume_type": {"id": "{gold}", "name": "gold", "description": "fast",
                "is_public": true, "os-volume-type-access:is_public": true,
                "extra_specs": {"multiattach": "<is> True"}}})),
        call(Reader, "GET", "/v3/{p}/types/{secret}", None, 404)
            .says("could not be found"),
        call(Admin, "GET", "/v3/{p}/types/3f1c2b9e-8d4a-4e6f-9b7c-1a2b3c4d5e6f", None, 404),
        call(Admin, "GET", "/v3/{p}/types/not-a-uuid", None, 404),
        // Lists: by default public types (and those shared with the caller's
        // project), for admins too; `is_public=None` lists all for admins.
        call(Admin, "GET", "/v3/{p}/types", None, 200)
            .is(json!({"volume_types": [default_type_view(),
                {"id": "{gold}", "name": "gold", "description": "fast", "is_public": true,
                 "os-volume-type-access:is_public": true, "qos_specs_id": null,
                 "extra_specs": {"volume_backend_name": "file", "multiattach": "<is> True"}}]})),
        call(Admin, "GET", "/v3/{p}/types?is_public=None", None, 200)
            .save("first", "/volume_types/0/name")
            .save("third", "/volume_types/2/name"),
        call(Admin, "GET", "/v3/{p}/types?is_public=false", None, 200)
            .save("only_private", "/volume_types/0/name"),
        call(Admin, "GET", "/v3/{p}/types?is_public=sometimes", None, 400),
        // A non-admin's filter is ignored, as Cinder does.
        call(Member, "GET", "/v3/{p}/types?is_public=None", None, 200)
            .is(json!({"volume_types": [
                {"id": "{default}", "name": "__DEFAULT__", "description": "Default Volume Type",
                 "is_public": true, "os-volume-type-access:is_public": true, "extra_specs": {}},
                {"id": "{gold}", "name": "gold", "description": "fast", "is_public": true,
                 "os-volume-type-access:is_public": true, "extra_specs": {"multiattach": "<is> True"}}]})),
        call(Reader, "GET", "/v3/{p}/types/default", None, 200),
        // Update: Cinder's update view (neither is_public alias nor qos id).
        call(Admin, "PUT", "/v3/{p}/types/{gold}", Some(json!({"volume_type": {
            "name": "platinum", "description": "faster", "is_public": false}})), 200)
            .is(json!({"volume_type": {"id": "{gold}", "name": "platinum", "description": "faster",
                "is_public": false,
                "extra_specs": {"volume_backend_name": "file", "multiattach": "<is> True"}}})),
        call(Admin, "PUT", "/v3/{p}/types/{gold}", Some(json!({"volume_type": {"is_public": "true"}})), 200),
        call(Admin, "PUT", "/v3/{p}/types/{gold}", Some(json!({"volume_type": {"name": "secret"}})), 409),
        call(Admin, "PUT", "/v3/{p}/types/{gold}", Some(json!({"volume_type": {"name": "  "}})), 400)
            .says("can not be empty"),
        call(Admin, "PUT", "/v3/{p}/types/{gold}", Some(json!({"volume_type": {}})), 400)
            .says("Specify"),
        call(Admin, "PUT", "/v3/{p}/types/{gold}", Some(json!({"volume_type": {"extra_specs": {}}})), 400),
        call(Admin, "PUT", "/v3/{p}/types/3f1c2b9e-8d4a-4e6f-9b7c-1a2b3c4d5e6f",
            Some(json!({"volume_type": {"name": "n"}})), 404),
        call(Member, "PUT", "/v3/{p}/types/{gold}", Some(json!({"volume_type": {"name": "n"}})), 403),
        // Delete: in use (400) until the volume goes; the default type stays.
        call(Member, "POST", "/v3/{p}/volumes", Some(json!({"volume": {"size": 1, "volume_type": "platinum"}})), 202)
            .save("vol", "/volume/id"),
        Step::Volume(Member, "vol", "available"),
        call(Member, "GET", "/v3/{p}/volumes/{vol}", None, 200)
            .save("vol_type", "/volume/volume_type"),
        call(Admin, "DELETE", "/v3/{p}/types/{gold}", None, 400)
            .says("still in use"),
        call(Admin, "DELETE", "/v3/{p}/types/{default}", None, 400)
            .says("cannot be deleted"),
        call(Member, "DELETE", "/v3/{p}/types/{secret}", None, 403),
        call(Admin, "DELETE", "/v3/{p}/types/{secret}", None, 202),
        call(Admin, "DELETE", "/v3/{p}/types/{secret}", None, 404),
        call(Admin, "GET", "/v3/{p}/types/{secret}", None, 404),
    ])
    .await;
    assert_eq!(w.vars["vol_type"], "platinum");
    assert_eq!(w.vars["first"], "__DEFAULT__");
    assert_eq!(w.vars["third"], "secret");
    assert_eq!(w.vars["only_private"], "secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_specs() {
    let mut w = World::new().await;
    let long = "v".repeat(256);
    let uuid = "3f1c2b9e-8d4a-4e6f-9b7c-1a2b3c4d5e6f";
    w.run(vec![
        call(
            Admin,
            "POST",
            "/v3/{p}/types",
            Some(json!({"volume_type": {
            "name": "t", "extra_specs": {"spec1": "val1", "multiattach": "<is> True"}}})),
            200,
        )
        .save("t", "/volume_type/id"),
        call(
            Admin,
            "POST",
            "/v3/{p}/types/{t}/extra_specs",
            Some(json!({"extra_specs": {"spec2": "val2"}})),
            200,
        )
        .is(json!({"extra_specs": {"spec2": "val2"}})),
        call(Admin, "GET", "/v3/{p}/types/{t}/extra_specs", None, 200).is(
            json!({"extra_specs": {"spec1": "val1", "spec2": "val2", "multiattach": "<is> True"}}),
        ),
        call(Reader, "GET", "/v3/{p}/types/{t}/extra_specs", None, 200)
            .is(json!({"extra_specs": {"multiattach": "<is> True"}})),
        call(
            Admin,
            "GET",
            "/v3/{p}/types/{t}/extra_specs/spec1",
            None,
            200,
        )
        .is(json!({"spec1": "val1"})),
        call(
            Reader,
            "GET",
            "/v3/{p}/types/{t}/extra_specs/multiattach",
            None,
            200,
        )
        .is(json!({"multiattach": "<is> True"})),
        // Keys hidden from readers do not exist for them.
        call(
            Reader,
            "GET",
            "/v3/{p}/types/{t}/extra_specs/spec1",
            None,
            404,
        ),
        call(
            Admin,
            "PUT",
            "/v3/{p}/types/{t}/extra_specs/spec2",
            Some(json!({"spec2": "val3"})),
            200,
        )
        .is(json!({"spec2": "val3"})),
        call(
            Admin,
            "GET",
            "/v3/{p}/types/{t}/extra_specs/spec2",
            None,
            200,
        )
        .is(json!({"spec2": "val3"})),
        call(
            Admin,
            "DELETE",
            "/v3/{p}/types/{t}/extra_specs/spec2",
            None,
            202,
        ),
        call(
            Admin,
            "GET",
            "/v3/{p}/types/{t}/extra_specs/spec2",
            None,
            404,
        )
        .says("has no extra specs with key spec2"),
        call(
            Admin,
            "DELETE",
            "/v3/{p}/types/{t}/extra_specs/spec2",
            None,
            404,
        ),
        // tempest's negative tests (ExtraSpecsNegativeTest), in order.
        call(
            Admin,
            "PUT",
            "/v3/{p}/types/{t}/extra_specs/spec1",
            Some(Value::Null),
            400,
        ),
        call(
            Admin,
            "PUT",
            &format!("/v3/{{p}}/types/{{t}}/extra_specs/{uuid}"),
            Some(json!({"spec1": "val2"})),
            400,
        )
        .says("Request body and URI mismatch"),
        call(
            Admin,
            "PUT",
            "/v3/{p}/types/{t}/extra_specs/None",
            Some(json!({"spec1": "val2"})),
            400,
        ),
        call(
            Admin,
            "PUT",
            "/v3/{p}/types/{t}/extra_specs/spec1",
            Some(json!({"spec1": "val2", "spec2": "val1"})),
            400,
        )
        .says("too many properties"),
        call(
            Admin,
            "PUT",
            &format!("/v3/{{p}}/types/{uuid}/extra_specs/spec1"),
            Some(json!({"spec1": "val5"})),
            404,
        ),
        call(
            Admin,
            "POST",
            &format!("/v3/{{p}}/types/{uuid}/extra_specs"),
            Some(json!({"extra_specs": {"spec2": "val1"}})),
            404,
        ),
        call(
            Admin,
            "POST",
            "/v3/{p}/types/{t}/extra_specs",
            Some(json!({"extra_specs": null})),
            400,
        ),
        call(
            Admin,
            "POST",
            "/v3/{p}/types/{t}/extra_specs",
            Some(json!({"extra_specs": ["invalid"]})),
            400,
        )
        .says("is not of type 'object'"),
        call(
            Admin,
            "DELETE",
            &format!("/v3/{{p}}/types/{uuid}/extra_specs/spec1"),
            None,
            404,
        ),
        call(
            Admin,
            "GET",
            &format!("/v3/{{p}}/types/{uuid}/extra_specs"),
            None,
            404,
        ),
        call(
            Admin,
            "GET",
            &format!("/v3/{{p}}/types/{uuid}/extra_specs/spec1"),
            None,
            404,
        ),
        call(
            Admin,
            "GET",
            "/v3/{p}/types/{t}/extra_specs/nonexistent_extra_spec_name",
            None,
            404,
        ),
        // More bad input.
        call(
            Admin,
            "PUT",
            "/v3/{p}/types/{t}/extra_specs/spec1",
            Some(json!({})),
            400,
        ),
        call(
            Admin,
            "PUT",
            "/v3/{p}/types/{t}/extra_specs/spec1",
            Some(json!({"spec1": 5})),
            400,
        ),
        call(
            Admin,
            "PUT",
            "/v3/{p}/types/{t}/extra_specs/spec1",
            Some(json!({"spec1": true})),
            400,
        ),
        call(
            Admin,
            "POST",
            "/v3/{p}/types/{t}/extra_specs",
            Some(json!({"extra_specs": {"bad key": "v"}})),
            400,
        ),
        call(
            Admin,
            "POST",
            "/v3/{p}/types/{t}/extra_specs",
            Some(json!({"extra_specs": {"k": long}})),
            400,
        ),
        call(
            Admin,
            "POST",
            "/v3/{p}/types/{t}/extra_specs",
            Some(json!({"extra_specs": {"k": "v"}, "more": 1})),
            400,
        ),
        call(
            Admin,
            "POST",
            "/v3/{p}/types/{t}/extra_specs",
            Some(json!({"extra_specs": {"cacheable": "<is> True"}})),
            400,
        )
        .says("cacheable"),
        call(
            Member,
            "POST",
            "/v3/{p}/types/{t}/extra_specs",
            Some(json!({"extra_specs": {"k": "v"}})),
            403,
        ),
        call(
            Reader,
            "PUT",
            "/v3/{p}/types/{t}/extra_specs/spec1",
            Some(json!({"spec1": "x"})),
            403,
        ),
        call(
            Member,
            "DELETE",
            "/v3/{p}/types/{t}/extra_specs/spec1",
            None,
            403,
        ),
        // Nothing of the above changed anything.
        call(Admin, "GET", "/v3/{p}/types/{t}/extra_specs", None, 200)
            .is(json!({"extra_specs": {"spec1": "val1", "multiattach": "<is> True"}})),
        // While a volume has the type, its specs are frozen (`spec1`, which
        // no backend reports, does not filter).
        call(
            Member,
            "POST",
            "/v3/{p}/volumes",
            Some(json!({"volume": {"size": 1, "volume_type": "{t}"}})),
            202,
        )
        .save("vol", "/volume/id"),
        Step::Volume(Member, "vol", "available"),
        call(
            Admin,
            "POST",
            "/v3/{p}/types/{t}/extra_specs",
            Some(json!({"extra_specs": {"k": "v"}})),
            400,
        )
        .says("currently in use"),
        call(
            Admin,
            "PUT",
            "/v3/{p}/types/{t}/extra_specs/spec1",
            Some(json!({"spec1": "x"})),
            400,
        ),
        call(
            Admin,
            "DELETE",
            "/v3/{p}/types/{t}/extra_specs/spec1",
            None,
            400,
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_access() {
    let mut w = World::new().await;
    w.run(vec![
        call(
            Admin,
            "POST",
            "/v3/{p}/types",
            Some(json!({"volume_type": {
            "name": "private", "os-volume-type-access:is_public": false}})),
            200,
        )
        .save("t", "/volume_type/id"),
        call(
            Admin,
            "POST",
            "/v3/{p}/types",
            Some(json!({"volume_type": {"name": "public"}})),
            200,
        )
        .save("pub", "/volume_type/id"),
        // Not shared: absent for the project's members (by id and by name).
        call(
            Member,
            "POST",
            "/v3/{p}/volumes",
            Some(json!({"volume": {"size": 1, "volume_type": "{t}"}})),
            404,
        ),
        call(
            Member,
            "POST",
            "/v3/{p}/volumes",
            Some(json!({"volume": {"size": 1, "volume_type": "private"}})),
            404,
        ),
        call(Member, "GET", "/v3/{p}/types/{t}", None, 404),
        call(
            Admin,
            "GET",
            "/v3/{p}/types/{t}/os-volume-type-access",
            None,
            200,
        )
        .is(json!({"volume_type_access": []})),
        call(
            Admin,
            "POST",
            "/v3/{p}/types/{t}/action",
            Some(json!({"addProjectAccess": {"project": "{a}"}})),
            202,
        ),
        call(
            Admin,
            "POST",
            "/v3/{p}/types/{t}/action",
            Some(json!({"addProjectAccess": {"project": "{a}"}})),
            409,
        )
        .says("already exists"),
        call(
            Admin,
            "POST",
            "/v3/{p}/types/{t}/action",
            Some(json!({"addProjectAccess": {"project": "{b}"}})),
            202,
        ),
        call(
            Admin,
            "GET",
            "/v3/{p}/types/{t}/os-volume-type-access",
            None,
            200,
        )
        .save("first", "/volume_type_access/0/project_id")
        .save("second", "/volume_type_access/1/project_id"),
        // Shared: visible and usable by A's members, listed for them.
        call(Reader, "GET", "/v3/{p}/types/{t}", None, 200),
        call(
            Member,
            "POST",
            "/v3/{p}/volumes",
            Some(json!({"volume": {"size": 1, "volume_type": "{t}"}})),
            202,
        )
        .save("vol", "/volume/id"),
        Step::Volume(Member, "vol", "available"),
        call(Member, "GET", "/v3/{p}/volumes/{vol}", None, 200)
            .save("vol_type", "/volume/volume_type"),
        call(Member, "GET", "/v3/{p}/types", None, 200).save("listed", "/volume_types/1/name"),
        call(
            Admin,
            "POST",
            "/v3/{p}/types/{t}/action",
            Some(json!({"removeProjectAccess": {"project": "{b}"}})),
            202,
        ),
        call(
            Admin,
            "POST",
            "/v3/{p}/types/{t}/action",
            Some(json!({"removeProjectAccess": {"project": "{b}"}})),
            404,
        )
        .says("not found"),
        call(Other, "GET", "/v3/{p}/types/{t}", None, 404),
        // Public types have no access list (Cinder: 404 to list, 400 to change).
        call(
            Admin,
            "GET",
            "/v3/{p}/types/{pub}/os-volume-type-access",
            None,
            404,
        )
        .says("public volume types"),
        call(
            Admin,
            "POST",
            "/v3/{p}/types/{pub}/action",
            Some(json!({"addProjectAccess": {"project": "{a}"}})),
            400,
        )
        .says("not applicable to public volume type"),
        call(
            Admin,
            "POST",
            "/v3/{p}/types/{pub}/action",
            Some(json!({"removeProjectAccess": {"project": "{a}"}})),
            400,
        ),
        // Bad input and callers.
        call(
            Admin,
            "POST",
            "/v3/{p}/types/{t}/action",
            Some(json!({"addProjectAccess": {}})),
            400,
        ),
        call(
            Admin,
            "POST",
            "/v3/{p}/types/{t}/action",
            Some(json!({"addProjectAccess": {"project": ""}})),
            400,
        ),
        call(
            Admin,
            "POST",
            "/v3/{p}/types/{t}/action",
            Some(json!({"addProjectAccess": {"project": 7}})),
            400,
        ),
        call(
            Admin,
            "POST",
            "/v3/{p}/types/{t}/action",
            Some(json!({"addProjectAccess": {"project": "{a}", "x": 1}})),
            400,
        ),
        call(
            Admin,
            "POST",
            "/v3/{p}/types/{t}/action",
            Some(json!({"addProjectAccess": "{a}"})),
            400,
        ),
        call(
            Admin,
            "POST",
            "/v3/{p}/types/{t}/action",
            Some(json!({"shareEverything": {}})),
            400,
        ),
        call(
            Admin,
            "POST",
            "/v3/{p}/types/{t}/action",
            Some(json!({})),
            400,
        ),
        call(
            Admin,
            "POST",
            "/v3/{p}/types/3f1c2b9e-8d4a-4e6f-9b7c-1a2b3c4d5e6f/action",
            Some(json!({"addProjectAccess": {"project": "{a}"}})),
            404,
        ),
        call(
            Member,
            "POST",
            "/v3/{p}/types/{t}/action",
            Some(json!({"addProjectAccess": {"project": "{a}"}})),
            403,
        ),
        call(
            Member,
            "GET",
            "/v3/{p}/types/{t}/os-volume-type-access",
            None,
            403,
        ),
    ])
    .await;
    let mut listed = vec![w.vars["first"].clone(), w.vars["second"].clone()];
    listed.sort();
    let mut want = vec![w.vars["a"].clone(), w.vars["b"].clone()];
    want.sort();
    assert_eq!(listed, want);
    assert_eq!(w.vars["vol_type"], "private");
    assert_eq!(w.vars["listed"], "private");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryption_specs() {
    let mut w = World::new().await;
    let uuid = "3f1c2b9e-8d4a-4e6f-9b7c-1a2b3c4d5e6f";
    let luks = json!({"encryption": {"provider": "luks", "key_size": 256,
        "cipher": "aes-xts-plain64", "control_location": "front-end"}});
    w.run(vec![
        call(Admin, "POST", "/v3/{p}/types", Some(json!({"volume_type": {"name": "enc"}})), 200)
            .save("t", "/volume_type/id"),
        call(Admin, "GET", "/v3/{p}/types/{t}/encryption", None, 200).is(json!({})),
        call(Admin, "POST", "/v3/{p}/types/{t}/encryption", Some(luks.clone()), 200)
            .save("e", "/encryption/encryption_id")
            .is(json!({"encryption": {"provider": "luks", "key_size": 256, "cipher": "aes-xts-plain64",
                "control_location": "front-end", "volume_type_id": "{t}", "encryption_id": "{e}"}})),
        call(Admin, "POST", "/v3/{p}/types/{t}/encryption", Some(luks.clone()), 400)
            .says("already exists"),
        call(Admin, "GET", "/v3/{p}/types/{t}/encryption", None, 200)
            .is(json!({"volume_type_id": "{t}", "encryption_id": "{e}", "provider": "luks",
                "cipher": "aes-xts-plain64", "key_size": 256, "control_location": "front-end",
                "created_at": "<time>", "updated_at": null, "deleted": false, "deleted_at": null})),
        call(Admin, "GET", "/v3/{p}/types/{t}/encryption/cipher", None, 200)
            .is(json!({"cipher": "aes-xts-plain64"})),
        call(Admin, "GET", "/v3/{p}/types/{t}/encryption/colour", None, 404),
        // Scoria does not encrypt: volumes of the type are refused, clearly.
        call(Member, "POST", "/v3/{p}/volumes", Some(json!({"volume": {"size": 1, "volume_type": "enc"}})), 400)
            .says("encrypted volumes are not supported yet"),
        // Update (the last segment is not checked, as in Cinder).
        call(Admin, "PUT", "/v3/{p}/types/{t}/encryption/{e}", Some(json!({"encryption": {
            "key_size": 128, "provider": "SomeProvider", "control_location": "back-end"}})), 200)
            .is(json!({"encryption": {"key_size": 128, "provider": "SomeProvider", "control_location": "back-end"}})),
        call(Admin, "PUT", "/v3/{p}/types/{t}/encryption/provider", Some(json!({"encryption": {"cipher": null}})), 200),
        call(Admin, "GET", "/v3/{p}/types/{t}/encryption", None, 200)
            .is(json!({"volume_type_id": "{t}", "encryption_id": "{e}", "provider": "SomeProvider",
                "cipher": null, "key_size": 128, "control_location": "back-end",
                "created_at": "<time>", "updated_at": "<time>", "deleted": false, "deleted_at": null})),
        // Bad input.
        call(Admin, "POST", "/v3/{p}/types/{t}/encryption", Some(json!({"encryption": {"provider": "luks"}})), 400),
        call(Admin, "PUT", "/v3/{p}/types/{t}/encryption/{e}", Some(json!({"encryption": {"control_location": "middle"}})), 400),
        call(Admin, "PUT", "/v3/{p}/types/{t}/encryption/{e}", Some(json!({"encryption": {"key_size": -1}})), 400),
        call(Admin, "PUT", "/v3/{p}/types/{t}/encryption/{e}", Some(json!({"encryption": {"key_size": "big"}})), 400),
        call(Admin, "PUT", "/v3/{p}/types/{t}/encryption/{e}", Some(json!({"encryption": {"salt": "x"}})), 400),
        call(Admin, "PUT", "/v3/{p}/types/{t}/encryption/{e}", Some(json!({"encryption": "luks"})), 400),
        call(Admin, "POST", &format!("/v3/{{p}}/types/{uuid}/encryption"), Some(luks.clone()), 404),
        call(Admin, "GET", &format!("/v3/{{p}}/types/{uuid}/encryption"), None, 404),
        call(Member, "GET", "/v3/{p}/types/{t}/encryption", None, 403),
        call(Member, "POST", "/v3/{p}/types/{t}/encryption", Some(luks.clone()), 403),
        // Delete; then the type has none and volumes may be made again.
        call(Admin, "DELETE", "/v3/{p}/types/{t}/encryption/{e}", None, 202),
        call(Admin, "DELETE", "/v3/{p}/types/{t}/encryption/{e}", None, 404),
        call(Admin, "PUT", "/v3/{p}/types/{t}/encryption/{e}", Some(json!({"encryption": {"key_size": 64}})), 404),
        call(Admin, "GET", "/v3/{p}/types/{t}/encryption", None, 200).is(json!({})),
        call(Admin, "GET", "/v3/{p}/types/{t}/encryption/cipher", None, 404),
        call(Member, "POST", "/v3/{p}/volumes", Some(json!({"volume": {"size": 1, "volume_type": "enc"}})), 202)
            .save("vol", "/volume/id"),
        call(Member, "GET", "/v3/{p}/volumes/{vol}", None, 200)
            .save("encrypted", "/volume/volume_type"),
        // While a volume has the type, its encryption cannot change.
        call(Admin, "POST", "/v3/{p}/types/{t}/encryption", Some(luks.clone()), 400)
            .says("Volume type in use"),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retype() {
    let mut w = World::new().await;
    w.run(vec![
        call(
            Admin,
            "POST",
            "/v3/{p}/types",
            Some(json!({"volume_type": {"name": "one"}})),
            200,
        )
        .save("one", "/volume_type/id"),
        call(
            Admin,
            "POST",
            "/v3/{p}/types",
            Some(json!({"volume_type": {"name": "two",
            "extra_specs": {"volume_backend_name": "file", "multiattach": "<is> True"}}})),
            200,
        )
        .save("two", "/volume_type/id"),
        call(
            Admin,
            "POST",
            "/v3/{p}/types",
            Some(json!({"volume_type": {"name": "elsewhere",
            "extra_specs": {"volume_backend_name": "ceph"}}})),
            200,
        ),
        call(
            Admin,
            "POST",
            "/v3/{p}/types",
            Some(json!({"volume_type": {"name": "hidden",
            "os-volume-type-access:is_public": false}})),
            200,
        ),
        call(
            Admin,
            "POST",
            "/v3/{p}/types",
            Some(json!({"volume_type": {"name": "locked"}})),
            200,
        )
        .save("locked", "/volume_type/id"),
        call(
            Admin,
            "POST",
            "/v3/{p}/types/{locked}/encryption",
            Some(json!({"encryption": {
            "provider": "luks", "control_location": "front-end"}})),
            200,
        ),
        call(
            Member,
            "POST",
            "/v3/{p}/volumes",
            Some(json!({"volume": {"size": 1, "name": "r", "volume_type": "one"}})),
            202,
        )
        .save("vol", "/volume/id"),
        Step::Volume(Member, "vol", "available"),
        // Same backend: a change of the record (by id or by name).
        call(
            Member,
            "POST",
            "/v3/{p}/volumes/{vol}/action",
            Some(json!({"os-retype": {"new_type": "{two}"}})),
            202,
        ),
        call(Member, "GET", "/v3/{p}/volumes/{vol}", None, 200).save("now", "/volume/volume_type"),
        call(
            Member,
            "POST",
            "/v3/{p}/volumes/{vol}/action",
            Some(json!({"os-retype": {"new_type": "two"}})),
            400,
        )
        .says("same as original"),
        call(
            Member,
            "POST",
            "/v3/{p}/volumes/{vol}/action",
            Some(json!({"os-retype": {"new_type": "one", "migration_policy": "never"}})),
            202,
        ),
        call(Member, "GET", "/v3/{p}/volumes/{vol}", None, 200).save("back", "/volume/volume_type"),
        // A type no backend here satisfies.
        call(
            Member,
            "POST",
            "/v3/{p}/volumes/{vol}/action",
            Some(json!({"os-retype": {"new_type": "elsewhere", "migration_policy": "never"}})),
            400,
        )
        .says("No valid backend was found"),
        call(
            Member,
            "POST",
            "/v3/{p}/volumes/{vol}/action",
            Some(json!({"os-retype": {"new_type": "elsewhere", "migration_policy": "on-demand"}})),
            400,
        )
        .says("No valid backend was found"),
        call(
            Member,
            "POST",
            "/v3/{p}/volumes/{vol}/action",
            Some(json!({"os-retype": {"new_type": "locked"}})),
            400,
        )
        .says("encrypted volumes are not supported yet"),
        call(
            Member,
            "POST",
            "/v3/{p}/volumes/{vol}/action",
            Some(json!({"os-retype": {"new_type": "hidden"}})),
            404,
        ),
        call(
            Member,
            "POST",
            "/v3/{p}/volumes/{vol}/action",
            Some(json!({"os-retype": {"new_type": "nope"}})),
            404,
        ),
        call(
            Member,
            "POST",
            "/v3/{p}/volumes/{vol}/action",
            Some(json!({"os-retype": {}})),
            400,
        ),
        call(
            Member,
            "POST",
            "/v3/{p}/volumes/{vol}/action",
            Some(json!({"os-retype": {"new_type": "two", "migration_policy": "sometimes"}})),
            400,
        ),
        call(
            Member,
            "POST",
            "/v3/{p}/volumes/{vol}/action",
            Some(json!({"os-retype": {"new_type": 2}})),
            400,
        ),
        call(
            Reader,
            "POST",
            "/v3/{p}/volumes/{vol}/action",
            Some(json!({"os-retype": {"new_type": "two"}})),
            403,
        ),
        call(
            Other,
            "POST",
            "/v3/{p}/volumes/{vol}/action",
            Some(json!({"os-retype": {"new_type": "two"}})),
            404,
        ),
        // Only available (or in-use) volumes.
        call(
            Admin,
            "POST",
            "/v3/{p}/volumes/{vol}/action",
            Some(json!({"os-reset_status": {"status": "error"}})),
            202,
        ),
        call(
            Member,
            "POST",
            "/v3/{p}/volumes/{vol}/action",
            Some(json!({"os-retype": {"new_type": "two"}})),
            400,
        )
        .says("must be available or in-use"),
        call(
            Admin,
            "POST",
            "/v3/{p}/volumes/{vol}/action",
            Some(json!({"os-reset_status": {"status": "available"}})),
            202,
        ),
        // The type's use moved with the volume.
        call(Admin, "DELETE", "/v3/{p}/types/{two}", None, 202),
        call(Admin, "DELETE", "/v3/{p}/types/{one}", None, 400),
    ])
    .await;
    assert_eq!(w.vars["now"], "two");
    assert_eq!(w.vars["back"], "one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_no_backend_satisfies_leaves_the_volume_in_error() {
    let mut w = World::new().await;
    w.run(vec![
        call(
            Admin,
            "POST",
            "/v3/{p}/types",
            Some(json!({"volume_type": {"name": "iscsi",
            "extra_specs": {"storage_protocol": "iSCSI", "vendor_name": "Open Source"}}})),
            200,
        ),
        call(
            Admin,
            "POST",
            "/v3/{p}/types",
            Some(json!({"volume_type": {"name": "ours",
            "extra_specs": {"storage_protocol": "nbd", "vendor_name": "Scoria"}}})),
            200,
        ),
        call(
            Member,
            "POST",
            "/v3/{p}/volumes",
            Some(json!({"volume": {"size": 1, "volume_type": "iscsi"}})),
            202,
        )
        .save("bad", "/volume/id"),
        Step::Volume(Member, "bad", "error"),
        call(
            Member,
            "GET",
            "/v3/{p}/volumes/{bad}?with_progress=true",
            None,
            200,
        )
        .save("why", "/volume/scoria:progress/last_error"),
        call(
            Member,
            "POST",
            "/v3/{p}/volumes",
            Some(json!({"volume": {"size": 1, "volume_type": "ours"}})),
            202,
        )
        .save("good", "/volume/id"),
        Step::Volume(Member, "good", "available"),
    ])
    .await;
    let why = &w.vars["why"];
    assert!(why.contains("No valid backend was found"), "{why}");
    assert!(why.contains("storage_protocol"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_specs() {
    let mut w = World::new().await;
    let links = |id: &str| {
        json!([
            {"rel": "self", "href": format!("http://127.0.0.1:8776/v3/{{admin_p}}/qos-specs/{{{id}}}")},
            {"rel": "bookmark", "href": format!("http://127.0.0.1:8776/{{admin_p}}/qos-specs/{{{id}}}")},
        ])
    };
    let uuid = "3f1c2b9e-8d4a-4e6f-9b7c-1a2b3c4d5e6f";
    w.run(vec![
        call(Admin, "POST", "/v3/{p}/qos-specs", Some(json!({"qos_specs": {
            "name": "gold", "consumer": "front-end", "read_iops_sec": "2000"}})), 200)
            .save("q", "/qos_specs/id")
            .is(json!({"qos_specs": {"id": "{q}", "name": "gold", "consumer": "front-end",
                "specs": {"read_iops_sec": "2000"}}, "links": links("q")})),
        call(Admin, "POST", "/v3/{p}/qos-specs", Some(json!({"qos_specs": {"name": " silver "}})), 200)
            .save("s", "/qos_specs/id")
            .is(json!({"qos_specs": {"id": "{s}", "name": "silver", "consumer": "back-end",
                "specs": {}}, "links": links("s")})),
        call(Admin, "POST", "/v3/{p}/qos-specs", Some(json!({"qos_specs": {"name": "gold"}})), 409),
        call(Admin, "POST", "/v3/{p}/qos-specs", Some(json!({"qos_specs": {"name": "x", "consumer": "middle"}})), 400)
            .says("Valid consumer"),
        call(Admin, "POST", "/v3/{p}/qos-specs", Some(json!({"qos_specs": {"name": "  "}})), 400),
        call(Admin, "POST", "/v3/{p}/qos-specs", Some(json!({"qos_specs": {"consumer": "both"}})), 400),
        call(Admin, "POST", "/v3/{p}/qos-specs", Some(json!({"qos_specs": {"name": "x", "iops": 5}})), 400),
        call(Admin, "POST", "/v3/{p}/qos-specs", Some(json!({"qos_specs": "x"})), 400),
        call(Member, "POST", "/v3/{p}/qos-specs", Some(json!({"qos_specs": {"name": "mine"}})), 403),
        call(Admin, "GET", "/v3/{p}/qos-specs", None, 200)
            .is(json!({"qos_specs": [
                {"id": "{q}", "name": "gold", "consumer": "front-end", "specs": {"read_iops_sec": "2000"}},
                {"id": "{s}", "name": "silver", "consumer": "back-end", "specs": {}}]})),
        call(Admin, "GET", "/v3/{p}/qos-specs/{q}", None, 200)
            .is(json!({"qos_specs": {"id": "{q}", "name": "gold", "consumer": "front-end",
                "specs": {"read_iops_sec": "2000"}}, "links": links("q")})),
        call(Admin, "GET", &format!("/v3/{{p}}/qos-specs/{uuid}"), None, 404)
            .says("No such QoS spec"),
        call(Reader, "GET", "/v3/{p}/qos-specs", None, 403),
        // Set and unset keys.
        call(Admin, "PUT", "/v3/{p}/qos-specs/{q}", Some(json!({"qos_specs": {"iops_bytes": "500"}})), 200)
            .is(json!({"qos_specs": {"iops_bytes": "500"}})),
        call(Admin, "PUT", "/v3/{p}/qos-specs/{q}", Some(json!({"qos_specs": {"consumer": "both"}})), 200),
        call(Admin, "PUT", "/v3/{p}/qos-specs/{q}", Some(json!({"qos_specs": {"consumer": "nobody"}})), 400),
        call(Admin, "PUT", "/v3/{p}/qos-specs/{q}", Some(json!({"qos_specs": {"k": null}})), 400),
        call(Admin, "PUT", &format!("/v3/{{p}}/qos-specs/{uuid}"), Some(json!({"qos_specs": {"k": "v"}})), 404),
        call(Admin, "PUT", "/v3/{p}/qos-specs/{q}/delete_keys", Some(json!({"keys": ["iops_bytes", "absent"]})), 404)
            .says("has no spec with key absent"),
        call(Admin, "PUT", "/v3/{p}/qos-specs/{q}/delete_keys", Some(json!({"keys": ["iops_bytes", "iops_bytes"]})), 400),
        call(Admin, "PUT", "/v3/{p}/qos-specs/{q}/delete_keys", Some(json!({"keys": "iops_bytes"})), 400),
        call(Admin, "PUT", "/v3/{p}/qos-specs/{q}/delete_keys", Some(json!({})), 400),
        call(Admin, "GET", "/v3/{p}/qos-specs/{q}", None, 200)
            .is(json!({"qos_specs": {"id": "{q}", "name": "gold", "consumer": "both",
                "specs": {"read_iops_sec": "2000", "iops_bytes": "500"}}, "links": links("q")})),
        call(Admin, "PUT", "/v3/{p}/qos-specs/{q}/delete_keys", Some(json!({"keys": ["iops_bytes"]})), 202),
        call(Admin, "GET", "/v3/{p}/qos-specs/{q}", None, 200)
            .is(json!({"qos_specs": {"id": "{q}", "name": "gold", "consumer": "both",
                "specs": {"read_iops_sec": "2000"}}, "links": links("q")})),
        // Associations.
        call(Admin, "POST", "/v3/{p}/types", Some(json!({"volume_type": {"name": "a-type"}})), 200)
            .save("t1", "/volume_type/id"),
        call(Admin, "POST", "/v3/{p}/types", Some(json!({"volume_type": {"name": "b-type"}})), 200)
            .save("t2", "/volume_type/id"),
        call(Admin, "GET", "/v3/{p}/qos-specs/{q}/associate?vol_type_id={t1}", None, 202),
        call(Admin, "GET", "/v3/{p}/qos-specs/{q}/associate?vol_type_id={t1}", None, 202),
        call(Admin, "GET", "/v3/{p}/qos-specs/{q}/associate?vol_type_id={t2}", None, 202),
        call(Admin, "GET", "/v3/{p}/qos-specs/{s}/associate?vol_type_id={t1}", None, 400)
            .says("already associated with another qos specs"),
        call(Admin, "GET", "/v3/{p}/qos-specs/{q}/associate", None, 400)
            .says("must not be None"),
        call(Admin, "GET", &format!("/v3/{{p}}/qos-specs/{{q}}/associate?vol_type_id={uuid}"), None, 404),
        call(Admin, "GET", &format!("/v3/{{p}}/qos-specs/{uuid}/associate?vol_type_id={{t1}}"), None, 404),
        call(Admin, "GET", "/v3/{p}/qos-specs/{q}/associations", None, 200)
            .is(json!({"qos_associations": [
                {"association_type": "volume_type", "id": "{t1}", "name": "a-type"},
                {"association_type": "volume_type", "id": "{t2}", "name": "b-type"}]})),
        call(Admin, "GET", "/v3/{p}/types/{t1}", None, 200)
            .is(json!({"volume_type": {"id": "{t1}", "name": "a-type", "description": null,
                "is_public": true, "os-volume-type-access:is_public": true, "extra_specs": {},
                "qos_specs_id": "{q}"}})),
        call(Reader, "GET", "/v3/{p}/types/{t1}", None, 200)
            .is(json!({"volume_type": {"id": "{t1}", "name": "a-type", "description": null,
                "is_public": true, "os-volume-type-access:is_public": true, "extra_specs": {}}})),
        // In use: delete needs force.
        call(Admin, "DELETE", "/v3/{p}/qos-specs/{q}?force=False", None, 400)
            .says("still associated"),
        call(Admin, "GET", "/v3/{p}/qos-specs/{q}/disassociate?vol_type_id={t1}", None, 202),
        call(Admin, "GET", "/v3/{p}/qos-specs/{q}/disassociate?vol_type_id={t1}", None, 202),
        call(Admin, "GET", "/v3/{p}/qos-specs/{q}/disassociate", None, 400),
        call(Admin, "GET", "/v3/{p}/qos-specs/{q}/associations", None, 200)
            .is(json!({"qos_associations": [
                {"association_type": "volume_type", "id": "{t2}", "name": "b-type"}]})),
        call(Admin, "GET", "/v3/{p}/qos-specs/{q}/disassociate_all", None, 202),
        call(Admin, "GET", "/v3/{p}/qos-specs/{q}/associations", None, 200)
            .is(json!({"qos_associations": []})),
        call(Admin, "GET", &format!("/v3/{{p}}/qos-specs/{uuid}/disassociate_all"), None, 404),
        call(Admin, "GET", "/v3/{p}/qos-specs/{q}/associate?vol_type_id={t1}", None, 202),
        call(Admin, "DELETE", "/v3/{p}/qos-specs/{q}?force=True", None, 202),
        call(Admin, "GET", "/v3/{p}/types/{t1}", None, 200)
            .save("after", "/volume_type/name"),
        call(Admin, "DELETE", "/v3/{p}/qos-specs/{q}", None, 404),
        call(Admin, "DELETE", "/v3/{p}/qos-specs/{s}?force=maybe", None, 400),
        call(Admin, "DELETE", "/v3/{p}/qos-specs/{s}", None, 202),
        call(Admin, "GET", "/v3/{p}/qos-specs", None, 200).is(json!({"qos_specs": []})),
    ])
    .await;
}
