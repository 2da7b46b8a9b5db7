# shellcheck shell=bash disable=SC2034,SC2154 # globals live across the sourced files
# URLs and HTTP: parsing bases, probing /healthz and friends with curl (bounded by
# --connect-timeout and --max-time), POSTing a JSON body, reading a field of a JSON answer.

normalize_url() {
  local url="$1"
  while [[ "$url" == */ ]]; do
    url="${url%/}"
  done
  printf '%s\n' "$url"
}

# Host part of http://host:port/..., without IPv6 brackets.
url_host() {
  local rest="${1#*://}"
  rest="${rest%%/*}"
  if [[ "$rest" == \[* ]]; then
    rest="${rest#[}"
    printf '%s\n' "${rest%%]*}"
  else
    printf '%s\n' "${rest%%:*}"
  fi
}

url_port() {
  local url="$1"
  local rest="${url#*://}"
  rest="${rest%%/*}"
  rest="${rest##*]}"
  if [[ "$rest" == *:* ]]; then
    printf '%s\n' "${rest##*:}"
  elif [[ "$url" == https://* ]]; then
    printf '443\n'
  else
    printf '80\n'
  fi
}

# A URL host for probing a service that listens on host: wildcard binds are probed on loopback.
probe_host() {
  case "$1" in
    "" | 0.0.0.0) printf '127.0.0.1\n' ;;
    :: | "[::]") printf '[::1]\n' ;;
    *:*) printf '[%s]\n' "$1" ;;
    *) printf '%s\n' "$1" ;;
  esac
}

# The URL a client on the node uses for a base: a daemon given a Tailscale address also
# listens on 127.0.0.1 at the same port, and the tailnet may not be up yet (or, in tests,
# ever), so it is probed there.
loopback_base() {
  local base="$1" host
  host="$(url_host "$base")"
  if is_tailscale_ipv4 "$host"; then
    printf 'http://127.0.0.1:%s\n' "$(url_port "$base")"
  else
    printf '%s\n' "$base"
  fi
}

CURL_LAST_EXIT_CODE=0
CURL_LAST_HTTP_STATUS="000"
CURL_LAST_ERROR=""
CURL_LAST_BODY=""
BAA_RUNTIME_TMP=""

# Call directly, never in $(...): the trap and the variable must live in this shell.
ensure_runtime_tmp() {
  if [[ -z "$BAA_RUNTIME_TMP" ]]; then
    BAA_RUNTIME_TMP="$(mktemp -d "${TMPDIR:-/tmp}/baa-runtime.XXXXXX")"
    trap 'rm -rf "$BAA_RUNTIME_TMP"' EXIT
  fi
}

# One curl call; succeeds on a 2xx answer. Records the result in CURL_LAST_*.
http_request() {
  local tmp status
  ensure_runtime_tmp
  tmp="$BAA_RUNTIME_TMP"
  rm -f "${tmp}/body" "${tmp}/err"
  CURL_LAST_EXIT_CODE=0
  status="$(curl -sS -g --connect-timeout 1 --max-time "${BAA_RUNTIME_CURL_MAX_TIME:-3}" \
    -o "${tmp}/body" -w '%{http_code}' "$@" 2>"${tmp}/err")" || CURL_LAST_EXIT_CODE=$?
  CURL_LAST_HTTP_STATUS="${status:-000}"
  CURL_LAST_ERROR="$(cat "${tmp}/err" 2>/dev/null || true)"
  CURL_LAST_BODY="$(cat "${tmp}/body" 2>/dev/null || true)"
  [[ "$CURL_LAST_EXIT_CODE" -eq 0 && "$CURL_LAST_HTTP_STATUS" == 2?? ]]
}

# GET url.
http_probe() {
  http_request "$1"
}

# POST a JSON body to url.
http_post_json() {
  http_request -X POST -H 'Content-Type: application/json' --data-binary "$2" "$1"
}

# The value of a string or boolean field "key" in a JSON text (the first one), e.g.
# json_field "$CURL_LAST_BODY" mode → running. Exit 1 when absent. Enough for the flat
# fields the scripts read (mode, drained); not a JSON parser.
json_field() {
  local re="\"$2\"[[:space:]]*:[[:space:]]*(\"([^\"]*)\"|true|false|null)"
  [[ "$1" =~ $re ]] || return 1
  if [[ -n "${BASH_REMATCH[2]}" || "${BASH_REMATCH[1]}" == '""' ]]; then
    printf '%s\n' "${BASH_REMATCH[2]}"
  else
    printf '%s\n' "${BASH_REMATCH[1]}"
  fi
}

# Poll url until it answers 2xx or health_timeout seconds pass. Always probes at least once.
wait_for_health() {
  local service="$1" url="$2" deadline
  deadline=$((SECONDS + ${health_timeout%.*}))
  while :; do
    if http_probe "$url"; then
      runtime_log "${service} is healthy at ${url}"
      return 0
    fi
    if ((SECONDS >= deadline)); then
      return 1
    fi
    sleep "$health_interval"
  done
}

# The base URL of a service, read from its installed plist.
service_base_url() {
  local service="$1" plist="$2" base host port
  case "$service" in
    conductor)
      base="$(plist_get_or_default "$plist" ":EnvironmentVariables:BAA_CONDUCTOR_LOCAL_API" "$BAA_RUNTIME_DEFAULT_LOCAL_API")"
      ;;
    codexd)
      base="$(plist_get_or_default "$plist" ":EnvironmentVariables:BAA_CODEXD_LOCAL_API_BASE" "$BAA_RUNTIME_DEFAULT_CODEXD_LOCAL_API")"
      ;;
    status-api)
      host="$(plist_get_or_default "$plist" ":EnvironmentVariables:BAA_STATUS_API_HOST" "$BAA_RUNTIME_DEFAULT_STATUS_API_HOST")"
      port="$(plist_get_or_default "$plist" ":EnvironmentVariables:BAA_STATUS_API_PORT" "$BAA_RUNTIME_DEFAULT_STATUS_API_PORT")"
      base="http://$(probe_host "$host"):${port}"
      ;;
  esac
  loopback_base "$(normalize_url "$base")"
}

# The /healthz URL of a service, read from its installed plist.
service_health_url() {
  printf '%s/healthz\n' "$(service_base_url "$1" "$2")"
}
