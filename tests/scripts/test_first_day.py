"""Issue 20, an operator's first day on the node: install checks everything before it
writes or builds (token and its mode, ports, codex; the plan printed once; errors name the
script that was run), the baa-* commands land on PATH, node.env tells a plain shell's
`baa-conductor` where the node is, and upgrade/uninstall remember the install's options.

The "done when" test (real binaries only: BAA_TEST_BIN_DIR) installs a node whose
Tailscale address the fake tailscale reports (never up in CI: the conductor listens on
loopback too and keeps trying it), then runs `baa-conductor task add`, `task list` and the
documented `curl http://127.0.0.1:<port>/healthz` from a shell with nothing but HOME and
PATH."""

import os
import re
import socket
import stat
import subprocess
import unittest

from harness import FAKES, REPO, ScriptTest, real_bin_dir, write_exe

TAILSCALE_IP = "100.64.7.9"


def documented_token_one_liner():
    """The command launchd.md gives for creating the token file."""
    text = (REPO / "docs" / "runtime" / "launchd.md").read_text()
    match = re.search(r"^(mkdir -p ~/\.config/baa-conductor && \(umask 077; .*shared-token\.txt\))$", text, re.M)
    assert match, "no token one-liner in docs/runtime/launchd.md"
    return match.group(1)


class FirstDayTest(ScriptTest):
    def setUp(self):
        super().setUp()
        n = self.node
        # A cargo that only records that it was asked to build.
        self.cargo_log = n.root / "cargo.log"
        cargo_bin = n.root / "cargo-bin"
        cargo_bin.mkdir()
        write_exe(cargo_bin / "cargo", '#!/bin/sh\necho "cargo $*" >>"%s"\n' % self.cargo_log)
        n.env["PATH"] = "%s:%s" % (cargo_bin, n.env["PATH"])

    def mini_args(self, *extra):
        n = self.node
        return [*n.target_args(), *n.config_args(), *n.health_args(), *extra]

    def assert_nothing_written_or_built(self, proc):
        n = self.node
        self.assertFalse(n.runtime.exists(), "the runtime root was created\n" + proc.output)
        self.assertFalse(n.logs.exists(), "the logs dir was created")
        self.assertFalse(n.install.exists(), "a plist was written")
        self.assertFalse(self.cargo_log.exists(), "cargo ran: %s" % (self.cargo_log.read_text() if self.cargo_log.exists() else ""))
        self.assertEqual(list(n.links.iterdir()), [], "a link was made")
        self.assertEqual(n.calls(), [], "launchctl was called")

    def assert_names_install_mini(self, proc):
        self.assertIn("run install-mini.sh --help for usage", proc.stderr)
        self.assertNotIn("install-launchd.sh", proc.stderr)


