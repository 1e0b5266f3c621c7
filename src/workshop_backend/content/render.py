"""Step and hint markdown to safe HTML: the markup the web UI is built against.

Rendering is pure (no I/O, no globals, deterministic), so the caller renders a
step once and caches the result.  Python-Markdown turns the author's text into
HTML, then nh3 (ammonia) keeps only an explicit allowlist of tags, attributes,
classes and URL schemes.  The sanitizer runs last and sees everything, raw HTML
included, so no extension has to be trusted to emit safe markup.

The markup contract with the UI
===============================

Every code block (fenced or indented) renders as::

    <div class="codeblock" data-action="exec|copy" data-lang="LANG"><pre class="highlight"><code>...</code></pre></div>

- ``data-action`` is ``exec`` (a Run button: the UI types the text into the
  terminal) or ``copy`` (a Copy button).  It is always present: a block without
  a flag is ``copy``.
- ``data-lang`` is the language the author named, absent when none was named.
- Inside ``code`` the text is highlighted by Pygments as ``<span class="...">``
  elements with Pygments' short class names (``k``, ``nb``, ``s2``...; style
  them with any Pygments CSS theme scoped to ``.highlight``); never inline
  styles.
- The ``code`` element's ``textContent`` is exactly the author's block: every
  line between the fences followed by ``\\n`` (so an exec block ends with the
  newline that presses Enter; an empty block is the empty string).  Tabs are
  kept.  The UI takes the text to run or copy from there.

Inline code followed by Killercoda's ``{{exec}}`` or ``{{copy}}``::

    <code class="inline-action" data-action="exec|copy">text</code>

Its ``textContent`` is the text without a trailing newline: for ``exec`` the UI
presses Enter after typing it.

Other markup that survives sanitizing: headings with ``id`` attributes
(always prefixed, ``md-`` for steps and ``hint-N-`` for hints, so they cannot
clash with the UI's own ids; in-page links ``#slug`` are rewritten to match),
admonitions (``div.admonition.<type>`` with ``p.admonition-title``),
``details``/``summary`` (with the admonition type as a class), tables (cell
alignment as ``align``), lists, images and links.  Links keep only
``http``, ``https`` and ``mailto`` URLs (and in-page fragments); every link
gets ``rel="noopener noreferrer"``, and markdown links to ``http(s)`` URLs
also get ``target="_blank"`` so a click does not navigate away from the
terminal.

Relative image and link URLs name the distribution's assets
(:mod:`~workshop_backend.content.assetlinks`): one that names an asset points
at its served URL, one that names none becomes plain text.  Every ``<img>``
gets ``loading="lazy"`` (set by the sanitizer: one attribute, so the output stays deterministic).

How an author writes all this is in ``docs/authoring.md``.
"""

from __future__ import annotations

import functools
import re
import threading
import xml.etree.ElementTree as etree
from typing import Any

import nh3
from markdown import Markdown
from markdown.extensions import Extension
from markdown.extensions.toc import slugify_unicode
from markdown.inlinepatterns import BACKTICK_RE, BacktickInlineProcessor
from markdown.preprocessors import Preprocessor
from markdown.treeprocessors import Treeprocessor
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

from workshop_backend.content.assetlinks import AssetLinks, AssetTree

BLOCK_ACTIONS = ("exec", "copy")
"""The values of ``data-action``."""

STEP_ID_PREFIX = "md-"

