# mypy: allow-untyped-calls
"""The optional parts of format 1 (contract 3.1): the ``assets`` table and ``step_metadata.setup``.

Every bad asset path, media type and size, and every setup JSON fault, is
refused at start with one line naming the file (and the step), like any
schema fault; the daemon exits 2 with that line.  A distribution without
the optional parts loads as before, and one with them loads into the
workshop's assets (hashed) and steps' setup.
"""

from __future__ import annotations

import hashlib
import io
import sqlite3
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.distributions import StepDef, write
from tests.images import JPEG, SVG, png
from workshop_backend.main import run
from workshop_backend.workshop import distribution as distribution_module
from workshop_backend.workshop.assets import Asset, find_asset, media_type_fault, path_fault, referenced_path
from workshop_backend.workshop.distribution import DistributionError, Findings, load_distribution
from workshop_backend.workshop.setup import DEFAULT_TIMEOUT, SetupError, SetupSpec, parse_setup, setup_faults

NOT_AN_OBJECT = 'setup must be a JSON object such as {"background": "..."}'
UNKNOWN_KEY = "unknown key(s) in setup: verify (known: background, foreground, timeout)"
TOO_LONG = "'background' is longer than 64 KiB (ship large files as assets)"
BAD_TIMEOUT = "'timeout' must be a number of seconds above 0 and at most 3600"
TIMEOUT_ALONE = "'timeout' is set but there is no 'background' script for it to bound"
ABSOLUTE = "the path is absolute (it must be relative to the workshop, e.g. images/arch.png)"
BAD_PATHS = {
    "/etc/passwd": ABSOLUTE,
    "../secret.png": "the path has a '..' segment",
    "images/../../x.png": "the path has a '..' segment",
    "images\\arch.png": "the path has a backslash (separate folders with '/')",
    "images/a\x00.png": "the path has a NUL character",
    "images//arch.png": "the path has an empty segment ('//' or a trailing '/')",
    "images/": "the path has an empty segment ('//' or a trailing '/')",
    "./arch.png": "the path has a '.' segment",
    "": "the path is empty",
    "images/a\nb.png": "the path has a control character",
    "x" * 1025: "the path is longer than 1024 characters",
}


class PathRuleTests(SynchronousTestCase):
    """``path_fault``: what an asset path may be (pure)."""

    def test_good_paths(self) -> None:
        """Relative, '/'-separated paths of any characters but the refused ones."""
        for path in ("arch.png", "images/arch.png", "a/b/c/d.svg", "my file (1).png", "grüße.txt", ".hidden", "a..b"):
            self.assertIsNone(path_fault(path), path)

    def test_bad_paths(self) -> None:
        """Absolute, '..', backslash, NUL, empty segments, '.', control characters, too long, not text."""
        for path, why in BAD_PATHS.items():
            self.assertEqual(path_fault(path), why, repr(path))
        self.assertEqual(path_fault(None), "the path must be text")
        self.assertEqual(path_fault(b"a.png"), "the path must be text")

    def test_media_types(self) -> None:
        """``type/subtype`` with parameters; nothing that could break a header."""
        for good in ("image/png", "image/svg+xml", "text/plain; charset=utf-8", 'text/plain;charset="utf-8"'):
            self.assertIsNone(media_type_fault(good), good)
        for bad in ("png", "image/png\r\nSet-Cookie: x=1", "image/png\nx", "", "image/", "/png", "image png"):
            self.assertIsNotNone(media_type_fault(bad), repr(bad))
        self.assertIsNotNone(media_type_fault(None))

    def test_referenced_path(self) -> None:
        """Relative paths only; './' dropped; query and fragment are not part of the path."""
        cases: dict[str, str | None] = {
            "images/a.png": "images/a.png",
            "./images/a.png": "images/a.png",
            "././a.png": "a.png",
            "a.png?v=2#top": "a.png",
            "../assets/logo.png": "../assets/logo.png",
            "https://example.com/a.png": None,
            "//cdn.example.com/a.png": None,
            "/api/v1/state": None,
            "#section": None,
            "?q=1": None,
            "mailto:a@example.com": None,
            "javascript:alert(1)": None,
            "data:image/png;base64,AAAA": None,
            "./": None,
            "": None,
        }
        for url, expected in cases.items():
            self.assertEqual(referenced_path(url), expected, url)

    def test_find_asset_decodes(self) -> None:
        """``my%20file.png`` names ``my file.png``; a literal '%' name is found as written."""
        spaced = Asset("my file.png", "image/png", 1)
        literal = Asset("100%.png", "image/png", 1)
        assets = {a.path: a for a in (spaced, literal)}
        self.assertIs(find_asset("my%20file.png", assets), spaced)
        self.assertIs(find_asset("100%.png", assets), literal)
        self.assertIsNone(find_asset("other.png", assets))

    def test_images(self) -> None:
        """Shown inline: the types a browser shows in an <img>; the rest are downloads."""
        self.assertTrue(Asset("a", "image/svg+xml", 1).is_image)
        self.assertTrue(Asset("a", "IMAGE/PNG", 1).is_image)
        self.assertFalse(Asset("a", "image/tiff", 1).is_image)
        self.assertFalse(Asset("a", "text/html; charset=utf-8", 1).is_image)


