# mypy: allow-untyped-calls
"""Tests for loading and checking a distribution file (contract section 3)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import stat
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.distributions import StepDef, file_rule, standard, write
from workshop_backend.validation.spec import Rule, ValidationSpec
from workshop_backend.workshop.distribution import Distribution, DistributionError, load_distribution
from workshop_backend.workshop.model import Step, Workshop


def mutate(path: Path, script: str) -> Path:
    """Run a SQL script on a distribution (to break it on purpose)."""
    conn = sqlite3.connect(path)
    try:
        conn.executescript(script)
        conn.commit()
    finally:
        conn.close()
    return path


#: Re-create ``steps`` without constraints or column types, so a test can break them.
LOOSE_STEPS = """
CREATE TABLE loose (id, position, title, markdown, image_tag);
INSERT INTO loose SELECT * FROM steps;
DROP TABLE steps;
ALTER TABLE loose RENAME TO steps;
"""


class DistributionTestCase(SynchronousTestCase):
    """A temporary directory and a helper that expects one refusal."""

    def setUp(self) -> None:
        """A fresh directory for this test's files."""
        self.tmp = Path(self.mktemp()).resolve()
        self.tmp.mkdir(parents=True)
        self.path = self.tmp / "workshop.sqlite"

    def refused(self, path: Path, *, step: str | None = None) -> str:
        """Load ``path``, expect a DistributionError; its message must be one line naming ``path``."""
        with self.assertRaises(DistributionError) as cm:
            load_distribution(path, step=step)
        message = str(cm.exception)
        self.assertNotIn("\n", message)
        self.assertIn(str(path), message)
        return message


