# mypy: allow-untyped-calls
"""Tests for :mod:`workshop_backend.terminal.supervisor`, against a memory process reactor and a Clock."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IProcessTransport, IReactorProcess, IReactorTime
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests.fakes import as_reactor
from tests.fakes_process import FakeProcessState, FakeProcessTransport, MemoryProcessReactor, SpawnedProcess
from workshop_backend.support import childexec
from workshop_backend.terminal.supervisor import (
    MAX_SOCKET_PATH,
    TtydSupervisor,
    connect_probe,
    shell_argv,
)


class FakeProbe:
    """A readiness probe whose answers the test gives."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Deferred[None]]] = []

    def __call__(self, path: str) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.calls.append((path, d))
        return d

    def answer(self) -> None:
        """The last probe finds the socket answering."""
        self.calls[-1][1].callback(None)

    def refuse(self) -> None:
        """The last probe finds nothing listening."""
        self.calls[-1][1].errback(Failure(ConnectionRefusedError()))


class FakesTests(SynchronousTestCase):
    """The doubles provide the interfaces they stand in for."""

    def test_interfaces(self) -> None:
        """The fake transport is an IProcessTransport; the reactor does processes and time."""
        verifyObject(IProcessTransport, FakeProcessTransport(FakeProcessState(), 1))
        reactor = MemoryProcessReactor()
        verifyObject(IReactorProcess, reactor)
        verifyObject(IReactorTime, reactor)


class SupervisorTestCase(SynchronousTestCase):
    """Builds a supervisor over a memory reactor with a fake ttyd binary."""

    def setUp(self) -> None:
        """A memory reactor, a fake probe and a fake (executable) ttyd file."""
        self.reactor = MemoryProcessReactor()
        self.probe = FakeProbe()
        self.tmp = Path(self.mktemp())
        self.tmp.mkdir()
        self.ttyd = self.tmp / "ttyd"
        self.ttyd.write_text("#!/bin/sh\n")
        self.ttyd.chmod(0o755)
        # Short enough for the socket to live in the state dir wherever trial runs.
        self.state_dir = Path(tempfile.mkdtemp(prefix="wb-state-"))
        self.addCleanup(shutil.rmtree, self.state_dir, ignore_errors=True)
        self.statuses: list[dict[str, Any]] = []

    def make(self, **kw: Any) -> TtydSupervisor:
        args: dict[str, Any] = {
            "reactor": self.reactor,
            "ttyd": str(self.ttyd),
            "shell": "/bin/bash",
            "state_dir": self.state_dir,
            "cwd": "/srv/work",
            "env": {"HOME": "/home/student", "PATH": "/usr/bin:/bin"},
            "probe": self.probe,
        }
        args.update(kw)
        sup = TtydSupervisor(**args)
        sup.add_listener(self.statuses.append)
        return sup

    def last(self) -> SpawnedProcess:
        return self.reactor.spawned[-1]

    def start_ready(self, sup: TtydSupervisor) -> None:
        sup.startService()
        self.reactor.advance(0)
        self.probe.answer()


