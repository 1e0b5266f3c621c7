"""The HTTP API (contract section 4) as a Klein app over injected state.

Routes are thin: they read the request, call the
:class:`~workshop_backend.runtime.WorkshopRuntime` (or the store, for custom
state), and write JSON.  Every refusal is an :class:`ApiError` turned into a
JSON body by one handler; routing misses become JSON 404/405 the same way;
anything else is a bug, logged with its traceback and answered with a bare
500 that reveals nothing.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

from klein import Klein
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from workshop_backend.errors import ApiError, encode, write_json
from workshop_backend.runtime import WorkshopRuntime

STATE_KEY = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
STATE_VALUE_MAX = 64 * 1024

Readiness = Callable[[], tuple[bool, str]]


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


class Api:
    """The JSON API, the probes, the UI shell and the mount points."""

    app = Klein()
    log = Logger()

    def __init__(
        self,
        runtime: WorkshopRuntime,
        *,
        readiness: Readiness,
        index_html: Callable[[], bytes],
        static: IResource,
        terminal: IResource | None = None,
        events: IResource | None = None,
    ) -> None:
        self.runtime = runtime
        self.readiness = readiness
        self.index_html = index_html
        self.static = static
        self.terminal = terminal
        self.events = events
        self._steps: dict[str, bytes] = {}

    def resource(self) -> IResource:
        """The Klein resource for this app."""
        return self.app.resource()

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
            return write_json(request, {"status": "ready"})
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

    @app.route("/terminal", methods=["GET"])
    def terminal_socket(self, request: IRequest) -> IResource:
        """``WS /terminal``: the bridge to ttyd."""
        if self.terminal is None:
            raise ApiError(503, "terminal_unavailable", "This backend runs without a terminal.")
        return self.terminal

    @app.route("/api/v1/events", methods=["GET"])
    def event_stream(self, request: IRequest) -> IResource:
        """Server-Sent Events: status, validation, terminal."""
        if self.events is None:
            raise ApiError(503, "events_unavailable", "Live events are not available.")
        return self.events

    # -- workshop and steps ---------------------------------------------------------

    @app.route("/api/v1/workshop", methods=["GET"])
    def workshop(self, request: IRequest) -> bytes:
        """The workshop and its step list with statuses."""
        return write_json(request, self.runtime.workshop_json())

    @app.route("/api/v1/steps/<string:step_id>", methods=["GET"])
    def step(self, request: IRequest, step_id: str) -> bytes:
        """One step's content, rendered (and encoded once: a step never changes)."""
        body = self._steps.get(step_id)
        if body is None:
            body = self._steps[step_id] = encode(self.runtime.step_json(step_id))
        return write_json(request, None, encoded=body)

    @app.route("/api/v1/steps/<string:step_id>/hints/<int:index>", methods=["GET"])
    async def hint(self, request: IRequest, step_id: str, index: int) -> bytes:
        """One hint, its reveal recorded."""
        return write_json(request, await self.runtime.hint(step_id, index))

    @app.route("/api/v1/status", methods=["GET"])
    def status(self, request: IRequest) -> bytes:
        """Where the student is and how the terminal is."""
        return write_json(request, None, encoded=self.runtime.status_json())

    @app.route("/api/v1/navigation", methods=["POST"])
    async def navigation(self, request: IRequest) -> bytes:
        """next / previous / jump / complete."""
        body = read_json(request)
        return write_json(request, await self.runtime.navigate(body))

    @app.route("/api/v1/progress", methods=["GET"])
    async def progress(self, request: IRequest) -> bytes:
        """Per-step progress."""
        return write_json(request, await self.runtime.progress())

    # -- validation -------------------------------------------------------------------

    @app.route("/api/v1/steps/<string:step_id>/validation", methods=["POST"])
    async def validate(self, request: IRequest, step_id: str) -> bytes:
        """Run the step's checks now."""
        read_json(request, required=False)
        result = await self.runtime.validate(step_id, "request")
        return write_json(request, result.to_json())

    @app.route("/api/v1/steps/<string:step_id>/validation", methods=["GET"])
    async def last_validation(self, request: IRequest, step_id: str) -> bytes:
        """The last result, or 404 if never run."""
        return write_json(request, await self.runtime.last_validation(step_id))

    # -- custom state -------------------------------------------------------------------

    def _key(self, key: str) -> str:
        if not STATE_KEY.match(key):
            raise ApiError(400, "bad_key", "State keys are 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' and '-'.")
        return key

    @app.route("/api/v1/state", methods=["GET"])
    async def state_all(self, request: IRequest) -> bytes:
        """Every custom state value."""
        store = self.runtime.opened()[0]
        return write_json(request, {"state": await store.state_all()})

    @app.route("/api/v1/state/<string:key>", methods=["GET"])
    async def state_get(self, request: IRequest, key: str) -> bytes:
        """One custom state value."""
        store = self.runtime.opened()[0]
        entry = await store.state_get(self._key(key))
        if entry is None:
            raise ApiError(404, "unknown_key", f"There is no state value {key!r}.")
        return write_json(request, {"key": entry.key, "value": entry.value, "updated_at": entry.updated_at})

    @app.route("/api/v1/state/<string:key>", methods=["PUT"])
    async def state_put(self, request: IRequest, key: str) -> bytes:
        """Set a custom state value (any JSON, at most 64 KiB)."""
        store = self.runtime.opened()[0]
        key = self._key(key)
        value = read_json(request)
        encoded = encode(value).decode("utf-8")
        if len(encoded.encode("utf-8")) > STATE_VALUE_MAX:
            raise ApiError(413, "too_large", "A state value may be at most 64 KiB of JSON.")
        entry = await store.state_put(key, encoded, self.runtime.now())
        return write_json(request, {"key": entry.key, "value": entry.value, "updated_at": entry.updated_at})

    @app.route("/api/v1/state/<string:key>", methods=["DELETE"])
    async def state_delete(self, request: IRequest, key: str) -> bytes:
        """Delete a custom state value."""
        store = self.runtime.opened()[0]
        if not await store.state_delete(self._key(key)):
            raise ApiError(404, "unknown_key", f"There is no state value {key!r}.")
        request.setResponseCode(204)
        return b""

    # -- errors -----------------------------------------------------------------------

    @app.handle_errors(ApiError)
    def api_error(self, request: IRequest, failure: Failure) -> bytes:
        """Every refusal, as JSON."""
        error = cast(ApiError, failure.value)
        if error.status == 503:
            request.setHeader(b"Retry-After", b"1")
        return write_json(request, error.body(), error.status)

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
        return write_json(request, {"error": "not_found", "message": "There is nothing at this address."}, 404)

    @app.handle_errors(MethodNotAllowed)
    def not_allowed(self, request: IRequest, failure: Failure) -> bytes:
        """Known paths, wrong method."""
        allowed = ", ".join(cast(MethodNotAllowed, failure.value).valid_methods or [])
        request.setHeader(b"Allow", allowed.encode("ascii"))
        return write_json(
            request, {"error": "method_not_allowed", "message": f"This address answers {allowed} only."}, 405
        )

    @app.handle_errors(HTTPException)
    def http_exception(self, request: IRequest, failure: Failure) -> bytes:
        """Any other routing refusal werkzeug raises."""
        error = cast(HTTPException, failure.value)
        code = error.code or 400
        return write_json(request, {"error": "bad_request", "message": error.description or "Bad request."}, code)

    @app.handle_errors(Exception)
    def bug(self, request: IRequest, failure: Failure) -> bytes:
        """A fault of ours: logged in full, revealed to nobody."""
        self.log.failure("unhandled error in {method} {path}", failure, method=request.method, path=request.path)
        return write_json(request, {"error": "internal_error", "message": "Something went wrong on our side."}, 500)
