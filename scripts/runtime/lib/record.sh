# shellcheck shell=bash disable=SC2034,SC2154 # globals live across the sourced files
# What an install leaves for later: <root>/install-options.env, the install's options, which
# upgrade.sh and uninstall-launchd.sh use unless told otherwise; and node.env
# (~/.config/baa-conductor/node.env, or $BAA_NODE_ENV_FILE), which tells a plain shell's
# `baa-conductor` where the node's conductor and token are. Both: KEY=VALUE lines, `#`
# comments, no quotes and no expansion (read, never sourced), mode 600, written atomically.

# KEY FLAG VARIABLE GROUP, one per recorded option.
install_option_table() {
  cat <<'EOF_TABLE'
SCOPE --scope scope target
INSTALL_DIR --install-dir install_dir target
DOMAIN --domain domain_target target
LABEL_PREFIX --label-prefix label_prefix target
ROOT --root runtime_root layout
LOGS_DIR --logs-dir logs_dir layout
REPO_DIR --repo-dir repo_dir repo
BIN_DIR --bin-dir bin_dir repo
LINK_DIR --link-dir link_dir links
NODE --node node config
NODE_ID --node-id node_id config
CONDUCTOR_HOST --conductor-host conductor_host config
ROLE --role conductor_role config
LISTEN_HOST --listen-host listen_host config
CONTROL_API_BASE --control-api-base control_api_base config
LOCAL_API_ALLOWED_HOSTS --local-api-allowed-hosts local_api_allowed_hosts config
CODEXD_EVENT_STREAM_PATH --codexd-event-stream-path codexd_event_stream_path config
CODEX_COMMAND --codex-command codexd_server_command config
CODEXD_SERVER_CWD --codexd-server-cwd codexd_server_cwd config
USERNAME --username username config
LAUNCHD_PATH --path launchd_path config
LOCAL_API_BASE --local-api-base local_api_base bases
CODEXD_LOCAL_API_BASE --codexd-local-api-base codexd_local_api_base bases
STATUS_API_HOST --status-api-host status_api_host bases
STATUS_API_PORT --status-api-port status_api_port bases
SHARED_TOKEN_FILE --shared-token-file shared_token_file token
EOF_TABLE
}

install_record_path() {
  printf '%s/install-options.env\n' "$runtime_root"
}

node_env_path() {
  printf '%s\n' "${BAA_NODE_ENV_FILE:-$(token_config_dir)/node.env}"
}

# Whether KEY's resolved value is worth recording although it was not given: the layout
# and target (stable, and needed to find the install again), the services, the link dir,
# and a listen address that came from --listen-host or Tailscale (a loopback fallback is
# looked up again next time). Everything else is recorded only when given, so a value
# derived from another (the conductor's URL from the listen address) follows it.
record_resolved_value() {
  case "$1" in
    SCOPE | INSTALL_DIR | DOMAIN | LABEL_PREFIX | ROOT | LOGS_DIR | REPO_DIR | LINK_DIR) return 0 ;;
    LISTEN_HOST) [[ "$listen_host_source" == "--listen-host" || "$listen_host_source" == "tailscale ip -4" ]] ;;
    *) return 1 ;;
  esac
}

# Writes FILE atomically, mode 600, from stdin (under umask 077 in FILE's dir).
write_private_file() {
  local file="$1" tmp
  tmp="${file}.tmp.$$"
  mkdir -p "$(dirname -- "$file")"
  (
    umask 077
    cat >"$tmp"
  )
  chmod 600 "$tmp"
  mv -f "$tmp" "$file"
}

# A value that fits one KEY=VALUE line.
record_value_ok() {
  [[ "$1" != *$'\n'* && "$1" != *$'\r'* ]]
}

# The record of this install: SERVICES, then KEY=VALUE for each option recorded.
install_record_lines() {
  local key flag var group value
  printf 'SERVICES=%s\n' "$(printf '%s,' "${services[@]}" | sed 's/,$//')"
  while read -r key flag var group; do
    if option_given "$flag" || record_resolved_value "$key"; then
      value="${!var}"
      record_value_ok "$value" || continue
      printf '%s=%s\n' "$key" "$value"
    fi
  done < <(install_option_table)
  if option_given --no-links; then
    printf 'NO_LINKS=1\n'
  fi
}

