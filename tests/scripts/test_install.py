"""install-launchd.sh, bootstrap.sh and check-launchd.sh: what is rendered where, the
defaults that fit any node (listen address from Tailscale or loopback, no address or home
path of another machine, optional keys left out), the token file, the layout outside the
checkout with versioned binaries, the pinned codex, and the static checks."""

import os
import plistlib
import shutil
import stat
import time
from pathlib import Path

from harness import (
    BINARIES, DOMAIN, FAKES, FOREIGN, LABELS, REPO, SERVICES, TEMPLATES, TOKEN, ScriptTest,
    pinned_codex_version,
)


def rendered_text(node):
    """Every file install wrote: the plists and, for good measure, the token file's name."""
    return "\n".join(p.read_text() for p in sorted(node.install.glob("*.plist")))


class TemplateTests(ScriptTest):
    def test_templates_are_plists_with_placeholders(self):
        for service in SERVICES:
            path = TEMPLATES / ("%s.plist" % LABELS[service])
            with open(path, "rb") as handle:
                data = plistlib.load(handle)
            self.assertEqual(data["Label"], "@@LABEL_PREFIX@@.baa-%s" % service)
            self.assertTrue(data["RunAtLoad"])
            self.assertTrue(data["KeepAlive"])
            self.assertIn(data["ProcessType"], ("Interactive", "Adaptive"))
            self.assertIn("<!--", path.read_text().split("<key>ProcessType</key>")[0][-800:],
                          "ProcessType needs an explaining comment")
            self.assertEqual(data["ProgramArguments"][0], "@@BIN_DIR@@/%s" % BINARIES[service])
            self.assertEqual(data["WorkingDirectory"], "@@REPO_DIR@@")
            for foreign in FOREIGN:
                self.assertNotIn(foreign, path.read_text(), service)
        with open(TEMPLATES / "so.makefile.baa-codexd.plist", "rb") as handle:
            self.assertNotIn("BAA_SHARED_TOKEN", plistlib.load(handle)["EnvironmentVariables"])

    def test_unknown_service_is_a_usage_error(self):
        for name in ["install-launchd.sh", "reload-launchd.sh", "stop-launchd.sh", "status-launchd.sh",
                     "check-node.sh", "uninstall-launchd.sh"]:
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
        self.check(self.node.run("install-launchd.sh", "--label-prefix", "a b", *self.node.target_args()), 2)


