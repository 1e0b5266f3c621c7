"""Tests for :mod:`workshop_backend.metrics`: what each call counts, and ``/metrics``."""

from __future__ import annotations

from typing import Any, cast

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from treq.testing import StubTreq
from twisted.logger import ILogObserver, Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from workshop_backend.metrics import Metrics, MetricsListenService, MetricsSite, make_metrics_site


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, keyed by name and sorted labels."""
    text = metrics.exposition().decode("utf-8")
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    """One sample's value, or None if absent."""
    return samples(metrics).get((name, tuple(sorted(labels.items()))))


def make(**kwargs: Any) -> Metrics:
    """Metrics without the process collector (its numbers change between calls)."""
    return Metrics(
        {"version": "0.1.0", "workshop": "w", "workshop_version": "1", "step": "one"}, process=False, **kwargs
    )


class MetricsTests(SynchronousTestCase):
    """Each method moves the right series."""

    def test_info(self) -> None:
        """The info series carries version and workshop, value 1."""
        m = make()
        self.assertEqual(
            value(m, "workshop_backend_info", version="0.1.0", workshop="w", workshop_version="1", step="one"), 1.0
        )

    def test_requests(self) -> None:
        """Requests count by route, method and status; durations land in the histogram."""
        m = make()
        m.observe_request("/api/v1/status", 200, 0.003)
        m.observe_request("/api/v1/status", 200, 0.004)
        m.observe_request("/api/v1/status", 401, 0.001, method="GET")
        m.observe_request("/api/v1/navigation", 409, 0.02, method="POST")
        m.observe_request("other", 404, 0.001, method="BREW")
        self.assertEqual(
            value(m, "workshop_http_requests_total", route="/api/v1/status", method="GET", status="200"), 2.0
        )
        self.assertEqual(
            value(m, "workshop_http_requests_total", route="/api/v1/navigation", method="POST", status="409"), 1.0
        )
        self.assertEqual(value(m, "workshop_http_requests_total", route="other", method="other", status="404"), 1.0)
        self.assertEqual(value(m, "workshop_http_request_duration_seconds_count", route="/api/v1/status"), 3.0)
        self.assertEqual(
            value(m, "workshop_http_request_duration_seconds_bucket", route="/api/v1/status", le="0.0025"), 1.0
        )
        self.assertAlmostEqual(
            value(m, "workshop_http_request_duration_seconds_sum", route="/api/v1/status") or 0.0, 0.008
        )

    def test_terminal_gauges(self) -> None:
        """The workspace's terminals by state, the bytes they hold, the shells held back: read at each scrape."""
        m = Metrics(process=False)
        states = {"attached": 2, "detached": 1}
        held = [4096]
        m.watch_terminals(lambda: states, lambda: held[0], lambda: 1)
        self.assertEqual(value(m, "workshop_terminal_sessions", state="attached"), 2.0)
        self.assertEqual(value(m, "workshop_terminal_sessions", state="detached"), 1.0)
        self.assertEqual(value(m, "workshop_terminal_sessions", state="ended"), 0.0)
        self.assertEqual(value(m, "workshop_terminal_buffered_bytes"), 4096.0)
        self.assertEqual(value(m, "workshop_terminals_paused"), 1.0)
        states["ended"] = 3
        held[0] = 10
        self.assertEqual(value(m, "workshop_terminal_sessions", state="ended"), 3.0)
        self.assertEqual(value(m, "workshop_terminal_buffered_bytes"), 10.0)

    def test_terminals(self) -> None:
        """Open terminals go up and down; closes count by (known) code."""
        m = make()
        m.terminal_opened()
        m.terminal_opened()
        m.terminal_closed(1000)
        self.assertEqual(value(m, "workshop_terminals_open"), 1.0)
        self.assertEqual(value(m, "workshop_terminals_opened_total"), 2.0)
        self.assertEqual(value(m, "workshop_terminals_closed_total", code="1000"), 1.0)
        m.terminal_closed(3999)
        m.terminal_opened()
        m.terminal_closed(None)
        self.assertEqual(value(m, "workshop_terminals_open"), 0.0)
        self.assertEqual(value(m, "workshop_terminals_closed_total", code="other"), 1.0)
        self.assertEqual(value(m, "workshop_terminals_closed_total", code="none"), 1.0)

    def test_ttyd_restarts_direct(self) -> None:
        """ttyd_restarted() counts one restart."""
        m = make()
        m.ttyd_restarted()
        m.ttyd_restarted()
        self.assertEqual(value(m, "workshop_ttyd_restarts_total"), 2.0)

    def test_ttyd_restarts_from_status(self) -> None:
        """As a supervisor listener: restarts count by their increase; up follows the state."""
        m = make()
        m.terminal_status({"state": "starting", "restarts": 0})
        self.assertEqual(value(m, "workshop_ttyd_up"), 0.0)
        m.terminal_status({"state": "running", "restarts": 0})
        self.assertEqual(value(m, "workshop_ttyd_up"), 1.0)
        m.terminal_status({"state": "restarting", "restarts": 0})
        m.terminal_status({"state": "starting", "restarts": 1})
        m.terminal_status({"state": "running", "restarts": 1})
        m.terminal_status({"state": "running", "restarts": 3})
        self.assertEqual(value(m, "workshop_ttyd_restarts_total"), 3.0)
        self.assertEqual(value(m, "workshop_ttyd_up"), 1.0)

    def test_validation(self) -> None:
        """Runs count by step, result and trigger; durations by step."""
        m = make()
        m.validation("intro", True, 0.2)
        m.validation("intro", False, 0.4, trigger="watch")
        m.validation("intro", False, 0.1, trigger="watch")
        self.assertEqual(value(m, "workshop_validations_total", step="intro", result="passed", trigger="request"), 1.0)
        self.assertEqual(value(m, "workshop_validations_total", step="intro", result="failed", trigger="watch"), 2.0)
        self.assertEqual(value(m, "workshop_validation_duration_seconds_count", step="intro"), 3.0)
        self.assertEqual(value(m, "workshop_validation_duration_seconds_bucket", step="intro", le="0.25"), 2.0)

    def test_navigation(self) -> None:
        """Navigation counts by action and result; unknown actions are 'other'."""
        m = make()
        m.navigation("next")
        m.navigation("next", ok=False)
        m.navigation("fly")
        self.assertEqual(value(m, "workshop_navigations_total", action="next", result="ok"), 1.0)
        self.assertEqual(value(m, "workshop_navigations_total", action="next", result="refused"), 1.0)
        self.assertEqual(value(m, "workshop_navigations_total", action="other", result="ok"), 1.0)

    def test_own_registry(self) -> None:
        """Two instances do not collide (no global registry), and a given registry is used."""
        one, two = make(), make()
        one.navigation("next")
        self.assertIsNone(value(two, "workshop_navigations_total", action="next", result="ok"))
        registry = CollectorRegistry()
        three = make(registry=registry)
        self.assertIs(three.registry, registry)

    def test_process_collector(self) -> None:
        """With process=True the process's memory is exported."""
        m = Metrics(process=True)
        names = {name for name, _ in samples(m)}
        self.assertIn("process_resident_memory_bytes", names)
        self.assertIn("workshop_backend_info", names)