# A Killercoda/Katacoda action marker: ``{{exec}}``, ``{{copy}}``, the older
# ``{{execute}}``, and modifiers such as ``{{exec interrupt}}`` (accepted; the
# modifier is ignored).
_MARKER = r"\{\{[ \t]*(?P<marker>exec|execute|copy)(?:[ \t]+[A-Za-z0-9_-]+)*[ \t]*\}\}"
_MARKER_RE = re.compile(_MARKER)
_FENCE_OPEN_RE = re.compile(r"^(?P<prefix>[ \t>]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_LANG_RE = re.compile(r"^[\w#.+-]{1,64}$")
_SLUG_ID_RE = re.compile(r"^[\w.:-]{1,200}$")

# ---------------------------------------------------------------------------
# The sanitizer's allowlist.

_TAGS = frozenset(
    {
        "a", "abbr", "b", "blockquote", "br", "caption", "code", "dd", "del", "details", "div", "dl", "dt",
        "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd",
        "li", "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strong", "sub", "summary", "sup",
        "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul", "var",
    }
)  # fmt: skip

# Elements dropped together with their content (the others not allowed are
# unwrapped: their text stays, as text).
_CLEAN_CONTENT_TAGS = frozenset(
    {
        "script", "style", "svg", "math", "iframe", "frame", "frameset", "object", "embed", "applet",
        "template", "noscript", "noembed", "textarea", "select", "option", "title", "head", "base", "link",
        "meta",
    }
)  # fmt: skip

_ATTRIBUTES: dict[str, frozenset[str]] = {
    "*": frozenset({"title"}),
    "a": frozenset({"href"}),
    "img": frozenset({"src", "alt", "width", "height"}),
    "div": frozenset({"data-action", "data-lang"}),
    "code": frozenset({"data-action"}),
    "ol": frozenset({"start"}),
    "td": frozenset({"colspan", "rowspan"}),
    "th": frozenset({"colspan", "rowspan"}),
    **{f"h{n}": frozenset({"id"}) for n in range(1, 7)},
}

_ATTRIBUTE_VALUES: dict[str, dict[str, frozenset[str]]] = {
    "a": {"target": frozenset({"_blank"})},
    "details": {"open": frozenset({"", "open"})},
    "td": {"align": frozenset({"left", "center", "right"})},
    "th": {"align": frozenset({"left", "center", "right"})},
}

# Admonition and details types an author may use; others render as a plain
# admonition (the unknown class is dropped).
ADMONITION_TYPES = frozenset(
    {
        "note", "info", "tip", "hint", "important", "success", "check", "done", "question", "help", "faq",
        "warning", "caution", "attention", "danger", "error", "failure", "fail", "missing", "bug",
        "example", "quote", "cite", "abstract", "summary", "tldr", "todo",
    }
)  # fmt: skip

_PYGMENTS_CLASSES = frozenset(c for c in STANDARD_TYPES.values() if c)

_CLASSES: dict[str, frozenset[str]] = {
    "div": frozenset({"codeblock", "admonition", "toc"}) | ADMONITION_TYPES,
    "details": ADMONITION_TYPES,
    "p": frozenset({"admonition-title"}),
    "pre": frozenset({"highlight"}),
    "code": frozenset({"inline-action"}),
    "span": _PYGMENTS_CLASSES,
}

_URL_SCHEMES = frozenset({"http", "https", "mailto"})
_NUMERIC = frozenset({"width", "height", "start", "colspan", "rowspan"})


def _filter_attribute(id_prefix: str, links: AssetLinks, tag: str, attribute: str, value: str) -> str | None:
    """Check values the allowlist cannot express by name alone.

    Ids are prefixed so that no step can shadow an element of the UI
    (``id="terminal"``) or clobber a global through named DOM access.
    Relative ``src``/``href`` in raw HTML name assets (``links``).
    """
    if attribute in ("src", "href"):
        return links.attribute(tag, attribute, value)
    if attribute == "id":
        return id_prefix + value if _SLUG_ID_RE.match(value) else None
    if attribute == "data-action":
        return value if value in BLOCK_ACTIONS else None
    if attribute == "data-lang":
        return value if _LANG_RE.match(value) else None
    if attribute in _NUMERIC:
        return value if value.isdigit() and len(value) <= 5 else None
    return value


def _filter_relative_url(id_prefix: str, links: AssetLinks, url: str) -> str | None:
    """Keep in-page fragments (prefixed like the ids) and our assets' URLs; drop other relative URLs.

    Other relative paths would point into the backend's own API (a GET
    there can record a hint as revealed) or at nothing.
    """
    if url.startswith("#") and _SLUG_ID_RE.match(url[1:]):
        return "#" + id_prefix + url[1:]
    if links.is_served(url):
        return url
    return None


def _cleaner(id_prefix: str, links: AssetLinks) -> nh3.Cleaner:
    return nh3.Cleaner(
        tags=_TAGS,
        clean_content_tags=_CLEAN_CONTENT_TAGS,
        attributes=_ATTRIBUTES,
        attribute_filter=functools.partial(_filter_attribute, id_prefix, links),
        strip_comments=True,
        link_rel="noopener noreferrer",
        tag_attribute_values=_ATTRIBUTE_VALUES,
        set_tag_attribute_values={"img": {"loading": "lazy"}},
        url_schemes=_URL_SCHEMES,
        allowed_classes=_CLASSES,
        url_relative=functools.partial(_filter_relative_url, id_prefix, links),
    )


# ---------------------------------------------------------------------------
# Code blocks.


@functools.cache
def _html_formatter() -> HtmlFormatter[str]:
    """One formatter for all blocks: building one computes a whole stylesheet."""
    return HtmlFormatter(nowrap=True)


def code_block_html(text: str, language: str | None, action: str) -> str:
    """The contract markup for one block; ``text`` is exactly what the UI uses.

    Pygments is called directly, not through pymdownx.highlight, because the
    contract's wrapper (``div.codeblock > pre.highlight > code``) is not the
    one pymdownx.highlight writes, and the lexer must neither strip nor add
    newlines (``stripnl``/``ensurenl`` off) for ``textContent`` to stay exact.
    """
    if action not in BLOCK_ACTIONS:
        raise ValueError(f"unknown code block action: {action!r}")
    if language and not _LANG_RE.match(language):
        language = None  # not a name Pygments or the UI could use; never an attribute injection
    attrs = f' data-action="{action}"'
    if language:
        attrs += f' data-lang="{language}"'
    lexer = None
    if language:
        try:
            lexer = get_lexer_by_name(language, stripnl=False, ensurenl=False)
        except ClassNotFound:
            lexer = None
    # Pygments drops a leading byte-order mark; such a block stays plain.
    if lexer is None or not text or text.startswith("\ufeff"):
        body = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    else:
        body = highlight(text, lexer, _html_formatter())
    return f'<div class="codeblock"{attrs}><pre class="highlight"><code>{body}</code></pre></div>'


def _fence_validator(
    language: str, inputs: dict[str, str], options: dict[str, Any], attrs: dict[str, str], md: Markdown
) -> bool:
    """Accept every fence; remember an ``exec``/``copy`` flag as the action.

    Other words in the info string (``title=...``, ``linenums=...``) are
    ignored rather than refused, so a block copied from another tool still
    renders as code instead of turning into a paragraph.
    """
    flags = {key for key, value in inputs.items() if key in BLOCK_ACTIONS and value == key}
    if flags:
        # Both given: exec, the stronger one (the UI may offer Copy on it too).
        options["action"] = "exec" if "exec" in flags else "copy"
    return True


def _fence_format(
    source: str, language: str, class_name: str, options: dict[str, Any], md: Markdown, **kwargs: Any
) -> str:
    """Format every fenced block (superfences' ``*`` fence) as contract markup."""
    action = options.get("action", "copy")
    if language in BLOCK_ACTIONS:
        # "```exec": the flag alone, no language.
        action = language
        language = ""
    # An empty block and a block of one empty line both arrive as "" (the
    # tab-preserving pass of superfences adds a line to an empty block): both
    # have no text, so running one does nothing.
    text = "".join(line + "\n" for line in source.split("\n")) if source else ""
    return code_block_html(text, language or None, action)


class _KillercodaFences(Preprocessor):  # type: ignore[misc]
    """Move a ``{{exec}}``/``{{copy}}`` from a closing fence to its info string.

    Killercoda writes the action after the closing fence (```` ```{{exec}} ````);
    superfences only reads the opening line, and would not even see the fence
    as closed.  This runs before superfences and rewrites ```` ```bash ```` ...
    ```` ```{{exec}} ```` into ```` ```bash exec ```` ... ```` ``` ````.
    """

    def run(self, lines: list[str]) -> list[str]:
        out = list(lines)
        opening: int | None = None
        fence = ""
        for i, line in enumerate(lines):
            if opening is None:
                m = _FENCE_OPEN_RE.match(line)
                if m:
                    opening, fence = i, m.group("fence")
                continue
            stripped = line.lstrip(" \t>")
            if not stripped.startswith(fence) or stripped[len(fence) : len(fence) + 1] == fence[0]:
                continue
            rest = stripped[len(fence) :].strip()
            if rest:
                m = _MARKER_RE.fullmatch(rest)
                if m is None:
                    continue
                action = "exec" if m.group("marker") in ("exec", "execute") else "copy"
                out[i] = line[: len(line) - len(stripped)] + fence
                head = out[opening].rstrip()
                info = _FENCE_OPEN_RE.match(head)
                assert info is not None
                out[opening] = head + (" " if info.group("info").strip() else "") + action
            opening = None
        return out


def unclosed_fence(text: str) -> int | None:
    """The line number (from 1) of a code fence that is never closed, or None.

    Such a block swallows the rest of the step into one code block (or, with
    a Killercoda marker on the wrong line, into a paragraph): it renders, but
    not as the author meant.  The same reading of fences as
    :class:`_KillercodaFences` (a closing fence is the opening's characters,
    at least as many, optionally followed by a marker).
    """
    opening: int | None = None
    fence = ""
    for number, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), start=1):
        if opening is None:
            m = _FENCE_OPEN_RE.match(line)
            if m:
                opening, fence = number, m.group("fence")
            continue
        stripped = line.lstrip(" \t>")
        run = len(stripped) - len(stripped.lstrip(fence[0]))
        rest = stripped[run:].strip()
        if run >= len(fence) and (not rest or _MARKER_RE.fullmatch(rest)):
            opening = None
    return opening


