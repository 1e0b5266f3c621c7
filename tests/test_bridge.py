# mypy: allow-untyped-calls
"""Tests for :mod:`workshop_backend.terminal.bridge`, all in memory.

The browser is an Autobahn client talking to a real twisted.web ``Site``
serving the terminal resource, ttyd is an Autobahn server; both legs are
joined with ``twisted.test.iosim`` and driven with a ``Clock``: no sockets.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.types import ConnectionRequest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IProtocol
from twisted.internet.testing import AccumulatingProtocol, MemoryReactorClock
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IRequest
from twisted.web.server import Site

from tests.fakes import as_reactor
from workshop_backend.terminal.bridge import BrowserProtocol, TerminalBridge
from workshop_backend.terminal.fastpath import (
    COALESCE_DELAY,
    COALESCE_MAX,
    FAST_PATH_MAX_FRAME,
    frame_payloads,
    scan_data_frames,
    use_reactor_timers,
)
from workshop_backend.terminal.upstream import UpstreamProtocol


def frame(payload: bytes, first: int = 0x82) -> bytes:
    """An unmasked frame as a server (ttyd) sends it."""
    n = len(payload)
    if n < 126:
        return bytes([first, n]) + payload
    if n < 65536:
        return bytes([first, 126]) + n.to_bytes(2, "big") + payload
    return bytes([first, 127]) + n.to_bytes(8, "big") + payload


class Transport(iosim.FakeTransport):
    """iosim's transport, but one that stops delivering what it reads while paused (as a real one stops reading)."""

    def __init__(self, protocol: Any, isServer: bool, **kw: Any) -> None:
        super().__init__(protocol, isServer, **kw)
        self.paused = False
        self.held: list[bytes] = []

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        held, self.held = self.held, []
        for data in held:
            self.protocol.dataReceived(data)

    def bufferReceived(self, buf: Any) -> None:
        if self.paused:
            self.held.append(buf)
        else:
            super().bufferReceived(buf)


class FakeSupervisor:
    """A supervisor whose state the test sets."""

    def __init__(self) -> None:
        self.state = "running"
        self.reason: str | None = None
        self.socket_path = "/nonexistent/ttyd.sock"
        self.listeners: list[Any] = []

    def is_ready(self) -> bool:
        return self.state == "running"

    def add_listener(self, listener: Any) -> None:
        self.listeners.append(listener)

    def set(self, state: str, reason: str | None = None) -> None:
        self.state = state
        self.reason = reason
        for listener in self.listeners:
            listener({"state": state, "restarts": 0})


class Browser(WebSocketClientProtocol):
    """The browser's side: records what it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[tuple[bytes, bool]] = []
        self.opened = False
        self.closed: tuple[bool, int | None, str | None] | None = None

    def onOpen(self) -> None:
        self.opened = True

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.messages.append((payload, isBinary))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closed = (wasClean, code, reason)


class Ttyd(WebSocketServerProtocol):
    """ttyd's side: accepts ``tty`` and records what it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[tuple[bytes, bool]] = []
        self.pongs: list[bytes] = []
        self.closed: tuple[bool, int | None, str | None] | None = None

    def onConnect(self, request: ConnectionRequest) -> str:
        return "tty"

    def onPong(self, payload: bytes) -> None:
        self.pongs.append(payload)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.messages.append((payload, isBinary))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closed = (wasClean, code, reason)