class SetupRuleTests(SynchronousTestCase):
    """``step_metadata.setup``: every fault, all of them at once (pure)."""

    def test_good(self) -> None:
        """Every key optional; timeout defaults to 300 s."""
        self.assertEqual(parse_setup({}), SetupSpec())
        self.assertEqual(
            parse_setup({"background": "apt-get install -y nginx", "foreground": "cd /srv", "timeout": 60}),
            SetupSpec("apt-get install -y nginx", "cd /srv", 60.0),
        )
        self.assertEqual(parse_setup({"foreground": "ls"}).timeout, DEFAULT_TIMEOUT)
        self.assertTrue(SetupSpec().empty)

    def test_faults(self) -> None:
        """Each fault, in words."""
        cases: dict[str, tuple[Any, list[str]]] = {
            "not an object": ([], [NOT_AN_OBJECT]),
            "unknown key": ({"verify": "x"}, [UNKNOWN_KEY]),
            "not a string": ({"background": ["a"]}, ["'background' must be a string (the script's text)"]),
            "empty": ({"foreground": "  \n"}, ["'foreground' is empty (leave the key out instead)"]),
            "too long": ({"background": "x" * (64 * 1024 + 1)}, [TOO_LONG]),
            "NUL": ({"background": "echo \x00"}, ["'background' has a NUL character"]),
            "timeout negative": ({"background": "x", "timeout": -1}, [BAD_TIMEOUT]),
            "timeout zero": ({"background": "x", "timeout": 0}, [BAD_TIMEOUT]),
            "timeout huge": ({"background": "x", "timeout": 3601}, [BAD_TIMEOUT]),
            "timeout bool": ({"background": "x", "timeout": True}, [BAD_TIMEOUT]),
            "timeout text": ({"background": "x", "timeout": "60"}, [BAD_TIMEOUT]),
            "timeout alone": ({"foreground": "x", "timeout": 5}, [TIMEOUT_ALONE]),
        }
        for name, (raw, faults) in cases.items():
            self.assertEqual(setup_faults(raw), faults, name)
            with self.assertRaises(SetupError) as cm:
                parse_setup(raw)
            self.assertEqual(cm.exception.faults, faults, name)

    def test_all_faults_at_once(self) -> None:
        """Several faults are all reported (the check command lists each)."""
        self.assertEqual(len(setup_faults({"background": 1, "foreground": "", "timeout": -1, "x": 1})), 4)


class LoaderTestCase(SynchronousTestCase):
    """A temp dir and a helper that expects a one-line refusal."""

    def setUp(self) -> None:
        self.tmp = Path(self.mktemp()).resolve()
        self.tmp.mkdir(parents=True)
        self.path = self.tmp / "workshop.sqlite"

    def refused(self, path: Path) -> str:
        """Load ``path`` expecting a refusal: one line naming the file."""
        with self.assertRaises(DistributionError) as cm:
            load_distribution(path)
        message = str(cm.exception)
        self.assertNotIn("\n", message)
        self.assertIn(str(path), message)
        return message

    def with_asset(self, path: Any, media_type: Any = "image/png", data: Any = b"x") -> Path:
        """A one-step distribution with one asset row."""
        return write(self.path, [StepDef("intro")], assets=[(path, media_type, data)])


