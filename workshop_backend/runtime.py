"""The workshop as it runs: position, progress, checks and events.

This is the application layer between the HTTP routes and everything else:
it holds the current :class:`~workshop_backend.navigation.Position` in memory
(the working copy is the durable record of it), applies the pure navigation
rules, runs validations (one per step at a time, shared by every caller),
keeps the watch timer of the current step, and publishes what changed.  It
never touches HTTP objects; refusals are :class:`ApiError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Literal, Protocol

from twisted.internet.defer import Deferred, DeferredLock, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from workshop_backend.errors import ApiError, encode, not_ready
from workshop_backend.metrics import MetricsSink, NullMetrics
from workshop_backend.model import Step, Workshop
from workshop_backend.navigation import NavigationError, Position, arrive, parse_action, plan, resume, step_statuses
from workshop_backend.store import Store
from workshop_backend.timefmt import rfc3339
from workshop_backend.validation.spec import ValidationSpec

Trigger = Literal["request", "gate", "watch"]


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


def _number(value: float | None) -> float | int | None:
    """Whole seconds as an integer (``5``, not ``5.0``)."""
    return int(value) if value is not None and value.is_integer() else value


class WorkshopRuntime:
    """One student's run through one workshop, inside one container."""

    log = Logger()

    def __init__(
        self,
        workshop: Workshop,
        *,
        container_step: str,
        clock: IReactorTime,
        render: Callable[[str], str],
        hub: Publisher,
        render_hint: Callable[[str, int], str] | None = None,
        checker: Checker,
        terminal: Terminal,
        watch_active: Callable[[], bool] = lambda: True,
        metrics: MetricsSink | None = None,
    ) -> None:
        self.workshop = workshop
        self.container_step = workshop.step(container_step) or workshop.steps[0]
        self.clock = clock
        self.hub = hub
        self.checker = checker
        self.terminal = terminal
        self.watch_active = watch_active
        self.metrics: MetricsSink = metrics if metrics is not None else NullMetrics()
        self._render = render
        self._render_hint = render_hint or (lambda text, index: render(text))
        self._html: dict[tuple[str, int], str] = {}
        self.store: Store | None = None
        self.position: Position | None = None
        self.started_at = rfc3339(clock.seconds())
        self._lock = DeferredLock()
        self._running: dict[str, list[Deferred[Any]]] = {}
        self._watch: LoopingCall | None = None
        self._status_cache: tuple[Position, dict[str, Any], bool, bytes] | None = None
        self._watching: str | None = None

    # -- life cycle -------------------------------------------------------------------

    async def open(self, store: Store) -> None:
        """Take the working copy into use and restore the position from it."""
        row = await store.load_runtime()
        progress = await store.load_progress()
        completed = frozenset(step for step, p in progress.items() if p.completed_at)
        visited = frozenset(step for step, p in progress.items() if p.viewed_at)
        stored = Position(row.current_step, row.target_step, row.phase, completed, visited)  # type: ignore[arg-type]
        position = resume(self.workshop, self.container_step.image_tag, stored)
        if (position.target, position.phase) != (stored.target, stored.phase):
            await store.save_move(
                current_step=position.current,
                target_step=position.target,
                phase=position.phase,
                completed=(),
                now=self.now(),
            )
        self.started_at = row.started_at
        self.position = position
        self.store = store
        self._rewatch()
        self.hub.publish("status", self.status())

    def close(self) -> None:
        """Stop timers (the store is closed by its owner)."""
        self._stop_watch()

    @property
    def ready(self) -> bool:
        """True once the working copy is open."""
        return self.store is not None and self.position is not None

    def now(self) -> str:
        """The clock's time as an RFC 3339 string."""
        return rfc3339(self.clock.seconds())

    def opened(self) -> tuple[Store, Position]:
        """The store and position, or a 503 while the working copy is not open yet."""
        if self.store is None or self.position is None:
            raise not_ready()
        return self.store, self.position

    def _step(self, step_id: str) -> Step:
        step = self.workshop.step(step_id)
        if step is None:
            raise ApiError(404, "unknown_step", f"There is no step {step_id!r}.")
        return step

    # -- reading ----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """``GET /api/v1/status``."""
        _, position = self.opened()
        return {
            "workshop": self.workshop.id,
            "current_step": position.current,
            "container_step": self.container_step.id,
            "target_step": position.target,
            # 'starting' until the terminal answers; a transition or completion
            # shows whatever the terminal does, since the operator acts on it.
            "phase": "starting" if position.phase == "ready" and not self.terminal.is_ready() else position.phase,
            "step_index": self.workshop.index(position.current),
            "step_count": len(self.workshop.steps),
            "completed_steps": [s.id for s in self.workshop.steps if s.id in position.completed],
            "terminal": self.terminal.status(),
            "started_at": self.started_at,
        }

    def status_json(self) -> bytes:
        """The status, encoded; encoded again only when something in it changed.

        It is what the operator polls; the position is immutable and replaced
        on every change, so identity tells whether it is still the same.
        """
        _, position = self.opened()
        terminal = self.terminal.status()
        ready = self.terminal.is_ready()
        cached = self._status_cache
        if cached is not None and cached[0] is position and cached[1] == terminal and cached[2] == ready:
            return cached[3]
        body = encode(self.status())
        self._status_cache = (position, terminal, ready, body)
        return body

    def workshop_json(self) -> dict[str, Any]:
        """``GET /api/v1/workshop``."""
        _, position = self.opened()
        statuses = step_statuses(self.workshop, position)
        w = self.workshop
        return {
            "id": w.id,
            "title": w.title,
            "version": w.version,
            "description": w.description,
            "navigation": w.navigation,
            "steps": [
                {"id": s.id, "position": s.position, "title": s.title, "status": statuses[s.id]} for s in w.steps
            ],
        }

    def html(self, markdown: str, hint: int = -1) -> str:
        """Rendered, sanitized HTML of a step (``hint`` -1) or a hint, rendered once."""
        key = (markdown, hint)
        cached = self._html.get(key)
        if cached is None:
            cached = self._render(markdown) if hint < 0 else self._render_hint(markdown, hint)
            self._html[key] = cached
        return cached

    def warm(self) -> None:
        """Render every step and hint now (the first render loads Pygments' lexers).

        Thread-safe: the renderer builds its own Markdown per call, and a
        race only renders a text twice.
        """
        for step in self.workshop.steps:
            self.html(step.markdown)
            for index, hint in enumerate(step.hints):
                self.html(hint, index)

    def step_json(self, step_id: str) -> dict[str, Any]:
        """``GET /api/v1/steps/{id}``."""
        self.opened()
        step = self._step(step_id)
        steps = self.workshop.steps
        spec = step.validation
        return {
            "id": step.id,
            "position": step.position,
            "title": step.title,
            "markdown": step.markdown,
            "html": self.html(step.markdown),
            "hints": len(step.hints),
            "validation": {"gate": spec.gate, "rules": len(spec.rules), "watch": _number(spec.watch)},
            "previous": steps[step.position - 1].id if step.position > 0 else None,
            "next": steps[step.position + 1].id if step.position + 1 < len(steps) else None,
        }

    async def hint(self, step_id: str, index: int) -> dict[str, Any]:
        """``GET /api/v1/steps/{id}/hints/{n}``: the hint, its reveal recorded."""
        store, _ = self.opened()
        step = self._step(step_id)
        if not 0 <= index < len(step.hints):
            raise ApiError(404, "unknown_hint", f"Step {step_id!r} has {len(step.hints)} hint(s), numbered from 0.")
        await store.reveal_hint(step.id, index, self.now())
        return {"index": index, "html": self.html(step.hints[index], index)}

    async def progress(self) -> dict[str, Any]:
        """``GET /api/v1/progress``."""
        store, position = self.opened()
        rows = await store.load_progress()
        out = []
        for step in self.workshop.steps:
            row = rows.get(step.id)
            out.append(
                {
                    "step": step.id,
                    "status": "completed"
                    if step.id in position.completed
                    else ("current" if step.id == position.current else "not_started"),
                    "viewed_at": row.viewed_at if row else None,
                    "completed_at": row.completed_at if row else None,
                    "attempts": row.attempts if row else 0,
                    "hints_revealed": row.hints_revealed if row else 0,
                }
            )
        return {"steps": out}

    async def last_validation(self, step_id: str) -> dict[str, Any]:
        """``GET /api/v1/steps/{id}/validation``."""
        store, _ = self.opened()
        step = self._step(step_id)
        result = await store.last_validation(step.id)
        if result is None:
            raise ApiError(404, "not_validated", f"Step {step_id!r} has not been checked yet.")
        return result

    # -- navigation -------------------------------------------------------------------

    async def navigate(self, body: object) -> dict[str, Any]:
        """``POST /api/v1/navigation``: moves are serialised by a lock."""
        store, _ = self.opened()
        try:
            action, step_id = parse_action(body)
        except NavigationError as e:
            raise ApiError(e.status, e.code, e.message) from None
        await self._lock.acquire()
        try:
            position = self.position
            assert position is not None
            try:
                move = plan(self.workshop, position, action, step_id)
            except NavigationError as e:
                self._refused(action, e.code)
                raise ApiError(e.status, e.code, e.message) from None
            if move.gate is not None:
                result = await self.validate(move.gate.id, "gate")
                if not result.passed:
                    self._refused(action, "step_not_completed")
                    raise ApiError(
                        409,
                        "step_not_completed",
                        "This step is not complete yet: the checks below still fail.",
                        validation=result.to_json(),
                    )
                position = self.position
                assert position is not None
            new = arrive(self.workshop, self.container_step.image_tag, position, move)
            await store.save_move(
                current_step=new.current,
                target_step=new.target,
                phase=new.phase,
                completed=sorted(new.completed - position.completed),
                now=self.now(),
                workshop_completed=move.finish,
            )
            # A check may have passed while the move was being saved: keep it.
            latest = self.position
            assert latest is not None
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
        self.opened()
        step = self._step(step_id)
        if step.image_tag != self.container_step.image_tag:
            raise ApiError(
                409,
                "step_not_in_container",
                f"Step {step_id!r} runs in another environment ({step.image_tag}); it cannot be checked here.",
            )
        if not step.validation.rules:
            raise ApiError(409, "no_rules", f"Step {step_id!r} has no checks.")
        position = self.position
        if position is not None and step_statuses(self.workshop, position)[step.id] == "locked":
            # Passing a locked step would complete it and open a jump past the gates before it.
            raise ApiError(409, "step_locked", f"Step {step_id!r} is locked: this workshop goes in order.")
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
        store, _ = self.opened()
        result: Result = await self.checker.run(step.id, step.validation)
        body = result.to_json()
        await store.record_validation(
            step.id, body, passed=result.passed, checked_at=str(body["checked_at"]), attempt=trigger != "watch"
        )
        self.log.info(
            "validation of {step} ({trigger}): {verdict}",
            step=step.id,
            trigger=trigger,
            verdict="passed" if result.passed else "failed",
            passed=result.passed,
        )
        self.metrics.validation(step.id, result.passed, float(body["duration_ms"]) / 1000, trigger)
        self.hub.publish("validation", body)
        position = self.position
        if result.passed and position is not None and step.id not in position.completed:
            self.position = replace(position, completed=position.completed | {step.id})
            self._rewatch()
            self.hub.publish("status", self.status())
        return result

    # -- watch ------------------------------------------------------------------------

    def _rewatch(self) -> None:
        """Watch the current step if it asks for it and is not completed yet."""
        position = self.position
        step = self.workshop.step(position.current) if position else None
        wanted = (
            step is not None
            and position is not None
            and step.validation.watch is not None
            and step.image_tag == self.container_step.image_tag
            and position.phase != "completed"
            and step.id not in position.completed
        )
        if wanted and step is not None and self._watching == step.id:
            return
        self._stop_watch()
        if wanted and step is not None and step.validation.watch is not None:
            self._watching = step.id
            self._watch = LoopingCall(self._tick, step.id)
            self._watch.clock = self.clock
            self._watch.start(step.validation.watch, now=False).addErrback(
                lambda f: self.log.failure("the watch loop stopped", f)
            )

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
        d.addErrback(lambda f: self.log.failure("watch check of {step} failed", f, step=step_id))
        return d.addCallback(lambda _: None)
