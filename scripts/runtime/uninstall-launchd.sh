#!/usr/bin/env bash
# Remove the services from launchd: bootout, delete the installed plists; state stays
# unless --purge.
set -euo pipefail
SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "${SCRIPT_DIR}/common.sh"

usage() {
  cat <<USAGE
Usage: $(basename -- "$0") [options]

For each service: launchctl bootout (waiting until launchd has let it go; a service that
is not loaded is skipped) and remove its installed plist; for codexd, also stop the codex
app-server it leaves running in unix mode (baa-codexd stop-child). Everything else stays: the
runtime root (state, runs, worktrees, binaries, codex), the logs dir and the token file,
so install-launchd.sh + start-launchd.sh bring the node back as it was.

It uses the options the install recorded in <root>/install-options.env (label prefix,
scope, install dir, root, logs dir, link dir; the root: --root, else BAA_RUNTIME_ROOT in
~/.config/baa-conductor/node.env, else the default) and prints them; an option given now
wins. Uninstalling all services also removes the baa-* links install made that point into
the root, and node.env when it names this root.

--purge (all services only) also deletes the runtime root's state/, runs/, worktrees/,
tmp/, bin/ and codex/ (the root itself when nothing else is left in it) and the logs dir.
The token file is never deleted: remove it by hand if you no longer want it.

Options:
USAGE
  options_help services target layout repo links dryrun
  cat <<'USAGE'
  --purge                   Also delete state, binaries and logs (see above).
  --unload-timeout SEC      How long to wait for each job to go away. Default 40.
USAGE
}

purge="0"
uninstall_option() {
  BAA_SHIFT=1
  case "$1" in
    --purge) purge="1" ;;
    --unload-timeout)
      [[ $# -ge 2 ]] || usage_error "$1 needs a value"
      check_number "$1" "$2"
      unload_timeout="$2"
      BAA_SHIFT=2
      ;;
    *) return 1 ;;
  esac
}

BAA_OPTION_GROUPS="services target layout repo links dryrun"
parse_args_with uninstall_option "$@"
apply_install_record
finalize_services
finalize_target
finalize_layout

if [[ "$purge" == "1" ]] && ! all_services_selected; then
  usage_error "--purge deletes the whole node's state; use it without --service"
fi

# Directories --purge must never delete, whatever --root/--logs-dir say.
refuse_purge_of() {
  local dir="$1" what="$2" forbidden
  for forbidden in / "$home_dir" "${home_dir}/Library" "${home_dir}/Library/Logs" \
    "${home_dir}/Library/Application Support" "$repo_dir"; do
    if [[ "$dir" == "$(absolute_path "$forbidden")" ]]; then
      usage_error "refusing to purge ${what} ${dir}: it is not a directory of its own"
    fi
  done
}

# Checked before anything is booted out, so a refused purge changes nothing.
if [[ "$purge" == "1" ]]; then
  refuse_purge_of "$logs_dir" "logs dir"
  # In the checkout layout only the runtime subdirs go, never the checkout.
  [[ "$runtime_root" == "$repo_dir" ]] || refuse_purge_of "$runtime_root" "runtime root"
fi

failed=()
for service in "${services[@]}"; do
  if ! launchd_bootout "$service"; then
    failed+=("$service")
    continue
  fi
  plist="$(service_install_path "$install_dir" "$service")"
  # In unix mode codexd's app-server outlives codexd on purpose; uninstalled, nothing
  # would ever re-attach it.
  if [[ "$service" == "codexd" && -e "$plist" ]] && ! stop_codexd_child; then
    failed+=("codexd app-server")
    continue
  fi
  if [[ -e "$plist" ]]; then
    run_cmd rm -f "$plist"
    [[ "$dry_run" == "1" ]] || runtime_log "removed ${plist}"
  fi
done
if [[ "${#failed[@]}" -gt 0 ]]; then
  runtime_error "stopping failed for: ${failed[*]}; their plists and all state were kept"
  exit 1
fi

if all_services_selected; then
  if [[ "$no_links" != "1" ]]; then
    if [[ -n "$link_dir" ]]; then
      remove_links "$(absolute_path "$link_dir")"
    else
      while IFS= read -r candidate; do
        remove_links "$candidate"
      done < <(link_dir_candidates)
    fi
  fi
  node_env="$(node_env_path)"
  if [[ -f "$node_env" && "$(read_env_file_value "$node_env" BAA_RUNTIME_ROOT || true)" == "$runtime_root" ]]; then
    run_cmd rm -f "$node_env"
    [[ "$dry_run" == "1" ]] || runtime_log "removed ${node_env}"
  fi
fi

if [[ "$purge" == "1" ]]; then
  run_cmd rm -f "$(install_record_path)"
  for sub in state runs worktrees tmp bin codex; do
    if [[ -e "${runtime_root}/${sub}" ]]; then
      run_cmd rm -rf "${runtime_root}/${sub}"
    fi
  done
  # The root goes too when it is a directory of its own (not the checkout) and now empty.
  if [[ "$runtime_root" != "$repo_dir" && -d "$runtime_root" ]]; then
    run_cmd rmdir "$runtime_root" 2>/dev/null || runtime_log "kept ${runtime_root}: it holds files the scripts did not make"
  fi
  if [[ -d "$logs_dir" ]]; then
    run_cmd rm -rf "$logs_dir"
  fi
  [[ "$dry_run" == "1" ]] || runtime_log "purged ${runtime_root} (state, runs, worktrees, tmp, bin, codex) and ${logs_dir}"
else
  [[ "$dry_run" == "1" ]] || runtime_log "kept ${runtime_root} and ${logs_dir} (--purge deletes them)"
fi
[[ "$dry_run" == "1" ]] || runtime_log "kept the token file $(conductor_token_file) (delete it by hand if you no longer need it)"
if [[ "$dry_run" != "1" ]]; then
  runtime_log "uninstalled from ${domain_target}: ${services[*]}"
fi