class _ActionBacktick(BacktickInlineProcessor):  # type: ignore[misc]
    """Inline code; followed by ``{{exec}}``/``{{copy}}`` it gets an action."""

    def handleMatch(self, m: re.Match[str], data: str) -> tuple[etree.Element | str | None, int | None, int | None]:
        el, start, end = super().handleMatch(m, data)
        if isinstance(el, etree.Element) and end is not None:
            marker = _MARKER_RE.match(data, end)
            if marker is not None:
                action = "exec" if marker.group("marker") in ("exec", "execute") else "copy"
                el.set("class", "inline-action")
                el.set("data-action", action)
                end = marker.end()
        return el, start, end


class _ContractTree(Treeprocessor):  # type: ignore[misc]
    """Give indented code blocks the contract markup; open web links in a tab.

    Indented blocks are built by Python-Markdown as ``pre > code``; wrapping
    them here means every code block on a page has a Copy button.  Fenced
    blocks never appear in the tree (superfences stashes them as HTML).
    """

    def run(self, root: etree.Element) -> None:
        blocks = [
            (parent, index, child)
            for parent in root.iter()
            for index, child in enumerate(parent)
            if child.tag == "pre" and len(child) == 1 and child[0].tag == "code" and not child.text
        ]
        for parent, index, child in blocks:
            wrapper = etree.Element("div", {"class": "codeblock", "data-action": "copy"})
            wrapper.tail, child.tail = child.tail, None
            child.set("class", "highlight")
            wrapper.append(child)
            parent[index] = wrapper
        for link in root.iter("a"):
            href = link.get("href", "")
            if href.lower().startswith(("http://", "https://")):
                link.set("target", "_blank")


