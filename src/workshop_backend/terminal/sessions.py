"""The rules of terminal sessions, with no I/O: offsets, the bounded output buffer, attach requests, limits.

A terminal belongs to the workspace, not to one WebSocket (contract section
5): the backend keeps ttyd's connection, and so the shell, when the browser
goes, and keeps its output here.  A page that asked for sessions names its
terminal and says how much output it has shown (a byte *offset*); the
backend sends exactly what it missed, then live output.  Everything that
decides *what* happens lives in this module and is tested without a
reactor (``tests/test_sessions.py``); :mod:`~workshop_backend.terminal.upstream`
and :mod:`~workshop_backend.terminal.bridge` do the I/O.

Offsets count the bytes of terminal output (the payloads of ttyd's ``0``
messages, without the command byte) since the terminal started.  The
buffer keeps the most recent :attr:`OutputBuffer.capacity` bytes; a page
whose offset is older than that gets the marker ("N KB of output skipped")
and the tail, never a silent gap.  The protocol is in ``docs/terminal.md``.
"""

from __future__ import annotations

import json
import re
import secrets
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

# -- close codes sent to the browser (docs/terminal.md has the table) ------------

CLOSE_SHELL_EXITED = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TRY_LATER = 1013
CLOSE_SHELL_FAILED = 4000
CLOSE_UNAVAILABLE = 4001
CLOSE_RESTARTING = 4002
CLOSE_GONE = 4003
"""This terminal no longer exists: unknown, ended by the grace period, closed, or lost with ttyd."""
CLOSE_TOO_MANY = 4005
"""A new terminal was asked for while the workspace already has its limit of terminals."""

# -- sizes and rates ---------------------------------------------------------------

DEFAULT_BUFFER = 2 * 1024 * 1024
"""Output kept per terminal: about 25,000 lines of 80 columns, a screenful many times over."""
DEFAULT_GRACE = 30 * 60.0
"""Seconds a terminal with no browser attached lives on (a lunch break)."""
DEFAULT_MAX_TERMINALS = 6
"""Terminals per workspace, attached or not (the page's tab limit)."""
DEFAULT_MAX_CLIENTS = 4
"""Browser sockets attached to one terminal at once (a reload, a second device...)."""
DEFAULT_DETACHED_READ_RATE = 1024 * 1024
"""Bytes per second read from ttyd for a terminal nobody watches (0: no limit)."""
REPLAY_MESSAGE = 64 * 1024
"""Replayed output goes out in messages of at most this many bytes."""
SKIP_ALIGN_WINDOW = 1024
"""After a skip, the replay starts after the first newline within this many bytes (a clean line)."""

SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
OFFSET_DIGITS = 20

#: The first byte of the session's own messages (both ways); ttyd uses 0-3 and "{".
CONTROL = b"S"
OUTPUT = b"0"
TITLE = b"1"
PREFERENCES = b"2"


def new_session_id() -> str:
    """A terminal's name: 128 random bits, URL-safe (it travels in a query string)."""
    return secrets.token_urlsafe(16)


# -- the output buffer -------------------------------------------------------------

Chunk = bytes | memoryview
"""A piece of output: bytes, or a view into a frame from ttyd (kept without a copy)."""


@dataclass(frozen=True)
class Replay:
    """What a page attaching at some offset gets, before live output.

    ``offset`` is where ``data`` starts: the page's position from now on.
    ``skipped`` bytes between the page's offset and ``offset`` are gone
    (the marker); ``ahead`` says the page claimed more output than there
    ever was (clamped to the end).
    """

    offset: int
    skipped: int
    data: tuple[Chunk, ...]
    ahead: bool = False

    def messages(self, limit: int = REPLAY_MESSAGE) -> Iterator[bytes]:
        """The replay as ttyd output messages (``0`` + at most ``limit`` bytes each), in order."""
        group: list[Chunk] = []
        size = 0
        for chunk in self.data:
            while chunk:
                room = limit - size
                piece, chunk = chunk[:room], chunk[room:]
                group.append(piece)
                size += len(piece)
                if size >= limit:
                    yield OUTPUT + b"".join(group)
                    group, size = [], 0
        if group:
            yield OUTPUT + b"".join(group)


