"""Tests for :mod:`workshop_backend.terminal.sessions`: the rules of sessions, without a reactor.

Exactly-once is checked on every boundary: every offset a page may hold,
chunk edges, the buffer's start and end, drops, a chunk bigger than the
buffer, and pages that disconnect anywhere while output goes on.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from twisted.trial.unittest import SynchronousTestCase

from workshop_backend.terminal.sessions import (
    REPLAY_MESSAGE,
    SKIP_ALIGN_WINDOW,
    BadAttach,
    New,
    OutputBuffer,
    Pace,
    Plain,
    RateLimiter,
    Replay,
    Resume,
    SessionTable,
    announcement,
    clean_start,
    new_session_id,
    parse_attach,
    pong,
    resize_from_greeting,
)


def joined(replay: Replay) -> bytes:
    return b"".join(replay.data)


class BufferTests(SynchronousTestCase):
    """Offsets and what is kept."""

    def test_empty(self) -> None:
        """A terminal with no output yet: nothing to replay, from 0 or from nothing."""
        buffer = OutputBuffer(100)
        self.assertEqual(buffer.read_from(0), Replay(0, 0, ()))
        self.assertEqual(buffer.read_from(None), Replay(0, 0, ()))
        self.assertEqual((buffer.start, buffer.end, buffer.size, buffer.dropped), (0, 0, 0, 0))

    def test_every_offset_within_the_buffer(self) -> None:
        """From any offset held, the replay is exactly the rest: chunk edges, mid-chunk, start, end."""
        chunks = [b"abc", b"d", b"efghij", b"", b"klmnopq", b"r"]
        buffer = OutputBuffer(1000)
        for chunk in chunks:
            buffer.append(chunk)
        full = b"".join(chunks)
        self.assertEqual((buffer.start, buffer.end, buffer.size), (0, len(full), len(full)))
        for offset in range(len(full) + 1):
            replay = buffer.read_from(offset)
            self.assertEqual((replay.offset, replay.skipped, replay.ahead), (offset, 0, False))
            self.assertEqual(joined(replay), full[offset:], offset)

    def test_none_means_everything_held(self) -> None:
        """A page that shows nothing yet (a reload, another device) gets all that is held."""
        buffer = OutputBuffer(1000)
        buffer.append(b"hello\r\n")
        self.assertEqual(buffer.read_from(None), Replay(0, 0, (b"hello\r\n",)))

    def test_keeps_exactly_the_last_capacity_bytes(self) -> None:
        """Past the capacity the oldest bytes go (a chunk cut to fit): exactly ``capacity`` are held."""
        buffer = OutputBuffer(10)
        full = b""
        for chunk in (b"abcd", b"efgh", b"ijkl", b"mn", b"o", b"p" * 7):
            buffer.append(chunk)
            full += chunk
            self.assertEqual(buffer.size, min(10, len(full)))
            self.assertEqual(buffer.start, len(full) - buffer.size)
            self.assertEqual(buffer.dropped, buffer.start)
            self.assertEqual(joined(buffer.read_from(buffer.start)), full[buffer.start :])
        self.assertEqual(buffer.end, len(full))

    def test_chunk_bigger_than_the_buffer(self) -> None:
        """One chunk larger than the capacity: only its tail is kept, exactly ``capacity`` bytes."""
        buffer = OutputBuffer(5)
        buffer.append(b"ab")
        buffer.append(b"0123456789")
        self.assertEqual((buffer.start, buffer.end, buffer.size), (7, 12, 5))
        self.assertEqual(buffer.read_from(7), Replay(7, 0, (b"56789",)))
        buffer.append(b"XY")
        self.assertEqual(joined(buffer.read_from(9)), b"789XY")

    def test_extend_views(self) -> None:
        """Several views into one frame run at once: kept without copies, trimmed once, replayed exactly."""
        run = b"..abc..defgh..ij"
        view = memoryview(run)
        buffer = OutputBuffer(6)
        buffer.extend([view[2:5], view[7:12]])
        self.assertEqual((buffer.start, buffer.end, buffer.size), (2, 8, 6))
        self.assertEqual(joined(buffer.read_from(2)), b"cdefgh")
        buffer.extend([view[14:16], view[0:0]])
        self.assertEqual(joined(buffer.read_from(4)), b"efghij")
        buffer.extend([b"0123", b"456789"])  # a batch bigger than the buffer
        self.assertEqual((buffer.start, buffer.end), (14, 20))
        self.assertEqual(joined(buffer.read_from(14)), b"456789")
        buffer.extend([])
        self.assertEqual(buffer.end, 20)

    def test_capacity_zero_counts_but_keeps_nothing(self) -> None:
        """A plain client's terminal: offsets advance, nothing is held."""
        buffer = OutputBuffer(0)
        buffer.append(b"abc")
        self.assertEqual((buffer.start, buffer.end, buffer.size), (3, 3, 0))
        self.assertEqual(buffer.read_from(3), Replay(3, 0, ()))
        self.assertEqual(buffer.read_from(0), Replay(3, 3, ()))

    def test_negative_capacity_refused(self) -> None:
        """A buffer cannot hold less than nothing."""
        with self.assertRaises(ValueError):
            OutputBuffer(-1)

    def test_skip_counts_exactly(self) -> None:
        """From an offset older than the buffer: the marker counts every byte between it and the replay."""
        buffer = OutputBuffer(8)
        for chunk in (b"aaaa", b"bbbb", b"cccc", b"dddd"):
            buffer.append(chunk)
        self.assertEqual(buffer.start, 8)
        for offset in range(8):
            replay = buffer.read_from(offset)
            self.assertEqual(replay.offset - offset, replay.skipped)
            self.assertEqual(replay.offset, 8)
            self.assertEqual(joined(replay), b"ccccdddd")
        self.assertEqual(buffer.read_from(None).skipped, 8)

    def test_skip_starts_at_a_clean_line(self) -> None:
        """After a skip, the tail starts after the first newline (not in the middle of a line)."""
        buffer = OutputBuffer(12)
        buffer.append(b"line one\r\n")
        buffer.append(b"two\r\nthree\r\n")
        self.assertEqual(buffer.start, 10)
        replay = buffer.read_from(0)
        self.assertEqual((replay.offset, replay.skipped), (15, 15))
        self.assertEqual(joined(replay), b"three\r\n")

    def test_skip_never_starts_inside_a_character(self) -> None:
        """Without a newline nearby, the tail starts at the next character, not a UTF-8 continuation byte."""
        euro = "€".encode()  # e2 82 ac
        buffer = OutputBuffer(6)
        buffer.append(b"xyz")
        buffer.append(euro + b"abcd")  # the buffer's start falls inside the euro sign
        self.assertEqual(buffer.start, 4)
        replay = buffer.read_from(0)
        self.assertEqual((replay.offset, replay.skipped), (6, 6))
        self.assertEqual(joined(replay), b"abcd")

    def test_clean_start(self) -> None:
        """Where output cut at an arbitrary byte may start showing."""
        self.assertEqual(clean_start([b"abc\ndef"]), 4)
        self.assertEqual(clean_start([b"ab", b"c\nd"]), 4)
        self.assertEqual(clean_start([b"\x82\xacz"]), 2)
        self.assertEqual(clean_start([b"plain"]), 0)
        self.assertEqual(clean_start([]), 0)
        self.assertEqual(clean_start([b"\x80\x80\x80\x80\x80"]), 4)
        far = b"x" * SKIP_ALIGN_WINDOW + b"\n"
        self.assertEqual(clean_start([far]), 0)

    def test_ahead_is_clamped(self) -> None:
        """An offset past all output (forged, or from another terminal) replays nothing, marked ``ahead``."""
        buffer = OutputBuffer(100)
        buffer.append(b"abc")
        self.assertEqual(buffer.read_from(4), Replay(3, 0, (), ahead=True))
        self.assertEqual(buffer.read_from(10**19), Replay(3, 0, (), ahead=True))

    def test_replay_messages(self) -> None:
        """A replay goes out as ttyd output messages of bounded size, in order, every byte once."""
        chunks = (b"a" * 10, b"b" * 25, b"c" * 3)
        messages = list(Replay(0, 0, chunks).messages(limit=16))
        self.assertTrue(all(m[:1] == b"0" and 1 < len(m) <= 17 for m in messages), messages)
        self.assertEqual(b"".join(m[1:] for m in messages), b"".join(chunks))
        self.assertEqual(list(Replay(0, 0, ()).messages()), [])
        big = list(Replay(0, 0, (b"z" * (REPLAY_MESSAGE * 2 + 1),)).messages())
        self.assertEqual([len(m) - 1 for m in big], [REPLAY_MESSAGE, REPLAY_MESSAGE, 1])


