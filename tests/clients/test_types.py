"""Volume types, extra specs, type access, encryption specs, retype and QoS
specs through the stock `openstack` CLI."""

import pytest

from conftest import CliError, cloud_env, osc, wait_for


def props(shown):
    """`properties` as a dict, whatever the CLI version prints."""
    p = shown.get("properties")
    if isinstance(p, dict):
        return p
    out = {}
    for item in (p or "").split(", "):
        if "=" in item:
            k, v = item.split("=", 1)
            out[k] = v.strip("'")
    return out


def test_volume_types_with_the_cli(server):
    env = cloud_env(server)
    gold = osc(env, "volume", "type", "create", "--description", "fast",
               "--property", "volume_backend_name=file", "cli-gold")
    assert gold["name"] == "cli-gold" and gold["description"] == "fast"
    osc(env, "volume", "type", "create", "--private", "cli-secret")
    names = [row["Name"] for row in osc(env, "volume", "type", "list")]
    assert "cli-gold" in names and "cli-secret" in names

    osc(env, "volume", "type", "set", "--property", "multiattach=<is> True", "cli-gold",
        parse=False)
    assert props(osc(env, "volume", "type", "show", "cli-gold")) == {
        "volume_backend_name": "file", "multiattach": "<is> True"}
    osc(env, "volume", "type", "unset", "--property", "multiattach", "cli-gold", parse=False)
    assert props(osc(env, "volume", "type", "show", "cli-gold")) == {
        "volume_backend_name": "file"}

    # Private types: shared with a project by name.
    osc(env, "volume", "type", "set", "--project", "admin", "cli-secret", parse=False)
    shown = osc(env, "volume", "type", "show", "cli-secret")
    assert shown["is_public"] is False

    # Encryption: stored, but volumes of the type are refused.
    osc(env, "volume", "type", "create", "--encryption-provider", "luks",
        "--encryption-cipher", "aes-xts-plain64", "--encryption-key-size", "256",
        "--encryption-control-location", "front-end", "cli-enc")
    with pytest.raises(CliError) as e:
        osc(env, "volume", "create", "--size", "1", "--type", "cli-enc", "cli-enc-v")
    assert "encrypted volumes are not supported yet" in e.value.stderr
    osc(env, "volume", "type", "unset", "--encryption-type", "cli-enc", parse=False)
    osc(env, "volume", "type", "delete", "cli-enc", parse=False)

    # Retype in place.
    v = osc(env, "volume", "create", "--size", "1", "--type", "cli-gold", "cli-typed")
    wait_for(lambda: osc(env, "volume", "show", "cli-typed")["status"] == "available",
             "cli-typed available")
    osc(env, "volume", "set", "--type", "cli-secret", "--retype-policy", "never", "cli-typed",
        parse=False)
    assert osc(env, "volume", "show", v["id"])["type"] == "cli-secret"

    # A type in use cannot go; once the volume is gone it can.
    with pytest.raises(CliError):
        osc(env, "volume", "type", "delete", "cli-secret", parse=False)
    osc(env, "volume", "delete", "cli-typed", parse=False)
    wait_for(lambda: all(r["Name"] != "cli-typed" for r in osc(env, "volume", "list")),
             "cli-typed deleted")
    osc(env, "volume", "type", "delete", "cli-secret", parse=False)


def test_qos_specs_with_the_cli(server):
    env = cloud_env(server)
    q = osc(env, "volume", "qos", "create", "--consumer", "front-end",
            "--property", "read_iops_sec=2000", "cli-qos")
    assert q["name"] == "cli-qos" and q["consumer"] == "front-end"
    osc(env, "volume", "type", "create", "cli-qos-type")
    osc(env, "volume", "qos", "associate", "cli-qos", "cli-qos-type", parse=False)
    shown = osc(env, "volume", "qos", "show", "cli-qos")
    assert "cli-qos-type" in str(shown["associations"])
    osc(env, "volume", "qos", "set", "--property", "total_bytes_sec=1000", "cli-qos",
        parse=False)
    osc(env, "volume", "qos", "unset", "--property", "read_iops_sec", "cli-qos", parse=False)
    assert props(osc(env, "volume", "qos", "show", "cli-qos")) == {"total_bytes_sec": "1000"}
    assert any(r["Name"] == "cli-qos" for r in osc(env, "volume", "qos", "list"))
    # Associated: a plain delete is refused, a forced one works.
    with pytest.raises(CliError):
        osc(env, "volume", "qos", "delete", "cli-qos", parse=False)
    osc(env, "volume", "qos", "disassociate", "--volume-type", "cli-qos-type", "cli-qos",
        parse=False)
    osc(env, "volume", "qos", "associate", "cli-qos", "cli-qos-type", parse=False)
    osc(env, "volume", "qos", "delete", "--force", "cli-qos", parse=False)
    assert all(r["Name"] != "cli-qos" for r in osc(env, "volume", "qos", "list"))
    osc(env, "volume", "type", "delete", "cli-qos-type", parse=False)
