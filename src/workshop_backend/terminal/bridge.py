# mypy: allow-untyped-calls
# (Autobahn's and twisted.web's APIs are largely unannotated.)
"""``WS /terminal``: the browser's WebSocket bridged to ttyd's ``/ws``.

Every browser socket gets its own Autobahn client connection to ttyd over
ttyd's UNIX socket (so its own shell).  Messages pass unchanged both ways
(text stays text, binary stays binary); nothing is compressed.

ttyd's output takes a fast path (:mod:`~workshop_backend.terminal.fastpath`):
complete data frames are written to the browser's transport byte for byte,
and bulk output is gathered for a few milliseconds so the browser's socket
gets fewer, larger writes.

Backpressure: once both legs are open, each leg's transport is registered as a
streaming producer of the other leg's transport (through :class:`_Valve`,
which forwards pause and resume but not ``stopProducing``, so that closing one
leg closes the other with a proper close code rather than a bare TCP close).
A browser that stops reading fills its transport's buffer, which pauses
reading from ttyd, which stops ttyd reading the pty, which blocks the shell.

Close codes sent to the browser (see ``docs/terminal.md``):

====  =====================================================================
1000  the shell exited with status 0 (ttyd closed with 1000)
4000  the shell exited otherwise (ttyd closes with 1006 on the wire)
4001  terminal unavailable (ttyd not running, connecting to it failed)
4002  terminal restarting (ttyd restarted, or its connection dropped)
1001  backend shutting down
1008  too much input before the terminal was ready
====  =====================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.util import encode_truncate
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IPushProducer
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from workshop_backend.support.reactor import IBackendReactor
from workshop_backend.terminal.fastpath import (
    FastPathClient,
    cancel_close_timer,
    transport_buffered,
    unparsed_bytes,
    use_reactor_timers,
)

SUBPROTOCOL = "tty"

CLOSE_SHELL_EXITED = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_SHELL_FAILED = 4000
CLOSE_UNAVAILABLE = 4001
CLOSE_RESTARTING = 4002

#: ttyd's close code when the shell exits non-zero (invalid on the wire).
TTYD_ABNORMAL = 1006

HandshakeCheck = Callable[[IRequest], "tuple[int, str] | None"]
ConnectUpstream = Callable[[IProtocolFactory], "Deferred[IProtocol]"]

log = Logger(namespace="workshop_backend.terminal.bridge")


class TerminalSupervisor(Protocol):
    """What the bridge needs of :class:`workshop_backend.terminal.supervisor.TtydSupervisor`."""

    @property
    def state(self) -> str: ...

    @property
    def reason(self) -> str | None: ...

    @property
    def socket_path(self) -> str: ...

    def is_ready(self) -> bool: ...

    def add_listener(self, listener: Callable[[dict[str, Any]], None]) -> None: ...


_OPEN = WebSocketProtocol.STATE_OPEN
_CONNECTING = WebSocketProtocol.STATE_CONNECTING
_CLOSED = WebSocketProtocol.STATE_CLOSED


@implementer(IPushProducer)
class _Valve:
    """One leg's transport as the push producer of the other leg's transport."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self.paused = False
        self.pauses = 0

    def pauseProducing(self) -> None:
        if not self.paused:
            self.paused = True
            self.pauses += 1
            self._transport.pauseProducing()

    def resumeProducing(self) -> None:
        if self.paused:
            self.paused = False
            self._transport.resumeProducing()

    def stopProducing(self) -> None:
        """Ignored: each leg closes the other itself, with a close code."""