@dataclass
class Page:
    """A page's view of one terminal: what it has shown and where it is."""

    shown: bytearray
    offset: int
    gaps: list[tuple[int, int]]

    def attach(self, replay: Replay) -> None:
        if replay.skipped:
            self.gaps.append((len(self.shown), replay.skipped))
        self.offset = replay.offset
        for chunk in replay.data:
            self.receive(chunk)

    def receive(self, chunk: bytes | memoryview) -> None:
        self.shown += chunk
        self.offset += len(chunk)


class ExactlyOnceTests(SynchronousTestCase):
    """Pages that drop at any point while output goes on see every byte once, in order."""

    def run_pages(self, capacity: int, seed: int, reloads: bool = False) -> tuple[bytes, Page]:
        """Random output in random chunks; the page drops and comes back at random moments.

        Answers the output the page should account for (from where its
        last reload started) and the page.
        """
        rng = random.Random(seed)
        buffer = OutputBuffer(capacity)
        page = Page(bytearray(), 0, [])
        attached = True
        full = bytearray()
        base = 0  # the offset the current page's account starts at
        for i in range(400):
            chunk = bytes(rng.randrange(32, 127) for _ in range(rng.choice((0, 1, 7, 64, 300))))
            buffer.append(chunk)
            full += chunk
            if attached:
                if rng.random() < 0.15:
                    attached = False  # the write never reached the page: it is lost with the socket
                else:
                    page.receive(chunk)
            elif rng.random() < 0.3:
                attached = True
                page.attach(buffer.read_from(page.offset))
            if reloads and i % 50 == 49 and attached:
                # A reload: a new page that knows nothing attaches and shows what is held.
                page = Page(bytearray(), 0, [])
                base = buffer.start
                page.attach(buffer.read_from(None))
                page.gaps = [(at, skipped - base) if at == 0 else (at, skipped) for at, skipped in page.gaps]
                page.gaps = [(at, skipped) for at, skipped in page.gaps if skipped]
        if not attached:
            page.attach(buffer.read_from(page.offset))
        return bytes(full[base:]), page

    def check(self, full: bytes, page: Page, seed: int) -> None:
        """Every byte shown is the output's byte at that position once the marked gaps are counted."""
        shown = bytes(page.shown)
        gaps = dict(page.gaps)
        source = 0
        expected = bytearray()
        for index in range(len(shown) + 1):
            source += gaps.get(index, 0)
            if index < len(shown):
                expected.append(full[source])
                source += 1
        self.assertEqual(shown, bytes(expected), seed)
        self.assertEqual(source, len(full), seed)

    def test_within_the_buffer(self) -> None:
        """With a buffer bigger than anything missed, the page shows the output exactly, no marker."""
        for seed in range(40):
            full, page = self.run_pages(capacity=1 << 20, seed=seed, reloads=seed % 2 == 0)
            self.assertEqual(bytes(page.shown), full, seed)
            self.assertEqual(page.gaps, [])

    def test_past_the_buffer(self) -> None:
        """With a small buffer, what is shown is the output minus the marked gaps: nothing else lost or doubled."""
        marked = 0
        for seed in range(60):
            full, page = self.run_pages(capacity=200, seed=seed, reloads=seed % 2 == 0)
            self.check(full, page, seed)
            marked += len(page.gaps)
        self.assertGreater(marked, 20)  # the scenario does overflow the buffer


