"""Prometheus metrics, served on their own listener (``--metrics-listen``, off by default).

:class:`Metrics` owns a private :class:`prometheus_client.CollectorRegistry`
(no module globals, so tests and several instances never collide) and has
one method per thing that happened; the wiring calls them.  Its
:meth:`Metrics.resource` serves ``GET /metrics`` in the Prometheus text
format.  That resource is meant for a separate endpoint, never mounted in
the student's site: it needs no token and must not be reachable from the
student's origin.  When metrics are off nothing here is imported or called
(prometheus_client costs ~1.4 MB RSS): the runtime, the site and the bridge
then report to nobody.

Metric names (all prefixed ``workshop_``):

- ``http_requests_total{route,method,status}`` and
  ``http_request_duration_seconds{route}``: ``route`` is the template of the
  route Klein matched (``/api/v1/steps/{step_id}``; ``other`` for none),
  never a raw path, so the label set stays small;
- ``terminals_open``, ``terminals_opened_total``,
  ``terminals_closed_total{code}`` (browser sockets);
- ``terminal_sessions{state}`` (the workspace's terminals: ``attached``,
  ``detached``, ``ended``), ``terminal_buffered_bytes`` (output kept for
  pages that come back, and write buffers), ``terminals_paused`` (shells held
  back by a browser that does not keep up);
- ``ttyd_restarts_total``, ``ttyd_up``;
- ``validations_total{step,result,trigger}`` and
  ``validation_duration_seconds{step}``;
- ``navigations_total{action,result}``;
- ``backend_info{version,workshop,workshop_version,step}`` (always 1);
- the process collector's ``process_*`` (RSS, CPU, open fds) and Python's
  ``python_gc_*``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import Site

from workshop_backend.http.listening import EndpointService
from workshop_backend.workshop.navigation import NAVIGATION_ACTIONS

CLOSE_CODES = frozenset({1000, 1001, 1006, 1008, 1011, 1013, 4000, 4001, 4002, 4003, 4005})
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
VALIDATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """The daemon's metrics in a registry of their own.

    :param info: labels of ``workshop_backend_info`` (``version``,
        ``workshop``, ``workshop_version``, ``step``).
    :param registry: a :class:`prometheus_client.CollectorRegistry`; a new
        one by default.
    :param process: also collect ``process_*`` (from ``/proc/self``) and
        ``python_gc_*``.
    """

    def __init__(self, info: Mapping[str, str] | None = None, *, registry: Any = None, process: bool = True) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        from prometheus_client.gc_collector import GCCollector
        from prometheus_client.process_collector import ProcessCollector

        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        if process:
            ProcessCollector(registry=r)
            GCCollector(registry=r)
        labels = dict(info or {})
        names = sorted(labels)
        self._info = Gauge(
            "workshop_backend_info", "Version and workshop of this backend (always 1).", names, registry=r
        )
        if names:
            self._info.labels(**labels).set(1)
        else:
            self._info.set(1)
        self._requests = Counter(
            "workshop_http_requests", "HTTP requests answered.", ["route", "method", "status"], registry=r
        )
        self._request_seconds = Histogram(
            "workshop_http_request_duration_seconds",
            "Time from the request's headers to its log line.",
            ["route"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self._open = Gauge("workshop_terminals_open", "Browser terminals open now.", registry=r)
        self._opened = Counter("workshop_terminals_opened", "Browser terminals accepted.", registry=r)
        self._closed = Counter(
            "workshop_terminals_closed", "Browser terminals closed, by the close code sent.", ["code"], registry=r
        )
        self._sessions = Gauge(
            "workshop_terminal_sessions", "The workspace's terminals, by state.", ["state"], registry=r
        )
        self._buffered = Gauge(
            "workshop_terminal_buffered_bytes",
            "Bytes the terminals hold: output kept for pages that come back, write buffers, queued input.",
            registry=r,
        )
        self._paused = Gauge(
            "workshop_terminals_paused", "Terminals whose output waits for a browser that does not keep up.", registry=r
        )
        self._restarts = Counter("workshop_ttyd_restarts", "Times ttyd was started again after it ended.", registry=r)
        self._ttyd_up = Gauge("workshop_ttyd_up", "1 while ttyd answers, else 0.", registry=r)
        self._validations = Counter(
            "workshop_validations", "Evaluations of a step's rules.", ["step", "result", "trigger"], registry=r
        )
        self._validation_seconds = Histogram(
            "workshop_validation_duration_seconds",
            "Time to evaluate a step's rules.",
            ["step"],
            buckets=VALIDATION_BUCKETS,
            registry=r,
        )
        self._navigations = Counter(
            "workshop_navigations", "Navigation requests, by action and result.", ["action", "result"], registry=r
        )
        self._last_restarts: int | None = None
        self._open_from_count = False

    # --- what happened --------------------------------------------------------------

    def observe_request(self, route: str, status: int, seconds: float, method: str = "GET") -> None:
        """One HTTP request answered, counted under its route template (``/api/v1/steps/{step_id}``)."""
        method = method if method in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH") else "other"
        self._requests.labels(route=route, method=method, status=str(status)).inc()
        self._request_seconds.labels(route=route).observe(max(seconds, 0.0))

    def terminal_opened(self) -> None:
        """A browser terminal was accepted."""
        self._opened.inc()
        if not self._open_from_count:
            self._open.inc()

    def terminal_closed(self, code: int | None = None) -> None:
        """A browser terminal closed; call once per :meth:`terminal_opened`."""
        if not self._open_from_count:
            self._open.dec()
        label = str(code) if code in CLOSE_CODES else ("none" if code is None else "other")
        self._closed.labels(code=label).inc()

    def count_open_terminals(self, count: Callable[[], int]) -> None:
        """Read ``workshop_terminals_open`` from ``count()`` at each scrape (e.g. ``len(bridge.connections)``).

        Needs no hook in the bridge; :meth:`terminal_opened`/:meth:`terminal_closed`
        then only count (``*_opened_total``, ``*_closed_total``).
        """
        self._open_from_count = True
        self._open.set_function(lambda: float(count()))

    def watch_terminals(
        self,
        states: Callable[[], Mapping[str, int]],
        buffered: Callable[[], int],
        paused: Callable[[], int],
    ) -> None:
        """Read the terminal gauges at each scrape: terminals by state, bytes held, terminals held back."""

        def count(state: str) -> Callable[[], float]:
            return lambda: float(states().get(state, 0))

        for state in ("attached", "detached", "ended"):
            self._sessions.labels(state=state).set_function(count(state))
        self._buffered.set_function(lambda: float(buffered()))
        self._paused.set_function(lambda: float(paused()))

    def ttyd_restarted(self) -> None:
        """The supervisor started ttyd again after it ended."""
        self._restarts.inc()

    def terminal_status(self, status: Mapping[str, Any]) -> None:
        """A supervisor status: counts restarts by their increase, and whether ttyd is up.

        Add as a supervisor listener (``supervisor.add_listener(metrics.terminal_status)``)
        instead of calling :meth:`ttyd_restarted` from the supervisor.
        """
        restarts = status.get("restarts")
        if isinstance(restarts, int):
            if self._last_restarts is not None and restarts > self._last_restarts:
                self._restarts.inc(restarts - self._last_restarts)
            self._last_restarts = restarts
        self._ttyd_up.set(1 if status.get("state") == "running" else 0)

    def validation(self, step: str, passed: bool, seconds: float, trigger: str = "request") -> None:
        """One evaluation of ``step``'s rules (``trigger``: request, gate, watch)."""
        self._validations.labels(step=step, result="passed" if passed else "failed", trigger=trigger).inc()
        self._validation_seconds.labels(step=step).observe(max(seconds, 0.0))

    def navigation(self, action: str, ok: bool = True) -> None:
        """One navigation request; ``ok`` False when it was refused (a 4xx)."""
        action = action if action in NAVIGATION_ACTIONS else "other"
        self._navigations.labels(action=action, result="ok" if ok else "refused").inc()

    # --- serving ---------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))

    def resource(self) -> Resource:
        """A resource tree serving ``/metrics`` only (for its own listener)."""
        root = Resource()
        root.putChild(b"metrics", MetricsResource(self))
        return root


