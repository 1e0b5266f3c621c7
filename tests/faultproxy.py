"""A TCP proxy for tests that can cut the network: every live connection at once, and new ones for a while.

Put it between a client (a test's WebSocket client, or Chromium) and the
daemon or a ``Site``::

    proxy = FaultProxy(reactor, "127.0.0.1", site_port)
    port = await proxy.start()          # listens on 127.0.0.1, an OS-picked port
    ...
    proxy.cut(refuse_for=3.0)           # every connection reset; new ones refused for 3 s
    ...
    await proxy.stop()

A cut resets both legs of every connection at once (what a client sees
when its Wi-Fi drops and the NAT forgets it; the daemon sees the same).
While refusing, a new connection is accepted and reset at once, so the
client sees a failed handshake, as it would with the network gone.  Bytes
flow with backpressure: each leg's transport is the streaming producer of
the other's.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import IDelayedCall, IListeningPort
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure


class _Leg(Protocol):
    """One side of a proxied connection; ``peer`` is the other side."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.peer: _Leg | None = None
        self.early: list[bytes] = []
        self.lost: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)
        else:
            self.early.append(data)

    def join(self, peer: _Leg) -> None:
        """Both legs are connected: pass what arrived early, link their backpressure."""
        self.peer, peer.peer = peer, self
        assert self.transport is not None and peer.transport is not None
        ours: Any = self.transport
        theirs: Any = peer.transport
        ours.registerProducer(theirs, True)
        theirs.registerProducer(ours, True)
        for leg in (self, peer):
            early, leg.early = leg.early, []
            for data in early:
                leg.dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.proxy.legs.discard(self)
        peer, self.peer = self.peer, None
        if peer is not None and peer.transport is not None:
            peer.peer = None
            peer.transport.loseConnection()
        self.lost.callback(None)


class _ClientLeg(_Leg):
    """The side a client connected to: connects the server side, refuses while the network is cut."""

    def connectionMade(self) -> None:
        transport: Any = self.transport
        if self.proxy.refusing:
            self.proxy.refused += 1
            transport.abortConnection()
            return
        self.proxy.legs.add(self)
        self.proxy.accepted += 1
        transport.pauseProducing()  # until the server side is connected
        endpoint = TCP4ClientEndpoint(self.proxy.reactor, self.proxy.host, self.proxy.target_port, timeout=5)
        d = endpoint.connect(Factory.forProtocol(lambda: _Leg(self.proxy)))

        def connected(server: _Leg) -> None:
            if self.transport is None or self not in self.proxy.legs:
                server.transport.abortConnection()  # type: ignore[union-attr]
                return
            self.proxy.legs.add(server)
            self.join(server)
            transport.resumeProducing()

        def failed(f: Failure) -> None:
            transport.abortConnection()

        d.addCallbacks(connected, failed)


class FaultProxy:
    """A TCP proxy on 127.0.0.1 to ``host:target_port`` that a test can cut."""

    def __init__(self, reactor: Any, host: str, target_port: int) -> None:
        self.reactor = reactor
        self.host = host
        self.target_port = target_port
        self.legs: set[_Leg] = set()
        self.refusing = False
        self.accepted = 0
        self.refused = 0
        self.cuts = 0
        self._port: IListeningPort | None = None
        self._restore: IDelayedCall | None = None

    async def start(self) -> int:
        """Listen on an OS-picked port of 127.0.0.1; answers the port."""
        endpoint = TCP4ServerEndpoint(self.reactor, 0, interface="127.0.0.1")
        self._port = await endpoint.listen(Factory.forProtocol(lambda: _ClientLeg(self)))
        return self.port

    @property
    def port(self) -> int:
        """Where clients connect."""
        assert self._port is not None, "start() first"
        address: Any = self._port.getHost()
        return int(address.port)

    def cut(self, refuse_for: float | None = None) -> None:
        """Reset every live connection; refuse new ones until :meth:`restore` (or for ``refuse_for`` seconds)."""
        self.cuts += 1
        self.refusing = True
        for leg in list(self.legs):
            if leg.transport is not None:
                leg.transport.abortConnection()  # type: ignore[attr-defined]
        if self._restore is not None and self._restore.active():
            self._restore.cancel()
        self._restore = None
        if refuse_for is not None:
            self._restore = self.reactor.callLater(refuse_for, self.restore)

    def restore(self) -> None:
        """Let new connections through again."""
        if self._restore is not None and self._restore.active():
            self._restore.cancel()
        self._restore = None
        self.refusing = False

    async def stop(self) -> None:
        """Stop listening and close every connection (for a test's cleanup)."""
        self.restore()
        lost = [leg.lost for leg in list(self.legs)]
        for leg in list(self.legs):
            if leg.transport is not None:
                leg.transport.abortConnection()  # type: ignore[attr-defined]
        if self._port is not None:
            stopped = self._port.stopListening()
            if stopped is not None:
                await stopped
        await DeferredList(lost)
