"""The HTTP API (contract section 4) in memory: StubTreq against the real tree."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.static import Data

from tests import distributions
from tests.distributions import StepDef, file_rule
from tests.fakes import (
    START,
    FakeChecker,
    FakeTerminal,
    FakeTerminals,
    RecordingHub,
    SyncPool,
    open_runtime,
    working_copy,
)
from workshop_backend.http.api import Api, parse_navigation
from workshop_backend.http.errors import ApiError
from workshop_backend.http.security import Guard, content_security_policy
from workshop_backend.http.site import GuardedResource, make_site
from workshop_backend.http.static import static_resource
from workshop_backend.http.tickets import Tickets
from workshop_backend.state.assets import AssetStore
from workshop_backend.state.store import Store
from workshop_backend.terminal.sessions import TerminalInfo

BASE = "http://127.0.0.1:8080"
JSON = {"Content-Type": "application/json"}
TOKEN = "a-test-token-that-is-long-enough"


class Harness:
    """A runtime over a real working copy, the API over it, and a StubTreq."""

    def __init__(
        self,
        case: SynchronousTestCase,
        dist: Path,
        *,
        step: str | None = None,
        auth: str = "none",
        open_runtime: bool = True,
        static_dir: Path | None = None,
        setup_runner: Any = None,
        with_assets: bool = False,
    ) -> None:
        """``setup_runner`` runs background setup scripts; ``with_assets`` reads assets as the daemon does."""
        self.case = case
        self.setup_runner = setup_runner
        self.with_assets = with_assets
        distribution, container, self.clock, self.db = working_copy(case, dist, step)
        self.pool = SyncPool(self.db)
        case.addCleanup(self.pool.close)
        self.store = Store(self.db, pool=self.pool)  # type: ignore[arg-type]
        self.hub = RecordingHub()
        self.checker = FakeChecker(self.clock)
        self.terminal = FakeTerminal()
        self.terminals = FakeTerminals()
        self.distribution, self.container = distribution, container
        if static_dir is None:
            static_dir = Path(case.mktemp())
            static_dir.mkdir()
            (static_dir / "app-ABCDEFGH12.js").write_text("console.log(1)")
            (static_dir / "plain.css").write_text("body{}")
        self.guard = Guard(
            auth=auth,  # type: ignore[arg-type]
            token=TOKEN if auth == "token" else None,
            tickets=Tickets(self.clock.seconds),
        )
        self.api = Api(
            readiness=self.readiness,
            index_html=lambda: b"<!doctype html><title>ui</title>",
            static=static_resource(static_dir),
            terminal=Data(b"terminal", "text/plain"),
            terminals=self.terminals,
            events=Data(b"events", "text/plain"),
            tickets=self.guard.tickets,
        )
        if open_runtime:
            self.open()
        self.resource = GuardedResource(self.api.resource(), self.guard, content_security_policy([]))
        self.treq: Any = StubTreq(self.resource)

    def readiness(self) -> tuple[bool, str]:
        """Ready once the runtime is open and the fake terminal says so."""
        ready = self.api.runtime is not None and self.terminal.is_ready()
        return ready, "ready" if ready else "terminal_starting"

    def open(self) -> None:
        """The working copy is open: the runtime exists and the API serves it."""
        assets = None
        if self.with_assets:
            pool = SyncPool(self.db)
            self.case.addCleanup(pool.close)
            assets = AssetStore(self.db, pool=pool)  # type: ignore[arg-type]
        self.runtime = open_runtime(
            self.case,
            self.distribution,
            self.store,
            container=self.container,
            clock=self.clock,
            hub=self.hub,
            checker=self.checker,
            terminal=self.terminal,
            setup_runner=self.setup_runner,
            assets=assets,
        )
        self.api.attach(self.runtime)

    def request(self, method: str, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any, Any]:
        """One request; answers (status, decoded JSON or bytes, response)."""
        if body is not None:
            kwargs.setdefault("headers", JSON)
            kwargs["data"] = json.dumps(body).encode()
        d = self.treq.request(method, BASE + path, **kwargs)
        self.treq.flush()
        response = self.case.successResultOf(d)
        content = response.content()
        self.treq.flush()
        raw = self.case.successResultOf(content)
        ctype = response.headers.getRawHeaders(b"content-type", [b""])[0]
        decoded = json.loads(raw) if ctype.startswith(b"application/json") and raw else raw
        return response.code, decoded, response

    def get(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        """GET, answering (status, body)."""
        code, body, _ = self.request("GET", path, **kwargs)
        return code, body

    def post(self, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        """POST JSON, answering (status, body)."""
        code, out, _ = self.request("POST", path, body, **kwargs)
        return code, out

    def nav(self, action: str, step: str | None = None) -> tuple[int, Any]:
        """POST /api/v1/navigation."""
        body = {"action": action} if step is None else {"action": action, "step": step}
        return self.post("/api/v1/navigation", body)


def standard(case: SynchronousTestCase, navigation: str = "linear") -> Path:
    """The standard four-step test distribution."""
    return distributions.standard(Path(case.mktemp()), navigation=navigation)


class ProbeTests(SynchronousTestCase):
    """/healthz and /readyz."""

    def test_healthz(self) -> None:
        """Liveness is always ok, even before the working copy is open."""
        h = Harness(self, standard(self), open_runtime=False)
        self.assertEqual(h.get("/healthz"), (200, {"status": "ok"}))

    def test_readyz_not_open(self) -> None:
        """503 until the working copy is open; the API says 'starting'."""
        h = Harness(self, standard(self), open_runtime=False)
        code, body = h.get("/readyz")
        self.assertEqual(code, 503)
        self.assertEqual(body["status"], "not_ready")
        code, body = h.get("/api/v1/status")
        self.assertEqual((code, body["error"]), (503, "starting"))

    def test_readyz_terminal(self) -> None:
        """503 while the terminal is not ready, with the reason; then 200."""
        h = Harness(self, standard(self))
        h.terminal.ready = False
        self.assertEqual(h.get("/readyz"), (503, {"status": "not_ready", "reason": "terminal_starting"}))
        self.assertEqual(h.get("/api/v1/status")[1]["phase"], "starting")
        h.terminal.ready = True
        self.assertEqual(h.get("/readyz"), (200, {"status": "ready"}))


class ReadTests(SynchronousTestCase):
    """Workshop, steps, hints, status, progress."""

    def test_workshop(self) -> None:
        """The workshop and the step list with statuses."""
        h = Harness(self, standard(self))
        code, body = h.get("/api/v1/workshop")
        self.assertEqual(code, 200)
        self.assertEqual(
            body,
            {
                "id": "test-workshop",
                "title": "Test Workshop",
                "version": "1.0.0",
                "description": "A workshop for tests.",
                "navigation": "linear",
                "steps": [
                    {"id": "intro", "position": 0, "title": "Step intro", "status": "current"},
                    {"id": "make-file", "position": 1, "title": "Step make-file", "status": "locked"},
                    {"id": "optional", "position": 2, "title": "Step optional", "status": "locked"},
                    {"id": "finish", "position": 3, "title": "Step finish", "status": "locked"},
                ],
            },
        )

    def test_step(self) -> None:
        """A step: markdown, sanitized html, hint count, validation summary, neighbours."""
        h = Harness(self, standard(self))
        code, body = h.get("/api/v1/steps/make-file")
        self.assertEqual(code, 200)
        self.assertIn("<h1", body["html"])
        self.assertEqual(body["markdown"], "# make-file\n\nDo things.")
        self.assertEqual(body["validation"], {"gate": True, "rules": 1, "watch": None})
        self.assertEqual((body["previous"], body["next"], body["hints"]), ("intro", "optional", 0))
        self.assertEqual(h.get("/api/v1/steps/intro")[1]["previous"], None)
        self.assertEqual(h.get("/api/v1/steps/finish")[1]["next"], None)

    def test_unknown_step(self) -> None:
        """404 JSON for an unknown step, on every step route."""
        h = Harness(self, standard(self))
        for path in ("/api/v1/steps/nope", "/api/v1/steps/nope/hints/0", "/api/v1/steps/nope/validation"):
            code, body = h.get(path)
            self.assertEqual((code, body["error"]), (404, "unknown_step"), path)

    def test_hints(self) -> None:
        """POST reveals a hint (recorded once); GET shows a revealed one again; out of range is 404."""
        h = Harness(self, standard(self))
        code, body = h.get("/api/v1/steps/intro/hints/1")
        self.assertEqual((code, body["error"]), (409, "hint_not_revealed"))
        code, body = h.post("/api/v1/steps/intro/hints/1")
        self.assertEqual((code, body["index"]), (200, 1))
        self.assertIn("Really", body["html"])
        self.assertEqual(h.get("/api/v1/steps/intro/hints/1"), (200, body))
        h.post("/api/v1/steps/intro/hints/1")
        h.post("/api/v1/steps/intro/hints/0")
        self.assertEqual(h.post("/api/v1/steps/intro/hints/2")[0], 404)
        self.assertEqual(h.post("/api/v1/steps/intro/hints/-1")[0], 404)
        self.assertEqual(h.request("HEAD", "/api/v1/steps/intro/hints/1")[0], 200)
        progress = h.get("/api/v1/progress")[1]["steps"]
        self.assertEqual(progress[0]["hints_revealed"], 2)

    def test_hint_of_a_locked_step(self) -> None:
        """A locked step's hints cannot be revealed (409 step_locked); nothing is recorded."""
        dist = distributions.write(
            Path(self.mktemp()),
            [
                StepDef("intro"),
                StepDef("gated", validation={"gate": True, "rules": [file_rule("f", "done.txt")]}),
                StepDef("later", hints=["The answer."]),
            ],
        )
        h = Harness(self, dist)
        locked = h.get("/api/v1/workshop")[1]["steps"][-1]
        self.assertEqual(locked["status"], "locked")
        code, body = h.post(f"/api/v1/steps/{locked['id']}/hints/0")
        self.assertEqual((code, body["error"]), (409, "step_locked"))
        self.assertEqual(h.get("/api/v1/progress")[1]["steps"][-1]["hints_revealed"], 0)

    def test_status(self) -> None:
        """The status document."""
        h = Harness(self, standard(self))
        code, body = h.get("/api/v1/status")
        self.assertEqual(code, 200)
        self.assertEqual(
            body,
            {
                "workshop": "test-workshop",
                "current_step": "intro",
                "container_step": "intro",
                "target_step": None,
                "phase": "ready",
                "step_index": 0,
                "step_count": 4,
                "completed_steps": [],
                "terminal": {"state": "running", "restarts": 0},
                "started_at": "2027-01-15T08:00:00Z",
                "problems": [],
                "setup": None,
            },
        )

    def test_progress(self) -> None:
        """Per-step progress with the contract's fields."""
        h = Harness(self, standard(self))
        code, body = h.get("/api/v1/progress")
        self.assertEqual(code, 200)
        self.assertEqual(
            body["steps"][0],
            {
                "step": "intro",
                "status": "current",
                "viewed_at": "2027-01-15T08:00:00Z",
                "completed_at": None,
                "attempts": 0,
                "hints_revealed": 0,
            },
        )


