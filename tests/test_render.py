# mypy: allow-untyped-calls
"""Tests for :mod:`workshop_backend.content.render`: the UI's markup contract and the sanitizer.

The web UI is built against the exact markup of code blocks and inline
actions, and it takes the text to run from ``textContent``; these tests parse
the output the way a browser would (entities decoded) and compare.  The XSS
tests audit the parsed output structurally (every tag, attribute and URL
against the allowlist) rather than by looking for substrings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlsplit

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from workshop_backend.content.render import code_block_html, render_hint, render_markdown


@dataclass
class Node:
    """An element as a browser would see it: tag, attributes, children, text."""

    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        """The DOM ``textContent``."""
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self) -> list[Node]:
        """This element and all below it, in document order."""
        out = [self]
        for c in self.children:
            if isinstance(c, Node):
                out.extend(c.iter())
        return out


_VOID = {"br", "hr", "img", "input", "meta", "link", "col", "wbr", "source", "area", "base", "embed"}


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(html: str) -> Node:
    """Parse sanitized output into a tree (it is well formed: nh3 serialized it)."""
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def blocks(html: str) -> list[Node]:
    """The ``div.codeblock`` elements, in order."""
    return [n for n in parse(html).iter() if n.tag == "div" and n.attrs.get("class") == "codeblock"]


def block_text(block: Node) -> str:
    """What the UI runs or copies: the ``code`` element's textContent."""
    (pre,) = [c for c in block.children if isinstance(c, Node)]
    (code,) = [c for c in pre.children if isinstance(c, Node)]
    assert pre.tag == "pre" and pre.attrs == {"class": "highlight"}, pre
    assert code.tag == "code" and code.attrs == {}, code
    return code.text()


SAFE_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "dd", "del", "details", "div", "dl", "dt",
    "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd",
    "li", "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strong", "sub", "summary", "sup",
    "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul", "var",
}  # fmt: skip
SAFE_ATTRIBUTES = {
    "title", "href", "src", "alt", "width", "height", "data-action", "data-lang", "start", "colspan",
    "rowspan", "id", "target", "rel", "open", "align", "class", "loading",
}  # fmt: skip


def audit(testcase: SynchronousTestCase, html: str) -> None:
    """Fail unless every tag, attribute and URL in ``html`` is on the allowlist."""
    for node in parse(html).iter()[1:]:
        testcase.assertIn(node.tag, SAFE_TAGS, html)
        for name, value in node.attrs.items():
            testcase.assertIn(name, SAFE_ATTRIBUTES, html)
            if name in ("href", "src"):
                scheme = urlsplit(value.strip()).scheme.lower()
                if value.startswith("#"):
                    testcase.assertTrue(value.startswith(("#md-", "#hint-")), html)
                else:
                    testcase.assertIn(scheme, ("http", "https", "mailto"), html)
            if name == "id":
                testcase.assertTrue(value.startswith(("md-", "hint-")), html)
            if name == "target":
                testcase.assertEqual(value, "_blank")
        if node.tag == "a":
            testcase.assertEqual(node.attrs.get("rel"), "noopener noreferrer", html)