class BridgeTestCase(SynchronousTestCase):
    """A terminal resource in a Site, memory browsers and memory ttyds."""

    def setUp(self) -> None:
        """The bridge over a fake supervisor, with the upstream connector under the test's control."""
        self.clock = MemoryReactorClock()
        self.supervisor = FakeSupervisor()
        self.pumps: list[iosim.IOPump] = []
        self.connects: list[tuple[Any, Deferred[IProtocol]]] = []
        self.ttyds: list[Ttyd] = []
        self.hook_requests: list[IRequest] = []
        self.refusal: tuple[int, str] | None = None
        self.cancelled: list[Any] = []
        self.bridge = self.make_bridge()

    def make_bridge(self, **kw: Any) -> TerminalBridge:
        def check(request: IRequest) -> tuple[int, str] | None:
            self.hook_requests.append(request)
            return self.refusal

        args: dict[str, Any] = {"check_handshake": check, "connect_upstream": self.connect, "max_pending_input": 100}
        args.update(kw)
        bridge = TerminalBridge(self.supervisor, as_reactor(self.clock), **args)
        self.site = Site(bridge.resource, reactor=self.clock)
        return bridge

    def connect(self, factory: Any) -> Deferred[IProtocol]:
        d: Deferred[IProtocol] = Deferred(lambda d: self.cancelled.append(factory))
        self.connects.append((factory, d))
        return d

    def flush(self) -> None:
        """Move bytes on every connection until nothing moves."""
        for _ in range(100):
            moved = [pump.pump() for pump in list(self.pumps)]
            if not any(moved):
                return
        raise AssertionError("still pumping")

    def open_browser(self, protocols: list[str] | None = None, origin: str | None = None) -> Browser:
        factory = WebSocketClientFactory(
            url="ws://127.0.0.1:8080/terminal",
            protocols=["tty"] if protocols is None else protocols,
            origin=origin,
            reactor=self.clock,
        )
        use_reactor_timers(factory, self.clock)
        factory.setProtocolOptions(serverConnectionDropTimeout=0)
        factory.protocol = Browser
        client = factory.buildProtocol(None)
        server = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        address = IPv4Address("TCP", "127.0.0.1", 8080)
        pump = iosim.connect(
            server,
            Transport(server, isServer=True, hostAddress=address),
            client,
            Transport(client, isServer=False, peerAddress=address),
            greet=False,
            clock=self.clock,
        )
        self.pumps.append(pump)
        self.flush()
        assert isinstance(client, Browser)
        return client

    def open_ttyd(self, index: int = -1) -> Ttyd:
        """Connect the pending upstream connection to a fresh memory ttyd."""
        factory, d = self.connects[index]
        client = factory.buildProtocol(None)
        server_factory = WebSocketServerFactory(protocols=["tty"], reactor=self.clock)
        use_reactor_timers(server_factory, self.clock)
        server_factory.protocol = Ttyd
        ttyd = server_factory.buildProtocol(None)
        pump = iosim.connect(
            ttyd,
            Transport(ttyd, isServer=True),
            client,
            Transport(client, isServer=False),
            greet=False,
            clock=self.clock,
        )
        self.pumps.append(pump)
        d.callback(client)
        self.flush()
        assert isinstance(ttyd, Ttyd)
        self.ttyds.append(ttyd)
        return ttyd

    def session(self) -> tuple[Browser, Ttyd]:
        browser = self.open_browser()
        self.assertTrue(browser.opened)
        return browser, self.open_ttyd()

    def browser_proto(self) -> BrowserProtocol:
        [proto] = self.bridge.connections
        return proto

    def upstream_proto(self) -> UpstreamProtocol:
        session = self.browser_proto().session
        assert session is not None and session.upstream is not None
        return session.upstream


