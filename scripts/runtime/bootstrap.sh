#!/usr/bin/env bash
# Create the runtime directories: state, runs, worktrees, tmp under the root; the logs dir.
set -euo pipefail
SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "${SCRIPT_DIR}/common.sh"

usage() {
  cat <<USAGE
Usage: $(basename -- "$0") [options]

Create the runtime directories (mode 700) the launchd services write to:
<root>/state/, state/codexd/, runs/, worktrees/, tmp/ and <logs>/, <logs>/codexd/,
<logs>/launchd/. The root itself is made mode 700 too, unless it is the checkout
(--repo-layout).

Options:
USAGE
  options_help layout repo dryrun
  cat <<'USAGE'
  --home PATH               Home directory the default root and logs dir are under.
USAGE
}

bootstrap_option() {
  case "$1" in
    --home | --home-dir)
      [[ $# -ge 2 ]] || usage_error "$1 needs a value"
      home_dir="$2"
      BAA_SHIFT=2
      ;;
    *) return 1 ;;
  esac
}

BAA_OPTION_GROUPS="layout repo dryrun"
parse_args_with bootstrap_option "$@"
[[ -n "$home_dir" ]] || usage_error "no home directory: set HOME or pass --home"
finalize_layout

[[ -d "$repo_dir" ]] || usage_error "repo dir does not exist: $repo_dir"

if [[ "$runtime_root" != "$repo_dir" ]]; then
  run_cmd mkdir -p "$runtime_root"
  run_cmd chmod 700 "$runtime_root"
fi
while IFS= read -r dir; do
  run_cmd mkdir -p "$dir"
  run_cmd chmod 700 "$dir"
done < <(runtime_dirs)

if [[ "$dry_run" != "1" ]]; then
  runtime_log "runtime directories ready under ${runtime_root} and ${logs_dir}"
fi
