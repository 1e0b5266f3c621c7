"""Listening on an endpoint, for the student's port and the metrics port alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Site


class EndpointService(Service):
    """Listens on an endpoint; a port it cannot take is fatal (one line, exit 1)."""

    log = Logger()

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        site: Site,
        *,
        on_fatal: Callable[[str], None],
        description: str,
    ) -> None:
        self.endpoint = endpoint
        self.site = site
        self.on_fatal = on_fatal
        self.description = description
        self.port: IListeningPort | None = None

    def startService(self) -> None:
        """Listen now."""
        super().startService()
        d = self.endpoint.listen(self.site)
        d.addCallbacks(self._listening, self._failed)

    def _listening(self, port: IListeningPort) -> None:
        self.port = port
        self.announce(port.getHost())

    def announce(self, address: Any) -> None:
        """Say where we listen (subclasses say it their way)."""
        self.log.info("{description} listening on {address}", description=self.description, address=str(address))

    def _failed(self, failure: Failure) -> None:
        self.on_fatal(f"cannot listen on {self.description}: {failure.getErrorMessage()}")

    def stopService(self) -> Deferred[None] | None:
        """Stop listening."""
        super().stopService()
        if self.port is not None:
            return self.port.stopListening()
        return None
