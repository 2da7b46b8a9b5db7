# shellcheck shell=bash
# Shared helpers for scripts/runtime/*.sh. Sourced, never run.
#
# Written for the bash that ships with macOS (3.2) as well as bash 5 on Linux: no
# associative arrays, no mapfile, and empty arrays are never expanded under `set -u`.
#
# Exit codes used by every script: 0 ok, 1 runtime failure, 2 usage or configuration error.
# The shared token is never printed: dry-run output and diagnostics go through mask_text.

# Globals below are read by the scripts that source this file.
# shellcheck disable=SC2034

BAA_RUNTIME_SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
BAA_RUNTIME_REPO_DIR_DEFAULT="$(cd -- "${BAA_RUNTIME_SCRIPT_DIR}/../.." && pwd)"
BAA_RUNTIME_PLIST_PY="${BAA_RUNTIME_SCRIPT_DIR}/plist.py"

BAA_RUNTIME_SERVICES="conductor codexd status-api"
BAA_RUNTIME_DEFAULT_NODE="mini"
BAA_RUNTIME_DEFAULT_CONTROL_API_BASE="https://conductor.makefile.so"
# Canonical mini values from the source documents (Tailscale address of the node).
BAA_RUNTIME_MINI_LOCAL_API="http://100.71.210.78:4317"
BAA_RUNTIME_MINI_ALLOWED_HOSTS="100.71.210.78"
BAA_RUNTIME_MINI_STATUS_API_HOST="100.71.210.78"
# Used when neither a flag nor an installed plist names a base.
BAA_RUNTIME_DEFAULT_LOCAL_API="http://127.0.0.1:4317"
BAA_RUNTIME_DEFAULT_CODEXD_LOCAL_API="http://127.0.0.1:4319"
BAA_RUNTIME_DEFAULT_CODEXD_EVENT_STREAM_PATH="/v1/codexd/events"
BAA_RUNTIME_DEFAULT_CODEXD_SERVER_MODE="app-server"
BAA_RUNTIME_DEFAULT_CODEXD_SERVER_STRATEGY="spawn"
BAA_RUNTIME_DEFAULT_CODEXD_SERVER_COMMAND="codex"
BAA_RUNTIME_DEFAULT_CODEXD_SERVER_ARGS="app-server"
# unix mode: the app-server listens on <state dir>/app-server.sock and outlives codexd.
BAA_RUNTIME_DEFAULT_CODEXD_SERVER_ENDPOINT="unix://"
BAA_RUNTIME_DEFAULT_STATUS_API_HOST="127.0.0.1"
BAA_RUNTIME_DEFAULT_STATUS_API_PORT="4318"
BAA_RUNTIME_PLACEHOLDER_TOKEN="replace-me"
BAA_RUNTIME_MASK="********"

# ---------------------------------------------------------------------------
# messages and exits

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

usage_error() {
  printf '[runtime] error: %s\n' "$*" >&2
  printf '[runtime] run %s --help for usage\n' "$(basename -- "$0")" >&2
  exit 2
}

# ---------------------------------------------------------------------------
# services

service_names_help() {
  printf '%s' "$BAA_RUNTIME_SERVICES"
}

validate_service() {
  case "$1" in
    conductor | codexd | status-api) ;;
    worker-runner)
      usage_error "unknown service: worker-runner (there is no worker-runner process; the conductor's scheduler does that work). Valid: $(service_names_help)"
      ;;
    *)
      usage_error "unknown service: $1 (valid: $(service_names_help))"
      ;;
  esac
}

service_label() {
  printf 'so.makefile.baa-%s\n' "$1"
}

service_binary() {
  printf 'baa-%s\n' "$1"
}

# Templates come from the checkout holding these scripts, so script and template
# always agree on the placeholders, whatever --repo-dir points at.
service_template_path() {
  printf '%s/launchd/%s.plist\n' "$BAA_RUNTIME_REPO_DIR_DEFAULT" "$(service_label "$1")"
}

service_install_path() {
  printf '%s/%s.plist\n' "$1" "$(service_label "$2")"
}

service_stdout_path() {
  printf '%s/logs/launchd/%s.out.log\n' "$1" "$(service_label "$2")"
}

service_stderr_path() {
  printf '%s/logs/launchd/%s.err.log\n' "$1" "$(service_label "$2")"
}

# Only conductor runs host operations; codexd and status-api never see the token.
service_requires_shared_token() {
  [[ "$1" == "conductor" ]]
}

# The arguments launchd passes after the binary, as one string for process matching.
service_program_args() {
  case "$1" in
    conductor) printf 'start --host %s --role %s\n' "$conductor_host" "$conductor_role" ;;
    codexd) printf 'start\n' ;;
    status-api) printf '\n' ;;
  esac
}

