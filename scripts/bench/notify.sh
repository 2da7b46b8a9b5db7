#!/usr/bin/env bash
# Prints notification numbers (benches/notify.rs) with codexd's stub child: task dispatch
# latency with notifications off and on (a receiver taking 200 ms per delivery); and 100
# tasks queued at once with notifications off and to a receiver answering in 0, 50 and
# 200 ms: the scheduler's dispatch gap next to the delivery throughput. Numbers, not
# pass/fail. A name filter may follow: notify.sh throughput
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
exec cargo bench --bench notify -- "$@"