class InstallChecksFirstTests(FirstDayTest):
    def test_bad_token_mode_fails_before_anything_is_written_or_built(self):
        n = self.node
        n.token_file.chmod(0o644)
        proc = n.run("install-mini.sh", *self.mini_args())
        self.check(proc, 2)
        self.assertIn("token file %s has mode rw-r--r--" % n.token_file, proc.stderr)
        self.assertIn("chmod 600 '%s'" % n.token_file, proc.stderr)
        self.assert_names_install_mini(proc)
        self.assert_nothing_written_or_built(proc)
        self.assertEqual(stat.S_IMODE(n.token_file.stat().st_mode), 0o644)

    def test_missing_token_shows_the_documented_one_liner_which_makes_a_private_file(self):
        n = self.node
        n.token_file.unlink()
        proc = n.run("install-mini.sh", *self.mini_args())
        self.check(proc, 2)
        self.assertIn("To create one: mkdir -p '%s' && (umask 077; openssl rand -hex 32 > '%s')"
                      % (n.token_file.parent, n.token_file), proc.stderr)
        self.assert_names_install_mini(proc)
        self.assert_nothing_written_or_built(proc)
        # The doc's one-liner, as pasted into a shell whose umask lets others read.
        subprocess.run(["bash", "-c", "umask 022; " + documented_token_one_liner()],
                       env={**n.env, "HOME": str(n.home)}, check=True)
        self.assertEqual(stat.S_IMODE(n.token_file.stat().st_mode), 0o600)
        self.assertRegex(n.token_file.read_text(), r"^[0-9a-f]{64}\n$")
        proc = n.run("install-mini.sh", *self.mini_args("--dry-run"))
        self.check(proc)

    def test_plan_printed_once_before_the_build(self):
        n = self.node
        proc = n.run("install-mini.sh", *self.mini_args("--skip-check"))
        self.check(proc)
        out = proc.stdout.splitlines()
        self.assertEqual(sum(1 for l in out if l.startswith("[runtime] listen host:")), 1, proc.stdout)
        self.assertEqual(sum(1 for l in out if l.startswith("[runtime] runtime root:")), 1, proc.stdout)
        self.assertEqual(self.cargo_log.read_text(), "cargo build --release --manifest-path %s\n" % (n.repo / "Cargo.toml"))
        plan = out.index(next(l for l in out if l.startswith("[runtime] runtime root:")))
        first_write = min(i for i, l in enumerate(out) if l.startswith(("[runtime] runtime directories", "[runtime] copied", "[runtime] wrote")))
        self.assertLess(plan, first_write, proc.stdout)
        self.assertIn("mini install complete", proc.stdout)

    def test_a_port_in_use_is_refused_before_anything_is_written(self):
        n = self.node
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", n.ports["status-api"]))
            sock.listen()
            proc = n.run("install-mini.sh", *self.mini_args())
        self.check(proc, 2)
        self.assertIn("status-api: port %d on 127.0.0.1 is in use by another program" % n.ports["status-api"], proc.stderr)
        self.assertIn("--status-api-port PORT", proc.stderr)
        self.assert_names_install_mini(proc)
        self.assert_nothing_written_or_built(proc)

    def test_ports_held_by_the_node_itself_are_not_in_the_way(self):
        n = self.node
        self.check(n.run("install-mini.sh", *self.mini_args("--skip-build", "--skip-check")))
        proc = n.run("install-mini.sh", *self.mini_args("--skip-build", "--skip-check"))
        self.check(proc)
        self.assertIn("mini install complete", proc.stdout)

    def test_a_missing_codex_is_refused_before_anything_is_written(self):
        n = self.node
        args = [a if a != str(FAKES / "codex") else str(n.root / "no-codex") for a in self.mini_args()]
        proc = n.run("install-mini.sh", *args)
        self.check(proc, 2)
        self.assertIn("--codex-command %s: not an executable file" % (n.root / "no-codex"), proc.stderr)
        self.assert_nothing_written_or_built(proc)
        # The pin without npm to install it: a PATH of the system's tools but node's.
        args = [a for a in self.mini_args() if a not in ("--codex-command", str(FAKES / "codex"))]
        bare = n.root / "no-npm-bin"
        bare.mkdir()
        for tool in ("launchctl", "id"):
            os.symlink(FAKES / tool, bare / tool)
        for system_dir in ("/usr/bin", "/bin"):
            for tool in os.listdir(system_dir):
                if tool not in ("npm", "npx", "node", "corepack") and not (bare / tool).exists():
                    os.symlink(os.path.join(system_dir, tool), bare / tool)
        n.env["PATH"] = "%s:%s" % (n.root / "cargo-bin", bare)
        proc = n.run("install-mini.sh", *args)
        self.check(proc, 2)
        self.assertIn("npm is not on PATH", proc.stderr)
        self.assert_nothing_written_or_built(proc)

    def test_host_is_an_alias_of_listen_host_that_warns(self):
        n = self.node
        proc = n.run("install-launchd.sh", *n.target_args(), "--host", "127.0.0.1", "--dry-run")
        self.check(proc)
        self.assertIn("warning: --host is now --listen-host", proc.stderr)
        self.assertIn("[runtime] listen host: 127.0.0.1 (from --listen-host)", proc.stdout)


