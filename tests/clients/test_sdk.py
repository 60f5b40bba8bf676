"""The core path through openstacksdk's block_storage v3 proxy."""

import openstack

from conftest import cloud_env


def test_volume_lifecycle_with_openstacksdk(server):
    env = cloud_env(server)
    conn = openstack.connect(cloud="scoria", config_files=[env["OS_CLIENT_CONFIG_FILE"]])
    v = conn.block_storage.create_volume(size=1, name="sdk-v1", metadata={"k": "v"})
    v = conn.block_storage.wait_for_status(v, status="available", failures=["error"], interval=0.2, wait=60)
    assert v.size == 1 and v.metadata == {"k": "v"}

    got = conn.block_storage.get_volume(v.id)
    assert got.name == "sdk-v1"
    assert any(x.id == v.id for x in conn.block_storage.volumes(details=True))

    conn.block_storage.extend_volume(v, 3)
    v = conn.block_storage.wait_for_status(v, status="available", failures=["error", "error_extending"],
                                           interval=0.2, wait=60)
    assert conn.block_storage.get_volume(v.id).size == 3

    limits = conn.block_storage.get_limits()
    assert limits.absolute.total_volumes_used >= 1

    conn.block_storage.delete_volume(v)
    conn.block_storage.wait_for_delete(v, interval=0.2, wait=60)
    assert conn.block_storage.find_volume("sdk-v1") is None
