"""``twistd workshop-backend``: the options and the wiring.

:class:`Options` parses the flags of contract section 2 (each with its
environment variable) and checks them all, distribution included, in
``postOptions``; :func:`makeService` only builds objects and plugs them
together.  The console script (:mod:`workshop_backend.main`) uses the same
two functions, so both ways of starting behave the same.
"""

from __future__ import annotations

import os
import shlex
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from twisted.python import usage

from workshop_backend import __version__
from workshop_backend.config import Settings, resolve

if TYPE_CHECKING:
    from twisted.web.server import Site

    from workshop_backend.application.runtime import WorkshopRuntime
    from workshop_backend.metrics import Metrics
    from workshop_backend.services import BackendService
    from workshop_backend.state.store import Store
    from workshop_backend.support.reactor import IBackendReactor
    from workshop_backend.terminal.bridge import TerminalBridge
    from workshop_backend.workshop.assets import Asset


class Options(usage.Options):
    """The daemon's options; every flag also has an environment variable."""

    synopsis = "[options]"
    longdesc = (
        "Serve one workshop step: instructions, a terminal (ttyd) and checks. "
        "Flags win over environment variables, which win over defaults."
    )
    optFlags = [
        ["demo", None, "Serve the embedded demo workshop instead of --distribution."],
        ["fresh", None, "Ignore an existing working copy; copy the distribution afresh."],
    ]
    optParameters = [
        ["listen", None, None, "Twisted server endpoint [WORKSHOP_LISTEN; default tcp:8080]."],
        [
            "distribution",
            None,
            None,
            "The read-only distribution SQLite [WORKSHOP_DISTRIBUTION; default /etc/workshop/workshop.sqlite].",
        ],
        [
            "state-dir",
            None,
            None,
            "Where the working copy and ttyd's socket live [WORKSHOP_STATE_DIR; default /var/lib/workshop, "
            "else a temp dir].",
        ],
        ["step", None, None, "The step this container runs [WORKSHOP_STEP; default the first step]."],
        ["ttyd", None, None, "The ttyd binary [WORKSHOP_TTYD; default ttyd on PATH]."],
        ["shell", None, None, "The command each terminal runs [WORKSHOP_SHELL; default $SHELL, /bin/bash, /bin/sh]."],
        ["auth", None, None, "'token' or 'none' (a trusted authenticating proxy in front) [WORKSHOP_AUTH]."],
        [
            "token-file",
            None,
            None,
            "File holding the access token [WORKSHOP_TOKEN_FILE; or WORKSHOP_TOKEN, the token itself; "
            "default: generated and logged once as a URL].",
        ],
        ["log-format", None, None, "'text' or 'json' (one JSON object per line) [WORKSHOP_LOG_FORMAT]."],
        [
            "terminal-grace",
            None,
            None,
            "How long a terminal with no browser attached keeps its shell: seconds, or 90s, 30m, 2h; "
            "0 ends it with its last browser [WORKSHOP_TERMINAL_GRACE; default 30m].",
        ],
        [
            "metrics-listen",
            None,
            None,
            "Serve Prometheus metrics at /metrics on this endpoint, never the student's "
            "[WORKSHOP_METRICS_LISTEN; default off].",
        ],
    ]

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.allowed_hosts: list[str] = []
        self.allowed_origins: list[str] = []
        self.settings: Settings | None = None

    def opt_allowed_host(self, value: str) -> None:
        """Host header allowlist, repeatable; '*' allows any [WORKSHOP_ALLOWED_HOSTS, comma list]."""
        self.allowed_hosts.append(value)

    def opt_allowed_origin(self, value: str) -> None:
        """An extra allowed origin (an LMS embedding the page), repeatable [WORKSHOP_ALLOWED_ORIGINS]."""
        self.allowed_origins.append(value)

    def opt_version(self) -> None:
        """Print the version and exit."""
        print(f"workshop-backend {__version__}")
        raise SystemExit(0)

    # usage.Options shows these methods' docstrings as help; the bundle runs
    # with -OO, which strips docstrings, so say it again as plain strings.
    opt_version.__doc__ = "Print the version and exit."
    opt_allowed_host.__doc__ = "Host header allowlist, repeatable; '*' allows any [WORKSHOP_ALLOWED_HOSTS, comma list]."
    opt_allowed_origin.__doc__ = (
        "An extra allowed origin (an LMS embedding the page), repeatable [WORKSHOP_ALLOWED_ORIGINS]."
    )

    def postOptions(self) -> None:
        """Check everything now: a bad start must stop before anything listens."""
        self.settings = resolve(
            self, self.environ, allowed_hosts=self.allowed_hosts, allowed_origins=self.allowed_origins
        )


