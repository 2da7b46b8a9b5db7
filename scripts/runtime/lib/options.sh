# shellcheck shell=bash disable=SC2034,SC2154 # globals live across the sourced files
# Command-line options shared by every script, their help text, and the values derived
# from them once parsed (finalize_*). Each script accepts some groups of options, named
# in BAA_OPTION_GROUPS; an option of another group is a usage error, not silently ignored.

# Defaults for every option any script accepts.
services=()
scope="agent"
home_dir="${HOME:-}"
install_dir=""
domain_target=""
label_prefix="$BAA_RUNTIME_DEFAULT_LABEL_PREFIX"
dry_run="0"
repo_dir="$BAA_RUNTIME_REPO_DIR_DEFAULT"
bin_dir=""
runtime_root=""
logs_dir=""
repo_layout="0"
node="$BAA_RUNTIME_DEFAULT_NODE"
node_id=""
conductor_host=""
conductor_role=""
# Written into the plists only when given: the original system's domain is not this node's.
control_api_base=""
local_api_base=""
local_api_allowed_hosts="${BAA_CONDUCTOR_LOCAL_API_ALLOWED_HOSTS:-}"
local_api_allowed_hosts_given="0"
[[ -z "${BAA_CONDUCTOR_LOCAL_API_ALLOWED_HOSTS:-}" ]] || local_api_allowed_hosts_given="1"
codexd_local_api_base=""
codexd_event_stream_path="${BAA_CODEXD_EVENT_STREAM_PATH:-$BAA_RUNTIME_DEFAULT_CODEXD_EVENT_STREAM_PATH}"
# Empty: the pinned codex under the runtime root (lib/layout.sh).
codexd_server_command=""
codex_pinned="0"
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
# Where install puts the baa-* links (lib/links.sh); BAA_RUNTIME_LINK_DIR is the default.
link_dir="${BAA_RUNTIME_LINK_DIR:-}"
no_links="0"
# Every option given on this command line (canonical names), so a recorded install option
# never overrides one given now (lib/record.sh).
given_options=" "
BAA_OPTION_GROUPS=""
BAA_SHIFT=0

option_given() {
  [[ "$given_options" == *" $1 "* ]]
}

has_group() {
  [[ " $BAA_OPTION_GROUPS " == *" $1 "* ]]
}

check_number() {
  [[ "$2" =~ ^[0-9]+([.][0-9]+)?$ ]] || usage_error "$1 must be a number, got: $2"
}