class AttachRequestTests(SynchronousTestCase):
    """The query string of ``/terminal``."""

    def test_requests(self) -> None:
        """Each shape of request, and what is refused with a reason."""
        cases: list[tuple[dict[str, list[str]], object]] = [
            ({}, Plain()),
            ({"ticket": ["abc"]}, Plain()),
            ({"session": ["new"]}, New()),
            ({"session": ["new"], "ticket": ["t"]}, New()),
            ({"session": ["abc_DEF-09"]}, Resume("abc_DEF-09", None)),
            ({"session": ["abc"], "offset": ["0"]}, Resume("abc", 0)),
            ({"session": ["abc"], "offset": ["12345678901234567890"]}, Resume("abc", 12345678901234567890)),
            ({"offset": ["5"]}, BadAttach("'offset' needs 'session'")),
            ({"session": ["new"], "offset": ["0"]}, BadAttach("a new terminal takes no 'offset'")),
            ({"session": ["a", "b"]}, BadAttach("'session' and 'offset' may appear once each")),
            ({"session": ["a"], "offset": ["1", "2"]}, BadAttach("'session' and 'offset' may appear once each")),
            ({"session": [""]}, BadAttach("'session' is not a terminal id")),
            ({"session": ["../x"]}, BadAttach("'session' is not a terminal id")),
            ({"session": ["x" * 65]}, BadAttach("'session' is not a terminal id")),
        ]
        for params, expected in cases:
            with self.subTest(params=params):
                self.assertEqual(parse_attach(params), expected)
        for offset in ("-1", "1.5", "1e3", "", " 1", "0x10", "٣", "1" * 21):
            with self.subTest(offset=offset):
                self.assertEqual(
                    parse_attach({"session": ["abc"], "offset": [offset]}),
                    BadAttach("'offset' must be a byte count (digits only)"),
                )

    def test_new_ids(self) -> None:
        """Ids are URL-safe, 22 characters (128 bits), and differ."""
        ids = {new_session_id() for _ in range(50)}
        self.assertEqual(len(ids), 50)
        for name in ids:
            self.assertEqual(parse_attach({"session": [name]}), Resume(name, None))


