"""The embedded student UI's files, under ``/static/``.

Content-hashed names are cached for a year, the rest revalidated; text
assets are gzipped once and kept; nothing is listed, nothing outside the
folder is served (symlinks included), only the files the UI build writes are
served at all, and misses are JSON 404s like the API's.
"""

from __future__ import annotations

import gzip
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

from twisted.python.filepath import FilePath
from twisted.web import static
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

from workshop_backend.http.errors import ApiError, write_error

COMPRESSIBLE = frozenset({".js", ".css", ".svg", ".html", ".json", ".map"})
SERVED = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\.(js|css|woff2?|svg|png|map|html|json)")
"""The only names served: what the UI build writes (no dot files, no Python files, no folders)."""
HASHED = re.compile(r"-[A-Za-z0-9_]{8,}\.(js|css|woff2?|svg|png|map)$")


class JsonNotFound(Resource):
    """The API's 404, for asset misses too."""

    isLeaf = True

    def render(self, request: IRequest) -> bytes:
        """``{"error": "not_found", ...}``."""
        return write_error(request, ApiError(404, "not_found", "There is nothing at this address."))


class StaticFiles(static.File):
    """The embedded UI assets."""

    childNotFound = JsonNotFound()  # type: ignore[assignment]
    forbidden = JsonNotFound()  # type: ignore[assignment]
    processors: dict[str, Any] = {}

    def directoryListing(self) -> IResource:
        """Never list a folder."""
        return self.childNotFound

    def getChild(self, path: bytes, request: IRequest) -> IResource:
        """Only the names the UI build writes, and nothing that resolves outside the root (symlinks too)."""
        if not SERVED.fullmatch(path.decode("latin-1")):
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
