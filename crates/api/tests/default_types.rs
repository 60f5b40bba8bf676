//! Per-project default volume types (3.62): set, show, list, unset by an
//! admin; a volume created without a type in that project gets it.

mod support;

use serde_json::{Value, json};
use support::TestApp;
use support::steps::DEFAULT_TYPE;

const V62: &[(&str, &str)] = &[("OpenStack-API-Version", "volume 3.62")];

async fn call(
    t: &TestApp,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> support::Reply {
    t.raw(
        method,
        path,
        Some(token),
        V62,
        body.map(|b| b.to_string().into_bytes()),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projects_default_type_is_what_its_volumes_get() {
    let t = TestApp::new().await;
    let support::Personas {
        a,
        b,
        admin: (admin, own),
        member: (member, _),
        other: (b_member, _),
        ..
    } = t.personas().await;
    let r = call(
        &t,
        "POST",
        &format!("/v3/{own}/types"),
        &admin,
        Some(json!({"volume_type": {"name": "gold"}})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let gold = r.body["volume_type"]["id"].as_str().expect("id").to_owned();

    // Below 3.62 the routes do not exist.
    let r = t
        .raw(
            "GET",
            &format!("/v3/{own}/default-types"),
            Some(&admin),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);

    // Set by name; shown and listed by id.
    let r = call(
        &t,
        "PUT",
        &format!("/v3/{own}/default-types/{a}"),
        &admin,
        Some(json!({"default_type": {"volume_type": "gold"}})),
    )
    .await;
    assert_eq!(
        (r.status, &r.body),
        (
            200,
            &json!({"default_type": {"project_id": a, "volume_type_id": gold}})
        )
    );
    let r = call(
        &t,
        "GET",
        &format!("/v3/{own}/default-types/{a}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(
        r.body,
        json!({"default_type": {"project_id": a, "volume_type_id": gold}})
    );
    let r = call(&t, "GET", &format!("/v3/{own}/default-types"), &admin, None).await;
    assert_eq!(
        r.body,
        json!({"default_types": [{"project_id": a, "volume_type_id": gold}]})
    );

    // A's volumes without a type get gold; B's still get __DEFAULT__; A's
    // member sees gold as `types/default`.
    let va = t.volume(&member, &a).await;
    let r = t
        .call("GET", &format!("/v3/{a}/volumes/{va}"), Some(&member), None)
        .await;
    assert_eq!(r.body["volume"]["volume_type"], "gold", "{}", r.body);
    let vb = t.volume(&b_member, &b).await;
    let r = t
        .call(
            "GET",
            &format!("/v3/{b}/volumes/{vb}"),
            Some(&b_member),
            None,
        )
        .await;
    assert_eq!(r.body["volume"]["volume_type"], "__DEFAULT__", "{}", r.body);
    let r = t
        .call(
            "GET",
            &format!("/v3/{a}/types/default"),
            Some(&member),
            None,
        )
        .await;
    assert_eq!(r.body["volume_type"]["id"], gold.as_str(), "{}", r.body);

    // A type that is a project's default is not deleted.
    let r = call(
        &t,
        "DELETE",
        &format!("/v3/{own}/types/{gold}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);

    // Refusals: members, an unknown type, a project that does not exist,
    // a body of the wrong shape.
    let r = call(
        &t,
        "PUT",
        &format!("/v3/{a}/default-types/{a}"),
        &member,
        Some(json!({"default_type": {"volume_type": "gold"}})),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = call(
        &t,
        "PUT",
        &format!("/v3/{own}/default-types/{b}"),
        &admin,
        Some(json!({"default_type": {"volume_type": "platinum"}})),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = call(
        &t,
        "PUT",
        &format!("/v3/{own}/default-types/no-such-project"),
        &admin,
        Some(json!({"default_type": {"volume_type": "gold"}})),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = call(
        &t,
        "PUT",
        &format!("/v3/{own}/default-types/{b}"),
        &admin,
        Some(json!({"default_type": {"volume_type": "gold", "x": 1}})),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = call(
        &t,
        "GET",
        &format!("/v3/{own}/default-types/{b}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);

    // Unset: A's next volume gets __DEFAULT__ again.
    let r = call(
        &t,
        "DELETE",
        &format!("/v3/{own}/default-types/{a}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = call(
        &t,
        "DELETE",
        &format!("/v3/{own}/default-types/{a}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);
    let va2 = t.volume(&member, &a).await;
    let r = t
        .call(
            "GET",
            &format!("/v3/{a}/volumes/{va2}"),
            Some(&member),
            None,
        )
        .await;
    assert_eq!(r.body["volume"]["volume_type"], "__DEFAULT__", "{}", r.body);
    let r = t
        .call(
            "GET",
            &format!("/v3/{a}/types/default"),
            Some(&member),
            None,
        )
        .await;
    assert_eq!(r.body["volume_type"]["id"], DEFAULT_TYPE, "{}", r.body);
}
