#!/usr/bin/env bash
# Runs the README's curl walk-through verbatim against a fresh `scripts/dev.sh --demo`, the
# way a newcomer would, and checks that the turn completed and its answer was printed; then,
# on the same stack, every other marked shell block of README.md and docs/
# (scripts/docs-blocks.sh: the README's approval walk-through, the API examples, …).
#
# The walk-through is read from README.md between the `walkthrough:start` / `walkthrough:end`
# marker comments, so the README stays the single source. The stack uses the default ports
# (4317, 4318, 4319); if one is busy the script fails and says which. For a machine where
# they are taken, BAA_DEV_CONDUCTOR_PORT / BAA_DEV_STATUS_PORT / BAA_DEV_CODEXD_PORT move the
# stack and the walk-through's URLs together.
#
# The stack keeps its state and logs in a fresh temporary dir (BAA_DEV_DIR), never in
# dev.sh's .local/: a run starts from nothing and leaves a developer's dev state alone.
#
# Every wait is bounded; the stack is stopped on exit (its own process group). Exit 0 on
# success, 1 on failure (with the walk-through output and the stack's log tail).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

conductor_port="${BAA_DEV_CONDUCTOR_PORT:-4317}"
status_port="${BAA_DEV_STATUS_PORT:-4318}"
codexd_port="${BAA_DEV_CODEXD_PORT:-4319}"
start_timeout="${BAA_WALKTHROUGH_START_TIMEOUT:-300}" # includes dev.sh's cargo build
run_timeout=60

fail() { echo "walkthrough: FAIL: $*" >&2; exit 1; }

scripts/docs-blocks.sh --lint || fail "a shell block in README.md or docs/ is not marked (above)"

block="$(sed -n '/<!-- walkthrough:start -->/,/<!-- walkthrough:end -->/p' README.md | sed '/^<!--/d; /^```/d')"
[ -n "$block" ] || fail "no walk-through between the walkthrough:start/end markers in README.md"
block="${block//127.0.0.1:4317/127.0.0.1:$conductor_port}"
block="${block//127.0.0.1:4318/127.0.0.1:$status_port}"

for port in "$conductor_port" "$codexd_port" "$status_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    fail "port $port on 127.0.0.1 is already in use; stop whatever listens there (another scripts/dev.sh?) and run again"
  fi
done