class AssetLoadingTests(LoaderTestCase):
    """The ``assets`` table, read and checked at start."""

    def test_without_optional_parts(self) -> None:
        """A distribution with only the three core tables loads as before: no assets, no setup."""
        write(self.path, [StepDef("intro")])
        with sqlite3.connect(self.path) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        self.assertEqual(tables, {"workshop", "steps", "step_metadata"})
        workshop = load_distribution(self.path).workshop
        self.assertEqual(dict(workshop.assets), {})
        self.assertEqual(workshop.steps[0].setup, SetupSpec())

    def test_assets_loaded_and_hashed(self) -> None:
        """Each asset: its path, media type, size and sha256 (read in chunks, as served)."""
        big = bytes(range(256)) * 9000  # over two hashing chunks
        write(
            self.path,
            [StepDef("intro")],
            assets=[("images/a.png", "image/png", png(4, 4, (1, 2, 3))), ("big.bin", "application/octet-stream", big)],
        )
        assets = load_distribution(self.path).workshop.assets
        self.assertEqual(sorted(assets), ["big.bin", "images/a.png"])
        self.assertEqual(
            assets["big.bin"], Asset("big.bin", "application/octet-stream", len(big), hashlib.sha256(big).hexdigest())
        )

    def test_without_rowid(self) -> None:
        """An ``assets`` table declared WITHOUT ROWID (no BLOB handles) is read whole: same hashes."""
        write(self.path, [StepDef("intro")], assets=[])
        with sqlite3.connect(self.path) as conn:
            conn.executescript(
                "DROP TABLE assets; CREATE TABLE assets (path TEXT PRIMARY KEY, media_type TEXT NOT NULL,"
                " data BLOB NOT NULL) WITHOUT ROWID;"
            )
            conn.execute("INSERT INTO assets VALUES ('a.jpg', 'image/jpeg', ?)", (JPEG,))
        self.assertEqual(load_distribution(self.path).workshop.assets["a.jpg"].sha256, hashlib.sha256(JPEG).hexdigest())

    def test_every_bad_path_refused(self) -> None:
        """Each bad path is refused at start with one line naming the asset and why."""
        for bad, why in BAD_PATHS.items():
            self.path.unlink(missing_ok=True)
            self.with_asset(bad)
            self.assertEqual(self.refused(self.path), f"distribution {self.path}: asset {bad!r}: {why}", repr(bad))

    def test_path_not_text(self) -> None:
        """A path stored as a BLOB (a number would become text by the column's affinity)."""
        self.with_asset(b"a.png")
        self.assertEqual(
            self.refused(self.path), f"distribution {self.path}: asset \"b'a.png'\": the path must be text"
        )

    def test_bad_media_type(self) -> None:
        """A media type that would break the response header is refused."""
        self.with_asset("a.png", "image/png\r\nSet-Cookie: x=1")
        self.assertIn("is not a media type", self.refused(self.path))

    def test_data_not_a_blob(self) -> None:
        """Text stored where the bytes belong (Python's sqlite3 stores str as TEXT)."""
        self.with_asset("a.svg", "image/svg+xml", SVG.decode())
        self.assertEqual(
            self.refused(self.path),
            f"distribution {self.path}: asset 'a.svg': data must be a BLOB (is text; store the file's bytes)",
        )

    def test_asset_too_big(self) -> None:
        """One byte over 16 MiB (a zero BLOB: nothing is read to refuse it)."""
        write(self.path, [StepDef("intro")], assets=[])
        with sqlite3.connect(self.path) as conn:
            conn.execute("INSERT INTO assets VALUES ('huge.bin', 'application/octet-stream', zeroblob(16777217))")
        self.assertEqual(
            self.refused(self.path),
            f"distribution {self.path}: asset 'huge.bin' is 16777217 bytes; an asset may be at most 16 MiB"
            " (16777216 bytes)",
        )

    def test_total_too_big(self) -> None:
        """The assets together over the total cap (lowered here to keep the test small)."""
        self.patch(distribution_module, "ASSETS_TOTAL_MAX", 1000)
        write(
            self.path,
            [StepDef("intro")],
            assets=[(f"a{n}.bin", "application/octet-stream", b"x" * 400) for n in range(3)],
        )
        self.assertIn("the assets add up to", self.refused(self.path))

    def test_too_many(self) -> None:
        """More assets than the count cap: refused without reading them one by one."""
        self.patch(distribution_module, "ASSETS_COUNT_MAX", 5)
        write(self.path, [StepDef("intro")], assets=[(f"a{n}.bin", "text/plain", b"") for n in range(6)])
        self.assertEqual(
            self.refused(self.path), f"distribution {self.path}: there are 6 assets; a distribution may have at most 5"
        )

    def test_thousands_of_assets(self) -> None:
        """3000 small assets load (and hash) fine: the caps are about size, not a few thousand files."""
        write(
            self.path,
            [StepDef("intro")],
            assets=[(f"img/{n}.png", "image/png", n.to_bytes(4, "big")) for n in range(3000)],
        )
        self.assertEqual(len(load_distribution(self.path).workshop.assets), 3000)

    def test_assets_table_lacks_a_column(self) -> None:
        """An ``assets`` table without ``data`` is not format 1: fatal."""
        write(self.path, [StepDef("intro")])
        with sqlite3.connect(self.path) as conn:
            conn.execute("CREATE TABLE assets (path TEXT PRIMARY KEY, media_type TEXT)")
        with self.assertRaises(DistributionError) as cm:
            load_distribution(self.path)
        self.assertTrue(cm.exception.fatal)
        self.assertEqual(str(cm.exception), f"distribution {self.path}: table 'assets' lacks column(s) data")

    def test_refused_by_the_daemon_with_exit_2(self) -> None:
        """The console script refuses a bad asset path before anything starts: exit 2, one line on stderr."""
        self.with_asset("../up.png")
        state = self.tmp / "state"
        state.mkdir()
        out, err = io.StringIO(), io.StringIO()
        code = run(
            ["--distribution", str(self.path), "--state-dir", str(state), "--shell", "/bin/sh"], stdout=out, stderr=err
        )
        self.assertEqual(code, 2)
        self.assertEqual(
            err.getvalue(),
            f"workshop-backend: distribution {self.path}: asset '../up.png': the path has a '..' segment\n",
        )


