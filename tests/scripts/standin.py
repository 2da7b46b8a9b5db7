#!/usr/bin/env python3
"""Stand-in for the three Rust daemons, so the script tests run without a build.

Run as baa-conductor / baa-codexd / baa-status-api (the harness copies it under those
names). It reads the same environment the launchd plists set and answers the probes the
runtime scripts use exactly as the real binaries do: conductor /healthz "ok\\n", /readyz,
/rolez, /v1/system/state and POST /v1/system/{pause,resume,drain}; codexd pretty JSON with
"status": "ok" and "mode": "app-server"; status-api /healthz and /v1/status. `--version`
prints "<name> 0.0.0-standin", `stop-child` that there is no child. SIGTERM stops it
cleanly.

The conductor keeps its mode in <state>/standin-system.json ($BAA_STATE_DIR, else
$BAA_RUNTIME_ROOT/state, as the real one; it survives restarts, as the real one's does) and
appends "METHOD PATH" per request to standin-requests.log there. <state>/standin-drain.json {"report": bool, "polls": n} shapes `drained`:
report false leaves the field out (a conductor from before worker mode); polls n answers
drained false n times while draining before true.
"""

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

SERVICE = os.path.basename(sys.argv[0])
STATE_DIR = os.environ.get("BAA_STATE_DIR", "").strip() or (
    os.path.join(os.environ["BAA_RUNTIME_ROOT"].strip(), "state") if os.environ.get("BAA_RUNTIME_ROOT", "").strip() else "")


def listen_address():
    if SERVICE == "baa-conductor":
        url = urlsplit(os.environ.get("BAA_CONDUCTOR_LOCAL_API", "http://127.0.0.1:4317"))
        return url.hostname, url.port
    if SERVICE == "baa-codexd":
        url = urlsplit(os.environ.get("BAA_CODEXD_LOCAL_API_BASE", "http://127.0.0.1:4319"))
        return url.hostname, url.port
    return os.environ.get("BAA_STATUS_API_HOST", "127.0.0.1"), int(os.environ.get("BAA_STATUS_API_PORT", "4318"))


def state_file(name):
    return os.path.join(STATE_DIR, name)


def read_json(name, default):
    try:
        with open(state_file(name)) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return default


def write_json(name, value):
    tmp = state_file(name + ".tmp")
    with open(tmp, "w") as handle:
        json.dump(value, handle)
    os.replace(tmp, state_file(name))


class Conductor:
    """The automation mode, persisted, and `drained` as standin-drain.json says."""

    def __init__(self):
        self.polls = 0

    def state(self, poll=True):
        data = read_json("standin-system.json", {"mode": "running", "version": 1})
        drain = read_json("standin-drain.json", {"report": True, "polls": 0})
        if drain.get("report", True):
            draining = data["mode"] == "draining"
            if draining and poll:
                self.polls += 1
            data["drained"] = draining and self.polls > drain.get("polls", 0)
        return data

    def set_mode(self, action):
        mode = {"pause": "paused", "resume": "running", "drain": "draining"}[action]
        data = read_json("standin-system.json", {"mode": "running", "version": 1})
        data = {"mode": mode, "version": data["version"] + 1}
        write_json("standin-system.json", data)
        self.polls = 0
        return self.state(poll=False)


CONDUCTOR = Conductor()


def routes():
    if SERVICE == "baa-conductor":
        return {
            "/healthz": ("text/plain", "ok\n"),
            "/readyz": ("text/plain", "ready\n"),
            "/rolez": ("text/plain", "leader\n"),
            "/v1/system/state": ("application/json", lambda: json.dumps({"ok": True, "data": CONDUCTOR.state()})),
        }
    if SERVICE == "baa-codexd":
        mode = os.environ.get("BAA_CODEXD_MODE", "")
        health = {"ok": True, "data": {"status": "ok", "mode": mode}}
        status = {"ok": True, "data": {"snapshot": {"daemon": {"mode": mode, "started": True}}}}
        return {
            "/healthz": ("application/json", json.dumps(health, indent=2) + "\n"),
            "/v1/codexd/status": ("application/json", json.dumps(status, indent=2) + "\n"),
        }
    return {
        "/healthz": ("application/json", '{"ok": true}\n'),
        "/v1/status": ("application/json", '{"ok": true, "data": {}}\n'),
    }


class Handler(BaseHTTPRequestHandler):
    table = {}

    def log_request_line(self):
        if SERVICE == "baa-conductor" and STATE_DIR:
            with open(state_file("standin-requests.log"), "a") as handle:
                handle.write("%s %s\n" % (self.command, self.path))

    def reply(self, status, kind, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.log_request_line()
        if self.path not in self.table:
            return self.reply(404, "application/json", '{"ok": false, "error": "not_found"}\n')
        kind, body = self.table[self.path]
        self.reply(200, kind, body() if callable(body) else body)

    def do_POST(self):
        self.log_request_line()
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        action = self.path.rsplit("/", 1)[-1]
        if SERVICE != "baa-conductor" or not self.path.startswith("/v1/system/") or action not in ("pause", "resume", "drain"):
            return self.reply(404, "application/json", '{"ok": false, "error": "not_found"}\n')
        self.reply(200, "application/json", json.dumps({"ok": True, "data": CONDUCTOR.set_mode(action)}))

    def log_message(self, *args):
        pass


def main():
    if sys.argv[1:] == ["--version"]:
        print("%s 0.0.0-standin" % SERVICE)
        return
    if sys.argv[1:] == ["stop-child"]:
        print("no app-server recorded in %s: nothing to stop" % (
            os.environ.get("BAA_CODEXD_STATE_DIR", "").strip()
            or os.path.join(os.environ.get("BAA_RUNTIME_ROOT", "").strip() or "?", "state", "codexd")))
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    Handler.table = routes()
    host, port = listen_address()
    server = ThreadingHTTPServer((host, port), Handler)
    print("%s (stand-in) listening on http://%s:%d" % (SERVICE, host, port), flush=True)
    print("%s (stand-in) args: %s" % (SERVICE, " ".join(sys.argv[1:])), file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
