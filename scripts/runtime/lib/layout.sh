# shellcheck shell=bash disable=SC2034,SC2154 # globals live across the sourced files
# Where the node keeps things, outside the git checkout:
#   <root>  (--root, default ~/Library/Application Support/baa-conductor)
#     state/ (state/codexd/), runs/, worktrees/, tmp/   the daemons' runtime dirs
#     bin/<version>/      the three binaries, copied from the build, plus launchd/ (the
#                         plists they were installed with); bin/current → the one launchd
#                         runs, bin/previous → the one before (rollback is one link)
#     codex/<pin>/        the pinned @openai/codex (npm ci by scripts/install-codex.sh)
#   <logs>  (--logs-dir, default ~/Library/Logs/baa-conductor)
#     launchd/ (each daemon's out/err), codexd/ (events.jsonl, the child's output)
# --repo-layout puts root at the checkout and logs at <checkout>/logs (the seeds' layout).

# The runtime dirs the daemons write to, one per line (bootstrap.sh creates them).
runtime_dirs() {
  printf '%s\n' \
    "${runtime_root}/state" \
    "${runtime_root}/state/codexd" \
    "${runtime_root}/runs" \
    "${runtime_root}/worktrees" \
    "${runtime_root}/tmp" \
    "${logs_dir}" \
    "${logs_dir}/codexd" \
    "${logs_dir}/launchd"
}

bin_root() {
  printf '%s/bin\n' "$runtime_root"
}

current_bin_dir() {
  printf '%s/bin/current\n' "$runtime_root"
}

# The version a link (current or previous) points at; empty when there is none.
linked_version() {
  local link
  link="$(bin_root)/$1"
  if [[ -L "$link" ]]; then
    basename -- "$(readlink "$link")"
  fi
}

# The three binaries of a build dir, as paths, one per line.
build_binaries() {
  local service
  for service in $BAA_RUNTIME_SERVICES; do
    printf '%s/%s\n' "$1" "$(service_binary "$service")"
  done
}

# True when the build dir holds all three binaries.
build_is_complete() {
  local bin
  while IFS= read -r bin; do
    [[ -x "$bin" && -f "$bin" ]] || return 1
  done < <(build_binaries "$1")
}

# <version>-<crc>: the conductor's own --version plus a checksum of the three binaries,
# so two builds of one version get two dirs and the same build installed twice gets one.
# cksum is POSIX and prints the same on BSD and GNU.
build_version_label() {
  local dir="$1" out="" version="unknown" crc
  out="$(run_bounded 5 "${dir}/baa-conductor" --version 2>/dev/null)" || out=""
  out="$(first_line "$out")"
  if [[ "${out##* }" =~ ^[A-Za-z0-9][A-Za-z0-9._+-]*$ ]]; then
    version="${out##* }"
  fi
  crc="$(cat "${dir}/baa-conductor" "${dir}/baa-codexd" "${dir}/baa-status-api" | cksum)"
  printf '%s-%s\n' "$version" "${crc%% *}"
}

# Copies the build's binaries into <root>/bin/<label>/ (a temp dir renamed into place, so
# a half-copied version never exists) and sets installed_version. Reuses an existing
# identical copy.
installed_version=""
install_binaries() {
  local build="$1" label dest tmp bin
  label="$(build_version_label "$build")"
  dest="$(bin_root)/${label}"
  installed_version="$label"
  if [[ -d "$dest" ]]; then
    while IFS= read -r bin; do
      cmp -s "$bin" "${dest}/$(basename -- "$bin")" ||
        die "${dest} exists but differs from ${build}; remove it and install again"
    done < <(build_binaries "$build")
    runtime_log "binaries ${label} already in ${dest}"
    return 0
  fi
  if [[ "$dry_run" == "1" ]]; then
    printf '# would copy %s/baa-{conductor,codexd,status-api} to %s\n' "$build" "$dest"
    return 0
  fi
  mkdir -p "$(bin_root)"
  tmp="$(bin_root)/.incoming.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  while IFS= read -r bin; do
    cp "$bin" "${tmp}/"
    chmod 755 "${tmp}/$(basename -- "$bin")"
  done < <(build_binaries "$build")
  mv "$tmp" "$dest"
  runtime_log "copied ${build} binaries to ${dest}"
}

