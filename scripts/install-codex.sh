#!/usr/bin/env bash
# Installs the pinned Codex CLI (tools/codex/package.json + lock) with `npm ci` and prints
# the absolute path of the NATIVE codex binary on stdout.
#
#   scripts/install-codex.sh                  into the git-ignored .tools/codex/ (dev, tests)
#   scripts/install-codex.sh --dir DIR        into DIR (install-launchd.sh: <root>/codex/<pin>/)
#   scripts/install-codex.sh --dir DIR --find print the binary only if DIR already holds the
#                                             pin; exit 1 otherwise; never installs
#   scripts/install-codex.sh --pinned-version print the pinned version
#
# Why the native binary: the npm wrapper (bin/codex.js) is a Node process that forwards only
# some signals, so killing it can orphan the real app-server. Tests and codexd spawn the native
# binary directly.
#
# Idempotent: when the native binary already reports the pinned version, nothing is installed.
# All progress goes to stderr so callers can capture stdout as the path.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pin_dir="$repo_root/tools/codex"
install_dir="$repo_root/.tools/codex"
find_only=0

while [[ $# -gt 0 ]]; do
  case "$1" in
    --dir)
      [[ $# -ge 2 ]] || { echo "install-codex: --dir needs a value" >&2; exit 2; }
      install_dir="$2"
      shift 2
      ;;
    --find) find_only=1; shift ;;
    --pinned-version) find_only=2; shift ;;
    -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install-codex: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

pinned_version=""
while IFS= read -r line; do
  if [[ "$line" =~ \"@openai/codex\":[[:space:]]*\"([^\"]*)\" ]]; then
    pinned_version="${BASH_REMATCH[1]}"
    break
  fi
done <"$pin_dir/package.json"
if [[ -z "$pinned_version" ]]; then
  echo "install-codex: no @openai/codex version pinned in $pin_dir/package.json" >&2
  exit 1
fi
if [[ "$find_only" == 2 ]]; then
  echo "$pinned_version"
  exit 0
fi

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) platform_pkg="codex-linux-x64" ;;
  Linux-aarch64 | Linux-arm64) platform_pkg="codex-linux-arm64" ;;
  Darwin-x86_64) platform_pkg="codex-darwin-x64" ;;
  Darwin-arm64) platform_pkg="codex-darwin-arm64" ;;
  *)
    echo "install-codex: unsupported platform $(uname -s)-$(uname -m)" >&2
    exit 1
    ;;
esac

# The triple directory under vendor/ differs per platform (musl vs gnu, apple-darwin), so search
# for it instead of hard-coding it. The first match in sorted order, read without `| head`
# (which under pipefail can kill the writer with SIGPIPE).
find_native() {
  local vendor="$install_dir/node_modules/@openai/$platform_pkg/vendor" found
  [[ -d "$vendor" ]] || return 0
  found="$(find "$vendor" -path '*/bin/codex' -type f -perm -u+x 2>/dev/null | sort)"
  printf '%s\n' "${found%%$'\n'*}"
}

# A native binary counts as installed only when it runs and reports the pinned version; a
# half-finished earlier install or a stale version triggers a fresh `npm ci`.
native_is_current() {
  local bin="$1"
  [[ -n "$bin" && -x "$bin" ]] || return 1
  local reported
  reported="$("$bin" --version 2>/dev/null || true)"
  [[ "$reported" == *" $pinned_version" ]]
}

native="$(find_native)"
if native_is_current "$native" && cmp -s "$pin_dir/package-lock.json" "$install_dir/package-lock.json"; then
  echo "$native"
  exit 0
fi
if [[ "$find_only" == 1 ]]; then
  exit 1
fi

echo "install-codex: installing @openai/codex $pinned_version into $install_dir" >&2
mkdir -p "$install_dir"
cp "$pin_dir/package.json" "$pin_dir/package-lock.json" "$install_dir/"
(cd "$install_dir" && npm ci --no-audit --no-fund --loglevel=error) >&2

native="$(find_native)"
if ! native_is_current "$native"; then
  echo "install-codex: native codex binary for $platform_pkg not found or not version $pinned_version after npm ci" >&2
  exit 1
fi
echo "$native"
