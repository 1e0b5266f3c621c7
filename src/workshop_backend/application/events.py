"""The events the application publishes, and who hears them: the hub.

The runtime and the wiring publish what changes (``status``, ``validation``,
``terminal``, ``setup``); every client of the event stream
(:mod:`workshop_backend.http.events`) subscribes for as long as its
connection lives.  The hub knows no HTTP: it is here, beside the runtime
that publishes, so that the daemon can build it before anything of the web
is imported.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from twisted.logger import Logger

Subscriber = Callable[[str, object], None]
"""Called with ``(event, data)`` for every published event."""


class EventHub:
    """Fan-out of named events with JSON data to any number of subscribers.

    Publishers hand in values (the application's :class:`Status`, a
    validation result, a plain dict); ``serialize`` turns each into its JSON
    shape once (:func:`workshop_backend.http.views.event_data`), and every
    subscriber gets that shape.  Subscribers are called in the order they
    subscribed, synchronously from :meth:`publish`.  One that raises is
    logged and dropped; the others still get the event.
    """

    log = Logger()

    def __init__(self, serialize: Callable[[object], object] = lambda data: data) -> None:
        self._subscribers: list[_Subscription] = []
        #: Values to their JSON shape (also for a stream's initial snapshot).
        self.serialize = serialize

    def publish(self, event: str, data: object) -> None:
        """Send ``data`` as ``event`` to every subscriber, in its JSON shape.

        Raises :class:`ValueError` for an event name that is empty or has a
        line break (it could not be framed), and :class:`TypeError` for data
        that JSON cannot encode: both are the publisher's bug, reported to it
        rather than to every subscriber.
        """
        if not event or "\n" in event or "\r" in event:
            raise ValueError(f"bad event name: {event!r}")
        data = self.serialize(data)
        json.dumps(data)  # TypeError/ValueError here, not in every subscriber
        for subscription in list(self._subscribers):
            if not subscription.active:
                continue  # unsubscribed by an earlier subscriber's callback
            try:
                subscription.callback(event, data)
            except Exception:
                self.log.failure("event subscriber {subscriber!r} failed: dropped", subscriber=subscription.callback)
                self._remove(subscription)

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event, data)`` for every event from now on.

        Returns a function that unsubscribes (safe to call more than once).
        """
        subscription = _Subscription(callback)
        self._subscribers.append(subscription)
        return lambda: self._remove(subscription)

    @property
    def subscriber_count(self) -> int:
        """How many subscribers there are (for tests and metrics)."""
        return len(self._subscribers)

    def _remove(self, subscription: _Subscription) -> None:
        subscription.active = False
        if subscription in self._subscribers:
            self._subscribers.remove(subscription)


class _Subscription:
    def __init__(self, callback: Subscriber) -> None:
        self.callback = callback
        self.active = True
