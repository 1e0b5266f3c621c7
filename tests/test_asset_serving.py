"""``GET /assets/{sha256}/{path}`` in memory: types, headers, caching, SVG sandbox, no traversal, streaming.

The real API tree over a real working copy (StubTreq), the asset bytes read
by the real :class:`~workshop_backend.state.assets.AssetStore` (over a
synchronous pool), and :class:`~workshop_backend.http.assets.AssetBody`'s
backpressure with a request whose connection the test fills and drains.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from tests.distributions import StepDef, write
from tests.fakes import SyncPool
from tests.images import JPEG, SVG, gif, png
from tests.test_api import TOKEN, Harness
from workshop_backend.http.assets import CHUNK, AssetBody, content_disposition
from workshop_backend.state.assets import AssetStore
from workshop_backend.workshop.assets import Asset

PNG = png(40, 20, (0, 128, 0))
GIF = gif(30, 30, [(255, 0, 0), (0, 0, 255)])
BIG = bytes(range(256)) * 4100  # a little over four chunks
ASSETS = [
    ("images/a.png", "image/png", PNG),
    ("images/b.jpg", "image/jpeg", JPEG),
    ("images/c.gif", "image/gif", GIF),
    ("images/logo.svg", "image/svg+xml", SVG),
    ("files/app.conf", "text/plain; charset=utf-8", b"port=8080\n"),
    ("files/page.html", "text/html", b"<script>alert(1)</script>"),
    ("files/big.bin", "application/octet-stream", BIG),
    ("files/empty.txt", "text/plain", b""),
    ('files/Grüße & "quotes".txt', "text/plain", b"hi"),
]
MARKDOWN = "\n\n".join(
    [
        f"![image {n}]({path})" if media.startswith("image/") else f"[file {n}]({path})"
        for n, (path, media, _) in enumerate(ASSETS)
    ]
)


def harness(case: SynchronousTestCase, **kwargs: Any) -> Harness:
    """A workshop whose one step shows or links every test asset, read as the daemon reads them."""
    root = Path(case.mktemp())
    root.mkdir()
    dist = write(root / "dist.sqlite", [StepDef("intro", markdown=MARKDOWN)], assets=list(ASSETS))
    return Harness(case, dist, with_assets=True, **kwargs)


def urls(h: Harness) -> dict[str, str]:
    """The asset URLs the step's HTML gives out, by asset path."""
    code, step = h.get("/api/v1/steps/intro")
    assert code == 200
    found = re.findall(r'(?:src|href)="(/assets/[0-9a-f]{64}/[^"]+)"', step["html"])
    by_path = {}
    for url in found:
        for path, _, _ in ASSETS:
            digest = hashlib.sha256(dict((p, d) for p, _, d in ASSETS)[path]).hexdigest()
            if url.startswith(f"/assets/{digest}/"):
                by_path[path] = url
    return by_path


