"""Issue 15, item 3: a system-scoped token from the stock CLI, and what a
system administrator sees with it (`openstack volume service list`)."""

from conftest import ADMIN_PASSWORD, CliError, cloud_env, osc


def system_env(server, user="admin", password=ADMIN_PASSWORD):
    # keystoneauth refuses a project and a system scope together, so the
    # system cloud names no project; the scope comes from --os-system-scope.
    return cloud_env(server, cloud="sys-" + user, extra_clouds={"sys-" + user: {
        "auth_url": server.url + "/identity/v3",
        "username": user,
        "password": password,
        "user_domain_name": "Default",
    }})


def test_system_scoped_token_issue(server):
    env = system_env(server)
    # The bootstrap admin holds the admin role on the system already.
    assignments = osc(cloud_env(server), "role", "assignment", "list", "--system", "all",
                      "--names")
    assert any(a["User"].startswith("admin@") and a["Role"] == "admin" and a["System"] == "all"
               for a in assignments), assignments
    token = osc(env, "--os-system-scope", "all", "token", "issue")
    assert token["id"]
    assert not token.get("project_id"), token


def test_system_scoped_volume_service_list(server):
    env = system_env(server)
    services = osc(env, "--os-system-scope", "all", "volume", "service", "list")
    binaries = {s["Binary"] for s in services}
    assert "cinder-volume" in binaries, services


def test_system_reader_may_list_but_a_user_without_a_system_role_may_not(server):
    admin = cloud_env(server)
    osc(admin, "user", "create", "--domain", "default", "--password", "pw-sys-reader",
        "sys-reader", parse=False)
    env = system_env(server, "sys-reader", "pw-sys-reader")
    try:
        osc(env, "--os-system-scope", "all", "token", "issue")
        raise AssertionError("a user without a system role got a system token")
    except CliError as e:
        assert "401" in e.stderr or "authoriz" in e.stderr.lower(), e.stderr
    osc(admin, "role", "add", "--system", "all", "--user", "sys-reader", "reader", parse=False)
    services = osc(env, "--os-system-scope", "all", "volume", "service", "list")
    assert services


def test_system_scoped_volume_list_all_projects(server):
    admin = cloud_env(server)
    vol = osc(admin, "volume", "create", "--size", "1", "sys-seen")
    env = system_env(server)
    listed = osc(env, "--os-system-scope", "all", "volume", "list", "--all-projects")
    assert vol["id"] in {v["ID"] for v in listed}, listed
    # A system token creates nothing in a project: the CLI reports the 403.
    try:
        osc(env, "--os-system-scope", "all", "volume", "create", "--size", "1", "nope")
        raise AssertionError("a system token created a volume")
    except CliError as e:
        assert "403" in e.stderr or "system-scoped" in e.stderr, e.stderr