class SetupLoadingTests(LoaderTestCase):
    """``step_metadata.setup`` read and checked at start."""

    def test_loaded(self) -> None:
        """A step's setup becomes its SetupSpec; steps without one have the empty spec."""
        write(self.path, [StepDef("a", setup={"background": "touch x", "timeout": 9}), StepDef("b")])
        steps = load_distribution(self.path).workshop.steps
        self.assertEqual(steps[0].setup, SetupSpec(background="touch x", timeout=9.0))
        self.assertEqual(steps[1].setup, SetupSpec())

    def test_every_fault_refused(self) -> None:
        """Bad JSON, not text, and each rule fault: one line naming the file and the step."""
        json_fault = "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
        cases: dict[str, tuple[Any, str]] = {
            "bad json": ("{background: 1}", f"step_metadata.setup is not valid JSON ({json_fault})"),
            "not text": (b"{}", "step_metadata.setup must be JSON text"),
            "not an object": ("[]", f"setup: {NOT_AN_OBJECT}"),
            "unknown key": ('{"verify": "x"}', f"setup: {UNKNOWN_KEY}"),
            "timeout": ('{"background": "x", "timeout": 0}', f"setup: {BAD_TIMEOUT}"),
        }
        for name, (raw, why) in cases.items():
            self.path.unlink(missing_ok=True)
            write(self.path, [StepDef("intro", setup={})])
            with sqlite3.connect(self.path) as conn:
                conn.execute("UPDATE step_metadata SET setup = ?", (raw,))
            self.assertEqual(self.refused(self.path), f"distribution {self.path}: step 'intro': {why}", name)


class CollectTests(LoaderTestCase):
    """The same reader, collecting (the check command's way): every fault, one each, reading on."""

    def test_collects_every_fault(self) -> None:
        """Faults in several steps, rules, setup and assets all come back, each naming its place."""
        write(
            self.path,
            [
                StepDef("a", validation={"rules": [{"id": "x", "type": "file"}, {"id": "y", "type": "nope"}]}),
                StepDef("b", setup={"background": "", "timeout": -1}),
                StepDef("c", hints="not json"),
            ],
            assets=[("/abs.png", "image/png", b""), ("ok.png", "image/png", b"")],
        )
        findings = Findings(self.path, collect=True)
        workshop = load_distribution(self.path, findings=findings, digests=False).workshop
        self.assertEqual(
            [(p.where, p.rule, p.message) for p in findings.problems],
            [
                ("assets", None, f"asset '/abs.png': {ABSOLUTE}"),
                ("a", "x", "validation: rule 'x': 'path' is required"),
                ("a", "y", "validation: rule 'y': 'type' must be one of file, command, port, http (got 'nope')"),
                ("b", None, "setup: 'background' is empty (leave the key out instead)"),
                ("b", None, f"setup: {BAD_TIMEOUT}"),
                ("c", None, "step_metadata.hints is not valid JSON (Expecting value: line 1 column 1 (char 0))"),
            ],
        )
        # Reading went on: every step is there, with harmless stand-ins for what was bad.
        self.assertEqual([s.id for s in workshop.steps], ["a", "b", "c"])
        self.assertEqual(list(workshop.assets), ["ok.png"])
        self.assertEqual(workshop.assets["ok.png"].sha256, "")  # digests=False: nothing hashed
