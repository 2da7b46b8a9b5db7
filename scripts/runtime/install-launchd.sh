#!/usr/bin/env bash
# Install the node: token file, binaries under <root>/bin/<version>/, the pinned codex,
# and the launchd plists rendered from the templates in launchd/.
set -euo pipefail
SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "${SCRIPT_DIR}/common.sh"

usage() {
  cat <<USAGE
Usage: $(basename -- "$0") [options]

Prints what it will use (listen address and where it came from, runtime root, logs dir,
labels, codex, link dir), refuses a bad setup before writing anything (no token, a token
file others can read, a listen address the daemons refuse, a codex that is not there, a
link dir that cannot take the links, a missing build, missing runtime dirs), then:
  1. writes the shared token file (mode 600) when missing or different; no plist ever
     carries the token, the conductor's names the file in BAA_SHARED_TOKEN_FILE
  2. copies the three binaries from --bin-dir to <root>/bin/<version>/ and points
     <root>/bin/current at them (the plists run bin/current/, so a build never touches a
     running service; bin/previous keeps the version before)
  3. installs the pinned @openai/codex under <root>/codex/<pin>/ (unless --codex-command)
  4. renders launchd/<label>.plist templates into the install dir (values XML-escaped,
     validated as property lists, written atomically, mode 644)
  5. links baa-conductor, baa-codexd and baa-status-api into a bin dir on your PATH
     (--link-dir), or prints the "export PATH=..." line that reaches them
  6. writes ~/.config/baa-conductor/node.env (the conductor's loopback URL, the token
     file, the root: how "baa-conductor task ..." in a plain shell finds the node) and
     <root>/install-options.env (these options, for upgrade.sh and uninstall-launchd.sh)
Nothing is loaded or restarted: use reload-launchd.sh (or upgrade.sh).

Options:
USAGE
  options_help services target layout repo config bases token links dryrun
  cat <<'USAGE'

Notes:
  If no service is specified, conductor + codexd + status-api are installed.
  --service codexd (or status-api) alone needs no shared token.
USAGE
}

BAA_OPTION_GROUPS="services target layout repo config bases token links dryrun"
parse_args_with no_extra_options "$@"
finalize_services
finalize_target
finalize_config

print_install_plan
validate_install
run_install
