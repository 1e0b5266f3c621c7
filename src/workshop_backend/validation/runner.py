"""Running a step's checks: files, commands, ports and URLs, all at once.

:class:`Validator` does the I/O that :mod:`~workshop_backend.validation.evaluate`
judges.  Everything it does is asynchronous: files are read in the reactor's
thread pool, commands are child processes with their own session (so that a
timeout kills the whole process group, grandchildren included), ports and
URLs are Twisted connections.  The rules of a step run concurrently (the
application layer makes sure a step is evaluated once at a time).  A rule
that cannot be checked is a failed rule with a detail saying why, never an
exception out of :meth:`Validator.run`.

Checks are guests of the student's servers: they never reset a connection.
A server started in the foreground prints a traceback into the student's
terminal for every reset it sees (Python's ``http.server`` does), which
looks like the check broke something.  So a port check says goodbye with a
FIN and waits for the server to close its side, and an http check reads
the response to its end (draining past the part it keeps) before it closes.

A deadline that expires does not reset an http check's connection either:
the check reports the timeout, and the request stays open (*lingers*) for
up to :data:`LINGER_SECONDS`.  The usual cause is a server the student
stopped with Ctrl+Z (beginners take it for "quit"): when they bring it back
with ``fg`` it answers the waiting request, where a reset would have
printed a traceback into their terminal for every check that had timed
out.  Checks of the same URL meanwhile wait on that one request instead of
opening new connections (so an automatic re-check every few seconds does
not pile them up), and take its answer when it comes.  At most
:data:`MAX_LINGERING` requests linger; past that, at the end of the linger
and at shutdown a request is aborted.
"""

from __future__ import annotations

import functools
import os
import signal
import stat
from collections.abc import Callable, Mapping
from typing import Any, Protocol, cast