class NavigationTests(SynchronousTestCase):
    """POST /api/v1/navigation."""

    def test_walk_through(self) -> None:
        """next, a failing gate (409 with the result), a pass, previous, jump, complete."""
        h = Harness(self, standard(self))
        code, body = h.nav("next")
        self.assertEqual((code, body["current_step"], body["completed_steps"]), (200, "make-file", ["intro"]))
        code, body = h.nav("next")
        self.assertEqual((code, body["error"]), (409, "step_not_completed"))
        self.assertEqual(body["validation"]["passed"], False)
        self.assertEqual(body["validation"]["results"][0]["message"], "Create done.txt")
        self.assertEqual(h.get("/api/v1/status")[1]["current_step"], "make-file")
        h.checker.verdicts["make-file"] = True
        code, body = h.nav("next")
        self.assertEqual((code, body["current_step"]), (200, "optional"))
        self.assertEqual(body["completed_steps"], ["intro", "make-file"])
        self.assertEqual(h.nav("previous")[1]["current_step"], "make-file")
        self.assertEqual(h.nav("jump", "optional")[1]["current_step"], "optional")
        code, body = h.nav("jump", "finish")
        self.assertEqual((code, body["error"]), (409, "step_locked"))
        self.assertEqual(h.nav("complete")[1]["error"], "not_last_step")
        self.assertEqual(h.nav("next")[1]["current_step"], "finish")
        code, body = h.nav("complete")
        self.assertEqual((code, body["phase"]), (200, "completed"))
        self.assertEqual(body["completed_steps"], ["intro", "make-file", "finish"])
        self.assertEqual(h.nav("next")[1]["error"], "no_next_step")
        workshop = h.get("/api/v1/workshop")[1]
        self.assertEqual([s["status"] for s in workshop["steps"]], ["completed", "completed", "available", "current"])
        progress = {p["step"]: p for p in h.get("/api/v1/progress")[1]["steps"]}
        self.assertEqual(progress["finish"]["status"], "completed")
        self.assertEqual(progress["make-file"]["attempts"], 2)
        self.assertIn("status", h.hub.names())

    def test_first_and_unknown(self) -> None:
        """previous on the first step; jump to an unknown step."""
        h = Harness(self, standard(self))
        self.assertEqual(h.nav("previous"), (409, h.nav("previous")[1]))
        self.assertEqual(h.nav("previous")[1]["error"], "no_previous_step")
        self.assertEqual(h.nav("jump", "nope")[0], 404)

    def test_free_jump(self) -> None:
        """Free navigation jumps anywhere."""
        h = Harness(self, standard(self, "free"))
        self.assertEqual(h.nav("jump", "finish")[1]["current_step"], "finish")

    def test_transitioning(self) -> None:
        """A step of another image: transitioning, target set; back again: ready."""
        path = distributions.write(
            Path(self.mktemp()), [StepDef("one", image="a"), StepDef("two", image="b"), StepDef("three", image="b")]
        )
        h = Harness(self, path)
        body = h.nav("next")[1]
        self.assertEqual(
            (body["current_step"], body["target_step"], body["phase"], body["container_step"]),
            ("two", "two", "transitioning", "one"),
        )
        body = h.nav("previous")[1]
        self.assertEqual((body["current_step"], body["target_step"], body["phase"]), ("one", None, "ready"))

    def test_container_of_later_step(self) -> None:
        """A fresh container for step two of a linear workshop counts step one as done."""
        path = distributions.write(Path(self.mktemp()), [StepDef("one", image="a"), StepDef("two", image="b")])
        h = Harness(self, path, step="two")
        body = h.get("/api/v1/status")[1]
        self.assertEqual((body["current_step"], body["container_step"], body["phase"]), ("two", "two", "ready"))
        self.assertEqual(body["completed_steps"], ["one"])

    def test_bad_requests(self) -> None:
        """Bad JSON 400, not JSON 415, bad action 400, wrong method 405 — all JSON."""
        h = Harness(self, standard(self))
        code, body, _ = h.request("POST", "/api/v1/navigation", data=b"{", headers=JSON)
        self.assertEqual((code, body["error"]), (400, "bad_json"))
        code, body, _ = h.request("POST", "/api/v1/navigation", data=b'{"action":"next"}')
        self.assertEqual((code, body["error"]), (415, "unsupported_media_type"))
        self.assertEqual(h.nav("fly")[1]["error"], "bad_action")
        code, body = h.get("/api/v1/navigation")
        self.assertEqual((code, body["error"]), (405, "method_not_allowed"))

    def test_written_before_answer(self) -> None:
        """The move is in the working copy when the answer arrives."""
        h = Harness(self, standard(self))
        h.nav("next")
        conn = sqlite3.connect(h.db)
        self.addCleanup(conn.close)
        self.assertEqual(conn.execute("SELECT current_step FROM runtime_state").fetchone(), ("make-file",))


