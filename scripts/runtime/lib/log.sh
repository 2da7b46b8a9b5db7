# shellcheck shell=bash disable=SC2034,SC2154 # globals live across the sourced files
# Messages, exits, and running (or, under --dry-run, printing) commands. Everything a
# script prints about a command or a failure goes through mask_text, so the shared token
# never reaches a terminal or a log.

runtime_log() {
  printf '[runtime] %s\n' "$*"
}

runtime_error() {
  printf '[runtime] %s\n' "$(printf '%s' "$*" | mask_text)" >&2
}

die() {
  runtime_error "error: $*"
  exit 1
}

# The script the operator ran: a wrapper (install-mini.sh) exports BAA_RUNTIME_RUN_BY to
# the steps it runs, so their errors point at the wrapper's --help, not at a step's.
invoked_script() {
  printf '%s\n' "${BAA_RUNTIME_RUN_BY:-$(basename -- "$0")}"
}

usage_error() {
  printf '[runtime] error: %s\n' "$(printf '%s' "$*" | mask_text)" >&2
  printf '[runtime] run %s --help for usage\n' "$(invoked_script)" >&2
  exit 2
}

# Replace every occurrence of the token (and anything after BAA_SHARED_TOKEN= or =>) on stdin.
mask_text() {
  local text
  text="$(cat)"
  if [[ -n "${shared_token:-}" ]]; then
    text="${text//"$shared_token"/$BAA_RUNTIME_MASK}"
  fi
  printf '%s\n' "$text" | sed -E "s/(BAA_SHARED_TOKEN[\"']?[[:space:]]*(=>|=|:)[[:space:]]*).*/\\1${BAA_RUNTIME_MASK}/"
}

print_cmd() {
  local out="+" arg
  for arg in "$@"; do
    out="${out} $(printf '%q' "$arg")"
  done
  printf '%s\n' "$out" | mask_text
}

# Print the command under --dry-run, run it otherwise.
run_cmd() {
  if [[ "$dry_run" == "1" ]]; then
    print_cmd "$@"
    return 0
  fi
  "$@"
}
