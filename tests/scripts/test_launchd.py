"""reload/restart/start/stop/status-launchd.sh, check-node.sh and install-mini.sh against
the fake launchctl, which really runs the installed programs on free loopback ports."""

import json
import os
import shutil
import subprocess
import sys

from harness import (
    DOMAIN, FAKES, LABELS, SERVICES, TOKEN, ScriptTest, alive, http_get, real_bin_dir, write_exe,
)


class ReloadTests(ScriptTest):
    def test_reload_starts_everything_and_waits_for_health(self):
        n = self.node
        self.bootstrap_and_install()
        proc = self.reload()
        self.check(proc)
        calls = n.calls()
        for service in SERVICES:
            label = LABELS[service]
            self.assertIn(["bootstrap", DOMAIN, str(n.plist_path(service))], calls)
            self.assertIn(["kickstart", "%s/%s" % (DOMAIN, label)], calls)
            self.assertIn("%s is healthy at %s/healthz" % (service, n.url(service)), proc.stdout)
        self.assertFalse([c for c in calls if c[:2] == ["kickstart", "-k"]], "no retry expected")
        self.assertFalse([c for c in calls if c[0] == "bootout"], "nothing was loaded before")
        self.assertEqual(http_get(n.url("conductor") + "/healthz"), (200, "ok\n"))
        # The daemons run from bin/current with the plist's environment and the checkout as cwd.
        if os.path.isdir("/proc/self"):
            self.assertEqual(os.readlink("/proc/%d/cwd" % n.pid("codexd")), str(n.repo))
        self.assertTrue((n.logs / "launchd" / "so.makefile.baa-conductor.out.log").exists())

        # A second reload boots the old jobs out first (their processes get SIGTERM).
        old = {s: n.pid(s) for s in SERVICES}
        proc = self.reload()
        self.check(proc)
        for service in SERVICES:
            self.assertIn(["bootout", "%s/%s" % (DOMAIN, LABELS[service])], n.calls())
            self.assertFalse(alive(old[service]), service)
            self.assertNotEqual(n.pid(service), old[service])

    def test_token_reaches_the_conductor_by_file_not_environment(self):
        # Every command the conductor execs can read its environment (/proc/$PPID/environ).
        n = self.node
        self.bootstrap_and_install()
        self.check(self.reload())
        pid = n.pid("conductor")
        if os.path.isdir("/proc/self"):
            with open("/proc/%d/environ" % pid, "rb") as handle:
                environ = handle.read().decode(errors="replace").split("\0")
            self.assertNotIn(TOKEN, "\n".join(environ))
            self.assertIn("BAA_SHARED_TOKEN_FILE=%s" % n.token_file, environ)
        if real_bin_dir():
            status, body = http_get(n.url("conductor") + "/v1/runtime")
            self.assertEqual(status, 200)
            self.assertIs(json.loads(body)["data"]["controlApi"]["hasSharedToken"], True, body)

    def test_restart_is_reload_for_one_service(self):
        n = self.node
        self.bootstrap_and_install()
        self.check(self.reload())
        before = n.pid("conductor")
        codexd_before = n.pid("codexd")
        proc = n.run("restart-launchd.sh", *n.target_args(), *n.health_args(), "--service", "codexd")
        self.check(proc)
        self.assertEqual(n.pid("conductor"), before)
        self.assertNotEqual(n.pid("codexd"), codexd_before)
        self.assertIn("codexd is healthy", proc.stdout)
        self.assertNotIn("conductor is healthy", proc.stdout)

    def test_reload_dry_run_prints_commands_only(self):
        n = self.node
        self.bootstrap_and_install()
        proc = self.reload("--dry-run")
        self.check(proc)
        lines = [l for l in proc.stdout.splitlines() if l.startswith("+ ")]
        self.assertEqual(lines[:2], [
            "+ launchctl bootout gui/501/so.makefile.baa-conductor",
            "+ launchctl bootstrap gui/501 %s" % str(n.plist_path("conductor")).replace(" ", "\\ "),
        ])
        self.assertIn("+ launchctl kickstart gui/501/so.makefile.baa-status-api", lines)
        self.assertEqual(len(lines), 9)
        self.assertEqual(n.calls(), [], "dry-run must not call launchctl")
        self.assertIsNone(n.pid("conductor"))
        proc = self.reload("--dry-run", "--service", "codexd", "--service", "codexd")
        self.check(proc)
        self.assertEqual([l for l in proc.stdout.splitlines() if l.startswith("+ ")], [
            "+ launchctl bootout gui/501/so.makefile.baa-codexd",
            "+ launchctl bootstrap gui/501 %s" % str(n.plist_path("codexd")).replace(" ", "\\ "),
            "+ launchctl kickstart gui/501/so.makefile.baa-codexd",
        ])
        proc = self.reload("--dry-run", "--all-services")
        self.check(proc)
        self.assertEqual(len([l for l in proc.stdout.splitlines() if l.startswith("+ ")]), 9)

    def test_unhealthy_service_gets_one_kickstart_k_then_diagnostics(self):
        # Was flaky on a loaded machine (issue 9 item 10): it asserted a wall-clock bound
        # (elapsed < 20 s measured 22.8 s at load 10). The behaviour is what matters: two
        # bounded waits, one kickstart -k between them, then diagnostics; and the healthy
        # services get a wait long enough for a loaded machine.
        n = self.node
        broken = n.make_bin_dir(n.root / "broken-bin", {
            "conductor": "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'baa-conductor 9.9.9'; exit 0; }\n"
                         "echo 'boom: refusing to listen' >&2\nexec sleep 300\n"})
        self.bootstrap_and_install(bin_dir=broken)
        proc = self.reload(timeout="4")
        self.check(proc, 1)
        retries = [c for c in n.calls() if c[:2] == ["kickstart", "-k"]]
        self.assertEqual(retries, [["kickstart", "-k", "%s/so.makefile.baa-conductor" % DOMAIN]])
        waits = [l for l in proc.stdout.splitlines() if l.startswith("[runtime] waiting up to 4s") and " conductor " in l]
        self.assertEqual(len(waits), 2, proc.stdout)
        err = proc.stderr
        self.assertIn("retrying launchctl kickstart -k gui/501/so.makefile.baa-conductor", err)
        self.assertIn("last curl result: exit=7 http=000", err)
        self.assertIn("launchctl print gui/501/so.makefile.baa-conductor:", err)
        self.assertIn("state = running", err)
        self.assertIn("BAA_SHARED_TOKEN_FILE => %s" % n.token_file, err)
        self.assertIn("boom: refusing to listen", err)
        self.assertIn("manual recovery hint: launchctl kickstart -k gui/501/so.makefile.baa-conductor", err)
        self.assertIn("launchd reload failed for: conductor", err)
        # The other services were still reloaded and are healthy.
        self.assertIn("codexd is healthy", proc.stdout)
        self.assertIn("status-api is healthy", proc.stdout)

    def test_service_recovers_after_the_retry(self):
        n = self.node
        flaky = n.make_bin_dir(n.root / "flaky-bin")
        marker = n.root / "first-start-done"
        good = flaky / "baa-status-api"
        good.rename(flaky / "good-status-api")
        write_exe(good, "#!/bin/sh\n[ \"$1\" = --version ] && exec '%s' --version\n"
                        "if [ ! -e '%s' ]; then touch '%s'; echo 'first start hangs' >&2; exec sleep 300; fi\n"
                        "exec '%s' \"$@\"\n" % (n.root / "good-status-api", marker, marker, n.root / "good-status-api"))
        # The wrapper runs the real program from outside the version dir (it is not copied).
        (flaky / "good-status-api").rename(n.root / "good-status-api")
        self.bootstrap_and_install(bin_dir=flaky)
        proc = self.reload(timeout="4")
        self.check(proc)
        self.assertIn("status-api recovered after retry kickstart", proc.stdout)
        retries = [c for c in n.calls() if c[:2] == ["kickstart", "-k"]]
        self.assertEqual(len(retries), 1)
        self.assertNotIn("manual recovery hint", proc.stderr)

    def test_skip_kickstart_fails_without_retry(self):
        n = self.node
        broken = n.make_bin_dir(n.root / "broken-bin", {"codexd": "#!/bin/sh\nexit 3\n"})
        self.bootstrap_and_install(bin_dir=broken)
        proc = self.reload("--service", "codexd", "--skip-kickstart", timeout="1")
        self.check(proc, 1)
        self.assertFalse([c for c in n.calls() if c[0] == "kickstart"])
        self.assertIn("stayed unhealthy after reload with --skip-kickstart", proc.stderr)


