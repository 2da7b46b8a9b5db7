#!/usr/bin/env bash
# One-shot install for the mini node: bootstrap -> build -> install -> restart -> check.
set -euo pipefail
SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "${SCRIPT_DIR}/common.sh"

usage() {
  cat <<USAGE
Usage: $(basename -- "$0") [options]

The single-node mini install. First it prints what it will use (once) and checks
everything, so a bad setup is refused before anything is written or built:
  - the shared token: ~/.config/baa-conductor/shared-token.txt, mode 600 (a file others
    can read is refused), or BAA_SHARED_TOKEN in runtime-secrets.env (--secrets-env) or the
    legacy control-api-worker.secrets.env, both in ~/.config/baa-conductor/, written to
    shared-token.txt. None yet? Create it:
      mkdir -p ~/.config/baa-conductor && (umask 077; openssl rand -hex 32 > ~/.config/baa-conductor/shared-token.txt)
  - the listen address (loopback or Tailscale), the ports (free, or held by the same
    service of this node already), codex (--codex-command, or npm for the pin), the
    link dir
Then it:
  1. bootstraps runtime directories (bootstrap.sh) under --root and --logs-dir
  2. builds the repo (cargo build --release)
  3. installs as install-launchd.sh does: the token file, the binaries under
     <root>/bin/<version>/, the pinned codex, the plists (the conductor's names the token
     file in BAA_SHARED_TOKEN_FILE, never the token), links to the binaries in a bin dir on
     your PATH, ~/.config/baa-conductor/node.env and <root>/install-options.env
  4. restarts them and waits for /healthz (restart-launchd.sh)
  5. verifies the node (check-node.sh --check-loaded --expected-rolez leader)

Options:
USAGE
  options_help services target layout repo config bases token links health dryrun
  cat <<'USAGE'
  --secrets-env FILE        Env file to take BAA_SHARED_TOKEN from when shared-token.txt
                            is missing. Default: runtime-secrets.env, then the legacy file.
  --skip-build              Do not run cargo build.
  --skip-restart            Do not restart the services.
  --skip-check              Do not run check-node.sh.
USAGE
}

secrets_env=""
skip_build="0"
skip_restart="0"
skip_check="0"
install_mini_option() {
  BAA_SHIFT=1
  case "$1" in
    --skip-build) skip_build="1" ;;
    --skip-restart) skip_restart="1" ;;
    --skip-check) skip_check="1" ;;
    --secrets-env)
      [[ $# -ge 2 ]] || usage_error "$1 needs a value"
      secrets_env="$2"
      BAA_SHIFT=2
      ;;
    *) return 1 ;;
  esac
}

BAA_OPTION_GROUPS="services target layout repo config bases token links health dryrun"
parse_args_with install_mini_option "$@"
# The steps run below name this script in their usage errors.
export BAA_RUNTIME_RUN_BY="install-mini.sh"
finalize_services
finalize_target
finalize_config
if [[ -n "$secrets_env" ]]; then
  [[ -r "$secrets_env" ]] || usage_error "secrets env not readable: $secrets_env"
  token_secrets_env="$(absolute_path "$secrets_env")"
fi

# Everything is checked before anything is written or built: the plan, once, then every
# refusal (token and its mode, listen address, ports, codex, link dir).
[[ "$skip_build" == "1" ]] || build_pending="1"
bootstrap_pending="1"
print_install_plan
validate_install
validate_ports
build_pending="0"
bootstrap_pending="0"

dry=()
[[ "$dry_run" != "1" ]] || dry=(--dry-run)
service_args=()
for service in "${services[@]}"; do
  service_args+=(--service "$service")
done
target_args=(--scope "$scope" --home "$home_dir" --install-dir "$install_dir" --domain "$domain_target"
  --label-prefix "$label_prefix")
layout_args=(--root "$runtime_root" --logs-dir "$logs_dir")
config_args=(
  --repo-dir "$repo_dir" --bin-dir "$bin_dir" "${layout_args[@]}" --node "$node" --node-id "$node_id"
  --conductor-host "$conductor_host" --role "$conductor_role"
  --local-api-base "$local_api_base" --local-api-allowed-hosts "$local_api_allowed_hosts"
  --codexd-local-api-base "$codexd_local_api_base"
  --codexd-event-stream-path "$codexd_event_stream_path" --codexd-server-cwd "$codexd_server_cwd"
  --status-api-host "$status_api_host" --status-api-port "$status_api_port"
  --username "$username" --path "$launchd_path"
)
[[ -z "$control_api_base" ]] || config_args+=(--control-api-base "$control_api_base")
health_args=(--health-timeout "$health_timeout" --health-interval "$health_interval")

# 1. runtime dirs (the step prints its own commands under --dry-run)
"${SCRIPT_DIR}/bootstrap.sh" --home "$home_dir" --repo-dir "$repo_dir" "${layout_args[@]}" ${dry[@]+"${dry[@]}"}

# 2. build
if [[ "$skip_build" != "1" ]]; then
  run_cmd cargo build --release --manifest-path "${repo_dir}/Cargo.toml"
  if [[ "$dry_run" != "1" ]] && ! build_is_complete "$bin_dir"; then
    die "the build left no baa-conductor, baa-codexd and baa-status-api in ${bin_dir}"
  fi
fi

# 3. install (the checks above already ran)
run_install

# The check expects a chosen codex; without one it checks the pin.
[[ "$codex_pinned" == "1" ]] || config_args+=(--codex-command "$codexd_server_command")
[[ -z "$shared_token_file" ]] || config_args+=(--shared-token-file "$shared_token_file")

# 4. restart, 5. check
if [[ "$skip_restart" != "1" ]]; then
  "${SCRIPT_DIR}/restart-launchd.sh" "${service_args[@]}" "${target_args[@]}" "${health_args[@]}" ${dry[@]+"${dry[@]}"}
fi

if [[ "$skip_check" != "1" ]]; then
  if [[ "$dry_run" == "1" ]]; then
    print_cmd "${SCRIPT_DIR}/check-node.sh" "${service_args[@]}" "${target_args[@]}" "${config_args[@]}" --check-loaded --expected-rolez leader
  else
    "${SCRIPT_DIR}/check-node.sh" "${service_args[@]}" "${target_args[@]}" "${config_args[@]}" --check-loaded --expected-rolez leader
  fi
fi

if [[ "$dry_run" != "1" ]]; then
  runtime_log "mini install complete"
fi
