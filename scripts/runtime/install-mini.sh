#!/usr/bin/env bash
# One-shot install for the mini node: bootstrap -> build -> install -> restart -> check.
set -euo pipefail
SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "${SCRIPT_DIR}/common.sh"

usage() {
  cat <<USAGE
Usage: $(basename -- "$0") [options]

The single-node mini convenience wrapper. It:
  1. bootstraps runtime directories (bootstrap.sh) under --root and --logs-dir
  2. makes sure ~/.config/baa-conductor/shared-token.txt exists (mode 600): when missing it
     is generated from BAA_SHARED_TOKEN in runtime-secrets.env, else the legacy
     control-api-worker.secrets.env, both in ~/.config/baa-conductor/
  3. builds the repo (cargo build --release)
  4. installs conductor + codexd + status-api LaunchAgents (install-launchd.sh): the
     binaries under <root>/bin/<version>/, the pinned codex, the plists; the conductor's
     plist names the token file (BAA_SHARED_TOKEN_FILE), never the token
  5. restarts them and waits for /healthz (restart-launchd.sh)
  6. verifies the node (check-node.sh --check-loaded --expected-rolez leader)

Options:
USAGE
  options_help services target layout repo config bases token health dryrun
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

BAA_OPTION_GROUPS="services target layout repo config bases token health dryrun"
parse_args_with install_mini_option "$@"
finalize_services
finalize_target
finalize_config
# Looked up once here and handed to the sub-steps, which then agree on it.
[[ -n "$listen_host" ]] || resolve_listen_host
runtime_log "$(describe_listen_host)"

# Step 2: the token file every later step reads.
if [[ -z "$shared_token_file" ]]; then
  shared_token_file="$(token_config_dir)/shared-token.txt"
fi
if [[ ! -f "$shared_token_file" ]]; then
  if [[ -n "$secrets_env" ]]; then
    [[ -r "$secrets_env" ]] || usage_error "secrets env not readable: $secrets_env"
    shared_token="$(read_env_file_value "$secrets_env" BAA_SHARED_TOKEN || true)"
    shared_token_source="$secrets_env"
  else
    # The usual lookup; shared-token.txt itself is missing, so the env files are next.
    keep_file="$shared_token_file"
    shared_token_file=""
    resolve_shared_token
    shared_token_file="$keep_file"
  fi
  [[ -n "$shared_token" ]] || usage_error "no shared token: create ${shared_token_file} or put BAA_SHARED_TOKEN in $(token_config_dir)/runtime-secrets.env"
  if [[ "$dry_run" == "1" ]]; then
    printf '# would write %s (mode 600) from %s\n' "$shared_token_file" "$shared_token_source"
    # Nothing is written under --dry-run: hand the token to the sub-steps through the
    # environment (never argv) so their dry runs can render and mask it.
    export BAA_SHARED_TOKEN="$shared_token"
    shared_token_file=""
  else
    mkdir -p "$(dirname -- "$shared_token_file")"
    chmod 700 "$(dirname -- "$shared_token_file")"
    (
      umask 077
      printf '%s\n' "$shared_token" >"${shared_token_file}.tmp"
    )
    mv "${shared_token_file}.tmp" "$shared_token_file"
    runtime_log "wrote ${shared_token_file} (mode 600) from ${shared_token_source}"
  fi
fi

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
  --host "$listen_host" --conductor-host "$conductor_host" --role "$conductor_role"
  --local-api-base "$local_api_base" --local-api-allowed-hosts "$local_api_allowed_hosts"
  --codexd-local-api-base "$codexd_local_api_base"
  --codexd-event-stream-path "$codexd_event_stream_path" --codexd-server-cwd "$codexd_server_cwd"
  --status-api-host "$status_api_host" --status-api-port "$status_api_port"
  --username "$username" --path "$launchd_path"
)
[[ -z "$control_api_base" ]] || config_args+=(--control-api-base "$control_api_base")
# The pin is installed by install-launchd.sh; only a chosen command is passed on.
[[ "$codex_pinned" == "1" ]] || config_args+=(--codex-command "$codexd_server_command")
[[ -z "$shared_token_file" ]] || config_args+=(--shared-token-file "$shared_token_file")
health_args=(--health-timeout "$health_timeout" --health-interval "$health_interval")

# The sub-steps print their own commands under --dry-run.
"${SCRIPT_DIR}/bootstrap.sh" --home "$home_dir" --repo-dir "$repo_dir" "${layout_args[@]}" ${dry[@]+"${dry[@]}"}

if [[ "$skip_build" != "1" ]]; then
  run_cmd cargo build --release --manifest-path "${repo_dir}/Cargo.toml"
fi

"${SCRIPT_DIR}/install-launchd.sh" "${service_args[@]}" "${target_args[@]}" "${config_args[@]}" ${dry[@]+"${dry[@]}"}

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
