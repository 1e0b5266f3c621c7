# mypy: allow-untyped-calls
"""Tests for :mod:`workshop_backend.workshop.demo`: the demo is a valid format-1 distribution.

The demo doubles as the authors' worked example, so it must use every feature
(each rule type, exec and copy blocks, Killercoda markers, hints, a watched
step) and every one of them must survive the real loader and renderer.
"""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from workshop_backend.content.render import render_hint, render_markdown
from workshop_backend.validation.spec import parse_validation
from workshop_backend.workshop import demo
from workshop_backend.workshop.demo import DEMO_IMAGE_TAG, load_demo, main, write_demo_distribution
from workshop_backend.workshop.distribution import load_distribution

STEP_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
FORMAT_1_COLUMNS = {
    "workshop": ["id", "title", "version", "description", "navigation"],
    "steps": ["id", "position", "title", "markdown", "image_tag"],
    "step_metadata": ["step_id", "validation", "hints"],
}


class DemoDistributionTests(SynchronousTestCase):
    """The written file follows contract section 3 exactly."""

    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        self.path = self.dir / "demo.sqlite"
        write_demo_distribution(self.path)
        self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        self.addCleanup(self.conn.close)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """All rows of a query."""
        return self.conn.execute(sql).fetchall()

    def test_user_version(self) -> None:
        """``PRAGMA user_version`` is 1."""
        self.assertEqual(self.rows("PRAGMA user_version"), [(1,)])

    def test_tables_and_columns(self) -> None:
        """Exactly the three tables of format 1, with their columns in order."""
        tables = [r[0] for r in self.rows("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        self.assertEqual(tables, sorted(FORMAT_1_COLUMNS))
        for table, columns in FORMAT_1_COLUMNS.items():
            self.assertEqual([r[1] for r in self.rows(f"PRAGMA table_info({table})")], columns)

    def test_one_workshop_row(self) -> None:
        """One workshop row with the demo's id and linear navigation."""
        (row,) = self.rows("SELECT id, title, version, description, navigation FROM workshop")
        self.assertEqual(row[0], "linux-first-steps")
        self.assertEqual(row[4], "linear")
        self.assertTrue(all(row[:4]))

    def test_steps(self) -> None:
        """5 or 6 steps, positions 0..n-1, slug ids, all in the demo image, each with metadata."""
        steps = self.rows("SELECT id, position, title, markdown, image_tag FROM steps ORDER BY position")
        self.assertIn(len(steps), (5, 6))
        self.assertEqual([s[1] for s in steps], list(range(len(steps))))
        for sid, _, title, markdown, image in steps:
            self.assertRegex(sid, STEP_ID)
            self.assertTrue(title and markdown.startswith("# "), sid)
            self.assertEqual(image, DEMO_IMAGE_TAG)
        meta = {r[0] for r in self.rows("SELECT step_id FROM step_metadata")}
        self.assertEqual(meta, {s[0] for s in steps})

    def test_metadata_json(self) -> None:
        """Validation parses with the rule language; hints are a JSON array of strings."""
        for sid, validation, hints in self.rows("SELECT step_id, validation, hints FROM step_metadata"):
            with self.subTest(step=sid):
                parse_validation(json.loads(validation))
                parsed = json.loads(hints)
                self.assertIsInstance(parsed, list)
                self.assertTrue(all(isinstance(h, str) and h for h in parsed))

    def test_deterministic_bytes(self) -> None:
        """Writing twice gives the same bytes: a crashed backend must recognize its working copy."""
        again = self.dir / "again.sqlite"
        write_demo_distribution(again)
        self.assertEqual(again.read_bytes(), self.path.read_bytes())

    def test_atomic_replace(self) -> None:
        """An existing file is replaced whole, and no temporary file is left behind."""
        target = self.dir / "existing.sqlite"
        target.write_bytes(b"old content")
        write_demo_distribution(target)
        self.assertEqual(target.read_bytes()[:16], b"SQLite format 3\x00")
        self.assertEqual(
            sorted(p.name for p in self.dir.iterdir()),
            ["demo.sqlite", "demo.sqlite.fingerprint", "existing.sqlite", "existing.sqlite.fingerprint"],
        )
        self.assertEqual(os.stat(target).st_mode & 0o777, 0o644)

    def test_written_once(self) -> None:
        """The same content is not written again (``--demo`` starts fast); other content, or none, is."""
        before = os.stat(self.path)
        self.assertFalse(write_demo_distribution(self.path))
        self.assertEqual(os.stat(self.path).st_ino, before.st_ino, "not replaced")
        stamp = self.path.with_name(self.path.name + ".fingerprint")
        stamp.write_text("another content")
        self.assertTrue(write_demo_distribution(self.path))
        self.assertNotEqual(os.stat(self.path).st_ino, before.st_ino)
        self.path.write_bytes(b"damaged")
        self.path.unlink()
        self.assertTrue(write_demo_distribution(self.path), "a missing file is written whatever the stamp says")

    def test_failure_leaves_nothing(self) -> None:
        """If the rename fails, the temporary file is removed and the error propagates."""
        target = self.dir / "a-directory"
        (target / "child").mkdir(parents=True)
        self.assertRaises(OSError, write_demo_distribution, target)
        self.assertEqual(
            sorted(p.name for p in self.dir.iterdir()), ["a-directory", "demo.sqlite", "demo.sqlite.fingerprint"]
        )

    def test_loads_through_distribution_loader(self) -> None:
        """The backend's own loader accepts the demo (and every step is runnable as --step)."""
        dist = load_distribution(self.path)
        workshop = dist.workshop
        self.assertEqual(workshop.id, "linux-first-steps")
        self.assertEqual([s.position for s in workshop.steps], list(range(len(workshop.steps))))
        for step in workshop.steps:
            self.assertEqual(load_distribution(self.path, step=step.id).workshop.step(step.id), step)


class DemoContentTests(SynchronousTestCase):
    """The content uses every feature, and all of it renders."""

    def setUp(self) -> None:
        self.demo = load_demo()
        self.specs = {s.id: parse_validation(s.validation) for s in self.demo.steps}

    def test_every_rule_type(self) -> None:
        """file (contains and matches), command (exit_code and stdout), port and http all appear."""
        rules = [r for spec in self.specs.values() for r in spec.rules]
        self.assertEqual({r.type for r in rules}, {"file", "command", "port", "http"})
        self.assertTrue(any(r.type == "file" and r.contains for r in rules))
        self.assertTrue(any(r.type == "file" and r.matches for r in rules))
        self.assertTrue(any(r.type == "command" and r.stdout for r in rules))
        self.assertTrue(any(r.type == "http" and r.body for r in rules))

    def test_rules_are_for_beginners(self) -> None:
        """Every rule has a message, relative paths, and (within its step) a unique id."""
        for sid, spec in self.specs.items():
            ids = [r.id for r in spec.rules]
            self.assertEqual(len(ids), len(set(ids)), sid)
            for rule in spec.rules:
                self.assertTrue(rule.message, (sid, rule.id))
                if rule.path is not None:
                    self.assertFalse(rule.path.startswith(("/", "~")), (sid, rule.id))
                if rule.url is not None:
                    self.assertTrue(rule.url.startswith("http://127.0.0.1:"), rule.url)

    def test_shape(self) -> None:
        """An intro and a finish without rules; gated steps; one watched step; hints on gated steps."""
        steps = self.demo.steps
        self.assertEqual(self.specs[steps[0].id].rules, ())
        self.assertEqual(self.specs[steps[-1].id].rules, ())
        gated = [s for s in steps if self.specs[s.id].gate]
        self.assertGreaterEqual(len(gated), 3)
        self.assertEqual([self.specs[s.id].watch for s in steps if self.specs[s.id].watch], [3.0])
        for step in gated:
            self.assertTrue(step.hints, step.id)

    def test_markdown_renders_with_actions(self) -> None:
        """Each step renders; exec and copy blocks, inline actions, a table and an admonition appear."""
        html = "".join(render_markdown(s.markdown) for s in self.demo.steps)
        self.assertIn('<div class="codeblock" data-action="exec" data-lang="bash">', html)
        self.assertIn('<div class="codeblock" data-action="copy" data-lang="bash">', html)
        self.assertIn('<code class="inline-action" data-action="exec">', html)
        self.assertIn('<code class="inline-action" data-action="copy">', html)
        self.assertIn("<table>", html)
        self.assertIn('<div class="admonition', html)
        self.assertIn("<details", html)
        self.assertNotIn("{{", html)

    def test_killercoda_suffix_used(self) -> None:
        """At least one block uses the Killercoda ```` ```{{exec}} ```` form, and it renders as exec
        (with its language, so the page labels it like the step's other blocks)."""
        sources = [s for s in self.demo.steps if re.search(r"^```\{\{exec\}\}$", s.markdown, re.MULTILINE)]
        self.assertTrue(sources)
        html = render_markdown(sources[0].markdown)
        self.assertIn('<div class="codeblock" data-action="exec" data-lang="bash">', html)

    def test_hints_render(self) -> None:
        """Every hint renders to non-empty HTML."""
        for step in self.demo.steps:
            for index, hint in enumerate(step.hints):
                self.assertTrue(render_hint(hint, index), (step.id, index))

    def test_files_match_steps(self) -> None:
        """Every content file belongs to a step (no stale ``NN-id.md`` left behind)."""
        names = {p.name for p in demo.content_root().iterdir() if p.name.endswith(".md")}
        expected = {f"{i + 1:02d}-{s.id}.md" for i, s in enumerate(self.demo.steps)}
        self.assertEqual(names, expected)


class MainTests(SynchronousTestCase):
    """``python -m workshop_backend.workshop.demo OUT.sqlite``."""

    def run_main(self, *argv: str) -> tuple[int, str, str]:
        """Run ``main`` with captured output."""
        out, err = io.StringIO(), io.StringIO()
        code = main(list(argv), out, err)
        return code, out.getvalue(), err.getvalue()

    def test_writes(self) -> None:
        """It writes the file and says where."""
        target = Path(self.mktemp())
        target.parent.mkdir(parents=True, exist_ok=True)
        code, out, err = self.run_main(str(target))
        self.assertEqual((code, err), (0, ""))
        self.assertIn(str(target), out)
        self.assertTrue(target.read_bytes().startswith(b"SQLite format 3\x00"))

    def test_error_is_one_line(self) -> None:
        """A directory that does not exist: exit 1, one line naming the path, no traceback."""
        target = Path(self.mktemp()) / "missing" / "x.sqlite"
        code, out, err = self.run_main(str(target))
        self.assertEqual(code, 1)
        self.assertEqual(out, "")
        self.assertEqual(err, f"error: cannot write {target}: No such file or directory\n")

    def test_usage(self) -> None:
        """No argument or too many: usage on stderr, exit 2; --help: usage on stdout, exit 0."""
        self.assertEqual(self.run_main()[0], 2)
        self.assertEqual(self.run_main("a", "b")[0], 2)
        code, out, _ = self.run_main("--help")
        self.assertEqual(code, 0)
        self.assertIn("usage:", out)