class PassthroughTests(BridgeTestCase):
    """Messages pass unchanged both ways."""

    def test_both_ways(self) -> None:
        """Text stays text and binary stays binary, in both directions, byte for byte."""
        browser, ttyd = self.session()
        browser.sendMessage(b'{"AuthToken":"","columns":80,"rows":24}', False)
        browser.sendMessage(b"0ls\r", True)
        browser.sendMessage(b"1" + b'{"columns":100,"rows":30}', False)
        self.flush()
        self.assertEqual(
            ttyd.messages,
            [
                (b'{"AuthToken":"","columns":80,"rows":24}', False),
                (b"0ls\r", True),
                (b'1{"columns":100,"rows":30}', False),
            ],
        )
        ttyd.sendMessage(b"1bash", True)
        ttyd.sendMessage(b"0" + bytes(range(256)) * 40, True)
        self.flush()
        self.clock.advance(COALESCE_DELAY)
        self.flush()
        self.assertEqual(browser.messages, [(b"1bash", True), (b"0" + bytes(range(256)) * 40, True)])

    def test_subprotocol_and_no_compression(self) -> None:
        """Both legs speak tty without permessage-deflate."""
        browser, _ = self.session()
        upstream = self.upstream_proto()
        self.assertEqual(browser.websocket_protocol_in_use, "tty")
        self.assertIsNone(browser._perMessageCompress)
        self.assertEqual(upstream.websocket_protocol_in_use, "tty")
        self.assertIsNone(upstream._perMessageCompress)
        self.assertEqual(upstream.factory.perMessageCompressionOffers, [])

    def test_each_socket_its_own_upstream(self) -> None:
        """Two browser sockets make two ttyd sessions."""
        b1, t1 = self.session()
        b2, t2 = self.session()
        b1.sendMessage(b"0one", True)
        b2.sendMessage(b"0two", True)
        self.flush()
        self.assertEqual((t1.messages, t2.messages), ([(b"0one", True)], [(b"0two", True)]))
        self.assertEqual(len(self.bridge.connections), 2)

    def test_producers_linked(self) -> None:
        """Each leg's transport is the streaming producer of the other's, and unlinked on close."""
        browser, _ = self.session()
        proto = self.browser_proto()
        session = proto.session
        assert session is not None
        browser_transport: Any = proto.transport
        upstream_transport: Any = self.upstream_proto().transport
        self.assertTrue(browser_transport.streamingProducer)
        self.assertTrue(upstream_transport.streamingProducer)
        browser_transport.producer.pauseProducing()
        self.assertTrue(session.paused)
        self.assertTrue(upstream_transport.paused)
        browser_transport.producer.resumeProducing()
        self.assertFalse(session.paused)
        self.assertFalse(upstream_transport.paused)
        upstream_transport.producer.pauseProducing()
        self.assertTrue(browser_transport.paused)
        upstream_transport.producer.resumeProducing()
        self.assertFalse(browser_transport.paused)
        browser.sendClose(1000)
        self.flush()
        self.assertIsNone(browser_transport.producer)
        self.assertIsNone(upstream_transport.producer)


class FastPathTests(BridgeTestCase):
    """ttyd's data frames are forwarded byte for byte; everything else takes Autobahn's path."""

    def test_scan(self) -> None:
        """The scanner finds the run of complete final data frames and says what follows."""
        small, medium, big = frame(b"0a"), frame(b"0" * 300), frame(b"0" * 70000)
        self.assertEqual(scan_data_frames(small + medium + big), (len(small + medium + big), False))
        self.assertEqual(scan_data_frames(small + medium[:3]), (len(small), True))
        self.assertEqual(scan_data_frames(small + big[:5]), (len(small), True))
        self.assertEqual(scan_data_frames(small + b"\x82"), (len(small), True))
        self.assertEqual(scan_data_frames(frame(b"x", 0x81)), (3, False))
        self.assertEqual(scan_data_frames(small + frame(b"", 0x89) + small), (len(small), False))
        self.assertEqual(scan_data_frames(frame(b"0a", 0x02)), (0, False))
        self.assertEqual(scan_data_frames(frame(b"0a", 0xC2)), (0, False))
        self.assertEqual(scan_data_frames(bytes([0x82, 0x82]) + b"mask0a"), (0, False))
        huge = bytes([0x82, 127]) + (FAST_PATH_MAX_FRAME + 1).to_bytes(8, "big")
        self.assertEqual(scan_data_frames(huge), (0, False))

    def test_frame_payloads(self) -> None:
        """Where each payload of a run of frames is: short, 16-bit and 64-bit lengths, empty ones too."""
        payloads = [b"0a", b"", b"1" * 300, b"0" + b"z" * 70000]
        run = b"".join(frame(p) for p in payloads)
        self.assertEqual(scan_data_frames(run), (len(run), False))
        self.assertEqual([run[start:end] for start, end in frame_payloads(run)], payloads)
        self.assertEqual(list(frame_payloads(b"")), [])

    def test_split_control_and_fragments(self) -> None:
        """Split frames are joined, pings are answered, fragmented messages still arrive whole."""
        browser, ttyd = self.session()
        upstream = self.upstream_proto()
        data = frame(b"0" + b"x" * 1000)
        for piece in (data[:1], data[1:3], data[3:500], data[500:]):
            upstream.dataReceived(piece)
        upstream.dataReceived(frame(b"0one") + frame(b"ping!", 0x89) + frame(b"0two"))
        upstream.dataReceived(frame(b"0fr", 0x02) + frame(b"ag", 0x80) + frame(b"0three"))
        self.flush()
        self.assertEqual(
            browser.messages,
            [(b"0" + b"x" * 1000, True), (b"0one", True), (b"0two", True), (b"0frag", True), (b"0three", True)],
        )
        self.assertEqual(ttyd.pongs, [b"ping!"])
        self.assertGreaterEqual(upstream.trafficStats.incomingOctetsWireLevel, len(data))


