#!/usr/bin/env bash
# Builds and runs the local stack in the foreground on loopback:
#   conductor  http://127.0.0.1:4317   (BAA_DEV_CONDUCTOR_PORT)
#   codexd     http://127.0.0.1:4319   (BAA_DEV_CODEXD_PORT)
#   status-api http://127.0.0.1:4318   (BAA_DEV_STATUS_PORT)
# State and logs live under .local/ (git-ignored; BAA_DEV_DIR=<dir> puts them elsewhere).
# A dev token for host operations is generated on first run, stored in .local/dev-token
# (mode 600) and printed once.
#
#   scripts/dev.sh            use the codex binary from BAA_CODEXD_SERVER_COMMAND or .tools/
#   scripts/dev.sh --demo     also answer turns from a built-in loopback model (no credentials);
#                             tasks without a cwd then run in worktrees of a scratch repo,
#                             <dev dir>/demo-repo, instead of this checkout
#
# Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$PWD"

demo=0
for arg in "$@"; do
  case "$arg" in
    --demo) demo=1 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "dev.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done

conductor_port="${BAA_DEV_CONDUCTOR_PORT:-4317}"
codexd_port="${BAA_DEV_CODEXD_PORT:-4319}"
status_port="${BAA_DEV_STATUS_PORT:-4318}"
for port in "$conductor_port" "$codexd_port" "$status_port"; do
  # A connect that succeeds means something already listens there (often another dev.sh).
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "dev.sh: port $port on 127.0.0.1 is already in use (another scripts/dev.sh?); stop it, or pick other ports with BAA_DEV_CONDUCTOR_PORT / BAA_DEV_CODEXD_PORT / BAA_DEV_STATUS_PORT" >&2
    exit 1
  fi
done
local_dir="${BAA_DEV_DIR:-$repo/.local}"
mkdir -p "$local_dir/state" "$local_dir/logs"

cargo build --quiet --bins
bin="$repo/target/debug"

token_file="$local_dir/dev-token"
if [ ! -s "$token_file" ]; then
  (umask 077; od -An -N24 -tx1 /dev/urandom | tr -d ' \n' > "$token_file")
  echo "dev token (host operations, also in $token_file): $(cat "$token_file")"
fi
chmod 600 "$token_file"

codex_cmd="${BAA_CODEXD_SERVER_COMMAND:-}"
if [ -z "$codex_cmd" ] && [ -d "$repo/.tools/codex/node_modules" ]; then
  # The first match, without `| head` (under pipefail a closed pipe can kill find).
  codex_cmd="$(find "$repo/.tools/codex/node_modules" -path '*/vendor/*/bin/codex' -type f 2>/dev/null || true)"
  codex_cmd="${codex_cmd%%$'\n'*}"
fi
if [ "$demo" = 1 ] && [ -z "$codex_cmd" ]; then
  echo "dev.sh: --demo needs the codex CLI; installing the pinned version into .tools/ ..."
  codex_cmd="$(scripts/install-codex.sh)"
fi

pids=()
stop_all() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop_all INT TERM EXIT

# One root for all three: state/, logs/, runs/, worktrees/ and tmp/ under it. A dir
# variable inherited from the shell would win over the root and take the dev stack out
# of $local_dir, so those are dropped.
unset BAA_STATE_DIR BAA_LOGS_DIR BAA_RUNS_DIR BAA_WORKTREES_DIR BAA_TMP_DIR BAA_CODEXD_STATE_DIR BAA_CODEXD_LOGS_DIR
export BAA_RUNTIME_ROOT="$local_dir"

codexd_env=(BAA_CODEXD_LOCAL_API_BASE="http://127.0.0.1:$codexd_port" BAA_CODEXD_REPO_ROOT="$repo" BAA_CODEXD_SERVER_CWD="$repo")
if [ -n "$codex_cmd" ]; then
  codexd_env+=(BAA_CODEXD_SERVER_STRATEGY=spawn BAA_CODEXD_SERVER_COMMAND="$codex_cmd")
else
  echo "dev.sh: no codex binary found (run scripts/install-codex.sh or pass --demo); codexd runs with its child unavailable"
  codexd_env+=(BAA_CODEXD_SERVER_STRATEGY=spawn BAA_CODEXD_SERVER_COMMAND=codex-not-installed)
fi
codexd_args=(start)
[ "$demo" = 1 ] && codexd_args+=(--demo)
env "${codexd_env[@]}" "$bin/baa-codexd" "${codexd_args[@]}" &
pids+=($!)

# Demo tasks get a repo of their own: a task without a cwd runs in a worktree of the
# conductor's repo root, and a demo run should leave its branches there, not here.
conductor_env=()
if [ "$demo" = 1 ]; then
  demo_repo="$local_dir/demo-repo"
  if [ ! -d "$demo_repo/.git" ]; then
    mkdir -p "$demo_repo"
    git -C "$demo_repo" init -q -b main
    printf '# demo repo\n\nTasks of scripts/dev.sh --demo run in worktrees of this repo.\n' >"$demo_repo/README.md"
    git -C "$demo_repo" add README.md
    git -C "$demo_repo" -c user.name=baa-dev -c user.email=baa-dev@localhost commit -q -m "demo repo"
  fi
  conductor_env+=(BAA_CONDUCTOR_REPO_ROOT="$demo_repo")
  echo "dev.sh: demo tasks without a cwd run in worktrees of $demo_repo"
fi

# The token goes by file, as in production: an exec'd command can read the conductor's
# environment (/proc/$PPID/environ), not a 0600 file it is not told about.
env ${conductor_env[@]+"${conductor_env[@]}"} \
BAA_SHARED_TOKEN_FILE="$token_file" \
BAA_CONDUCTOR_LOCAL_API="http://127.0.0.1:$conductor_port" \
BAA_CODEXD_LOCAL_API_BASE="http://127.0.0.1:$codexd_port" \
  "$bin/baa-conductor" start --node-id mini-main --conductor-host "$(hostname -s 2>/dev/null || echo mini)" --role primary &
pids+=($!)

BAA_STATUS_API_HOST=127.0.0.1 BAA_STATUS_API_PORT="$status_port" \
BAA_CONDUCTOR_LOCAL_API="http://127.0.0.1:$conductor_port" \
BAA_CODEXD_LOCAL_API_BASE="http://127.0.0.1:$codexd_port" \
  "$bin/baa-status-api" &
pids+=($!)

echo "status page: http://127.0.0.1:$status_port/   API: http://127.0.0.1:$conductor_port/describe   (Ctrl-C stops)"
# Exit (and stop the others) as soon as any daemon exits, with its status. A poll, not
# `wait -n`: that is bash 4.3, and macOS runs this with bash 3.2.
while :; do
  for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rc=0
      wait "$pid" || rc=$?
      exit "$rc"
    fi
  done
  sleep 0.5
done
