# mypy: allow-untyped-calls
"""Tests for the Store: every read and write of the working copy, through adbapi."""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import TestCase

from tests.distributions import standard
from workshop_backend.state.store import ProgressRow, RuntimeRow, StateEntry, Store
from workshop_backend.state.workingcopy import prepare
from workshop_backend.support.timefmt import rfc3339
from workshop_backend.workshop.distribution import load_distribution

NOW = 1_795_000_000.0
T0 = rfc3339(NOW)
T1 = rfc3339(NOW + 10)
T2 = rfc3339(NOW + 20)

C = TypeVar("C", bound="StoreTestCase")


def deferred_test(fn: Callable[[C], Coroutine[Any, Any, None]]) -> Callable[[C], Deferred[None]]:
    """Run an ``async def`` test method as a Deferred, so trial waits for it."""

    @functools.wraps(fn)
    def wrapper(self: C) -> Deferred[None]:
        return ensureDeferred(fn(self))

    return wrapper


def plain(path: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    """Read through a separate, plain sqlite3 connection (what another process would see)."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


class StoreTestCase(TestCase):
    """A working copy of the standard distribution and a Store over it (a real adbapi pool)."""

    container_step = "intro"
    navigation = "linear"

    def setUp(self) -> None:
        """Make the working copy with ``prepare``; open the Store; close it afterwards."""
        tmp = Path(self.mktemp()).resolve()
        tmp.mkdir(parents=True)
        dist = load_distribution(standard(tmp / "dist.sqlite", navigation=self.navigation))
        state = tmp / "state"
        state.mkdir()
        self.path = prepare(dist, state, container_step=self.container_step, now=NOW).path
        self.store = Store(self.path)
        self.addCleanup(self.store.close)


class RuntimeTests(StoreTestCase):
    """The runtime_state row and navigation moves."""

    @deferred_test
    async def test_load_runtime(self) -> None:
        """A new copy: at the first step, ready, started when it was made."""
        self.assertEqual(
            await self.store.load_runtime(),
            RuntimeRow(current_step="intro", target_step=None, phase="ready", started_at=T0, completed_at=None),
        )

    @deferred_test
    async def test_load_progress(self) -> None:
        """A new copy: every step, the first one viewed, nothing completed, no attempts or hints."""
        self.assertEqual(
            await self.store.load_progress(),
            {
                "intro": ProgressRow("intro", T0, None, 0, 0),
                "make-file": ProgressRow("make-file", None, None, 0, 0),
                "optional": ProgressRow("optional", None, None, 0, 0),
                "finish": ProgressRow("finish", None, None, 0, 0),
            },
        )

    @deferred_test
    async def test_save_move(self) -> None:
        """A move sets the position and completes the steps it names; the new step is viewed."""
        await self.store.save_move(
            current_step="make-file", target_step=None, phase="ready", completed=["intro"], now=T1
        )
        self.assertEqual(
            await self.store.load_runtime(),
            RuntimeRow(current_step="make-file", target_step=None, phase="ready", started_at=T0, completed_at=None),
        )
        progress = await self.store.load_progress()
        self.assertEqual(progress["intro"], ProgressRow("intro", T0, T1, 0, 0))
        self.assertEqual(progress["make-file"], ProgressRow("make-file", T1, None, 0, 0))

    @deferred_test
    async def test_save_move_transitioning(self) -> None:
        """A move to another image records the target and the phase."""
        await self.store.save_move(
            current_step="optional", target_step="optional", phase="transitioning", completed=["make-file"], now=T1
        )
        self.assertEqual(
            await self.store.load_runtime(),
            RuntimeRow(
                current_step="optional", target_step="optional", phase="transitioning", started_at=T0, completed_at=None
            ),
        )

    @deferred_test
    async def test_viewed_and_completed_set_once(self) -> None:
        """Coming back to a step keeps its first viewed_at; completing it again keeps its first completed_at."""
        await self.store.save_move(
            current_step="make-file", target_step=None, phase="ready", completed=["intro"], now=T1
        )
        await self.store.save_move(current_step="intro", target_step=None, phase="ready", completed=[], now=T2)
        await self.store.save_move(
            current_step="make-file", target_step=None, phase="ready", completed=["intro"], now=T2
        )
        progress = await self.store.load_progress()
        self.assertEqual(progress["intro"], ProgressRow("intro", T0, T1, 0, 0))
        self.assertEqual(progress["make-file"], ProgressRow("make-file", T1, None, 0, 0))
        self.assertEqual((await self.store.load_runtime()).current_step, "make-file")

    @deferred_test
    async def test_workshop_completed_once(self) -> None:
        """Completing the workshop sets completed_at once; later moves keep it."""
        await self.store.save_move(
            current_step="finish",
            target_step=None,
            phase="completed",
            completed=["finish"],
            now=T1,
            workshop_completed=True,
        )
        self.assertEqual(
            await self.store.load_runtime(),
            RuntimeRow(current_step="finish", target_step=None, phase="completed", started_at=T0, completed_at=T1),
        )
        await self.store.save_move(
            current_step="finish",
            target_step=None,
            phase="completed",
            completed=["finish"],
            now=T2,
            workshop_completed=True,
        )
        await self.store.save_move(current_step="intro", target_step=None, phase="ready", completed=[], now=T2)
        runtime = await self.store.load_runtime()
        self.assertEqual((runtime.phase, runtime.completed_at), ("ready", T1))

    @deferred_test
    async def test_updated_at(self) -> None:
        """A move stamps runtime_state.updated_at."""
        await self.store.save_move(current_step="make-file", target_step=None, phase="ready", completed=[], now=T2)
        self.assertEqual(plain(self.path, "SELECT updated_at FROM runtime_state"), [(T2,)])

    @deferred_test
    async def test_unknown_step_refused(self) -> None:
        """Foreign keys are on: a move to a step that does not exist fails and changes nothing."""
        with self.assertRaises(sqlite3.IntegrityError) as cm:
            await self.store.save_move(current_step="ghost", target_step=None, phase="ready", completed=[], now=T1)
        self.assertEqual(str(cm.exception), "FOREIGN KEY constraint failed")
        self.assertEqual((await self.store.load_runtime()).current_step, "intro")
        self.assertNotIn("ghost", await self.store.load_progress())

    @deferred_test
    async def test_bad_phase_refused(self) -> None:
        """The phase CHECK constraint holds; the failed transaction is rolled back."""
        with self.assertRaises(sqlite3.IntegrityError) as cm:
            await self.store.save_move(
                current_step="make-file",
                target_step=None,
                phase="starting",  # type: ignore[arg-type]  # the point: refused by the CHECK
                completed=["intro"],
                now=T1,
            )
        self.assertEqual(str(cm.exception), "CHECK constraint failed: phase IN ('ready', 'transitioning', 'completed')")
        self.assertEqual((await self.store.load_progress())["intro"].completed_at, None)


class ValidationTests(StoreTestCase):
    """Validation results, attempts and completion."""

    def result(self, passed: bool, checked_at: str) -> dict[str, Any]:
        """A result as the validator makes it."""
        return {
            "step": "make-file",
            "passed": passed,
            "checked_at": checked_at,
            "duration_ms": 12,
            "results": [
                {"id": "f", "type": "file", "passed": passed, "message": "Create done.txt", "detail": "ünïcode ✓"}
            ],
        }

    @deferred_test
    async def test_never_run(self) -> None:
        """No result before the first run."""
        self.assertIsNone(await self.store.last_validation("make-file"))

    @deferred_test
    async def test_round_trip(self) -> None:
        """The last result comes back as it was stored (unicode included)."""
        failed = self.result(False, T1)
        await self.store.record_validation("make-file", failed, passed=False, checked_at=T1, attempt=True)
        self.assertEqual(await self.store.last_validation("make-file"), failed)
        passed = self.result(True, T2)
        await self.store.record_validation("make-file", passed, passed=True, checked_at=T2, attempt=True)
        self.assertEqual(await self.store.last_validation("make-file"), passed)
        self.assertEqual(
            plain(self.path, "SELECT step_id, passed, checked_at FROM validation_results"), [("make-file", 1, T2)]
        )

    @deferred_test
    async def test_attempts(self) -> None:
        """Only runs asked for (attempt=True) count; watch runs do not."""
        await self.store.record_validation(
            "make-file", self.result(False, T1), passed=False, checked_at=T1, attempt=True
        )
        await self.store.record_validation(
            "make-file", self.result(False, T1), passed=False, checked_at=T1, attempt=False
        )
        await self.store.record_validation(
            "make-file", self.result(False, T2), passed=False, checked_at=T2, attempt=True
        )
        self.assertEqual((await self.store.load_progress())["make-file"], ProgressRow("make-file", None, None, 2, 0))

    @deferred_test
    async def test_pass_completes_once(self) -> None:
        """A pass completes the step at its checked_at; a later pass or fail keeps that time."""
        await self.store.record_validation(
            "make-file", self.result(False, T0), passed=False, checked_at=T0, attempt=True
        )
        self.assertIsNone((await self.store.load_progress())["make-file"].completed_at)
        await self.store.record_validation(
            "make-file", self.result(True, T1), passed=True, checked_at=T1, attempt=False
        )
        await self.store.record_validation("make-file", self.result(True, T2), passed=True, checked_at=T2, attempt=True)
        await self.store.record_validation(
            "make-file", self.result(False, T2), passed=False, checked_at=T2, attempt=True
        )
        self.assertEqual((await self.store.load_progress())["make-file"], ProgressRow("make-file", None, T1, 3, 0))
        self.assertEqual((await self.store.last_validation("make-file"))["passed"], False)  # type: ignore[index]


class HintTests(StoreTestCase):
    """Hint reveals."""

    @deferred_test
    async def test_reveal_counts_once(self) -> None:
        """Revealing a hint twice counts it once and keeps the first time; another hint counts."""
        await self.store.reveal_hint("intro", 0, T0)
        await self.store.reveal_hint("intro", 0, T1)
        self.assertEqual((await self.store.load_progress())["intro"].hints_revealed, 1)
        await self.store.reveal_hint("intro", 1, T2)
        progress = await self.store.load_progress()
        self.assertEqual(progress["intro"].hints_revealed, 2)
        self.assertEqual(progress["make-file"].hints_revealed, 0)
        self.assertEqual(
            plain(self.path, "SELECT step_id, hint_index, revealed_at FROM hint_reveals ORDER BY hint_index"),
            [("intro", 0, T0), ("intro", 1, T2)],
        )


class CustomStateTests(StoreTestCase):
    """Custom state: key → JSON."""

    @deferred_test
    async def test_empty(self) -> None:
        """Nothing stored yet."""
        self.assertEqual(await self.store.state_all(), {})
        self.assertIsNone(await self.store.state_get("missing"))
        self.assertFalse(await self.store.state_delete("missing"))

    @deferred_test
    async def test_put_get(self) -> None:
        """A value put comes back decoded, nested JSON and unicode included."""
        value = {"name": "Zoë", "emoji": "🎉", "nested": {"list": [1, 2.5, None, True, "日本"]}}
        encoded = json.dumps(value, ensure_ascii=False)
        self.assertEqual(await self.store.state_put("profile.v1", encoded, T1), StateEntry("profile.v1", value, T1))
        self.assertEqual(await self.store.state_get("profile.v1"), StateEntry("profile.v1", value, T1))

    @deferred_test
    async def test_scalars(self) -> None:
        """Any JSON value works, scalars and null included."""
        for key, value in (("s", "text"), ("n", 3), ("f", -0.5), ("b", False), ("null", None), ("l", [])):
            await self.store.state_put(key, json.dumps(value), T0)
        self.assertEqual(
            await self.store.state_all(), {"b": False, "f": -0.5, "l": [], "n": 3, "null": None, "s": "text"}
        )

    @deferred_test
    async def test_overwrite(self) -> None:
        """Putting a key again replaces the value and updated_at."""
        await self.store.state_put("k", '"old"', T1)
        await self.store.state_put("k", '{"new": 1}', T2)
        self.assertEqual(await self.store.state_get("k"), StateEntry("k", {"new": 1}, T2))
        self.assertEqual(plain(self.path, "SELECT COUNT(*) FROM custom_state"), [(1,)])

    @deferred_test
    async def test_all(self) -> None:
        """Every value by key."""
        await self.store.state_put("b", "2", T0)
        await self.store.state_put("a", '"one"', T0)
        self.assertEqual(await self.store.state_all(), {"a": "one", "b": 2})

    @deferred_test
    async def test_delete(self) -> None:
        """Deleting a key removes it (True); again, there is nothing to delete (False)."""
        await self.store.state_put("k", "1", T0)
        await self.store.state_put("other", "2", T0)
        self.assertTrue(await self.store.state_delete("k"))
        self.assertFalse(await self.store.state_delete("k"))
        self.assertIsNone(await self.store.state_get("k"))
        self.assertEqual(await self.store.state_all(), {"other": 2})


class DurabilityTests(StoreTestCase):
    """When a write's Deferred fires, the write is committed."""

    @deferred_test
    async def test_state_put_visible(self) -> None:
        """Another connection sees a custom state value as soon as state_put fires."""
        await self.store.state_put("k", '{"a": "ü"}', T1)
        self.assertEqual(plain(self.path, "SELECT key, value, updated_at FROM custom_state"), [("k", '{"a": "ü"}', T1)])

    @deferred_test
    async def test_save_move_visible(self) -> None:
        """Another connection sees a move as soon as save_move fires."""
        await self.store.save_move(
            current_step="make-file", target_step=None, phase="ready", completed=["intro"], now=T1
        )
        self.assertEqual(plain(self.path, "SELECT current_step, updated_at FROM runtime_state"), [("make-file", T1)])
        self.assertEqual(plain(self.path, "SELECT completed_at FROM progress WHERE step_id = 'intro'"), [(T1,)])

    @deferred_test
    async def test_validation_and_hint_visible(self) -> None:
        """Another connection sees a validation result and a hint reveal as soon as they fire."""
        await self.store.record_validation("make-file", {"passed": True}, passed=True, checked_at=T1, attempt=True)
        await self.store.reveal_hint("intro", 1, T2)
        self.assertEqual(
            plain(self.path, "SELECT step_id, passed, result FROM validation_results"),
            [("make-file", 1, '{"passed":true}')],
        )
        self.assertEqual(plain(self.path, "SELECT step_id, hint_index FROM hint_reveals"), [("intro", 1)])

    @deferred_test
    async def test_delete_visible(self) -> None:
        """Another connection sees a delete as soon as state_delete fires."""
        await self.store.state_put("k", "1", T1)
        await self.store.state_delete("k")
        self.assertEqual(plain(self.path, "SELECT COUNT(*) FROM custom_state"), [(0,)])

    @deferred_test
    async def test_wal_and_foreign_keys(self) -> None:
        """The Store's connection runs in WAL mode with foreign keys on."""

        def pragmas(txn: sqlite3.Cursor) -> tuple[Any, ...]:
            txn.execute("PRAGMA journal_mode")
            journal = txn.fetchone()[0]
            txn.execute("PRAGMA foreign_keys")
            return (journal, txn.fetchone()[0])

        self.assertEqual(await self.store._interaction(pragmas), ("wal", 1))


class ResumeTests(StoreTestCase):
    """What the Store wrote survives a restart (prepare again, a new Store)."""

    @deferred_test
    async def test_reopen(self) -> None:
        """After closing, preparing again resumes the copy; a new Store sees every write."""
        await self.store.state_put("k", '"v"', T1)
        await self.store.save_move(
            current_step="make-file", target_step=None, phase="ready", completed=["intro"], now=T1
        )
        self.store.close()
        dist = load_distribution(self.path.parent.parent / "dist.sqlite")
        copy = prepare(dist, self.path.parent, container_step="intro", now=NOW + 100)
        self.assertTrue(copy.resumed)
        self.store = Store(copy.path)
        self.addCleanup(self.store.close)
        self.assertEqual(await self.store.state_get("k"), StateEntry("k", "v", T1))
        self.assertEqual((await self.store.load_runtime()).current_step, "make-file")


class CloseTests(StoreTestCase):
    """Closing the Store."""

    def test_close_twice(self) -> None:
        """Closing twice (a stop after a failed start, then the cleanup) is harmless."""
        self.store.close()
        self.store.close()


class LaterStepTests(StoreTestCase):
    """A copy made for a container started at a later step of a linear workshop."""

    container_step = "optional"

    @deferred_test
    async def test_progress(self) -> None:
        """The steps before it are completed, it is viewed."""
        progress = await self.store.load_progress()
        self.assertEqual(
            {p.step: (p.viewed_at, p.completed_at) for p in progress.values()},
            {"intro": (None, T0), "make-file": (None, T0), "optional": (T0, None), "finish": (None, None)},
        )
