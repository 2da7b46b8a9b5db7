#!/usr/bin/env bash
# Show launchd state and HTTP health of the services. Informational: exits 0.
set -euo pipefail
SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "${SCRIPT_DIR}/common.sh"

usage() {
  cat <<USAGE
Usage: $(basename -- "$0") [options]

First one line per service: up or DOWN (and why: the HTTP error, or what the connection
did), the conductor's role and automation mode, codexd's child status, the node's overall
state from status-api, and whether launchd has it loaded. Then, per service: label,
installed plist and whether it lints, launchd's state, pid and last exit code, its out/err
log files, and each HTTP probe as "ok" or the reason it failed. Bases come from the flags,
else from the installed plists.

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

# Why a probe failed, in words: the HTTP status with the error envelope's code and
# message, or what curl could not do. Never a raw body.
probe_failure() {
  local code msg
  if [[ "$CURL_LAST_EXIT_CODE" -eq 0 ]]; then
    code="$(json_field "$CURL_LAST_BODY" error || true)"
    msg="$(json_field "$CURL_LAST_BODY" message || true)"
    printf 'HTTP %s%s%s\n' "$CURL_LAST_HTTP_STATUS" "${code:+ $code}" "${msg:+: ${msg:0:120}}"
    return
  fi
  case "$CURL_LAST_EXIT_CODE" in
    7) printf 'connection refused (nothing listens)\n' ;;
    28) printf 'no answer in time (curl timed out)\n' ;;
    6) printf 'cannot resolve the host\n' ;;
    52) printf 'empty reply\n' ;;
    56) printf 'connection reset\n' ;;
    *) printf 'curl exit %s: %s\n' "$CURL_LAST_EXIT_CODE" "$(first_line "${CURL_LAST_ERROR#curl: }")" ;;
  esac
}

# PROBE_OK=1 and PROBE_TEXT="ok" when url answers 2xx; else PROBE_OK=0 and the reason.
probe() {
  if http_probe "$1"; then
    PROBE_OK=1
    PROBE_TEXT="ok"
  else
    PROBE_OK=0
    PROBE_TEXT="$(probe_failure)"
  fi
}

# The child's status from codexd's /healthz body ({"child": {..., "status": "running"}, ...}).
child_status() {
  local re='"child"[[:space:]]*:[[:space:]]*\{[^}]*"status"[[:space:]]*:[[:space:]]*"([^"]*)"'
  [[ "$1" =~ $re ]] && printf '%s\n' "${BASH_REMATCH[1]}"
}

# launchd's view of a service: LAUNCHD_LOADED, LAUNCHD_LINES (state, pid, last exit code;
# only those: launchctl print also dumps the environment, token included), LAUNCHD_PID,
# LAUNCHD_LAST_EXIT.
launchd_view() {
  local label="$1" info line
  LAUNCHD_LOADED=0
  LAUNCHD_LINES=""
  LAUNCHD_PID=""
  LAUNCHD_LAST_EXIT=""
  if info="$(launchctl print "${domain_target}/${label}" 2>/dev/null)"; then
    LAUNCHD_LOADED=1
    while IFS= read -r line; do
      if [[ "$line" =~ ^[[:space:]]*((state|pid|last\ exit\ code)\ =\ (.*))$ ]]; then
        LAUNCHD_LINES="${LAUNCHD_LINES}${BASH_REMATCH[1]}"$'\n'
        case "${BASH_REMATCH[2]}" in
          pid) LAUNCHD_PID="${BASH_REMATCH[3]}" ;;
          "last exit code") LAUNCHD_LAST_EXIT="${BASH_REMATCH[3]}" ;;
        esac
      fi
    done <<<"$info"
  fi
}

# The service's base URL and what its health means, as one line: "up · …" or "DOWN · why".
service_health() {
  local service="$1" base="" detail="" extra mode drained overall
  case "$service" in
    conductor) base="$local_api_base" ;;
    codexd) base="$codexd_local_api_base" ;;
    status-api) base="$status_api_base" ;;
  esac
  if [[ "$skip_http" == "1" ]]; then
    HEALTH_LINE="http not probed · ${base}"
    return
  fi
  probe "${base}/healthz"
  if [[ "$PROBE_OK" != "1" ]]; then
    HEALTH_LINE="DOWN · ${PROBE_TEXT} · ${base}"
    return
  fi
  case "$service" in
    conductor)
      if http_probe "${base}/rolez"; then
        detail="$(first_line "$CURL_LAST_BODY")"
      fi
      if http_probe "${base}/v1/system/state"; then
        mode="$(json_field "$CURL_LAST_BODY" mode || true)"
        drained="$(json_field "$CURL_LAST_BODY" drained || true)"
        extra="automation ${mode:-unknown}"
        [[ "$mode" == "draining" && "$drained" == "true" ]] && extra="${extra} (drained)"
        detail="${detail:+${detail} · }${extra}"
      fi
      ;;
    codexd)
      extra="$(child_status "$CURL_LAST_BODY" || true)"
      mode="$(json_field "$CURL_LAST_BODY" mode || true)"
      detail="child ${extra:-unknown}${mode:+ · ${mode}}"
      ;;
    status-api)
      if http_probe "${base}/v1/status"; then
        overall="$(json_field "$CURL_LAST_BODY" overall || true)"
        detail="node ${overall:-unknown}"
      fi
      ;;
  esac
  HEALTH_LINE="up${detail:+ · ${detail}} · ${base}"
}

# One line per service first: "codexd      DOWN · connection refused (nothing listens) ·
# http://127.0.0.1:4319 · launchd: not loaded". The details follow, per service.
printf 'service     status\n'
for service in "${services[@]}"; do
  launchd_view "$(service_label "$service")"
  service_health "$service"
  if [[ "$LAUNCHD_LOADED" == "1" && -n "$LAUNCHD_PID" ]]; then
    where="launchd: loaded, pid ${LAUNCHD_PID}"
  elif [[ "$LAUNCHD_LOADED" == "1" ]]; then
    # Loaded without a process: launchd is between restarts (a crash loop shows here).
    where="launchd: loaded, not running${LAUNCHD_LAST_EXIT:+ (last exit code = ${LAUNCHD_LAST_EXIT})}"
  else
    where="launchd: not loaded"
  fi
  printf '%-11s %s · %s\n' "$service" "$HEALTH_LINE" "$where"
done
printf '\n'

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
  launchd_view "$label"
  if [[ "$LAUNCHD_LOADED" == "1" ]]; then
    printf 'launchd: loaded in %s\n%s' "$domain_target" "$LAUNCHD_LINES"
  else
    printf 'launchd: not loaded in %s\n' "$domain_target"
  fi
  if [[ -f "$plist" ]]; then
    printf 'out log: %s\n' "$(plist_get_or_default "$plist" ":StandardOutPath" "?")"
    printf 'err log: %s\n' "$(plist_get_or_default "$plist" ":StandardErrorPath" "?")"
  fi
  if [[ "$skip_http" != "1" ]]; then
    case "$service" in
      conductor) base="$local_api_base" paths="healthz v1/system/state" ;;
      codexd) base="$codexd_local_api_base" paths="healthz v1/codexd/status" ;;
      status-api) base="$status_api_base" paths="healthz v1/status" ;;
    esac
    for path in $paths; do
      probe "${base}/${path}"
      printf '%s: %s\n' "$path" "$PROBE_TEXT"
    done
  fi
  printf '\n'
done
