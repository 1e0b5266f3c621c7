"""The daemon's own services: the whole, the working copy, the listener.

Start-up order matters to the student's waiting time and to the operator's
probes: the listener comes up at once (``/healthz`` answers), the working
copy is made in a thread meanwhile, ttyd starts beside it, and ``/readyz``
turns 200 when both are done.  A fault that makes serving impossible (the
state dir is full, the port is taken) stops the daemon with one log line and
a non-zero exit code, which :mod:`workshop_backend.main` returns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.interfaces import IReactorCore, IStreamServerEndpoint
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from workshop_backend import __version__
from workshop_backend.application.runtime import WorkshopRuntime
from workshop_backend.config import Settings
from workshop_backend.http.listening import EndpointService
from workshop_backend.state.space import Reserve
from workshop_backend.state.store import Store
from workshop_backend.state.workingcopy import prepare
from workshop_backend.support.environ import blank_environment
from workshop_backend.support.reactor import IBackendReactor
from workshop_backend.workshop.distribution import DistributionError

if TYPE_CHECKING:
    from twisted.internet.interfaces import IProtocolFactory

EXIT_FATAL = 1


class Terminal(Protocol):
    """What readiness needs of the terminal supervisor."""

    @property
    def state(self) -> str: ...

    @property
    def reason(self) -> str | None: ...

    def is_ready(self) -> bool: ...


class BackendService(MultiService):
    """The whole daemon; remembers why it had to stop."""

    log = Logger()

    def __init__(self, settings: Settings, reactor: IReactorCore) -> None:
        super().__init__()
        self.settings = settings
        self.reactor = reactor
        self.exit_code = 0
        #: Called first when the daemon stops (e.g. kill running check commands).
        self.on_stop: list[Callable[[], object]] = []
        #: Fires the first time the daemon is ready (work that can wait until then waits on it).
        self.ready: Deferred[None] = Deferred()

    def became_ready(self) -> None:
        """Readiness turned on: fire :attr:`ready` (once)."""
        if not self.ready.called:
            self.ready.callback(None)

    def startService(self) -> None:
        """Say what we are about to serve, then start the children."""
        s = self.settings
        w = s.distribution.workshop
        self.log.info(
            "workshop-backend {version} serving {workshop_id} {workshop_version} step {step} on {listen};"
            " state dir {state_dir}",
            version=__version__,
            workshop_id=w.id,
            workshop_version=w.version,
            step=s.step,
            listen=s.listen,
            state_dir=str(s.state_dir),
            demo=s.demo,
            auth=s.auth,
        )
        if s.state_dir_fallback:
            self.log.warn(
                "the default state dir is not writable; using {state_dir} instead", state_dir=str(s.state_dir)
            )
        # The token has been read: /proc/<pid>/environ must not show it to the student's shell.
        blank_environment(("WORKSHOP_TOKEN",))
        if s.auth == "none":
            self.log.warn(
                "--auth none: anyone who reaches this port gets a shell; use it only behind an authenticating proxy"
            )
        super().startService()

    def stopService(self) -> Deferred[None]:
        """Run the stop hooks, then stop the children (in reverse order)."""
        for hook in self.on_stop:
            try:
                hook()
            except Exception:
                self.log.failure("a stop hook failed")
        return super().stopService()  # type: ignore[no-any-return]

    def fail(self, message: str) -> None:
        """Stop the daemon with a non-zero exit code and one clear line."""
        if self.exit_code:
            return
        self.exit_code = EXIT_FATAL
        self.log.critical("cannot go on: {message}", message=message)
        if self.reactor.running:
            self.reactor.stop()


class ReadinessProbe:
    """Whether the daemon can serve a student, why not, and a log line on each change.

    Ready means the working copy is open and ttyd answers (contract section
    4, ``/readyz``).  Operators and tests wait for the "ready" line rather
    than polling.
    """

    log = Logger()

    def __init__(self, working_copy: WorkingCopyService, terminal: Terminal, missing_ttyd: str | None = None) -> None:
        self.working_copy = working_copy
        self.terminal = terminal
        self.missing_ttyd = missing_ttyd
        #: Called each time readiness turns on.
        self.on_ready: list[Callable[[], None]] = []
        self._last: bool | None = None

    def __call__(self) -> tuple[bool, str]:
        """(ready, reason): the reason is a short code, what ``/readyz`` may show.

        The probe needs no token and must reveal nothing (contract section
        7): no paths, no versions. The full account goes to the log.
        """
        runtime = self.working_copy.runtime
        if runtime is None:
            return False, "working_copy_opening"
        if not self.terminal.is_ready():
            return False, f"terminal_{self.terminal.state}"
        if runtime.disk_full:
            return True, "disk_full"
        return True, "ready"

    def describe(self) -> str:
        """Why we are not ready, in words (for the log)."""
        if self.working_copy.runtime is None:
            return "the working copy is not open yet"
        if not self.terminal.is_ready():
            return str(self.terminal.reason or self.missing_ttyd or f"the terminal is {self.terminal.state}")
        return "ready"

    def changed(self, *_: object) -> None:
        """Log when readiness turns on or off."""
        ready = self()[0]
        if ready == self._last:
            return
        runtime = self.working_copy.runtime
        if ready and runtime is not None:
            status = runtime.status()
            self.log.info("ready: step {step} ({phase})", step=status.current_step, phase=status.phase, ready=True)
            for hook in self.on_ready:
                hook()
        elif self._last:
            self.log.warn("not ready: {reason}", reason=self.describe(), ready=False)
        self._last = ready


class WorkingCopyService(Service):
    """Makes or reopens the working copy (in a thread), then builds the runtime over it.

    ``open_runtime(store)`` builds the
    :class:`~workshop_backend.application.runtime.WorkshopRuntime` (the wiring
    decides what it gets); ``on_opened`` callbacks get it once it exists.
    """

    log = Logger()

    def __init__(
        self,
        settings: Settings,
        reactor: IBackendReactor,
        *,
        open_runtime: Callable[[Store], Awaitable[WorkshopRuntime]],
        warm: Callable[[], None],
        on_fatal: Callable[[str], None],
    ) -> None:
        self.settings = settings
        self.reactor = reactor
        self.open_runtime = open_runtime
        self.warm = warm
        self.on_fatal = on_fatal
        self.on_opened: list[Callable[[WorkshopRuntime], None]] = []
        self.store: Store | None = None
        self.runtime: WorkshopRuntime | None = None
        self.opened: Deferred[None] | None = None

    def startService(self) -> None:
        """Begin opening; readiness reports when done."""
        super().startService()
        self.opened = ensureDeferred(self._open())
        self.opened.addErrback(self._failed)

    async def _open(self) -> None:
        s = self.settings
        pool = self.reactor.getThreadPool()
        copy = await deferToThreadPool(
            self.reactor,
            pool,
            prepare,
            s.distribution,
            s.state_dir,
            container_step=s.step,
            now=self.reactor.seconds(),
            fresh=s.fresh,
        )
        if copy.resumed:
            self.log.info(
                "resuming the working copy {path}{upgraded}",
                path=str(copy.path),
                upgraded="" if copy.upgraded_from is None else f" (upgraded from runtime schema {copy.upgraded_from})",
            )
        else:
            self.log.info(
                "made a fresh working copy {path}{why}",
                path=str(copy.path),
                why=f" ({copy.replaced_because})" if copy.replaced_because else "",
            )
        self.store = Store(copy.path, reserve=Reserve(self.settings.state_dir))
        self.runtime = await self.open_runtime(self.store)
        for opened in self.on_opened:
            opened(self.runtime)
        # Render every step now (in a child process), not in front of the first student request.
        self.warm()

    def _failed(self, failure: Failure) -> None:
        if failure.check(DistributionError):
            self.on_fatal(str(failure.value))
        elif failure.check(OSError):
            err = cast(OSError, failure.value)
            self.on_fatal(f"cannot make the working copy in {self.settings.state_dir}: {err.strerror or err}")
        else:
            self.log.failure("opening the working copy failed", failure)
            self.on_fatal("opening the working copy failed (see the error above)")

    def stopService(self) -> Deferred[None]:
        """Stop timers and close the database."""
        super().stopService()
        if self.runtime is not None:
            self.runtime.close()
        if self.store is not None:
            self.store.close()
        return succeed(None)


class ListenService(EndpointService):
    """The student's port: says its URL (with the token URL, once)."""

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        site: IProtocolFactory | Callable[[], IProtocolFactory],
        settings: Settings,
        *,
        on_fatal: Callable[[str], None],
    ) -> None:
        super().__init__(endpoint, site, on_fatal=on_fatal, description=settings.listen)
        self.settings = settings

    def announce(self, address: Any) -> str:
        """``listening on URL`` (what tests and tools look for), and the login URL once."""
        host = getattr(address, "host", None)
        if host is None:
            self.log.info("listening on {address}", address=str(address))
            return str(address)
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        if ":" in shown:
            shown = f"[{shown}]"
        number = getattr(address, "port", 0)
        url = f"http://{shown}:{number}/"
        self.log.info("listening on {url}", url=url, port=number)
        s = self.settings
        if s.auth == "token" and s.token_source == "generated":
            # The only time the token is ever logged: the student needs the URL.
            self.log.info("open {login_url} to start", login_url=f"{url}?token={s.token}")
        return url
