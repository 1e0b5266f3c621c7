"""``workshop-backend check FILE`` (contract 3.2): every problem, one line each, and the exit code.

The command shares the reader with start-up (collecting instead of stopping)
and the renderer with the daemon; these tests drive it through the console
script's own ``run`` (and once as a real process, to see that it never
imports the reactor).
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.distributions import StepDef, file_rule, standard, write
from tests.images import SVG, png
from workshop_backend.check import parse_args
from workshop_backend.main import run

GOOD_ASSETS = [("images/arch.png", "image/png", png(4, 4, (9, 9, 9))), ("files/app.conf", "text/plain", b"x=1\n")]


class CheckTestCase(SynchronousTestCase):
    """A temp dir and the command, run in process."""

    def setUp(self) -> None:
        self.tmp = Path(self.mktemp()).resolve()
        self.tmp.mkdir(parents=True)
        self.path = self.tmp / "workshop.sqlite"

    def check(self, *argv: str) -> tuple[int, list[str], str]:
        """(exit code, stdout lines, stderr)."""
        out, err = io.StringIO(), io.StringIO()
        code = run(list(argv), stdout=out, stderr=err)
        return code, out.getvalue().splitlines(), err.getvalue()


class GoodTests(CheckTestCase):
    """Distributions with nothing wrong."""

    def test_core_only(self) -> None:
        """The standard test workshop (no optional parts): exit 0, nothing on stdout, a summary on stderr."""
        standard(self.path)
        code, lines, err = self.check("check", str(self.path))
        self.assertEqual((code, lines), (0, []))
        self.assertEqual(err, f"{self.path}: 4 step(s), 0 asset(s): 0 error(s), 0 warning(s)\n")

    def test_with_assets_and_setup(self) -> None:
        """Images and downloads found, setup scripts well formed: exit 0."""
        write(
            self.path,
            [
                StepDef("intro", markdown="![arch](images/arch.png)", setup={"background": "true", "timeout": 5}),
                StepDef("next", hints=["Get [the config](./files/app.conf)."], setup={"foreground": "ls"}),
            ],
            assets=GOOD_ASSETS,
        )
        self.assertEqual(self.check("check", str(self.path))[:2], (0, []))

    def test_both_spellings(self) -> None:
        """``check FILE``, ``--check FILE``, ``--check=FILE``, the format before or after."""
        standard(self.path)
        for argv in (
            ["check", str(self.path)],
            ["--check", str(self.path)],
            [f"--check={self.path}"],
            ["--format", "json", "--check", str(self.path)],
            ["check", "--format=text", str(self.path)],
        ):
            self.assertEqual(self.check(*argv)[0], 0, argv)


class FaultTests(CheckTestCase):
    """One line per fault, each naming its step; exit 1."""

    def faulty(self) -> None:
        """Faults of every kind across three steps, the assets and the workshop row."""
        write(
            self.path,
            [
                StepDef(
                    "intro",
                    markdown="![arch](images/arch.png) ![gone](images/gone.png)\n\n```bash\nls\n",
                    hints=["![logo](../../assets/logo.png)", "![](images/arch.png)"],
                ),
                StepDef(
                    "rules",
                    validation={"gate": True, "rules": [file_rule("ok", "a.txt"), {"id": "bad", "type": "file"}]},
                    setup={"background": "", "timeout": 0},
                ),
                StepDef("links", markdown="[next step](step3.md) ![conf](files/app.conf)"),
            ],
            assets=[*GOOD_ASSETS, ("unused.svg", "image/svg+xml", SVG), ("/etc/passwd", "text/plain", b"")],
        )
        with sqlite3.connect(self.path) as conn:
            conn.execute("UPDATE workshop SET navigation = 'sideways'")

    def test_every_fault_one_line(self) -> None:
        """The whole first, then step by step in order, then the assets; warnings marked; exit 1."""
        self.faulty()
        code, lines, err = self.check("check", str(self.path))
        self.assertEqual(code, 1)
        self.assertEqual(
            lines,
            [
                "workshop: workshop.navigation must be 'linear' or 'free' (is 'sideways')",
                "intro: markdown: image 'images/gone.png' names no asset",
                "intro: warning: markdown: the code fence opened on line 3 is never closed",
                "intro: hint 1: image '../../assets/logo.png' names no asset"
                " ('..' is not resolved: store paths from the workshop's root)",
                "intro: warning: hint 2: image 'images/arch.png' has no alt text (describe it for screen readers)",
                "rules: validation: rule 'bad': 'path' is required",
                "rules: setup: 'background' is empty (leave the key out instead)",
                "rules: setup: 'timeout' must be a number of seconds above 0 and at most 3600",
                "links: markdown: link 'step3.md' names no asset",
                "links: markdown: image 'files/app.conf' is text/plain,"
                " not an image a browser shows (link to it instead)",
                "assets: asset '/etc/passwd': the path is absolute (it must be relative to the workshop,"
                " e.g. images/arch.png)",
                "assets: warning: asset 'unused.svg' is not used by any step or hint",
            ],
        )
        self.assertIn("9 error(s), 3 warning(s)", err)

    def test_json(self) -> None:
        """``--format json``: the same problems as one document, with step and rule named for machines."""
        self.faulty()
        code, lines, _ = self.check("check", str(self.path), "--format", "json")
        self.assertEqual(code, 1)
        report = json.loads("\n".join(lines))
        self.assertEqual((report["valid"], report["exit_code"], report["errors"], report["warnings"]), (False, 1, 9, 3))
        self.assertEqual((report["steps"], report["assets"]), (3, 3))
        bad_rule = next(p for p in report["problems"] if p["rule"] == "bad")
        self.assertEqual(
            bad_rule,
            {
                "severity": "error",
                "where": "rules",
                "step": "rules",
                "rule": "bad",
                "message": "validation: rule 'bad': 'path' is required",
                "line": "rules: validation: rule 'bad': 'path' is required",
            },
        )

    def test_markdown_that_does_not_render(self) -> None:
        """A step and a hint the renderer cannot take (lists nested 3000 deep): one line each, exit 1."""
        write(self.path, [StepDef("deep", markdown="- " * 3000 + "x", hints=["ok", "- " * 3000 + "y"])])
        code, lines, _ = self.check("check", str(self.path))
        self.assertEqual(code, 1)
        self.assertEqual(
            lines,
            [
                "deep: markdown does not render (RecursionError: maximum recursion depth exceeded)",
                "deep: hint 2 does not render (RecursionError: maximum recursion depth exceeded)",
            ],
        )

    def test_warnings_only_exit_0(self) -> None:
        """An unused asset is a warning: exit 0, the line still printed."""
        write(self.path, [StepDef("intro")], assets=GOOD_ASSETS)
        code, lines, _ = self.check("check", str(self.path))
        self.assertEqual(code, 0)
        self.assertEqual(len(lines), 2)
        self.assertTrue(all(": warning: asset " in line for line in lines))

    def test_what_startup_refuses(self) -> None:
        """Faults start-up stops at are reported too (all of them, not the first)."""
        write(self.path, [StepDef("a"), StepDef("b", validation="{not json"), StepDef("c", hints="[1]")])
        with sqlite3.connect(self.path) as conn:
            conn.execute("UPDATE workshop SET title = ''")
            conn.execute("INSERT INTO step_metadata VALUES ('ghost', '{}', '[]')")
        code, lines, _ = self.check("check", str(self.path))
        self.assertEqual(code, 1)
        self.assertEqual(
            lines,
            [
                "workshop: workshop.title must be a non-empty string",
                "step_metadata names unknown step(s): ghost",
                "b: step_metadata.validation is not valid JSON"
                " (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))",
                "c: step_metadata.hints must be a JSON array of strings",
            ],
        )


class NotADistributionTests(CheckTestCase):
    """Exit 2: nothing to check."""

    def test_missing(self) -> None:
        """No such file."""
        code, lines, err = self.check("check", str(self.path))
        self.assertEqual((code, lines), (2, [f"distribution not found: {self.path}"]))
        self.assertEqual(err, f"{self.path}: not a distribution\n")

    def test_not_sqlite(self) -> None:
        """A text file."""
        self.path.write_text("hello")
        self.assertEqual(
            self.check("check", str(self.path))[:2], (2, [f"distribution is not an SQLite file: {self.path}"])
        )

    def test_other_sqlite(self) -> None:
        """An SQLite file of another kind (no format version, no tables)."""
        with sqlite3.connect(self.path) as conn:
            conn.execute("CREATE TABLE t (x)")
        code, lines, _ = self.check("check", str(self.path), "--format", "json")
        report = json.loads("\n".join(lines))
        self.assertEqual((code, report["exit_code"], report["valid"]), (2, 2, False))
        self.assertIn("format version 0", report["problems"][0]["message"])

    def test_usage(self) -> None:
        """No file, two files, an unknown option or format: one usage line, exit 2."""
        for argv in (["check"], ["check", "a", "b"], ["check", "--bogus", "a"], ["check", "a", "--format", "xml"]):
            code, lines, err = self.check(*argv)
            self.assertEqual((code, lines), (2, []), argv)
            self.assertTrue(err.startswith("workshop-backend check: "), err)
            self.assertEqual(err.count("\n"), 1, err)
        self.assertEqual(self.check("check", "--help")[0], 0)
        with self.assertRaises(ValueError):
            parse_args(["--check"])


class ProcessTests(CheckTestCase):
    """The real console script, as the build pipeline runs it."""

    def test_no_reactor(self) -> None:
        """``check`` reads and reports without importing the reactor (nothing listens, nothing runs)."""
        standard(self.path)
        probe = (
            "import sys\n"
            "from workshop_backend.main import run\n"
            f"code = run(['check', {str(self.path)!r}])\n"
            "assert 'twisted.internet.reactor' not in sys.modules, 'the reactor was imported'\n"
            "sys.exit(code)\n"
        )
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
        self.assertEqual((done.returncode, done.stdout, done.stderr.count("\n")), (0, "", 1), done.stderr)
