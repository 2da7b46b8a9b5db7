# shellcheck shell=bash disable=SC2034,SC2154 # globals live across the sourced files
# The install step shared by install-launchd.sh and upgrade.sh: say what will be written,
# refuse what is wrong before writing anything, then write the token file, the binaries
# (bin/<version>/ + the current link), the pinned codex and the plists.

# What the install will use, printed before anything is written.
print_install_plan() {
  runtime_log "$(describe_listen_host)"
  runtime_log "conductor: ${local_api_base} (allowed hosts: ${local_api_allowed_hosts:-loopback only}); status-api: http://$(url_authority "$status_api_host" "$status_api_port")"
  runtime_log "runtime root: ${runtime_root}"
  runtime_log "logs: ${logs_dir}"
  runtime_log "launchd labels: $(service_label conductor), $(service_label codexd), $(service_label status-api) in ${install_dir}"
  if [[ "$codex_pinned" == "1" ]]; then
    runtime_log "codex: the pinned @openai/codex $(pinned_codex_version) under $(codex_install_dir)"
  else
    runtime_log "codex: ${codexd_server_command} (--codex-command)"
  fi
  runtime_log "control API base: ${control_api_base:-not set (written only when --control-api-base is given)}"
  if has_group links; then
    runtime_log "$(describe_links)"
  fi
}

# Set while the build has yet to run (upgrade.sh, install-mini.sh): the build dir is
# checked after it. bootstrap_pending: the runtime dirs are made after the checks
# (install-mini.sh).
build_pending="0"
bootstrap_pending="0"

