#!/usr/bin/env bash
# Sourced by the bench scripts that drive a conductor against codexd on its built-in stub
# child: `announced` reads the address a daemon printed, `start_stub_codexd ROOT BIN`
# starts codexd under ROOT/cx and waits until its child runs, setting `codexd` (its URL)
# and `codexd_pid`.

# The `http://HOST:PORT` a daemon announced on the first line of its stdout file.
announced() {
    local out=$1 pid=$2 i line
    for ((i = 0; i < 300; i++)); do
        line=$(head -n 1 "$out" 2>/dev/null || true)
        if [[ $line == *" listening on http://"* ]]; then
            echo "${line##* listening on }"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "the daemon never announced its address; its log:" >&2
    tail -n 20 "${out%.out}.err" >&2
    return 1
}

start_stub_codexd() {
    local root=$1 bin=$2 i st
    mkdir -p "$root/cx"
    BAA_CODEXD_LOCAL_API_BASE=http://127.0.0.1:0 \
        BAA_CODEXD_STATE_DIR="$root/cx/state" \
        BAA_CODEXD_LOGS_DIR="$root/cx/logs" \
        BAA_CODEXD_SERVER_COMMAND="$bin/baa-codexd" \
        BAA_CODEXD_SERVER_ARGS=__stub-app-server \
        BAA_CODEXD_STUB_MODE=normal \
        RUST_LOG=warn \
        "$bin/baa-codexd" start >"$root/cx/codexd.out" 2>"$root/cx/codexd.err" &
    codexd_pid=$!
    codexd=$(announced "$root/cx/codexd.out" "$codexd_pid")
    for ((i = 0; i < 600; i++)); do
        st=$(curl -s "$codexd/v1/codexd/status" | jq -r '.data.snapshot.daemon.child.status' 2>/dev/null || true)
        [[ $st == running ]] && break
        sleep 0.05
    done
}