class ValidationTests(SynchronousTestCase):
    """POST and GET /api/v1/steps/{id}/validation."""

    def test_run_and_last(self) -> None:
        """404 before any run; a run answers the result; GET answers the last one."""
        h = Harness(self, standard(self))
        self.assertEqual(h.get("/api/v1/steps/make-file/validation")[1]["error"], "not_validated")
        self.assertEqual(h.post("/api/v1/steps/make-file/validation")[1]["error"], "step_locked")
        h.nav("next")
        code, body = h.post("/api/v1/steps/make-file/validation")
        self.assertEqual((code, body["passed"], body["step"]), (200, False, "make-file"))
        self.assertEqual(set(body), {"step", "passed", "checked_at", "duration_ms", "results"})
        self.assertEqual(h.get("/api/v1/steps/make-file/validation"), (200, body))
        h.checker.verdicts["make-file"] = True
        self.assertTrue(h.post("/api/v1/steps/make-file/validation")[1]["passed"])
        self.assertIn("make-file", h.get("/api/v1/status")[1]["completed_steps"])
        self.assertEqual(h.hub.names().count("validation"), 2)

    def test_no_rules(self) -> None:
        """A step without rules cannot be checked: 409."""
        h = Harness(self, standard(self))
        self.assertEqual(h.post("/api/v1/steps/intro/validation")[1]["error"], "no_rules")

    def test_other_image(self) -> None:
        """A step of another image: 409 step_not_in_container."""
        path = distributions.write(
            Path(self.mktemp()),
            [StepDef("one", image="a"), StepDef("two", image="b", validation={"rules": [file_rule("f", "x")]})],
        )
        h = Harness(self, path)
        code, body = h.post("/api/v1/steps/two/validation")
        self.assertEqual((code, body["error"]), (409, "step_not_in_container"))

    def test_shared_run(self) -> None:
        """Requests during a run get that run's result; the checker runs once."""
        h = Harness(self, standard(self))
        h.nav("next")
        h.checker.hold = Deferred()
        first = h.treq.post(BASE + "/api/v1/steps/make-file/validation")
        second = h.treq.post(BASE + "/api/v1/steps/make-file/validation")
        self.assertNoResult(first)
        self.assertEqual(h.checker.runs, ["make-file"])
        h.checker.hold.callback(None)
        h.treq.flush()
        bodies = [self.successResultOf(self.successResultOf(d).json()) for d in (first, second)]
        self.assertEqual(bodies[0], bodies[1])
        self.assertEqual(h.checker.runs, ["make-file"])


