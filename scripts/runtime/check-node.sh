#!/usr/bin/env bash
# On-node verification: static plist checks, then ports, processes, logs and HTTP probes.
set -euo pipefail
SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "${SCRIPT_DIR}/common.sh"

usage() {
  cat <<USAGE
Usage: $(basename -- "$0") [options]

Verify a running node:
  1. check-launchd.sh with the same options (static checks of the installed plists)
  2. each service's port is in LISTEN state
  3. a process runs with the expected command line
     (<root>/bin/current/baa-conductor start --conductor-host ...)
  4. its launchd stdout/stderr files exist under <logs>/launchd/
  5. HTTP: conductor /healthz = ok (and /rolez, /readyz with --expected-rolez),
     codexd /healthz contains "status": "ok" and /v1/codexd/status "mode": "app-server",
     status-api /healthz and /v1/status answer 2xx
  6. codexd in unix mode: an app-server listening on codexd's socket runs only as the
     child codexd reports (one that no codexd owns fails the check)
  7. codex: the version of codexd's BAA_CODEXD_SERVER_COMMAND, with a warning (not a
     failure) when it is not the pinned version
Exit 1 if any check failed.

Options:
USAGE
  options_help services target layout repo config bases probe token
  cat <<'USAGE'
  --check-loaded            Require launchctl print <domain>/<label> to succeed.
  --expected-rolez ROLE     Require conductor /rolez to say ROLE (leader|standby);
                            leader also requires /readyz to answer 200.
  --skip-static-check       Skip the check-launchd.sh pass.
  --skip-port-check         Skip the LISTEN checks.
  --skip-process-check      Skip the process command-line checks.
  --skip-http-check         Skip the HTTP probes.
  --skip-log-check          Skip the <logs>/launchd file checks.
  --skip-codex-check        Skip the codex version check.
  --skip-bin-check          Passed on to check-launchd.sh.

Notes:
  If no service is specified, conductor + codexd + status-api are checked.
USAGE
}

check_loaded="0"
expected_rolez=""
skip_static_check="0"
skip_port_check="0"
skip_process_check="0"
skip_http_check="0"
skip_log_check="0"
skip_codex_check="0"
check_node_option() {
  BAA_SHIFT=1
  case "$1" in
    --check-loaded) check_loaded="1" ;;
    --skip-static-check) skip_static_check="1" ;;
    --skip-port-check) skip_port_check="1" ;;
    --skip-process-check) skip_process_check="1" ;;
    --skip-http-check) skip_http_check="1" ;;
    --skip-log-check) skip_log_check="1" ;;
    --skip-codex-check) skip_codex_check="1" ;;
    --skip-bin-check | --skip-dist-check) ;;
    --expected-rolez)
      [[ $# -ge 2 ]] || usage_error "$1 needs a value"
      expected_rolez="$2"
      BAA_SHIFT=2
      ;;
    *) return 1 ;;
  esac
}

# Arguments for check-launchd.sh: everything except the options only this script knows.
static_args=()
skip_next="0"
for arg in "$@"; do
  if [[ "$skip_next" == "1" ]]; then
    skip_next="0"
    continue
  fi
  case "$arg" in
    --expected-rolez | --status-api-base) skip_next="1" ;;
    --skip-static-check | --skip-port-check | --skip-process-check | --skip-http-check | \
      --skip-log-check | --skip-codex-check) ;;
    *) static_args+=("$arg") ;;
  esac
done

BAA_OPTION_GROUPS="services target layout repo config bases probe token"
parse_args_with check_node_option "$@"
finalize_services
finalize_target
# Probe bases come from the flags, else the installed plists (not the install defaults).
flag_bases=("$local_api_base" "$codexd_local_api_base" "$status_api_host" "$status_api_port")
finalize_config
local_api_base="${flag_bases[0]}"
codexd_local_api_base="${flag_bases[1]}"
status_api_host="${flag_bases[2]}"
status_api_port="${flag_bases[3]}"
finalize_probe_bases

passed=0
failed=0
warned=0
ok() {
  passed=$((passed + 1))
  printf 'ok   %s\n' "$*"
}
warn() {
  warned=$((warned + 1))
  printf 'warn %s\n' "$*"
}
fail() {
  failed=$((failed + 1))
  runtime_error "FAIL $*"
}