class ResourceTests(SynchronousTestCase):
    """``/metrics`` over HTTP, in memory."""

    def test_scrape(self) -> None:
        """GET /metrics answers the text format with the current values."""
        m = make()
        m.navigation("jump")
        client: Any = StubTreq(m.resource())
        response = self.successResultOf(client.get("http://metrics.invalid/metrics"))
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"text/plain; version=0.0.4; charset=utf-8"])
        body = self.successResultOf(response.text())
        self.assertIn('workshop_navigations_total{action="jump",result="ok"} 1.0', body)

    def test_only_metrics(self) -> None:
        """Nothing else is served: not /, not /metrics/x, not the student's API."""
        client: Any = StubTreq(make().resource())
        for path in ("/", "/metrics/x", "/api/v1/status", "/healthz"):
            response = self.successResultOf(client.get("http://metrics.invalid" + path))
            self.assertEqual(response.code, 404, path)

    def test_site_is_quiet(self) -> None:
        """The metrics Site writes no access log and shows no tracebacks."""
        site = make_metrics_site(make())
        self.assertFalse(site.noisy)
        self.assertFalse(site.displayTracebacks)
        client: Any = StubTreq(site.resource)
        response = self.successResultOf(client.get("http://metrics.invalid/metrics"))
        self.assertEqual(response.code, 200)