class ServingTests(SynchronousTestCase):
    """What a browser gets for each asset."""

    def setUp(self) -> None:
        self.h = harness(self)
        self.urls = urls(self.h)

    def fetch(self, path: str, **kwargs: Any) -> tuple[int, bytes, Any]:
        """GET an asset by its path in the distribution."""
        code, body, response = self.h.request("GET", self.urls[path], **kwargs)
        return code, body, response

    def header(self, response: Any, name: str) -> str | None:
        """One response header, decoded."""
        values = response.headers.getRawHeaders(name.encode())
        return None if values is None else values[0].decode("latin-1")

    def test_every_asset_linked(self) -> None:
        """The step's HTML has a URL for every asset (images as img, the rest as links)."""
        self.assertEqual(sorted(self.urls), sorted(p for p, _, _ in ASSETS))

    def test_bytes_and_type(self) -> None:
        """Each answer is the asset's bytes with its own Content-Type, length and nosniff."""
        for path, media, data in ASSETS:
            code, body, response = self.fetch(path)
            self.assertEqual(code, 200, path)
            self.assertEqual(body, data, path)
            self.assertEqual(self.header(response, "Content-Type"), media, path)
            self.assertEqual(response.length, len(data), path)  # the client keeps Content-Length here
            self.assertEqual(self.header(response, "X-Content-Type-Options"), "nosniff", path)

    def test_caching_and_etag(self) -> None:
        """A strong ETag (the sha256) and a year of caching; If-None-Match answers 304 without a body."""
        code, _, response = self.fetch("images/a.png")
        etag = f'"{hashlib.sha256(PNG).hexdigest()}"'
        self.assertEqual(self.header(response, "ETag"), etag)
        self.assertEqual(self.header(response, "Cache-Control"), "private, max-age=31536000, immutable")
        for sent in (etag, f"W/{etag}", f'"other", {etag}', "*"):
            code, body, response = self.fetch("images/a.png", headers={"If-None-Match": sent})
            self.assertEqual((code, body), (304, b""), sent)
            self.assertEqual(self.header(response, "ETag"), etag)
        code, body, _ = self.fetch("images/a.png", headers={"If-None-Match": '"something-else"'})
        self.assertEqual((code, body), (200, PNG))

    def test_not_modified_says_no_length(self) -> None:
        """A 304 is finished by the asset route itself, with no Content-Length (Twisted would add "0",
        which a cache in between could take for the asset's new length)."""
        from twisted.web.server import NOT_DONE_YET
        from twisted.web.test.requesthelper import DummyRequest

        from workshop_backend.http.assets import serve

        asset = Asset("a.png", "image/png", len(PNG), hashlib.sha256(PNG).hexdigest())
        request = DummyRequest([b""])
        request.requestHeaders.setRawHeaders(b"if-none-match", [f'"{asset.sha256}"'.encode()])
        self.assertIs(serve(request, asset, self.h.runtime), NOT_DONE_YET)  # type: ignore[arg-type]
        self.assertEqual((request.responseCode, request.finished), (304, 1))
        self.assertFalse(request.responseHeaders.hasHeader(b"content-length"))
        self.assertEqual(request.responseHeaders.getRawHeaders(b"etag"), [f'"{asset.sha256}"'.encode()])

    def test_never_runs_anything(self) -> None:
        """Every asset, SVG and HTML above all, is sandboxed with no sources: no script can run."""
        for path in ("images/logo.svg", "files/page.html", "images/a.png"):
            _, _, response = self.fetch(path)
            csp = self.header(response, "Content-Security-Policy") or ""
            self.assertIn("sandbox", csp, path)
            self.assertIn("default-src 'none'", csp, path)
            self.assertNotIn("script-src", csp, path)

    def test_inline_images_download_the_rest(self) -> None:
        """Images are inline; everything else (HTML too) is an attachment."""
        expected = {
            "images/logo.svg": "inline; filename=\"logo.svg\"; filename*=UTF-8''logo.svg",
            "images/b.jpg": "inline; filename=\"b.jpg\"; filename*=UTF-8''b.jpg",
            "files/page.html": "attachment; filename=\"page.html\"; filename*=UTF-8''page.html",
            'files/Grüße & "quotes".txt': 'attachment; filename="Gr__e_&__quotes_.txt";'
            " filename*=UTF-8''Gr%C3%BC%C3%9Fe%20%26%20%22quotes%22.txt",
        }
        for path, disposition in expected.items():
            self.assertEqual(self.header(self.fetch(path)[2], "Content-Disposition"), disposition, path)

    def test_head(self) -> None:
        """HEAD: the headers, no body."""
        code, body, response = self.h.request("HEAD", self.urls["images/b.jpg"])
        self.assertEqual((code, body), (200, b""))
        self.assertEqual(self.header(response, "Content-Type"), "image/jpeg")

    def test_large_asset_streamed_whole(self) -> None:
        """An asset of several chunks arrives whole and in order; an empty one as zero bytes."""
        self.assertGreater(len(BIG), 4 * CHUNK)
        self.assertEqual(self.fetch("files/big.bin")[:2], (200, BIG))
        self.assertEqual(self.fetch("files/empty.txt")[:2], (200, b""))

    def test_no_traversal_or_guessing(self) -> None:
        """Another digest, another path, '..' in any spelling, an encoded '/': all JSON 404s."""
        png_url = self.urls["images/a.png"]
        digest = png_url.split("/")[2]
        other = hashlib.sha256(JPEG).hexdigest()
        for path in (
            f"/assets/{other}/images/a.png",  # a real digest, of another asset
            f"/assets/{digest}/images/b.jpg",
            f"/assets/{digest}/images/../files/app.conf",
            f"/assets/{digest}/images/%2e%2e/files/app.conf",
            f"/assets/{digest}/images%2fa.png",
            f"/assets/{digest}//images/a.png",
            f"/assets/{digest}/../../api/v1/state",
            f"/assets/{digest}/",
            "/assets/",
            f"/assets/{digest[:10]}/images/a.png",
        ):
            code, body, _ = self.h.request("GET", path)
            self.assertEqual(code, 404, path)
            self.assertIn(body["error"], ("not_found", "unknown_asset"), path)

    def test_no_write_methods(self) -> None:
        """Assets are read only: POST is 405."""
        code, body, _ = self.h.request("POST", self.urls["images/a.png"])
        self.assertEqual((code, body["error"]), (405, "method_not_allowed"))


