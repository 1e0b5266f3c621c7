# mypy: allow-untyped-calls
"""Tests for making and resuming the working copy (contract section 3)."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.distributions import StepDef, standard, write
from workshop_backend.state import workingcopy
from workshop_backend.state.workingcopy import (
    SCHEMA_VERSION,
    WORKING_COPY,
    WorkingCopy,
    prepare,
    recorded_hash,
    schema_sql,
    upgrade_sql,
)
from workshop_backend.support.timefmt import rfc3339
from workshop_backend.workshop.distribution import Distribution, DistributionError, load_distribution

NOW = 1_795_000_000.0
DISTRIBUTION_TABLES = ("workshop", "steps", "step_metadata")
BROKEN = "the existing working copy is unreadable or from an unknown schema"
RUNTIME_TABLES = (
    "backend_meta",
    "custom_state",
    "hint_reveals",
    "progress",
    "runtime_state",
    "setup_runs",
    "validation_results",
)


def query(path: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    """Rows of one query through a plain sqlite3 connection."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def execute(path: Path, sql: str, *args: object) -> None:
    """One committed write through a plain sqlite3 connection (as the Store would make it)."""
    conn = sqlite3.connect(path)
    try:
        conn.execute(sql, args)
        conn.commit()
    finally:
        conn.close()


def dump(path: Path, tables: tuple[str, ...]) -> list[str]:
    """``iterdump`` lines (schema and rows) that belong to ``tables``."""
    conn = sqlite3.connect(path)
    try:
        lines = list(conn.iterdump())
    finally:
        conn.close()
    pattern = re.compile(r'^(?:CREATE TABLE|INSERT INTO) "?(\w+)"?')
    kept = []
    for line in lines:
        m = pattern.match(line)
        if m is not None and m.group(1) in tables:
            kept.append(line)
    return kept


def runtime_schema_dump(path: Path) -> list[str]:
    """The schema (no rows) of the runtime tables, as ``iterdump`` writes it."""
    return [line for line in dump(path, RUNTIME_TABLES) if line.startswith("CREATE")]


class WorkingCopyTestCase(SynchronousTestCase):
    """A distribution and an empty state dir."""

    def setUp(self) -> None:
        """Write the standard distribution; make the state dir."""
        self.tmp = Path(self.mktemp()).resolve()
        self.tmp.mkdir(parents=True)
        self.dist = load_distribution(standard(self.tmp / "dist.sqlite"))
        self.state = self.tmp / "state"
        self.state.mkdir()
        self.target = self.state / WORKING_COPY

    def prepare(self, dist: Distribution | None = None, **kw: object) -> WorkingCopy:
        """``prepare`` with the defaults of these tests."""
        args: dict[str, object] = {"container_step": "intro", "now": NOW}
        args.update(kw)
        return prepare(dist or self.dist, self.state, **args)  # type: ignore[arg-type]

    def other_distribution(self) -> Distribution:
        """A second, different distribution."""
        return load_distribution(write(self.tmp / "other.sqlite", [StepDef("one"), StepDef("two")]))

    def listing(self) -> list[str]:
        """The state dir's file names, sorted."""
        return sorted(os.listdir(self.state))