class InstallTests(ScriptTest):
    def test_bootstrap_creates_runtime_dirs_outside_the_checkout(self):
        n = self.node
        proc = n.run("bootstrap.sh", "--home", str(n.home), "--repo-dir", str(n.repo), "--dry-run")
        self.check(proc)
        self.assertIn("+ mkdir -p", proc.stdout)
        self.assertFalse(n.runtime.exists(), "dry-run created a directory")
        self.bootstrap()
        for rel in ["state", "state/codexd", "runs", "worktrees", "tmp"]:
            path = n.runtime / rel
            self.assertTrue(path.is_dir(), rel)
            self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o700, rel)
        self.assertEqual(stat.S_IMODE(n.runtime.stat().st_mode), 0o700)
        for rel in ["", "codexd", "launchd"]:
            path = n.logs / rel
            self.assertTrue(path.is_dir(), rel)
            self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o700, rel)
        self.assertEqual(os.listdir(n.repo), [], "bootstrap wrote into the checkout")

    def test_install_renders_all_three_plists(self):
        n = self.node
        proc = self.bootstrap_and_install()
        self.assertIn("shared-token.txt", proc.stdout)
        repo, root, logs = str(n.repo), str(n.runtime), str(n.logs)
        current = root + "/bin/current"
        for service in SERVICES:
            path = n.plist_path(service)
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
            self.assertEqual(data["StandardOutPath"], "%s/launchd/%s.out.log" % (logs, LABELS[service]))
            self.assertEqual(data["StandardErrorPath"], "%s/launchd/%s.err.log" % (logs, LABELS[service]))
            # The daemon rotates launchd's err file itself (docs/runtime/logs.md).
            self.assertEqual(env["BAA_LOG_FILE"], data["StandardErrorPath"], service)
            self.assertEqual(data["ProgramArguments"][0], "%s/%s" % (current, BINARIES[service]))
            self.assertEqual(env["HOME"], str(n.home))
            self.assertNotIn("UserName", data)
            # No plist carries the token, so none needs to be private.
            self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o644, service)
            self.assertNotIn("BAA_SHARED_TOKEN", env, service)
            self.assertNotIn(TOKEN, path.read_text(), service)
            self.assertNotIn("s3cr&amp;t", path.read_text(), service)
            # --control-api-base was not given: no key, not the original system's domain.
            self.assertNotIn("BAA_CONTROL_API_BASE", env, service)

        c = n.plist("conductor")
        self.assertEqual(c["ProgramArguments"][1:], ["start", "--conductor-host", "mini", "--role", "primary"])
        self.assertEqual(c["EnvironmentVariables"], {
            **{k: c["EnvironmentVariables"][k] for k in ("PATH", "LANG", "LC_ALL", "RUST_LOG")},
            "HOME": str(n.home),
            "BAA_NODE_ID": "mini-main",
            "BAA_CONDUCTOR_HOST": "mini",
            "BAA_CONDUCTOR_ROLE": "primary",
            "BAA_CONDUCTOR_LOCAL_API": n.url("conductor"),
            "BAA_CODEXD_LOCAL_API_BASE": n.url("codexd"),
            "BAA_SHARED_TOKEN_FILE": str(n.token_file),
            "BAA_RUNTIME_ROOT": root,
            "BAA_LOGS_DIR": logs,
            "BAA_CONDUCTOR_REPO_ROOT": repo,
            "BAA_LOG_FILE": c["StandardErrorPath"],
        })
        # XML specials in values were escaped, not pasted raw.
        self.assertIn("repo &amp; &lt;co&gt;", n.plist_path("conductor").read_text())

        d = n.plist("codexd")
        self.assertEqual(d["ProgramArguments"][1:], ["start"])
        denv = d["EnvironmentVariables"]
        for key, want in {
            "BAA_CODEXD_REPO_ROOT": repo,
            "BAA_CODEXD_MODE": "app-server",
            "BAA_CODEXD_LOCAL_API_BASE": n.url("codexd"),
            "BAA_CODEXD_EVENT_STREAM_PATH": "/v1/codexd/events",
            "BAA_CODEXD_SERVER_STRATEGY": "spawn",
            "BAA_CODEXD_SERVER_COMMAND": str(FAKES / "codex"),
            "BAA_CODEXD_SERVER_ARGS": "app-server",
            "BAA_CODEXD_SERVER_CWD": repo,
            "BAA_CODEXD_SERVER_ENDPOINT": "unix://",
            "BAA_RUNTIME_ROOT": root,
            "BAA_LOGS_DIR": logs,
        }.items():
            self.assertEqual(denv.get(key), want, key)
        # codexd finds its dirs under those two; none is named one by one any more.
        for key in ("BAA_STATE_DIR", "BAA_CODEXD_STATE_DIR", "BAA_CODEXD_LOGS_DIR"):
            self.assertNotIn(key, denv)

        s = n.plist("status-api")
        self.assertEqual(s["ProgramArguments"], ["%s/baa-status-api" % current])
        senv = s["EnvironmentVariables"]
        self.assertEqual(senv["BAA_STATUS_API_HOST"], "127.0.0.1")
        self.assertEqual(senv["BAA_STATUS_API_PORT"], str(n.ports["status-api"]))
        self.assertEqual(senv["BAA_CONDUCTOR_LOCAL_API"], n.url("conductor"))
        self.assertEqual(senv["BAA_CODEXD_LOCAL_API_BASE"], n.url("codexd"))
        self.assertEqual((senv["BAA_RUNTIME_ROOT"], senv["BAA_LOGS_DIR"]), (root, logs))

    def test_binaries_are_copied_to_a_version_dir_that_a_rebuild_does_not_touch(self):
        n = self.node
        self.bootstrap_and_install()
        version = n.current_version()
        self.assertRegex(version or "", r"^[0-9A-Za-z._+-]+-[0-9]+$")
        installed = n.runtime / "bin" / version / "baa-conductor"
        self.assertEqual(installed.read_bytes(), (n.bin / "baa-conductor").resolve().read_bytes())
        self.assertFalse(installed.is_symlink())
        # A rebuild (new bytes in the build dir) leaves the running copy alone ...
        before = installed.read_bytes()
        rebuilt = n.make_bin_dir(n.root / "rebuilt", flavor="rebuild 2")
        self.assertEqual(installed.read_bytes(), before)
        # ... until it is installed: a second version dir, current moves, previous keeps the first.
        self.check(n.run("install-launchd.sh", *n.target_args(), *n.config_args(rebuilt)))
        second = n.current_version()
        self.assertNotEqual(second, version)
        self.assertEqual(os.readlink(n.runtime / "bin" / "previous"), version)
        self.assertTrue((n.runtime / "bin" / version / "baa-conductor").exists())
        # Installing the same build again reuses its dir.
        proc = n.run("install-launchd.sh", *n.target_args(), *n.config_args(rebuilt))
        self.check(proc)
        self.assertIn("binaries %s already in" % second, proc.stdout)
        # Each version dir keeps the plists it was installed with (for a rollback).
        self.assertTrue((n.runtime / "bin" / second / "launchd" / "so.makefile.baa-conductor.plist").is_file())
        self.assertEqual(os.listdir(n.repo), [], "install wrote into the checkout")

    def test_repo_layout_keeps_the_seeds_in_checkout_paths(self):
        n = self.node
        self.bootstrap("--repo-layout")
        self.check(n.run("install-launchd.sh", *n.target_args(), *n.config_args(), "--repo-layout"))
        env = n.plist("conductor")["EnvironmentVariables"]
        self.assertEqual(env["BAA_RUNTIME_ROOT"], str(n.repo))
        self.assertEqual(env["BAA_LOGS_DIR"], str(n.repo) + "/logs")
        self.assertEqual(n.plist("codexd")["StandardErrorPath"],
                         "%s/logs/launchd/so.makefile.baa-codexd.err.log" % n.repo)
        self.assertTrue((n.repo / "bin" / "current" / "baa-conductor").exists())
        self.assertFalse(n.runtime.exists())
        self.check(n.run("check-launchd.sh", *n.target_args(), *n.config_args(), "--repo-layout"))
        proc = n.run("install-launchd.sh", *n.target_args(), "--repo-layout", "--root", "/x")
        self.check(proc, 2)

    def test_install_codexd_flags(self):
        n = self.node
        codex = n.root / "codex & co" / "bin" / "codex"
        codex.parent.mkdir(parents=True)
        shutil.copy(FAKES / "codex", codex)
        self.bootstrap_and_install(
            "--service", "codexd",
            "--codexd-event-stream-path", "/v1/other/events",
            "--codex-command", str(codex),
            "--codexd-server-cwd", "/srv/work",
        )
        env = n.plist("codexd")["EnvironmentVariables"]
        self.assertEqual(env["BAA_CODEXD_EVENT_STREAM_PATH"], "/v1/other/events")
        self.assertEqual(env["BAA_CODEXD_SERVER_COMMAND"], str(codex))
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

    def test_install_dry_run_masks_token_and_writes_nothing(self):
        n = self.node
        proc = n.run("install-launchd.sh", *n.target_args(), *n.config_args(), "--dry-run")
        self.check(proc)
        self.assertIn(":EnvironmentVariables:BAA_SHARED_TOKEN_FILE = %s" % n.token_file, proc.stdout)
        self.assertNotIn(":EnvironmentVariables:BAA_SHARED_TOKEN =", proc.stdout)
        self.assertIn("would write %s (mode 0644)" % n.plist_path("conductor"), proc.stdout)
        self.assertIn(":EnvironmentVariables:BAA_CODEXD_MODE = app-server", proc.stdout)
        self.assertIn("# would copy %s/baa-{conductor,codexd,status-api} to %s/bin/" % (n.bin, n.runtime), proc.stdout)
        self.assertFalse(n.install.exists(), "dry-run created the install dir")
        self.assertFalse(n.runtime.exists(), "dry-run created the runtime root")
        proc = n.run("install-launchd.sh", *n.target_args(), *n.config_args(), "--dry-run", "--shared-token", "argv-token-1")
        self.check(proc)
        self.assertNotIn("argv-token-1", proc.output)
        self.assertIn("# would write %s (mode 600) from --shared-token" % n.token_file, proc.stdout)
        self.assertEqual(n.token_file.read_text(), TOKEN + "\n")

    def test_daemon_scope(self):
        n = self.node
        self.bootstrap_and_install("--scope", "daemon", "--username", "george")
        for service in SERVICES:
            self.assertEqual(n.plist(service)["UserName"], "george")
        self.check(n.run("check-launchd.sh", "--scope", "daemon", "--username", "george", *n.target_args(), *n.config_args()))
        proc = n.run("reload-launchd.sh", "--scope", "daemon", *n.target_args(), "--dry-run")
        self.check(proc)
        self.assertIn("+ launchctl bootout system/so.makefile.baa-conductor", proc.stdout)
        self.assertIn("+ launchctl bootstrap system %s" % n.plist_path("codexd"), proc.stdout)
        # Without --install-dir the daemon scope targets /Library/LaunchDaemons.
        proc = n.run("stop-launchd.sh", "--scope", "daemon", "--dry-run")
        self.check(proc)
        self.assertEqual(n.calls(), [])

    def test_label_prefix_names_labels_files_and_logs(self):
        n = self.node
        self.bootstrap_and_install("--label-prefix", "com.example")
        for service in SERVICES:
            data = n.plist(service, prefix="com.example")
            self.assertEqual(data["Label"], "com.example.baa-%s" % service)
            self.assertEqual(data["StandardOutPath"], "%s/launchd/com.example.baa-%s.out.log" % (n.logs, service))
            self.assertNotIn("so.makefile", n.plist_path(service, "com.example").read_text())
        self.assertFalse(n.plist_path("conductor").exists())
        self.check(n.run("check-launchd.sh", *n.target_args(), *n.config_args(), "--label-prefix", "com.example"))
        proc = self.reload("--label-prefix", "com.example", "--dry-run")
        self.check(proc)
        self.assertIn("+ launchctl bootout %s/com.example.baa-conductor" % DOMAIN, proc.stdout)
        # The default prefix finds nothing installed under it.
        proc = n.run("check-launchd.sh", *n.target_args(), *n.config_args())
        self.check(proc, 1)
        self.assertIn("installed plist not found", proc.stderr)


