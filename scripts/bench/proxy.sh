#!/usr/bin/env bash
# Prints the conductor codex-proxy overhead, same run (benches/proxy.rs): p50/p99 of
# GET /v1/codex/sessions through the conductor vs GET /v1/codexd/sessions directly on codexd
# (2000 each, keep-alive), and full turn latency (POST turn → session shows completed) through
# the conductor vs direct, on the real codex app-server with the offline mock model.
# Numbers, not pass/fail. Installs the pinned codex CLI into .tools/ on first use.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
exec cargo bench --bench proxy -- "$@"
