"""Snapshots through the stock `openstack` CLI and openstacksdk: take, list,
show, change and delete them, make volumes from them, revert to one, and
delete a volume with its snapshots. Data is checked in the volumes' image
files, found through the server's own image records."""

import sqlite3
import subprocess

import openstack
import pytest

from conftest import CliError, cloud_env, osc, wait_for

# Guest data: (offset, length, byte).
OLD = [(0, 1 << 20, 0xAB), (700 << 20, 4096, 0xCD)]
NEW = [(0, 1 << 20, 0x11), (700 << 20, 4096, 0x22)]


def image_file(server, volume_id):
    """The active image file of a volume and its format, as the server's
    records say (read-only: the server writes its database)."""
    db = sqlite3.connect("file:%s?mode=ro" % (server.data / "scoria.db"), uri=True)
    try:
        row = db.execute(
            "SELECT i.backend, i.name, i.format FROM volumes v JOIN images i ON i.id = v.image_id"
            " WHERE v.id = ?", (volume_id,)).fetchone()
    finally:
        db.close()
    assert row, "volume %s has no image" % volume_id
    backend, name, fmt = row
    assert backend == "file", backend
    return server.data / "volumes" / name, fmt


def qemu_io(path, fmt, command, read_only=False):
    args = ["qemu-io", "-f", fmt] + (["-r"] if read_only else []) + ["-c", command, str(path)]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def write(server, volume_id, data):
    path, fmt = image_file(server, volume_id)
    for offset, length, byte in data:
        p = qemu_io(path, fmt, "write -P 0x%x %d %d" % (byte, offset, length))
        assert p.returncode == 0, p.stderr


def reads(server, volume_id, data):
    path, fmt = image_file(server, volume_id)
    for offset, length, byte in data:
        p = qemu_io(path, fmt, "read -P 0x%x %d %d" % (byte, offset, length), read_only=True)
        if p.returncode != 0 or "Pattern verification failed" in p.stdout + p.stderr:
            return False
    return True


def volume_status(env, name):
    return osc(env, "volume", "show", name)["status"]


def snapshot_status(env, name):
    return osc(env, "volume", "snapshot", "show", name)["status"]


def gone(env, *args):
    try:
        osc(env, *args)
    except CliError:
        return True
    return False


def test_snapshots_with_the_cli(server):
    env = cloud_env(server)
    src = osc(env, "volume", "create", "--size", "1", "cli-snap-src")
    wait_for(lambda: volume_status(env, "cli-snap-src") == "available", "source available")
    write(server, src["id"], OLD)

    snap = osc(env, "volume", "snapshot", "create", "--volume", "cli-snap-src",
               "--description", "before", "--property", "tier=gold", "cli-snap")
    assert snap["volume_id"] == src["id"] and snap["size"] == 1
    wait_for(lambda: snapshot_status(env, "cli-snap") == "available", "snapshot available")
    write(server, src["id"], NEW)

    listed = osc(env, "volume", "snapshot", "list")
    assert any(row["Name"] == "cli-snap" and row["Status"] == "available" for row in listed)
    long = osc(env, "volume", "snapshot", "list", "--long", "--volume", "cli-snap-src")
    assert [row["Name"] for row in long] == ["cli-snap"]
    shown = osc(env, "volume", "snapshot", "show", "cli-snap")
    assert shown["description"] == "before" and shown["id"] == snap["id"]
    assert "gold" in str(shown["properties"])

    osc(env, "volume", "snapshot", "set", "--name", "cli-snap-b", "--description", "after",
        "--property", "owner=ops", "cli-snap", parse=False)
    shown = osc(env, "volume", "snapshot", "show", "cli-snap-b")
    assert shown["description"] == "after" and "ops" in str(shown["properties"])
    osc(env, "volume", "snapshot", "unset", "--property", "tier", "cli-snap-b", parse=False)
    assert "gold" not in str(osc(env, "volume", "snapshot", "show", "cli-snap-b")["properties"])

    # A volume from the snapshot, larger than it: the data of then.
    made = osc(env, "volume", "create", "--snapshot", "cli-snap-b", "--size", "2", "cli-from-snap")
    assert made["snapshot_id"] == snap["id"] and made["size"] == 2
    wait_for(lambda: volume_status(env, "cli-from-snap") == "available", "volume from snapshot")
    assert reads(server, made["id"], OLD)
    assert not reads(server, made["id"], NEW)
    # A clone: the data of now.
    clone = osc(env, "volume", "create", "--source", "cli-snap-src", "cli-snap-clone")
    wait_for(lambda: volume_status(env, "cli-snap-clone") == "available", "clone available")
    assert clone["source_volid"] == src["id"] and reads(server, clone["id"], NEW)

    # The snapshot goes while a volume made from it stays, with its data.
    osc(env, "volume", "snapshot", "delete", "cli-snap-b", parse=False)
    wait_for(lambda: gone(env, "volume", "snapshot", "show", "cli-snap-b"), "snapshot deleted")
    after = osc(env, "volume", "show", "cli-from-snap")
    assert after["status"] == "available" and after["size"] == 2
    assert reads(server, made["id"], OLD)

    # A volume with snapshots is deleted only with them (--purge: cascade).
    osc(env, "volume", "snapshot", "create", "--volume", "cli-snap-src", "cli-snap-2")
    wait_for(lambda: snapshot_status(env, "cli-snap-2") == "available", "second snapshot")
    with pytest.raises(CliError):
        osc(env, "volume", "delete", "cli-snap-src", parse=False)
    assert volume_status(env, "cli-snap-src") == "available"
    osc(env, "volume", "delete", "--purge", "cli-snap-src", parse=False)
    wait_for(lambda: gone(env, "volume", "show", "cli-snap-src"), "source deleted")
    assert gone(env, "volume", "snapshot", "show", "cli-snap-2")
    # What was made from it stays.
    assert reads(server, made["id"], OLD) and reads(server, clone["id"], NEW)
    for name in ("cli-from-snap", "cli-snap-clone"):
        osc(env, "volume", "delete", name, parse=False)


