#!/usr/bin/env bash
# Prints worker-mode numbers (benches/tasks.rs), on the real codex app-server with the offline
# mock model: dispatch latency (POST /v1/tasks → the model receives the turn) p50/p99 next to a
# turn sent straight to codexd; 200 one-step tasks through the scheduler vs the same 200 turns
# straight to codexd, same run, and their ratio (aim <= 1.1x); conductor start time and RSS
# with 10k stored tasks (aim < 300 ms, < 16 MiB). After each sample, where a task's time goes:
# the conductor's per-dispatch and per-run timings (scheduler wake-up, dispatch gate, dispatch
# write, session, event-stream set-up, send, turn, finish, durable writes) next to the direct
# path's session create and turn POST. Numbers, not pass/fail. Installs the pinned
# codex CLI into .tools/ on first use. A name filter may follow: tasks.sh 10k
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
exec cargo bench --bench tasks -- "$@"
