#!/usr/bin/env python3
"""Runs the runtime-script tests (every tests/scripts/test_*.py module) and prints
"N passed, M failed" last; exit 1 on any failure. Arguments name tests to run, e.g.
`test_install.TokenTests` or `test_lifecycle.LifecycleTests.test_upgrade_rolls_back`.
BAA_TEST_BIN_DIR=<dir with the three binaries> drives the real daemons (harness.py)."""

import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402  (needs the path above)


def main():
    try:
        real = harness.real_bin_dir()
    except SystemExit as err:
        print("error: %s" % err, file=sys.stderr)
        print("0 passed, 1 failed")
        return 1
    print("daemons: %s" % ("real binaries in %s" % real if real else "python stand-ins (set BAA_TEST_BIN_DIR for the real ones)"))
    loader = unittest.defaultTestLoader
    names = sys.argv[1:]
    if names:
        suite = loader.loadTestsFromNames(names)
    else:
        suite = loader.discover(str(HERE), pattern="test_*.py", top_level_dir=str(HERE))
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    if skipped:
        print("%d skipped" % skipped)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed or result.testsRun == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