class OutputBuffer:
    """The most recent ``capacity`` bytes of a terminal's output, addressed by absolute offsets.

    Chunks are kept as they came (ttyd's reads, about 4 KiB; views into
    the frames ttyd sent, so keeping output copies nothing); past the
    capacity the oldest go, the last one cut to fit, so exactly
    ``min(capacity, output so far)`` bytes are held (views may keep one
    more read of ttyd's alive).  ``capacity`` 0 keeps nothing (a terminal
    without sessions) but still counts offsets.
    """

    def __init__(self, capacity: int = DEFAULT_BUFFER) -> None:
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self.capacity = capacity
        self._chunks: deque[Chunk] = deque()
        self.size = 0
        #: The offset of the first byte held (everything before it was dropped).
        self.start = 0
        #: The offset just past the last byte: all output so far.
        self.end = 0

    @property
    def dropped(self) -> int:
        """Bytes of output no longer held."""
        return self.start

    def append(self, data: Chunk) -> None:
        """Output arrived: keep it, dropping the oldest bytes past ``capacity``."""
        self.extend((data,))

    def extend(self, chunks: Sequence[Chunk]) -> None:
        """Several pieces of output at once (one read from ttyd): one trim for them all."""
        total = sum(len(chunk) for chunk in chunks)
        if not total:
            return
        self.end += total
        if total >= self.capacity:
            # As much as the buffer holds, or more: only the tail stays.
            self._chunks.clear()
            tail = b"".join(chunks)[total - self.capacity :] if self.capacity else b""
            self.size = len(tail)
            self.start = self.end - self.size
            if tail:
                self._chunks.append(tail)
            return
        self._chunks.extend(chunk for chunk in chunks if len(chunk))
        self.size += total
        while self.size > self.capacity:
            excess = self.size - self.capacity
            front = self._chunks[0]
            if len(front) <= excess:
                self._chunks.popleft()
                excess = len(front)
            else:
                self._chunks[0] = front[excess:]
            self.size -= excess
            self.start += excess

    def read_from(self, offset: int | None) -> Replay:
        """What a page that has shown ``offset`` bytes has not seen (``None``: all that is held).

        An offset older than what is held is a skip: the replay starts at
        the first clean line (or character) of what is held, and the bytes
        passed over count as skipped.  An offset past the end is clamped to
        the end (``ahead``): nothing is replayed, nothing is invented.
        """
        if offset is None:
            offset = 0
        if offset > self.end:
            return Replay(self.end, 0, (), ahead=True)
        if offset >= self.start:
            return Replay(offset, 0, self._slice(offset))
        data = self._slice(self.start)
        cut = clean_start(data)
        begin = self.start + cut
        return Replay(begin, begin - offset, self._slice(begin))

    def _slice(self, offset: int) -> tuple[Chunk, ...]:
        """The bytes from ``offset`` (``start <= offset <= end``) to the end, as chunks."""
        skip = offset - self.start
        out: list[Chunk] = []
        for chunk in self._chunks:
            if skip >= len(chunk):
                skip -= len(chunk)
                continue
            out.append(chunk[skip:] if skip else chunk)
            skip = 0
        return tuple(out)


def clean_start(chunks: Sequence[Chunk]) -> int:
    """Where to start showing output that was cut at an arbitrary byte: after the first
    newline within :data:`SKIP_ALIGN_WINDOW` bytes, else at the first byte that begins
    a UTF-8 character (never in the middle of one)."""
    parts: list[Chunk] = []
    size = 0
    for chunk in chunks:
        parts.append(chunk[: SKIP_ALIGN_WINDOW - size])
        size += len(parts[-1])
        if size >= SKIP_ALIGN_WINDOW:
            break
    head = b"".join(parts)
    newline = head.find(b"\n")
    if newline >= 0:
        return newline + 1
    for i, byte in enumerate(head[:4]):
        if byte & 0xC0 != 0x80:
            return i
    return min(4, len(head))


# -- what a page asks for when it opens /terminal ------------------------------------


@dataclass(frozen=True)
class Plain:
    """No session parameters: a plain ttyd client, a new shell that ends with its socket."""


@dataclass(frozen=True)
class New:
    """``?session=new``: a new terminal that outlives this socket."""


@dataclass(frozen=True)
class Resume:
    """``?session=ID[&offset=N]``: attach to terminal ``ID`` having shown ``N`` bytes (None: nothing)."""

    session: str
    offset: int | None


@dataclass(frozen=True)
class BadAttach:
    """Session parameters that make no sense; refused with 1008 and ``reason``."""

    reason: str


AttachRequest = Plain | New | Resume | BadAttach


def parse_attach(params: Mapping[str, Sequence[str]]) -> AttachRequest:
    """The session parameters of a ``/terminal`` handshake's query string.

    Other parameters (a ``ticket``, a cache buster) are not ours and are
    ignored.  Each of ours may appear once.
    """
    session = params.get("session", ())
    offset = params.get("offset", ())
    if len(session) > 1 or len(offset) > 1:
        return BadAttach("'session' and 'offset' may appear once each")
    if not session:
        return BadAttach("'offset' needs 'session'") if offset else Plain()
    name = session[0]
    if name == "new":
        return BadAttach("a new terminal takes no 'offset'") if offset else New()
    if not SESSION_ID.fullmatch(name):
        return BadAttach("'session' is not a terminal id")
    if not offset:
        return Resume(name, None)
    text = offset[0]
    if not (text.isascii() and text.isdigit()) or len(text) > OFFSET_DIGITS:
        return BadAttach("'offset' must be a byte count (digits only)")
    return Resume(name, int(text))


# -- messages of the session protocol ----------------------------------------------


def announcement(session: str, number: int, replay: Replay) -> bytes:
    """The first message to a page that asked for sessions: which terminal, and where its output resumes."""
    body = {"session": session, "number": number, "offset": replay.offset, "skipped": replay.skipped}
    return CONTROL + json.dumps(body, separators=(",", ":")).encode()


