#!/usr/bin/env python3
"""Property-list helper for the runtime scripts; needs nothing but python3's stdlib.

The shell scripts use this instead of PlistBuddy/plutil so that rendering and reading
plists behave the same on the Mac mini and on a Linux CI box.

  plist.py render --template T --out O [--mode 0600] [--set NAME=VALUE]...
                  [--optional NAME]... [--secret NAME=ENVVAR]... [--username U] [--dry-run]
  plist.py flatten FILE     one "<:key:path>\t<value>" line per leaf
  plist.py get FILE :A:B    one value; exit 1 when the key is missing
  plist.py lint FILE...     exit 1 unless every file is a dict plist with a Label

Rendering parses the template first and substitutes @@NAME@@ placeholders inside the
parsed strings, then serializes with plistlib. Values therefore never meet raw XML:
"&", "<", quotes and the like are escaped by the serializer, and a value cannot inject
keys. Secret values come from the environment (--secret NAME=ENVVAR), never from argv,
so they do not show up in `ps`. A dict entry whose whole value is @@NAME@@ for an
--optional NAME with an empty value is left out, so an unset option writes no key at all
(the binaries would otherwise see `KEY=` and a setting nobody chose).
"""

import os
import plistlib
import re
import sys
import tempfile

PLACEHOLDER = re.compile(r"@@([A-Z0-9_]+)@@")
MASK = "********"


class RenderError(Exception):
    pass


def drop_unset(value, unset):
    """value without the dict entries whose value is exactly @@NAME@@ for a NAME in unset."""
    if isinstance(value, list):
        return [drop_unset(v, unset) for v in value]
    if isinstance(value, dict):
        kept = {}
        for key, item in value.items():
            match = PLACEHOLDER.fullmatch(item) if isinstance(item, str) else None
            if match and match.group(1) in unset:
                continue
            kept[key] = drop_unset(item, unset)
        return kept
    return value


def substitute(value, values, used):
    if isinstance(value, str):
        def repl(match):
            name = match.group(1)
            if name not in values:
                raise RenderError("no value for placeholder @@%s@@" % name)
            used.add(name)
            return values[name]

        return PLACEHOLDER.sub(repl, value)
    if isinstance(value, list):
        return [substitute(v, values, used) for v in value]
    if isinstance(value, dict):
        return {substitute(k, values, used): substitute(v, values, used) for k, v in value.items()}
    return value


def check_xml_chars(name, value):
    # XML 1.0 cannot carry most control characters; refuse instead of writing a broken plist.
    for ch in value:
        code = ord(ch)
        if code < 0x20 and ch not in "\t\n\r":
            raise RenderError("value for @@%s@@ contains control character U+%04X" % (name, code))


def flatten(value, prefix=""):
    if isinstance(value, dict):
        for key in value:
            yield from flatten(value[key], "%s:%s" % (prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from flatten(item, "%s:%d" % (prefix, index))
    else:
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, bytes):
            text = value.hex()
        else:
            text = str(value)
        text = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
        yield prefix, text


def load(path):
    with open(path, "rb") as handle:
        data = plistlib.load(handle)
    if not isinstance(data, dict):
        raise RenderError("%s: root is not a dict" % path)
    return data


def cmd_render(args):
    template = out = None
    mode = 0o644
    username = None
    dry_run = False
    values = {}
    optional = set()
    secrets = set()
    it = iter(args)
    for arg in it:
        if arg == "--template":
            template = next(it)
        elif arg == "--out":
            out = next(it)
        elif arg == "--mode":
            mode = int(next(it), 8)
        elif arg == "--username":
            username = next(it)
        elif arg == "--dry-run":
            dry_run = True
        elif arg == "--set":
            name, _, value = next(it).partition("=")
            values[name] = value
        elif arg == "--optional":
            optional.add(next(it))
        elif arg == "--secret":
            name, _, env_name = next(it).partition("=")
            if env_name not in os.environ:
                raise RenderError("secret for @@%s@@ expected in env %s" % (name, env_name))
            values[name] = os.environ[env_name]
            secrets.add(name)
        else:
            raise RenderError("render: unknown argument %s" % arg)
    if not template or not out:
        raise RenderError("render: --template and --out are required")
    for name, value in values.items():
        check_xml_chars(name, value)

    unset = {name for name in optional if not values.get(name)}
    data = drop_unset(load(template), unset)
    used = set()
    rendered = substitute(data, values, used)
    if username:
        rendered["UserName"] = username
    leftovers = [k for k, _ in flatten(rendered) if PLACEHOLDER.search(k)]
    leftovers += [v for _, v in flatten(rendered) if PLACEHOLDER.search(v)]
    if leftovers:
        raise RenderError("unresolved placeholder in %s: %s" % (template, leftovers[0]))

    if dry_run:
        masked = {k: (MASK if k in secrets else v) for k, v in values.items()}
        shown = substitute(data, masked, set())
        if username:
            shown["UserName"] = username
        print("would write %s (mode %04o) from %s" % (out, mode, template))
        for key, value in flatten(shown):
            print("  %s = %s" % (key, value))
        return 0

    body = plistlib.dumps(rendered, fmt=plistlib.FMT_XML, sort_keys=False)
    directory = os.path.dirname(os.path.abspath(out))
    # Write a temp file with the final mode from the start, then rename: the token is
    # never readable by others, not even for a moment, and readers never see half a file.
    fd, tmp = tempfile.mkstemp(prefix=".render.", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return 0


def cmd_flatten(args):
    data = load(args[0])
    for key, value in flatten(data):
        sys.stdout.write("%s\t%s\n" % (key, value))
    return 0


def cmd_get(args):
    data = load(args[0])
    wanted = args[1]
    for key, value in flatten(data):
        if key == wanted:
            sys.stdout.write(value + "\n")
            return 0
    return 1


def cmd_lint(args):
    status = 0
    for path in args:
        try:
            data = load(path)
            if not isinstance(data.get("Label"), str):
                raise RenderError("%s: no Label string" % path)
            print("%s: OK" % path)
        except Exception as err:  # report every file, not only the first bad one
            print("%s: invalid: %s" % (path, err), file=sys.stderr)
            status = 1
    return status


def main(argv):
    commands = {"render": cmd_render, "flatten": cmd_flatten, "get": cmd_get, "lint": cmd_lint}
    if len(argv) < 2 or argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        return commands[argv[1]](argv[2:])
    except (RenderError, OSError, plistlib.InvalidFileException, StopIteration, ValueError) as err:
        print("plist.py: %s" % (err or "missing argument value"), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