class CodeBlockContractTests(SynchronousTestCase):
    """Fenced blocks render as the markup the UI relies on."""

    def test_exec_flag(self) -> None:
        """```` ```bash exec ```` is an exec block with the language and highlighted spans."""
        html = render_markdown('```bash exec\necho "hi" > out.txt\n```\n')
        self.assertTrue(
            html.startswith('<div class="codeblock" data-action="exec" data-lang="bash"><pre class="highlight"><code>'),
            html,
        )
        self.assertIn('<span class="nb">echo</span>', html)
        self.assertNotIn("style=", html)
        (block,) = blocks(html)
        self.assertEqual(block_text(block), 'echo "hi" > out.txt\n')

    def test_copy_flag(self) -> None:
        """```` ```python copy ```` is a copy block."""
        (block,) = blocks(render_markdown("```python copy\nprint(1)\n```\n"))
        self.assertEqual(block.attrs, {"class": "codeblock", "data-action": "copy", "data-lang": "python"})

    def test_plain_block_is_copy_without_language(self) -> None:
        """A block without flags gets Copy; without a language, no data-lang."""
        html = render_markdown("```\nls -l\n```\n")
        self.assertEqual(
            html, '<div class="codeblock" data-action="copy"><pre class="highlight"><code>ls -l\n</code></pre></div>'
        )

    def test_language_without_flag(self) -> None:
        """A language alone: Copy, with data-lang."""
        (block,) = blocks(render_markdown("```yaml\na: 1\n```\n"))
        self.assertEqual(block.attrs, {"class": "codeblock", "data-action": "copy", "data-lang": "yaml"})

    def test_flag_without_language(self) -> None:
        """```` ```exec ```` is an exec block with no language."""
        (block,) = blocks(render_markdown("```exec\nls\n```\n"))
        self.assertEqual(block.attrs, {"class": "codeblock", "data-action": "exec"})
        self.assertEqual(block_text(block), "ls\n")

    def test_both_flags_exec_wins(self) -> None:
        """``exec`` and ``copy`` together: one data-action, exec."""
        (block,) = blocks(render_markdown("```sh copy exec\nls\n```\n"))
        self.assertEqual(block.attrs["data-action"], "exec")

    def test_unknown_language(self) -> None:
        """A language Pygments does not know still renders, unhighlighted, escaped."""
        (block,) = blocks(render_markdown("```nosuchlang exec\na < b & c\n```\n"))
        self.assertEqual(block.attrs["data-lang"], "nosuchlang")
        self.assertEqual(block_text(block), "a < b & c\n")

    def test_other_info_words_ignored(self) -> None:
        """Words from other tools (``title=...``) do not turn the block into a paragraph."""
        (block,) = blocks(render_markdown('```bash title="x.sh" linenums="1" exec\nls\n```\n'))
        self.assertEqual(block.attrs["data-action"], "exec")
        self.assertEqual(block_text(block), "ls\n")

    def test_tilde_and_long_fences(self) -> None:
        """``~~~`` fences and a longer fence holding a ``` line both work."""
        (a, b) = blocks(render_markdown("~~~sh exec\nls\n~~~\n\n````md\n```\nx\n```\n````\n"))
        self.assertEqual((a.attrs["data-action"], block_text(a)), ("exec", "ls\n"))
        self.assertEqual(block_text(b), "```\nx\n```\n")

    def test_indented_block(self) -> None:
        """An indented code block gets the same markup (Copy, no language)."""
        (block,) = blocks(render_markdown("Text.\n\n    ls -l\n    pwd\n\nMore.\n"))
        self.assertEqual(block.attrs, {"class": "codeblock", "data-action": "copy"})
        self.assertEqual(block_text(block), "ls -l\npwd\n")

    def test_block_in_list_and_admonition(self) -> None:
        """Fences nested in list items and admonitions keep their markup and text."""
        html = render_markdown(
            "1. Run:\n\n    ```bash exec\n    ls\n    ```\n\n!!! tip\n    ```exec\n    pwd\n    ```\n"
        )
        self.assertEqual(
            [(b.attrs["data-action"], block_text(b)) for b in blocks(html)], [("exec", "ls\n"), ("exec", "pwd\n")]
        )

    def test_empty_block(self) -> None:
        """An empty block, or one of a single empty line, has empty text (nothing to run)."""
        for source in ("```bash exec\n```\n", "```bash exec\n\n```\n"):
            (block,) = blocks(render_markdown(source))
            self.assertEqual(block_text(block), "")

    def test_crlf(self) -> None:
        """Windows line endings do not leak ``\\r`` into the text to run."""
        (block,) = blocks(render_markdown("```bash exec\r\nls\r\npwd\r\n```\r\n"))
        self.assertEqual(block_text(block), "ls\npwd\n")


