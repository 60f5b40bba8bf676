"""The core path through the stock `openstack` CLI (python-openstackclient)."""

import pytest

from conftest import CliError, cloud_env, osc, wait_for


def status_of(env, name):
    return osc(env, "volume", "show", name)["status"]


def test_volume_lifecycle_with_the_cli(server):
    env = cloud_env(server)
    v = osc(env, "volume", "create", "--size", "1", "cli-v1")
    assert v["size"] == 1 and v["name"] == "cli-v1"
    wait_for(lambda: status_of(env, "cli-v1") == "available", "cli-v1 available")

    listed = osc(env, "volume", "list")
    assert any(row["Name"] == "cli-v1" and row["Status"] == "available" for row in listed)
    shown = osc(env, "volume", "show", "cli-v1")
    assert shown["id"] == v["id"] and shown["size"] == 1

    osc(env, "volume", "set", "--name", "cli-v1b", "--property", "tier=gold",
        "--property", "owner=ops", "cli-v1", parse=False)
    shown = osc(env, "volume", "show", "cli-v1b")
    assert shown["properties"] == {"tier": "gold", "owner": "ops"} or \
        shown["properties"] in ("owner='ops', tier='gold'", "tier='gold', owner='ops'")
    osc(env, "volume", "unset", "--property", "owner", "cli-v1b", parse=False)
    props = osc(env, "volume", "show", "cli-v1b")["properties"]
    assert "owner" not in str(props) and "gold" in str(props)

    osc(env, "volume", "set", "--size", "2", "cli-v1b", parse=False)
    wait_for(lambda: osc(env, "volume", "show", "cli-v1b")["size"] == 2
             and status_of(env, "cli-v1b") == "available", "extended to 2 GiB")

    osc(env, "volume", "delete", "cli-v1b", parse=False)
    wait_for(lambda: all(row["Name"] != "cli-v1b" for row in osc(env, "volume", "list")), "deleted")
    with pytest.raises(CliError):
        osc(env, "volume", "show", "cli-v1b")


def test_a_clone_with_the_cli(server):
    env = cloud_env(server)
    osc(env, "volume", "create", "--size", "1", "--bootable", "cli-source")
    wait_for(lambda: status_of(env, "cli-source") == "available", "cli-source available")
    source = osc(env, "volume", "show", "cli-source")
    clone = osc(env, "volume", "create", "--source", "cli-source", "--size", "2", "cli-clone")
    assert clone["source_volid"] == source["id"] and clone["size"] == 2
    wait_for(lambda: status_of(env, "cli-clone") == "available", "cli-clone available")
    shown = osc(env, "volume", "show", "cli-clone")
    assert shown["source_volid"] == source["id"]
    assert str(shown["bootable"]).lower() == "true"
    for name in ("cli-source", "cli-clone"):
        osc(env, "volume", "delete", name, parse=False)
    wait_for(lambda: all(row["Name"] not in ("cli-source", "cli-clone")
                         for row in osc(env, "volume", "list")), "deleted")


def test_projects_are_isolated_and_quota_is_enforced(server):
    admin = cloud_env(server)
    a_vol = osc(admin, "volume", "create", "--size", "1", "admins-volume")
    osc(admin, "project", "create", "--domain", "default", "project-b")
    osc(admin, "user", "create", "--domain", "default", "--project", "project-b",
        "--password", "b-password", "user-b")
    osc(admin, "role", "add", "--project", "project-b", "--user", "user-b", "member", parse=False)
    assignments = osc(admin, "role", "assignment", "list", "--project", "project-b", "--names")
    assert any(a["User"].startswith("user-b") and a["Role"] == "member" for a in assignments)

    b = cloud_env(server, "b", {"b": {
        "auth_url": server.url + "/identity/v3", "username": "user-b", "password": "b-password",
        "project_name": "project-b", "user_domain_name": "Default", "project_domain_name": "Default"}})

    # B sees nothing of A's: not in lists, not by id, cannot delete it.
    assert all(row["ID"] != a_vol["id"] for row in osc(b, "volume", "list"))
    with pytest.raises(CliError):
        osc(b, "volume", "show", a_vol["id"])
    with pytest.raises(CliError):
        osc(b, "volume", "delete", a_vol["id"], parse=False)
    assert osc(admin, "volume", "show", a_vol["id"])["id"] == a_vol["id"]

    # Quota: two volumes, the third is refused with the over-quota message.
    osc(admin, "quota", "set", "--volumes", "2", "project-b", parse=False)
    osc(b, "volume", "create", "--size", "1", "b1")
    osc(b, "volume", "create", "--size", "1", "b2")
    with pytest.raises(CliError) as err:
        osc(b, "volume", "create", "--size", "1", "b3")
    assert "VolumeLimitExceeded" in err.value.stderr and "413" in err.value.stderr, err.value.stderr
    names = sorted(row["Name"] for row in osc(b, "volume", "list"))
    assert names == ["b1", "b2"]