class _ContractExtension(Extension):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.assets = AssetTree(None, AssetLinks())

    def extendMarkdown(self, md: Markdown) -> None:
        # Above superfences' raw-tab preprocessor (31.05) and whitespace
        # normalization (30), which both need to see a fence closed.
        md.preprocessors.register(_KillercodaFences(md), "killercoda_fences", 40)
        md.inlinePatterns.register(_ActionBacktick(BACKTICK_RE), "backtick", 190)
        # After inline processing (20): links exist as elements by then.
        md.treeprocessors.register(_ContractTree(md), "workshop_contract", 1)
        self.assets.md = md
        md.treeprocessors.register(self.assets, "workshop_assets", 2)


class _Renderers(threading.local):
    """One Markdown instance per thread, reset between texts.

    Building one costs about as much as rendering a typical step (its
    extensions are set up each time), and the check command renders hundreds
    of texts; Python-Markdown instances carry per-document state, so each
    thread has its own and :meth:`Markdown.reset` clears it.
    """

    md: tuple[Markdown, _ContractExtension] | None = None


_RENDERERS = _Renderers()


def _markdown(links: AssetLinks) -> Markdown:
    """This thread's Markdown, reset, its asset links set for the next text."""
    if _RENDERERS.md is None:
        contract = _ContractExtension()
        _RENDERERS.md = (_new_markdown(contract), contract)
    md, contract = _RENDERERS.md
    md.reset()
    contract.assets.links = links
    return md


def _new_markdown(contract: _ContractExtension) -> Markdown:
    return Markdown(
        extensions=[
            "tables",
            "admonition",
            "sane_lists",
            "attr_list",
            "toc",
            "pymdownx.superfences",
            "pymdownx.details",
            contract,
        ],
        extension_configs={
            "tables": {"use_align_attribute": True},
            "toc": {"slugify": slugify_unicode, "toc_depth": "1-6"},
            "pymdownx.superfences": {
                "preserve_tabs": True,
                "relaxed_headers": True,
                "custom_fences": [
                    {"name": "*", "class": "", "format": _fence_format, "validator": _fence_validator},
                ],
            },
        },
        output_format="html",
    )


def render_markdown(text: str, *, id_prefix: str = STEP_ID_PREFIX, links: AssetLinks | None = None) -> str:
    """Render a step's markdown to sanitized HTML (see the module docstring).

    ``links`` resolves relative URLs to the distribution's assets (and
    records them); without it no asset exists, so every relative image or
    link becomes plain text.

    Each thread renders with its own Markdown instance, reset before each
    text (Python-Markdown instances carry per-document state and are not
    thread-safe); the daemon renders each step once and caches it.
    """
    links = links if links is not None else AssetLinks()
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    try:
        html = _markdown(links).convert(text)
    except BaseException:
        # Its state is unknown after a failure (a RecursionError half-way): the next text gets a new one.
        _RENDERERS.md = None
        raise
    return _cleaner(id_prefix, links).clean(html)


def render_hint(text: str, index: int = 0, *, links: AssetLinks | None = None) -> str:
    """Render a hint: like a step, with ids of its own (shown beside the step)."""
    return render_markdown(text, id_prefix=f"hint-{index}-", links=links)
