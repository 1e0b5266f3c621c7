"""Junk at the HTTP layer: the real ``make_site`` on 127.0.0.1, fed garbage over TCP.

Every answer must be a 4xx (or a 1xx/2xx/3xx where the junk happens to be a
valid request), never a 5xx; nothing may log a traceback; and the server
must still answer a normal request afterwards.  The cases are a fixed list
of known-nasty inputs plus seeded random mutations of valid requests, so a
run is bounded (about 300 connections, a few seconds) and repeatable.
"""

from __future__ import annotations

import random
import re
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, DeferredSemaphore, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.static import Data

from tests.test_api import Harness, standard
from workshop_backend.http.api import Api
from workshop_backend.http.limits import ClientLimit
from workshop_backend.http.security import Guard, content_security_policy
from workshop_backend.http.site import GuardedResource, make_site
from workshop_backend.http.tickets import Tickets

SEED = 20261125
RANDOM_CASES = 220
CONCURRENCY = 16
PER_CASE_TIMEOUT = 5.0
STATUS = re.compile(rb"^HTTP/1\.[01] (\d{3}) ", re.MULTILINE)

VALID = [
    b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /api/v1/steps/intro HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n",
    b"POST /api/v1/navigation HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b'Content-Length: 19\r\n\r\n{"action":"jump!!"}',
    b"PUT /api/v1/state/k HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n5\r\n[1,2]\r\n0\r\n\r\n",
    b"GET /static/app-ABCDEFGH12.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /?token=x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /terminal HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Origin: http://127.0.0.1\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
]

FIXED: list[bytes] = [
    b"",
    b"\r\n\r\n",
    b"\x00" * 64,
    bytes(range(256)),
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS ClientHello
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # the HTTP/2 preface
    b"GET\r\n\r\n",
    b"GET /\r\n\r\n",
    b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n",
    b"GET / HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET / FOO/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"G\xffT / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /\xff\xfe HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /%ff%fe%00 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /api/v1/state/%C0%AE HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /api/v1/steps/%FF/hints/1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /api/v1/steps/intro/hints/99999999999999999999999 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /api/v1/steps/intro/hints/-1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET http://127.0.0.1/api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"TRACE / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"BREW /pot HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /?" + b"x=1&" * 5000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"b" * 40000 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(2000)) + b"\r\n",
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"Cookie: a=b\r\n" * 400 + b"\r\n",
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: " + b"=;" * 3000 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: \xff\xfe=\x00\x01\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost : 127.0.0.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n folded: header\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nNoColon\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n: empty-name\r\n\r\n",
    b"GET / HTTP/1.1\nHost: 127.0.0.1\n\n",
    b"GET / HTTP/1.1\rHost: 127.0.0.1\r\r",
    b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \xff\x00\r\n\r\n",
    b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + b"B" * 15000 + b"\r\n\r\n",
    b"POST /api/v1/navigation HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: \xff\r\nContent-Length: 0\r\n\r\n",
    b"POST /api/v1/navigation HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://[\r\nContent-Length: 0\r\n\r\n",
    b"POST /api/v1/navigation HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://x:99999999999\r\nContent-Length: 0\r\n\r\n",
    b"POST /api/v1/navigation HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    b"POST /api/v1/navigation HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\n",
    b"POST /api/v1/navigation HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n",
    b"POST /api/v1/navigation HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1e3\r\n\r\n",
    b"POST /api/v1/navigation HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
    b"POST /api/v1/navigation HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2000000\r\nExpect: 100-continue\r\n\r\n",
    b"POST /api/v1/navigation HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST /api/v1/navigation HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"ffffffffffffffffffffffffffff\r\n",
    b"POST /api/v1/navigation HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabcdef\r\n0\r\n\r\n",
    b"POST /api/v1/navigation HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"1;ext=\xff\r\na\r\n0\r\nTrailer: \x00\r\n\r\n",
    b"POST /api/v1/navigation HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: identity\r\n\r\n",
    b"POST /api/v1/navigation HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 8\r\n\r\n\xff\xfe\x00{}[]\x00",
    b"POST /api/v1/navigation HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b'Content-Length: 14\r\n\r\n{"action":NaN}',
    b"POST /api/v1/navigation HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b'Content-Length: 28\r\n\r\n{"action":"jump","step":[1]}',
    b"PUT /api/v1/state/" + b"k" * 200 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 1\r\n\r\n1",
    b"DELETE /api/v1/state/%00 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nLast-Event-ID: \xff\x00\r\n\r\n",
    b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    b"\x00\x01junk after a pipelined pair",
]