def test_revert_with_the_cli_and_snapshots_with_openstacksdk(server, monkeypatch):
    env = cloud_env(server)
    v = osc(env, "volume", "create", "--size", "1", "rev-v")
    wait_for(lambda: volume_status(env, "rev-v") == "available", "rev-v available")
    write(server, v["id"], OLD)
    osc(env, "volume", "snapshot", "create", "--volume", "rev-v", "rev-s1")
    wait_for(lambda: snapshot_status(env, "rev-s1") == "available", "rev-s1")
    write(server, v["id"], NEW)
    osc(env, "volume", "snapshot", "create", "--volume", "rev-v", "rev-s2")
    wait_for(lambda: snapshot_status(env, "rev-s2") == "available", "rev-s2")
    write(server, v["id"], [(0, 1 << 20, 0x77)])

    # Revert exists from 3.40 on; any snapshot will do, not only the latest.
    osc(env, "--os-volume-api-version", "3.40", "volume", "revert", "rev-s1", parse=False)
    wait_for(lambda: volume_status(env, "rev-v") == "available", "reverted")
    assert reads(server, v["id"], OLD)

    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", env["OS_CLIENT_CONFIG_FILE"])
    conn = openstack.connect(cloud="scoria")
    bs = conn.block_storage
    s2 = bs.find_snapshot("rev-s2", ignore_missing=False)
    vol = bs.get_volume(v["id"])
    bs.revert_volume_to_snapshot(vol, s2)
    wait_for(lambda: bs.get_volume(v["id"]).status == "available", "reverted by the SDK")
    assert reads(server, v["id"], NEW)

    s3 = bs.create_snapshot(volume_id=v["id"], name="sdk-s3", metadata={"k": "v"})
    s3 = bs.wait_for_status(s3, status="available", failures=["error"], interval=0.2, wait=60)
    got = bs.get_snapshot(s3.id)
    assert got.name == "sdk-s3" and got.metadata == {"k": "v"} and got.size == 1
    # openstacksdk asks for 3.65: the later fields are there.
    assert got.user_id and got.consumes_quota is True
    assert got.progress == "100%" and got.project_id == conn.current_project_id
    assert s3.id in [s.id for s in bs.snapshots(details=True, volume_id=v["id"])]
    bs.set_snapshot_metadata(got, a="1")
    assert bs.fetch_snapshot_metadata(got).metadata == {"k": "v", "a": "1"}
    bs.delete_snapshot_metadata(got, keys=["k"])
    assert bs.fetch_snapshot_metadata(got).metadata == {"a": "1"}
    bs.update_snapshot(got, description="by the sdk")
    assert bs.get_snapshot(s3.id).description == "by the sdk"

    made = bs.create_volume(snapshot_id=s3.id, name="sdk-from-s3")
    made = bs.wait_for_status(made, status="available", failures=["error"], interval=0.2, wait=60)
    assert made.snapshot_id == s3.id and made.size == 1

    bs.delete_snapshot(s3)
    bs.wait_for_delete(s3, interval=0.2, wait=60)
    assert bs.find_snapshot("sdk-s3") is None
    assert bs.get_volume(made.id).status == "available" and reads(server, made.id, NEW)

    bs.delete_volume(vol, cascade=True)
    bs.wait_for_delete(vol, interval=0.2, wait=60)
    assert bs.find_snapshot("rev-s1") is None and bs.find_snapshot("rev-s2") is None
    bs.delete_volume(made)
