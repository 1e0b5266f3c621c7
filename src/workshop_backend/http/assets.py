"""Serving the distribution's assets (contract section 3.1): ``GET /assets/{sha256}/{path}``.

The URL names the asset's content (its sha256) and its path, so:

- it never changes while the content does not: the answer is cached for a
  year (``immutable``), with the sha256 as a strong ``ETag`` for a
  revalidation (``304``);
- knowing it means having the content or the step that shows it, so it
  needs no credentials: an ``<img>`` cannot send the page's own, and the
  URL is the capability (``Referrer-Policy: no-referrer`` keeps it from
  leaking out of the page).

Every answer says exactly what it is (``Content-Type`` from the
distribution, ``X-Content-Type-Options: nosniff``) and can never run
anything: its ``Content-Security-Policy`` is ``sandbox`` with no sources,
so an SVG opened on its own cannot run script, and the page only ever
shows SVG as an ``<img>`` (never inlined).  Images (:data:`IMAGE_TYPES`)
are ``inline``; everything else is a download (``Content-Disposition:
attachment``).

The body is streamed: a chunk is read from the working copy off the
reactor thread, written, and the next one read only when the connection
takes more, so memory per download is one chunk, whatever the size.
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import quote

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from workshop_backend.workshop.assets import Asset

PREFIX = "/assets/"
CHUNK = 256 * 1024
"""Bytes asked of the working copy at a time."""
CACHE = b"private, max-age=31536000, immutable"
CSP = b"default-src 'none'; style-src 'unsafe-inline'; sandbox"
"""No scripts, no plugins, no requests, a unique origin: the asset as a document can do nothing."""


def asset_url(asset: Asset) -> str:
    """Where an asset is served: its sha256, then its path, each segment percent-encoded."""
    return PREFIX + asset.sha256 + "/" + "/".join(quote(segment, safe="") for segment in asset.path.split("/"))


def content_disposition(asset: Asset) -> bytes:
    """``inline`` for images, ``attachment`` for the rest, with the file's name (RFC 6266)."""
    name = asset.path.rsplit("/", 1)[-1]
    fallback = "".join(c if 0x20 < ord(c) < 0x7F and c not in '"\\%;' else "_" for c in name)
    kind = "inline" if asset.is_image else "attachment"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}".encode("ascii")


def _matches(if_none_match: bytes | None, etag: bytes) -> bool:
    """Does an ``If-None-Match`` list name this ETag (``*``, weak or strong)?"""
    if if_none_match is None:
        return False
    for candidate in if_none_match.split(b","):
        tag = candidate.strip()
        if tag == b"*" or tag.removeprefix(b"W/") == etag:
            return True
    return False


class ChunkSource(Protocol):
    """Reads an asset's bytes (the runtime, over the working copy)."""

    def read_asset(self, asset: Asset, offset: int, size: int) -> Deferred[bytes]: ...


def serve(request: Request, asset: Asset, source: ChunkSource) -> Any:
    """Answer a GET or HEAD for ``asset``: headers, then the body streamed (or 304)."""
    etag = f'"{asset.sha256}"'.encode("ascii")
    request.setHeader(b"ETag", etag)
    request.setHeader(b"Cache-Control", CACHE)
    request.setHeader(b"Content-Security-Policy", CSP)
    if _matches(request.getHeader(b"if-none-match"), etag):
        # Finished here, not returned: Twisted would add "Content-Length: 0", which a cache
        # in between could take for the new length of the asset it holds.
        request.setResponseCode(304)
        request.finish()
        return NOT_DONE_YET
    request.setHeader(b"Content-Type", asset.media_type.encode("latin-1"))
    request.setHeader(b"Content-Disposition", content_disposition(asset))
    request.setHeader(b"Content-Length", str(asset.size).encode("ascii"))
    if request.method == b"HEAD" or asset.size == 0:
        return b""
    AssetBody(request, asset, source).start()
    return NOT_DONE_YET


class AssetResource(Resource):
    """One asset as a leaf resource (what the route answers: Klein renders it with Twisted's NOT_DONE_YET)."""

    isLeaf = True

    def __init__(self, asset: Asset, source: ChunkSource) -> None:
        super().__init__()
        self.asset = asset
        self.source = source

    def render_GET(self, request: IRequest) -> Any:
        """Headers, then the body (or 304)."""
        assert isinstance(request, Request)
        return serve(request, self.asset, self.source)

    render_HEAD = render_GET


@implementer(IPushProducer)
class AssetBody:
    """Streams one asset's bytes: read a chunk, write it, read the next when the connection has room."""

    log = Logger()

    def __init__(self, request: Request, asset: Asset, source: ChunkSource) -> None:
        self.request = request
        self.asset = asset
        self.source = source
        self.offset = 0
        self.paused = False
        self.reading = False
        self.done = False

    def start(self) -> None:
        """Register with the request and read the first chunk."""
        self.request.registerProducer(self, True)
        self.request.notifyFinish().addBoth(self._gone)
        self._next()

    def _gone(self, _: object) -> None:
        self.done = True

    def _next(self) -> None:
        if self.done or self.paused or self.reading:
            return
        self.reading = True
        d = self.source.read_asset(self.asset, self.offset, CHUNK)
        d.addCallbacks(self._got, self._failed)

    def _got(self, data: bytes) -> None:
        self.reading = False
        if self.done:
            return
        if not data:
            # Shorter than the distribution said (it cannot change under us, but never hang).
            self._abort(f"the asset ended at {self.offset} of {self.asset.size} bytes")
            return
        self.offset += len(data)
        last = self.offset >= self.asset.size
        if last:
            self.done = True
        self.request.write(data)
        if last:
            self.request.unregisterProducer()
            self.request.finish()
        else:
            self._next()

    def _failed(self, failure: Failure) -> None:
        self.reading = False
        if self.done:
            return
        self.log.failure("reading the asset {path} failed", failure, path=self.asset.path)
        self._abort("it could not be read")

    def _abort(self, why: str) -> None:
        """The headers promised a length the body cannot keep: cut the connection, say why in the log."""
        self.done = True
        self.log.warn("stopped sending the asset {path}: {why}", path=self.asset.path, why=why)
        self.request.unregisterProducer()
        transport = getattr(self.request.channel, "transport", None)
        if transport is not None:
            transport.abortConnection()

    def pauseProducing(self) -> None:
        """The connection is full: read no more for now."""
        self.paused = True

    def resumeProducing(self) -> None:
        """The connection has room again."""
        self.paused = False
        self._next()

    def stopProducing(self) -> None:
        """The connection is gone."""
        self.done = True


__all__ = ["CHUNK", "PREFIX", "AssetBody", "AssetResource", "asset_url", "content_disposition", "serve"]
