# mypy: allow-untyped-calls
"""Terminals that survive the browser, in memory: the bridge with sessions.

The same rig as :mod:`tests.test_bridge` (a real ``Site``, Autobahn
clients, memory ttyds, ``iosim``, a ``MemoryReactorClock``), with pages that
ask for sessions: ``?session=new`` and ``?session=ID&offset=N``.
"""

from __future__ import annotations

import json
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory
from twisted.internet.address import IPv4Address
from twisted.test import iosim

from tests.test_bridge import BridgeTestCase, Browser, Transport, Ttyd
from workshop_backend.terminal.bridge import TerminalBridge
from workshop_backend.terminal.fastpath import COALESCE_DELAY, use_reactor_timers

GREETING = b'{"AuthToken":"","columns":80,"rows":24}'


class Page(Browser):
    """A page that asked for sessions: it keeps its terminal's id and its offset."""

    def __init__(self) -> None:
        super().__init__()
        self.announced: list[dict[str, Any]] = []
        self.output = bytearray()
        self.offset = 0
        self.controls: list[bytes] = []

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        super().onMessage(payload, isBinary)
        if payload[:1] == b"S":
            body = json.loads(payload[1:])
            if "session" in body:
                self.announced.append(body)
                self.offset = body["offset"]
            else:
                self.controls.append(payload)
        elif payload[:1] == b"0":
            self.output += payload[1:]
            self.offset += len(payload) - 1

    @property
    def session(self) -> str:
        return str(self.announced[0]["session"])


class SessionTestCase(BridgeTestCase):
    """Pages with sessions, and their terminals."""

    grace = 600.0

    def make_bridge(self, **kw: Any) -> TerminalBridge:
        kw.setdefault("grace", self.grace)
        kw.setdefault("make_id", self.make_id)
        kw.setdefault("detached_read_rate", 0)
        self.ids = 0
        return super().make_bridge(**kw)

    def make_id(self) -> str:
        self.ids += 1
        return f"term{self.ids}"

    def page(self, query: str = "session=new", greet: bool = True) -> Page:
        """A page opening ``/terminal?query``; it sends its greeting at once (as the UI does)."""
        factory = WebSocketClientFactory(
            url=f"ws://127.0.0.1:8080/terminal?{query}", protocols=["tty"], reactor=self.clock
        )
        use_reactor_timers(factory, self.clock)
        factory.setProtocolOptions(serverConnectionDropTimeout=0)
        factory.protocol = Page
        client = factory.buildProtocol(None)
        server = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        address = IPv4Address("TCP", "127.0.0.1", 8080)
        self.server_transports: dict[Any, Transport] = getattr(self, "server_transports", {})
        server_transport = Transport(server, isServer=True, hostAddress=address)
        self.server_transports[client] = server_transport
        pump = iosim.connect(
            server,
            server_transport,
            client,
            Transport(client, isServer=False, peerAddress=address),
            greet=False,
            clock=self.clock,
        )
        self.pumps.append(pump)
        self.flush()
        assert isinstance(client, Page)
        if greet and client.opened and client.closed is None:
            client.sendMessage(GREETING, False)
            self.flush()
        return client

    def resume(self, page: Page, offset: int | None = None) -> Page:
        """Come back to ``page``'s terminal, having shown ``offset`` bytes (default: what it showed)."""
        offset = page.offset if offset is None else offset
        return self.page(f"session={page.session}&offset={offset}")

    def drop(self, page: Page, *, lose_unsent: bool = True) -> None:
        """The network goes: the page's connection dies; what the backend wrote and the page did not get is lost."""
        transport = self.server_transports[page]
        if lose_unsent:
            transport.stream.clear()
        transport.loseConnection()
        self.flush()

    def output(self, ttyd: Ttyd, text: bytes) -> None:
        """ttyd sends output (one frame), delivered."""
        ttyd.sendMessage(b"0" + text, True)
        self.flush()

    def new_terminal(self) -> tuple[Page, Ttyd]:
        page = self.page()
        ttyd = self.open_ttyd()
        return page, ttyd


