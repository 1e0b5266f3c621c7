"""Limits on what a client may send, how slowly, and how many connections it may hold.

- :class:`LimitedRequest` decides on the request head, before any of the
  body is read: the site's guard judges the head (Host, Origin, path,
  credentials); a request it refuses, or one without credentials (no public
  address takes a body), that announces a body is answered at once and the
  connection closed, the body never read.  A body over its cap is refused
  with 413 as soon as the ``Content-Length`` says so, or as soon as a
  chunked body crosses the cap.  Bodies are kept in memory (they are at
  most 1 MiB, and only authenticated requests have one): never a temporary
  file.  Form bodies are never parsed (the API speaks JSON; Twisted would
  otherwise parse ``application/x-www-form-urlencoded`` into
  ``request.args`` before any resource runs).  The cap of each path comes
  from the site (``site.body_cap(path)``), which asks the API: the routes
  know their limits, this module knows no paths.
- :class:`ClientLimit` counts the open connections of each client address:
  past ``CONNECTIONS_PER_CLIENT`` a new connection is answered 503
  ``too_many_connections`` on its first request and closed.
- :class:`LimitedChannel` bounds how long a client may take to send a
  request: an idle connection is closed after ``idle_timeout`` seconds, and a
  request whose head and body have not all arrived ``request_timeout``
  seconds after its first byte gets 408 and is closed (a slowloris client
  that trickles one header byte at a time is dropped, whatever Twisted's
  per-byte idle timeout says).  Header limits are Twisted's: 16 KiB for the
  request line and headers together, 500 headers; a longer line gets 431.
"""

from __future__ import annotations

import time
from io import BytesIO
from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.iweb import IRequest

from workshop_backend.http.errors import ApiError, raw_response
from workshop_backend.http.security import Verdict

FALLBACK_CAP = 1024 * 1024
"""The body cap of a site that names none (``body_cap``)."""
REQUEST_TIMEOUT = 30.0
IDLE_TIMEOUT = 60.0
CONNECTIONS_PER_CLIENT = 64
"""Open connections of one client address, at most (a browser needs ~6, plus one per terminal)."""
REFUSED_TIMEOUT = 10.0
"""Seconds a connection past the limit has to send its request head before it is dropped."""


class Judge(Protocol):
    """What the request asks of the site's guard: the verdict on its head."""

    def verdict(self, request: Any) -> Verdict: ...


class ClientLimit:
    """Open connections per client address (loopback: everyone local is one client).

    Connections are counted by transport.  A WebSocket takes its transport
    over from the HTTP channel, which then never hears of its end; a
    transport that has disconnected is therefore forgotten the next time its
    address is counted, as well as when its channel ends.
    """

    def __init__(self, limit: int = CONNECTIONS_PER_CLIENT) -> None:
        self.limit = limit
        self._open: dict[str, set[Any]] = {}

    def admit(self, client: str, transport: Any) -> bool:
        """Count ``transport`` for ``client``; False (and not counted) past the limit."""
        live = self._live(client)
        if len(live) >= self.limit:
            return False
        live.add(transport)
        return True

    def release(self, client: str, transport: Any) -> None:
        """``transport`` has closed."""
        live = self._live(client)
        live.discard(transport)
        if not live:
            self._open.pop(client, None)

    def count(self, client: str) -> int:
        """Connections of ``client`` open now."""
        return len(self._live(client))

    def _live(self, client: str) -> set[Any]:
        live = self._open.setdefault(client, set())
        gone = {t for t in live if getattr(t, "disconnected", False)}
        live -= gone
        return live


def client_of(transport: Any) -> str:
    """The address a connection comes from (its host, without the port)."""
    peer = transport.getPeer() if transport is not None else None
    return str(getattr(peer, "host", None) or type(peer).__name__)


def _size(cap: int) -> str:
    """``1 MiB``, ``65 KiB``: a cap as a student reads it."""
    return f"{cap // (1024 * 1024)} MiB" if cap % (1024 * 1024) == 0 else f"{cap // 1024} KiB"