# Points bin/current at version (bin/previous at the one it replaces). Running services
# keep their binaries; the next (re)start runs the new ones.
switch_current() {
  local version="$1" old
  old="$(linked_version current)"
  if [[ "$old" == "$version" ]]; then
    return 0
  fi
  if [[ "$dry_run" == "1" ]]; then
    printf '# would point %s at %s%s\n' "$(current_bin_dir)" "$version" "${old:+ (previous: ${old})}"
    return 0
  fi
  [[ -d "$(bin_root)/${version}" ]] || die "no installed version ${version} in $(bin_root)"
  if [[ -n "$old" ]]; then
    replace_symlink "$old" "$(bin_root)/previous"
  fi
  replace_symlink "$version" "$(current_bin_dir)"
  runtime_log "bin/current -> ${version}${old:+ (previous: ${old})}"
}

# Keeps current, previous, and the newest other versions up to `keep` dirs in all.
prune_versions() {
  local keep="${1:-3}" current previous others=0 name
  current="$(linked_version current)"
  previous="$(linked_version previous)"
  [[ -d "$(bin_root)" ]] || return 0
  # ls -t: newest first, the same on BSD and GNU. Version names have no spaces.
  # shellcheck disable=SC2045
  for name in $(ls -1t "$(bin_root)"); do
    [[ -d "$(bin_root)/${name}" && ! -L "$(bin_root)/${name}" ]] || continue
    [[ "$name" != "$current" && "$name" != "$previous" ]] || continue
    others=$((others + 1))
    if ((others > keep - 2)); then
      run_cmd rm -rf "$(bin_root)/${name}"
    fi
  done
}

# Saves the installed plists of services into bin/<version>/launchd/, so a rollback to
# that version restores the plists it ran with.
save_plists_with_version() {
  local version="$1" dir service plist
  shift
  dir="$(bin_root)/${version}/launchd"
  [[ "$dry_run" != "1" && -d "$(bin_root)/${version}" ]] || return 0
  mkdir -p "$dir"
  for service in "$@"; do
    plist="$(service_install_path "$install_dir" "$service")"
    [[ -f "$plist" ]] && cp "$plist" "${dir}/"
  done
  return 0
}

# ---------------------------------------------------------------------------
# the pinned codex

pinned_codex_version() {
  "$BAA_RUNTIME_INSTALL_CODEX" --pinned-version
}

codex_install_dir() {
  printf '%s/codex/%s\n' "$runtime_root" "$(pinned_codex_version)"
}

# The native codex binary of the pin under the runtime root, when it is installed.
find_pinned_codex() {
  "$BAA_RUNTIME_INSTALL_CODEX" --dir "$(codex_install_dir)" --find 2>/dev/null
}

# Installs the pin under <root>/codex/<pin>/ (npm ci, nothing when already there) and sets
# codexd_server_command to its native binary. A versioned dir, so a new pin never changes
# the files of a running child.
install_pinned_codex() {
  local dir path
  dir="$(codex_install_dir)"
  if [[ "$dry_run" == "1" ]]; then
    if path="$(find_pinned_codex)"; then
      codexd_server_command="$path"
    else
      print_cmd "$BAA_RUNTIME_INSTALL_CODEX" --dir "$dir"
      codexd_server_command="${dir}/node_modules/@openai/<platform>/vendor/<triple>/bin/codex"
    fi
    return 0
  fi
  path="$("$BAA_RUNTIME_INSTALL_CODEX" --dir "$dir")" || die "could not install the pinned codex into ${dir} (scripts/install-codex.sh above says why; --codex-command PATH uses another)"
  codexd_server_command="$path"
  runtime_log "codex $(pinned_codex_version) (pinned) at ${path}"
}