class FreshCopyTests(WorkingCopyTestCase):
    """A state dir without a working copy gets a complete new one."""

    def test_result(self) -> None:
        """The copy is at ``<state-dir>/workshop.sqlite``, not resumed, nothing replaced; nothing else is left."""
        self.assertEqual(self.prepare(), WorkingCopy(path=self.target, resumed=False, replaced_because=None))
        self.assertEqual(self.listing(), [WORKING_COPY])

    def test_distribution_tables_identical(self) -> None:
        """The distribution's tables (schema and rows) and its user_version are copied unchanged."""
        self.prepare()
        dist_path = self.tmp / "dist.sqlite"
        self.assertEqual(dump(self.target, DISTRIBUTION_TABLES), dump(dist_path, DISTRIBUTION_TABLES))
        self.assertEqual(len(dump(self.target, DISTRIBUTION_TABLES)), 3 + 1 + 4 + 4)
        self.assertEqual(query(self.target, "PRAGMA user_version"), [(1,)])

    def test_tables(self) -> None:
        """The runtime tables sit next to the distribution's."""
        self.prepare()
        names = [r[0] for r in query(self.target, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        self.assertEqual(names, sorted(DISTRIBUTION_TABLES + RUNTIME_TABLES))

    def test_backend_meta(self) -> None:
        """backend_meta records the schema version, the distribution's sha256 and when the copy was made."""
        self.prepare()
        self.assertEqual(
            dict(query(self.target, "SELECT key, value FROM backend_meta")),  # type: ignore[arg-type]
            {
                "schema_version": str(SCHEMA_VERSION),
                "distribution_sha256": self.dist.sha256,
                "created_at": rfc3339(NOW),
            },
        )
        self.assertEqual(recorded_hash(self.target), self.dist.sha256)

    def test_runtime_state(self) -> None:
        """One runtime_state row: at the container's step, ready, started now."""
        self.prepare(container_step="make-file")
        stamp = rfc3339(NOW)
        self.assertEqual(
            query(self.target, "SELECT * FROM runtime_state"),
            [(1, "make-file", None, "ready", stamp, stamp, None)],
        )

    def test_empty_runtime_tables(self) -> None:
        """No custom state, hints, or validation results yet."""
        self.prepare()
        for table in ("custom_state", "hint_reveals", "validation_results"):
            with self.subTest(table=table):
                self.assertEqual(query(self.target, f"SELECT COUNT(*) FROM {table}"), [(0,)])

    def test_linear_later_step(self) -> None:
        """Linear: a container started at step k has the steps before k completed; step k is viewed."""
        self.prepare(container_step="optional")
        stamp = rfc3339(NOW)
        self.assertEqual(
            query(self.target, "SELECT step_id, viewed_at, completed_at, attempts FROM progress ORDER BY rowid"),
            [
                ("intro", None, stamp, 0),
                ("make-file", None, stamp, 0),
                ("optional", stamp, None, 0),
                ("finish", None, None, 0),
            ],
        )

    def test_linear_first_step(self) -> None:
        """Linear at the first step: nothing completed."""
        self.prepare()
        self.assertEqual(
            query(self.target, "SELECT step_id, viewed_at, completed_at FROM progress ORDER BY rowid"),
            [
                ("intro", rfc3339(NOW), None),
                ("make-file", None, None),
                ("optional", None, None),
                ("finish", None, None),
            ],
        )

    def test_free_later_step(self) -> None:
        """Free navigation: starting at a later step completes nothing."""
        free = load_distribution(standard(self.tmp / "free.sqlite", navigation="free"))
        self.prepare(free, container_step="optional")
        stamp = rfc3339(NOW)
        self.assertEqual(
            query(self.target, "SELECT step_id, viewed_at, completed_at FROM progress ORDER BY rowid"),
            [("intro", None, None), ("make-file", None, None), ("optional", stamp, None), ("finish", None, None)],
        )

    def test_distribution_untouched(self) -> None:
        """Making the copy does not change the distribution."""
        source = self.tmp / "dist.sqlite"
        before = (source.read_bytes(), source.stat().st_mtime_ns)
        self.prepare()
        self.assertEqual((source.read_bytes(), source.stat().st_mtime_ns), before)

    def test_wal_mode_distribution(self) -> None:
        """A distribution its builder left in WAL mode is copied whole, and the copy opens."""
        source = self.tmp / "wal.sqlite"
        standard(source)
        conn = sqlite3.connect(source)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.close()
        self.prepare(load_distribution(source))
        self.assertEqual(dump(self.target, DISTRIBUTION_TABLES), dump(source, DISTRIBUTION_TABLES))
        self.assertEqual(query(self.target, "PRAGMA quick_check"), [("ok",)])
        self.assertEqual(self.listing(), [WORKING_COPY])

    def test_state_dir_with_uri_characters(self) -> None:
        """A state dir whose name has ``?``, ``#`` and ``%`` works, and the copy is resumed (not taken for broken)."""
        self.state = self.tmp / "st?ate#%41"
        self.state.mkdir()
        first = self.prepare()
        self.assertEqual(first.resumed, False)
        self.assertEqual(self.prepare(), WorkingCopy(path=self.state / WORKING_COPY, resumed=True))
        self.assertEqual(sorted(os.listdir(self.tmp)), ["dist.sqlite", "st?ate#%41", "state"])


class ResumeTests(WorkingCopyTestCase):
    """A copy made from the same distribution is reopened, with the student's data."""

    def test_resume(self) -> None:
        """Same hash: resumed, and a value the student saved is still there."""
        self.prepare()
        execute(self.target, "INSERT INTO custom_state VALUES ('answer', '42', 'x')")
        execute(self.target, "UPDATE runtime_state SET current_step = 'finish'")
        self.assertEqual(self.prepare(now=NOW + 60), WorkingCopy(path=self.target, resumed=True))
        self.assertEqual(query(self.target, "SELECT * FROM custom_state"), [("answer", "42", "x")])
        self.assertEqual(
            query(self.target, "SELECT current_step, started_at FROM runtime_state"), [("finish", rfc3339(NOW))]
        )
        self.assertEqual(self.listing(), [WORKING_COPY])

    def test_resume_wal_after_clean_close(self) -> None:
        """A copy the Store switched to WAL mode (and closed cleanly) is resumed."""
        self.prepare()
        conn = sqlite3.connect(self.target)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("INSERT INTO custom_state VALUES ('k', '1', 'x')")
        conn.commit()
        conn.close()
        self.assertEqual(self.prepare().resumed, True)
        self.assertEqual(query(self.target, "SELECT key FROM custom_state"), [("k",)])

    def test_resume_after_crash(self) -> None:
        """After a crash (writes only in ``-wal``), the copy is resumed and the writes are there."""
        self.prepare()
        conn = sqlite3.connect(self.target)
        self.addCleanup(conn.close)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("INSERT INTO custom_state VALUES ('k', '1', 'x')")
        conn.commit()
        # The files as a crashed process leaves them: the connection is still open.
        crashed = self.tmp / "crashed"
        crashed.mkdir()
        for name in os.listdir(self.state):
            shutil.copy(self.state / name, crashed / name)
        self.assertIn(WORKING_COPY + "-wal", os.listdir(crashed))
        self.state = crashed
        self.assertEqual(self.prepare(), WorkingCopy(path=crashed / WORKING_COPY, resumed=True))
        self.assertEqual(query(crashed / WORKING_COPY, "SELECT key FROM custom_state"), [("k",)])


class ReplaceTests(WorkingCopyTestCase):
    """A copy we must not reuse is moved aside, never deleted, and a new one made."""

    def test_other_distribution(self) -> None:
        """A copy of another distribution moves to ``.previous``; the new copy is of this one."""
        other = self.other_distribution()
        self.prepare(other, container_step="one")
        execute(self.target, "INSERT INTO custom_state VALUES ('old', '1', 'x')")
        self.assertEqual(
            self.prepare(),
            WorkingCopy(
                path=self.target,
                resumed=False,
                replaced_because="the existing working copy was made from another distribution",
            ),
        )
        self.assertEqual(self.listing(), [WORKING_COPY, WORKING_COPY + ".previous"])
        previous = self.state / (WORKING_COPY + ".previous")
        self.assertEqual(recorded_hash(previous), other.sha256)
        self.assertEqual(query(previous, "SELECT key FROM custom_state"), [("old",)])
        self.assertEqual(recorded_hash(self.target), self.dist.sha256)
        self.assertEqual(query(self.target, "SELECT COUNT(*) FROM custom_state"), [(0,)])

    def test_other_distribution_with_wal(self) -> None:
        """The ``-wal``/``-shm`` files of a copy in use move aside with it, so no write is lost."""
        other = self.other_distribution()
        self.prepare(other, container_step="one")
        conn = sqlite3.connect(self.target)
        self.addCleanup(conn.close)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("INSERT INTO custom_state VALUES ('old', '1', 'x')")
        conn.commit()
        crashed = self.tmp / "crashed"
        crashed.mkdir()
        for name in os.listdir(self.state):
            shutil.copy(self.state / name, crashed / name)
        self.state = crashed
        self.assertEqual(self.prepare().resumed, False)
        previous = crashed / (WORKING_COPY + ".previous")
        self.assertEqual(
            sorted(os.listdir(crashed)),
            [WORKING_COPY, WORKING_COPY + ".previous", WORKING_COPY + ".previous-shm", WORKING_COPY + ".previous-wal"],
        )
        self.assertEqual(query(previous, "SELECT key FROM custom_state"), [("old",)])
        self.assertEqual(recorded_hash(crashed / WORKING_COPY), self.dist.sha256)

    def test_corrupt(self) -> None:
        """A copy that is not a database moves to ``.broken``, bytes kept."""
        self.target.write_bytes(b"this is not sqlite")
        self.assertEqual(
            self.prepare(),
            WorkingCopy(
                path=self.target,
                resumed=False,
                replaced_because=BROKEN,
            ),
        )
        self.assertEqual(self.listing(), [WORKING_COPY, WORKING_COPY + ".broken"])
        self.assertEqual((self.state / (WORKING_COPY + ".broken")).read_bytes(), b"this is not sqlite")
        self.assertEqual(recorded_hash(self.target), self.dist.sha256)

    def test_empty_file(self) -> None:
        """An empty file where the copy should be is broken, not resumed."""
        self.target.write_bytes(b"")
        self.assertEqual(self.prepare().replaced_because, BROKEN)
        self.assertEqual(self.listing(), [WORKING_COPY, WORKING_COPY + ".broken"])

    def test_damaged_database(self) -> None:
        """A copy whose pages are damaged (quick_check fails or it cannot be read) is broken."""
        self.prepare()
        data = bytearray(self.target.read_bytes())
        page = 4096
        data[page : 3 * page] = b"\xa5" * (2 * page)
        self.target.write_bytes(bytes(data))
        self.assertEqual(self.prepare().resumed, False)
        self.assertEqual(self.listing(), [WORKING_COPY, WORKING_COPY + ".broken"])
        self.assertEqual(recorded_hash(self.target), self.dist.sha256)

    def test_older_schema_upgraded(self) -> None:
        """A copy of runtime schema 1 (an older backend's) is upgraded in place and resumed: the
        student's progress kept, the schema the same as a fresh copy's."""
        self.prepare()
        fresh_schema = runtime_schema_dump(self.target)
        execute(self.target, "DROP TABLE setup_runs")
        execute(self.target, "UPDATE backend_meta SET value = '1' WHERE key = 'schema_version'")
        execute(self.target, "INSERT INTO custom_state VALUES ('kept', '1', 'then')")
        copy = self.prepare()
        self.assertEqual((copy.resumed, copy.upgraded_from), (True, 1))
        self.assertEqual(runtime_schema_dump(self.target), fresh_schema)
        self.assertEqual(query(self.target, "SELECT key FROM custom_state"), [("kept",)])
        self.assertEqual(recorded_hash(self.target), self.dist.sha256)
        self.assertEqual(self.listing(), [WORKING_COPY])
        # Upgraded once: the next start resumes it as it is.
        self.assertEqual((self.prepare().resumed, self.prepare().upgraded_from), (True, None))

    def test_unknown_schema_version(self) -> None:
        """A copy from another schema version is treated as unreadable."""
        self.prepare()
        execute(self.target, "UPDATE backend_meta SET value = '99' WHERE key = 'schema_version'")
        self.assertEqual(self.prepare().replaced_because, BROKEN)
        self.assertEqual(self.listing(), [WORKING_COPY, WORKING_COPY + ".broken"])

    def test_no_runtime_row(self) -> None:
        """A copy whose runtime_state row is gone cannot be resumed (the Store could not load it)."""
        self.prepare()
        execute(self.target, "DELETE FROM runtime_state")
        self.assertEqual(self.prepare().replaced_because, BROKEN)
        self.assertEqual(self.listing(), [WORKING_COPY, WORKING_COPY + ".broken"])

    def test_plain_distribution_in_place(self) -> None:
        """A bare distribution (no runtime tables) where the copy should be is broken, not resumed."""
        shutil.copy(self.tmp / "dist.sqlite", self.target)
        self.assertEqual(self.prepare().resumed, False)
        self.assertEqual(self.listing(), [WORKING_COPY, WORKING_COPY + ".broken"])

    def test_fresh(self) -> None:
        """``fresh=True`` replaces even a matching copy (moved to ``.previous``)."""
        self.prepare()
        execute(self.target, "INSERT INTO custom_state VALUES ('old', '1', 'x')")
        self.assertEqual(
            self.prepare(fresh=True),
            WorkingCopy(path=self.target, resumed=False, replaced_because="--fresh was given"),
        )
        self.assertEqual(self.listing(), [WORKING_COPY, WORKING_COPY + ".previous"])
        self.assertEqual(query(self.target, "SELECT COUNT(*) FROM custom_state"), [(0,)])
        self.assertEqual(query(self.state / (WORKING_COPY + ".previous"), "SELECT key FROM custom_state"), [("old",)])

    def test_earlier_copies_kept(self) -> None:
        """Replacing again never overwrites an earlier ``.previous`` or ``.broken`` (numbered instead)."""
        self.prepare()
        execute(self.target, "INSERT INTO custom_state VALUES ('work', '1', 'x')")
        self.prepare(fresh=True)
        self.prepare(fresh=True)
        self.target.write_bytes(b"junk 1")
        self.prepare()
        self.target.write_bytes(b"junk 2")
        self.prepare()
        self.assertEqual(
            self.listing(),
            [
                WORKING_COPY,
                WORKING_COPY + ".broken",
                WORKING_COPY + ".broken.1",
                WORKING_COPY + ".previous",
                WORKING_COPY + ".previous.1",
            ],
        )
        self.assertEqual(query(self.state / (WORKING_COPY + ".previous"), "SELECT key FROM custom_state"), [("work",)])
        self.assertEqual((self.state / (WORKING_COPY + ".broken.1")).read_bytes(), b"junk 2")

    def test_fresh_without_copy(self) -> None:
        """``fresh=True`` with nothing there just makes a copy."""
        self.assertEqual(self.prepare(fresh=True), WorkingCopy(path=self.target, resumed=False))

    def test_orphaned_wal(self) -> None:
        """Leftover ``-wal``/``-shm`` files without their database do not leak into the new copy."""
        other = self.other_distribution()
        self.prepare(other, container_step="one")
        conn = sqlite3.connect(self.target)
        self.addCleanup(conn.close)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("INSERT INTO custom_state VALUES ('old', '1', 'x')")
        conn.execute("DELETE FROM steps WHERE id = 'two'")
        conn.commit()
        orphaned = self.tmp / "orphaned"
        orphaned.mkdir()
        for suffix in ("-wal", "-shm"):
            shutil.copy(self.state / (WORKING_COPY + suffix), orphaned / (WORKING_COPY + suffix))
        self.state = orphaned
        self.assertEqual(self.prepare().resumed, False)
        self.assertEqual(
            sorted(os.listdir(orphaned)),
            [WORKING_COPY, WORKING_COPY + ".orphaned-shm", WORKING_COPY + ".orphaned-wal"],
        )
        new = orphaned / WORKING_COPY
        self.assertEqual(query(new, "PRAGMA quick_check"), [("ok",)])
        self.assertEqual(query(new, "SELECT COUNT(*) FROM custom_state"), [(0,)])
        self.assertEqual(len(query(new, "SELECT id FROM steps")), 4)
        self.assertEqual(recorded_hash(new), self.dist.sha256)


class FailureTests(WorkingCopyTestCase):
    """A copy that cannot be finished leaves nothing half-made behind."""

    def test_bad_container_step(self) -> None:
        """``_initialise`` failing (an unknown container step) leaves no temp file and no copy."""
        with self.assertRaises(KeyError) as cm:
            self.prepare(container_step="nope")
        self.assertEqual(cm.exception.args, ("nope",))
        self.assertEqual(self.listing(), [])

    def test_disk_full(self) -> None:
        """An OSError in the middle of the build (disk full) leaves no temp file and no copy."""

        def full(*args: object, **kw: object) -> None:
            raise OSError(28, "No space left on device")

        self.patch(workingcopy, "_initialise", full)
        with self.assertRaises(OSError) as cm:
            self.prepare()
        self.assertEqual(cm.exception.strerror, "No space left on device")
        self.assertEqual(self.listing(), [])

    def test_failure_keeps_old_copy_aside(self) -> None:
        """When replacing fails, the old copy is still there under ``.previous``."""
        self.prepare(self.other_distribution(), container_step="one")

        def full(*args: object, **kw: object) -> None:
            raise OSError(28, "No space left on device")

        self.patch(workingcopy, "_initialise", full)
        self.assertRaises(OSError, self.prepare)
        self.assertEqual(self.listing(), [WORKING_COPY + ".previous"])

    def test_source_changed(self) -> None:
        """A distribution that changed after it was checked is refused, and nothing is left."""
        standard(self.tmp / "changed.sqlite")
        checked = load_distribution(self.tmp / "changed.sqlite")
        (self.tmp / "changed.sqlite").unlink()
        write(self.tmp / "changed.sqlite", [StepDef("intro"), StepDef("evil")])
        with self.assertRaises(DistributionError) as cm:
            self.prepare(checked)
        self.assertEqual(
            str(cm.exception),
            f"distribution {self.tmp / 'changed.sqlite'} changed while it was being copied; restart to retry",
        )
        self.assertEqual(self.listing(), [])

    def test_stale_temp_removed(self) -> None:
        """A half-made copy left by a backend killed mid-build (and its journal) is removed on the next start."""
        (self.state / ".workshop.sqlite.tmp-k1ll3d").write_bytes(b"SQLite format 3\x00half")
        (self.state / ".workshop.sqlite.tmp-k1ll3d-journal").write_bytes(b"journal")
        self.assertEqual(self.prepare().resumed, False)
        self.assertEqual(self.listing(), [WORKING_COPY])
        (self.state / ".workshop.sqlite.tmp-again").write_bytes(b"")
        self.assertEqual(self.prepare().resumed, True)
        self.assertEqual(self.listing(), [WORKING_COPY])

    def test_source_gone(self) -> None:
        """A distribution removed since it was checked (a ConfigMap update) is a DistributionError, not a crash."""
        (self.tmp / "dist.sqlite").unlink()
        with self.assertRaises(DistributionError) as cm:
            self.prepare()
        self.assertEqual(
            str(cm.exception), f"cannot read distribution {self.tmp / 'dist.sqlite'}: No such file or directory"
        )
        self.assertEqual(self.listing(), [])

    def test_source_changed_during_copy(self) -> None:
        """The source changing while its bytes are copied is refused (checked against the validated hash)."""
        real_copy = shutil.copyfileobj
        source = self.tmp / "dist.sqlite"

        def change_then_copy(src: Any, dst: Any, length: int = 0) -> None:
            with source.open("ab") as f:
                f.write(b"\x00" * 512)
            real_copy(src, dst, length)

        self.patch(shutil, "copyfileobj", change_then_copy)
        with self.assertRaises(DistributionError) as cm:
            self.prepare()
        self.assertEqual(
            str(cm.exception), f"distribution {source} changed while it was being copied; restart to retry"
        )
        self.assertEqual(self.listing(), [])


class SchemaTests(WorkingCopyTestCase):
    """The runtime schema as shipped."""

    def test_fresh_schema_dumps_as_current(self) -> None:
        """The runtime tables of a new copy dump exactly as vN.sql applied to an empty database."""
        self.prepare()
        empty = self.tmp / "current.sqlite"
        conn = sqlite3.connect(empty)
        conn.executescript(schema_sql(SCHEMA_VERSION))
        conn.close()
        expected = runtime_schema_dump(empty)
        self.assertEqual(len(expected), len(RUNTIME_TABLES))
        self.assertEqual(runtime_schema_dump(self.target), expected)

    def test_statements(self) -> None:
        """The schema script splits into one statement per table, in order (and upgrade-v2's version
        update, which finds no row in a fresh copy: its version is written after the schema)."""
        statements = workingcopy._statements(schema_sql(SCHEMA_VERSION))
        names = [re.search(r"CREATE TABLE (\w+) \(", s) for s in statements]
        self.assertEqual(
            [m.group(1) if m else None for m in names],
            [
                "backend_meta",
                "runtime_state",
                "custom_state",
                "progress",
                "hint_reveals",
                "validation_results",
                "setup_runs",
                None,
            ],
        )
        self.assertTrue(statements[-1].startswith("UPDATE backend_meta SET value = '2'"))

    def test_fresh_is_v1_and_its_upgrades(self) -> None:
        """The fresh schema is v1.sql, then each upgrade script: every table is written once."""
        self.assertEqual(schema_sql(2), schema_sql(1) + "\n" + upgrade_sql(2))
        self.assertEqual(schema_sql(2).count("CREATE TABLE setup_runs"), 1)

    def test_statements_keep_text(self) -> None:
        """Statements keep their text: ``--`` inside a literal survives; a trailing comment is no statement."""
        self.assertEqual(
            workingcopy._statements("CREATE TABLE a (x TEXT DEFAULT '--'); -- note\n-- the end\n"),
            ["CREATE TABLE a (x TEXT DEFAULT '--'); -- note"],
        )

    def test_statements_unterminated(self) -> None:
        """A script that ends inside a statement is a ValueError."""
        with self.assertRaises(ValueError) as cm:
            workingcopy._statements("CREATE TABLE a (x);\nCREATE TABLE b (\n")
        self.assertEqual(str(cm.exception), "schema script ends inside a statement")