class CoalesceTests(BridgeTestCase):
    """Bulk output is gathered briefly into fewer, larger writes; small output goes at once."""

    def setUp(self) -> None:
        """A session whose upstream protocol the test feeds directly."""
        super().setUp()
        self.browser, self.ttyd = self.session()
        self.upstream = self.upstream_proto()

    def test_small_output_at_once(self) -> None:
        """A keystroke echo is written to the browser without waiting."""
        self.upstream.dataReceived(frame(b"0a"))
        self.flush()
        self.assertEqual(self.browser.messages, [(b"0a", True)])

    def test_bulk_gathered_until_delay(self) -> None:
        """Full pty reads wait up to COALESCE_DELAY; then they go out together, in order."""
        chunks = [frame(b"0" + bytes([65 + i]) * 4095) for i in range(3)]
        for chunk in chunks:
            self.upstream.dataReceived(chunk)
        self.flush()
        self.assertEqual(self.browser.messages, [])
        self.assertEqual(self.bridge.buffered_bytes(), sum(len(c) for c in chunks))
        self.clock.advance(COALESCE_DELAY)
        self.flush()
        self.assertEqual(self.browser.messages, [(b"0" + bytes([65 + i]) * 4095, True) for i in range(3)])

    def test_small_read_flushes_the_burst(self) -> None:
        """The end of a burst (a short read) writes what was gathered, then itself."""
        self.upstream.dataReceived(frame(b"0" + b"x" * 5000))
        self.upstream.dataReceived(frame(b"0$ "))
        self.flush()
        self.assertEqual(self.browser.messages, [(b"0" + b"x" * 5000, True), (b"0$ ", True)])
        self.assertIsNone(self.upstream._flush_call)

    def test_size_cap(self) -> None:
        """COALESCE_MAX gathered bytes are written without waiting."""
        big = frame(b"0" + b"y" * 60000)
        count = COALESCE_MAX // len(big) + 1
        for _ in range(count):
            self.upstream.dataReceived(big)
        self.flush()
        self.assertEqual(len(self.browser.messages), count)

    def test_close_after_gathered_output(self) -> None:
        """Output gathered when ttyd closes reaches the browser before the close."""
        self.upstream.dataReceived(frame(b"0" + b"z" * 5000))
        self.ttyd.sendClose(1000)
        self.flush()
        self.assertEqual(self.browser.messages, [(b"0" + b"z" * 5000, True)])
        self.assertEqual(self.browser.closed, (True, 1000, "the shell exited"))

    def test_restart_after_gathered_output(self) -> None:
        """Output gathered when the terminal is closed for a restart goes before the close frame."""
        self.upstream.dataReceived(frame(b"0" + b"w" * 5000))
        self.supervisor.set("restarting")
        self.flush()
        self.assertEqual(self.browser.messages, [(b"0" + b"w" * 5000, True)])
        self.assertEqual(self.browser.closed, (True, 4002, "terminal restarting"))


