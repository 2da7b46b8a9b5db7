# shellcheck shell=bash
# Shared by scripts/runtime/*.sh: constants, then the helper libraries in lib/, each with
# one job. Sourced, never run.
#
# Written for the bash that ships with macOS (3.2) as well as bash 5 on Linux: no
# associative arrays, no mapfile, no `wait -n`, and empty arrays are never expanded under
# `set -u`; BSD and GNU tools are only used where their flags agree (lib/portable.sh has the
# helpers for the rest). tests/scripts/test_shell_lint.py enforces this.
#
# Exit codes used by every script: 0 ok, 1 runtime failure, 2 usage or configuration error.
# The shared token is never printed: dry-run output and diagnostics go through mask_text.

# Globals below are read by the scripts that source this file.
# shellcheck disable=SC2034

BAA_RUNTIME_SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
# The checkout holding these scripts: templates and the codex pin come from it.
BAA_RUNTIME_REPO_DIR_DEFAULT="$(cd -- "${BAA_RUNTIME_SCRIPT_DIR}/../.." && pwd)"
BAA_RUNTIME_PLIST_PY="${BAA_RUNTIME_SCRIPT_DIR}/plist.py"
BAA_RUNTIME_INSTALL_CODEX="${BAA_RUNTIME_REPO_DIR_DEFAULT}/scripts/install-codex.sh"

BAA_RUNTIME_SERVICES="conductor codexd status-api"
BAA_RUNTIME_DEFAULT_NODE="mini"
# launchd labels are <prefix>.baa-<service>; the prefix is the original system's domain.
BAA_RUNTIME_DEFAULT_LABEL_PREFIX="so.makefile"
BAA_RUNTIME_CONDUCTOR_PORT="4317"
# Used when neither a flag nor an installed plist names a base.
BAA_RUNTIME_DEFAULT_LOCAL_API="http://127.0.0.1:4317"
BAA_RUNTIME_DEFAULT_CODEXD_LOCAL_API="http://127.0.0.1:4319"
BAA_RUNTIME_DEFAULT_CODEXD_EVENT_STREAM_PATH="/v1/codexd/events"
BAA_RUNTIME_DEFAULT_CODEXD_SERVER_MODE="app-server"
BAA_RUNTIME_DEFAULT_CODEXD_SERVER_STRATEGY="spawn"
BAA_RUNTIME_DEFAULT_CODEXD_SERVER_ARGS="app-server"
# unix mode: the app-server listens on <state dir>/app-server.sock and outlives codexd.
BAA_RUNTIME_DEFAULT_CODEXD_SERVER_ENDPOINT="unix://"
BAA_RUNTIME_DEFAULT_STATUS_API_HOST="127.0.0.1"
BAA_RUNTIME_DEFAULT_STATUS_API_PORT="4318"
BAA_RUNTIME_PLACEHOLDER_TOKEN="replace-me"
BAA_RUNTIME_MASK="********"

# shellcheck source=lib/log.sh
source "${BAA_RUNTIME_SCRIPT_DIR}/lib/log.sh"
# shellcheck source=lib/portable.sh
source "${BAA_RUNTIME_SCRIPT_DIR}/lib/portable.sh"
# shellcheck source=lib/services.sh
source "${BAA_RUNTIME_SCRIPT_DIR}/lib/services.sh"
# shellcheck source=lib/token.sh
source "${BAA_RUNTIME_SCRIPT_DIR}/lib/token.sh"
# shellcheck source=lib/plist.sh
source "${BAA_RUNTIME_SCRIPT_DIR}/lib/plist.sh"
# shellcheck source=lib/http.sh
source "${BAA_RUNTIME_SCRIPT_DIR}/lib/http.sh"
# shellcheck source=lib/launchctl.sh
source "${BAA_RUNTIME_SCRIPT_DIR}/lib/launchctl.sh"
# shellcheck source=lib/listen.sh
source "${BAA_RUNTIME_SCRIPT_DIR}/lib/listen.sh"
# shellcheck source=lib/layout.sh
source "${BAA_RUNTIME_SCRIPT_DIR}/lib/layout.sh"
# shellcheck source=lib/links.sh
source "${BAA_RUNTIME_SCRIPT_DIR}/lib/links.sh"
# shellcheck source=lib/record.sh
source "${BAA_RUNTIME_SCRIPT_DIR}/lib/record.sh"
# shellcheck source=lib/install.sh
source "${BAA_RUNTIME_SCRIPT_DIR}/lib/install.sh"
# shellcheck source=lib/options.sh
source "${BAA_RUNTIME_SCRIPT_DIR}/lib/options.sh"
