#!/usr/bin/env bash
# Static checks of the installed launchd plists against the expected configuration.
set -euo pipefail
SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "${SCRIPT_DIR}/common.sh"

usage() {
  cat <<USAGE
Usage: $(basename -- "$0") [options]

Check the installed plists: they parse as property lists, and Label, ProgramArguments
(<root>/bin/current/baa-<service>), WorkingDirectory, RunAtLoad, KeepAlive, log paths,
resource limits, ExitTimeOut and every EnvironmentVariables value match what
install-launchd.sh would write with the same options (keys it leaves out must be absent).
No copy may carry BAA_SHARED_TOKEN; the conductor's BAA_SHARED_TOKEN_FILE must name the
expected token file (--shared-token-file, else ~/.config/baa-conductor/shared-token.txt),
mode 600, holding a real token (not replace-me). Every failed check is listed; exit 1 if
any failed.

Options:
USAGE
  options_help services target layout repo config bases token
  cat <<'USAGE'
  --check-loaded            Also require launchctl print <domain>/<label> to succeed.
  --skip-bin-check          Do not require the binaries to exist (alias --skip-dist-check).
USAGE
}

check_loaded="0"
skip_bin_check="0"
check_launchd_option() {
  case "$1" in
    --check-loaded) check_loaded="1" ;;
    --skip-bin-check | --skip-dist-check) skip_bin_check="1" ;;
    *) return 1 ;;
  esac
  BAA_SHIFT=1
}

BAA_OPTION_GROUPS="services target layout repo config bases token"
parse_args_with check_launchd_option "$@"
finalize_services
finalize_target
finalize_config

expected_token=""
if [[ -n "$opt_shared_token" || -n "$shared_token_file" || -n "${BAA_SHARED_TOKEN:-}" ]]; then
  resolve_shared_token
  expected_token="$shared_token"
fi

passed=0
failed=0
flat=""
ensure_runtime_tmp

pass() {
  passed=$((passed + 1))
}

fail() {
  failed=$((failed + 1))
  runtime_error "FAIL $*"
}

# Value at a key path of the current plist, from its flattened form.
pv() {
  awk -F '\t' -v k="$1" '$1 == k { sub(/^[^\t]*\t/, ""); print; found = 1; exit } END { exit !found }' "$flat"
}

expect() {
  local service="$1" key="$2" want="$3" got
  if got="$(pv "$key")"; then
    if [[ "$got" == "$want" ]]; then
      pass
    else
      fail "${service}: ${key} is '${got}', expected '${want}'"
    fi
  else
    fail "${service}: ${key} is missing, expected '${want}'"
  fi
}

expect_env() {
  expect "$1" ":EnvironmentVariables:$2" "$3"
}

# The value install-launchd.sh writes, or no key at all when it writes none.
expect_env_or_absent() {
  if [[ -n "$3" ]]; then
    expect_env "$1" "$2" "$3"
  else
    expect_absent "$1" ":EnvironmentVariables:$2"
  fi
}

expect_absent() {
  if pv "$2" >/dev/null; then
    fail "$1: $2 must not be set"
  else
    pass
  fi
}

expect_at_least() {
  local service="$1" key="$2" min="$3" got
  got="$(pv "$key" || true)"
  if [[ "$got" =~ ^[0-9]+$ ]] && ((got >= min)); then
    pass
  else
    fail "${service}: ${key} is '${got}', expected an integer >= ${min}"
  fi
}

