"""Generic volume groups and group types through the stock `openstack` CLI and
openstacksdk (microversions 3.11-3.20)."""

import openstack
import pytest

from conftest import CliError, cloud_env, osc, wait_for

V = ["--os-volume-api-version", "3.20"]


def test_groups_with_the_cli(server):
    env = cloud_env(server)
    gt = osc(env, *V, "volume", "group", "type", "create", "--description", "d", "cli-gt")
    assert gt["Name"] == "cli-gt" and gt["Is Public"] is True
    osc(env, *V, "volume", "group", "type", "set", "--property", "k=v", "cli-gt", parse=False)
    assert osc(env, *V, "volume", "group", "type", "show", "cli-gt")["Properties"] == {"k": "v"}
    assert any(t["Name"] == "cli-gt" for t in osc(env, *V, "volume", "group", "type", "list"))

    g = osc(env, *V, "volume", "group", "create", "--volume-group-type", "cli-gt",
            "--volume-type", "__DEFAULT__", "--name", "cli-g")
    assert g["Status"] == "available" and g["Group Type"] == gt["ID"]
    assert "cli-g" in [x["Name"] for x in osc(env, *V, "volume", "group", "list")]
    # Below 3.13 there are no groups.
    with pytest.raises(CliError):
        osc(env, "--os-volume-api-version", "3.12", "volume", "group", "list")
    # An empty group cannot be copied; a group type in use stays.
    with pytest.raises(CliError) as e:
        osc(env, *V, "volume", "group", "create", "--source-group", "cli-g", "--name", "cli-copy")
    assert "empty" in e.value.stderr
    with pytest.raises(CliError):
        osc(env, *V, "volume", "group", "type", "delete", "cli-gt", parse=False)

    osc(env, *V, "volume", "group", "delete", "cli-g", parse=False)
    wait_for(lambda: all(x["Name"] != "cli-g" for x in osc(env, *V, "volume", "group", "list")),
             "cli-g deleted")
    osc(env, *V, "volume", "group", "type", "delete", "cli-gt", parse=False)


def test_groups_with_openstacksdk(server, monkeypatch):
    env = cloud_env(server)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", env["OS_CLIENT_CONFIG_FILE"])
    bs = openstack.connect(cloud="scoria").block_storage
    gt = bs.create_group_type(name="sdk-gt")
    bs.create_group_type_group_specs(gt, {"k": "v"})
    assert bs.fetch_group_type_group_specs(gt).group_specs == {"k": "v"}

    g = bs.create_group(name="sdk-g", group_type=gt.id, volume_types=["__DEFAULT__"])
    assert bs.get_group(g.id).status == "available"
    # A volume made in the group, another added and removed.
    v = bs.create_volume(size=1, name="sdk-gv", group_id=g.id)
    v = bs.wait_for_status(v, status="available", failures=["error"], interval=0.2, wait=60)
    assert bs.get_volume(v.id).group_id == g.id
    w = bs.create_volume(size=1, name="sdk-other")
    w = bs.wait_for_status(w, status="available", failures=["error"], interval=0.2, wait=60)
    bs.update_group(bs.get_group(g.id), add_volumes=w.id)
    assert bs.get_volume(w.id).group_id == g.id
    bs.update_group(bs.get_group(g.id), remove_volumes=w.id, name="sdk-g2")
    assert bs.get_volume(w.id).group_id is None
    assert bs.get_group(g.id).name == "sdk-g2"

    # A copy: a clone of each volume, in a new group of the same kind.
    c = bs.create_group_from_source(group_snapshot_id=None, source_group_id=g.id,
                                    name="sdk-copy")
    c = bs.wait_for_status(bs.get_group(c.id), status="available", failures=["error"],
                           interval=0.2, wait=60)
    assert c.source_group_id == g.id and c.group_type == gt.id
    clones = [x for x in bs.volumes(details=True) if x.group_id == c.id]
    assert [x.source_volume_id for x in clones] == [v.id]
    assert clones[0].status == "available"

    bs.reset_group_status(c, "error")
    assert bs.get_group(c.id).status == "error"
    for grp in (c, g):
        bs.delete_group(grp, delete_volumes=True)
    for grp in (c, g):
        bs.wait_for_delete(grp, interval=0.2, wait=60)
    left = [x for x in bs.volumes(details=True) if x.group_id in (g.id, c.id)]
    assert left == [] and bs.get_volume(w.id).status == "available"
    bs.delete_volume(w)
    bs.delete_group_type(gt)
