# mypy: allow-untyped-calls
"""Terminals that survive the browser, with the real ttyd and a network that goes away.

The supervisor and the bridge run in the test's reactor with a real ttyd;
clients reach the bridge through :class:`tests.faultproxy.FaultProxy`, which
cuts every connection and refuses new ones for a while.  Everything waits on
events (output matching a pattern, a close, a reactor-driven poll with a
deadline); the cuts themselves last what the scenario says (3 s, 25 s).
"""

from __future__ import annotations

import json
import os
import re
import signal
from functools import partial
from pathlib import Path
from typing import Any, cast

from autobahn.twisted.websocket import WebSocketClientFactory
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import Clock, deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests import daemon as d
from tests.faultproxy import FaultProxy
from tests.test_terminal_integration import SHELL, Term, poll_until, process_gone, ttyd_path
from workshop_backend.terminal.bridge import TerminalBridge
from workshop_backend.terminal.supervisor import TtydSupervisor

reactor: Any = _reactor
DEADLINE = 30.0
LINE = re.compile(rb"line-(\d+)\r\n")


class SessionTerm(Term):
    """A page's terminal: asks for sessions, keeps its id and offset, and all of its output."""

    trim_at = None

    def __init__(self) -> None:
        super().__init__()
        self.offset = 0
        self.session: str | None = None
        self.announced: Deferred[dict[str, Any]] = Deferred()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if payload[:1] == b"S":
            body = json.loads(payload[1:])
            if "session" in body and not self.announced.called:
                self.session = body["session"]
                self.offset = body["offset"]
                self.announced.callback(body)
            return
        if payload[:1] == b"0":
            self.offset += len(payload) - 1
        super().onMessage(payload, isBinary)

    def closed_early(self, code: int | None, reason: str | None) -> None:
        # Pages wait for the announcement (a plain client's "opened" is awaited where it matters).
        if not self.announced.called:
            self.announced.errback(Failure(ConnectionError(f"closed before attaching: {code} {reason}")))


class SessionIntegrationTestCase(TestCase):
    """ttyd under the supervisor, the bridge at /terminal, a fault proxy in front."""

    timeout = 120
    bridge_options: dict[str, Any] = {}

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        return ensureDeferred(self._setUp())

    async def _setUp(self) -> None:
        state_dir = Path(self.mktemp()).resolve()
        state_dir.mkdir(parents=True)
        self.home = state_dir / "home"
        self.home.mkdir()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home), "LANG": "C.UTF-8"}
        self.supervisor = TtydSupervisor(
            reactor=reactor, ttyd=ttyd_path(), shell=SHELL, state_dir=state_dir, cwd=str(self.home), env=env
        )
        self.supervisor.startService()
        self.addCleanup(self.supervisor.stopService)
        self.bridge = TerminalBridge(
            self.supervisor, reactor, check_handshake=lambda request: None, **self.bridge_options
        )
        self.addCleanup(self.bridge.stopService)
        root = Resource()
        root.putChild(b"terminal", self.bridge.resource)
        self.port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.proxy = FaultProxy(reactor, "127.0.0.1", self.port.getHost().port)
        await self.proxy.start()
        self.addCleanup(lambda: ensureDeferred(self.proxy.stop()))
        await poll_until(self.supervisor.is_ready, "ttyd to answer")

    async def attach(self, query: str = "session=new", *, direct: bool = False) -> SessionTerm:
        """A page attaching through the proxy (or ``direct``ly); answers once the backend announced it."""
        port = self.port.getHost().port if direct else self.proxy.port
        factory = WebSocketClientFactory(url=f"ws://127.0.0.1:{port}/terminal?{query}", protocols=["tty"])
        factory.protocol = SessionTerm
        term = cast(SessionTerm, await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory))
        self.addCleanup(self._close, term)
        await term.announced
        return term

    async def reattach(self, term: SessionTerm) -> SessionTerm:
        """What the page does after a drop: try again (every 100 ms while refused) with its id and offset."""
        deadline = reactor.seconds() + 60
        while True:
            try:
                return await self.attach(f"session={term.session}&offset={term.offset}")
            except ConnectionError:
                if reactor.seconds() > deadline:
                    raise
            await deferLater(reactor, 0.1, lambda: None)

    async def attach_refused(self, query: str) -> tuple[int | None, str | None]:
        """A page whose attach is refused: the close code and reason it gets."""
        factory = WebSocketClientFactory(url=f"ws://127.0.0.1:{self.proxy.port}/terminal?{query}", protocols=["tty"])
        factory.protocol = SessionTerm
        term = cast(SessionTerm, await TCP4ClientEndpoint(reactor, "127.0.0.1", self.proxy.port).connect(factory))
        term.announced.addErrback(lambda f: None)
        return await term.closed

    def _close(self, term: SessionTerm) -> Deferred[Any] | None:
        if term.closed.called:
            return None
        term.sendClose(1000)
        return term.closed

    async def pid_of(self, term: SessionTerm, tag: str) -> int:
        """The shell's PID, as ``echo $$`` prints it (tagged, so the echoed command line never matches)."""
        term.type(f"echo {tag}-$((0+$$))-pid\r")
        match = await term.wait_for(tag.encode() + rb"-(\d+)-pid")
        return int(match.group(1))


