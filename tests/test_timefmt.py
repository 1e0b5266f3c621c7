"""Tests for RFC 3339 formatting and parsing."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from workshop_backend.support.timefmt import parse_rfc3339, rfc3339


class Rfc3339Tests(SynchronousTestCase):
    """``rfc3339`` and ``parse_rfc3339``."""

    def test_seconds(self) -> None:
        """Second precision by default, always in UTC with ``Z``; the fraction is truncated."""
        self.assertEqual(rfc3339(0), "1970-01-01T00:00:00Z")
        self.assertEqual(rfc3339(1795640400.999), "2026-11-25T21:00:00Z")

    def test_millis(self) -> None:
        """Millisecond precision on request, without float noise (1.001 s is not 1.000 s)."""
        self.assertEqual(rfc3339(1795640400.25, millis=True), "2026-11-25T21:00:00.250Z")
        self.assertEqual(rfc3339(1.001, millis=True), "1970-01-01T00:00:01.001Z")

    def test_before_epoch(self) -> None:
        """Times before 1970 work too."""
        self.assertEqual(rfc3339(-0.5, millis=True), "1969-12-31T23:59:59.500Z")

    def test_parse(self) -> None:
        """Any offset and fraction parse to POSIX seconds."""
        self.assertEqual(parse_rfc3339("2026-11-25T21:00:00Z"), 1795640400.0)
        self.assertEqual(parse_rfc3339("2026-11-25T22:00:00.250+01:00"), 1795640400.25)
        self.assertEqual(parse_rfc3339("2026-11-25t21:00:00z"), 1795640400.0)

    def test_round_trip(self) -> None:
        """What rfc3339 writes, parse_rfc3339 reads back."""
        for t in (0.0, 1795640400.0, 1795640400.123):
            self.assertEqual(parse_rfc3339(rfc3339(t, millis=True)), t)

    def test_parse_refuses(self) -> None:
        """Other formats raise ValueError naming the text."""
        for text in ("2026-11-25 21:00:00Z", "2026-11-25T21:00:00", "2026-13-01T00:00:00Z", "yesterday"):
            with self.assertRaises(ValueError) as cm:
                parse_rfc3339(text)
            self.assertEqual(str(cm.exception), f"not an RFC 3339 timestamp: {text!r}")
