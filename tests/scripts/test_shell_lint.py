"""Static checks of every shell script under scripts/: strict mode and --help on the
runtime scripts, `bash -n`, shellcheck, and the constructs macOS cannot run.

macOS runs `#!/usr/bin/env bash` with bash 3.2 (unless Homebrew's bash comes first), and
its stat/sed/date/readlink are BSD's. So: no bash-4 construct anywhere in scripts/, no
GNU-only flag in the scripts an operator runs on the Mac (scripts/runtime/, dev.sh,
install-codex.sh; lib/portable.sh holds the helpers that work on both), and no `| head`
under `set -o pipefail` (the writer can die of SIGPIPE and take the script with it: exit
141, issue 9 item 10). Each rule has a sample it must catch, so the lint cannot silently
match nothing.
"""

import re
import shutil
import subprocess
import unittest

from harness import REPO, SCRIPTS, SCRIPT_NAMES, ScriptTest

ALL_SCRIPTS = sorted(p for p in (REPO / "scripts").rglob("*.sh"))
MAC_SCRIPTS = sorted(list(SCRIPTS.rglob("*.sh")) + [REPO / "scripts" / "dev.sh", REPO / "scripts" / "install-codex.sh"])

# (what, regex, a line it must catch)
BASH4 = [
    ("associative array (declare -A)", r"\b(declare|typeset|local)\s+-[a-zA-Z]*A", "declare -A seen"),
    ("nameref (local -n / declare -n)", r"\b(declare|typeset|local)\s+-[a-zA-Z]*n\b", "local -n ref=x"),
    ("case attributes (declare -l/-u)", r"\b(declare|typeset|local)\s+-[a-zA-Z]*[lu]\b", "declare -l lower"),
    ("global declare (declare -g)", r"\b(declare|typeset)\s+-[a-zA-Z]*g", "declare -g x=1"),
    ("mapfile/readarray", r"\b(mapfile|readarray)\b", "mapfile -t lines <file"),
    ("coproc", r"\bcoproc\b", "coproc cat"),
    ("case modification (${x,,} ${x^^})", r"\$\{[#!]?[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?(,,?|\^\^?)", 'echo "${name,,}"'),
    ("|& (pipe stderr)", r"\|&", "make |& tee log"),
    ("&>> (append both)", r"&>>", "cmd &>>log"),
    ("-v test (variable is set)", r"(\[\[|\[|\btest)\s+-v\s", "[[ -v HOME ]]"),
    ("${x@Q} transformation", r"\$\{[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?@[QEPAaKkUuL]\}", 'echo "${x@Q}"'),
    ("negative array subscript", r"\b[A-Za-z_][A-Za-z0-9_]*\[-[0-9]+\]", 'echo "${arr[-1]}"'),
    ("wait -n / -f / -p", r"\bwait\s+-[nfp]\b", "wait -n"),
    ("case fallthrough (;& ;;&)", r";;&|;&", "a) echo a ;&"),
    ("bash-4 shopt option", r"\bshopt\s+-s\s+(globstar|lastpipe|autocd|direxpand|checkjobs|dirspell|inherit_errexit|localvar_inherit)", "shopt -s globstar"),
    ("bash-4 variable ($BASHPID, $EPOCHSECONDS, ...)", r"\$\{?(EPOCHSECONDS|EPOCHREALTIME|BASHPID|BASH_ARGV0)\b", "echo $BASHPID"),
    ("automatic fd ({fd}>)", r"\{[A-Za-z_][A-Za-z0-9_]*\}[<>]", "exec {fd}>file"),
    ("printf %(...)T", r"%\([^)]*\)T", "printf '%(%F)T' -1"),
]

# GNU-only (or BSD-only) flags of tools both systems have, in the scripts run on the Mac.
GNU_ONLY = [
    ("sed -i (GNU and BSD differ; write a temp file and mv)", r"\bsed\s+(-[a-zA-Z]+\s+)*-[a-zA-Z]*i\b", "sed -i 's/a/b/' f"),
    ("stat -c / -f (use file_mode in lib/portable.sh)", r"\bstat\s+-[cf]\b", "stat -c %a f"),
    ("date -d / -j / -v / -r", r"\bdate\s+(-[a-zA-Z]+\s+)*-[djvr]\b", "date -d yesterday"),
    ("readlink -f", r"\breadlink\s+-[a-zA-Z]*f", "readlink -f x"),
    ("timeout(1) (not on macOS; use run_bounded)", r"(^|[\s;|&(])timeout\s", "timeout 5 cmd"),
    ("setsid (not on macOS)", r"\bsetsid\b", "setsid cmd"),
    ("sha256sum/md5sum (not on macOS; cksum is POSIX)", r"\b(sha256sum|sha1sum|md5sum)\b", "sha256sum f"),
    ("xargs -r", r"\bxargs\s+(-[a-zA-Z]+\s+)*-[a-zA-Z]*r", "xargs -r rm"),
    ("grep -P", r"\bgrep\s+(-[a-zA-Z]+\s+)*-[a-zA-Z]*P", "grep -P '\\d'"),
    ("find -printf", r"\s-printf\b", "find . -printf '%p'"),
    ("mv/cp/ln -T", r"\b(cp|mv|ln)\s+(-[a-zA-Z]+\s+)*-[a-zA-Z]*T", "mv -T a b"),
    ("base64 -d/-D", r"\bbase64\s+-[dD]\b", "base64 -d"),
    ("nproc (not on macOS)", r"\bnproc\b", "nproc"),
    ("echo -e", r"\becho\s+-e\b", "echo -e 'a\\n'"),
    ("mktemp -t (template vs prefix)", r"\bmktemp\s+(-[a-zA-Z]+\s+)*-[a-zA-Z]*t\b", "mktemp -t x.XXXX"),
]