class DefaultsTests(ScriptTest):
    """Defaults that fit any node: no address, domain or home of the original machine."""

    def install_defaults(self, *extra):
        n = self.node
        self.bootstrap()
        args = [*n.target_args(), "--repo-dir", str(n.repo), "--bin-dir", str(n.bin),
                "--codex-command", str(FAKES / "codex"), *extra]
        proc = n.run("install-launchd.sh", *args)
        self.check(proc)
        return proc

    def assert_printed_before_anything_written(self, proc, line):
        out = proc.stdout.splitlines()
        self.assertIn(line, out)
        first_write = min(i for i, l in enumerate(out) if l.startswith(("[runtime] copied", "[runtime] installed", "[runtime] wrote")))
        self.assertLess(out.index(line), first_write, proc.stdout)

    def assert_no_foreign_values(self):
        text = rendered_text(self.node)
        for foreign in FOREIGN:
            self.assertNotIn(foreign, text)

    def test_defaults_without_tailscale_listen_on_loopback(self):
        n = self.node
        proc = self.install_defaults()
        self.assert_printed_before_anything_written(
            proc, "[runtime] listen host: 127.0.0.1 (tailscale is not installed; --listen-host ADDRESS to choose)")
        c = n.plist("conductor")["EnvironmentVariables"]
        self.assertEqual(c["BAA_CONDUCTOR_LOCAL_API"], "http://127.0.0.1:4317")
        self.assertNotIn("BAA_CONDUCTOR_LOCAL_API_ALLOWED_HOSTS", c)
        self.assertNotIn("BAA_CONTROL_API_BASE", c)
        self.assertEqual(n.plist("status-api")["EnvironmentVariables"]["BAA_STATUS_API_HOST"], "127.0.0.1")
        self.assert_no_foreign_values()
        # Installed, but tailscaled not running: loopback too, and it says why.
        n.with_tailscale()
        proc = self.install_defaults()
        self.assertIn("[runtime] listen host: 127.0.0.1 (`tailscale ip -4` did not answer; --listen-host ADDRESS to choose)", proc.stdout)
        self.check(n.run("check-launchd.sh", *n.target_args(), "--repo-dir", str(n.repo),
                         "--codex-command", str(FAKES / "codex")))

    def test_defaults_with_tailscale_listen_on_its_address(self):
        n = self.node
        n.with_tailscale("100.101.102.103")
        proc = self.install_defaults()
        self.assert_printed_before_anything_written(proc, "[runtime] listen host: 100.101.102.103 (from tailscale ip -4)")
        c = n.plist("conductor")["EnvironmentVariables"]
        self.assertEqual(c["BAA_CONDUCTOR_LOCAL_API"], "http://100.101.102.103:4317")
        self.assertEqual(c["BAA_CONDUCTOR_LOCAL_API_ALLOWED_HOSTS"], "100.101.102.103")
        s = n.plist("status-api")["EnvironmentVariables"]
        self.assertEqual(s["BAA_STATUS_API_HOST"], "100.101.102.103")
        self.assertEqual(s["BAA_CONDUCTOR_LOCAL_API"], "http://100.101.102.103:4317")
        self.assert_no_foreign_values()
        self.check(n.run("check-launchd.sh", *n.target_args(), "--repo-dir", str(n.repo),
                         "--codex-command", str(FAKES / "codex")))
        # --listen-host chooses, over Tailscale.
        self.install_defaults("--listen-host", "127.0.0.1")
        self.assertEqual(n.plist("conductor")["EnvironmentVariables"]["BAA_CONDUCTOR_LOCAL_API"], "http://127.0.0.1:4317")
        self.assertNotIn("BAA_CONDUCTOR_LOCAL_API_ALLOWED_HOSTS", n.plist("conductor")["EnvironmentVariables"])

    def test_host_must_be_loopback_or_tailscale(self):
        n = self.node
        for bad in ["mini", "192.168.1.5", "100.200.1.1"]:
            proc = n.run("install-launchd.sh", *n.target_args(), "--listen-host", bad)
            self.check(proc, 2)
            self.assertIn("--listen-host must be a loopback address or a Tailscale 100.64.0.0/10 address", proc.stderr)
            self.assertFalse(n.install.exists())

    def test_a_hung_tailscale_is_given_up_on(self):
        n = self.node
        n.with_tailscale("100.101.102.103")
        n.env["FAKE_TAILSCALE_HANG"] = "1"
        started = time.monotonic()
        proc = n.run("install-launchd.sh", *n.target_args(), "--dry-run")
        self.check(proc)
        self.assertIn("listen host: 127.0.0.1 (`tailscale ip -4` did not answer", proc.stdout)
        # Printed, not asserted: the bound is 5 s (a loaded machine may take longer).
        print("  (hung tailscale given up after %.1fs)" % (time.monotonic() - started), end=" ")

    def test_control_api_base_only_when_given(self):
        n = self.node
        self.install_defaults("--control-api-base", "https://conductor.makefile.so/")
        self.assertEqual(n.plist("conductor")["EnvironmentVariables"]["BAA_CONTROL_API_BASE"], "https://conductor.makefile.so")
        # status-api never reads it.
        self.assertNotIn("BAA_CONTROL_API_BASE", n.plist("status-api")["EnvironmentVariables"])
        self.check(n.run("check-launchd.sh", *n.target_args(), "--repo-dir", str(n.repo),
                         "--codex-command", str(FAKES / "codex"), "--control-api-base", "https://conductor.makefile.so"))
        proc = n.run("check-launchd.sh", *n.target_args(), "--repo-dir", str(n.repo), "--codex-command", str(FAKES / "codex"))
        self.check(proc, 1)
        self.assertIn("BAA_CONTROL_API_BASE must not be set", proc.stderr)