class StartStopStatusTests(ScriptTest):
    def test_stop_start_and_status(self):
        n = self.node
        self.bootstrap_and_install()
        self.check(self.reload())
        pids = {s: n.pid(s) for s in SERVICES}

        proc = n.run("status-launchd.sh", *n.target_args())
        self.check(proc)
        self.assertIn("=== codexd ===", proc.stdout)
        self.assertIn("launchd: loaded in gui/501", proc.stdout)
        self.assertIn("pid = %d" % pids["conductor"], proc.stdout)
        self.assertIn("healthz: ok", proc.stdout)
        self.assertIn("codexd      up · child ", proc.stdout)
        self.assertIn("plist_lint: ok", proc.stdout)

        proc = n.run("stop-launchd.sh", *n.target_args(), "--service", "status-api", "--dry-run")
        self.check(proc)
        self.assertEqual(proc.stdout.strip(), "+ launchctl bootout gui/501/so.makefile.baa-status-api")

        proc = n.run("stop-launchd.sh", *n.target_args())
        self.check(proc)
        for service in SERVICES:
            self.assertFalse(alive(pids[service]), "%s still running after stop" % service)
        proc = n.run("status-launchd.sh", *n.target_args())
        self.check(proc)
        self.assertIn("launchd: not loaded in gui/501", proc.stdout)
        self.assertIn("healthz: connection refused (nothing listens)", proc.stdout)
        # Stopping again is harmless.
        self.check(n.run("stop-launchd.sh", *n.target_args()))

        proc = n.run("start-launchd.sh", *n.target_args(), *n.health_args())
        self.check(proc)
        for service in SERVICES:
            self.assertTrue(alive(n.pid(service)), service)
            self.assertIn("%s is healthy" % service, proc.stdout)
        # Starting a loaded service only kickstarts it.
        before = len([c for c in n.calls() if c[0] == "bootstrap"])
        self.check(n.run("start-launchd.sh", *n.target_args(), *n.health_args(), "--service", "codexd"))
        self.assertEqual(len([c for c in n.calls() if c[0] == "bootstrap"]), before)

    def test_status_with_a_long_body_is_not_killed_by_sigpipe(self):
        # Regression (issue 9 item 10): status-launchd.sh exited 141 when `printf body |
        # head -n 1` closed the pipe before printf had written a long /v1/status body.
        n = self.node
        server = (
            "#!%s\nimport os\nfrom http.server import BaseHTTPRequestHandler, ThreadingHTTPServer\n"
            "BODY = ('{\"line\": \"' + 'x' * 200 + '\"}\\n') * 20000\n"
            "class H(BaseHTTPRequestHandler):\n"
            "    def do_GET(self):\n"
            "        data = BODY.encode()\n"
            "        self.send_response(200); self.send_header('Content-Length', str(len(data))); self.end_headers()\n"
            "        self.wfile.write(data)\n"
            "    def log_message(self, *a): pass\n"
            "import sys\n"
            "if sys.argv[1:] == ['--version']: print('baa-status-api 0.0.0-long'); sys.exit(0)\n"
            "ThreadingHTTPServer((os.environ['BAA_STATUS_API_HOST'], int(os.environ['BAA_STATUS_API_PORT'])), H).serve_forever()\n"
        ) % __import__("sys").executable
        long_bin = n.make_bin_dir(n.root / "long-bin", {"status-api": server})
        self.bootstrap_and_install(bin_dir=long_bin)
        self.check(self.reload())
        for _ in range(5):
            proc = n.run("status-launchd.sh", *n.target_args(), "--service", "status-api")
            self.check(proc)
            line = [l for l in proc.stdout.splitlines() if l.startswith("v1/status: ")]
            self.assertEqual(line, ["v1/status: ok"], proc.stdout[:2000])


