"""Setup scripts in the student's run (:mod:`workshop_backend.application.setup`), in memory, and their routes.

A real working copy and Store (synchronous pool), a fake script runner
whose runs end when the test says, a fake checker, a Clock: when the
background script runs (start on a step, an in-place move into it; never
twice, not after a restart, not for a step of another image), what the
status and events say, checks waiting for it, retries, and the foreground
script given out exactly once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import SynchronousTestCase

from tests import distributions
from tests.distributions import StepDef, file_rule
from tests.fakes import (
    FakeChecker,
    FakeScriptRunner,
    FakeTerminal,
    RecordingHub,
    SyncPool,
    open_runtime,
    working_copy,
)
from tests.test_api import Harness
from workshop_backend.application.runtime import WorkshopRuntime
from workshop_backend.application.setup import INTERRUPTED, StepSetup
from workshop_backend.http.views import status_body
from workshop_backend.state.store import Store
from workshop_backend.workshop.errors import Refused


def steps() -> list[StepDef]:
    """``intro`` (background + foreground), ``plain`` (none), ``checked`` (background, a rule),
    ``typing`` (foreground only), ``far`` (another image, background)."""
    return [
        StepDef("intro", setup={"background": "make intro", "foreground": "echo hi", "timeout": 30}),
        StepDef("plain"),
        StepDef(
            "checked",
            validation={"watch": 5, "rules": [file_rule("f", "made.txt")]},
            setup={"background": "touch made.txt"},
        ),
        StepDef("typing", setup={"foreground": "ls -l"}),
        StepDef("far", image="img-b", setup={"background": "far away"}),
    ]


class Rig:
    """A runtime over a fresh working copy, with a fake script runner."""

    def __init__(self, case: SynchronousTestCase, *, container: str | None = None) -> None:
        root = Path(case.mktemp())
        root.mkdir()
        dist = distributions.write(root / "dist.sqlite", steps(), navigation="free")
        self.distribution, self.container, self.clock, self.path = working_copy(case, dist, container)
        self.case = case
        self.pool = SyncPool(self.path)
        case.addCleanup(self.pool.close)
        self.store = Store(self.path, pool=self.pool)  # type: ignore[arg-type]
        self.runner = FakeScriptRunner()
        self.checker = FakeChecker(self.clock)
        self.hub = RecordingHub()
        self.runtime = self.open()

    def open(self) -> WorkshopRuntime:
        """(Re)open the runtime over the same working copy, as a restarted backend would."""
        return open_runtime(
            self.case,
            self.distribution,
            self.store,
            container=self.container,
            clock=self.clock,
            hub=self.hub,
            checker=self.checker,
            terminal=FakeTerminal(),
            setup_runner=self.runner,
        )

    def jump(self, step: str) -> None:
        """Navigate to a step."""
        self.case.successResultOf(ensureDeferred(self.runtime.navigate("jump", step)))

    def setup(self) -> dict[str, Any] | None:
        """The status's ``setup``, as the API shows it."""
        setup: dict[str, Any] | None = status_body(self.runtime.status())["setup"]
        return setup


