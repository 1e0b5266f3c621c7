"""Tests for the validation runner: real /bin/sh, real sockets, StubTreq and Clock where time matters."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from typing import Any, cast

from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from zope.interface import implementer

from tests.fakes import as_reactor
from tests.processes import alive
from workshop_backend.validation import runner
from workshop_backend.validation.evaluate import RuleResult, ValidationResult
from workshop_backend.validation.runner import HttpClient, Validator
from workshop_backend.validation.spec import ValidationSpec, parse_validation

REACTOR: Any = reactor
"""The global reactor, untyped (its interfaces' stubs are stricter than its classes)."""
ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent-home", "LC_ALL": "C"}


def spec(*rules: dict[str, object]) -> ValidationSpec:
    """A spec parsed as the loader would."""
    return parse_validation({"rules": [{"id": f"r{i}", **r} for i, r in enumerate(rules)]})


async def dies(pid: int, timeout: float = 5.0) -> bool:
    """Whether ``pid`` is dead within ``timeout``: SIGKILL is delivered when the
    kernel next schedules the process, a moment after kill() returns on a busy machine."""
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        await deferLater(0.01)
    return True


def read_text(path: str) -> str:
    """A small file's text, or "" if it does not exist yet."""
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def read_pid(path: str) -> int:
    """The pid a command wrote to ``path``."""
    with open(path) as f:
        return int(f.read().strip())


class _Page(Resource):
    """A resource answering with a fixed status, body and headers."""

    isLeaf = True

    def __init__(self, status: int = 200, body: bytes = b"", headers: dict[bytes, bytes] | None = None) -> None:
        super().__init__()
        self.status, self.body, self.headers = status, body, headers or {}

    def render_GET(self, request: Any) -> bytes:
        request.setResponseCode(self.status)
        for name, value in self.headers.items():
            request.setHeader(name, value)
        return self.body


class _Hang(Resource):
    """A resource that never answers."""

    isLeaf = True

    def render_GET(self, request: Any) -> object:
        return NOT_DONE_YET


class RunnerTestCase(TestCase):
    """Shared set-up: a temp directory as the working directory."""

    def setUp(self) -> None:
        self.dir = os.path.realpath(self.mktemp())
        os.makedirs(self.dir)
        self.validator = Validator(REACTOR, cwd=self.dir, env=ENV)

    def run_spec(self, validation: ValidationSpec, step: str = "s") -> Deferred[ValidationResult]:
        return self.validator.run(step, validation)

    async def one(self, **rule: object) -> RuleResult:
        """Run a single rule and return its result."""
        result = await self.run_spec(spec(rule))
        self.assertEqual(len(result.results), 1)
        return result.results[0]

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def write(self, name: str, data: bytes) -> str:
        with open(self.path(name), "wb") as f:
            f.write(data)
        return self.path(name)


class CommandTests(RunnerTestCase):
    """Command rules through /bin/sh."""

    def test_exit_code(self) -> Deferred[None]:
        """The exit code decides; output shows on failure."""

        async def go() -> None:
            ok = await self.one(type="command", run="echo fine")
            bad = await self.one(type="command", run="echo oops >&2; exit 3")
            expected = await self.one(type="command", run="exit 3", exit_code=3)
            self.assertEqual((ok.passed, ok.detail), (True, "exit code 0"))
            self.assertEqual((bad.passed, bad.detail), (False, "exit code 3, expected 0\nstderr:\noops"))
            self.assertTrue(expected.passed)

        return ensureDeferred(go())

    def test_stdout_regex(self) -> Deferred[None]:
        """``stdout`` is matched against what the command printed."""

        async def go() -> None:
            ok = await self.one(type="command", run="printf 'a\\nversion 1.25\\n'", stdout=r"^version 1\.2\d$")
            bad = await self.one(type="command", run="echo version 2", stdout=r"^version 1")
            self.assertEqual(ok.passed, True)
            self.assertEqual(
                bad.detail, 'exit code 0 as expected, but the output does not match "^version 1"\nstdout:\nversion 2'
            )

        return ensureDeferred(go())

    def test_cwd_and_env(self) -> Deferred[None]:
        """Commands run in the default cwd, or the rule's (relative to it), with the given environment."""
        os.makedirs(self.path("sub"))

        async def go() -> None:
            here = await self.one(type="command", run='pwd; echo "$LC_ALL"', stdout=f"\\A{re.escape(self.dir)}\nC$")
            sub = await self.one(type="command", run="pwd", cwd="sub", stdout=f"^{self.path('sub')}$")
            missing = await self.one(type="command", run="pwd", cwd="nope")
            self.assertTrue(here.passed, here.detail)
            self.assertTrue(sub.passed, sub.detail)
            self.assertEqual(
                missing.detail, f"could not run the command: the working directory {self.path('nope')} does not exist"
            )

        return ensureDeferred(go())

    def test_stdin_is_closed(self) -> Deferred[None]:
        """A command reading stdin gets end-of-file at once instead of hanging."""

        async def go() -> None:
            result = await self.one(type="command", run="cat; echo done", stdout="^done$", timeout=5)
            self.assertTrue(result.passed, result.detail)

        return ensureDeferred(go())

    def test_timeout_kills_the_whole_group(self) -> Deferred[None]:
        """At the timeout the shell and its background grandchild are both killed."""
        pidfile = self.path("grandchild.pid")

        async def go() -> None:
            started = time.monotonic()
            result = await self.one(type="command", run=f"sleep 30 & echo $! > {pidfile}; wait", timeout=1)
            self.assertLess(time.monotonic() - started, 10)
            self.assertEqual(result.passed, False)
            self.assertEqual(
                result.detail, "timed out after 1 s (the command and what it started were killed)\n(no output)"
            )
            self.assertTrue(await dies(read_pid(pidfile)))

        return ensureDeferred(go())

    def test_background_leftovers_killed_on_exit(self) -> Deferred[None]:
        """A command that exits leaving a background process passes at once, and the leftover is killed."""
        pidfile = self.path("leftover.pid")

        async def go() -> None:
            started = time.monotonic()
            result = await self.one(type="command", run=f"sleep 30 & echo $! > {pidfile}; echo ok", timeout=20)
            self.assertLess(time.monotonic() - started, 10)
            self.assertEqual((result.passed, result.detail), (True, "exit code 0"))
            self.assertTrue(await dies(read_pid(pidfile)))

        return ensureDeferred(go())

    def test_escaped_process_holding_pipes(self) -> Deferred[None]:
        """A process that left the group (setsid) but holds the output pipe does not hang the check."""
        pidfile = self.path("escaped.pid")

        def kill_escapee() -> None:
            try:
                os.kill(read_pid(pidfile), 9)
            except (FileNotFoundError, ProcessLookupError, ValueError):
                pass

        self.addCleanup(kill_escapee)

        async def go() -> None:
            result = await self.one(
                type="command", run=f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 30' & echo ok", timeout=1
            )
            self.assertEqual((result.passed, result.detail), (True, "exit code 0"))

        return ensureDeferred(go())

    def test_huge_output_is_capped(self) -> Deferred[None]:
        """Output beyond the cap keeps its tail; the detail shows the end."""

        async def go() -> None:
            result = await self.one(type="command", run="seq 1 200000; exit 1")
            stdout = result.detail.split("\nstdout:\n", 1)[1]
            self.assertTrue(stdout.startswith("…"))
            self.assertTrue(stdout.endswith("199999\n200000"))

        return ensureDeferred(go())

    def test_stop_kills_running_commands(self) -> Deferred[None]:
        """``stop()`` (at shutdown) kills the process groups of running commands."""
        pidfile = self.path("stopped.pid")

        async def go() -> None:
            d = self.run_spec(spec({"type": "command", "run": f"echo $$ > {pidfile}; sleep 30", "timeout": 60}))
            while not read_text(pidfile).strip():
                await deferLater(0.05)
            self.validator.stop()
            result = await d
            self.assertEqual(result.results[0].detail, "killed by signal 9 (SIGKILL)\n(no output)")

        return ensureDeferred(go())


def deferLater(seconds: float) -> Deferred[None]:
    """Wait a little on the real reactor (only to poll for a child's pid file)."""
    from twisted.internet.task import deferLater as later

    return later(REACTOR, seconds, lambda: None)


class StepTests(RunnerTestCase):
    """Whole steps: concurrency, robustness."""

    def test_rules_run_concurrently(self) -> Deferred[None]:
        """Each of two rules waits for the other to have started: both pass only if they run at once.

        (Run one after the other, the first would wait for ever and time out.)
        Results keep the rules' order.
        """
        a, b = self.path("a-started"), self.path("b-started")

        def waits_for(mine: str, other: str) -> dict[str, object]:
            return {"type": "command", "run": f"touch {mine}; until [ -e {other} ]; do sleep 0.01; done", "timeout": 60}

        async def go() -> None:
            result = await self.run_spec(spec(waits_for(a, b), waits_for(b, a)))
            self.assertEqual([r.id for r in result.results], ["r0", "r1"])
            self.assertEqual([r.passed for r in result.results], [True, True], result.to_json())

        return ensureDeferred(go())

    def test_steps_evaluate_independently(self) -> Deferred[None]:
        """Two steps evaluated at once each get their own result."""

        async def go() -> None:
            a = self.run_spec(spec({"type": "command", "run": "exit 0"}), "one")
            b = self.run_spec(spec({"type": "command", "run": "exit 1"}), "two")
            self.assertEqual([(await a).passed, (await b).passed], [True, False])

        return ensureDeferred(go())

    def test_no_rules(self) -> Deferred[None]:
        """A spec without rules passes with no results."""

        async def go() -> None:
            result = await self.run_spec(ValidationSpec())
            self.assertEqual((result.passed, result.results), (True, ()))

        return ensureDeferred(go())

    def test_bug_in_a_check_is_a_failed_rule(self) -> Deferred[None]:
        """An unexpected exception becomes a failed rule (and a logged error), not a failed run."""

        def broken(*args: object) -> object:
            raise RuntimeError("boom")

        self.patch(runner, "evaluate", broken)

        async def go() -> None:
            result = await self.run_spec(spec({"type": "command", "run": "true"}))
            self.assertEqual(
                result.results[0].detail, "the check itself failed (a bug in the backend; its log has the details)"
            )
            self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

        return ensureDeferred(go())


class FileTests(RunnerTestCase):
    """File rules on temp files."""

    def test_contains_and_matches(self) -> Deferred[None]:
        """Content checks read the file (relative paths resolve against the cwd)."""
        self.write("app.conf", b"host=0.0.0.0\nport=8080\n")

        async def go() -> None:
            ok = await self.one(type="file", path="app.conf", contains="port=8080", matches="^host=")
            bad = await self.one(type="file", path="app.conf", contains="port=9090")
            self.assertEqual(
                (ok.passed, ok.detail), (True, f'{self.path("app.conf")} contains "port=8080" and matches "^host="')
            )
            self.assertEqual(
                bad.detail,
                f'{self.path("app.conf")} does not contain "port=9090"; it begins (23 bytes in all):\n'
                "host=0.0.0.0\nport=8080",
            )

        return ensureDeferred(go())

    def test_missing_and_directory(self) -> Deferred[None]:
        """A missing path fails; a directory exists; a path through a file is missing."""
        self.write("plain", b"x")
        os.makedirs(self.path("d"))

        async def go() -> None:
            missing = await self.one(type="file", path="nope")
            directory = await self.one(type="file", path="d")
            through = await self.one(type="file", path="plain/x")
            self.assertEqual((missing.passed, missing.detail), (False, f"file not found: {self.path('nope')}"))
            self.assertEqual((directory.passed, directory.detail), (True, f"found {self.path('d')} (a directory)"))
            self.assertEqual(through.detail, f"file not found: {self.path('plain/x')}")

        return ensureDeferred(go())

    def test_fifo_is_not_read(self) -> Deferred[None]:
        """A FIFO at the path exists but is not opened (which would block a thread forever)."""
        os.mkfifo(self.path("fifo"))

        async def go() -> None:
            exists = await self.one(type="file", path="fifo")
            content = await self.one(type="file", path="fifo", contains="x")
            self.assertEqual(exists.detail, f"found {self.path('fifo')} (not a regular file)")
            self.assertEqual(
                content.detail, f"{self.path('fifo')} is not a regular file, so its content cannot be checked"
            )

        return ensureDeferred(go())

    def test_big_file_is_capped(self) -> Deferred[None]:
        """Only the first FILE_CAP bytes are searched."""
        self.patch(runner, "FILE_CAP", 100)
        self.write("big", b"a" * 200 + b"needle")

        async def go() -> None:
            result = await self.one(type="file", path="big", contains="needle")
            self.assertEqual(result.passed, False)
            self.assertIn("(only its first 100 bytes were searched); it begins (206 bytes in all)", result.detail)

        return ensureDeferred(go())

    def test_home(self) -> Deferred[None]:
        """``~`` expands to the environment's HOME."""
        self.validator = Validator(REACTOR, cwd="/", env={**ENV, "HOME": self.dir})
        self.write("profile", b"x")

        async def go() -> None:
            result = await self.one(type="file", path="~/profile")
            self.assertEqual(result.detail, f"found {self.path('profile')}")

        return ensureDeferred(go())


class PortTests(RunnerTestCase):
    """Port rules against real sockets on 127.0.0.1."""

    def test_listening_and_closed(self) -> Deferred[None]:
        """A listening port passes, a closed one is refused."""
        tcp = REACTOR
        listening = tcp.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        closed = tcp.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        closed_port = closed.getHost().port

        async def go() -> None:
            await closed.stopListening()
            open_port = listening.getHost().port
            ok = await self.one(type="port", port=open_port)
            refused = await self.one(type="port", port=closed_port)
            self.assertEqual((ok.passed, ok.detail), (True, f"connected to 127.0.0.1:{open_port}"))
            self.assertEqual(
                (refused.passed, refused.detail),
                (False, f"cannot connect to 127.0.0.1:{closed_port}: connection refused"),
            )

        return ensureDeferred(go())


class _Banner(Protocol):
    """A server that greets first (as SSH or SMTP do) and reports how its connection ended."""

    def __init__(self, lost: Deferred[BaseException]) -> None:
        self.lost = lost

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"SSH-2.0-test\r\n")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        assert reason.value is not None
        self.lost.callback(reason.value)


