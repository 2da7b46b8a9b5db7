#!/usr/bin/env python3
"""Tests for scripts/runtime/*.sh and the launchd/ templates, runnable on Linux.

Each test gets a fresh temporary HOME, install dir, repo dir (with " & <" in its name to
exercise XML escaping) and fake-launchctl state dir. tests/scripts/fakes/ goes first on
PATH: a fake `id` (uid 501, user tester) and a fake `launchctl` that really starts the
program named in ProgramArguments of the installed plist, with its EnvironmentVariables,
so reload/start/stop/check-node run against live processes on free loopback ports.

The daemons: by default a python stand-in (standin.py) copied under the three binary
names. Set BAA_TEST_BIN_DIR to a directory holding the real baa-conductor, baa-codexd and
baa-status-api (e.g. target/release) and the same tests drive the real binaries.

Only python3's standard library is used. Run through tests/scripts/run.sh.
"""

import json
import os
import plistlib
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SCRIPTS = REPO / "scripts" / "runtime"
TEMPLATES = REPO / "launchd"
FAKES = HERE / "fakes"
STANDIN = HERE / "standin.py"
SERVICES = ["conductor", "codexd", "status-api"]
LABELS = {s: "so.makefile.baa-%s" % s for s in SERVICES}
BINARIES = {s: "baa-%s" % s for s in SERVICES}
TOKEN = "s3cr&t<tok>\"en'42"
DOMAIN = "gui/501"
SCRIPT_NAMES = [
    "bootstrap.sh", "install-launchd.sh", "check-launchd.sh", "reload-launchd.sh",
    "restart-launchd.sh", "start-launchd.sh", "stop-launchd.sh", "status-launchd.sh",
    "check-node.sh", "install-mini.sh",
]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def real_bin_dir():
    value = os.environ.get("BAA_TEST_BIN_DIR")
    if not value:
        return None
    missing = [b for b in BINARIES.values() if not os.access(os.path.join(value, b), os.X_OK)]
    if missing:
        raise SystemExit("BAA_TEST_BIN_DIR=%s lacks executable %s" % (value, ", ".join(missing)))
    return Path(value).resolve()


def write_exe(path, text):
    path.write_text(text)
    path.chmod(0o755)


