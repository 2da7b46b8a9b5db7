#!/usr/bin/env bash
# Stop the services: launchctl bootout, then wait until launchd has let them go.
set -euo pipefail
SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "${SCRIPT_DIR}/common.sh"

usage() {
  cat <<USAGE
Usage: $(basename -- "$0") [options]

launchctl bootout each service (launchd sends SIGTERM, SIGKILL after ExitTimeOut) and
wait, bounded by --unload-timeout, until it is gone. A service that is not loaded is
reported and skipped. The installed plists stay in place; start-launchd.sh loads them again.

Options:
USAGE
  options_help services target dryrun
  cat <<'USAGE'
  --unload-timeout SEC      How long to wait for each job to go away. Default 40.
  --with-child              codexd only: also stop the codex app-server it leaves running
                            in unix mode (baa-codexd stop-child, after codexd is gone).

Notes:
  If no service is specified, conductor + codexd + status-api are stopped.
USAGE
}

stop_option() {
  case "$1" in
    --unload-timeout)
      [[ $# -ge 2 ]] || usage_error "$1 needs a value"
      check_number "$1" "$2"
      unload_timeout="$2"
      BAA_SHIFT=2
      ;;
    --with-child)
      with_child="1"
      BAA_SHIFT=1
      ;;
    *) return 1 ;;
  esac
}

with_child="0"
BAA_OPTION_GROUPS="services target dryrun"
parse_args_with stop_option "$@"
finalize_services
finalize_target

failed=()
for service in "${services[@]}"; do
  launchd_bootout "$service" || failed+=("$service")
done

if [[ "$with_child" == "1" ]]; then
  for service in "${services[@]}"; do
    if [[ "$service" == "codexd" ]] && ! stop_codexd_child; then
      failed+=("codexd app-server")
    fi
  done
fi

if [[ "${#failed[@]}" -gt 0 ]]; then
  runtime_error "launchd stop failed for: ${failed[*]}"
  exit 1
fi
if [[ "$dry_run" != "1" ]]; then
  runtime_log "launchd stop completed for ${domain_target}: ${services[*]}"
fi
