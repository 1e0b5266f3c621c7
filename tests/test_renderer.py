"""Rendering out of the daemon: the render child, and the ProcessRenderer that drives it.

The child is tested as a function (stdin and stdout as strings) and once as
a real process; the renderer against a memory process reactor, where the
test plays the child: answers, a child that dies on a text, one that
stalls, one that cannot run at all.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from tests.fakes import as_reactor
from tests.fakes_process import MemoryProcessReactor, SpawnedProcess
from workshop_backend.content.renderchild import serve
from workshop_backend.content.renderer import CachedRenderer, ProcessRenderer
from workshop_backend.content.texts import Key, as_plain_text, texts_of
from workshop_backend.validation.spec import ValidationSpec
from workshop_backend.workshop.assets import Asset
from workshop_backend.workshop.model import Step, Workshop

DEEP = "- " * 3000 + "x"
"""A list nested 3000 deep: Python-Markdown recurses too far on it."""


def workshop(*texts: tuple[str, tuple[str, ...]]) -> Workshop:
    """Steps with these markdowns and hints."""
    steps = tuple(
        Step(f"s{i}", i, f"S{i}", markdown, "img", ValidationSpec(), hints) for i, (markdown, hints) in enumerate(texts)
    )
    return Workshop("w", "W", "1", "", "linear", steps)


def request(texts: list[Key], assets: list[Asset] = (), urls: dict[str, str] | None = None) -> str:  # type: ignore[assignment]
    return json.dumps(
        {
            "assets": [[a.path, a.media_type, a.size, a.sha256] for a in assets],
            "urls": urls,
            "texts": [list(t) for t in texts],
        }
    )


class ChildTests(SynchronousTestCase):
    """The child: a request on stdin, one line per text on stdout, in order."""

    def answers(self, text: str) -> list[dict[str, Any]]:
        out = io.StringIO()
        self.assertEqual(serve(io.StringIO(text), out), 0)
        return [json.loads(line) for line in out.getvalue().splitlines()]

    def test_steps_hints_and_assets(self) -> None:
        """Each text as the daemon would render it (hint ids prefixed), asset URLs from the request."""
        image = Asset("images/a.png", "image/png", 10, "a" * 64)
        lines = self.answers(
            request(
                [("# Title\n\n![an image](images/a.png)", -1), ("## More", 1)],
                [image],
                {"images/a.png": "/assets/xyz/images/a.png"},
            )
        )
        self.assertEqual([line["i"] for line in lines], [0, 1])
        self.assertIn('src="/assets/xyz/images/a.png"', lines[0]["html"])
        self.assertIn('id="hint-1-more"', lines[1]["html"])
        self.assertEqual([line["problem"] for line in lines], [None, None])
        self.assertEqual(
            lines[0]["html"],
            CachedRenderer({image.path: image}, lambda a: "/assets/xyz/" + a.path).render(
                ("# Title\n\n![an image](images/a.png)", -1)
            ),
        )

    def test_text_it_cannot_take(self) -> None:
        """A text the markdown stack cannot take comes back as plain text, with the problem named."""
        (line,) = self.answers(request([(DEEP, -1)]))
        self.assertEqual(line["html"], as_plain_text(DEEP))
        self.assertTrue(line["problem"].startswith("RecursionError"), line["problem"])

    def test_not_a_request(self) -> None:
        """Anything else: exit 2, nothing on stdout."""
        out = io.StringIO()
        for junk in ("", "[]", '{"texts": 3}', "{not json"):
            with self.subTest(junk=junk):
                self.assertEqual(serve(io.StringIO(junk), out), 2)
        self.assertEqual(out.getvalue(), "")

    def test_real_process(self) -> None:
        """As the daemon runs it: this Python, ``-m workshop_backend.content.renderchild``, no Twisted loaded."""
        probe = (
            "import runpy, sys; sys.argv = ['renderchild'];"
            "code = 0\n"
            "try:\n runpy.run_module('workshop_backend.content.renderchild', run_name='__main__')\n"
            "except SystemExit as e:\n code = e.code\n"
            "loaded = any(m.startswith('twisted') for m in sys.modules)\n"
            "print(json.dumps({'twisted': loaded, 'code': code}), file=sys.stderr)"
        )
        result = subprocess.run(
            [sys.executable, "-c", "import json\n" + probe],
            input=request([("*hi*", -1)]),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        (line,) = [json.loads(x) for x in result.stdout.splitlines()]
        self.assertEqual(line["html"], "<p><em>hi</em></p>")
        self.assertEqual(json.loads(result.stderr.splitlines()[-1]), {"twisted": False, "code": 0})


class ProcessRendererTests(SynchronousTestCase):
    """The daemon's side, the child played by the test."""

    def setUp(self) -> None:
        self.reactor = MemoryProcessReactor()
        self.fallback_keys: list[list[Key]] = []
        self.workshop = workshop(("*one*", ("hint a",)), ("*two*", ()), ("*three*", ()))

    def renderer(self, **kw: Any) -> ProcessRenderer:
        def fallback(keys: list[Key]) -> Deferred[None]:
            self.fallback_keys.append(keys)
            for key in keys:
                renderer._deliver(key, f"<in-process>{key[0]}</in-process>")
            return succeed(None)

        renderer = ProcessRenderer(
            as_reactor(self.reactor), self.workshop, command=["render-child"], fallback=fallback, **kw
        )
        return renderer

    def child(self, n: int = -1) -> SpawnedProcess:
        return self.reactor.spawned[n]

    def answer(self, child: SpawnedProcess, i: int, html: str, problem: str | None = None) -> None:
        line = json.dumps({"i": i, "html": html, "problem": problem}) + "\n"
        child.protocol.childDataReceived(1, line.encode())

    def test_request_and_answers(self) -> None:
        """One child gets every text (steps before their hints); answers fill the questions waiting."""
        r = self.renderer()
        step = self.workshop.steps[0]
        waiting = r.step(step)  # asked before the start: it starts
        child = self.child()
        self.assertEqual(child.args, ["render-child"])
        sent = json.loads(child.transport.value())
        self.assertEqual([tuple(t) for t in sent["texts"]], texts_of(self.workshop))
        self.assertTrue(child.state.stdin_closed)
        self.assertNoResult(waiting)
        self.answer(child, 0, "<p>one</p>")
        self.assertEqual(self.successResultOf(waiting), "<p>one</p>")
        self.answer(child, 1, "<p>hint a</p>")
        self.assertEqual(self.successResultOf(r.hint(step, 0)), "<p>hint a</p>")
        self.answer(child, 2, "<p>two</p>")
        self.answer(child, 3, "<p>three</p>")
        child.end(0)
        self.assertEqual(self.successResultOf(r.step(self.workshop.steps[2])), "<p>three</p>")
        self.assertEqual(len(self.reactor.spawned), 1)
        r.start()  # once only
        self.assertEqual(len(self.reactor.spawned), 1)

    def test_child_dies_on_a_text(self) -> None:
        """A child that dies on a text: that text as plain text, a new child for the rest."""
        r = self.renderer()
        r.start()
        first = self.child()
        self.answer(first, 0, "<p>one</p>")
        first.end(None, signal=11)
        self.assertEqual(self.successResultOf(r.hint(self.workshop.steps[0], 0)), as_plain_text("hint a"))
        second = self.child()
        self.assertIsNot(second, first)
        self.assertEqual(
            [tuple(t) for t in json.loads(second.transport.value())["texts"]], [("*two*", -1), ("*three*", -1)]
        )
        self.answer(second, 0, "<p>two</p>")
        self.answer(second, 1, "<p>three</p>")
        self.assertEqual(self.successResultOf(r.step(self.workshop.steps[1])), "<p>two</p>")
        self.assertEqual(self.fallback_keys, [])

    def test_stalled_child_killed(self) -> None:
        """No answer within text_timeout: the child is killed; its text is plain, the rest go to a new one."""
        r = self.renderer(text_timeout=5)
        r.start()
        first = self.child()
        self.answer(first, 0, "<p>one</p>")
        self.reactor.advance(4)
        self.assertEqual(first.state.signals, [])
        self.reactor.advance(1)
        self.assertEqual(first.state.signals, ["KILL"])
        first.end(None, signal=9)
        self.assertEqual(self.successResultOf(r.hint(self.workshop.steps[0], 0)), as_plain_text("hint a"))
        self.assertEqual(len(self.reactor.spawned), 2)

    def test_child_that_cannot_run(self) -> None:
        """A child that dies before any answer (no module, a broken build): everything rendered in process."""
        r = self.renderer()
        waiting = r.step(self.workshop.steps[1])
        self.child().protocol.childDataReceived(2, b"No module named workshop_backend\n")
        self.child().end(1)
        self.assertEqual(self.successResultOf(waiting), "<in-process>*two*</in-process>")
        self.assertEqual(len(self.fallback_keys), 1)
        self.assertEqual(len(self.reactor.spawned), 1)

    def test_spawn_error(self) -> None:
        """spawnProcess itself fails: rendered in process."""
        self.reactor.spawn_error = OSError(2, "No such file")
        r = self.renderer()
        self.assertEqual(self.successResultOf(r.step(self.workshop.steps[0])), "<in-process>*one*</in-process>")

    def test_bad_answer(self) -> None:
        """A line that is not an answer (or out of order) kills the child; its text is plain, a new child goes on.

        (A child whose very first line is wrong cannot speak the protocol: rendered in process, as for one
        that cannot run.)"""
        r = self.renderer()
        r.start()
        first = self.child()
        self.answer(first, 0, "<p>one</p>")
        first.protocol.childDataReceived(1, b'{"i": 5, "html": "x"}\n')
        self.assertEqual(first.state.signals, ["KILL"])
        first.end(None, signal=9)
        self.assertEqual(self.successResultOf(r.hint(self.workshop.steps[0], 0)), as_plain_text("hint a"))
        self.assertEqual(len(self.reactor.spawned), 2)
        second = self.child()
        second.protocol.childDataReceived(1, b"not json\n")
        second.end(None, signal=9)
        self.assertEqual(self.fallback_keys, [[("*two*", -1), ("*three*", -1)]])

    def test_stop_kills_the_child(self) -> None:
        """At shutdown a child still at work is killed, and nothing is rendered in its place."""
        r = self.renderer()
        r.start()
        r.stop()
        self.assertEqual(self.child().state.signals, ["KILL"])
        self.child().end(None, signal=9)
        self.assertEqual(self.fallback_keys, [])
        self.assertEqual(len(self.reactor.spawned), 1)
