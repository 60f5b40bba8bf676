"""Summarize a tempest subunit v2 stream.

    summarize.py RESULTS.subunit OUT.txt [FAILURES.txt]

Writes OUT.txt: one line per test, `status<TAB>test id<TAB>seconds<TAB>skip reason`,
sorted by status then id; FAILURES.txt (optional): the traceback of every failed
test. Prints `passed failed skipped` on stdout.

A class whose setUpClass fails shows up as one failed entry named
`setUpClass (module.Class)`: its tests never ran, and each counts as one failure.
"""
import sys

import subunit
import testtools

PASS = {'success', 'xfail'}
FAIL = {'fail', 'uxsuccess'}
SKIP = {'skip'}


def main():
    src, out = sys.argv[1], sys.argv[2]
    failures_path = sys.argv[3] if len(sys.argv) > 3 else None
    tests = []

    def on_test(t):
        if t['status'] in ('exists', None):
            return
        tests.append(t)

    with open(src, 'rb') as f:
        stream = subunit.ByteStreamToStreamResult(f, non_subunit_name='stdout')
        result = testtools.StreamToDict(on_test)
        result.startTestRun()
        try:
            stream.run(result)
        finally:
            result.stopTestRun()

    def text(t, name):
        d = t['details'].get(name)
        return d.as_text() if d is not None else ''

    rows, fails = [], []
    counts = {'passed': 0, 'failed': 0, 'skipped': 0}
    for t in tests:
        st = t['status']
        tid = t['id'].split('[')[0]
        if st in PASS:
            counts['passed'] += 1
            label = 'pass'
        elif st in SKIP:
            counts['skipped'] += 1
            label = 'skip'
        else:
            counts['failed'] += 1
            label = 'fail'
            fails.append((tid, text(t, 'traceback') or text(t, 'reason')))
        ts = t['timestamps']
        secs = (ts[1] - ts[0]).total_seconds() if ts[0] and ts[1] else 0.0
        reason = text(t, 'reason').strip().replace('\n', ' ') if label == 'skip' else ''
        rows.append((label, tid, '%.1f' % secs, reason))
    order = {'fail': 0, 'skip': 1, 'pass': 2}
    rows.sort(key=lambda r: (order[r[0]], r[1]))
    with open(out, 'w') as f:
        for r in rows:
            f.write('\t'.join(r).rstrip('\t') + '\n')
    if failures_path:
        with open(failures_path, 'w') as f:
            for tid, tb in sorted(fails):
                f.write('=' * 70 + '\n%s\n' % tid + '-' * 70 + '\n%s\n' % tb.rstrip())
    print(counts['passed'], counts['failed'], counts['skipped'])


if __name__ == '__main__':
    main()
