"""Test doubles for the core: a synchronous pool, a checker, a terminal, a hub."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from workshop_backend.application.runtime import Collaborators, WorkshopRuntime
from workshop_backend.content.renderer import CachedRenderer
from workshop_backend.http.assets import asset_url
from workshop_backend.http.views import event_data
from workshop_backend.state.store import Store
from workshop_backend.state.workingcopy import prepare
from workshop_backend.support.reactor import IBackendReactor
from workshop_backend.terminal.sessions import TerminalInfo
from workshop_backend.validation.evaluate import RuleResult, ValidationResult
from workshop_backend.validation.spec import ValidationSpec
from workshop_backend.workshop.distribution import Distribution, load_distribution


def as_reactor(fake: object) -> IBackendReactor:
    """A test reactor (``Clock``, ``MemoryReactorClock``...) where the daemon's reactor type is asked for.

    The fakes provide the part of the interface the code under test uses.
    """
    return cast(IBackendReactor, fake)


START = 1_800_000_000.0  # 2027-01-15T08:00:00Z: the tests' "now"


def working_copy(case: Any, dist: Path, step: str | None = None) -> tuple[Distribution, str, Clock, Path]:
    """A distribution loaded, a Clock at :data:`START`, a fresh working copy in a temp dir.

    Answers (distribution, container step, clock, working copy path).
    """
    clock = Clock()
    clock.advance(START)
    distribution = load_distribution(dist, step=step)
    state = Path(case.mktemp())
    state.mkdir()
    container = step or distribution.workshop.steps[0].id
    copy = prepare(distribution, state, container_step=container, now=clock.seconds())
    return distribution, container, clock, copy.path


def open_runtime(
    case: Any,
    distribution: Distribution,
    store: Store,
    *,
    container: str,
    clock: Clock,
    hub: Any = None,
    checker: Any = None,
    terminal: Any = None,
    watch_active: Callable[[], bool] = lambda: True,
    setup_runner: Any = None,
    assets: Any = None,
) -> WorkshopRuntime:
    """``WorkshopRuntime.open`` over ``store``, which must answer at once (a :class:`SyncPool`).

    Assets are served as the daemon serves them (``asset_url``); ``assets``
    is their reader (an ``AssetStore`` over a :class:`SyncPool`).
    """
    runtime: WorkshopRuntime = case.successResultOf(
        Deferred.fromCoroutine(
            WorkshopRuntime.open(
                distribution.workshop,
                store,
                container_step=container,
                using=Collaborators(
                    clock=clock,
                    renderer=CachedRenderer(distribution.workshop.assets, asset_url),
                    hub=hub if hub is not None else RecordingHub(),
                    checker=checker if checker is not None else FakeChecker(clock),
                    terminal=terminal if terminal is not None else FakeTerminal(),
                    watch_active=watch_active,
                    setup_runner=setup_runner,
                    assets=assets,
                ),
            )
        )
    )
    case.addCleanup(runtime.close)
    return runtime


class SyncPool:
    """``adbapi.ConnectionPool`` run in the calling thread, for reactor-free tests.

    Same transaction semantics as adbapi's ``runInteraction``: commit on
    success, roll back and fail the Deferred on an exception.
    """

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path)
        self.conn.execute("PRAGMA foreign_keys = ON")
        self.closed = False

    def runInteraction(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """Run ``fn(cursor, *args)`` in a transaction."""
        cursor = self.conn.cursor()
        try:
            result = fn(cursor, *args)
        except Exception:
            self.conn.rollback()
            return fail()
        self.conn.commit()
        return succeed(result)

    def runWithConnection(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """Run ``fn(connection, *args)``: commit on success, roll back on an exception (as adbapi)."""
        try:
            result = fn(self.conn, *args)
        except Exception:
            self.conn.rollback()
            return fail()
        self.conn.commit()
        return succeed(result)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()
        self.closed = True


class FakeChecker:
    """Answers validations from a table of verdicts; can hold a run open."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.verdicts: dict[str, bool] = {}
        self.runs: list[str] = []
        self.hold: Deferred[None] | None = None

    def run(self, step_id: str, spec: ValidationSpec) -> Deferred[ValidationResult]:
        """One verdict per rule, all the same."""
        self.runs.append(step_id)
        passed = self.verdicts.get(step_id, False)
        results = tuple(
            RuleResult(
                rule.id,
                rule.type,
                passed,
                rule.message,
                "found it" if passed else f"file not found: {rule.path}",
            )
            for rule in spec.rules
        )
        result = ValidationResult(step_id, passed, self.clock.seconds(), 3, results)
        if self.hold is not None:
            return self.hold.addCallback(lambda _: result)
        return succeed(result)


class FakeTerminal:
    """A terminal whose readiness the test sets."""

    def __init__(self, ready: bool = True) -> None:
        self.ready = ready
        self.reason: str | None = None

    def status(self) -> dict[str, Any]:
        """As the supervisor reports it."""
        return {"state": "running" if self.ready else "starting", "restarts": 0}

    def is_ready(self) -> bool:
        """Set by the test."""
        return self.ready


class FakeTerminals:
    """The workspace's terminals as the API sees them; the test sets the list."""

    def __init__(self, limit: int = 6) -> None:
        self.terminal_limit = limit
        self.listed: list[TerminalInfo] = []
        self.ended: list[str] = []

    def terminals(self) -> list[TerminalInfo]:
        """Set by the test."""
        return list(self.listed)

    def end_terminal(self, name: str) -> bool:
        """Ends a listed terminal (it leaves the list); False for any other name."""
        for info in self.listed:
            if info.id == name:
                self.listed.remove(info)
                self.ended.append(name)
                return True
        return False


class RecordingHub:
    """Records published events, in their JSON shape (as the real hub hands them on)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def publish(self, event: str, data: object) -> None:
        """Keep it."""
        self.events.append((event, event_data(data)))

    def names(self) -> list[str]:
        """The event names so far."""
        return [name for name, _ in self.events]


class FakeScriptRunner:
    """Background scripts that end when the test says: ``finish(step, ok)``."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, str, float]] = []
        self.pending: dict[str, Deferred[Any]] = {}

    def run(self, step_id: str, script: str, timeout: float) -> Deferred[Any]:
        """Record the run; its outcome comes from :meth:`finish`."""
        self.runs.append((step_id, script, timeout))
        d: Deferred[Any] = Deferred()
        self.pending[step_id] = d
        return d

    def finish(self, step_id: str, ok: bool = True, *, exit_code: int | None = None, output: str = "") -> None:
        """End the step's running script."""
        from workshop_backend.validation.setup import ScriptOutcome

        code = exit_code if exit_code is not None else (0 if ok else 1)
        self.pending.pop(step_id).callback(ScriptOutcome(exit_code=code, output=output))
