"""Live events for the browser and the operator: a hub and a Server-Sent Events resource.

The backend publishes what changes (``status``, ``validation``, ``terminal``;
see contract section 4) on an :class:`EventHub`; every client of
``GET /api/v1/events`` holds an :class:`EventStreamResource` stream that
subscribes to the hub for as long as its connection lives.

The stream, on the wire (``text/event-stream``)::

    retry: 3000

    id: 1
    event: status
    data: {"phase": "ready", ...}

    : keep-alive

Each connection first gets the ``initial()`` events (a snapshot of the
current state, so a client that reconnects is up to date without a replay),
then every published event, numbered per connection.  ``Last-Event-ID`` is
not used: the snapshot replaces a replay.  A comment line every
``keepalive`` seconds keeps proxies from timing the connection out.

A client that stops reading is not allowed to grow the backend's memory: the
stream is a push producer registered with the request, buffers at most
``max_buffer`` bytes while the transport is full, and past that drops the
client (which reconnects and gets a fresh snapshot).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Protocol, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from workshop_backend.application.events import EventHub

InitialEvents = Callable[[], list[tuple[str, object]]]


class StreamRequest(Protocol):
    """What a stream needs of a ``twisted.web`` request (and what a test's fake provides)."""

    def setResponseCode(self, code: int, message: bytes | None = None) -> None: ...
    def setHeader(self, name: bytes, value: bytes) -> None: ...
    def write(self, data: bytes) -> None: ...
    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None: ...
    def notifyFinish(self) -> Deferred[None]: ...
    def loseConnection(self) -> None: ...


def encode_event(event: str, data: object, event_id: int | None = None) -> bytes:
    """One Server-Sent Event: ``id:``, ``event:``, ``data:`` (JSON, one line) and a blank line."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


KEEPALIVE = b": keep-alive\n\n"


class EventStreamResource(Resource):
    """``GET`` answers a never-ending ``text/event-stream`` fed by ``hub``.

    :param hub: where the events come from.
    :param clock: drives the keep-alive comments.
    :param keepalive: seconds between keep-alive comments.
    :param initial: called for each new connection; its events are sent first.
    :param retry: the reconnection delay suggested to clients, in seconds.
    :param max_buffer: bytes buffered for a client whose connection is full
        before that client is dropped.
    """

    isLeaf = True
    log = Logger()

    def __init__(
        self,
        hub: EventHub,
        clock: IReactorTime,
        *,
        keepalive: float = 15.0,
        initial: InitialEvents | None = None,
        retry: float = 3.0,
        max_buffer: int = 256 * 1024,
    ) -> None:
        super().__init__()
        self._hub = hub
        self._clock = clock
        self._keepalive = keepalive
        self._initial = initial
        self._retry_ms = round(retry * 1000)
        self._max_buffer = max_buffer
        self.streams: set[_Stream] = set()
        """The open connections (for tests and metrics)."""

    def _headers(self, request: StreamRequest) -> None:
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", b"text/event-stream")
        request.setHeader(b"Cache-Control", b"no-cache")
        request.setHeader(b"X-Accel-Buffering", b"no")

    def render_HEAD(self, request: object) -> bytes:
        """The headers of the stream, without the stream."""
        self._headers(cast(StreamRequest, request))
        return b""

    def render_GET(self, request: object) -> object:
        """Start streaming to ``request``; it ends when the client goes away."""
        stream_request = cast(StreamRequest, request)
        self._headers(stream_request)
        initial = self._initial() if self._initial is not None else []
        stream = _Stream(stream_request, self._clock, self._max_buffer, self.streams.discard)
        self.streams.add(stream)
        stream.start(self._hub, initial, self._retry_ms, self._keepalive)
        return NOT_DONE_YET


@implementer(IPushProducer)
class _Stream:
    """One client's connection: a push producer the transport pauses when full."""

    log = Logger()

    def __init__(self, request: StreamRequest, clock: IReactorTime, max_buffer: int, forget: Callable[[_Stream], None]):
        self._request = request
        self._clock = clock
        self._max_buffer = max_buffer
        self._forget = forget
        self._paused = False
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._closed = False
        self._next_id = 1
        self._unsubscribe: Callable[[], None] = lambda: None
        self._timer: IDelayedCall | None = None
        self._keepalive = 0.0

    def start(self, hub: EventHub, initial: list[tuple[str, object]], retry_ms: int, keepalive: float) -> None:
        self._request.registerProducer(self, True)
        self._request.notifyFinish().addBoth(self._finished)
        self._write(f"retry: {retry_ms}\n\n".encode())
        for event, data in initial:
            self.send(event, hub.serialize(data))
        self._unsubscribe = hub.subscribe(self.send)
        self._keepalive = keepalive
        self._schedule()

    def send(self, event: str, data: object) -> None:
        """Frame and write one event (buffered while the client is paused)."""
        if self._closed:
            return
        payload = encode_event(event, data, self._next_id)
        self._next_id += 1
        self._write(payload)

    def _write(self, payload: bytes) -> None:
        if self._closed:
            return
        if not self._paused:
            self._request.write(payload)
            return
        self._pending.append(payload)
        self._pending_size += len(payload)
        if self._pending_size > self._max_buffer:
            self.log.warn(
                "dropping an event stream client that does not read ({pending} bytes waiting)",
                pending=self._pending_size,
            )
            self._drop()

    def _schedule(self) -> None:
        if not self._closed:
            self._timer = self._clock.callLater(self._keepalive, self._ping)

    def _ping(self) -> None:
        self._timer = None
        if not self._paused:  # a paused client has data waiting: no need
            self._write(KEEPALIVE)
        self._schedule()

    # IPushProducer

    def pauseProducing(self) -> None:
        """The client's connection is full: buffer from now on."""
        self._paused = True

    def resumeProducing(self) -> None:
        """The connection has room again: write what waited."""
        self._paused = False
        pending, self._pending, self._pending_size = self._pending, [], 0
        for payload in pending:
            if self._closed:
                break
            self._request.write(payload)

    def stopProducing(self) -> None:
        """The connection is going away."""
        self._close()

    # ending

    def _finished(self, _: object) -> None:
        # notifyFinish fires (or errs, on a lost connection) once; either way
        # the client is gone.
        self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._unsubscribe()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._pending, self._pending_size = [], 0
        self._forget(self)

    def _drop(self) -> None:
        self._close()
        transport = getattr(self._request, "transport", None)
        abort = getattr(transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            self._request.loseConnection()