def put_state(body: bytes) -> bytes:
    """``PUT /api/v1/state/k`` with this JSON body."""
    return (
        b"PUT /api/v1/state/k HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )


# Valid-looking JSON that Python's json module accepts but the API cannot store
# or send back: each was a 500 with a traceback (found by this test).
JSON_EDGES: list[bytes] = [
    put_state(b"[" * 2000 + b"]" * 2000),  # RecursionError in json.loads
    put_state(b"1e9999999999"),  # inf: encode(allow_nan=False) raises ValueError
    put_state(b"NaN"),
    put_state(b"-Infinity"),
    put_state(b'"\\ud800"'),  # a lone surrogate: UnicodeEncodeError on the way out
    put_state(b'{"\\udfff": 1}'),
    put_state(b"1" * 5000),  # past Python's int digit limit (ValueError: fine already)
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    """A few random edits of a valid request."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        kind = rng.randrange(7)
        at = rng.randrange(len(buf) + 1)
        if kind == 0 and buf:
            buf[min(at, len(buf) - 1)] = rng.randrange(256)
        elif kind == 1:
            buf[at:at] = rng.choice([b"\r\n", b"\n", b"\r", b"\x00", b":", b" ", b"\xff", b"%", b"%00", b"\t"])
        elif kind == 2:
            del buf[at : at + rng.randint(1, 20)]
        elif kind == 3:
            buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
        elif kind == 4:
            buf[at:at] = rng.choice(
                [b"Content-Length: 10\r\n", b"Transfer-Encoding: chunked\r\n", b"Expect: 100-continue\r\n",
                 b"Origin: null\r\n", b"Host: evil\r\n", b"Upgrade: websocket\r\n", b"Connection: close\r\n"]
            )  # fmt: skip
        elif kind == 5:
            buf = buf[:at]
        else:
            buf[at:at] = buf[rng.randrange(len(buf) + 1) :][: rng.randint(1, 200)]
    return bytes(buf)


class Client(Protocol):
    """Send the junk, collect everything until the server closes.

    The client does not half-close: Twisted's HTTP channel takes EOF for a
    lost connection and would drop an answer still in its buffer.  The
    server's own (shortened) deadlines end every connection.
    """

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.received = b""
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        """Send it all, then say we are done sending."""
        assert self.transport is not None
        self.transport.write(self.payload)

    def dataReceived(self, data: bytes) -> None:
        """Collect."""
        self.received += data

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        """Answer what came back."""
        if not self.done.called:
            self.done.callback(self.received)


class HttpJunkTests(TestCase):
    """Never a 5xx, never a traceback, still serving."""

    timeout = 120

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        """The real resource tree (auth none so junk reaches the routes) on a real port."""
        self.events: list[LogEvent] = []
        observer = cast(ILogObserver, self.events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        h = Harness(self, standard(self))
        self.harness = h
        api = Api(
            readiness=lambda: (True, "ready"),
            index_html=lambda: b"<!doctype html><title>ui</title>",
            static=h.api.static,
            terminal=Data(b"terminal", "text/plain"),
            terminals=h.terminals,
            events=Data(b"events", "text/plain"),
            tickets=Tickets(reactor.seconds),
        )
        api.attach(h.runtime)
        guard = Guard(auth="none", token=None)
        # Short deadlines: every connection ends within a second, stalled or kept alive.
        self.site = make_site(
            GuardedResource(api.resource(), guard, content_security_policy([])),
            body_cap=api.body_cap,
            guard=guard,
            clients=ClientLimit(),
            request_timeout=0.5,
            idle_timeout=0.5,
            timeout=1.0,
        )

        self.port: Any = None
        listening: Deferred[None] = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(self.site)
        return listening.addCallback(self._listening)

    def _listening(self, port: Any) -> None:
        self.port = port
        self.addCleanup(port.stopListening)

    async def send(self, payload: bytes) -> bytes:
        """One connection: the payload in, the whole answer out (bounded in time)."""
        assert self.port is not None
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port, timeout=5)
        client = Client(payload)
        await endpoint.connect(Factory.forProtocol(lambda: client))
        timer = reactor.callLater(PER_CASE_TIMEOUT, client.transport.abortConnection)  # type: ignore[union-attr]
        try:
            return await client.done
        finally:
            if timer.active():
                timer.cancel()

    def check(self, payload: bytes, answer: bytes) -> None:
        """No 5xx status anywhere in the answer."""
        for status in STATUS.findall(answer):
            self.assertLess(int(status), 500, (payload[:200], answer[:400]))

    async def run_all(self, payloads: list[bytes]) -> None:
        """Every payload, a few connections at a time."""
        limit = DeferredSemaphore(CONCURRENCY)

        async def one(payload: bytes) -> None:
            self.check(payload, await self.send(payload))

        results = await DeferredList([limit.run(ensureDeferred, one(p)) for p in payloads], consumeErrors=True)
        for ok, value in results:
            if not ok:
                cast(Failure, value).raiseException()

    async def test_junk(self) -> None:
        """Fixed nasty inputs and seeded mutations; then the server still answers normally."""
        rng = random.Random(SEED)
        payloads = FIXED + VALID + [mutate(rng, rng.choice(VALID)) for _ in range(RANDOM_CASES)]
        payloads += [bytes(rng.randrange(256) for _ in range(rng.randint(1, 3000))) for _ in range(20)]
        await self.run_all(payloads)
        answer = await self.send(b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 "), answer[:200])
        self.assertIn(b'"workshop":"test-workshop"', answer)
        self.assert_no_tracebacks()

    async def test_json_edges(self) -> None:
        """Deep nesting, out-of-range numbers, NaN, lone surrogates: 400, not 500."""
        try:
            await self.run_all(JSON_EDGES)
        finally:
            self.assert_no_tracebacks()

    def assert_no_tracebacks(self) -> None:
        """Nothing was logged with a failure attached."""
        tracebacks = [e for e in self.events if "log_failure" in e]
        self.flushLoggedErrors()
        self.assertEqual(tracebacks, [], [str(e.get("log_failure")) for e in tracebacks][:3])
