#!/usr/bin/env bash
# The release conductor's `GET /v1/system/state` side by side with a one-worker nginx
# serving the same JSON body from a file, both on loopback, under wrk with keep-alive at
# 16 and 64 connections. Prints requests/s and p99 for each and the ratios
# (conductor / nginx). Numbers only: nothing passes or fails.
#
# Fair on a small box: each server is pinned to one core (SERVER_CPU, default 0) and wrk
# to another (CLIENT_CPU, default 1) with taskset, so the ratio compares two servers on
# the same single core instead of measuring how the scheduler shares cores between wrk
# and a server. Both servers run all along but only one is under load at a time.
#
# Installs nginx-light and wrk with apt when they are missing (as root). Runs ROUNDS
# rounds (default 3) of DURATION seconds (default 5) per server and concurrency,
# alternating the two servers (and which goes first) so a noisy neighbour hurts both
# alike, and prints the load average on every row: other work on the machine shows there.
#   scripts/bench/vs-nginx.sh              # build, then 3 rounds
#   ROUNDS=5 DURATION=10 scripts/bench/vs-nginx.sh
#   SERVER_CPU=2 CLIENT_CPU=3 scripts/bench/vs-nginx.sh
#   BAA_BENCH_BIN=/path/to/baa-conductor scripts/bench/vs-nginx.sh   # a prebuilt binary
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
# One wrk thread per core it is given.
THREADS=${THREADS:-1}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "vs-nginx: '$1' is missing; install package '$2' (apt-get install $2)" >&2
    exit 1
  fi
  echo "vs-nginx: installing $2" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y "$2" >/dev/null || {
    apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y "$2" >/dev/null
  }
}
need wrk wrk
need nginx nginx-light
need taskset util-linux
if [ "$SERVER_CPU" = "$CLIENT_CPU" ]; then
  echo "vs-nginx: SERVER_CPU and CLIENT_CPU must differ (one core for the server, another for wrk)" >&2
  exit 2
fi
for cpu in "$SERVER_CPU" "$CLIENT_CPU"; do
  if ! taskset -c "$cpu" true 2>/dev/null; then
    echo "vs-nginx: cannot pin to cpu $cpu (this machine has $(nproc) cores); set SERVER_CPU and CLIENT_CPU" >&2
    exit 2
  fi
done
# wrk pinned to the client core. The servers are started with taskset directly (not
# through a function, which would put a subshell between `$!` and the server): taskset
# execs the server, so `$!` is the server itself and the cleanup stops it.
on_client() { taskset -c "$CLIENT_CPU" "$@"; }
load() { cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || uptime | sed 's/.*load averages*: //'; }
NGINX=$(command -v nginx)

BIN=${BAA_BENCH_BIN:-}
if [ -z "$BIN" ]; then
  cargo build --release --bin baa-conductor
  BIN=target/release/baa-conductor
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/baa-vs-nginx.XXXXXX")
chmod 755 "$WORK" # nginx workers may run as another user and must read the body file
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() { # url
  for _ in $(seq 1 100); do
    curl -fsS -m 1 -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "vs-nginx: $1 did not answer" >&2
  exit 1
}

CPORT=$(free_port)
RUST_LOG=warn taskset -c "$SERVER_CPU" "$BIN" start --local-api "http://127.0.0.1:$CPORT" \
  --root "$WORK/conductor" >"$WORK/conductor.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$CPORT/healthz"

# nginx serves exactly what the conductor answers (same bytes, same content type).
mkdir -p "$WORK/www/v1/system" "$WORK/nginx"
curl -fsS "http://127.0.0.1:$CPORT/v1/system/state" >"$WORK/www/v1/system/state"
chmod -R a+rX "$WORK/www"
NPORT=$(free_port)
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 65;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  types { }
  default_type application/json;
  server {
    listen 127.0.0.1:$NPORT;
    root $WORK/www;
  }
}
EOF
taskset -c "$SERVER_CPU" "$NGINX" -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" \
  >"$WORK/nginx/stdout.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$NPORT/v1/system/state"

