"""The working copy, through ``twisted.enterprise.adbapi``: the only SQL.

One connection (``cp_min = cp_max = 1``), so there is exactly one writer and
statements run one after another in adbapi's thread; the reactor thread never
touches sqlite.  Every method that writes commits before its Deferred fires,
so the API can promise that a write is durable before it answers.

A write that fails for lack of disk space raises
:class:`~workshop_backend.workshop.errors.DiskFull` (the transaction is
rolled back: nothing is half-written).  Writes that record the student's
progress and position are *vital*: on a full disk the store releases the
space reserve (:mod:`~workshop_backend.state.space`) and tries once more, in
the same thread, before giving up.
"""

from __future__ import annotations

import errno
import json
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred

from workshop_backend.state.space import Reserve
from workshop_backend.workshop.errors import DiskFull
from workshop_backend.workshop.model import Phase

StateLimit = Literal["keys", "bytes"]
"""Which limit of custom state a write would break."""


@dataclass(frozen=True)
class RuntimeRow:
    """The persisted part of the status (``runtime_state``)."""

    current_step: str
    target_step: str | None
    phase: Phase
    started_at: str
    completed_at: str | None


@dataclass(frozen=True)
class ProgressRow:
    """One step's progress."""

    step: str
    viewed_at: str | None
    completed_at: str | None
    attempts: int
    hints_revealed: int


@dataclass(frozen=True)
class StateEntry:
    """One custom state value (decoded JSON)."""

    key: str
    value: object
    updated_at: str