class TokenTests(ScriptTest):
    def test_codexd_alone_needs_no_token(self):
        n = self.node
        shutil.rmtree(n.home / ".config")
        self.bootstrap()
        proc = n.run("install-launchd.sh", *n.target_args(), *n.config_args(), "--service", "codexd", "--service", "status-api")
        self.check(proc)
        proc = n.run("install-launchd.sh", *n.target_args(), *n.config_args())
        self.check(proc, 2)
        self.assertIn("shared token", proc.stderr)

    def test_token_file_readable_by_others_is_refused_before_anything_is_written(self):
        n = self.node
        self.bootstrap()
        for mode, shown in [(0o644, "rw-r--r--"), (0o620, "rw--w----"), (0o604, "rw----r--")]:
            n.token_file.chmod(mode)
            proc = n.run("install-launchd.sh", *n.target_args(), *n.config_args())
            self.check(proc, 2)
            self.assertIn("token file %s has mode %s" % (n.token_file, shown), proc.stderr)
            self.assertIn("chmod 600 '%s'" % n.token_file, proc.stderr)
            self.assertFalse(n.install.exists(), "a plist was written")
            self.assertFalse((n.runtime / "bin").exists(), "binaries were copied")
            self.assertEqual(stat.S_IMODE(n.token_file.stat().st_mode), mode, "the install changed the mode")
        # The same for a --shared-token-file.
        other = n.root / "other-token"
        other.write_text("other-token-0123456789\n")
        other.chmod(0o640)
        proc = n.run("install-launchd.sh", *n.target_args(), *n.config_args(), "--shared-token-file", str(other))
        self.check(proc, 2)
        self.assertIn("token file %s has mode rw-r-----" % other, proc.stderr)
        n.token_file.chmod(0o600)
        self.check(n.run("install-launchd.sh", *n.target_args(), *n.config_args()))

    def test_token_lookup_order(self):
        n = self.node
        config = n.token_file.parent
        self.bootstrap()

        def installed_token(*extra):
            self.check(n.run("install-launchd.sh", *n.target_args(), *n.config_args(), "--service", "conductor", *extra))
            path = Path(n.plist("conductor")["EnvironmentVariables"]["BAA_SHARED_TOKEN_FILE"])
            self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600, path)
            return path.read_text().strip()

        (config / "runtime-secrets.env").write_text("# comment\nexport BAA_SHARED_TOKEN=\"from-runtime\"\nOTHER=x\n")
        (config / "control-api-worker.secrets.env").write_text("BAA_SHARED_TOKEN='from-legacy'\n")
        explicit = n.root / "explicit-token"
        explicit.write_text("from-explicit\n")
        explicit.chmod(0o600)
        self.assertEqual(installed_token("--shared-token-file", str(explicit)), "from-explicit")
        self.assertEqual(n.plist("conductor")["EnvironmentVariables"]["BAA_SHARED_TOKEN_FILE"], str(explicit))
        self.assertEqual(installed_token(), TOKEN)
        # A token from an env file is written to shared-token.txt, which the plist names.
        n.token_file.unlink()
        self.assertEqual(installed_token(), "from-runtime")
        n.token_file.unlink()
        (config / "runtime-secrets.env").unlink()
        self.assertEqual(installed_token(), "from-legacy")
        # $BAA_SHARED_TOKEN outranks the file, and replaces its content.
        n.env["BAA_SHARED_TOKEN"] = "from-env-var"
        try:
            self.assertEqual(installed_token(), "from-env-var")
        finally:
            del n.env["BAA_SHARED_TOKEN"]
        n.token_file.unlink()
        (config / "control-api-worker.secrets.env").write_text("BAA_SHARED_TOKEN=replace-me\n")
        proc = n.run("install-launchd.sh", *n.target_args(), *n.config_args(), "--service", "conductor")
        self.check(proc, 2)
        self.assertIn("placeholder", proc.stderr)