class StartTests(SupervisorTestCase):
    """Starting ttyd and waiting until it answers."""

    def test_spawn_command_line(self) -> None:
        """ttyd runs writable on a private UNIX socket, with -P 60 and a login shell, through childexec."""
        sup = self.make()
        sup.startService()
        self.assertEqual(len(self.reactor.spawned), 1)
        spawned = self.last()
        expected_socket = str(self.state_dir / "ttyd" / "ttyd.sock")
        ttyd_argv = [
            str(self.ttyd),
            "-W",
            "-i",
            expected_socket,
            "-P",
            "60",
            "-T",
            "xterm-256color",
            "/bin/bash",
            "-l",
        ]
        self.assertEqual(spawned.args, childexec.wrap(ttyd_argv, die_with_parent=True))
        self.assertEqual(spawned.executable, spawned.args[0])
        self.assertIn("--pdeathsig", spawned.args)
        self.assertEqual(spawned.path, "/srv/work")
        self.assertEqual(spawned.env, {"HOME": "/home/student", "PATH": "/usr/bin:/bin", "TERM": "xterm-256color"})
        self.assertEqual(sup.socket_path, expected_socket)
        self.assertEqual(stat.S_IMODE(os.stat(self.state_dir / "ttyd").st_mode), 0o700)
        self.assertTrue(spawned.state.stdin_closed)
        self.assertEqual(sup.state, "starting")
        self.assertFalse(sup.is_ready())
        self.assertEqual(sup.pid, spawned.transport.pid)

    def test_long_state_dir_uses_private_temp_dir(self) -> None:
        """A socket path longer than 100 bytes moves to a private 0700 temp directory."""
        deep = self.state_dir / ("x" * 60) / ("y" * 60)
        deep.mkdir(parents=True)
        sup = self.make(state_dir=deep)
        sup.startService()
        path = sup.socket_path
        self.addCleanup(os.rmdir, os.path.dirname(path))
        self.assertLessEqual(len(os.fsencode(path)), MAX_SOCKET_PATH)
        self.assertFalse(path.startswith(str(deep)))
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode), 0o700)

    def test_ready_when_socket_answers(self) -> None:
        """The socket answering makes the state running and calls the listeners."""
        sup = self.make()
        sup.startService()
        self.assertEqual(self.statuses, [{"state": "starting", "restarts": 0}])
        self.reactor.advance(0)
        self.assertEqual([path for path, _ in self.probe.calls], [sup.socket_path])
        self.probe.answer()
        self.assertTrue(sup.is_ready())
        self.assertIsNone(sup.reason)
        self.assertEqual(sup.status(), {"state": "running", "restarts": 0})
        self.assertEqual(self.statuses[-1], {"state": "running", "restarts": 0})

    def test_probe_retries_on_the_clock(self) -> None:
        """A refused probe is retried after probe_interval, without any sleep."""
        sup = self.make(probe_interval=0.05)
        sup.startService()
        self.reactor.advance(0)
        self.probe.refuse()
        self.assertEqual(len(self.probe.calls), 1)
        self.reactor.advance(0.04)
        self.assertEqual(len(self.probe.calls), 1)
        self.reactor.advance(0.01)
        self.assertEqual(len(self.probe.calls), 2)
        self.probe.answer()
        self.assertEqual(sup.state, "running")

    def test_never_answering_is_killed(self) -> None:
        """ttyd that does not answer within ready_timeout is killed and restarted."""
        sup = self.make(probe_interval=1.0, ready_timeout=3.0)
        sup.startService()
        self.reactor.advance(0)
        for _ in range(3):
            self.probe.refuse()
            self.reactor.advance(1.0)
        self.probe.refuse()
        self.assertEqual(self.last().state.signals, ["KILL"])
        self.last().end(signal=signal.SIGKILL)
        self.assertEqual(sup.state, "restarting")
        self.reactor.advance(0.1)
        self.assertEqual(len(self.reactor.spawned), 2)

    def test_default_probe_connects(self) -> None:
        """The default probe connects to the UNIX socket and hangs up once connected."""
        probe = connect_probe(as_reactor(self.reactor))
        d = probe("/run/x/ttyd.sock")
        [(address, factory, _timeout, _check)] = self.reactor.unixClients
        self.assertEqual(address, "/run/x/ttyd.sock")
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        self.assertIsNone(self.successResultOf(d))
        self.assertTrue(transport.disconnecting)

    def test_shell_argv(self) -> None:
        """A lone POSIX shell gets -l; a command with arguments runs as given."""
        self.assertEqual(shell_argv("/bin/sh"), ["/bin/sh", "-l"])
        self.assertEqual(shell_argv("zsh"), ["zsh", "-l"])
        self.assertEqual(shell_argv("bash -l"), ["bash", "-l"])
        self.assertEqual(shell_argv("/usr/bin/tmux new -A"), ["/usr/bin/tmux", "new", "-A"])
        self.assertEqual(shell_argv("/usr/bin/python3"), ["/usr/bin/python3"])
        self.assertRaises(ValueError, shell_argv, "  ")