class MessageTests(SynchronousTestCase):
    """The session's own messages."""

    def test_announcement(self) -> None:
        """``S`` + JSON: the terminal, its number, where the replay starts, what was skipped."""
        message = announcement("abc", 3, Replay(120, 20, (b"x",)))
        self.assertEqual(message[:1], b"S")
        self.assertEqual(json.loads(message[1:]), {"session": "abc", "number": 3, "offset": 120, "skipped": 20})

    def test_pong(self) -> None:
        """A heartbeat is answered with its value; anything else is not one."""
        self.assertEqual(pong(b'S{"ping":7}'), b'S{"pong":7}')
        self.assertEqual(pong(b'S{"ping":"a1"}'), b'S{"pong":"a1"}')
        for junk in (b"S", b"Snot json", b"S[1]", b'S{"pong":1}', b'S{"ping":true}', b'S{"ping":[1]}'):
            self.assertIsNone(pong(junk), junk)
        self.assertIsNone(pong(b'S{"ping":"' + b"x" * 40 + b'"}'))

    def test_resize_from_greeting(self) -> None:
        """A later page's greeting becomes a resize of the running shell; junk is dropped."""
        self.assertEqual(
            resize_from_greeting(b'{"AuthToken":"","columns":100,"rows":30}'), b'1{"columns":100,"rows":30}'
        )
        for junk in (
            b"not json",
            b"[1,2]",
            b'{"columns":100}',
            b'{"columns":0,"rows":30}',
            b'{"columns":"100","rows":30}',
            b'{"columns":true,"rows":30}',
            b'{"columns":100,"rows":100000}',
            b"\xff\xfe",
        ):
            self.assertIsNone(resize_from_greeting(junk), junk)


