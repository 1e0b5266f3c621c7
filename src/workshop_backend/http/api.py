"""The HTTP API (contract section 4) as a Klein app over injected state.

Routes are thin: they read the request, call the
:class:`~workshop_backend.application.runtime.WorkshopRuntime`, and shape the
answer with :mod:`~workshop_backend.http.views`.  The runtime exists only once
the working copy is open (:meth:`Api.attach`); until then the routes that need
it answer 503 ``starting``.  Refusals of the application layer become JSON
through the one status table (:func:`~workshop_backend.http.errors.api_error`);
routing misses become JSON 404/405 the same way; anything else is a bug,
logged with its traceback and answered with a bare 500 that reveals nothing.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

from klein import Klein
from klein.interfaces import IKleinRequest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect
from zope.interface import implementer

from workshop_backend.application.runtime import STATE_VALUE_MAX, Status, StepView, WorkshopRuntime
from workshop_backend.http import views
from workshop_backend.http.assets import AssetResource
from workshop_backend.http.errors import ApiError, api_error, encode, write_error, write_json
from workshop_backend.http.tickets import Tickets
from workshop_backend.terminal.sessions import TerminalInfo
from workshop_backend.workshop import errors as domain
from workshop_backend.workshop.errors import Starting, WorkshopError
from workshop_backend.workshop.navigation import NAVIGATION_ACTIONS, Action

Readiness = Callable[[], tuple[bool, str]]
"""``() -> (ready, short reason code)``, what ``/readyz`` answers."""


class Terminals(Protocol):
    """The workspace's terminals (:class:`~workshop_backend.terminal.bridge.TerminalBridge`)."""

    @property
    def terminal_limit(self) -> int: ...

    def terminals(self) -> list[TerminalInfo]: ...

    def end_terminal(self, name: str) -> bool: ...


BODY_MAX = 1024 * 1024
"""Bytes of a request body, at most (contract section 4)."""
STATE_BODY_MAX = STATE_VALUE_MAX + 1024
"""Bytes of a state value's body: 64 KiB of JSON and some whitespace."""
STATE_PREFIX = b"/api/v1/state/"

_RULE_PARAM = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def _finite_float(text: str) -> float:
    """A JSON number as a float; out of range (``1e999``) is refused, not turned into inf."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:32]} is out of range")
    return value


def _no_constant(name: str) -> Any:
    """``NaN`` and ``Infinity`` are not JSON, whatever Python's json module accepts."""
    raise ValueError(f"{name} is not a JSON value")


def read_json(request: IRequest, *, required: bool = True) -> Any:
    """The request body as JSON: 415 unless it says it is JSON, 400 if it is not."""
    body = request.content.read() if request.content is not None else b""
    if not body.strip() and not required:
        return None
    ctype = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    if ctype != b"application/json":
        raise ApiError(415, "unsupported_media_type", "Send the body as JSON, with Content-Type: application/json.")
    try:
        value = json.loads(body, parse_float=_finite_float, parse_constant=_no_constant)
    except RecursionError:
        raise ApiError(400, "bad_json", "The body is nested too deeply.") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, the int digit limit, the two above
        raise ApiError(400, "bad_json", f"The body is not valid JSON: {e}.") from None
    try:
        encode(value)
    except (UnicodeEncodeError, RecursionError):
        # A lone surrogate ("\ud800") parses but cannot be stored or sent back as UTF-8.
        raise ApiError(400, "bad_json", "The body has a string that is not valid Unicode.") from None
    return value


def parse_navigation(body: object) -> tuple[Action, str | None]:
    """A navigation request body: ``{"action": ..., "step": ...}``."""
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", 'The body must be a JSON object such as {"action": "next"}.')
    action = body.get("action")
    if action not in NAVIGATION_ACTIONS:
        raise ApiError(400, "bad_action", f"'action' must be one of {', '.join(NAVIGATION_ACTIONS)}.")
    unknown = set(body) - {"action", "step"}
    if unknown:
        raise ApiError(400, "bad_request", f"Unknown field(s): {', '.join(sorted(unknown))}.")
    step = body.get("step")
    if action == "jump":
        if not isinstance(step, str) or not step:
            raise ApiError(400, "bad_request", "'jump' needs 'step', the id of the step to go to.")
        return action, step
    if step is not None:
        raise ApiError(400, "bad_request", f"'{action}' takes no 'step'.")
    return cast(Action, action), None


