"""The bridge's fast path for ttyd's output, and the library internals it needs, in one place.

ttyd's output frames are forwarded to the browser's transport byte for byte
(both legs carry unmasked server-to-client frames, neither compresses): no
parsing into messages and re-framing.  That is most of the bridge's
throughput, and it needs a few things Autobahn and Twisted do not offer as
API.  They are all here, each behind a small function, and
``tests/test_fastpath.py`` checks every one against the installed versions
(pinned: :data:`AUTOBAHN_TESTED`), failing loudly when an upgrade moves them:

- ``WebSocketProtocol.data``: the bytes Autobahn holds of a frame it has not
  parsed yet (the fast path only runs when Autobahn holds none);
- ``WebSocketProtocol.trafficStats.incomingOctetsWireLevel``: kept counting
  for the bytes we forward past Autobahn;
- ``WebSocketProtocol.closeHandshakeTimeoutCall``: a timer Autobahn leaves
  running after the connection is gone;
- ``WebSocketClientFactory._batched_timer`` / ``WebSocketServerFactory._batched_timer``:
  where Autobahn takes its protocol timers from (txaio's global loop
  otherwise; we put them on our reactor, so tests with a ``Clock`` work);
- a transport's ``dataBuffer``, ``offset`` and ``_tempDataLen`` (Twisted's
  ``FileDescriptor``): its write buffer, for the bridge's memory accounting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from autobahn.twisted.websocket import WebSocketClientProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure

AUTOBAHN_TESTED = "26.10"
"""The Autobahn release these internals were checked against (tests/test_fastpath.py)."""

_OPEN = WebSocketProtocol.STATE_OPEN


class _ReactorTimer:
    """Autobahn's protocol timers on our reactor rather than txaio's global loop."""

    def __init__(self, reactor: IReactorTime) -> None:
        self._reactor = reactor

    def call_later(self, delay: float, func: Callable[..., Any], *args: Any, **kwargs: Any) -> IDelayedCall:
        return self._reactor.callLater(delay, func, *args, **kwargs)


def use_reactor_timers(factory: Any, reactor: IReactorTime) -> None:
    """Run a factory's protocol timers (pings, handshake timeouts) on ``reactor``."""
    factory._batched_timer = _ReactorTimer(reactor)


def unparsed_bytes(proto: WebSocketProtocol) -> int:
    """Bytes Autobahn holds of frames it has not parsed yet."""
    return len(proto.data or b"")


def transport_buffered(transport: Any) -> int:
    """Bytes waiting in a transport's write buffer (TCP/UNIX transports and iosim's fake)."""
    if transport is None:
        return 0
    total = 0
    data = getattr(transport, "dataBuffer", None)
    if data is not None:
        total += len(data) - getattr(transport, "offset", 0) + getattr(transport, "_tempDataLen", 0)
    stream = getattr(transport, "stream", None)
    if isinstance(stream, list):
        total += sum(len(chunk) for chunk in stream)
    return total


def cancel_close_timer(proto: WebSocketProtocol) -> None:
    """Autobahn leaves its close-handshake timer running after the connection is gone."""
    call = getattr(proto, "closeHandshakeTimeoutCall", None)
    if call is not None:
        if call.active():
            call.cancel()
        proto.closeHandshakeTimeoutCall = None


#: A frame the fast path holds while it waits for the rest may be at most this big.
FAST_PATH_MAX_FRAME = 1024 * 1024

#: A read from ttyd this big means bulk output (ttyd reads the pty 4 KiB at a
#: time): its frames are gathered for up to COALESCE_DELAY or COALESCE_MAX
#: bytes, so the browser's socket gets fewer, larger writes.  Smaller reads
#: (keystroke echoes, prompts) and the end of a burst are written at once.
BULK_READ = 4000
COALESCE_DELAY = 0.004
COALESCE_MAX = 256 * 1024


