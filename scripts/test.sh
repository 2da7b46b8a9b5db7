#!/usr/bin/env bash
# Runs every check and test of the project from a fresh clone:
# format, lints, unit + integration tests (real binaries, real codex app-server), the
# README's curl walk-through against `scripts/dev.sh --demo`, and the launchd/runtime script
# tests against the real binaries. Installs what it needs
# (the pinned @openai/codex into .tools/, shellcheck via apt when run as root).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings

step "test tools"
scripts/install-codex.sh >/dev/null
if ! command -v shellcheck >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck) >/dev/null 2>&1 \
      || echo "warning: could not install shellcheck; script lint tests will be skipped" >&2
  else
    echo "warning: shellcheck not installed; script lint tests will be skipped" >&2
  fi
fi

step "cargo test (unit + integration)"
cargo test

step "README walk-through against scripts/dev.sh --demo (default ports)"
scripts/walkthrough.sh

step "runtime script tests (real binaries)"
BAA_TEST_BIN_DIR="$PWD/target/debug" tests/scripts/run.sh
