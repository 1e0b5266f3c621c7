# mypy: allow-untyped-calls
# (Autobahn's APIs are largely unannotated.)
"""One terminal: its connection to ttyd (so its shell), its output, and the browsers attached to it.

A :class:`TerminalSession` owns one :class:`UpstreamProtocol` (ttyd's
``/ws``, one shell) and fans its output out to the browser sockets attached
to it.  A *named* session (a page asked for ``?session=new``) belongs to the
workspace: it keeps ttyd's connection when its last browser goes, keeps
reading output into its bounded :class:`~workshop_backend.terminal.sessions.OutputBuffer`,
and ends only when the shell exits (kept, so a page that comes back sees
how it ended), when the grace period passes with no browser, when the
student closes it, when ttyd restarts or when the backend stops.  An
*unnamed* session is a plain ttyd client's: it ends with its only socket,
as before sessions existed.

Backpressure: while browsers are attached, each one's transport has a
valve as its streaming producer: a browser that stops reading *holds* the
session, and reading from ttyd stops while any hold remains (the slowest
attached browser sets the pace, as in tmux).
While nobody is attached nothing holds it: output goes into the buffer
(ttyd hangs up a reader that stops for ``-P`` + 7 s), at most
``detached_read_rate`` bytes a second so that a forgotten ``yes`` does not
cost a core for the whole grace period.  The other way, ttyd not reading
input pauses every attached browser's socket.
"""

from __future__ import annotations

from typing import Any, Protocol

from autobahn.twisted.websocket import WebSocketClientFactory
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IProtocol, IProtocolFactory, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from workshop_backend.support.reactor import IBackendReactor
from workshop_backend.terminal.fastpath import (
    FastPathClient,
    frame_payloads,
    transport_buffered,
    unparsed_bytes,
    use_reactor_timers,
)
from workshop_backend.terminal.sessions import (
    CLOSE_GONE,
    CLOSE_POLICY,
    CLOSE_SHELL_EXITED,
    CLOSE_SHELL_FAILED,
    CLOSE_UNAVAILABLE,
    CONTROL,
    OUTPUT,
    PREFERENCES,
    TITLE,
    OutputBuffer,
    Pace,
    TerminalInfo,
    TerminalState,
    announcement,
    pong,
    resize_from_greeting,
)

SUBPROTOCOL = "tty"

_OPEN = WebSocketProtocol.STATE_OPEN
_CLOSED = WebSocketProtocol.STATE_CLOSED
_PACE = "pace"
_OUTPUT, _TITLE, _PREFERENCES = OUTPUT[0], TITLE[0], PREFERENCES[0]

log = Logger(namespace="workshop_backend.terminal.bridge")


class Client(Protocol):
    """What a session needs of a browser socket (:class:`~workshop_backend.terminal.bridge.BrowserProtocol`)."""

    transport: Any
    state: int
    peer: str | None
    greeted: bool

    def sendMessage(self, payload: bytes, isBinary: bool) -> None: ...

    def close_browser(self, code: int, reason: str) -> None: ...


class SessionHost(Protocol):
    """What a session needs of the bridge: settings, ttyd's socket, the close codes, the registry."""

    reactor: IBackendReactor
    clock: IReactorTime
    open_handshake_timeout: float
    close_handshake_timeout: float
    max_pending_input: int
    grace: float

    def connect_upstream(self, factory: IProtocolFactory) -> Deferred[IProtocol]: ...

    def close_code_for(self, upstream: UpstreamProtocol) -> tuple[int, str]: ...

    def session_finished(self, session: TerminalSession) -> None: ...


@implementer(IPushProducer)
class _OutputValve:
    """Registered on a browser's transport: its full write buffer holds the session (stops reading ttyd)."""

    def __init__(self, session: TerminalSession) -> None:
        self._session = session

    def pauseProducing(self) -> None:
        self._session.hold(self)

    def resumeProducing(self) -> None:
        self._session.release(self)

    def stopProducing(self) -> None:
        """Ignored: the browser's socket closing detaches it, with a close code."""