class QueueTests(BridgeTestCase):
    """Input that arrives before ttyd's leg is open."""

    def test_queued_in_order(self) -> None:
        """Messages sent before the upstream opens are delivered in order once it does."""
        browser = self.open_browser()
        browser.sendMessage(b'{"columns":80,"rows":24}', False)
        browser.sendMessage(b"0x", True)
        self.flush()
        ttyd = self.open_ttyd()
        self.assertEqual(ttyd.messages, [(b'{"columns":80,"rows":24}', False), (b"0x", True)])
        self.assertEqual(self.browser_proto().buffered_bytes(), 0)

    def test_queue_bound(self) -> None:
        """More than max_pending_input bytes before the upstream opens closes the socket with 1008."""
        browser = self.open_browser()
        browser.sendMessage(b"0" + b"x" * 60, True)
        self.flush()
        self.assertIsNone(browser.closed)
        browser.sendMessage(b"0" + b"y" * 60, True)
        self.flush()
        self.assertEqual(browser.closed, (True, 1008, "too much input before the terminal was ready"))
        [(factory, _)] = self.connects
        self.assertEqual(self.cancelled, [factory])

    def test_browser_gone_before_upstream(self) -> None:
        """A browser that leaves while ttyd's leg is still handshaking closes that leg."""
        browser = self.open_browser()
        factory, _ = self.connects[0]
        client = factory.buildProtocol(None)
        self.assertIsInstance(client, UpstreamProtocol)
        transport = Transport(client, isServer=False)
        client.makeConnection(transport)
        browser.sendClose(1000)
        self.flush()
        self.assertEqual(self.bridge.connections, set())
        self.assertTrue(transport.disconnecting)


class CloseCodeTests(BridgeTestCase):
    """What the browser is told when its terminal ends."""

    def test_shell_exit_zero(self) -> None:
        """ttyd closing with 1000 (shell exited 0) closes the browser with 1000."""
        browser, ttyd = self.session()
        ttyd.sendClose(1000)
        self.flush()
        self.assertEqual(browser.closed, (True, 1000, "the shell exited"))

    def test_shell_exit_nonzero(self) -> None:
        """ttyd's invalid 1006 on the wire (shell exited non-zero) becomes 4000."""
        browser, ttyd = self.session()
        ttyd.sendMessage(b"0bye\r\n", True)
        ttyd.sendCloseFrame(1006)
        self.flush()
        self.assertEqual(browser.messages, [(b"0bye\r\n", True)])
        self.assertEqual(browser.closed, (True, 4000, "the shell exited with an error"))
        self.flushLoggedErrors()

    def test_connect_failure(self) -> None:
        """Failing to connect to ttyd closes the browser with 4001."""
        browser = self.open_browser()
        [(_, d)] = self.connects
        d.errback(Failure(ConnectionRefusedError()))
        self.flush()
        self.assertEqual(browser.closed, (True, 4001, "terminal unavailable: cannot connect to ttyd"))

    def test_not_ready(self) -> None:
        """A terminal asked for while ttyd is not running gets 4001 without trying to connect."""
        self.supervisor.state = "restarting"
        browser = self.open_browser()
        self.assertEqual(browser.closed, (True, 4001, "terminal unavailable (ttyd is restarting)"))
        self.assertEqual(self.connects, [])

    def test_failed_reason(self) -> None:
        """A failed supervisor's reason is in the 4001 close reason."""
        self.supervisor.state = "failed"
        self.supervisor.reason = "ttyd binary not found: /x"
        browser = self.open_browser()
        self.assertEqual(browser.closed, (True, 4001, "terminal unavailable: ttyd binary not found: /x"))

    def test_restart(self) -> None:
        """ttyd restarting closes open terminals with 4002 and hangs up their ttyd sessions."""
        browser, ttyd = self.session()
        self.supervisor.set("restarting")
        self.flush()
        self.assertEqual(browser.closed, (True, 4002, "terminal restarting"))
        self.assertEqual(ttyd.closed, (True, 1000, None))

    def test_upstream_dropped(self) -> None:
        """ttyd's connection dropping without a close frame closes the browser with 4002."""
        browser, ttyd = self.session()
        transport: Any = ttyd.transport
        transport.loseConnection()
        self.flush()
        self.assertEqual(browser.closed, (True, 4002, "terminal restarting: the connection to ttyd was lost"))

    def test_upstream_refuses_handshake(self) -> None:
        """ttyd's leg closing before it opened closes the browser with 4001."""
        browser = self.open_browser()
        factory, d = self.connects[0]
        client = factory.buildProtocol(None)
        transport = Transport(client, isServer=False)
        client.makeConnection(transport)
        d.callback(client)
        client.connectionLost(Failure(ConnectionRefusedError()))
        self.flush()
        self.assertEqual(browser.closed, (True, 4001, "terminal unavailable: ttyd did not accept the session"))

    def test_shutdown(self) -> None:
        """Stopping the bridge closes terminals with 1001 and fires once they are closed."""
        browser, ttyd = self.session()
        d = self.bridge.stopService()
        self.flush()
        self.assertEqual(browser.closed, (True, 1001, "backend shutting down"))
        self.assertEqual(ttyd.closed, (True, 1000, None))
        self.successResultOf(d)
        self.assertEqual([c for c in self.clock.getDelayedCalls() if c.active()], [])

    def test_supervisor_stopped(self) -> None:
        """The supervisor stopping closes terminals with 1001 too."""
        browser, _ = self.session()
        self.supervisor.set("stopped")
        self.flush()
        self.assertEqual(browser.closed, (True, 1001, "backend shutting down"))

    def test_close_all(self) -> None:
        """close_all closes every socket with the given code."""
        b1, _ = self.session()
        b2, _ = self.session()
        self.bridge.close_all(4002, "terminal restarting")
        self.flush()
        self.assertEqual([b1.closed, b2.closed], [(True, 4002, "terminal restarting")] * 2)
        self.assertEqual(self.bridge.connections, set())

    def test_browser_closes(self) -> None:
        """The browser closing closes the ttyd leg with 1000 (ttyd then hangs up the shell)."""
        browser, ttyd = self.session()
        browser.sendClose(1000)
        self.flush()
        self.assertEqual(ttyd.closed, (True, 1000, None))
        self.assertEqual(self.bridge.connections, set())

    def test_message_too_big(self) -> None:
        """A browser message over max_message_size fails the connection with 1009."""
        self.bridge = self.make_bridge(max_message_size=1024)
        browser, ttyd = self.session()
        browser.sendMessage(b"0" + b"x" * 2000, True)
        self.flush()
        self.assertEqual(browser.closed[1] if browser.closed else None, 1009)
        self.assertEqual(ttyd.messages, [])
        self.assertEqual(ttyd.closed, (True, 1000, None))