from twisted.internet import defer, error
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
from twisted.internet.interfaces import (
    IDelayedCall,
    IProcessTransport,
    IReactorProcess,
    IReactorThreads,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import ProcessProtocol, connectionDone
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from workshop_backend.support import childexec
from workshop_backend.support.reactor import IBackendReactor
from workshop_backend.validation.evaluate import (
    CommandOutcome,
    FileOutcome,
    HttpOutcome,
    Outcome,
    PortOutcome,
    RuleResult,
    ValidationResult,
    evaluate,
    failed,
    resolve_path,
    rule_cwd,
    summarize,
)
from workshop_backend.validation.spec import Rule, ValidationSpec

FILE_CAP = 1024 * 1024
"""Bytes of a file read for ``contains``/``matches``."""
OUTPUT_CAP = 64 * 1024
"""Bytes kept of each of a command's stdout and stderr (the tail)."""
BODY_CAP = 1024 * 1024
"""Bytes of an HTTP body read for ``body``."""
DRAIN_CAP = 8 * 1024 * 1024
"""Bytes of a body past ``BODY_CAP`` read and dropped so the connection can close without a reset."""
DRAIN_SECONDS = 2.0
"""Seconds a body past ``BODY_CAP`` is drained before the connection is closed regardless."""
GOODBYE_SECONDS = 1.0
"""Seconds a port check waits for the server to close after our FIN before closing regardless."""
KILL_GRACE = 2.0
"""Seconds to wait for a killed command's pipes to close before giving up on them."""
USER_AGENT = b"workshop-backend-validation"
LINGER_SECONDS = 300.0
"""Seconds an http check's request stays open after its check has timed out, for a late answer."""
MAX_LINGERING = 8
"""Requests that may linger at once; a request past that is aborted when its check times out."""


class HttpClient(Protocol):
    """What the validator needs of treq: ``treq``, a ``treq.HTTPClient`` or a ``StubTreq``."""

    def get(self, url: str, **kwargs: Any) -> Deferred[Any]:
        """Send a GET; ``timeout``, ``allow_redirects``, ``unbuffered`` and ``headers`` as in treq."""


class Validator:
    """Evaluates steps' validation specs against the container's state.

    :param reactor: provides process spawning, TCP, time and a thread pool.
    :param cwd: the default working directory (the terminal's); relative
        paths and rule ``cwd`` values resolve against it.
    :param env: the environment of commands (the terminal's user's); its
        ``HOME`` also expands ``~`` in paths.
    :param http_request: a treq-like client (``get(url, timeout=...)``);
        by default a ``treq.HTTPClient`` without persistent connections.
    :param clock: what times the timeouts and stamps the results; the reactor
        by default.
    """

    log = Logger()

    def __init__(
        self,
        reactor: IBackendReactor,
        *,
        cwd: str,
        env: Mapping[str, str],
        http_request: HttpClient | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        self._reactor = reactor
        self._clock: IReactorTime = clock if clock is not None else IReactorTime(reactor)
        self._cwd = cwd
        self._env = dict(env)
        # treq and Twisted's HTTP client are imported with the first http
        # rule, not at start (most steps have none).
        self._http: HttpClient | None = http_request
        self._running_groups: dict[int, IProcessTransport] = {}
        #: GETs in flight by URL, shared by the checks of that URL (see the module's docstring).
        self._requests: dict[str, _SharedRequest] = {}

    # --- public ------------------------------------------------------------------

    def run(self, step_id: str, spec: ValidationSpec) -> Deferred[ValidationResult]:
        """Evaluate every rule of ``spec`` concurrently; fires with the step's result.

        One evaluation per step at a time is the application layer's rule
        (:meth:`~workshop_backend.application.runtime.WorkshopRuntime.validate`
        shares a running one); this only evaluates.
        """
        return Deferred.fromCoroutine(self._evaluate(step_id, spec))

    def stop(self) -> None:
        """Kill the process groups of all running commands, abort lingering requests (at shutdown)."""
        for pid, transport in list(self._running_groups.items()):
            kill_group(pid, transport)
        for request in list(self._requests.values()):
            request.abort()

    # --- the evaluation ----------------------------------------------------------

    async def _evaluate(self, step_id: str, spec: ValidationSpec) -> ValidationResult:
        started = self._clock.seconds()
        checks = [Deferred.fromCoroutine(self._check(rule)) for rule in spec.rules]
        results: list[RuleResult] = await gatherResults(checks, consumeErrors=True)
        result = summarize(step_id, results, started, self._clock.seconds())
        self.log.info(
            "validated {step}: {verdict} ({passed_count}/{rule_count} rules passed) in {duration_ms} ms",
            step=step_id,
            verdict="passed" if result.passed else "failed",
            passed_count=sum(r.passed for r in results),
            rule_count=len(results),
            duration_ms=result.duration_ms,
        )
        return result

    async def _check(self, rule: Rule) -> RuleResult:
        try:
            outcome: Outcome
            cwd = rule_cwd(rule, self._cwd, self._env)
            if rule.type == "file":
                outcome = await self._file(rule, cwd)
            elif rule.type == "command":
                outcome = await self._command(rule, cwd)
            elif rule.type == "port":
                outcome = await self._port(rule)
            else:
                outcome = await self._http_get(rule)
            return evaluate(rule, outcome)
        except Exception:
            self.log.failure("checking rule {rule} failed unexpectedly", rule=rule.id)
            return failed(rule, "the check itself failed (a bug in the backend; its log has the details)")

    def _thread_pool(self) -> ThreadPool:
        # Adapted when used, so a test may pass a reactor that does only part of the work.
        return IReactorThreads(self._reactor).getThreadPool()

    def _deadline(self, d: Deferred[Any], timeout: float) -> _Deadline:
        return _Deadline(self._clock, timeout, d.cancel)

    # --- file ----------------------------------------------------------------------

    async def _file(self, rule: Rule, cwd: str) -> FileOutcome:
        assert rule.path is not None
        path = resolve_path(rule.path, cwd, self._env)
        want_content = rule.contains is not None or rule.matches is not None
        d = deferToThreadPool(self._reactor, self._thread_pool(), read_file, path, want_content, FILE_CAP)
        with self._deadline(d, rule.timeout) as deadline:
            try:
                return await d
            except defer.CancelledError:
                if not deadline.expired:
                    raise
                return FileOutcome(path=path, exists=False, timed_out=True)

    # --- command -------------------------------------------------------------------

    async def _command(self, rule: Rule, cwd: str) -> CommandOutcome:
        assert rule.run is not None
        isdir = deferToThreadPool(self._reactor, self._thread_pool(), os.path.isdir, cwd)
        if not await isdir:
            return CommandOutcome(error=f"the working directory {cwd} does not exist")
        argv = childexec.wrap(["/bin/sh", "-c", rule.run], new_session=True)
        proto = _CommandProtocol(OUTPUT_CAP)
        try:
            transport = IReactorProcess(self._reactor).spawnProcess(proto, argv[0], argv, env=self._env, path=cwd)
        except OSError as e:
            return CommandOutcome(error=e.strerror or str(e))
        pid = transport.pid
        assert pid is not None
        self._running_groups[pid] = transport
        timers: list[IDelayedCall] = []
        timed_out = False

        def on_exit() -> None:
            # Whatever the command left running in the background goes too
            # (and with it, the pipes it would otherwise hold open).
            kill_group(pid, None)

        def on_timeout() -> None:
            nonlocal timed_out
            if proto.exited:
                # The shell is gone but something outside its group (it ran
                # setsid) holds our pipes: stop waiting for them.
                transport.loseConnection()
                return
            timed_out = True
            kill_group(pid, transport)
            timers.append(self._clock.callLater(KILL_GRACE, transport.loseConnection))

        proto.on_exit = on_exit
        timers.append(self._clock.callLater(rule.timeout, on_timeout))
        try:
            await proto.ended
        finally:
            self._running_groups.pop(pid, None)
            for timer in timers:
                if timer.active():
                    timer.cancel()
        reason = proto.reason
        exit_code = getattr(reason, "exitCode", None)
        signal_number = getattr(reason, "signal", None)
        return CommandOutcome(
            exit_code=exit_code,
            signal=signal_number,
            stdout=bytes(proto.stdout.data),
            stderr=bytes(proto.stderr.data),
            stdout_truncated=proto.stdout.truncated,
            stderr_truncated=proto.stderr.truncated,
            timed_out=timed_out,
        )

    # --- port --------------------------------------------------------------------

    async def _port(self, rule: Rule) -> PortOutcome:
        assert rule.port is not None
        endpoint = HostnameEndpoint(self._reactor, rule.host, rule.port, timeout=rule.timeout)
        d = connectProtocol(endpoint, _Knock())
        with self._deadline(d, rule.timeout) as deadline:
            try:
                proto = await d
            except (
                defer.CancelledError,
                error.ConnectingCancelledError,
                error.ConnectError,
                error.DNSLookupError,
            ) as e:
                if deadline.expired or isinstance(e, error.TimeoutError):
                    return PortOutcome(connected=False, timed_out=True)
                if isinstance(e, error.DNSLookupError):
                    return PortOutcome(connected=False, error=f"cannot resolve {rule.host}")
                if isinstance(e, error.ConnectError):
                    return PortOutcome(connected=False, error=_connect_error(e))
                raise
        # Connected: that is the answer.  Leave politely before giving it, so
        # the server has seen a plain end-of-file (not a reset) by the time
        # the student looks at the result.
        await proto.leave(self._clock, GOODBYE_SECONDS)
        return PortOutcome(connected=True)

    # --- http --------------------------------------------------------------------

    async def _http_get(self, rule: Rule) -> HttpOutcome:
        url = rule.url
        assert url is not None
        request = self._requests.get(url)
        if request is None:
            request = _SharedRequest(Deferred.fromCoroutine(self._fetch(url)), self._clock)
            self._requests[url] = request
            request.finished.addBoth(lambda _: self._forget(url, request))
        d = request.wait()
        with self._deadline(d, rule.timeout) as deadline:
            try:
                return await d
            except NotImplementedError:
                # A build without TLS (the lean bundle): Twisted's agent cannot speak https.
                return HttpOutcome(error="https:// cannot be checked: this build has no TLS support")
            except _http_errors() as e:
                if deadline.expired:
                    lingering = sum(1 for r in self._requests.values() if r.lingering)
                    request.linger(LINGER_SECONDS if lingering < MAX_LINGERING else 0.0)
                    return HttpOutcome(timed_out=True)
                if isinstance(e, defer.CancelledError):
                    raise
                return HttpOutcome(error=_http_error(e))

    def _forget(self, url: str, request: _SharedRequest) -> None:
        if self._requests.get(url) is request:
            del self._requests[url]

    def _client(self) -> HttpClient:
        """The HTTP client: treq without persistent connections, made (and imported) on first use."""
        if self._http is None:
            from treq.client import HTTPClient
            from twisted.web.client import Agent, HTTPConnectionPool

            pool = HTTPConnectionPool(self._reactor, persistent=False)
            self._http = cast(HttpClient, HTTPClient(Agent(self._reactor, pool=pool)))
        return self._http

    async def _fetch(self, url: str) -> HttpOutcome:
        # The deadline is ours (the injected clock's), not treq's ``timeout``
        # (which would use the global reactor and cover only the headers).
        response = await self._client().get(
            url,
            allow_redirects=False,
            unbuffered=True,
            headers={b"User-Agent": [USER_AGENT]},
        )
        location = response.headers.getRawHeaders(b"location", [None])[0]
        done: Deferred[None] = Deferred(lambda _: body.stop())
        body = _CappedBody(BODY_CAP, done, self._clock)
        response.deliverBody(body)
        await done
        return HttpOutcome(
            status=response.code,
            body=bytes(body.data),
            truncated=body.truncated,
            location=location.decode("latin-1") if location else None,
        )


# --- helpers (module level: they hold no state) -----------------------------------------


def read_file(path: str, want_content: bool, cap: int) -> FileOutcome:
    """Look at ``path`` (following symlinks), reading up to ``cap`` bytes if asked.

    Runs in a thread.  Only regular files are read, opened non-blocking, so a
    FIFO or a device at the path cannot hang the thread.
    """
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return FileOutcome(path=path, exists=False)
    except OSError as e:
        return FileOutcome(path=path, exists=False, error=e.strerror or str(e))
    is_file, is_dir = stat.S_ISREG(st.st_mode), stat.S_ISDIR(st.st_mode)
    if not want_content or not is_file:
        return FileOutcome(path=path, exists=True, is_file=is_file, is_dir=is_dir, size=st.st_size)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return FileOutcome(path=path, exists=True, is_file=False)
            data = f.read(cap + 1)
    except OSError as e:
        return FileOutcome(path=path, exists=True, is_file=True, error=e.strerror or str(e))
    truncated = len(data) > cap
    size = max(st.st_size, len(data)) if truncated else len(data)
    return FileOutcome(path=path, exists=True, is_file=True, content=data[:cap], truncated=truncated, size=size)


def kill_group(pid: int, transport: IProcessTransport | None) -> None:
    """SIGKILL the process group led by ``pid``; the process itself if no group yet."""
    try:
        os.killpg(pid, signal.SIGKILL)
        return
    except ProcessLookupError:
        pass  # not yet in its own session, or nothing left in the group
    except PermissionError:
        pass  # a member we may not signal (setuid): the others got it
    if transport is not None:
        try:
            transport.signalProcess("KILL")
        except error.ProcessExitedAlready:
            pass


@functools.cache
def _http_errors() -> tuple[type[Exception], ...]:
    """How treq and the agent say that a GET did not get an answer."""
    from twisted.web.client import (
        RequestGenerationFailed,
        RequestTransmissionFailed,
        ResponseFailed,
        ResponseNeverReceived,
    )
    from twisted.web.error import SchemeNotSupported

    return (
        defer.CancelledError,
        error.ConnectingCancelledError,
        error.ConnectError,
        error.DNSLookupError,
        ResponseFailed,
        ResponseNeverReceived,
        RequestTransmissionFailed,
        RequestGenerationFailed,
        SchemeNotSupported,
    )


class _SharedRequest:
    """One GET in flight, which the checks of its URL wait on; it may outlive them (linger).

    A check's deadline cancels only its own wait (:meth:`wait`), never the
    request; :meth:`linger` then gives the request a time limit of its own,
    after which (or at :meth:`abort`) it is cancelled, which aborts its
    connection.
    """

    def __init__(self, fetch: Deferred[HttpOutcome], clock: IReactorTime) -> None:
        self._fetch = fetch
        self._clock = clock
        self._waiters: list[Deferred[HttpOutcome]] = []
        self._limit: IDelayedCall | None = None
        self._result: HttpOutcome | Failure | None = None
        #: Fires (with None) when the request has ended, whatever its end.
        self.finished: Deferred[None] = Deferred()
        fetch.addBoth(self._ended)

    @property
    def lingering(self) -> bool:
        """Whether a check gave up on this request and it waits on for a late answer."""
        return self._limit is not None

    def wait(self) -> Deferred[HttpOutcome]:
        """The request's outcome, for one check; cancelling this cancels only this wait."""
        if isinstance(self._result, Failure):
            return defer.fail(self._result)
        if self._result is not None:
            return defer.succeed(self._result)
        d: Deferred[HttpOutcome] = Deferred(lambda d: self._waiters.remove(d))
        self._waiters.append(d)
        return d

    def linger(self, seconds: float) -> None:
        """A check timed out: keep the request open up to ``seconds`` more (from the first time), unless waited on."""
        if self._waiters or self._limit is not None or self._fetch.called:
            return
        if seconds <= 0:
            self.abort()
            return
        self._limit = self._clock.callLater(seconds, self.abort)

    def abort(self) -> None:
        """Give up on the request now (its connection is aborted)."""
        self._fetch.cancel()

    def _ended(self, result: HttpOutcome | Failure) -> None:
        self._result = result
        if self._limit is not None and self._limit.active():
            self._limit.cancel()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)
        # Nobody waits for a lingering request's end: its failure (if any) ends here.
        self.finished.callback(None)


class _Deadline:
    """A timeout that cancels an operation; ``expired`` tells a timeout from other failures."""

    def __init__(self, clock: IReactorTime, timeout: float, cancel: Callable[[], object]) -> None:
        self.expired = False
        self._cancel = cancel
        self._call = clock.callLater(timeout, self._expire)

    def _expire(self) -> None:
        self.expired = True
        self._cancel()

    def __enter__(self) -> _Deadline:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._call.active():
            self._call.cancel()


def _connect_error(e: error.ConnectError) -> str:
    if isinstance(e, error.ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, error.NoRouteError):
        return "no route to host"
    if isinstance(e, error.TCPTimedOutError):
        return "the connection timed out"
    if isinstance(e.osError, str) and e.osError:
        return e.osError
    return str(e.args[0]) if e.args and e.args[0] else type(e).__name__


def _http_error(e: Exception) -> str:
    if isinstance(e, error.DNSLookupError):
        return "cannot resolve the host"
    if isinstance(e, error.ConnectError):
        return _connect_error(e)
    reasons = getattr(e, "reasons", None)
    if reasons:
        inner = reasons[0].value
        if isinstance(inner, error.ConnectError):
            return _connect_error(inner)
        from twisted.web.client import ResponseDone
        from twisted.web.http import PotentialDataLoss

        if isinstance(inner, ResponseDone | PotentialDataLoss):
            return "the connection closed before a complete answer"
        return f"{type(inner).__name__}: {inner}"
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


class _Tail:
    """The last ``cap`` bytes of a stream."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()
        self.truncated = False

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > self.cap:
            del self.data[: len(self.data) - self.cap]
            self.truncated = True


class _CommandProtocol(ProcessProtocol):
    """Collects a command's output; ``ended`` fires once it exited and its pipes closed."""

    def __init__(self, cap: int) -> None:
        self.stdout = _Tail(cap)
        self.stderr = _Tail(cap)
        self.exited = False
        self.reason: BaseException | None = None
        self.ended: Deferred[None] = Deferred()
        self.on_exit: Callable[[], None] = lambda: None

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.closeStdin()  # a command that reads stdin gets EOF

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == 1:
            self.stdout.add(data)
        elif childFD == 2:
            self.stderr.add(data)

    def processExited(self, reason: Failure) -> None:
        self.exited = True
        self.reason = reason.value
        self.on_exit()

    def processEnded(self, reason: Failure) -> None:
        if self.reason is None:
            self.reason = reason.value
        self.ended.callback(None)


class _CappedBody(TwistedProtocol):
    """Collects up to ``cap`` bytes of a response body; ``done`` fires then or at its end.

    Past the cap the rest is read and dropped (up to ``DRAIN_CAP`` bytes, for
    ``DRAIN_SECONDS``) so that the connection ends cleanly: closing a socket
    with unread data in it sends a reset, and the server then complains
    (Python's ``http.server`` prints a ``BrokenPipeError`` traceback).
    """

    def __init__(self, cap: int, done: Deferred[None], clock: IReactorTime) -> None:
        self.cap = cap
        self.data = bytearray()
        self.truncated = False
        self.done = done
        self._clock = clock
        self._drained = 0
        self._drain_timer: IDelayedCall | None = None

    def dataReceived(self, data: bytes) -> None:
        if self.truncated:
            self._drained += len(data)
            if self._drained > DRAIN_CAP:
                self.stop()
            return
        if self.done.called:
            return
        room = self.cap - len(self.data)
        self.data += data[:room]
        if len(data) > room:
            self.truncated = True
            self._drained = len(data) - room
            self._drain_timer = self._clock.callLater(DRAIN_SECONDS, self.stop)
            self.done.callback(None)

    def stop(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        # However the body ended (cleanly, cut short, stopped by us), what
        # arrived is what there is to judge.
        if self._drain_timer is not None and self._drain_timer.active():
            self._drain_timer.cancel()
        if not self.done.called:
            self.done.callback(None)


class _Knock(TwistedProtocol):
    """A port check's connection: says nothing and leaves politely.

    :meth:`leave` half-closes (a FIN: "nothing to say"), reads and drops
    whatever the server says (a banner), and closes once the server has
    closed its side, or after ``grace`` seconds.  Closing with unread data,
    or aborting, would reset the connection instead.
    """

    def __init__(self) -> None:
        self.gone: Deferred[None] = Deferred()
        self._timer: IDelayedCall | None = None

    def leave(self, clock: IReactorTime, grace: float) -> Deferred[None]:
        """Half-close now; fires once the connection is closed."""
        transport = self.transport
        assert transport is not None
        if not self.gone.called:
            ITCPTransport(transport).loseWriteConnection()
            self._timer = clock.callLater(grace, transport.loseConnection)
        return self.gone

    def dataReceived(self, data: bytes) -> None:
        pass  # read (so the close is not a reset) and dropped

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if not self.gone.called:
            self.gone.callback(None)