def test_a_revoked_token_is_unusable(server):
    env = cloud_env(server)
    token = osc(env, "token", "issue")
    project = token["project_id"]
    tenv = {k: v for k, v in env.items() if k not in ("OS_CLOUD", "OS_CLIENT_CONFIG_FILE")}
    tenv.update(OS_AUTH_TYPE="token", OS_TOKEN=token["id"], OS_AUTH_URL=server.url + "/identity/v3",
                OS_PROJECT_ID=project, OS_VOLUME_API_VERSION="3", OS_IDENTITY_API_VERSION="3")
    osc(tenv, "volume", "list")
    osc(env, "token", "revoke", token["id"], parse=False)
    with pytest.raises(CliError) as err:
        osc(tenv, "volume", "list")
    assert "401" in err.value.stderr or "authentic" in err.value.stderr.lower()


def test_operator_views_and_user_messages_with_the_cli(server):
    env = cloud_env(server)
    services = osc(env, "volume", "service", "list")
    assert {(s["Binary"], s["Host"]) for s in services} == {
        ("cinder-scheduler", "scoria"), ("cinder-volume", "scoria@file")}
    assert all(s["State"] == "up" and s["Status"] == "enabled" for s in services)

    # A disabled volume service gets no volume: the create fails and a user
    # message says why.
    osc(env, "volume", "service", "set", "--disable", "--disable-reason", "maintenance",
        "scoria@file", "cinder-volume", parse=False)
    try:
        rows = osc(env, "volume", "service", "list", "--long")
        volume_service = next(r for r in rows if r["Binary"] == "cinder-volume")
        assert volume_service["Status"] == "disabled"
        assert volume_service["Disabled Reason"] == "maintenance"
        v = osc(env, "volume", "create", "--size", "1", "cli-unplaced")
        wait_for(lambda: status_of(env, "cli-unplaced") == "error", "cli-unplaced in error")
    finally:
        osc(env, "volume", "service", "set", "--enable", "scoria@file", "cinder-volume",
            parse=False)
    messages = ["--os-volume-api-version", "3.3", "volume", "message"]
    told = [m for m in osc(env, *messages, "list") if m["Resource UUID"] == v["id"]]
    assert len(told) == 1, told
    assert told[0]["Event ID"] == "VOLUME_VOLUME_001_003"
    assert told[0]["Message Level"] == "ERROR"
    osc(env, *messages, "delete", told[0]["ID"], parse=False)
    assert all(m["ID"] != told[0]["ID"] for m in osc(env, *messages, "list"))

    pools = osc(env, "volume", "backend", "pool", "list", "--long")
    assert [p["Name"] for p in pools] == ["scoria@file#file"]
    assert pools[0]["Capabilities"]["vendor_name"] == "Scoria"
    caps = osc(env, "volume", "backend", "capability", "show", "scoria@file")
    assert "thin_provisioning" in {c["Key"] for c in caps}

    # `volume host set --disable` freezes the backend: it leaves the pools.
    osc(env, "volume", "host", "set", "--disable", "scoria@file", parse=False)
    try:
        assert osc(env, "volume", "backend", "pool", "list") in ([], "", None)
    finally:
        osc(env, "volume", "host", "set", "--enable", "scoria@file", parse=False)
    assert len(osc(env, "volume", "backend", "pool", "list")) == 1

    osc(env, "volume", "delete", "cli-unplaced", parse=False)
    wait_for(lambda: all(row["Name"] != "cli-unplaced" for row in osc(env, "volume", "list")),
             "cli-unplaced deleted")