class LimitedRequest(server.Request):
    """A request judged on its head: a body is read only for a request allowed to send one."""

    _cap = 0  # set from the site once the headers are in (gotLength)
    _received = 0
    _refused = False
    started = 0.0
    logged = False

    def __init__(self, channel: Any, *args: Any, **kwargs: Any) -> None:
        # Form bodies are never parsed into request.args, whatever the Site says.
        kwargs["parsePOSTFormSubmission"] = False
        super().__init__(channel, *args, **kwargs)

    def gotLength(self, length: int | None) -> None:
        """The head is in: judge it, and refuse before the body if the body may not come."""
        self.started = time.monotonic()
        self._read_head()
        self.content = BytesIO()  # never a temporary file: the cap bounds it
        channel = self.channel
        site = getattr(channel, "site", None)
        has_body = length is None or length > 0  # None: chunked
        if getattr(channel, "over_limit", False):
            self._refuse(
                503,
                "too_many_connections",
                "Too many connections from your address: close some tabs or terminals, then try again.",
            )
            return
        cap = getattr(site, "body_cap", None)
        self._cap = cap(self.path) if cap is not None else FALLBACK_CAP
        guard: Judge | None = getattr(site, "guard", None)
        if guard is not None and has_body:
            verdict = guard.verdict(self)
            if verdict.refusal is not None:
                self._refuse_with(verdict.refusal)
                return
            if not verdict.authenticated:
                self._refuse(413, "body_not_allowed", "A request without credentials may not carry a body.")
                return
        if length is not None and length > self._cap:
            self._refuse(413, "too_large", f"The request body may be at most {_size(self._cap)}.")

    def _read_head(self) -> None:
        """Method, URI, path and query arguments from the head (what the guard judges).

        ``requestReceived`` sets the same values again once the body is in;
        with form parsing off, ``args`` are the query's alone.
        """
        channel = self.channel
        self.method = getattr(channel, "_command", b"") or b""
        self.uri = getattr(channel, "_path", b"") or b""
        self.clientproto = getattr(channel, "_version", b"") or b""
        self.path, _, query = self.uri.partition(b"?")
        self.args = http.parse_qs(query, 1) if query else {}

    def handleContentChunk(self, data: bytes) -> None:
        """Count body bytes as they come (chunked bodies have no length up front)."""
        if self._refused:
            return
        self._received += len(data)
        if self._received > self._cap:
            self._refuse(413, "too_large", f"The request body may be at most {_size(self._cap)}.")
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """Do not process a request that was refused."""
        if self._refused:
            return
        super().requestReceived(command, path, version)

    def write(self, data: bytes) -> None:
        """Send no ``Server`` header (Twisted names itself and its version in it)."""
        if not self.startedWriting:
            self.responseHeaders.removeHeader(b"server")
        super().write(data)

    def connectionLost(self, reason: Failure) -> None:
        """A request whose client left before its answer ended (an event stream...) is logged too."""
        site = getattr(self.channel, "site", None)
        super().connectionLost(reason)
        if not self.finished:
            self._access_log(site)

    def _access_log(self, site: Any) -> None:
        """One access event per request, also for those that never finish normally."""
        if self.logged or site is None or not self.started:
            return
        self.logged = True
        site.log(self)

    def _refuse_with(self, error: ApiError) -> None:
        self._refuse(error.status, error.code, error.message)

    def _refuse(self, status: int, code: str, message: str) -> None:
        self._refused = True
        self.code = status
        # No "100 Continue" after a refusal.
        self.requestHeaders.removeHeader(b"expect")
        transport = self.channel.transport
        if transport is not None:
            transport.write(raw_response(status, code, message))
        self._access_log(getattr(self.channel, "site", None))
        self.channel.loseConnection()


class LimitedChannel(http.HTTPChannel):
    """An HTTP channel with deadlines for idle connections and slow requests.

    Twisted's own ``timeOut`` restarts with every byte received; these two do
    not.  While a request is being answered neither runs (an event stream or
    a terminal may stay open for hours).
    """

    request_timeout: float | None = REQUEST_TIMEOUT
    idle_timeout: float | None = IDLE_TIMEOUT
    over_limit = False
    """Past the site's per-client limit: the first request is answered 503."""
    _deadline: IDelayedCall | None = None
    _started = False
    _host: Any = None
    _client: str | None = None

    def getHost(self) -> Any:
        """The local address, asked of the kernel once per connection, not per request."""
        if self._host is None:
            self._host = super().getHost()
        return self._host

    def connectionMade(self) -> None:
        """Count the connection against its client's limit; start the idle deadline."""
        super().connectionMade()
        limit: ClientLimit | None = getattr(getattr(self, "site", None), "clients", None)
        if limit is not None:
            client = client_of(self.transport)
            if limit.admit(client, self.transport):
                self._client = client
            else:
                self.over_limit = True
                self._arm(REFUSED_TIMEOUT)
                return
        self._arm(self.idle_timeout)

    def dataReceived(self, data: bytes) -> None:
        """The first byte of a request starts its deadline."""
        if not self._started and not self._handlingRequest and data:
            self._started = True
            self._arm(self.request_timeout)
        super().dataReceived(data)

    def allContentReceived(self) -> None:
        """The whole request is in: no deadline while it is answered."""
        self._arm(None)
        super().allContentReceived()

    def requestDone(self, request: IRequest) -> None:
        """Answered: the connection is idle again (if it stays open)."""
        super().requestDone(request)
        self._started = False
        if self.persistent and self.transport is not None and not getattr(self.transport, "disconnecting", False):
            self._arm(self.idle_timeout)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """No deadline for a connection that is gone; it no longer counts against its client."""
        self._arm(None)
        limit: ClientLimit | None = getattr(getattr(self, "site", None), "clients", None)
        if limit is not None and self._client is not None:
            limit.release(self._client, self.transport)
        super().connectionLost(reason)

    def lineLengthExceeded(self, line: bytes) -> None:
        """A request line or header over 16 KiB: 431, then close."""
        self._refuse_raw(431, "headers_too_large", "A header line is too long.")

    def _arm(self, seconds: float | None) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        if seconds:
            self._deadline = self.callLater(seconds, self._expired)

    def _expired(self) -> None:
        self._deadline = None
        if self._handlingRequest:
            return
        if self._started:
            self._refuse_raw(408, "request_timeout", "The request took too long to arrive.")
        else:
            self.timeoutConnection()

    def _respondToBadRequestAndDisconnect(self) -> None:
        """Twisted's 400 for malformed framing: logged like any other answer."""
        self._log_refusal(400)
        super()._respondToBadRequestAndDisconnect()

    def _refuse_raw(self, status: int, code: str, message: str) -> None:
        if self.transport is not None and not getattr(self.transport, "disconnecting", False):
            self.transport.write(raw_response(status, code, message))
        self._log_refusal(status)
        self.timeoutConnection()

    def _log_refusal(self, status: int) -> None:
        """A request refused before it was whole (no request object answers it): one access event."""
        log_refusal = getattr(getattr(self, "site", None), "log_refusal", None)
        if log_refusal is not None:
            method = getattr(self, "_command", b"") or b"-"
            uri = getattr(self, "_path", b"") or b"-"
            log_refusal(method, uri.split(b"?", 1)[0], status)
