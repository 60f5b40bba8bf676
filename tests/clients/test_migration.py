"""Moving a volume between backends with the stock `openstack` CLI:
`volume migrate --host` (admin) and `volume set --type --retype-policy
on-demand`, on a server with three file backends; the data is compared
with `qemu-img compare` after each move."""

import shutil
import subprocess

import pytest

from conftest import CliError, cloud_env, osc, wait_for


def backend_of(env, vid):
    host = osc(env, "volume", "show", vid)["os-vol-host-attr:host"]
    assert host.startswith("scoria@"), host
    return host.split("@", 1)[1].split("#", 1)[0]


def only_file(server, backend):
    """The one image file on a backend (each test volume is alone there)."""
    files = [p for p in (server.data / "volumes" / backend).iterdir()
             if not p.name.startswith(".")]
    assert len(files) == 1, files
    return files[0]


def qemu(*args):
    subprocess.run(list(args), check=True, capture_output=True, text=True)


def fmt(path):
    return "raw" if path.suffix == ".raw" else "qcow2"


def settled(env, vid):
    def done():
        v = osc(env, "volume", "show", vid)
        if v["status"] == "available" and v.get("os-vol-mig-status-attr:migstat") != "migrating":
            return v
        return None
    return wait_for(done, "the migration of %s" % vid)


@pytest.mark.skipif(shutil.which("qemu-io") is None, reason="needs qemu-io")
def test_migrate_and_retype_on_demand_move_the_data(multi_backend_server):
    server = multi_backend_server
    env = cloud_env(server)
    vid = osc(env, "volume", "create", "--size", "1", "--availability-zone", "nova",
              "cli-mover")["id"]
    wait_for(lambda: osc(env, "volume", "show", vid)["status"] == "available", "cli-mover")
    first = backend_of(env, vid)
    assert first in ("fast", "slow")
    other = "slow" if first == "fast" else "fast"

    # Known data, and a copy of it kept aside.
    src = only_file(server, first)
    qemu("qemu-io", "-f", fmt(src), "-c", "write -P 0x6b 0 2M",
         "-c", "write -P 0x19 900M 128k", str(src))
    kept = server.dir / "kept.raw"
    qemu("qemu-img", "convert", "-f", fmt(src), "-O", "raw", str(src), str(kept))

    # Refused: the same host, an unknown host.
    with pytest.raises(CliError) as e:
        osc(env, "volume", "migrate", "--host", "scoria@%s" % first, vid, parse=False)
    assert "Destination host must be different" in e.value.stderr
    with pytest.raises(CliError) as e:
        osc(env, "volume", "migrate", "--host", "scoria@nowhere", vid, parse=False)
    assert "No available service named" in e.value.stderr

    osc(env, "volume", "migrate", "--host", "scoria@%s" % other, vid, parse=False)
    v = settled(env, vid)
    assert v["os-vol-mig-status-attr:migstat"] == "success"
    assert backend_of(env, vid) == other
    moved = only_file(server, other)
    qemu("qemu-img", "compare", "-f", "raw", "-F", fmt(moved), str(kept), str(moved))
    wait_for(lambda: not [p for p in (server.data / "volumes" / first).iterdir()
                          if not p.name.startswith(".")],
             "the old file reaped")

    # Back by retype, on demand: the type asks for the other nova backend.
    osc(env, "volume", "type", "create", "--property", "volume_backend_name=%s" % first,
        "cli-on-%s" % first)
    osc(env, "volume", "set", "--type", "cli-on-%s" % first, "--retype-policy", "on-demand",
        vid, parse=False)
    v = wait_for(lambda: (lambda s: s if s["type"] == "cli-on-%s" % first else None)(
        osc(env, "volume", "show", vid)), "the new type")
    # The type changed with the host, in one commit.
    assert v["os-vol-mig-status-attr:migstat"] == "success"
    assert backend_of(env, vid) == first
    back = only_file(server, first)
    qemu("qemu-img", "compare", "-f", "raw", "-F", fmt(back), str(kept), str(back))

    # A type only the other zone's backend offers: not a destination (the
    # volume's zone), and `never` refuses in any case.
    osc(env, "volume", "type", "create", "--property", "volume_backend_name=far", "cli-far")
    with pytest.raises(CliError) as e:
        osc(env, "volume", "set", "--type", "cli-far", "--retype-policy", "on-demand", vid,
            parse=False)
    assert "No valid backend" in e.value.stderr
    assert backend_of(env, vid) == first
    assert osc(env, "volume", "show", vid)["type"] == "cli-on-%s" % first
