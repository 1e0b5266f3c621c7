"""Setup scripts in the student's run (contract section 3.1): when they run, what the page is told.

:class:`StepSetup` is the runtime's part for a step's ``setup``:

- **Background, once.** When a step becomes current in this container (the
  container starts on it, or an in-place move arrives at it), its
  ``background`` script is started, unless the working copy says it already
  ran: the start is recorded before the script runs, so a backend restarted
  on the same copy never runs it twice.  A run the restart interrupted is
  recorded as failed ("interrupted"); a failed run can be retried from the
  page (:meth:`StepSetup.retry`).
- **Checks wait.** A check of a step whose script is running waits for it
  (:meth:`StepSetup.wait`); the watch loop skips its ticks meanwhile.
- **Foreground, once.** The ``foreground`` script is typed by the page into
  the student's terminal.  The page *claims* it first
  (:meth:`StepSetup.claim_foreground`): the first claim gets the text and
  is recorded in the working copy, every later one (a reload, a second tab,
  a restart) is refused, so it is typed exactly once.
- **Told.** Every change is reported through ``on_change(step_id)``; the
  runtime publishes it as a ``setup`` event and in the status.

The process itself is the :class:`ScriptRunner`'s (the I/O, in
:mod:`workshop_backend.validation.setup`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from workshop_backend.state.store import SetupRow, Store
from workshop_backend.support.timefmt import rfc3339
from workshop_backend.workshop.errors import Refused
from workshop_backend.workshop.model import Step, Workshop

SetupState = Literal["running", "done", "failed"]
INTERRUPTED = "The setup script was interrupted when the workshop backend restarted. Run it again."


class Outcome(Protocol):
    """How a background script ended (:class:`~workshop_backend.validation.setup.ScriptOutcome`)."""

    @property
    def ok(self) -> bool: ...

    @property
    def exit_code(self) -> int | None: ...

    @property
    def timed_out(self) -> bool: ...

    @property
    def output(self) -> str: ...

    def describe(self, timeout: float) -> str: ...


class ScriptRunner(Protocol):
    """Runs a background script (the I/O)."""

    def run(self, step_id: str, script: str, timeout: float) -> Deferred[Any]:
        """Fires with an :class:`Outcome`."""


@dataclass(frozen=True)
class SetupStatus:
    """A step's setup as the status and the ``setup`` event show it."""

    step: str
    state: SetupState | None
    """The background script: ``running``, ``done``, ``failed``; None: the step has none (or it has not run)."""
    exit_code: int | None = None
    timed_out: bool = False
    message: str | None = None
    """What went wrong, in a sentence (failed runs)."""
    output: str = ""
    """The end of the script's output (failed runs; empty otherwise)."""
    started_at: str | None = None
    finished_at: str | None = None
    foreground: Literal["pending", "typed"] | None = None
    """The foreground script: not typed yet, typed; None: the step has none."""