check_service() {
  local service="$1" plist label binary mode token token_path i
  label="$(service_label "$service")"
  plist="$(service_install_path "$install_dir" "$service")"
  binary="$(service_program_path "$service")"

  if [[ ! -f "$plist" ]]; then
    fail "${service}: installed plist not found: ${plist}"
    return 0
  fi
  if ! plist_lint "$plist"; then
    fail "${service}: ${plist} is not a valid property list"
    return 0
  fi
  pass
  flat="${BAA_RUNTIME_TMP}/${service}.flat"
  python3 "$BAA_RUNTIME_PLIST_PY" flatten "$plist" >"$flat"

  expect "$service" ":Label" "$label"
  expect "$service" ":WorkingDirectory" "$repo_dir"
  expect "$service" ":RunAtLoad" "true"
  expect "$service" ":KeepAlive" "true"
  expect "$service" ":StandardOutPath" "$(service_stdout_path "$service")"
  expect "$service" ":StandardErrorPath" "$(service_stderr_path "$service")"
  expect_at_least "$service" ":SoftResourceLimits:NumberOfFiles" 1024
  expect_at_least "$service" ":HardResourceLimits:NumberOfFiles" 1024
  expect_at_least "$service" ":ExitTimeOut" 10
  case "$(pv ":ProcessType" || true)" in
    Interactive | Adaptive | Standard) pass ;;
    *) fail "${service}: ProcessType must be Interactive, Adaptive or Standard" ;;
  esac
  if [[ "$scope" == "daemon" ]]; then
    expect "$service" ":UserName" "$username"
  fi

  expect "$service" ":ProgramArguments:0" "$binary"
  i=1
  for word in $(service_program_args "$service"); do
    expect "$service" ":ProgramArguments:${i}" "$word"
    i=$((i + 1))
  done
  expect_absent "$service" ":ProgramArguments:${i}"
  if [[ "$skip_bin_check" != "1" ]]; then
    if [[ -x "$binary" ]]; then pass; else fail "${service}: binary not found or not executable: ${binary} (install-launchd.sh copies the build there)"; fi
  fi

  expect_env "$service" HOME "$home_dir"
  expect_env "$service" BAA_NODE_ID "$node_id"

  case "$service" in
    conductor)
      expect_env "$service" BAA_CONDUCTOR_HOST "$conductor_host"
      expect_env "$service" BAA_CONDUCTOR_ROLE "$conductor_role"
      expect_env_or_absent "$service" BAA_CONTROL_API_BASE "$control_api_base"
      expect_env "$service" BAA_CONDUCTOR_LOCAL_API "$local_api_base"
      expect_env_or_absent "$service" BAA_CONDUCTOR_LOCAL_API_ALLOWED_HOSTS "$local_api_allowed_hosts"
      expect_env "$service" BAA_CODEXD_LOCAL_API_BASE "$codexd_local_api_base"
      expect_env "$service" BAA_RUNTIME_ROOT "$runtime_root"
      expect_env "$service" BAA_LOGS_DIR "$logs_dir"
      expect_env "$service" BAA_CONDUCTOR_REPO_ROOT "$repo_dir"
      if pv ":EnvironmentVariables:BAA_SHARED_TOKEN" >/dev/null; then
        fail "${service}: BAA_SHARED_TOKEN must not be set (every exec'd command could read it); use BAA_SHARED_TOKEN_FILE (reinstall with install-launchd.sh)"
      else
        pass
      fi
      token_path="$(conductor_token_file)"
      expect_env "$service" BAA_SHARED_TOKEN_FILE "$token_path"
      if [[ ! -f "$token_path" ]]; then
        fail "${service}: token file ${token_path} does not exist"
      else
        mode="$(file_mode "$token_path")"
        if file_is_private "$token_path"; then
          pass
        else
          fail "${service}: token file ${token_path} has mode ${mode}; expected rw------- (chmod 600)"
        fi
        token="$(read_token_file "$token_path")"
        if [[ -z "$token" || "$token" == "$BAA_RUNTIME_PLACEHOLDER_TOKEN" ]]; then
          fail "${service}: the token in ${token_path} is empty or still ${BAA_RUNTIME_PLACEHOLDER_TOKEN}"
        elif [[ -n "$expected_token" && "$token" != "$expected_token" ]]; then
          fail "${service}: the token in ${token_path} differs from the token in ${shared_token_source}"
        else
          pass
        fi
      fi
      ;;
    codexd)
      expect_absent "$service" ":EnvironmentVariables:BAA_SHARED_TOKEN"
      expect_env "$service" BAA_RUNTIME_ROOT "$runtime_root"
      expect_env "$service" BAA_LOGS_DIR "$logs_dir"
      expect_env "$service" BAA_CODEXD_REPO_ROOT "$repo_dir"
      expect_env "$service" BAA_CODEXD_MODE "$BAA_RUNTIME_DEFAULT_CODEXD_SERVER_MODE"
      expect_env "$service" BAA_CODEXD_LOCAL_API_BASE "$codexd_local_api_base"
      expect_env "$service" BAA_CODEXD_EVENT_STREAM_PATH "$codexd_event_stream_path"
      expect_env "$service" BAA_CODEXD_SERVER_STRATEGY "$BAA_RUNTIME_DEFAULT_CODEXD_SERVER_STRATEGY"
      if [[ -z "$codexd_server_command" ]]; then
        fail "${service}: the pinned codex is not installed under $(codex_install_dir) (install-launchd.sh installs it; --codex-command names another)"
      else
        expect_env "$service" BAA_CODEXD_SERVER_COMMAND "$codexd_server_command"
      fi
      expect_env "$service" BAA_CODEXD_SERVER_ARGS "$BAA_RUNTIME_DEFAULT_CODEXD_SERVER_ARGS"
      expect_env "$service" BAA_CODEXD_SERVER_CWD "$codexd_server_cwd"
      expect_env "$service" BAA_CODEXD_SERVER_ENDPOINT "$BAA_RUNTIME_DEFAULT_CODEXD_SERVER_ENDPOINT"
      ;;
    status-api)
      expect_absent "$service" ":EnvironmentVariables:BAA_SHARED_TOKEN"
      expect_env "$service" BAA_STATUS_API_HOST "$status_api_host"
      expect_env "$service" BAA_STATUS_API_PORT "$status_api_port"
      expect_env "$service" BAA_CONDUCTOR_LOCAL_API "$local_api_base"
      expect_env "$service" BAA_CODEXD_LOCAL_API_BASE "$codexd_local_api_base"
      expect_env "$service" BAA_RUNTIME_ROOT "$runtime_root"
      expect_env "$service" BAA_LOGS_DIR "$logs_dir"
      expect_absent "$service" ":EnvironmentVariables:BAA_CONTROL_API_BASE"
      ;;
  esac

  if [[ "$check_loaded" == "1" ]]; then
    if launchd_is_loaded "$service"; then
      pass
    else
      fail "${service}: launchctl print ${domain_target}/${label} failed (not loaded)"
    fi
  fi
}

for service in "${services[@]}"; do
  check_service "$service"
done

if ((failed > 0)); then
  runtime_error "check-launchd: ${failed} failed, ${passed} passed"
  exit 1
fi
runtime_log "check-launchd: all ${passed} checks passed for: ${services[*]}"
