#!/usr/bin/env bash
# Upgrade the node in place: build, install the new version, drain, restart codexd,
# conductor and status-api in order with health checks, and roll back on failure.
set -euo pipefail
SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "${SCRIPT_DIR}/common.sh"

usage() {
  cat <<USAGE
Usage: $(basename -- "$0") [options]

Upgrades the whole node: the services the install chose, together (bin/current is shared
by all three, so no service is upgraded alone). It uses the options the install recorded in
<root>/install-options.env (the root: --root, else BAA_RUNTIME_ROOT in
~/.config/baa-conductor/node.env, else the default) and prints them; an option given now
wins over the recorded one.

  1. build: cargo build --release (--skip-build to use what --bin-dir holds)
  2. install: as install-launchd.sh with the same options; the new binaries go to
     <root>/bin/<version>/ and bin/current points at them (bin/previous at the old ones);
     the running services are not touched yet
  3. drain: POST /v1/system/drain, then wait (--drain-timeout) until GET /v1/system/state
     says "drained": true. A conductor that does not report drained is not waited for
     (said so); one that is down has nothing to drain. A drain that does not finish
     abandons the upgrade: bin/current goes back, nothing was restarted
  4. restart codexd, then conductor, then status-api, each: bootout, bootstrap, kickstart,
     wait for /healthz (one kickstart -k retry, as reload-launchd.sh); when the codex
     command changed, codexd's unix-mode app-server is stopped too (baa-codexd stop-child),
     else the new codexd re-attaches the one running
  5. on a failed health check: roll back (bin/current to the previous version, its plists
     back, restart what was restarted, health checks again) and exit 1
  6. the automation mode goes back to what it was (running → resume, paused → pause)
Every step prints what it did. Exit 0 upgraded (or already current), 1 failed (rolled back
when it could be), 2 usage.

Options:
USAGE
  options_help target layout repo config bases token links health dryrun
  cat <<'USAGE'
  --skip-build              Do not run cargo build.
  --drain-timeout SEC       How long to wait for drained. Default 600.
  --keep-versions N         Versions kept under <root>/bin (current and previous always).
                            Default 3.
USAGE
}

skip_build="0"
drain_timeout="600"
keep_versions="3"
upgrade_option() {
  BAA_SHIFT=1
  case "$1" in
    --skip-build) skip_build="1" ;;
    --drain-timeout | --keep-versions)
      [[ $# -ge 2 ]] || usage_error "$1 needs a value"
      [[ "$2" =~ ^[0-9]+$ ]] || usage_error "$1 must be a whole number, got: $2"
      if [[ "$1" == "--drain-timeout" ]]; then drain_timeout="$2"; else keep_versions="$2"; fi
      BAA_SHIFT=2
      ;;
    *) return 1 ;;
  esac
}

BAA_OPTION_GROUPS="target layout repo config bases token links health dryrun"
parse_args_with upgrade_option "$@"
apply_install_record
# The order matters: codexd first (the conductor's codex proxy talks to it), status-api last.
services=()
for service in codexd conductor status-api; do
  if [[ -z "$recorded_services" || " $recorded_services " == *" $service "* ]]; then
    services+=("$service")
  fi
done
finalize_target
finalize_config
((keep_versions >= 2)) || usage_error "--keep-versions must be at least 2 (current and previous)"

previous="$(linked_version current)"
[[ -n "$previous" ]] || usage_error "nothing installed under $(bin_root) (no bin/current): install first with install-launchd.sh or install-mini.sh"
step() { runtime_log "== $*"; }

# What the install will use, and every refusal (token file, runtime dirs), before a build
# that takes minutes.
[[ "$skip_build" == "1" ]] || build_pending="1"
print_install_plan
validate_install
build_pending="0"

# --- 1. build
if [[ "$skip_build" != "1" ]]; then
  step "build"
  run_cmd cargo build --release --manifest-path "${repo_dir}/Cargo.toml"
fi

# --- 2. install
step "install (running: ${previous})"
build_is_complete "$bin_dir" || [[ "$dry_run" == "1" ]] || die "no complete build in ${bin_dir}"
# The plists running now go with the version running now, for a rollback.
save_plists_with_version "$previous" "${services[@]}"
codexd_plist="$(service_install_path "$install_dir" codexd)"
old_codex="$(plist_get_or_default "$codexd_plist" ":EnvironmentVariables:BAA_CODEXD_SERVER_COMMAND" "")"
run_install
new_codex="$(plist_get_or_default "$codexd_plist" ":EnvironmentVariables:BAA_CODEXD_SERVER_COMMAND" "")"
new_version="${installed_version:-$previous}"
if [[ "$new_version" == "$previous" ]]; then
  runtime_log "already running ${previous}; nothing to upgrade"
  exit 0
fi
[[ "$dry_run" != "1" ]] || {
  printf '# then: drain (POST /v1/system/drain, wait for drained), restart codexd, conductor, status-api with health checks, roll back to %s on failure\n' "$previous"
  exit 0
}

conductor_base="$(service_base_url conductor "$(service_install_path "$install_dir" conductor)")"
prior_mode=""

