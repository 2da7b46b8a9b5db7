#!/usr/bin/env bash
# The adversarial kill run for worker mode: a conductor and a codexd on its built-in stub
# child (the real binaries, on free loopback ports, under a private runtime root), N
# multi-step tasks queued, the conductor SIGKILLed and restarted KILLS times at random
# moments, then, once every task is terminal, each task compared with its runs:
#
# - steps_done equals the step count of the run that finished it (and its steps are all
#   completed when the task succeeded);
# - final_message is the last step's (the stub echoes the last step's prompt, unique per
#   task; the steps before it answer "slow reply");
# - the task log has a "step k/N completed" line for every step completed, and one end
#   line for every ended run;
# - no task lost (every created task is there), stuck (not terminal after the wait) or
#   sent twice (codexd ran more turns for it than it has steps).
#
# Prints each mismatch, then `tasks: … kills: … mismatches: M lost: L stuck: S duplicated: D`,
# and exits 1 when any count is not 0. Not part of scripts/test.sh.
#
# Usage: scripts/bench/kill-tasks.sh [--debug|--release] [N [KILLS]]
#   N (default 500) tasks of STEPS (default 4) steps, KILLS (default 20) kills; SEED
#   seeds the kill moments; KEEP=1 keeps the runtime root; BIN_DIR runs the binaries in
#   that directory. Otherwise builds the binaries first
#   unless NO_BUILD=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

profile=release
case "${1:-}" in
--debug)
    profile=debug
    shift
    ;;
--release) shift ;;
esac
n=${1:-500}
kills=${2:-20}
steps=${STEPS:-4}
# Each step but the last is a stub turn of ten deltas STEP_MS apart (its answer is "slow
# reply"); the last one is echoed ("stub reply: task I step N"), so a task showing an
# earlier step's message is told apart.
step_ms=${STEP_MS:-20}
RANDOM=${SEED:-$$}
bin=${BIN_DIR:-target/$profile}
if [[ ${NO_BUILD:-0} != 1 && -z ${BIN_DIR:-} ]]; then
    if [[ $profile == release ]]; then
        nice cargo build --release --bins
    else
        nice cargo build --bins
    fi
fi
for b in baa-conductor baa-codexd; do
    [[ -x $bin/$b ]] || {
        echo "no $bin/$b (build it, or drop NO_BUILD=1)" >&2
        exit 2
    }
done
for tool in curl jq; do
    command -v "$tool" >/dev/null || {
        echo "kill-tasks.sh needs $tool" >&2
        exit 2
    }
done
bin=$(cd "$bin" && pwd)

root=$(mktemp -d "${TMPDIR:-/tmp}/baa-kill-tasks.XXXXXX")
codexd_pid=
conductor_pid=
cleanup() {
    [[ -n $conductor_pid ]] && kill -9 "$conductor_pid" 2>/dev/null
    [[ -n $codexd_pid ]] && kill "$codexd_pid" 2>/dev/null
    wait 2>/dev/null
    if [[ ${KEEP:-0} == 1 ]]; then
        echo "runtime root kept: $root" >&2
    else
        rm -rf "$root"
    fi
}
trap cleanup EXIT

# shellcheck source=scripts/bench/lib/stub-codexd.sh
source scripts/bench/lib/stub-codexd.sh

echo "runtime root: $root (binaries in $bin, $n tasks of $steps steps, $kills kills)"
mkdir -p "$root/c"
start_stub_codexd "$root" "$bin"

conductor=
starts=0
start_conductor() {
    starts=$((starts + 1))
    BAA_SHARED_TOKEN=kill-tasks-token-0123456789 \
        BAA_CODEXD_LOCAL_API_BASE="$codexd" \
        BAA_CONDUCTOR_MAX_RUNNING_TASKS="${MAX_RUNNING:-8}" \
        BAA_CONDUCTOR_TASK_RETENTION=$((n + 100)) \
        BAA_CONDUCTOR_TASK_BACKOFF_MS=200 \
        BAA_CONDUCTOR_TASK_BACKOFF_MAX_MS=1000 \
        RUST_LOG=warn \
        "$bin/baa-conductor" start --local-api http://127.0.0.1:0 --node-id kill-bench \
        --repo-root "$root" \
        --host benchhost --role primary --root "$root/c" \
        --lease-ttl-sec 2 --lease-renew-interval-ms 200 --heartbeat-interval-ms 200 \
        >"$root/c/conductor-$starts.out" 2>"$root/c/conductor-$starts.err" &
    conductor_pid=$!
    conductor=$(announced "$root/c/conductor-$starts.out" "$conductor_pid")
}
start_conductor

