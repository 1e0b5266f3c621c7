"""The working copy: the per-instance SQLite file and the only SQL.

- :mod:`~workshop_backend.state.workingcopy`: make (copy, fsync, rename) or
  resume the working copy; blocking, run in a thread at start.
- :mod:`~workshop_backend.state.store`: every statement, over
  ``adbapi.ConnectionPool`` (one connection, one writer).
- :mod:`~workshop_backend.state.space`: the space reserve in the state dir,
  so progress can still be saved on a full disk.
- ``schema/vN.sql``: the runtime tables, versioned.
"""
