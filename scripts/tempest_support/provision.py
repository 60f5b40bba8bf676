"""Prepare a tempest workspace for a running `scoria serve`.

    provision.py --url http://127.0.0.1:PORT --admin-password PW --workspace DIR
    provision.py --offline --workspace DIR          # config only (list_runnable.py)

1. Reads the microversion range Scoria declares (GET / -> versions[0]).
2. Creates the pre-provisioned accounts through Scoria's Identity API (as the
   bootstrap admin): admin, member and reader accounts, each reader sharing its
   project with a member (tempest looks the `project_reader` persona up in the
   primary's project), and checks that every one of them can get a
   project-scoped token whose catalog has the volumev3 endpoint.
3. Writes DIR/accounts.yaml (members before readers: tempest takes `alt` as the
   first free non-admin account in file order, and a reader as `alt` breaks the
   transfer tests) and DIR/etc/tempest.conf from tempest.conf.in.

4. With --volume-image (the volume run, when the image service is on): uploads
   a small public qcow2 image (made by qemu-img) as the admin, and names it
   `[compute] image_ref`, the image tempest's volume tests make volumes from.

Only the python standard library and `requests` (a tempest dependency) are used.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
DOMAIN_ID = 'default'
DOMAIN_NAME = 'Default'
TIMEOUT = 30


def die(msg):
    print('provision: %s' % msg, file=sys.stderr)
    sys.exit(1)


class Identity:
    def __init__(self, base):
        self.base = base.rstrip('/')
        self.s = requests.Session()
        self.s.headers['Content-Type'] = 'application/json'

    def call(self, method, path, expect, **kw):
        r = self.s.request(method, self.base + path, timeout=TIMEOUT, **kw)
        if r.status_code not in expect:
            die('%s %s -> %s (expected %s): %s' % (
                method, path, r.status_code, expect, r.text[:500]))
        return r

    def token(self, user, password, project):
        body = {'auth': {
            'identity': {'methods': ['password'], 'password': {'user': {
                'name': user, 'password': password,
                'domain': {'name': DOMAIN_NAME}}}},
            'scope': {'project': {'name': project,
                                  'domain': {'name': DOMAIN_NAME}}}}}
        r = self.call('POST', '/auth/tokens', (201,), json=body)
        tok = r.headers.get('X-Subject-Token')
        if not tok:
            die('POST /auth/tokens for %s: no X-Subject-Token header' % user)
        return tok, r.json()['token']

    def login(self, user, password, project):
        tok, _ = self.token(user, password, project)
        self.s.headers['X-Auth-Token'] = tok

    def find(self, kind, name, extra=''):
        r = self.call('GET', '/%s?name=%s%s' % (kind, name, extra), (200,))
        items = r.json()[kind]
        return items[0] if items else None

    def ensure_role(self, name):
        role = self.find('roles', name)
        if role is None:
            role = self.call('POST', '/roles', (201,),
                             json={'role': {'name': name}}).json()['role']
        return role['id']

    def ensure_project(self, name):
        p = self.find('projects', name, '&domain_id=' + DOMAIN_ID)
        if p is None:
            p = self.call('POST', '/projects', (201,), json={'project': {
                'name': name, 'domain_id': DOMAIN_ID, 'enabled': True,
                'description': 'tempest account project'}}).json()['project']
        return p['id']

    def ensure_user(self, name, password, project_id):
        u = self.find('users', name, '&domain_id=' + DOMAIN_ID)
        if u is None:
            u = self.call('POST', '/users', (201,), json={'user': {
                'name': name, 'password': password, 'domain_id': DOMAIN_ID,
                'default_project_id': project_id, 'enabled': True}}).json()['user']
        else:  # a data dir reused: make the password the one we write down
            self.call('PATCH', '/users/%s' % u['id'], (200,),
                      json={'user': {'password': password}})
        return u['id']

    def grant(self, project_id, user_id, role_id):
        self.call('PUT', '/projects/%s/users/%s/roles/%s' % (
            project_id, user_id, role_id), (204, 201, 200))


def accounts_plan(n_admin, n_member, n_reader, password):
    """(username, project, role) triples; members before readers."""
    plan = []
    for i in range(1, n_admin + 1):
        plan.append(('tempest-admin-%d' % i, 'tempest-admin-%d' % i, 'admin'))
    for i in range(1, n_member + 1):
        plan.append(('tempest-member-%d' % i, 'tempest-project-%d' % i, 'member'))
    for i in range(1, n_reader + 1):
        # reader i shares project i with member i (wrapping if more readers)
        proj = 'tempest-project-%d' % ((i - 1) % max(n_member, 1) + 1)
        plan.append(('tempest-reader-%d' % i, proj, 'reader'))
    return [dict(username=u, password=password, project_name=p,
                 domain_name=DOMAIN_NAME, roles=[r]) for u, p, r in plan]


def write_accounts(path, accounts):
    # Plain YAML written by hand: no PyYAML needed, stable order.
    lines = ['# Pre-provisioned tempest accounts, written by scripts/tempest.',
             '# Members come before readers (see provision.py).']
    for a in accounts:
        lines += ['- username: %s' % a['username'],
                  "  password: '%s'" % a['password'],
                  '  project_name: %s' % a['project_name'],
                  '  domain_name: %s' % a['domain_name'],
                  '  roles:'] + ['    - %s' % r for r in a['roles']]
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')


def upload_volume_image(url, token):
    """A public 64 MiB qcow2 holding a little data; returns its id."""
    s = requests.Session()
    s.headers['X-Auth-Token'] = token
    r = s.post(url + '/image/v2/images', timeout=TIMEOUT, json={
        'name': 'tempest-volume-image', 'disk_format': 'qcow2',
        'container_format': 'bare', 'visibility': 'public'})
    if r.status_code != 201:
        die('POST /image/v2/images -> %s: %s' % (r.status_code, r.text[:300]))
    image = r.json()['id']
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, 'image.qcow2')
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', path, '64M'], check=True)
        subprocess.run(['qemu-io', '-f', 'qcow2', '-c', 'write -P 0x5a 0 1M', path],
                       check=True, stdout=subprocess.DEVNULL)
        with open(path, 'rb') as f:
            data = f.read()
    r = s.put(url + '/image/v2/images/%s/file' % image, data=data, timeout=TIMEOUT,
              headers={'Content-Type': 'application/octet-stream'})
    if r.status_code != 204:
        die('PUT the image data -> %s: %s' % (r.status_code, r.text[:300]))
    return image


def render_conf(path, values):
    with open(os.path.join(HERE, 'tempest.conf.in')) as f:
        text = f.read()
    if values.get('GLANCE') == 'true':
        with open(os.path.join(HERE, 'tempest-image.conf.in')) as f:
            text += '\n' + f.read()
    for k, v in values.items():
        text = text.replace('@%s@' % k, str(v))
    left = re.findall(r'@[A-Z_]+@', text)
    if left:
        die('tempest.conf.in: no value for %s' % ', '.join(sorted(set(left))))
    with open(path, 'w') as f:
        f.write(text)


def microversions(url):
    deadline = time.time() + 10
    while True:
        try:
            r = requests.get(url.rstrip('/') + '/', timeout=TIMEOUT)
            v = r.json()['versions'][0]
            return v['min_version'], v['version']
        except Exception as e:  # noqa: B902
            if time.time() > deadline:
                die('GET %s/: no version document (%s)' % (url, e))
            time.sleep(0.5)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--url', help='base URL of scoria serve')
    ap.add_argument('--admin-user', default='admin')
    ap.add_argument('--admin-project', default='admin')
    ap.add_argument('--admin-password', default=os.environ.get('SCORIA_ADMIN_PASSWORD'))
    ap.add_argument('--workspace', required=True)
    ap.add_argument('--admins', type=int, default=2)
    ap.add_argument('--members', type=int, default=4)
    ap.add_argument('--readers', type=int, default=4)
    ap.add_argument('--account-password', default='tempest-Secret-1')
    ap.add_argument('--build-timeout', type=int, default=60)
    ap.add_argument('--offline', action='store_true',
                    help='no server: write the config with --min/--max only')
    ap.add_argument('--min', default='3.0')
    ap.add_argument('--max', default='3.71')
    ap.add_argument('--volume-image', action='store_true',
                    help='upload the image the volume tests make volumes from')
    a = ap.parse_args()

    ws = os.path.abspath(a.workspace)
    for d in ('etc', 'logs', 'locks'):
        os.makedirs(os.path.join(ws, d), exist_ok=True)
    accounts = accounts_plan(a.admins, a.members, a.readers, a.account_password)
    image_ref = 'scoria-has-no-image'

    if a.offline:
        url = a.url or 'http://127.0.0.1:9'
        vmin, vmax = a.min, a.max
    else:
        if not a.url or not a.admin_password:
            die('--url and --admin-password (or SCORIA_ADMIN_PASSWORD) are required')
        url = a.url.rstrip('/')
        vmin, vmax = microversions(url)
        idn = Identity(url + '/identity/v3')
        idn.call('GET', '', (200,))
        idn.login(a.admin_user, a.admin_password, a.admin_project)
        roles = {r: idn.ensure_role(r) for r in ('admin', 'member', 'reader')}
        projects = {}
        for acc in accounts:
            p = acc['project_name']
            if p not in projects:
                projects[p] = idn.ensure_project(p)
            uid = idn.ensure_user(acc['username'], acc['password'], projects[p])
            for r in acc['roles']:
                idn.grant(projects[p], uid, roles[r])
        # Every account must log in and see the Block Storage endpoint.
        check = Identity(url + '/identity/v3')
        for acc in accounts:
            _, tok = check.token(acc['username'], acc['password'], acc['project_name'])
            types = {s.get('type') for s in tok.get('catalog', [])}
            if 'volumev3' not in types:
                die('token of %s has no volumev3 endpoint in its catalog (has %s)'
                    % (acc['username'], sorted(t for t in types if t)))
        if a.volume_image:
            image_ref = upload_volume_image(url, idn.s.headers['X-Auth-Token'])
            print('provision: image_ref %s' % image_ref)
        print('provision: %d accounts (%d admin, %d member, %d reader) in %d projects; '
              'microversions %s..%s' % (len(accounts), a.admins, a.members, a.readers,
                                        len(projects), vmin, vmax))

    write_accounts(os.path.join(ws, 'etc', 'accounts.yaml'), accounts)
    render_conf(os.path.join(ws, 'etc', 'tempest.conf'), {
        'LOG_DIR': os.path.join(ws, 'logs'),
        'LOCK_PATH': os.path.join(ws, 'locks'),
        'ACCOUNTS_FILE': os.path.join(ws, 'etc', 'accounts.yaml'),
        'IDENTITY_URI': url + '/identity/v3',
        'ADMIN_USER': accounts[0]['username'],
        'ADMIN_PASSWORD': accounts[0]['password'],
        'ADMIN_PROJECT': accounts[0]['project_name'],
        'MIN_MICROVERSION': vmin,
        'MAX_MICROVERSION': vmax,
        'BUILD_TIMEOUT': a.build_timeout,
        # Both runs (the volume run and the image run, see docs/conformance.md)
        # have the image service.
        'GLANCE': os.environ.get('TEMPEST_GLANCE', 'true'),
        'IMAGE_REF': image_ref,
    })
    print('provision: wrote %s/etc/tempest.conf and accounts.yaml' % ws)


if __name__ == '__main__':
    main()
