"""Limits on what a client may send, and how slowly.

- :class:`LimitedRequest` refuses an oversized body with 413 as soon as the
  ``Content-Length`` says so, or as soon as a chunked body crosses the cap,
  without reading the rest (the connection is closed).  The cap of each
  path comes from the site (``site.body_cap(path)``), which asks the API: the
  routes know their limits, this module knows no paths.
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
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.iweb import IRequest

from workshop_backend.http.errors import raw_response

FALLBACK_CAP = 1024 * 1024
"""The body cap of a site that names none (``body_cap``)."""
REQUEST_TIMEOUT = 30.0
IDLE_TIMEOUT = 60.0


def _size(cap: int) -> str:
    """``1 MiB``, ``65 KiB``: a cap as a student reads it."""
    return f"{cap // (1024 * 1024)} MiB" if cap % (1024 * 1024) == 0 else f"{cap // 1024} KiB"


class LimitedRequest(server.Request):
    """A request that refuses a body over its cap without reading it."""

    _cap = 0  # set from the site once the headers are in (gotLength)
    _received = 0
    _refused = False
    started = 0.0

    def gotLength(self, length: int | None) -> None:
        """Called once the headers are in: refuse at once if Content-Length says too much."""
        self.started = time.monotonic()
        path = getattr(self.channel, "_path", b"") or b""
        site = getattr(self.channel, "site", None)
        cap = getattr(site, "body_cap", None)
        self._cap = cap(path.split(b"?", 1)[0]) if cap is not None else FALLBACK_CAP
        if length is not None and length > self._cap:
            super().gotLength(0)
            self._refuse()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        """Count body bytes as they come (chunked bodies have no length up front)."""
        if self._refused:
            return
        self._received += len(data)
        if self._received > self._cap:
            self._refuse()
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

    def _refuse(self) -> None:
        self._refused = True
        # No "100 Continue" after a refusal.
        self.requestHeaders.removeHeader(b"expect")
        transport = self.channel.transport
        if transport is not None:
            transport.write(raw_response(413, "too_large", f"The request body may be at most {_size(self._cap)}."))
        self.channel.loseConnection()


class LimitedChannel(http.HTTPChannel):
    """An HTTP channel with deadlines for idle connections and slow requests.

    Twisted's own ``timeOut`` restarts with every byte received; these two do
    not.  While a request is being answered neither runs (an event stream or
    a terminal may stay open for hours).
    """

    request_timeout: float | None = REQUEST_TIMEOUT
    idle_timeout: float | None = IDLE_TIMEOUT
    _deadline: IDelayedCall | None = None
    _started = False
    _host: Any = None

    def getHost(self) -> Any:
        """The local address, asked of the kernel once per connection, not per request."""
        if self._host is None:
            self._host = super().getHost()
        return self._host

    def connectionMade(self) -> None:
        """Start the idle deadline."""
        super().connectionMade()
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
        """No deadline for a connection that is gone."""
        self._arm(None)
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

    def _refuse_raw(self, status: int, code: str, message: str) -> None:
        if self.transport is not None and not getattr(self.transport, "disconnecting", False):
            self.transport.write(raw_response(status, code, message))
        self.timeoutConnection()
