#!/usr/bin/env bash
# What a task's worktree costs: the real conductor and a codexd on its built-in stub child
# (real binaries, free loopback ports, a private runtime root), a git repo of FILES (default
# 10,000) files, and N (default 20) one-step tasks whose turn writes one file where its
# session runs (`write-file:NAME`). Prints, per task, p50/p90/max of:
#
# - run: the run's wall time (started_at → finished_at), worktree tasks vs the same tasks
#   in place on a copy of the repo, and the difference (what the worktree adds around the
#   turn: create before it, commit and result after it);
# - worktree_ms and commit_ms: the worker's own timings of those two phases (the
#   conductor's `run_timings` debug line);
# - diff: GET /v1/tasks/:id/diff;
# - remove: POST /v1/tasks/:id/discard (the worktree and the branch);
# - list: paging GET /v1/tasks?limit=100&before=… through LIST (default 1,000) finished
#   worktree tasks with results (a second, small repo, so the tasks run quickly).
#
# Aim: under 1 s per task at p50 for the worktree's own cost. Numbers, not pass/fail;
# not part of scripts/test.sh. Say how it was run (load, pinning) when you quote it.
#
# Usage: scripts/bench/worktrees.sh [--debug|--release] [N]
#   FILES, LIST, MAX_RUNNING (default 4), KEEP=1 keeps the root, NO_BUILD=1, BIN_DIR.
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
n=${1:-20}
files=${FILES:-10000}
list_n=${LIST:-1000}
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
for tool in curl jq git; do
    command -v "$tool" >/dev/null || {
        echo "worktrees.sh needs $tool" >&2
        exit 2
    }
done
bin=$(cd "$bin" && pwd)
token=worktrees-bench-token-0123456789

root=$(mktemp -d "${TMPDIR:-/tmp}/baa-worktrees.XXXXXX")
root=$(cd "$root" && pwd -P)
codexd_pid=
conductor_pid=
cleanup() {
    [[ -n $conductor_pid ]] && kill "$conductor_pid" 2>/dev/null
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

# No background gc or maintenance: it would repack the objects while the repo is cloned.
gitq() { git -c user.name=bench -c user.email=bench@example.com -c gc.auto=0 -c maintenance.auto=false "$@"; }

# A repo of $files files in 100 directories, one commit.
make_repo() {
    local dir=$1 count=$2 d
    mkdir -p "$dir"
    gitq -C "$dir" init -q -b main
    for ((d = 0; d < 100; d++)); do
        mkdir -p "$dir/d$d"
    done
    # One awk writes them all (a fork per file would dominate the set-up).
    awk -v dir="$dir" -v n="$count" 'BEGIN { for (i = 0; i < n; i++) { f = dir "/d" (i % 100) "/f" i ".txt"; print "file " i > f; close(f) } }'
    gitq -C "$dir" add -A
    gitq -C "$dir" commit -q -m "bench: $count files"
}

echo "runtime root: $root (binaries in $bin; $n tasks on a $files-file repo; list $list_n)"
t0=$SECONDS
make_repo "$root/repos/big" "$files"
gitq clone -q "$root/repos/big" "$root/repos/big-in-place"
make_repo "$root/repos/small" 10
echo "repos made in $((SECONDS - t0)) s"

mkdir -p "$root/c"
start_stub_codexd "$root" "$bin"

BAA_SHARED_TOKEN=$token \
    BAA_CODEXD_LOCAL_API_BASE="$codexd" \
    BAA_CONDUCTOR_MAX_RUNNING_TASKS="${MAX_RUNNING:-4}" \
    BAA_CONDUCTOR_TASK_RETENTION=$((list_n + 4 * n + 100)) \
    BAA_CONDUCTOR_TASK_ROOTS="$root/repos" \
    RUST_LOG=warn,run_timings=debug \
    "$bin/baa-conductor" start --local-api http://127.0.0.1:0 --node-id wt-bench \
    --repo-root "$root" \
    --host benchhost --role primary --root "$root/c" \
    >"$root/c/conductor.out" 2>"$root/c/conductor.err" &
conductor_pid=$!
conductor=$(announced "$root/c/conductor.out" "$conductor_pid")

# Queues one task; prints its id.
queue() {
    curl -s -X POST "$conductor/v1/tasks" -H 'Content-Type: application/json' -d "$1" |
        jq -r '.data.task.task_id // ("refused: " + (. | tostring))'
}

# Waits until every task in the file is terminal (bounded).
wait_all() {
    local ids=$1 deadline=$((SECONDS + ${WAIT_S:-900})) left
    while ((SECONDS < deadline)); do
        left=0
        while read -r id; do
            st=$(curl -s "$conductor/v1/tasks/$id" | jq -r '.data.task.status')
            [[ $st == succeeded || $st == failed || $st == canceled ]] || left=$((left + 1))
        done <"$ids"
        ((left == 0)) && return 0
        sleep 0.5
    done
    echo "tasks still not finished after the wait" >&2
    return 1
}

# p50 p90 max of the numbers on stdin (ms, one per line).
stats() {
    sort -n | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "n=0"; exit }
        p50 = v[int((NR + 1) * 0.5)]; p90 = v[int(NR * 0.9) > 0 ? int(NR * 0.9) : 1]
        printf "n=%d p50=%.1f p90=%.1f max=%.1f ms\n", NR, p50, p90, v[NR] }'
}

