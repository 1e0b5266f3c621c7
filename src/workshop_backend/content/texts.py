"""The texts of a workshop to render, and how one is rendered: shared by the daemon and its render child.

Imports nothing heavy at the top: the daemon uses :func:`as_plain_text` and
:func:`texts_of` without ever loading the markdown stack, which
:func:`render_text` imports when it is first called (in the render child,
or in process as the fallback).
"""

from __future__ import annotations

import html as html_module
from collections.abc import Callable, Mapping

from workshop_backend.workshop.assets import Asset
from workshop_backend.workshop.model import Workshop

Key = tuple[str, int]
"""A text to render: its markdown and, for a hint, its index (-1: a step)."""

FROZEN_FLAG = "--render"
"""How a frozen bundle runs its render child (``sys.executable --render``)."""


def as_plain_text(markdown: str) -> str:
    """What a text the markdown stack cannot take is shown as."""
    return (
        "<p><strong>This text could not be formatted; here it is as written.</strong></p>"
        f"<pre>{html_module.escape(markdown)}</pre>"
    )


def render_text(
    markdown: str, hint: int, assets: Mapping[str, Asset], asset_url: Callable[[Asset], str] | None
) -> tuple[str, str | None]:
    """``(html, problem)``: the sanitized HTML of a step (``hint`` -1) or a hint; the plain-text form and
    why, if the markdown stack cannot take it."""
    from workshop_backend.content.assetlinks import AssetLinks
    from workshop_backend.content.render import render_hint, render_markdown

    links = AssetLinks(assets) if asset_url is None else AssetLinks(assets, asset_url)
    try:
        html = render_markdown(markdown, links=links) if hint < 0 else render_hint(markdown, hint, links=links)
    except Exception as e:  # any text the markdown stack cannot take: show it as text, say why
        return as_plain_text(markdown), f"{type(e).__name__}: {e}"[:500]
    return html, None


def texts_of(workshop: Workshop) -> list[Key]:
    """Every text of a workshop to render, each once, steps before their hints."""
    keys: dict[Key, None] = {}
    for step in workshop.steps:
        keys[(step.markdown, -1)] = None
        for index, hint in enumerate(step.hints):
            keys[(hint, index)] = None
    return list(keys)