# Fill `services` with the defaults when no --service was given.
finalize_services() {
  if [[ "${#services[@]}" -eq 0 ]]; then
    # shellcheck disable=SC2206 # intended word splitting of a fixed list
    services=($BAA_RUNTIME_SERVICES)
  fi
}

# ---------------------------------------------------------------------------
# user, scope, domain

current_uid() {
  id -u
}

current_username() {
  id -un
}

validate_scope() {
  case "$1" in
    agent | daemon) ;;
    *) usage_error "--scope must be agent or daemon, got: $1" ;;
  esac
}

default_install_dir() {
  if [[ "$1" == "daemon" ]]; then
    printf '/Library/LaunchDaemons\n'
  else
    printf '%s/Library/LaunchAgents\n' "$2"
  fi
}

default_domain_target() {
  if [[ "$1" == "daemon" ]]; then
    printf 'system\n'
  else
    printf 'gui/%s\n' "$(current_uid)"
  fi
}

finalize_target() {
  validate_scope "$scope"
  if [[ -z "$install_dir" ]]; then
    install_dir="$(default_install_dir "$scope" "$home_dir")"
  fi
  if [[ -z "$domain_target" ]]; then
    domain_target="$(default_domain_target "$scope")"
  fi
}

# ---------------------------------------------------------------------------
# node and config values

resolve_node_defaults() {
  case "$node" in
    mini)
      [[ -n "$node_id" ]] || node_id="mini-main"
      [[ -n "$conductor_host" ]] || conductor_host="mini"
      [[ -n "$conductor_role" ]] || conductor_role="primary"
      ;;
    *)
      usage_error "unknown node: $node (only mini is defined)"
      ;;
  esac
  case "$conductor_role" in
    primary | standby) ;;
    *) usage_error "--role must be primary or standby, got: $conductor_role" ;;
  esac
}

normalize_url() {
  local url="$1"
  while [[ "$url" == */ ]]; do
    url="${url%/}"
  done
  printf '%s\n' "$url"
}

# Host part of http://host:port/..., without IPv6 brackets.
url_host() {
  local rest="${1#*://}"
  rest="${rest%%/*}"
  if [[ "$rest" == \[* ]]; then
    rest="${rest#[}"
    printf '%s\n' "${rest%%]*}"
  else
    printf '%s\n' "${rest%%:*}"
  fi
}

url_port() {
  local url="$1"
  local rest="${url#*://}"
  rest="${rest%%/*}"
  rest="${rest##*]}"
  if [[ "$rest" == *:* ]]; then
    printf '%s\n' "${rest##*:}"
  elif [[ "$url" == https://* ]]; then
    printf '443\n'
  else
    printf '80\n'
  fi
}

# A URL host for probing a service that listens on host: wildcard binds are probed on loopback.
probe_host() {
  case "$1" in
    "" | 0.0.0.0) printf '127.0.0.1\n' ;;
    :: | "[::]") printf '[::1]\n' ;;
    *:*) printf '[%s]\n' "$1" ;;
    *) printf '%s\n' "$1" ;;
  esac
}

check_number() {
  [[ "$2" =~ ^[0-9]+([.][0-9]+)?$ ]] || usage_error "$1 must be a number, got: $2"
}

# ---------------------------------------------------------------------------
# shared token

shared_token=""
shared_token_source=""

token_config_dir() {
  printf '%s/.config/baa-conductor\n' "$home_dir"
}