class CheckNodeTests(ScriptTest):
    def test_check_node_passes_on_a_healthy_node_and_fails_on_a_stopped_service(self):
        n = self.node
        self.bootstrap_and_install()
        self.check(self.reload())
        args = [*n.target_args(), *n.config_args(), "--check-loaded", "--expected-rolez", "leader"]
        proc = n.run("check-node.sh", *args)
        self.check(proc)
        out = proc.stdout
        self.assertIn("ok   static checks (check-launchd.sh)", out)
        self.assertIn("ok   codexd: port %d is listening" % n.ports["codexd"], out)
        self.assertIn("ok   conductor: process '%s/bin/current/baa-conductor start --conductor-host mini --role primary' is running" % n.runtime, out)
        self.assertIn('codexd /healthz: %s/healthz 200 contains "status": "ok"' % n.url("codexd"), out)
        self.assertIn('codexd /v1/codexd/status: %s/v1/codexd/status 200 contains "mode": "app-server"' % n.url("codexd"), out)
        self.assertIn("conductor /rolez", out)
        self.assertIn("status-api /v1/status", out)
        self.assertIn("log file %s/launchd/" % n.logs, out)

        self.check(n.run("stop-launchd.sh", *n.target_args(), "--service", "codexd"))
        proc = n.run("check-node.sh", *args)
        self.check(proc, 1)
        self.assertIn("FAIL codexd: nothing listens on port %d" % n.ports["codexd"], proc.stderr)
        self.assertIn("FAIL codexd: no process", proc.stderr)
        self.assertIn("FAIL codexd /healthz", proc.stderr)
        self.assertIn("not loaded", proc.stderr)

        proc = n.run("check-node.sh", *args, "--service", "conductor", "--expected-rolez", "standby", "--skip-static-check")
        self.check(proc, 1)
        self.assertIn("FAIL conductor /rolez", proc.stderr)

    def test_check_node_prints_the_codex_version_and_warns_off_the_pin(self):
        n = self.node
        self.bootstrap_and_install()
        self.check(self.reload())
        args = [*n.target_args(), *n.config_args(), "--service", "codexd", "--skip-static-check"]
        proc = n.run("check-node.sh", *args)
        self.check(proc)
        self.assertRegex(proc.stdout, r"ok   codex: \S+/fakes/codex is [0-9.]+ \(the pinned version\)")
        n.env["FAKE_CODEX_VERSION"] = "0.1.0"
        proc = n.run("check-node.sh", *args)
        self.check(proc)
        self.assertRegex(proc.stdout, r"warn codex: \S+/fakes/codex is 0\.1\.0, the pinned version is [0-9.]+")
        self.assertIn("(1 warning(s) above)", proc.stdout)
        # A codex that is not there (any more: install refuses a missing one) fails: codexd
        # could not start its child.
        shutil.copy(FAKES / "codex", n.root / "no-codex")
        self.bootstrap_and_install("--service", "codexd", "--codex-command", str(n.root / "no-codex"))
        (n.root / "no-codex").unlink()
        proc = n.run("check-node.sh", *args)
        self.check(proc, 1)
        self.assertIn("FAIL codex: %s is not an executable" % (n.root / "no-codex"), proc.stderr)


    def test_check_node_reports_an_app_server_no_codexd_owns_and_stop_with_child_runs_stop_child(self):
        n = self.node
        self.bootstrap_and_install()
        self.check(self.reload())
        env = n.plist("codexd")["EnvironmentVariables"]
        self.assertEqual(env["BAA_CODEXD_SERVER_ENDPOINT"], "unix://")
        sock = env["BAA_RUNTIME_ROOT"] + "/state/codexd/app-server.sock"
        # Something on codexd's socket that codexd does not report as its child.
        orphan = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)", "app-server", "--listen", "unix://" + sock])
        try:
            args = [*n.target_args(), *n.config_args(), "--service", "codexd", "--skip-static-check"]
            proc = n.run("check-node.sh", *args)
            self.check(proc, 1)
            self.assertIn("FAIL codexd: app-server pid %d on %s runs but no codexd owns it" % (orphan.pid, sock),
                          proc.stderr)
        finally:
            orphan.kill()
            orphan.wait()
        proc = n.run("stop-launchd.sh", *n.target_args(), "--service", "codexd", "--with-child", "--dry-run")
        self.check(proc)
        self.assertIn("launchctl bootout gui/501/so.makefile.baa-codexd", proc.stdout)
        self.assertIn("/baa-codexd stop-child", proc.stdout)
        # With the dirs of the installed plist: the root, and the rest given as unset.
        self.assertIn("BAA_RUNTIME_ROOT=%s " % env["BAA_RUNTIME_ROOT"].replace(" ", "\\ "), proc.stdout)
        self.assertIn("BAA_CODEXD_STATE_DIR= ", proc.stdout)