class StateTests(SynchronousTestCase):
    """Custom state."""

    def test_crud(self) -> None:
        """PUT any JSON, GET it, list it, DELETE it (204), then 404."""
        h = Harness(self, standard(self))
        code, body, _ = h.request("PUT", "/api/v1/state/quiz.answer-1", {"a": [1, "é", None]})
        self.assertEqual((code, body["key"], body["value"]), (200, "quiz.answer-1", {"a": [1, "é", None]}))
        self.assertEqual(h.get("/api/v1/state/quiz.answer-1")[1]["value"], {"a": [1, "é", None]})
        h.request("PUT", "/api/v1/state/n", 3)
        self.assertEqual(h.get("/api/v1/state"), (200, {"state": {"n": 3, "quiz.answer-1": {"a": [1, "é", None]}}}))
        code, body, _ = h.request("DELETE", "/api/v1/state/n")
        self.assertEqual((code, body), (204, b""))
        self.assertEqual(h.get("/api/v1/state/n")[1]["error"], "unknown_key")
        self.assertEqual(h.request("DELETE", "/api/v1/state/n")[0], 404)

    def test_refusals(self) -> None:
        """Bad keys 400, values over 64 KiB 413, non-JSON 415."""
        h = Harness(self, standard(self))
        self.assertEqual(h.request("PUT", "/api/v1/state/" + "k" * 129, 1)[0], 400)
        self.assertEqual(h.request("PUT", "/api/v1/state/bad%20key", 1)[0], 400)
        code, body, _ = h.request("PUT", "/api/v1/state/big", "x" * (64 * 1024))
        self.assertEqual((code, body["error"]), (413, "too_large"))
        self.assertEqual(h.request("PUT", "/api/v1/state/x", data=b"1")[0], 415)