class FailedTests(SupervisorTestCase):
    """ttyd that cannot run at all."""

    def test_missing_binary(self) -> None:
        """A missing binary fails at once, with the reason, and spawns nothing."""
        sup = self.make(ttyd=str(self.tmp / "nope"))
        with capturedLogs() as events:
            sup.startService()
        self.assertEqual(self.reactor.spawned, [])
        self.assertEqual(sup.state, "failed")
        self.assertFalse(sup.is_ready())
        self.assertEqual(sup.reason, f"ttyd binary not found: {self.tmp / 'nope'}")
        self.assertEqual(self.statuses[-1], {"state": "failed", "restarts": 0})
        self.assertIn(sup.reason, [e.get("reason") for e in events])

    def test_not_executable(self) -> None:
        """A binary without the execute bit fails with that reason."""
        self.ttyd.chmod(0o644)
        sup = self.make()
        sup.startService()
        self.assertEqual(sup.state, "failed")
        self.assertEqual(sup.reason, f"ttyd binary is not executable: {self.ttyd}")

    def test_spawn_error(self) -> None:
        """spawnProcess raising is a failure, not a crash."""
        self.reactor.spawn_error = OSError(7, "Argument list too long")
        sup = self.make()
        sup.startService()
        self.assertEqual(sup.state, "failed")
        self.assertIn("cannot start ttyd", sup.reason or "")

    def test_exits_before_ready_repeatedly(self) -> None:
        """ttyd that keeps exiting before it ever answers ends in failed, with its last words."""
        sup = self.make(max_start_failures=3)
        sup.startService()
        for n in range(3):
            self.last().protocol.childDataReceived(2, b"ERROR: bind failed\n")
            self.last().end(code=1)
            if n < 2:
                self.assertEqual(sup.state, "restarting")
                self.reactor.advance(10)
        self.assertEqual(sup.state, "failed")
        self.assertEqual(
            sup.reason, "ttyd exited 3 times before answering, last with exit code 1 (last output: ERROR: bind failed)"
        )
        self.reactor.advance(100)
        self.assertEqual(len(self.reactor.spawned), 3)