class Node:
    """One temporary node: home, repo, install dir, bin dir, fake launchd state, ports."""

    def __init__(self, root):
        self.root = root
        self.home = root / "home"
        self.repo = root / "repo & <co>"
        self.install = root / "LaunchAgents"
        self.state = root / "launchctl-state"
        self.bin = root / "bin"
        for d in (self.home, self.repo, self.state, self.bin):
            d.mkdir(parents=True)
        self.ports = {s: free_port() for s in SERVICES}
        self.make_bin_dir(self.bin)
        config = self.home / ".config" / "baa-conductor"
        config.mkdir(parents=True)
        (config / "shared-token.txt").write_text(TOKEN + "\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("BAA_")}
        env.update(
            HOME=str(self.home),
            PATH="%s:%s" % (FAKES, env.get("PATH", "/usr/bin:/bin")),
            FAKE_LAUNCHCTL_STATE=str(self.state),
            FAKE_ID_UID="501",
            FAKE_ID_USER="tester",
        )
        self.env = env

    def make_bin_dir(self, target, override=None):
        """Fill target with the three daemons; override maps service -> script text."""
        real = real_bin_dir()
        for service, name in BINARIES.items():
            dest = target / name
            if override and service in override:
                write_exe(dest, override[service])
            elif real:
                dest.symlink_to(real / name)
            else:
                text = STANDIN.read_text().replace("#!/usr/bin/env python3", "#!" + sys.executable, 1)
                write_exe(dest, text)

    def url(self, service):
        return "http://127.0.0.1:%d" % self.ports[service]

    def target_args(self):
        return ["--home", str(self.home), "--install-dir", str(self.install)]

    def config_args(self, bin_dir=None):
        return [
            "--repo-dir", str(self.repo),
            "--bin-dir", str(bin_dir or self.bin),
            "--local-api-base", self.url("conductor"),
            "--codexd-local-api-base", self.url("codexd"),
            "--status-api-host", "127.0.0.1",
            "--status-api-port", str(self.ports["status-api"]),
        ]

    def health_args(self, timeout="10"):
        return ["--health-timeout", timeout, "--health-interval", "0.1"]

    def run(self, script, *args, timeout=60):
        proc = subprocess.run(
            ["bash", str(SCRIPTS / script), *args],
            env=self.env, cwd=str(self.root), capture_output=True, text=True, timeout=timeout,
        )
        proc.output = proc.stdout + proc.stderr
        return proc

    def calls(self):
        log = self.state / "calls.log"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    def plist(self, service):
        with open(self.install / ("%s.plist" % LABELS[service]), "rb") as handle:
            return plistlib.load(handle)

    def pid(self, service):
        path = self.state / "pids" / ("%s.pid" % LABELS[service])
        return int(path.read_text()) if path.exists() else None

    def kill_all(self):
        pids = self.state / "pids"
        if not pids.exists():
            return
        for path in pids.iterdir():
            try:
                os.kill(int(path.read_text()), 9)
            except (OSError, ValueError):
                pass


def alive(pid):
    if os.path.isdir("/proc/self"):
        try:
            with open("/proc/%d/stat" % pid) as handle:
                return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except OSError:
            return False
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def http_get(url):
    import urllib.request

    with urllib.request.urlopen(url, timeout=3) as resp:
        return resp.status, resp.read().decode()


class ScriptTest(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="baa-scripts-"))
        self.node = Node(self.tmp)

    def tearDown(self):
        self.node.kill_all()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def check(self, proc, code=0):
        self.assertEqual(
            proc.returncode, code,
            "expected exit %d, got %d\n--- stdout\n%s--- stderr\n%s" % (code, proc.returncode, proc.stdout, proc.stderr),
        )
        self.assertNotIn(TOKEN, proc.output, "the shared token leaked into output")

    def bootstrap_and_install(self, *extra, bin_dir=None):
        n = self.node
        self.check(n.run("bootstrap.sh", "--repo-dir", str(n.repo)))
        proc = n.run("install-launchd.sh", *n.target_args(), *n.config_args(bin_dir), *extra)
        self.check(proc)
        return proc


class StaticScriptTests(ScriptTest):
    def test_every_script_has_help_and_strict_mode(self):
        for name in SCRIPT_NAMES:
            text = (SCRIPTS / name).read_text()
            self.assertTrue(text.startswith("#!/usr/bin/env bash\n"), name)
            self.assertIn("set -euo pipefail", text, name)
            proc = self.node.run(name, "--help")
            self.check(proc)
            self.assertIn("Usage", proc.stdout, name)

    def test_bash_syntax(self):
        for name in SCRIPT_NAMES + ["common.sh"]:
            proc = subprocess.run(["bash", "-n", str(SCRIPTS / name)], capture_output=True, text=True)
            self.assertEqual(proc.returncode, 0, "%s: %s" % (name, proc.stderr))

    def test_shellcheck_clean(self):
        if shutil.which("shellcheck") is None:
            self.skipTest("shellcheck not installed")
        files = [str(SCRIPTS / n) for n in SCRIPT_NAMES + ["common.sh"]]
        proc = subprocess.run(["shellcheck", "-x", *files], cwd=str(REPO), capture_output=True, text=True)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)

    def test_templates_are_plists_with_placeholders(self):
        for service in SERVICES:
            path = TEMPLATES / ("%s.plist" % LABELS[service])
            with open(path, "rb") as handle:
                data = plistlib.load(handle)
            self.assertEqual(data["Label"], LABELS[service])
            self.assertTrue(data["RunAtLoad"])
            self.assertTrue(data["KeepAlive"])
            self.assertIn(data["ProcessType"], ("Interactive", "Adaptive"))
            self.assertIn("<!--", path.read_text().split("<key>ProcessType</key>")[0][-800:],
                          "ProcessType needs an explaining comment")
            self.assertEqual(data["ProgramArguments"][0], "@@BIN_DIR@@/%s" % BINARIES[service])
            self.assertEqual(data["WorkingDirectory"], "@@REPO_DIR@@")
        with open(TEMPLATES / "so.makefile.baa-codexd.plist", "rb") as handle:
            self.assertNotIn("BAA_SHARED_TOKEN", plistlib.load(handle)["EnvironmentVariables"])

    def test_unknown_service_is_a_usage_error(self):
        for name in ["install-launchd.sh", "reload-launchd.sh", "stop-launchd.sh", "status-launchd.sh", "check-node.sh"]:
            proc = self.node.run(name, "--service", "worker-runner")
            self.check(proc, 2)
            self.assertIn("unknown service: worker-runner", proc.stderr, name)
            proc = self.node.run(name, "--service", "nope")
            self.check(proc, 2)

    def test_unknown_option_and_missing_value_are_usage_errors(self):
        self.check(self.node.run("reload-launchd.sh", "--bogus"), 2)
        self.check(self.node.run("reload-launchd.sh", "--service"), 2)
        self.check(self.node.run("reload-launchd.sh", "--scope", "user"), 2)
        # An option of another script is not silently accepted.
        self.check(self.node.run("stop-launchd.sh", "--local-api-base", "http://x"), 2)
        self.check(self.node.run("install-launchd.sh", "--role", "boss", *self.node.target_args()), 2)