def detached_terminal() -> TerminalInfo:
    """A terminal whose browser left a minute ago."""
    return TerminalInfo(
        id="abcDEF0123_-xyz",
        number=1,
        state="detached",
        clients=0,
        created_at=START,
        detached_at=START + 60,
        expires_at=START + 60 + 1800,
        output_bytes=5000,
        buffered_bytes=4096,
        skipped_bytes=904,
        paused=False,
        close_code=None,
    )


def ended_terminal() -> TerminalInfo:
    """A terminal whose shell exited with an error, kept for the page to see."""
    return TerminalInfo(
        id="second",
        number=2,
        state="ended",
        clients=0,
        created_at=START + 1.5,
        detached_at=START + 2,
        expires_at=START + 1802,
        output_bytes=10,
        buffered_bytes=10,
        skipped_bytes=0,
        paused=False,
        close_code=4000,
    )


class TerminalsTests(SynchronousTestCase):
    """``GET /api/v1/terminals`` and ``DELETE /api/v1/terminals/{id}``."""

    def test_list(self) -> None:
        """The terminals in order, times as RFC 3339, the limit; before the working copy is open too."""
        h = Harness(self, standard(self), open_runtime=False)
        h.terminals.listed = [detached_terminal(), ended_terminal()]
        code, body = h.get("/api/v1/terminals")
        self.assertEqual(code, 200)
        self.assertEqual(body["limit"], 6)
        first, second = body["terminals"]
        self.assertEqual(
            first,
            {
                "id": "abcDEF0123_-xyz",
                "number": 1,
                "state": "detached",
                "clients": 0,
                "created_at": "2027-01-15T08:00:00Z",
                "detached_at": "2027-01-15T08:01:00Z",
                "expires_at": "2027-01-15T08:31:00Z",
                "output_bytes": 5000,
                "buffered_bytes": 4096,
                "skipped_bytes": 904,
                "paused": False,
                "close_code": None,
            },
        )
        self.assertEqual((second["id"], second["state"], second["close_code"]), ("second", "ended", 4000))

    def test_end(self) -> None:
        """DELETE ends a terminal (204); an unknown one is 404 unknown_terminal."""
        h = Harness(self, standard(self))
        h.terminals.listed = [detached_terminal()]
        code, _, _ = h.request("DELETE", "/api/v1/terminals/abcDEF0123_-xyz")
        self.assertEqual(code, 204)
        self.assertEqual(h.terminals.ended, ["abcDEF0123_-xyz"])
        code, body, _ = h.request("DELETE", "/api/v1/terminals/abcDEF0123_-xyz")
        self.assertEqual((code, body["error"]), (404, "unknown_terminal"))

    def test_end_needs_our_origin(self) -> None:
        """Another site's page cannot close a terminal: DELETE with a foreign Origin is 403."""
        h = Harness(self, standard(self))
        h.terminals.listed = [detached_terminal()]
        code, body, _ = h.request(
            "DELETE", "/api/v1/terminals/abcDEF0123_-xyz", headers={"Origin": "http://evil.example"}
        )
        self.assertEqual((code, body["error"]), (403, "forbidden_origin"))
        self.assertEqual(h.terminals.ended, [])


