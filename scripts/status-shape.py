#!/usr/bin/env python3
"""The shape of status-api's `GET /v1/status` `data`, from a real response, in
docs/api/status-api-interfaces.md (the block between <!-- status-shape:start --> and
<!-- status-shape:end -->), so the doc names the fields the API sends and no other.

  scripts/status-shape.py --write [URL]   render it from a running status-api into the doc
  scripts/status-shape.py --check [URL]   fail when the doc and the response disagree

URL defaults to http://127.0.0.1:4318/v1/status (the dev stack; a file:// URL reads a saved
response). scripts/docs-blocks.sh runs --check against the dev stack in CI.
BAA_STATUS_SHAPE_DOC names another doc (tests).

The shape: `name {fields}` for an object, `name [{fields}]` for an array of objects (its
first element), a bare name for anything else; `{…}` is an object documented elsewhere or
keyed by ids (not compared inside); `name?` a field that is not always sent.
--check is strict where the response shows something: a field the response has and the doc
lacks, or one the doc names and the response lacks (unless marked `?`), fails. Where the
response has null or an empty array, the doc's detail there is kept by --write and not
compared (a dev stack has no running task, for one).
"""

import json
import os
import re
import sys
import urllib.request

DOC = os.environ.get("BAA_STATUS_SHAPE_DOC", "docs/api/status-api-interfaces.md")
START, END = "<!-- status-shape:start -->", "<!-- status-shape:end -->"
# Documented elsewhere (codexd's status, the conductor's /v1/runtime and system state), or
# objects keyed by ids (schedule ids), collapsed to {…}.
COLLAPSED = {
    ("codexd", "status"),
    ("conductor", "runtime"),
    ("conductor", "systemState"),
    ("tasks", "usage", "today", "by_schedule"),
    ("tasks", "usage", "last_7_days", "by_schedule"),
}
WIDTH = 92

# A shape: dict name -> (optional: bool, sub) where sub is None (a leaf), "…" (collapsed),
# ("obj", shape) or ("arr", shape | None).


def of_value(v, path=()):
    if path in COLLAPSED and isinstance(v, dict):
        return "…"
    if isinstance(v, dict):
        return ("obj", {k: (False, of_value(x, path + (k,))) for k, x in sorted(v.items())})
    if isinstance(v, list):
        firsts = [x for x in v if isinstance(x, dict)]
        return ("arr", of_value(firsts[0], path)[1] if firsts else None)
    return None


def tokens(text):
    return re.findall(r"[{}\[\],]|[^\s{}\[\],]+", text)


def parse(text):
    toks = tokens(text)
    pos = 0

    def obj():
        nonlocal pos
        assert toks[pos] == "{", "expected { at token %d: %r" % (pos, toks[pos:pos + 5])
        pos += 1
        if toks[pos] == "…":
            pos += 2
            return "…"
        fields = {}
        while toks[pos] != "}":
            if toks[pos] == ",":
                pos += 1
                continue
            name = toks[pos]
            pos += 1
            optional = name.endswith("?")
            name = name.rstrip("?")
            sub = None
            if toks[pos] == "{":
                sub = obj()
                sub = sub if sub == "…" else ("obj", sub)
            elif toks[pos] == "[":
                pos += 1
                inner = None
                if toks[pos] == "{":
                    inner = obj()
                    inner = None if inner == "…" else inner
                assert toks[pos] == "]", "expected ] at token %d" % pos
                pos += 1
                sub = ("arr", inner)
            fields[name] = (optional, sub)
        pos += 1
        return fields

    assert toks[0] == "data", "the shape starts with `data {`"
    pos = 1
    return ("obj", obj())


def render_fields(fields, indent):
    parts = []
    for name, (optional, sub) in fields.items():
        label = name + ("?" if optional else "")
        if sub is None:
            parts.append(label)
        elif sub == "…":
            parts.append(label + " {…}")
        elif sub[0] == "obj":
            parts.append(label + " " + render_obj(sub[1], indent))
        else:
            inner = "" if sub[1] is None else render_obj(sub[1], indent)
            parts.append(label + " [" + inner + "]")
    return parts


