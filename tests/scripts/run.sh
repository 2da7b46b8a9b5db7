#!/usr/bin/env bash
# Run the runtime-script tests (Linux or macOS; needs bash, python3, curl).
# Prints "N passed, M failed" last and exits non-zero on any failure.
# BAA_TEST_BIN_DIR=/path/to/target/release runs them against the real binaries;
# arguments name tests (e.g. test_install.TokenTests); `--jobs N` first runs them in N
# processes side by side.
set -euo pipefail
here="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
exec python3 "${here}/main.py" "$@"
