"""The application layer (``workshop_backend/runtime.py``) in memory.

A real working copy made by :func:`workshop_backend.state.workingcopy.prepare`, a
:class:`~workshop_backend.state.store.Store` over a synchronous pool (or one whose
transactions the test releases by hand), a fake checker, a fake terminal, a
recording hub and a :class:`~twisted.internet.task.Clock`: the watch loop,
shared validation runs, the navigation lock, failing checkers and resume,
all deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import SynchronousTestCase

from tests import distributions
from tests.distributions import StepDef, file_rule
from tests.fakes import FakeChecker, FakeTerminal, RecordingHub, SyncPool, open_runtime, working_copy
from workshop_backend.http.views import progress_body, status_body
from workshop_backend.state.store import Store
from workshop_backend.workshop.errors import Refused, StepNotCompleted
from workshop_backend.workshop.navigation import Action


def steps() -> list[StepDef]:
    """Seven steps over two images, with watched, gated and plain steps.

    ``intro`` (a, no rules), ``watched`` (a, watch 5 s), ``gated`` (a, gate),
    ``plain`` (a, no rules), ``watched-2`` (a, watch 2 s), ``far`` (b, watch
    3 s), ``last`` (b, watch 2 s).
    """
    return [
        StepDef("intro"),
        StepDef("watched", validation={"watch": 5, "rules": [file_rule("w", "watched.txt")]}),
        StepDef("gated", validation={"gate": True, "rules": [file_rule("g", "gated.txt")]}),
        StepDef("plain"),
        StepDef("watched-2", validation={"watch": 2, "rules": [file_rule("w2", "watched2.txt")]}),
        StepDef("far", image="img-b", validation={"watch": 3, "rules": [file_rule("f", "far.txt")]}),
        StepDef("last", image="img-b", validation={"watch": 2, "rules": [file_rule("l", "last.txt")]}),
    ]


class HeldPool(SyncPool):
    """A :class:`SyncPool` whose transactions can be held and then run in order.

    While ``holding``, each transaction (``runWithConnection``, what the
    store uses) is queued (as adbapi's single connection queues them) and its
    Deferred fires only when the test calls :meth:`release`: the test decides
    when a write "comes back from the database thread".
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.holding = False
        self.queue: list[tuple[Callable[..., Any], tuple[Any, ...], Deferred[Any]]] = []

    def runWithConnection(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """Run now, or queue while holding."""
        if not self.holding:
            return super().runWithConnection(fn, *args)
        d: Deferred[Any] = Deferred()
        self.queue.append((fn, args, d))
        return d

    def release_one(self) -> None:
        """Run the oldest queued transaction (and go on holding the others)."""
        fn, args, d = self.queue.pop(0)
        SyncPool.runWithConnection(self, fn, *args).chainDeferred(d)

    def release(self) -> None:
        """Stop holding and run the queued transactions, first in first out."""
        self.holding = False
        while self.queue:
            fn, args, d = self.queue.pop(0)
            super().runWithConnection(fn, *args).chainDeferred(d)


class Rig:
    """A runtime over a fresh working copy, with its fakes."""

    def __init__(
        self,
        case: SynchronousTestCase,
        *,
        container: str = "intro",
        navigation: str = "free",
        step_defs: list[StepDef] | None = None,
        open_runtime: bool = True,
    ) -> None:
        root = Path(case.mktemp())
        root.mkdir()
        dist = distributions.write(root / "dist.sqlite", step_defs or steps(), navigation=navigation)
        distribution, container, self.clock, self.path = working_copy(case, dist, container)
        self.workshop = distribution.workshop
        self.pool = HeldPool(self.path)
        case.addCleanup(self.pool.close)
        self.store = Store(self.path, pool=self.pool)  # type: ignore[arg-type]
        self.hub = RecordingHub()
        self.checker = FakeChecker(self.clock)
        self.active = True
        self.distribution = distribution
        self.container = container
        self.case = case
        if open_runtime:
            self.open()

    def open(self) -> None:
        """Open the runtime over the store."""
        self.runtime = open_runtime(
            self.case,
            self.distribution,
            self.store,
            container=self.container,
            clock=self.clock,
            hub=self.hub,
            checker=self.checker,
            watch_active=lambda: self.active,
        )

    def status(self) -> dict[str, Any]:
        """The status, as the API shows it."""
        return status_body(self.runtime.status())

    def nav(self, action: Action, step: str | None = None) -> dict[str, Any]:
        """A navigation that must succeed at once; answers the status."""
        return status_body(self.case.successResultOf(ensureDeferred(self.runtime.navigate(action, step))))

    def navigating(self, action: Action, step: str | None = None) -> Deferred[dict[str, Any]]:
        """A navigation as a Deferred (it may wait); fires with the status as the API shows it."""
        return ensureDeferred(self.runtime.navigate(action, step)).addCallback(status_body)

    def progress(self, step_id: str) -> dict[str, Any]:
        """One step's row of ``/api/v1/progress``."""
        rows = progress_body(self.case.successResultOf(ensureDeferred(self.runtime.progress())))["steps"]
        for row in rows:
            if row["step"] == step_id:
                return dict(row)
        raise KeyError(step_id)

    def validations(self) -> list[Any]:
        """The ``validation`` events published so far."""
        return [data for name, data in self.hub.events if name == "validation"]


class WatchTests(SynchronousTestCase):
    """The watch loop: every ``watch`` seconds while the step is current."""

    def test_ticks_every_watch_seconds(self) -> None:
        """A watched current step is checked every ``watch`` seconds, not before, with a ``validation`` event each."""
        rig = Rig(self)
        rig.nav("next")  # -> watched (5 s)
        rig.clock.advance(4.9)
        self.assertEqual(rig.checker.runs, [])
        rig.clock.advance(0.1)
        self.assertEqual(rig.checker.runs, ["watched"])
        rig.clock.advance(5)
        self.assertEqual(rig.checker.runs, ["watched", "watched"])
        self.assertEqual([v["step"] for v in rig.validations()], ["watched", "watched"])
        self.assertEqual(rig.progress("watched")["attempts"], 0, "watch runs are not attempts")

    def test_idle_while_nobody_watches(self) -> None:
        """While ``watch_active()`` is false the ticks do nothing; once true, the next tick checks."""
        rig = Rig(self)
        rig.active = False
        rig.nav("next")
        for _ in range(6):
            rig.clock.advance(5)
        self.assertEqual(rig.checker.runs, [])
        self.assertEqual(rig.validations(), [])
        rig.active = True
        rig.clock.advance(5)
        self.assertEqual(rig.checker.runs, ["watched"])

    def test_stops_once_passed(self) -> None:
        """A passing watch run completes the step (``validation`` then ``status``) and the loop stops."""
        rig = Rig(self)
        rig.nav("next")
        rig.clock.advance(5)
        self.assertEqual(rig.checker.runs, ["watched"])
        rig.checker.verdicts["watched"] = True
        del rig.hub.events[:]
        rig.clock.advance(5)
        self.assertEqual(rig.checker.runs, ["watched", "watched"])
        self.assertEqual(rig.hub.names(), ["validation", "status"])
        status = rig.hub.events[1][1]
        assert isinstance(status, dict)
        self.assertIn("watched", status["completed_steps"])
        self.assertEqual(status["current_step"], "watched", "completing by itself does not move on")
        self.assertIsNotNone(rig.progress("watched")["completed_at"])
        for _ in range(10):
            rig.clock.advance(5)
        self.assertEqual(rig.checker.runs, ["watched", "watched"])

    def test_not_for_completed_step(self) -> None:
        """Coming back to a watched step that already passed starts no loop."""
        rig = Rig(self)
        rig.checker.verdicts["watched"] = True
        rig.nav("next")
        rig.clock.advance(5)
        rig.nav("next")
        rig.nav("previous")
        self.assertEqual(rig.status()["current_step"], "watched")
        rig.clock.advance(60)
        self.assertEqual(rig.checker.runs, ["watched"])

    def test_restarts_for_next_watched_step(self) -> None:
        """Leaving a watched step stops its loop; the next current step with ``watch`` gets its own, at its interval."""
        rig = Rig(self)
        rig.nav("next")  # watched, 5 s
        rig.clock.advance(5)
        self.assertEqual(rig.checker.runs, ["watched"])
        rig.nav("jump", "plain")
        rig.clock.advance(30)
        self.assertEqual(rig.checker.runs, ["watched"], "no step is watched on a step without watch")
        rig.nav("next")  # watched-2, 2 s
        rig.clock.advance(1.9)
        self.assertEqual(rig.checker.runs, ["watched"])
        rig.clock.advance(0.1)
        self.assertEqual(rig.checker.runs, ["watched", "watched-2"])
        rig.clock.advance(2)
        self.assertEqual(rig.checker.runs, ["watched", "watched-2", "watched-2"])

    def test_never_for_step_of_another_image(self) -> None:
        """A current step of another image (``transitioning``) is not watched, even with ``watch``."""
        rig = Rig(self)
        status = rig.nav("jump", "far")
        self.assertEqual((status["phase"], status["target_step"]), ("transitioning", "far"))
        for _ in range(20):
            rig.clock.advance(3)
        self.assertEqual(rig.checker.runs, [])

    def test_watched_in_its_own_image(self) -> None:
        """The same step is watched by the container of its image."""
        rig = Rig(self, container="far")
        rig.clock.advance(3)
        self.assertEqual(rig.checker.runs, ["far"])

    def test_never_after_completion(self) -> None:
        """``complete`` on the last step (watched, ungated) sets ``completed`` and stops the loop."""
        rig = Rig(self, container="last")
        rig.clock.advance(2)
        self.assertEqual(rig.checker.runs, ["last"])
        status = rig.nav("complete")
        self.assertEqual(status["phase"], "completed")
        for _ in range(20):
            rig.clock.advance(2)
        self.assertEqual(rig.checker.runs, ["last"])

    def test_failing_check_logged_and_loop_goes_on(self) -> None:
        """A watch run whose checker fails is logged, and the next tick runs again."""
        rig = Rig(self)
        rig.nav("next")
        rig.checker.hold = Deferred()
        rig.clock.advance(5)
        rig.checker.hold.errback(RuntimeError("the checker broke"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        rig.checker.hold = None
        rig.clock.advance(5)
        self.assertEqual(rig.checker.runs, ["watched", "watched"])


class SharedRunTests(SynchronousTestCase):
    """One evaluation per step at a time; callers share it."""

    def test_concurrent_requests_share_one_run(self) -> None:
        """Two requests while a run is under way: one checker run, one result for both, one attempt."""
        rig = Rig(self, container="gated")
        rig.checker.hold = Deferred()
        rig.checker.verdicts["gated"] = True
        first = rig.runtime.validate("gated")
        second = rig.runtime.validate("gated")
        self.assertNoResult(first)
        self.assertNoResult(second)
        self.assertEqual(rig.checker.runs, ["gated"])
        rig.checker.hold.callback(None)
        one, two = self.successResultOf(first), self.successResultOf(second)
        self.assertIs(one, two)
        self.assertTrue(one.passed)
        self.assertEqual(rig.progress("gated")["attempts"], 1)
        self.assertEqual([v["step"] for v in rig.validations()], ["gated"], "one validation event")

    def test_next_run_after_shared_one_is_new(self) -> None:
        """Once the shared run is over, the next request starts a new run (and a new attempt)."""
        rig = Rig(self, container="gated")
        self.successResultOf(rig.runtime.validate("gated"))
        self.successResultOf(rig.runtime.validate("gated"))
        self.assertEqual(rig.checker.runs, ["gated", "gated"])
        self.assertEqual(rig.progress("gated")["attempts"], 2)

    def test_previous_step_of_same_image_checkable(self) -> None:
        """A step before the current one, in this container's image, can be checked (and completes)."""
        rig = Rig(self, container="plain")
        rig.checker.verdicts["gated"] = True
        result = self.successResultOf(rig.runtime.validate("gated"))
        self.assertTrue(result.passed)
        self.assertIn("gated", rig.status()["completed_steps"])

    def test_step_of_other_image_refused(self) -> None:
        """A step of another image: ``Refused`` ``step_not_in_container``, nothing run."""
        rig = Rig(self)
        with self.assertRaises(Refused) as caught:
            rig.runtime.validate("far")
        self.assertEqual(caught.exception.code, "step_not_in_container")
        self.assertEqual(rig.checker.runs, [])

    def test_failing_checker_fails_every_sharer(self) -> None:
        """A checker that errbacks: every caller sharing the run gets the error; later runs work."""
        rig = Rig(self, container="gated")
        hold: Deferred[None] = Deferred()
        rig.checker.hold = hold
        first = rig.runtime.validate("gated")
        second = rig.runtime.validate("gated")
        hold.errback(RuntimeError("checker exploded"))
        self.failureResultOf(first, RuntimeError)
        self.failureResultOf(second, RuntimeError)
        rig.checker.hold = None
        rig.checker.verdicts["gated"] = True
        third = rig.runtime.validate("gated")
        self.assertTrue(self.successResultOf(third).passed)
        self.assertEqual(rig.checker.runs, ["gated", "gated"])

    def test_failing_gate_does_not_wedge_navigation(self) -> None:
        """A gate whose checker fails fails that ``next``; the lock is free and the next ``next`` works."""
        rig = Rig(self, container="gated")
        hold: Deferred[None] = Deferred()
        rig.checker.hold = hold
        failed = rig.navigating("next")
        hold.errback(RuntimeError("checker exploded"))
        self.failureResultOf(failed, RuntimeError)
        rig.checker.hold = None
        rig.checker.verdicts["gated"] = True
        self.assertEqual(rig.nav("next")["current_step"], "plain")


class NavigationLockTests(SynchronousTestCase):
    """Moves are serialised."""

    def test_second_next_waits_for_gated_first(self) -> None:
        """A ``next`` sent while a gated ``next`` is evaluating waits, then moves on from the new position.

        The working copy's writes come back one at a time, as from adbapi's
        thread, so each move answers the position it made.
        """
        rig = Rig(self, container="gated")
        rig.checker.hold = Deferred()
        rig.checker.verdicts["gated"] = True
        first = rig.navigating("next")
        second = rig.navigating("next")
        self.assertNoResult(first)
        self.assertNoResult(second)
        rig.pool.holding = True
        rig.checker.hold.callback(None)
        rig.pool.release_one()  # the gate's result
        rig.pool.release_one()  # the first move
        self.assertEqual(self.successResultOf(first)["current_step"], "plain")
        self.assertNoResult(second)
        rig.pool.release()  # the second move
        status = self.successResultOf(second)
        self.assertEqual(status["current_step"], "watched-2")
        self.assertEqual(status["completed_steps"], ["gated", "plain"])
        self.assertEqual(rig.checker.runs, ["gated"], "the second next did not evaluate the gate again")
        moves = [data["current_step"] for name, data in rig.hub.events if name == "status"]
        self.assertEqual(moves[-2:], ["plain", "watched-2"])

    def test_move_answers_its_own_position(self) -> None:
        """The answer (and the ``status`` event) of a move is the position that move made.

        With a store that answers at once, the queued second ``next`` runs
        inside the first one's lock release, before the first computes its
        answer: the first must still answer ``plain``, and the events must
        say ``plain`` before ``watched-2``.
        """
        rig = Rig(self, container="gated")
        rig.checker.hold = Deferred()
        rig.checker.verdicts["gated"] = True
        first = rig.navigating("next")
        second = rig.navigating("next")
        rig.checker.hold.callback(None)
        self.assertEqual(self.successResultOf(second)["current_step"], "watched-2")
        moves = [data["current_step"] for name, data in rig.hub.events if name == "status"]
        self.assertEqual(moves[-2:], ["plain", "watched-2"])
        self.assertEqual(self.successResultOf(first)["current_step"], "plain")

    def test_second_next_after_failed_gate_runs_it_again(self) -> None:
        """When the first gated ``next`` is refused, the waiting one evaluates the gate itself."""
        rig = Rig(self, container="gated")
        rig.checker.hold = Deferred()
        first = rig.navigating("next")
        second = rig.navigating("next")
        hold, rig.checker.hold = rig.checker.hold, None
        rig.checker.verdicts["gated"] = True
        hold.callback(None)
        error = self.failureResultOf(first, StepNotCompleted).value
        assert isinstance(error, StepNotCompleted)
        self.assertFalse(error.result.passed)
        self.assertEqual(self.successResultOf(second)["current_step"], "plain")

    def test_validation_passing_while_move_is_saved_is_kept(self) -> None:
        """A check that passes while a move is being written is not lost from the status.

        The student presses Check (or a watch run fires) on the current step
        and, at the same time, Next.  Both writes are queued on the working
        copy's one connection; the check's comes back first and marks the
        step completed, then the move's.  The step is completed in the
        working copy, so the status must say so too (it would after a
        restart).
        """
        rig = Rig(self)
        rig.nav("next")  # watched: rules, no gate
        rig.checker.verdicts["watched"] = True
        rig.pool.holding = True
        check = rig.runtime.validate("watched")
        move = rig.navigating("next")
        rig.pool.release()
        self.assertTrue(self.successResultOf(check).passed)
        self.assertEqual(self.successResultOf(move)["current_step"], "gated")
        self.assertIsNotNone(rig.progress("watched")["completed_at"], "the working copy has it completed")
        self.assertIn("watched", rig.status()["completed_steps"])


class OpenTests(SynchronousTestCase):
    """``open()``: the position read back from the working copy, for this container."""

    def test_restores_transitioning_and_persists_it(self) -> None:
        """A stored current step of another image with phase ``ready`` becomes ``transitioning`` and is saved so."""
        rig = Rig(self, open_runtime=False)
        self.successResultOf(
            rig.store.save_move(current_step="far", target_step=None, phase="ready", completed=(), now="x")
        )
        rig.open()
        status = rig.status()
        self.assertEqual(
            (status["current_step"], status["container_step"], status["target_step"], status["phase"]),
            ("far", "intro", "far", "transitioning"),
        )
        row = self.successResultOf(rig.store.load_runtime())
        self.assertEqual((row.current_step, row.target_step, row.phase), ("far", "far", "transitioning"))
        self.assertEqual(rig.hub.names(), ["status"])
        self.assertEqual(rig.hub.events[0][1], status)

    def test_keeps_transitioning(self) -> None:
        """A copy already ``transitioning`` to a step of another image stays so after a restart."""
        first = Rig(self)
        first.nav("jump", "far")
        again = open_runtime(
            self, first.distribution, first.store, container="intro", clock=first.clock, checker=first.checker
        )
        status = status_body(again.status())
        self.assertEqual(
            (status["current_step"], status["target_step"], status["phase"]), ("far", "far", "transitioning")
        )

    def test_container_of_target_image_is_ready(self) -> None:
        """The replacing container (``--step far``) over a copy that was transitioning to ``far`` is ``ready``."""
        rig = Rig(self, container="far", open_runtime=False)
        self.successResultOf(
            rig.store.save_move(current_step="far", target_step="far", phase="transitioning", completed=(), now="x")
        )
        rig.open()
        status = rig.status()
        self.assertEqual((status["current_step"], status["target_step"], status["phase"]), ("far", None, "ready"))
        row = self.successResultOf(rig.store.load_runtime())
        self.assertEqual((row.target_step, row.phase), (None, "ready"))

    def test_completed_stays_completed(self) -> None:
        """A completed workshop stays ``completed`` after a restart."""
        rig = Rig(self, container="last")
        rig.nav("complete")
        again = open_runtime(self, rig.distribution, rig.store, container="last", clock=rig.clock, checker=rig.checker)
        self.assertEqual(again.status().phase, "completed")
        rig.clock.advance(10)
        self.assertEqual(rig.checker.runs, [], "no watch after completion, on resume either")


class StatusTests(SynchronousTestCase):
    """What ``status()`` reports."""

    def test_transitioning_not_hidden_by_terminal(self) -> None:
        """``transitioning`` is reported even while the terminal is not ready.

        The operator/CLI replaces the container when it sees
        ``transitioning``; a terminal that is restarting (or missing) must not
        hide that as ``starting`` (contract 4: ``starting`` is before ready).
        """
        rig = Rig(self)
        terminal = FakeTerminal(ready=False)
        rig.runtime.terminal = terminal
        status = rig.nav("jump", "far")
        self.assertEqual(status["target_step"], "far")
        self.assertEqual(status["phase"], "transitioning")
