# mypy: allow-untyped-calls
# (Autobahn's and twisted.web's APIs are largely unannotated.)
"""``WS /terminal``: browser WebSockets attached to the workspace's terminals.

A browser socket opens a terminal (a :class:`~workshop_backend.terminal.upstream.TerminalSession`,
one ttyd session, one shell) or attaches to one that exists.  What it asks
for is in the handshake's query string (:func:`~workshop_backend.terminal.sessions.parse_attach`):

- nothing: a plain ttyd client, a new shell that ends with the socket;
- ``session=new``: a new terminal that belongs to the workspace and
  outlives the socket;
- ``session=ID&offset=N``: attach to terminal ``ID``, having shown ``N``
  bytes of its output; what was missed comes first, exactly once.

Messages pass unchanged both ways (text stays text, binary stays binary);
nothing is compressed.  ttyd's output takes a fast path
(:mod:`~workshop_backend.terminal.fastpath`).  ``docs/terminal.md`` has the
protocol, the backpressure and the close codes:

====  =====================================================================
1000  the shell exited with status 0 (ttyd closed with 1000)
4000  the shell exited otherwise (ttyd closes with 1006 on the wire)
4001  terminal unavailable (ttyd not running, connecting to it failed)
4002  terminal restarting (ttyd restarted, or its connection dropped)
4003  this terminal no longer exists (unknown, expired, closed, lost with ttyd)
4005  too many terminals (a new one over the workspace's limit)
1001  backend shutting down
1008  bad session parameters, or too much input before the terminal was ready
1013  too many attempts to attach: try again later
====  =====================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.util import encode_truncate
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.server import NOT_DONE_YET

from workshop_backend.support.reactor import IBackendReactor
from workshop_backend.terminal.fastpath import (
    cancel_close_timer,
    transport_buffered,
    unparsed_bytes,
    use_reactor_timers,
)
from workshop_backend.terminal.sessions import (
    CLOSE_GOING_AWAY,
    CLOSE_GONE,
    CLOSE_POLICY,
    CLOSE_RESTARTING,
    CLOSE_SHELL_EXITED,
    CLOSE_SHELL_FAILED,
    CLOSE_TOO_MANY,
    CLOSE_TRY_LATER,
    CLOSE_UNAVAILABLE,
    DEFAULT_BUFFER,
    DEFAULT_DETACHED_READ_RATE,
    DEFAULT_GRACE,
    DEFAULT_MAX_CLIENTS,
    DEFAULT_MAX_TERMINALS,
    AttachRequest,
    BadAttach,
    New,
    Plain,
    RateLimiter,
    Resume,
    SessionTable,
    TerminalInfo,
    new_session_id,
    parse_attach,
)
from workshop_backend.terminal.upstream import SUBPROTOCOL, TerminalSession, UpstreamProtocol

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_GONE",
    "CLOSE_POLICY",
    "CLOSE_RESTARTING",
    "CLOSE_SHELL_EXITED",
    "CLOSE_SHELL_FAILED",
    "CLOSE_TOO_MANY",
    "CLOSE_TRY_LATER",
    "CLOSE_UNAVAILABLE",
    "SUBPROTOCOL",
    "BrowserProtocol",
    "TerminalBridge",
    "TerminalResource",
]

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
_CLOSED = WebSocketProtocol.STATE_CLOSED


class BrowserProtocol(WebSocketServerProtocol):
    """One browser terminal socket, attached to one :class:`TerminalSession` while open."""

    def __init__(self) -> None:
        super().__init__()
        self.bridge: TerminalBridge | None = None
        self.http_request: IRequest | None = None
        self.attach_request: AttachRequest = Plain()
        self.session: TerminalSession | None = None
        self.close_code: int | None = None
        self.opened_terminal = False
        #: The page's first message (ttyd's greeting) has been seen.
        self.greeted = False
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
        # Judged once open, so that a page is told with a close code it can act on.
        self.attach_request = parse_attach(request.params)
        return SUBPROTOCOL

    def onOpen(self) -> None:
        assert self.bridge is not None
        self.bridge.open_terminal(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.session is not None and self.close_code is None:
            self.session.input(self, payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.close_code is None and not self._gone and self.opened_terminal:
            # The browser went away (tab closed, reload, network gone): one event, as for our closes.
            log.info("terminal closed by the browser: {code}", code=code, clean=wasClean, peer=self.peer)
        self._gone = True
        if self.bridge is not None:
            self.bridge.forget(self)
        self._detach()

    def _detach(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            session.detach(self)

    # -- closing -------------------------------------------------------------

    def close_browser(self, code: int, reason: str) -> None:
        """Close the browser's socket with ``code`` (and detach it from its terminal)."""
        if self.close_code is not None or self._gone:
            return
        self.close_code = code
        log.info("closing terminal: {code} {reason}", code=code, reason=reason)
        if self.state == _OPEN:
            # sendCloseFrame, not sendClose: sendClose refuses 1001, 1008 and 1013.
            self.sendCloseFrame(code, encode_truncate(reason, 123))
        elif self.state != _CLOSED:
            self.dropConnection(abort=True)
        self._detach()

    def buffered_bytes(self) -> int:
        """Bytes this socket holds that no terminal counts (before it is attached)."""
        return transport_buffered(self.transport) + unparsed_bytes(self)


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
    """The workspace's terminals and their browser sockets: the resource, limits, close-all on restart and shutdown.

    :param clock: the clock of the terminals' lives (grace periods, the
        times the API shows, attach rates); the reactor by default.
    :param grace: seconds a terminal with no browser attached lives on
        (0: it ends with its last browser, as a plain client's does).
    :param buffer_size: bytes of output kept per terminal for pages that
        come back.
    :param max_terminals: terminals per workspace, attached or not.
    :param max_clients: browser sockets attached to one terminal at once.
    :param attach_rate, attach_burst: attempts to attach per second (and at
        once) per terminal; past that, 1013.
    :param detached_read_rate: bytes per second read from ttyd for a
        terminal nobody watches (0: no limit).
    """

    name = "terminal-bridge"

    def __init__(
        self,
        supervisor: TerminalSupervisor,
        reactor: IBackendReactor,
        *,
        check_handshake: HandshakeCheck,
        connect_upstream: ConnectUpstream | None = None,
        clock: IReactorTime | None = None,
        grace: float = DEFAULT_GRACE,
        buffer_size: int = DEFAULT_BUFFER,
        max_terminals: int = DEFAULT_MAX_TERMINALS,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        attach_rate: float = 2.0,
        attach_burst: float = 10.0,
        detached_read_rate: int = DEFAULT_DETACHED_READ_RATE,
        make_id: Callable[[], str] = new_session_id,
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
        #: Told of every browser socket attached and closed (the metrics' counters).
        self.on_opened = on_opened
        self.on_closed = on_closed
        self.reactor = reactor
        self.clock: IReactorTime = clock if clock is not None else reactor
        self.check_handshake = check_handshake
        self._connect_upstream = connect_upstream
        self.grace = grace
        self.buffer_size = buffer_size
        self.max_clients = max_clients
        self.detached_read_rate = detached_read_rate
        self.max_pending_input = max_pending_input
        self.max_message_size = max_message_size
        self.auto_ping_interval = auto_ping_interval
        self.auto_ping_timeout = auto_ping_timeout
        self.open_handshake_timeout = open_handshake_timeout
        self.close_handshake_timeout = close_handshake_timeout
        self.upstream_connect_timeout = upstream_connect_timeout
        #: Browser sockets, from their TCP connection to their close.
        self.connections: set[BrowserProtocol] = set()
        #: The workspace's (named) terminals.
        self.sessions: SessionTable[TerminalSession] = SessionTable(max_terminals, make_id)
        #: Every live terminal, plain clients' included.
        self.live: set[TerminalSession] = set()
        self.limiter = RateLimiter(attach_rate, attach_burst)
        self.shutting_down = False
        self.factory = BrowserFactory(self)
        self.resource = TerminalResource(self.factory, self)
        self._drained: list[Deferred[None]] = []
        supervisor.add_listener(self._terminal_changed)

    # -- opening and attaching -------------------------------------------------

    def open_terminal(self, proto: BrowserProtocol) -> None:
        """A browser socket is open: attach it to the terminal it asked for, or close it saying why."""
        request = proto.attach_request
        if isinstance(request, BadAttach):
            proto.close_browser(CLOSE_POLICY, request.reason)
            return
        if isinstance(request, Resume):
            session = self.sessions.get(request.session)
            key = request.session if session is not None else "unknown"
            if not self.limiter.allow(key, self.clock.seconds()):
                proto.close_browser(CLOSE_TRY_LATER, "too many attempts to attach; try again in a moment")
                return
            if session is None:
                proto.close_browser(CLOSE_GONE, "this terminal no longer exists")
                return
            if len(session.clients) >= self.max_clients:
                proto.close_browser(CLOSE_TRY_LATER, "this terminal is open in too many windows")
                return
            self._accepted(proto, session)
            if session.attach(proto, request.offset):
                proto.session = session
            return
        if isinstance(request, New) and not self.limiter.allow("new", self.clock.seconds()):
            proto.close_browser(CLOSE_TRY_LATER, "too many attempts to open a terminal; try again in a moment")
            return
        if not self.supervisor.is_ready():
            proto.close_browser(CLOSE_UNAVAILABLE, self.unavailable_reason())
            return
        if isinstance(request, New):
            if self.sessions.full():
                limit = self.sessions.limit
                proto.close_browser(CLOSE_TOO_MANY, f"too many terminals: {limit} are open; close one first")
                return
            name, number = self.sessions.reserve()
            session = TerminalSession(
                self,
                name=name,
                number=number,
                buffer_size=self.buffer_size,
                detached_read_rate=self.detached_read_rate,
            )
            self.sessions.add(name, number, session)
        else:
            session = TerminalSession(self, name=None)
        self.live.add(session)
        self._accepted(proto, session)
        session.attach(proto, 0)
        proto.session = session
        session.start()

    def _accepted(self, proto: BrowserProtocol, session: TerminalSession) -> None:
        proto.opened_terminal = True
        if session.name is None:
            # A plain ttyd client (no session parameters): its own shell, ended with its socket.
            log.info("terminal opened for {peer} (a plain client)", peer=proto.peer, session=False)
        else:
            log.info("terminal {number} attached for {peer}", number=session.number, peer=proto.peer, session=True)
        self.on_opened()

    # -- TerminalSession's host -------------------------------------------------

    def connect_upstream(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        """Connect ``factory`` to ttyd's socket (or through the injected connector)."""
        if self._connect_upstream is not None:
            return self._connect_upstream(factory)
        endpoint = UNIXClientEndpoint(self.reactor, self.supervisor.socket_path, timeout=self.upstream_connect_timeout)
        d: Deferred[IProtocol] = endpoint.connect(factory)
        return d

    def session_finished(self, session: TerminalSession) -> None:
        """``session`` has ended for good: forget it."""
        self.live.discard(session)
        if session.name is not None and self.sessions.get(session.name) is session:
            self.sessions.remove(session.name)

    def unavailable_reason(self) -> str:
        """Why there is no terminal right now, in words."""
        state = self.supervisor.state
        if state == "failed":
            truncated: bytes = encode_truncate(f"terminal unavailable: {self.supervisor.reason}", 123)
            return truncated.decode("utf-8")
        return f"terminal unavailable (ttyd is {state})"

    def close_code_for(self, upstream: UpstreamProtocol) -> tuple[int, str]:
        """The browsers' close code and reason once ttyd's leg has closed."""
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

    # -- the workspace's terminals (the API) -------------------------------------------

    @property
    def terminal_limit(self) -> int:
        """How many terminals the workspace may have."""
        return self.sessions.limit

    def terminals(self) -> list[TerminalInfo]:
        """The workspace's terminals, in the order they were opened."""
        return [session.info() for session in self.sessions]

    def end_terminal(self, name: str) -> bool:
        """The student closed terminal ``name``: end its shell; False if there is no such terminal."""
        session = self.sessions.get(name)
        if session is None:
            return False
        log.info("terminal {number} closed by the student", number=session.number)
        session.close(CLOSE_GONE, "this terminal was closed")
        return True

    def buffered_bytes(self) -> int:
        """Bytes all terminals hold in memory (output buffers, write buffers, queues)."""
        unattached = sum(proto.buffered_bytes() for proto in self.connections if proto.session is None)
        return unattached + sum(session.buffered_bytes() for session in self.live)

    def paused_terminals(self) -> int:
        """Terminals whose shell is held back now because a browser does not keep up."""
        return sum(1 for session in self.live if session.paused)

    # -- closing everything ------------------------------------------------------------

    def close_all(self, code: int, reason: str) -> None:
        """End every terminal and close every browser socket with ``code`` and ``reason``."""
        for session in list(self.live):
            session.close(code, reason)
        for proto in list(self.connections):
            proto.close_browser(code, reason)

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
        """End every terminal, closing browsers with 1001; fires once they are closed (or dropped, past the timeout)."""
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