# Queue the tasks while paused (all before the first kill, so the kills spread over the
# whole run), then resume.
system() {
    curl -s -o /dev/null -w '%{http_code}' -X POST "$conductor/v1/system/$1" \
        -H 'Content-Type: application/json' -d '{"requested_by": "kill-tasks.sh", "reason": "queueing"}'
}
[[ $(system pause) == 200 ]] || echo "warning: the pause was refused; tasks start while queued" >&2
for ((i = 1; i <= n; i++)); do
    body=$(jq -cn --arg i "$i" --argjson s "$steps" --arg ms "$step_ms" \
        '{title: ("kill " + $i), max_attempts: 10,
          steps: ([range(1; $s) | {prompt: ("slow:" + $ms)}]
                  + [{prompt: ("task " + $i + " step " + ($s | tostring))}])}')
    curl -s -o /dev/null -w '%{http_code}\n' -X POST "$conductor/v1/tasks" \
        -H 'Content-Type: application/json' -d "$body"
done | sort | uniq -c | sed 's/^/created (http status): /'
[[ $(system resume) == 200 ]] || echo "warning: the resume was refused" >&2

summary() { curl -s --max-time 5 "$conductor/v1/tasks/summary" | jq -c '.data | {queued, running, succeeded, failed, canceled}' 2>/dev/null || echo null; }

# Kill at random moments spread over the whole run: one kill in four lands 0-1 s after a
# start (while the conductor resumes its runs); the others once a random number of further
# tasks (up to half an even share: kills outlast the tasks) finished (at most 30 s), then
# 0-300 ms later.
finished() { jq '.succeeded + .failed + .canceled' <<<"$(summary)" 2>/dev/null || echo 0; }
killed=0
for ((k = 1; k <= kills; k++)); do
    if (($(finished) >= n)); then
        echo "every task finished after $killed kill(s); no more kills"
        break
    fi
    if ((RANDOM % 4 == 0)); then
        sleep "$(printf '0.%03d' $((RANDOM % 1000)))"
    else
        target=$(($(finished) + 1 + RANDOM % (n / kills / 2 + 1)))
        until_s=$((SECONDS + 30))
        while (($(finished) < target && SECONDS < until_s)); do
            sleep 0.05
        done
        sleep "$(printf '0.%03d' $((RANDOM % 300)))"
    fi
    kill -9 "$conductor_pid"
    wait "$conductor_pid" 2>/dev/null || true
    killed=$k
    start_conductor
    echo "kill $k/$kills: $(summary)"
done

# Every task terminal (succeeded, failed or canceled), bounded.
deadline=$((SECONDS + ${WAIT_S:-600}))
while ((SECONDS < deadline)); do
    counts=$(summary)
    if [[ $counts != null ]] && jq -e '.queued == 0 and .running == 0' <<<"$counts" >/dev/null; then
        break
    fi
    sleep 0.5
done
echo "final counts: $(summary)"

# codexd's turns per task: the distinct turn ids its event log names per session (worker
# sessions carry the task id in their metadata), read before the conductor stops.
curl -s "$codexd/v1/codexd/sessions" |
    jq -r '.data.sessions[] | [.sessionId, (.metadata.task_id // "")] | @tsv' >"$root/sessions.tsv"
find "$root/cx" -name 'events*.jsonl' -exec cat {} + |
    jq -r 'select(.detail.sessionId? and .detail.turnId?) | [.detail.sessionId, .detail.turnId] | @tsv' |
    sort -u | cut -f 1 | sort | uniq -c |
    while read -r cnt sid; do
        printf '%s\t%s\n' "$(grep -m 1 "^$sid"$'\t' "$root/sessions.tsv" | cut -f 2)" "$cnt"
    done >"$root/turns.tsv"

kill -9 "$conductor_pid"
wait "$conductor_pid" 2>/dev/null || true
conductor_pid=