def makeService(options: Options, reactor: IBackendReactor | None = None) -> BackendService:
    """Wire the daemon together (no I/O happens here).

    The modules are imported here rather than at the top, so that ``--help``
    (and twistd's plugin scan) never pays for them; the HTTP stack is built
    (and Klein imported) only when the listener starts, after ttyd and the
    working copy have got going, and the terminal bridge (Autobahn) on the
    first terminal socket.
    """
    from twisted.internet.defer import Deferred
    from twisted.internet.endpoints import serverFromString

    from workshop_backend.application.events import EventHub
    from workshop_backend.application.runtime import Collaborators, WorkshopRuntime
    from workshop_backend.content.renderer import ProcessRenderer
    from workshop_backend.http.security import Guard
    from workshop_backend.http.tickets import Tickets
    from workshop_backend.http.views import event_data
    from workshop_backend.services import BackendService, ListenService, ReadinessProbe, WorkingCopyService
    from workshop_backend.state.assets import AssetStore
    from workshop_backend.support.reactor import global_reactor
    from workshop_backend.terminal.lazy import LazyBridge
    from workshop_backend.terminal.supervisor import TtydSupervisor
    from workshop_backend.terminal.ttydbin import TtydNotFound, find_ttyd, verify_bundled
    from workshop_backend.validation.runner import Validator
    from workshop_backend.validation.setup import SetupRunner

    reactor = reactor if reactor is not None else global_reactor()
    settings = options.settings
    assert settings is not None, "parseOptions() checks the options first"
    workshop = settings.distribution.workshop
    # What the student's shell and the checks see: our environment minus the
    # access token (``env`` in the terminal must not print it).
    environ = {k: v for k, v in settings.env.items() if k not in ("WORKSHOP_TOKEN", "WORKSHOP_TOKEN_FILE")}
    if settings.demo:
        # The practice folder is also HOME: the prompt reads "~" rather than a
        # long path, and the demo's shells never run your own ~/.profile.
        environ["HOME"] = settings.workdir

    try:
        ttyd = find_ttyd(settings.ttyd, fallback_dir=settings.state_dir / "bin")
    except TtydNotFound as e:
        ttyd = settings.ttyd or "ttyd"
        missing_ttyd: str | None = str(e)
    else:
        missing_ttyd = None
    supervisor = TtydSupervisor(
        reactor=reactor,
        ttyd=ttyd,
        shell=shlex.join(settings.shell),
        state_dir=settings.state_dir,
        cwd=settings.workdir,
        env=environ,
        verify=lambda: verify_bundled(ttyd),
    )
    # Metrics only with --metrics-listen (prometheus_client is imported then).
    metrics: Metrics | None = None
    if settings.metrics_listen is not None:
        from workshop_backend.metrics import Metrics

        info = {"version": __version__, "workshop": workshop.id, "workshop_version": workshop.version}
        metrics = Metrics({**info, "step": settings.step})
        supervisor.add_listener(metrics.terminal_status)
    hub = EventHub(serialize=event_data)
    validator = Validator(reactor, cwd=settings.workdir, env=environ)
    setup_runner = SetupRunner(reactor, cwd=settings.workdir, env=environ, log_dir=settings.state_dir / "setup")

    def asset_url(asset: Asset) -> str:
        from workshop_backend.http.assets import asset_url

        return asset_url(asset)

    # Every step and hint rendered in a child process: the markdown stack never lives in the daemon.
    renderer = ProcessRenderer(reactor, workshop, asset_url=asset_url)
    guard = Guard(
        auth=settings.auth,
        token=settings.token,
        allowed_hosts=settings.allowed_hosts,
        allowed_origins=settings.allowed_origins,
        tickets=Tickets(reactor.seconds),
    )

    def make_bridge() -> TerminalBridge:
        from workshop_backend.terminal.bridge import TerminalBridge

        return TerminalBridge(
            supervisor,
            reactor,
            check_handshake=guard.check_handshake,
            grace=settings.terminal_grace,
            on_opened=metrics.terminal_opened if metrics else lambda: None,
            on_closed=metrics.terminal_closed if metrics else lambda code: None,
        )

    # Built (Autobahn imported) on the first terminal socket: an idle container never pays for it.
    bridge = LazyBridge(make_bridge)
    if metrics is not None:
        metrics.count_open_terminals(bridge.open_sockets)
        metrics.watch_terminals(
            lambda: Counter(info.state for info in bridge.terminals()), bridge.buffered_bytes, bridge.paused_terminals
        )

    def open_runtime(store: Store) -> Deferred[WorkshopRuntime]:
        using = Collaborators(
            clock=reactor,
            renderer=renderer,
            hub=hub,
            checker=validator,
            terminal=supervisor,
            watch_active=lambda: hub.subscriber_count > 0,
            metrics=metrics,
            setup_runner=setup_runner,
            assets=AssetStore(store.path) if workshop.assets else None,
        )
        return Deferred.fromCoroutine(WorkshopRuntime.open(workshop, store, container_step=settings.step, using=using))

    backend = BackendService(settings, reactor)
    backend.on_stop.append(validator.stop)
    backend.on_stop.append(renderer.stop)
    backend.on_stop.append(setup_runner.stop)
    working_copy = WorkingCopyService(
        settings, reactor, open_runtime=open_runtime, warm=renderer.start, on_fatal=backend.fail
    )
    readiness = ReadinessProbe(working_copy, supervisor, missing_ttyd)
    readiness.on_ready.append(backend.became_ready)

    def terminal_changed(status: dict[str, Any]) -> None:
        hub.publish("terminal", status)
        if working_copy.runtime is not None:
            hub.publish("status", working_copy.runtime.status())

    supervisor.add_listener(terminal_changed)
    supervisor.add_listener(readiness.changed)
    working_copy.on_opened.append(lambda runtime: readiness.changed())

    def build_site() -> Site:
        """The student's site: built when the listener starts (Klein and twisted.web imported then)."""
        from workshop_backend.http.api import Api
        from workshop_backend.http.events import EventStreamResource
        from workshop_backend.http.limits import ClientLimit
        from workshop_backend.http.security import content_security_policy
        from workshop_backend.http.site import GuardedResource, make_site
        from workshop_backend.http.static import index_loader, static_resource

        events = EventStreamResource(
            hub,
            reactor,
            initial=lambda: [] if working_copy.runtime is None else [("status", working_copy.runtime.status())],
        )
        index = index_loader()
        api = Api(
            readiness=readiness,
            index_html=lambda: index,
            static=static_resource(),
            terminal=bridge.resource,
            terminals=bridge,
            events=events,
            tickets=guard.tickets,
        )
        working_copy.on_opened.insert(0, api.attach)  # before readiness says "ready"
        if working_copy.runtime is not None:
            api.attach(working_copy.runtime)
        return make_site(
            GuardedResource(api.resource(), guard, content_security_policy(settings.allowed_origins)),
            body_cap=api.body_cap,
            route_of=api.route_of,
            metrics=metrics,
            guard=guard,
            clients=ClientLimit(),
        )

    # The order is the start order: the working copy (a thread) and ttyd (a child) get going
    # first, the site is built (imports) while they do; stopping goes the other way round.
    working_copy.setServiceParent(backend)
    supervisor.setServiceParent(backend)
    # After the supervisor: stopped before it, so browsers get 1001 while ttyd still runs.
    bridge.setServiceParent(backend)
    ListenService(
        serverFromString(reactor, settings.listen), build_site, settings, on_fatal=backend.fail
    ).setServiceParent(backend)
    if metrics is not None and settings.metrics_listen is not None:
        from workshop_backend.metrics import MetricsListenService

        MetricsListenService(
            serverFromString(reactor, settings.metrics_listen),
            metrics,
            on_fatal=backend.fail,
            description=str(settings.metrics_listen),
        ).setServiceParent(backend)
    return backend
