#!/usr/bin/env bash
# Load (if needed) and start the installed services, then wait for their /healthz.
set -euo pipefail
SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "${SCRIPT_DIR}/common.sh"

usage() {
  cat <<USAGE
Usage: $(basename -- "$0") [options]

For each service: launchctl bootstrap the installed plist unless it is already loaded,
then launchctl kickstart. Then wait for /healthz as reload-launchd.sh does (one retry
kickstart -k, then diagnostics and exit 1).

Options:
USAGE
  options_help services target health dryrun
  cat <<'USAGE'
  --no-wait                 Do not wait for /healthz.

Notes:
  If no service is specified, conductor + codexd + status-api are started.
USAGE
}

no_wait="0"
start_option() {
  case "$1" in
    --no-wait) no_wait="1" ;;
    *) return 1 ;;
  esac
  BAA_SHIFT=1
}

BAA_OPTION_GROUPS="services target health dryrun"
parse_args_with start_option "$@"
finalize_services
finalize_target

failed=()
started=()
for service in "${services[@]}"; do
  if [[ "$dry_run" != "1" ]] && launchd_is_loaded "$service"; then
    runtime_log "${service}: already loaded"
  elif ! launchd_bootstrap "$service"; then
    failed+=("$service")
    continue
  fi
  if [[ "$skip_kickstart" != "1" ]]; then
    launchd_kickstart "$service" || runtime_error "${service}: kickstart returned non-zero"
  fi
  started+=("$service")
done

if [[ "$dry_run" != "1" && "$no_wait" != "1" && "${#started[@]}" -gt 0 ]]; then
  for service in "${started[@]}"; do
    recover_service_after_reload "$service" || failed+=("$service")
  done
fi

if [[ "${#failed[@]}" -gt 0 ]]; then
  runtime_error "launchd start failed for: ${failed[*]}"
  exit 1
fi
if [[ "$dry_run" != "1" ]]; then
  runtime_log "launchd start completed for ${domain_target}: ${services[*]}"
fi