class AccessTests(SynchronousTestCase):
    """Who may fetch an asset."""

    def test_no_credentials_needed(self) -> None:
        """With --auth token, an asset URL answers without credentials (an <img> sends none);
        the step that gives the URL out still needs them."""
        h = harness(self, auth="token")
        self.assertEqual(h.get("/api/v1/steps/intro")[0], 401)
        _, step = h.get("/api/v1/steps/intro", headers={"Authorization": f"Bearer {TOKEN}"})
        url = re.findall(r'src="(/assets/[^"]+)"', step["html"])[0]
        self.assertEqual(h.get(url)[0], 200)

    def test_starting(self) -> None:
        """Before the working copy is open: 503 starting, like the API."""
        h = harness(self, open_runtime=False)
        digest = hashlib.sha256(PNG).hexdigest()
        code, body = h.get(f"/assets/{digest}/images/a.png")
        self.assertEqual((code, body["error"]), (503, "starting"))


class FakeChannel:
    """A connection the test fills and drains."""

    def __init__(self) -> None:
        self.aborted = False
        self.transport = self

    def abortConnection(self) -> None:
        """Cut."""
        self.aborted = True


class FakeRequest:
    """What AssetBody uses of a request: write, producer registration, finish."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.producer: Any = None
        self.finished = False
        self.finish_d: Deferred[None] = Deferred()
        self.channel = FakeChannel()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """Keep the producer."""
        assert streaming
        self.producer = producer

    def unregisterProducer(self) -> None:
        """Forget it."""
        self.producer = None

    def notifyFinish(self) -> Deferred[None]:
        """Fires when the connection ends."""
        return self.finish_d

    def write(self, data: bytes) -> None:
        """Record the bytes."""
        self.written.append(data)

    def finish(self) -> None:
        """Done."""
        self.finished = True


class HeldSource:
    """Chunk reads the test answers one by one."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.reads: list[tuple[int, Deferred[bytes]]] = []

    def read_asset(self, asset: Asset, offset: int, size: int) -> Deferred[bytes]:
        """A read in flight until :meth:`answer`."""
        d: Deferred[bytes] = Deferred()
        self.reads.append((offset, d))
        return d

    def answer(self) -> None:
        """Answer the oldest read."""
        offset, d = self.reads.pop(0)
        d.callback(self.data[offset : offset + CHUNK])


