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
}

# Set by upgrade.sh while the build has yet to run: the build dir is checked after it.
build_pending="0"

# Every check that can refuse the install; nothing is written before they all pass.
validate_install() {
  local service needs_token="0" dir
  case "$(url_host "$codexd_local_api_base")" in
    127.0.0.1 | localhost | ::1) ;;
    *) usage_error "--codexd-local-api-base must be a loopback URL, got: $codexd_local_api_base" ;;
  esac
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
  if [[ "$build_pending" != "1" ]] && ! build_is_complete "$bin_dir"; then
    if [[ -n "$(linked_version current)" ]]; then
      runtime_error "warning: no complete build in ${bin_dir}; keeping bin/current ($(linked_version current))"
    elif [[ "$dry_run" == "1" ]]; then
      runtime_error "warning: no complete build in ${bin_dir} (build before installing)"
    else
      die "no baa-conductor, baa-codexd and baa-status-api in ${bin_dir}: build first (cargo build --release) or pass --bin-dir"
    fi
  fi
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
}
