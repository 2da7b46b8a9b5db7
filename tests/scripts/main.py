#!/usr/bin/env python3
"""Runs the runtime-script tests (every tests/scripts/test_*.py module) and prints
"N passed, M failed" last; exit 1 on any failure. Arguments name tests to run, e.g.
`test_install.TokenTests` or `test_lifecycle.LifecycleTests.test_upgrade_rolls_back`.
`--jobs N` (first) splits the tests over N processes run side by side (each test has its
own node: temp HOME, free ports); their outputs are printed one after the other.
BAA_TEST_BIN_DIR=<dir with the three binaries> drives the real daemons (harness.py)."""

import re
import subprocess
import sys
import time
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402  (needs the path above)


def load(names):
    loader = unittest.defaultTestLoader
    if names:
        return loader.loadTestsFromNames(names)
    return loader.discover(str(HERE), pattern="test_*.py", top_level_dir=str(HERE))


def test_ids(suite):
    if isinstance(suite, unittest.TestSuite):
        return [i for t in suite for i in test_ids(t)]
    return [suite.id()]


def run_sharded(jobs, names):
    """Round-robin over the test ids (so each shard gets some of every module), one
    subprocess per shard; sums their counts."""
    ids = sorted(test_ids(load(names)))
    shards = [ids[i::jobs] for i in range(jobs) if ids[i::jobs]]
    procs = [subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *shard],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for shard in shards]
    passed = failed = skipped = 0
    for n, proc in enumerate(procs, 1):
        out, _ = proc.communicate()
        print("--- shard %d of %d (%d tests) ---" % (n, len(procs), len(shards[n - 1])))
        print(out, end="")
        counts = re.findall(r"^(\d+) passed, (\d+) failed$", out, re.M)
        skips = re.findall(r"^(\d+) skipped$", out, re.M)
        if proc.returncode != 0 or not counts:
            failed += max(1, int(counts[-1][1]) if counts else 1)
        else:
            failed += int(counts[-1][1])
        if counts:
            passed += int(counts[-1][0])
        if skips:
            skipped += int(skips[-1])
    if skipped:
        print("%d skipped" % skipped)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed or passed == 0 else 0


class TimedResult(unittest.TextTestResult):
    """Keeps each test's wall time, so the slowest can be named at the end (the script
    tests are the suite's critical path; this is where to look when it grows)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.times = []
        self._started = 0.0

    def startTest(self, test):
        self._started = time.monotonic()
        super().startTest(test)

    def stopTest(self, test):
        super().stopTest(test)
        self.times.append((time.monotonic() - self._started, test.id()))


def main():
    args = sys.argv[1:]
    jobs = 1
    if args[:1] == ["--jobs"] and len(args) >= 2:
        jobs = int(args[1])
        args = args[2:]
    try:
        real = harness.real_bin_dir()
    except SystemExit as err:
        print("error: %s" % err, file=sys.stderr)
        print("0 passed, 1 failed")
        return 1
    print("daemons: %s" % ("real binaries in %s" % real if real else "python stand-ins (set BAA_TEST_BIN_DIR for the real ones)"))
    if jobs > 1:
        return run_sharded(jobs, args)
    result = unittest.TextTestRunner(verbosity=2, resultclass=TimedResult).run(load(args))
    for took, name in sorted(result.times, reverse=True)[:6]:
        print("slowest: %5.1f s  %s" % (took, name))
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    if skipped:
        print("%d skipped" % skipped)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed or result.testsRun == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