BYTES=$(wc -c <"$WORK/www/v1/system/state")
echo "body: $BYTES bytes of JSON; wrk -t$THREADS, ${DURATION}s per run, $ROUNDS rounds; $(nproc) cores: servers on cpu $SERVER_CPU, wrk on cpu $CLIENT_CPU; load $(load)"

# wrk → "req/s p99_ms"
measure() { # url conns
  local out rps p99
  out=$(on_client wrk -t"$THREADS" -c"$2" -d"${DURATION}s" --latency "$1")
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {v = $2; if (v ~ /us$/) {sub(/us$/, "", v); v /= 1000} else if (v ~ /ms$/) {sub(/ms$/, "", v)} else if (v ~ /s$/) {sub(/s$/, "", v); v *= 1000}; print v}' <<<"$out")
  if grep -q "Non-2xx\|Socket errors" <<<"$out"; then
    echo "vs-nginx: errors against $1: $(grep "Non-2xx\|Socket errors" <<<"$out")" >&2
  fi
  echo "$rps $p99"
}

printf '\n%-6s %-5s %12s %9s %12s %9s %9s %9s  %s\n' round conns "baa req/s" "baa p99" "nginx req/s" "ngx p99" "req/s x" "p99 x" "load (1/5/15 min)"
# One string of samples per connection count (no associative array: bash 3.2 has none).
SUM_16=""
SUM_64=""
for round in $(seq 1 "$ROUNDS"); do
  for c in 16 64; do
    # Alternate who goes first, so neither always meets a cache or a neighbour first.
    if [ $((round % 2)) = 1 ]; then
      read -r crps cp99 < <(measure "http://127.0.0.1:$CPORT/v1/system/state" "$c")
      read -r nrps np99 < <(measure "http://127.0.0.1:$NPORT/v1/system/state" "$c")
    else
      read -r nrps np99 < <(measure "http://127.0.0.1:$NPORT/v1/system/state" "$c")
      read -r crps cp99 < <(measure "http://127.0.0.1:$CPORT/v1/system/state" "$c")
    fi
    awk -v r="$round" -v c="$c" -v a="$crps" -v ap="$cp99" -v b="$nrps" -v bp="$np99" \
      -v l="$(load)" 'BEGIN { printf "%-6s %-5s %12.0f %9.3f %12.0f %9.3f %9.3f %9.3f  %s\n", r, c, a, ap, b, bp, a / b, ap / bp, l }'
    if [ "$c" = 16 ]; then
      SUM_16="$SUM_16 $crps:$cp99:$nrps:$np99"
    else
      SUM_64="$SUM_64 $crps:$cp99:$nrps:$np99"
    fi
  done
done

echo
echo "medians over $ROUNDS rounds (aim: req/s x >= 0.95, p99 x <= 1.5):"
for c in 16 64; do
  if [ "$c" = 16 ]; then sums="$SUM_16"; else sums="$SUM_64"; fi
  tr ' ' '\n' <<<"$sums" | grep . | awk -F: -v c="$c" '
    { a[NR] = $1; ap[NR] = $2; b[NR] = $3; bp[NR] = $4; n = NR }
    function med(x,   i, j, t, m) {
      for (i = 1; i <= n; i++) s[i] = x[i]
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (s[j] < s[i]) { t = s[i]; s[i] = s[j]; s[j] = t }
      m = (n % 2) ? s[(n + 1) / 2] : (s[n / 2] + s[n / 2 + 1]) / 2
      return m
    }
    END {
      A = med(a); AP = med(ap); B = med(b); BP = med(bp)
      printf "c=%-3s conductor %8.0f req/s p99 %7.3f ms | nginx %8.0f req/s p99 %7.3f ms | req/s x %.3f  p99 x %.3f\n", c, A, AP, B, BP, A / B, AP / BP
    }'
done
