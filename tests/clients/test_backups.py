"""Backups through the stock `openstack` CLI, on real data: a volume made from
the boot image is backed up (full, then incremental), restored onto a new
volume and into a volume created from the backup, and each restored volume,
uploaded to the image service and downloaded, reads as the boot image; then
the backups are deleted newest first."""

from conftest import cloud_env, osc, wait_for
from test_images import boot_image, qemu_img


def test_backups_with_the_cli(server, tmp_path):
    path = boot_image()
    env = cloud_env(server)
    osc(env, "image", "create", "--file", str(path), "--disk-format", "qcow2",
        "--container-format", "bare", "--private", "bk-img")
    osc(env, "volume", "create", "--image", "bk-img", "--size", "1", "bk-src")
    wait_for(lambda: osc(env, "volume", "show", "bk-src")["status"] == "available",
             "the source volume")

    full = osc(env, "volume", "backup", "create", "--name", "bk-full", "bk-src")
    wait_for(lambda: osc(env, "volume", "backup", "show", "bk-full")["status"] == "available",
             "the full backup")
    inc = osc(env, "volume", "backup", "create", "--incremental", "--name", "bk-inc", "bk-src")
    wait_for(lambda: osc(env, "volume", "backup", "show", "bk-inc")["status"] == "available",
             "the incremental backup")
    shown = osc(env, "volume", "backup", "show", "bk-inc")
    assert shown["is_incremental"] in (True, "True", "true"), shown
    listed = {row["Name"] for row in osc(env, "volume", "backup", "list")}
    assert {"bk-full", "bk-inc"} <= listed, listed

    # Restore the incremental onto a new (available, large enough) volume.
    osc(env, "volume", "create", "--size", "1", "bk-target")
    wait_for(lambda: osc(env, "volume", "show", "bk-target")["status"] == "available",
             "the target volume")
    # (a recent CLI asks for --force to restore onto an existing volume)
    osc(env, "volume", "backup", "restore", "--force", inc["id"], "bk-target", parse=False)
    wait_for(lambda: osc(env, "volume", "show", "bk-target")["status"] == "available"
             and osc(env, "volume", "backup", "show", "bk-inc")["status"] == "available",
             "the restore")

    # A volume made from the full backup (3.47).
    osc(env, "--os-volume-api-version", "3.47", "volume", "create", "--backup", full["id"],
        "bk-from")
    wait_for(lambda: osc(env, "volume", "show", "bk-from")["status"] == "available",
             "the volume from the backup")

    for volume in ("bk-target", "bk-from"):
        image = "img-of-" + volume
        osc(env, "image", "create", "--volume", volume, "--disk-format", "raw", image,
            parse=False)
        wait_for(lambda: osc(env, "image", "show", image)["status"] == "active",
                 "the uploaded image")
        saved = tmp_path / (volume + ".raw")
        osc(env, "image", "save", "--file", str(saved), image, parse=False)
        rc, out = qemu_img("compare", "-f", "qcow2", "-F", "raw", str(path), str(saved))
        assert rc == 0, (volume, out)
        osc(env, "image", "delete", image, parse=False)

    for name in ("bk-inc", "bk-full"):
        osc(env, "volume", "backup", "delete", name, parse=False)
        wait_for(lambda: all(row["Name"] != name
                             for row in osc(env, "volume", "backup", "list")),
                 "backup %s deleted" % name)
    for v in ("bk-src", "bk-target", "bk-from"):
        wait_for(lambda: osc(env, "volume", "show", v)["status"] == "available", v)
        osc(env, "volume", "delete", v, parse=False)
    osc(env, "image", "delete", "bk-img", parse=False)
