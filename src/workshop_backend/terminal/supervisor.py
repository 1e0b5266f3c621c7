"""The supervised ttyd child.

:class:`TtydSupervisor` is a small Twisted service over
``reactor.spawnProcess``.  It runs ttyd writable (``-W``) on a UNIX socket in a
private (0700) directory, waits until the socket answers, and restarts ttyd
with capped exponential backoff when it exits.  ttyd is started through
:func:`workshop_backend.support.childexec.wrap` with ``die_with_parent`` so that the
kernel kills it even when the backend itself is killed with SIGKILL.

States (``.state``):

``starting``
    ttyd was spawned for the first time and its socket does not answer yet.
``running``
    the socket answers: terminals can connect.
``restarting``
    ttyd exited (or never answered); a new one is spawned after the backoff
    delay and the state stays ``restarting`` until that one answers.
``failed``
    ttyd cannot run at all (missing or not executable binary, spawn error, or
    it kept exiting before it ever answered); ``.reason`` says why.  Final.
``stopped``
    the service was stopped (or never started).

Listeners registered with :meth:`TtydSupervisor.add_listener` get
:meth:`TtydSupervisor.status` on every state change; the terminal bridge uses
that to close open browser sockets when ttyd goes away.
"""

from __future__ import annotations

import os
import shlex
import signal
import stat
import tempfile
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import IDelayedCall, IProcessTransport
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from workshop_backend.support import childexec
from workshop_backend.support.reactor import IBackendReactor

STARTING = "starting"
RUNNING = "running"
RESTARTING = "restarting"
FAILED = "failed"
STOPPED = "stopped"

#: A UNIX socket path is limited to 108 bytes (107 and a NUL); ttyd fails
#: silently past it.  Paths longer than this go to a private temp directory.
MAX_SOCKET_PATH = 100

#: Shells that understand ``-l`` (login shell) when given as a single word.
LOGIN_SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "fish"})

Probe = Callable[[str], "Deferred[None]"]
Listener = Callable[[dict[str, Any]], None]

log = Logger(namespace="workshop_backend.terminal.supervisor")


def shell_argv(shell: str) -> list[str]:
    """The argv ttyd runs for ``--shell``: a lone POSIX shell runs as a login shell."""
    argv = shlex.split(shell)
    if not argv:
        raise ValueError("the shell command is empty")
    if len(argv) == 1 and os.path.basename(argv[0]) in LOGIN_SHELLS:
        argv.append("-l")
    return argv


def describe_exit(reason: Failure) -> tuple[str, int | None, int | None]:
    """``(words, code, signal)`` for a ``processEnded`` reason."""
    value = reason.value
    if isinstance(value, ProcessTerminated) and value.signal is not None:
        try:
            name = signal.Signals(value.signal).name
        except ValueError:
            name = str(value.signal)
        return f"killed by {name}", None, int(value.signal)
    if isinstance(value, ProcessDone | ProcessTerminated):
        code = value.exitCode if value.exitCode is not None else 0
        return f"exit code {code}", int(code), None
    return f"ended: {value}", None, None


def connect_probe(reactor: IBackendReactor, timeout: float = 2.0) -> Probe:
    """The default readiness probe: a connection to the socket is accepted."""

    def probe(path: str) -> Deferred[None]:
        endpoint = UNIXClientEndpoint(reactor, path, timeout=timeout)
        factory = Factory.forProtocol(Protocol)
        factory.noisy = False
        d: Deferred[Protocol] = endpoint.connect(factory)

        def connected(proto: Protocol) -> None:
            if proto.transport is not None:
                proto.transport.loseConnection()

        return d.addCallback(connected)

    return probe


class _TtydProtocol(ProcessProtocol):
    """Collects ttyd's log lines and reports its end to the supervisor."""

    def __init__(self, supervisor: TtydSupervisor) -> None:
        self._supervisor = supervisor
        self._partial = b""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.closeStdin()

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > 4096:
            lines.append(self._partial)
            self._partial = b""
        for line in lines:
            self._supervisor._ttyd_said(line.decode("utf-8", "replace").rstrip())

    def processEnded(self, reason: Failure) -> None:
        self._supervisor._ttyd_ended(self, reason)