class HandshakeTests(BridgeTestCase):
    """The handshake check and the subprotocol."""

    def test_hook_sees_the_web_request(self) -> None:
        """The hook gets the twisted.web request of the handshake."""
        self.open_browser()
        [request] = self.hook_requests
        self.assertTrue(IRequest.providedBy(request))
        self.assertEqual(request.getHeader("upgrade"), "WebSocket")
        self.assertEqual(request.path, b"/terminal")

    def test_hook_refuses(self) -> None:
        """A refusal from the hook fails the handshake with its status; nothing reaches ttyd."""
        self.refusal = (401, "access token required")
        browser = self.open_browser()
        self.assertFalse(browser.opened)
        self.assertEqual(self.connects, [])
        self.assertEqual(self.bridge.connections, set())
        self.assertIsNotNone(browser.closed)
        self.assertIn("401", browser.http_status_line or "")

    def test_subprotocol_required(self) -> None:
        """A client that does not offer tty is refused with 400."""
        browser = self.open_browser(protocols=["chat"])
        self.assertFalse(browser.opened)
        self.assertIn("400", browser.http_status_line or "")


class PlainRequestTests(BridgeTestCase):
    """Requests that are not WebSocket handshakes."""

    def test_plain_get(self) -> None:
        """A GET without Upgrade gets a bare 426: no status page, no version, no open redirect."""
        server = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        client = AccumulatingProtocol()
        client.closedDeferred = None
        pump = iosim.connect(
            server,
            Transport(server, isServer=True),
            client,
            Transport(client, isServer=False),
            greet=False,
            clock=self.clock,
        )
        self.pumps.append(pump)
        request = b"GET /terminal?redirect=http%3A%2F%2Fevil.example%2F HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
        assert client.transport is not None
        client.transport.write(request)
        self.flush()
        response = bytes(client.data)
        self.assertTrue(response.startswith(b"HTTP/1.1 426 "), response)
        self.assertNotIn(b"evil.example", response)
        self.assertNotIn(b"utobahn", response)
        self.assertEqual(self.connects, [])
