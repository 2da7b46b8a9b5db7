#!/usr/bin/env bash
# Render the install copies of the launchd plists from the templates in launchd/.
set -euo pipefail
SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "${SCRIPT_DIR}/common.sh"

usage() {
  cat <<USAGE
Usage: $(basename -- "$0") [options]

Render launchd/<label>.plist templates into install copies: every @@NAME@@ placeholder
is replaced (XML-escaped by the renderer), the result is validated as a property list,
and written atomically (mode 644). No plist carries the token: the conductor's names a
token file in BAA_SHARED_TOKEN_FILE (--shared-token-file, else
~/.config/baa-conductor/shared-token.txt), which is written mode 600 from the resolved
token when missing or different. A token in the conductor's environment would be readable
by every command it execs. Nothing is loaded: use reload-launchd.sh.

Options:
USAGE
  options_help services target repo config bases token dryrun
  cat <<'USAGE'

Notes:
  If no service is specified, conductor + codexd + status-api are installed.
  --service codexd (or status-api) alone needs no shared token.
USAGE
}

BAA_OPTION_GROUPS="services target repo config bases token dryrun"
parse_args_with no_extra_options "$@"
finalize_services
finalize_target
finalize_config

case "$(url_host "$codexd_local_api_base")" in
  127.0.0.1 | localhost | ::1) ;;
  *) usage_error "--codexd-local-api-base must be a loopback URL, got: $codexd_local_api_base" ;;
esac

needs_token="0"
for service in "${services[@]}"; do
  if service_requires_shared_token "$service"; then
    needs_token="1"
  fi
done
if [[ "$needs_token" == "1" ]]; then
  require_shared_token
  install_token_file
fi

for service in "${services[@]}"; do
  template="$(service_template_path "$service")"
  [[ -f "$template" ]] || die "template not found: $template"
  if [[ ! -x "${bin_dir}/$(service_binary "$service")" ]]; then
    runtime_error "warning: ${bin_dir}/$(service_binary "$service") does not exist yet (build before loading)"
  fi
done

while IFS= read -r dir; do
  if [[ ! -d "$dir" ]]; then
    if [[ "$dry_run" == "1" ]]; then
      runtime_error "warning: runtime dir missing: $dir (bootstrap.sh creates it)"
    else
      die "runtime dir missing: $dir (run scripts/runtime/bootstrap.sh --repo-dir ${repo_dir})"
    fi
  fi
done < <(runtime_dirs)

run_cmd mkdir -p "$install_dir"

for service in "${services[@]}"; do
  template="$(service_template_path "$service")"
  target="$(service_install_path "$install_dir" "$service")"
  args=(
    render --template "$template" --out "$target"
    --set "REPO_DIR=${repo_dir}"
    --set "BIN_DIR=${bin_dir}"
    --set "HOME=${home_dir}"
    --set "PATH=${launchd_path}"
    --set "NODE_ID=${node_id}"
    --set "CONDUCTOR_HOST=${conductor_host}"
    --set "CONDUCTOR_ROLE=${conductor_role}"
    --set "CONTROL_API_BASE=${control_api_base}"
    --set "LOCAL_API_BASE=${local_api_base}"
    --set "LOCAL_API_ALLOWED_HOSTS=${local_api_allowed_hosts}"
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
done
