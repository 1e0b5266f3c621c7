"""The parts issue 12 added, in memory: tickets, the per-client limit, the head-first request,
the streamed state, the space reserve and the full-disk path of the store and runtime, ttyd's
private directory."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
from pathlib import Path
from typing import Any, cast

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from tests.fakes import SyncPool
from tests.test_api import TOKEN, Harness, standard
from tests.test_security import MemoryChannel, guarded
from workshop_backend.http.api import Api
from workshop_backend.http.limits import ClientLimit
from workshop_backend.http.security import Guard
from workshop_backend.http.site import make_site
from workshop_backend.http.tickets import Tickets
from workshop_backend.state.space import Reserve
from workshop_backend.state.store import Store, disk_full
from workshop_backend.terminal import ttydbin
from workshop_backend.workshop.errors import DiskFull

KEY = {"Authorization": f"Bearer {Guard(auth='token', token=TOKEN).browser_key}"}


class TicketTests(SynchronousTestCase):
    """Single use, short life, bounded count."""

    def test_once_then_gone(self) -> None:
        """A ticket opens once; a made-up, empty or huge one never."""
        clock = Clock()
        tickets = Tickets(clock.seconds)
        ticket = tickets.issue()
        self.assertGreaterEqual(len(ticket), 43)
        self.assertTrue(tickets.redeem(ticket))
        self.assertFalse(tickets.redeem(ticket))
        for bad in ("", "x", "y" * 10_000, ticket[:-1]):
            self.assertFalse(tickets.redeem(bad))

    def test_expiry(self) -> None:
        """Valid for its lifetime, not a moment longer; expired ones are forgotten."""
        clock = Clock()
        tickets = Tickets(clock.seconds, lifetime=60)
        early, late = tickets.issue(), tickets.issue()
        clock.advance(59.9)
        self.assertTrue(tickets.redeem(early))
        clock.advance(0.1)
        self.assertFalse(tickets.redeem(late))
        self.assertEqual(len(tickets), 0)

    def test_bounded(self) -> None:
        """Past the limit the oldest is dropped: memory cannot grow with requests."""
        tickets = Tickets(Clock().seconds, limit=3)
        issued = [tickets.issue() for _ in range(5)]
        self.assertEqual(len(tickets), 3)
        self.assertEqual([tickets.redeem(t) for t in issued], [False, False, True, True, True])

    def test_verdict_once_per_request(self) -> None:
        """The early check and the resource see one verdict: a ticket is redeemed once per request."""
        h = guarded(self)
        ticket = h.post("/api/v1/tickets", headers=KEY)[1]["ticket"]
        self.assertEqual(len(h.guard.tickets), 1)
        self.assertEqual(h.get(f"/terminal?ticket={ticket}")[0], 200)
        self.assertEqual(len(h.guard.tickets), 0)


class ClientLimitTests(SynchronousTestCase):
    """Open connections per client address."""

    def test_limit_and_release(self) -> None:
        """The limit holds per address; a release or a disconnected transport frees a place."""
        limit = ClientLimit(2)

        class T:
            disconnected = False

        a, b, c = T(), T(), T()
        self.assertTrue(limit.admit("127.0.0.1", a))
        self.assertTrue(limit.admit("127.0.0.1", b))
        self.assertFalse(limit.admit("127.0.0.1", c))
        self.assertTrue(limit.admit("127.0.0.2", c))
        limit.release("127.0.0.1", a)
        self.assertTrue(limit.admit("127.0.0.1", a))
        b.disconnected = True  # a WebSocket's transport: its channel never says it closed
        self.assertEqual(limit.count("127.0.0.1"), 1)
        self.assertTrue(limit.admit("127.0.0.1", b))

    def test_over_the_limit_answers_503(self) -> None:
        """The connection past the limit gets a JSON 503 on its first request and is closed."""
        site = make_site(Resource(), body_cap=Api.body_cap, reactor=Clock(), clients=ClientLimit(1))
        first = site.buildProtocol(None)
        first.makeConnection(StringTransport())
        second = site.buildProtocol(None)
        transport = StringTransport()
        second.makeConnection(transport)
        second.dataReceived(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        out = transport.value()
        self.assertTrue(out.startswith(b"HTTP/1.1 503 "), out)
        self.assertEqual(json.loads(out.split(b"\r\n\r\n", 1)[1])["error"], "too_many_connections")
        self.assertTrue(transport.disconnecting)


class HeadFirstTests(SynchronousTestCase):
    """Decided on the head: bodies without credentials are never read, forms never parsed, no temp files."""

    def channel(self, auth: str = "token") -> MemoryChannel:
        """The real site over a memory transport, with the guard's early check."""
        h = guarded(self, auth=auth)
        m = MemoryChannel(h.resource)
        m.site.guard = h.guard  # type: ignore[attr-defined]
        return m

    def test_body_without_credentials(self) -> None:
        """A public address with a body: 413 body_not_allowed at once; a private one: 401; nothing read."""
        for path, status in ((b"/healthz", b"413"), (b"/api/v1/navigation", b"401"), (b"/", b"401")):
            with self.subTest(path=path):
                m = self.channel()
                out = m.send(
                    b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000000\r\n\r\n"
                )
                self.assertTrue(out.startswith(b"HTTP/1.1 " + status), out)
                self.assertTrue(m.closed)

    def test_no_temp_file_and_no_form_parsing(self) -> None:
        """An authenticated 900 KB form body is kept in memory and left unparsed (``args`` is the query's)."""
        seen: list[Any] = []

        class Sink(Resource):
            isLeaf = True

            def render(self, request: Any) -> bytes:
                seen.append((type(request.content).__name__, dict(request.args)))
                return b"ok"

        m = MemoryChannel(Sink())
        body = b"a=1&" * 225_000
        m.send(
            b"POST /x?q=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body
        )
        self.assertEqual(seen, [("BytesIO", {b"q": [b"1"]})])

    def test_auth_none_reads_bodies(self) -> None:
        """``--auth none``: every request counts as authenticated (the proxy in front decided)."""
        m = self.channel(auth="none")
        out = m.send(b"PUT /api/v1/state/k HTTP/1.1\r\nHost: 127.0.0.1\r\n" + JSON_HEAD + b"Content-Length: 1\r\n\r\n1")
        self.assertIn(b"200 OK", out)