class CommandsOnPathTests(FirstDayTest):
    def test_install_links_the_commands_into_the_first_writable_bin_dir_on_path(self):
        n = self.node
        del n.env["BAA_RUNTIME_LINK_DIR"]
        local_bin = n.home / ".local" / "bin"
        local_bin.mkdir(parents=True)
        (n.home / "bin").mkdir()
        # /usr/local/bin and /opt/homebrew/bin are left off PATH: never this machine's.
        n.env["PATH"] = "%s:%s:%s:/usr/bin:/bin" % (FAKES, n.home / "bin", local_bin)
        self.bootstrap()
        proc = n.run("install-launchd.sh", *n.target_args(), *n.config_args())
        self.check(proc)
        self.assertIn("[runtime] commands: %s/baa-{conductor,codexd,status-api} -> %s/bin/current/ (the first writable bin dir on PATH)"
                      % (local_bin, n.runtime), proc.stdout)
        for name in ("baa-conductor", "baa-codexd", "baa-status-api"):
            link = local_bin / name
            self.assertEqual(os.readlink(link), "%s/bin/current/%s" % (n.runtime, name))
            self.assertTrue(os.access(link, os.X_OK), name)
        self.assertEqual(list((n.home / "bin").iterdir()), [])
        # Uninstall removes them (found through the recorded link dir).
        proc = n.run("uninstall-launchd.sh", "--home", str(n.home))
        self.check(proc)
        self.assertEqual(list(local_bin.iterdir()), [])
        self.assertIn("removed the link %s/baa-conductor" % local_bin, proc.stdout)

    def test_without_a_bin_dir_on_path_install_prints_the_path_line(self):
        n = self.node
        del n.env["BAA_RUNTIME_LINK_DIR"]
        n.env["PATH"] = "%s:/usr/bin:/bin" % FAKES
        self.bootstrap()
        proc = n.run("install-launchd.sh", *n.target_args(), *n.config_args())
        self.check(proc)
        self.assertIn('export PATH="%s/bin/current:$PATH"' % n.runtime, proc.stdout)
        # A given link dir that is not there is refused before anything is written.
        proc = n.run("install-launchd.sh", *n.target_args(), *n.config_args(), "--link-dir", str(n.root / "nope"))
        self.check(proc, 2)
        self.assertIn("is not a writable directory", proc.stderr)
        # Another program of the same name is not replaced.
        write_exe(n.links / "baa-conductor", "#!/bin/sh\n")
        proc = n.run("install-launchd.sh", *n.target_args(), *n.config_args(), "--link-dir", str(n.links))
        self.check(proc, 2)
        self.assertIn("%s/baa-conductor exists and is not a link" % n.links, proc.stderr)

    def test_node_env_names_the_loopback_url_token_file_and_root(self):
        n = self.node
        self.bootstrap_and_install()
        env_file = n.home / ".config" / "baa-conductor" / "node.env"
        self.assertEqual(stat.S_IMODE(env_file.stat().st_mode), 0o600)
        values = dict(l.split("=", 1) for l in env_file.read_text().splitlines() if l and not l.startswith("#"))
        self.assertEqual(values, {
            "BAA_CONDUCTOR_URL": n.url("conductor"),
            "BAA_STATUS_API_URL": n.url("status-api"),
            "BAA_SHARED_TOKEN_FILE": str(n.token_file),
            "BAA_RUNTIME_ROOT": str(n.runtime),
            "BAA_BIN_DIR": "%s/bin/current" % n.runtime,
        })
        self.assertNotIn("tmp", [p.name.split(".")[-1] for p in env_file.parent.iterdir()])
        # On a Tailscale address, the loopback URL of the same port.
        n.with_tailscale(TAILSCALE_IP)
        proc = n.run("install-launchd.sh", *n.target_args(), "--repo-dir", str(n.repo), "--bin-dir", str(n.bin),
                     "--codex-command", str(FAKES / "codex"))
        self.check(proc)
        self.assertIn("BAA_CONDUCTOR_URL=http://127.0.0.1:4317\n", env_file.read_text())
        self.assertIn("BAA_STATUS_API_URL=http://127.0.0.1:4318\n", env_file.read_text())


