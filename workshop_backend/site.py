"""The HTTP server around the Klein app: limits, the guard, headers, assets.

- :class:`LimitedRequest` refuses an oversized body with 413 as soon as the
  ``Content-Length`` says so, or as soon as a chunked body crosses the cap,
  without reading the rest (the connection is closed).
- :class:`GuardedResource` runs the :class:`~workshop_backend.security.Guard`
  before anything else and adds the security headers to every response.
- :class:`LimitedChannel` bounds how long a client may take to send a
  request: an idle connection is closed after ``idle_timeout`` seconds, and a
  request whose head and body have not all arrived ``request_timeout``
  seconds after its first byte gets 408 and is closed (a slowloris client
  that trickles one header byte at a time is dropped, whatever Twisted's
  per-byte idle timeout says).  Header limits are Twisted's: 16 KiB for the
  request line and headers together, 500 headers; a longer line gets 431.
- :class:`StaticFiles` serves the embedded UI: content-hashed names are
  cached for a year, nothing is listed, nothing outside the folder is served
  (symlinks included), and misses are JSON 404s like the API's.
"""

from __future__ import annotations

import gzip
import os
import re
import time
from importlib import resources
from pathlib import Path
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.web import http, server, static
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

from workshop_backend.errors import JSON_TYPE, encode
from workshop_backend.metrics import MetricsSink, NullMetrics
from workshop_backend.security import TOKEN_PAGE, Guard

BODY_MAX = 1024 * 1024
STATE_BODY_MAX = 64 * 1024 + 1024  # a 64 KiB value plus some whitespace
COMPRESSIBLE = frozenset({".js", ".css", ".svg", ".html", ".json", ".map"})
HASHED = re.compile(r"-[A-Za-z0-9_]{8,}\.(js|css|woff2?|svg|png|map)$")
REQUEST_TIMEOUT = 30.0
IDLE_TIMEOUT = 60.0
SECURITY_HEADERS = (
    (b"X-Content-Type-Options", b"nosniff"),
    (b"Referrer-Policy", b"no-referrer"),
    (b"Cache-Control", b"no-store"),
)


def raw_response(status: bytes, code: str, message: str) -> bytes:
    """A whole JSON error response, for refusals written before any request is routed."""
    body = encode({"error": code, "message": message})
    head = [b"HTTP/1.1 " + status, b"Content-Type: " + JSON_TYPE, b"Content-Length: %d" % len(body)]
    head += [name + b": " + value for name, value in SECURITY_HEADERS]
    head.append(b"Connection: close")
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def body_limit(path: bytes) -> int:
    """The largest body accepted for a request path."""
    return STATE_BODY_MAX if path.startswith(b"/api/v1/state/") else BODY_MAX


class LimitedRequest(server.Request):
    """A request that refuses a body over its cap without reading it."""

    _cap = BODY_MAX
    _received = 0
    _refused = False
    started = 0.0

    def gotLength(self, length: int | None) -> None:
        """Called once the headers are in: refuse at once if Content-Length says too much."""
        self.started = time.monotonic()
        path = getattr(self.channel, "_path", b"") or b""
        self._cap = body_limit(path.split(b"?", 1)[0])
        if length is not None and length > self._cap:
            super().gotLength(0)
            self._refuse()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        """Count body bytes as they come (chunked bodies have no length up front)."""
        if self._refused:
            return
        self._received += len(data)
        if self._received > self._cap:
            self._refuse()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """Do not process a request that was refused."""
        if self._refused:
            return
        super().requestReceived(command, path, version)

    def write(self, data: bytes) -> None:
        """Send no ``Server`` header (Twisted names itself and its version in it)."""
        if not self.startedWriting:
            self.responseHeaders.removeHeader(b"server")
        super().write(data)

    def _refuse(self) -> None:
        self._refused = True
        # No "100 Continue" after a refusal.
        self.requestHeaders.removeHeader(b"expect")
        transport = self.channel.transport
        if transport is not None:
            transport.write(
                raw_response(
                    b"413 Content Too Large",
                    "too_large",
                    "A state value may be at most 64 KiB of JSON."
                    if self._cap == STATE_BODY_MAX
                    else "The request body may be at most 1 MiB.",
                )
            )
        self.channel.loseConnection()