class NewTerminalTests(SessionTestCase):
    """``?session=new``."""

    def test_announced_first(self) -> None:
        """The first message names the terminal; ttyd gets the greeting; output follows."""
        page, ttyd = self.new_terminal()
        self.assertEqual(page.announced, [{"session": "term1", "number": 1, "offset": 0, "skipped": 0}])
        self.assertEqual(page.messages[0][0][:1], b"S")
        self.assertEqual(ttyd.messages, [(GREETING, False)])
        self.output(ttyd, b"$ ")
        self.assertEqual(page.output, b"$ ")
        [info] = self.bridge.terminals()
        self.assertEqual(
            (info.id, info.number, info.state, info.clients, info.output_bytes), ("term1", 1, "attached", 1, 2)
        )

    def test_survives_the_browser(self) -> None:
        """The page leaving keeps ttyd's session (the shell) and starts the grace period."""
        page, ttyd = self.new_terminal()
        page.sendClose(1000)
        self.flush()
        self.assertIsNone(ttyd.closed)
        [info] = self.bridge.terminals()
        self.assertEqual((info.state, info.clients, info.detached_at), ("detached", 0, self.clock.seconds()))
        self.assertEqual(info.expires_at, self.clock.seconds() + self.grace)

    def test_creator_gone_before_ttyd_answers(self) -> None:
        """A page that leaves before ttyd's leg opens: the greeting still starts the shell."""
        page = self.page()
        page.sendClose(1000)
        self.flush()
        ttyd = self.open_ttyd()
        self.assertEqual(ttyd.messages, [(GREETING, False)])
        self.assertEqual(self.bridge.terminals()[0].state, "detached")

    def test_limit(self) -> None:
        """Past ``max_terminals`` a new terminal is refused with 4005; ended ones do not count."""
        self.bridge = self.make_bridge(max_terminals=2)
        _, first = self.new_terminal()
        self.new_terminal()
        refused = self.page()
        self.assertEqual(refused.closed, (True, 4005, "too many terminals: 2 are open; close one first"))
        self.assertEqual(len(self.connects), 2)
        first.sendClose(1000)  # the shell in the first exits
        self.flush()
        self.new_terminal()
        self.assertEqual([info.state for info in self.bridge.terminals()], ["ended", "attached", "attached"])

    def test_not_ready(self) -> None:
        """A new terminal while ttyd is not running: 4001, nothing is made."""
        self.supervisor.state = "restarting"
        page = self.page()
        self.assertEqual(page.closed, (True, 4001, "terminal unavailable (ttyd is restarting)"))
        self.assertEqual(self.bridge.terminals(), [])


