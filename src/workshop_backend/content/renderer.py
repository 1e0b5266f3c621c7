"""Each step's and hint's HTML, rendered once and kept.

The markdown stack (Python-Markdown, pymdown-extensions, Pygments, nh3) is
imported on the first render, not at start: the daemon answers ``/readyz``
without it, and the service renders every step in a thread right after
(:meth:`CachedRenderer.warm`), before a student asks.
"""

from __future__ import annotations

import html as html_module
from collections.abc import Callable, Mapping
from types import MappingProxyType

from twisted.logger import Logger

from workshop_backend.workshop.assets import Asset
from workshop_backend.workshop.model import Step, Workshop


class CachedRenderer:
    """Step and hint markdown to sanitized HTML, each text rendered once.

    ``assets`` and ``asset_url`` (where the HTTP layer serves an asset) turn
    relative image and link URLs into working ones; without them every
    relative URL renders as plain text.

    A text the renderer cannot take (a list nested thousands deep makes
    Python-Markdown recurse too far) is shown as plain text under a note,
    and logged: the student gets the words, never a 500
    (``workshop-backend check`` reports such a text before it ships).
    """

    log = Logger()

    def __init__(
        self,
        assets: Mapping[str, Asset] | None = None,
        asset_url: Callable[[Asset], str] | None = None,
    ) -> None:
        self._html: dict[tuple[str, int], str] = {}
        self._assets: Mapping[str, Asset] = assets if assets is not None else MappingProxyType({})
        self._asset_url = asset_url

    def _render(self, markdown: str, hint: int) -> str:
        key = (markdown, hint)
        html = self._html.get(key)
        if html is None:
            from workshop_backend.content.assetlinks import AssetLinks
            from workshop_backend.content.render import render_hint, render_markdown

            links = AssetLinks(self._assets) if self._asset_url is None else AssetLinks(self._assets, self._asset_url)
            try:
                html = render_markdown(markdown, links=links) if hint < 0 else render_hint(markdown, hint, links=links)
            except Exception:  # any text the markdown stack cannot take: show it as text, say why in the log
                self.log.failure("this text could not be rendered; it is shown as plain text")
                html = (
                    "<p><strong>This text could not be formatted; here it is as written.</strong></p>"
                    f"<pre>{html_module.escape(markdown)}</pre>"
                )
            self._html[key] = html
        return html

    def step(self, step: Step) -> str:
        """The step's HTML."""
        return self._render(step.markdown, -1)

    def hint(self, step: Step, index: int) -> str:
        """Hint ``index`` of the step (its ids prefixed ``hint-N-``)."""
        return self._render(step.hints[index], index)

    def warm(self, workshop: Workshop) -> None:
        """Render every step and hint now (the first render also loads Pygments' lexers).

        Safe in a thread: each render builds its own Markdown, and a race
        only renders a text twice.
        """
        for step in workshop.steps:
            self.step(step)
            for index in range(len(step.hints)):
                self.hint(step, index)