class TextContentTests(SynchronousTestCase):
    """The text the UI runs or copies is exactly the author's block."""

    def test_special_characters(self) -> None:
        """HTML specials, entities, quotes, tabs, blank and space-only lines survive exactly."""
        body = "\n  cat <<-'EOF' > a&b.txt\n\t<tab>&amp; \"quoted\" 'single' $HOME \\n\n\nEOF\n   \n"
        for info in ("bash exec", "", "text copy", "python", "html"):
            with self.subTest(info=info):
                (block,) = blocks(render_markdown(f"```{info}\n{body}```\n"))
                self.assertEqual(block_text(block), body)

    def test_unicode(self) -> None:
        """Non-ASCII text is kept as is."""
        (block,) = blocks(render_markdown("```bash exec\necho 'héllo wörld ✓ 日本'\n```\n"))
        self.assertEqual(block_text(block), "echo 'héllo wörld ✓ 日本'\n")

    def test_byte_order_mark(self) -> None:
        """A leading U+FEFF (which Pygments would drop) is kept."""
        (block,) = blocks(render_markdown("```bash exec\n\ufeffls\n```\n"))
        self.assertEqual(block_text(block), "\ufeffls\n")

    @settings(max_examples=150, deadline=None)
    @given(
        st.lists(
            st.lists(
                st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"), exclude_characters="`~\u2028\u2029\x85")
                | st.sampled_from(["\t", "<", ">", "&", '"', "'", "&amp;", "<script>", "  ", "{{exec}}"]),
                max_size=20,
            ).map("".join),
            min_size=1,
            max_size=6,
        ),
        st.sampled_from(["bash exec", "sh copy", "", "python", "console", "exec", "html copy"]),
    )
    def test_property(self, lines: list[str], info: str) -> None:
        """For any block body, textContent is each line plus a newline."""
        body = "".join(line + "\n" for line in lines)
        assume(body != "\n")  # one empty line is indistinguishable from an empty block: ""
        (block,) = blocks(render_markdown(f"```{info}\n{body}```\n"))
        self.assertEqual(block_text(block), body)

    def test_code_block_html_direct(self) -> None:
        """The block builder itself keeps text exactly and escapes it."""
        html = code_block_html("a <b>\n", "bash", "exec")
        (block,) = blocks(html)
        self.assertEqual(block_text(block), "a <b>\n")

    def test_code_block_html_checks_its_arguments(self) -> None:
        """A language that is not a plain name is left out; an unknown action is refused."""
        self.assertEqual(
            code_block_html("x\n", 'bash" onclick="x', "copy"),
            '<div class="codeblock" data-action="copy"><pre class="highlight"><code>x\n</code></pre></div>',
        )
        self.assertRaises(ValueError, code_block_html, "x\n", "bash", "run")


class KillercodaTests(SynchronousTestCase):
    """Killercoda's ``{{exec}}``/``{{copy}}`` markers mean the same as the flags."""

    def test_closing_fence_exec(self) -> None:
        """```` ```{{exec}} ```` after a block makes it an exec block; the text is unchanged."""
        html = render_markdown("```\nls -la\n```{{exec}}\n\nAfter.\n")
        (block,) = blocks(html)
        self.assertEqual(block.attrs, {"class": "codeblock", "data-action": "exec"})
        self.assertEqual(block_text(block), "ls -la\n")
        self.assertIn("<p>After.</p>", html)
        self.assertNotIn("{{", html)

    def test_closing_fence_with_language(self) -> None:
        """A language on the opening fence is kept."""
        (block,) = blocks(render_markdown("```bash\nls\n```{{copy}}\n"))
        self.assertEqual(block.attrs, {"class": "codeblock", "data-action": "copy", "data-lang": "bash"})

    def test_marker_variants(self) -> None:
        """``{{execute}}`` (Katacoda), spaces, and a modifier such as ``interrupt`` are accepted."""
        for marker in ("{{execute}}", "{{ exec }}", "{{exec interrupt}}", " {{exec}}"):
            with self.subTest(marker=marker):
                (block,) = blocks(render_markdown(f"```\nls\n```{marker}\n"))
                self.assertEqual(block.attrs["data-action"], "exec")
                self.assertEqual(block_text(block), "ls\n")

    def test_two_blocks(self) -> None:
        """Each marker applies to its own block only."""
        html = render_markdown("```\na\n```{{exec}}\n\n```\nb\n```\n\n```\nc\n```{{copy}}\n")
        self.assertEqual(
            [(b.attrs["data-action"], block_text(b)) for b in blocks(html)],
            [("exec", "a\n"), ("copy", "b\n"), ("copy", "c\n")],
        )

    def test_nested_markers(self) -> None:
        """Markers work on fences indented in a list item and inside a block quote."""
        listed = render_markdown("1. Do:\n\n    ```\n    ls\n    ```{{exec}}\n\n2. Next\n")
        quoted = render_markdown("> ```\n> pwd\n> ```{{copy}}\n")
        self.assertEqual([(b.attrs["data-action"], block_text(b)) for b in blocks(listed)], [("exec", "ls\n")])
        self.assertIn("<p>Next</p>", listed)
        self.assertEqual([(b.attrs["data-action"], block_text(b)) for b in blocks(quoted)], [("copy", "pwd\n")])

    def test_marker_inside_block_is_content(self) -> None:
        """A marker line of a longer fence stays part of the content."""
        (block,) = blocks(render_markdown("````\n```{{exec}}\n````\n"))
        self.assertEqual(block.attrs["data-action"], "copy")
        self.assertEqual(block_text(block), "```{{exec}}\n")

    def test_inline_exec_and_copy(self) -> None:
        """Inline code followed by a marker becomes ``code.inline-action``; plain inline code does not."""
        html = render_markdown("Run `ls -l`{{exec}}, copy `k=v`{{copy}}, read `man`.")
        self.assertEqual(
            html,
            '<p>Run <code class="inline-action" data-action="exec">ls -l</code>, copy '
            '<code class="inline-action" data-action="copy">k=v</code>, read <code>man</code>.</p>',
        )

    def test_inline_escaping(self) -> None:
        """Inline action text with HTML specials reads back exactly."""
        root = parse(render_markdown("`echo '<a>' && echo &amp;`{{exec}}"))
        (code,) = [n for n in root.iter() if n.tag == "code"]
        self.assertEqual(code.attrs, {"class": "inline-action", "data-action": "exec"})
        self.assertEqual(code.text(), "echo '<a>' && echo &amp;")

    def test_inline_double_backticks(self) -> None:
        """Double-backtick code (holding a backtick) can carry a marker too."""
        root = parse(render_markdown("``echo `date` ``{{exec}}"))
        (code,) = [n for n in root.iter() if n.tag == "code"]
        self.assertEqual((code.attrs.get("data-action"), code.text()), ("exec", "echo `date`"))


class MarkupTests(SynchronousTestCase):
    """The rest of what authors use survives sanitizing in the documented shape."""

    def test_heading_ids_prefixed(self) -> None:
        """Headings get ``md-`` ids; in-page links are rewritten to match."""
        html = render_markdown("# Start here\n\n## Start here\n\nSee [below](#start-here_1).")
        self.assertIn('<h1 id="md-start-here">Start here</h1>', html)
        self.assertIn('<h2 id="md-start-here_1">Start here</h2>', html)
        self.assertIn('href="#md-start-here_1"', html)

    def test_ui_ids_cannot_be_shadowed(self) -> None:
        """An author's raw ``id="terminal"`` cannot collide with the UI's ids."""
        html = render_markdown('<h2 id="terminal">x</h2>\n\n<div id="app">y</div>')
        self.assertIn('id="md-terminal"', html)
        self.assertNotIn('id="app"', html)

    def test_hint_ids(self) -> None:
        """Hints get their own prefix so they cannot clash with the step's ids."""
        self.assertIn('<h3 id="hint-2-look-here">', render_hint("### Look here", 2))
        self.assertIn("<strong>bold</strong>", render_hint("**bold**"))

    def test_admonition(self) -> None:
        """``!!! warning "Title"`` renders the admonition markup."""
        html = render_markdown('!!! warning "Mind the gap"\n    Careful *now*.\n')
        self.assertEqual(
            html,
            '<div class="admonition warning">\n<p class="admonition-title">Mind the gap</p>\n'
            "<p>Careful <em>now</em>.</p>\n</div>",
        )

    def test_unknown_admonition_type(self) -> None:
        """An unknown type still renders as an admonition, without the unknown class."""
        self.assertIn('<div class="admonition">', render_markdown("!!! sparkly\n    Hi.\n"))

    def test_details(self) -> None:
        """``???+ tip`` renders an open ``details`` with a summary."""
        html = render_markdown('???+ tip "Show me"\n    Hidden text.\n')
        self.assertIn('<details class="tip" open="">', html)
        self.assertIn("<summary>Show me</summary>", html)

    def test_table_alignment(self) -> None:
        """Tables render; alignment uses ``align``, never a style attribute."""
        html = render_markdown("| a | b | c |\n|:--|:-:|--:|\n| 1 | 2 | 3 |\n")
        self.assertIn('<th align="left">a</th>', html)
        self.assertIn('<td align="center">2</td>', html)
        self.assertIn('<td align="right">3</td>', html)
        self.assertNotIn("style", html)

    def test_sane_lists(self) -> None:
        """An ordered list keeps its start number."""
        self.assertIn('<ol start="3">', render_markdown("3. three\n4. four\n"))

    def test_links(self) -> None:
        """Web links open in a new tab; all links get rel; mailto is allowed."""
        html = render_markdown("[web](https://example.com/x) [mail](mailto:a@example.com)")
        self.assertIn('<a href="https://example.com/x" target="_blank" rel="noopener noreferrer">web</a>', html)
        self.assertIn('<a href="mailto:a@example.com" rel="noopener noreferrer">mail</a>', html)

    def test_relative_urls_dropped(self) -> None:
        """Relative URLs naming no asset (or the backend's API) become plain text: no href, no src, no img."""
        html = render_markdown("[api](/api/v1/state) ![i](img.png) [up](../x)")
        self.assertNotIn("href", html)
        self.assertNotIn("src", html)
        self.assertNotIn("<img", html)
        self.assertIn("<span>i</span>", html)

    def test_images(self) -> None:
        """An https image keeps src and alt, and loads lazily."""
        self.assertIn(
            '<img alt="cat" src="https://example.com/c.png" loading="lazy">',
            render_markdown("![cat](https://example.com/c.png)"),
        )

    def test_safe_raw_html_kept(self) -> None:
        """Harmless raw HTML (kbd, br) stays; comments go."""
        html = render_markdown("Press <kbd>Ctrl</kbd>+<kbd>C</kbd><br>now <!-- secret -->")
        self.assertIn("<kbd>Ctrl</kbd>+<kbd>C</kbd><br>now", html)
        self.assertNotIn("secret", html)

    def test_deterministic(self) -> None:
        """The same input renders to the same bytes (the caller caches per step)."""
        text = "# T\n\n```bash exec\nls\n```\n\n!!! note\n    x\n\n| a |\n|---|\n| 1 |\n"
        self.assertEqual(render_markdown(text), render_markdown(text))

    def test_empty(self) -> None:
        """Empty markdown renders to the empty string."""
        self.assertEqual(render_markdown(""), "")


XSS_PAYLOADS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<scr<script>ipt>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    "<img src=x oNeRrOr=alert(1)>",
    '<body onload="alert(1)">',
    '<div onclick="alert(1)" onmouseover=alert(1)>x</div>',
    '<a href="javascript:alert(1)">x</a>',
    '<a href="JaVaScRiPt:alert(1)">x</a>',
    '<a href=" javascript:alert(1)">x</a>',
    '<a href="jav&#x09;ascript:alert(1)">x</a>',
    '<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)">x</a>',
    '<a href="&#x6A;avascript&colon;alert(1)">x</a>',
    '<a href="java\nscript:alert(1)">x</a>',
    '<a href="vbscript:msgbox(1)">x</a>',
    '<a href="VBScript:msgbox(1)">x</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    '<img src="data:image/svg+xml,<svg onload=alert(1)>">',
    "<svg onload=alert(1)><circle r=1 /></svg>",
    "<svg><script>alert(1)</script></svg>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<iframe src="https://evil.example"></iframe>',
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    '<object data="javascript:alert(1)"></object>',
    '<embed src="javascript:alert(1)">',
    "<style>body{display:none}</style>",
    '<p style="background:url(javascript:alert(1))">x</p>',
    '<form action="javascript:alert(1)"><button>go</button></form>',
    '<input autofocus onfocus="alert(1)">',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<base href="javascript:alert(1)//">',
    '<link rel="stylesheet" href="https://evil.example/x.css">',
    "<details open ontoggle=alert(1)>x</details>",
    '<a href="#" id="x" name="token" onclick="alert(1)">x</a>',
    "<<script>alert(1);//<</script>",
    '<img """><script>alert(1)</script>">',
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    "<template><script>alert(1)</script></template>",
    "<textarea><script>alert(1)</script></textarea>",
    '<div class="codeblock" data-action="rm -rf" data-lang="x onmouseover=alert(1)">x</div>',
    "[x](javascript:alert(1))",
    "[x](JAVASCRIPT:alert(1))",
    "[x](&#106;avascript:alert(1))",
    "[x](data:text/html;base64,PHNjcmlwdD4=)",
    "[x](vbscript:msgbox(1))",
    "![x](javascript:alert(1))",
    '![x](https://example.com/a.png"onerror="alert(1))',
    '[x](https://example.com "title\\" onclick=\\"alert(1)")',
    "[x][ref]\n\n[ref]: javascript:alert(1)",
    "<javascript:alert(1)>",
    "`x`{{exec}}<script>alert(1)</script>",
    "```bash exec\n</code></pre><script>alert(1)</script>\n```\n",
    '```" onmouseover="alert(1)\nx\n```\n',
    "```bash {: onclick=alert(1) }\nx\n```\n",
    "# Heading {: onclick=alert(1) style=color:red }\n",
    "Paragraph\n{: onclick=alert(1) }\n",
    "[x](https://example.com){: onclick=alert(1) target=_self }",
    '!!! note "<img src=x onerror=alert(1)>"\n    x\n',
    '??? note "<script>alert(1)</script>"\n    x\n',
    "| <script>alert(1)</script> |\n|---|\n| <img src=x onerror=alert(1)> |\n",
]


class SanitizerTests(SynchronousTestCase):
    """Classic XSS payloads, in raw HTML and markdown syntax, come out harmless."""

    def test_payloads(self) -> None:
        """Every payload's output passes the structural audit."""
        for payload in XSS_PAYLOADS:
            with self.subTest(payload=payload):
                html = render_markdown(payload)
                audit(self, html)
                for tag in ("<script", "<svg", "<iframe", "<style", "<object", "<embed", "<form", "<input"):
                    # Escaped as text (&lt;script) is fine; as a tag it is not.
                    self.assertNotIn(tag, html.lower())

    def test_script_content_removed(self) -> None:
        """Script and style bodies are dropped, not left behind as text."""
        html = render_markdown("a <script>alert('x')</script> b <style>p{}</style> c")
        self.assertNotIn("alert", html)
        self.assertNotIn("p{}", html)

    def test_raw_html_codeblock_cannot_smuggle_attributes(self) -> None:
        """Raw HTML mimicking a code block keeps only valid action/lang values."""
        html = render_markdown('<div class="codeblock evil" data-action="rm" data-lang="a b">x</div>')
        self.assertEqual(html, '<div class="codeblock">x</div>')

    def test_hint_sanitized(self) -> None:
        """Hints go through the same sanitizer."""
        audit(self, render_hint("<img src=x onerror=alert(1)> [x](javascript:alert(1))", 1))

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(
            st.sampled_from(
                [
                    "<",
                    ">",
                    "<script>",
                    "</script>",
                    "<img src=x onerror=alert(1)>",
                    "<svg>",
                    "javascript:",
                    "[a](",
                    ")",
                    "](javascript:alert(1))",
                    '"',
                    "'",
                    "`",
                    "```",
                    "```bash exec\n",
                    "\n",
                    "{{exec}}",
                    "{: onclick=x }",
                    "!!! note\n    ",
                    "<a href=",
                    "&#x6A;",
                    "<!--",
                    "-->",
                    "# ",
                    "| a |\n|---|\n",
                    "<style>",
                    "<div onclick=1>",
                    "data:text/html,x",
                    "    ",
                    "<details ontoggle=x>",
                    "text",
                ]
            ),
            max_size=25,
        )
    )
    def test_fuzz(self, parts: list[str]) -> None:
        """Random mixtures of dangerous fragments always pass the audit."""
        audit(self, render_markdown("".join(parts)))