class ResumeTests(SessionTestCase):
    """``?session=ID&offset=N``: exactly what was missed, then live."""

    def test_exactly_once_across_a_drop(self) -> None:
        """Output written to a connection that died is sent again; output read while detached too; then live."""
        page, ttyd = self.new_terminal()
        self.output(ttyd, b"line 1\r\n")
        ttyd.sendMessage(b"0line 2\r\n", True)
        ttyd.sendMessage(b"0line 3\r\n", True)
        self.flush()
        self.assertEqual(page.output, b"line 1\r\nline 2\r\nline 3\r\n")
        # line 4 reaches the backend's socket buffer, never the page: the network is gone.
        ttyd_transport: Any = ttyd.transport
        ttyd.sendMessage(b"0line 4\r\n", True)
        for pump in self.pumps:
            if pump.serverIO is ttyd_transport:
                pump.pump()
        self.drop(page)
        self.assertEqual(page.output, b"line 1\r\nline 2\r\nline 3\r\n")
        self.output(ttyd, b"line 5\r\n")  # while detached
        again = self.resume(page)
        self.assertEqual(again.announced, [{"session": "term1", "number": 1, "offset": 24, "skipped": 0}])
        self.assertEqual(again.output, b"line 4\r\nline 5\r\n")
        self.output(ttyd, b"line 6\r\n")
        self.assertEqual(page.output + again.output, b"".join(b"line %d\r\n" % n for n in range(1, 7)))
        self.assertIsNone(ttyd.closed)

    def test_every_offset(self) -> None:
        """From any offset up to the end, the replay is exactly the rest of the output."""
        page, ttyd = self.new_terminal()
        for n in range(5):
            self.output(ttyd, b"x%d" % n * (n + 1))
        full = bytes(page.output)
        page.sendClose(1000)
        self.flush()
        for offset in range(len(full) + 1):
            again = self.page(f"session=term1&offset={offset}")
            self.assertEqual(again.announced[0]["offset"], offset)
            self.assertEqual(bytes(again.output), full[offset:])
            again.sendClose(1000)
            self.flush()
            self.clock.advance(1)  # stays within the attach rate

    def test_no_offset_replays_all_held(self) -> None:
        """A page that knows nothing (a reload, another device) gets all the output held."""
        _, ttyd = self.new_terminal()
        self.output(ttyd, b"hello\r\n$ ")
        other = self.page("session=term1")
        self.assertEqual(other.output, b"hello\r\n$ ")
        self.assertEqual(other.announced[0]["offset"], 0)

    def test_title_and_preferences_again(self) -> None:
        """ttyd's title and preferences (sent once, at the start) come before the replay."""
        page, ttyd = self.new_terminal()
        ttyd.sendMessage(b"1bash (host)", True)
        ttyd.sendMessage(b'2{"x":1}', True)
        self.output(ttyd, b"$ ")
        again = self.resume(page, 0)
        self.assertEqual([m for m, _ in again.messages[1:]], [b"1bash (host)", b'2{"x":1}', b"0$ "])

    def test_greeting_becomes_a_resize(self) -> None:
        """A page attaching sends its greeting; ttyd gets it as a resize of the same shell."""
        page, ttyd = self.new_terminal()
        again = self.page(f"session={page.session}&offset=0", greet=False)
        again.sendMessage(b'{"AuthToken":"","columns":132,"rows":40}', False)
        again.sendMessage(b"0ls\r", True)
        again.sendMessage(b"1" + b'{"columns":100,"rows":30}', True)
        self.flush()
        self.assertEqual(
            ttyd.messages[1:],
            [(b'1{"columns":132,"rows":40}', True), (b"0ls\r", True), (b'1{"columns":100,"rows":30}', True)],
        )

    def test_junk_greeting_dropped(self) -> None:
        """A later page's greeting that is not a size is not passed to the running shell."""
        page, ttyd = self.new_terminal()
        again = self.page(f"session={page.session}", greet=False)
        again.sendMessage(b"0rm -rf /\r", True)
        self.flush()
        self.assertEqual(ttyd.messages, [(GREETING, False)])

    def test_skipped_marker(self) -> None:
        """Output past the buffer while detached: the page is told how much it missed, then gets the tail."""
        self.bridge = self.make_bridge(buffer_size=100)
        page, ttyd = self.new_terminal()
        self.output(ttyd, b"start\r\n")
        page.sendClose(1000)
        self.flush()
        for n in range(30):
            self.output(ttyd, b"%03d......\r\n" % n)
        again = self.resume(page)
        [announced] = again.announced
        self.assertEqual(announced["skipped"] + 7, announced["offset"])
        self.assertEqual(len(again.output), 7 + 30 * 11 - announced["offset"])
        self.assertTrue(again.output.startswith(b"0"), again.output)  # a clean line
        self.assertTrue(again.output.endswith(b"029......\r\n"))
        [info] = self.bridge.terminals()
        self.assertEqual(info.skipped_bytes, 7 + 30 * 11 - 100)
        self.assertEqual(info.buffered_bytes, 100)

    def test_ahead_clamped(self) -> None:
        """An offset past all output is clamped to the end (the page is told where it is)."""
        page, ttyd = self.new_terminal()
        self.output(ttyd, b"abc")
        again = self.page(f"session={page.session}&offset=999999")
        self.assertEqual(again.announced[0]["offset"], 3)
        self.assertEqual(again.output, b"")
        self.output(ttyd, b"d")
        self.assertEqual(again.output, b"d")