# Handle one option from "$@". Returns 1 when the option is not one of the accepted
# groups; otherwise sets BAA_SHIFT to the number of words consumed.
parse_runtime_option() {
  local opt="$1" group="" value=""
  case "$opt" in
    # The listen address was --host, which to the binary meant its host name.
    --host) opt="--listen-host" ;;
    --home-dir) opt="--home" ;;
    --codexd-server-command) opt="--codex-command" ;;
    --codexd-api-base) opt="--codexd-local-api-base" ;;
  esac
  case "$opt" in
    --service | --all-services) group="services" ;;
    --scope | --home | --home-dir | --install-dir | --domain | --label-prefix) group="target" ;;
    --root | --logs-dir | --repo-layout) group="layout" ;;
    --dry-run) group="dryrun" ;;
    --repo-dir | --bin-dir) group="repo" ;;
    --node | --node-id | --conductor-host | --listen-host | --role | --control-api-base | \
      --local-api-allowed-hosts | --codexd-event-stream-path | --codex-command | \
      --codexd-server-command | --codexd-server-cwd | --username | --path) group="config" ;;
    --local-api-base | --codexd-local-api-base | --codexd-api-base | --status-api-host | \
      --status-api-port) group="bases" ;;
    --status-api-base) group="probe" ;;
    --shared-token | --shared-token-file) group="token" ;;
    --health-timeout | --health-interval | --unload-timeout | --skip-kickstart) group="health" ;;
    --link-dir | --no-links) group="links" ;;
    *) return 1 ;;
  esac
  has_group "$group" || return 1
  if [[ "$1" == "--host" ]]; then
    runtime_error "warning: --host is now --listen-host (the listen address; --conductor-host is the name)"
  fi
  given_options="${given_options}${opt} "
  BAA_SHIFT=1
  case "$opt" in
    --all-services | --dry-run | --skip-kickstart | --repo-layout | --no-links) ;;
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
    --home) home_dir="$value" ;;
    --install-dir) install_dir="$value" ;;
    --domain) domain_target="$value" ;;
    --label-prefix) label_prefix="$value" ;;
    --root) runtime_root="$value" ;;
    --logs-dir) logs_dir="$value" ;;
    --repo-layout) repo_layout="1" ;;
    --dry-run) dry_run="1" ;;
    --repo-dir) repo_dir="$value" ;;
    --bin-dir) bin_dir="$value" ;;
    --node) node="$value" ;;
    --node-id) node_id="$value" ;;
    --conductor-host) conductor_host="$value" ;;
    --listen-host) listen_host="$value" ;;
    --role) conductor_role="$value" ;;
    --control-api-base) control_api_base="$value" ;;
    --local-api-allowed-hosts)
      local_api_allowed_hosts="$value"
      local_api_allowed_hosts_given="1"
      ;;
    --codexd-event-stream-path) codexd_event_stream_path="$value" ;;
    --codex-command) codexd_server_command="$value" ;;
    --codexd-server-cwd) codexd_server_cwd="$value" ;;
    --username) username="$value" ;;
    --path) launchd_path="$value" ;;
    --local-api-base) local_api_base="$value" ;;
    --codexd-local-api-base) codexd_local_api_base="$value" ;;
    --status-api-host) status_api_host="$value" ;;
    --status-api-port) check_number "$opt" "$value" && status_api_port="$value" ;;
    --status-api-base) status_api_base="$value" ;;
    --shared-token) opt_shared_token="$value" ;;
    --shared-token-file) shared_token_file="$value" ;;
    --health-timeout) check_number "$opt" "$value" && health_timeout="$value" ;;
    --health-interval) check_number "$opt" "$value" && health_interval="$value" ;;
    --unload-timeout) check_number "$opt" "$value" && unload_timeout="$value" ;;
    --skip-kickstart) skip_kickstart="1" ;;
    --link-dir) link_dir="$value" ;;
    --no-links) no_links="1" ;;
  esac
  return 0
}

# Help text for the option groups, so every script documents them the same way.
options_help() {
  local g
  for g in "$@"; do
    case "$g" in
      services)
        cat <<'EOF_HELP'
  --service NAME            Add one service: conductor, codexd or status-api. Repeatable.
                            Default: all three.
  --all-services            Select conductor, codexd and status-api.
EOF_HELP
        ;;
      target)
        cat <<'EOF_HELP'
  --scope agent|daemon      agent: gui/<uid> domain, ~/Library/LaunchAgents (default).
                            daemon: system domain, /Library/LaunchDaemons.
  --home PATH               Home directory (alias --home-dir). Default: $HOME.
  --install-dir PATH        Directory of the installed plists. Default from --scope.
  --domain TARGET           launchctl domain. Default gui/<uid> or system.
  --label-prefix PREFIX     launchd labels are PREFIX.baa-<service>. Default so.makefile.
EOF_HELP
        ;;
      layout)
        cat <<'EOF_HELP'
  --root DIR                Runtime root: state/, runs/, worktrees/, tmp/, bin/<version>/
                            (+ bin/current), codex/<pin>/.
                            Default: ~/Library/Application Support/baa-conductor.
  --logs-dir DIR            Logs: launchd/ (daemon out/err), codexd/.
                            Default: ~/Library/Logs/baa-conductor.
  --repo-layout             The in-checkout layout: root = --repo-dir, logs = <repo-dir>/logs.
EOF_HELP
        ;;
      dryrun)
        cat <<'EOF_HELP'
  --dry-run                 Print the commands instead of running them (token masked).
EOF_HELP
        ;;
      repo)
        cat <<'EOF_HELP'
  --repo-dir PATH           The checkout: WorkingDirectory, codex's cwd, the repo root the
                            conductor's examples name. Default: the repo holding this script.
  --bin-dir PATH            Where the built binaries are (copied into <root>/bin/<version>/).
                            Default: <repo-dir>/target/release.