class CutTests(SessionIntegrationTestCase):
    """The network goes away and comes back."""

    def test_numbered_lines_across_a_cut(self) -> Deferred[None]:
        """A loop printing 15 lines across a 3 s cut: every line once, in order, from the same shell."""

        async def run() -> None:
            term = await self.attach()
            pid = await self.pid_of(term, "before")
            term.type("for i in $(seq 1 15); do echo line-$i; sleep 0.4; done; echo loop-$((1+1))-done\r")
            await term.wait_for(rb"line-5\r\n")
            self.proxy.cut(refuse_for=3.0)
            await term.closed
            again = await self.reattach(term)
            await again.wait_for(rb"loop-2-done")
            lines = [int(n) for n in LINE.findall(bytes(term.output + again.output))]
            self.assertEqual(lines, list(range(1, 16)))
            self.assertEqual(await self.pid_of(again, "after"), pid)
            self.assertGreaterEqual(self.proxy.refused, 1)  # the page did meet the cut network

        return ensureDeferred(run())

    def test_long_cut_and_a_running_command(self) -> Deferred[None]:
        """``sleep 8; touch file`` started before a 25 s cut completes; the same shell is there after."""

        async def run() -> None:
            term = await self.attach()
            pid = await self.pid_of(term, "before")
            marker = self.home / "slept"
            term.type(f"sleep 8; touch {marker}; echo slept-$((4+4))\r")
            await term.wait_for(rb"sleep 8; touch")
            self.proxy.cut(refuse_for=25.0)
            await term.closed
            await poll_until(marker.exists, "the command to finish while detached", timeout=DEADLINE)
            again = await self.reattach(term)
            await again.wait_for(rb"slept-8")
            self.assertEqual(await self.pid_of(again, "after"), pid)

        return ensureDeferred(run())

    def test_resize_after_reattach(self) -> Deferred[None]:
        """The size a page sends when it comes back applies to the same shell."""

        async def run() -> None:
            term = await self.attach()
            pid = await self.pid_of(term, "before")
            self.proxy.cut(refuse_for=0.2)
            await term.closed
            SessionTerm.columns, SessionTerm.rows = 123, 45
            self.addCleanup(setattr, SessionTerm, "columns", 80)
            self.addCleanup(setattr, SessionTerm, "rows", 24)
            again = await self.reattach(term)
            again.type("stty size; echo size-$((1+1))-done\r")
            match = await again.wait_for(rb"(\d+) (\d+)\r\nsize-2-done")
            self.assertEqual(match.groups(), (b"45", b"123"))
            self.assertEqual(await self.pid_of(again, "after"), pid)

        return ensureDeferred(run())


class FloodTests(SessionIntegrationTestCase):
    """``yes`` while nobody watches: memory stays bounded; the page is told what it missed."""

    bridge_options = {"buffer_size": 256 * 1024}

    def test_flood_while_detached(self) -> Deferred[None]:
        """The buffer never passes its size; the marker and the tail come on reattach; the shell still answers."""

        async def run() -> None:
            term = await self.attach()
            term.type("yes flood-line\r")
            await term.wait_for(rb"(flood-line\r\n){20}")
            term.sendClose(1000)
            await term.closed
            samples: list[int] = []

            def flooded() -> bool:
                [info] = self.bridge.terminals()
                samples.append(self.bridge.buffered_bytes())
                missed = info.output_bytes - term.offset
                return info.state == "detached" and missed > 5 * 256 * 1024

            await poll_until(flooded, "the detached flood to overflow the buffer four times", timeout=60)
            # The buffer itself is exact; the rest is one coalesced write and a read in flight.
            self.assertLess(max(samples), 256 * 1024 + 512 * 1024, samples)
            again = await self.attach(f"session={term.session}&offset={term.offset}")
            body = cast(dict[str, Any], again.announced.result)
            self.assertGreater(body["skipped"], 4 * 256 * 1024)
            self.assertEqual(body["offset"], term.offset + body["skipped"])
            await again.wait_for(rb"(flood-line\r\n){100}")
            again.type("\x03")
            again.type("echo stopped-$((5*5))\r")
            await again.wait_for(rb"stopped-25")

        return ensureDeferred(run())


class GraceTests(SessionIntegrationTestCase):
    """The grace period, on a ``Clock`` of its own."""

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        self.clock = Clock()
        self.bridge_options = {"clock": self.clock, "grace": 600.0}
        return super().setUp()

    def test_grace_ends_a_detached_shell(self) -> Deferred[None]:
        """Detached for the grace period: the shell is hung up and the terminal is gone (4003)."""

        async def run() -> None:
            term = await self.attach()
            pid = await self.pid_of(term, "shell")
            term.sendClose(1000)
            await term.closed
            await poll_until(lambda: self.bridge.terminals()[0].state == "detached", "the page to detach")
            self.clock.advance(599)
            self.assertFalse(process_gone(pid))
            self.clock.advance(1)
            await poll_until(lambda: process_gone(pid), "ttyd to hang up the shell")
            self.assertEqual(self.bridge.terminals(), [])
            again = await self.attach_refused(f"session={term.session}&offset={term.offset}")
            self.assertEqual(again, (4003, "this terminal no longer exists"))

        return ensureDeferred(run())