class HttpTests(SynchronousTestCase):
    """Routing misses, assets, headers, the guard."""

    def test_unknown_path(self) -> None:
        """404 JSON for unknown paths."""
        h = Harness(self, standard(self))
        self.assertEqual(h.get("/api/v2/nothing")[1]["error"], "not_found")

    def test_static(self) -> None:
        """Hashed assets cache long, others revalidate; /static redirects; no listing; no traversal."""
        h = Harness(self, standard(self))
        # HEAD: static.File streams bodies through a producer StubTreq does not
        # drive; the bodies are fetched over a real socket in the daemon tests.
        code, _, response = h.request("HEAD", "/static/app-ABCDEFGH12.js")
        self.assertEqual(code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"cache-control"), [b"public, max-age=31536000, immutable"])
        code, _, response = h.request("HEAD", "/static/plain.css")
        self.assertEqual(response.headers.getRawHeaders(b"cache-control"), [b"no-cache"])
        code, _, response = h.request("GET", "/static", allow_redirects=False)
        self.assertEqual(code, 308)
        self.assertEqual(response.headers.getRawHeaders(b"location"), [b"/static/"])
        self.assertEqual(h.get("/static/")[0], 404)
        self.assertEqual(h.get("/static/..%2f..%2fetc%2fpasswd")[0], 404)
        self.assertEqual(h.get("/static/.hidden")[0], 404)

    def test_headers(self) -> None:
        """CSP, nosniff, no-referrer, JSON type, no server version."""
        h = Harness(self, standard(self))
        _, _, response = h.request("GET", "/api/v1/status")
        headers = response.headers
        self.assertIn(b"default-src 'self'", headers.getRawHeaders(b"content-security-policy")[0])
        self.assertEqual(headers.getRawHeaders(b"x-content-type-options"), [b"nosniff"])
        self.assertEqual(headers.getRawHeaders(b"referrer-policy"), [b"no-referrer"])
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"application/json; charset=utf-8"])
        self.assertIsNone(headers.getRawHeaders(b"server"))

    def test_token_auth(self) -> None:
        """No credentials 401; bearer works; ?token= sets the page cookie and redirects with the browser key.

        The page cookie opens the page, nothing else; the browser key (in the
        redirect's fragment) opens the API as a bearer.
        """
        h = Harness(self, standard(self), auth="token")
        code, body = h.get("/api/v1/status")
        self.assertEqual((code, body["error"]), (401, "unauthorized"))
        self.assertEqual(h.get("/healthz")[0], 200)
        code, page = h.get("/")
        self.assertEqual(code, 401)
        self.assertIn(b"Access token required", page)
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        self.assertEqual(h.get("/api/v1/status", headers=bearer)[0], 200)
        self.assertEqual(h.get("/api/v1/status", headers={"Authorization": "Bearer wrong"})[0], 401)
        code, _, response = h.request("GET", f"/?token={TOKEN}&lang=en", allow_redirects=False)
        self.assertEqual(code, 303)
        (location,) = response.headers.getRawHeaders(b"location")
        self.assertEqual(location, b"/?lang=en#key=" + h.guard.browser_key.encode())
        cookie = response.headers.getRawHeaders(b"set-cookie")[0]
        self.assertIn(b"HttpOnly", cookie)
        self.assertIn(b"samesite=strict", cookie.lower())
        self.assertNotIn(TOKEN.encode(), cookie)
        self.assertNotIn(h.guard.browser_key.encode(), cookie)
        name, value = cookie.split(b";")[0].split(b"=", 1)
        cookies = {name.decode(): value.decode()}
        self.assertEqual(h.get("/api/v1/status", cookies=cookies)[0], 401)
        self.assertEqual(h.get("/", cookies=cookies)[0], 200)
        key = {"Authorization": f"Bearer {h.guard.browser_key}"}
        self.assertEqual(h.get("/api/v1/status", headers=key)[0], 200)
        code, page = h.get("/?token=wrong", allow_redirects=False)
        self.assertEqual(code, 401)
        self.assertNotIn(TOKEN.encode(), page)

    def test_host_and_origin(self) -> None:
        """Foreign Host 403; cross-origin POST 403; same-origin POST allowed; null refused."""
        h = Harness(self, standard(self))
        self.assertEqual(h.get("/api/v1/status", headers={"Host": "evil.example"})[1]["error"], "forbidden_host")
        body = {"action": "next"}
        code, out = h.post("/api/v1/navigation", body, headers={**JSON, "Origin": "http://evil.example"})
        self.assertEqual((code, out["error"]), (403, "forbidden_origin"))
        code, out = h.post("/api/v1/navigation", body, headers={**JSON, "Origin": "null"})
        self.assertEqual(code, 403)
        code, out = h.post("/api/v1/navigation", body, headers={**JSON, "Origin": "http://127.0.0.1:8080"})
        self.assertEqual(code, 200)
        code, out = h.post(
            "/api/v1/navigation", {"action": "previous"}, headers={**JSON, "Origin": "http://127.0.0.1:80800"}
        )
        self.assertEqual(code, 403)


