#!/usr/bin/env bash
# bootout + bootstrap + kickstart the installed services, then wait for their /healthz.
set -euo pipefail
SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "${SCRIPT_DIR}/common.sh"

usage() {
  cat <<USAGE
Usage: $(basename -- "$0") [options]

For each service: launchctl bootout (if loaded; waits until launchd has let it go),
launchctl bootstrap of the installed plist, then launchctl kickstart. Then wait for each
service's /healthz (URL read from its installed plist). A service that is loaded but not
serving gets exactly one retry, launchctl kickstart -k, and another wait; if it still does
not answer, diagnostics are printed (last curl result, launchctl print, stdout/stderr log
tails, a manual recovery hint) and the script exits 1 after handling the other services.

Options:
USAGE
  options_help services target health dryrun
  cat <<'USAGE'

Notes:
  If no service is specified, conductor + codexd + status-api are reloaded.
USAGE
}

BAA_OPTION_GROUPS="services target health dryrun"
parse_args_with no_extra_options "$@"
finalize_services
finalize_target

failed=()
loaded=()
for service in "${services[@]}"; do
  if launchd_bootout "$service" && launchd_bootstrap "$service"; then
    loaded+=("$service")
  else
    runtime_error "${service}: launchctl bootstrap failed"
    failed+=("$service")
  fi
done

if [[ "${#loaded[@]}" -gt 0 && "$skip_kickstart" != "1" ]]; then
  for service in "${loaded[@]}"; do
    launchd_kickstart "$service" || runtime_error "${service}: kickstart returned non-zero"
  done
fi

if [[ "$dry_run" == "1" ]]; then
  for service in "${services[@]}"; do
    printf '# then wait up to %ss for %s /healthz, one "launchctl kickstart -k %s/%s" if needed\n' \
      "$health_timeout" "$service" "$domain_target" "$(service_label "$service")"
  done
  exit 0
fi

if [[ "${#loaded[@]}" -gt 0 ]]; then
  for service in "${loaded[@]}"; do
    recover_service_after_reload "$service" || failed+=("$service")
  done
fi

if [[ "${#failed[@]}" -gt 0 ]]; then
  runtime_error "launchd reload failed for: ${failed[*]}"
  exit 1
fi
runtime_log "launchd reload completed for ${domain_target}: ${services[*]}"