# The codex codexd will run: a --codex-command must be an executable; the pin must be
# installed already or installable (npm on PATH).
validate_codex() {
  local cmd="$codexd_server_command"
  if [[ "$codex_pinned" == "1" ]]; then
    [[ -z "$cmd" ]] || return 0
    command -v npm >/dev/null 2>&1 ||
      usage_error "the pinned @openai/codex $(pinned_codex_version) is not installed under $(codex_install_dir) and npm is not on PATH to install it: install Node.js (brew install node), or pass --codex-command PATH"
    return 0
  fi
  if [[ "$cmd" == */* ]]; then
    [[ -f "$cmd" && -x "$cmd" ]] || usage_error "--codex-command ${cmd}: not an executable file"
  else
    command -v "$cmd" >/dev/null 2>&1 || usage_error "--codex-command ${cmd}: not found on PATH (give its full path)"
  fi
}

# 0: HOST:PORT can be bound (free); 1: in use; 2: the address is not on this machine (a
# Tailscale address not up yet: the daemon keeps trying it). SO_REUSEADDR as the daemons
# set it, so a closed connection's TIME_WAIT does not count as in use.
port_state() {
  python3 - "$1" "$2" <<'EOF_PY'
import errno, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    sock.bind((host, port))
except OSError as err:
    sys.exit(1 if err.errno == errno.EADDRINUSE else 2)
finally:
    sock.close()
EOF_PY
}

# "host port" lines a service will listen on: its address, and loopback too when that is
# a Tailscale one.
service_listen_addresses() {
  local host port
  case "$1" in
    conductor) host="$(url_host "$local_api_base")" port="$(url_port "$local_api_base")" ;;
    codexd) host="$(url_host "$codexd_local_api_base")" port="$(url_port "$codexd_local_api_base")" ;;
    status-api) host="$status_api_host" port="$status_api_port" ;;
  esac
  printf '%s %s\n' "$host" "$port"
  if is_tailscale_ipv4 "$host"; then
    printf '127.0.0.1 %s\n' "$port"
  fi
}

# True when the service is loaded and its installed plist names PORT: the install restarts
# it, so the port it holds is not in the way.
port_held_by_our_service() {
  local service="$1" port="$2" plist
  plist="$(service_install_path "$install_dir" "$service")"
  [[ -f "$plist" ]] && launchd_is_loaded "$service" &&
    [[ "$(url_port "$(service_base_url "$service" "$plist")")" == "$port" ]]
}

# Every port the services will listen on is free, or held by that same service already.
validate_ports() {
  local service host port rc
  for service in "${services[@]}"; do
    while read -r host port; do
      rc=0
      port_state "$host" "$port" || rc=$?
      case "$rc" in
        0) ;;
        1)
          port_held_by_our_service "$service" "$port" ||
            usage_error "${service}: port ${port} on ${host} is in use by another program (\`lsof -nP -iTCP:${port} -sTCP:LISTEN\` names it): stop it, or choose another port ($(port_option "$service"))"
          ;;
        *)
          if is_tailscale_ipv4 "$host"; then
            runtime_log "${service}: ${host} is not up on this machine yet; the daemon listens on 127.0.0.1:${port} and keeps trying ${host}:${port}"
          else
            usage_error "${service}: cannot listen on ${host}:${port} (not an address of this machine)"
          fi
          ;;
      esac
    done < <(service_listen_addresses "$service")
  done
}

port_option() {
  case "$1" in
    conductor) printf -- '--local-api-base URL\n' ;;
    codexd) printf -- '--codexd-local-api-base URL\n' ;;
    status-api) printf -- '--status-api-port PORT\n' ;;
  esac
}

# Every check that can refuse the install; nothing is written before they all pass.
validate_install() {
  local service needs_token="0" dir host
  case "$(url_host "$codexd_local_api_base")" in
    127.0.0.1 | localhost | ::1) ;;
    *) usage_error "--codexd-local-api-base must be a loopback URL, got: $codexd_local_api_base" ;;
  esac
  # The daemons refuse any other listen address; refused here, before anything is written.
  for host in "$(url_host "$local_api_base")" "$status_api_host"; do
    is_loopback_host "$host" || is_tailscale_ipv4 "$host" ||
      usage_error "the conductor and status-api listen on loopback or a Tailscale 100.64.0.0/10 address only, got: $host (--local-api-base, --status-api-host)"
  done
  for service in "${services[@]}"; do
    if service_requires_shared_token "$service"; then
      needs_token="1"
    fi
    [[ -f "$(service_template_path "$service")" ]] || die "template not found: $(service_template_path "$service")"
  done
  if [[ "$needs_token" == "1" ]]; then
    require_shared_token
    refuse_shared_token_file
  fi
  if [[ " ${services[*]} " == *" codexd "* ]]; then
    validate_codex
  fi
  if has_group links; then
    validate_links
  fi
  if [[ "$build_pending" != "1" ]] && ! build_is_complete "$bin_dir"; then
    if [[ -n "$(linked_version current)" ]]; then
      runtime_error "warning: no complete build in ${bin_dir}; keeping bin/current ($(linked_version current))"
    elif [[ "$dry_run" == "1" ]]; then
      runtime_error "warning: no complete build in ${bin_dir} (build before installing)"
    else
      die "no baa-conductor, baa-codexd and baa-status-api in ${bin_dir}: build first (cargo build --release) or pass --bin-dir"
    fi
  fi
  [[ "$bootstrap_pending" != "1" ]] || return 0
  while IFS= read -r dir; do
    if [[ ! -d "$dir" ]]; then
      if [[ "$dry_run" == "1" ]]; then
        runtime_error "warning: runtime dir missing: $dir (bootstrap.sh creates it)"
      else
        die "runtime dir missing: $dir (run scripts/runtime/bootstrap.sh with the same --root/--logs-dir)"
      fi
    fi
  done < <(runtime_dirs)
}

# Renders one service's plist into the install dir.
render_plist() {
  local service="$1" target args
  target="$(service_install_path "$install_dir" "$service")"
  args=(
    render --template "$(service_template_path "$service")" --out "$target"
    --set "LABEL_PREFIX=${label_prefix}"
    --set "REPO_DIR=${repo_dir}"
    --set "ROOT=${runtime_root}"
    --set "LOGS_DIR=${logs_dir}"
    --set "BIN_DIR=$(current_bin_dir)"
    --set "HOME=${home_dir}"
    --set "PATH=${launchd_path}"
    --set "NODE_ID=${node_id}"
    --set "CONDUCTOR_HOST=${conductor_host}"
    --set "CONDUCTOR_ROLE=${conductor_role}"
    --set "CONTROL_API_BASE=${control_api_base}" --optional CONTROL_API_BASE
    --set "LOCAL_API_BASE=${local_api_base}"
    --set "LOCAL_API_ALLOWED_HOSTS=${local_api_allowed_hosts}" --optional LOCAL_API_ALLOWED_HOSTS
    --set "CODEXD_LOCAL_API_BASE=${codexd_local_api_base}"
    --set "CODEXD_EVENT_STREAM_PATH=${codexd_event_stream_path}"
    --set "CODEXD_SERVER_COMMAND=${codexd_server_command}"
    --set "CODEXD_SERVER_CWD=${codexd_server_cwd}"
    --set "STATUS_API_HOST=${status_api_host}"
    --set "STATUS_API_PORT=${status_api_port}"
    --set "SHARED_TOKEN_FILE=$(conductor_token_file)"
    --mode 0644
  )
  if [[ "$scope" == "daemon" ]]; then
    args+=(--username "$username")
  fi
  if [[ "$dry_run" == "1" ]]; then
    args+=(--dry-run)
  fi
  python3 "$BAA_RUNTIME_PLIST_PY" "${args[@]}"
  if [[ "$dry_run" != "1" ]]; then
    plist_lint "$target" || die "rendered plist does not lint: $target"
    if service_requires_shared_token "$service"; then
      runtime_log "installed ${service}: ${target} (mode 644, token file $(conductor_token_file) from ${shared_token_source})"
    else
      runtime_log "installed ${service}: ${target} (mode 644, no token)"
    fi
  fi
}

# The whole install, after validate_install. Leaves installed_version set (empty when
# the current binaries were kept).
run_install() {
  local service
  if [[ -n "$shared_token" ]]; then
    install_token_file
  fi
  installed_version=""
  if build_is_complete "$bin_dir"; then
    install_binaries "$bin_dir"
    switch_current "$installed_version"
  fi
  if [[ "$codex_pinned" == "1" ]]; then
    install_pinned_codex
  fi
  run_cmd mkdir -p "$install_dir"
  for service in "${services[@]}"; do
    render_plist "$service"
  done
  save_plists_with_version "$(linked_version current)" "${services[@]}"
  if has_group links; then
    install_links
  fi
  if [[ " ${services[*]} " == *" conductor "* ]]; then
    write_node_env
  fi
  write_install_record
}
