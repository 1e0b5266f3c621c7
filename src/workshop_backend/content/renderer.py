"""Each step's and hint's HTML, rendered once and kept.

Two renderers answer the runtime's questions (``step(step)``, ``hint(step,
n)``, each a Deferred of HTML):

- :class:`ProcessRenderer`, the daemon's: every step and hint is rendered
  in a child process (:mod:`~workshop_backend.content.renderchild`) when
  the working copy opens, and only the HTML comes back.  The markdown stack
  (Python-Markdown, pymdown-extensions, Pygments, nh3: ~5 MB resident) never
  lives in the daemon, the rendering runs beside it on another core rather
  than on its reactor thread, and a text that makes the markdown stack hang
  is killed with its child (and shown as plain text) instead of blocking
  the daemon.
- :class:`CachedRenderer`, in process: the tests' and the fallback when no
  child can be run at all.

A text the renderer cannot take (a list nested thousands deep makes
Python-Markdown recurse too far, or a child that dies on it) is shown as
plain text under a note, and logged: the student gets the words, never a
500 (``workshop-backend check`` reports such a text before it ships).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from workshop_backend.content.texts import FROZEN_FLAG, Key, as_plain_text, render_text, texts_of
from workshop_backend.workshop.assets import Asset
from workshop_backend.workshop.model import Step, Workshop

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall

    from workshop_backend.support.reactor import IBackendReactor


class CachedRenderer:
    """Step and hint markdown to sanitized HTML, in this process, each text rendered once.

    ``assets`` and ``asset_url`` (where the HTTP layer serves an asset) turn
    relative image and link URLs into working ones; without them every
    relative URL renders as plain text.
    """

    log = Logger()

    def __init__(
        self,
        assets: Mapping[str, Asset] | None = None,
        asset_url: Callable[[Asset], str] | None = None,
    ) -> None:
        self._html: dict[Key, str] = {}
        self._assets: Mapping[str, Asset] = assets if assets is not None else MappingProxyType({})
        self._asset_url = asset_url

    def render(self, key: Key) -> str:
        """The HTML of one text (rendered now if it was not yet)."""
        html = self._html.get(key)
        if html is None:
            html, problem = render_text(key[0], key[1], self._assets, self._asset_url)
            if problem is not None:
                self.log.error("a text could not be rendered; it is shown as plain text: {problem}", problem=problem)
            self._html[key] = html
        return html

    def step(self, step: Step) -> Deferred[str]:
        """The step's HTML."""
        return succeed(self.render((step.markdown, -1)))

    def hint(self, step: Step, index: int) -> Deferred[str]:
        """Hint ``index`` of the step (its ids prefixed ``hint-N-``)."""
        return succeed(self.render((step.hints[index], index)))


def child_command() -> list[str]:
    """The render child's command line: this Python (or the frozen bundle) with the child's module."""
    if getattr(sys, "frozen", False):
        return [sys.executable, FROZEN_FLAG]
    return [sys.executable, "-m", "workshop_backend.content.renderchild"]