def disk_full(error: BaseException) -> bool:
    """Did this fail for lack of space (SQLite's SQLITE_FULL, or ENOSPC/EDQUOT)?"""
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", None)
        return (code is not None and code & 0xFF == sqlite3.SQLITE_FULL) or "database or disk is full" in str(error)
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def _open(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA busy_timeout = 5000")


class Store:
    """Every read and write of the working copy."""

    def __init__(self, path: Path, pool: adbapi.ConnectionPool | None = None, reserve: Reserve | None = None) -> None:
        self.path = path
        self.reserve = reserve
        """Released (and the write tried again) when a vital write finds the disk full."""
        self._pool = pool or adbapi.ConnectionPool(
            "sqlite3",
            str(path),
            check_same_thread=False,
            cp_min=1,
            cp_max=1,
            cp_openfun=_open,
            cp_noisy=False,
        )
        self._closed = False

    def close(self) -> None:
        """Close the pool (and its connection); closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        self._pool.close()

    def _interaction(self, fn: Callable[..., Any], *args: Any, vital: bool = False) -> Deferred[Any]:
        """Run ``fn(cursor, *args)`` in one transaction, in the database thread."""
        d: Deferred[Any] = self._pool.runWithConnection(self._transaction, fn, args, vital)
        return d

    def _transaction(self, conn: Any, fn: Callable[..., Any], args: tuple[Any, ...], vital: bool) -> Any:
        """Commit, or roll back and raise; on a full disk, a vital write releases the reserve and runs again."""
        retried = False
        while True:
            cursor = conn.cursor()
            try:
                result = fn(cursor, *args)
                conn.commit()
                return result
            except (sqlite3.Error, OSError) as e:
                conn.rollback()
                if not disk_full(e):
                    raise
                if vital and not retried and self.reserve is not None and self.reserve.release():
                    retried = True
                    continue
                raise DiskFull() from None
            finally:
                cursor.close()

    def restore_reserve(self) -> Deferred[bool]:
        """Make the space reserve again if there is room (in the database thread, between writes)."""
        reserve = self.reserve
        if reserve is None:
            d: Deferred[bool] = Deferred()
            d.callback(True)
            return d
        result: Deferred[bool] = self._pool.runWithConnection(lambda conn: reserve.restore())
        return result

    # -- status and progress ---------------------------------------------------------

    def load_runtime(self) -> Deferred[RuntimeRow]:
        """The persisted status row."""

        def run(txn: sqlite3.Cursor) -> RuntimeRow:
            txn.execute(
                "SELECT current_step, target_step, phase, started_at, completed_at FROM runtime_state WHERE id = 1"
            )
            return RuntimeRow(*txn.fetchone())

        return self._interaction(run)

    def load_progress(self) -> Deferred[dict[str, ProgressRow]]:
        """Progress of every step, by step id."""

        def run(txn: sqlite3.Cursor) -> dict[str, ProgressRow]:
            txn.execute(
                "SELECT p.step_id, p.viewed_at, p.completed_at, p.attempts,"
                " (SELECT COUNT(*) FROM hint_reveals h WHERE h.step_id = p.step_id)"
                " FROM progress p"
            )
            return {row[0]: ProgressRow(*row) for row in txn.fetchall()}

        return self._interaction(run)

    def save_move(
        self,
        *,
        current_step: str,
        target_step: str | None,
        phase: Phase,
        completed: Iterable[str],
        now: str,
        workshop_completed: bool = False,
    ) -> Deferred[None]:
        """Record a navigation: the new position and the steps it completed."""
        completed = list(completed)

        def run(txn: sqlite3.Cursor) -> None:
            txn.execute(
                "UPDATE runtime_state SET current_step = ?, target_step = ?, phase = ?, updated_at = ?,"
                " completed_at = CASE WHEN ? THEN COALESCE(completed_at, ?) ELSE completed_at END WHERE id = 1",
                (current_step, target_step, phase, now, workshop_completed, now),
            )
            for step in completed:
                _ensure_progress(txn, step)
                txn.execute(
                    "UPDATE progress SET completed_at = COALESCE(completed_at, ?) WHERE step_id = ?", (now, step)
                )
            _ensure_progress(txn, current_step)
            txn.execute("UPDATE progress SET viewed_at = COALESCE(viewed_at, ?) WHERE step_id = ?", (now, current_step))

        return self._interaction(run, vital=True)

    def record_validation(
        self, step: str, result: dict[str, Any], *, passed: bool, checked_at: str, attempt: bool
    ) -> Deferred[None]:
        """Keep the last result of a step; a pass completes the step."""
        encoded = json.dumps(result, separators=(",", ":"))

        def run(txn: sqlite3.Cursor) -> None:
            txn.execute(
                "INSERT INTO validation_results (step_id, passed, checked_at, result) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (step_id) DO UPDATE SET passed = excluded.passed,"
                " checked_at = excluded.checked_at, result = excluded.result",
                (step, int(passed), checked_at, encoded),
            )
            _ensure_progress(txn, step)
            if attempt:
                txn.execute("UPDATE progress SET attempts = attempts + 1 WHERE step_id = ?", (step,))
            if passed:
                txn.execute(
                    "UPDATE progress SET completed_at = COALESCE(completed_at, ?) WHERE step_id = ?",
                    (checked_at, step),
                )

        return self._interaction(run, vital=True)

    def last_validation(self, step: str) -> Deferred[dict[str, Any] | None]:
        """The last result of a step as stored, or None if never run."""

        def run(txn: sqlite3.Cursor) -> dict[str, Any] | None:
            txn.execute("SELECT result FROM validation_results WHERE step_id = ?", (step,))
            row = txn.fetchone()
            return None if row is None else dict(json.loads(row[0]))

        return self._interaction(run)

    def reveal_hint(self, step: str, index: int, now: str) -> Deferred[None]:
        """Record that a hint was shown (once per hint)."""

        def run(txn: sqlite3.Cursor) -> None:
            txn.execute(
                "INSERT OR IGNORE INTO hint_reveals (step_id, hint_index, revealed_at) VALUES (?, ?, ?)",
                (step, index, now),
            )

        return self._interaction(run, vital=True)

    def hint_revealed(self, step: str, index: int) -> Deferred[bool]:
        """Has this hint been revealed?"""

        def run(txn: sqlite3.Cursor) -> bool:
            txn.execute("SELECT 1 FROM hint_reveals WHERE step_id = ? AND hint_index = ?", (step, index))
            return txn.fetchone() is not None

        return self._interaction(run)

    # -- custom state ----------------------------------------------------------------

    def state_all(self) -> Deferred[dict[str, object]]:
        """Every custom state value, decoded."""

        def run(txn: sqlite3.Cursor) -> dict[str, object]:
            txn.execute("SELECT key, value FROM custom_state ORDER BY key")
            return {key: json.loads(value) for key, value in txn.fetchall()}

        return self._interaction(run)

    def state_get(self, key: str) -> Deferred[StateEntry | None]:
        """One custom state value, or None."""

        def run(txn: sqlite3.Cursor) -> StateEntry | None:
            txn.execute("SELECT key, value, updated_at FROM custom_state WHERE key = ?", (key,))
            row = txn.fetchone()
            return None if row is None else StateEntry(row[0], json.loads(row[1]), row[2])

        return self._interaction(run)

    def state_page(self, after: str | None, limit: int) -> Deferred[list[tuple[str, str]]]:
        """Up to ``limit`` custom state values after key ``after``, in key order, as stored (JSON text)."""

        def run(txn: sqlite3.Cursor) -> list[tuple[str, str]]:
            txn.execute(
                "SELECT key, value FROM custom_state WHERE ? IS NULL OR key > ? ORDER BY key LIMIT ?",
                (after, after, limit),
            )
            return [(str(key), str(value)) for key, value in txn.fetchall()]

        return self._interaction(run)

    def state_put(
        self, key: str, encoded: str, now: str, *, max_keys: int | None = None, max_bytes: int | None = None
    ) -> Deferred[StateEntry | StateLimit]:
        """Set a custom state value; ``encoded`` is already-checked JSON text.

        Answers the limit it would break instead (``keys``: more than
        ``max_keys`` values; ``bytes``: keys and values together over
        ``max_bytes`` bytes of UTF-8), checked in the same transaction.
        """

        def run(txn: sqlite3.Cursor) -> StateEntry | StateLimit:
            if max_keys is not None or max_bytes is not None:
                txn.execute(
                    "SELECT COUNT(*), COALESCE(SUM(LENGTH(CAST(key AS BLOB)) + LENGTH(CAST(value AS BLOB))), 0),"
                    " COALESCE(SUM(key = ?), 0) FROM custom_state",
                    (key,),
                )
                count, total, exists = txn.fetchone()
                if exists:
                    txn.execute(
                        "SELECT LENGTH(CAST(key AS BLOB)) + LENGTH(CAST(value AS BLOB)) FROM custom_state"
                        " WHERE key = ?",
                        (key,),
                    )
                    total -= txn.fetchone()[0]
                elif max_keys is not None and count >= max_keys:
                    return "keys"
                if max_bytes is not None and total + len(key.encode()) + len(encoded.encode()) > max_bytes:
                    return "bytes"
            txn.execute(
                "INSERT INTO custom_state (key, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (key, encoded, now),
            )
            return StateEntry(key, json.loads(encoded), now)

        return self._interaction(run)

    def state_delete(self, key: str) -> Deferred[bool]:
        """Delete a custom state value; False if there was none."""

        def run(txn: sqlite3.Cursor) -> bool:
            txn.execute("DELETE FROM custom_state WHERE key = ?", (key,))
            return bool(txn.rowcount)

        return self._interaction(run)


def _ensure_progress(txn: sqlite3.Cursor, step: str) -> None:
    txn.execute("INSERT OR IGNORE INTO progress (step_id) VALUES (?)", (step,))


__all__ = ["ProgressRow", "RuntimeRow", "StateEntry", "Store"]