JSON_HEAD = b"Content-Type: application/json\r\n"


class StreamedStateTests(SynchronousTestCase):
    """``GET /api/v1/state`` holds one page at a time."""

    def test_pages(self) -> None:
        """All values, in key order, one JSON document; read a page at a time."""
        h = Harness(self, standard(self))
        for i in range(150):
            self.assertEqual(h.request("PUT", f"/api/v1/state/k{i:03d}", {"n": i})[0], 200)
        pages: list[Any] = []
        original = h.store.state_page

        def spy(after: str | None, limit: int) -> Any:
            pages.append(after)
            return original(after, limit)

        h.store.state_page = spy  # type: ignore[method-assign]
        code, body = h.get("/api/v1/state")
        self.assertEqual(code, 200)
        self.assertEqual(list(body["state"]), [f"k{i:03d}" for i in range(150)])
        self.assertEqual(body["state"]["k149"], {"n": 149})
        self.assertEqual(pages, [None, "k063", "k127", "k149"])

    def test_empty(self) -> None:
        """No values: an empty object."""
        self.assertEqual(Harness(self, standard(self)).get("/api/v1/state"), (200, {"state": {}}))


class FakeReserve:
    """A reserve that is released once."""

    def __init__(self) -> None:
        self.released = False
        self.restores = 0
        self.room = False

    def release(self) -> bool:
        """The first time: True."""
        was, self.released = self.released, True
        return not was

    def restore(self) -> bool:
        """Room again only when the test says so."""
        self.restores += 1
        if self.room:
            self.released = False
        return self.room


class FullPool(SyncPool):
    """A pool whose writes fail with SQLITE_FULL while ``full``, and whose first vital retry is watched."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.full = False
        self.writes_after_release = 0

    def runWithConnection(self, fn: Any, *args: Any) -> Any:
        """Wrap the connection so that writes fail while full (until the reserve is released)."""
        pool = self

        class Cursor:
            def __init__(self, inner: sqlite3.Cursor) -> None:
                self.inner = inner

            def execute(self, sql: str, params: Any = ()) -> Any:
                if pool.full and not sql.lstrip().upper().startswith("SELECT"):
                    reserve = getattr(pool, "reserve", None)
                    if reserve is None or not reserve.released or pool.writes_after_release >= 1:
                        raise sqlite3.OperationalError("database or disk is full")
                return self.inner.execute(sql, params)

            def __getattr__(self, name: str) -> Any:
                return getattr(self.inner, name)

        class Conn:
            def cursor(self) -> Cursor:
                return Cursor(pool.conn.cursor())

            def __getattr__(self, name: str) -> Any:
                return getattr(pool.conn, name)

        return super().runWithConnection(lambda conn, *a: fn(Conn(), *a), *args)


class DiskFullTests(SynchronousTestCase):
    """The runtime over a store whose disk fills up and empties again."""

    def setUp(self) -> None:
        """A Harness whose store writes through a :class:`FullPool` with a fake reserve."""
        self.h = Harness(self, standard(self), open_runtime=False)
        self.pool = FullPool(self.h.db)
        self.addCleanup(self.pool.close)
        self.reserve = FakeReserve()
        self.pool.reserve = self.reserve  # type: ignore[attr-defined]
        self.h.store = Store(self.h.db, pool=self.pool, reserve=self.reserve)  # type: ignore[arg-type]
        self.h.open()

    def test_full_then_back(self) -> None:
        """507 disk_full for custom state; navigation saved through the reserve; the status says it;
        logged once; back to normal once the reserve can be made again."""
        h = self.h
        self.pool.full = True
        code, body = h.request("PUT", "/api/v1/state/k", 1)[:2]
        self.assertEqual((code, body["error"]), (507, "disk_full"))
        self.assertIn("du -sh", body["message"])
        self.assertEqual(h.runtime.status().problems, ("disk_full",))
        code, body = h.nav("next")
        self.assertEqual(code, 200)
        self.assertEqual(body["current_step"], "make-file")
        self.assertEqual(body["problems"], ["disk_full"])
        errors = [e for e in self.flushLoggedErrors()]
        self.assertEqual(errors, [])
        # The space comes back: the next tick sees it and says so.
        self.pool.full = False
        self.reserve.room = True
        h.clock.advance(5)
        self.assertEqual(h.runtime.status().problems, ())
        self.assertEqual(h.request("PUT", "/api/v1/state/k", 1)[0], 200)
        statuses = [data for event, data in h.hub.events if event == "status"]
        self.assertEqual([s["problems"] for s in statuses[-2:]], [["disk_full"], []])

    def test_disk_full_detection(self) -> None:
        """SQLite's SQLITE_FULL and ENOSPC count as a full disk; other errors do not."""
        self.assertTrue(disk_full(sqlite3.OperationalError("database or disk is full")))
        self.assertTrue(disk_full(OSError(errno.ENOSPC, "No space left on device")))
        self.assertFalse(disk_full(sqlite3.OperationalError("database is locked")))
        self.assertFalse(disk_full(OSError(errno.EACCES, "Permission denied")))
        self.assertEqual(DiskFull().code, "disk_full")