if [[ "$skip_static_check" != "1" ]]; then
  if "${SCRIPT_DIR}/check-launchd.sh" ${static_args[@]+"${static_args[@]}"}; then
    ok "static checks (check-launchd.sh)"
  else
    fail "static checks (check-launchd.sh) failed, see above"
  fi
elif [[ "$check_loaded" == "1" ]]; then
  for service in "${services[@]}"; do
    if launchd_is_loaded "$service"; then
      ok "${service}: loaded in ${domain_target}"
    else
      fail "${service}: launchctl print ${domain_target}/$(service_label "$service") failed"
    fi
  done
fi

port_is_listening() {
  local port="$1"
  if command -v ss >/dev/null 2>&1; then
    [[ -n "$(ss -Hltn "sport = :${port}" 2>/dev/null)" ]]
  elif command -v lsof >/dev/null 2>&1; then
    lsof -nP -iTCP:"${port}" -sTCP:LISTEN -t >/dev/null 2>&1
  else
    netstat -an 2>/dev/null | grep -E "[.:]${port}[[:space:]].*LISTEN" >/dev/null
  fi
}

process_list=""
process_running() {
  if [[ -z "$process_list" ]]; then
    process_list="$(ps axww -o command= 2>/dev/null || ps -eo args=)"
  fi
  printf '%s\n' "$process_list" | grep -F -- "$1" >/dev/null
}

# GET url and require a 2xx whose body contains want (empty want: any body).
probe_contains() {
  local name="$1" url="$2" want="$3"
  if ! http_probe "$url"; then
    fail "${name}: ${url} unreachable (curl exit ${CURL_LAST_EXIT_CODE}, http ${CURL_LAST_HTTP_STATUS}) ${CURL_LAST_ERROR}"
  elif [[ -n "$want" && "$CURL_LAST_BODY" != *"$want"* ]]; then
    fail "${name}: ${url} answered ${CURL_LAST_HTTP_STATUS} without ${want}"
  else
    ok "${name}: ${url} ${CURL_LAST_HTTP_STATUS}${want:+ contains ${want}}"
  fi
}