class EndTests(SessionIntegrationTestCase):
    """ttyd restarting and the backend stopping end the terminals, with the right codes."""

    def test_ttyd_restart(self) -> Deferred[None]:
        """ttyd killed: the attached page gets 4002; after the restart both terminals are gone (4003)."""

        async def run() -> None:
            attached = await self.attach()
            detached = await self.attach()
            detached_pid = await self.pid_of(detached, "detached")
            detached.sendClose(1000)
            await detached.closed
            ttyd = self.supervisor.pid
            assert ttyd is not None
            os.kill(ttyd, signal.SIGKILL)
            code, reason = await attached.closed
            self.assertEqual(code, 4002)
            self.assertTrue(str(reason).startswith("terminal restarting"), reason)
            await poll_until(lambda: self.supervisor.restarts == 1 and self.supervisor.is_ready(), "ttyd back")
            await poll_until(lambda: process_gone(detached_pid), "the old shell to end")
            self.assertEqual(self.bridge.terminals(), [])
            for term in (attached, detached):
                refused = await self.attach_refused(f"session={term.session}&offset={term.offset}")
                self.assertEqual(refused, (4003, "this terminal no longer exists"))
            fresh = await self.attach()
            await self.pid_of(fresh, "fresh")

        return ensureDeferred(run())

    def test_backend_stop(self) -> Deferred[None]:
        """Stopping the bridge: the attached page gets 1001, every shell ends (detached ones too)."""

        async def run() -> None:
            attached = await self.attach()
            detached = await self.attach()
            pids = [await self.pid_of(attached, "one"), await self.pid_of(detached, "two")]
            detached.sendClose(1000)
            await detached.closed
            await self.bridge.stopService()
            code, _ = await attached.closed
            self.assertEqual(code, 1001)
            self.assertEqual(self.bridge.terminals(), [])
            for pid in pids:
                await poll_until(partial(process_gone, pid), "the shells to end")

        return ensureDeferred(run())

    def test_plain_client_keeps_todays_behaviour(self) -> Deferred[None]:
        """A client without session parameters: its own new shell, ended when it leaves; not listed."""

        async def run() -> None:
            factory = WebSocketClientFactory(url=f"ws://127.0.0.1:{self.proxy.port}/terminal", protocols=["tty"])
            factory.protocol = SessionTerm
            plain = cast(SessionTerm, await TCP4ClientEndpoint(reactor, "127.0.0.1", self.proxy.port).connect(factory))
            plain.announced.addErrback(lambda f: None)
            await plain.opened
            pid = await self.pid_of(plain, "plain")
            self.assertFalse(plain.announced.called)
            self.assertEqual(self.bridge.terminals(), [])
            plain.sendClose(1000)
            await plain.closed
            await poll_until(lambda: process_gone(pid), "the plain client's shell to end")

        return ensureDeferred(run())


class DaemonOptionTests(TestCase):
    """``--terminal-grace`` reaches the terminals of the real daemon."""

    timeout = 120

    def test_grace_option(self) -> Deferred[None]:
        """WORKSHOP_TERMINAL_GRACE=90s: a detached terminal expires 90 s after its page left."""

        async def run() -> None:
            ttyd_path()
            state = Path(self.mktemp()).resolve()
            state.mkdir(parents=True)
            env = {k: v for k, v in os.environ.items() if not k.startswith("WORKSHOP_")}
            env["WORKSHOP_TERMINAL_GRACE"] = "90s"
            daemon = d.start(
                ["--demo", "--auth", "none", "--listen", "tcp:0:interface=127.0.0.1", "--state-dir", str(state)],
                env=env,
            )
            self.addCleanup(lambda: ensureDeferred(d.stop(daemon)))
            url = await daemon.listening
            await d.wait_ready(url)
            port = int(url.rsplit(":", 1)[1].strip("/"))
            factory = WebSocketClientFactory(
                url=f"ws://127.0.0.1:{port}/terminal?session=new", protocols=["tty"], origin=url.rstrip("/")
            )
            factory.protocol = SessionTerm
            term = cast(SessionTerm, await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory))
            await term.announced
            term.sendClose(1000)
            await term.closed

            async def listed() -> dict[str, Any]:
                response = await d.http().get(url + "api/v1/terminals")
                body: dict[str, Any] = await response.json()
                return body

            deadline = reactor.seconds() + DEADLINE
            while True:
                body = await listed()
                [info] = body["terminals"]
                if info["state"] == "detached" or reactor.seconds() > deadline:
                    break
                await deferLater(reactor, 0.05, lambda: None)
            self.assertEqual(info["state"], "detached")
            from workshop_backend.support.timefmt import parse_rfc3339

            self.assertEqual(parse_rfc3339(info["expires_at"]) - parse_rfc3339(info["detached_at"]), 90)
            self.assertEqual(body["limit"], 6)

        return ensureDeferred(run())
