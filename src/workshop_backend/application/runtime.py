"""The workshop as it runs: position, progress, checks and events.

This is the application layer between the HTTP routes and everything else.
A :class:`WorkshopRuntime` exists only once the working copy is open
(:meth:`WorkshopRuntime.open` reads the position back from it), so nothing
here is ever half-initialised.  It holds the current
:class:`~workshop_backend.workshop.navigation.Position` in memory (the working
copy is the durable record of it), applies the pure navigation rules, runs
validations (one per step at a time, shared by every caller), keeps the
watch timer of the current step, and publishes what changed.

It answers with values (:class:`Status`, :class:`StepView`,
:class:`StepProgress`...) and refuses with the domain's errors
(:mod:`workshop_backend.workshop.errors`); it knows nothing of HTTP or JSON
shapes, which are :mod:`workshop_backend.http.views`' business.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol, TypeVar

from twisted.internet.defer import Deferred, DeferredLock, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from workshop_backend.state.store import StateEntry, Store
from workshop_backend.support.timefmt import rfc3339
from workshop_backend.validation.spec import ValidationSpec
from workshop_backend.workshop.errors import DiskFull, Invalid, NotFound, Refused, StepNotCompleted, TooLarge
from workshop_backend.workshop.model import StatusPhase, Step, Workshop
from workshop_backend.workshop.navigation import (
    Action,
    Position,
    StepStatus,
    arrive,
    plan,
    resume,
    step_statuses,
)

Trigger = Literal["request", "gate", "watch"]

STATE_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
STATE_KEY_MAX = 128
STATE_VALUE_MAX = 64 * 1024
"""Bytes of a custom state value, encoded as compact UTF-8 JSON."""
STATE_KEYS_MAX = 1000
"""Custom state values, at most."""
STATE_TOTAL_MAX = 8 * 1024 * 1024
"""Bytes of all custom state together (keys and values, UTF-8), at most."""
STATE_PAGE = 64
"""Values read from the working copy at a time when all of them are asked for (64 x 64 KiB at most)."""
DISK_RETRY = 5.0
"""Seconds between tries to make the space reserve again while the disk is full."""

T = TypeVar("T")


class Publisher(Protocol):
    """Where events go (the SSE hub)."""

    def publish(self, event: str, data: object) -> None: ...


class Result(Protocol):
    """What a validation run answers (see :mod:`workshop_backend.validation`)."""

    @property
    def passed(self) -> bool: ...

    def to_json(self) -> dict[str, Any]: ...


class Checker(Protocol):
    """Runs a step's rules."""

    def run(self, step_id: str, spec: ValidationSpec) -> Deferred[Any]: ...


class Terminal(Protocol):
    """The terminal's health, as the status and readiness report it."""

    def status(self) -> dict[str, Any]: ...

    def is_ready(self) -> bool: ...


class Renderer(Protocol):
    """Step and hint markdown to safe HTML (cached by the implementation)."""

    def step(self, step: Step) -> str: ...

    def hint(self, step: Step, index: int) -> str: ...


class RuntimeMetrics(Protocol):
    """What the runtime reports to the operator's metrics."""

    def navigation(self, action: str, ok: bool = True) -> None: ...

    def validation(self, step: str, passed: bool, seconds: float, trigger: str = "request") -> None: ...


class _NoMetrics:
    def navigation(self, action: str, ok: bool = True) -> None:
        """Nothing."""

    def validation(self, step: str, passed: bool, seconds: float, trigger: str = "request") -> None:
        """Nothing."""


# -- the values the runtime answers with -------------------------------------------


@dataclass(frozen=True)
class Status:
    """Where the student is and how the terminal is (``GET /api/v1/status``)."""

    workshop: str
    current_step: str
    container_step: str
    target_step: str | None
    phase: StatusPhase
    step_index: int
    step_count: int
    completed_steps: tuple[str, ...]
    terminal: dict[str, Any]
    started_at: str
    problems: tuple[str, ...] = ()
    """Short codes of what is wrong with the workspace now (``disk_full``), as ``/readyz`` names them."""


@dataclass(frozen=True)
class StepView:
    """One step as the student's page shows it."""

    step: Step
    html: str
    previous: str | None
    next: str | None


