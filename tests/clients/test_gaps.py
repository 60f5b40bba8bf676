"""Issue 15 through openstacksdk and the CLI: the published filter table,
per-project default types, and Cinder's answer to a URL whose project is not
the token's."""

import openstack
import pytest

from conftest import cloud_env, osc


@pytest.fixture
def conn(server, monkeypatch):
    env = cloud_env(server)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", env["OS_CLIENT_CONFIG_FILE"])
    c = openstack.connect(cloud="scoria", block_storage_api_version="3")
    yield c
    c.close()


def test_resource_filters_are_the_enforced_table(conn):
    table = {f.resource: f.filters for f in conn.block_storage.resource_filters()}
    assert table == {
        "volume": ["name", "status", "metadata", "bootable", "availability_zone", "group_id"],
        "snapshot": ["name", "status", "volume_id", "metadata"],
        "backup": ["name", "status", "volume_id"],
        "group": ["name", "status"],
        "message": ["resource_uuid", "resource_type", "event_id", "request_id",
                    "message_level"],
    }
    only = list(conn.block_storage.resource_filters(resource="snapshot"))
    assert [f.resource for f in only] == ["snapshot"]


def test_default_types_with_openstacksdk(server, conn):
    env = cloud_env(server)
    project = osc(env, "project", "create", "--domain", "default", "sdk-defaults")
    gold = conn.block_storage.create_type(name="sdk-gold")
    d = conn.block_storage.set_default_type(project["id"], gold)
    assert d.volume_type_id == gold.id
    shown = conn.block_storage.show_default_type(project["id"])
    assert shown.volume_type_id == gold.id and shown.project_id == project["id"]
    listed = {x.project_id: x.volume_type_id for x in conn.block_storage.default_types()}
    assert listed == {project["id"]: gold.id}
    conn.block_storage.unset_default_type(project["id"])
    assert list(conn.block_storage.default_types()) == []
    conn.block_storage.delete_type(gold)


def test_a_url_with_another_project_is_malformed(server, conn):
    env = cloud_env(server)
    other = osc(env, "project", "create", "--domain", "default", "sdk-other")
    endpoint = conn.block_storage.get_endpoint()
    base = endpoint.rsplit("/v3", 1)[0]
    r = conn.session.get(base + "/v3/%s/volumes" % other["id"], raise_exc=False,
                         headers={"Accept": "application/json"})
    assert r.status_code == 400
    assert r.json() == {"badRequest": {"code": 400, "message": "Malformed request url"}}
    # The admin's own project in the URL, the other as the quota target: fine.
    own = conn.current_project_id
    r = conn.session.get(base + "/v3/%s/os-quota-sets/%s" % (own, other["id"]),
                         raise_exc=False)
    assert r.status_code == 200
