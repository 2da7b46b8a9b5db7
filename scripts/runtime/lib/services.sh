# shellcheck shell=bash disable=SC2034,SC2154 # globals live across the sourced files
# The three services: names, launchd labels, template and install paths, log paths, the
# program launchd runs; and the launchd target (scope, domain, install dir).

service_names_help() {
  printf '%s' "$BAA_RUNTIME_SERVICES"
}

validate_service() {
  case "$1" in
    conductor | codexd | status-api) ;;
    worker-runner)
      usage_error "unknown service: worker-runner (there is no worker-runner process; the conductor's scheduler does that work). Valid: $(service_names_help)"
      ;;
    *)
      usage_error "unknown service: $1 (valid: $(service_names_help))"
      ;;
  esac
}

# <label-prefix>.baa-<service>, e.g. so.makefile.baa-conductor.
service_label() {
  printf '%s.baa-%s\n' "$label_prefix" "$1"
}

service_binary() {
  printf 'baa-%s\n' "$1"
}

# Templates come from the checkout holding these scripts, so script and template always
# agree on the placeholders, whatever --repo-dir points at. Their file names carry the
# default prefix; the Label inside is @@LABEL_PREFIX@@.baa-<service>.
service_template_path() {
  printf '%s/launchd/%s.baa-%s.plist\n' "$BAA_RUNTIME_REPO_DIR_DEFAULT" "$BAA_RUNTIME_DEFAULT_LABEL_PREFIX" "$1"
}

service_install_path() {
  printf '%s/%s.plist\n' "$1" "$(service_label "$2")"
}

# launchd's out/err files of a service, under the logs dir.
service_stdout_path() {
  printf '%s/launchd/%s.out.log\n' "$logs_dir" "$(service_label "$1")"
}

service_stderr_path() {
  printf '%s/launchd/%s.err.log\n' "$logs_dir" "$(service_label "$1")"
}

# What launchd runs: the binary under the `current` link, never the build output, so a
# build cannot swap a binary under a running service (lib/layout.sh).
service_program_path() {
  printf '%s/%s\n' "$(current_bin_dir)" "$(service_binary "$1")"
}

# Only conductor runs host operations; codexd and status-api never see the token.
service_requires_shared_token() {
  [[ "$1" == "conductor" ]]
}

# The arguments launchd passes after the binary, as one string for process matching.
service_program_args() {
  case "$1" in
    conductor) printf 'start --conductor-host %s --role %s\n' "$conductor_host" "$conductor_role" ;;
    codexd) printf 'start\n' ;;
    status-api) printf '\n' ;;
  esac
}

# Fill `services` with the defaults when no --service was given.
finalize_services() {
  if [[ "${#services[@]}" -eq 0 ]]; then
    # shellcheck disable=SC2206 # intended word splitting of a fixed list
    services=($BAA_RUNTIME_SERVICES)
  fi
}

# True when every service is selected (node-wide actions such as --purge need that).
all_services_selected() {
  [[ "${#services[@]}" -eq 3 ]]
}

current_uid() {
  id -u
}

current_username() {
  id -un
}

validate_scope() {
  case "$1" in
    agent | daemon) ;;
    *) usage_error "--scope must be agent or daemon, got: $1" ;;
  esac
}

default_install_dir() {
  if [[ "$1" == "daemon" ]]; then
    printf '/Library/LaunchDaemons\n'
  else
    printf '%s/Library/LaunchAgents\n' "$2"
  fi
}

default_domain_target() {
  if [[ "$1" == "daemon" ]]; then
    printf 'system\n'
  else
    printf 'gui/%s\n' "$(current_uid)"
  fi
}

finalize_target() {
  validate_scope "$scope"
  [[ -n "$home_dir" ]] || usage_error "no home directory: set HOME or pass --home"
  [[ "$label_prefix" =~ ^[A-Za-z0-9][A-Za-z0-9.-]*$ ]] ||
    usage_error "--label-prefix must be letters, digits, dots and dashes (e.g. com.example), got: $label_prefix"
  if [[ -z "$install_dir" ]]; then
    install_dir="$(default_install_dir "$scope" "$home_dir")"
  fi
  if [[ -z "$domain_target" ]]; then
    domain_target="$(default_domain_target "$scope")"
  fi
}