class RefusalTests(SessionTestCase):
    """Bad and unknown resume requests."""

    def test_unknown_terminal(self) -> None:
        """An unknown id gets 4003, never some other shell."""
        self.new_terminal()
        page = self.page("session=nosuchterminal&offset=0")
        self.assertEqual(page.closed, (True, 4003, "this terminal no longer exists"))
        self.assertEqual(page.messages, [])
        self.assertEqual(len(self.connects), 1)

    def test_bad_parameters(self) -> None:
        """Forged parameters are refused with 1008 and a reason; nothing crashes, nothing is made."""
        for query, reason in [
            ("session=term1&offset=-5", "'offset' must be a byte count (digits only)"),
            ("session=term1&offset=1e9", "'offset' must be a byte count (digits only)"),
            ("offset=3", "'offset' needs 'session'"),
            ("session=new&offset=0", "a new terminal takes no 'offset'"),
            ("session=a%2Fb", "'session' is not a terminal id"),
            ("session=a&session=b", "'session' and 'offset' may appear once each"),
        ]:
            page = self.page(query)
            self.assertEqual(page.closed, (True, 1008, reason), query)
        self.assertEqual(self.connects, [])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_attaching_a_thousand_times_a_second(self) -> None:
        """A client attaching 1,000 times a second is refused with 1013 past the rate; the page stays."""
        page, ttyd = self.new_terminal()
        accepted = 0
        for _ in range(1000):
            other = self.page(f"session={page.session}&offset=0", greet=False)
            if other.opened and other.closed is None:
                accepted += 1
                other.sendClose(1000)
            else:
                self.assertEqual(other.closed, (True, 1013, "too many attempts to attach; try again in a moment"))
            self.clock.advance(0.001)
            self.flush()
        self.assertLessEqual(accepted, 10 + 2)
        self.assertIsNone(page.closed)
        page.sendMessage(b"0still here\r", True)
        self.output(ttyd, b"echo")
        self.assertEqual(ttyd.messages[-1], (b"0still here\r", True))
        self.assertTrue(page.output.endswith(b"echo"))
        self.assertEqual(len(self.bridge.connections), 1)

    def test_unknown_ids_share_one_bucket(self) -> None:
        """Guessing ids in a loop is limited like attaching (and the table of rates does not grow)."""
        closes = []
        for n in range(50):
            closes.append(self.page(f"session=guess{n}").closed)
        self.assertEqual(closes[:10], [(True, 4003, "this terminal no longer exists")] * 10)
        self.assertEqual(set(closes[10:]), {(True, 1013, "too many attempts to attach; try again in a moment")})

    def test_too_many_windows(self) -> None:
        """More than ``max_clients`` sockets on one terminal: 1013 for the next one."""
        self.bridge = self.make_bridge(max_clients=2)
        page, _ = self.new_terminal()
        self.resume(page, 0)
        third = self.resume(page, 0)
        self.assertEqual(third.closed, (True, 1013, "this terminal is open in too many windows"))


