"""status-launchd.sh's output: one clear line per service (up or DOWN and why), the log
files, and each probe as "ok" or a reason in words. Pins the old output's faults: a 404
printed as "unreachable (curl exit 0, http 404)" and the first line of a JSON body ("{")
printed as if it were a status."""

from harness import SERVICES, ScriptTest, alive


class StatusOutputTests(ScriptTest):
    def summary(self, out):
        """The one-line status of each service, from the block before the first ===."""
        head = out.split("===", 1)[0]
        lines = {}
        for line in head.splitlines():
            name = line.split(" ", 1)[0]
            if name in SERVICES:
                lines[name] = line
        return lines

    def test_status_says_up_or_down_in_one_line_per_service(self):
        n = self.node
        self.bootstrap_and_install()
        self.check(self.reload())
        proc = n.run("status-launchd.sh", *n.target_args())
        self.check(proc)
        lines = self.summary(proc.stdout)
        self.assertEqual(sorted(lines), sorted(SERVICES), proc.stdout)
        for service in SERVICES:
            self.assertRegex(lines[service], r"^%s +up · .* · launchd: loaded, pid \d+$" % service, proc.stdout)
        self.assertIn("automation running", lines["conductor"])
        self.assertIn(n.url("codexd"), lines["codexd"])
        self.assertIn("err log: %s/launchd/so.makefile.baa-codexd.err.log" % n.logs, proc.stdout)
        self.assertNotIn("curl exit 0", proc.stdout)
        self.assertNotRegex(proc.stdout, r"(?m): \{$", "a JSON body's first line printed")

        # codexd stopped: DOWN with the reason, the others still up.
        pid = n.pid("codexd")
        self.check(n.run("stop-launchd.sh", *n.target_args(), "--service", "codexd"))
        self.assertFalse(alive(pid), "codexd still running after stop")
        proc = n.run("status-launchd.sh", *n.target_args())
        self.check(proc)
        lines = self.summary(proc.stdout)
        self.assertEqual(
            lines["codexd"],
            "codexd      DOWN · connection refused (nothing listens) · %s · launchd: not loaded" % n.url("codexd"),
            proc.stdout,
        )
        self.assertRegex(lines["conductor"], r"^conductor +up · ", proc.stdout)

    def test_an_http_error_is_named_not_shown_as_unreachable(self):
        n = self.node
        self.bootstrap_and_install()
        self.check(self.reload())
        # A base that answers, but not these routes: every probe is a 404 from the
        # conductor, which must read as such.
        proc = n.run("status-launchd.sh", *n.target_args(), "--service", "codexd",
                     "--codexd-local-api-base", n.url("conductor") + "/nope")
        self.check(proc)
        lines = self.summary(proc.stdout)
        self.assertRegex(lines["codexd"], r"^codexd +DOWN · HTTP 404", proc.stdout)
        self.assertIn("healthz: HTTP 404", proc.stdout)
        self.assertNotIn("unreachable", proc.stdout)

