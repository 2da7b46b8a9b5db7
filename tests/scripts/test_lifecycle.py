"""The node's lifecycle: upgrade.sh (install a new version, drain, restart in order with
health checks, roll back on failure), uninstall-launchd.sh (state kept unless --purge),
and the backup/restore procedure of docs/runtime/backup.md, run as written."""

import json
import os
import re
import shutil
import subprocess

from harness import DOMAIN, FAKES, LABELS, REPO, ScriptTest, http_get, http_post, real_bin_dir

UPGRADE_ORDER = ["codexd", "conductor", "status-api"]


def doc_block(name):
    """The shell block between <!-- name:start --> and <!-- name:end --> in backup.md."""
    text = (REPO / "docs" / "runtime" / "backup.md").read_text()
    match = re.search(r"<!-- %s:start -->\n```sh\n(.*?)```\n<!-- %s:end -->" % (name, name), text, re.S)
    assert match, "no %s block in docs/runtime/backup.md" % name
    return match.group(1)


def launchctl_steps(calls):
    """(verb, service) for every bootout/bootstrap/kickstart call, in order."""
    steps = []
    for call in calls:
        verb = call[0]
        if verb not in ("bootout", "bootstrap", "kickstart"):
            continue
        if verb == "kickstart" and "-k" in call:
            verb = "kickstart -k"
        target = call[-1]
        for service, label in LABELS.items():
            if target.endswith("/" + label) or target.endswith("/%s.plist" % label):
                steps.append((verb, service))
    return steps


def restart_steps(*services):
    steps = []
    for service in services:
        steps += [("bootout", service), ("bootstrap", service), ("kickstart", service)]
    return steps