EOF_HELP
        ;;
      config)
        cat <<'EOF_HELP'
  --listen-host ADDRESS     Listen address of the conductor and status-api. Default: the
                            node's Tailscale IPv4 (`tailscale ip -4`), else 127.0.0.1.
                            On a Tailscale address both also listen on 127.0.0.1.
                            (--host, its old name, still works with a warning.)
  --node NAME               Node defaults (only mini): node id mini-main, conductor host
                            mini, role primary.
  --node-id ID              BAA_NODE_ID.
  --conductor-host NAME     The conductor's host name (BAA_CONDUCTOR_HOST).
  --role primary|standby    Conductor role (BAA_CONDUCTOR_ROLE, --role argument).
  --control-api-base URL    BAA_CONTROL_API_BASE; written only when given.
  --local-api-allowed-hosts CSV
                            BAA_CONDUCTOR_LOCAL_API_ALLOWED_HOSTS. Default: the listen
                            address when it is not loopback.
  --codexd-event-stream-path PATH
                            BAA_CODEXD_EVENT_STREAM_PATH. Default /v1/codexd/events.
  --codex-command PATH      BAA_CODEXD_SERVER_COMMAND (alias --codexd-server-command).
                            Default: the pinned @openai/codex, installed under
                            <root>/codex/<pin>/ by scripts/install-codex.sh.
  --codexd-server-cwd PATH  BAA_CODEXD_SERVER_CWD. Default: the repo dir.
  --username NAME           UserName for --scope daemon. Default: the current user.
  --path PATH               PATH given to the daemons.
                            Default: ~/.local/bin:/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
EOF_HELP
        ;;
      bases)
        cat <<'EOF_HELP'
  --local-api-base URL      Conductor local API (BAA_CONDUCTOR_LOCAL_API).
                            Default: http://<listen address>:4317.
  --codexd-local-api-base URL
                            codexd base (BAA_CODEXD_LOCAL_API_BASE; alias --codexd-api-base).
  --status-api-host HOST    BAA_STATUS_API_HOST. Default: the listen address.
  --status-api-port PORT    BAA_STATUS_API_PORT. Default 4318.
EOF_HELP
        ;;
      probe)
        cat <<'EOF_HELP'
  --status-api-base URL     status-api base. Default http://<status-api-host>:<port>.
EOF_HELP
        ;;
      token)
        cat <<'EOF_HELP'
  --shared-token-file FILE  File whose first line is the shared token (mode 600; a file
                            others can read is refused). Without it the token comes from
                            $BAA_SHARED_TOKEN, ~/.config/baa-conductor/shared-token.txt,
                            then BAA_SHARED_TOKEN in ~/.config/baa-conductor/runtime-secrets.env,
                            then the legacy ~/.config/baa-conductor/control-api-worker.secrets.env.
  --shared-token TOKEN      The token itself (visible in `ps`; prefer the file).
EOF_HELP
        ;;
      links)
        cat <<'EOF_HELP'
  --link-dir DIR            Put links to <root>/bin/current/baa-{conductor,codexd,status-api}
                            in DIR (must exist and be writable). Default: env
                            BAA_RUNTIME_LINK_DIR, else the first of /opt/homebrew/bin,
                            /usr/local/bin, ~/.local/bin, ~/bin that is on PATH and writable;
                            none: install prints the `export PATH=...` line to add.
  --no-links                Make no links.
EOF_HELP
        ;;
      health)
        cat <<'EOF_HELP'
  --health-timeout SEC      How long to wait for each /healthz, before and after the retry.
                            Default 30 (env BAA_RUNTIME_HEALTH_TIMEOUT_SEC).
  --health-interval SEC     Pause between probes. Default 1 (env BAA_RUNTIME_HEALTH_INTERVAL_SEC).
  --unload-timeout SEC      How long to wait for a booted-out job to go away. Default 40.
  --skip-kickstart          No kickstart after bootstrap and no retry kickstart -k.
EOF_HELP
        ;;
    esac
  done
  cat <<'EOF_HELP'
  --help                    Show this help text.
EOF_HELP
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

# Root and logs dir from --root/--logs-dir/--repo-layout and --home (lib/layout.sh).
finalize_layout() {
  repo_dir="$(absolute_path "$repo_dir")"
  if [[ "$repo_layout" == "1" ]]; then
    [[ -z "$runtime_root" && -z "$logs_dir" ]] || usage_error "--repo-layout sets --root and --logs-dir; give one or the others"
    runtime_root="$repo_dir"
    logs_dir="${repo_dir}/logs"
  fi
  [[ -n "$runtime_root" ]] || runtime_root="${home_dir}/Library/Application Support/baa-conductor"
  [[ -n "$logs_dir" ]] || logs_dir="${home_dir}/Library/Logs/baa-conductor"
  runtime_root="$(absolute_path "$runtime_root")"
  logs_dir="$(absolute_path "$logs_dir")"
}

