#!/usr/bin/env bash
# Prints how long a codexd restart interrupts Codex work (benches/codexd_restart.rs): with
# the app-server on a Unix socket (re-attach: the same turn streams again) vs over stdio
# (respawn: a new app-server and a new turn), p50 over 10 SIGKILL restarts each, against
# the real pinned codex on the offline mock model. Numbers, not pass/fail. Installs the
# pinned codex CLI into .tools/ on first use. An argument runs only the benches whose name
# contains it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
exec cargo bench --bench codexd_restart -- "$@"