class LifecycleTests(ScriptTest):
    def upgrade(self, bin_dir, *extra, timeout="10"):
        n = self.node
        return n.run("upgrade.sh", *n.target_args(), *n.config_args(bin_dir), *n.health_args(timeout),
                     "--skip-build", *extra, timeout=300)

    def install_standins(self):
        """Installs the python stand-ins, whatever BAA_TEST_BIN_DIR says: the drain tests
        script the stand-in conductor's `drained` answers (standin-drain.json), which a
        real conductor cannot be made to give."""
        n = self.node
        self.bootstrap_and_install(bin_dir=n.make_bin_dir(n.root / "standin", standin=True))

    def mode(self):
        status, body = http_get(self.node.url("conductor") + "/v1/system/state")
        self.assertEqual(status, 200, body)
        return json.loads(body)["data"]["mode"]

    def test_install_upgrade_forced_health_failure_rollback_uninstall(self):
        n = self.node
        self.bootstrap_and_install()
        self.check(self.reload())
        v1 = n.current_version()
        marker = n.runtime / "state" / "kept-across-upgrades"
        marker.write_text("state\n")

        # Upgrade to v2: drained (or said why not), restarted in order, mode back to running.
        v2_bin = n.make_bin_dir(n.root / "v2", flavor="v2")
        before = len(n.calls())
        proc = self.upgrade(v2_bin)
        self.check(proc)
        v2 = n.current_version()
        self.assertNotEqual(v2, v1)
        self.assertEqual(os.readlink(n.runtime / "bin" / "previous"), v1)
        self.assertEqual(launchctl_steps(n.calls()[before:]), restart_steps(*UPGRADE_ORDER))
        self.assertIn("upgraded %s -> %s" % (v1, v2), proc.stdout)
        self.assertRegex(proc.stdout, r"POST /v1/system/drain: mode draining")
        self.assertTrue("drained: nothing is running" in proc.stdout or "does not report drained" in proc.stdout, proc.stdout)
        self.assertIn("POST /v1/system/resume: mode running", proc.stdout)
        self.assertEqual(self.mode(), "running")

        # v3's conductor never listens: codexd is restarted, the conductor fails its health
        # check (one kickstart -k), then both go back to v2; status-api is never touched.
        v3_bin = n.make_bin_dir(n.root / "v3", {
            "conductor": "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'baa-conductor 9.9.9'; exit 0; }\n"
                         "echo 'v3: refusing to listen' >&2\nexec sleep 300\n"})
        before = len(n.calls())
        proc = self.upgrade(v3_bin, timeout="3")
        self.check(proc, 1)
        self.assertEqual(launchctl_steps(n.calls()[before:]),
                         restart_steps("codexd", "conductor") + [("kickstart -k", "conductor")]
                         + restart_steps("codexd", "conductor"))
        self.assertEqual(n.current_version(), v2)
        self.assertIn("upgrade to 9.9.9-", proc.stderr)
        self.assertIn("conductor is not healthy", proc.stderr)
        self.assertIn("rolling back to %s" % v2, proc.stderr)
        self.assertIn("rolled back: running %s again (codexd conductor restarted)" % v2, proc.stderr)
        self.assertEqual(http_get(n.url("conductor") + "/healthz"), (200, "ok\n"))
        self.assertEqual(self.mode(), "running")
        if os.path.isdir("/proc/self") and not real_bin_dir():
            # (A real v2 is a wrapper that execs the real binary, so only the stand-in's
            # command line still names the path launchd started.)
            with open("/proc/%d/cmdline" % n.pid("conductor"), "rb") as handle:
                self.assertIn(b"/bin/current/baa-conductor", handle.read())

        # Uninstall: bootout all three, plists gone, state and binaries kept.
        before = len(n.calls())
        proc = n.run("uninstall-launchd.sh", *n.target_args())
        self.check(proc)
        self.assertEqual([s for s in launchctl_steps(n.calls()[before:]) if s[0] == "bootout"],
                         [("bootout", s) for s in ["conductor", "codexd", "status-api"]])
        self.assertEqual(list(n.install.glob("*.plist")), [])
        self.assertEqual(marker.read_text(), "state\n")
        self.assertTrue((n.runtime / "bin" / v2 / "baa-conductor").exists())
        self.assertIn("kept %s and %s (--purge deletes them)" % (n.runtime, n.logs), proc.stdout)
        self.assertIn("kept the token file %s" % n.token_file, proc.stdout)
        self.assertTrue(n.token_file.exists())

    def test_upgrade_with_a_new_codex_stops_the_app_server_codexd_would_re_attach(self):
        # Unix mode: a restarted codexd re-attaches the app-server left running, which would
        # keep the old codex after an upgrade that changed it.
        n = self.node
        self.bootstrap_and_install()
        self.check(self.reload())
        new_codex = n.root / "codex-next"
        shutil.copy(FAKES / "codex", new_codex)
        proc = self.upgrade(n.make_bin_dir(n.root / "v2", flavor="v2"), "--codex-command", str(new_codex))
        self.check(proc)
        self.assertIn("codex changes (%s -> %s): stopping codexd's app-server" % (FAKES / "codex", new_codex), proc.stdout)
        self.assertIn("nothing to stop", proc.stdout)
        self.assertEqual(n.plist("codexd")["EnvironmentVariables"]["BAA_CODEXD_SERVER_COMMAND"], str(new_codex))
        # The same codex: no stop.
        proc = self.upgrade(n.make_bin_dir(n.root / "v3", flavor="v3"), "--codex-command", str(new_codex))
        self.check(proc)
        self.assertNotIn("codex changes", proc.stdout)

    def test_upgrade_to_the_installed_build_does_nothing(self):
        n = self.node
        self.bootstrap_and_install()
        self.check(self.reload())
        before = len(n.calls())
        proc = self.upgrade(n.bin)
        self.check(proc)
        self.assertIn("already running %s; nothing to upgrade" % n.current_version(), proc.stdout)
        self.assertEqual(launchctl_steps(n.calls()[before:]), [])

    def test_upgrade_needs_an_installed_node(self):
        n = self.node
        self.bootstrap()
        proc = self.upgrade(n.bin)
        self.check(proc, 2)
        self.assertIn("install first", proc.stderr)

    def test_upgrade_waits_for_drained_and_restores_a_paused_mode(self):
        n = self.node
        self.install_standins()
        self.check(self.reload())
        self.assertEqual(http_post(n.url("conductor") + "/v1/system/pause", {"requested_by": "op"})[0], 200)
        (n.runtime / "state" / "standin-drain.json").write_text('{"report": true, "polls": 3}')
        proc = self.upgrade(n.make_bin_dir(n.root / "v2", flavor="v2", standin=True))
        self.check(proc)
        self.assertIn("mode before the upgrade: paused", proc.stdout)
        self.assertIn("drained: nothing is running", proc.stdout)
        self.assertIn("POST /v1/system/pause: mode paused", proc.stdout)
        requests = (n.runtime / "state" / "standin-requests.log").read_text().splitlines()
        drain = requests.index("POST /v1/system/drain")
        # Polled until drained (3 false answers, then true), and only then restarted.
        self.assertGreaterEqual(requests[drain:].count("GET /v1/system/state"), 4)
        self.assertEqual(self.mode(), "paused")

    def test_upgrade_does_not_wait_for_a_conductor_without_drained(self):
        n = self.node
        self.install_standins()
        self.check(self.reload())
        (n.runtime / "state" / "standin-drain.json").write_text('{"report": false}')
        proc = self.upgrade(n.make_bin_dir(n.root / "v2", flavor="v2", standin=True))
        self.check(proc)
        self.assertIn('this conductor does not report drained (no "drained" in GET /v1/system/state); not waiting', proc.stdout)
        self.assertEqual(self.mode(), "running")

    def test_upgrade_abandons_when_the_drain_does_not_finish(self):
        n = self.node
        self.install_standins()
        self.check(self.reload())
        v1 = n.current_version()
        (n.runtime / "state" / "standin-drain.json").write_text('{"report": true, "polls": 1000000}')
        before = len(n.calls())
        proc = self.upgrade(n.make_bin_dir(n.root / "v2", flavor="v2", standin=True), "--drain-timeout", "1")
        self.check(proc, 1)
        self.assertIn("not drained after 1s; abandoning the upgrade (nothing was restarted)", proc.stderr)
        self.assertEqual(n.current_version(), v1)
        self.assertEqual(launchctl_steps(n.calls()[before:]), [])
        self.assertEqual(self.mode(), "running")

    def test_uninstall_dry_run_and_purge(self):
        n = self.node
        self.bootstrap_and_install()
        self.check(self.reload())
        proc = n.run("uninstall-launchd.sh", *n.target_args(), "--purge", "--dry-run")
        self.check(proc)
        self.assertIn("+ launchctl bootout %s/so.makefile.baa-conductor" % DOMAIN, proc.stdout)
        self.assertIn("+ rm -rf", proc.stdout)
        # codexd's unix-mode app-server would outlive an uninstalled codexd: stopped too.
        self.assertIn("/baa-codexd stop-child", proc.stdout)
        self.assertTrue(n.plist_path("conductor").exists())
        self.assertTrue((n.runtime / "state").exists())
        proc = n.run("uninstall-launchd.sh", *n.target_args(), "--purge", "--service", "codexd")
        self.check(proc, 2)
        self.assertIn("use it without --service", proc.stderr)
        # --purge never deletes a directory that is not its own.
        proc = n.run("uninstall-launchd.sh", *n.target_args(), "--purge", "--logs-dir", str(n.home))
        self.check(proc, 2)
        self.assertIn("refusing to purge logs dir", proc.stderr)
        self.assertTrue(n.plist_path("conductor").exists(), "a refused purge booted something out")
        proc = n.run("uninstall-launchd.sh", *n.target_args(), "--purge")
        self.check(proc)
        self.assertFalse(n.runtime.exists())
        self.assertFalse(n.logs.exists())
        self.assertTrue(n.token_file.exists())
        self.assertEqual(list(n.install.glob("*.plist")), [])


