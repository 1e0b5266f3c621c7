"""The terminal bridge, built (and Autobahn imported) when the first terminal socket arrives.

Nothing the daemon does before a browser opens ``/terminal`` needs WebSocket
code: ttyd is supervised without it, and until a socket asks for one there
is no terminal to list or to end.  Importing Autobahn costs about 30 ms of
start-up and 5-9 MB of resident memory, so an idle container (started,
probed ready, waiting for its student) never pays for it.  The first
socket pays the import once, a few tens of milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource

from workshop_backend.terminal.sessions import DEFAULT_MAX_TERMINALS, TerminalInfo

if TYPE_CHECKING:
    from workshop_backend.terminal.bridge import TerminalBridge


class LazyBridge(Service):
    """Stands for the :class:`~workshop_backend.terminal.bridge.TerminalBridge` until a socket needs it.

    ``make()`` builds the bridge (the wiring decides how); it is called once,
    on the first request to :attr:`resource`.  The API's and the metrics'
    questions are answered without building it: no bridge, no terminals.
    """

    name = "terminal-bridge"

    def __init__(self, make: Callable[[], TerminalBridge], *, terminal_limit: int = DEFAULT_MAX_TERMINALS) -> None:
        self._make = make
        self.terminal_limit = terminal_limit
        self.bridge: TerminalBridge | None = None
        self.resource = _OnFirstSocket(self)

    def get(self) -> TerminalBridge:
        """The bridge, built now if it is not yet (and started if the daemon runs)."""
        if self.bridge is None:
            self.bridge = self._make()
            if self.running:
                self.bridge.startService()
        return self.bridge

    # -- what the API and the metrics ask --------------------------------------------------

    def terminals(self) -> list[TerminalInfo]:
        """The workspace's terminals (none before the first socket)."""
        return [] if self.bridge is None else self.bridge.terminals()

    def end_terminal(self, name: str) -> bool:
        """End a terminal; False if there is none of that name."""
        return self.bridge is not None and self.bridge.end_terminal(name)

    def open_sockets(self) -> int:
        """Browser sockets open now."""
        return 0 if self.bridge is None else len(self.bridge.connections)

    def buffered_bytes(self) -> int:
        """Output the terminals hold in memory."""
        return 0 if self.bridge is None else self.bridge.buffered_bytes()

    def paused_terminals(self) -> int:
        """Terminals whose reading from ttyd is paused by a slow browser."""
        return 0 if self.bridge is None else self.bridge.paused_terminals()

    # -- the service --------------------------------------------------------------------

    def stopService(self) -> Deferred[None]:
        """Close every terminal socket with 1001 (if there ever was one)."""
        super().stopService()
        if self.bridge is not None and self.bridge.running:
            return self.bridge.stopService()
        return succeed(None)


class _OnFirstSocket(Resource):
    """``/terminal``: the bridge's resource, the bridge built on the first request."""

    isLeaf = True

    def __init__(self, holder: LazyBridge) -> None:
        super().__init__()
        self._holder = holder

    def render(self, request: IRequest) -> Any:
        """Hand the request to the bridge's own resource."""
        return self._holder.get().resource.render(request)