class PinnedCodexTests(ScriptTest):
    def test_install_puts_the_pinned_codex_under_the_root(self):
        n = self.node
        npm_log = n.root / "npm.log"
        n.env["FAKE_NPM_LOG"] = str(npm_log)
        self.bootstrap()
        args = [*n.target_args(), "--repo-dir", str(n.repo), "--bin-dir", str(n.bin),
                "--local-api-base", n.url("conductor")]
        pin = pinned_codex_version()
        codex_dir = n.runtime / "codex" / pin
        proc = n.run("install-launchd.sh", *args, "--dry-run")
        self.check(proc)
        self.assertIn("+ %s/scripts/install-codex.sh --dir" % REPO, proc.stdout.replace("\\ ", " "))
        self.assertFalse(npm_log.exists(), "dry-run ran npm")
        proc = n.run("install-launchd.sh", *args)
        self.check(proc)
        command = n.plist("codexd")["EnvironmentVariables"]["BAA_CODEXD_SERVER_COMMAND"]
        self.assertTrue(command.startswith(str(codex_dir) + "/node_modules/@openai/codex-"), command)
        self.assertTrue(command.endswith("/bin/codex"), command)
        self.assertIn("codex %s (pinned) at %s" % (pin, command), proc.stdout)
        self.assertEqual(len(npm_log.read_text().splitlines()), 1)
        # Already there: no second npm ci, same command; check-launchd expects it.
        self.check(n.run("install-launchd.sh", *args))
        self.assertEqual(len(npm_log.read_text().splitlines()), 1)
        self.check(n.run("check-launchd.sh", *args))