class LimitedChannel(http.HTTPChannel):
    """An HTTP channel with deadlines for idle connections and slow requests.

    Twisted's own ``timeOut`` restarts with every byte received; these two do
    not.  While a request is being answered neither runs (an event stream or
    a terminal may stay open for hours).
    """

    request_timeout: float | None = REQUEST_TIMEOUT
    idle_timeout: float | None = IDLE_TIMEOUT
    _deadline: IDelayedCall | None = None
    _started = False
    _host: Any = None

    def getHost(self) -> Any:
        """The local address, asked of the kernel once per connection, not per request."""
        if self._host is None:
            self._host = super().getHost()
        return self._host

    def connectionMade(self) -> None:
        """Start the idle deadline."""
        super().connectionMade()
        self._arm(self.idle_timeout)

    def dataReceived(self, data: bytes) -> None:
        """The first byte of a request starts its deadline."""
        if not self._started and not self._handlingRequest and data:
            self._started = True
            self._arm(self.request_timeout)
        super().dataReceived(data)

    def allContentReceived(self) -> None:
        """The whole request is in: no deadline while it is answered."""
        self._arm(None)
        super().allContentReceived()

    def requestDone(self, request: IRequest) -> None:
        """Answered: the connection is idle again (if it stays open)."""
        super().requestDone(request)
        self._started = False
        if self.persistent and self.transport is not None and not getattr(self.transport, "disconnecting", False):
            self._arm(self.idle_timeout)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """No deadline for a connection that is gone."""
        self._arm(None)
        super().connectionLost(reason)

    def lineLengthExceeded(self, line: bytes) -> None:
        """A request line or header over 16 KiB: 431, then close."""
        self._refuse_raw(b"431 Request Header Fields Too Large", "headers_too_large", "A header line is too long.")

    def _arm(self, seconds: float | None) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        if seconds:
            self._deadline = self.callLater(seconds, self._expired)

    def _expired(self) -> None:
        self._deadline = None
        if self._handlingRequest:
            return
        if self._started:
            self._refuse_raw(b"408 Request Timeout", "request_timeout", "The request took too long to arrive.")
        else:
            self.timeoutConnection()

    def _refuse_raw(self, status: bytes, code: str, message: str) -> None:
        if self.transport is not None and not getattr(self.transport, "disconnecting", False):
            self.transport.write(raw_response(status, code, message))
        self.timeoutConnection()


class GuardedResource(Resource):
    """Checks every request against the guard, then hands it to the app."""

    isLeaf = True

    def __init__(self, inner: IResource, guard: Guard, csp: bytes) -> None:
        super().__init__()
        self.inner = inner
        self.guard = guard
        self.csp = csp

    def render(self, request: IRequest) -> Any:
        """Headers, the guard, the login redirect, then the app."""
        headers = request.responseHeaders
        headers.removeHeader(b"server")
        headers.setRawHeaders(b"content-security-policy", [self.csp])
        headers.setRawHeaders(b"x-content-type-options", [b"nosniff"])
        headers.setRawHeaders(b"referrer-policy", [b"no-referrer"])
        refusal = self.guard.check(request)
        if refusal is not None:
            request.setResponseCode(refusal.status)
            request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
            return encode(refusal.body())
        if request.path == b"/" and request.method in (b"GET", b"HEAD"):
            page = self.guard.login(request)
            if page is not None:
                return page
            if not self.guard.authenticated(request):
                request.setResponseCode(401)
                request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
                return TOKEN_PAGE.replace(b"{message}", b"This page needs the access token of its link.")
        return self.inner.render(request)


class JsonNotFound(Resource):
    """The API's 404, for asset misses too."""

    isLeaf = True

    def render(self, request: IRequest) -> bytes:
        """``{"error": "not_found", ...}``."""
        request.setResponseCode(404)
        request.setHeader(b"Content-Type", JSON_TYPE)
        request.setHeader(b"Cache-Control", b"no-store")
        return encode({"error": "not_found", "message": "There is nothing at this address."})