class LoadTests(DistributionTestCase):
    """A good distribution becomes the Workshop it describes."""

    def test_standard(self) -> None:
        """Every field, every step in order, validation parsed, hints as a tuple; path and sha256 recorded."""
        standard(self.path)
        dist = load_distribution(self.path)
        empty = ValidationSpec()
        self.assertEqual(
            dist,
            Distribution(
                path=self.path,
                sha256=hashlib.sha256(self.path.read_bytes()).hexdigest(),
                workshop=Workshop(
                    id="test-workshop",
                    title="Test Workshop",
                    version="1.0.0",
                    description="A workshop for tests.",
                    navigation="linear",
                    steps=(
                        Step(
                            id="intro",
                            position=0,
                            title="Step intro",
                            markdown="# intro\n\nDo things.",
                            image_tag="img-a",
                            validation=empty,
                            hints=("Read the text.", "Really, read it."),
                        ),
                        Step(
                            id="make-file",
                            position=1,
                            title="Step make-file",
                            markdown="# make-file\n\nDo things.",
                            image_tag="img-a",
                            validation=ValidationSpec(
                                gate=True,
                                rules=(Rule(id="f", type="file", message="Create done.txt", path="done.txt"),),
                            ),
                            hints=(),
                        ),
                        Step(
                            id="optional",
                            position=2,
                            title="Step optional",
                            markdown="# optional\n\nDo things.",
                            image_tag="img-a",
                            validation=ValidationSpec(
                                rules=(Rule(id="g", type="file", message="Create optional.txt", path="optional.txt"),),
                            ),
                            hints=(),
                        ),
                        Step(
                            id="finish",
                            position=3,
                            title="Step finish",
                            markdown="# finish\n\nDo things.",
                            image_tag="img-a",
                            validation=empty,
                            hints=(),
                        ),
                    ),
                ),
            ),
        )

    def test_free_navigation(self) -> None:
        """``navigation = 'free'`` is kept."""
        standard(self.path, navigation="free")
        self.assertEqual(load_distribution(self.path).workshop.navigation, "free")

    def test_steps_ordered_by_position(self) -> None:
        """Steps come ordered by ``position``, not by the order the rows were written in."""
        write(self.path, [StepDef("a"), StepDef("b"), StepDef("c")])
        mutate(
            self.path,
            "UPDATE steps SET position = position + 10;"
            "UPDATE steps SET position = CASE id WHEN 'a' THEN 2 WHEN 'b' THEN 0 ELSE 1 END;",
        )
        steps = load_distribution(self.path).workshop.steps
        self.assertEqual([(s.id, s.position) for s in steps], [("b", 0), ("c", 1), ("a", 2)])

    def test_step_without_metadata(self) -> None:
        """A step without a step_metadata row has no checks and no hints."""
        write(self.path, [StepDef("a", hints=["h"]), StepDef("b")])
        mutate(self.path, "DELETE FROM step_metadata WHERE step_id = 'a';")
        step = load_distribution(self.path).workshop.steps[0]
        self.assertEqual((step.id, step.validation, step.hints), ("a", ValidationSpec(), ()))

    def test_full_validation(self) -> None:
        """Gate, watch and every rule type are parsed into the spec."""
        validation = {
            "gate": True,
            "watch": 5,
            "rules": [
                file_rule("conf", "/etc/app.conf", contains="port=8080"),
                {"id": "svc", "type": "command", "run": "true", "timeout": 3, "stdout": "^ok$"},
                {"id": "port", "type": "port", "port": 8080},
                {"id": "web", "type": "http", "url": "http://127.0.0.1:8080/", "body": "hello"},
            ],
        }
        write(self.path, [StepDef("a", validation=validation)])
        spec = load_distribution(self.path).workshop.steps[0].validation
        self.assertEqual(
            spec,
            ValidationSpec(
                gate=True,
                watch=5.0,
                rules=(
                    Rule(
                        id="conf",
                        type="file",
                        message="Create /etc/app.conf",
                        path="/etc/app.conf",
                        contains="port=8080",
                    ),
                    Rule(id="svc", type="command", run="true", timeout=3.0, stdout="^ok$"),
                    Rule(id="port", type="port", port=8080, timeout=5.0),
                    Rule(id="web", type="http", url="http://127.0.0.1:8080/", body="hello"),
                ),
            ),
        )

    def test_unicode_content(self) -> None:
        """Titles, markdown and hints keep their non-ASCII text."""
        write(self.path, [StepDef("a", markdown="# Grüße ✓\n", hints=["日本語のヒント"])])
        step = load_distribution(self.path).workshop.steps[0]
        self.assertEqual((step.markdown, step.hints), ("# Grüße ✓\n", ("日本語のヒント",)))

    def test_step_checked(self) -> None:
        """A known ``--step`` is accepted."""
        standard(self.path)
        self.assertEqual(load_distribution(self.path, step="optional").workshop.id, "test-workshop")

    def test_configmap_symlink_chain(self) -> None:
        """A Kubernetes ConfigMap mount (``..data`` → timestamped dir, file → ``..data/file``) resolves."""
        mount = self.tmp / "mount"
        real_dir = mount / "..2026_11_25_21_00_00.123456789"
        real_dir.mkdir(parents=True)
        standard(real_dir / "workshop.sqlite")
        (mount / "..data").symlink_to(real_dir.name)
        link = mount / "workshop.sqlite"
        link.symlink_to("..data/workshop.sqlite")
        dist = load_distribution(link)
        self.assertEqual(dist.path, real_dir / "workshop.sqlite")
        self.assertEqual(dist.workshop.id, "test-workshop")
        self.assertEqual(dist.sha256, hashlib.sha256(link.read_bytes()).hexdigest())

    def test_path_with_uri_characters(self) -> None:
        """A path with characters special in SQLite URIs (``?``, ``#``, ``%``, space) still opens."""
        odd = self.tmp / "odd dir?#%41"
        odd.mkdir()
        standard(odd / "w.sqlite")
        self.assertEqual(load_distribution(odd / "w.sqlite").path, odd / "w.sqlite")

    def test_wal_mode_distribution(self) -> None:
        """A distribution left in WAL mode by its builder loads, and no -wal/-shm file is made."""
        standard(self.path)
        conn = sqlite3.connect(self.path)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.close()
        before = sorted(os.listdir(self.tmp))
        self.assertEqual(len(load_distribution(self.path).workshop.steps), 4)
        self.assertEqual(sorted(os.listdir(self.tmp)), before)


