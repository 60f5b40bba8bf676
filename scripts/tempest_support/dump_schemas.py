"""Print the required keys of every tempest volume response schema (tempest.lib.api_schema.response.volume).

    .venv/tempest/bin/python scripts/tempest_support/dump_schemas.py > docs/tempest-response-schemas.txt

One block per schema: `module.name  status [codes]`, then for each object in the body its
required keys with their JSON types, "[no extra keys]" where additionalProperties is false
(an unexpected key fails the test), and the optional keys it allows.
"""
import importlib, pkgutil, sys
import tempest.lib.api_schema.response.volume as pkg
def typ(s):
    t = s.get('type')
    if isinstance(t, list): t = '|'.join(t)
    if 'format' in s: t = '%s(%s)' % (t, s['format'])
    if 'pattern' in s: t = '%s /%s/' % (t, s['pattern'])
    if 'enum' in s: t = 'enum%s' % s['enum']
    return t or '?'
def walk(s, path, out):
    if not isinstance(s, dict): return
    if s.get('type') == 'object' or 'properties' in s:
        req = s.get('required', [])
        props = s.get('properties', {})
        ap = s.get('additionalProperties', True)
        if props or req:
            out.append('  %s: required {%s}%s' % (path or '.', ', '.join('%s:%s' % (k, typ(props.get(k, {}))) for k in req),
                       '' if ap is not False else ' [no extra keys]'))
            opt = [k for k in props if k not in req]
            if opt: out.append('  %s  optional: %s' % (' ' * len(path or '.'), ', '.join(opt)))
        for k, v in props.items():
            walk(v, (path + '.' if path else '') + k, out)
    if s.get('type') == 'array' and isinstance(s.get('items'), dict):
        walk(s['items'], path + '[]', out)
mods = [m.name for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.')]
for mn in sorted(mods):
    m = importlib.import_module(mn)
    short = mn.replace('tempest.lib.api_schema.response.volume.', '')
    for name, val in vars(m).items():
        if isinstance(val, dict) and 'status_code' in val:
            out = []
            walk(val.get('response_body', {}), '', out)
            print('%s.%s  status %s' % (short, name, val['status_code']))
            print('\n'.join(out))