class RateTests(SynchronousTestCase):
    """Attach attempts and the detached reading pace."""

    def test_burst_then_rate(self) -> None:
        """``burst`` attempts at once, then ``rate`` a second; each key on its own."""
        limiter = RateLimiter(rate=2.0, burst=3.0)
        self.assertEqual([limiter.allow("a", 100.0) for _ in range(5)], [True, True, True, False, False])
        self.assertTrue(limiter.allow("b", 100.0))
        self.assertFalse(limiter.allow("a", 100.4))
        self.assertTrue(limiter.allow("a", 100.5))
        self.assertFalse(limiter.allow("a", 100.5))
        self.assertEqual([limiter.allow("a", 110.0) for _ in range(4)], [True, True, True, False])

    def test_a_thousand_a_second(self) -> None:
        """A client attaching 1,000 times a second gets through at the rate only."""
        limiter = RateLimiter(rate=2.0, burst=10.0)
        allowed = sum(limiter.allow("x", 50.0 + i / 1000) for i in range(1000))
        self.assertIn(allowed, (11, 12))  # the burst, then 2 a second (the second one at the edge of float sums)

    def test_keys_bounded(self) -> None:
        """Random keys cannot grow the table: the least recently used go, and come back full."""
        limiter = RateLimiter(rate=1.0, burst=1.0, max_keys=3)
        for key in "abcdef":
            self.assertTrue(limiter.allow(key, 0.0))
        self.assertEqual(len(limiter._buckets), 3)
        self.assertTrue(limiter.allow("a", 0.0))
        self.assertFalse(limiter.allow("f", 0.0))

    def test_pace(self) -> None:
        """Up to ``rate`` bytes a second go on; past that, the pause that brings it back to the rate."""
        self.assertEqual(Pace(0).spend(10**9, 0.0), 0.0)
        pace = Pace(1000)
        self.assertEqual(pace.spend(600, 10.0), 0.0)
        self.assertEqual(pace.spend(400, 10.0), 0.0)
        self.assertAlmostEqual(pace.spend(500, 10.0), 0.5)
        self.assertEqual(pace.spend(100, 11.0), 0.0)  # refilled 1000, capped at 1000: 400 left
        pace.reset()
        self.assertEqual(pace.spend(1000, 20.0), 0.0)


@dataclass
class Fake:
    ended: object | None = None


class TableTests(SynchronousTestCase):
    """The workspace's terminals."""

    def test_limit_counts_live_terminals(self) -> None:
        """Ended terminals are kept but do not count against the limit."""
        table: SessionTable[Fake] = SessionTable(limit=2)
        for _ in range(2):
            name, number = table.reserve()
            table.add(name, number, Fake())
        self.assertTrue(table.full())
        first = next(iter(table))
        first.ended = (1000, "the shell exited")
        self.assertFalse(table.full())
        self.assertEqual([t.ended for t in table], [(1000, "the shell exited"), None])  # kept

    def test_ids_numbers_order(self) -> None:
        """Ids never repeat (a clash is drawn again); numbers are the lowest free; the order is the order of adding."""
        names = iter(["a", "a", "bad id!", "b", "c", "d"])
        table: SessionTable[Fake] = SessionTable(limit=5, make_id=lambda: next(names))
        one, two = Fake(), Fake()
        table.add(*table.reserve(), one)
        name, number = table.reserve()
        self.assertEqual((name, number), ("b", 2))
        table.add(name, number, two)
        self.assertEqual(list(table), [one, two])
        self.assertIs(table.get("b"), two)
        table.remove("a")
        table.remove("nope")
        self.assertIsNone(table.get("a"))
        self.assertEqual(table.reserve(), ("c", 1))
        table.add("c", 1, Fake())
        self.assertEqual(table.reserve(), ("d", 3))