class NeverWrittenTests(DistributionTestCase):
    """The backend never writes the distribution."""

    def test_unchanged(self) -> None:
        """Loading leaves the bytes, the mtime and the directory (no journal, no -wal/-shm) as they were."""
        standard(self.path)
        os.utime(self.path, (1_000_000_000, 1_000_000_000))
        before = (self.path.read_bytes(), self.path.stat().st_mtime_ns, sorted(os.listdir(self.tmp)))
        load_distribution(self.path, step="finish")
        after = (self.path.read_bytes(), self.path.stat().st_mtime_ns, sorted(os.listdir(self.tmp)))
        self.assertEqual(after, before)

    def test_read_only_file_in_read_only_dir(self) -> None:
        """A file mode 0444 in a directory mode 0555 (a read-only mount) loads."""
        ro = self.tmp / "ro"
        ro.mkdir()
        standard(ro / "workshop.sqlite")
        (ro / "workshop.sqlite").chmod(0o444)
        ro.chmod(0o555)
        self.addCleanup(ro.chmod, 0o755)
        dist = load_distribution(ro / "workshop.sqlite")
        self.assertEqual(dist.workshop.id, "test-workshop")
        self.assertEqual(os.listdir(ro), ["workshop.sqlite"])
        self.assertEqual(stat.S_IMODE((ro / "workshop.sqlite").stat().st_mode), 0o444)


class FileRefusalTests(DistributionTestCase):
    """Files that are not a distribution at all."""

    def test_missing(self) -> None:
        """A path that does not exist."""
        self.assertEqual(self.refused(self.path), f"distribution not found: {self.path}")

    def test_dangling_symlink(self) -> None:
        """A symlink to nothing (a ConfigMap key that is not there) is 'not found'."""
        self.path.symlink_to("..data/workshop.sqlite")
        self.assertEqual(self.refused(self.path), f"distribution not found: {self.path}")

    def test_symlink_loop(self) -> None:
        """A symlink loop."""
        (self.tmp / "other").symlink_to("workshop.sqlite")
        self.path.symlink_to("other")
        self.assertEqual(self.refused(self.path), f"distribution is a symlink loop: {self.path}")

    def test_directory(self) -> None:
        """A directory."""
        self.path.mkdir()
        self.assertEqual(self.refused(self.path), f"distribution is not a regular file: {self.path}")

    def test_text_file(self) -> None:
        """A text file."""
        self.path.write_text("id,title\nx,y\n")
        self.assertEqual(self.refused(self.path), f"distribution is not an SQLite file: {self.path}")

    def test_empty_file(self) -> None:
        """An empty file (sqlite3 would happily treat it as an empty database)."""
        self.path.write_bytes(b"")
        self.assertEqual(self.refused(self.path), f"distribution is not an SQLite file: {self.path}")

    def test_truncated(self) -> None:
        """An SQLite header followed by garbage."""
        self.path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)
        self.assertEqual(
            self.refused(self.path), f"distribution {self.path} cannot be read as SQLite: file is not a database"
        )

    def test_other_format_version(self) -> None:
        """Another ``PRAGMA user_version``."""
        write(self.path, [StepDef("a")], user_version=2)
        self.assertEqual(
            self.refused(self.path),
            f"distribution {self.path} has format version 2 (PRAGMA user_version); this backend reads 1",
        )

    def test_no_format_version(self) -> None:
        """``user_version`` 0 (an SQLite file that is not a distribution)."""
        write(self.path, [StepDef("a")], user_version=0)
        self.assertEqual(
            self.refused(self.path),
            f"distribution {self.path} has format version 0 (PRAGMA user_version); this backend reads 1",
        )


