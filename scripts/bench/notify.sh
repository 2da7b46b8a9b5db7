#!/usr/bin/env bash
# Prints notification numbers (benches/notify.rs) with codexd's stub child: task dispatch
# latency with notifications off and on (a receiver taking 200 ms per delivery), and
# delivery throughput to a receiver answering in 0 ms and in 50 ms, with the dispatch
# latency of the same tasks alongside. Numbers, not pass/fail. A name filter may follow:
# notify.sh throughput
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
exec cargo bench --bench notify -- "$@"