class CheckLaunchdTests(ScriptTest):
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
        n.token_file.chmod(0o644)
        proc = n.run("check-launchd.sh", *n.target_args(), *n.config_args(), "--service", "conductor")
        self.check(proc, 1)
        self.assertIn("token file %s has mode rw-r--r--; expected rw------- (chmod 600)" % n.token_file, proc.stderr)
        n.token_file.chmod(0o600)

        # The token itself in the conductor's plist (an old install) fails.
        path = n.plist_path("conductor")
        data = n.plist("conductor")
        data["EnvironmentVariables"]["BAA_SHARED_TOKEN"] = TOKEN
        path.write_bytes(plistlib.dumps(data))
        proc = n.run("check-launchd.sh", *n.target_args(), *n.config_args(), "--service", "conductor")
        self.check(proc, 1)
        self.assertIn("conductor: BAA_SHARED_TOKEN must not be set", proc.stderr)

        # A token in codexd's plist fails; so does a missing binary.
        path = n.plist_path("codexd")
        data = n.plist("codexd")
        data["EnvironmentVariables"]["BAA_SHARED_TOKEN"] = "x"
        path.write_bytes(plistlib.dumps(data))
        (n.runtime / "bin" / "current" / "baa-codexd").unlink()
        proc = n.run("check-launchd.sh", *n.target_args(), *n.config_args(), "--service", "codexd")
        self.check(proc, 1)
        self.assertIn("BAA_SHARED_TOKEN must not be set", proc.stderr)
        self.assertIn("binary not found", proc.stderr)

        # A broken file does not lint.
        path.write_text("<plist><dict><key>Label</key>")
        proc = n.run("check-launchd.sh", *n.target_args(), *n.config_args(), "--service", "codexd")
        self.check(proc, 1)
        self.assertIn("not a valid property list", proc.stderr)