class SchemaRefusalTests(DistributionTestCase):
    """SQLite files in format 1 that break the schema."""

    def setUp(self) -> None:
        """Start from the standard four-step distribution."""
        super().setUp()
        standard(self.path)

    def test_missing_table(self) -> None:
        """No ``step_metadata`` table."""
        mutate(self.path, "DROP TABLE step_metadata;")
        self.assertEqual(self.refused(self.path), f"distribution {self.path} has no table 'step_metadata'")

    def test_missing_column(self) -> None:
        """``steps`` without ``image_tag``."""
        mutate(self.path, "ALTER TABLE steps DROP COLUMN image_tag;")
        self.assertEqual(self.refused(self.path), f"distribution {self.path}: table 'steps' lacks column(s) image_tag")

    def test_missing_columns(self) -> None:
        """Several missing columns are all named, sorted."""
        mutate(self.path, "ALTER TABLE workshop DROP COLUMN version; ALTER TABLE workshop DROP COLUMN description;")
        self.assertEqual(
            self.refused(self.path), f"distribution {self.path}: table 'workshop' lacks column(s) description, version"
        )

    def test_no_workshop_row(self) -> None:
        """An empty ``workshop`` table."""
        mutate(self.path, "DELETE FROM workshop;")
        self.assertEqual(
            self.refused(self.path), f"distribution {self.path}: table 'workshop' must have exactly one row (has 0)"
        )

    def test_two_workshop_rows(self) -> None:
        """Two ``workshop`` rows."""
        mutate(self.path, "INSERT INTO workshop SELECT * FROM workshop;")
        self.assertEqual(
            self.refused(self.path), f"distribution {self.path}: table 'workshop' must have exactly one row (has 2)"
        )

    def test_empty_title(self) -> None:
        """An empty workshop title."""
        mutate(self.path, "UPDATE workshop SET title = '';")
        self.assertEqual(
            self.refused(self.path), f"distribution {self.path}: workshop.title must be a non-empty string"
        )

    def test_bad_navigation(self) -> None:
        """A navigation value other than 'linear' or 'free'."""
        mutate(self.path, "UPDATE workshop SET navigation = 'Linear';")
        self.assertEqual(
            self.refused(self.path),
            f"distribution {self.path}: workshop.navigation must be 'linear' or 'free' (is 'Linear')",
        )

    def test_no_steps(self) -> None:
        """No steps at all."""
        mutate(self.path, "DELETE FROM step_metadata; DELETE FROM steps;")
        self.assertEqual(
            self.refused(self.path), f"distribution {self.path}: there are no steps (table 'steps' is empty)"
        )

    def test_duplicate_position(self) -> None:
        """Two steps at the same position (a builder that forgot the UNIQUE constraint)."""
        mutate(self.path, LOOSE_STEPS + "UPDATE steps SET position = 1 WHERE id = 'optional';")
        prefix = f"distribution {self.path}: step "
        self.assertRegex(
            self.refused(self.path),
            "^" + re.escape(prefix) + r"'(make-file|optional)': position 1 is also the position of step "
            r"'(make-file|optional)'$",
        )

    def test_gap_in_positions(self) -> None:
        """Positions with a gap."""
        mutate(self.path, "UPDATE steps SET position = 7 WHERE id = 'finish';")
        self.assertEqual(
            self.refused(self.path),
            f"distribution {self.path}: step positions must be 0..3 without gaps or duplicates "
            "(missing: 3; out of range: 7 ('finish'))",
        )

    def test_positions_from_one(self) -> None:
        """Positions counted from 1 instead of 0."""
        mutate(self.path, "UPDATE steps SET position = position + 10; UPDATE steps SET position = position - 9;")
        self.assertEqual(
            self.refused(self.path),
            f"distribution {self.path}: step positions must be 0..3 without gaps or duplicates "
            "(missing: 0; out of range: 4 ('finish'))",
        )

    def test_position_not_an_integer(self) -> None:
        """A position stored as a real number (1.0) is not accepted as 1."""
        mutate(self.path, LOOSE_STEPS + "UPDATE steps SET position = 1.0 WHERE id = 'make-file';")
        self.assertEqual(
            self.refused(self.path),
            f"distribution {self.path}: step 'make-file': position must be an integer (is 1.0)",
        )

    def test_duplicate_step_id(self) -> None:
        """Two steps with the same id (a builder that forgot the PRIMARY KEY)."""
        mutate(self.path, LOOSE_STEPS + "UPDATE steps SET id = 'intro' WHERE id = 'make-file';")
        self.assertEqual(
            self.refused(self.path), f"distribution {self.path}: step 'intro': the id is used by more than one step"
        )

    def test_step_id_not_a_slug(self) -> None:
        """Step ids must be slugs."""
        for bad in ("Intro", "-intro", "in tro", "intro/1", ""):
            with self.subTest(bad=bad):
                write(self.path.with_name("s.sqlite"), [StepDef("a")])
                mutate(self.path.with_name("s.sqlite"), f"UPDATE steps SET id = '{bad}';")
                self.assertEqual(
                    self.refused(self.path.with_name("s.sqlite")),
                    f"distribution {self.path.with_name('s.sqlite')}: step id {bad!r} is not a slug "
                    "([a-z0-9][a-z0-9-]*)",
                )
                self.path.with_name("s.sqlite").unlink()

    def test_step_id_null(self) -> None:
        """A NULL step id (TEXT PRIMARY KEY allows it) is not a slug."""
        mutate(self.path, "UPDATE steps SET id = NULL WHERE id = 'finish';")
        self.assertEqual(
            self.refused(self.path), f"distribution {self.path}: step id None is not a slug ([a-z0-9][a-z0-9-]*)"
        )

    def test_empty_image_tag(self) -> None:
        """An empty image tag."""
        mutate(self.path, "UPDATE steps SET image_tag = '' WHERE id = 'optional';")
        self.assertEqual(
            self.refused(self.path),
            f"distribution {self.path}: step 'optional': image_tag must be a non-empty string",
        )

    def test_validation_bad_json(self) -> None:
        """``validation`` that is not JSON."""
        mutate(self.path, "UPDATE step_metadata SET validation = '{gate: true}' WHERE step_id = 'make-file';")
        self.assertEqual(
            self.refused(self.path),
            f"distribution {self.path}: step 'make-file': step_metadata.validation is not valid JSON "
            "(Expecting property name enclosed in double quotes: line 1 column 2 (char 1))",
        )

    def test_validation_multiline_bad_json(self) -> None:
        """Bad JSON spread over lines still gives one line."""
        mutate(self.path, "UPDATE step_metadata SET validation = '{\n\"gate\": tru\n}' WHERE step_id = 'intro';")
        self.assertEqual(
            self.refused(self.path),
            f"distribution {self.path}: step 'intro': step_metadata.validation is not valid JSON "
            "(Expecting value: line 2 column 9 (char 10))",
        )

    def test_validation_not_text(self) -> None:
        """``validation`` stored as a BLOB, not JSON text."""
        mutate(self.path, "UPDATE step_metadata SET validation = X'7B7D' WHERE step_id = 'intro';")
        self.assertEqual(
            self.refused(self.path),
            f"distribution {self.path}: step 'intro': step_metadata.validation must be JSON text",
        )

    def test_validation_not_an_object(self) -> None:
        """``validation`` that is JSON but not an object."""
        mutate(self.path, "UPDATE step_metadata SET validation = '[]' WHERE step_id = 'intro';")
        self.assertEqual(
            self.refused(self.path),
            f"distribution {self.path}: step 'intro': validation: validation must be a JSON object",
        )

    def test_hints_bad_json(self) -> None:
        """``hints`` that is not JSON."""
        mutate(self.path, "UPDATE step_metadata SET hints = '[\"a\",]' WHERE step_id = 'intro';")
        self.assertEqual(
            self.refused(self.path),
            f"distribution {self.path}: step 'intro': step_metadata.hints is not valid JSON "
            "(Expecting value: line 1 column 6 (char 5))",
        )

    def test_hints_not_an_array(self) -> None:
        """``hints`` that is a JSON string, not an array."""
        mutate(self.path, "UPDATE step_metadata SET hints = '\"read it\"' WHERE step_id = 'intro';")
        self.assertEqual(
            self.refused(self.path),
            f"distribution {self.path}: step 'intro': step_metadata.hints must be a JSON array of strings",
        )

    def test_hints_not_strings(self) -> None:
        """``hints`` with a non-string element."""
        mutate(self.path, "UPDATE step_metadata SET hints = '[\"a\", 2]' WHERE step_id = 'finish';")
        self.assertEqual(
            self.refused(self.path),
            f"distribution {self.path}: step 'finish': step_metadata.hints must be a JSON array of strings",
        )

    def set_rule(self, rule: dict[str, object]) -> None:
        """Make ``rule`` the only rule of step 'make-file'."""
        mutate(
            self.path,
            "UPDATE step_metadata SET validation = "
            f"'{json.dumps({'gate': True, 'rules': [rule]})}' WHERE step_id = 'make-file';",
        )

    def test_rule_unknown_type(self) -> None:
        """A rule of an unknown type names the step and the rule."""
        self.set_rule({"id": "f", "type": "files", "path": "x"})
        self.assertEqual(
            self.refused(self.path),
            f"distribution {self.path}: step 'make-file': validation: rule 'f': 'type' must be one of "
            "file, command, port, http (got 'files')",
        )

    def test_rule_unknown_key(self) -> None:
        """A misspelt key (which would make a check that never fails) names the step and the rule."""
        self.set_rule(file_rule("conf", "/etc/app.conf", contain="port"))
        self.assertEqual(
            self.refused(self.path),
            f"distribution {self.path}: step 'make-file': validation: rule 'conf': "
            "unknown key(s) for a file rule: contain",
        )

    def test_rule_bad_regex(self) -> None:
        """A regex that does not compile names the step and the rule."""
        self.set_rule({"id": "svc", "type": "command", "run": "true", "stdout": "([a-z]"})
        self.assertEqual(
            self.refused(self.path),
            f"distribution {self.path}: step 'make-file': validation: rule 'svc': 'stdout' is not a valid "
            "regular expression (missing ), unterminated subpattern at position 0)",
        )

    def test_metadata_unknown_step(self) -> None:
        """``step_metadata`` rows for steps that do not exist are named."""
        mutate(
            self.path,
            "INSERT INTO step_metadata VALUES ('ghost', '{}', '[]');"
            "INSERT INTO step_metadata VALUES ('also-gone', '{}', '[]');",
        )
        self.assertEqual(
            self.refused(self.path),
            f"distribution {self.path}: step_metadata names unknown step(s): also-gone, ghost",
        )

    def test_metadata_twice(self) -> None:
        """Two step_metadata rows for one step (a builder without the PRIMARY KEY): neither silently wins."""
        mutate(
            self.path,
            "CREATE TABLE loose (step_id, validation, hints);"
            "INSERT INTO loose SELECT * FROM step_metadata;"
            "INSERT INTO loose VALUES ('intro', '{}', '[\"other\"]');"
            "DROP TABLE step_metadata;"
            "ALTER TABLE loose RENAME TO step_metadata;",
        )
        self.assertEqual(
            self.refused(self.path), f"distribution {self.path}: step_metadata has more than one row for step 'intro'"
        )

    def test_unknown_step_option(self) -> None:
        """An unknown ``--step`` lists the known ones."""
        self.assertEqual(
            self.refused(self.path, step="nope"),
            f"distribution {self.path} has no step 'nope' (--step / WORKSHOP_STEP); "
            "its steps: intro, make-file, optional, finish",
        )
