"""workshop-backend: the runtime engine inside every workshop container.

The package is laid out by layer; each sub-package's docstring is its map,
and ``docs/design.md`` draws the arrows.  Calls go one way only::

    daemon (main, tap, config, services)  wires everything
      http          requests, statuses, JSON
        -> application    the student's run: position, progress, checks, events
          -> state, terminal, validation, content    the working copy, ttyd, rules, markdown
            -> workshop     the domain: model, distribution format, navigation rules, errors
              -> support    helpers that import nothing of ours

- :mod:`~workshop_backend.main`, :mod:`~workshop_backend.tap`,
  :mod:`~workshop_backend.config`, :mod:`~workshop_backend.services`: the
  daemon itself: the console script, the options, the wiring, the service
  tree.  Only these know every layer.
- :mod:`~workshop_backend.logs`, :mod:`~workshop_backend.metrics`: what the
  operator reads (log lines, Prometheus).
- :mod:`~workshop_backend.check`: ``workshop-backend check FILE``, the
  build pipeline's command: every problem of a distribution, one line each.
- :mod:`workshop_backend.http`: the HTTP layer (routes, JSON shapes, errors,
  the guard, limits, static files, events).
- :mod:`workshop_backend.application`: the application layer
  (:mod:`~workshop_backend.application.runtime`).
- :mod:`workshop_backend.workshop`: what a workshop is (the model, the
  distribution format, the navigation rules, the domain's errors).
- :mod:`workshop_backend.state`: the working copy and the only SQL.
- :mod:`workshop_backend.terminal`: ttyd, supervised, and the WebSocket bridge.
- :mod:`workshop_backend.validation`: the rule language and its runner.
- :mod:`workshop_backend.content`: markdown to safe HTML.
- :mod:`workshop_backend.support`: small helpers that import nothing of ours.
"""

__version__ = "0.1.0"