class RestartTests(SupervisorTestCase):
    """ttyd exits and comes back."""

    def test_restart(self) -> None:
        """An exit is logged with its code, counted, announced, and ttyd is spawned again after the delay."""
        sup = self.make()
        self.start_ready(sup)
        with capturedLogs() as events:
            self.last().end(code=3)
        self.assertEqual(sup.state, "restarting")
        self.assertEqual(sup.restarts, 1)
        self.assertEqual(self.statuses[-1], {"state": "restarting", "restarts": 1})
        [event] = [e for e in events if "exit" in e]
        self.assertEqual((event["code"], event["signal"], event["exit"]), (3, None, "exit code 3"))
        self.reactor.advance(0.09)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.reactor.advance(0.02)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.assertEqual(sup.state, "restarting")
        self.reactor.advance(0)
        self.probe.answer()
        self.assertEqual(sup.status(), {"state": "running", "restarts": 1})

    def test_exit_by_signal_logged(self) -> None:
        """A signal death is logged with the signal number."""
        sup = self.make()
        self.start_ready(sup)
        with capturedLogs() as events:
            self.last().end(code=None, signal=signal.SIGKILL)
        [event] = [e for e in events if "exit" in e]
        self.assertEqual((event["code"], event["signal"], event["exit"]), (None, 9, "killed by SIGKILL"))

    def delays(self, sup: TtydSupervisor, count: int, uptime: float = 0.0) -> list[float]:
        """Let ttyd become ready, live ``uptime`` seconds and exit, ``count`` times; the restart delays."""
        out = []
        for _ in range(count):
            self.reactor.advance(uptime)
            self.last().end(code=1)
            [restart] = self.reactor.getDelayedCalls()
            out.append(round(restart.getTime() - self.reactor.seconds(), 3))
            spawned = len(self.reactor.spawned)
            self.reactor.advance(restart.getTime() - self.reactor.seconds())
            self.assertEqual(len(self.reactor.spawned), spawned + 1)
            self.reactor.advance(0)
            self.probe.answer()
        return out

    def test_backoff_grows_and_is_capped(self) -> None:
        """The delay doubles from 0.1 s and stays at the cap of 10 s."""
        sup = self.make()
        self.start_ready(sup)
        self.assertEqual(self.delays(sup, 9), [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0])
        self.assertEqual(sup.restarts, 9)

    def test_backoff_resets_after_healthy_stretch(self) -> None:
        """ttyd that ran healthy_after seconds restarts after the initial delay again."""
        sup = self.make(healthy_after=30.0)
        self.start_ready(sup)
        self.assertEqual(self.delays(sup, 4), [0.1, 0.2, 0.4, 0.8])
        self.assertEqual(self.delays(sup, 1, uptime=30.0), [0.1])
        self.assertEqual(self.delays(sup, 1), [0.2])

    def test_listener_errors_are_logged(self) -> None:
        """A listener that raises is logged and the others still run."""
        sup = self.make()

        def broken(status: dict[str, Any]) -> None:
            raise ZeroDivisionError()

        sup.add_listener(broken)
        seen: list[dict[str, Any]] = []
        sup.add_listener(seen.append)
        self.start_ready(sup)
        self.assertEqual([s["state"] for s in seen], ["starting", "running"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)


class ShutdownTests(SupervisorTestCase):
    """Stopping the service stops ttyd for good."""

    def test_term_then_done(self) -> None:
        """stopService sends SIGTERM and fires once ttyd has exited; nothing restarts."""
        sup = self.make()
        self.start_ready(sup)
        d = sup.stopService()
        self.assertEqual(sup.state, "stopped")
        self.assertEqual(self.statuses[-1], {"state": "stopped", "restarts": 0})
        self.assertEqual(self.last().state.signals, ["TERM"])
        self.assertNoResult(d)
        self.last().end(code=None, signal=signal.SIGTERM)
        self.assertIsNone(self.successResultOf(d))
        self.reactor.advance(100)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.assertEqual(sup.restarts, 0)
        self.assertFalse(self.reactor.getDelayedCalls())

    def test_kill_after_grace(self) -> None:
        """ttyd that ignores SIGTERM gets SIGKILL after the grace period."""
        sup = self.make(stop_grace=5.0)
        self.start_ready(sup)
        d = sup.stopService()
        self.reactor.advance(4.9)
        self.assertEqual(self.last().state.signals, ["TERM"])
        self.reactor.advance(0.1)
        self.assertEqual(self.last().state.signals, ["TERM", "KILL"])
        self.assertNoResult(d)
        self.last().end(code=None, signal=signal.SIGKILL)
        self.successResultOf(d)
        self.assertEqual(len(self.reactor.spawned), 1)

    def test_stop_while_restart_pending(self) -> None:
        """Stopping during the backoff delay cancels the restart."""
        sup = self.make()
        self.start_ready(sup)
        self.last().end(code=1)
        d = sup.stopService()
        self.successResultOf(d)
        self.reactor.advance(100)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.assertEqual(sup.state, "stopped")

    def test_stop_while_starting(self) -> None:
        """Stopping before ttyd answered cancels the probe and signals ttyd."""
        sup = self.make()
        sup.startService()
        self.reactor.advance(0)
        d = sup.stopService()
        self.assertEqual(self.last().state.signals, ["TERM"])
        self.last().end(code=0)
        self.successResultOf(d)
        self.assertEqual(sup.state, "stopped")
        self.reactor.advance(100)
        self.assertEqual(len(self.reactor.spawned), 1)

    def test_stop_removes_socket(self) -> None:
        """The socket file is removed once ttyd has stopped."""
        sup = self.make()
        self.start_ready(sup)
        Path(sup.socket_path).write_bytes(b"")
        d = sup.stopService()
        self.last().end(code=0)
        self.successResultOf(d)
        self.assertFalse(os.path.exists(sup.socket_path))

    def test_exited_already(self) -> None:
        """A ttyd that died just before SIGTERM does not break the shutdown."""
        sup = self.make()
        self.start_ready(sup)
        self.last().state.ended = True
        d = sup.stopService()
        self.last().end(code=0)
        self.successResultOf(d)


class ChildexecTests(SynchronousTestCase):
    """The wrapper command line that makes ttyd die with the backend."""

    def test_wrap_pdeathsig(self) -> None:
        """The wrapper is this interpreter with the parent pid for PR_SET_PDEATHSIG."""
        argv = childexec.wrap(["/bin/ttyd", "-W"], die_with_parent=True)
        self.assertEqual(argv[0], sys.executable)
        self.assertEqual(argv[-5:], ["--pdeathsig", str(os.getpid()), "--", "/bin/ttyd", "-W"])