class BackpressureTests(SynchronousTestCase):
    """One chunk in flight at most; none while the connection is full; none after it is gone."""

    def setUp(self) -> None:
        self.data = b"x" * (3 * CHUNK + 10)
        self.asset = Asset("big.bin", "application/octet-stream", len(self.data), "0" * 64)
        self.request = FakeRequest()
        self.source = HeldSource(self.data)
        self.body = AssetBody(self.request, self.asset, self.source)  # type: ignore[arg-type]
        self.body.start()

    def test_one_read_at_a_time(self) -> None:
        """The next chunk is asked for only once the last one was written."""
        self.assertEqual([o for o, _ in self.source.reads], [0])
        self.source.answer()
        self.assertEqual([o for o, _ in self.source.reads], [CHUNK])
        self.assertEqual(len(self.request.written), 1)

    def test_paused_reads_nothing(self) -> None:
        """A full connection pauses the producer: no read until it resumes; then to the end."""
        self.body.pauseProducing()
        self.source.answer()  # the read already in flight is written...
        self.assertEqual(self.source.reads, [])  # ...and no other is started
        self.body.resumeProducing()
        while self.source.reads:
            self.source.answer()
        self.assertEqual(b"".join(self.request.written), self.data)
        self.assertTrue(self.request.finished)
        self.assertIsNone(self.request.producer)

    def test_connection_gone(self) -> None:
        """A browser that leaves stops the reading."""
        self.request.finish_d.callback(None)
        self.source.answer()
        self.assertEqual(self.source.reads, [])
        self.assertFalse(self.request.finished)

    def test_short_read_cuts_the_connection(self) -> None:
        """A body shorter than its Content-Length never hangs: the connection is cut."""
        self.source.data = b"x" * 10
        self.source.answer()  # 10 bytes of the promised many
        self.source.answer()  # nothing more
        self.assertTrue(self.request.channel.aborted)
        self.assertFalse(self.request.finished)

    def test_disposition_of_odd_names(self) -> None:
        """Control characters, quotes and backslashes never reach the header's quoted name."""
        header = content_disposition(Asset('a"b\\c;d.txt', "text/plain", 1, "0" * 64)).decode()
        self.assertTrue(header.startswith('attachment; filename="a_b_c_d.txt"'), header)


class ReaderTests(SynchronousTestCase):
    """AssetStore: chunks of the working copy's BLOBs."""

    def test_chunks(self) -> None:
        """Offsets and sizes as asked; past the end is empty; an unknown path is empty."""
        root = Path(self.mktemp())
        root.mkdir()
        path = write(root / "d.sqlite", [StepDef("a")], assets=[("b.bin", "application/octet-stream", BIG)])
        pool = SyncPool(path)
        self.addCleanup(pool.close)
        store = AssetStore(path, pool=pool)  # type: ignore[arg-type]
        self.assertEqual(self.successResultOf(store.read("b.bin", 0, 10)), BIG[:10])
        self.assertEqual(self.successResultOf(store.read("b.bin", 1000, 5000)), BIG[1000:6000])
        self.assertEqual(self.successResultOf(store.read("b.bin", len(BIG) + 5, 10)), b"")
        self.assertEqual(self.successResultOf(store.read("nope", 0, 10)), b"")

    def test_without_rowid(self) -> None:
        """An ``assets`` table declared WITHOUT ROWID (no BLOB handles): the same chunks, by substr."""
        import sqlite3

        root = Path(self.mktemp())
        root.mkdir()
        path = write(root / "d.sqlite", [StepDef("a")], assets=[])
        with sqlite3.connect(path) as conn:
            conn.executescript(
                "DROP TABLE assets; CREATE TABLE assets (path TEXT PRIMARY KEY, media_type TEXT NOT NULL,"
                " data BLOB NOT NULL) WITHOUT ROWID;"
            )
            conn.execute("INSERT INTO assets VALUES ('b.bin', 'application/octet-stream', ?)", (BIG,))
        pool = SyncPool(path)
        self.addCleanup(pool.close)
        store = AssetStore(path, pool=pool)  # type: ignore[arg-type]
        self.assertEqual(self.successResultOf(store.read("b.bin", 1000, 5000)), BIG[1000:6000])
        self.assertEqual(self.successResultOf(store.read("b.bin", len(BIG), 10)), b"")
