#!/usr/bin/env bash
# Installs the pinned Python test tools (tools/py/requirements.txt: croniter, the official MCP
# Python SDK `mcp`, and their dependencies) into the git-ignored .tools/py/, for tests that
# use Python as an independent oracle or client (tests/it/cron_oracle.rs, tests/it/mcp_sdk.rs;
# both put .tools/py on PYTHONPATH). Wheels only (nothing is compiled); pip honours
# PIP_FIND_LINKS / PIP_INDEX_URL as usual.
#
# Idempotent and quick when present, and then needs no network: .tools/py/.pins holds the
# requirements it was installed from; when it matches, nothing is installed. Progress goes
# to stderr.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
requirements="$repo_root/tools/py/requirements.txt"
target="$repo_root/.tools/py"
stamp="$target/.pins"

if [[ -f "$stamp" ]] && cmp -s "$requirements" "$stamp"; then
  exit 0
fi
command -v python3 >/dev/null 2>&1 || { echo "install-py-tools: python3 is not installed" >&2; exit 1; }
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' || {
  echo "install-py-tools: the MCP Python SDK needs Python 3.10 or later; python3 is $(python3 -V 2>&1)" >&2
  exit 1
}

echo "install-py-tools: installing $(grep -cv '^#' "$requirements") pinned packages into $target" >&2
rm -rf "$target"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --only-binary=:all: \
  --target "$target" -r "$requirements" >&2
cp "$requirements" "$stamp"