class TwoPagesTests(SessionTestCase):
    """A second tab or device: both stay attached."""

    def test_both_see_and_type(self) -> None:
        """Output goes to both; input from both reaches the one shell; one leaving leaves the other attached."""
        one, ttyd = self.new_terminal()
        two = self.resume(one, 0)
        self.output(ttyd, b"$ ")
        self.assertEqual((one.output, two.output), (b"$ ", b"$ "))
        one.sendMessage(b"0a", True)
        two.sendMessage(b"0b", True)
        self.flush()
        self.assertEqual(ttyd.messages[-2:], [(b"0a", True), (b"0b", True)])
        one.sendClose(1000)
        self.flush()
        self.output(ttyd, b"more")
        self.assertEqual(two.output, b"$ more")
        [info] = self.bridge.terminals()
        self.assertEqual((info.state, info.clients, info.expires_at), ("attached", 1, None))

    def test_slowest_page_sets_the_pace(self) -> None:
        """Reading ttyd stops while any attached page does not keep up; it goes on when that page leaves."""
        one, _ = self.new_terminal()
        two = self.resume(one, 0)
        upstream: Any = self.bridge.sessions.get("term1").upstream.transport  # type: ignore[union-attr]
        slow: Any = self.server_transports[two].producer
        slow.pauseProducing()
        self.assertTrue(upstream.paused)
        self.assertTrue(self.bridge.terminals()[0].paused)
        self.assertEqual(self.bridge.paused_terminals(), 1)
        two.sendClose(1000)
        self.flush()
        self.assertFalse(upstream.paused)
        self.assertFalse(self.bridge.terminals()[0].paused)

    def test_ttyd_not_reading_pauses_every_page(self) -> None:
        """ttyd's full input buffer stops reading from every attached page, and a page attaching then."""
        one, _ = self.new_terminal()
        upstream: Any = self.bridge.sessions.get("term1").upstream.transport  # type: ignore[union-attr]
        upstream.producer.pauseProducing()
        two = self.resume(one, 0)
        self.assertTrue(self.server_transports[one].paused)
        self.assertTrue(self.server_transports[two].paused)
        upstream.producer.resumeProducing()
        self.assertFalse(self.server_transports[one].paused)
        self.assertFalse(self.server_transports[two].paused)


