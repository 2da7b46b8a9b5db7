#!/usr/bin/env bash
# Prints codexd's figures with many retained sessions (benches/codexd_sessions.rs), stub
# child: RSS at 0, 500, 1,000 and 2,000 sessions (each with a finished turn that left a
# 64 KiB diff), after listing them and after a restart; and the write cost of one turn
# (bytes and write calls, the session files written, turn time) at 10 and at 2,000 sessions.
# Numbers, not pass/fail. An argument runs only the benches whose name contains it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
exec cargo bench --bench codexd_sessions -- "$@"