class UpstreamProtocol(FastPathClient):
    """The bridge's client connection to ttyd for one browser socket.

    ttyd's data frames go to the browser's transport byte for byte
    (:class:`~workshop_backend.terminal.fastpath.FastPathClient`); anything
    else arrives as a message and is sent on as one.
    """

    def __init__(self) -> None:
        super().__init__()
        self.browser: BrowserProtocol | None = None
        self.opened = False
        self.got_close_frame = False
        self.close_frame_code: int | None = None

    def forward_frames(self, frames: bytes) -> None:
        """Write ttyd's frames to the browser (dropped if its side is closed already)."""
        browser = self.browser
        if browser is not None and browser.state == _OPEN and browser.transport is not None:
            browser.transport.write(frames)

    def onOpen(self) -> None:
        self.opened = True
        if self.browser is not None:
            self.browser.upstream_opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.flush()
        browser = self.browser
        if browser is not None and browser.state == _OPEN:
            browser.sendMessage(payload, isBinary)

    def onCloseFrame(self, code: int, reasonRaw: bytes) -> Any:
        # Seen before Autobahn judges the code: ttyd's 1006 is a protocol
        # error to Autobahn but means "the shell exited non-zero" to us.
        self.got_close_frame = True
        self.close_frame_code = code
        return super().onCloseFrame(code, reasonRaw)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.flush()
        browser, self.browser = self.browser, None
        if browser is not None:
            browser.upstream_closed(self)


class UpstreamFactory(WebSocketClientFactory):
    """Builds the one :class:`UpstreamProtocol` of a browser socket."""

    protocol = UpstreamProtocol

    def __init__(self, browser: BrowserProtocol, bridge: TerminalBridge) -> None:
        super().__init__(url="ws://localhost/ws", protocols=[SUBPROTOCOL], reactor=bridge.reactor)
        self.browser = browser
        use_reactor_timers(self, bridge.reactor)
        self.setProtocolOptions(
            perMessageCompressionOffers=[],
            openHandshakeTimeout=bridge.open_handshake_timeout,
            closeHandshakeTimeout=bridge.close_handshake_timeout,
            autoPingInterval=0,
            serverConnectionDropTimeout=0,
        )

    def buildProtocol(self, addr: Any) -> UpstreamProtocol:
        proto = super().buildProtocol(addr)
        assert isinstance(proto, UpstreamProtocol)
        proto.browser = self.browser
        self.browser.upstream = proto
        return proto


