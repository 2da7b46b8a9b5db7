#!/usr/bin/env bash
# Prints the fire-time jitter of 100 schedules due in the same minute, on the real clock: a
# conductor (no codexd; the system paused, so the tasks only queue) gets 100 "* * * * *"
# schedules, the script waits for the next whole minute (up to a minute), and each fire's
# lateness is its task's created_at minus that minute: p50, p99 and max in ms (aim: p99 under
# 1 s). Numbers, not pass/fail. BAA_BENCH_PROFILE=debug uses the debug build (default
# release); BAA_BENCH_SCHEDULES changes the count.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
profile=${BAA_BENCH_PROFILE:-release}
n=${BAA_BENCH_SCHEDULES:-100}
if [ "$profile" = release ]; then
  cargo build --quiet --release --bin baa-conductor
else
  cargo build --quiet --bin baa-conductor
fi
bin=$PWD/target/$profile/baa-conductor
dir=$(mktemp -d "${TMPDIR:-/tmp}/baa-bench-schedules.XXXXXX")
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
token=bench-token-0123456789abcdef
(cd "$dir" && BAA_RUNTIME_ROOT="$dir" BAA_SHARED_TOKEN=$token RUST_LOG=warn \
  exec "$bin" start --local-api "$base" --node-id bench --host bench --role primary) \
  >"$dir/conductor.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  curl -fsS "$base/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "$base/readyz" >/dev/null
curl -fsS -X POST "$base/v1/system/pause" -H 'Content-Type: application/json' \
  -d '{"requested_by":"bench"}' >/dev/null
# All of them must be due at the same minute: not too close to its end.
while [ "$(date +%S | sed 's/^0//')" -gt 45 ]; do sleep 1; done
for i in $(seq "$n"); do
  curl -fsS -X POST "$base/v1/schedules" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' \
    -d "{\"name\":\"bench $i\",\"cron\":\"* * * * *\",\"timezone\":\"UTC\",\"overlap\":\"allow\",\"task\":{\"title\":\"bench $i\",\"prompt\":\"p\",\"cwd\":\"$dir\"}}" \
    >/dev/null
done
due=$(curl -fsS "$base/v1/schedules" | jq -r '[.data.schedules[].next_fire_at] | unique | if length == 1 then .[0] else error("not all due at once") end')
due_ms=$(python3 -c "import sys,datetime; print(int(datetime.datetime.strptime(sys.argv[1], '%Y-%m-%dT%H:%M:%S.%fZ').replace(tzinfo=datetime.timezone.utc).timestamp()*1000))" "$due")
echo "schedules: $n due at $due"
# Sleep past the minute, then until every fire is recorded.
now_ms=$(python3 -c 'import time; print(int(time.time()*1000))')
sleep "$(python3 -c "print(max(0, ($due_ms - $now_ms) / 1000 + 1))")"
for _ in $(seq 100); do
  fired=$(curl -fsS "$base/v1/schedules" | jq "[.data.schedules[] | select(.last_fire.at == \"$due\")] | length")
  [ "$fired" -eq "$n" ] && break
  sleep 0.1
done
curl -fsS "$base/v1/tasks?limit=100" | python3 -c '
import sys, json, datetime
due_ms = int(sys.argv[1]); n = int(sys.argv[2])
def ms(s):
    return int(datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)
tasks = [t for t in json.load(sys.stdin)["data"]["tasks"] if t.get("schedule_id")]
late = sorted(ms(t["created_at"]) - due_ms for t in tasks)
if len(late) != n:
    sys.exit(f"expected {n} fired tasks, got {len(late)}")
pick = lambda q: late[min(len(late) - 1, int(q * len(late)))]
print(f"fire jitter after the minute ({len(late)} fires): p50 {pick(0.5)} ms, p99 {pick(0.99)} ms, max {max(late)} ms, min {min(late)} ms")
' "$due_ms" "$n"
