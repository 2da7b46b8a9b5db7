#!/usr/bin/env bash
# Create the runtime directories under the repo: state, runs, worktrees, logs, tmp.
set -euo pipefail
SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "${SCRIPT_DIR}/common.sh"

usage() {
  cat <<USAGE
Usage: $(basename -- "$0") [options]

Create the runtime directories (mode 700) the launchd services write to:
state/, state/codexd/, runs/, worktrees/, logs/, logs/codexd/, logs/launchd/, tmp/.

Options:
USAGE
  options_help repo dryrun
}

BAA_OPTION_GROUPS="repo dryrun"
parse_args_with no_extra_options "$@"
repo_dir="$(normalize_url "$repo_dir")"

[[ -d "$repo_dir" ]] || usage_error "repo dir does not exist: $repo_dir"

while IFS= read -r dir; do
  run_cmd mkdir -p "$dir"
  run_cmd chmod 700 "$dir"
done < <(runtime_dirs)

if [[ "$dry_run" != "1" ]]; then
  runtime_log "runtime directories ready under ${repo_dir}"
fi
