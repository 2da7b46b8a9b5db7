# shellcheck shell=bash disable=SC2034,SC2154 # globals live across the sourced files
# launchctl: is a job loaded, bootout (and wait until it is gone), bootstrap, kickstart,
# the health wait after a (re)load with its one `kickstart -k` retry, and the diagnostics
# printed when a service stays unhealthy (launchctl print masked, log tails, a manual hint).

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
# then diagnostics. Returns non-zero when the service stays unhealthy. Each wait is
# announced ("waiting up to …"), so a caller (and a test) can count them.
recover_service_after_reload() {
  local service="$1" label plist url
  label="$(service_label "$service")"
  plist="$(service_install_path "$install_dir" "$service")"
  if service_requires_shared_token "$service"; then
    load_installed_token_for_masking "$plist"
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
  runtime_log "waiting up to ${health_timeout}s again for ${service} at ${url}"
  if wait_for_health "$service" "$url"; then
    runtime_log "${service} recovered after retry kickstart"
    return 0
  fi
  print_service_diagnostics "$service" "$plist" "$url"
  runtime_error "${service} failed to recover after reload"
  return 1
}

# bootout (waiting until gone), bootstrap, kickstart, then the health wait with its one
# retry: one service, start to finish. Returns non-zero when it is not healthy at the end.
restart_service() {
  local service="$1"
  if ! launchd_bootout "$service" || ! launchd_bootstrap "$service"; then
    runtime_error "${service}: launchctl bootstrap failed"
    return 1
  fi
  if [[ "$skip_kickstart" != "1" ]]; then
    launchd_kickstart "$service" || runtime_error "${service}: kickstart returned non-zero"
  fi
  [[ "$dry_run" == "1" ]] && return 0
  recover_service_after_reload "$service"
}

# In unix mode codexd's stop leaves its app-server running for the next codexd (turns and
# approvals survive); --with-child stops it too, with the binary and dirs of the installed
# plist. stop-child refuses while a codexd still holds the state dir. Used by
# stop-launchd.sh --with-child and uninstall-launchd.sh.
stop_codexd_child() {
  local plist bin
  plist="$(service_install_path "$install_dir" codexd)"
  bin="$(plist_get_or_default "$plist" ":ProgramArguments:0" "")"
  if [[ -z "$bin" ]]; then
    runtime_error "codexd: no installed plist at ${plist}; cannot find baa-codexd for --with-child"
    return 1
  fi
  # Every variable codexd finds its dirs by; a plist from before BAA_RUNTIME_ROOT names
  # them one by one, and an empty value counts as unset.
  local name env_args=()
  for name in BAA_RUNTIME_ROOT BAA_STATE_DIR BAA_LOGS_DIR BAA_CODEXD_STATE_DIR BAA_CODEXD_LOGS_DIR BAA_CODEXD_REPO_ROOT; do
    env_args+=("${name}=$(plist_get_or_default "$plist" ":EnvironmentVariables:${name}" "")")
  done
  run_cmd env "${env_args[@]}" "$bin" stop-child
}
