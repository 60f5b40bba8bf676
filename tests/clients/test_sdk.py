"""The core path through openstacksdk's block_storage v3 proxy."""

import openstack

from conftest import cloud_env, wait_for


def test_volume_lifecycle_with_openstacksdk(server, monkeypatch):
    env = cloud_env(server)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", env["OS_CLIENT_CONFIG_FILE"])
    conn = openstack.connect(cloud="scoria")
    v = conn.block_storage.create_volume(size=1, name="sdk-v1", metadata={"k": "v"})
    v = conn.block_storage.wait_for_status(v, status="available", failures=["error"], interval=0.2, wait=60)
    assert v.size == 1 and v.metadata == {"k": "v"}

    got = conn.block_storage.get_volume(v.id)
    assert got.name == "sdk-v1"
    assert any(x.id == v.id for x in conn.block_storage.volumes(details=True))

    conn.block_storage.extend_volume(v, 3)
    # The resource object still says `available`; fetch until the new size shows.
    wait_for(lambda: (lambda x: x.size == 3 and x.status == "available")(conn.block_storage.get_volume(v.id)),
             "extended to 3 GiB")

    limits = conn.block_storage.get_limits()
    assert limits.absolute.total_volumes_used >= 1

    conn.block_storage.delete_volume(v)
    conn.block_storage.wait_for_delete(v, interval=0.2, wait=60)
    assert conn.block_storage.find_volume("sdk-v1") is None