# Derived values once options are parsed: everything install-launchd.sh writes.
finalize_config() {
  local host
  resolve_node_defaults
  finalize_layout
  [[ -n "$bin_dir" ]] || bin_dir="${repo_dir}/target/release"
  bin_dir="$(absolute_path "$bin_dir")"
  [[ -n "$codexd_server_cwd" ]] || codexd_server_cwd="$repo_dir"
  [[ -n "$username" ]] || username="$(current_username)"
  [[ -n "$launchd_path" ]] || launchd_path="${home_dir}/.local/bin:/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
  [[ -n "$local_api_base" ]] || local_api_base="${BAA_CONDUCTOR_LOCAL_API:-}"
  [[ -n "$status_api_host" ]] || status_api_host="${BAA_STATUS_API_HOST:-}"
  # The listen address is looked up only when something still needs it (or --listen-host was given).
  if [[ -z "$local_api_base" || -z "$status_api_host" || -n "$listen_host" ]]; then
    resolve_listen_host
  fi
  [[ -n "$local_api_base" ]] || local_api_base="http://$(url_authority "$listen_host" "$BAA_RUNTIME_CONDUCTOR_PORT")"
  [[ -n "$status_api_host" ]] || status_api_host="$listen_host"
  [[ -n "$codexd_local_api_base" ]] || codexd_local_api_base="${BAA_CODEXD_LOCAL_API_BASE:-$BAA_RUNTIME_DEFAULT_CODEXD_LOCAL_API}"
  [[ -n "$status_api_port" ]] || status_api_port="${BAA_STATUS_API_PORT:-$BAA_RUNTIME_DEFAULT_STATUS_API_PORT}"
  local_api_base="$(normalize_url "$local_api_base")"
  codexd_local_api_base="$(normalize_url "$codexd_local_api_base")"
  [[ -z "$control_api_base" ]] || control_api_base="$(normalize_url "$control_api_base")"
  # The conductor may bind a non-loopback address only when it is listed.
  if [[ "$local_api_allowed_hosts_given" != "1" ]]; then
    host="$(url_host "$local_api_base")"
    if is_loopback_host "$host"; then
      local_api_allowed_hosts=""
    else
      local_api_allowed_hosts="$host"
    fi
  fi
  if [[ -z "$codexd_server_command" ]]; then
    codex_pinned="1"
    codexd_server_command="$(find_pinned_codex || true)"
  fi
  if has_group links; then
    resolve_link_dir
  fi
}

# Probe bases for status/check-node: flag, else the installed plist, else the default.
finalize_probe_bases() {
  local plist host port
  if [[ -z "$local_api_base" ]]; then
    plist="$(service_install_path "$install_dir" conductor)"
    local_api_base="$(plist_get_or_default "$plist" ":EnvironmentVariables:BAA_CONDUCTOR_LOCAL_API" "$BAA_RUNTIME_DEFAULT_LOCAL_API")"
  fi
  if [[ -z "$codexd_local_api_base" ]]; then
    plist="$(service_install_path "$install_dir" codexd)"
    codexd_local_api_base="$(plist_get_or_default "$plist" ":EnvironmentVariables:BAA_CODEXD_LOCAL_API_BASE" "$BAA_RUNTIME_DEFAULT_CODEXD_LOCAL_API")"
  fi
  if [[ -z "$status_api_base" ]]; then
    plist="$(service_install_path "$install_dir" status-api)"
    host="${status_api_host:-$(plist_get_or_default "$plist" ":EnvironmentVariables:BAA_STATUS_API_HOST" "$BAA_RUNTIME_DEFAULT_STATUS_API_HOST")}"
    port="${status_api_port:-$(plist_get_or_default "$plist" ":EnvironmentVariables:BAA_STATUS_API_PORT" "$BAA_RUNTIME_DEFAULT_STATUS_API_PORT")}"
    status_api_base="http://$(probe_host "$host"):${port}"
  fi
  local_api_base="$(loopback_base "$(normalize_url "$local_api_base")")"
  codexd_local_api_base="$(normalize_url "$codexd_local_api_base")"
  status_api_base="$(loopback_base "$(normalize_url "$status_api_base")")"
}
