"""Shared by the runtime-script tests: a temporary node (home, checkout, install dir, fake
launchd state, free ports) and the helpers the test modules use.

Each test gets a fresh temporary HOME (so the default runtime root and logs dir,
~/Library/Application Support/baa-conductor and ~/Library/Logs/baa-conductor, land inside
it, space included), a checkout with " & <" in its name (XML escaping), an install dir and
a fake-launchctl state dir. tests/scripts/fakes/ goes first on PATH: a fake `id` (uid 501,
user tester), a fake `launchctl` that really starts the program named in ProgramArguments
of the installed plist with its EnvironmentVariables, a fake `npm` that lays out the
pinned codex package, and a fake `codex`. Tailscale is not installed unless a test puts
fakes/tailscale-bin/ on PATH.

The daemons: by default a python stand-in (standin.py) copied under the three binary
names. With BAA_TEST_BIN_DIR naming a directory holding the real baa-conductor, baa-codexd
and baa-status-api (e.g. target/debug), the same tests drive the real binaries.

Only python3's standard library is used.
"""

import json
import os
import plistlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SCRIPTS = REPO / "scripts" / "runtime"
TEMPLATES = REPO / "launchd"
FAKES = HERE / "fakes"
TAILSCALE_FAKES = FAKES / "tailscale-bin"
STANDIN = HERE / "standin.py"
SERVICES = ["conductor", "codexd", "status-api"]
LABELS = {s: "so.makefile.baa-%s" % s for s in SERVICES}
BINARIES = {s: "baa-%s" % s for s in SERVICES}
TOKEN = "s3cr&t<tok>\"en'42"
DOMAIN = "gui/501"
SCRIPT_NAMES = [
    "bootstrap.sh", "install-launchd.sh", "check-launchd.sh", "reload-launchd.sh",
    "restart-launchd.sh", "start-launchd.sh", "stop-launchd.sh", "status-launchd.sh",
    "check-node.sh", "install-mini.sh", "uninstall-launchd.sh", "upgrade.sh",
]
# Addresses and names of the one machine the original scripts were written on: never in
# a rendered file unless a test gives them.
FOREIGN = ["100.71.210.78", "makefile.so", "/Users/"]


def pinned_codex_version():
    out = subprocess.run([str(REPO / "scripts" / "install-codex.sh"), "--pinned-version"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


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


def start_time(pid):
    # Field 22 of /proc/PID/stat: with the pid it names one process across pid reuse.
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


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
    with urllib.request.urlopen(url, timeout=3) as resp:
        return resp.status, resp.read().decode()


def http_post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=3) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def wait_until(what, check, timeout=30):
    """Polls check() until it returns a true value; fails naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, value))


class Node:
    """One temporary node: home, checkout, install dir, bin dir, fake launchd state, ports."""

    def __init__(self, root):
        self.root = root
        self.home = root / "home"
        self.repo = root / "repo & <co>"
        self.install = root / "LaunchAgents"
        self.state = root / "launchctl-state"
        self.bin = root / "build"
        self.runtime = self.home / "Library" / "Application Support" / "baa-conductor"
        self.logs = self.home / "Library" / "Logs" / "baa-conductor"
        for d in (self.home, self.repo, self.state, self.bin):
            d.mkdir(parents=True)
        self.ports = {s: free_port() for s in SERVICES}
        self.make_bin_dir(self.bin)
        self.token_file = self.home / ".config" / "baa-conductor" / "shared-token.txt"
        self.token_file.parent.mkdir(parents=True)
        self.token_file.write_text(TOKEN + "\n")
        self.token_file.chmod(0o600)
        # install links the baa-* commands into a bin dir on PATH: here, never the
        # machine's /usr/local/bin (a test that checks the default removes this).
        self.links = root / "links"
        self.links.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BAA_")}
        env.update(
            HOME=str(self.home),
            PATH="%s:%s" % (FAKES, env.get("PATH", "/usr/bin:/bin")),
            FAKE_LAUNCHCTL_STATE=str(self.state),
            FAKE_ID_UID="501",
            FAKE_ID_USER="tester",
            BAA_RUNTIME_LINK_DIR=str(self.links),
        )
        self.env = env

    def with_tailscale(self, ip=None):
        """Puts the fake tailscale on PATH; ip None: installed but tailscaled not running."""
        self.env["PATH"] = "%s:%s" % (TAILSCALE_FAKES, self.env["PATH"])
        if ip:
            self.env["FAKE_TAILSCALE_IP"] = ip

    def make_bin_dir(self, target, override=None, flavor=None, standin=False):
        """Fill target with the three daemons; override maps service -> script text.
        flavor makes a build whose bytes differ (another version dir) but which behaves
        the same. standin puts the python stand-ins there even when BAA_TEST_BIN_DIR
        names real binaries (for tests that script the stand-in's answers)."""
        target.mkdir(parents=True, exist_ok=True)
        real = None if standin else real_bin_dir()
        for service, name in BINARIES.items():
            dest = target / name
            if override and service in override:
                write_exe(dest, override[service])
            elif real and flavor:
                write_exe(dest, "#!/bin/sh\n# %s\nexec '%s' \"$@\"\n" % (flavor, real / name))
            elif real:
                dest.symlink_to(real / name)
            else:
                text = STANDIN.read_text().replace("#!/usr/bin/env python3", "#!" + sys.executable, 1)
                if flavor:
                    text += "# %s\n" % flavor
                write_exe(dest, text)
        return target

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
            "--codex-command", str(FAKES / "codex"),
        ]

    def health_args(self, timeout="10"):
        return ["--health-timeout", timeout, "--health-interval", "0.1"]

    def run(self, script, *args, timeout=120):
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

    def plist_path(self, service, prefix="so.makefile"):
        return self.install / ("%s.baa-%s.plist" % (prefix, service))

    def plist(self, service, prefix="so.makefile"):
        with open(self.plist_path(service, prefix), "rb") as handle:
            return plistlib.load(handle)

    def pid(self, service):
        path = self.state / "pids" / ("%s.pid" % LABELS[service])
        return int(path.read_text()) if path.exists() else None

    def current_version(self):
        link = self.runtime / "bin" / "current"
        return os.readlink(link) if link.is_symlink() else None

    def kill_all(self):
        """SIGKILLs every job that still runs. Only a pid whose start time is the recorded
        one: a job that exited leaves its pid file behind, and by teardown the pid may name
        another process of ours (a daemon of the Rust suite, which runs beside these tests;
        killing one was a silent flake there)."""
        pids = self.state / "pids"
        if not pids.exists():
            return
        for path in pids.glob("*.pid"):
            try:
                pid = int(path.read_text())
            except (OSError, ValueError):
                continue
            recorded = path.with_suffix(".start")
            if recorded.exists() and start_time(pid) != recorded.read_text().strip():
                continue
            try:
                os.kill(pid, 9)
            except OSError:
                pass


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

    def bootstrap(self, *extra):
        n = self.node
        self.check(n.run("bootstrap.sh", "--home", str(n.home), "--repo-dir", str(n.repo), *extra))

    def bootstrap_and_install(self, *extra, bin_dir=None):
        n = self.node
        self.bootstrap()
        proc = n.run("install-launchd.sh", *n.target_args(), *n.config_args(bin_dir), *extra)
        self.check(proc)
        return proc

    def reload(self, *extra, timeout="10"):
        n = self.node
        return n.run("reload-launchd.sh", *n.target_args(), *n.health_args(timeout), *extra)