class TtydSupervisor(Service):
    """Runs ttyd on a private UNIX socket and keeps it running."""

    name = "ttyd"

    def __init__(
        self,
        *,
        reactor: IBackendReactor,
        ttyd: str,
        shell: str,
        state_dir: Path,
        cwd: str,
        env: Mapping[str, str],
        backoff_initial: float = 0.1,
        backoff_factor: float = 2.0,
        backoff_max: float = 10.0,
        healthy_after: float = 30.0,
        max_start_failures: int = 5,
        ready_timeout: float = 10.0,
        probe_interval: float = 0.05,
        stop_grace: float = 5.0,
        ping_interval: int = 60,
        extra_args: Sequence[str] = (),
        probe: Probe | None = None,
        verify: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._reactor = reactor
        self.ttyd = ttyd
        self.shell = shell
        self.state_dir = Path(state_dir).absolute()
        self.cwd = cwd
        self.env = dict(env)
        self.backoff_initial = backoff_initial
        self.backoff_factor = backoff_factor
        self.backoff_max = backoff_max
        self.healthy_after = healthy_after
        self.max_start_failures = max_start_failures
        self.ready_timeout = ready_timeout
        self.probe_interval = probe_interval
        self.stop_grace = stop_grace
        self.ping_interval = ping_interval
        self.extra_args = list(extra_args)
        self._probe: Probe = probe if probe is not None else connect_probe(reactor)
        #: Why the binary must not run now (a changed checksum), or None; asked before every start.
        self.verify = verify

        self.state = STOPPED
        self.restarts = 0
        self.reason: str | None = "not started"
        self.pid: int | None = None
        self._listeners: list[Listener] = []
        self._socket_dir: Path | None = None
        self._temp_dir = False
        self._proto: _TtydProtocol | None = None
        self._transport: IProcessTransport | None = None
        self._delay = backoff_initial
        self._failures_before_ready = 0
        self._spawned_at = 0.0
        self._ready_at: float | None = None
        self._pending: IDelayedCall | None = None
        self._probing: Deferred[None] | None = None
        self._kill_call: IDelayedCall | None = None
        self._stopping = False
        self._stopped: list[Deferred[None]] = []
        self._tail: deque[str] = deque(maxlen=20)

    # -- public ---------------------------------------------------------

    @property
    def socket_path(self) -> str:
        """ttyd's UNIX socket (its private directory is made when the service starts)."""
        if self._socket_dir is None:
            self._socket_dir = self._choose_socket_dir()
        return str(self._socket_dir / "ttyd.sock")

    def is_ready(self) -> bool:
        """True while ttyd answers on its socket."""
        return self.state == RUNNING

    def status(self) -> dict[str, Any]:
        """What ``/api/v1/status`` shows under ``terminal``."""
        return {"state": self.state, "restarts": self.restarts}

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(self.status())`` on every state change."""
        self._listeners.append(listener)

    def argv(self) -> list[str]:
        """ttyd's command line (without the childexec wrapper)."""
        return [
            self.ttyd,
            "-W",
            "-i",
            self.socket_path,
            "-P",
            str(self.ping_interval),
            "-T",
            "xterm-256color",
            *self.extra_args,
            *shell_argv(self.shell),
        ]

    # -- service --------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._stopping = False
        self.restarts = 0
        self._delay = self.backoff_initial
        self._failures_before_ready = 0
        try:
            self._prepare_socket_dir()
        except OSError as e:
            self._fail(f"cannot prepare ttyd's socket directory: {e}")
            return
        self._set_state(STARTING, None)
        self._spawn()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self._stopping = True
        self._cancel_timers()
        self._set_state(STOPPED, "stopped")
        if self._transport is None:
            self._cleanup_socket()
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._stopped.append(d)
        self._signal("TERM")
        self._kill_call = self._reactor.callLater(self.stop_grace, self._kill_after_grace)
        return d

    # -- internals ------------------------------------------------------

    def _choose_socket_dir(self) -> Path:
        candidate = self.state_dir / "ttyd"
        if len(os.fsencode(str(candidate / "ttyd.sock"))) <= MAX_SOCKET_PATH:
            self._temp_dir = False
            return candidate
        self._temp_dir = True
        return Path(tempfile.mkdtemp(prefix="workshop-ttyd-"))

    def _prepare_socket_dir(self) -> None:
        if self._socket_dir is None:
            self._socket_dir = self._choose_socket_dir()
        path = self._socket_dir
        if self._temp_dir and not path.exists():
            path = self._socket_dir = Path(tempfile.mkdtemp(prefix="workshop-ttyd-"))
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(path)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise OSError(f"{path} is not a directory of ours")
        os.chmod(path, 0o700)

    def _cleanup_socket(self) -> None:
        if self._socket_dir is None:
            return
        try:
            os.unlink(self._socket_dir / "ttyd.sock")
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warn("could not remove ttyd's socket: {error}", error=str(e))
        if self._temp_dir:
            try:
                os.rmdir(self._socket_dir)
            except OSError:
                pass

    def _set_state(self, state: str, reason: str | None) -> None:
        self.reason = reason
        if state == self.state:
            return
        self.state = state
        status = self.status()
        for listener in list(self._listeners):
            try:
                listener(status)
            except Exception:
                # A broken listener must not stop the supervisor: log it with its traceback.
                log.failure("terminal state listener failed", state=state)

    def _fail(self, reason: str) -> None:
        log.error("terminal unavailable: {reason}", reason=reason)
        self._cancel_timers()
        self._set_state(FAILED, reason)

    def _cancel_timers(self) -> None:
        for call in (self._pending, self._kill_call):
            if call is not None and call.active():
                call.cancel()
        self._pending = None
        self._kill_call = None
        if self._probing is not None:
            probing, self._probing = self._probing, None
            probing.cancel()

    def _spawn(self) -> None:
        self._pending = None
        if not os.path.isfile(self.ttyd):
            self._fail(f"ttyd binary not found: {self.ttyd}")
            return
        if not os.access(self.ttyd, os.X_OK):
            self._fail(f"ttyd binary is not executable: {self.ttyd}")
            return
        problem = self.verify()
        if problem is not None:
            self._fail(problem)
            return
        try:
            argv = childexec.wrap(self.argv(), die_with_parent=True)
        except ValueError as e:
            self._fail(str(e))
            return
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        env = dict(self.env)
        env["TERM"] = "xterm-256color"
        proto = _TtydProtocol(self)
        try:
            transport = self._reactor.spawnProcess(
                proto, argv[0], argv, env=env, path=self.cwd, childFDs={0: "w", 1: "r", 2: "r"}
            )
        except OSError as e:
            self._fail(f"cannot start ttyd: {e}")
            return
        self._proto = proto
        self._transport = transport
        self.pid = transport.pid
        self._spawned_at = self._reactor.seconds()
        self._ready_at = None
        log.info("ttyd started (pid {pid}) on {socket}", pid=self.pid, socket=self.socket_path)
        self._probe_soon(0.0)

    def _probe_soon(self, delay: float) -> None:
        self._pending = self._reactor.callLater(delay, self._probe_once)

    def _probe_once(self) -> None:
        self._pending = None
        if self._stopping or self._transport is None:
            return
        d = self._probe(self.socket_path)
        self._probing = d
        proto = self._proto

        def answered(_: object) -> None:
            if self._probing is d:
                self._probing = None
            if self._proto is not proto or self._stopping:
                return
            self._ready_at = self._reactor.seconds()
            self._failures_before_ready = 0
            log.info("ttyd is ready (pid {pid})", pid=self.pid)
            self._set_state(RUNNING, None)

        def refused(f: Failure) -> None:
            if self._probing is d:
                self._probing = None
            if self._proto is not proto or self._stopping:
                return
            if self._reactor.seconds() - self._spawned_at >= self.ready_timeout:
                log.warn(
                    "ttyd (pid {pid}) did not answer on its socket within {timeout} s: killing it",
                    pid=self.pid,
                    timeout=self.ready_timeout,
                )
                self._signal("KILL")
                return
            self._probe_soon(self.probe_interval)

        d.addCallbacks(answered, refused)

    def _signal(self, name: str) -> None:
        if self._transport is None:
            return
        try:
            self._transport.signalProcess(name)
        except ProcessExitedAlready:
            pass

    def _kill_after_grace(self) -> None:
        self._kill_call = None
        log.warn("ttyd (pid {pid}) ignored SIGTERM for {grace} s: killing it", pid=self.pid, grace=self.stop_grace)
        self._signal("KILL")

    def _ttyd_said(self, line: str) -> None:
        if line:
            self._tail.append(line)
            log.debug("ttyd: {line}", line=line)

    def _ttyd_ended(self, proto: _TtydProtocol, reason: Failure) -> None:
        if proto is not self._proto:
            return
        words, code, sig = describe_exit(reason)
        now = self._reactor.seconds()
        uptime = now - self._spawned_at
        self._proto = None
        self._transport = None
        pid, self.pid = self.pid, None
        if self._probing is not None:
            probing, self._probing = self._probing, None
            probing.cancel()
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self._pending = None

        if self._stopping:
            log.info("ttyd (pid {pid}) stopped: {exit}", pid=pid, exit=words, code=code, signal=sig)
            if self._kill_call is not None and self._kill_call.active():
                self._kill_call.cancel()
            self._kill_call = None
            self._cleanup_socket()
            waiting, self._stopped = self._stopped, []
            for d in waiting:
                d.callback(None)
            return

        log.warn(
            "ttyd (pid {pid}) exited: {exit}; restart {restart} after {uptime:.1f} s",
            pid=pid,
            exit=words,
            code=code,
            signal=sig,
            uptime=uptime,
            restart=self.restarts + 1,
            stderr_tail=list(self._tail),
        )
        if self._ready_at is None:
            self._failures_before_ready += 1
            if self._failures_before_ready >= self.max_start_failures:
                tail = f" (last output: {self._tail[-1]})" if self._tail else ""
                self._fail(f"ttyd exited {self._failures_before_ready} times before answering, last with {words}{tail}")
                return
        elif now - self._ready_at >= self.healthy_after:
            self._delay = self.backoff_initial
        delay = self._delay
        self._delay = min(self._delay * self.backoff_factor, self.backoff_max)
        self.restarts += 1
        self._set_state(RESTARTING, f"ttyd {words}; restarting in {delay:g} s")
        self._pending = self._reactor.callLater(delay, self._spawn)