@dataclass(frozen=True)
class StepProgress:
    """One step's progress (``GET /api/v1/progress``)."""

    step: str
    status: Literal["completed", "current", "not_started"]
    viewed_at: str | None
    completed_at: str | None
    attempts: int
    hints_revealed: int


class WorkshopRuntime:
    """One student's run through one workshop, inside one container."""

    log = Logger()

    def __init__(
        self,
        workshop: Workshop,
        store: Store,
        position: Position,
        *,
        started_at: str,
        container_step: Step,
        clock: IReactorTime,
        renderer: Renderer,
        hub: Publisher,
        checker: Checker,
        terminal: Terminal,
        watch_active: Callable[[], bool] = lambda: True,
        metrics: RuntimeMetrics | None = None,
    ) -> None:
        """Use :meth:`open`, which reads ``position`` and ``started_at`` from the working copy."""
        self.workshop = workshop
        self.store = store
        self.position = position
        self.started_at = started_at
        self.container_step = container_step
        self.clock = clock
        self.renderer = renderer
        self.hub = hub
        self.checker = checker
        self.terminal = terminal
        self.watch_active = watch_active
        self.metrics: RuntimeMetrics = metrics if metrics is not None else _NoMetrics()
        self._lock = DeferredLock()
        self._running: dict[str, list[Deferred[Result]]] = {}
        self._watch: LoopingCall | None = None
        self._watching: str | None = None
        self.disk_full = False
        """A write failed for lack of space (or took the reserve); cleared once the reserve is back."""
        self._disk_retry: LoopingCall | None = None

    @classmethod
    async def open(
        cls,
        workshop: Workshop,
        store: Store,
        *,
        container_step: str,
        clock: IReactorTime,
        renderer: Renderer,
        hub: Publisher,
        checker: Checker,
        terminal: Terminal,
        watch_active: Callable[[], bool] = lambda: True,
        metrics: RuntimeMetrics | None = None,
    ) -> WorkshopRuntime:
        """Take the working copy into use: restore the position from it, start watching, say so."""
        container = workshop.step(container_step) or workshop.steps[0]
        row = await store.load_runtime()
        progress = await store.load_progress()
        completed = frozenset(step for step, p in progress.items() if p.completed_at)
        visited = frozenset(step for step, p in progress.items() if p.viewed_at)
        stored = Position(row.current_step, row.target_step, row.phase, completed, visited)
        position = resume(workshop, container.image_tag, stored)
        if (position.target, position.phase) != (stored.target, stored.phase):
            await store.save_move(
                current_step=position.current,
                target_step=position.target,
                phase=position.phase,
                completed=(),
                now=rfc3339(clock.seconds()),
            )
        runtime = cls(
            workshop,
            store,
            position,
            started_at=row.started_at,
            container_step=container,
            clock=clock,
            renderer=renderer,
            hub=hub,
            checker=checker,
            terminal=terminal,
            watch_active=watch_active,
            metrics=metrics,
        )
        try:
            reserved = await store.restore_reserve()
        except OSError as e:  # not fatal: saving works without a reserve, just with less to fall back on
            cls.log.warn("cannot make the space reserve: {error}", error=str(e))
            reserved = True
        if not reserved:
            runtime._disk_is_full()
        runtime._rewatch()
        runtime.hub.publish("status", runtime.status())
        return runtime

    def close(self) -> None:
        """Stop timers (the store is closed by its owner)."""
        self._stop_watch()
        if self._disk_retry is not None and self._disk_retry.running:
            self._disk_retry.stop()
        self._disk_retry = None

    # -- a full disk --------------------------------------------------------------------

    async def _saved(self, write: Callable[[], Awaitable[T]]) -> T:
        """Run a write; a full disk (a failure, or the reserve taken to save it) is noted once."""
        try:
            result = await write()
        except DiskFull:
            self._disk_is_full()
            raise
        reserve = self.store.reserve
        if reserve is not None and reserve.released and not self.disk_full:
            self._disk_is_full()
        return result

    def _disk_is_full(self) -> None:
        """Say so once (log, status), and try every few seconds to get the reserve back."""
        if self.disk_full:
            return
        self.disk_full = True
        self.log.error(
            "the workspace's disk is full: saves fail with 507 until the student deletes files"
            " (progress and navigation still use the space reserve in {state_dir})",
            state_dir=str(self.store.path.parent),
            disk_full=True,
        )
        self.hub.publish("status", self.status())
        self._disk_retry = LoopingCall(lambda: ensureDeferred(self._recover()))
        self._disk_retry.clock = self.clock
        self._disk_retry.start(DISK_RETRY, now=False).addErrback(
            lambda f: self.log.failure("the disk space check stopped", f)
        )

    async def _recover(self) -> bool:
        """Make the reserve again if there is room: then the disk is usable again."""
        if not self.disk_full:
            return True
        try:
            restored = await self.store.restore_reserve()
        except OSError as e:
            self.log.warn("cannot make the space reserve: {error}", error=str(e))
            return False
        if restored and self.disk_full:
            self.disk_full = False
            if self._disk_retry is not None and self._disk_retry.running:
                self._disk_retry.stop()
            self._disk_retry = None
            self.log.info("disk space is back: saving works again", disk_full=False)
            self.hub.publish("status", self.status())
        return restored

    def now(self) -> str:
        """The clock's time as an RFC 3339 string."""
        return rfc3339(self.clock.seconds())

    def _step(self, step_id: str) -> Step:
        step = self.workshop.step(step_id)
        if step is None:
            raise NotFound("unknown_step", f"There is no step {step_id!r}.")
        return step

    # -- reading ----------------------------------------------------------------------

    def status(self) -> Status:
        """Where the student is; ``starting`` until the terminal answers.

        A transition or a completion shows whatever the terminal does, since
        the operator acts on it.
        """
        position = self.position
        phase: StatusPhase = position.phase
        if phase == "ready" and not self.terminal.is_ready():
            phase = "starting"
        return Status(
            workshop=self.workshop.id,
            current_step=position.current,
            container_step=self.container_step.id,
            target_step=position.target,
            phase=phase,
            step_index=self.workshop.index(position.current),
            step_count=len(self.workshop.steps),
            completed_steps=tuple(s.id for s in self.workshop.steps if s.id in position.completed),
            terminal=self.terminal.status(),
            started_at=self.started_at,
            problems=("disk_full",) if self.disk_full else (),
        )

    def step_statuses(self) -> dict[str, StepStatus]:
        """Every step's status in the step list (``GET /api/v1/workshop``)."""
        return step_statuses(self.workshop, self.position)

    def step(self, step_id: str) -> StepView:
        """A step with its rendered HTML and its neighbours."""
        step = self._step(step_id)
        steps = self.workshop.steps
        return StepView(
            step=step,
            html=self.renderer.step(step),
            previous=steps[step.position - 1].id if step.position > 0 else None,
            next=steps[step.position + 1].id if step.position + 1 < len(steps) else None,
        )

    def _hint_step(self, step_id: str, index: int) -> Step:
        step = self._step(step_id)
        if not 0 <= index < len(step.hints):
            raise NotFound("unknown_hint", f"Step {step_id!r} has {len(step.hints)} hint(s), numbered from 0.")
        return step

    async def reveal_hint(self, step_id: str, index: int) -> str:
        """Reveal a hint: recorded in progress (once), its HTML answered; never for a locked step."""
        step = self._hint_step(step_id, index)
        if step_statuses(self.workshop, self.position)[step.id] == "locked":
            raise Refused("step_locked", f"Step {step_id!r} is locked: this workshop goes in order.")
        await self._saved(lambda: self.store.reveal_hint(step.id, index, self.now()))
        return self.renderer.hint(step, index)

    async def hint(self, step_id: str, index: int) -> str:
        """A hint revealed before (a reload shows it again): reading it changes nothing."""
        step = self._hint_step(step_id, index)
        if not await self.store.hint_revealed(step.id, index):
            raise Refused("hint_not_revealed", f"Hint {index} of step {step_id!r} has not been revealed yet.")
        return self.renderer.hint(step, index)

    async def progress(self) -> list[StepProgress]:
        """Every step's progress, in order."""
        rows = await self.store.load_progress()
        position = self.position
        out = []
        for step in self.workshop.steps:
            row = rows.get(step.id)
            status: Literal["completed", "current", "not_started"] = (
                "completed"
                if step.id in position.completed
                else ("current" if step.id == position.current else "not_started")
            )
            out.append(
                StepProgress(
                    step=step.id,
                    status=status,
                    viewed_at=row.viewed_at if row else None,
                    completed_at=row.completed_at if row else None,
                    attempts=row.attempts if row else 0,
                    hints_revealed=row.hints_revealed if row else 0,
                )
            )
        return out

    async def last_validation(self, step_id: str) -> dict[str, Any]:
        """The last result of a step as stored."""
        step = self._step(step_id)
        result = await self.store.last_validation(step.id)
        if result is None:
            raise NotFound("not_validated", f"Step {step_id!r} has not been checked yet.")
        return result

    # -- navigation -------------------------------------------------------------------

    async def navigate(self, action: Action, step_id: str | None = None) -> Status:
        """Move: next, previous, jump or complete.  Moves are serialised by a lock."""
        await self._lock.acquire()
        try:
            position = self.position
            try:
                move = plan(self.workshop, position, action, step_id)
            except (NotFound, Refused) as e:
                self._refused(action, e.code)
                raise
            if move.gate is not None:
                result = await self.validate(move.gate.id, "gate")
                if not result.passed:
                    self._refused(action, "step_not_completed")
                    raise StepNotCompleted(result)
                position = self.position
            new = arrive(self.workshop, self.container_step.image_tag, position, move)
            await self._saved(
                lambda: self.store.save_move(
                    current_step=new.current,
                    target_step=new.target,
                    phase=new.phase,
                    completed=sorted(new.completed - position.completed),
                    now=self.now(),
                    workshop_completed=move.finish,
                )
            )
            # A check may have passed while the move was being saved: keep it.
            latest = self.position
            new = replace(new, completed=new.completed | latest.completed, visited=new.visited | latest.visited)
            self.position = new
            self.log.info(
                "navigation {action}: {from_step} -> {to_step} ({phase})",
                action=action,
                from_step=position.current,
                to_step=new.current,
                phase=new.phase,
            )
            self.metrics.navigation(action)
            self._rewatch()
            # The answer and the event describe this move, whatever comes next.
            status = self.status()
            self.hub.publish("status", status)
        finally:
            self._lock.release()
        return status

    def _refused(self, action: str, code: str) -> None:
        self.log.info("navigation {action} refused: {code}", action=action, code=code)
        self.metrics.navigation(action, ok=False)

    # -- validation -------------------------------------------------------------------

    def validate(self, step_id: str, trigger: Trigger = "request") -> Deferred[Result]:
        """Run a step's rules; a call while a run is under way shares its result."""
        step = self._step(step_id)
        if step.image_tag != self.container_step.image_tag:
            raise Refused(
                "step_not_in_container",
                f"Step {step_id!r} runs in another environment ({step.image_tag}); it cannot be checked here.",
            )
        if not step.validation.rules:
            raise Refused("no_rules", f"Step {step_id!r} has no checks.")
        if step_statuses(self.workshop, self.position)[step.id] == "locked":
            # Passing a locked step would complete it and open a jump past the gates before it.
            raise Refused("step_locked", f"Step {step_id!r} is locked: this workshop goes in order.")
        waiter: Deferred[Result] = Deferred()
        waiters = self._running.get(step.id)
        if waiters is not None:
            waiters.append(waiter)
            return waiter
        self._running[step.id] = [waiter]
        run = ensureDeferred(self._validate(step, trigger))
        run.addBoth(self._release, step.id)
        return waiter

    def _release(self, outcome: Result | Failure, step_id: str) -> None:
        for waiter in self._running.pop(step_id, []):
            if isinstance(outcome, Failure):
                waiter.errback(outcome)
            else:
                waiter.callback(outcome)

    async def _validate(self, step: Step, trigger: Trigger) -> Result:
        result: Result = await self.checker.run(step.id, step.validation)
        body = result.to_json()
        await self._saved(
            lambda: self.store.record_validation(
                step.id, body, passed=result.passed, checked_at=str(body["checked_at"]), attempt=trigger != "watch"
            )
        )
        self.log.info(
            "validation of {step} ({trigger}): {verdict}",
            step=step.id,
            trigger=trigger,
            verdict="passed" if result.passed else "failed",
            passed=result.passed,
        )
        self.metrics.validation(step.id, result.passed, float(body["duration_ms"]) / 1000, trigger)
        self.hub.publish("validation", result)
        position = self.position
        if result.passed and step.id not in position.completed:
            self.position = replace(position, completed=position.completed | {step.id})
            self._rewatch()
            self.hub.publish("status", self.status())
        return result

    # -- custom state -----------------------------------------------------------------

    @staticmethod
    def _key(key: str) -> str:
        if not 0 < len(key) <= STATE_KEY_MAX or not set(key) <= STATE_KEY_CHARS:
            raise Invalid("bad_key", "State keys are 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' and '-'.")
        return key

    async def state_all(self) -> dict[str, object]:
        """Every custom state value."""
        return await self.store.state_all()

    async def state_get(self, key: str) -> StateEntry:
        """One custom state value."""
        entry = await self.store.state_get(self._key(key))
        if entry is None:
            raise NotFound("unknown_key", f"There is no state value {key!r}.")
        return entry

    async def state_page(self, after: str | None, limit: int = STATE_PAGE) -> list[tuple[str, str]]:
        """Up to ``limit`` values after key ``after`` in key order, each as its stored JSON text.

        ``GET /api/v1/state`` reads all of them this way, a page at a time, so
        the answer never has to be held whole in memory.
        """
        return await self.store.state_page(after, limit)

    async def state_put(self, key: str, value: object) -> StateEntry:
        """Set a custom state value: any JSON value, at most 64 KiB encoded, within the totals.

        Custom state is the author's, not the student's progress: on a full
        disk it is refused (507) rather than given the space reserve.
        """
        key = self._key(key)
        encoded = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        if len(encoded.encode("utf-8")) > STATE_VALUE_MAX:
            raise TooLarge("too_large", "A state value may be at most 64 KiB of JSON.")
        if self.disk_full and not await self._recover():
            raise DiskFull()
        saved = await self._saved(
            lambda: self.store.state_put(key, encoded, self.now(), max_keys=STATE_KEYS_MAX, max_bytes=STATE_TOTAL_MAX)
        )
        if saved == "keys":
            raise Refused(
                "state_key_limit",
                f"Custom state holds at most {STATE_KEYS_MAX:,} values: delete some before adding new ones.",
            )
        if saved == "bytes":
            raise TooLarge(
                "state_size_limit",
                f"Custom state may hold at most {STATE_TOTAL_MAX // (1024 * 1024)} MiB in all: "
                "delete or shrink some values first.",
            )
        assert isinstance(saved, StateEntry)
        return saved

    async def state_delete(self, key: str) -> None:
        """Delete a custom state value."""
        if not await self.store.state_delete(self._key(key)):
            raise NotFound("unknown_key", f"There is no state value {key!r}.")

    # -- watch ------------------------------------------------------------------------

    def _rewatch(self) -> None:
        """Watch the current step if it asks for it and is not completed yet."""
        position = self.position
        step = self._step(position.current)
        watch = step.validation.watch
        wanted = (
            watch is not None
            and step.image_tag == self.container_step.image_tag
            and position.phase != "completed"
            and step.id not in position.completed
        )
        if wanted and self._watching == step.id:
            return
        self._stop_watch()
        if wanted and watch is not None:
            self._watching = step.id
            self._watch = LoopingCall(self._tick, step.id)
            self._watch.clock = self.clock
            self._watch.start(watch, now=False).addErrback(lambda f: self.log.failure("the watch loop stopped", f))

    def _stop_watch(self) -> None:
        if self._watch is not None and self._watch.running:
            self._watch.stop()
        self._watch = None
        self._watching = None

    def _tick(self, step_id: str) -> Deferred[None] | None:
        """One watch run; failures are logged and the loop carries on."""
        if not self.watch_active():
            return None
        d = self.validate(step_id, "watch")
        d.addErrback(self._watch_failed, step_id)
        return d.addCallback(lambda _: None)

    def _watch_failed(self, failure: Failure, step_id: str) -> None:
        """A full disk is said once (and shown in the status), not with a traceback every tick."""
        if failure.check(DiskFull):
            return
        self.log.failure("watch check of {step} failed", failure, step=step_id)


__all__ = [
    "Status",
    "StepProgress",
    "StepView",
    "Trigger",
    "WorkshopRuntime",
]