class BackupTests(ScriptTest):
    def test_restore_from_backup_into_another_root_starts_the_stack(self):
        n = self.node
        self.bootstrap_and_install()
        self.check(self.reload())
        status, body = http_post(n.url("conductor") + "/v1/system/pause",
                                 {"requested_by": "backup-test", "reason": "before the backup"})
        self.assertEqual(status, 200, body)
        (n.runtime / "state" / "operator-note").write_text("restored\n")
        self.check(n.run("stop-launchd.sh", *n.target_args()))

        backup = n.root / "backup"
        env = dict(n.env, BAA_ROOT=str(n.runtime), BAA_LOGS=str(n.logs), BACKUP=str(backup))
        proc = subprocess.run(["bash", "-euc", doc_block("backup")], env=env, cwd=str(REPO),
                              capture_output=True, text=True, timeout=120)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertEqual(oct(backup.stat().st_mode & 0o777), oct(0o700))

        # Restore into a new root and logs dir, token file gone as on a new Mac.
        root, logs = n.root / "restored root", n.root / "restored logs"
        n.token_file.unlink()
        env = dict(n.env, BAA_ROOT=str(root), BAA_LOGS=str(logs), BACKUP=str(backup))
        proc = subprocess.run(["bash", "-euc", doc_block("restore")], env=env, cwd=str(REPO),
                              capture_output=True, text=True, timeout=120)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertEqual(oct(n.token_file.stat().st_mode & 0o777), oct(0o600))
        self.assertEqual((root / "state" / "operator-note").read_text(), "restored\n")

        layout = ["--root", str(root), "--logs-dir", str(logs)]
        self.bootstrap(*layout)
        self.check(n.run("install-launchd.sh", *n.target_args(), *n.config_args(), *layout))
        self.check(self.reload())
        self.assertEqual(n.plist("conductor")["EnvironmentVariables"]["BAA_RUNTIME_ROOT"], str(root))
        status, body = http_get(n.url("conductor") + "/v1/system/state")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["data"]["mode"], "paused", body)
        self.check(n.run("check-node.sh", *n.target_args(), *n.config_args(), *layout, "--check-loaded"))
