# shellcheck shell=bash disable=SC2034,SC2154 # globals live across the sourced files
# The baa-* commands on the operator's PATH: links in a bin dir on PATH to
# <root>/bin/current/baa-<service> (a link to the current link, so an upgrade or a
# rollback moves them too). The dir: --link-dir, else BAA_RUNTIME_LINK_DIR, else the
# first of the usual user bin dirs that is on PATH and writable; with none, install prints
# the one `export PATH=...` line that makes them reachable.

link_dir_source=""

# The usual bin dirs, in the order they are tried.
link_dir_candidates() {
  printf '%s\n' /opt/homebrew/bin /usr/local/bin "${home_dir}/.local/bin" "${home_dir}/bin"
}

# True when DIR is one of the entries of $PATH (the operator's shell, which runs us).
dir_on_path() {
  local dir="$1" entry rest="${PATH:-}:"
  while [[ -n "$rest" ]]; do
    entry="${rest%%:*}"
    rest="${rest#*:}"
    [[ -n "$entry" ]] || continue
    if [[ "$(absolute_path "$entry")" == "$dir" ]]; then
      return 0
    fi
  done
  return 1
}

# Sets link_dir (empty: no links) and link_dir_source. Refuses a given dir that cannot
# take the links, before anything is written.
resolve_link_dir() {
  local candidate
  if [[ "$no_links" == "1" ]]; then
    link_dir=""
    link_dir_source="--no-links"
    return 0
  fi
  if [[ -n "$link_dir" ]]; then
    link_dir="$(absolute_path "$link_dir")"
    link_dir_source="--link-dir"
    option_given --link-dir || link_dir_source="BAA_RUNTIME_LINK_DIR"
    [[ -d "$link_dir" && -w "$link_dir" ]] ||
      usage_error "link dir ${link_dir} (${link_dir_source}) is not a writable directory: create it, or pass another --link-dir, or --no-links"
    return 0
  fi
  while IFS= read -r candidate; do
    if [[ -d "$candidate" && -w "$candidate" ]] && dir_on_path "$candidate"; then
      link_dir="$candidate"
      link_dir_source="the first writable bin dir on PATH"
      return 0
    fi
  done < <(link_dir_candidates)
  link_dir=""
  link_dir_source="none of /opt/homebrew/bin, /usr/local/bin, ~/.local/bin, ~/bin is on PATH and writable"
}

# A link install may replace: missing, or a link into some runtime root's bin/current.
link_is_replaceable() {
  local path="$1" target
  [[ -e "$path" || -L "$path" ]] || return 0
  [[ -L "$path" ]] || return 1
  target="$(readlink "$path")"
  [[ "$target" == */bin/current/baa-* ]]
}

# Refuses (before anything is written) a link dir holding another baa-* command.
validate_links() {
  local service path
  [[ -n "$link_dir" ]] || return 0
  for service in $BAA_RUNTIME_SERVICES; do
    path="${link_dir}/$(service_binary "$service")"
    link_is_replaceable "$path" ||
      usage_error "${path} exists and is not a link into a runtime root's bin/current: remove it, or pass another --link-dir, or --no-links"
  done
}

# The line the plan prints about the commands on PATH.
describe_links() {
  if [[ -n "$link_dir" ]]; then
    printf 'commands: %s/baa-{conductor,codexd,status-api} -> %s/ (%s)\n' "$link_dir" "$(current_bin_dir)" "$link_dir_source"
  else
    printf 'commands: no links (%s); the binaries are in %s/\n' "$link_dir_source" "$(current_bin_dir)"
  fi
}

# Makes the links (atomically, each one). Without a link dir, prints how to reach them.
install_links() {
  local service name
  if [[ -z "$link_dir" ]]; then
    if [[ "$no_links" == "1" ]]; then
      return 0
    fi
    runtime_log "to run baa-conductor from your shell, add its dir to PATH (e.g. in ~/.zprofile): export PATH=\"$(current_bin_dir):\$PATH\""
    return 0
  fi
  for service in $BAA_RUNTIME_SERVICES; do
    name="$(service_binary "$service")"
    if [[ "$dry_run" == "1" ]]; then
      print_cmd ln -s "$(current_bin_dir)/${name}" "${link_dir}/${name}"
      continue
    fi
    replace_symlink "$(current_bin_dir)/${name}" "${link_dir}/${name}"
  done
  [[ "$dry_run" == "1" ]] || runtime_log "linked ${link_dir}/baa-{conductor,codexd,status-api} -> $(current_bin_dir)/"
  if ! dir_on_path "$link_dir"; then
    runtime_log "${link_dir} is not on your PATH: add it (e.g. in ~/.zprofile): export PATH=\"${link_dir}:\$PATH\""
  fi
}

# Removes the links in DIR that point into the runtime root (uninstall).
remove_links() {
  local dir="$1" service path target
  [[ -n "$dir" && -d "$dir" ]] || return 0
  for service in $BAA_RUNTIME_SERVICES; do
    path="${dir}/$(service_binary "$service")"
    [[ -L "$path" ]] || continue
    target="$(readlink "$path")"
    [[ "$target" == "${runtime_root}/"* ]] || continue
    run_cmd rm -f "$path"
    [[ "$dry_run" == "1" ]] || runtime_log "removed the link ${path}"
  done
}
