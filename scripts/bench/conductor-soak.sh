#!/usr/bin/env bash
# Prints the conductor's memory over many tasks (benches/conductor_soak.rs): a release
# conductor on a free loopback port and its own temp root, pointed at codexd with the built-in
# stub child (no codex, no model), takes 10,000 one-step tasks and prints VmRSS, VmHWM and its
# thread count every 1,000, while 4 reader threads list tasks and read a task and its log,
# each request on a new connection. Numbers, not pass/fail. Never uses the fixed ports
# 4317-4319.
#   BAA_SOAK_TASKS=10000 BAA_SOAK_EVERY=1000 BAA_SOAK_WINDOW=64 BAA_SOAK_MAX_RUNNING=4
#   BAA_SOAK_READERS=4
# MALLOC_ARENA_MAX=64 in the environment reaches the conductor and overrides its start-up
# arena cap (shows the growth the cap prevents).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
exec cargo bench --bench conductor_soak -- "$@"
