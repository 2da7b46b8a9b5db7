"""scripts/status-shape.py: the status doc's field list, checked against a response."""

import json
import os
import re
import subprocess
import tempfile
import unittest
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "status-shape.py"
DOC = REPO / "docs" / "api" / "status-api-interfaces.md"


def shape_block(text):
    return re.search(r"<!-- status-shape:start -->\n```text\n(.*?)```\n<!-- status-shape:end -->",
                     text, re.S).group(1)


def response_of(block):
    """A /v1/status response with every field of the doc's shape (leaves 1, arrays of one)."""
    toks = re.findall(r"[{}\[\],]|[^\s{}\[\],]+", block)
    pos = 1

    def obj():
        nonlocal pos
        pos += 1
        if toks[pos] == "…":
            pos += 2
            return {}
        out = {}
        while toks[pos] != "}":
            if toks[pos] == ",":
                pos += 1
                continue
            name = toks[pos].rstrip("?")
            pos += 1
            value = 1
            if toks[pos] == "{":
                value = obj()
            elif toks[pos] == "[":
                pos += 1
                value = [obj()] if toks[pos] == "{" else []
                pos += 1
            out[name] = value
        pos += 1
        return out

    return {"ok": True, "data": obj()}


class StatusShapeTests(unittest.TestCase):
    def check(self, doc_text, response):
        with tempfile.TemporaryDirectory() as d:
            doc = Path(d) / "doc.md"
            doc.write_text(doc_text)
            saved = Path(d) / "status.json"
            saved.write_text(json.dumps(response))
            env = dict(os.environ, BAA_STATUS_SHAPE_DOC=str(doc))
            return subprocess.run(["python3", str(SCRIPT), "--check", saved.as_uri()],
                                  env=env, capture_output=True, text=True, timeout=30)

    def test_status_doc_named_child_consecutive_failures_which_is_not_sent(self):
        text = DOC.read_text()
        response = response_of(shape_block(text))
        ok = self.check(text, response)
        self.assertEqual(ok.returncode, 0, ok.stderr)
        self.assertNotIn("consecutiveFailures", shape_block(text))

        # A field the doc names that the response lacks fails, naming it.
        wrong = text.replace("child {\n", "child {\n      consecutiveFailures\n", 1)
        self.assertNotEqual(wrong, text)
        bad = self.check(wrong, response)
        self.assertEqual(bad.returncode, 1, bad.stderr)
        self.assertIn("data.codexd.child.consecutiveFailures: in the doc, not sent", bad.stderr)

        # A field sent and not in the doc fails too; a null or empty array is not compared.
        response["data"]["codexd"]["child"]["newField"] = 1
        response["data"]["tasks"]["running_tasks"] = []
        response["data"]["codexd"]["limits"]["primary"] = None
        bad = self.check(text, response)
        self.assertEqual(bad.returncode, 1, bad.stderr)
        self.assertIn("data.codexd.child.newField: sent, not in the doc", bad.stderr)
        self.assertEqual(bad.stderr.count("status-shape: data."), 1, bad.stderr)


if __name__ == "__main__":
    unittest.main()