class StepSetup:
    """The setup scripts of a workshop's steps in this working copy."""

    log = Logger()

    def __init__(
        self,
        workshop: Workshop,
        store: Store,
        runner: ScriptRunner | None,
        *,
        clock: IReactorTime,
        on_change: Callable[[str], None] = lambda step: None,
    ) -> None:
        if runner is None and any(step.setup.background for step in workshop.steps):
            raise ValueError("this workshop has background setup scripts: a ScriptRunner is needed")
        self.workshop = workshop
        self.store = store
        self.runner = runner
        self.clock = clock
        self.on_change = on_change
        self._rows: dict[str, SetupRow] = {}
        self._waiters: dict[str, list[Deferred[None]]] = {}

    def now(self) -> str:
        """The clock's time as an RFC 3339 string."""
        return rfc3339(self.clock.seconds())

    async def load(self) -> None:
        """Read what the working copy recorded; a run a restart cut short becomes a failed one."""
        self._rows = await self.store.load_setup()
        for step_id, row in list(self._rows.items()):
            if row.state == "running":
                now = self.now()
                await self.store.setup_finished(
                    step_id, state="failed", exit_code=None, timed_out=False, message=INTERRUPTED, output="", now=now
                )
                self._rows[step_id] = replace(row, state="failed", message=INTERRUPTED, output="", finished_at=now)
                self.log.warn(
                    "setup of {step} was interrupted by a restart; the student can run it again", step=step_id
                )

    # -- reading ------------------------------------------------------------------------

    def status(self, step: Step) -> SetupStatus | None:
        """The step's setup, or None if it has no scripts."""
        spec = step.setup
        if spec.empty:
            return None
        row = self._rows.get(step.id)
        foreground: Literal["pending", "typed"] | None = None
        if spec.foreground is not None:
            foreground = "typed" if row is not None and row.foreground_at else "pending"
        if spec.background is None or row is None or row.state is None:
            return SetupStatus(step=step.id, state=None, foreground=foreground)
        failed = row.state == "failed"
        return SetupStatus(
            step=step.id,
            state=row.state,  # type: ignore[arg-type]  # the schema's CHECK allows these three only
            exit_code=row.exit_code,
            timed_out=row.timed_out,
            message=row.message if failed else None,
            output=row.output if failed else "",
            started_at=row.started_at,
            finished_at=row.finished_at,
            foreground=foreground,
        )

    def running(self, step_id: str) -> bool:
        """Is the step's background script running now?"""
        row = self._rows.get(step_id)
        return row is not None and row.state == "running"

    def wait(self, step_id: str) -> Deferred[None] | None:
        """A Deferred that fires when the step's running script ends; None if none runs."""
        if not self.running(step_id):
            return None
        waiter: Deferred[None] = Deferred()
        self._waiters.setdefault(step_id, []).append(waiter)
        return waiter

    # -- running ------------------------------------------------------------------------

    def arrived(self, step: Step) -> None:
        """The step became current in this container: run its background script unless it ran here before."""
        row = self._rows.get(step.id)
        if step.setup.background is None or (row is not None and row.state is not None):
            return
        self._start(step)

    def retry(self, step: Step) -> SetupStatus:
        """Run a failed background script again (the page's "Try again")."""
        if step.setup.background is None:
            raise Refused("no_setup", f"Step {step.id!r} has no setup script.")
        row = self._rows.get(step.id)
        state = row.state if row is not None else None
        if state == "running":
            raise Refused("setup_running", "The setup script of this step is running already.")
        if state == "done":
            raise Refused("setup_done", "The setup script of this step has already run successfully.")
        self._start(step)
        status = self.status(step)
        assert status is not None
        return status

    def _start(self, step: Step) -> None:
        now = self.now()
        row = self._rows.get(step.id) or SetupRow(step.id, None, None, False, None, "", 0, None, None, None)
        # Running from now on, for the status and for checks, before the record is even written.
        self._rows[step.id] = replace(
            row, state="running", exit_code=None, timed_out=False, message=None, output="", started_at=now,
            finished_at=None, runs=row.runs + 1,
        )  # fmt: skip
        self.on_change(step.id)
        ensureDeferred(self._run(step, now)).addErrback(
            lambda f: self.log.failure("the setup of {step} failed unexpectedly", f, step=step.id)
        )

    async def _run(self, step: Step, started: str) -> None:
        spec = step.setup
        assert spec.background is not None and self.runner is not None
        try:
            await self.store.setup_started(step.id, started)
            outcome: Outcome = await self.runner.run(step.id, spec.background, spec.timeout)
            state: SetupState = "done" if outcome.ok else "failed"
            message = None if outcome.ok else outcome.describe(spec.timeout)
            now = self.now()
            await self.store.setup_finished(
                step.id,
                state=state,
                exit_code=outcome.exit_code,
                timed_out=outcome.timed_out,
                message=message,
                output=outcome.output,
                now=now,
            )
            self._rows[step.id] = replace(
                self._rows[step.id], state=state, exit_code=outcome.exit_code, timed_out=outcome.timed_out,
                message=message, output=outcome.output, finished_at=now,
            )  # fmt: skip
        except Exception:
            # The record could not be written: say so on the page rather than spin for ever.
            self.log.failure("recording the setup of {step} failed", step=step.id)
            self._rows[step.id] = replace(
                self._rows[step.id], state="failed", message="The setup could not be recorded (see the backend's log)."
            )
        finally:
            self.on_change(step.id)
            for waiter in self._waiters.pop(step.id, []):
                waiter.callback(None)

    # -- the foreground script ------------------------------------------------------------

    async def claim_foreground(self, step: Step) -> str:
        """The foreground script to type, the first time it is asked for; refused ever after."""
        script = step.setup.foreground
        if script is None:
            raise Refused("no_foreground", f"Step {step.id!r} has no foreground script.")
        row = self._rows.get(step.id)
        if row is not None and row.foreground_at:
            raise Refused("foreground_typed", "This step's foreground script has been typed already.")
        now = self.now()
        if not await self.store.claim_foreground(step.id, now):
            raise Refused("foreground_typed", "This step's foreground script has been typed already.")
        base = self._rows.get(step.id) or SetupRow(step.id, None, None, False, None, "", 0, None, None, None)
        self._rows[step.id] = replace(base, foreground_at=now)
        self.on_change(step.id)
        return script


__all__ = ["INTERRUPTED", "ScriptRunner", "SetupState", "SetupStatus", "StepSetup"]