class BackgroundTests(SynchronousTestCase):
    """When the background script runs, and what the status says."""

    def test_runs_when_the_container_starts_on_the_step(self) -> None:
        """Start on ``intro``: its script runs, once, with its timeout; the status says running."""
        rig = Rig(self)
        self.assertEqual(rig.runner.runs, [("intro", "make intro", 30.0)])
        setup = rig.setup()
        assert setup is not None
        self.assertEqual((setup["step"], setup["state"], setup["foreground"]), ("intro", "running", "pending"))
        rig.runner.finish("intro")
        self.assertEqual(rig.setup(), {**setup, "state": "done", "exit_code": 0, "finished_at": "2027-01-15T08:00:00Z"})

    def test_events(self) -> None:
        """Each change is a ``setup`` event, and a ``status`` event for the current step."""
        rig = Rig(self)
        rig.hub.events.clear()
        rig.runner.finish("intro", ok=False, exit_code=4, output="no space left")
        self.assertEqual(rig.hub.names(), ["setup", "status"])
        setup = rig.hub.events[0][1]
        self.assertEqual(
            (setup["state"], setup["exit_code"], setup["message"], setup["output"]),
            ("failed", 4, "The setup script failed (exit code 4).", "no space left"),
        )
        self.assertEqual(rig.hub.events[1][1]["setup"], setup)

    def test_in_place_move_runs_the_next_steps_script(self) -> None:
        """An in-place move into a step runs its script; moving back does not run the first again."""
        rig = Rig(self)
        rig.runner.finish("intro")
        rig.jump("checked")
        self.assertEqual([r[0] for r in rig.runner.runs], ["intro", "checked"])
        rig.runner.finish("checked")
        rig.jump("intro")
        rig.jump("checked")
        self.assertEqual([r[0] for r in rig.runner.runs], ["intro", "checked"])

    def test_steps_without_setup(self) -> None:
        """A step without scripts: no run, ``setup`` null."""
        rig = Rig(self)
        rig.runner.finish("intro")
        rig.jump("plain")
        self.assertIsNone(rig.setup())
        self.assertEqual(len(rig.runner.runs), 1)

    def test_other_image_never_runs_here(self) -> None:
        """A move to a step of another image is a container swap: its script runs in the next container."""
        rig = Rig(self)
        rig.runner.finish("intro")
        rig.jump("far")
        self.assertEqual(rig.runtime.status().phase, "transitioning")
        self.assertEqual(len(rig.runner.runs), 1)
        self.assertIsNone(rig.setup())
        with self.assertRaises(Refused) as cm:
            rig.runtime.retry_setup("far")
        self.assertEqual(cm.exception.code, "step_not_in_container")

    def test_container_for_a_later_image(self) -> None:
        """A container started for ``far`` runs ``far``'s script."""
        rig = Rig(self, container="far")
        self.assertEqual(rig.runner.runs, [("far", "far away", 300.0)])

    def test_restart_does_not_run_it_again(self) -> None:
        """A backend restarted on the same working copy: the script that ran is not run again."""
        rig = Rig(self)
        rig.runner.finish("intro")
        rig.runtime.close()
        rig.runtime = rig.open()
        self.assertEqual(len(rig.runner.runs), 1)
        setup = rig.setup()
        assert setup is not None
        self.assertEqual(setup["state"], "done")

    def test_restart_during_a_run(self) -> None:
        """A run cut short by a restart is recorded as failed ("interrupted"), not run again by itself."""
        rig = Rig(self)
        rig.runtime.close()
        rig.runtime = rig.open()
        self.assertEqual(len(rig.runner.runs), 1)
        setup = rig.setup()
        assert setup is not None
        self.assertEqual((setup["state"], setup["message"]), ("failed", INTERRUPTED))

    def test_retry(self) -> None:
        """A failed script can be run again; a running or done one cannot; a step without one neither."""
        rig = Rig(self)
        with self.assertRaises(Refused) as cm:
            rig.runtime.retry_setup("intro")
        self.assertEqual(cm.exception.code, "setup_running")
        rig.runner.finish("intro", ok=False)
        status = rig.runtime.retry_setup("intro")
        self.assertEqual(status.state, "running")
        self.assertEqual(len(rig.runner.runs), 2)
        rig.runner.finish("intro")
        for step, code in (("intro", "setup_done"), ("plain", "no_setup"), ("typing", "no_setup")):
            with self.assertRaises(Refused) as cm:
                rig.runtime.retry_setup(step)
            self.assertEqual(cm.exception.code, code, step)


class CheckWaitTests(SynchronousTestCase):
    """Checks of a step wait for its setup."""

    def setUp(self) -> None:
        self.rig = Rig(self)
        self.rig.runner.finish("intro")
        self.rig.jump("checked")

    def test_check_waits_for_the_script(self) -> None:
        """A check asked for while the script runs starts only when it has finished."""
        d: Deferred[Any] = self.rig.runtime.validate("checked")
        self.assertNoResult(d)
        self.assertEqual(self.rig.checker.runs, [])
        self.rig.checker.verdicts["checked"] = True
        self.rig.runner.finish("checked")
        self.assertTrue(self.successResultOf(d).passed)
        self.assertEqual(self.rig.checker.runs, ["checked"])

    def test_checks_after_a_failed_setup_run(self) -> None:
        """A failed setup does not block checks (the student may fix things by hand)."""
        d = self.rig.runtime.validate("checked")
        self.rig.runner.finish("checked", ok=False)
        self.assertFalse(self.successResultOf(d).passed)

    def test_watch_skips_while_setting_up(self) -> None:
        """The watch loop does not pile up checks behind a running script."""
        self.rig.clock.advance(5)
        self.assertEqual(self.rig.checker.runs, [])
        self.rig.runner.finish("checked")
        self.rig.clock.advance(5)
        self.assertEqual(self.rig.checker.runs, ["checked"])


