# shellcheck shell=bash disable=SC2034,SC2154 # globals live across the sourced files
# The address the conductor and status-api listen on. Default: the node's Tailscale IPv4
# when `tailscale ip -4` answers (the API is then reachable from the tailnet and nowhere
# else), else 127.0.0.1. Never an address written into the scripts: every node has its own.

listen_host=""
listen_host_source=""

is_ipv4() {
  [[ "$1" =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]]
}

# Inside 100.64.0.0/10, the range Tailscale hands out.
is_tailscale_ipv4() {
  local second
  is_ipv4 "$1" || return 1
  [[ "$1" == 100.* ]] || return 1
  second="${1#100.}"
  second="${second%%.*}"
  ((10#$second >= 64 && 10#$second <= 127))
}

is_loopback_host() {
  case "$1" in
    localhost | ::1 | 127.*) return 0 ;;
    *) return 1 ;;
  esac
}

# host[:port] → URL authority (IPv6 in brackets).
url_authority() {
  case "$1" in
    *:*) printf '[%s]:%s\n' "$1" "$2" ;;
    *) printf '%s:%s\n' "$1" "$2" ;;
  esac
}

# The tailscale CLI: on PATH, else the one inside the macOS app.
tailscale_command() {
  local app="/Applications/Tailscale.app/Contents/MacOS/Tailscale"
  if command -v tailscale >/dev/null 2>&1; then
    command -v tailscale
  elif [[ -x "$app" ]]; then
    printf '%s\n' "$app"
  else
    return 1
  fi
}

# Sets listen_host and listen_host_source (a phrase saying where it came from).
resolve_listen_host() {
  local cmd out="" addr
  if [[ -n "$listen_host" ]]; then
    listen_host_source="--listen-host"
  elif ! cmd="$(tailscale_command)"; then
    listen_host="127.0.0.1"
    listen_host_source="tailscale is not installed"
  elif ! out="$(run_bounded 5 "$cmd" ip -4 2>/dev/null)"; then
    listen_host="127.0.0.1"
    listen_host_source="\`tailscale ip -4\` did not answer"
  else
    addr="$(first_line "$out")"
    if is_tailscale_ipv4 "$addr"; then
      listen_host="$addr"
      listen_host_source="tailscale ip -4"
    else
      listen_host="127.0.0.1"
      listen_host_source="\`tailscale ip -4\` gave no Tailscale address"
    fi
  fi
  if ! is_loopback_host "$listen_host" && ! is_tailscale_ipv4 "$listen_host"; then
    usage_error "--listen-host must be a loopback address or a Tailscale 100.64.0.0/10 address (the daemons refuse anything else), got: $listen_host; the conductor's host name is --conductor-host"
  fi
}

# One line for the operator, printed before anything is written.
describe_listen_host() {
  if [[ -z "$listen_host" ]]; then
    printf 'listen host: not looked up (the listen URLs were given)\n'
  elif [[ "$listen_host_source" == "tailscale ip -4" || "$listen_host_source" == "--listen-host" ]]; then
    printf 'listen host: %s (from %s)\n' "$listen_host" "$listen_host_source"
  else
    printf 'listen host: %s (%s; --listen-host ADDRESS to choose)\n' "$listen_host" "$listen_host_source"
  fi
}
