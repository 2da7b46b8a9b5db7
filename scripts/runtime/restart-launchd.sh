#!/usr/bin/env bash
# Restart = reload: bootout, bootstrap, kickstart, then health waits with one retry.
set -euo pipefail
SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"

for arg in "$@"; do
  if [[ "$arg" == "--help" || "$arg" == "-h" ]]; then
    printf '%s is reload-launchd.sh under another name; it takes the same options.\n\n' "$(basename -- "$0")"
  fi
done
exec "${SCRIPT_DIR}/reload-launchd.sh" "$@"