class InstallTests(ScriptTest):
    def test_bootstrap_creates_runtime_dirs(self):
        n = self.node
        proc = n.run("bootstrap.sh", "--repo-dir", str(n.repo), "--dry-run")
        self.check(proc)
        self.assertIn("+ mkdir -p", proc.stdout)
        self.assertFalse((n.repo / "state").exists(), "dry-run created a directory")
        self.check(n.run("bootstrap.sh", "--repo-dir", str(n.repo)))
        for rel in ["state", "state/codexd", "runs", "worktrees", "logs", "logs/codexd", "logs/launchd", "tmp"]:
            path = n.repo / rel
            self.assertTrue(path.is_dir(), rel)
            self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o700, rel)

    def test_install_renders_all_three_plists(self):
        n = self.node
        proc = self.bootstrap_and_install()
        self.assertIn("shared-token.txt", proc.stdout)
        repo = str(n.repo)
        for service in SERVICES:
            path = n.install / ("%s.plist" % LABELS[service])
            self.assertNotIn("@@", path.read_text(), service)
            data = n.plist(service)
            env = data["EnvironmentVariables"]
            self.assertEqual(data["Label"], LABELS[service])
            self.assertEqual(data["WorkingDirectory"], repo)
            self.assertIs(data["RunAtLoad"], True)
            self.assertIs(data["KeepAlive"], True)
            self.assertEqual(data["ExitTimeOut"], 30)
            self.assertGreaterEqual(data["SoftResourceLimits"]["NumberOfFiles"], 4096)
            self.assertGreaterEqual(data["HardResourceLimits"]["NumberOfFiles"], 8192)
            self.assertEqual(data["StandardOutPath"], "%s/logs/launchd/%s.out.log" % (repo, LABELS[service]))
            self.assertEqual(data["StandardErrorPath"], "%s/logs/launchd/%s.err.log" % (repo, LABELS[service]))
            self.assertEqual(data["ProgramArguments"][0], "%s/%s" % (n.bin, BINARIES[service]))
            self.assertEqual(env["HOME"], str(n.home))
            self.assertNotIn("UserName", data)
            # No plist carries the token, so none needs to be private.
            self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o644, service)
            self.assertNotIn("BAA_SHARED_TOKEN", env, service)
            self.assertNotIn(TOKEN, path.read_text(), service)
            self.assertNotIn("s3cr&amp;t", path.read_text(), service)

        # The token file the setup wrote with the default mode was tightened to 600.
        token_file = n.home / ".config" / "baa-conductor" / "shared-token.txt"
        self.assertEqual(stat.S_IMODE(token_file.stat().st_mode), 0o600)
        self.assertIn("tightened %s to mode 600" % token_file, proc.stdout)
        c = n.plist("conductor")
        self.assertEqual(c["ProgramArguments"][1:], ["start", "--host", "mini", "--role", "primary"])
        self.assertEqual(c["EnvironmentVariables"], {
            **{k: c["EnvironmentVariables"][k] for k in ("PATH", "LANG", "LC_ALL", "RUST_LOG")},
            "HOME": str(n.home),
            "BAA_NODE_ID": "mini-main",
            "BAA_CONDUCTOR_HOST": "mini",
            "BAA_CONDUCTOR_ROLE": "primary",
            "BAA_CONTROL_API_BASE": "https://conductor.makefile.so",
            "BAA_CONDUCTOR_LOCAL_API": n.url("conductor"),
            "BAA_CONDUCTOR_LOCAL_API_ALLOWED_HOSTS": "100.71.210.78",
            "BAA_CODEXD_LOCAL_API_BASE": n.url("codexd"),
            "BAA_SHARED_TOKEN_FILE": str(token_file),
            "BAA_STATE_DIR": repo + "/state",
            "BAA_LOGS_DIR": repo + "/logs",
            "BAA_RUNS_DIR": repo + "/runs",
            "BAA_WORKTREES_DIR": repo + "/worktrees",
            "BAA_TMP_DIR": repo + "/tmp",
        })
        # XML specials in values were escaped, not pasted raw.
        raw = (n.install / "so.makefile.baa-conductor.plist").read_text()
        self.assertIn("repo &amp; &lt;co&gt;", raw)

        d = n.plist("codexd")
        self.assertEqual(d["ProgramArguments"][1:], ["start"])
        denv = d["EnvironmentVariables"]
        for key, want in {
            "BAA_CODEXD_REPO_ROOT": repo,
            "BAA_CODEXD_LOGS_DIR": repo + "/logs/codexd",
            "BAA_CODEXD_STATE_DIR": repo + "/state/codexd",
            "BAA_CODEXD_MODE": "app-server",
            "BAA_CODEXD_LOCAL_API_BASE": n.url("codexd"),
            "BAA_CODEXD_EVENT_STREAM_PATH": "/v1/codexd/events",
            "BAA_CODEXD_SERVER_STRATEGY": "spawn",
            "BAA_CODEXD_SERVER_COMMAND": "codex",
            "BAA_CODEXD_SERVER_ARGS": "app-server",
            "BAA_CODEXD_SERVER_CWD": repo,
            "BAA_CODEXD_SERVER_ENDPOINT": "unix://",
            "BAA_STATE_DIR": repo + "/state",
            "BAA_LOGS_DIR": repo + "/logs",
        }.items():
            self.assertEqual(denv.get(key), want, key)

        s = n.plist("status-api")
        self.assertEqual(s["ProgramArguments"], ["%s/baa-status-api" % n.bin])
        senv = s["EnvironmentVariables"]
        self.assertEqual(senv["BAA_STATUS_API_HOST"], "127.0.0.1")
        self.assertEqual(senv["BAA_STATUS_API_PORT"], str(n.ports["status-api"]))
        self.assertEqual(senv["BAA_CONDUCTOR_LOCAL_API"], n.url("conductor"))
        self.assertEqual(senv["BAA_CODEXD_LOCAL_API_BASE"], n.url("codexd"))

    def test_install_codexd_flags(self):
        n = self.node
        self.bootstrap_and_install(
            "--service", "codexd",
            "--codexd-event-stream-path", "/v1/other/events",
            "--codexd-server-command", "/opt/codex & co/bin/codex",
            "--codexd-server-cwd", "/srv/work",
        )
        env = n.plist("codexd")["EnvironmentVariables"]
        self.assertEqual(env["BAA_CODEXD_EVENT_STREAM_PATH"], "/v1/other/events")
        self.assertEqual(env["BAA_CODEXD_SERVER_COMMAND"], "/opt/codex & co/bin/codex")
        self.assertEqual(env["BAA_CODEXD_SERVER_CWD"], "/srv/work")
        self.assertEqual(env["BAA_CODEXD_MODE"], "app-server")
        self.assertEqual(sorted(p.name for p in n.install.iterdir()), ["so.makefile.baa-codexd.plist"])
        # XML cannot carry control characters: refused, and the installed copy is untouched.
        proc = n.run("install-launchd.sh", *n.target_args(), *n.config_args(), "--service", "codexd",
                     "--codexd-server-cwd", "/srv/\x01work")
        self.check(proc, 1)
        self.assertIn("control character", proc.stderr)
        self.assertEqual(n.plist("codexd")["EnvironmentVariables"]["BAA_CODEXD_SERVER_CWD"], "/srv/work")
        self.assertEqual([p.name for p in n.install.iterdir() if p.name.startswith(".")], [])
        # codexd must listen on loopback only.
        proc = n.run("install-launchd.sh", *n.target_args(), *n.config_args(), "--service", "codexd",
                     "--codexd-local-api-base", "http://100.71.210.78:4319")
        self.check(proc, 2)
        self.assertIn("loopback", proc.stderr)

    def test_codexd_alone_needs_no_token(self):
        n = self.node
        shutil.rmtree(n.home / ".config")
        self.check(n.run("bootstrap.sh", "--repo-dir", str(n.repo)))
        proc = n.run("install-launchd.sh", *n.target_args(), *n.config_args(), "--service", "codexd", "--service", "status-api")
        self.check(proc)
        proc = n.run("install-launchd.sh", *n.target_args(), *n.config_args())
        self.check(proc, 2)
        self.assertIn("shared token", proc.stderr)

    def test_token_lookup_order(self):
        n = self.node
        config = n.home / ".config" / "baa-conductor"
        self.check(n.run("bootstrap.sh", "--repo-dir", str(n.repo)))

        def installed_token(*extra):
            self.check(n.run("install-launchd.sh", *n.target_args(), *n.config_args(), "--service", "conductor", *extra))
            path = Path(n.plist("conductor")["EnvironmentVariables"]["BAA_SHARED_TOKEN_FILE"])
            self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600, path)
            return path.read_text().strip()

        (config / "runtime-secrets.env").write_text("# comment\nexport BAA_SHARED_TOKEN=\"from-runtime\"\nOTHER=x\n")
        (config / "control-api-worker.secrets.env").write_text("BAA_SHARED_TOKEN='from-legacy'\n")
        explicit = n.root / "explicit-token"
        explicit.write_text("from-explicit\n")
        self.assertEqual(installed_token("--shared-token-file", str(explicit)), "from-explicit")
        self.assertEqual(n.plist("conductor")["EnvironmentVariables"]["BAA_SHARED_TOKEN_FILE"], str(explicit))
        self.assertEqual(installed_token(), TOKEN)
        # A token from an env file is written to shared-token.txt, which the plist names.
        (config / "shared-token.txt").unlink()
        self.assertEqual(installed_token(), "from-runtime")
        (config / "shared-token.txt").unlink()
        (config / "runtime-secrets.env").unlink()
        self.assertEqual(installed_token(), "from-legacy")
        # $BAA_SHARED_TOKEN outranks the file, and replaces its content.
        n.env["BAA_SHARED_TOKEN"] = "from-env-var"
        try:
            self.assertEqual(installed_token(), "from-env-var")
        finally:
            del n.env["BAA_SHARED_TOKEN"]
        (config / "shared-token.txt").unlink()
        (config / "control-api-worker.secrets.env").write_text("BAA_SHARED_TOKEN=replace-me\n")
        proc = n.run("install-launchd.sh", *n.target_args(), *n.config_args(), "--service", "conductor")
        self.check(proc, 2)
        self.assertIn("placeholder", proc.stderr)

    def test_install_dry_run_masks_token_and_writes_nothing(self):
        n = self.node
        proc = n.run("install-launchd.sh", *n.target_args(), *n.config_args(), "--dry-run")
        self.check(proc)
        self.assertIn(":EnvironmentVariables:BAA_SHARED_TOKEN_FILE = %s/.config/baa-conductor/shared-token.txt" % n.home, proc.stdout)
        self.assertNotIn(":EnvironmentVariables:BAA_SHARED_TOKEN =", proc.stdout)
        self.assertIn("would write %s/so.makefile.baa-conductor.plist (mode 0644)" % n.install, proc.stdout)
        self.assertIn(":EnvironmentVariables:BAA_CODEXD_MODE = app-server", proc.stdout)
        self.assertFalse(n.install.exists(), "dry-run created the install dir")
        proc = n.run("install-launchd.sh", *n.target_args(), *n.config_args(), "--dry-run", "--shared-token", "argv-token-1")
        self.check(proc)
        self.assertNotIn("argv-token-1", proc.output)
        self.assertIn("# would write %s/.config/baa-conductor/shared-token.txt (mode 600) from --shared-token" % n.home, proc.stdout)
        self.assertEqual((n.home / ".config" / "baa-conductor" / "shared-token.txt").read_text(), TOKEN + "\n")

    def test_daemon_scope(self):
        n = self.node
        self.bootstrap_and_install("--scope", "daemon", "--username", "george")
        for service in SERVICES:
            self.assertEqual(n.plist(service)["UserName"], "george")
        self.check(n.run("check-launchd.sh", "--scope", "daemon", "--username", "george", *n.target_args(), *n.config_args()))
        proc = n.run("reload-launchd.sh", "--scope", "daemon", *n.target_args(), "--dry-run")
        self.check(proc)
        self.assertIn("+ launchctl bootout system/so.makefile.baa-conductor", proc.stdout)
        self.assertIn("+ launchctl bootstrap system %s/so.makefile.baa-codexd.plist" % n.install, proc.stdout)
        # Without --install-dir the daemon scope targets /Library/LaunchDaemons.
        proc = n.run("stop-launchd.sh", "--scope", "daemon", "--dry-run")
        self.check(proc)
        self.assertEqual(n.calls(), [])

    def test_check_launchd_passes_then_catches_drift(self):
        n = self.node
        self.bootstrap_and_install()
        proc = n.run("check-launchd.sh", *n.target_args(), *n.config_args())
        self.check(proc)
        self.assertIn("checks passed", proc.stdout)

        # A different expectation is reported per key.
        proc = n.run("check-launchd.sh", *n.target_args(), *n.config_args(), "--role", "standby")
        self.check(proc, 1)
        self.assertIn("BAA_CONDUCTOR_ROLE is 'primary', expected 'standby'", proc.stderr)

        # A token file readable by others fails.
        token_file = n.home / ".config" / "baa-conductor" / "shared-token.txt"
        token_file.chmod(0o644)
        proc = n.run("check-launchd.sh", *n.target_args(), *n.config_args(), "--service", "conductor")
        self.check(proc, 1)
        self.assertIn("token file %s has mode rw-r--r--; expected rw------- (chmod 600)" % token_file, proc.stderr)
        token_file.chmod(0o600)

        # The token itself in the conductor's plist (an old install) fails.
        path = n.install / "so.makefile.baa-conductor.plist"
        data = n.plist("conductor")
        data["EnvironmentVariables"]["BAA_SHARED_TOKEN"] = TOKEN
        path.write_bytes(plistlib.dumps(data))
        proc = n.run("check-launchd.sh", *n.target_args(), *n.config_args(), "--service", "conductor")
        self.check(proc, 1)
        self.assertIn("conductor: BAA_SHARED_TOKEN must not be set", proc.stderr)

        # A token in codexd's plist fails; so does a missing binary.
        path = n.install / "so.makefile.baa-codexd.plist"
        data = n.plist("codexd")
        data["EnvironmentVariables"]["BAA_SHARED_TOKEN"] = "x"
        path.write_bytes(plistlib.dumps(data))
        (n.bin / "baa-codexd").unlink()
        proc = n.run("check-launchd.sh", *n.target_args(), *n.config_args(), "--service", "codexd")
        self.check(proc, 1)
        self.assertIn("BAA_SHARED_TOKEN must not be set", proc.stderr)
        self.assertIn("binary not found", proc.stderr)

        # A broken file does not lint.
        path.write_text("<plist><dict><key>Label</key>")
        proc = n.run("check-launchd.sh", *n.target_args(), *n.config_args(), "--service", "codexd")
        self.check(proc, 1)
        self.assertIn("not a valid property list", proc.stderr)


