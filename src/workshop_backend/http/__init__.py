"""The HTTP layer: everything that knows about requests, statuses and JSON.

- :mod:`~workshop_backend.http.api`: the Klein routes; thin: parse, call the
  application layer, shape the answer.
- :mod:`~workshop_backend.http.views`: the JSON shapes of the application's
  values (contract section 4).
- :mod:`~workshop_backend.http.errors`: ``ApiError``, the one table from the
  application's refusals to statuses, the one JSON writer.
- :mod:`~workshop_backend.http.security`: the ``Guard`` (Host, Origin,
  credentials), security headers, CSP.
- :mod:`~workshop_backend.http.tickets`: single-use tickets for the event
  stream and the terminal.
- :mod:`~workshop_backend.http.limits`: the head judged before the body,
  body caps (413), request deadlines, connections per client.
- :mod:`~workshop_backend.http.static`: the embedded UI's files.
- :mod:`~workshop_backend.http.site`: the ``Site`` around it all, with the
  access log.
- :mod:`~workshop_backend.http.events`: the event hub and the Server-Sent
  Events stream.
- :mod:`~workshop_backend.http.listening`: listening on an endpoint.
"""