# Asks for a mode (pause|resume|drain); prints what happened, never fails the script.
set_mode() {
  local action="$1" reason="$2"
  if http_post_json "${conductor_base}/v1/system/${action}" "{\"requested_by\":\"upgrade.sh\",\"reason\":\"${reason}\"}"; then
    runtime_log "POST /v1/system/${action}: mode $(json_field "$CURL_LAST_BODY" mode || printf '?')"
  else
    runtime_error "POST /v1/system/${action} answered ${CURL_LAST_HTTP_STATUS}: $(first_line "$CURL_LAST_BODY$CURL_LAST_ERROR")"
  fi
}

# Puts the mode back to what it was before the drain, once the (new) conductor is ready:
# only the lease holder accepts a mode change, and a restarted one takes a moment.
restore_mode() {
  local deadline=$((SECONDS + ${health_timeout%.*}))
  [[ "$prior_mode" == "running" || "$prior_mode" == "paused" ]] || return 0
  until http_probe "${conductor_base}/readyz" || ((SECONDS >= deadline)); do
    sleep "$health_interval"
  done
  case "$prior_mode" in
    running) set_mode resume "upgrade finished" ;;
    paused) set_mode pause "upgrade finished; it was paused before" ;;
    *) ;;
  esac
}

# In unix mode codexd's app-server outlives codexd and the next codexd re-attaches it; when
# the codex command changed, the old app-server is stopped first, so the new codexd starts
# the new codex (the drain made sure no turn is cut short).
restart_codexd_with() {
  local from="$1" to="$2"
  if [[ "$from" != "$to" && -n "$from" ]]; then
    runtime_log "codex changes (${from} -> ${to}): stopping codexd's app-server so the new one starts"
    launchd_bootout codexd && stop_codexd_child || return 1
  fi
  restart_service codexd
}

# bin/current back to the previous version with its plists; then restart what the upgrade
# restarted. Returns non-zero when the old version does not come back healthy either.
roll_back() {
  local service plist saved ok=0
  runtime_error "rolling back to ${previous}"
  switch_current "$previous"
  for service in "${services[@]}"; do
    saved="$(bin_root)/${previous}/launchd/$(service_label "$service").plist"
    plist="$(service_install_path "$install_dir" "$service")"
    if [[ -f "$saved" ]]; then
      cp "$saved" "$plist"
      runtime_log "restored ${plist} from ${previous}"
    fi
  done
  for service in "$@"; do
    runtime_log "rollback: restarting ${service}"
    if [[ "$service" == "codexd" ]]; then
      restart_codexd_with "$new_codex" "$old_codex" || ok=1
    else
      restart_service "$service" || ok=1
    fi
  done
  return "$ok"
}

# --- 3. drain
step "drain"
if ! http_probe "${conductor_base}/v1/system/state"; then
  runtime_log "the conductor is not answering at ${conductor_base}; nothing to drain"
else
  prior_mode="$(json_field "$CURL_LAST_BODY" mode || true)"
  runtime_log "mode before the upgrade: ${prior_mode:-unknown}"
  if [[ "$prior_mode" != "draining" ]]; then
    set_mode drain "upgrade to ${new_version}"
  fi
  deadline=$((SECONDS + drain_timeout))
  while :; do
    http_probe "${conductor_base}/v1/system/state" || true
    if ! drained="$(json_field "$CURL_LAST_BODY" drained)"; then
      runtime_log "this conductor does not report drained (no \"drained\" in GET /v1/system/state); not waiting for running work"
      break
    fi
    if [[ "$drained" == "true" ]]; then
      runtime_log "drained: nothing is running"
      break
    fi
    if ((SECONDS >= deadline)); then
      runtime_error "not drained after ${drain_timeout}s; abandoning the upgrade (nothing was restarted)"
      roll_back
      restore_mode
      exit 1
    fi
    sleep "$health_interval"
  done
fi

# --- 4. restart in order, with health checks
restarted=()
failed=""
for service in "${services[@]}"; do
  step "restart ${service} on ${new_version}"
  restarted+=("$service")
  if [[ "$service" == "codexd" ]]; then
    restart_codexd_with "$old_codex" "$new_codex" && continue
    failed="$service"
    break
  fi
  if ! restart_service "$service"; then
    failed="$service"
    break
  fi
done

# --- 5. roll back on failure
if [[ -n "$failed" ]]; then
  runtime_error "upgrade to ${new_version} failed: ${failed} is not healthy"
  if roll_back "${restarted[@]}"; then
    restore_mode
    runtime_error "rolled back: running ${previous} again (${restarted[*]} restarted); ${new_version} stays in $(bin_root) for a look"
  else
    restore_mode
    runtime_error "rollback to ${previous} did not come back healthy either: see the diagnostics above; bin/current is ${previous}"
  fi
  exit 1
fi

# --- 6. mode back, old versions pruned
step "done"
restore_mode
prune_versions "$keep_versions"
runtime_log "upgraded ${previous} -> ${new_version} (rollback: bin/previous)"