@implementer(IPushProducer)
class _InputValve:
    """Registered on ttyd's transport: ttyd not reading input stops reading every attached browser."""

    def __init__(self, session: TerminalSession) -> None:
        self._session = session

    def pauseProducing(self) -> None:
        self._session.pause_input()

    def resumeProducing(self) -> None:
        self._session.resume_input()

    def stopProducing(self) -> None:
        """Ignored: ttyd's leg closing ends the session, with a close code."""


class UpstreamProtocol(FastPathClient):
    """The connection to ttyd of one session.

    ttyd's data frames go to the session byte for byte
    (:class:`~workshop_backend.terminal.fastpath.FastPathClient`); anything
    else arrives as a message and is passed on as one.
    """

    def __init__(self) -> None:
        super().__init__()
        self.session: TerminalSession | None = None
        self.opened = False
        self.got_close_frame = False
        self.close_frame_code: int | None = None

    def forward_frames(self, frames: bytes) -> None:
        if self.session is not None:
            self.session.output_frames(frames)

    def coalescing(self) -> bool:
        # Gathering output saves writes to browsers; with none attached it only makes big buffers.
        return self.session is not None and bool(self.session.clients)

    def onOpen(self) -> None:
        self.opened = True
        if self.session is not None:
            self.session.upstream_opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.flush()
        if self.session is not None:
            self.session.output_message(payload, isBinary)

    def onCloseFrame(self, code: int, reasonRaw: bytes) -> Any:
        # Seen before Autobahn judges the code: ttyd's 1006 is a protocol
        # error to Autobahn but means "the shell exited non-zero" to us.
        self.got_close_frame = True
        self.close_frame_code = code
        return super().onCloseFrame(code, reasonRaw)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.flush()
        session, self.session = self.session, None
        if session is not None:
            session.upstream_closed(self)


class UpstreamFactory(WebSocketClientFactory):
    """Builds the one :class:`UpstreamProtocol` of a session."""

    protocol = UpstreamProtocol

    def __init__(self, session: TerminalSession, host: SessionHost) -> None:
        super().__init__(url="ws://localhost/ws", protocols=[SUBPROTOCOL], reactor=host.reactor)
        self.session = session
        use_reactor_timers(self, host.reactor)
        self.setProtocolOptions(
            perMessageCompressionOffers=[],
            openHandshakeTimeout=host.open_handshake_timeout,
            closeHandshakeTimeout=host.close_handshake_timeout,
            autoPingInterval=0,
            serverConnectionDropTimeout=0,
        )

    def buildProtocol(self, addr: Any) -> UpstreamProtocol:
        proto = super().buildProtocol(addr)
        assert isinstance(proto, UpstreamProtocol)
        proto.session = self.session
        self.session.upstream = proto
        return proto


