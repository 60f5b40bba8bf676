"""The image service (Glance v2 subset) through the stock `openstack` CLI and
openstacksdk's image proxy: upload a real qcow2 boot image, list, show, set
properties and tags, download it byte for byte, deactivate and reactivate it
as the admin, keep it from another project, delete it."""

import hashlib
import os
import pathlib

import openstack
import pytest

from conftest import CliError, cloud_env, osc, wait_for

HERE = pathlib.Path(__file__).resolve().parent
# The shared directory sits beside the repository (on developers' machines
# and in CI alike).
BOOT_IMAGE = HERE.parent.parent.parent / "shared" / "images" / "boot.qcow2"


def boot_image():
    if not BOOT_IMAGE.is_file():
        pytest.skip("no boot image at %s (the shared directory beside the repository)" % BOOT_IMAGE)
    return BOOT_IMAGE


def digests(path):
    md5, sha512 = hashlib.md5(), hashlib.sha512()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            md5.update(chunk)
            sha512.update(chunk)
    return md5.hexdigest(), sha512.hexdigest()


def test_image_lifecycle_with_the_cli(server, tmp_path):
    path = boot_image()
    md5, sha512 = digests(path)
    env = cloud_env(server)
    created = osc(env, "image", "create", "--file", str(path), "--disk-format", "qcow2",
                  "--container-format", "bare", "--private", "img")
    assert created["status"] == "active", created
    assert created["size"] == path.stat().st_size
    assert created["checksum"] == md5

    listed = osc(env, "image", "list")
    assert any(row["Name"] == "img" and row["Status"] == "active" for row in listed), listed
    shown = osc(env, "image", "show", "img")
    assert shown["id"] == created["id"] and shown["disk_format"] == "qcow2"
    assert shown["properties"]["os_hash_algo"] == "sha512"
    assert shown["properties"]["os_hash_value"] == sha512

    osc(env, "image", "set", "--property", "k=v", "--tag", "t", "img", parse=False)
    shown = osc(env, "image", "show", "img")
    assert shown["properties"]["k"] == "v" and shown["tags"] == ["t"], shown

    out = tmp_path / "out.qcow2"
    osc(env, "image", "save", "--file", str(out), "img", parse=False)
    assert out.read_bytes() == path.read_bytes()

    # Another project does not see a private image at all.
    other = other_project(server)
    assert all(row["ID"] != created["id"] for row in osc(other, "image", "list"))
    with pytest.raises(CliError):
        osc(other, "image", "show", created["id"])

    # Deactivated (the admin's clouds.yaml): its data is the admin's only.
    osc(env, "image", "set", "--deactivate", "img", parse=False)
    assert osc(env, "image", "show", "img")["status"] == "deactivated"
    osc(env, "image", "set", "--activate", "img", parse=False)
    assert osc(env, "image", "show", "img")["status"] == "active"

    # Protected images refuse deletion.
    osc(env, "image", "set", "--protected", "img", parse=False)
    with pytest.raises(CliError):
        osc(env, "image", "delete", "img", parse=False)
    osc(env, "image", "set", "--unprotected", "img", parse=False)
    osc(env, "image", "delete", "img", parse=False)
    assert all(row["Name"] != "img" for row in osc(env, "image", "list"))
    with pytest.raises(CliError):
        osc(env, "image", "show", created["id"])


def other_project(server):
    admin = cloud_env(server)
    projects = {p["Name"] for p in osc(admin, "project", "list")}
    if "image-project-c" not in projects:
        osc(admin, "project", "create", "--domain", "default", "image-project-c")
        osc(admin, "user", "create", "--domain", "default", "--project", "image-project-c",
            "--password", "c-password", "user-c")
        osc(admin, "role", "add", "--project", "image-project-c", "--user", "user-c", "member",
            parse=False)
    return cloud_env(server, "c", {"c": {
        "auth_url": server.url + "/identity/v3", "username": "user-c", "password": "c-password",
        "project_name": "image-project-c", "user_domain_name": "Default",
        "project_domain_name": "Default"}})


