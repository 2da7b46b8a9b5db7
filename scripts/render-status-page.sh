#!/usr/bin/env bash
# Renders a running baa-status-api page to a PNG with headless Chromium, so a person can
# check what the page looks like (or attach it to a report) without a desktop session.
#
#   scripts/render-status-page.sh [URL] [OUT.png] [WIDTHxHEIGHT]
#   defaults: http://127.0.0.1:4318/  status-page.png  1280x1000
#
# Needs `chromium` (Debian: apt-get install -y chromium) or Google Chrome on macOS.
# Not part of the automated tests.
set -euo pipefail

url="${1:-http://127.0.0.1:4318/}"
out="${2:-status-page.png}"
size="${3:-1280x1000}"

browser=""
for candidate in chromium chromium-browser google-chrome \
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome" \
    "/Applications/Chromium.app/Contents/MacOS/Chromium"; do
  if command -v "$candidate" >/dev/null 2>&1 || [ -x "$candidate" ]; then
    browser="$candidate"
    break
  fi
done
if [ -z "$browser" ]; then
  echo "render-status-page: no Chromium found; on Debian: sudo apt-get update && sudo apt-get install -y chromium" >&2
  exit 1
fi

if ! curl -fsS --max-time 5 -o /dev/null "$url"; then
  echo "render-status-page: $url does not answer; is baa-status-api running?" >&2
  exit 1
fi

profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
# A throwaway profile and no background traffic: the screenshot must not touch the
# user's browser state or the network beyond the page itself.
"$browser" --headless --no-sandbox --disable-gpu --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --hide-scrollbars --user-data-dir="$profile" \
  --screenshot="$out" --window-size="${size/x/,}" "$url" >/dev/null 2>&1
echo "render-status-page: wrote $out"
