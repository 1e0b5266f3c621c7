"""Log observers: readable lines on a terminal, flat JSON lines for collectors.

Twisted's own file observers format the time zone and flush the file for
every event; with one event per request that was a fifth of the daemon's CPU
under load.  These format the timestamp once per second and flush once per
reactor turn (a burst of requests costs one write), and the JSON form is one
flat object per line, what log collectors index best::

    {"time": "2026-11-25T21:00:00.123Z", "level": "info",
     "logger": "workshop_backend.access", "message": "GET /api/v1/status 200 1.2 ms",
     "method": "GET", "path": "/api/v1/status", "status": 200, ...}

Fields whose values are not JSON scalars are left out; the message always
says what happened.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from twisted.logger import ILogObserver, LogEvent, LogLevel, formatEvent
from twisted.python.failure import Failure
from zope.interface import implementer

SCALARS = (str, int, float, bool, type(None))
#: Twisted logs these at info for every terminal and every http/port check.
NOISE = frozenset({"Starting factory {factory!r}", "Stopping factory {factory!r}"})
#: Twisted's old-style lines when a port opens and closes ("WorkshopSite
#: starting on 8080", "(TCP Port 8080 Closed)"): the daemon says both itself,
#: with the URL ("listening on ...", "stopped listening on ...").
LEGACY_NOISE = re.compile(r"\S+ starting on \d+|\(\w+ Port \d+ Closed\)")
#: What old-style (``twisted.python.log``) events are shown as: Twisted's
#: own name for them, ``log_legacy``, means nothing to an operator.
LEGACY_NAMESPACE = "twisted"


class _Clock:
    """Formats wall-clock seconds, caching the formatted second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def stamp(self, t: float, *, millis: bool) -> str:
        second = int(t)
        if second != self._second:
            self._second = second
            self._text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        if millis:
            return f"{self._text}.{int((t - second) * 1000):03d}Z"
        return self._text + "Z"


@implementer(ILogObserver)
class LineObserver:
    """Writes one line per event, flushing at most once per reactor turn."""

    def __init__(
        self,
        out: TextIO,
        *,
        json_lines: bool,
        call_soon: Callable[[Callable[[], None]], Any] | None = None,
        level: LogLevel = LogLevel.info,
    ) -> None:
        self.out = out
        self.level = level
        self.json_lines = json_lines
        self.call_soon = call_soon
        self._clock = _Clock()
        self._flush_pending = False
        self._pending: list[str] = []

    def __call__(self, event: LogEvent) -> None:
        """Format and write one event (below the level: nothing)."""
        if event.get("log_level", LogLevel.info) < self.level or event.get("log_format") in NOISE:
            return
        if event.get("log_namespace") == "log_legacy":
            if LEGACY_NOISE.fullmatch(str(event.get("log_text", ""))):
                return
            event = {**event, "log_namespace": LEGACY_NAMESPACE}
        line = self.json_line(event) if self.json_lines else self.text_line(event)
        if self.call_soon is None:
            self._write(line + "\n")
            return
        # Lines wait in memory until the reactor turns: one write and one flush
        # for a burst (stdout is often unbuffered in containers: PYTHONUNBUFFERED).
        self._pending.append(line)
        if not self._flush_pending:
            self._flush_pending = True
            self.call_soon(self._flush)

    def flush_now(self) -> None:
        """Write what waits, and from now on write each line at once (the reactor has stopped).

        Lines logged while the daemon shuts down (ttyd stopped, the port
        closed) would otherwise wait for a reactor turn that never comes.
        """
        self.call_soon = None
        self._flush()

    def _flush(self) -> None:
        self._flush_pending = False
        lines, self._pending = self._pending, []
        if lines:
            self._write("\n".join(lines) + "\n")

    def _write(self, text: str) -> None:
        try:
            self.out.write(text)
            self.out.flush()
        except (OSError, ValueError):
            pass  # a closed stdout must not take the daemon down

    def _message(self, event: LogEvent) -> str:
        fmt = event.get("log_format")
        text = ""
        if fmt is not None:
            try:
                # Plain str.format first: most of our events need nothing more,
                # and it is several times cheaper than Twisted's formatter.
                text = fmt.format_map(event)
            except Exception:
                text = formatEvent(event)
        failure = event.get("log_failure")
        if isinstance(failure, Failure):
            text = f"{text}\n{failure.getTraceback()}" if text else failure.getTraceback()
        return text

    def text_line(self, event: LogEvent) -> str:
        """``2026-11-25T21:00:00Z [namespace#level] message``."""
        level = event.get("log_level", LogLevel.info)
        namespace = event.get("log_namespace", "-")
        stamp = self._clock.stamp(event.get("log_time", time.time()), millis=False)
        return f"{stamp} [{namespace}#{level.name}] {self._message(event)}"

    def json_line(self, event: LogEvent) -> str:
        """One flat JSON object."""
        level = event.get("log_level", LogLevel.info)
        record: dict[str, Any] = {
            "time": self._clock.stamp(event.get("log_time", time.time()), millis=True),
            "level": level.name,
            "logger": event.get("log_namespace", "-"),
            "message": self._message(event),
        }
        for key, value in event.items():
            if not key.startswith("log_") and key not in record and isinstance(value, SCALARS):
                record[key] = value
        return json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)
