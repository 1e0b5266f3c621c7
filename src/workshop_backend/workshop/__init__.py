"""What a workshop is: the domain, pure values and rules (no I/O but reading a distribution).

- :mod:`~workshop_backend.workshop.model`: ``Workshop`` and ``Step``, immutable.
- :mod:`~workshop_backend.workshop.distribution`: read and check a
  distribution file (format 1, ``format1.sql``, and its optional parts,
  ``format1-optional.sql``); at start, or collecting every fault for the
  check command.
- :mod:`~workshop_backend.workshop.assets`: what an asset path and media
  type may be, the size caps, which asset a URL names.
- :mod:`~workshop_backend.workshop.setup`: a step's setup scripts, parsed
  and checked.
- :mod:`~workshop_backend.workshop.navigation`: the navigation rules, pure.
- :mod:`~workshop_backend.workshop.errors`: the refusals of this layer
  (unknown step, locked step, not completed...), which know nothing of HTTP.
- :mod:`~workshop_backend.workshop.demo`: the embedded demo workshop.
"""