@implementer(IHalfCloseableProtocol)
class _DeafBanner(_Banner):
    """A server that keeps its side open after the client's end-of-file."""

    def readConnectionLost(self) -> None:
        pass

    def writeConnectionLost(self) -> None:
        pass


class PortGoodbyeTests(RunnerTestCase):
    """A port check leaves with a FIN, never a reset, and never waits long."""

    def listen(self, *, ignore_eof: bool) -> tuple[int, Deferred[BaseException]]:
        lost: Deferred[BaseException] = Deferred()
        servers: list[_Banner] = []

        def build() -> _Banner:
            servers.append((_DeafBanner if ignore_eof else _Banner)(lost))
            return servers[-1]

        port = REACTOR.listenTCP(0, Factory.forProtocol(build), interface="127.0.0.1")
        self.addCleanup(port.stopListening)

        def hang_up() -> Deferred[BaseException]:
            for server in servers:
                if server.transport is not None:
                    server.transport.loseConnection()
            return lost

        self.addCleanup(hang_up)
        return port.getHost().port, lost

    def test_banner_read_and_clean_close(self) -> Deferred[None]:
        """The server's greeting is read, so the server sees an orderly end
        of the connection (ConnectionDone), not a reset (ConnectionLost)."""
        number, lost = self.listen(ignore_eof=False)

        async def go() -> None:
            result = await self.one(type="port", port=number)
            self.assertTrue(result.passed, result.detail)
            self.assertIsInstance(await lost, ConnectionDone)

        return ensureDeferred(go())

    def test_server_that_keeps_its_side_open(self) -> Deferred[None]:
        """A server that ignores our end-of-file does not hold the check up:
        the check closes the connection after a short grace period."""
        self.patch(runner, "GOODBYE_SECONDS", 0.05)
        number, _ = self.listen(ignore_eof=True)

        async def go() -> None:
            result = await self.one(type="port", port=number)
            self.assertTrue(result.passed, result.detail)

        return ensureDeferred(go())