# A reinstall of some services only (install-launchd.sh --service codexd) keeps what the
# record said about the rest: its services join the record's, and each recorded key this
# install does not set stays. A reinstall of all three replaces the record, so an option
# dropped on purpose (--codex-command, to go back to the pin) is dropped from it too.
merged_install_record_lines() {
  local file="$1" lines line key old_services service merged
  lines="$(install_record_lines)"
  if all_services_selected || [[ ! -r "$file" ]]; then
    printf '%s\n' "$lines"
    return 0
  fi
  old_services="$(read_env_file_value "$file" SERVICES || true)"
  merged=""
  for service in $BAA_RUNTIME_SERVICES; do
    if [[ ",${old_services}," == *",${service},"* || " ${services[*]} " == *" ${service} "* ]]; then
      merged="${merged}${merged:+,}${service}"
    fi
  done
  printf 'SERVICES=%s\n' "$merged"
  printf '%s\n' "$lines" | sed '/^SERVICES=/d'
  while IFS= read -r line || [[ -n "$line" ]]; do
    [[ "$line" == *=* && "$line" != \#* ]] || continue
    key="${line%%=*}"
    [[ "$key" != "SERVICES" ]] || continue
    [[ $'\n'"${lines}" == *$'\n'"${key}="* ]] || printf '%s\n' "$line"
  done <"$file"
}

# <root>/install-options.env from the options of this install.
write_install_record() {
  local file lines
  file="$(install_record_path)"
  if [[ "$dry_run" == "1" ]]; then
    printf '# would write %s (mode 600): this install'"'"'s options, for upgrade.sh and uninstall-launchd.sh\n' "$file"
    return 0
  fi
  lines="$(merged_install_record_lines "$file")"
  {
    printf '# The options of the last install (%s, %s); upgrade.sh and\n' "$(invoked_script)" "$(date -u '+%Y-%m-%dT%H:%M:%SZ')"
    printf '# uninstall-launchd.sh use them unless given others. KEY=VALUE, never sourced.\n'
    printf '%s\n' "$lines"
  } | write_private_file "$file"
  runtime_log "wrote ${file} (mode 600): this install's options, for upgrade.sh and uninstall-launchd.sh"
}

# node.env: the loopback URLs a client on the node uses, the token file, the root.
write_node_env() {
  local file
  file="$(node_env_path)"
  if [[ "$dry_run" == "1" ]]; then
    printf '# would write %s (mode 600): BAA_CONDUCTOR_URL=%s for the baa-conductor CLI\n' "$file" "$(node_conductor_url)"
    return 0
  fi
  {
    printf '# Written by %s: where this node'"'"'s daemons are, for the baa-conductor CLI.\n' "$(invoked_script)"
    printf '# KEY=VALUE lines, no quotes, no expansion; read, never sourced.\n'
    printf 'BAA_CONDUCTOR_URL=%s\n' "$(node_conductor_url)"
    printf 'BAA_STATUS_API_URL=%s\n' "$(loopback_base "http://$(probe_host "$status_api_host"):${status_api_port}")"
    printf 'BAA_SHARED_TOKEN_FILE=%s\n' "$(conductor_token_file)"
    printf 'BAA_RUNTIME_ROOT=%s\n' "$runtime_root"
    printf 'BAA_BIN_DIR=%s\n' "$(current_bin_dir)"
  } | write_private_file "$file"
  runtime_log "wrote ${file} (mode 600): BAA_CONDUCTOR_URL=$(node_conductor_url) for the baa-conductor CLI"
}

# The conductor as a client on the node reaches it: loopback, same port.
node_conductor_url() {
  loopback_base "$local_api_base"
}

# The runtime root of the install to act on: --root (or --repo-layout), else node.env's
# BAA_RUNTIME_ROOT, else the default root.
locate_install_root() {
  local env_file root=""
  if option_given --root; then
    absolute_path "$runtime_root"
  elif [[ "$repo_layout" == "1" ]]; then
    absolute_path "$repo_dir"
  else
    env_file="$(node_env_path)"
    if [[ -r "$env_file" ]]; then
      root="$(read_env_file_value "$env_file" BAA_RUNTIME_ROOT || true)"
    fi
    printf '%s\n' "${root:-${home_dir}/Library/Application Support/baa-conductor}"
  fi
}

# Applies the recorded options of the install under the root (see locate_install_root)
# that this script takes and that were not given now, and says which. Sets
# recorded_services (the install's services, in its order).
recorded_services=""
apply_install_record() {
  local root file line key value flag var group service applied=""
  root="$(locate_install_root)"
  file="${root}/install-options.env"
  if [[ ! -r "$file" ]]; then
    runtime_log "no recorded install options in ${file} (an install from before they were recorded): using the options given now and the defaults"
    return 0
  fi
  while IFS= read -r line || [[ -n "$line" ]]; do
    [[ -n "$line" && "$line" != \#* && "$line" == *=* ]] || continue
    key="${line%%=*}"
    value="${line#*=}"
    [[ "$key" =~ ^[A-Z_]+$ ]] || continue
    case "$key" in
      SERVICES)
        recorded_services=""
        for service in ${value//,/ }; do
          case "$service" in
            conductor | codexd | status-api) recorded_services="${recorded_services}${recorded_services:+ }${service}" ;;
            *) ;;
          esac
        done
        continue
        ;;
      NO_LINKS)
        if has_group links && ! option_given --link-dir && ! option_given --no-links; then
          no_links="1"
          applied="${applied} --no-links"
        fi
        continue
        ;;
    esac
    flag="" var="" group=""
    read -r flag var group < <(install_option_table | sed -n "s/^${key} //p") || true
    [[ -n "$flag" ]] || continue
    has_group "$group" || continue
    option_given "$flag" && continue
    # --repo-layout chooses the root and logs dir itself.
    if [[ "$repo_layout" == "1" && ("$key" == "ROOT" || "$key" == "LOGS_DIR") ]]; then
      continue
    fi
    [[ -n "$value" ]] || continue
    printf -v "$var" '%s' "$value"
    given_options="${given_options}${flag} "
    [[ "$key" != "LOCAL_API_ALLOWED_HOSTS" ]] || local_api_allowed_hosts_given="1"
    applied="${applied} ${flag} $(printf '%q' "$value")"
  done <"$file"
  runtime_log "using the install's options from ${file}:${applied:- (none besides the defaults)}"
}
