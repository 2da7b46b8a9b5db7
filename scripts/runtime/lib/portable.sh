# shellcheck shell=bash disable=SC2034,SC2154 # globals live across the sourced files
# The few things BSD (macOS) and GNU (Linux) tools do differently, done one way that works
# on both: file modes without `stat`, a command with a deadline without `timeout(1)`, an
# atomic symlink swap without `mv -T`/`mv -h`, the first line of a text without `| head`
# (which, under `set -o pipefail`, can kill the writer with SIGPIPE and the script with 141).

# The symbolic mode of a file, e.g. rw-------. `ls -ln` prints it the same on both.
file_mode() {
  # shellcheck disable=SC2012
  ls -ln "$1" | cut -c2-10
}

# True when nobody but the owner may read or write the file (the conductor refuses a
# token file with group or other bits).
file_is_private() {
  local mode
  mode="$(file_mode "$1")"
  [[ "${mode:3:6}" == "------" ]]
}

# The first line of $1, without a pipe.
first_line() {
  printf '%s\n' "${1%%$'\n'*}"
}

# Run a command, killing it after SECS seconds (exit 124). macOS has no timeout(1).
run_bounded() {
  local secs="$1" pid ticks=0 limit rc=0
  shift
  limit=$((${secs%.*} * 10))
  "$@" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    if ((ticks >= limit)); then
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      return 124
    fi
    sleep 0.1
    ticks=$((ticks + 1))
  done
  wait "$pid" || rc=$?
  return "$rc"
}

# Point the symlink LINK at TARGET atomically: readers see the old target or the new one,
# never no link. A rename is the only atomic way, and `mv` onto a link to a directory
# moves into that directory on both BSD and GNU unless given -h or -T (one each), so the
# rename is python3's (the scripts already need it for plists).
replace_symlink() {
  local target="$1" link="$2" tmp
  tmp="$(dirname -- "$link")/.$(basename -- "$link").$$"
  rm -f "$tmp"
  ln -s "$target" "$tmp"
  python3 -c 'import os, sys; os.replace(sys.argv[1], sys.argv[2])' "$tmp" "$link"
}

# An absolute path without trailing slashes; relative paths are taken from $PWD.
absolute_path() {
  local p="$1"
  [[ "$p" == /* ]] || p="${PWD}/${p}"
  while [[ "$p" == */ && "$p" != "/" ]]; do
    p="${p%/}"
  done
  printf '%s\n' "$p"
}
