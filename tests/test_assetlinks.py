"""Relative image and link URLs in step and hint markdown, rewritten to the assets' URLs (pure).

A relative URL that names an asset points at its served URL (a leading
``./`` ignored); one that names none becomes plain text; absolute URLs are
left to the sanitizer as before, and ``javascript:`` is still dropped, raw
HTML included.
"""

from __future__ import annotations

import re
from typing import cast

from twisted.logger import ILogObserver, LogEvent, LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from workshop_backend.content.assetlinks import AssetLinks, Reference
from workshop_backend.content.render import render_hint, render_markdown, unclosed_fence
from workshop_backend.content.renderer import CachedRenderer
from workshop_backend.http.assets import asset_url
from workshop_backend.workshop.assets import Asset

ARCH = Asset("images/arch.png", "image/png", 10, "a" * 64)
LOGO = Asset("logo.svg", "image/svg+xml", 10, "b" * 64)
CONF = Asset("files/app.conf", "text/plain; charset=utf-8", 10, "c" * 64)
SPACED = Asset("my file.jpg", "image/jpeg", 10, "d" * 64)
ASSETS = {a.path: a for a in (ARCH, LOGO, CONF, SPACED)}
ARCH_URL = "/assets/" + "a" * 64 + "/images/arch.png"


def render(text: str) -> tuple[str, AssetLinks]:
    """Render with the test assets, served as the daemon serves them."""
    links = AssetLinks(ASSETS, asset_url)
    return render_markdown(text, links=links), links


class ImageTests(SynchronousTestCase):
    """``![alt](path)``."""

    def test_relative_image(self) -> None:
        """An image naming an asset points at its URL, keeps its alt, loads lazily."""
        html, _ = render("![The architecture](images/arch.png)")
        self.assertEqual(html, f'<p><img alt="The architecture" src="{ARCH_URL}" loading="lazy"></p>')

    def test_leading_dot_slash(self) -> None:
        """``./`` is ignored, however often it is written."""
        for url in ("./images/arch.png", "././images/arch.png"):
            self.assertIn(f'src="{ARCH_URL}"', render(f"![a]({url})")[0], url)

    def test_percent_encoded(self) -> None:
        """``my%20file.jpg`` names ``my file.jpg``; its URL encodes the space again."""
        self.assertIn('src="/assets/' + "d" * 64 + '/my%20file.jpg"', render("![a](my%20file.jpg)")[0])

    def test_missing_image_is_plain_text(self) -> None:
        """An image naming no asset becomes its alt text: no img, no request."""
        html, links = render("Look: ![the diagram](images/missing.png) here.")
        self.assertEqual(html, "<p>Look: <span>the diagram</span> here.</p>")
        self.assertEqual(links.references, [Reference("image", "images/missing.png", None, "the diagram")])

    def test_parent_paths_not_resolved(self) -> None:
        """``../`` is never resolved (the build pipeline rewrites paths): plain text."""
        self.assertNotIn("<img", render("![logo](../logo.svg)")[0])

    def test_image_naming_a_download_is_text(self) -> None:
        """``![x](files/app.conf)``: not an image a browser shows, so text (and the check says so)."""
        html, links = render("![config](files/app.conf)")
        self.assertEqual(html, "<p><span>config</span></p>")
        self.assertFalse(links.references[0].usable)

    def test_absolute_urls_untouched(self) -> None:
        """https images stay as they were; root-relative and scheme-relative ones are dropped as before."""
        html, links = render("![a](https://example.com/a.png) ![b](/api/v1/state) ![c](//evil.example/c.png)")
        self.assertIn('<img alt="a" src="https://example.com/a.png" loading="lazy">', html)
        self.assertEqual(html.count("src="), 1)
        self.assertEqual(links.references, [])

    def test_svg_never_inlined(self) -> None:
        """An SVG asset is an <img> (no script runs in one), never inline <svg> markup."""
        html, _ = render("![logo](logo.svg)")
        self.assertIn("<img", html)
        self.assertNotIn("<svg", html)

    def test_raw_html_image(self) -> None:
        """``<img src="./images/arch.png" style=...>`` (Killercoda's way): rewritten, style dropped, lazy."""
        html, links = render('<img src="./images/arch.png" style="width: 1000px" alt="wide">')
        self.assertEqual(html, f'<p><img src="{ARCH_URL}" alt="wide" loading="lazy"></p>')
        self.assertEqual(links.references[0].asset, ARCH)

    def test_raw_html_missing_image(self) -> None:
        """Raw HTML naming no asset loses its src: nothing is requested."""
        html, _ = render('<p><img src="nope.png" alt="gone"></p>')
        self.assertNotIn("src", html)
        self.assertIn('alt="gone"', html)

    def test_forged_asset_url_dropped(self) -> None:
        """A hand-written /assets/ URL that was not given out is dropped like any root-relative URL."""
        html, _ = render('<img src="/assets/00/images/arch.png"> ![x](/assets/00/logo.svg)')
        self.assertNotIn("src=", html)


