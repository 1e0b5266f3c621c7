"""Relative URLs in step markdown that name assets: rewritten to where the backend serves them.

An author writes ``![Architecture](images/arch.png)`` or
``[the config](./files/app.conf)``; the build pipeline stored those files in
the distribution's ``assets`` table (contract section 3.1).  When a step is
rendered, every relative image or link URL is looked up there
(:func:`~workshop_backend.workshop.assets.referenced_path`: a leading ``./``
ignored, percent escapes decoded):

- it names an image asset: ``<img>`` points at the asset's URL, with
  ``loading="lazy"`` and an ``alt`` (empty if the author gave none);
- it names another asset: the link points at the asset's URL (served as a
  download); a link to an image asset opens the image;
- it names no asset (or ``![...]`` names an asset that is not an image):
  the image becomes its alt text and the link its text, so the page never
  makes a request that cannot succeed.

Markdown's own images and links are rewritten in the element tree
(:class:`AssetTree`); raw HTML (``<img src="./green.png">``) through the
sanitizer's attribute filter (:meth:`AssetLinks.attribute`).  Both go through
one :class:`AssetLinks`, which also records every reference, so the check
command reports missing and unused assets from the very same rendering.

Absolute URLs (``https://...``, ``/api/...``, ``//host``, ``#fragment``) are
not references: the sanitizer judges them as before.
"""

from __future__ import annotations

import xml.etree.ElementTree as etree
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from markdown import Markdown
from markdown.treeprocessors import Treeprocessor

from workshop_backend.workshop.assets import Asset, find_asset, referenced_path

ReferenceKind = Literal["image", "link"]


@dataclass(frozen=True)
class Reference:
    """One relative URL found in a text: what it named and what it found."""

    kind: ReferenceKind
    path: str
    """As written, a leading ``./`` removed."""
    asset: Asset | None
    """None: no asset has that path."""
    alt: str | None = None
    """An image's alt text (None: the raw HTML gave none)."""

    @property
    def usable(self) -> bool:
        """Rewritten to a working URL (an image must name an image asset)."""
        return self.asset is not None and (self.kind == "link" or self.asset.is_image)


def no_url(asset: Asset) -> str:
    """A stand-in for the URL of an asset when nothing will be served (the check command)."""
    return f"/assets/-/{asset.path}"


class AssetLinks:
    """Looks up relative URLs among the assets, gives their served URL, and remembers what it saw.

    One per rendered text (its :attr:`references` belong to that text).
    """

    def __init__(self, assets: Mapping[str, Asset] | None = None, url: Callable[[Asset], str] = no_url) -> None:
        self.assets: Mapping[str, Asset] = assets if assets is not None else MappingProxyType({})
        self.url = url
        self.references: list[Reference] = []
        self._served: set[str] = set()

    def reference(self, kind: ReferenceKind, url: str, alt: str | None = None) -> Reference | None:
        """The reference a URL makes (recorded), or None if it is not a relative path."""
        path = referenced_path(url)
        if path is None:
            return None
        reference = Reference(kind, path, find_asset(path, self.assets), alt)
        self.references.append(reference)
        return reference

    def served_url(self, reference: Reference) -> str:
        """The URL of a usable reference's asset (and remember that we gave it out)."""
        assert reference.asset is not None
        url = self.url(reference.asset)
        self._served.add(url)
        return url

    def is_served(self, url: str) -> bool:
        """A URL this object gave out: the sanitizer keeps it (it keeps no other relative URL)."""
        return url in self._served

    def attribute(self, tag: str, attribute: str, value: str) -> str | None:
        """The sanitizer's view of ``src``/``href`` in raw HTML: the asset's URL, the value unchanged, or None.

        Only relative URLs are ours to judge; a usable reference becomes its
        asset's URL, any other relative URL is dropped (no request that
        cannot succeed), anything else is left to the sanitizer's scheme
        rules.  ``#fragment`` links are the caller's.
        """
        kind: ReferenceKind | None = (
            "image" if (tag, attribute) == ("img", "src") else "link" if (tag, attribute) == ("a", "href") else None
        )
        if kind is None or value.startswith("#"):
            return value
        reference = self.reference(kind, value)
        if reference is None:
            return value
        return self.served_url(reference) if reference.usable else None


class AssetTree(Treeprocessor):  # type: ignore[misc]
    """Rewrites markdown's own images and links (raw HTML is the sanitizer's, see :meth:`AssetLinks.attribute`)."""

    def __init__(self, md: Markdown | None, links: AssetLinks) -> None:
        super().__init__(md)
        self.links = links

    def run(self, root: etree.Element) -> None:
        found = [
            (parent, index, child)
            for parent in root.iter()
            for index, child in enumerate(parent)
            if child.tag in ("img", "a")
        ]
        for parent, index, child in found:
            if child.tag == "img":
                self._image(parent, index, child)
            else:
                self._link(child)

    def _image(self, parent: etree.Element, index: int, img: etree.Element) -> None:
        alt = img.get("alt", "")
        reference = self.links.reference("image", img.get("src", ""), alt)
        if reference is None:
            return
        if reference.usable:
            img.set("src", self.links.served_url(reference))
            img.set("alt", alt)
            return
        # Plain text instead: the alt text the author wrote, where the image was.
        text = etree.Element("span")
        text.text = alt
        text.tail = img.tail
        parent[index] = text

    def _link(self, link: etree.Element) -> None:
        href = link.get("href", "")
        if href.startswith("#"):
            return
        reference = self.links.reference("link", href)
        if reference is None:
            return
        if reference.usable:
            link.set("href", self.links.served_url(reference))
            link.set("target", "_blank")
            return
        # Its text stays; it links nowhere.
        link.tag = "span"
        for name in list(link.attrib):
            del link.attrib[name]


__all__ = ["AssetLinks", "AssetTree", "Reference", "no_url"]