def render_obj(fields, indent):
    parts = render_fields(fields, indent + 1)
    one = "{" + ", ".join(parts) + "}"
    if "\n" not in one and len(one) + 2 * indent <= WIDTH:
        return one
    # One line per nested object; the plain fields between them wrapped to the width.
    pad = "  " * (indent + 1)
    lines, line = [], ""
    for p in parts:
        if "\n" in p or len(pad) + len(line) + len(p) + 2 > WIDTH:
            if line:
                lines.append(line)
            line = ""
        if "\n" in p:
            lines.append(p)
        else:
            line = p if not line else line + ", " + p
    if line:
        lines.append(line)
    return "{\n" + "".join(pad + l + "\n" for l in lines) + "  " * indent + "}"


def merge(live, doc):
    """The live shape, keeping the doc's detail where the response shows none."""
    if live is None:
        return doc
    if doc is None or live == "…" or doc == "…":
        return live
    if live[0] == "arr":
        if live[1] is None:
            return ("arr", doc[1] if doc[0] == "arr" else None)
        return ("arr", merge_fields(live[1], doc[1] if doc[0] == "arr" and doc[1] else {}))
    return ("obj", merge_fields(live[1], doc[1] if doc[0] == "obj" else {}))


def merge_fields(live, doc):
    out = {}
    for name, (_, sub) in live.items():
        d = doc.get(name)
        out[name] = (d[0] if d else False, merge(sub, d[1]) if d else sub)
    return out


def compare(live, doc, path, problems):
    if live is None or live == "…" or doc is None or doc == "…":
        return
    if live[0] == "arr" and doc[0] == "arr":
        if live[1] is not None and doc[1] is not None:
            compare_fields(live[1], doc[1], path + "[]", problems)
        return
    if live[0] == "obj" and doc[0] == "obj":
        compare_fields(live[1], doc[1], path, problems)
        return
    problems.append("%s: the response has %s, the doc %s" % (path, live[0], doc[0]))


def compare_fields(live, doc, path, problems):
    for name in live:
        if name not in doc:
            problems.append("%s.%s: sent, not in the doc" % (path, name))
    for name, (optional, sub) in doc.items():
        if name not in live:
            if not optional:
                problems.append("%s.%s: in the doc, not sent" % (path, name))
            continue
        compare(live[name][1], sub, path + "." + name, problems)


def main(argv):
    if len(argv) < 2 or argv[1] not in ("--write", "--check"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    url = argv[2] if len(argv) > 2 else "http://127.0.0.1:4318/v1/status"
    with urllib.request.urlopen(url, timeout=10) as r:
        live = of_value(json.load(r)["data"])
    text = open(DOC).read()
    if START not in text or END not in text:
        print("status-shape: no %s … %s block in %s" % (START, END, DOC), file=sys.stderr)
        return 1
    head, rest = text.split(START, 1)
    block, tail = rest.split(END, 1)
    body = block.strip().removeprefix("```text").removesuffix("```").strip()
    doc = parse(body)
    if argv[1] == "--write":
        shape = merge(live, doc)
        new = "\n```text\ndata " + render_obj(shape[1], 0) + "\n```\n"
        open(DOC, "w").write(head + START + new + END + tail)
        print("status-shape: wrote the shape of %s into %s" % (url, DOC))
        return 0
    problems = []
    compare(live, doc, "data", problems)
    if problems:
        for p in problems:
            print("status-shape: " + p, file=sys.stderr)
        print("status-shape: FAIL: %s does not match %s; after a change on purpose run "
              "scripts/status-shape.py --write against a dev stack" % (DOC, url), file=sys.stderr)
        return 1
    print("status-shape: %s matches %s" % (DOC, url))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
