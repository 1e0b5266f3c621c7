"""A distribution's assets (contract section 3.1): the rules for their paths, types and sizes.

Assets are files a workshop's steps show (images) or offer (downloads),
stored in the optional ``assets`` table.  This module is pure: it says what
a good asset path and media type are, how big assets may be, and which
asset a URL in step markdown names.  Reading the table is
:mod:`~workshop_backend.workshop.distribution`'s job, rewriting markdown
:mod:`~workshop_backend.content.assetlinks`', serving
:mod:`~workshop_backend.http.assets`'.

The caps keep a bad distribution from costing unbounded time or memory at
start (every asset is hashed once) and while serving (each is streamed in
chunks, but a browser may ask for all of them at once).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

ASSET_MAX = 16 * 1024 * 1024
"""Bytes of one asset, at most."""
ASSETS_TOTAL_MAX = 256 * 1024 * 1024
"""Bytes of all assets together, at most."""
ASSETS_COUNT_MAX = 10_000
"""Assets in one distribution, at most."""
PATH_MAX = 1024
"""Characters of an asset path, at most."""

IMAGE_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/avif",
        "image/svg+xml",
        "image/bmp",
        "image/x-icon",
        "image/vnd.microsoft.icon",
    }
)
"""Media types a browser shows in an ``<img>``: shown inline; every other asset is a download."""

_TOKEN = r"[A-Za-z0-9!#$&^_.+-]+"
_MEDIA_TYPE = re.compile(
    rf"^(?P<type>{_TOKEN})/(?P<subtype>{_TOKEN})"
    rf"(?P<params>(?:[ \t]*;[ \t]*{_TOKEN}=(?:{_TOKEN}|\"[^\"\\\x00-\x1f\x7f]*\"))*)[ \t]*$"
)


@dataclass(frozen=True)
class Asset:
    """One asset: where the markdown names it, what it is, how big, its sha256 (hex).

    ``sha256`` is empty when the distribution was read without hashing (the
    check command, which never serves anything).
    """

    path: str
    media_type: str
    size: int
    sha256: str = ""

    @property
    def essence(self) -> str:
        """The media type without parameters, lower case (``text/plain``)."""
        return self.media_type.split(";", 1)[0].strip().lower()

    @property
    def is_image(self) -> bool:
        """Shown in the page by an ``<img>`` (else offered as a download)."""
        return self.essence in IMAGE_TYPES


def path_fault(path: object) -> str | None:
    """Why ``path`` cannot be an asset path, or None if it can.

    A path is relative and ``/``-separated, as the build pipeline stores it
    relative to the workshop's root: no leading ``/``, no empty, ``.`` or
    ``..`` segment, no backslash (a Windows separator would mean two paths
    to two readers), no NUL or other control character.
    """
    if not isinstance(path, str):
        return "the path must be text"
    if not path:
        return "the path is empty"
    if len(path) > PATH_MAX:
        return f"the path is longer than {PATH_MAX} characters"
    if path.startswith("/"):
        return "the path is absolute (it must be relative to the workshop, e.g. images/arch.png)"
    if "\\" in path:
        return "the path has a backslash (separate folders with '/')"
    if "\x00" in path:
        return "the path has a NUL character"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        return "the path has a control character"
    segments = path.split("/")
    if "" in segments:
        return "the path has an empty segment ('//' or a trailing '/')"
    if ".." in segments:
        return "the path has a '..' segment"
    if "." in segments:
        return "the path has a '.' segment"
    return None


def media_type_fault(value: object) -> str | None:
    """Why ``value`` is not a usable ``Content-Type``, or None.

    It becomes a response header as written, so it must be exactly a media
    type (``type/subtype`` and parameters): no line breaks, nothing else.
    """
    if not isinstance(value, str) or not value:
        return "media_type must be a non-empty string such as image/png"
    if not _MEDIA_TYPE.match(value):
        return f"media_type {value[:80]!r} is not a media type such as image/png or text/plain; charset=utf-8"
    return None


def referenced_path(url: str) -> str | None:
    """The path a URL in markdown names, or None if it is not a relative path.

    Relative means: no scheme (``https:``, ``mailto:``, ``javascript:``), no
    host (``//cdn``), not from the root (``/api``), not only a fragment or a
    query.  The query and fragment are not part of the path, and a leading
    ``./`` is ignored (as often as it is written).  Percent escapes are left
    as written: :func:`find_asset` tries the path both ways.
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme or parts.netloc or not parts.path or parts.path.startswith("/"):
        return None
    path = parts.path
    while path.startswith("./"):
        path = path[2:]
    return path or None


def find_asset(path: str, assets: Mapping[str, Asset]) -> Asset | None:
    """The asset a referenced path names: decoded (``my%20file.png`` is ``my file.png``), else as written."""
    decoded = unquote(path)
    return assets.get(decoded) or (assets.get(path) if decoded != path else None)


__all__ = [
    "ASSETS_COUNT_MAX",
    "ASSETS_TOTAL_MAX",
    "ASSET_MAX",
    "IMAGE_TYPES",
    "Asset",
    "find_asset",
    "media_type_fault",
    "path_fault",
    "referenced_path",
]