class BodyLimitTests(SynchronousTestCase):
    """413 before the body is read, for Content-Length and chunked bodies."""

    def channel(self) -> tuple[Any, StringTransport]:
        """An HTTP channel of the real Site over a memory transport."""
        reached: list[bytes] = []

        class Sink(Resource):
            isLeaf = True

            def render(self, request: Any) -> bytes:
                reached.append(request.content.read())
                return b"ok"

        self.reached = reached
        site = make_site(Sink(), body_cap=Api.body_cap)
        channel = site.buildProtocol(None)
        channel.callLater = Clock().callLater  # the idle timeout, off the real reactor
        transport = StringTransport()
        channel.makeConnection(transport)
        return channel, transport

    def test_content_length(self) -> None:
        """A Content-Length over 1 MiB: 413 at once, connection closed, nothing reaches the app."""
        channel, transport = self.channel()
        channel.dataReceived(b"POST /api/v1/navigation HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 413 "))
        self.assertIn(b'"error":"too_large"', transport.value())
        self.assertTrue(transport.disconnecting)
        channel.dataReceived(b"x" * 100)
        self.assertEqual(self.reached, [])

    def test_state_cap(self) -> None:
        """State values are capped lower than other bodies."""
        channel, transport = self.channel()
        channel.dataReceived(b"PUT /api/v1/state/k HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 413 "))

    def test_chunked(self) -> None:
        """A chunked body is refused as it crosses the cap."""
        channel, transport = self.channel()
        channel.dataReceived(b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (65536, b"y" * 65536)
        for _ in range(17):
            channel.dataReceived(chunk)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 413 "))
        channel.dataReceived(b"0\r\n\r\n")
        self.assertEqual(self.reached, [])

    def test_small_body_passes(self) -> None:
        """A body under the cap reaches the app."""
        channel, transport = self.channel()
        channel.dataReceived(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        self.assertEqual(self.reached, [b"hi"])
        self.assertIn(b"200 OK", transport.value())


class ParseNavigationTests(SynchronousTestCase):
    """The request body of POST /api/v1/navigation."""

    def test_actions(self) -> None:
        """Each action parses; jump carries its step."""
        self.assertEqual(parse_navigation({"action": "next"}), ("next", None))
        self.assertEqual(parse_navigation({"action": "previous"}), ("previous", None))
        self.assertEqual(parse_navigation({"action": "complete"}), ("complete", None))
        self.assertEqual(parse_navigation({"action": "jump", "step": "x"}), ("jump", "x"))

    def test_refusals(self) -> None:
        """Bad bodies are 400 with a code and a sentence."""
        cases = [
            ([], "bad_request"),
            ({}, "bad_action"),
            ({"action": "fly"}, "bad_action"),
            ({"action": 3}, "bad_action"),
            ({"action": "jump"}, "bad_request"),
            ({"action": "jump", "step": ""}, "bad_request"),
            ({"action": "next", "step": "x"}, "bad_request"),
            ({"action": "next", "extra": 1}, "bad_request"),
        ]
        for body, code in cases:
            with self.assertRaises(ApiError) as e:
                parse_navigation(body)
            self.assertEqual((e.exception.status, e.exception.code), (400, code), body)


class RouteTemplateTests(SynchronousTestCase):
    """Metrics label requests with the template of the route Klein matched (one source: the routes)."""

    def route(self, method: str, path: str) -> str:
        from twisted.web.server import Request
        from twisted.web.test.requesthelper import DummyChannel

        h = Harness(self, standard(self))
        request = Request(DummyChannel())
        request.method = method.encode()
        request.path = request.uri = path.encode()
        return h.api.route_of(request)

    def test_templates(self) -> None:
        """Step ids, hint numbers, state keys and asset names are not labels."""
        cases = {
            ("GET", "/"): "/",
            ("GET", "/healthz"): "/healthz",
            ("GET", "/terminal"): "/terminal",
            ("GET", "/static/app-IFFAQHQB.js"): "/static/{path}",
            ("GET", "/static"): "/static",
            ("GET", "/api/v1/status"): "/api/v1/status",
            ("GET", "/api/v1/steps/intro"): "/api/v1/steps/{step_id}",
            ("GET", "/api/v1/steps/intro/hints/0"): "/api/v1/steps/{step_id}/hints/{index}",
            ("POST", "/api/v1/steps/intro/validation"): "/api/v1/steps/{step_id}/validation",
            ("PUT", "/api/v1/state/my.key"): "/api/v1/state/{key}",
            ("POST", "/api/v1/navigation"): "/api/v1/navigation",
            ("GET", "/api/v1/events"): "/api/v1/events",
        }
        self.assertEqual({case: self.route(*case) for case in cases}, cases)

    def test_unknown(self) -> None:
        """Unknown paths and methods are 'other'; a query string is not part of the route."""
        self.assertEqual(self.route("GET", "/wp-admin/x.php"), "other")
        self.assertEqual(self.route("GET", "/api/v1/steps/a/b/c/d"), "other")
        self.assertEqual(self.route("DELETE", "/api/v1/status"), "other")
        self.assertEqual(self.route("GET", "/?token=secret"), "/")