def pong(ping: bytes) -> bytes | None:
    """The answer to a page's ``S{"ping": ...}`` heartbeat, or None if ``ping`` is not one."""
    try:
        body = json.loads(ping[len(CONTROL) :])
    except ValueError:
        return None
    if not isinstance(body, dict) or "ping" not in body:
        return None
    value = body["ping"]
    if not isinstance(value, int | str) or isinstance(value, bool) or len(str(value)) > 32:
        return None
    return CONTROL + json.dumps({"pong": value}, separators=(",", ":")).encode()


def resize_from_greeting(greeting: bytes) -> bytes | None:
    """ttyd's resize message for a page's opening ``{"columns", "rows"}`` JSON, or None.

    A page that attaches to a running terminal sends the same greeting as
    one that starts it; ttyd must get it only once, so later greetings
    become resizes of the same shell.
    """
    try:
        body = json.loads(greeting)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    columns, rows = body.get("columns"), body.get("rows")
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 10_000 for v in (columns, rows)):
        return None
    return b"1" + json.dumps({"columns": columns, "rows": rows}, separators=(",", ":")).encode()


# -- rates ---------------------------------------------------------------------------


class RateLimiter:
    """Token buckets per key: ``burst`` attempts at once, then ``rate`` per second.

    A page reconnecting with backoff never comes near it; a client
    attaching in a loop is refused without taking anything from the pages
    that are attached.  At most ``max_keys`` buckets are kept (the oldest
    full ones go first), so random keys cannot grow memory.
    """

    def __init__(self, rate: float, burst: float, max_keys: int = 256) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str, now: float) -> bool:
        """Take one token from ``key``'s bucket at ``now``; False if there is none."""
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)  # re-inserted: the dict's order is least recently used first
        while len(self._buckets) > self.max_keys:
            del self._buckets[next(iter(self._buckets))]
        return allowed


class Pace:
    """How fast to read a terminal nobody watches: ``rate`` bytes per second, one second's burst.

    Reading stays continuous (ttyd hangs up a reader that stops for
    ``-P`` + 7 s), but a detached ``yes`` no longer costs a core for the
    whole grace period.  :meth:`spend` answers how long to stop reading.
    """

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._tokens = float(rate)
        self._last: float | None = None

    def reset(self) -> None:
        """A full bucket again (someone attached)."""
        self._tokens = float(self.rate)
        self._last = None

    def spend(self, nbytes: int, now: float) -> float:
        """``nbytes`` were read at ``now``: seconds to pause reading (0: read on)."""
        if self.rate <= 0:
            return 0.0
        if self._last is not None:
            self._tokens = min(float(self.rate), self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= nbytes
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


# -- the workspace's terminals ---------------------------------------------------------


class Endable(Protocol):
    """What the table needs to know of a terminal."""

    @property
    def ended(self) -> object | None: ...


T = TypeVar("T", bound=Endable)


class SessionTable(Generic[T]):
    """The workspace's terminals by id, in the order they were made, with the limit.

    Terminals whose shell has ended stay (a page attaching gets their last
    output and how they ended) but do not count against the limit.
    """

    def __init__(self, limit: int = DEFAULT_MAX_TERMINALS, make_id: Callable[[], str] = new_session_id) -> None:
        self.limit = limit
        self._make_id = make_id
        self._terminals: dict[str, T] = {}
        self._numbers: dict[str, int] = {}

    def full(self) -> bool:
        """True when a new terminal would pass the limit."""
        return sum(1 for t in self._terminals.values() if t.ended is None) >= self.limit

    def reserve(self) -> tuple[str, int]:
        """A fresh id and the lowest number no terminal has (``Terminal 2``), for a terminal about to be added.

        The lowest free number, as the page numbers its tabs, so that a
        tab's label is the same before and after a reload.
        """
        while True:
            name = self._make_id()
            if name not in self._terminals and SESSION_ID.fullmatch(name):
                break
        taken = set(self._numbers.values())
        number = next(n for n in range(1, len(taken) + 2) if n not in taken)
        return name, number

    def add(self, name: str, number: int, terminal: T) -> None:
        """Add ``terminal`` under the reserved ``name``."""
        self._terminals[name] = terminal
        self._numbers[name] = number

    def get(self, name: str) -> T | None:
        """The terminal called ``name``, or None."""
        return self._terminals.get(name)

    def remove(self, name: str) -> None:
        """Forget ``name`` (nothing if unknown)."""
        self._terminals.pop(name, None)
        self._numbers.pop(name, None)

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._terminals.values()))


# -- what the API shows ---------------------------------------------------------------


TerminalState = Literal["attached", "detached", "ended"]


@dataclass(frozen=True)
class TerminalInfo:
    """One terminal of the workspace, as ``GET /api/v1/terminals`` shows it.

    Times are POSIX seconds (the HTTP layer writes them as RFC 3339).
    """

    id: str
    number: int
    state: TerminalState
    clients: int
    created_at: float
    detached_at: float | None
    expires_at: float | None
    output_bytes: int
    buffered_bytes: int
    skipped_bytes: int
    paused: bool
    close_code: int | None
