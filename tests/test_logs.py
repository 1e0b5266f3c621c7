"""The log observers: text lines, flat JSON lines, coalesced flushes."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

from twisted.logger import Logger, LogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from workshop_backend.logs import LineObserver


class Out(io.StringIO):
    """A StringIO that counts flushes."""

    flushes = 0

    def flush(self) -> None:
        """Count."""
        self.flushes += 1


def logger_to(observer: LineObserver) -> Logger:
    """A Logger whose events go to ``observer`` only."""
    publisher = LogPublisher(observer)
    return Logger(namespace="test.ns", observer=publisher)


class LineObserverTests(SynchronousTestCase):
    """What the daemon writes to stdout."""

    def test_text(self) -> None:
        """Time, namespace, level, the formatted message."""
        out = Out()
        log = logger_to(LineObserver(out, json_lines=False))
        log.info("GET {path} {status}", path="/x", status=200)
        line = out.getvalue()
        self.assertRegex(line, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \[test\.ns#info\] GET /x 200\n$")

    def test_json_is_flat(self) -> None:
        """One object per line with the message and the scalar fields; no log_* internals."""
        out = Out()
        log = logger_to(LineObserver(out, json_lines=True))
        log.warn("step {step} passed", step="s1", passed=True, duration=1.5, obj=object())
        record = json.loads(out.getvalue())
        self.assertEqual(record["level"], "warn")
        self.assertEqual(record["logger"], "test.ns")
        self.assertEqual(record["message"], "step s1 passed")
        self.assertEqual((record["step"], record["passed"], record["duration"]), ("s1", True, 1.5))
        self.assertNotIn("obj", record)
        self.assertFalse([k for k in record if k.startswith("log_")])
        self.assertRegex(record["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

    def test_failure_has_traceback(self) -> None:
        """A logged failure carries its traceback."""
        out = Out()
        log = logger_to(LineObserver(out, json_lines=True))
        try:
            raise ValueError("boom")
        except ValueError:
            log.failure("it broke", Failure())
        record = json.loads(out.getvalue())
        self.assertIn("it broke", record["message"])
        self.assertIn("ValueError: boom", record["message"])

    def test_level_filter(self) -> None:
        """Debug events are dropped at the default level."""
        out = Out()
        log = logger_to(LineObserver(out, json_lines=False))
        log.debug("noise")
        self.assertEqual(out.getvalue(), "")

    def test_factory_noise_dropped(self) -> None:
        """Twisted's per-connection "Starting factory" lines are not written."""
        out = Out()
        log = logger_to(LineObserver(out, json_lines=False))
        log.info("Starting factory {factory!r}", factory=object())
        log.info("kept")
        self.assertNotIn("factory", out.getvalue())
        self.assertIn("kept", out.getvalue())

    def test_old_style_lines(self) -> None:
        """``twisted.python.log`` lines show as ``twisted``; its port open/close lines are not written."""
        from twisted.python import log as legacy

        for json_lines in (False, True):
            out = Out()
            publisher = LogPublisher(LineObserver(out, json_lines=json_lines))
            old_style = legacy.LogPublisher(observerPublisher=publisher, publishPublisher=publisher)
            old_style.msg("WorkshopSite starting on 8080")
            old_style.msg("(TCP Port 8080 Closed)")
            old_style.msg("(UNIX Port /run/x.sock Closed)")  # not a number: kept, nothing else says it
            old_style.msg("Received SIGTERM, shutting down.")
            text = out.getvalue()
            self.assertNotIn("starting on 8080", text)
            self.assertNotIn("(TCP Port 8080 Closed)", text)
            self.assertIn("(UNIX Port /run/x.sock Closed)", text)
            self.assertNotIn("log_legacy", text)
            if json_lines:
                record = json.loads(text.splitlines()[-1])
                self.assertEqual((record["logger"], record["message"]), ("twisted", "Received SIGTERM, shutting down."))
            else:
                self.assertRegex(text.splitlines()[-1], r"Z \[twisted#info\] Received SIGTERM, shutting down\.$")

    def test_flush_now_at_the_end(self) -> None:
        """Once the reactor has stopped, what waits is written, and later lines go out at once."""
        out = Out()
        pending: list[Callable[[], None]] = []
        observer = LineObserver(out, json_lines=False, call_soon=pending.append)
        log = logger_to(observer)
        log.info("ttyd stopped")
        self.assertEqual(out.flushes, 0)
        observer.flush_now()
        self.assertEqual(out.flushes, 1)
        self.assertIn("ttyd stopped", out.getvalue())
        log.info("the port closed")
        self.assertEqual(out.flushes, 2)
        self.assertIn("the port closed", out.getvalue())
        self.assertEqual(len(pending), 1, "nothing more is scheduled on a stopped reactor")

    def test_flush_once_per_turn(self) -> None:
        """A burst of events is flushed once, when the reactor turns."""
        out = Out()
        pending: list[Callable[[], None]] = []
        log = logger_to(LineObserver(out, json_lines=False, call_soon=pending.append))
        for i in range(5):
            log.info("event {i}", i=i)
        self.assertEqual((out.flushes, len(pending)), (0, 1))
        pending.pop()()
        self.assertEqual(out.flushes, 1)
        log.info("again")
        self.assertEqual(len(pending), 1)
