"""List which tempest.api.volume tests a tempest.conf lets run, without a cloud.

    TEMPEST_CONFIG_DIR=DIR TEMPEST_CONFIG=tempest.conf \
        .venv/tempest/bin/python scripts/tempest_support/list_runnable.py [--exclude-list FILE]

For each test it prints `RUN`, `SKIP <reason>` or `EXCLUDED <comment>`, tab separated,
then a summary. Class-level skips come from the class's real skip_checks() (config
switches, microversion range, credentials); test-level skips (testtools.skipUnless,
utils.services, decorators.skip_because, a skipException at the top of the body) are
found by calling the test method on a bare instance: a skip exception means skipped,
any other outcome (the body fails at once without a cloud) means it would run.
Used to keep docs/tempest-gap-analysis.md and docs/conformance.md honest.
"""
import argparse
import collections
import os
import signal
import sys
import unittest

import testtools

SKIP_EXC = (unittest.SkipTest, testtools.TestCase.skipException)


class _Timeout(Exception):
    pass


def _alarm(*_):
    raise _Timeout()


def discover():
    loader = unittest.TestLoader()
    import tempest
    top = os.path.dirname(os.path.dirname(tempest.__file__))
    suite = loader.discover(os.path.join(top, 'tempest', 'api', 'volume'),
                            top_level_dir=top, pattern='test_*.py')
    out = []

    def walk(s):
        for t in s:
            if isinstance(t, unittest.TestSuite):
                walk(t)
            else:
                out.append(t)
    walk(suite)
    return out


def test_id(t):
    # stestr/tempest ids: module.Class.method[attrs]; the attrs don't matter here.
    return '%s.%s.%s' % (type(t).__module__, type(t).__name__, t._testMethodName)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--exclude-list')
    ap.add_argument('--summary-only', action='store_true')
    args = ap.parse_args()

    from tempest import config
    config.CONF.set_config_path(os.path.join(os.environ['TEMPEST_CONFIG_DIR'],
                                             os.environ['TEMPEST_CONFIG']))
    excludes = []
    if args.exclude_list:
        from stestr.selection import exclusion_reader
        excludes = exclusion_reader(args.exclude_list)

    class_skip = {}
    rows = []
    signal.signal(signal.SIGALRM, _alarm)
    for t in discover():
        if isinstance(t, unittest.loader._FailedTest):
            rows.append((test_id(t), 'IMPORT-ERROR', str(t._exception)))
            continue
        cls = type(t)
        tid = test_id(t)
        ex = [c for r, c, _ in excludes if r.search(tid)]
        if ex:
            rows.append((tid, 'EXCLUDED', ex[0]))
            continue
        if cls not in class_skip:
            try:
                cls.skip_checks()
                class_skip[cls] = None
            except SKIP_EXC as e:
                class_skip[cls] = 'class: %s' % e
            except Exception as e:  # a skip_checks that cannot run offline
                class_skip[cls] = None
                print('# %s.skip_checks raised %r' % (cls.__name__, e),
                      file=sys.stderr)
        if class_skip[cls]:
            rows.append((tid, 'SKIP', class_skip[cls]))
            continue
        inst = cls.__new__(cls)
        meth = getattr(cls, t._testMethodName)
        status, why = 'RUN', ''
        signal.alarm(2)
        try:
            meth(inst)
        except SKIP_EXC as e:
            status, why = 'SKIP', 'test: %s' % e
        except BaseException:  # noqa: B902 - anything else: it would run
            pass
        finally:
            signal.alarm(0)
        rows.append((tid, status, why))

    counts = collections.Counter(r[1] for r in rows)
    if not args.summary_only:
        for r in rows:
            print('\t'.join(r))
    print('# total %d: %s' % (len(rows), ', '.join(
        '%s %d' % kv for kv in sorted(counts.items()))))


if __name__ == '__main__':
    main()
