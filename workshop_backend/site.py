"""The HTTP server around the Klein app: limits, the guard, headers, assets.

- :class:`LimitedRequest` refuses an oversized body with 413 as soon as the
  ``Content-Length`` says so, or as soon as a chunked body crosses the cap,
  without reading the rest (the connection is closed).
- :class:`GuardedResource` runs the :class:`~workshop_backend.security.Guard`
  before anything else and adds the security headers to every response.
- :class:`StaticFiles` serves the embedded UI: content-hashed names are
  cached for a year, nothing is listed, nothing outside the folder is served.
"""

from __future__ import annotations

import re
import time
from importlib import resources
from pathlib import Path
from typing import Any

from twisted.logger import Logger
from twisted.python.filepath import FilePath
from twisted.web import server, static
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, NoResource, Resource

from workshop_backend.errors import encode
from workshop_backend.security import TOKEN_PAGE, Guard

BODY_MAX = 1024 * 1024
STATE_BODY_MAX = 64 * 1024 + 1024  # a 64 KiB value plus some whitespace
HASHED = re.compile(r"-[A-Za-z0-9_]{8,}\.(js|css|woff2?|svg|png|map)$")


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

    def _refuse(self) -> None:
        self._refused = True
        # No "100 Continue" after a refusal.
        self.requestHeaders.removeHeader(b"expect")
        body = encode({"error": "too_large", "message": f"The request body may be at most {self._cap // 1024} KiB."})
        head = (
            b"HTTP/1.1 413 Content Too Large\r\n"
            b"Content-Type: application/json; charset=utf-8\r\n"
            b"Connection: close\r\n"
            b"Content-Length: " + str(len(body)).encode("ascii") + b"\r\n\r\n"
        )
        transport = self.channel.transport
        if transport is not None:
            transport.write(head + body)
        self.channel.loseConnection()


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


class StaticFiles(static.File):
    """The embedded UI assets."""

    def directoryListing(self) -> IResource:
        """Never list a folder."""
        return NoResource()

    def getChild(self, path: bytes, request: IRequest) -> IResource:
        """Refuse dot files and anything that resolves outside the root."""
        if path.startswith(b".") or b"/" in path or b"\\" in path or b"\x00" in path:
            return NoResource()
        child: IResource = super().getChild(path, request)
        if isinstance(child, static.File):
            root = Path(self.path).resolve()
            try:
                Path(child.path).resolve().relative_to(root)
            except ValueError:
                return NoResource()
        return child

    def render_GET(self, request: IRequest) -> Any:
        """Long cache for content-hashed names; revalidate the rest."""
        name = Path(self.path).name
        cache = b"public, max-age=31536000, immutable" if HASHED.search(name) else b"no-cache"
        request.setHeader(b"Cache-Control", cache)
        return super().render_GET(request)

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
    access = Logger(namespace="workshop_backend.access")

    def log(self, request: Any) -> None:
        """One event per request: method, path, status, duration, bytes."""
        started = getattr(request, "started", 0.0)
        self.access.info(
            "{method} {path} {status} {duration_ms:.1f} ms",
            method=request.method.decode("latin-1"),
            path=request.path.decode("latin-1"),
            status=request.code,
            duration_ms=(time.monotonic() - started) * 1000 if started else 0.0,
            bytes=request.sentLength,
        )


def make_site(resource: IResource, *, timeout: float = 60 * 5) -> server.Site:
    """The Site: limited requests, no version header, an idle timeout."""
    site = WorkshopSite(resource, requestFactory=LimitedRequest, timeout=timeout)
    site.displayTracebacks = False
    return site