class EndTests(SessionTestCase):
    """How terminals end."""

    def test_grace_period(self) -> None:
        """No page for the grace period: ttyd's session is closed (it hangs up the shell), the id is gone."""
        page, ttyd = self.new_terminal()
        page.sendClose(1000)
        self.flush()
        self.clock.advance(self.grace - 1)
        self.flush()
        self.assertIsNone(ttyd.closed)
        self.clock.advance(1)
        self.flush()
        self.assertEqual(ttyd.closed, (True, 1000, None))
        self.assertEqual(self.bridge.terminals(), [])
        again = self.resume(page)
        self.assertEqual(again.closed, (True, 4003, "this terminal no longer exists"))

    def test_reattach_stops_the_clock(self) -> None:
        """A page coming back within the grace period keeps the terminal past it."""
        page, ttyd = self.new_terminal()
        page.sendClose(1000)
        self.flush()
        self.clock.advance(self.grace - 1)
        again = self.resume(page)
        self.clock.advance(self.grace * 3)
        self.flush()
        self.assertIsNone(ttyd.closed)
        self.assertIsNone(again.closed)

    def test_grace_zero(self) -> None:
        """``grace=0``: the terminal ends with its last page, as a plain client's does."""
        self.bridge = self.make_bridge(grace=0)
        page, ttyd = self.new_terminal()
        page.sendClose(1000)
        self.flush()
        self.assertEqual(ttyd.closed, (True, 1000, None))
        self.assertEqual(self.bridge.terminals(), [])

    def test_shell_exits_while_detached(self) -> None:
        """A shell that exits with nobody attached is kept: a page coming back sees its output, then 1000."""
        page, ttyd = self.new_terminal()
        page.sendClose(1000)
        self.flush()
        self.output(ttyd, b"logout\r\n")
        ttyd.sendClose(1000)
        self.flush()
        [info] = self.bridge.terminals()
        self.assertEqual((info.state, info.close_code), ("ended", 1000))
        again = self.resume(page)
        self.assertEqual(again.output, b"logout\r\n")
        self.assertEqual(again.closed, (True, 1000, "the shell exited"))
        self.clock.advance(self.grace)
        self.assertEqual(self.bridge.terminals(), [])

    def test_shell_fails_while_attached(self) -> None:
        """A shell exiting non-zero: the page gets its last output and 4000; the terminal stays, ended."""
        page, ttyd = self.new_terminal()
        ttyd.sendMessage(b"0bye\r\n", True)
        ttyd.sendCloseFrame(1006)
        self.flush()
        self.assertEqual(page.output, b"bye\r\n")
        self.assertEqual(page.closed, (True, 4000, "the shell exited with an error"))
        self.assertEqual(self.bridge.terminals()[0].close_code, 4000)
        self.assertTrue(self.bridge.end_terminal("term1"))
        self.assertEqual(self.bridge.terminals(), [])
        self.flushLoggedErrors()

    def test_closed_by_the_student(self) -> None:
        """Closing the tab ends the shell; pages attached elsewhere get 4003."""
        page, ttyd = self.new_terminal()
        other = self.resume(page, 0)
        self.assertTrue(self.bridge.end_terminal("term1"))
        self.flush()
        self.assertEqual(ttyd.closed, (True, 1000, None))
        self.assertEqual([page.closed, other.closed], [(True, 4003, "this terminal was closed")] * 2)
        self.assertFalse(self.bridge.end_terminal("term1"))

    def test_ttyd_restart(self) -> None:
        """ttyd restarting ends every terminal: attached pages get 4002, coming back gets 4003."""
        attached, _ = self.new_terminal()
        detached, _ = self.new_terminal()
        detached.sendClose(1000)
        self.flush()
        self.supervisor.set("restarting")
        self.flush()
        self.assertEqual(attached.closed, (True, 4002, "terminal restarting"))
        self.assertEqual(self.bridge.terminals(), [])
        self.supervisor.set("running")
        for page in (attached, detached):
            self.assertEqual(self.resume(page).closed, (True, 4003, "this terminal no longer exists"))

    def test_upstream_lost(self) -> None:
        """ttyd's connection dropping without a close frame ends the terminal with 4002 (nothing to come back to)."""
        page, ttyd = self.new_terminal()
        transport: Any = ttyd.transport
        transport.loseConnection()
        self.flush()
        self.assertEqual(page.closed, (True, 4002, "terminal restarting: the connection to ttyd was lost"))
        self.assertEqual(self.bridge.terminals(), [])

    def test_shutdown(self) -> None:
        """Stopping the bridge ends every terminal: 1001 to pages, ttyd's sessions closed."""
        page, ttyd = self.new_terminal()
        _, detached_ttyd = self.new_terminal()
        d = self.bridge.stopService()
        self.flush()
        self.assertEqual(page.closed, (True, 1001, "backend shutting down"))
        self.assertEqual([ttyd.closed, detached_ttyd.closed], [(True, 1000, None)] * 2)
        self.successResultOf(d)
        self.assertEqual(self.bridge.terminals(), [])


class HeartbeatTests(SessionTestCase):
    """``S{"ping": n}`` from a page that asked for sessions."""

    def test_answered_not_forwarded(self) -> None:
        """The backend answers a heartbeat itself; ttyd never sees it."""
        page, ttyd = self.new_terminal()
        page.sendMessage(b'S{"ping":42}', True)
        self.flush()
        self.assertEqual(page.controls, [b'S{"pong":42}'])
        self.assertEqual(ttyd.messages, [(GREETING, False)])

    def test_plain_clients_untouched(self) -> None:
        """A plain client's messages all reach ttyd, whatever their first byte."""
        browser, ttyd = self.session()
        browser.sendMessage(GREETING, False)
        browser.sendMessage(b'S{"ping":42}', True)
        self.flush()
        self.assertEqual(ttyd.messages, [(GREETING, False), (b'S{"ping":42}', True)])
        self.assertEqual(browser.messages, [])


