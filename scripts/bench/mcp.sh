#!/usr/bin/env bash
# Prints what the conductor's MCP endpoint costs over the HTTP route it wraps
# (benches/mcp.rs), on the release conductor: p50/p90/p99 of `tools/call` of a read tool
# (tasks_list, system_state) on POST /mcp vs GET /v1/tasks and GET /v1/system/state, 2000
# each, one keep-alive client per side, alternating. Numbers, not pass/fail; the aim
# (issue 21) is within 1.5x at p50.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
exec cargo bench --bench mcp -- "$@"