HEAD_UNDER_PIPEFAIL = ("| head under set -o pipefail (SIGPIPE kills the writer: exit 141)", r"\|\s*head\b", "printf '%s' \"$x\" | head -n 1")


def code_lines(path):
    """(number, line) for each line that is code: comments dropped, heredoc bodies skipped."""
    lines = []
    heredoc = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if heredoc is not None:
            if line.strip() == heredoc:
                heredoc = None
            continue
        if line.lstrip().startswith("#"):
            continue
        line = re.sub(r"(^|\s)#.*$", "", line)
        match = re.search(r"<<-?\s*['\"]?([A-Za-z_][A-Za-z0-9_]*)['\"]?", line)
        if match:
            heredoc = match.group(1)
        lines.append((number, line))
    return lines


def violations(paths, rules):
    found = []
    for path in paths:
        for number, line in code_lines(path):
            for what, regex, _ in rules:
                if re.search(regex, line):
                    name = path.relative_to(REPO) if REPO in path.parents else path
                    found.append("%s:%d: %s: %s" % (name, number, what, line.strip()))
    return found


class ShellLintTests(ScriptTest):
    def test_every_runtime_script_has_help_and_strict_mode(self):
        for name in SCRIPT_NAMES:
            text = (SCRIPTS / name).read_text()
            self.assertTrue(text.startswith("#!/usr/bin/env bash\n"), name)
            self.assertIn("set -euo pipefail", text, name)
            proc = self.node.run(name, "--help")
            self.check(proc)
            self.assertIn("Usage", proc.stdout, name)

    def test_bash_syntax(self):
        for path in ALL_SCRIPTS:
            proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
            self.assertEqual(proc.returncode, 0, "%s: %s" % (path, proc.stderr))

    def test_shellcheck_clean(self):
        if shutil.which("shellcheck") is None:
            self.skipTest("shellcheck not installed")
        files = [str(SCRIPTS / n) for n in SCRIPT_NAMES + ["common.sh"]]
        files += [str(p) for p in sorted((SCRIPTS / "lib").glob("*.sh"))]
        files += [str(REPO / "scripts" / n) for n in ["dev.sh", "install-codex.sh", "install-py-tools.sh", "walkthrough.sh", "test.sh"]]
        proc = subprocess.run(["shellcheck", "-x", *files], cwd=str(REPO), capture_output=True, text=True)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)

    def test_no_bash4_constructs_in_scripts(self):
        self.assertGreater(len(ALL_SCRIPTS), 10)
        self.assertEqual(violations(ALL_SCRIPTS, BASH4), [])

    def test_no_gnu_only_flags_in_scripts_run_on_the_mac(self):
        self.assertEqual(violations(MAC_SCRIPTS, GNU_ONLY), [])

    def test_no_head_under_pipefail_sigpipe(self):
        strict = [p for p in ALL_SCRIPTS if "pipefail" in p.read_text()]
        strict += sorted((SCRIPTS / "lib").glob("*.sh"))  # sourced by scripts that set it
        self.assertEqual(violations(strict, [HEAD_UNDER_PIPEFAIL]), [])

    def test_each_rule_catches_its_sample(self):
        sample = self.tmp / "sample.sh"
        for rule in BASH4 + GNU_ONLY + [HEAD_UNDER_PIPEFAIL]:
            sample.write_text("#!/usr/bin/env bash\n%s\n" % rule[2])
            self.assertEqual(len(violations([sample], [rule])), 1, "rule %r misses %r" % (rule[0], rule[2]))
        # Comments and heredoc text are not code.
        sample.write_text("# declare -A x\ncat <<EOF\nmapfile here is text\nEOF\necho ok # wait -n\n")
        self.assertEqual(violations([sample], BASH4), [])

    @unittest.skipUnless(shutil.which("bash3.2") or shutil.which("bash-3.2"), "no bash 3.2 on this machine")
    def test_runtime_scripts_parse_under_bash_3_2(self):
        bash32 = shutil.which("bash3.2") or shutil.which("bash-3.2")
        for path in sorted(SCRIPTS.rglob("*.sh")):
            proc = subprocess.run([bash32, "-n", str(path)], capture_output=True, text=True)
            self.assertEqual(proc.returncode, 0, "%s: %s" % (path, proc.stderr))
