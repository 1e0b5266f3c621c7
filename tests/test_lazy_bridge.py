"""The terminal bridge built on the first terminal socket (:mod:`workshop_backend.terminal.lazy`)."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from workshop_backend.terminal.lazy import LazyBridge
from workshop_backend.terminal.sessions import DEFAULT_MAX_TERMINALS


class FakeBridge:
    """Records what the holder asks of the bridge."""

    def __init__(self) -> None:
        self.running = False
        self.connections = {1, 2}
        self.rendered: list[Any] = []
        self.ended: list[str] = []
        self.resource = self

    def startService(self) -> None:
        self.running = True

    def stopService(self) -> Deferred[None]:
        self.running = False
        return succeed(None)

    def render(self, request: Any) -> bytes:
        self.rendered.append(request)
        return b"bridged"

    def terminals(self) -> list[str]:
        return ["t1"]

    def end_terminal(self, name: str) -> bool:
        self.ended.append(name)
        return True

    def buffered_bytes(self) -> int:
        return 7

    def paused_terminals(self) -> int:
        return 1


class LazyBridgeTests(SynchronousTestCase):
    """Nothing is built before a socket asks; then the bridge answers for itself."""

    def setUp(self) -> None:
        self.made: list[FakeBridge] = []

        def make() -> Any:
            self.made.append(FakeBridge())
            return self.made[-1]

        self.holder = LazyBridge(make)

    def counts(self) -> tuple[int, int, int]:
        return self.holder.open_sockets(), self.holder.buffered_bytes(), self.holder.paused_terminals()

    def test_before_the_first_socket(self) -> None:
        """No bridge: no terminals, nothing to end, nothing held; the limit is the default one."""
        self.holder.startService()
        self.assertEqual(self.holder.terminals(), [])
        self.assertFalse(self.holder.end_terminal("x"))
        self.assertEqual(
            (self.holder.open_sockets(), self.holder.buffered_bytes(), self.holder.paused_terminals()), (0, 0, 0)
        )
        self.assertEqual(self.holder.terminal_limit, DEFAULT_MAX_TERMINALS)
        self.assertEqual(self.made, [])
        self.assertIsNone(self.successResultOf(self.holder.stopService()))

    def test_first_socket_builds_and_starts_it(self) -> None:
        """The first request builds the bridge once, starts it (the daemon runs), and hands it the request."""
        self.holder.startService()
        request: Any = DummyRequest([b"terminal"])
        self.assertEqual(self.holder.resource.render(request), b"bridged")
        self.holder.resource.render(request)
        (bridge,) = self.made
        self.assertTrue(bridge.running)
        self.assertEqual(bridge.rendered[0], request)
        self.assertEqual(self.holder.terminals(), ["t1"])
        self.assertTrue(self.holder.end_terminal("t1"))
        self.assertEqual(
            (self.holder.open_sockets(), self.holder.buffered_bytes(), self.holder.paused_terminals()), (2, 7, 1)
        )
        self.successResultOf(self.holder.stopService())
        self.assertFalse(bridge.running)

    def test_built_before_the_daemon_runs(self) -> None:
        """Built while the service is not running: started with it, not before."""
        self.holder.get()
        (bridge,) = self.made
        self.assertFalse(bridge.running)
