"""Manage and unmanage with the stock `openstack` CLI, on real files: the
foreign files of a backend are listed (`block storage volume manageable
list`, 3.8) with what stands on what; one is managed (`volume create
--remote-source`) and its data reads back; unmanaged (`volume delete
--remote`), the data is a file of the backend again, listed and intact."""

import shutil
import subprocess

import pytest

from conftest import cloud_env, osc, wait_for

MANAGEABLE = ["--os-volume-api-version", "3.8", "block", "storage", "volume", "manageable",
              "list", "scoria@file"]


def qemu(*args):
    return subprocess.run(list(args), capture_output=True, text=True)


def listed(env):
    rows = osc(env, *MANAGEABLE, "--long")
    return {r["reference"]["source-name"]: r for r in rows}


@pytest.mark.skipif(shutil.which("qemu-io") is None, reason="needs qemu-io")
def test_manage_and_unmanage_with_the_cli(server):
    env = cloud_env(server)
    backend = server.data / "volumes"
    backend.mkdir(parents=True, exist_ok=True)
    golden, overlay = backend / "mg-golden.qcow2", backend / "mg-overlay.qcow2"
    assert qemu("qemu-img", "create", "-f", "qcow2", str(golden), "1G").returncode == 0
    assert qemu("qemu-io", "-f", "qcow2", "-c", "write -P 0x5c 1M 2M", str(golden)).returncode == 0
    assert qemu("qemu-img", "create", "-f", "qcow2", "-b", golden.name, "-F", "qcow2",
                str(overlay)).returncode == 0

    rows = listed(env)
    assert rows["mg-golden.qcow2"]["safe_to_manage"] is False, rows
    assert "mg-overlay.qcow2" in rows["mg-golden.qcow2"]["reason_not_safe"], rows
    assert "mg-golden.qcow2" in rows["mg-overlay.qcow2"]["reason_not_safe"], rows
    assert rows["mg-golden.qcow2"]["size"] == 1

    # Alone, the base is safe, and the CLI manages it.
    overlay.unlink()
    rows = listed(env)
    assert rows["mg-golden.qcow2"]["safe_to_manage"] is True, rows
    assert "mg-overlay.qcow2" not in rows
    osc(env, "volume", "create", "--remote-source", "source-name=mg-golden", "--host",
        "scoria@file", "mg-managed")
    wait_for(lambda: osc(env, "volume", "show", "mg-managed")["status"] == "available",
             "mg-managed available")
    vid = osc(env, "volume", "show", "mg-managed")["id"]
    assert osc(env, "volume", "show", "mg-managed")["size"] == 1
    assert "mg-golden.qcow2" not in listed(env)
    assert not golden.exists()

    # Unmanaged, its data is the file volume-<id>.qcow2, listed and intact.
    osc(env, "volume", "delete", "--remote", "mg-managed", parse=False)
    handed = backend / ("volume-%s.qcow2" % vid)
    wait_for(lambda: handed.exists() and vid not in
             [v["ID"] for v in osc(env, "volume", "list")], "mg-managed unmanaged")
    rows = listed(env)
    assert rows[handed.name]["safe_to_manage"] is True, rows
    r = qemu("qemu-io", "-f", "qcow2", "-c", "read -P 0x5c 1M 2M", str(handed))
    assert r.returncode == 0 and "Pattern verification failed" not in r.stdout, r.stdout
    handed.unlink()


SNAPSHOTS = ["--os-volume-api-version", "3.8", "block", "storage", "snapshot", "manageable",
             "list", "scoria@file"]


def images(backend):
    return {p.name for p in backend.glob("image-*.qcow2")}


def reads(path, pattern, offset, length):
    r = qemu("qemu-io", "-f", "qcow2", "-r", "-c",
             "read -P %s %s %s" % (pattern, offset, length), str(path))
    return r.returncode == 0 and "Pattern verification failed" not in r.stdout


@pytest.mark.skipif(shutil.which("qemu-io") is None, reason="needs qemu-io")
def test_snapshot_unmanage_and_manage_with_the_cli(server):
    """A snapshot unmanaged with `volume snapshot delete --remote` is listed
    by `block storage snapshot manageable list` and managed back with
    `volume snapshot create --remote-source`, its data as it was."""
    env = cloud_env(server)
    backend = server.data / "volumes"
    before = images(backend)
    osc(env, "volume", "create", "--size", "1", "ms-vol")
    wait_for(lambda: osc(env, "volume", "show", "ms-vol")["status"] == "available",
             "ms-vol available")
    (first,) = images(backend) - before
    assert qemu("qemu-io", "-f", "qcow2", "-c", "write -P 0x5c 1M 2M",
                str(backend / first)).returncode == 0
    osc(env, "volume", "snapshot", "create", "--volume", "ms-vol", "ms-snap")
    wait_for(lambda: osc(env, "volume", "snapshot", "show", "ms-snap")["status"] == "available",
             "ms-snap available")
    sid = osc(env, "volume", "snapshot", "show", "ms-snap")["id"]
    (top,) = images(backend) - before - {first}

    osc(env, "volume", "snapshot", "delete", "--remote", "ms-snap", parse=False)
    wait_for(lambda: sid not in [s["ID"] for s in osc(env, "volume", "snapshot", "list")],
             "ms-snap unmanaged")
    assert (backend / first).exists()
    assert qemu("qemu-io", "-f", "qcow2", "-c", "write -P 0x6d 1M 1M",
                str(backend / top)).returncode == 0
    rows = {r["reference"]["source-name"]: r for r in osc(env, *SNAPSHOTS, "--long")}
    name = "snapshot-%s" % sid
    assert rows[name]["safe_to_manage"] is True, rows
    assert rows[name]["size"] == 1, rows

    vid = osc(env, "volume", "show", "ms-vol")["id"]
    osc(env, "volume", "snapshot", "create", "--volume", "ms-vol", "--remote-source",
        "source-name=%s" % name, "ms-back")
    back = wait_for(lambda: (lambda s: s if s["status"] == "available" else None)(
        osc(env, "volume", "snapshot", "show", "ms-back")), "ms-back available")
    assert back["size"] == 1 and back["volume_id"] == vid, back
    assert name not in {r["reference"]["source-name"] for r in osc(env, *SNAPSHOTS)}
    # The snapshot reads what was written before the unmanage, the volume
    # what was written after, over it.
    assert reads(backend / first, "0x5c", "1M", "2M")
    assert reads(backend / top, "0x6d", "1M", "1M")
    assert reads(backend / top, "0x5c", "2M", "1M")
