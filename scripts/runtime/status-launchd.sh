#!/usr/bin/env bash
# Show launchd state and HTTP health of the services. Informational: exits 0.
set -euo pipefail
SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "${SCRIPT_DIR}/common.sh"

usage() {
  cat <<USAGE
Usage: $(basename -- "$0") [options]

For each service: label, installed plist and whether it lints, whether launchd has it
loaded (state, pid, last exit code from launchctl print), then HTTP probes:
conductor /healthz and /rolez, codexd /healthz and /v1/codexd/status, status-api /healthz
and /v1/status. Bases come from the flags, else from the installed plists.

Options:
USAGE
  options_help services target bases probe
  cat <<'USAGE'
  --skip-http               Skip the HTTP probes.

Notes:
  If no service is specified, conductor + codexd + status-api are shown.
USAGE
}

skip_http="0"
status_option() {
  case "$1" in
    --skip-http) skip_http="1" ;;
    *) return 1 ;;
  esac
  BAA_SHIFT=1
}

BAA_OPTION_GROUPS="services target bases probe"
parse_args_with status_option "$@"
finalize_services
finalize_target
finalize_probe_bases

# One probe line: "<name>: <http status> <first line of the body>". No `| head` here:
# under pipefail the writer of a long body gets SIGPIPE and the script exits 141.
show_probe() {
  local name="$1" url="$2" first=""
  if http_probe "$url"; then
    first="$(first_line "$CURL_LAST_BODY")"
    printf '%s: %s %s\n' "$name" "$CURL_LAST_HTTP_STATUS" "${first:0:120}"
  else
    printf '%s: unreachable (curl exit %s, http %s) %s\n' "$name" "$CURL_LAST_EXIT_CODE" \
      "$CURL_LAST_HTTP_STATUS" "$(first_line "$CURL_LAST_ERROR")"
  fi
}

for service in "${services[@]}"; do
  label="$(service_label "$service")"
  plist="$(service_install_path "$install_dir" "$service")"
  printf '=== %s ===\n' "$service"
  printf 'label: %s\n' "$label"
  printf 'plist: %s\n' "$plist"
  if [[ ! -f "$plist" ]]; then
    printf 'plist_lint: missing\n'
  elif plist_lint "$plist" 2>/dev/null; then
    printf 'plist_lint: ok\n'
  else
    printf 'plist_lint: invalid\n'
  fi
  # Only the state lines: launchctl print also dumps the environment, token included.
  if info="$(launchctl print "${domain_target}/${label}" 2>/dev/null)"; then
    printf 'launchd: loaded in %s\n' "$domain_target"
    while IFS= read -r line; do
      if [[ "$line" =~ ^[[:space:]]*((state|pid|last\ exit\ code)\ =\ .*)$ ]]; then
        printf '%s\n' "${BASH_REMATCH[1]}"
      fi
    done <<<"$info"
  else
    printf 'launchd: not loaded in %s\n' "$domain_target"
  fi
  if [[ "$skip_http" != "1" ]]; then
    case "$service" in
      conductor)
        show_probe "healthz" "${local_api_base}/healthz"
        show_probe "rolez" "${local_api_base}/rolez"
        ;;
      codexd)
        show_probe "healthz" "${codexd_local_api_base}/healthz"
        if http_probe "${codexd_local_api_base}/v1/codexd/status"; then
          printf 'status: %s mode=%s\n' "$CURL_LAST_HTTP_STATUS" "$(json_field "$CURL_LAST_BODY" mode || true)"
        else
          printf 'status: unreachable (curl exit %s, http %s)\n' "$CURL_LAST_EXIT_CODE" "$CURL_LAST_HTTP_STATUS"
        fi
        ;;
      status-api)
        show_probe "healthz" "${status_api_base}/healthz"
        show_probe "/v1/status" "${status_api_base}/v1/status"
        ;;
    esac
  fi
  printf '\n'
done