class PortTimeoutTests(SynchronousTestCase):
    """A connection that never completes, timed by a Clock."""

    def test_timeout(self) -> None:
        """The deadline cancels the attempt and the detail says it timed out."""
        memory = MemoryReactorClock()
        validator = Validator(as_reactor(memory), cwd="/", env={}, clock=memory)
        d = validator.run("s", spec({"type": "port", "port": 5432, "host": "10.0.0.1", "timeout": 3}))
        self.assertNoResult(d)
        memory.advance(3)
        result = self.successResultOf(d)
        self.assertEqual(result.results[0].detail, "cannot connect to 10.0.0.1:5432: timed out after 3 s")
        self.assertEqual(result.duration_ms, 3000)


class HttpStubTests(SynchronousTestCase):
    """HTTP rules against StubTreq (in memory, no sockets)."""

    def validator(self, resource: Resource, clock: Clock | None = None) -> Validator:
        client = cast(HttpClient, StubTreq(resource))
        return Validator(as_reactor(MemoryReactorClock()), cwd="/", env={}, http_request=client, clock=clock)

    def check(self, resource: Resource, **rule: object) -> RuleResult:
        d = self.validator(resource).run("s", spec({"type": "http", "url": "http://app.test/", **rule}))
        return self.successResultOf(d).results[0]

    def test_status_and_body(self) -> None:
        """Status and body regex decide."""
        page = _Page(200, b"<h1>Welcome to nginx!</h1>")
        ok = self.check(page, body="Welcome to \\w+")
        self.assertEqual(
            (ok.passed, ok.detail), (True, 'GET http://app.test/ answered 200, body matches "Welcome to \\\\w+"')
        )
        bad = self.check(page, body="^It works")
        self.assertEqual(
            bad.detail,
            'GET http://app.test/ answered 200 as expected, but the body does not match "^It works"; '
            "the body begins:\n<h1>Welcome to nginx!</h1>",
        )

    def test_wrong_status(self) -> None:
        """Another status fails."""
        result = self.check(_Page(503, b"down"))
        self.assertEqual(result.detail, "GET http://app.test/ answered 503, expected 200; the body begins:\ndown")

    def test_redirect_not_followed(self) -> None:
        """Redirects are reported, not followed."""
        result = self.check(_Page(302, b"", {b"Location": b"http://app.test/login"}))
        self.assertEqual(
            result.detail,
            "GET http://app.test/ answered 302 (a redirect to http://app.test/login), expected 200; the body is empty",
        )
        self.assertTrue(self.check(_Page(302, b"", {b"Location": b"/login"}), status=302).passed)

    def test_body_capped(self) -> None:
        """Only BODY_CAP bytes of the body are read."""
        self.patch(runner, "BODY_CAP", 10)
        result = self.check(_Page(500, b"0123456789abcdef"))
        self.assertEqual(
            result.detail, "GET http://app.test/ answered 500, expected 200; the body begins:\n0123456789…"
        )

    def test_timeout(self) -> None:
        """A server that never answers times out on the validator's clock."""
        clock = Clock()
        validator = self.validator(_Hang(), clock)
        d = validator.run("s", spec({"type": "http", "url": "http://app.test/", "timeout": 2}))
        self.assertNoResult(d)
        clock.advance(2)
        self.assertEqual(self.successResultOf(d).results[0].detail, "GET http://app.test/ timed out after 2 s")