class ReserveTests(SynchronousTestCase):
    """The reserve file itself (on this machine's disk)."""

    def test_make_release_make(self) -> None:
        """Made whole (allocated), released, made again."""
        state = Path(self.mktemp())
        state.mkdir()
        reserve = Reserve(state, size=256 * 1024, headroom=0)
        self.assertFalse(reserve.held)
        self.assertTrue(reserve.restore())
        self.assertTrue(reserve.held)
        self.assertGreaterEqual(os.stat(reserve.path).st_blocks * 512, 256 * 1024)
        self.assertTrue(reserve.release())
        self.assertTrue(reserve.released)
        self.assertFalse(reserve.release())
        self.assertTrue(reserve.restore())
        self.assertFalse(reserve.released)

    def test_no_room(self) -> None:
        """Not made where the disk has no room for it and its headroom."""
        state = Path(self.mktemp())
        state.mkdir()
        self.assertFalse(Reserve(state, size=1 << 60).restore())


class PrivateDirTests(SynchronousTestCase):
    """ttyd's cache folder must be ours and private."""

    def test_refused(self) -> None:
        """World-writable, group-readable, a symlink, a file: refused; a fresh one is made 0700."""
        root = Path(self.mktemp())
        root.mkdir()
        fresh = root / "fresh"
        self.assertTrue(ttydbin.private_dir(fresh))
        self.assertEqual(fresh.stat().st_mode & 0o777, 0o700)
        for name, mode in (("open", 0o777), ("group", 0o750)):
            path = root / name
            path.mkdir()
            path.chmod(mode)
            self.assertFalse(ttydbin.private_dir(path), name)
        (root / "link").symlink_to(fresh)
        self.assertFalse(ttydbin.private_dir(root / "link"))
        (root / "file").write_text("")
        self.assertFalse(ttydbin.private_dir(root / "file"))

    def test_verify(self) -> None:
        """The bundled copy is checked by checksum; any other ttyd is not ours to check."""
        root = Path(self.mktemp())
        root.mkdir()
        copy = root / ttydbin.BUNDLED_NAME
        copy.write_text("#!/bin/sh\n")
        self.assertIn("expected", ttydbin.verify_bundled(str(copy)) or "")
        self.assertIn("cannot verify", ttydbin.verify_bundled(str(root / "gone" / ttydbin.BUNDLED_NAME)) or "")
        self.assertIsNone(ttydbin.verify_bundled("/usr/bin/ttyd"))


class RefusalLogTests(SynchronousTestCase):
    """Requests refused before they are whole still get their access line."""

    def test_logged(self) -> None:
        """Malformed framing (400), a line too long (431), a body without credentials (413): one event each."""
        from twisted.logger import ILogObserver, LogEvent, globalLogPublisher

        events: list[LogEvent] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        h = guarded(self)
        for data in (
            b"POST /api/v1/navigation HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
            b"GET /" + b"a" * 20000,
            b"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\n",
        ):
            m = MemoryChannel(h.resource)
            m.site.guard = h.guard  # type: ignore[attr-defined]
            m.send(data)
        access = [
            (e["method"], e["path"], e["status"]) for e in events if e.get("log_namespace") == "workshop_backend.access"
        ]
        self.assertEqual(access, [("POST", "/api/v1/navigation", 400), ("-", "-", 431), ("POST", "/healthz", 413)])