class LinkTests(SynchronousTestCase):
    """``[text](path)``."""

    def test_link_to_download(self) -> None:
        """A link naming an asset points at its URL (served as a download), in a new tab."""
        html, _ = render("[the config](./files/app.conf)")
        url = "/assets/" + "c" * 64 + "/files/app.conf"
        self.assertEqual(html, f'<p><a href="{url}" target="_blank" rel="noopener noreferrer">the config</a></p>')

    def test_link_to_image(self) -> None:
        """A link to an image asset opens the image."""
        self.assertIn(f'href="{ARCH_URL}"', render("[full size](images/arch.png)")[0])

    def test_missing_link_is_plain_text(self) -> None:
        """A link naming no asset keeps its text and links nowhere."""
        html, _ = render("See [step 2](step2.md).")
        self.assertEqual(html, "<p>See <span>step 2</span>.</p>")

    def test_fragments_and_web_links_untouched(self) -> None:
        """In-page fragments and web links behave as before."""
        html, links = render("## Top\n\n[up](#top) [web](https://example.com/)")
        self.assertIn('href="#md-top"', html)
        self.assertIn('href="https://example.com/"', html)
        self.assertEqual(links.references, [])

    def test_javascript_still_dropped(self) -> None:
        """``javascript:`` links and images are dropped, markdown or raw HTML, however spelled."""
        for text in (
            "[x](javascript:alert(1))",
            "![x](javascript:alert(1))",
            '<a href="javascript:alert(1)">x</a>',
            '<img src="JaVaScRiPt:alert(1)">',
            '<a href="java\tscript:alert(1)">x</a>',
        ):
            html, _ = render(text)
            self.assertNotIn("javascript", html.lower(), text)
            self.assertNotRegex(html, re.compile(r"(href|src)=", re.I), text)

    def test_raw_html_link(self) -> None:
        """``<a href="files/app.conf">``: rewritten like markdown's."""
        html, _ = render('<a href="files/app.conf">get it</a>')
        self.assertIn('href="/assets/' + "c" * 64 + '/files/app.conf"', html)


class HintAndCacheTests(SynchronousTestCase):
    """Hints resolve the same assets; the daemon's renderer passes them in."""

    def test_hint(self) -> None:
        """A hint's image is rewritten like a step's."""
        links = AssetLinks(ASSETS, asset_url)
        self.assertIn(f'src="{ARCH_URL}"', render_hint("![a](images/arch.png)", 2, links=links))

    def test_without_assets_everything_relative_is_text(self) -> None:
        """No links object (no assets): relative images and links are text, as before assets existed."""
        html = render_markdown("![a](images/arch.png) [b](files/app.conf)")
        self.assertEqual(html, "<p><span>a</span> <span>b</span></p>")

    def test_cached_renderer(self) -> None:
        """``CachedRenderer(assets, asset_url)`` renders steps with working asset URLs."""
        from workshop_backend.validation.spec import ValidationSpec
        from workshop_backend.workshop.model import Step

        step = Step("s", 0, "S", "![a](images/arch.png)", "img", ValidationSpec(), ("![h](logo.svg)",))
        renderer = CachedRenderer(ASSETS, asset_url)
        self.assertIn(ARCH_URL, self.successResultOf(renderer.step(step)))
        self.assertIn("/assets/" + "b" * 64 + "/logo.svg", self.successResultOf(renderer.hint(step, 0)))

    def test_text_that_cannot_render(self) -> None:
        """A list nested 3000 deep makes Python-Markdown recurse too far: the daemon shows it as text
        (escaped) under a note and logs the failure, instead of a 500."""
        from workshop_backend.validation.spec import ValidationSpec
        from workshop_backend.workshop.model import Step

        text = "- " * 3000 + "<b>x</b>"
        step = Step("s", 0, "S", text, "img", ValidationSpec(), ())
        events: list[LogEvent] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        html = self.successResultOf(CachedRenderer(ASSETS, asset_url).step(step))
        self.assertTrue(html.startswith("<p><strong>This text could not be formatted"), html[:100])
        self.assertIn("&lt;b&gt;x&lt;/b&gt;", html)
        problems = [str(e.get("problem")) for e in events if e.get("log_level") == LogLevel.error]
        self.assertEqual(len(problems), 1, events)
        self.assertTrue(problems[0].startswith("RecursionError"), problems)
        # The failure does not poison the thread's renderer for the next text.
        self.assertEqual(render_markdown("*fine*"), "<p><em>fine</em></p>")

    def test_deterministic(self) -> None:
        """The same text renders to the same bytes (the sanitizer sets one attribute: no order to vary)."""
        text = '![a](images/arch.png) <img src="logo.svg" alt="b" width="10">'
        self.assertEqual(render(text)[0], render(text)[0])


class FenceTests(SynchronousTestCase):
    """``unclosed_fence``: a warning for the check command."""

    def test_closed(self) -> None:
        """Closed fences, Killercoda markers, longer fences: nothing to say."""
        for text in ("```bash\nls\n```\n", "```\nls\n```{{exec}}\n", "````\n```\n````\n", "~~~\nx\n~~~\n", "no code"):
            self.assertIsNone(unclosed_fence(text), text)

    def test_unclosed(self) -> None:
        """The line of the fence that never closes."""
        self.assertEqual(unclosed_fence("# T\n\n```bash\nls\n"), 3)
        self.assertEqual(unclosed_fence("```\na\n```\n\n````\nb\n```\n"), 5)