class ProcessRenderer:
    """Renders a workshop's texts in a child process; answers from what came back.

    :meth:`start` sends every text to a child (one JSON request on its
    stdin) and keeps each HTML as its line arrives (one JSON line per text,
    in order).  A question about a text not back yet waits for it.

    When a child dies or stalls (``text_timeout`` without a line) in the
    middle, the text it was on is shown as plain text and a new child takes
    the rest: a text that breaks the markdown stack costs that text only.
    When no child can run at all (it dies before its first line), the texts
    are rendered in this process, in a thread, by ``fallback``.
    """

    log = Logger()

    def __init__(
        self,
        reactor: IBackendReactor,
        workshop: Workshop,
        *,
        asset_url: Callable[[Asset], str] | None = None,
        command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        text_timeout: float = 20.0,
        fallback: Callable[[list[Key]], Deferred[None]] | None = None,
    ) -> None:
        self._reactor = reactor
        self._workshop = workshop
        self._assets: Mapping[str, Asset] = workshop.assets
        self._asset_url = asset_url
        self._command = list(command) if command is not None else child_command()
        self._env = dict(env) if env is not None else None
        self._text_timeout = text_timeout
        self._in_process = CachedRenderer(workshop.assets, asset_url)
        self._fallback = fallback if fallback is not None else self._render_in_threads
        self._html: dict[Key, str] = {}
        self._waiting: dict[Key, list[Deferred[str]]] = {}
        self._pending: list[Key] = []
        self._child: _RenderChild | None = None
        self._started = False
        self._stopping = False

    # -- what the runtime asks ------------------------------------------------------------

    def step(self, step: Step) -> Deferred[str]:
        """The step's HTML (waits for the child if it is not back yet)."""
        return self._answer((step.markdown, -1))

    def hint(self, step: Step, index: int) -> Deferred[str]:
        """Hint ``index`` of the step."""
        return self._answer((step.hints[index], index))

    def _answer(self, key: Key) -> Deferred[str]:
        html = self._html.get(key)
        if html is not None:
            return succeed(html)
        if not self._started:
            self.start()
            html = self._html.get(key)  # a child that cannot start: rendered here already
            if html is not None:
                return succeed(html)
        if key not in self._pending:
            # Not a text of the workshop (cannot happen through the runtime): render it here.
            return succeed(self._in_process.render(key))
        waiter: Deferred[str] = Deferred()
        self._waiting.setdefault(key, []).append(waiter)
        return waiter

    # -- the child ------------------------------------------------------------------------

    def start(self) -> None:
        """Send every text of the workshop to a child (once; later calls do nothing)."""
        if self._started:
            return
        self._started = True
        self._pending = [key for key in texts_of(self._workshop) if key not in self._html]
        self._spawn()

    def stop(self) -> None:
        """Kill a child still at work (at shutdown): nothing is rendered any more."""
        self._stopping = True
        child, self._child = self._child, None
        if child is not None:
            child.kill()

    def _spawn(self) -> None:
        if not self._pending:
            return
        request = {
            "assets": [[a.path, a.media_type, a.size, a.sha256] for a in self._assets.values()],
            "urls": {a.path: self._asset_url(a) for a in self._assets.values()} if self._asset_url else None,
            "texts": [list(key) for key in self._pending],
        }
        child = _RenderChild(self, self._reactor, self._text_timeout)
        try:
            self._reactor.spawnProcess(
                child, self._command[0], self._command, env=self._env, childFDs={0: "w", 1: "r", 2: "r"}
            )
        except OSError as e:
            self.log.warn("cannot start the render process ({error}): rendering here", error=str(e))
            self._give_up_on_children()
            return
        self._child = child
        child.send(json.dumps(request).encode("utf-8"))

    def _rendered(self, html: str, problem: str | None) -> None:
        """The current child's next answer: the first text still pending (answers come in order)."""
        if not self._pending:
            raise ValueError("an answer for no text")
        key = self._pending.pop(0)
        if problem is not None:
            self.log.error("a text could not be rendered; it is shown as plain text: {problem}", problem=problem)
        self._deliver(key, html)

    def _deliver(self, key: Key, html: str) -> None:
        self._html[key] = html
        for waiter in self._waiting.pop(key, []):
            waiter.callback(html)

    def _child_ended(self, child: _RenderChild, answered: int, why: str | None) -> None:
        if child is self._child:
            self._child = None
        if not self._pending or self._stopping:
            return
        if answered == 0 and why is not None and not child.timed_out:
            # It never answered at all: it cannot run here (no module, a broken build...).
            self.log.warn("the render process failed before any answer ({why}): rendering here", why=why)
            self._give_up_on_children()
            return
        # It died or stalled on the first text still pending: that text is shown as written.
        key = self._pending.pop(0)
        self.log.error(
            "the render process {how} on a text; it is shown as plain text",
            how="stalled" if child.timed_out else f"ended ({why or 'without an answer'})",
        )
        self._deliver(key, as_plain_text(key[0]))
        self._spawn()

    def _give_up_on_children(self) -> None:
        keys, self._pending = self._pending, []
        d = self._fallback(keys)
        d.addErrback(lambda f: self.log.failure("rendering in this process failed", f))

    def _render_in_threads(self, keys: list[Key]) -> Deferred[None]:
        from twisted.internet.threads import deferToThreadPool

        def render_all() -> list[str]:
            return [self._in_process.render(key) for key in keys]

        d: Deferred[list[str]] = deferToThreadPool(self._reactor, self._reactor.getThreadPool(), render_all)

        def deliver(htmls: list[str]) -> None:
            for key, html in zip(keys, htmls, strict=True):
                self._deliver(key, html)

        return d.addCallback(deliver)


class _RenderChild(ProcessProtocol):
    """One render child: the request on stdin, one JSON line per text on stdout, a watchdog."""

    log = Logger()

    def __init__(self, renderer: ProcessRenderer, clock: IBackendReactor, text_timeout: float) -> None:
        self._renderer = renderer
        self._clock = clock
        self._text_timeout = text_timeout
        self._buffer = b""
        self._stderr = b""
        self.answered = 0
        self.timed_out = False
        self._watchdog: IDelayedCall | None = None
        self._broken: str | None = None

    def send(self, request: bytes) -> None:
        assert self.transport is not None
        self.transport.write(request)
        self.transport.closeStdin()
        self._arm()

    def _arm(self) -> None:
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog = self._clock.callLater(self._text_timeout, self._stalled)

    def _stalled(self) -> None:
        self._watchdog = None
        self.timed_out = True
        self.kill()

    def kill(self) -> None:
        from twisted.internet.error import ProcessExitedAlready

        if self.transport is not None:
            try:
                self.transport.signalProcess("KILL")
            except ProcessExitedAlready:
                pass

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if self._broken is not None or not line.strip():
                continue
            try:
                answer: Any = json.loads(line)
                html, problem = answer["html"], answer.get("problem")
                if not isinstance(html, str) or not (problem is None or isinstance(problem, str)):
                    raise ValueError("bad types")
                if answer["i"] != self.answered:
                    raise ValueError(f"text {answer['i']} where {self.answered} was due")
                self._renderer._rendered(html, problem)
            except (ValueError, KeyError, TypeError) as e:
                self._broken = f"a bad answer ({e})"
                self.kill()
                return
            self.answered += 1
            self._arm()

    def errReceived(self, data: bytes) -> None:
        self._stderr = (self._stderr + data)[-2000:]

    def processEnded(self, reason: Failure) -> None:
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog = None
        why = self._broken
        if why is None and self._renderer._pending:
            tail = self._stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
            why = f"{reason.getErrorMessage()}{': ' + tail[0] if tail else ''}"
        self._renderer._child_ended(self, self.answered, why)