# Compare each task with its runs and its log, from the conductor's files.
state=$root/c/state
jq -s -r --slurpfile runs <(cat "$state"/runs/*.json 2>/dev/null | jq -c . | jq -s .) \
    --rawfile turns "$root/turns.tsv" --argjson want "$n" '
    ($runs[0] | map({(.run_id): .}) | add // {}) as $run
    | ($turns | split("\n") | map(select(length > 0) | split("\t"))
        | reduce .[] as $t ({}; .[$t[0]] += (($t[1] | tonumber?) // 0))) as $turned
    | . as $tasks
    | ([ $tasks[]
        | . as $t
        | ($t.runs | map($run[.run_id]) | map(select(. != null))) as $rs
        | ($rs | map(select(.status == "succeeded")) | last) as $won
        | ($t.input.steps | length) as $total
        | if ($t.status | IN("succeeded", "failed", "canceled")) | not then
            "stuck \($t.task_id): \($t.status) \($t.steps_done)/\($total)"
          elif $t.status == "succeeded" and ($won == null) then
            "mismatch \($t.task_id): succeeded without a succeeded run"
          elif $t.status == "succeeded" and ($won.exit.steps_completed != $t.steps_done or $t.steps_done != $total) then
            "mismatch \($t.task_id): task steps_done \($t.steps_done)/\($total), run \($won.run_id) \($won.exit.steps_completed)/\($won.exit.steps_total)"
          elif $t.status == "succeeded" and $t.final_message != ("stub reply: " + $t.input.steps[$total - 1].prompt) then
            "mismatch \($t.task_id): final_message \($t.final_message | tojson), last step wants \(("stub reply: " + $t.input.steps[$total - 1].prompt) | tojson)"
          elif ($rs | map(.steps[] | select(.status == "completed") | .index) | unique | length) != $t.steps_done then
            "mismatch \($t.task_id): task steps_done \($t.steps_done), runs completed \($rs | map(.steps[] | select(.status == "completed") | .index) | unique | length)"
          elif ($turned[$t.task_id] // 0) > $total then
            "duplicated \($t.task_id): codexd ran \($turned[$t.task_id]) turns for \($total) steps"
          else empty end ]
      + (if ($tasks | length) < $want then ["lost: \($want - ($tasks | length)) task file(s) missing"] else [] end))
    | .[]' "$state"/tasks/*.json >"$root/problems.txt" || true

# Every completed step has its log line: the (task, step) pairs the tasks count against
# those their logs say completed.
jq -r '.task_id as $t | range(1; .steps_done + 1) | "\($t)\t\(.)"' "$state"/tasks/*.json |
    sort >"$root/steps-done.tsv"
cat "$state"/task-logs/*.jsonl 2>/dev/null |
    jq -r 'select(.message | test("^step [0-9]+/[0-9]+ completed")) | "\(.task_id)\t\(.detail.step)"' |
    sort -u >"$root/steps-logged.tsv"
comm -23 "$root/steps-done.tsv" "$root/steps-logged.tsv" |
    while IFS=$'\t' read -r tid step; do
        echo "mismatch $tid: no \"step $step/… completed\" line in its log"
    done >>"$root/problems.txt"

# Every ended run has exactly one end line ("run … succeeded/failed/canceled/paused",
# marked by detail.end) in its task's log.
jq -r 'select(.status | IN("succeeded", "failed", "canceled", "paused")) | .run_id' \
    "$state"/runs/*.json 2>/dev/null | sort >"$root/runs-ended.txt"
cat "$state"/task-logs/*.jsonl 2>/dev/null |
    jq -r 'select(.detail.end? != null) | .run_id' | sort >"$root/end-lines.txt"
{
    comm -23 "$root/runs-ended.txt" <(sort -u "$root/end-lines.txt") |
        sed 's/^\(.*\)$/mismatch run \1: no end line in its task log/'
    uniq -d "$root/end-lines.txt" | sed 's/^\(.*\)$/mismatch run \1: its end line is logged more than once/'
} >>"$root/problems.txt"

cat "$root/problems.txt"
count() { grep -c "^$1" "$root/problems.txt" || true; }
mism=$(count mismatch)
lost=$(count lost)
stuck=$(count stuck)
dup=$(count duplicated)
echo "tasks: $n kills: $killed conductor starts: $starts mismatches: $mism lost: $lost stuck: $stuck duplicated: $dup"
echo "mismatches: $mism"
[[ $mism == 0 && $lost == 0 && $stuck == 0 && $dup == 0 ]]