class UpgradeRemembersTests(FirstDayTest):
    def test_upgrade_dry_run_after_an_install_with_options_plans_those_options(self):
        n = self.node
        codex = n.root / "my codex"
        write_exe(codex, (FAKES / "codex").read_text())
        self.bootstrap()
        self.check(n.run("install-launchd.sh", *n.target_args(), "--repo-dir", str(n.repo), "--bin-dir", str(n.bin),
                         "--codex-command", str(codex), "--listen-host", "127.0.0.1", "--label-prefix", "com.example",
                         "--status-api-port", str(n.ports["status-api"])))
        record = n.runtime / "install-options.env"
        self.assertEqual(stat.S_IMODE(record.stat().st_mode), 0o600)
        self.assertIn("CODEX_COMMAND=%s\n" % codex, record.read_text())
        # Nothing but the home: the root comes from node.env, the rest from the record.
        proc = n.run("upgrade.sh", "--home", str(n.home), "--skip-build", "--dry-run")
        self.check(proc)
        self.assertIn("[runtime] using the install's options from %s:" % record, proc.stdout)
        self.assertIn("--codex-command %s" % str(codex).replace(" ", "\\ "), proc.stdout)
        self.assertIn("[runtime] codex: %s (--codex-command)" % codex, proc.stdout)
        self.assertIn("[runtime] listen host: 127.0.0.1 (from --listen-host)", proc.stdout)
        self.assertIn("[runtime] launchd labels: com.example.baa-conductor, com.example.baa-codexd, com.example.baa-status-api", proc.stdout)
        self.assertIn(":Label = com.example.baa-conductor", proc.stdout)
        self.assertIn(":EnvironmentVariables:BAA_CODEXD_SERVER_COMMAND = %s" % codex, proc.stdout)
        self.assertIn(":EnvironmentVariables:BAA_STATUS_API_PORT = %d" % n.ports["status-api"], proc.stdout)
        self.assertNotIn("install-codex.sh", proc.stdout, "the pinned codex was planned")
        # An option given now wins.
        proc = n.run("upgrade.sh", "--home", str(n.home), "--skip-build", "--dry-run", "--codex-command", str(FAKES / "codex"))
        self.check(proc)
        self.assertIn("[runtime] codex: %s (--codex-command)" % (FAKES / "codex"), proc.stdout)
        self.assertNotIn("--codex-command %s" % str(codex).replace(" ", "\\ "), proc.stdout)

    def test_upgrade_dry_run_after_install_mini_plans_its_codex_and_listen_host(self):
        n = self.node
        codex = n.root / "pinned-by-hand codex"
        write_exe(codex, (FAKES / "codex").read_text())
        args = [a if a != str(FAKES / "codex") else str(codex) for a in self.mini_args()]
        self.check(n.run("install-mini.sh", *args, "--listen-host", "127.0.0.1", "--skip-build", "--skip-check"))
        proc = n.run("upgrade.sh", "--skip-build", "--dry-run")
        self.check(proc)
        self.assertIn("[runtime] codex: %s (--codex-command)" % codex, proc.stdout)
        self.assertIn("[runtime] listen host: 127.0.0.1 (from --listen-host)", proc.stdout)
        self.assertIn(":EnvironmentVariables:BAA_CONDUCTOR_LOCAL_API = %s" % n.url("conductor"), proc.stdout)
        self.assertNotIn("install-codex.sh", proc.stdout, "the pinned codex was planned")

    def test_a_reinstall_of_one_service_keeps_the_record_of_the_others(self):
        n = self.node
        other = n.root / "other codex"
        write_exe(other, (FAKES / "codex").read_text())
        record = n.runtime / "install-options.env"

        def recorded():
            return dict(l.split("=", 1) for l in record.read_text().splitlines() if l and not l.startswith("#"))

        self.bootstrap_and_install("--listen-host", "127.0.0.1", "--label-prefix", "com.example")
        self.assertEqual(recorded()["SERVICES"], "conductor,codexd,status-api")
        self.check(n.run("install-launchd.sh", *n.target_args(), "--service", "codexd", "--label-prefix", "com.example",
                         "--codex-command", str(other)))
        self.assertEqual(recorded()["SERVICES"], "conductor,codexd,status-api")
        self.assertEqual(recorded()["CODEX_COMMAND"], str(other))
        self.assertEqual(recorded()["LISTEN_HOST"], "127.0.0.1")
        self.assertEqual(recorded()["STATUS_API_PORT"], str(n.ports["status-api"]))
        # All three again without --codex-command: back to what is given now.
        self.check(n.run("install-launchd.sh", *n.target_args(), "--label-prefix", "com.example",
                         "--repo-dir", str(n.repo), "--bin-dir", str(n.bin), "--codex-command", str(FAKES / "codex")))
        self.assertEqual(recorded()["CODEX_COMMAND"], str(FAKES / "codex"))
        self.assertNotIn("LISTEN_HOST", recorded())
        self.assertNotIn("STATUS_API_PORT", recorded())

    def test_uninstall_uses_the_recorded_label_prefix(self):
        n = self.node
        self.bootstrap_and_install("--label-prefix", "com.example")
        self.check(self.reload("--label-prefix", "com.example"))
        proc = n.run("uninstall-launchd.sh", "--home", str(n.home))
        self.check(proc)
        self.assertIn("--label-prefix com.example", proc.stdout)
        self.assertEqual(list(n.install.glob("*.plist")), [])
        self.assertIn(["bootout", "gui/501/com.example.baa-conductor"], n.calls())