work="$(mktemp -d "${TMPDIR:-/tmp}/baa-walkthrough.XXXXXX")"
log="$work/dev.log"
out="$work/walkthrough.out"
dev_pid=""
cleanup() {
  local rc=$?
  if [ -n "$dev_pid" ] && kill -0 "$dev_pid" 2>/dev/null; then
    kill -TERM "$dev_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$dev_pid" 2>/dev/null || break; sleep 0.1; done
    # dev.sh runs in its own process group (setsid): whatever is left of it goes too.
    kill -KILL -- "-$dev_pid" 2>/dev/null || true
  fi
  if [ "$rc" != 0 ]; then
    echo "--- walk-through output ---" >&2; cat "$out" >&2 || true
    echo "--- scripts/dev.sh log (tail) ---" >&2; tail -n 40 "$log" >&2 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "walkthrough: starting scripts/dev.sh --demo (log: $log)"
BAA_DEV_DIR="$work/dev" BAA_DEV_CONDUCTOR_PORT="$conductor_port" BAA_DEV_STATUS_PORT="$status_port" BAA_DEV_CODEXD_PORT="$codexd_port" \
  setsid scripts/dev.sh --demo >"$log" 2>&1 < /dev/null &
dev_pid=$!

# Ready when the conductor proxies codexd and codexd's child is running.
deadline=$((SECONDS + start_timeout))
until curl -s --max-time 2 "http://127.0.0.1:$conductor_port/v1/codex" 2>/dev/null | grep -q '"status":"running"' \
   && curl -s --max-time 2 -o /dev/null "http://127.0.0.1:$status_port/healthz"; do
  kill -0 "$dev_pid" 2>/dev/null || fail "scripts/dev.sh --demo exited before the stack was up"
  [ "$SECONDS" -lt "$deadline" ] || fail "the stack was not up (codex child running) within ${start_timeout}s"
  sleep 0.5
done
echo "walkthrough: stack is up; running the README walk-through"

if ! timeout "$run_timeout" bash -c "$block" >"$out" 2>&1; then
  fail "the walk-through failed or took longer than ${run_timeout}s"
fi
cat "$out"
grep -q '"name":"baa-conductor-daemon"' "$out" || fail "describe did not name baa-conductor-daemon"
grep -q '^session: cxs_' "$out" || fail "no session id printed"
grep -q '"accepted":true' "$out" || fail "the turn was not accepted"
grep -q '"lastTurnStatus":"completed"' "$out" || fail "the turn did not complete"
grep -q '"finalMessage":"mock reply: Say hello"' "$out" || fail "the answer was not shown"
grep -q '^task: task_' "$out" || fail "no task id printed"
grep -q 'final message: mock reply: created hello.txt' "$out" || fail "the task's answer was not in its log"
grep -q 'run run_[^ ]* succeeded: 1 step(s) done; branch baa/task_' "$out" || fail "the task did not succeed with a result on its branch"
grep -q '^+++ b/hello.txt' "$out" || fail "task diff did not show hello.txt"
grep -q '^+hello from the demo model' "$out" || fail "task diff did not show the file's line"
# The task's commit is on its branch in the demo repo, and the demo repo's own checkout
# is as it was: the task ran in a worktree.
tid="$(awk '/^task: /{ print $2; exit }' "$out")"
demo_repo="$work/dev/demo-repo"
git -C "$demo_repo" log -1 --format=%B "baa/$tid" | grep -q "^Baa-Task: $tid" || fail "no commit with the task's trailer on baa/$tid"
[ ! -e "$demo_repo/hello.txt" ] || fail "the task wrote into the demo repo's own checkout"
grep -q '<title>.*baa status</title>' "$out" || fail "the status page did not answer"
# The stack's own log (docs/runtime/logs.md): a key=value line per lifecycle event, never the
# token (only dev.sh's own "dev token (...)" line shows it), no Rust debug formatting.
for want in 'event=session.created session=cxs_' 'event=turn.accepted session=cxs_' \
    'event=turn.completed session=cxs_[^ ]* turn=[^ ]* status=completed duration_ms=[0-9]' \
    'event=task.succeeded task=task_'; do
  grep -q "$want" "$log" || fail "the stack's log has no line matching: $want"
done
token="$(cat "$work/dev/dev-token")"
[ "$(grep -cF "$token" "$log" || true)" -le "$(grep -c '^dev token (' "$log" || true)" ] \
  || fail "the shared token appears in the stack's log"
! grep -qF 'Some(' "$log" || fail "Rust debug formatting (Some(...)) in the stack's log"
echo "walkthrough: OK"

# Then every other shell block of README.md and docs/, on the same stack.
echo "walkthrough: running the docs' shell blocks (scripts/docs-blocks.sh)"
BAA_DEV_DIR="$work/dev" BAA_DEV_CONDUCTOR_PORT="$conductor_port" BAA_DEV_STATUS_PORT="$status_port" BAA_DEV_CODEXD_PORT="$codexd_port" \
  scripts/docs-blocks.sh || fail "a docs block failed (above)"
# The daemons' lines are tagged with their name by dev.sh; the approval walk-through's
# request was asked and answered by HTTP (codexd's lifecycle lines).
for want in '^conductor  | ' '^codexd     | ' '^status-api | ' \
    '^codexd     | .*event=request.pending .*method=item/commandExecution/requestApproval timeout_ms=60000 default=decline' \
    '^codexd     | .*event=request.answered .*by=http decision=accept'; do
  grep -q "$want" "$log" || fail "the stack's log has no line matching: $want"
done
echo "walkthrough: docs OK"

# dev.sh stops cleanly: SIGTERM (as Ctrl-C's SIGINT) stops the three daemons, dev.sh exits
# 143, and nothing says "wait: pid … is not a child of this shell".
kill -TERM "$dev_pid"
deadline=$((SECONDS + 40))
while kill -0 "$dev_pid" 2>/dev/null; do
  [ "$SECONDS" -lt "$deadline" ] || fail "scripts/dev.sh did not stop within 40 s of SIGTERM"
  sleep 0.2
done
dev_rc=0
wait "$dev_pid" || dev_rc=$?
dev_pid=""
[ "$dev_rc" = 143 ] || fail "scripts/dev.sh exited $dev_rc after SIGTERM, not 143"
# The tagging readers may print a daemon's last lines just after dev.sh exited.
deadline=$((SECONDS + 10))
for d in conductor codexd status-api; do
  until grep -q "event=daemon.stopped binary=baa-$d" "$log"; do
    [ "$SECONDS" -lt "$deadline" ] || fail "baa-$d did not log daemon.stopped when dev.sh stopped"
    sleep 0.2
  done
done
! grep -q 'is not a child of this shell' "$log" || fail "dev.sh's stop printed 'is not a child of this shell'"
echo "walkthrough: dev.sh stopped cleanly"
