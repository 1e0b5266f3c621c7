"""The working copy: the per-instance SQLite file and the only SQL.

- :mod:`~workshop_backend.state.workingcopy`: make (copy, fsync, rename) or
  resume the working copy; blocking, run in a thread at start.
- :mod:`~workshop_backend.state.store`: every statement, over
  ``adbapi.ConnectionPool`` (one connection, one writer).
- :mod:`~workshop_backend.state.space`: the space reserve in the state dir,
  so progress can still be saved on a full disk.
- :mod:`~workshop_backend.state.assets`: asset bytes in chunks, through a
  read-only pool of their own.
- ``schema/vN.sql``: the runtime tables, versioned; ``upgrade-vN.sql``
  brings a copy of version N-1 up to date.
"""
