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
