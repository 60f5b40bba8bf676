"""A real `scoria serve` for the stock-client tests, and helpers to drive the
`openstack` CLI against it."""

import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import threading
import time

import pytest

ADMIN_PASSWORD = "client-tests-admin-password"
HERE = pathlib.Path(__file__).resolve().parent
VENV_BIN = HERE.parent.parent / ".venv" / "clients" / "bin"


class Server:
    def __init__(self, binary, config=None):
        """`config`: the text of a scoria.toml to serve with (its data_dir
        and listen address are the flags')."""
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="scoria-clients-"))
        self.data = self.dir / "data"
        env = dict(os.environ, SCORIA_ADMIN_PASSWORD=ADMIN_PASSWORD, RUST_LOG="warn")
        self.log = open(self.dir / "scoria.log", "w")
        args = [binary, "serve", "--data-dir", str(self.data), "--listen", "127.0.0.1:0"]
        if config is not None:
            path = self.dir / "scoria.toml"
            path.write_text(config)
            args += ["--config", str(path)]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        self.url = None
        deadline = time.time() + 60
        for line in self.proc.stdout:
            if line.startswith("listening on "):
                self.url = "http://" + line.split()[-1]
                break
            if time.time() > deadline:
                break
        if self.url is None:
            self.proc.kill()
            raise RuntimeError("scoria serve did not start; see %s" % (self.dir / "scoria.log"))
        # Keep draining stdout so the server never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def server():
    binary = os.environ.get("SCORIA_BIN")
    if not binary:
        raise RuntimeError("SCORIA_BIN must point at the scoria binary (scripts/test sets it)")
    s = Server(binary)
    yield s
    s.stop()


def _binary():
    binary = os.environ.get("SCORIA_BIN")
    if not binary:
        raise RuntimeError("SCORIA_BIN must point at the scoria binary (scripts/test sets it)")
    return binary


# Three file backends: two in zone nova, one in az2. Each keeps its files in
# <data_dir>/volumes/<name>.
MULTI_BACKEND_CONFIG = """
[[backend]]
name = "fast"
driver = "file"
availability_zone = "nova"
fsync = false
capabilities = { tier = "ssd" }

[[backend]]
name = "slow"
driver = "file"
availability_zone = "nova"
fsync = false
capabilities = { tier = "hdd" }

[[backend]]
name = "far"
driver = "file"
availability_zone = "az2"
fsync = false
"""


@pytest.fixture(scope="module")
def multi_backend_server():
    """A server of its own with backends `fast`, `slow` (zone nova) and `far`
    (zone az2); `fast` reports `tier = ssd`, `slow` `tier = hdd`. A module's
    own: the tests count what is placed where."""
    s = Server(_binary(), MULTI_BACKEND_CONFIG)
    yield s
    s.stop()


def cloud_env(server, cloud="scoria", extra_clouds=None):
    """Environment for the CLI: the clouds.yaml scoria wrote, plus extra clouds."""
    path = server.data / "clouds.yaml"
    if extra_clouds:
        text = path.read_text()
        merged = server.dir / ("clouds-%s.yaml" % cloud)
        lines = [text.rstrip("\n")]
        for name, auth in extra_clouds.items():
            lines.append("  %s:" % name)
            lines.append("    auth:")
            for k, v in auth.items():
                lines.append("      %s: %s" % (k, json.dumps(v)))
            lines.append("    region_name: RegionOne")
            lines.append("    identity_api_version: 3")
            lines.append("    volume_api_version: 3")
        merged.write_text("\n".join(lines) + "\n")
        path = merged
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(OS_CLIENT_CONFIG_FILE=str(path), OS_CLOUD=cloud)
    return env


class CliError(Exception):
    def __init__(self, args, code, stderr):
        super().__init__("openstack %s failed (%d): %s" % (" ".join(args), code, stderr))
        self.stderr = stderr


def osc(env, *args, parse=True):
    """Run the stock `openstack` CLI; parse its JSON output."""
    cmd = [str(VENV_BIN / "openstack")] + list(args)
    if parse:
        cmd += ["-f", "json"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise CliError(args, p.returncode, p.stderr)
    if parse and p.stdout.strip():
        return json.loads(p.stdout)
    return p.stdout


def wait_for(fn, what, timeout=60):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))
