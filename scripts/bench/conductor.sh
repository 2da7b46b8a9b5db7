#!/usr/bin/env bash
# Builds the release binaries and runs the conductor benchmark (benches/conductor.rs):
# start-to-/healthz time, idle RSS, binary sizes, req/s and p50/p99 at 16 and 64
# keep-alive connections. Prints numbers; it does not pass or fail on them.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --bins
cargo bench --bench conductor
