"""Placement among three file backends, through the stock `openstack` CLI:
volume types with extra specs and availability zones decide where volumes
land (read back in the admin view), a full backend and a disabled one get
nothing, and an impossible request ends in `error` with a message that says
why. The server (`multi_backend_server`, conftest.py) has `fast` (zone nova,
tier=ssd), `slow` (zone nova, tier=hdd) and `far` (zone az2)."""

import math

from conftest import cloud_env, osc, wait_for

MESSAGES = ["--os-volume-api-version", "3.3", "volume", "message"]


def status_of(env, name):
    return osc(env, "volume", "show", name)["status"]


def create(env, name, *args):
    osc(env, "volume", "create", *args, name)
    wait_for(lambda: status_of(env, name) in ("available", "error"), name + " settled")
    return osc(env, "volume", "show", name)


def backend_of(shown):
    """`scoria@fast#fast` → `fast`."""
    host = shown["os-vol-host-attr:host"]
    assert host.count("@") == 1 and host.count("#") == 1, host
    return host.split("@")[1].split("#")[0]


def error_message(env, volume_id):
    told = [m for m in osc(env, *MESSAGES, "list") if m["Resource UUID"] == volume_id]
    assert len(told) == 1, told
    return told[0]["User Message"]


def pool(env, backend):
    rows = osc(env, "volume", "backend", "pool", "list", "--long")
    return next(r for r in rows if r["Name"] == "scoria@%s#%s" % (backend, backend))


def test_specs_and_zones_place_volumes(multi_backend_server):
    env = cloud_env(multi_backend_server)
    pools = sorted(p["Name"] for p in osc(env, "volume", "backend", "pool", "list"))
    assert pools == ["scoria@far#far", "scoria@fast#fast", "scoria@slow#slow"]
    services = {s["Host"] for s in osc(env, "volume", "service", "list")
                if s["Binary"] == "cinder-volume"}
    assert services == {"scoria@far", "scoria@fast", "scoria@slow"}
    osc(env, "quota", "set", "--volumes", "-1", "--gigabytes", "-1", "--per-volume-gigabytes", "-1",
        "admin",
        parse=False)

    osc(env, "volume", "type", "create", "--property", "tier=ssd", "ssd")
    osc(env, "volume", "type", "create", "--property", "capabilities:tier=<in> hdd", "hdd")
    osc(env, "volume", "type", "create", "plain")

    # A type without specs goes anywhere in its zone.
    assert backend_of(create(env, "be-plain", "--size", "1", "--type", "plain",
                             "--availability-zone", "nova")) in ("fast", "slow")
    assert backend_of(create(env, "be-ssd", "--size", "1", "--type", "ssd")) == "fast"
    assert backend_of(create(env, "be-hdd", "--size", "1", "--type", "hdd")) == "slow"
    far = create(env, "be-far", "--size", "1", "--type", "plain", "--availability-zone", "az2")
    assert backend_of(far) == "far" and far["availability_zone"] == "az2"

    # An impossible request: no hdd backend in zone az2.
    v = create(env, "be-nowhere", "--size", "1", "--type", "hdd", "--availability-zone", "az2")
    assert v["status"] == "error"
    said = error_message(env, v["id"])
    # Cinder's words, then the scheduler's reason (backends are not named to users).
    assert said.startswith("schedule allocate volume:Could not find any available"), said
    assert "No backend in zone az2 fits the request." in said, said
    assert "fast" not in said and "slow" not in said, said

    # Fill `fast` with sparse volumes until it can promise less than `probe`
    # GiB more. Thin provisioning (Cinder's capacity filter) bounds what is
    # provisioned by total × ratio, and each request by free × ratio; the free
    # space is the disk's and moves with other writers, so each filler stays
    # half a GiB of real space under that bound.
    probe = "3"
    fillers = []
    for _ in range(200):
        p = pool(env, "fast")["Capabilities"]
        total, free = float(p["total_capacity_gb"]), float(p["free_capacity_gb"])
        provisioned = float(p["provisioned_capacity_gb"])
        ratio = float(p["max_over_subscription_ratio"])
        reserved = math.floor(total * float(p.get("reserved_percentage", 0)) / 100)
        left = math.floor(total * ratio - provisioned - 1.5)
        if left <= 0:
            break
        size = min(left, math.floor((free - reserved - 0.5) * ratio))
        name = "be-filler-%d" % len(fillers)
        filler = create(env, name, "--size", str(size), "--type", "ssd")
        assert filler["status"] == "available" and backend_of(filler) == "fast", filler
        fillers.append(name)
    assert fillers
    # Now a type only `fast` suits finds no room, and one both suit goes to `slow`.
    full = create(env, "be-ssd-full", "--size", probe, "--type", "ssd")
    assert full["status"] == "error"
    said = error_message(env, full["id"])
    assert "No backend has %s GiB free." % probe in said, said
    assert backend_of(create(env, "be-plain2", "--size", probe, "--type", "plain",
                             "--availability-zone", "nova")) == "slow"

    # A disabled backend gets nothing.
    osc(env, "volume", "service", "set", "--disable", "scoria@slow", "cinder-volume",
        parse=False)
    try:
        off = create(env, "be-hdd-off", "--size", "1", "--type", "hdd")
        assert off["status"] == "error"
        assert "No backend fits the request." in error_message(env, off["id"])
    finally:
        osc(env, "volume", "service", "set", "--enable", "scoria@slow", "cinder-volume",
            parse=False)
    assert backend_of(create(env, "be-hdd-on", "--size", "1", "--type", "hdd")) == "slow"

    osc(env, "volume", "delete", *fillers, parse=False)
    wait_for(lambda: not {r["Name"] for r in osc(env, "volume", "list")} & set(fillers),
             "fillers deleted")
    assert backend_of(create(env, "be-ssd-again", "--size", "3", "--type", "ssd")) == "fast"


def test_scheduler_hints_with_the_cli(multi_backend_server):
    """`openstack volume create --hint same_host=… / different_host=…`
    (`OS-SCH-HNT:scheduler_hints`): with a volume, away from volumes, and a
    same_host that no backend satisfies ends in `error` saying so."""
    env = cloud_env(multi_backend_server)
    osc(env, "volume", "type", "create", "hinted")
    nova = ("--type", "hinted", "--availability-zone", "nova")
    first = create(env, "hint-first", "--size", "1", *nova)
    on = backend_of(first)
    assert on in ("fast", "slow"), on
    other = {"fast": "slow", "slow": "fast"}[on]
    for i in range(3):
        v = create(env, "hint-with-%d" % i, "--size", "1", *nova,
                   "--hint", "same_host=" + first["id"])
        assert backend_of(v) == on, v
    away = create(env, "hint-away", "--size", "1", *nova,
                  "--hint", "different_host=" + first["id"])
    assert backend_of(away) == other, away
    # Repeated, the values accumulate: away from both nova backends, no zone
    # asked for, leaves `far`.
    far = create(env, "hint-far", "--size", "1", "--type", "hinted",
                  "--hint", "different_host=" + first["id"],
                  "--hint", "different_host=" + away["id"])
    assert backend_of(far) == "far", far
    # With one volume and away from it: nowhere.
    v = create(env, "hint-nowhere", "--size", "1", *nova,
               "--hint", "same_host=" + first["id"],
               "--hint", "different_host=" + first["id"])
    assert v["status"] == "error", v
    said = error_message(env, v["id"])
    assert "No backend in zone nova fits the request." in said, said