# First line of a token file, trailing whitespace removed.
read_token_file() {
  local line=""
  IFS= read -r line <"$1" || true
  line="${line%$'\r'}"
  line="${line%"${line##*[![:space:]]}"}"
  printf '%s' "$line"
}

# Value of KEY in a dotenv-style file. The file is parsed, never sourced.
read_env_file_value() {
  local file="$1" key="$2" line value="" found=1
  while IFS= read -r line || [[ -n "$line" ]]; do
    line="${line%$'\r'}"
    line="${line#"${line%%[![:space:]]*}"}"
    line="${line#export }"
    if [[ "$line" == "${key}="* ]]; then
      value="${line#"${key}"=}"
      if [[ "$value" == \"*\" || "$value" == \'*\' ]]; then
        value="${value:1:${#value}-2}"
      fi
      found=0
    fi
  done <"$file"
  printf '%s' "$value"
  return "$found"
}

# Sets shared_token and shared_token_source. Order:
#   --shared-token, --shared-token-file, $BAA_SHARED_TOKEN,
#   ~/.config/baa-conductor/shared-token.txt,
#   BAA_SHARED_TOKEN in ~/.config/baa-conductor/runtime-secrets.env,
#   BAA_SHARED_TOKEN in the legacy ~/.config/baa-conductor/control-api-worker.secrets.env.
resolve_shared_token() {
  local dir candidate
  dir="$(token_config_dir)"
  if [[ -n "$opt_shared_token" ]]; then
    shared_token="$opt_shared_token"
    shared_token_source="--shared-token"
  elif [[ -n "$shared_token_file" ]]; then
    [[ -r "$shared_token_file" ]] || usage_error "shared token file not readable: $shared_token_file"
    shared_token="$(read_token_file "$shared_token_file")"
    shared_token_source="$shared_token_file"
  elif [[ -n "${BAA_SHARED_TOKEN:-}" ]]; then
    shared_token="$BAA_SHARED_TOKEN"
    shared_token_source="BAA_SHARED_TOKEN"
  elif [[ -r "${dir}/shared-token.txt" ]]; then
    shared_token="$(read_token_file "${dir}/shared-token.txt")"
    shared_token_source="${dir}/shared-token.txt"
  else
    for candidate in "${dir}/runtime-secrets.env" "${dir}/control-api-worker.secrets.env"; do
      if [[ -r "$candidate" ]] && shared_token="$(read_env_file_value "$candidate" BAA_SHARED_TOKEN)"; then
        shared_token_source="$candidate"
        break
      fi
      shared_token=""
    done
  fi
}

# Fails unless a usable token was found.
require_shared_token() {
  resolve_shared_token
  if [[ -z "$shared_token" ]]; then
    usage_error "conductor needs a shared token: use --shared-token-file, BAA_SHARED_TOKEN, or $(token_config_dir)/shared-token.txt (runtime-secrets.env and the legacy control-api-worker.secrets.env are read too)"
  fi
  if [[ "$shared_token" == "$BAA_RUNTIME_PLACEHOLDER_TOKEN" ]]; then
    usage_error "the shared token from ${shared_token_source} is still the placeholder ${BAA_RUNTIME_PLACEHOLDER_TOKEN}"
  fi
}

# The file the conductor reads its token from (BAA_SHARED_TOKEN_FILE in its plist): the
# --shared-token-file given, else ~/.config/baa-conductor/shared-token.txt. The token is
# never put in the plist's environment: every command the conductor execs could read it
# from /proc/$PPID/environ (or `ps eww` on macOS).
conductor_token_file() {
  local file="${shared_token_file:-$(token_config_dir)/shared-token.txt}"
  [[ "$file" == /* ]] || file="${PWD}/${file}"
  printf '%s\n' "$file"
}

# True when nobody but the owner may read or write the file (the conductor refuses a
# token file with group or other bits).
file_is_private() {
  local mode
  # ls is the portable way: stat flags differ between BSD and GNU.
  # shellcheck disable=SC2012
  mode="$(ls -ln "$1" | cut -c5-10)"
  [[ "$mode" == "------" ]]
}

# Makes conductor_token_file hold the resolved shared_token, mode 600: written (atomically,
# under umask 077) when missing or different, tightened when readable by others.
install_token_file() {
  local file dir tmp
  file="$(conductor_token_file)"
  dir="$(dirname -- "$file")"
  if [[ -f "$file" && "$(read_token_file "$file")" == "$shared_token" ]]; then
    if ! file_is_private "$file"; then
      if [[ "$dry_run" == "1" ]]; then
        printf '# would chmod 600 %s\n' "$file"
      else
        chmod 600 "$file"
        runtime_log "tightened ${file} to mode 600"
      fi
    fi
    return 0
  fi
  if [[ "$dry_run" == "1" ]]; then
    printf '# would write %s (mode 600) from %s\n' "$file" "$shared_token_source"
    return 0
  fi
  mkdir -p "$dir"
  if [[ "$dir" == "$(token_config_dir)" ]]; then
    chmod 700 "$dir"
  fi
  tmp="${file}.tmp.$$"
  (
    umask 077
    printf '%s\n' "$shared_token" >"$tmp"
  )
  mv -f "$tmp" "$file"
  runtime_log "wrote ${file} (mode 600) from ${shared_token_source}"
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

# ---------------------------------------------------------------------------
# running commands

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

# ---------------------------------------------------------------------------
# plists

plist_lint() {
  if command -v plutil >/dev/null 2>&1; then
    plutil -lint "$1" >/dev/null
  else
    python3 "$BAA_RUNTIME_PLIST_PY" lint "$1" >/dev/null
  fi
}

# Value at a PlistBuddy-style key path (":EnvironmentVariables:HOME"); empty when missing.
plist_get() {
  python3 "$BAA_RUNTIME_PLIST_PY" get "$1" "$2" 2>/dev/null || true
}

plist_get_or_default() {
  local value=""
  if [[ -f "$1" ]]; then
    value="$(plist_get "$1" "$2")"
  fi
  if [[ -n "$value" ]]; then
    printf '%s\n' "$value"
  else
    printf '%s\n' "$3"
  fi
}

# ---------------------------------------------------------------------------
# HTTP probes

CURL_LAST_EXIT_CODE=0
CURL_LAST_HTTP_STATUS="000"
CURL_LAST_ERROR=""
CURL_LAST_BODY=""
BAA_RUNTIME_TMP=""

# Call directly, never in $(...): the trap and the variable must live in this shell.
ensure_runtime_tmp() {
  if [[ -z "$BAA_RUNTIME_TMP" ]]; then
    BAA_RUNTIME_TMP="$(mktemp -d "${TMPDIR:-/tmp}/baa-runtime.XXXXXX")"
    trap 'rm -rf "$BAA_RUNTIME_TMP"' EXIT
  fi
}

# GET url; succeed on a 2xx answer. Records the result in CURL_LAST_*.
http_probe() {
  local url="$1" tmp status
  ensure_runtime_tmp
  tmp="$BAA_RUNTIME_TMP"
  rm -f "${tmp}/body" "${tmp}/err"
  CURL_LAST_EXIT_CODE=0
  status="$(curl -sS -g --connect-timeout 1 --max-time "${BAA_RUNTIME_CURL_MAX_TIME:-3}" \
    -o "${tmp}/body" -w '%{http_code}' "$url" 2>"${tmp}/err")" || CURL_LAST_EXIT_CODE=$?
  CURL_LAST_HTTP_STATUS="${status:-000}"
  CURL_LAST_ERROR="$(cat "${tmp}/err" 2>/dev/null || true)"
  CURL_LAST_BODY="$(cat "${tmp}/body" 2>/dev/null || true)"
  [[ "$CURL_LAST_EXIT_CODE" -eq 0 && "$CURL_LAST_HTTP_STATUS" == 2?? ]]
}

# Poll url until it answers 2xx or health_timeout seconds pass. Always probes at least once.
wait_for_health() {
  local service="$1" url="$2" deadline
  deadline=$((SECONDS + ${health_timeout%.*}))
  while :; do
    if http_probe "$url"; then
      runtime_log "${service} is healthy at ${url}"
      return 0
    fi
    if ((SECONDS >= deadline)); then
      return 1
    fi
    sleep "$health_interval"
  done
}

# The /healthz URL of a service, read from its installed plist.
service_health_url() {
  local service="$1" plist="$2" base host port
  case "$service" in
    conductor)
      base="$(plist_get_or_default "$plist" ":EnvironmentVariables:BAA_CONDUCTOR_LOCAL_API" "$BAA_RUNTIME_DEFAULT_LOCAL_API")"
      ;;
    codexd)
      base="$(plist_get_or_default "$plist" ":EnvironmentVariables:BAA_CODEXD_LOCAL_API_BASE" "$BAA_RUNTIME_DEFAULT_CODEXD_LOCAL_API")"
      ;;
    status-api)
      host="$(plist_get_or_default "$plist" ":EnvironmentVariables:BAA_STATUS_API_HOST" "$BAA_RUNTIME_DEFAULT_STATUS_API_HOST")"
      port="$(plist_get_or_default "$plist" ":EnvironmentVariables:BAA_STATUS_API_PORT" "$BAA_RUNTIME_DEFAULT_STATUS_API_PORT")"
      base="http://$(probe_host "$host"):${port}"
      ;;
  esac
  printf '%s/healthz\n' "$(normalize_url "$base")"
}

# ---------------------------------------------------------------------------
# launchctl

launchd_is_loaded() {
  launchctl print "${domain_target}/$(service_label "$1")" >/dev/null 2>&1
}

# bootout returns before the job has exited; wait (bounded) until launchd forgets it,
# otherwise an immediate bootstrap fails with "Bootstrap failed: 5: Input/output error".
wait_until_unloaded() {
  local service="$1" deadline
  deadline=$((SECONDS + ${unload_timeout%.*}))
  while launchd_is_loaded "$service"; do
    if ((SECONDS >= deadline)); then
      runtime_error "${service} is still loaded ${unload_timeout}s after bootout"
      return 1
    fi
    sleep 0.2
  done
  return 0
}

# bootout, tolerating "not loaded".
launchd_bootout() {
  local service="$1" label
  label="$(service_label "$service")"
  if [[ "$dry_run" == "1" ]]; then
    print_cmd launchctl bootout "${domain_target}/${label}"
    return 0
  fi
  if ! launchd_is_loaded "$service"; then
    runtime_log "${service}: not loaded in ${domain_target}, nothing to boot out"
    return 0
  fi
  runtime_log "launchctl bootout ${domain_target}/${label}"
  launchctl bootout "${domain_target}/${label}" || runtime_error "bootout returned non-zero for ${domain_target}/${label}"
  wait_until_unloaded "$service"
}

# bootstrap with one retry after a short pause (launchd may still be tearing the old job down).
launchd_bootstrap() {
  local service="$1" plist
  plist="$(service_install_path "$install_dir" "$service")"
  if [[ "$dry_run" == "1" ]]; then
    print_cmd launchctl bootstrap "$domain_target" "$plist"
    return 0
  fi
  [[ -f "$plist" ]] || {
    runtime_error "${service}: no installed plist at ${plist}; run install-launchd.sh first"
    return 1
  }
  runtime_log "launchctl bootstrap ${domain_target} ${plist}"
  if launchctl bootstrap "$domain_target" "$plist"; then
    return 0
  fi
  runtime_error "bootstrap failed for ${service}; retrying once in 1s"
  sleep 1
  launchctl bootstrap "$domain_target" "$plist"
}

launchd_kickstart() {
  local service="$1" label
  label="$(service_label "$service")"
  if [[ "$dry_run" == "1" ]]; then
    print_cmd launchctl kickstart "${domain_target}/${label}"
    return 0
  fi
  runtime_log "launchctl kickstart ${domain_target}/${label}"
  launchctl kickstart "${domain_target}/${label}"
}

print_log_tail() {
  local title="$1" path="$2"
  if [[ -z "$path" || ! -f "$path" ]]; then
    runtime_error "${title}: no log file at ${path:-<unset>}"
    return 0
  fi
  runtime_error "${title} (last 20 lines of ${path}):"
  tail -n 20 "$path" | mask_text >&2
}

print_service_diagnostics() {
  local service="$1" plist="$2" url="$3" label output
  label="$(service_label "$service")"
  runtime_error "${service} did not become healthy after launchd (re)load"
  runtime_error "health probe: ${url}"
  runtime_error "last curl result: exit=${CURL_LAST_EXIT_CODE} http=${CURL_LAST_HTTP_STATUS:-000}"
  if [[ -n "$CURL_LAST_ERROR" ]]; then
    runtime_error "last curl error: ${CURL_LAST_ERROR}"
  fi
  runtime_error "launchctl print ${domain_target}/${label}:"
  # launchctl print lists the job's environment, token included: mask it.
  if output="$(launchctl print "${domain_target}/${label}" 2>&1)"; then
    printf '%s\n' "$output" | mask_text >&2
  else
    printf '%s\n' "$output" | mask_text >&2
    runtime_error "launchctl print failed for ${domain_target}/${label}"
  fi
  print_log_tail "${service} stdout" "$(plist_get_or_default "$plist" ":StandardOutPath" "")"
  print_log_tail "${service} stderr" "$(plist_get_or_default "$plist" ":StandardErrorPath" "")"
  runtime_error "manual recovery hint: launchctl kickstart -k ${domain_target}/${label}"
  runtime_error "  then: curl -fsS ${url}"
}

# Wait for /healthz; if it does not come, one `launchctl kickstart -k`, wait again,
# then diagnostics. Returns non-zero when the service stays unhealthy.
recover_service_after_reload() {
  local service="$1" label plist url token_path
  label="$(service_label "$service")"
  plist="$(service_install_path "$install_dir" "$service")"
  # The conductor's token is what diagnostics must mask: from the file its plist names
  # (or, in a copy installed before token files, from the plist itself).
  if [[ -z "$shared_token" ]] && service_requires_shared_token "$service"; then
    token_path="$(plist_get_or_default "$plist" ":EnvironmentVariables:BAA_SHARED_TOKEN_FILE" "")"
    if [[ -n "$token_path" && -r "$token_path" ]]; then
      shared_token="$(read_token_file "$token_path")"
    else
      shared_token="$(plist_get_or_default "$plist" ":EnvironmentVariables:BAA_SHARED_TOKEN" "")"
    fi
  fi
  url="$(service_health_url "$service" "$plist")"
  runtime_log "waiting up to ${health_timeout}s for ${service} at ${url}"
  if wait_for_health "$service" "$url"; then
    return 0
  fi
  if [[ "$skip_kickstart" == "1" ]]; then
    print_service_diagnostics "$service" "$plist" "$url"
    runtime_error "${service} stayed unhealthy after reload with --skip-kickstart"
    return 1
  fi
  runtime_error "${service} is loaded but not serving; retrying launchctl kickstart -k ${domain_target}/${label}"
  if ! launchctl kickstart -k "${domain_target}/${label}"; then
    runtime_error "retry kickstart returned non-zero for ${domain_target}/${label}"
    print_service_diagnostics "$service" "$plist" "$url"
    return 1
  fi
  if wait_for_health "$service" "$url"; then
    runtime_log "${service} recovered after retry kickstart"
    return 0
  fi
  print_service_diagnostics "$service" "$plist" "$url"
  runtime_error "${service} failed to recover after reload"
  return 1
}

# ---------------------------------------------------------------------------
# option parsing

# Defaults for every option any script accepts. Scripts pick the groups they accept
# by setting BAA_OPTION_GROUPS before calling parse_runtime_option.
services=()
scope="agent"
home_dir="${HOME:-}"
install_dir=""
domain_target=""
dry_run="0"
repo_dir="$BAA_RUNTIME_REPO_DIR_DEFAULT"
bin_dir=""
node="$BAA_RUNTIME_DEFAULT_NODE"
node_id=""
conductor_host=""
conductor_role=""
control_api_base="$BAA_RUNTIME_DEFAULT_CONTROL_API_BASE"
local_api_base=""
local_api_allowed_hosts="${BAA_CONDUCTOR_LOCAL_API_ALLOWED_HOSTS:-$BAA_RUNTIME_MINI_ALLOWED_HOSTS}"
codexd_local_api_base=""
codexd_event_stream_path="${BAA_CODEXD_EVENT_STREAM_PATH:-$BAA_RUNTIME_DEFAULT_CODEXD_EVENT_STREAM_PATH}"
codexd_server_command="${BAA_CODEXD_SERVER_COMMAND:-$BAA_RUNTIME_DEFAULT_CODEXD_SERVER_COMMAND}"
codexd_server_cwd="${BAA_CODEXD_SERVER_CWD:-}"
status_api_host=""
status_api_port=""
status_api_base=""
username=""
launchd_path=""
opt_shared_token=""
shared_token_file=""
health_timeout="${BAA_RUNTIME_HEALTH_TIMEOUT_SEC:-30}"
health_interval="${BAA_RUNTIME_HEALTH_INTERVAL_SEC:-1}"
unload_timeout="${BAA_RUNTIME_UNLOAD_TIMEOUT_SEC:-40}"
skip_kickstart="0"
BAA_OPTION_GROUPS=""
BAA_SHIFT=0

has_group() {
  [[ " $BAA_OPTION_GROUPS " == *" $1 "* ]]
}

# Handle one option from "$@". Returns 1 when the option is not one of the accepted
# groups; otherwise sets BAA_SHIFT to the number of words consumed.
parse_runtime_option() {
  local opt="$1" group="" value=""
  case "$opt" in
    --service | --all-services) group="services" ;;
    --scope | --home | --home-dir | --install-dir | --domain) group="target" ;;
    --dry-run) group="dryrun" ;;
    --repo-dir | --bin-dir) group="repo" ;;
    --node | --node-id | --host | --role | --control-api-base | --local-api-allowed-hosts | \
      --codexd-event-stream-path | --codexd-server-command | --codexd-server-cwd | \
      --username | --path) group="config" ;;
    --local-api-base | --codexd-local-api-base | --codexd-api-base | --status-api-host | \
      --status-api-port) group="bases" ;;
    --status-api-base) group="probe" ;;
    --shared-token | --shared-token-file) group="token" ;;
    --health-timeout | --health-interval | --unload-timeout | --skip-kickstart) group="health" ;;
    *) return 1 ;;
  esac
  has_group "$group" || return 1
  BAA_SHIFT=1
  case "$opt" in
    --all-services | --dry-run | --skip-kickstart) ;;
    *)
      [[ $# -ge 2 ]] || usage_error "$opt needs a value"
      value="$2"
      BAA_SHIFT=2
      ;;
  esac
  case "$opt" in
    --service)
      validate_service "$value"
      # A repeated --service NAME is handled once.
      [[ " ${services[*]-} " == *" $value "* ]] || services+=("$value")
      ;;
    --all-services)
      services=()
      finalize_services
      ;;
    --scope) validate_scope "$value" && scope="$value" ;;
    --home | --home-dir) home_dir="$value" ;;
    --install-dir) install_dir="$value" ;;
    --domain) domain_target="$value" ;;
    --dry-run) dry_run="1" ;;
    --repo-dir) repo_dir="$value" ;;
    --bin-dir) bin_dir="$value" ;;
    --node) node="$value" ;;
    --node-id) node_id="$value" ;;
    --host) conductor_host="$value" ;;
    --role) conductor_role="$value" ;;
    --control-api-base) control_api_base="$value" ;;
    --local-api-allowed-hosts) local_api_allowed_hosts="$value" ;;
    --codexd-event-stream-path) codexd_event_stream_path="$value" ;;
    --codexd-server-command) codexd_server_command="$value" ;;
    --codexd-server-cwd) codexd_server_cwd="$value" ;;
    --username) username="$value" ;;
    --path) launchd_path="$value" ;;
    --local-api-base) local_api_base="$value" ;;
    --codexd-local-api-base | --codexd-api-base) codexd_local_api_base="$value" ;;
    --status-api-host) status_api_host="$value" ;;
    --status-api-port) check_number "$opt" "$value" && status_api_port="$value" ;;
    --status-api-base) status_api_base="$value" ;;
    --shared-token) opt_shared_token="$value" ;;
    --shared-token-file) shared_token_file="$value" ;;
    --health-timeout) check_number "$opt" "$value" && health_timeout="$value" ;;
    --health-interval) check_number "$opt" "$value" && health_interval="$value" ;;
    --unload-timeout) check_number "$opt" "$value" && unload_timeout="$value" ;;
    --skip-kickstart) skip_kickstart="1" ;;
  esac
  return 0
}

# Help text for the option groups, so every script documents them the same way.
options_help() {
  local g
  for g in "$@"; do
    case "$g" in
      services)
        cat <<'EOF'
  --service NAME            Add one service: conductor, codexd or status-api. Repeatable.
                            Default: all three.
  --all-services            Select conductor, codexd and status-api.
EOF
        ;;
      target)
        cat <<'EOF'
  --scope agent|daemon      agent: gui/<uid> domain, ~/Library/LaunchAgents (default).
                            daemon: system domain, /Library/LaunchDaemons.
  --home PATH               Home directory (alias --home-dir). Default: $HOME.
  --install-dir PATH        Directory of the installed plists. Default from --scope.
  --domain TARGET           launchctl domain. Default gui/<uid> or system.
EOF
        ;;
      dryrun)
        cat <<'EOF'
  --dry-run                 Print the commands instead of running them (token masked).
EOF
        ;;
      repo)
        cat <<'EOF'
  --repo-dir PATH           Repo root: WorkingDirectory and runtime dirs.
                            Default: the repo holding this script.
  --bin-dir PATH            Directory of the built binaries.
                            Default: <repo-dir>/target/release.
EOF
        ;;
      config)
        cat <<'EOF'
  --node NAME               Node defaults (only mini): node id mini-main, host mini, role primary.
  --node-id ID              BAA_NODE_ID.
  --host HOST               Conductor host (BAA_CONDUCTOR_HOST, --host argument).
  --role primary|standby    Conductor role (BAA_CONDUCTOR_ROLE, --role argument).
  --control-api-base URL    BAA_CONTROL_API_BASE. Default https://conductor.makefile.so.
  --local-api-allowed-hosts CSV
                            BAA_CONDUCTOR_LOCAL_API_ALLOWED_HOSTS. Default 100.71.210.78.
  --codexd-event-stream-path PATH
                            BAA_CODEXD_EVENT_STREAM_PATH. Default /v1/codexd/events.
  --codexd-server-command CMD
                            BAA_CODEXD_SERVER_COMMAND (app-server mode stays). Default codex.
  --codexd-server-cwd PATH  BAA_CODEXD_SERVER_CWD. Default: the repo dir.
  --username NAME           UserName for --scope daemon. Default: the current user.
  --path PATH               PATH given to the daemons.
                            Default: ~/.local/bin:/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
EOF
        ;;
      bases)
        cat <<'EOF'
  --local-api-base URL      Conductor local API (BAA_CONDUCTOR_LOCAL_API).
  --codexd-local-api-base URL
                            codexd base (BAA_CODEXD_LOCAL_API_BASE; alias --codexd-api-base).
  --status-api-host HOST    BAA_STATUS_API_HOST.
  --status-api-port PORT    BAA_STATUS_API_PORT. Default 4318.
EOF
        ;;
      probe)
        cat <<'EOF'
  --status-api-base URL     status-api base. Default http://<status-api-host>:<port>.
EOF
        ;;
      token)
        cat <<'EOF'
  --shared-token-file FILE  File whose first line is the shared token. Without it the token
                            comes from $BAA_SHARED_TOKEN, ~/.config/baa-conductor/shared-token.txt,
                            then BAA_SHARED_TOKEN in ~/.config/baa-conductor/runtime-secrets.env,
                            then the legacy ~/.config/baa-conductor/control-api-worker.secrets.env.
  --shared-token TOKEN      The token itself (visible in `ps`; prefer the file).
EOF
        ;;
      health)
        cat <<'EOF'
  --health-timeout SEC      How long to wait for each /healthz, before and after the retry.
                            Default 30 (env BAA_RUNTIME_HEALTH_TIMEOUT_SEC).
  --health-interval SEC     Pause between probes. Default 1 (env BAA_RUNTIME_HEALTH_INTERVAL_SEC).
  --unload-timeout SEC      How long to wait for a booted-out job to go away. Default 40.
  --skip-kickstart          No kickstart after bootstrap and no retry kickstart -k.
EOF
        ;;
    esac
  done
  cat <<'EOF'
  --help                    Show this help text.
EOF
}

parse_args_with() {
  local handler="$1"
  shift
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h | --help)
        usage
        exit 0
        ;;
    esac
    if "$handler" "$@"; then
      shift "$BAA_SHIFT"
    elif parse_runtime_option "$@"; then
      shift "$BAA_SHIFT"
    else
      usage_error "unknown option: $1"
    fi
  done
}

# Scripts without options of their own pass this as the handler.
no_extra_options() {
  return 1
}

# Derived values once options are parsed.
finalize_config() {
  resolve_node_defaults
  repo_dir="$(normalize_url "$repo_dir")"
  [[ -n "$bin_dir" ]] || bin_dir="${repo_dir}/target/release"
  [[ -n "$codexd_server_cwd" ]] || codexd_server_cwd="$repo_dir"
  [[ -n "$username" ]] || username="$(current_username)"
  [[ -n "$launchd_path" ]] || launchd_path="${home_dir}/.local/bin:/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
  [[ -n "$local_api_base" ]] || local_api_base="${BAA_CONDUCTOR_LOCAL_API:-$BAA_RUNTIME_MINI_LOCAL_API}"
  [[ -n "$codexd_local_api_base" ]] || codexd_local_api_base="${BAA_CODEXD_LOCAL_API_BASE:-$BAA_RUNTIME_DEFAULT_CODEXD_LOCAL_API}"
  [[ -n "$status_api_host" ]] || status_api_host="${BAA_STATUS_API_HOST:-$BAA_RUNTIME_MINI_STATUS_API_HOST}"
  [[ -n "$status_api_port" ]] || status_api_port="${BAA_STATUS_API_PORT:-$BAA_RUNTIME_DEFAULT_STATUS_API_PORT}"
  local_api_base="$(normalize_url "$local_api_base")"
  codexd_local_api_base="$(normalize_url "$codexd_local_api_base")"
  control_api_base="$(normalize_url "$control_api_base")"
}

# Probe bases for status/check-node: flag, else the installed plist, else the default.
finalize_probe_bases() {
  local plist host port
  if [[ -z "$local_api_base" ]]; then
    plist="$(service_install_path "$install_dir" conductor)"
    local_api_base="$(plist_get_or_default "$plist" ":EnvironmentVariables:BAA_CONDUCTOR_LOCAL_API" "$BAA_RUNTIME_MINI_LOCAL_API")"
  fi
  if [[ -z "$codexd_local_api_base" ]]; then
    plist="$(service_install_path "$install_dir" codexd)"
    codexd_local_api_base="$(plist_get_or_default "$plist" ":EnvironmentVariables:BAA_CODEXD_LOCAL_API_BASE" "$BAA_RUNTIME_DEFAULT_CODEXD_LOCAL_API")"
  fi
  if [[ -z "$status_api_base" ]]; then
    plist="$(service_install_path "$install_dir" status-api)"
    host="${status_api_host:-$(plist_get_or_default "$plist" ":EnvironmentVariables:BAA_STATUS_API_HOST" "$BAA_RUNTIME_MINI_STATUS_API_HOST")}"
    port="${status_api_port:-$(plist_get_or_default "$plist" ":EnvironmentVariables:BAA_STATUS_API_PORT" "$BAA_RUNTIME_DEFAULT_STATUS_API_PORT")}"
    status_api_base="http://$(probe_host "$host"):${port}"
  fi
  local_api_base="$(normalize_url "$local_api_base")"
  codexd_local_api_base="$(normalize_url "$codexd_local_api_base")"
  status_api_base="$(normalize_url "$status_api_base")"
}

runtime_dirs() {
  printf '%s\n' \
    "${repo_dir}/state" \
    "${repo_dir}/state/codexd" \
    "${repo_dir}/runs" \
    "${repo_dir}/worktrees" \
    "${repo_dir}/logs" \
    "${repo_dir}/logs/codexd" \
    "${repo_dir}/logs/launchd" \
    "${repo_dir}/tmp"
}