class DetachedPaceTests(SessionTestCase):
    """Reading a terminal nobody watches, at ``detached_read_rate``."""

    def test_paced_while_detached(self) -> None:
        """Past the rate, reading stops for the time that brings it back to the rate; attaching ends that."""
        self.bridge = self.make_bridge(detached_read_rate=10_000)
        page, ttyd = self.new_terminal()
        upstream: Any = self.bridge.sessions.get("term1").upstream.transport  # type: ignore[union-attr]
        page.sendClose(1000)
        self.flush()
        for _ in range(3):
            ttyd.sendMessage(b"0" + b"y" * 4999, True)
        self.flush()
        self.clock.advance(COALESCE_DELAY)
        self.flush()
        self.assertTrue(upstream.paused)
        self.assertFalse(self.bridge.terminals()[0].paused)  # paced, not held back by a page
        self.clock.advance(0.6)
        self.flush()
        self.assertFalse(upstream.paused)
        ttyd.sendMessage(b"0" + b"y" * 9999, True)
        self.flush()
        self.clock.advance(COALESCE_DELAY)
        self.flush()
        self.assertTrue(upstream.paused)
        again = self.resume(page)
        self.assertFalse(upstream.paused)
        self.assertEqual(again.offset, 3 * 4999 + 9999)

    def test_attached_not_paced(self) -> None:
        """With a page attached, output flows at whatever rate the page keeps up with."""
        self.bridge = self.make_bridge(detached_read_rate=1000)
        page, ttyd = self.new_terminal()
        upstream: Any = self.bridge.sessions.get("term1").upstream.transport  # type: ignore[union-attr]
        for _ in range(5):
            ttyd.sendMessage(b"0" + b"y" * 5000, True)
        self.flush()
        self.clock.advance(COALESCE_DELAY)
        self.flush()
        self.assertFalse(upstream.paused)
        self.assertEqual(page.offset, 25_000)


class GatherTests(SessionTestCase):
    """Bulk output is gathered for the browsers' sake only."""

    def test_gathered_while_attached(self) -> None:
        """With a page attached, a burst waits up to COALESCE_DELAY, and is kept when it goes out."""
        _, ttyd = self.new_terminal()
        ttyd.sendMessage(b"0" + b"q" * 5000, True)
        self.flush()
        self.assertEqual(self.bridge.terminals()[0].output_bytes, 0)
        self.clock.advance(COALESCE_DELAY)
        self.flush()
        self.assertEqual(self.bridge.terminals()[0].output_bytes, 5000)

    def test_not_gathered_while_detached(self) -> None:
        """With nobody attached, a burst is kept at once (gathering would only make big buffers)."""
        page, ttyd = self.new_terminal()
        page.sendClose(1000)
        self.flush()
        ttyd.sendMessage(b"0" + b"q" * 5000, True)
        self.flush()
        self.assertEqual(self.bridge.terminals()[0].output_bytes, 5000)
        session = self.bridge.sessions.get("term1")
        assert session is not None and session.upstream is not None
        self.assertIsNone(session.upstream._flush_call)


class MemoryTests(SessionTestCase):
    """What the terminals hold, as the metrics and the API report it."""

    def test_buffered_bytes(self) -> None:
        """A detached terminal holds its buffer (at most ``buffer_size``); the bridge adds every terminal."""
        self.bridge = self.make_bridge(buffer_size=1000)
        page, ttyd = self.new_terminal()
        page.sendClose(1000)
        self.flush()
        for _ in range(10):
            self.output(ttyd, b"z" * 500)
        [info] = self.bridge.terminals()
        self.assertEqual((info.buffered_bytes, info.output_bytes, info.skipped_bytes), (1000, 5000, 4000))
        self.assertEqual(self.bridge.buffered_bytes(), 1000)
        again = self.resume(page)
        self.assertEqual(again.announced[0]["skipped"], 4000)
        self.assertEqual(len(again.output), 1000)