class ForegroundTests(SynchronousTestCase):
    """The foreground script: given out once, for the step the student is on."""

    def claim(self, rig: Rig, step: str) -> str:
        """Claim and wait."""
        script: str = self.successResultOf(ensureDeferred(rig.runtime.claim_foreground(step)))
        return script

    def refused(self, rig: Rig, step: str) -> str:
        """Claim, expecting a refusal; its code."""
        failure = self.failureResultOf(ensureDeferred(rig.runtime.claim_foreground(step)), Refused)
        return str(failure.value.code)

    def test_once(self) -> None:
        """The first claim gets the script; every later one (a second tab) is refused; the status says typed."""
        rig = Rig(self)
        self.assertEqual(self.claim(rig, "intro"), "echo hi")
        self.assertEqual(self.refused(rig, "intro"), "foreground_typed")
        setup = rig.setup()
        assert setup is not None
        self.assertEqual(setup["foreground"], "typed")

    def test_not_again_after_a_restart(self) -> None:
        """The claim is in the working copy: a restarted backend does not give it out again."""
        rig = Rig(self)
        self.claim(rig, "intro")
        rig.runtime.close()
        rig.runtime = rig.open()
        self.assertEqual(self.refused(rig, "intro"), "foreground_typed")

    def test_only_the_current_step(self) -> None:
        """A step the student is not on, or one without a foreground script, is refused."""
        rig = Rig(self)
        self.assertEqual(self.refused(rig, "typing"), "not_current")
        rig.jump("typing")
        self.assertEqual(self.claim(rig, "typing"), "ls -l")
        rig.jump("plain")
        self.assertEqual(self.refused(rig, "plain"), "no_foreground")

    def test_without_background(self) -> None:
        """A step with only a foreground script: state null, foreground pending."""
        rig = Rig(self)
        rig.runner.finish("intro")
        rig.jump("typing")
        self.assertEqual(rig.setup(), {
            "step": "typing", "state": None, "exit_code": None, "timed_out": False, "message": None, "output": "",
            "started_at": None, "finished_at": None, "foreground": "pending",
        })  # fmt: skip


class RouteTests(SynchronousTestCase):
    """``POST /api/v1/steps/{id}/setup`` and ``.../setup/foreground`` over the real API tree."""

    def setUp(self) -> None:
        root = Path(self.mktemp())
        root.mkdir()
        dist = distributions.write(root / "dist.sqlite", steps(), navigation="free")
        self.runner = FakeScriptRunner()
        self.h = Harness(self, dist, setup_runner=self.runner)

    def test_status_shows_setup(self) -> None:
        """The status document carries the current step's setup."""
        code, status = self.h.get("/api/v1/status")
        self.assertEqual((code, status["setup"]["state"], status["setup"]["foreground"]), (200, "running", "pending"))

    def test_foreground_once(self) -> None:
        """200 with the script, then 409 ``foreground_typed``; unknown step 404."""
        self.assertEqual(
            self.h.post("/api/v1/steps/intro/setup/foreground"), (200, {"step": "intro", "script": "echo hi"})
        )
        code, body = self.h.post("/api/v1/steps/intro/setup/foreground")
        self.assertEqual((code, body["error"]), (409, "foreground_typed"))
        code, body = self.h.post("/api/v1/steps/nope/setup/foreground")
        self.assertEqual((code, body["error"]), (404, "unknown_step"))

    def test_retry(self) -> None:
        """409 while running; after a failure 200 with the running state; 409 for a step without a script."""
        code, body = self.h.post("/api/v1/steps/intro/setup")
        self.assertEqual((code, body["error"]), (409, "setup_running"))
        self.runner.finish("intro", ok=False)
        code, body = self.h.post("/api/v1/steps/intro/setup")
        self.assertEqual((code, body["step"], body["state"]), (200, "intro", "running"))
        code, body = self.h.post("/api/v1/steps/plain/setup")
        self.assertEqual((code, body["error"]), (409, "no_setup"))

    def test_bodies_must_be_json_if_any(self) -> None:
        """A body that is not JSON is refused like on every other POST."""
        code, body, _ = self.h.request(
            "POST", "/api/v1/steps/intro/setup/foreground", data=b"x", headers={"Content-Type": "text/plain"}
        )
        self.assertEqual((code, body["error"]), (415, "unsupported_media_type"))

    def test_no_runner_needed_without_scripts(self) -> None:
        """A workshop without background scripts needs no runner; one with them refuses to run without."""
        root = Path(self.mktemp())
        root.mkdir()
        plain = distributions.write(root / "plain.sqlite", [StepDef("a")])
        h = Harness(self, plain)
        self.assertIsNone(h.get("/api/v1/status")[1]["setup"])
        with self.assertRaises(ValueError):
            StepSetup(self.h.distribution.workshop, self.h.store, None, clock=self.h.clock)