class InstallMiniTests(ScriptTest):
    def test_install_mini_end_to_end(self):
        n = self.node
        n.token_file.unlink()
        (n.token_file.parent / "runtime-secrets.env").write_text("BAA_SHARED_TOKEN=%s\n" % "mini-token-9")
        args = [*n.target_args(), *n.config_args(), *n.health_args(), "--skip-build"]
        proc = n.run("install-mini.sh", *args, "--dry-run")
        self.check(proc)
        self.assertNotIn("mini-token-9", proc.output)
        self.assertIn("would write %s" % n.token_file, proc.stdout)
        self.assertEqual(n.calls(), [])

        proc = n.run("install-mini.sh", *args)
        self.check(proc)
        self.assertNotIn("mini-token-9", proc.output)
        self.assertEqual(n.token_file.read_text(), "mini-token-9\n")
        self.assertEqual(oct(n.token_file.stat().st_mode & 0o777), oct(0o600))
        self.assertIn("check-node: all", proc.stdout)
        self.assertIn("mini install complete", proc.stdout)
        self.assertEqual(n.plist("conductor")["EnvironmentVariables"]["BAA_SHARED_TOKEN_FILE"], str(n.token_file))
        self.assertNotIn("BAA_SHARED_TOKEN", n.plist("conductor")["EnvironmentVariables"])
        self.assertTrue((n.runtime / "state").is_dir())
