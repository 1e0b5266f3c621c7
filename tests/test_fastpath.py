"""The library internals the terminal's fast path relies on, pinned.

:mod:`workshop_backend.terminal.fastpath` reaches into Autobahn and Twisted
in a few places (listed in its docstring).  These tests check each one on
the installed versions and fail loudly, naming the internal, when an upgrade
moves or renames it: read the new code, adapt ``fastpath.py``, then move
:data:`~workshop_backend.terminal.fastpath.AUTOBAHN_TESTED`.
"""

from __future__ import annotations

from importlib.metadata import version

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketServerFactory
from twisted.internet import abstract
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from workshop_backend.terminal import fastpath


class PinnedVersionTests(SynchronousTestCase):
    """The version the internals were read from."""

    def test_autobahn_version(self) -> None:
        """An Autobahn upgrade fails here first: re-read the internals below, then move the pin."""
        installed = version("autobahn")
        self.assertTrue(
            installed.startswith(fastpath.AUTOBAHN_TESTED),
            f"Autobahn {installed} is installed; fastpath.py was checked against "
            f"{fastpath.AUTOBAHN_TESTED}: check its internals, then update AUTOBAHN_TESTED",
        )


class InternalsTests(SynchronousTestCase):
    """Each internal, where fastpath.py expects it."""

    def connected(self) -> fastpath.FastPathClient:
        clock = Clock()
        factory = WebSocketClientFactory(url="ws://localhost/ws", protocols=["tty"], reactor=clock)
        fastpath.use_reactor_timers(factory, clock)
        factory.protocol = fastpath.FastPathClient
        proto = factory.buildProtocol(None)
        assert isinstance(proto, fastpath.FastPathClient)
        proto.makeConnection(StringTransport())
        return proto

    def test_factory_timer_slot(self) -> None:
        """Both factories take their protocol timers from ``_batched_timer``."""
        for factory in (WebSocketClientFactory(), WebSocketServerFactory()):
            self.assertTrue(hasattr(factory, "_batched_timer"), f"{type(factory).__name__}._batched_timer is gone")
            clock = Clock()
            fastpath.use_reactor_timers(factory, clock)
            factory._batched_timer.call_later(1, lambda: None)
            self.assertEqual(len(clock.getDelayedCalls()), 1)

    def test_unparsed_data_buffer(self) -> None:
        """``WebSocketProtocol.data`` holds the bytes Autobahn has not parsed (bytes, empty when none)."""
        proto = self.connected()
        self.assertIsInstance(proto.data, bytes, "WebSocketProtocol.data is no longer bytes")
        self.assertEqual(fastpath.unparsed_bytes(proto), len(proto.data))

    def test_traffic_stats(self) -> None:
        """``trafficStats.incomingOctetsWireLevel`` is a counter the fast path can add to."""
        proto = self.connected()
        before = proto.trafficStats.incomingOctetsWireLevel
        self.assertIsInstance(before, int)
        proto.trafficStats.incomingOctetsWireLevel += 5
        self.assertEqual(proto.trafficStats.incomingOctetsWireLevel, before + 5)

    def test_close_handshake_timer(self) -> None:
        """``closeHandshakeTimeoutCall`` exists (None until a close starts), and cancelling clears it."""
        proto = self.connected()
        self.assertTrue(hasattr(proto, "closeHandshakeTimeoutCall"), "closeHandshakeTimeoutCall is gone")
        fastpath.cancel_close_timer(proto)
        self.assertIsNone(proto.closeHandshakeTimeoutCall)

    def test_transport_write_buffer(self) -> None:
        """Twisted's ``FileDescriptor`` keeps its write buffer in ``dataBuffer``/``offset``/``_tempDataLen``."""

        class Written(abstract.FileDescriptor):
            def writeSomeData(self, data: bytes) -> int:
                return 0

            def startWriting(self) -> None:
                """Not a real descriptor: nothing to watch."""

        fd = Written()
        for name in ("dataBuffer", "offset", "_tempDataLen"):
            self.assertTrue(hasattr(fd, name), f"FileDescriptor.{name} is gone")
        fd.connected = True
        fd.write(b"x" * 10)
        self.assertEqual(fastpath.transport_buffered(fd), 10)
