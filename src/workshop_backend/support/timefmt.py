"""Times as the API shows them: RFC 3339 strings in UTC, always ending in ``Z``.

Everything inside the backend keeps times as POSIX seconds (floats, from a
clock passed in); only the edges (JSON answers, events, stored results) turn
them into strings with :func:`rfc3339` and back with :func:`parse_rfc3339`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$",
)


def rfc3339(t: float, *, millis: bool = False) -> str:
    """``t`` (POSIX seconds) as ``2026-11-25T21:00:00Z``, or ``...:00.123Z`` with ``millis``.

    The fraction is truncated, not rounded (after rounding to the microsecond,
    which absorbs float noise), so a time never shows as later than it was.
    """
    # Through whole microseconds first: 1.001 * 1000 is 1000.999... in floats.
    seconds, ms = divmod(round(t * 1_000_000) // 1000, 1000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if millis:
        return f"{stamp}.{ms:03d}Z"
    return f"{stamp}Z"


def parse_rfc3339(text: str) -> float:
    """The POSIX seconds of an RFC 3339 timestamp (any offset, any fraction).

    Raises :class:`ValueError` for anything else, naming the text.
    """
    m = _RFC3339.match(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    iso = text[: m.start(7)] if m.group(7) else text[: m.start(8)]
    offset = m.group(8)
    offset = "+00:00" if offset in ("Z", "z") else offset
    try:
        moment = datetime.fromisoformat(iso.replace("t", "T") + offset)
    except ValueError:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}") from None
    fraction = float(m.group(7)) if m.group(7) else 0.0
    return moment.timestamp() + fraction