# Run wall time in ms of each task in the file.
run_ms() {
    while read -r id; do
        curl -s "$conductor/v1/tasks/$id" |
            jq -r '.data.runs | last | select(.status == "succeeded") | (.duration_ms // empty)'
    done <"$1"
}

for ((i = 1; i <= n; i++)); do
    queue "$(jq -cn --arg i "$i" --arg cwd "$root/repos/big" \
        '{title: ("wt " + $i), prompt: ("write-file:wt-" + $i + ".txt"), cwd: $cwd}')"
done >"$root/wt.ids"
wait_all "$root/wt.ids"
for ((i = 1; i <= n; i++)); do
    queue "$(jq -cn --arg i "$i" --arg cwd "$root/repos/big-in-place" \
        '{title: ("ip " + $i), prompt: ("write-file:ip-" + $i + ".txt"), cwd: $cwd, workspace: "in_place"}')"
done >"$root/ip.ids"
wait_all "$root/ip.ids"

bad=$(while read -r id; do
    curl -s "$conductor/v1/tasks/$id" | jq -r 'select(.data.task.status != "succeeded" or .data.task.result.changes != "committed") | .data.task | "\(.task_id) \(.status) \(.result.changes // "no result") \(.error // "" | tostring)"'
done <"$root/wt.ids")
[[ -z $bad ]] || { echo "worktree tasks that did not commit their file:"; echo "$bad"; }

echo "run (worktree):  $(run_ms "$root/wt.ids" | stats)"
echo "run (in place):  $(run_ms "$root/ip.ids" | stats)"
wt50=$(run_ms "$root/wt.ids" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] + 0 }')
ip50=$(run_ms "$root/ip.ids" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] + 0 }')
echo "worktree adds (p50 difference): $((wt50 - ip50)) ms per task"
for phase in worktree_ms commit_ms; do
    echo "$phase: $(grep -o "task=[^ ]* .* $phase=[0-9.]*" "$root/c/conductor.err" | grep -F -f "$root/wt.ids" |
        grep -o "$phase=[0-9.]*" | cut -d= -f2 | stats)"
done

timed() { curl -s -o /dev/null -w '%{time_total}\n' "$@" | awk '{ printf "%.1f\n", $1 * 1000 }'; }
echo "diff:   $(while read -r id; do timed "$conductor/v1/tasks/$id/diff"; done <"$root/wt.ids" | stats)"
echo "remove: $(while read -r id; do
    timed -X POST "$conductor/v1/tasks/$id/discard" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d '{}'
done <"$root/wt.ids" | stats)"
left=$(find "$root/c/worktrees" -mindepth 2 -maxdepth 2 -type d | wc -l)
echo "worktrees left after the discards: $left"

# Listing: LIST finished worktree tasks with results, paged 100 at a time.
for ((i = 1; i <= list_n; i++)); do
    queue "$(jq -cn --arg i "$i" --arg cwd "$root/repos/small" \
        '{title: ("list " + $i), prompt: ("write-file:l-" + $i + ".txt"), cwd: $cwd}')"
done >"$root/list.ids"
wait_all "$root/list.ids"
# The server's time: the sum of each page's curl time_total (not the jq between pages).
list_once() {
    local before="" out count=0 pages=0 total=0 t
    while :; do
        out=$(curl -s -w '\n%{time_total}' "$conductor/v1/tasks?limit=100${before:+&before=$before}")
        t=${out##*$'\n'}
        out=${out%$'\n'*}
        total=$(awk -v a="$total" -v b="$t" 'BEGIN { print a + b }')
        pages=$((pages + 1))
        count=$((count + $(jq '.data.count' <<<"$out")))
        before=$(jq -r '.data.next_before // empty' <<<"$out")
        [[ -n $before ]] || break
    done
    awk -v c="$count" -v p="$pages" -v t="$total" 'BEGIN { printf "%d tasks in %d pages: %.1f ms\n", c, p, t * 1000 }'
}
for k in 1 2 3; do
    echo "list (with results), pass $k: $(list_once)"
done