@unittest.skipUnless(real_bin_dir(), "needs the real binaries (BAA_TEST_BIN_DIR)")
class PlainShellTests(FirstDayTest):
    def test_a_plain_shell_reaches_the_conductor_of_a_tailscale_node(self):
        n = self.node
        n.with_tailscale(TAILSCALE_IP)
        port = n.ports["conductor"]
        proc = n.run("install-mini.sh", *n.target_args(), "--repo-dir", str(n.repo), "--bin-dir", str(n.bin),
                     "--local-api-base", "http://%s:%d" % (TAILSCALE_IP, port),
                     "--codexd-local-api-base", n.url("codexd"),
                     "--status-api-port", str(n.ports["status-api"]),
                     "--codex-command", str(FAKES / "codex"), *n.health_args("30"), "--skip-check", timeout=300)
        self.check(proc)
        self.assertIn("[runtime] listen host: %s (from tailscale ip -4)" % TAILSCALE_IP, proc.stdout)
        # Nothing but HOME and PATH (the link dir): the conductor is on a free port, not the
        # CLI's default 4317, so only node.env can tell `baa-conductor` where it is.
        plain = {"HOME": str(n.home), "PATH": "%s:/usr/bin:/bin" % n.links}

        def shell(command):
            out = subprocess.run(["/bin/sh", "-c", command], env=plain, capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 0, "%s\n--- stdout\n%s--- stderr\n%s" % (command, out.stdout, out.stderr))
            return out.stdout

        task_id = shell("baa-conductor task add --title 'first day' --prompt 'say hello'").strip()
        self.assertTrue(task_id, "task add printed no id")
        listed = shell("baa-conductor task list")
        self.assertIn(task_id, listed)
        self.assertIn("first day", listed)
        self.assertEqual(shell("curl -s http://127.0.0.1:%d/healthz" % port), "ok\n")