class TerminalSession:
    """One shell (one ttyd session) and the browsers attached to it.

    :param name: the session id, or None for a plain client's terminal
        (no buffer, no replay, ends with its socket).
    :param number: what the page calls it (``Terminal 3``).
    """

    def __init__(
        self,
        host: SessionHost,
        *,
        name: str | None,
        number: int = 0,
        buffer_size: int = 0,
        detached_read_rate: int = 0,
    ) -> None:
        self.host = host
        self.name = name
        self.number = number
        self.buffer = OutputBuffer(buffer_size if name is not None else 0)
        self.clients: list[Client] = []
        self.upstream: UpstreamProtocol | None = None
        #: (close code, reason) once the shell or the session has ended.
        self.ended: tuple[int, str] | None = None
        self.created_at = host.clock.seconds()
        self.detached_at: float | None = None
        self._connecting: Deferred[IProtocol] | None = None
        self._greeting: tuple[bytes, bool] | None = None
        self._greeted = False
        self._pending: list[tuple[bytes, bool]] = []
        self._pending_bytes = 0
        self._title: bytes | None = None
        self._preferences: bytes | None = None
        self._valves: dict[Client, tuple[Any, _OutputValve]] = {}
        self._upstream_link: tuple[Any, _InputValve] | None = None
        self._holds: set[object] = set()
        self._input_paused = False
        self._pace = Pace(detached_read_rate)
        self._pace_call: IDelayedCall | None = None
        self._timer: IDelayedCall | None = None

    # -- life ------------------------------------------------------------------

    def start(self) -> None:
        """Connect to ttyd (the shell starts when ttyd gets the first page's greeting)."""
        d = self.host.connect_upstream(UpstreamFactory(self, self.host))
        self._connecting = d

        def connected(proto: IProtocol) -> None:
            self._connecting = None

        def failed(f: Failure) -> None:
            self._connecting = None
            if f.check(CancelledError) or self.ended is not None:
                return
            log.warn("cannot connect to ttyd: {error}", error=f.getErrorMessage())
            self._finish(CLOSE_UNAVAILABLE, "terminal unavailable: cannot connect to ttyd", keep=False)

        d.addCallbacks(connected, failed)

    def attach(self, client: Client, offset: int | None) -> bool:
        """Attach ``client``: the announcement, ttyd's title, what it missed since ``offset``; then live.

        A terminal that has ended replays its last output and closes
        ``client`` with the code it ended with; answers False then.
        """
        self._cancel_timer()
        self.detached_at = None
        if self.name is not None:
            replay = self.buffer.read_from(offset)
            if replay.ahead:
                log.warn(
                    "terminal {number}: a page claimed offset {offset}, past the output ({end}); clamped",
                    number=self.number,
                    offset=offset,
                    end=self.buffer.end,
                )
            client.sendMessage(announcement(self.name, self.number, replay), True)
            for frame in (self._title, self._preferences):
                if frame is not None:
                    client.sendMessage(frame, True)
            for message in replay.messages():
                client.sendMessage(message, True)
        if self.ended is not None:
            client.close_browser(*self.ended)
            self._arm_timer()
            return False
        self.clients.append(client)
        self._stop_pacing()
        self._link(client)
        return True

    def detach(self, client: Client) -> None:
        """``client``'s socket has closed (or is closing)."""
        if client not in self.clients:
            return
        self.clients.remove(client)
        self._unlink(client)
        if self.name is None:
            # A plain client's shell goes with its socket (ttyd hangs it up).
            self._finish(CLOSE_SHELL_EXITED, "the browser left", keep=False)
            return
        if not self.clients and self.ended is None:
            self.detached_at = self.host.clock.seconds()
            self._pace.reset()
            log.info("terminal {number} detached; it lives on for {grace} s", number=self.number, grace=self.host.grace)
            self._arm_timer()

    def close(self, code: int, reason: str) -> None:
        """End this terminal now (grace period, closed by the student, ttyd restarting, shutdown)."""
        if self.ended is not None:
            self._cancel_timer()
            self.host.session_finished(self)
            return
        self._finish(code, reason, keep=False)

    def _finish(self, code: int, reason: str, *, keep: bool) -> None:
        """The terminal has ended: close its browsers with ``code``; ``keep`` it for pages to come back to."""
        if self.ended is not None:
            return
        if self.upstream is not None:
            self.upstream.flush()  # output already read goes before the close frames
        self.ended = (code, reason)
        self._stop_pacing()
        self._cancel_timer()
        clients, self.clients = self.clients, []
        for client in clients:
            self._unlink(client)
            client.close_browser(code, reason)
        self._close_upstream()
        self._greeting = None
        self._pending.clear()
        self._pending_bytes = 0
        if keep:
            log.info("terminal {number} ended: {reason}", number=self.number, reason=reason, code=code)
            self.detached_at = self.host.clock.seconds()
            self._arm_timer()
        else:
            self.host.session_finished(self)

    def _arm_timer(self) -> None:
        """No browser attached: end the terminal (or forget an ended one) after the grace period."""
        self._cancel_timer()
        if self.clients:
            return
        if self.host.grace <= 0:
            self._expire()
            return
        self._timer = self.host.clock.callLater(self.host.grace, self._expire)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if self.ended is None:
            log.info("terminal {number} ended: no browser for {grace} s", number=self.number, grace=self.host.grace)
        self.close(CLOSE_GONE, "this terminal ended: no browser was attached for too long")

    def _close_upstream(self) -> None:
        if self._connecting is not None:
            connecting, self._connecting = self._connecting, None
            connecting.cancel()
        upstream, self.upstream = self.upstream, None
        self._unlink_upstream()
        if upstream is None:
            return
        upstream.session = None
        state = getattr(upstream, "state", None)  # None: not connected yet
        if state == _OPEN:
            # ttyd hangs up the shell (SIGHUP to its process group).
            upstream.sendClose(1000)
        elif state is not None and state != _CLOSED:
            upstream.dropConnection(abort=True)

    # -- from the browsers ------------------------------------------------------

    def input(self, client: Client, payload: bytes, is_binary: bool) -> None:
        """A message from an attached browser, for ttyd."""
        if self.ended is not None:
            return
        if not client.greeted:
            client.greeted = True
            if not self._greeted:
                # ttyd's greeting ({"AuthToken", "columns", "rows"}) starts the shell: once.
                self._greeted = True
                self._greeting = (payload, is_binary)
                self._pending_bytes += len(payload)
                self._send_waiting()
                return
            # A page attaching to a running shell: its greeting is a resize of that shell.
            resize = resize_from_greeting(payload)
            if resize is None:
                return
            payload, is_binary = resize, True
        if self.name is not None and payload[:1] == CONTROL:
            answer = pong(payload)
            if answer is not None:
                client.sendMessage(answer, True)
            return
        upstream = self.upstream
        if upstream is not None and upstream.opened and upstream.state == _OPEN and self._greeting is None:
            upstream.sendMessage(payload, is_binary)
            return
        self._pending_bytes += len(payload)
        if self._pending_bytes > self.host.max_pending_input:
            self._pending.clear()
            self._pending_bytes = len(self._greeting[0]) if self._greeting else 0
            client.close_browser(CLOSE_POLICY, "too much input before the terminal was ready")
            return
        self._pending.append((payload, is_binary))

    def _send_waiting(self) -> None:
        """Send the greeting and queued input once ttyd's leg is open."""
        upstream = self.upstream
        if upstream is None or not upstream.opened or upstream.state != _OPEN:
            return
        if self._greeting is not None:
            greeting, self._greeting = self._greeting, None
            upstream.sendMessage(*greeting)
        pending, self._pending = self._pending, []
        self._pending_bytes = 0
        for payload, is_binary in pending:
            upstream.sendMessage(payload, is_binary)

    # -- from ttyd -----------------------------------------------------------------

    def upstream_opened(self, upstream: UpstreamProtocol) -> None:
        """ttyd accepted the session: send what the browsers typed so far and link the legs."""
        if upstream is not self.upstream or self.ended is not None:
            upstream.sendClose(1000)
            return
        self._send_waiting()
        self._link_upstream(upstream)

    def upstream_closed(self, upstream: UpstreamProtocol) -> None:
        """ttyd's side closed: the shell exited, or ttyd went away."""
        if upstream is not self.upstream:
            return
        self.upstream = None
        self._unlink_upstream()
        if self.ended is not None:
            return
        code, reason = self.host.close_code_for(upstream)
        exited = code in (CLOSE_SHELL_EXITED, CLOSE_SHELL_FAILED) and upstream.got_close_frame
        self._finish(code, reason, keep=exited and self.name is not None)

    def output_frames(self, frames: bytes) -> None:
        """Whole data frames from ttyd (the fast path): keep the output, write them to every browser."""
        if self.name is not None:
            view = memoryview(frames)
            output: list[memoryview] = []
            for start, end in frame_payloads(frames):
                command = frames[start]
                if command == _OUTPUT:
                    output.append(view[start + 1 : end])
                elif command in (_TITLE, _PREFERENCES):
                    self._record(frames, start, end)
            self.buffer.extend(output)
        for client in self.clients:
            transport = client.transport
            if client.state == _OPEN and transport is not None:
                transport.write(frames)
        if not self.clients and self.name is not None and self.ended is None:
            self._pace_read(len(frames))

    def output_message(self, payload: bytes, is_binary: bool) -> None:
        """A message from ttyd that took Autobahn's path (fragmented, or unusual)."""
        if self.name is not None:
            self._record(payload, 0, len(payload))
        for client in self.clients:
            if client.state == _OPEN:
                client.sendMessage(payload, is_binary)

    def _record(self, data: bytes, start: int, end: int) -> None:
        command = data[start : start + 1]
        if command == OUTPUT:
            self.buffer.append(data[start + 1 : end])
        elif command == TITLE:
            self._title = data[start:end]
        elif command == PREFERENCES:
            self._preferences = data[start:end]

    # -- backpressure --------------------------------------------------------------

    def hold(self, reason: object) -> None:
        """Stop reading from ttyd until every hold is released (a slow browser, the detached pace)."""
        first = not self._holds
        self._holds.add(reason)
        if first and self._upstream_link is not None:
            self._upstream_link[0].pauseProducing()

    def release(self, reason: object) -> None:
        """One reason to hold is gone: read again once none is left."""
        if reason not in self._holds:
            return
        self._holds.discard(reason)
        if not self._holds and self._upstream_link is not None:
            self._upstream_link[0].resumeProducing()

    def pause_input(self) -> None:
        """ttyd is not reading input: stop reading the browsers."""
        self._input_paused = True
        for transport, _ in self._valves.values():
            transport.pauseProducing()

    def resume_input(self) -> None:
        """ttyd reads input again."""
        self._input_paused = False
        for transport, _ in self._valves.values():
            transport.resumeProducing()

    def _link(self, client: Client) -> None:
        transport = client.transport
        if transport is None:
            return
        valve = _OutputValve(self)
        transport.registerProducer(valve, True)
        self._valves[client] = (transport, valve)
        if self._input_paused:
            transport.pauseProducing()

    def _unlink(self, client: Client) -> None:
        link = self._valves.pop(client, None)
        if link is None:
            return
        transport, valve = link
        if getattr(transport, "producer", None) is valve:
            transport.unregisterProducer()
        if self._input_paused:
            transport.resumeProducing()
        self.release(valve)

    def _link_upstream(self, upstream: UpstreamProtocol) -> None:
        transport: Any = upstream.transport
        if transport is None:
            return
        valve = _InputValve(self)
        transport.registerProducer(valve, True)
        self._upstream_link = (transport, valve)
        if self._holds:
            transport.pauseProducing()

    def _unlink_upstream(self) -> None:
        link, self._upstream_link = self._upstream_link, None
        if link is None:
            return
        transport, valve = link
        if getattr(transport, "producer", None) is valve:
            transport.unregisterProducer()
        if self._holds:
            transport.resumeProducing()
        if self._input_paused:
            self.resume_input()

    def _pace_read(self, nbytes: int) -> None:
        if self._pace_call is not None:
            return
        delay = self._pace.spend(nbytes, self.host.reactor.seconds())
        if delay > 0:
            self.hold(_PACE)
            self._pace_call = self.host.reactor.callLater(delay, self._paced)

    def _paced(self) -> None:
        self._pace_call = None
        self.release(_PACE)

    def _stop_pacing(self) -> None:
        if self._pace_call is not None:
            if self._pace_call.active():
                self._pace_call.cancel()
            self._pace_call = None
        self.release(_PACE)
        self._pace.reset()

    # -- what it holds ---------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """True while a browser that does not keep up holds the shell's output back."""
        return any(reason is not _PACE for reason in self._holds)

    def buffered_bytes(self) -> int:
        """Bytes this terminal holds in memory: its output buffer, queued input, write buffers."""
        total = self.buffer.size + self._pending_bytes
        for transport, _ in self._valves.values():
            total += transport_buffered(transport)
        for client in self.clients:
            total += unparsed_bytes(client)  # type: ignore[arg-type]
        upstream = self.upstream
        if upstream is not None:
            total += transport_buffered(upstream.transport) + upstream.held_bytes()
        return total

    def info(self) -> TerminalInfo:
        """What ``GET /api/v1/terminals`` shows of this terminal."""
        assert self.name is not None, "only named terminals are listed"
        state: TerminalState = "ended" if self.ended is not None else "attached" if self.clients else "detached"
        timer = self._timer
        return TerminalInfo(
            id=self.name,
            number=self.number,
            state=state,
            clients=len(self.clients),
            created_at=self.created_at,
            detached_at=self.detached_at,
            expires_at=timer.getTime() if timer is not None and timer.active() else None,
            output_bytes=self.buffer.end,
            buffered_bytes=self.buffered_bytes(),
            skipped_bytes=self.buffer.dropped,
            paused=self.paused,
            close_code=self.ended[0] if self.ended is not None else None,
        )