class MetricsResource(Resource):
    """``GET /metrics``: the Prometheus text format."""

    isLeaf = True

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def render_GET(self, request: IRequest) -> bytes:
        """Collect now and answer."""
        from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4

        if request.postpath not in ([], [b""]):
            request.setResponseCode(404)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"not found\n"
        request.setHeader(b"Content-Type", CONTENT_TYPE_PLAIN_0_0_4.encode("ascii"))
        request.setHeader(b"Cache-Control", b"no-store")
        return self.metrics.exposition()

    render_HEAD = render_GET


class MetricsSite(Site):
    """The Site of ``--metrics-listen``: no access log (a scrape every few seconds would drown it)."""

    noisy = False
    displayTracebacks = False

    def log(self, request: Any) -> None:
        """Scrapes are not logged."""


def make_metrics_site(metrics: Metrics) -> MetricsSite:
    """The Site to listen with on ``--metrics-listen``."""
    return MetricsSite(metrics.resource())


class MetricsListenService(EndpointService):
    """Listens on ``--metrics-listen``; a port it cannot take is fatal, like the main one."""

    def __init__(
        self, endpoint: IStreamServerEndpoint, metrics: Metrics, *, on_fatal: Callable[[str], None], description: str
    ) -> None:
        super().__init__(
            endpoint, make_metrics_site(metrics), on_fatal=on_fatal, description=f"{description} (--metrics-listen)"
        )

    def announce(self, address: Any) -> str:
        """Not "listening on ...": that line is the student's URL (tests and tools look for it)."""
        host = getattr(address, "host", None)
        where = f"http://{host}:{address.port}/metrics" if host is not None else f"{address} /metrics"
        self.log.info("metrics at {url}", url=where)
        return where
