"""What a workshop is: the domain, pure values and rules (no I/O but reading a distribution).

- :mod:`~workshop_backend.workshop.model`: ``Workshop`` and ``Step``, immutable.
- :mod:`~workshop_backend.workshop.distribution`: read and check a
  distribution file (format 1, ``format1.sql``); start-up only.
- :mod:`~workshop_backend.workshop.navigation`: the navigation rules, pure.
- :mod:`~workshop_backend.workshop.errors`: the refusals of this layer
  (unknown step, locked step, not completed...), which know nothing of HTTP.
- :mod:`~workshop_backend.workshop.demo`: the embedded demo workshop.
"""