class LaunchdTests(ScriptTest):
    def reload(self, *extra, timeout="10"):
        n = self.node
        return n.run("reload-launchd.sh", *n.target_args(), *n.health_args(timeout), *extra)

    def test_reload_starts_everything_and_waits_for_health(self):
        n = self.node
        self.bootstrap_and_install()
        proc = self.reload()
        self.check(proc)
        calls = n.calls()
        for service in SERVICES:
            label = LABELS[service]
            self.assertIn(["bootstrap", DOMAIN, "%s/%s.plist" % (n.install, label)], calls)
            self.assertIn(["kickstart", "%s/%s" % (DOMAIN, label)], calls)
            self.assertIn("%s is healthy at %s/healthz" % (service, n.url(service)), proc.stdout)
        self.assertFalse([c for c in calls if c[:2] == ["kickstart", "-k"]], "no retry expected")
        self.assertFalse([c for c in calls if c[0] == "bootout"], "nothing was loaded before")
        self.assertEqual(http_get(n.url("conductor") + "/healthz"), (200, "ok\n"))
        # The daemons run with the plist's environment and the repo as cwd.
        if os.path.isdir("/proc/self"):
            self.assertEqual(os.readlink("/proc/%d/cwd" % n.pid("codexd")), str(n.repo))
        self.assertTrue((n.repo / "logs" / "launchd" / "so.makefile.baa-conductor.out.log").exists())

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
            self.assertIn("BAA_SHARED_TOKEN_FILE=%s/.config/baa-conductor/shared-token.txt" % n.home, environ)
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
            "+ launchctl bootstrap gui/501 %s/so.makefile.baa-conductor.plist" % n.install.as_posix().replace(" ", "\\ "),
        ])
        self.assertIn("+ launchctl kickstart gui/501/so.makefile.baa-status-api", lines)
        self.assertEqual(len(lines), 9)
        self.assertEqual(n.calls(), [], "dry-run must not call launchctl")
        self.assertIsNone(n.pid("conductor"))
        proc = self.reload("--dry-run", "--service", "codexd", "--service", "codexd")
        self.check(proc)
        self.assertEqual([l for l in proc.stdout.splitlines() if l.startswith("+ ")], [
            "+ launchctl bootout gui/501/so.makefile.baa-codexd",
            "+ launchctl bootstrap gui/501 %s/so.makefile.baa-codexd.plist" % n.install.as_posix().replace(" ", "\\ "),
            "+ launchctl kickstart gui/501/so.makefile.baa-codexd",
        ])
        proc = self.reload("--dry-run", "--all-services")
        self.check(proc)
        self.assertEqual(len([l for l in proc.stdout.splitlines() if l.startswith("+ ")]), 9)

    def test_unhealthy_service_gets_one_kickstart_k_then_diagnostics(self):
        n = self.node
        broken = n.root / "broken-bin"
        broken.mkdir()
        n.make_bin_dir(broken, {"conductor": "#!/bin/sh\necho 'boom: refusing to listen' >&2\nexec sleep 300\n"})
        self.bootstrap_and_install(bin_dir=broken)
        started = time.monotonic()
        proc = self.reload(timeout="1")
        elapsed = time.monotonic() - started
        self.check(proc, 1)
        self.assertLess(elapsed, 20, "health waits must be bounded")
        retries = [c for c in n.calls() if c[:2] == ["kickstart", "-k"]]
        self.assertEqual(retries, [["kickstart", "-k", "%s/so.makefile.baa-conductor" % DOMAIN]])
        err = proc.stderr
        self.assertIn("retrying launchctl kickstart -k gui/501/so.makefile.baa-conductor", err)
        self.assertIn("last curl result: exit=7 http=000", err)
        self.assertIn("launchctl print gui/501/so.makefile.baa-conductor:", err)
        self.assertIn("state = running", err)
        self.assertIn("BAA_SHARED_TOKEN_FILE => %s/.config/baa-conductor/shared-token.txt" % n.home, err)
        self.assertIn("boom: refusing to listen", err)
        self.assertIn("manual recovery hint: launchctl kickstart -k gui/501/so.makefile.baa-conductor", err)
        self.assertIn("launchd reload failed for: conductor", err)
        # The other services were still reloaded and are healthy.
        self.assertIn("codexd is healthy", proc.stdout)
        self.assertIn("status-api is healthy", proc.stdout)

    def test_service_recovers_after_the_retry(self):
        n = self.node
        flaky = n.root / "flaky-bin"
        flaky.mkdir()
        marker = n.root / "first-start-done"
        n.make_bin_dir(flaky)
        good = flaky / "baa-status-api"
        good.rename(flaky / "good-status-api")
        write_exe(good, "#!/bin/sh\nif [ ! -e '%s' ]; then touch '%s'; echo 'first start hangs' >&2; exec sleep 300; fi\n"
                        "exec '%s' \"$@\"\n" % (marker, marker, flaky / "good-status-api"))
        self.bootstrap_and_install(bin_dir=flaky)
        proc = self.reload(timeout="1")
        self.check(proc)
        self.assertIn("status-api recovered after retry kickstart", proc.stdout)
        retries = [c for c in n.calls() if c[:2] == ["kickstart", "-k"]]
        self.assertEqual(len(retries), 1)
        self.assertNotIn("manual recovery hint", proc.stderr)

    def test_skip_kickstart_fails_without_retry(self):
        n = self.node
        broken = n.root / "broken-bin"
        broken.mkdir()
        n.make_bin_dir(broken, {"codexd": "#!/bin/sh\nexit 3\n"})
        self.bootstrap_and_install(bin_dir=broken)
        proc = self.reload("--service", "codexd", "--skip-kickstart", timeout="1")
        self.check(proc, 1)
        self.assertFalse([c for c in n.calls() if c[0] == "kickstart"])
        self.assertIn("stayed unhealthy after reload with --skip-kickstart", proc.stderr)

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
        self.assertIn("healthz: 200 ok", proc.stdout)
        self.assertIn("status: 200 mode=app-server", proc.stdout)
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
        self.assertIn("healthz: unreachable", proc.stdout)
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
        self.assertIn("ok   conductor: process '%s/baa-conductor start --host mini --role primary' is running" % n.bin, out)
        self.assertIn('codexd /healthz: %s/healthz 200 contains "status": "ok"' % n.url("codexd"), out)
        self.assertIn('codexd /v1/codexd/status: %s/v1/codexd/status 200 contains "mode": "app-server"' % n.url("codexd"), out)
        self.assertIn("conductor /rolez", out)
        self.assertIn("status-api /v1/status", out)
        self.assertIn("log file", out)

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

    def test_check_node_reports_an_app_server_no_codexd_owns_and_stop_with_child_runs_stop_child(self):
        n = self.node
        self.bootstrap_and_install()
        self.check(self.reload())
        env = n.plist("codexd")["EnvironmentVariables"]
        self.assertEqual(env["BAA_CODEXD_SERVER_ENDPOINT"], "unix://")
        sock = env["BAA_CODEXD_STATE_DIR"] + "/app-server.sock"
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
        self.assertIn("BAA_CODEXD_STATE_DIR=", proc.stdout)

    def test_install_mini_end_to_end(self):
        n = self.node
        (n.home / ".config" / "baa-conductor" / "shared-token.txt").unlink()
        (n.home / ".config" / "baa-conductor" / "runtime-secrets.env").write_text("BAA_SHARED_TOKEN=%s\n" % "mini-token-9")
        args = [*n.target_args(), *n.config_args(), *n.health_args(), "--skip-build"]
        proc = n.run("install-mini.sh", *args, "--dry-run")
        self.check(proc)
        self.assertNotIn("mini-token-9", proc.output)
        self.assertIn("would write %s/.config/baa-conductor/shared-token.txt" % n.home, proc.stdout)
        self.assertEqual(n.calls(), [])

        proc = n.run("install-mini.sh", *args)
        self.check(proc)
        self.assertNotIn("mini-token-9", proc.output)
        token_file = n.home / ".config" / "baa-conductor" / "shared-token.txt"
        self.assertEqual(token_file.read_text(), "mini-token-9\n")
        self.assertEqual(stat.S_IMODE(token_file.stat().st_mode), 0o600)
        self.assertIn("check-node: all", proc.stdout)
        self.assertIn("mini install complete", proc.stdout)
        self.assertEqual(n.plist("conductor")["EnvironmentVariables"]["BAA_SHARED_TOKEN_FILE"], str(token_file))
        self.assertNotIn("BAA_SHARED_TOKEN", n.plist("conductor")["EnvironmentVariables"])


def main():
    try:
        real = real_bin_dir()
    except SystemExit as err:
        print("error: %s" % err, file=sys.stderr)
        print("0 passed, 1 failed")
        return 1
    print("daemons: %s" % ("real binaries in %s" % real if real else "python stand-ins (set BAA_TEST_BIN_DIR for the real ones)"))
    names = sys.argv[1:]
    loader = unittest.defaultTestLoader
    module = sys.modules[__name__]
    suite = loader.loadTestsFromNames(names, module) if names else loader.loadTestsFromModule(module)
    runner = unittest.TextTestRunner(verbosity=2)
    result = runner.run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    if skipped:
        print("%d skipped" % skipped)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
