"""The HTTP server around the Klein app: the guard first, then the app, and the access log.

- :class:`GuardedResource` sets the security headers on every response,
  runs the :class:`~workshop_backend.http.security.Guard` before anything
  else (a refusal is JSON, or the token page for the page itself), handles
  the ``?token=`` login, then hands the request to the app.
- :class:`WorkshopSite` logs one structured event per request (never the
  query string) and tells the metrics; it asks the API for each path's body
  cap and holds the guard and the per-client connection count that
  :mod:`~workshop_backend.http.limits` applies before a body is read.

A request that does not end with a normal answer is logged when its
connection ends: an event stream when its client goes, a WebSocket
handshake (the terminal) when the socket closes, each with its duration.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web import server
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

from workshop_backend.http.errors import write_error
from workshop_backend.http.limits import (
    IDLE_TIMEOUT,
    REQUEST_TIMEOUT,
    ClientLimit,
    LimitedChannel,
    LimitedRequest,
)
from workshop_backend.http.security import Guard, apply_headers


class RequestMetrics(Protocol):
    """What the site tells the metrics of each request."""

    def observe_request(self, route: str, status: int, seconds: float, method: str = "GET") -> None: ...


class GuardedResource(Resource):
    """Checks every request against the guard, then hands it to the app."""

    isLeaf = True

    def __init__(self, inner: IResource, guard: Guard, csp: bytes) -> None:
        super().__init__()
        self.inner = inner
        self.guard = guard
        self.csp = csp

    def render(self, request: IRequest) -> Any:
        """Headers, the guard, the login redirect, then the app."""
        apply_headers(request, self.csp)
        refusal = self.guard.check(request)
        if refusal is not None:
            page = self.guard.refusal_page(request, refusal)
            return page if page is not None else write_error(request, refusal)
        page = self.guard.login(request)
        if page is not None:
            return page
        channel = getattr(request, "channel", None)
        transport = getattr(channel, "transport", None)
        result = self.inner.render(request)
        if result is server.NOT_DONE_YET and transport is not None and getattr(channel, "transport", 1) is None:
            log_upgrade_on_close(request, transport)
        return result


def log_upgrade_on_close(request: IRequest, transport: Any) -> None:
    """A WebSocket took the connection over: log its handshake when the socket closes.

    The twisted.web request never finishes (Autobahn answers the handshake on
    the transport it took over), so the site would never log it: the access
    event is written when the WebSocket protocol says it has closed, with
    the status it answered (101, or the refusal) and the connection's
    duration.
    """
    protocol = getattr(transport, "protocol", None)
    closed = getattr(protocol, "is_closed", None)
    site = getattr(getattr(request, "channel", None), "site", None)
    if not isinstance(closed, Deferred) or not isinstance(site, WorkshopSite):
        return

    def log(_: object) -> None:
        answer = getattr(protocol, "http_response_data", None) or ""
        request.code = 101 if answer.startswith("HTTP/1.1 101") else 400  # type: ignore[attr-defined]
        site.log(request)

    closed.addBoth(log)


class WorkshopSite(server.Site):
    """A Site that logs one structured event per request, never its query string.

    Twisted's access log writes the whole URI, and a student's first URL
    carries the access token in ``?token=``: we log the path only.
    """

    noisy = False

    def __init__(
        self,
        resource: IResource,
        *,
        body_cap: Callable[[bytes], int],
        route_of: Callable[[IRequest], str],
        metrics: RequestMetrics | None = None,
        guard: Guard | None = None,
        clients: ClientLimit | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(resource, parsePOSTFormSubmission=False, **kwargs)
        self.body_cap = body_cap
        self.route_of = route_of
        self.metrics = metrics
        #: Judges each request's head before its body is read (None: no early check).
        self.guard = guard
        #: Open connections per client address (None: no limit).
        self.clients = clients
        # An instance attribute: a Logger on the class is a descriptor that
        # would rename itself after the class ("workshop_backend.http.site.WorkshopSite").
        self.access = Logger(namespace="workshop_backend.access", source=self)

    def log_refusal(self, method: bytes, path: bytes, status: int) -> None:
        """A request refused before it was whole (malformed, too slow, a line too long)."""
        self.access.info(
            "{method} {path} {status} {duration_ms:.1f} ms",
            method=method.decode("latin-1")[:16],
            path=path.decode("latin-1")[:256],
            status=status,
            duration_ms=0.0,
            bytes=0,
        )

    def log(self, request: Any) -> None:
        """One event per request: method, path, status, duration, bytes."""
        started = getattr(request, "started", 0.0)
        seconds = time.monotonic() - started if started else 0.0
        method = request.method.decode("latin-1")
        self.access.info(
            "{method} {path} {status} {duration_ms:.1f} ms",
            method=method,
            path=request.path.decode("latin-1"),
            status=request.code,
            duration_ms=seconds * 1000,
            bytes=request.sentLength,
        )
        if self.metrics is not None:
            # Matching the route costs a regex pass: only when metrics are on.
            self.metrics.observe_request(self.route_of(request), request.code, seconds, method)


def make_site(
    resource: IResource,
    *,
    body_cap: Callable[[bytes], int],
    route_of: Callable[[IRequest], str] = lambda request: "other",
    timeout: float = 60 * 5,
    request_timeout: float | None = REQUEST_TIMEOUT,
    idle_timeout: float | None = IDLE_TIMEOUT,
    reactor: IReactorTime | None = None,
    metrics: RequestMetrics | None = None,
    guard: Guard | None = None,
    clients: ClientLimit | None = None,
) -> server.Site:
    """The Site: limited requests and channels, no version header, deadlines.

    ``timeout`` is Twisted's per-byte idle timeout (a backstop);
    ``request_timeout`` and ``idle_timeout`` are :class:`LimitedChannel`'s.
    ``guard`` judges each request's head before its body is read;
    ``clients`` limits the open connections of each client address.
    """

    def channel() -> LimitedChannel:
        made = LimitedChannel()
        made.request_timeout = request_timeout
        made.idle_timeout = idle_timeout
        return made

    site = WorkshopSite(
        resource,
        body_cap=body_cap,
        route_of=route_of,
        metrics=metrics,
        guard=guard,
        clients=clients,
        requestFactory=LimitedRequest,
        timeout=timeout,
        reactor=reactor,
    )
    site.protocol = channel  # type: ignore[assignment]
    site.displayTracebacks = False
    return site