class BrowserProtocol(WebSocketServerProtocol):
    """One browser terminal socket."""

    def __init__(self) -> None:
        super().__init__()
        self.bridge: TerminalBridge | None = None
        self.http_request: IRequest | None = None
        self.upstream: UpstreamProtocol | None = None
        self.close_code: int | None = None
        self.opened_terminal = False
        self._connecting: Deferred[IProtocol] | None = None
        self._pending: list[tuple[bytes, bool]] = []
        self._pending_bytes = 0
        self._links: tuple[tuple[Any, _Valve], tuple[Any, _Valve]] | None = None
        self._gone = False

    # -- autobahn callbacks ----------------------------------------------

    def connectionMade(self) -> None:
        # WebSocketResource took this transport over from HTTPChannel, which
        # is still registered as its producer (registerProducer would raise).
        transport: Any = self.transport
        if transport is not None:
            transport.unregisterProducer()
        super().connectionMade()
        assert self.bridge is not None
        self.bridge.connections.add(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        cancel_close_timer(self)

    def onConnect(self, request: ConnectionRequest) -> str:
        assert self.bridge is not None
        if self.http_request is None:
            raise ConnectionDeny(500, "the terminal is served only through its resource")
        refusal = self.bridge.check_handshake(self.http_request)
        self.http_request = None  # judged: do not keep the request alive with the socket
        if refusal is not None:
            code, reason = refusal
            raise ConnectionDeny(code, reason)
        if SUBPROTOCOL not in request.protocols:
            raise ConnectionDeny(400, "the terminal speaks only the WebSocket subprotocol 'tty'")
        return SUBPROTOCOL

    def onOpen(self) -> None:
        bridge = self.bridge
        assert bridge is not None
        supervisor = bridge.supervisor
        if not supervisor.is_ready():
            self.close_browser(CLOSE_UNAVAILABLE, bridge.unavailable_reason())
            return
        log.info("terminal opened for {peer}", peer=self.peer)
        self.opened_terminal = True
        bridge.on_opened()
        d = bridge.connect_upstream(UpstreamFactory(self, bridge))
        self._connecting = d

        def connected(proto: IProtocol) -> None:
            self._connecting = None

        def failed(f: Failure) -> None:
            self._connecting = None
            if f.check(CancelledError) or self._gone:
                return
            log.warn("cannot connect to ttyd: {error}", error=f.getErrorMessage())
            self.close_browser(CLOSE_UNAVAILABLE, "terminal unavailable: cannot connect to ttyd")

        d.addCallbacks(connected, failed)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        upstream = self.upstream
        if upstream is not None and upstream.opened and upstream.state == _OPEN:
            upstream.sendMessage(payload, isBinary)
            return
        if self.close_code is not None:
            return
        assert self.bridge is not None
        self._pending_bytes += len(payload)
        if self._pending_bytes > self.bridge.max_pending_input:
            self._pending.clear()
            self.close_browser(CLOSE_POLICY, "too much input before the terminal was ready")
            return
        self._pending.append((payload, isBinary))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.close_code is None and not self._gone:
            # The browser went away (tab closed, network gone): one event, as for our closes.
            log.info("terminal closed by the browser: {code}", code=code, clean=wasClean, peer=self.peer)
        self._gone = True
        self._pending.clear()
        if self.bridge is not None:
            self.bridge.forget(self)
        self._unlink()
        if self._connecting is not None:
            connecting, self._connecting = self._connecting, None
            connecting.cancel()
        self._close_upstream()

    # -- the upstream leg --------------------------------------------------

    def upstream_opened(self, upstream: UpstreamProtocol) -> None:
        """ttyd accepted the session: send what the browser typed so far and link the legs."""
        if upstream is not self.upstream or self._gone or self.close_code is not None:
            upstream.sendClose(1000)
            return
        pending, self._pending = self._pending, []
        self._pending_bytes = 0
        for payload, is_binary in pending:
            upstream.sendMessage(payload, is_binary)
        self._link(upstream)

    def upstream_closed(self, upstream: UpstreamProtocol) -> None:
        """ttyd's side closed: close the browser's with the matching code."""
        if upstream is not self.upstream:
            return
        self.upstream = None
        self._unlink()
        if self._gone:
            return
        assert self.bridge is not None
        code, reason = self.bridge.close_code_for(upstream)
        self.close_browser(code, reason)

    def _close_upstream(self) -> None:
        upstream, self.upstream = self.upstream, None
        if upstream is None:
            return
        upstream.flush()  # or drop, if the browser's side is closed already
        upstream.browser = None
        state = getattr(upstream, "state", None)  # None: not connected yet
        if state == _OPEN:
            # ttyd hangs up the shell (SIGHUP to its process group).
            upstream.sendClose(1000)
        elif state is not None and state != _CLOSED:
            upstream.dropConnection(abort=True)

    def _link(self, upstream: UpstreamProtocol) -> None:
        browser_transport: Any = self.transport
        upstream_transport: Any = upstream.transport
        if browser_transport is None or upstream_transport is None:
            return
        to_upstream, to_browser = _Valve(upstream_transport), _Valve(browser_transport)
        browser_transport.registerProducer(to_upstream, True)
        upstream_transport.registerProducer(to_browser, True)
        self._links = ((browser_transport, to_upstream), (upstream_transport, to_browser))

    def _unlink(self) -> None:
        if self._links is None:
            return
        links, self._links = self._links, None
        for transport, valve in links:
            if getattr(transport, "producer", None) is valve:
                transport.unregisterProducer()
        for _, valve in links:
            valve.resumeProducing()

    # -- closing -------------------------------------------------------------

    def close_browser(self, code: int, reason: str) -> None:
        """Close the browser's socket with ``code`` (and the ttyd leg with it)."""
        if self.close_code is not None or self._gone:
            return
        self.close_code = code
        self._pending.clear()
        log.info("closing terminal: {code} {reason}", code=code, reason=reason)
        if self.upstream is not None:
            self.upstream.flush()  # output already read goes before the close frame
        if self.state == _OPEN:
            # sendCloseFrame, not sendClose: sendClose refuses 1001 and 1008.
            self.sendCloseFrame(code, encode_truncate(reason, 123))
        elif self.state != _CLOSED:
            self.dropConnection(abort=True)
        self._unlink()
        self._close_upstream()

    # -- diagnostics ---------------------------------------------------------

    def buffered_bytes(self) -> int:
        """Bytes this terminal holds in memory: write buffers, unparsed input, queued input."""
        total = transport_buffered(self.transport) + unparsed_bytes(self) + self._pending_bytes
        upstream = self.upstream
        if upstream is not None:
            total += transport_buffered(upstream.transport) + upstream.held_bytes()
        return total

    def paused(self) -> bool:
        """True while reading from ttyd is paused because the browser is not reading."""
        return self._links is not None and self._links[0][1].paused

    def pauses(self) -> int:
        """How many times reading from ttyd was paused."""
        return self._links[0][1].pauses if self._links is not None else 0


class BrowserFactory(WebSocketServerFactory):
    """The server factory behind :class:`TerminalResource`."""

    protocol = BrowserProtocol

    def __init__(self, bridge: TerminalBridge) -> None:
        super().__init__(protocols=[SUBPROTOCOL], reactor=bridge.reactor, server=None)
        self.bridge = bridge
        self.pending_request: IRequest | None = None
        use_reactor_timers(self, bridge.reactor)
        self.setProtocolOptions(
            # Origins are judged by check_handshake (the security policy), not
            # by Autobahn's pattern list; a "null" Origin is never allowed.
            allowedOrigins=["*"],
            allowNullOrigin=False,
            maxFramePayloadSize=bridge.max_message_size,
            maxMessagePayloadSize=bridge.max_message_size,
            autoPingInterval=bridge.auto_ping_interval,
            autoPingTimeout=bridge.auto_ping_timeout,
            autoPingSize=12,
            openHandshakeTimeout=bridge.open_handshake_timeout,
            closeHandshakeTimeout=bridge.close_handshake_timeout,
            perMessageCompressionAccept=lambda offers: None,
            requireMaskedClientFrames=True,
            failByDrop=False,
            # No Autobahn status page (it names Autobahn's version and 303-redirects
            # anywhere on ?redirect=): a request without Upgrade gets a bare 426.
            webStatus=False,
            trustXForwardedFor=0,
        )
        self.server = "workshop-backend"

    def buildProtocol(self, addr: Any) -> BrowserProtocol:
        proto = super().buildProtocol(addr)
        assert isinstance(proto, BrowserProtocol)
        proto.bridge = self.bridge
        proto.http_request = self.pending_request
        return proto


class TerminalResource(WebSocketResource):
    """The ``/terminal`` resource: hands the twisted.web request to the handshake check."""

    def __init__(self, factory: BrowserFactory, bridge: TerminalBridge) -> None:
        super().__init__(factory)
        self._browser_factory = factory
        self.bridge = bridge

    def render(self, request: IRequest) -> Any:
        self._browser_factory.pending_request = request
        try:
            result = super().render(request)
        finally:
            self._browser_factory.pending_request = None
        if result is NOT_DONE_YET:
            # HTTPChannel no longer owns the transport: its idle timer must not fire.
            channel = getattr(request, "channel", None)
            if channel is not None and hasattr(channel, "setTimeout"):
                channel.setTimeout(None)
        return result


class TerminalBridge(Service):
    """Owns the terminal sockets: the resource, the close-all on restart and shutdown."""

    name = "terminal-bridge"

    def __init__(
        self,
        supervisor: TerminalSupervisor,
        reactor: IBackendReactor,
        *,
        check_handshake: HandshakeCheck,
        connect_upstream: ConnectUpstream | None = None,
        max_pending_input: int = 64 * 1024,
        max_message_size: int = 1024 * 1024,
        auto_ping_interval: float = 20.0,
        auto_ping_timeout: float = 20.0,
        open_handshake_timeout: float = 10.0,
        close_handshake_timeout: float = 2.0,
        upstream_connect_timeout: float = 5.0,
        on_opened: Callable[[], object] = lambda: None,
        on_closed: Callable[[int | None], object] = lambda code: None,
    ) -> None:
        self.supervisor = supervisor
        #: Told of every terminal opened and closed (the metrics' counters).
        self.on_opened = on_opened
        self.on_closed = on_closed
        self.reactor = reactor
        self.check_handshake = check_handshake
        self._connect_upstream = connect_upstream
        self.max_pending_input = max_pending_input
        self.max_message_size = max_message_size
        self.auto_ping_interval = auto_ping_interval
        self.auto_ping_timeout = auto_ping_timeout
        self.open_handshake_timeout = open_handshake_timeout
        self.close_handshake_timeout = close_handshake_timeout
        self.upstream_connect_timeout = upstream_connect_timeout
        self.connections: set[BrowserProtocol] = set()
        self.shutting_down = False
        self.factory = BrowserFactory(self)
        self.resource = TerminalResource(self.factory, self)
        self._drained: list[Deferred[None]] = []
        supervisor.add_listener(self._terminal_changed)

    def connect_upstream(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        """Connect ``factory`` to ttyd's socket (or through the injected connector)."""
        if self._connect_upstream is not None:
            return self._connect_upstream(factory)
        endpoint = UNIXClientEndpoint(self.reactor, self.supervisor.socket_path, timeout=self.upstream_connect_timeout)
        d: Deferred[IProtocol] = endpoint.connect(factory)
        return d

    def unavailable_reason(self) -> str:
        """Why there is no terminal right now, in words."""
        state = self.supervisor.state
        if state == "failed":
            truncated: bytes = encode_truncate(f"terminal unavailable: {self.supervisor.reason}", 123)
            return truncated.decode("utf-8")
        return f"terminal unavailable (ttyd is {state})"

    def close_code_for(self, upstream: UpstreamProtocol) -> tuple[int, str]:
        """The browser's close code and reason once ttyd's leg has closed."""
        if not upstream.opened:
            return CLOSE_UNAVAILABLE, "terminal unavailable: ttyd did not accept the session"
        if upstream.got_close_frame:
            code = upstream.close_frame_code
            if code in (None, 1000):
                return CLOSE_SHELL_EXITED, "the shell exited"
            if code == TTYD_ABNORMAL:
                return CLOSE_SHELL_FAILED, "the shell exited with an error"
            if code == CLOSE_GOING_AWAY:
                return CLOSE_RESTARTING, "terminal restarting"
            return CLOSE_SHELL_FAILED, f"the terminal session ended (ttyd close code {code})"
        state = self.supervisor.state
        if self.shutting_down or state == "stopped":
            return CLOSE_GOING_AWAY, "backend shutting down"
        if state == "failed":
            return CLOSE_UNAVAILABLE, self.unavailable_reason()
        return CLOSE_RESTARTING, "terminal restarting: the connection to ttyd was lost"

    def close_all(self, code: int, reason: str) -> None:
        """Close every browser terminal socket with ``code`` and ``reason``."""
        for proto in list(self.connections):
            proto.close_browser(code, reason)

    def buffered_bytes(self) -> int:
        """Bytes all terminals hold in memory (write buffers and queues)."""
        return sum(proto.buffered_bytes() for proto in self.connections)

    def _terminal_changed(self, status: dict[str, Any]) -> None:
        state = status["state"]
        if state == "restarting":
            self.close_all(CLOSE_RESTARTING, "terminal restarting")
        elif state == "failed":
            self.close_all(CLOSE_UNAVAILABLE, self.unavailable_reason())
        elif state == "stopped":
            self.close_all(CLOSE_GOING_AWAY, "backend shutting down")

    def forget(self, proto: BrowserProtocol) -> None:
        """``proto`` has closed."""
        if proto in self.connections and proto.opened_terminal:
            self.on_closed(proto.close_code)
        self.connections.discard(proto)
        if not self.connections:
            drained, self._drained = self._drained, []
            for d in drained:
                d.callback(None)

    def stopService(self) -> Deferred[None]:
        """Close every terminal with 1001; fires once they are closed (dropped after the close timeout)."""
        super().stopService()
        self.shutting_down = True
        self.close_all(CLOSE_GOING_AWAY, "backend shutting down")
        if not self.connections:
            return succeed(None)
        done: Deferred[None] = Deferred()
        self._drained.append(done)

        def drop_stragglers() -> None:
            for proto in list(self.connections):
                proto.dropConnection(abort=True)
            for proto in list(self.connections):
                self.forget(proto)

        deadline = self.reactor.callLater(self.close_handshake_timeout + 0.5, drop_stragglers)

        def cancel_deadline(result: None) -> None:
            if deadline.active():
                deadline.cancel()

        return done.addCallback(cancel_deadline)
