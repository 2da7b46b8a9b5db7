#!/usr/bin/env bash
# Runs every check and test of the project from a fresh clone:
# format, lints, unit + integration tests (real binaries, real codex app-server), the
# README's curl walk-through and every runnable shell block of the docs against
# `scripts/dev.sh --demo` (scripts/docs-blocks.sh), and the launchd/runtime script
# tests against the real binaries. Installs what it needs
# (the pinned @openai/codex and Python test tools into .tools/, shellcheck via apt when run
# as root).
#
# After the build, `cargo test` and the runtime script tests (in two processes) run side
# by side (both mostly wait on timers, daemons and child scripts); the script tests' output
# is kept in a file and printed when they end. The walk-through follows `cargo test` (it needs the
# build lock and the default ports). Each stage's time is printed, and all of them at the
# end. BAA_TEST_THREADS (default 6) sets the test threads of `cargo test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

threads="${BAA_TEST_THREADS:-6}"
work="$(mktemp -d "${TMPDIR:-/tmp}/baa-test.XXXXXX")"
scripts_pid=""
times=""
failed=""
stage=""
stage_started=$SECONDS

step() { printf '\n==> %s\n' "$*"; }

# begin NAME: a stage starts (and is timed until `end`).
begin() {
  stage="$1"
  stage_started=$SECONDS
  step "$stage"
}

end() {
  local took=$((SECONDS - stage_started))
  times="${times}$(printf '%5d s  %s' "$took" "$stage")"$'\n'
  printf '<== %s: %d s\n' "$stage" "$took"
}

finish() {
  local rc=$?
  if [ -n "$scripts_pid" ] && kill -0 "$scripts_pid" 2>/dev/null; then
    pkill -TERM -P "$scripts_pid" 2>/dev/null || true
    kill "$scripts_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
  step "stage times"
  printf '%s' "$times"
  printf '%5d s  total\n' "$SECONDS"
  [ -z "$failed" ] || printf 'FAILED: %s\n' "$failed"
  [ "$rc" = 0 ] || [ -n "$failed" ] || printf 'FAILED in: %s\n' "$stage"
  exit "$rc"
}
trap finish EXIT

begin "cargo fmt --check"
cargo fmt --all -- --check
end

begin "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
end

begin "test tools"
scripts/install-codex.sh >/dev/null
scripts/install-py-tools.sh
if ! command -v shellcheck >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck) >/dev/null 2>&1 \
      || echo "warning: could not install shellcheck; script lint tests will be skipped" >&2
  else
    echo "warning: shellcheck not installed; script lint tests will be skipped" >&2
  fi
fi
end

begin "build (binaries and tests)"
cargo test --no-run --quiet
end

# The script tests need only the built binaries: they run while cargo test does, into a
# file of their own, and record their exit code and the time they ended.
scripts_name="runtime script tests (real binaries)"
step "$scripts_name: started in the background (output at their end)"
scripts_started=$SECONDS
(
  rc=0
  BAA_TEST_BIN_DIR="$PWD/target/debug" tests/scripts/run.sh --jobs 3 >"$work/scripts.log" 2>&1 || rc=$?
  echo "$rc $SECONDS" >"$work/scripts.done"
) &
scripts_pid=$!

begin "cargo test (unit + integration, $threads test threads)"
cargo_rc=0
cargo test -- --test-threads="$threads" || cargo_rc=$?
end
[ "$cargo_rc" = 0 ] || failed="${failed}cargo test; "

if [ "$cargo_rc" = 0 ]; then
  begin "README walk-through and docs blocks against scripts/dev.sh --demo (default ports)"
  walk_rc=0
  scripts/walkthrough.sh || walk_rc=$?
  end
  [ "$walk_rc" = 0 ] || failed="${failed}walk-through; "
fi

stage="$scripts_name"
stage_started=$scripts_started
wait "$scripts_pid" || true
scripts_pid=""
step "$scripts_name: output"
cat "$work/scripts.log"
read -r scripts_rc scripts_ended <"$work/scripts.done" || { scripts_rc=1; scripts_ended=$SECONDS; }
times="${times}$(printf '%5d s  %s' "$((scripts_ended - scripts_started))" "$scripts_name (alongside)")"$'\n'
[ "$scripts_rc" = 0 ] || failed="${failed}runtime script tests; "

[ -z "$failed" ]
