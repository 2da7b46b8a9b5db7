"""Every `--flag` a doc (docs/**/*.md, README.md) gives a script is one the script takes:
it appears in that script's `--help` (issue 20: launchd.md said every script takes
`--service NAME`, and `upgrade.sh --service conductor` was an unknown option).

A flag belongs to the script named last before it in the same line of a command block, or
the same paragraph (or table row) of prose, unless another command (`baa-conductor`,
`cargo`, `curl`, ...; in a command block also `|`, `;`, `&&`) comes between them. A
paragraph that starts with "Every script" speaks for every script in scripts/runtime/
except the ones it names after "except"."""

import re
import subprocess
import unittest

from harness import REPO, SCRIPTS, SCRIPT_NAMES

OTHER_SCRIPTS = {
    "dev.sh": REPO / "scripts" / "dev.sh",
    "install-codex.sh": REPO / "scripts" / "install-codex.sh",
    "render-status-page.sh": REPO / "scripts" / "render-status-page.sh",
}
ALL = {**{name: SCRIPTS / name for name in SCRIPT_NAMES}, **OTHER_SCRIPTS}
# Words after which a flag is another program's.
OTHER_COMMANDS = r"baa-conductor|baa-codexd|baa-status-api|cargo|curl|git|launchctl|npm|codex|tailscale|python3|openssl|plutil|lsof"
# A script the test does not check (`scripts/status-shape.py --check`) is another program
# too: its flags are not the script named before it.
TOKEN = re.compile(
    r"(?P<script>(?<![\w.-])(?:%s)(?![\w-]))|(?P<other>(?<![\w./-])(?:%s)(?![\w.-])|(?<![\w.-])[\w-]+\.(?:sh|py)(?![\w.-]))|(?P<flag>(?<![\w-])--[a-z][a-z0-9-]*)|(?P<sep>\||;|&&)"
    % ("|".join(re.escape(n) for n in ALL), OTHER_COMMANDS))


def docs():
    return sorted((REPO / "docs").rglob("*.md")) + [REPO / "README.md"]


def chunks(text):
    """(is_code, first line number, text): each line of a command block, each paragraph
    (or table row) of prose."""
    out = []
    in_code = False
    para, start = [], 0
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            if para:
                out.append((False, start, "\n".join(para)))
                para = []
            in_code = not in_code
            continue
        if in_code:
            out.append((True, number, line))
        elif not line.strip() or re.match(r"\s*(\||[-*] |\d+\. |#)", line):
            if para:
                out.append((False, start, "\n".join(para)))
                para = []
            if line.strip():
                out.append((False, number, line))
        else:
            if not para:
                start = number
            para.append(line)
    if para:
        out.append((False, start, "\n".join(para)))
    return out


def claims(path):
    """(script, flag, where) for every flag the doc gives a script."""
    found = []
    rel = path.relative_to(REPO)
    for is_code, number, text in chunks(path.read_text()):
        where = "%s:%d" % (rel, number)
        if not is_code and text.lstrip().startswith("Every script"):
            excepted = set()
            match = re.search(r"except\s+(.*?)[:;.]\s", text, re.S)
            if match:
                excepted = {m for m in re.findall(r"[a-z-]+\.sh", match.group(1))}
            for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text):
                for name in SCRIPT_NAMES:
                    if name not in excepted:
                        found.append((name, flag, where))
            continue
        for sentence in ([text] if is_code else re.split(r"(?<=[.!?])\s+(?=[A-Z`(])", text)):
            found += attribute(sentence, is_code, where)
    return found


def attribute(text, is_code, where):
    """(script, flag, where) for the flags of one command line or prose sentence."""
    found = []
    current = None
    for token in TOKEN.finditer(text):
        if token.group("script"):
            current = token.group("script")
        elif token.group("other"):
            current = None
        elif token.group("sep"):
            if is_code:
                current = None
        elif current:
            found.append((current, token.group("flag"), where))
    return found


def help_text(name):
    proc = subprocess.run(["bash", str(ALL[name]), "--help"], capture_output=True, text=True, timeout=60)
    return proc.stdout + proc.stderr


class DocFlagTests(unittest.TestCase):
    def test_every_flag_a_doc_gives_a_script_is_in_its_help(self):
        helps = {}
        missing = []
        total = 0
        for path in docs():
            for name, flag, where in claims(path):
                total += 1
                if name not in helps:
                    helps[name] = help_text(name)
                if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(flag), helps[name]):
                    missing.append("%s: %s %s is not in `%s --help`" % (where, name, flag, name))
        self.assertGreater(total, 50, "the docs should mention many script flags; did the parsing break?")
        self.assertEqual(missing, [], "\n" + "\n".join(sorted(set(missing))))

    def test_the_parser_catches_a_flag_a_script_lacks(self):
        sample = REPO / "tests" / "scripts" / ".doc-flags-sample.md"
        sample.write_text(
            "Run `scripts/runtime/upgrade.sh --service conductor`.\n\n"
            "Then `scripts/dev.sh --demo`, `scripts/status-shape.py --check` and `docs-blocks.sh --lint`.\n\n"
            "Every script: `--help`, `--bogus-flag`.\n\n"
            "```sh\nscripts/runtime/stop-launchd.sh --with-child | curl --fail x\n```\n")
        try:
            found = claims(sample)
        finally:
            sample.unlink()
        self.assertIn(("upgrade.sh", "--service"), [(n, f) for n, f, _ in found])
        self.assertIn(("install-mini.sh", "--bogus-flag"), [(n, f) for n, f, _ in found])
        self.assertIn(("stop-launchd.sh", "--with-child"), [(n, f) for n, f, _ in found])
        self.assertNotIn(("stop-launchd.sh", "--fail"), [(n, f) for n, f, _ in found])
        self.assertIn(("dev.sh", "--demo"), [(n, f) for n, f, _ in found])
        self.assertNotIn(("dev.sh", "--check"), [(n, f) for n, f, _ in found])
        self.assertNotIn(("dev.sh", "--lint"), [(n, f) for n, f, _ in found])
        self.assertNotIn("--service", help_text("upgrade.sh").split())


if __name__ == "__main__":
    unittest.main()