class _Answer:
    """A response a :class:`_Held` client delivers when the test says so."""

    def __init__(self, code: int, body: bytes) -> None:
        self.code = code
        self.headers = Headers()
        self._body = body

    def deliverBody(self, protocol: Any) -> None:
        protocol.dataReceived(self._body)
        protocol.connectionLost(Failure(ResponseDone()))


class _Held:
    """A treq-like client whose GETs wait until the test answers them; it counts requests and aborts."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, Deferred[Any]]] = []
        self.aborted: list[str] = []

    def get(self, url: str, **kwargs: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred(lambda _: self.aborted.append(url))
        self.pending.append((url, d))
        return d

    def answer(self, url: str, code: int = 200, body: bytes = b"ok") -> None:
        for i, (pending_url, d) in enumerate(self.pending):
            if pending_url == url and not d.called:
                del self.pending[i]
                d.callback(_Answer(code, body))
                return
        raise AssertionError(f"no request for {url} waits")


class LingerTests(SynchronousTestCase):
    """A timed-out http check leaves its request open for a late answer (a server stopped with Ctrl+Z)."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.client = _Held()
        self.validator = Validator(
            as_reactor(MemoryReactorClock()),
            cwd="/",
            env={},
            http_request=cast(HttpClient, self.client),
            clock=self.clock,
        )

    def check(self, url: str = "http://app.test/", timeout: float = 2) -> Deferred[ValidationResult]:
        return self.validator.run("s", spec({"type": "http", "url": url, "timeout": timeout, "body": "^ok$"}))

    def test_timeout_lingers_then_aborts(self) -> None:
        """The check says it timed out; the request stays open until LINGER_SECONDS, then it is aborted."""
        d = self.check()
        self.clock.advance(2)
        self.assertEqual(self.successResultOf(d).results[0].detail, "GET http://app.test/ timed out after 2 s")
        self.assertEqual((len(self.client.pending), self.client.aborted), (1, []))
        self.clock.advance(runner.LINGER_SECONDS - 1)
        self.assertEqual(self.client.aborted, [])
        self.clock.advance(1)
        self.assertEqual(self.client.aborted, ["http://app.test/"])

    def test_next_check_takes_the_late_answer(self) -> None:
        """A check of the same URL waits on the lingering request (no second connection) and gets its answer."""
        first = self.check()
        self.clock.advance(2)
        self.assertFalse(self.successResultOf(first).results[0].passed)
        again = self.check(timeout=5)
        self.assertNoResult(again)
        self.assertEqual(len(self.client.pending), 1, "no second request")
        self.client.answer("http://app.test/")
        self.assertTrue(self.successResultOf(again).results[0].passed)
        self.clock.advance(runner.LINGER_SECONDS)
        self.assertEqual(self.client.aborted, [], "an answered request is never aborted")
        third = self.check()
        self.assertEqual(len(self.client.pending), 1, "a new request once the last one ended")
        self.client.answer("http://app.test/", body=b"changed")
        self.assertFalse(self.successResultOf(third).results[0].passed)

    def test_late_failure_is_quiet(self) -> None:
        """A lingering request that fails later ends without an unhandled error."""
        self.check()
        self.clock.advance(2)
        self.client.pending[0][1].errback(Failure(ConnectionDone()))
        self.assertEqual(self.validator._requests, {})

    def test_at_most_max_lingering(self) -> None:
        """Past MAX_LINGERING lingering requests, a timed-out one is aborted at once."""
        for n in range(runner.MAX_LINGERING + 1):
            self.check(f"http://app{n}.test/")
        self.clock.advance(2)
        self.assertEqual(self.client.aborted, [f"http://app{runner.MAX_LINGERING}.test/"])

    def test_stop_aborts(self) -> None:
        """At shutdown lingering requests are aborted."""
        self.check()
        self.clock.advance(2)
        self.validator.stop()
        self.assertEqual(self.client.aborted, ["http://app.test/"])
        self.assertEqual(self.validator._requests, {})


