"""Tests for the event hub and the Server-Sent Events resource."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import ClientFactory, Protocol, connectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from zope.interface.verify import verifyObject

from workshop_backend.application.events import EventHub
from workshop_backend.http.events import KEEPALIVE, EventStreamResource, encode_event

REACTOR: Any = reactor
"""The global reactor, untyped (its interfaces' stubs are stricter than its classes)."""


class HubTests(SynchronousTestCase):
    """EventHub semantics."""

    def test_fan_out_in_order(self) -> None:
        """Every subscriber gets every event, in subscription order."""
        hub = EventHub()
        seen: list[tuple[str, str, object]] = []
        hub.subscribe(lambda e, d: seen.append(("a", e, d)))
        hub.subscribe(lambda e, d: seen.append(("b", e, d)))
        hub.publish("status", {"phase": "ready"})
        self.assertEqual(seen, [("a", "status", {"phase": "ready"}), ("b", "status", {"phase": "ready"})])

    def test_unsubscribe(self) -> None:
        """After unsubscribing nothing more arrives; unsubscribing twice is harmless."""
        hub = EventHub()
        seen: list[str] = []
        unsubscribe = hub.subscribe(lambda e, d: seen.append(e))
        hub.publish("one", None)
        unsubscribe()
        unsubscribe()
        hub.publish("two", None)
        self.assertEqual((seen, hub.subscriber_count), (["one"], 0))

    def test_raising_subscriber_dropped(self) -> None:
        """A subscriber that raises is logged and dropped; the others still get the event."""
        hub = EventHub()
        seen: list[str] = []

        def bad(event: str, data: object) -> None:
            raise ZeroDivisionError()

        hub.subscribe(bad)
        hub.subscribe(lambda e, d: seen.append(e))
        hub.publish("one", 1)
        hub.publish("two", 2)
        self.assertEqual(seen, ["one", "two"])
        self.assertEqual(hub.subscriber_count, 1)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_unsubscribed_during_publish(self) -> None:
        """A subscriber removed by an earlier one during a publish does not get that event."""
        hub = EventHub()
        seen: list[str] = []
        remove: list[Callable[[], None]] = []
        hub.subscribe(lambda e, d: remove[0]())
        remove.append(hub.subscribe(lambda e, d: seen.append("removed")))
        hub.subscribe(lambda e, d: seen.append("kept"))
        hub.publish("x", None)
        self.assertEqual((seen, hub.subscriber_count), (["kept"], 2))

    def test_bad_event_name(self) -> None:
        """Names that cannot be framed are refused with ValueError."""
        hub = EventHub()
        for name in ("", "a\nb", "a\rb"):
            with self.assertRaises(ValueError) as cm:
                hub.publish(name, None)
            self.assertEqual(str(cm.exception), f"bad event name: {name!r}")

    def test_unserialisable_data(self) -> None:
        """Data JSON cannot encode raises TypeError to the publisher; subscribers are kept."""
        hub = EventHub()
        seen: list[str] = []
        hub.subscribe(lambda e, d: seen.append(e))
        with self.assertRaises(TypeError):
            hub.publish("x", object())
        self.assertEqual((seen, hub.subscriber_count), ([], 1))


class _Transport:
    """Just enough of a TCP transport: records aborts."""

    def __init__(self) -> None:
        self.aborted = False

    def abortConnection(self) -> None:
        self.aborted = True


class _MemoryRequest:
    """An in-memory request: what EventStreamResource uses of twisted.web's Request."""

    method = b"GET"

    def __init__(self) -> None:
        self.code: int | None = None
        self.headers: dict[bytes, bytes] = {}
        self.written: list[bytes] = []
        self.producer: IPushProducer | None = None
        self.transport = _Transport()
        self.lost = False
        self._finished: list[Deferred[None]] = []

    def setResponseCode(self, code: int, message: bytes | None = None) -> None:
        self.code = code

    def setHeader(self, name: bytes, value: bytes) -> None:
        self.headers[name] = value

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        assert streaming
        verifyObject(IPushProducer, producer)
        self.producer = producer

    def notifyFinish(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._finished.append(d)
        return d

    def loseConnection(self) -> None:
        self.lost = True

    def disconnect(self) -> None:
        """The client went away: notifyFinish errs, as twisted.web does."""
        for d in self._finished:
            d.errback(Failure(ConnectionDone()))
        self._finished = []

    def text(self) -> str:
        return b"".join(self.written).decode()


class StreamTests(SynchronousTestCase):
    """EventStreamResource with a Clock and in-memory requests."""

    def setUp(self) -> None:
        self.hub = EventHub()
        self.clock = Clock()
        self.snapshot: list[tuple[str, object]] = [("status", {"phase": "ready"})]
        self.resource = EventStreamResource(self.hub, self.clock, keepalive=15.0, initial=lambda: self.snapshot)

    def connect(self) -> _MemoryRequest:
        request = _MemoryRequest()
        self.assertIs(self.resource.render(request), NOT_DONE_YET)
        return request

    def test_headers(self) -> None:
        """The response is an uncached, unbuffered event stream."""
        request = self.connect()
        self.assertEqual(request.code, 200)
        self.assertEqual(
            request.headers,
            {b"Content-Type": b"text/event-stream", b"Cache-Control": b"no-cache", b"X-Accel-Buffering": b"no"},
        )

    def test_head(self) -> None:
        """HEAD answers the headers and no stream (nothing subscribes)."""
        request = _MemoryRequest()
        request.method = b"HEAD"
        self.assertEqual(self.resource.render(request), b"")
        self.assertEqual(request.headers[b"Content-Type"], b"text/event-stream")
        self.assertEqual(self.hub.subscriber_count, 0)

    def test_initial_then_published(self) -> None:
        """A retry hint, then the initial events, then published ones, numbered from 1."""
        request = self.connect()
        self.hub.publish("validation", {"step": "s", "passed": True})
        self.assertEqual(
            request.text(),
            "retry: 3000\n\n"
            'id: 1\nevent: status\ndata: {"phase":"ready"}\n\n'
            'id: 2\nevent: validation\ndata: {"step":"s","passed":true}\n\n',
        )

    def test_data_with_newlines_stays_on_one_line(self) -> None:
        """Line breaks inside data are JSON escapes, so one event is one data line."""
        self.assertEqual(encode_event("x", {"t": "a\nb"}, 7), b'id: 7\nevent: x\ndata: {"t":"a\\nb"}\n\n')

    def test_keepalive(self) -> None:
        """A comment every ``keepalive`` seconds, driven by the clock."""
        request = self.connect()
        before = len(request.written)
        self.clock.advance(14.9)
        self.assertEqual(len(request.written), before)
        self.clock.advance(0.1)
        self.assertEqual(request.written[before:], [KEEPALIVE])
        self.clock.advance(15)
        self.assertEqual(request.written[before:], [KEEPALIVE, KEEPALIVE])

    def test_disconnect_unsubscribes(self) -> None:
        """A client that goes away is unsubscribed and its timer cancelled: nothing leaks."""
        first, second = self.connect(), self.connect()
        self.assertEqual((self.hub.subscriber_count, len(self.resource.streams)), (2, 2))
        first.disconnect()
        self.assertEqual((self.hub.subscriber_count, len(self.resource.streams)), (1, 1))
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        written = len(first.written)
        self.hub.publish("status", {})
        self.clock.advance(60)
        self.assertEqual(len(first.written), written)
        second.disconnect()
        self.assertEqual(
            (self.hub.subscriber_count, self.resource.streams, self.clock.getDelayedCalls()), (0, set(), [])
        )

    def test_stop_producing_unsubscribes(self) -> None:
        """The transport stopping the producer also ends the stream."""
        request = self.connect()
        assert request.producer is not None
        request.producer.stopProducing()
        self.assertEqual((self.hub.subscriber_count, self.clock.getDelayedCalls()), (0, []))

    def test_paused_client_buffers_then_flushes(self) -> None:
        """While the transport is full events wait (no keep-alives); on resume they go out in order."""
        request = self.connect()
        assert request.producer is not None
        request.producer.pauseProducing()
        before = len(request.written)
        self.hub.publish("a", 1)
        self.clock.advance(15)
        self.hub.publish("b", 2)
        self.assertEqual(len(request.written), before)
        request.producer.resumeProducing()
        self.assertEqual(request.written[before:], [encode_event("a", 1, 2), encode_event("b", 2, 3)])

    def test_slow_client_dropped(self) -> None:
        """A paused client whose backlog passes max_buffer is aborted and unsubscribed."""
        resource = EventStreamResource(self.hub, self.clock, max_buffer=1000)
        request = _MemoryRequest()
        resource.render(request)
        assert request.producer is not None
        request.producer.pauseProducing()
        self.hub.publish("big", "x" * 600)
        self.assertEqual((request.transport.aborted, self.hub.subscriber_count), (False, 1))
        self.hub.publish("big", "x" * 600)
        self.assertEqual((request.transport.aborted, self.hub.subscriber_count), (True, 0))
        self.assertEqual((resource.streams, self.clock.getDelayedCalls()), (set(), []))


class _Reader(Protocol):
    """A raw HTTP client that records what arrives and can wait for a substring."""

    def __init__(self) -> None:
        self.received = b""
        self.lost: Deferred[None] = Deferred()
        self._waiting: list[tuple[bytes, Deferred[None]]] = []

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        for item in list(self._waiting):
            if item[0] in self.received:
                self._waiting.remove(item)
                item[1].callback(None)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)

    def wait_for(self, text: bytes) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if text in self.received:
            d.callback(None)
        else:
            self._waiting.append((text, d))
        return d


class _Watched(EventStreamResource):
    """Records each request's notifyFinish, so the test can wait for the server to see a disconnect."""

    finished: list[Deferred[None]]

    def render_GET(self, request: Any) -> object:
        self.finished.append(request.notifyFinish())
        return super().render_GET(request)


class RealConnectionTests(TestCase):
    """One stream over a real TCP connection."""

    def test_receives_published_event(self) -> Deferred[None]:
        """A client connected over TCP gets the headers, the initial event and a published one."""
        hub = EventHub()
        events = _Watched(hub, REACTOR, initial=lambda: [("status", {"phase": "ready"})])
        events.finished = []
        root = Resource()
        root.putChild(b"events", events)
        port = REACTOR.listenTCP(0, Site(root), interface="127.0.0.1")
        self.addCleanup(port.stopListening)

        async def go() -> None:
            reader = _Reader()
            factory = ClientFactory.forProtocol(lambda: reader)
            REACTOR.connectTCP("127.0.0.1", port.getHost().port, factory)
            await reader.wait_for(b'data: {"phase":"ready"}\n\n')
            head = reader.received.split(b"\r\n\r\n", 1)[0].lower()
            self.assertTrue(head.startswith(b"http/1.1 200 ok"))
            self.assertIn(b"content-type: text/event-stream", head)
            hub.publish("validation", {"step": "s", "passed": False})
            await reader.wait_for(b"event: validation\n")
            await reader.wait_for(b'data: {"step":"s","passed":false}\n\n')
            self.assertEqual(hub.subscriber_count, 1)
            assert reader.transport is not None
            reader.transport.loseConnection()
            await events.finished[0].addErrback(lambda f: f.trap(ConnectionDone, ConnectionLost) and None)
            self.assertEqual((hub.subscriber_count, events.streams), (0, set()))

        return ensureDeferred(go())

    def test_client_that_does_not_read_is_dropped(self) -> Deferred[None]:
        """Over a real connection, a client that stops reading is dropped once its backlog is too big."""
        hub = EventHub()
        resource = EventStreamResource(hub, REACTOR, max_buffer=256 * 1024)
        port = REACTOR.listenTCP(0, Site(resource), interface="127.0.0.1")
        self.addCleanup(port.stopListening)

        async def go() -> None:
            reader = _Reader()
            REACTOR.connectTCP("127.0.0.1", port.getHost().port, ClientFactory.forProtocol(lambda: reader))
            await reader.wait_for(b"retry: 3000\n\n")
            transport: Any = reader.transport
            transport.pauseProducing()  # stop reading
            chunk = "x" * 10_000
            for _ in range(1000):  # at most 10 MB: the server's buffers fill long before
                hub.publish("big", chunk)
                if hub.subscriber_count == 0:
                    break
            self.assertEqual(hub.subscriber_count, 0)
            transport.resumeProducing()  # read again, to notice the server hung up
            await reader.lost

        return ensureDeferred(go())

    def test_json_payload_parses(self) -> None:
        """The data line is valid JSON a browser's JSON.parse accepts."""
        line = encode_event("status", {"a": [1, "é"]}, 1).decode().split("\n")[2]
        self.assertEqual(json.loads(line.removeprefix("data: ")), {"a": [1, "é"]})