def test_images_with_openstacksdk(server, monkeypatch, tmp_path):
    env = cloud_env(server)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", env["OS_CLIENT_CONFIG_FILE"])
    conn = openstack.connect(cloud="scoria")
    data = os.urandom(3 * 1024 * 1024 + 17)
    made = conn.image.create_image(name="sdk-img", data=data, disk_format="raw",
                                   container_format="bare", tags=["sdk"])
    image = conn.image.get_image(made.id)
    assert image.status == "active" and image.size == len(data)
    assert image.checksum == hashlib.md5(data).hexdigest()
    assert image.hash_algo == "sha512"
    assert image.hash_value == hashlib.sha512(data).hexdigest()
    assert "sdk" in image.tags

    downloaded = conn.image.download_image(image)
    assert downloaded.content == data
    out = tmp_path / "sdk.raw"
    conn.image.download_image(image, output=str(out))
    assert out.read_bytes() == data

    conn.image.update_image(image, name="sdk-img2", purpose="tests")
    got = conn.image.get_image(image.id)
    assert got.name == "sdk-img2" and got.properties.get("purpose") == "tests"
    assert any(i.id == image.id for i in conn.image.images())

    # A missing image is the SDK's NotFoundException, from Glance's body.
    with pytest.raises(openstack.exceptions.NotFoundException):
        conn.image.get_image("3f1c2b9e-8d4a-4e6f-9b7c-1a2b3c4d5e6f")

    conn.image.delete_image(image)
    assert conn.image.find_image("sdk-img2") is None


def qemu_img(*args):
    import subprocess
    p = subprocess.run(["qemu-img"] + list(args), capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout + p.stderr


def test_volumes_from_and_to_images_with_the_cli(server, tmp_path, monkeypatch):
    """`volume create --image` (bootable, image metadata shown, reads as the
    image), `image create --volume` (the saved image reads as the volume), and
    the second volume from the same image stands on the backend's cached copy
    (the admin's tree view, through openstacksdk's session)."""
    path = boot_image()
    env = cloud_env(server)
    osc(env, "image", "create", "--file", str(path), "--disk-format", "qcow2",
        "--container-format", "bare", "--private", "bootimg")

    created = osc(env, "volume", "create", "--image", "bootimg", "--size", "1", "boot")
    wait_for(lambda: osc(env, "volume", "show", "boot")["status"] == "available",
             "the volume from the image")
    shown = osc(env, "volume", "show", "boot")
    assert shown["bootable"] in (True, "true"), shown
    meta = shown["volume_image_metadata"]
    assert meta["image_name"] == "bootimg" and meta["disk_format"] == "qcow2", meta

    # The volume uploaded to an image: what the image service gives back
    # reads as the boot image (the volume's data).
    osc(env, "image", "create", "--volume", "boot", "--disk-format", "raw", "bootimg2",
        parse=False)
    wait_for(lambda: osc(env, "image", "show", "bootimg2")["status"] == "active",
             "the uploaded image")
    wait_for(lambda: osc(env, "volume", "show", "boot")["status"] == "available",
             "the volume back from uploading")
    saved = tmp_path / "saved.raw"
    osc(env, "image", "save", "--file", str(saved), "bootimg2", parse=False)
    rc, out = qemu_img("compare", "-f", "qcow2", "-F", "raw", str(path), str(saved))
    assert rc == 0, out

    # A second volume from the same image is an overlay on the cached copy.
    second = osc(env, "volume", "create", "--image", "bootimg", "--size", "2", "boot2")
    wait_for(lambda: osc(env, "volume", "show", "boot2")["status"] == "available",
             "the second volume from the image")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", env["OS_CLIENT_CONFIG_FILE"])
    conn = openstack.connect(cloud="scoria")
    project = conn.current_project_id

    def chain(volume):
        r = conn.block_storage.get("/scoria-volumes/%s/tree" % volume)
        assert r.status_code == 200, r.text
        return r.json()["tree"]["chain"]

    first_chain, second_chain = chain(created["id"]), chain(second["id"])
    assert len(first_chain) == 2 and len(second_chain) == 2, (first_chain, second_chain)
    assert first_chain[1]["id"] == second_chain[1]["id"]
    assert second_chain[1]["cache_of"] is not None and not second_chain[1]["mutable"]
    assert project

    for v in ("boot", "boot2"):
        osc(env, "volume", "delete", v, parse=False)
    for i in ("bootimg", "bootimg2"):
        osc(env, "image", "delete", i, parse=False)
