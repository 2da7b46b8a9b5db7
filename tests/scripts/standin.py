#!/usr/bin/env python3
"""Stand-in for the three Rust daemons while they are being written.

Run as baa-conductor / baa-codexd / baa-status-api (the harness links it under those
names). It reads the same environment the launchd plists set and answers the probes the
runtime scripts use exactly as the real binaries do: conductor /healthz "ok\\n", /readyz,
/rolez; codexd pretty JSON with "status": "ok" and "mode": "app-server"; status-api
/healthz and /v1/status. SIGTERM stops it cleanly.
"""

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

SERVICE = os.path.basename(sys.argv[0])


def listen_address():
    if SERVICE == "baa-conductor":
        url = urlsplit(os.environ.get("BAA_CONDUCTOR_LOCAL_API", "http://127.0.0.1:4317"))
        return url.hostname, url.port
    if SERVICE == "baa-codexd":
        url = urlsplit(os.environ.get("BAA_CODEXD_LOCAL_API_BASE", "http://127.0.0.1:4319"))
        return url.hostname, url.port
    return os.environ.get("BAA_STATUS_API_HOST", "127.0.0.1"), int(os.environ.get("BAA_STATUS_API_PORT", "4318"))


def routes():
    if SERVICE == "baa-conductor":
        return {
            "/healthz": ("text/plain", "ok\n"),
            "/readyz": ("text/plain", "ready\n"),
            "/rolez": ("text/plain", "leader\n"),
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

    def do_GET(self):
        kind, body = self.table.get(self.path, ("application/json", '{"ok": false, "error": "not_found"}\n'))
        data = body.encode()
        self.send_response(200 if self.path in self.table else 404)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def main():
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