def scan_data_frames(data: bytes) -> tuple[int, bool]:
    """How far ``data`` is a run of complete, final, unmasked data frames.

    Returns ``(end, partial)``: ``data[:end]`` is such a run; ``partial`` says
    that what follows is an incomplete frame (of any kind) of a reasonable
    size, to be held until more arrives.  Otherwise what follows (if
    anything) is a frame for Autobahn: a control frame, a fragment, a
    masked or reserved-bit frame, or a huge one.
    """
    pos = 0
    n = len(data)
    while pos < n:
        if n - pos < 2:
            return pos, True
        b0 = data[pos]
        b1 = data[pos + 1]
        length = b1 & 0x7F
        start = pos + 2
        if length == 126:
            if n - start < 2:
                return pos, True
            length = (data[start] << 8) | data[start + 1]
            start += 2
        elif length == 127:
            if n - start < 8:
                return pos, True
            length = int.from_bytes(data[start : start + 8], "big")
            start += 8
        simple = b0 in (0x81, 0x82) and not b1 & 0x80
        if not simple or length > FAST_PATH_MAX_FRAME:
            return pos, False
        if n - start < length:
            return pos, True
        pos = start + length
    return pos, False


def frame_payloads(frames: bytes) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of each frame's payload in ``frames``, a run :func:`scan_data_frames` accepted.

    The terminal's sessions keep ttyd's output from the frames the fast
    path forwards, without parsing them a second time into messages.
    """
    pos = 0
    n = len(frames)
    while pos < n:
        length = frames[pos + 1] & 0x7F
        start = pos + 2
        if length == 126:
            length = (frames[start] << 8) | frames[start + 1]
            start += 2
        elif length == 127:
            length = int.from_bytes(frames[start : start + 8], "big")
            start += 8
        pos = start + length
        yield start, pos


class FastPathClient(WebSocketClientProtocol):
    """A client connection whose complete data frames go straight to :meth:`forward_frames`.

    Control frames, fragments and anything unusual take Autobahn's path
    (``onMessage`` and friends).  Bulk output (full 4 KiB pty reads) is
    gathered for up to :data:`COALESCE_DELAY` / :data:`COALESCE_MAX` so the
    receiving socket gets fewer, larger writes; small reads (keystroke
    echoes, prompts) and the end of a burst go at once.
    """

    def __init__(self) -> None:
        super().__init__()
        self._held = b""
        self._out: list[bytes] = []
        self._out_len = 0
        self._flush_call: IDelayedCall | None = None

    def forward_frames(self, frames: bytes) -> None:
        """Whole, unmasked data frames, ready for a server-side transport (override)."""
        raise NotImplementedError

    def dataReceived(self, data: bytes) -> None:
        if self.state != _OPEN or self.data:
            # The handshake, the closing handshake, or Autobahn holds part of a frame.
            self.flush()
            super().dataReceived(data)
            return
        if self._held:
            data, self._held = self._held + data, b""
        end, partial = scan_data_frames(data)
        if end:
            self.trafficStats.incomingOctetsWireLevel += end
            self._gather(data if end == len(data) else data[:end], bulk=len(data) >= BULK_READ)
        if end == len(data):
            return
        if partial:
            self._held = data[end:]
        else:
            self.flush()
            super().dataReceived(data[end:])

    def coalescing(self) -> bool:
        """Whether bulk output is worth gathering now (override: not when nobody reads it)."""
        return True

    def _gather(self, frames: bytes, bulk: bool) -> None:
        self._out.append(frames)
        self._out_len += len(frames)
        if not bulk or self._out_len >= COALESCE_MAX or not self.coalescing():
            self.flush()
        elif self._flush_call is None:
            self._flush_call = self.factory.reactor.callLater(COALESCE_DELAY, self.flush)

    def flush(self) -> None:
        """Forward the gathered frames now."""
        if self._flush_call is not None:
            if self._flush_call.active():
                self._flush_call.cancel()
            self._flush_call = None
        if not self._out:
            return
        out, self._out, self._out_len = self._out, [], 0
        self.forward_frames(out[0] if len(out) == 1 else b"".join(out))

    def held_bytes(self) -> int:
        """Bytes this connection holds: a partial frame, gathered frames, Autobahn's unparsed bytes."""
        return len(self._held) + self._out_len + unparsed_bytes(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        cancel_close_timer(self)