class StaticFiles(static.File):
    """The embedded UI assets."""

    childNotFound = JsonNotFound()  # type: ignore[assignment]
    forbidden = JsonNotFound()  # type: ignore[assignment]
    processors: dict[str, Any] = {}

    def directoryListing(self) -> IResource:
        """Never list a folder."""
        return self.childNotFound

    def getChild(self, path: bytes, request: IRequest) -> IResource:
        """Refuse dot files and anything that resolves outside the root (symlinks too)."""
        if path.startswith(b".") or b"/" in path or b"\\" in path or b"\x00" in path:
            return self.childNotFound
        child: IResource = super().getChild(path, request)
        if isinstance(child, static.File):
            root = Path(self.path).resolve()
            try:
                Path(child.path).resolve().relative_to(root)
            except (ValueError, OSError):
                return self.childNotFound
        return child

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Compressed bodies by (path, mtime, size): a handful of files, compressed once.
        self.gzip_cache: dict[tuple[str, float, int], bytes] = {}

    def createSimilarFile(self, path: str) -> static.File:
        """Children share the root's cache of compressed files."""
        child: StaticFiles = super().createSimilarFile(path)
        child.gzip_cache = self.gzip_cache
        return child

    def render_GET(self, request: IRequest) -> Any:
        """Long cache for content-hashed names; revalidate the rest; gzip text assets."""
        name = Path(self.path).name
        cache = b"public, max-age=31536000, immutable" if HASHED.search(name) else b"no-cache"
        request.setHeader(b"Cache-Control", cache)
        if Path(name).suffix in COMPRESSIBLE and self.isfile():
            request.setHeader(b"Vary", b"Accept-Encoding")
            accepted = (request.getHeader(b"accept-encoding") or b"").lower()
            if request.method == b"GET" and b"gzip" in accepted:
                return self._render_gzipped(request, name)
        return super().render_GET(request)

    def _render_gzipped(self, request: IRequest, name: str) -> bytes:
        """The xterm.js bundle is 377 KB, 99 KB gzipped: on a flaky laptop link that matters."""
        stat = os.stat(self.path)
        key = (self.path, stat.st_mtime, stat.st_size)
        body = self.gzip_cache.get(key)
        if body is None:
            with open(self.path, "rb") as f:
                body = gzip.compress(f.read(), compresslevel=6, mtime=0)
            self.gzip_cache[key] = body
        ctype, _ = static.getTypeAndEncoding(name, self.contentTypes, self.contentEncodings, self.defaultType)
        request.setHeader(b"Content-Type", (ctype or "application/octet-stream").encode("ascii"))
        request.setHeader(b"Content-Encoding", b"gzip")
        request.setHeader(b"Content-Length", str(len(body)).encode("ascii"))
        return body

    render_HEAD = render_GET


def static_root() -> Path:
    """Where the built UI lives inside the installed package."""
    return Path(str(resources.files("workshop_backend") / "static"))


def static_resource(root: Path | None = None) -> StaticFiles:
    """The ``/static/`` resource."""
    resource = StaticFiles(FilePath(str(root or static_root())).path)
    resource.contentTypes.update(
        {
            ".js": "text/javascript; charset=utf-8",
            ".css": "text/css; charset=utf-8",
            ".woff2": "font/woff2",
            ".svg": "image/svg+xml",
            ".map": "application/json",
        }
    )
    return resource


def index_loader(root: Path | None = None) -> bytes:
    """The UI's index.html (read once at start: it is small and never changes)."""
    path = (root or static_root()) / "index.html"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return (
            b"<!doctype html><meta charset=utf-8><title>workshop-backend</title>"
            b"<p>The student UI is not built into this installation (no static/index.html).</p>"
        )


class WorkshopSite(server.Site):
    """A Site that logs one structured event per request, never its query string.

    Twisted's access log writes the whole URI, and a student's first URL
    carries the access token in ``?token=``: we log the path only.
    """

    noisy = False

    def __init__(self, *args: Any, metrics: MetricsSink | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.metrics: MetricsSink = metrics if metrics is not None else NullMetrics()
        # An instance attribute: a Logger on the class is a descriptor that
        # would rename itself after the class ("workshop_backend.site.WorkshopSite").
        self.access = Logger(namespace="workshop_backend.access", source=self)

    def log(self, request: Any) -> None:
        """One event per request: method, path, status, duration, bytes."""
        started = getattr(request, "started", 0.0)
        seconds = time.monotonic() - started if started else 0.0
        method = request.method.decode("latin-1")
        path = request.path.decode("latin-1")
        self.access.info(
            "{method} {path} {status} {duration_ms:.1f} ms",
            method=method,
            path=path,
            status=request.code,
            duration_ms=seconds * 1000,
            bytes=request.sentLength,
        )
        self.metrics.observe_request(path, request.code, seconds, method)


def make_site(
    resource: IResource,
    *,
    timeout: float = 60 * 5,
    request_timeout: float | None = REQUEST_TIMEOUT,
    idle_timeout: float | None = IDLE_TIMEOUT,
    reactor: IReactorTime | None = None,
    metrics: MetricsSink | None = None,
) -> server.Site:
    """The Site: limited requests and channels, no version header, deadlines.

    ``timeout`` is Twisted's per-byte idle timeout (a backstop);
    ``request_timeout`` and ``idle_timeout`` are :class:`LimitedChannel`'s.
    """

    def channel() -> LimitedChannel:
        made = LimitedChannel()
        made.request_timeout = request_timeout
        made.idle_timeout = idle_timeout
        return made

    site = WorkshopSite(resource, requestFactory=LimitedRequest, timeout=timeout, reactor=reactor, metrics=metrics)
    site.protocol = channel  # type: ignore[assignment]
    site.displayTracebacks = False
    return site