@implementer(IPushProducer)
class Drain:
    """Backpressure for an answer written in pieces: wait until the client has room for more.

    Registered as the request's streaming producer: the transport pauses it
    when its buffer is full and resumes it once the client has read, so an
    answer written piece by piece holds at most one piece and the transport's
    buffer in memory, however slowly the client reads.
    """

    def __init__(self, request: Any) -> None:
        # A twisted.web Request: IRequest declares neither producers nor notifyFinish.
        self.request = request
        self.paused = False
        self.gone = False
        self._waiting: Deferred[None] | None = None
        request.registerProducer(self, True)
        request.notifyFinish().addErrback(lambda _: self.stopProducing())

    def room(self) -> Deferred[None]:
        """Fires when the client can take more (at once unless paused)."""
        if not self.paused or self.gone:
            return succeed(None)
        self._waiting = Deferred()
        return self._waiting

    def pauseProducing(self) -> None:
        """The transport's buffer is full."""
        self.paused = True

    def resumeProducing(self) -> None:
        """The client has read: go on."""
        self.paused = False
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.callback(None)

    def stopProducing(self) -> None:
        """The client has gone: stop writing."""
        self.gone = True
        self.resumeProducing()

    def done(self) -> None:
        """The answer is written."""
        if not self.gone:
            self.request.unregisterProducer()


