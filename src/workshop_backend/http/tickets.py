"""Single-use, short-lived tickets for the two connections a browser cannot give a header.

``EventSource`` and ``WebSocket`` cannot send ``Authorization``, and the
cookie cannot be trusted (browsers send it to every port of the host, see
``docs/security.md``).  So the page asks for a ticket with an authenticated
``POST /api/v1/tickets`` and puts it in the address of the event stream or
the terminal (``?ticket=...``).  A ticket:

- is 256 random bits, kept only as its SHA-256 (a lookup reveals nothing
  about the ticket through timing, and memory holds no usable secret);
- opens one connection, once: it is gone as soon as it is redeemed;
- expires ``lifetime`` seconds after it was issued (a page asks for one
  right before it connects);
- is one of at most ``limit`` outstanding tickets (the oldest is dropped),
  so no client can grow the backend's memory by asking for many.

Tickets live in memory: a restarted backend has none, and the page simply
asks the new one.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable

TICKET_LIFETIME = 60.0
"""Seconds a ticket stays valid."""
TICKET_LIMIT = 256
"""Tickets outstanding at once, at most."""


def _digest(ticket: str) -> bytes:
    return hashlib.sha256(ticket.encode("utf-8", "surrogateescape")).digest()


class Tickets:
    """The outstanding tickets: issue, redeem once, forget when expired."""

    def __init__(
        self, now: Callable[[], float], *, lifetime: float = TICKET_LIFETIME, limit: int = TICKET_LIMIT
    ) -> None:
        self._now = now
        self.lifetime = lifetime
        self.limit = limit
        self._expiry: dict[bytes, float] = {}  # in issue order: the oldest first

    def __len__(self) -> int:
        """How many tickets are outstanding (expired ones may still be counted until the next call)."""
        return len(self._expiry)

    def issue(self) -> str:
        """A new ticket, valid for :attr:`lifetime` seconds and one use."""
        self._prune()
        while len(self._expiry) >= self.limit:
            del self._expiry[next(iter(self._expiry))]
        ticket = secrets.token_urlsafe(32)
        self._expiry[_digest(ticket)] = self._now() + self.lifetime
        return ticket

    def redeem(self, ticket: str) -> bool:
        """True (once) for a ticket issued here and not yet expired or used."""
        self._prune()
        if not 0 < len(ticket) <= 128:
            return False
        return self._expiry.pop(_digest(ticket), None) is not None

    def _prune(self) -> None:
        now = self._now()
        expired = [key for key, expiry in self._expiry.items() if expiry <= now]
        for key in expired:
            del self._expiry[key]