class HttpRealTests(RunnerTestCase):
    """HTTP rules with the default client against a real local server."""

    def test_real_server(self) -> Deferred[None]:
        """The default treq client talks to a real twisted.web server and leaves no connection behind."""
        port = REACTOR.listenTCP(0, Site(_Page(200, b"ok")), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        url = f"http://127.0.0.1:{port.getHost().port}/"

        async def go() -> None:
            result = await self.one(type="http", url=url, body="^ok$")
            self.assertEqual((result.passed, result.detail), (True, f'GET {url} answered 200, body matches "^ok$"'))

        return ensureDeferred(go())

    def test_refused(self) -> Deferred[None]:
        """A closed port is a failed rule saying the connection was refused."""
        port = REACTOR.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        number = port.getHost().port

        async def go() -> None:
            await port.stopListening()
            result = await self.one(type="http", url=f"http://127.0.0.1:{number}/")
            self.assertEqual(result.detail, f"GET http://127.0.0.1:{number}/ failed: connection refused")

        return ensureDeferred(go())


class PoliteCloseTests(RunnerTestCase):
    """Checks against a server that the student runs in the foreground.

    Python's ``http.server`` prints a traceback for every connection that is
    reset under it (``ConnectionResetError`` while reading the request,
    ``BrokenPipeError`` while writing the answer).  Started in the
    foreground, that lands in the student's terminal at every Check.  The
    port and http rules must end their connections cleanly: all the server
    may print is its access log line for each GET.
    """

    timeout = 60

    def start_server(self, root: str) -> Deferred[tuple[subprocess.Popen[str], int]]:
        """``python -m http.server 0`` serving ``root``; fires with it and its port."""
        proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", root],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

        def stop() -> None:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

        self.addCleanup(stop)

        def port() -> tuple[subprocess.Popen[str], int]:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # "Serving HTTP on 127.0.0.1 port NNNN (http://...) ..."
            match = re.search(r" port (\d+) ", line)
            assert match, f"http.server did not say where it listens: {line!r}"
            return proc, int(match.group(1))

        return deferToThread(port)

    def test_nothing_but_access_lines_on_the_servers_stderr(self) -> Deferred[None]:
        """Three port checks and three GETs leave no traceback, nor does a GET
        whose body is longer than the part the check keeps (the rest is
        drained, not cut off with a reset)."""
        root = os.path.join(self.dir, "site")
        os.makedirs(root)
        with open(os.path.join(root, "index.html"), "w") as f:
            f.write("<h1>My first web page</h1>")
        with open(os.path.join(root, "big.html"), "w") as f:
            f.write("<h1>big</h1>" + "x" * (4 * 1024 * 1024))  # well past the socket buffers

        async def go() -> None:
            proc, number = await self.start_server(root)
            base = f"http://127.0.0.1:{number}/"
            self.patch(runner, "BODY_CAP", 64)
            big = await self.one(type="http", url=base + "big.html", body="^<h1>big")
            self.assertTrue(big.passed, big.detail)
            for _ in range(3):
                port = await self.one(type="port", port=number)
                self.assertTrue(port.passed, port.detail)
                page = await self.one(type="http", url=base, body="My first web page")
                self.assertTrue(page.passed, page.detail)
            proc.send_signal(signal.SIGINT)  # what Ctrl+C in the terminal does: http.server exits cleanly
            _, stderr = await deferToThread(proc.communicate, None, 30)
            access = re.compile(r'^127\.0\.0\.1 - - \[[^]]+\] "GET /(big\.html)? HTTP/1\.1" 200 -$')
            lines = stderr.splitlines()
            self.assertEqual([line for line in lines if not access.match(line)], [], stderr)
            self.assertEqual(len(lines), 4, stderr)

        return ensureDeferred(go())

    def test_server_stopped_with_ctrl_z(self) -> Deferred[None]:
        """Ctrl+Z on the server (SIGSTOP): the check times out without resetting its connection; after
        ``fg`` (SIGCONT) the server answers that waiting request, which the next check takes (no second
        connection), and the server prints no traceback."""
        root = os.path.join(self.dir, "site")
        os.makedirs(root)
        with open(os.path.join(root, "index.html"), "w") as f:
            f.write("<h1>My first web page</h1>")

        async def go() -> None:
            proc, number = await self.start_server(root)
            url = f"http://127.0.0.1:{number}/"
            proc.send_signal(signal.SIGSTOP)
            stopped = await self.one(type="http", url=url, body="My first web page", timeout=1)
            self.assertEqual(stopped.detail, f"GET {url} timed out after 1 s")
            proc.send_signal(signal.SIGCONT)
            # In the same turn of the reactor: the request still waits, this check shares it.
            back = await self.one(type="http", url=url, body="My first web page", timeout=30)
            self.assertTrue(back.passed, back.detail)
            proc.send_signal(signal.SIGINT)
            _, stderr = await deferToThread(proc.communicate, None, 30)
            access = re.compile(r'^127\.0\.0\.1 - - \[[^]]+\] "GET / HTTP/1\.1" 200 -$')
            self.assertNotIn("Traceback", stderr)
            self.assertEqual(len([line for line in stderr.splitlines() if access.match(line)]), 1, stderr)

        return ensureDeferred(go())
