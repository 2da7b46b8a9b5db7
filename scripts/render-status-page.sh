#!/usr/bin/env bash
# Renders the status page to PNGs with headless Chromium, so a person can check what an
# operator sees without a desktop session (or attach it to a report).
#
#   scripts/render-status-page.sh [--out DIR] [--size WxH]
#       builds the binaries, starts conductor, codexd (its built-in stub child, no
#       credentials) and status-api on free loopback ports under a temp dir, runs a few
#       tasks, and renders the page in two states:
#         DIR/codexd-down.png       codexd stopped (the hint: status-launchd.sh, its err log)
#         DIR/conductor-paused.png  automation paused with a task still running
#       DIR defaults to target/status-page/ (git-ignored). Stops what it started.
#   scripts/render-status-page.sh --url URL [--out FILE.png] [--size WxH]
#       renders a page that is already running (e.g. http://127.0.0.1:4318/).
#
# Needs `chromium` (Debian/Ubuntu: sudo apt-get install -y chromium), or Google Chrome or
# Chromium on macOS; says so and exits 1 without one. Not part of the automated tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

url=""
out=""
size="1280x1500"
while [ $# -gt 0 ]; do
  case "$1" in
    --url) url="${2:?--url needs a URL}"; shift ;;
    --out) out="${2:?--out needs a path}"; shift ;;
    --size) size="${2:?--size needs WxH}"; shift ;;
    -h | --help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "render-status-page: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { printf 'render-status-page: %s\n' "$*"; }
die() { printf 'render-status-page: %s\n' "$*" >&2; exit 1; }

browser=""
for candidate in chromium chromium-browser google-chrome google-chrome-stable \
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome" \
    "/Applications/Chromium.app/Contents/MacOS/Chromium"; do
  if command -v "$candidate" >/dev/null 2>&1 || [ -x "$candidate" ]; then
    browser="$candidate"
    break
  fi
done
if [ -z "$browser" ]; then
  die "no Chromium found. Install one: Debian/Ubuntu: sudo apt-get update && sudo apt-get install -y chromium; macOS: install Google Chrome"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/baa-render.XXXXXX")"
pids=""
# Stops exactly the processes this script started, then removes its temp dir.
cleanup() {
  for pid in $pids; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in $pids; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# One screenshot of $1 into $2, with a throwaway profile and no background traffic: it
# must not touch the user's browser state or the network beyond the page itself.
shoot() {
  mkdir -p "$(dirname "$2")"
  rm -f "$2"
  "$browser" --headless --no-sandbox --disable-gpu --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --hide-scrollbars --user-data-dir="${work}/profile" \
    --screenshot="$2" --window-size="${size/x/,}" "$1" >"${work}/chromium.log" 2>&1 || true
  [ -s "$2" ] || die "Chromium wrote no $2; its output: $(tail -n 5 "${work}/chromium.log")"
  say "wrote $2"
}

if [ -n "$url" ]; then
  curl -fsS --max-time 5 -o /dev/null "$url" || die "$url does not answer; is baa-status-api running?"
  shoot "$url" "${out:-status-page.png}"
  exit 0
fi

out="${out:-target/status-page}"
cargo build --quiet --bins
bin="$PWD/target/debug"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Poll until `$@` succeeds, at most $1 seconds.
wait_until() {
  local secs="$1" what="$2" i=0
  shift 2
  while ! "$@" >/dev/null 2>&1; do
    i=$((i + 1))
    [ "$i" -le $((secs * 10)) ] || die "gave up waiting for ${what}; logs in ${work} are removed on exit: $(tail -n 5 "${work}"/*.log 2>/dev/null)"
    sleep 0.1
  done
}

cport="$(free_port)"
xport="$(free_port)"
sport="$(free_port)"
conductor="http://127.0.0.1:${cport}"
codexd="http://127.0.0.1:${xport}"
status="http://127.0.0.1:${sport}"
logs="${work}/logs"
mkdir -p "$logs" "${work}/state"

start_codexd() {
  BAA_CODEXD_LOCAL_API_BASE="$codexd" BAA_RUNTIME_ROOT="$work" \
    BAA_CODEXD_SERVER_COMMAND="${bin}/baa-codexd" \
    BAA_CODEXD_SERVER_ARGS="__stub-app-server" \
    "${bin}/baa-codexd" start >>"${work}/codexd.log" 2>&1 &
  codexd_pid=$!
  pids="$pids $codexd_pid"
  wait_until 30 "codexd's child" child_running
}

child_running() {
  curl -fsS --max-time 2 "${codexd}/healthz" | grep -q '"status": "running"'
}

# A token so the page shows no token warning: the states under test are the only ones.
token="render-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
start_codexd
BAA_SHARED_TOKEN="$token" BAA_CODEXD_LOCAL_API_BASE="$codexd" \
  "${bin}/baa-conductor" start --local-api "$conductor" --node-id mini-main --conductor-host mini \
  --root "$work" >"${work}/conductor.log" 2>&1 &
pids="$pids $!"
"${bin}/baa-status-api" --host 127.0.0.1 --port "$sport" --conductor-local-api "$conductor" \
  --codexd-local-api "$codexd" --root "$work" >"${work}/status-api.log" 2>&1 &
pids="$pids $!"
wait_until 30 "the conductor" curl -fsS --max-time 2 "${conductor}/healthz"
wait_until 30 "status-api" curl -fsS --max-time 2 "${status}/healthz"

# POST a task; prints its id.
add_task() {
  curl -fsS --max-time 5 -X POST "${conductor}/v1/tasks" -H 'Content-Type: application/json' -d "$1" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["task"]["task_id"])'
}

task_is() {
  curl -fsS --max-time 2 "${conductor}/v1/tasks/$1" | grep -q "\"status\": *\"$2\""
}

ok_task="$(add_task '{"title": "Summarize yesterday'"'"'s deploy log", "prompt": "hello"}')"
wait_until 30 "the first task" task_is "$ok_task" succeeded
bad_task="$(add_task '{"title": "Refresh the vendored schema", "prompt": "fail", "max_attempts": 1}')"
wait_until 30 "the failing task" task_is "$bad_task" failed

# State 1: codexd down (stopped, as launchd would find it after a crash).
kill -TERM "$codexd_pid"
wait "$codexd_pid" 2>/dev/null || true
shoot "${status}/" "${out}/codexd-down.png"

# State 2: codexd back, a two-step task running, automation paused by an operator.
start_codexd
slow_task="$(add_task '{"title": "Upgrade the lockfile and run the tests", "steps": [{"prompt": "slow:4000"}, {"prompt": "after"}]}')"
wait_until 30 "the long task to run" task_is "$slow_task" running
curl -fsS --max-time 5 -X POST "${conductor}/v1/system/pause" -H 'Content-Type: application/json' \
  -d '{"requested_by": "alice", "reason": "deploy window until 14:00"}' >/dev/null
shoot "${status}/" "${out}/conductor-paused.png"
