"""The student page as a first-time student meets it (issue 11), in Chromium.

Each class is one of the problems a walk through the demo found, asserted
as the student needs it: where the next key goes after a click (the shell,
not the button just pressed), checks that leave a server running in the
foreground quiet, a page that fits the screen with a terminal whose last
row shows, commands shown whole, many terminal tabs, the phone layout, the
small things, and axe-core's verdict.

The daemon, Chromium and helpers are those of :mod:`tests.test_ui_browser`;
screenshots land beside its own in ``test-artifacts/ui/``. axe-core comes
from ``web/node_modules`` (a pinned dev dependency of the UI, installed by
``npm ci``; CI's ``web/build-check`` does that before the tests): it is
evaluated into the page by the test, never shipped with the UI.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest

try:  # Playwright's waiting assertions
    from playwright.sync_api import expect as see
except ImportError:  # skipped, with the reason
    see = None  # type: ignore[assignment]

from tests.test_ui_browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    NARROW,
    TERMINAL_OPEN,
    WAIT_MS,
    WIDE,
    BrowserTestCase,
    click_next,
    run_block,
    terminal_text,
    wait_prompt,
    wait_terminal_shows,
)

AXE = Path(__file__).resolve().parent.parent / "web" / "node_modules" / "axe-core" / "axe.min.js"

VIEWPORTS = {
    "1366x768": {"width": 1366, "height": 768},
    "1280x720": {"width": 1280, "height": 720},
    "1920x1080": {"width": 1920, "height": 1080},
    "390x844": {"width": 390, "height": 844},
}

LONG_COMMAND = (
    "printf '%s\\n' 'a long command, one a student must be able to read from its first word"
    " to its very last one, ampersand included' > long-command.txt"
)
"""An exec block added to the web step of the test distribution: longer than any pane is wide."""


def free_port() -> int:
    """A TCP port that nothing listens on now (the foreground server's)."""
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def page_distribution(directory: Path, port: int) -> Path:
    """The demo, with its web step checking ``port`` (not the demo's fixed
    8642, which another test run on this machine may hold) and ending with
    :data:`LONG_COMMAND` as a Run block."""
    from workshop_backend.workshop.demo import write_demo_distribution

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "page.sqlite"
    write_demo_distribution(path)
    with closing(sqlite3.connect(path)) as conn, conn:
        (raw,) = conn.execute("SELECT validation FROM step_metadata WHERE step_id = 'web'").fetchone()
        validation = json.loads(raw)
        for rule in validation["rules"]:
            if rule["type"] == "port":
                rule["port"] = port
            elif rule["type"] == "http":
                rule["url"] = f"http://127.0.0.1:{port}/"
        conn.execute("UPDATE step_metadata SET validation = ? WHERE step_id = 'web'", (json.dumps(validation),))
        (markdown,) = conn.execute("SELECT markdown FROM steps WHERE id = 'web'").fetchone()
        markdown += f"\n\n## A long one\n\n```bash exec\n{LONG_COMMAND}\n```\n"
        conn.execute("UPDATE steps SET markdown = ? WHERE id = 'web'", (markdown,))
    return path


def type_keys(page: Any, text: str) -> None:
    """Type where the focus is, as the student would without clicking first."""
    page.keyboard.type(text)


def wait_shell_ran(page: Any, token: str) -> None:
    """Type ``echo <marker>`` + Enter where the focus is and wait for its
    output: whatever was typed before has run by then."""
    type_keys(page, f"echo {token}-$((7+1000))\n")
    wait_terminal_shows(page, f"{token}-1007")


def count_in_terminal(page: Any, text: str) -> int:
    """How many times ``text`` shows in the active terminal's rows (read
    row after row, so a line that wrapped still counts once)."""
    return int(
        page.evaluate(
            "t => [...document.querySelectorAll('.term-panel:not([hidden]) .xterm-rows > div')]"
            ".map(r => r.textContent.replace(/\\u00a0/g, ' ')).join('').split(t).length - 1",
            text,
        )
    )


def active_is(page: Any, selector: str) -> None:
    """Wait until the focused element matches ``selector``."""
    page.wait_for_function("s => document.activeElement && document.activeElement.matches(s)", arg=selector)


def wait_title(page: Any, title: str) -> None:
    """Wait for the step titled ``title``."""
    page.wait_for_function("t => document.getElementById('step-title').textContent === t", arg=title)


# The page fits its window: measured in the page, waited for (the terminal is
# fitted in an animation frame after a resize).
FITS = """() => {
  const doc = document.documentElement;
  const stack = document.getElementById('term-stack').getBoundingClientRect();
  const rows = document.querySelector('.term-panel:not([hidden]) .xterm-rows');
  const last = rows && rows.lastElementChild && rows.lastElementChild.getBoundingClientRect();
  const strip = document.getElementById('term-tabs');
  const code = [...document.querySelectorAll('#step-content pre')];
  return doc.scrollHeight <= innerHeight && doc.scrollWidth <= innerWidth
    && !!last && last.height > 0 && last.bottom <= stack.bottom + 0.5 && last.bottom <= innerHeight
    && strip.scrollHeight <= strip.clientHeight && strip.offsetHeight === strip.clientHeight
    && code.length > 0 && code.every(p => p.scrollWidth <= p.clientWidth);
}"""

MEASURE = """() => {
  const doc = document.documentElement;
  const rows = document.querySelector('.term-panel:not([hidden]) .xterm-rows');
  const last = rows && rows.lastElementChild && rows.lastElementChild.getBoundingClientRect();
  const strip = document.getElementById('term-tabs');
  return {
    scrollHeight: doc.scrollHeight, innerHeight, scrollWidth: doc.scrollWidth, innerWidth,
    lastRowBottom: last && last.bottom,
    stackBottom: document.getElementById('term-stack').getBoundingClientRect().bottom,
    strip: [strip.scrollHeight, strip.clientHeight, strip.offsetHeight],
    code: [...document.querySelectorAll('#step-content pre')].map(p => [p.scrollWidth, p.clientWidth]),
  };
}"""


def wait_fits(page: Any, what: str) -> None:
    """Wait until the page fits its window (:data:`FITS`); fail with the measures if it never does."""
    try:
        page.wait_for_function(FITS)
    except Exception:
        raise AssertionError(f"{what}: the page does not fit: {page.evaluate(MEASURE)}") from None


class PageTestCase(BrowserTestCase):
    """A browser helper that can also open pages that are not a step (the token page)."""

    def on_page(
        self,
        body: Callable[[Any], None],
        *,
        viewport: dict[str, int] = WIDE,
        scheme: str = "light",
        path: str = "/",
        ready: str = "#step-title:not(:empty)",
        clipboard: bool = False,
    ) -> Deferred[None]:
        """Run ``body(page)`` in a thread once ``ready`` shows (like ``in_browser``)."""
        name = self.id().rsplit(".", 1)[-1]

        def run() -> None:
            from playwright.sync_api import sync_playwright

            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                try:
                    context = browser.new_context(viewport=viewport, color_scheme=scheme)  # type: ignore[arg-type]
                    if clipboard:
                        context.grant_permissions(["clipboard-read", "clipboard-write"])
                    page = context.new_page()
                    page.set_default_timeout(WAIT_MS)
                    problems: list[str] = []
                    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
                    page.on(
                        "console",
                        lambda m: problems.append(f"CSP: {m.text}") if "Content Security Policy" in m.text else None,
                    )
                    try:
                        page.goto(self.daemon.url.rstrip("/") + path)
                        page.wait_for_selector(ready)
                        body(page)
                    except BaseException:
                        page.screenshot(path=str(ARTIFACTS / f"{name}-FAILED.png"), full_page=True)
                        raise
                    self.assertEqual(problems, [], "\n".join(problems))
                finally:
                    browser.close()

        return deferToThread(run)

    def restart_with(self, *args: str) -> None:
        """Replace the daemon by one started with ``args`` (a fresh state dir)."""
        self.daemon.stop()
        old = self.daemon
        self.daemon = self.new_daemon(old.state_dir.with_name(old.state_dir.name + "-2"), args=args)
        self.daemon.start()

    def on_web_step(self) -> int:
        """Restart on the test distribution, in a container for its web step; the port it checks."""
        port = free_port()
        distribution = page_distribution(Path(self.mktemp()).resolve(), port)
        self.restart_with("--distribution", str(distribution), "--step", "web")
        return port


class FocusTests(PageTestCase):
    """Problem 1: after a click the next keys go where the student means them."""

    def test_run_then_typing_goes_to_the_shell(self) -> Deferred[None]:
        """After Run (a block, then an inline chip) the student types a
        command without clicking the terminal: it runs, and the block or
        chip ran once (Space and Enter did not press it again)."""

        def body(page: Any) -> None:
            wait_prompt(page)
            run_block(page, 0)  # echo "Hello from $(whoami), in $(pwd)"
            wait_terminal_shows(page, ", in /")
            active_is(page, ".xterm-helper-textarea")
            type_keys(page, "touch marker-after-run\n")
            wait_shell_ran(page, "after-run")
            self.assertTrue((self.daemon.workspace / "marker-after-run").is_file())
            self.assertEqual(count_in_terminal(page, ", in /"), 1)
            self.assertNotIn("marker-after-run", page.locator("#step-content").inner_text())

            page.locator("button.inline-action[data-action=exec]", has_text="pwd").first.click()
            active_is(page, ".xterm-helper-textarea")
            type_keys(page, "touch marker-after-chip\n")
            wait_shell_ran(page, "after-chip")
            self.assertTrue((self.daemon.workspace / "marker-after-chip").is_file())
            # The workspace shows twice: in the Run block's output and in pwd's, once.
            self.assertEqual(count_in_terminal(page, "/demo/workspace"), 2)
            self.shot(page, "focus-after-run")

        return self.on_page(body)

    def test_copy_then_paste_goes_to_the_shell(self) -> Deferred[None]:
        """After Copy, Ctrl+V (no click) pastes into the shell."""

        def body(page: Any) -> None:
            wait_prompt(page)
            block = page.locator(".codeblock.exec").first
            block.get_by_role("button", name="Copy to the clipboard").click()
            page.wait_for_selector(".codeblock .btn-copy.done")
            active_is(page, ".xterm-helper-textarea")
            page.keyboard.press("Control+V")
            page.keyboard.press("Enter")
            wait_shell_ran(page, "pasted")
            self.assertEqual(count_in_terminal(page, ", in /"), 1)

        return self.on_page(body, clipboard=True)

    def test_new_and_switched_tabs_take_the_keys(self) -> Deferred[None]:
        """After +, the new terminal gets the keys (Enter does not open more
        tabs); after clicking a tab, that terminal does; after closing one,
        the remaining active terminal does."""

        def body(page: Any) -> None:
            wait_prompt(page)
            page.get_by_role("button", name="Open another terminal").click()
            page.wait_for_selector('#term-2-tab[aria-selected="true"]')
            wait_prompt(page)
            active_is(page, "#term-2-panel .xterm-helper-textarea")
            type_keys(page, "echo $$ > shell-2\n")
            wait_shell_ran(page, "second")
            see(page.locator(".term-tab")).to_have_count(2)
            self.assertTrue((self.daemon.workspace / "shell-2").is_file())

            page.get_by_role("tab", name="Terminal 1").click()
            active_is(page, "#term-1-panel .xterm-helper-textarea")
            type_keys(page, "echo $$ > shell-1\n")
            wait_shell_ran(page, "first")
            pids = {(self.daemon.workspace / f"shell-{n}").read_text() for n in (1, 2)}
            self.assertEqual(len(pids), 2)

            page.get_by_role("button", name="Close Terminal 2").click()
            page.wait_for_selector("#term-2-tab", state="detached")
            active_is(page, "#term-1-panel .xterm-helper-textarea")
            see(page.locator(".term-tab")).to_have_count(1)

        return self.on_page(body)

    def test_hint_gets_the_focus(self) -> Deferred[None]:
        """A revealed hint takes the focus (a screen reader reads it; Tab
        goes on into it), and the button for the next one is in view."""

        def body(page: Any) -> None:
            steps = self.daemon.api("GET", "/api/v1/workshop")["steps"]
            click_next(page, steps[1]["title"])
            page.locator("#hint-button").click()
            page.wait_for_selector(".hint")
            active_is(page, ".hint")
            see(page.locator("#hint-button")).to_be_visible()
            page.keyboard.press("Tab")
            active_is(page, ".hint button.inline-action")

        return self.on_page(body)

    def test_step_change_focus(self) -> Deferred[None]:
        """Next pressed with the keyboard moves the focus to the new step's
        title; with the mouse too, so Next never keeps the focus for an Enter
        meant for the shell."""

        def body(page: Any) -> None:
            steps = self.daemon.api("GET", "/api/v1/workshop")["steps"]
            page.locator("#next").focus()
            page.keyboard.press("Enter")
            wait_title(page, steps[1]["title"])
            active_is(page, "#step-title")
            page.get_by_role("button", name="Previous").click()
            wait_title(page, steps[0]["title"])
            active_is(page, "#step-title")

        return self.on_page(body)

    def test_mouse_clicks_leave_no_button_focused(self) -> Deferred[None]:
        """A button clicked with the mouse gives the focus back to the
        terminal that had it (Check, the divider), so typing goes on."""

        def body(page: Any) -> None:
            steps = self.daemon.api("GET", "/api/v1/workshop")["steps"]
            click_next(page, steps[1]["title"])
            wait_prompt(page)
            page.locator(".term-panel:not([hidden]) .xterm-screen").click()
            page.get_by_role("button", name="Check", exact=True).click()
            page.wait_for_selector(".results.failed")
            active_is(page, ".xterm-helper-textarea")
            page.locator("#divider").click()
            active_is(page, ".xterm-helper-textarea")
            type_keys(page, "mkdir notes\n")
            wait_shell_ran(page, "typed-on")
            self.assertTrue((self.daemon.workspace / "notes").is_dir())

        return self.on_page(body)

    def test_keyboard_tab_order_and_visible_focus(self) -> Deferred[None]:
        """The first Tab reaches the skip link, which leads into the shell;
        keyboard focus is drawn (a 3 px ring) on the controls."""

        def body(page: Any) -> None:
            wait_prompt(page)
            page.keyboard.press("Tab")
            active_is(page, ".skip-link")
            self.assertGreaterEqual(page.locator(".skip-link").bounding_box()["x"], 0)
            page.keyboard.press("Enter")
            active_is(page, ".xterm-helper-textarea")
            type_keys(page, "touch marker-skip\n")
            wait_shell_ran(page, "skipped")
            self.assertTrue((self.daemon.workspace / "marker-skip").is_file())
            # Shift+Tab leaves the terminal for the controls of its bar.
            page.keyboard.press("Shift+Tab")
            active_is(page, "button")
            ring = page.evaluate(
                "(() => { const s = getComputedStyle(document.activeElement); "
                "return [s.outlineStyle, s.outlineWidth]; })()"
            )
            self.assertEqual(ring, ["solid", "3px"])

        return self.on_page(body)

    def test_phone_run_then_typing(self) -> Deferred[None]:
        """On a phone-sized page too: Run, then a typed command with spaces
        runs in the shell and the block ran once."""

        def body(page: Any) -> None:
            wait_prompt(page)
            run_block(page, 0)
            wait_terminal_shows(page, ", in /")
            type_keys(page, "touch marker phone\n")
            wait_shell_ran(page, "phone")
            self.assertTrue((self.daemon.workspace / "phone").is_file())
            self.assertEqual(count_in_terminal(page, ", in /"), 1)

        return self.on_page(body, viewport=NARROW)


class QuietCheckTests(PageTestCase):
    """Problem 2: checks against a server running in the foreground of the terminal."""

    timeout = 240

    def test_foreground_server_prints_no_traceback(self) -> Deferred[None]:
        """The student starts the web server in the foreground (a common
        slip) and presses Check three times: all pass, and the terminal
        shows the server's request lines, never a traceback."""
        port = self.on_web_step()

        def body(page: Any) -> None:
            wait_prompt(page)
            page.locator(".term-panel:not([hidden]) .xterm-screen").click()
            type_keys(page, "clear; mkdir -p site && echo '<h1>My first web page</h1>' > site/index.html\n")
            type_keys(page, f"python3 -m http.server {port} --bind 127.0.0.1 --directory site\n")
            wait_terminal_shows(page, f"port {port}")
            check = page.get_by_role("button", name="Check", exact=True)
            for n in range(1, 4):
                check.click()
                # Each Check's GET shows as one access line of the server.
                page.wait_for_function(
                    "n => document.querySelector('.term-panel:not([hidden]) .xterm-rows').textContent"
                    ".split('GET / HTTP/1.1').length - 1 >= n",
                    arg=n,
                )
                page.wait_for_selector(".results.passed")
            self.shot(page, "foreground-server-checked")
            page.locator(".term-panel:not([hidden]) .xterm-screen").click()
            page.keyboard.press("Control+C")
            wait_shell_ran(page, "stopped")
            text = terminal_text(page)
            for word in ("Traceback", "ConnectionResetError", "BrokenPipeError"):
                self.assertNotIn(word, text)
            self.assertEqual(text.count("GET / HTTP/1.1"), 3)

        return self.on_page(body, viewport=VIEWPORTS["1920x1080"])


class FitTests(PageTestCase):
    """Problems 3 and 4: the page fits the window, the terminal shows its last row, commands show whole."""

    timeout = 240

    def test_page_fits_each_viewport(self) -> Deferred[None]:
        """At 1366x768, 1280x720, 1920x1080 and 390x844: no page scroll
        either way, the terminal's last row fully visible, a tab strip
        without scrollbar, and no code block scrolling sideways (the web
        step has the longest commands, and a longer one added)."""
        self.on_web_step()

        def body(page: Any) -> None:
            wait_prompt(page)
            for name, size in VIEWPORTS.items():
                page.set_viewport_size(size)
                wait_fits(page, name)
                self.shot(page, f"fits-{name}")

        return self.on_page(body)

    def test_run_and_copy_send_the_original_text(self) -> Deferred[None]:
        """A command wrapped on screen (phone width: several rows, each
        continuation marked) is run and copied as the author wrote it."""
        self.on_web_step()

        def body(page: Any) -> None:
            wait_prompt(page)
            block = page.locator(".codeblock.exec").last
            see(block).to_contain_text("long-command.txt", use_inner_text=True)
            line = block.locator(".line").first
            rows = line.evaluate(
                "l => Math.round(l.getBoundingClientRect().height / parseFloat(getComputedStyle(l).lineHeight))"
            )
            self.assertGreater(rows, 1)
            mark = line.evaluate("l => getComputedStyle(l, '::before').content")
            self.assertIn("↪", mark)
            block.get_by_role("button", name="Copy to the clipboard").click()
            block.locator(".btn-copy.done").wait_for()
            self.assertEqual(page.evaluate("navigator.clipboard.readText()"), LONG_COMMAND)
            block.get_by_role("button", name="Run this in the terminal").click()
            wait_shell_ran(page, "long")
            expected = LONG_COMMAND.split("'")[3] + "\n"
            self.assertEqual((self.daemon.workspace / "long-command.txt").read_text(), expected)

        return self.on_page(body, viewport=NARROW, clipboard=True)


class TabStripTests(PageTestCase):
    """Problem 5: many terminal tabs stay usable."""

    def check_strip(self, page: Any, size: dict[str, int]) -> None:
        """Open tabs up to six: each new one is active and fully in view, the
        strip never shows a scrollbar, every tab names itself in full."""
        page.set_viewport_size(size)
        wait_prompt(page)
        new = page.get_by_role("button", name="Open another terminal")
        while page.locator(".term-tab").count() < 6:
            count = page.locator(".term-tab").count()
            new.click()
            page.wait_for_selector(f'#term-{count + 1}-tab[aria-selected="true"]')
            page.wait_for_function(
                """() => {
                  const strip = document.getElementById('term-tabs').getBoundingClientRect();
                  const tab = document.querySelector('.term-tab[data-active="true"]').getBoundingClientRect();
                  return tab.left >= strip.left - 0.5 && tab.right <= strip.right + 0.5;
                }"""
            )
        see(new).to_be_disabled()
        self.assertEqual(
            page.evaluate(
                "(() => { const s = document.getElementById('term-tabs'); return s.offsetHeight - s.clientHeight; })()"
            ),
            0,
        )
        for n in range(1, 7):
            tab = page.get_by_role("tab", name=f"Terminal {n}")
            see(tab).to_have_attribute("title", re.compile(f"Terminal {n}"))

    def test_six_tabs_at_1000x600(self) -> Deferred[None]:
        """At 1000x600 six tabs show whole (numbers when crowded), the
        active one highlighted; clicking Terminal 1 brings it back."""

        def body(page: Any) -> None:
            self.check_strip(page, {"width": 1000, "height": 600})
            page.get_by_role("tab", name="Terminal 1").click()
            page.wait_for_selector('#term-1-tab[aria-selected="true"]')
            self.shot(page, "tabs-1000")

        return self.on_page(body)

    def test_six_tabs_on_a_phone(self) -> Deferred[None]:
        """At 390 px the strip scrolls: the wheel moves it, the active tab is
        kept in view, the first tab can be brought back."""

        def body(page: Any) -> None:
            self.check_strip(page, NARROW)
            strip = page.locator("#term-tabs")
            self.assertGreater(strip.evaluate("s => s.scrollWidth - s.clientWidth"), 0)
            self.assertGreater(strip.evaluate("s => s.scrollLeft"), 0)  # the last tab is in view
            strip.hover()
            page.mouse.wheel(0, -400)
            page.wait_for_function("() => document.getElementById('term-tabs').scrollLeft === 0")
            page.get_by_role("tab", name="Terminal 1").click()
            page.wait_for_selector('#term-1-tab[aria-selected="true"]')
            self.shot(page, "tabs-phone")

        return self.on_page(body, viewport=NARROW)


class PhoneTests(PageTestCase):
    """Problem 6: the phone."""

    def test_next_opens_at_the_title_and_the_footer_is_one_row(self) -> Deferred[None]:
        """At 390x844, read to the bottom of a step and press Next: the new
        step shows from its title; the footer is one row."""

        def body(page: Any) -> None:
            steps = self.daemon.api("GET", "/api/v1/workshop")["steps"]
            page.locator("#instructions-scroll").evaluate("s => { s.scrollTop = s.scrollHeight; }")
            click_next(page, steps[1]["title"])
            page.wait_for_function("() => document.getElementById('instructions-scroll').scrollTop === 0")
            title = page.locator("#step-title").bounding_box()
            box = page.locator("#instructions-scroll").bounding_box()
            self.assertGreaterEqual(title["y"], box["y"])
            self.assertLessEqual(title["y"] + title["height"], box["y"] + box["height"])
            tops = page.evaluate(
                "[...document.querySelectorAll('.step-actions .btn:not([hidden])')]"
                ".map(b => Math.round(b.getBoundingClientRect().top))"
            )
            self.assertEqual(len(tops), 3)  # Previous, Check, Next
            self.assertEqual(len(set(tops)), 1)
            self.assertLessEqual(page.locator(".step-actions").bounding_box()["height"], 60)
            self.shot(page, "phone-next")

        return self.on_page(body, viewport=NARROW)

    def test_divider_moves_up_and_down(self) -> Deferred[None]:
        """Stacked, the divider is horizontal and the keyboard moves it: the
        instructions grow, the terminal shrinks and is fitted again."""

        def body(page: Any) -> None:
            wait_prompt(page)
            divider = page.get_by_role("separator")
            see(divider).to_have_attribute("aria-orientation", "horizontal")
            before = page.locator("#instructions").bounding_box()["height"]
            divider.focus()
            page.keyboard.press("Shift+ArrowDown")
            page.wait_for_function(
                "h => document.getElementById('instructions').getBoundingClientRect().height > h + 50", arg=before
            )
            wait_fits(page, "after moving the divider")

        return self.on_page(body, viewport=NARROW)


class SmallPointsTests(PageTestCase):
    """Problem 7: the smaller points."""

    def test_step_list_marks_and_labels(self) -> Deferred[None]:
        """The current-and-done step's mark is readable (>= 4.5:1); every
        Run block is labelled the same; numbers are not coloured apart from
        the rest of an address."""

        def body(page: Any) -> None:
            steps = self.daemon.api("GET", "/api/v1/workshop")["steps"]
            click_next(page, steps[1]["title"])
            run_block(page, 0)
            run_block(page, 1)
            wait_shell_ran(page, "done")
            page.get_by_role("button", name="Check", exact=True).click()
            page.wait_for_selector(".results.passed")
            page.get_by_role("button", name="All steps").click()
            mark = page.locator(".step-item.current.completed .step-mark")
            ratio = mark.evaluate(CONTRAST)
            self.assertGreaterEqual(ratio, 4.5)
            page.keyboard.press("Escape")
            labels = set(page.locator(".codeblock.exec .codeblock-lang").all_inner_texts())
            self.assertEqual(labels, {"bash"})

        return self.on_page(body)

    def test_short_code_and_copy_feedback(self) -> Deferred[None]:
        """`-rw-r--r--` stays on one line at 390 px; an inline copy chip says
        Copied; Copy's confirmation does not move the Run button."""
        self.restart_with("--demo", "--step", "script")

        def body(page: Any) -> None:
            perms = page.locator("#step-content code", has_text="-rw-r--r--").first
            self.assertEqual(perms.evaluate("c => c.getClientRects().length"), 1)
            bar = page.locator(".codeblock.exec").first
            run = bar.get_by_role("button", name="Run this in the terminal")
            before = (run.bounding_box(), bar.get_by_role("button", name="Copy to the clipboard").bounding_box())
            bar.get_by_role("button", name="Copy to the clipboard").click()
            page.wait_for_selector(".codeblock.exec .btn-copy.done")
            after = (run.bounding_box(), bar.get_by_role("button", name="Copy to the clipboard").bounding_box())
            self.assertEqual(before, after)
            self.copy_chip_says_copied(page)

        return self.on_page(body, viewport=NARROW, clipboard=True)

    def copy_chip_says_copied(self, page: Any) -> None:
        """Click an inline copy chip (step 3's ``wc -l``): a visible "Copied"."""
        page.get_by_role("button", name="Previous").click()
        page.wait_for_selector("button.inline-action[data-action=copy]")
        chip = page.locator("button.inline-action[data-action=copy]").first
        chip.click()
        bubble = chip.locator(".ia-bubble")
        bubble.wait_for(state="visible")
        see(bubble).to_have_text("Copied", use_inner_text=True)
        self.assertEqual(page.evaluate("navigator.clipboard.readText()"), chip.locator("code").inner_text())

    def test_numbers_keep_the_text_colour(self) -> Deferred[None]:
        """In `127.0.0.1` or `8642` no part is coloured apart from the rest."""
        self.on_web_step()

        def body(page: Any) -> None:
            colours = page.evaluate(
                "[...document.querySelectorAll('#step-content pre code')].flatMap(code => "
                "[...code.querySelectorAll('span')].filter(s => /^[0-9.]+$/.test(s.textContent))"
                ".map(s => getComputedStyle(s).color === getComputedStyle(code).color))"
            )
            self.assertTrue(colours)
            self.assertTrue(all(colours))

        return self.on_page(body)

    def test_results_cover_nothing(self) -> Deferred[None]:
        """A failed Check shows its result in the flow of the step, after
        "Your task", with the hint button in view below it."""

        def body(page: Any) -> None:
            steps = self.daemon.api("GET", "/api/v1/workshop")["steps"]
            click_next(page, steps[1]["title"])
            page.get_by_role("button", name="Check", exact=True).click()
            page.wait_for_selector(".results.failed")
            see(page.locator("#instructions-scroll #results")).to_have_count(1)
            box = page.locator("#instructions-scroll").bounding_box()
            for selector in ("#results", "#hint-button"):
                page.wait_for_function(
                    """([s, top, bottom]) => { const r = document.querySelector(s).getBoundingClientRect();
                       return r.top >= top - 0.5 && r.bottom <= bottom + 0.5; }""",
                    arg=[selector, box["y"], box["y"] + box["height"]],
                )
            task = page.locator("#step-content h2", has_text="Your task").bounding_box()
            results = page.locator("#results").bounding_box()
            self.assertLessEqual(task["y"] + task["height"], results["y"])

        return self.on_page(body)


# The contrast of an element's text against the first opaque background
# behind it (WCAG's formula).
CONTRAST = """el => {
  const rgb = c => c.match(/[\\d.]+/g).map(Number);
  const channel = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  const lum = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  let bg = null;
  for (let n = el; n && !bg; n = n.parentElement) {
    const c = rgb(getComputedStyle(n).backgroundColor);
    if (c.length < 4 || c[3] > 0.99) bg = c;
  }
  const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(bg || [255, 255, 255])].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}"""


class ScreenReaderTests(PageTestCase):
    """xterm.js's screen reader mode, for students who use one."""

    def test_toggle(self) -> Deferred[None]:
        """The terminal bar's toggle turns on xterm.js's accessibility tree
        (the rows as text a screen reader can walk), is remembered across a
        reload, and turns it off again."""

        def body(page: Any) -> None:
            wait_prompt(page)
            toggle = page.get_by_role("button", name="Screen reader mode for the terminal")
            see(toggle).to_have_attribute("aria-pressed", "false")
            toggle.click()
            page.wait_for_selector(".term-panel:not([hidden]) .xterm-accessibility-tree")
            see(toggle).to_have_attribute("aria-pressed", "true")
            page.reload()
            page.wait_for_selector(TERMINAL_OPEN)
            page.wait_for_selector(".term-panel:not([hidden]) .xterm-accessibility-tree")
            toggle.click()
            page.wait_for_selector(".xterm-accessibility-tree", state="detached")
            see(toggle).to_have_attribute("aria-pressed", "false")

        return self.on_page(body)


def axe_source() -> str:
    """axe-core's bundle from web/node_modules (npm ci installs it)."""
    if not AXE.exists():
        reason = f"axe-core is not installed at {AXE}: run `npm ci` in web/"
        if os.environ.get("CI"):
            raise AssertionError(reason)  # CI installs it (web/build-check): its absence is a fault there
        raise SkipTest(reason)
    return AXE.read_text()


def axe_problems(page: Any, source: str) -> list[str]:
    """axe-core's serious and critical violations on the page as it is, one line per element."""
    page.evaluate(source + "\n;undefined")
    violations = page.evaluate(
        "async () => (await axe.run(document, { resultTypes: ['violations'] })).violations"
        ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
        ".flatMap(v => v.nodes.map(n => `${v.id} (${v.impact}): ${n.target.join(' ')}: ${n.failureSummary}`))"
    )
    return [str(v) for v in violations]


class AxeTests(PageTestCase):
    """axe-core finds no serious or critical violation on the pages a student sees."""

    timeout = 240

    def test_step_pages(self) -> Deferred[None]:
        """A step with code, chips, a table, a failed check and a hint, light
        and dark, side by side and on a phone, with the step list open."""
        source = axe_source()

        def body(page: Any) -> None:
            steps = self.daemon.api("GET", "/api/v1/workshop")["steps"]
            click_next(page, steps[1]["title"])
            wait_prompt(page)
            page.get_by_role("button", name="Check", exact=True).click()
            page.wait_for_selector(".results.failed")
            page.locator("#hint-button").click()
            page.wait_for_selector(".hint")
            problems: list[str] = []
            for scheme in ("light", "dark"):
                page.emulate_media(color_scheme=scheme)
                for size in (WIDE, NARROW):
                    page.set_viewport_size(size)
                    wait_fits(page, f"{scheme} {size['width']}")
                    problems += [f"{scheme} {size['width']}: {p}" for p in axe_problems(page, source)]
                page.get_by_role("button", name="All steps").click()
                page.wait_for_selector("#step-panel:not([hidden])")
                problems += [f"{scheme} step list: {p}" for p in axe_problems(page, source)]
                page.keyboard.press("Escape")
            self.assertEqual(problems, [], "\n".join(problems))

        return self.on_page(body)

    def test_completion_page(self) -> Deferred[None]:
        """The page that says the workshop is done."""
        source = axe_source()
        self.restart_with("--demo", "--step", "finish")

        def body(page: Any) -> None:
            page.get_by_role("button", name="Finish", exact=True).click()
            page.wait_for_selector("#completion:not([hidden])")
            wait_prompt(page)
            problems = []
            for scheme in ("light", "dark"):
                page.emulate_media(color_scheme=scheme)
                problems += [f"{scheme}: {p}" for p in axe_problems(page, source)]
            self.shot(page, "axe-completion")
            self.assertEqual(problems, [], "\n".join(problems))

        return self.on_page(body)


class AxeTokenPageTests(PageTestCase):
    """The pages a student without a valid link sees."""

    token = "ui-page-token-0001"

    def test_server_token_page(self) -> Deferred[None]:
        """The backend's own page for the bare address without the token."""
        source = axe_source()

        def body(page: Any) -> None:
            problems = []
            for scheme in ("light", "dark"):
                page.emulate_media(color_scheme=scheme)
                problems += [f"{scheme}: {p}" for p in axe_problems(page, source)]
            self.shot(page, "axe-server-token-page")
            self.assertEqual(problems, [], "\n".join(problems))

        return self.on_page(body, ready="h1")

    def test_lost_session_page(self) -> Deferred[None]:
        """The page's own "This link needs its access token" (the backend came
        back with another token)."""
        source = axe_source()

        def body(page: Any) -> None:
            page.wait_for_selector(TERMINAL_OPEN)
            self.daemon.stop()
            self.daemon.token = "ui-page-token-0002"
            self.daemon.start()
            page.wait_for_selector("#auth-page", state="visible")
            problems = []
            for scheme in ("light", "dark"):
                page.emulate_media(color_scheme=scheme)
                problems += [f"{scheme}: {p}" for p in axe_problems(page, source)]
            self.shot(page, "axe-token-page")
            self.assertEqual(problems, [], "\n".join(problems))

        return self.on_page(body, path=f"/?token={self.token}")
