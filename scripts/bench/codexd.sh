#!/usr/bin/env bash
# Prints codexd benchmark figures (benches/codexd.rs): turn latency through codexd vs direct
# on the app-server (same offline mock), event fan-out latency to 1/10/100 WebSocket
# subscribers (stub child), idle RSS without a child, respawn time after SIGKILL of the
# real child, the session registry's size with 46 sessions of big turns, and the event log
# after 100k events (disk, RSS, ?since= from the ring vs from disk). Numbers, not
# pass/fail. Installs the pinned codex CLI into .tools/ on first use.
# An argument runs only the benches whose name contains it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
exec cargo bench --bench codexd -- "$@"
