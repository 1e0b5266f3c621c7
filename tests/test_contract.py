"""The contract (``shared/design/contract.md``) end to end, against the real daemon.

Each test starts ``workshop-backend`` as a child process (real ttyd, real
checks, a real working copy) over a distribution of two images with every
rule type, and talks to it over loopback with a bearer token.  The ``port``
and ``http`` rules point at a small web server this test process runs; the
``file`` and ``command`` rules look into the daemon's working directory,
which the test writes into to satisfy them.  Live events are read from
``/api/v1/events`` as they arrive; every wait is bounded and waits on an
event, never on a sleep.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from tests import daemon as d
from tests import distributions
from tests.distributions import StepDef, file_rule

TOKEN = "contract-test-token-0123456789abcdef"
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
WAIT = 20.0
"""Seconds any one wait may take before the test fails (a bound, never a delay)."""


class EventStream(Protocol):
    """A Server-Sent Events client: parses the stream and lets a test wait for events in order."""

    def __init__(self) -> None:
        self.buffer = b""
        self.events: list[tuple[str, Any]] = []
        self.cursor = 0
        self.lost: Deferred[None] = Deferred()
        self._more: Deferred[None] | None = None

    def dataReceived(self, data: bytes) -> None:
        """Frame events at blank lines; keep ``(event, decoded data)``."""
        self.buffer += data.replace(b"\r\n", b"\n")
        while b"\n\n" in self.buffer:
            block, self.buffer = self.buffer.split(b"\n\n", 1)
            name, payload = None, []
            for line in block.decode("utf-8").split("\n"):
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    payload.append(line[5:].lstrip(" "))
            if name is not None:
                self.events.append((name, json.loads("\n".join(payload))))
        if self._more is not None:
            more, self._more = self._more, None
            more.callback(None)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        """The stream ended."""
        if not self.lost.called:
            self.lost.callback(None)
        if self._more is not None:
            more, self._more = self._more, None
            more.callback(None)

    def close(self) -> Deferred[None]:
        """Hang up (and wait until the connection is gone)."""
        if not self.lost.called and self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]
        return self.lost

    async def next(self, name: str, match: Callable[[Any], bool] = lambda _: True, timeout: float = WAIT) -> Any:
        """The next event called ``name`` (after the last one returned) whose data ``match``es."""
        deadline = reactor.seconds() + timeout
        while True:
            for index in range(self.cursor, len(self.events)):
                event, data = self.events[index]
                if event == name and match(data):
                    self.cursor = index + 1
                    return data
            remaining = deadline - reactor.seconds()
            if remaining <= 0 or self.lost.called:
                raise AssertionError(
                    f"no {name!r} event as expected within {timeout} s; got {self.events[self.cursor :]!r}"
                )
            more: Deferred[None] = Deferred()
            self._more = more
            timer = reactor.callLater(remaining, _fire, more)
            await more
            if timer.active():
                timer.cancel()


def _fire(waiting: Deferred[None]) -> None:
    if not waiting.called:
        waiting.callback(None)


class ContractTests(TestCase):
    """The clauses that matter most end to end."""

    timeout = 180

    def setUp(self) -> None:
        """A web server for the port and http rules, a two-image distribution, a state dir, a work dir."""
        root = Resource()
        root.putChild(b"", Data(b"hello from the service\n", "text/plain"))
        site = Site(root)
        site.noisy = False
        self.service = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[arg-type]
        self.addCleanup(self.service.stopListening)
        port = self.service.getHost().port  # type: ignore[attr-defined]
        self.root = Path(self.mktemp()).resolve()
        self.root.mkdir()
        self.dist = distributions.write(
            self.root / "dist.sqlite",
            [
                StepDef("intro", hints=["Look around.", "Really."]),
                StepDef("gated", validation={"gate": True, "rules": [file_rule("g", "gate.txt")]}),
                StepDef("watched", validation={"watch": 1, "rules": [file_rule("w", "watch.txt", contains="ok")]}),
                StepDef(
                    "services",
                    image="img-b",
                    validation={
                        "gate": True,
                        "rules": [
                            {"id": "cmd", "type": "command", "run": "test -f cmd.txt", "message": "Create cmd.txt"},
                            {"id": "port", "type": "port", "port": port, "timeout": 5},
                            {"id": "web", "type": "http", "url": f"http://127.0.0.1:{port}/", "body": "hello"},
                        ],
                    },
                ),
                StepDef("last", image="img-b", validation={"gate": True, "rules": [file_rule("l", "last.txt")]}),
            ],
        )
        self.state = self.root / "state"
        self.work = self.root / "work"
        self.work.mkdir()
        self.env = {**os.environ, "WORKSHOP_TOKEN": TOKEN}
        self.env.pop("WORKSHOP_TOKEN_FILE", None)
        self.env.pop("WORKSHOP_STEP", None)

    # -- helpers ---------------------------------------------------------------------

    async def start(self, *extra: str, state: Path | None = None, ready: bool = True) -> str:
        """Start the daemon (``extra`` flags) and wait until it is ``ready`` (or only listening); answers its URL."""
        daemon = d.start(
            [
                "--distribution",
                str(self.dist),
                "--state-dir",
                str(state or self.state),
                "--listen",
                "tcp:0:interface=127.0.0.1",
                *extra,
            ],
            env=self.env,
            cwd=str(self.work),
        )
        self.addCleanup(d.stop, daemon)
        self.daemon = daemon
        url = await daemon.listening
        if ready:
            await d.wait_ready(url, timeout=WAIT)
        return url

    async def api(self, url: str, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
        """One authenticated API call: (status, decoded JSON or None)."""
        sent = {"Authorization": f"Bearer {TOKEN}", **{k.replace("_", "-"): v for k, v in headers.items()}}
        kwargs: dict[str, Any] = {"headers": sent}
        if body is not None:
            kwargs["json"] = body
        response = await d.http().request(method, url + path.lstrip("/"), **kwargs)
        text = await response.text()
        self.last_response = response
        return response.code, json.loads(text) if text else None

    async def nav(self, url: str, action: str, step: str | None = None) -> tuple[int, Any]:
        """POST /api/v1/navigation."""
        body = {"action": action} if step is None else {"action": action, "step": step}
        return await self.api(url, "POST", "/api/v1/navigation", body)

    async def events(self, url: str) -> EventStream:
        """Connect to ``/api/v1/events``; answers once the first (snapshot) event is in."""
        agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
        response = await agent.request(
            b"GET", (url + "api/v1/events").encode(), Headers({"Authorization": [f"Bearer {TOKEN}"]})
        )
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["text/event-stream"])
        stream = EventStream()
        response.deliverBody(stream)
        self.addCleanup(stream.close)
        snapshot = await stream.next("status")
        self.assertIn("phase", snapshot)
        return stream

    def assert_error(self, answer: tuple[int, Any], status: int, code: str) -> dict[str, Any]:
        """A JSON error with this status and code, and a message sentence."""
        got, body = answer
        self.assertEqual((got, body and body.get("error")), (status, code), body)
        self.assertIsInstance(body["message"], str)
        self.assertTrue(body["message"])
        ctype = self.last_response.headers.getRawHeaders("content-type", [""])[0]
        self.assertTrue(ctype.startswith("application/json"), ctype)
        return dict(body)

    # -- events --------------------------------------------------------------------------

    async def test_events_status_on_navigation_validation_on_check(self) -> None:
        """The stream delivers ``status`` on a move, ``validation`` (then ``status``) on a check; bodies as answered."""
        url = await self.start()
        stream = await self.events(url)
        code, status = await self.nav(url, "next")
        self.assertEqual((code, status["current_step"]), (200, "gated"))
        self.assertEqual(await stream.next("status"), status)

        code, failed = await self.api(url, "POST", "/api/v1/steps/gated/validation")
        self.assertEqual((code, failed["passed"]), (200, False))
        self.assertEqual(await stream.next("validation"), failed)

        (self.work / "gate.txt").write_text("done")
        code, passed = await self.api(url, "POST", "/api/v1/steps/gated/validation")
        self.assertEqual((code, passed["passed"]), (200, True))
        self.assertEqual(set(passed), {"step", "passed", "checked_at", "duration_ms", "results"})
        self.assertEqual(set(passed["results"][0]), {"id", "type", "passed", "message", "detail"})
        self.assertRegex(passed["checked_at"], RFC3339_UTC)
        self.assertEqual(await stream.next("validation"), passed)
        completed = await stream.next("status")
        self.assertEqual((completed["current_step"], completed["completed_steps"]), ("gated", ["intro", "gated"]))
        self.assertEqual(await self.api(url, "GET", "/api/v1/steps/gated/validation"), (200, passed))

    async def test_watch_completes_step_by_itself(self) -> None:
        """A ``watch`` step is checked while an event client is connected and completes once the test satisfies it."""
        (self.work / "gate.txt").write_text("done")
        url = await self.start()
        await self.nav(url, "next")
        code, status = await self.nav(url, "next")
        self.assertEqual((code, status["current_step"]), (200, "watched"))
        stream = await self.events(url)
        failing = await stream.next("validation", lambda v: v["step"] == "watched")
        self.assertFalse(failing["passed"])
        self.assertIn("not found", failing["results"][0]["detail"])

        (self.work / "watch.txt").write_text("all ok\n")
        passing = await stream.next("validation", lambda v: v["step"] == "watched" and v["passed"])
        self.assertTrue(passing["results"][0]["passed"])
        done = await stream.next("status", lambda s: "watched" in s["completed_steps"])
        self.assertEqual((done["current_step"], done["phase"]), ("watched", "ready"))

        code, workshop = await self.api(url, "GET", "/api/v1/workshop")
        statuses = {s["id"]: s["status"] for s in workshop["steps"]}
        self.assertEqual(statuses["watched"], "current", "current even when also completed")
        code, progress = await self.api(url, "GET", "/api/v1/progress")
        row = next(r for r in progress["steps"] if r["step"] == "watched")
        self.assertEqual((row["status"], row["attempts"]), ("completed", 0))
        self.assertRegex(row["completed_at"], RFC3339_UTC)
        self.assertEqual((await self.api(url, "GET", "/api/v1/steps/watched/validation"))[1]["passed"], True)

    # -- images --------------------------------------------------------------------------

    async def test_transition_by_image_and_resume(self) -> None:
        """A move to another image is ``transitioning`` (kept across a crash); ``--step`` of it resumes ``ready``."""
        (self.work / "gate.txt").write_text("done")
        url = await self.start()
        stream = await self.events(url)
        self.assertEqual((await self.nav(url, "next"))[0], 200)
        self.assertEqual((await self.nav(url, "next"))[0], 200)
        code, status = await self.nav(url, "next")
        self.assertEqual(code, 200)
        self.assertEqual(
            (status["current_step"], status["container_step"], status["target_step"], status["phase"]),
            ("services", "intro", "services", "transitioning"),
        )
        self.assertEqual(await stream.next("status", lambda s: s["phase"] == "transitioning"), status)
        self.assert_error(
            await self.api(url, "POST", "/api/v1/steps/services/validation"), 409, "step_not_in_container"
        )
        self.assertEqual((await self.api(url, "PUT", "/api/v1/state/note", {"kept": True}))[0], 200)

        # A crash of this backend: the replacement in the same container keeps transitioning.
        self.daemon.kill9()
        await self.daemon.ended
        url = await self.start()
        status = (await self.api(url, "GET", "/api/v1/status"))[1]
        self.assertEqual(
            (status["current_step"], status["container_step"], status["target_step"], status["phase"]),
            ("services", "intro", "services", "transitioning"),
        )
        self.assertEqual(await d.stop(self.daemon), 0)

        # The operator replaces the container: the image of `services`.
        url = await self.start("--step", "services")
        code, status = await self.api(url, "GET", "/api/v1/status")
        self.assertEqual(
            (status["current_step"], status["container_step"], status["target_step"], status["phase"]),
            ("services", "services", None, "ready"),
        )
        self.assertEqual(status["completed_steps"], ["intro", "gated"])
        self.assertEqual((await self.api(url, "GET", "/api/v1/state/note"))[1]["value"], {"kept": True})
        self.assert_error(await self.api(url, "POST", "/api/v1/steps/gated/validation"), 409, "step_not_in_container")

        code, failed = await self.nav(url, "next")
        body = self.assert_error((code, failed), 409, "step_not_completed")
        by_id = {r["id"]: r for r in body["validation"]["results"]}
        self.assertEqual({k: v["passed"] for k, v in by_id.items()}, {"cmd": False, "port": True, "web": True}, by_id)
        self.assertEqual(by_id["cmd"]["message"], "Create cmd.txt")
        (self.work / "cmd.txt").write_text("")
        code, status = await self.nav(url, "next")
        self.assertEqual(
            (code, status["current_step"], status["target_step"], status["phase"]), (200, "last", None, "ready")
        )
        self.assertEqual(status["completed_steps"], ["intro", "gated", "services"])

    async def test_transitioning_shown_without_terminal(self) -> None:
        """``transitioning`` reaches the operator even when the terminal is not up.

        The operator/CLI replaces the container when the status (or a
        ``status`` event) says ``transitioning``.  With ttyd unavailable (it
        crashed and is restarting, or cannot start) the student can still
        move on in the page; the phase must not read ``starting`` then
        (contract 4: ``starting`` is *before ready*), or the container is never
        replaced.
        """
        (self.work / "gate.txt").write_text("done")
        url = await self.start("--ttyd", str(self.root / "no-such-ttyd"), ready=False)
        stream = await self.events(url)
        for _ in range(3):
            code, status = await self.nav(url, "next")
            self.assertEqual(code, 200, status)
        self.assertEqual((status["current_step"], status["target_step"]), ("services", "services"))
        self.assertEqual(status["phase"], "transitioning")
        self.assertEqual(
            (await stream.next("status", lambda s: s["target_step"] == "services"))["phase"], "transitioning"
        )

    async def test_fresh_container_for_later_step(self) -> None:
        """A new container (fresh state dir) with ``--step`` runs that step: ``ready``, ``container_step`` is it."""
        url = await self.start("--step", "services", state=self.root / "fresh")
        code, status = await self.api(url, "GET", "/api/v1/status")
        self.assertEqual(
            (code, status["current_step"], status["container_step"], status["target_step"], status["phase"]),
            (200, "services", "services", None, "ready"),
        )
        self.assertEqual((status["step_index"], status["step_count"]), (3, 5))
        self.assertRegex(status["started_at"], RFC3339_UTC)
        code, status = await self.nav(url, "previous")
        self.assertEqual(
            (code, status["current_step"], status["target_step"], status["phase"]),
            (200, "watched", "watched", "transitioning"),
        )

    # -- refusals ------------------------------------------------------------------------

    async def test_409_bodies(self) -> None:
        """Every navigation refusal is a JSON 409 with its code; a failed gate carries the failing result."""
        url = await self.start()
        self.assert_error(await self.nav(url, "previous"), 409, "no_previous_step")
        self.assert_error(await self.nav(url, "complete"), 409, "not_last_step")
        self.assert_error(await self.nav(url, "jump", "last"), 409, "step_locked")
        self.assert_error(await self.nav(url, "jump", "no-such-step"), 404, "unknown_step")
        await self.nav(url, "next")
        body = self.assert_error(await self.nav(url, "next"), 409, "step_not_completed")
        self.assertEqual(set(body), {"error", "message", "validation"})
        result = body["validation"]
        self.assertEqual((result["step"], result["passed"]), ("gated", False))
        self.assertEqual(result["results"][0]["message"], "Create gate.txt")
        self.assertIn("gate.txt", result["results"][0]["detail"])
        self.assertEqual((await self.api(url, "GET", "/api/v1/status"))[1]["current_step"], "gated")
        await d.stop(self.daemon)

        url = await self.start("--step", "last", state=self.root / "at-the-end")
        self.assert_error(await self.nav(url, "next"), 409, "no_next_step")
        body = self.assert_error(await self.nav(url, "complete"), 409, "step_not_completed")
        self.assertFalse(body["validation"]["passed"])
        (self.work / "last.txt").write_text("")
        code, status = await self.nav(url, "complete")
        self.assertEqual((code, status["phase"], status["current_step"]), (200, "completed", "last"))

    async def test_previous_step_checkable(self) -> None:
        """A previous step of this container's image can be checked; its result is kept and readable."""
        (self.work / "gate.txt").write_text("done")
        url = await self.start()
        await self.nav(url, "next")
        await self.nav(url, "next")
        self.assertEqual((await self.api(url, "GET", "/api/v1/status"))[1]["current_step"], "watched")
        code, result = await self.api(url, "POST", "/api/v1/steps/gated/validation")
        self.assertEqual((code, result["step"], result["passed"]), (200, "gated", True))
        self.assertEqual(await self.api(url, "GET", "/api/v1/steps/gated/validation"), (200, result))
        self.assert_error(await self.api(url, "GET", "/api/v1/steps/last/validation"), 404, "not_validated")
        code, progress = await self.api(url, "GET", "/api/v1/progress")
        row = next(r for r in progress["steps"] if r["step"] == "gated")
        self.assertEqual(row["attempts"], 2, "the gate of next and the request")

    async def test_bad_input_is_never_500(self) -> None:
        """Bad bodies get 400/413/415 JSON errors, never 500 (contract 4): NaN, huge numbers, deep nesting."""
        url = await self.start()
        agent = d.http()
        auth: dict[str | bytes, str | bytes] = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        deep = b"[" * 20000 + b"]" * 20000
        cases = [
            ("PUT", "api/v1/state/k", b"NaN", 400),
            ("PUT", "api/v1/state/k", b"1e999", 400),
            ("PUT", "api/v1/state/k", b'{"a": -Infinity}', 400),
            ("PUT", "api/v1/state/k", deep, 400),
            ("POST", "api/v1/navigation", deep, 400),
            ("POST", "api/v1/navigation", b'{"action": ', 400),
            ("PUT", "api/v1/state/k", json.dumps("x" * (64 * 1024)).encode(), 413),
        ]
        seen = []
        for method, path, body, _ in cases:
            response = await agent.request(method, url + path, data=body, headers=auth)
            answer = json.loads(await response.text())
            seen.append((method, path, body[:20], response.code, answer.get("error")))
        self.assertEqual(
            [(m, p, b[:20], s) for m, p, b, s in cases], [(m, p, b, code) for m, p, b, code, _ in seen], seen
        )
        bearer: dict[str | bytes, str | bytes] = {"Authorization": f"Bearer {TOKEN}"}
        response = await agent.request("PUT", url + "api/v1/state/k", data=b"1", headers=bearer)
        await response.text()
        self.assertEqual(response.code, 415)

    async def test_state_and_headers(self) -> None:
        """Custom state round trip (RFC 3339 ``updated_at``, 204 on delete) with the security headers and no Server."""
        url = await self.start()
        code, entry = await self.api(url, "PUT", "/api/v1/state/a.b_c-1", {"x": [1, 2]})
        self.assertEqual((code, entry["key"], entry["value"]), (200, "a.b_c-1", {"x": [1, 2]}))
        self.assertRegex(entry["updated_at"], RFC3339_UTC)
        headers = self.last_response.headers
        self.assertIn("default-src 'self'", headers.getRawHeaders("content-security-policy")[0])
        self.assertEqual(headers.getRawHeaders("x-content-type-options"), ["nosniff"])
        self.assertEqual(headers.getRawHeaders("referrer-policy"), ["no-referrer"])
        self.assertIsNone(headers.getRawHeaders("server"))
        self.assertEqual(await self.api(url, "GET", "/api/v1/state"), (200, {"state": {"a.b_c-1": {"x": [1, 2]}}}))
        self.assertEqual(await self.api(url, "DELETE", "/api/v1/state/a.b_c-1"), (204, None))
        self.assert_error(await self.api(url, "GET", "/api/v1/state/a.b_c-1"), 404, "unknown_key")
        self.assert_error(await self.api(url, "PUT", "/api/v1/state/" + "k" * 129, 1), 400, "bad_key")
        self.assert_error(await self.api(url, "DELETE", "/api/v1/status"), 405, "method_not_allowed")

    async def test_step_hints_and_progress(self) -> None:
        """A step's JSON (rendered html, counts, neighbours); a hint is revealed and counted in progress."""
        url = await self.start()
        code, step = await self.api(url, "GET", "/api/v1/steps/watched")
        self.assertEqual(code, 200)
        self.assertEqual(
            set(step), {"id", "position", "title", "markdown", "html", "hints", "validation", "previous", "next"}
        )
        self.assertEqual((step["previous"], step["next"], step["hints"]), ("gated", "services", 0))
        self.assertEqual((step["validation"]["gate"], step["validation"]["rules"]), (False, 1))
        self.assertEqual(step["validation"]["watch"], 1)
        self.assertIn("<h1", step["html"])
        first = (await self.api(url, "GET", "/api/v1/steps/intro"))[1]
        self.assertEqual((first["previous"], first["hints"]), (None, 2))
        self.assertIsNone((await self.api(url, "GET", "/api/v1/steps/last"))[1]["next"])
        self.assert_error(await self.api(url, "GET", "/api/v1/steps/intro/hints/1"), 409, "hint_not_revealed")
        code, hint = await self.api(url, "POST", "/api/v1/steps/intro/hints/1")
        self.assertEqual((code, hint), (200, {"index": 1, "html": "<p>Really.</p>"}))
        self.assertEqual(await self.api(url, "GET", "/api/v1/steps/intro/hints/1"), (200, hint))
        self.assert_error(await self.api(url, "POST", "/api/v1/steps/intro/hints/2"), 404, "unknown_hint")
        self.assert_error(await self.api(url, "GET", "/api/v1/steps/nope"), 404, "unknown_step")
        rows = {r["step"]: r for r in (await self.api(url, "GET", "/api/v1/progress"))[1]["steps"]}
        self.assertEqual(rows["intro"]["hints_revealed"], 1)
        self.assertEqual(rows["intro"]["status"], "current")
        self.assertRegex(rows["intro"]["viewed_at"], RFC3339_UTC)