# The codex binary codexd runs (its installed plist, else the install default), its
# version, and a warning when that is not the pin the repo tests against.
check_codex_version() {
  local plist cmd path out version pin
  plist="$(service_install_path "$install_dir" codexd)"
  cmd="$(plist_get_or_default "$plist" ":EnvironmentVariables:BAA_CODEXD_SERVER_COMMAND" "$codexd_server_command")"
  pin="$(pinned_codex_version)"
  if [[ -z "$cmd" ]]; then
    fail "codex: no BAA_CODEXD_SERVER_COMMAND in ${plist} and the pin ${pin} is not installed under $(codex_install_dir)"
    return 0
  fi
  path="$cmd"
  if [[ "$path" != */* ]]; then
    path="$(command -v "$path" 2>/dev/null || true)"
  fi
  if [[ -z "$path" || ! -x "$path" ]]; then
    fail "codex: ${cmd} is not an executable (codexd cannot start its child; reinstall, or --codex-command PATH)"
    return 0
  fi
  if ! out="$(run_bounded 10 "$path" --version 2>&1)"; then
    fail "codex: ${path} --version failed: $(first_line "$out")"
    return 0
  fi
  out="$(first_line "$out")"
  version="${out##* }"
  if [[ "$version" == "$pin" ]]; then
    ok "codex: ${path} is ${version} (the pinned version)"
  else
    warn "codex: ${path} is ${version:-unknown}, the pinned version is ${pin} (install-launchd.sh without --codex-command installs the pin)"
  fi
}

# In unix mode the app-server outlives codexd by design (the next codexd re-attaches it);
# one on codexd's socket that the running codexd does not report as its child is owned by
# nobody. Only processes on this node's socket are looked at, never one found by name.
check_app_server_owner() {
  local base="$1" plist="$2" endpoint sock owner="" pid cmd
  endpoint="$(plist_get_or_default "$plist" ":EnvironmentVariables:BAA_CODEXD_SERVER_ENDPOINT" "")"
  case "$endpoint" in
    unix://) sock="$(plist_get_or_default "$plist" ":EnvironmentVariables:BAA_CODEXD_STATE_DIR" "${runtime_root}/state/codexd")/app-server.sock" ;;
    unix://*) sock="${endpoint#unix://}" ;;
    *) return 0 ;;
  esac
  # The child's pid, read without a pipe (`| head` under pipefail can die of SIGPIPE).
  if http_probe "${base}/healthz" && [[ "$CURL_LAST_BODY" =~ \"pid\":[[:space:]]*([0-9]+) ]]; then
    owner="${BASH_REMATCH[1]}"
  fi
  while read -r pid cmd; do
    case "$cmd" in
      *"--listen unix://${sock}"*) ;;
      *) continue ;;
    esac
    if [[ -n "$owner" && "$pid" == "$owner" ]]; then
      ok "codexd: app-server pid ${pid} on ${sock} is codexd's child"
    else
      fail "codexd: app-server pid ${pid} on ${sock} runs but no codexd owns it; start codexd (it re-attaches the one it recorded) or stop it with stop-launchd.sh --service codexd --with-child"
    fi
  done <<PS
$(ps axww -o pid= -o command= 2>/dev/null || ps -eo pid=,args=)
PS
}

service_base() {
  case "$1" in
    conductor) printf '%s\n' "$local_api_base" ;;
    codexd) printf '%s\n' "$codexd_local_api_base" ;;
    status-api) printf '%s\n' "$status_api_base" ;;
  esac
}

for service in "${services[@]}"; do
  base="$(service_base "$service")"
  plist="$(service_install_path "$install_dir" "$service")"

  if [[ "$skip_port_check" != "1" ]]; then
    port="$(url_port "$base")"
    if port_is_listening "$port"; then
      ok "${service}: port ${port} is listening"
    else
      fail "${service}: nothing listens on port ${port}"
    fi
  fi

  if [[ "$skip_process_check" != "1" ]]; then
    match="$(service_program_path "$service")"
    program_args="$(service_program_args "$service")"
    [[ -z "$program_args" ]] || match="${match} ${program_args}"
    if process_running "$match"; then
      ok "${service}: process '${match}' is running"
    else
      fail "${service}: no process with command line '${match}'"
    fi
  fi

  if [[ "$skip_log_check" != "1" ]]; then
    for log in "$(plist_get_or_default "$plist" ":StandardOutPath" "$(service_stdout_path "$service")")" \
      "$(plist_get_or_default "$plist" ":StandardErrorPath" "$(service_stderr_path "$service")")"; do
      if [[ -f "$log" ]]; then
        ok "${service}: log file ${log} exists"
      else
        fail "${service}: log file ${log} is missing"
      fi
    done
  fi

  if [[ "$skip_http_check" != "1" ]]; then
    case "$service" in
      conductor)
        probe_contains "conductor /healthz" "${base}/healthz" "ok"
        if [[ -n "$expected_rolez" ]]; then
          probe_contains "conductor /rolez" "${base}/rolez" "$expected_rolez"
          if [[ "$expected_rolez" == "leader" ]]; then
            probe_contains "conductor /readyz" "${base}/readyz" ""
          fi
        fi
        ;;
      codexd)
        probe_contains "codexd /healthz" "${base}/healthz" '"status": "ok"'
        probe_contains "codexd /v1/codexd/status" "${base}/v1/codexd/status" '"mode": "app-server"'
        check_app_server_owner "$base" "$plist"
        ;;
      status-api)
        probe_contains "status-api /healthz" "${base}/healthz" ""
        probe_contains "status-api /v1/status" "${base}/v1/status" ""
        ;;
    esac
  fi
done

if [[ "$skip_codex_check" != "1" && " ${services[*]} " == *" codexd "* ]]; then
  check_codex_version
fi

if ((failed > 0)); then
  runtime_error "check-node: ${failed} failed, ${passed} passed"
  exit 1
fi
summary="check-node: all ${passed} checks passed for: ${services[*]}"
if ((warned > 0)); then
  summary="${summary} (${warned} warning(s) above)"
fi
runtime_log "$summary"
