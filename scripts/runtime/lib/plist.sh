# shellcheck shell=bash disable=SC2034,SC2154 # globals live across the sourced files
# Reading and validating property lists (plutil on macOS, plist.py anywhere).

plist_lint() {
  if command -v plutil >/dev/null 2>&1; then
    plutil -lint "$1" >/dev/null
  else
    python3 "$BAA_RUNTIME_PLIST_PY" lint "$1" >/dev/null
  fi
}

# Value at a PlistBuddy-style key path (":EnvironmentVariables:HOME"); empty when missing.
plist_get() {
  python3 "$BAA_RUNTIME_PLIST_PY" get "$1" "$2" 2>/dev/null || true
}

plist_get_or_default() {
  local value=""
  if [[ -f "$1" ]]; then
    value="$(plist_get "$1" "$2")"
  fi
  if [[ -n "$value" ]]; then
    printf '%s\n' "$value"
  else
    printf '%s\n' "$3"
  fi
}