class Api:
    """The JSON API, the probes, the UI shell and the mount points."""

    app = Klein()
    log = Logger()

    def __init__(
        self,
        *,
        readiness: Readiness,
        index_html: Callable[[], bytes],
        static: IResource,
        terminal: IResource,
        terminals: Terminals,
        events: IResource,
        tickets: Tickets,
    ) -> None:
        self.readiness = readiness
        #: The guard's tickets: issued here, redeemed by the guard.
        self.tickets = tickets
        self.index_html = index_html
        self.static = static
        self.terminal = terminal
        self.terminals = terminals
        self.events = events
        self.runtime: WorkshopRuntime | None = None
        self._steps: dict[str, bytes] = {}
        self._status: tuple[Status, bytes] | None = None

    def attach(self, runtime: WorkshopRuntime) -> None:
        """The working copy is open: serve the workshop from now on."""
        self.runtime = runtime

    def _runtime(self) -> WorkshopRuntime:
        if self.runtime is None:
            raise Starting()
        return self.runtime

    def resource(self) -> IResource:
        """The Klein resource for this app."""
        return self.app.resource()

    @staticmethod
    def body_cap(path: bytes) -> int:
        """The largest body a request to ``path`` may send (checked before it is read)."""
        return STATE_BODY_MAX if path.startswith(STATE_PREFIX) else BODY_MAX

    def route_of(self, request: IRequest) -> str:
        """The template of the route a request matched (``/api/v1/steps/{step_id}``), or ``other``.

        The rule Klein matched is the one source: no path patterns of our own.
        A request refused before routing is matched against the same rules.
        """
        mapper = getattr(IKleinRequest(request), "mapper", None)
        if mapper is None:
            mapper = self.app.url_map.bind("localhost")
        path = request.path.decode("latin-1", "replace").split("?", 1)[0]
        try:
            rule, _ = mapper.match(path, method=request.method.decode("latin-1"), return_rule=True)
        except HTTPException:
            return "other"
        return _RULE_PARAM.sub(lambda m: "{" + ("path" if m.group(1) == "__rest__" else m.group(1)) + "}", rule.rule)

    # -- probes -------------------------------------------------------------------

    @app.route("/healthz", methods=["GET", "HEAD"])
    def healthz(self, request: IRequest) -> bytes:
        """Liveness: the reactor answers."""
        return write_json(request, {"status": "ok"})

    @app.route("/readyz", methods=["GET", "HEAD"])
    def readyz(self, request: IRequest) -> bytes:
        """Readiness: the working copy is open and ttyd answers."""
        ready, reason = self.readiness()
        if ready:
            # Ready, but with a problem the operator should see (disk_full): still 200, since the
            # student needs the page and the terminal to fix it.
            return write_json(
                request, {"status": "ready"} if reason == "ready" else {"status": "ready", "reason": reason}
            )
        return write_json(request, {"status": "not_ready", "reason": reason}, 503)

    # -- the UI -------------------------------------------------------------------

    @app.route("/", methods=["GET", "HEAD"])
    def index(self, request: IRequest) -> bytes:
        """The student UI's page (its assets are under /static/)."""
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-cache")
        return self.index_html()

    @app.route("/static", methods=["GET", "HEAD"])
    def static_root(self, request: IRequest) -> bytes:
        """The folder itself: to its canonical address (a path, never a URL)."""
        request.setResponseCode(308)
        request.setHeader(b"Location", b"/static/")
        return b""

    @app.route("/static/", branch=True, methods=["GET", "HEAD"])
    def static_files(self, request: IRequest) -> IResource:
        """The UI's embedded assets."""
        return self.static

    @app.route("/assets/<string:digest>/<path:name>", methods=["GET", "HEAD"])
    def asset(self, request: IRequest, digest: str, name: str) -> IResource:
        """A distribution's asset, by content hash and path (no credentials: the URL is the capability)."""
        runtime = self._runtime()
        return AssetResource(runtime.asset(name, digest), runtime)

    @app.route("/terminal", methods=["GET"])
    def terminal_socket(self, request: IRequest) -> IResource:
        """``WS /terminal``: the bridge to ttyd."""
        return self.terminal

    @app.route("/api/v1/terminals", methods=["GET"])
    def terminal_list(self, request: IRequest) -> bytes:
        """The workspace's terminals, in the order they were opened (a reloaded page attaches to them)."""
        terminals = self.terminals
        return write_json(request, views.terminals_body(terminals.terminals(), terminals.terminal_limit))

    @app.route("/api/v1/terminals/<string:terminal_id>", methods=["DELETE"])
    def terminal_end(self, request: IRequest, terminal_id: str) -> bytes:
        """The student closed a terminal's tab: end its shell."""
        if not self.terminals.end_terminal(terminal_id):
            raise domain.NotFound("unknown_terminal", "There is no such terminal (it may have ended already).")
        request.setResponseCode(204)
        return b""

    @app.route("/api/v1/events", methods=["GET"])
    def event_stream(self, request: IRequest) -> IResource:
        """Server-Sent Events: status, validation, terminal."""
        return self.events

    # -- workshop and steps ---------------------------------------------------------

    @app.route("/api/v1/workshop", methods=["GET"])
    def workshop(self, request: IRequest) -> bytes:
        """The workshop and its step list with statuses."""
        runtime = self._runtime()
        return write_json(request, views.workshop_body(runtime.workshop, runtime.step_statuses()))

    @app.route("/api/v1/steps/<string:step_id>", methods=["GET"])
    def step(self, request: IRequest, step_id: str) -> bytes | Deferred[bytes]:
        """One step's content, rendered (and encoded once: a step never changes)."""
        runtime = self._runtime()
        body = self._steps.get(step_id)
        if body is not None:
            return write_json(request, None, encoded=body)

        def encoded(view: StepView) -> bytes:
            body = self._steps[step_id] = encode(views.step_body(view))
            return write_json(request, None, encoded=body)

        return Deferred.fromCoroutine(runtime.step(step_id)).addCallback(encoded)

    @app.route("/api/v1/steps/<string:step_id>/hints/<int:index>", methods=["GET"])
    async def hint(self, request: IRequest, step_id: str, index: int) -> bytes:
        """A hint revealed before (reading changes nothing; 409 if not revealed yet)."""
        html = await self._runtime().hint(step_id, index)
        return write_json(request, views.hint_body(index, html))

    @app.route("/api/v1/steps/<string:step_id>/hints/<int:index>", methods=["POST"])
    async def reveal_hint(self, request: IRequest, step_id: str, index: int) -> bytes:
        """Reveal a hint: recorded in progress (a POST: no link or image can do it)."""
        runtime = self._runtime()
        read_json(request, required=False)
        html = await runtime.reveal_hint(step_id, index)
        return write_json(request, views.hint_body(index, html))

    # -- tickets ------------------------------------------------------------------------

    @app.route("/api/v1/tickets", methods=["POST"])
    def ticket(self, request: IRequest) -> bytes:
        """A single-use ticket for the event stream or the terminal (which cannot send headers)."""
        read_json(request, required=False)
        return write_json(
            request, {"ticket": self.tickets.issue(), "expires_in": views.whole_seconds(self.tickets.lifetime)}
        )

    @app.route("/api/v1/status", methods=["GET"])
    def status(self, request: IRequest) -> bytes:
        """Where the student is and how the terminal is (what the operator polls).

        Encoded again only when it changed: a status is a value, compared whole.
        """
        status = self._runtime().status()
        cached = self._status
        if cached is None or cached[0] != status:
            cached = self._status = (status, encode(views.status_body(status)))
        return write_json(request, None, encoded=cached[1])

    @app.route("/api/v1/navigation", methods=["POST"])
    async def navigation(self, request: IRequest) -> bytes:
        """next / previous / jump / complete."""
        runtime = self._runtime()
        action, step_id = parse_navigation(read_json(request))
        return write_json(request, views.status_body(await runtime.navigate(action, step_id)))

    @app.route("/api/v1/steps/<string:step_id>/setup", methods=["POST"])
    def retry_setup(self, request: IRequest, step_id: str) -> bytes:
        """Run a step's failed background setup script again."""
        runtime = self._runtime()
        read_json(request, required=False)
        return write_json(request, views.setup_body(runtime.retry_setup(step_id)))

    @app.route("/api/v1/steps/<string:step_id>/setup/foreground", methods=["POST"])
    async def claim_foreground(self, request: IRequest, step_id: str) -> bytes:
        """The current step's foreground script, for the page to type: given out once, then 409."""
        runtime = self._runtime()
        read_json(request, required=False)
        script = await runtime.claim_foreground(step_id)
        return write_json(request, {"step": step_id, "script": script})

    @app.route("/api/v1/progress", methods=["GET"])
    async def progress(self, request: IRequest) -> bytes:
        """Per-step progress."""
        return write_json(request, views.progress_body(await self._runtime().progress()))

    # -- validation -------------------------------------------------------------------

    @app.route("/api/v1/steps/<string:step_id>/validation", methods=["POST"])
    async def validate(self, request: IRequest, step_id: str) -> bytes:
        """Run the step's checks now."""
        runtime = self._runtime()
        read_json(request, required=False)
        result = await runtime.validate(step_id, "request")
        return write_json(request, result.to_json())

    @app.route("/api/v1/steps/<string:step_id>/validation", methods=["GET"])
    async def last_validation(self, request: IRequest, step_id: str) -> bytes:
        """The last result, or 404 if never run."""
        return write_json(request, await self._runtime().last_validation(step_id))

    # -- custom state -------------------------------------------------------------------

    @app.route("/api/v1/state", methods=["GET"])
    async def state_all(self, request: IRequest) -> bytes:
        """Every custom state value, written a page at a time as the client reads (memory stays bounded)."""
        runtime = self._runtime()
        page = await runtime.state_page(None)
        write_json(request, None)
        drain = Drain(request)
        request.write(views.STATE_ALL_HEAD)
        first = True
        while page and not drain.gone:
            request.write(views.state_all_parts(page, first))
            first = False
            await drain.room()
            if drain.gone:
                break
            page = await runtime.state_page(page[-1][0])
        drain.done()
        return b"" if drain.gone else views.STATE_ALL_TAIL

    @app.route("/api/v1/state/<string:key>", methods=["GET"])
    async def state_get(self, request: IRequest, key: str) -> bytes:
        """One custom state value."""
        return write_json(request, views.state_body(await self._runtime().state_get(key)))

    @app.route("/api/v1/state/<string:key>", methods=["PUT"])
    async def state_put(self, request: IRequest, key: str) -> bytes:
        """Set a custom state value (any JSON, at most 64 KiB)."""
        runtime = self._runtime()
        value = read_json(request)
        return write_json(request, views.state_body(await runtime.state_put(key, value)))

    @app.route("/api/v1/state/<string:key>", methods=["DELETE"])
    async def state_delete(self, request: IRequest, key: str) -> bytes:
        """Delete a custom state value."""
        await self._runtime().state_delete(key)
        request.setResponseCode(204)
        return b""

    # -- errors -----------------------------------------------------------------------

    @app.handle_errors(ApiError)
    def api_error(self, request: IRequest, failure: Failure) -> bytes:
        """Refusals of the HTTP layer, as JSON."""
        return write_error(request, cast(ApiError, failure.value))

    @app.handle_errors(WorkshopError)
    def workshop_error(self, request: IRequest, failure: Failure) -> bytes:
        """Refusals of the application layer, through the one status table."""
        return write_error(request, api_error(cast(WorkshopError, failure.value)))

    @app.handle_errors(RequestRedirect)
    def redirect(self, request: IRequest, failure: Failure) -> bytes:
        """werkzeug's slash redirects, kept on this host (a path, never a URL)."""
        target = urlsplit(cast(RequestRedirect, failure.value).new_url)
        location = target.path + (f"?{target.query}" if target.query else "")
        request.setResponseCode(308)
        request.setHeader(b"Location", location.encode("utf-8"))
        return b""

    @app.handle_errors(NotFound)
    def not_found(self, request: IRequest, failure: Failure) -> bytes:
        """Unknown paths."""
        return write_error(request, ApiError(404, "not_found", "There is nothing at this address."))

    @app.handle_errors(MethodNotAllowed)
    def not_allowed(self, request: IRequest, failure: Failure) -> bytes:
        """Known paths, wrong method."""
        allowed = ", ".join(cast(MethodNotAllowed, failure.value).valid_methods or [])
        request.setHeader(b"Allow", allowed.encode("ascii"))
        return write_error(request, ApiError(405, "method_not_allowed", f"This address answers {allowed} only."))

    @app.handle_errors(HTTPException)
    def http_exception(self, request: IRequest, failure: Failure) -> bytes:
        """Any other routing refusal werkzeug raises."""
        error = cast(HTTPException, failure.value)
        return write_error(request, ApiError(error.code or 400, "bad_request", error.description or "Bad request."))

    @app.handle_errors(Exception)
    def bug(self, request: IRequest, failure: Failure) -> bytes:
        """A fault of ours: logged in full, revealed to nobody."""
        self.log.failure("unhandled error in {method} {path}", failure, method=request.method, path=request.path)
        return write_json(request, {"error": "internal_error", "message": "Something went wrong on our side."}, 500)