class OpenTerminalsTests(SynchronousTestCase):
    """The open-terminals gauge can read a count instead of being told."""

    def test_count_function(self) -> None:
        """The gauge shows the count at scrape time."""
        m = make()
        connections = {1, 2, 3}
        m.count_open_terminals(lambda: len(connections))
        self.assertEqual(value(m, "workshop_terminals_open"), 3.0)
        connections.clear()
        self.assertEqual(value(m, "workshop_terminals_open"), 0.0)

    def test_count_function_and_events(self) -> None:
        """With a count function, opened/closed still count but leave the gauge to the function."""
        m = make()
        connections = {1}
        m.count_open_terminals(lambda: len(connections))
        m.terminal_opened()
        m.terminal_closed(1001)
        m.terminal_closed(1001)
        self.assertEqual(value(m, "workshop_terminals_open"), 1.0)
        self.assertEqual(value(m, "workshop_terminals_opened_total"), 1.0)
        self.assertEqual(value(m, "workshop_terminals_closed_total", code="1001"), 2.0)


class ListenServiceTests(SynchronousTestCase):
    """``--metrics-listen``: listens with the metrics site; a port it cannot take is fatal."""

    def test_listens(self) -> None:
        """Starting listens on the endpoint with the quiet metrics Site; stopping stops."""
        from twisted.internet.endpoints import TCP4ServerEndpoint
        from twisted.internet.testing import MemoryReactor

        reactor = MemoryReactor()
        fatal: list[str] = []
        service = MetricsListenService(
            TCP4ServerEndpoint(reactor, 9100, interface="127.0.0.1"),
            make(),
            on_fatal=fatal.append,
            description="tcp:9100",
        )
        service.startService()
        self.assertEqual(len(reactor.tcpServers), 1)
        port, factory, _backlog, interface = reactor.tcpServers[0]
        self.assertEqual((port, interface), (9100, "127.0.0.1"))
        self.assertIsInstance(factory, MetricsSite)
        self.assertEqual(fatal, [])
        lines: list[str] = []
        service.log = Logger(observer=cast(ILogObserver, lambda event: lines.append(formatEvent(event))))
        service.stopService()
        # (MemoryReactor's ports say 0.0.0.0 whatever the interface.)
        self.assertEqual(lines, ["stopped accepting connections on http://0.0.0.0:9100/metrics"])

    def test_cannot_listen(self) -> None:
        """A port already taken stops the daemon with one line naming the option."""
        from twisted.internet.defer import fail
        from twisted.internet.error import CannotListenError

        class Taken:
            def listen(self, factory: object) -> Any:
                return fail(CannotListenError("127.0.0.1", 9100, OSError(98, "Address already in use")))

        fatal: list[str] = []
        service = MetricsListenService(Taken(), make(), on_fatal=fatal.append, description="tcp:9100")  # type: ignore[arg-type]
        service.startService()
        self.assertEqual(len(fatal), 1)
        self.assertIn("--metrics-listen", fatal[0])
        self.assertIn("tcp:9100", fatal[0])
