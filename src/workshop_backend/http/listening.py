"""Listening on an endpoint, for the student's port and the metrics port alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure


class EndpointService(Service):
    """Listens on an endpoint; a port it cannot take is fatal (one line, exit 1)."""

    log = Logger()

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        site: IProtocolFactory | Callable[[], IProtocolFactory],
        *,
        on_fatal: Callable[[str], None],
        description: str,
    ) -> None:
        """``site`` may be a function that builds it: it is called when the service starts.

        The student's site is built that way so that ttyd and the working copy,
        started by the services before this one, get going while the HTTP
        stack (Klein, werkzeug, twisted.web) is still being imported.
        """
        self.endpoint = endpoint
        self._site = site
        self.on_fatal = on_fatal
        self.description = description
        self.port: IListeningPort | None = None
        self._where = description

    def startService(self) -> None:
        """Listen now."""
        super().startService()
        site = self._site if IProtocolFactory.providedBy(self._site) else self._site()
        self._site = site
        d = self.endpoint.listen(site)
        d.addCallbacks(self._listening, self._failed)

    def _listening(self, port: IListeningPort) -> None:
        self.port = port
        self._where = self.announce(port.getHost())

    def announce(self, address: Any) -> str:
        """Say where we listen (subclasses say it their way); answer the place, for the stop line."""
        self.log.info("{description} listening on {address}", description=self.description, address=str(address))
        return f"{self.description} {address}"

    def _failed(self, failure: Failure) -> None:
        self.on_fatal(f"cannot listen on {self.description}: {failure.getErrorMessage()}")

    def stopService(self) -> Deferred[None] | None:
        """Stop listening (new connections are refused from here on: the operator sees when)."""
        super().stopService()
        port, self.port = self.port, None
        if port is None:
            return None
        where = self._where

        def stopped(result: None) -> None:
            # Not "... listening on ...": that is the start line tools look for.
            self.log.info("stopped accepting connections on {where}", where=where)
            return result

        d: Deferred[None] | None = port.stopListening()
        if d is None:
            stopped(None)
            return None
        return d.addCallback(stopped)
